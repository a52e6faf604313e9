//! A golden record removed in Reltio (`ENTITY_REMOVED`, `ENTITY_REMOVED_GDPR`): its Contacts archived with
//! `delete_fields` or deleted, as the mapping's `on_delete` says. The Contacts are those the event's snapshot
//! names (live crosswalks of the Contact type) and those the ledger says this function wrote for the entity: a
//! removed entity can no longer be fetched, and a removal event may carry no snapshot. The removal's order is
//! recorded like any change's, so a late update of the removed entity is stale and never brings it back. Pure.

use super::contacts::write_hash;
use super::mapping::{CrmMapping, DeletePolicy};
use super::plan::{Write, WriteKind};
use super::salesforce::{RecordOutcome, RecordUpdate};
use crate::ordering::EntityRecord;
use crate::outcome::{Outcome, SkipReason};
use crate::ports::PortError;
use crate::reltio::event::EventCategory;
use serde_json::Map;

/// Whether an event type is a removal.
pub fn is_removal(event_type: &str) -> bool {
    EventCategory::of(event_type) == Some(EventCategory::Delete)
}

/// A removal to apply: the Contacts the event's snapshot names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    pub contacts: Vec<String>,
}

/// The Contacts a removal concerns: the snapshot's and the ledger's, each once, in order.
pub fn removal_targets(removal: &Removal, record: &EntityRecord) -> Vec<String> {
    let mut ids: Vec<String> = removal.contacts.clone();
    ids.extend(record.written.keys().cloned());
    ids.extend(record.created.iter().cloned());
    ids.sort();
    ids.dedup();
    ids
}

/// What a claimed removal calls for: archive writes (a Contact already marked the same is not written again), or
/// the ids to delete.
pub fn removal_steps(
    mapping: &CrmMapping,
    index: usize,
    removal: &Removal,
    record: &EntityRecord,
) -> (Vec<Write>, Vec<String>) {
    let targets = removal_targets(removal, record);
    match mapping.on_delete {
        DeletePolicy::Ignore => (Vec::new(), Vec::new()),
        DeletePolicy::Delete => (Vec::new(), targets),
        DeletePolicy::Archive => {
            let fields: Map<String, serde_json::Value> = mapping
                .delete_fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let hash = write_hash(&fields);
            let writes = targets
                .into_iter()
                .filter(|id| !record.unchanged(id, &hash))
                .map(|id| Write {
                    item: index,
                    kind: WriteKind::Archive,
                    record: RecordUpdate {
                        sobject: "Contact".into(),
                        id,
                        fields: fields.clone(),
                    },
                    hash: Some(hash.clone()),
                })
                .collect();
            (writes, Vec::new())
        }
    }
}

/// How one Contact delete ended (a record already gone is skipped: nothing to do).
pub fn delete_outcome(result: Result<RecordOutcome, PortError>) -> Outcome {
    match result {
        Ok(RecordOutcome::Updated) => Outcome::Done,
        Ok(RecordOutcome::Missing { .. }) => Outcome::Skipped(SkipReason::RecordMissing),
        Ok(RecordOutcome::Failed {
            code,
            message,
            transient,
        }) => {
            let mut reason = format!("Salesforce rejected a Contact delete: {code}");
            if !message.is_empty() {
                reason = format!("{reason} ({message})");
            }
            if transient {
                Outcome::Transient(reason)
            } else {
                Outcome::Permanent(reason)
            }
        }
        Err(e) => Outcome::from_port("deleting a Contact", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ordering::Applied;
    use serde_json::json;

    fn mapping(policy: &str) -> CrmMapping {
        let fields = if policy == "archive" {
            "delete_fields = { Status__c = \"Removed in MDM\" }\n"
        } else {
            ""
        };
        CrmMapping::parse(&format!(
            "event_types = [\"UPDATE\", \"DELETE\"]\ncrosswalk_type = \"configuration/sources/SFDC\"\n\
             on_delete = \"{policy}\"\n{fields}\
             [[fields]]\nattribute = \"A\"\nfield = \"A\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn the_policy_is_validated() {
        let parse = |extra: &str| {
            CrmMapping::parse(&format!(
                "event_types = [\"UPDATE\", \"DELETE\"]\ncrosswalk_type = \"x\"\n{extra}\n\
                 [[fields]]\nattribute = \"A\"\nfield = \"A\"\n"
            ))
        };
        assert_eq!(parse("").unwrap().on_delete, DeletePolicy::Ignore);
        assert!(parse("on_delete = \"archive\"")
            .unwrap_err()
            .to_string()
            .contains("needs delete_fields"));
        assert!(
            parse("on_delete = \"delete\"\ndelete_fields = { S = \"x\" }")
                .unwrap_err()
                .to_string()
                .contains("archive\" only")
        );
        assert!(
            parse("on_delete = \"archive\"\ndelete_fields = { M = \"{survivor}\" }")
                .unwrap_err()
                .to_string()
                .contains("no survivor")
        );
        assert!(parse("on_delete = \"purge\"").is_err());
        let no_delete_events = CrmMapping::parse(
            "crosswalk_type = \"x\"\non_delete = \"delete\"\n[[fields]]\nattribute = \"A\"\nfield = \"A\"\n",
        );
        assert!(no_delete_events
            .unwrap_err()
            .to_string()
            .contains("add \"DELETE\" to event_types"));
        assert_eq!(mapping("delete").on_delete, DeletePolicy::Delete);
    }

    fn record() -> EntityRecord {
        let written = vec![
            ("003B".to_owned(), "h-b".to_owned()),
            ("003C".to_owned(), "h-c".to_owned()),
        ];
        EntityRecord::default().with(&Applied {
            written: &written,
            created: Some("003D"),
            ..Applied::nothing("e")
        })
    }

    #[test]
    fn a_removal_concerns_the_snapshots_contacts_and_those_the_ledger_knows() {
        let removal = Removal {
            contacts: vec!["003C".into(), "003A".into()],
        };
        assert_eq!(
            removal_targets(&removal, &record()),
            ["003A", "003B", "003C", "003D"]
        );
        let (writes, deletes) = removal_steps(&mapping("delete"), 0, &removal, &record());
        assert!(writes.is_empty());
        assert_eq!(deletes, ["003A", "003B", "003C", "003D"]);
        let (writes, deletes) = removal_steps(&mapping("ignore"), 0, &removal, &record());
        assert!(writes.is_empty() && deletes.is_empty());
    }

    #[test]
    fn archiving_marks_each_contact_once() {
        let m = mapping("archive");
        let removal = Removal {
            contacts: vec!["003A".into()],
        };
        let (writes, deletes) = removal_steps(&m, 3, &removal, &EntityRecord::default());
        assert!(deletes.is_empty());
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].item, 3);
        assert_eq!(writes[0].kind, WriteKind::Archive);
        assert_eq!(
            serde_json::Value::Object(writes[0].record.fields.clone()),
            json!({"Status__c": "Removed in MDM"})
        );
        // Marked already (a redelivered removal): nothing to write.
        let done = vec![("003A".to_owned(), writes[0].hash.clone().unwrap())];
        let record = EntityRecord::default().with(&Applied {
            written: &done,
            ..Applied::nothing("e")
        });
        assert!(removal_steps(&m, 3, &removal, &record).0.is_empty());
    }
}
