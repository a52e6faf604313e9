//! The I/O of creating Contacts for a round's entities without one: every upsert of the round in as few
//! sObject Collections upsert calls as the limits allow, then every write-back in one Reltio `POST /entities`
//! per [`WRITE_BACKS_PER_CALL`]. What each step means is `crm/create.rs`'s.

use super::{Claimed, Report};
use crate::crm::create::{upsert_outcome, write_back, write_back_outcome, CreateResults};
use crate::crm::mapping::CrmMapping;
use crate::crm::plan::Item;
use crate::crm::salesforce::{RecordUpsert, MAX_COLLECTION};
use crate::outcome::Outcome;
use crate::ports::{isolate_rejections, remaining, Crm, Deadline, EntityWriter, PortError};
use crate::reltio::model::EntityBody;
use std::sync::Mutex;
use std::time::Instant;

/// Entities per write-back call (Reltio takes an array of entities per `POST /entities`).
pub const WRITE_BACKS_PER_CALL: usize = 100;

/// Upserts the Contacts of the round's creates; a create the ledger says is written already keeps its Contact.
pub(super) async fn upsert(
    crm: &dyn Crm,
    claimed: &mut [Claimed],
    deadline: Deadline,
    report: &mut Report,
) {
    let mut upserts: Vec<(usize, &RecordUpsert)> = Vec::new();
    for (c, claim) in claimed.iter().enumerate() {
        if let Some(steps) = &claim.steps.create {
            if let Some(u) = &steps.upsert {
                upserts.push((c, u));
            }
        }
    }
    let latencies = Mutex::new(Vec::new());
    let mut done = Vec::new();
    for chunk in upserts.chunks(MAX_COLLECTION) {
        let (results, _) =
            isolate_rejections(chunk.to_vec(), |batch: Vec<(usize, &RecordUpsert)>| {
                let latencies = &latencies;
                Box::pin(async move {
                    if remaining(deadline).is_zero() {
                        let e = PortError::Transient("no time left in this invocation".into());
                        return (batch, Err(e));
                    }
                    let started = Instant::now();
                    let records: Vec<&RecordUpsert> = batch.iter().map(|(_, u)| *u).collect();
                    let result = crm.upsert(&records, deadline).await;
                    if let Ok(mut l) = latencies.lock() {
                        l.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    (batch, result)
                })
            })
            .await;
        done.extend(results.into_iter().map(|((c, _), r)| (c, r)));
    }
    let latencies = latencies.into_inner().unwrap_or_default();
    report.count("SalesforceCalls", latencies.len() as u64);
    report.salesforce_latencies_ms.extend(latencies);
    for claim in claimed.iter_mut() {
        if let Some(steps) = &claim.steps.create {
            claim.results.create = Some(CreateResults {
                contact: steps.contact.clone(),
                ..CreateResults::default()
            });
        }
    }
    for (c, result) in done {
        let (outcome, contact) = upsert_outcome(result);
        let Some(results) = claimed[c].results.create.as_mut() else {
            continue;
        };
        if let Some((id, created)) = contact {
            report.count(
                if created {
                    "ContactsCreated"
                } else {
                    "ContactsUpserted"
                },
                1,
            );
            results.contact = Some(id);
            results.created = created;
        }
        results.upsert = Some(outcome);
    }
}

/// Writes the Contact's Id back to each entity whose Contact is known and whose upsert (if any) succeeded. The
/// call is a partial override: a crosswalk the body sends without attributes keeps any it has (the Contact's
/// crosswalk may have gained some from Salesforce's own changes since).
pub(super) async fn write_back_all(
    writer: &dyn EntityWriter,
    mapping: &CrmMapping,
    items: &[Item],
    claimed: &mut [Claimed],
    deadline: Deadline,
    report: &mut Report,
) {
    let mut bodies: Vec<(usize, EntityBody)> = Vec::new();
    for (c, claim) in claimed.iter().enumerate() {
        let (Some(plan), Some(results)) = (&items[claim.item].create, &claim.results.create) else {
            continue;
        };
        let upserted = matches!(results.upsert, None | Some(Outcome::Done));
        if let (true, Some(contact)) = (upserted, &results.contact) {
            bodies.push((c, write_back(mapping, plan, contact)));
        }
    }
    for chunk in bodies.chunks(WRITE_BACKS_PER_CALL) {
        let refs: Vec<&EntityBody> = chunk.iter().map(|(_, b)| b).collect();
        let result = if remaining(deadline).is_zero() {
            Err(PortError::Transient(
                "no time left in this invocation".into(),
            ))
        } else {
            report.count("ReltioWriteBackCalls", 1);
            writer.post_entities(&refs, true, deadline).await
        };
        let mut outcomes = match result {
            Ok(o) => o.into_iter().map(Ok).collect::<Vec<_>>().into_iter(),
            Err(e) => vec![Err(e); chunk.len()].into_iter(),
        };
        for (c, _) in chunk {
            let result = outcomes.next().unwrap_or_else(|| {
                Err(PortError::Transient("no result for this write-back".into()))
            });
            let outcome = write_back_outcome(result);
            if outcome == Outcome::Done {
                report.count("CrosswalksWrittenBack", 1);
            }
            if let Some(results) = claimed[*c].results.create.as_mut() {
                results.write_back = Some(outcome);
            }
        }
    }
}
