//! A golden record with no Contact becomes one (`create = true`): the Contact is upserted by an external-ID field
//! that holds the entity id, then its Id is written back to the entity as a crosswalk of the mapping's type,
//! attached to one of the entity's own crosswalks (Reltio's association of a crosswalk with its contributor:
//! `dataProvider: false, contributorProvider: true`). Each step is committed as it succeeds, so a retry never
//! creates twice (the upsert finds the Contact by the entity id anyway) and a failed write-back is tried again
//! alone. The event Reltio sends for the write-back maps to the Contact with the values just written: the
//! ledger's hash makes it a counted no-op. Pure.

use super::contacts::{contact_fields, write_hash};
use super::mapping::{CreateSettings, CrmMapping};
use super::plan::Conclusion;
use super::salesforce::{RecordUpsert, UpsertOutcome};
use crate::ordering::EntityRecord;
use crate::outcome::{Outcome, SkipReason};
use crate::ports::PortError;
use crate::reltio::golden::EntitySnapshot;
use crate::reltio::model::{Attributes, CrosswalkKey, EntityBody, ItemOutcome};
use serde_json::{Map, Value};

/// What creating an entity's Contact takes.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlan {
    /// The entity id (the URI's last segment): the Contact's external id.
    pub external_id: String,
    /// The Contact's fields: the entity's golden values as the mapping maps them (no nulls: nothing to clear).
    pub fields: Map<String, Value>,
    pub entity_type: String,
    /// The entity's own crosswalk the Contact's crosswalk is attached to.
    pub contributor: CrosswalkKey,
}

/// The entity id of an entity URI (`entities/0Abc` → `0Abc`).
pub fn entity_id(uri: &str) -> Option<&str> {
    uri.strip_prefix("entities/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The plan for an entity with no live Contact crosswalk, or the outcome that stops it: skipped while a
/// required field has no golden value, dead-lettered when the entity cannot be written back to.
pub fn plan_create(
    mapping: &CrmMapping,
    settings: &CreateSettings,
    entity: &EntitySnapshot,
    uri: &str,
) -> Result<CreatePlan, Outcome> {
    let mut fields = contact_fields(mapping, &entity.attributes);
    fields.retain(|_, v| !v.is_null());
    let present = |name: &str| {
        fields.iter().any(|(f, v)| {
            f.eq_ignore_ascii_case(name) && v.as_str().is_none_or(|s| !s.trim().is_empty())
        })
    };
    if !settings.require.iter().all(|r| present(r)) {
        return Err(Outcome::Skipped(SkipReason::Incomplete));
    }
    let external_id = entity_id(uri)
        .ok_or_else(|| Outcome::Permanent(format!("`{uri}` is not an entity URI")))?
        .to_owned();
    let entity_type = entity
        .entity_type
        .clone()
        .ok_or_else(|| Outcome::Permanent("the entity has no type".into()))?;
    // The first live crosswalk of another source: the write-back's contributor (any of them names the entity).
    let contributor = entity
        .crosswalks
        .0
        .iter()
        .filter(|c| !c.end_dated)
        .find_map(|c| {
            let source = c.source_type.as_deref()?;
            let value = c.value.as_deref()?;
            (source != mapping.crosswalk_type && !value.is_empty()).then(|| CrosswalkKey {
                source: source.to_owned(),
                source_table: c.source_table.clone().filter(|t| !t.is_empty()),
                value: value.to_owned(),
            })
        })
        .ok_or_else(|| {
            Outcome::Permanent(
                "the entity has no live crosswalk to attach its Contact's crosswalk to".into(),
            )
        })?;
    Ok(CreatePlan {
        external_id,
        fields,
        entity_type,
        contributor,
    })
}

/// What a claimed create calls for, given what the ledger knows.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSteps {
    /// The upsert; `None` when the Contact created before already holds these values.
    pub upsert: Option<RecordUpsert>,
    /// The Contact created before (the ledger's), if any.
    pub contact: Option<String>,
    /// The hash of the fields, recorded for the Contact once written.
    pub hash: String,
}

pub fn create_steps(
    settings: &CreateSettings,
    plan: &CreatePlan,
    record: &EntityRecord,
) -> CreateSteps {
    let hash = write_hash(&plan.fields);
    let contact = record.created.clone();
    let unchanged = contact
        .as_deref()
        .is_some_and(|id| record.unchanged(id, &hash));
    CreateSteps {
        upsert: (!unchanged).then(|| RecordUpsert {
            sobject: "Contact".into(),
            external_id_field: settings.external_id_field.clone(),
            external_id: plan.external_id.clone(),
            fields: plan.fields.clone(),
        }),
        contact,
        hash,
    }
}

/// The write-back: the Contact's crosswalk attached to the entity through its contributor crosswalk, with no
/// attributes (nothing of the entity changes but its crosswalks).
pub fn write_back(mapping: &CrmMapping, plan: &CreatePlan, contact: &str) -> EntityBody {
    let contact_crosswalk = CrosswalkKey {
        source: mapping.crosswalk_type.clone(),
        source_table: None,
        value: contact.to_owned(),
    };
    EntityBody {
        entity_type: plan.entity_type.clone(),
        attributes: Attributes::none(),
        crosswalks: vec![
            plan.contributor.contributor(),
            contact_crosswalk.crosswalk(),
        ],
    }
}

/// How a create's steps went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateResults {
    /// The upsert's outcome, when one was sent.
    pub upsert: Option<Outcome>,
    /// The Contact's Id (the upsert's, else the ledger's).
    pub contact: Option<String>,
    /// Salesforce inserted the Contact (rather than finding it by its external id).
    pub created: bool,
    /// The write-back's outcome, when one was sent.
    pub write_back: Option<Outcome>,
}

