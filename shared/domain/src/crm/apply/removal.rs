//! The I/O of a round's removals under `on_delete = "delete"`: every Contact to delete in sObject Collections
//! deletes of at most 200 ids. (Archiving is an ordinary Contact write: it goes out with the round's writes.)

use super::{Claimed, Report};
use crate::crm::removal::delete_outcome;
use crate::crm::salesforce::MAX_COLLECTION;
use crate::outcome::Outcome;
use crate::ports::{remaining, Crm, Deadline, PortError};
use std::time::Instant;

pub(super) async fn delete(
    crm: &dyn Crm,
    claimed: &mut [Claimed],
    deadline: Deadline,
    report: &mut Report,
) {
    let deletes: Vec<(usize, String)> = claimed
        .iter_mut()
        .enumerate()
        .flat_map(|(c, claim)| {
            std::mem::take(&mut claim.steps.deletes)
                .into_iter()
                .map(move |id| (c, id))
        })
        .collect();
    for chunk in deletes.chunks(MAX_COLLECTION) {
        let ids: Vec<&str> = chunk.iter().map(|(_, id)| id.as_str()).collect();
        let result = if remaining(deadline).is_zero() {
            Err(PortError::Transient(
                "no time left in this invocation".into(),
            ))
        } else {
            let started = Instant::now();
            let result = crm.delete(&ids, deadline).await;
            report.count("SalesforceCalls", 1);
            report
                .salesforce_latencies_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
            result
        };
        let mut outcomes = match result {
            Ok(o) => o.into_iter().map(Ok).collect::<Vec<_>>().into_iter(),
            Err(e) => vec![Err(e); chunk.len()].into_iter(),
        };
        for (c, id) in chunk {
            let result = outcomes
                .next()
                .unwrap_or_else(|| Err(PortError::Transient("no result for this delete".into())));
            let outcome = delete_outcome(result);
            match &outcome {
                Outcome::Done => report.count("ContactsDeleted", 1),
                Outcome::Skipped(_) => report.count("SalesforceRecordsMissing", 1),
                _ => {}
            }
            claimed[*c].results.deletes.push((id.clone(), outcome));
        }
    }
}