/// How one upsert ended, with the Contact's Id and whether it was inserted.
pub fn upsert_outcome(
    result: Result<UpsertOutcome, PortError>,
) -> (Outcome, Option<(String, bool)>) {
    match result {
        Ok(UpsertOutcome::Upserted { id, created }) => (Outcome::Done, Some((id, created))),
        Ok(UpsertOutcome::Failed {
            code,
            message,
            transient,
        }) => {
            let mut reason = format!("Salesforce rejected a Contact upsert: {code}");
            if !message.is_empty() {
                reason = format!("{reason} ({message})");
            }
            let outcome = if transient {
                Outcome::Transient(reason)
            } else {
                Outcome::Permanent(reason)
            };
            (outcome, None)
        }
        Err(e) => (Outcome::from_port("upserting a Contact", e), None),
    }
}

/// How one write-back ended.
pub fn write_back_outcome(result: Result<ItemOutcome, PortError>) -> Outcome {
    match result {
        Ok(ItemOutcome::Written { .. }) => Outcome::Done,
        Ok(ItemOutcome::Failed { message, transient }) => {
            let reason = format!("Reltio refused the Contact's crosswalk: {message}");
            if transient {
                Outcome::Transient(reason)
            } else {
                Outcome::Permanent(reason)
            }
        }
        Err(e) => Outcome::from_port("writing the Contact's crosswalk back to Reltio", e),
    }
}

/// A create's outcome and what its commit records: the Contact and its hash once upserted (the change's order
/// advances with it), the change complete once the crosswalk is written back too.
pub fn conclude_create(steps: &CreateSteps, results: &CreateResults) -> Conclusion {
    let mut c = Conclusion {
        outcome: Outcome::Done,
        complete: true,
        ordered: steps.upsert.is_none(),
        written: Vec::new(),
        merged: Vec::new(),
        given_up: Vec::new(),
        recovered: Vec::new(),
        created: None,
    };
    let mut failures: Vec<&Outcome> = Vec::new();
    match &results.upsert {
        Some(Outcome::Done) => {
            if let Some(id) = &results.contact {
                c.written.push((id.clone(), steps.hash.clone()));
                c.created = Some(id.clone());
                c.ordered = true;
            }
        }
        Some(failed) => failures.push(failed),
        None => {}
    }
    match &results.write_back {
        Some(Outcome::Done) | Some(Outcome::Skipped(_)) => {}
        Some(failed) => failures.push(failed),
        // Not sent: the upsert failed (its failure says why).
        None => {}
    }
    if let Some(t) = failures.iter().find(|o| o.is_transient()) {
        c.outcome = (*t).clone();
    } else if !failures.is_empty() {
        let reasons: Vec<&str> = failures
            .iter()
            .filter_map(|o| match o {
                Outcome::Permanent(r) => Some(r.as_str()),
                _ => None,
            })
            .collect();
        c.outcome = Outcome::Permanent(reasons.join("; "));
    }
    c.complete = failures.is_empty();
    c
}

#[cfg(test)]
mod tests;
