//! Every port of the domain in one place: the small traits through which the executors do their I/O (the
//! adapters crate implements each against its service; `tests/src/fakes.rs` keeps an in-memory fake of each),
//! the deadline every call is bounded by, and how a call through a port failed. Import a port from here, and
//! only from here.
//!
//! | port | what it is | implemented by |
//! | --- | --- | --- |
//! | [`EntityWriter`] | Reltio entity writes (crosswalk-keyed upserts, a Contact's crosswalk written back, crosswalk deletion) | the Reltio client |
//! | [`EntitySource`] | Reltio entity reads (a merged loser's URI resolves to the winner) | the Reltio client |
//! | [`Crm`] | Salesforce: Collections updates, deletes and upserts by external id, typed record queries, SOAP `merge()` | the Salesforce client |
//! | [`Ledger`] | crm-updater's per-entity ledger (order, idempotency, steps) | DynamoDB |
//! | [`KeyLedger`] | cdc-ingest's per-crosswalk-key ledger | DynamoDB |
//! | [`MessageSink`] | a queue or topic messages are handed to (events, dead letters) | SQS, SNS |
//! | [`MessageVisibility`] | retry backoff on a consumed queue | SQS |
//! | [`RecordSink`] | analytics change records | Firehose |
//! | [`BatchSignal`] | the analytics refresh signal | EventBridge |
//! | [`DeliveredIds`] | ids already handed on (webhook replays, analytics duplicates) | DynamoDB |
//! | [`PayloadStore`] | the letter store: payloads too large for their dead letters | S3 |

use crate::analytics::Report as AnalyticsReport;
use crate::backoff::{VisibilityChange, VisibilityFailure};
use crate::cdc::versions::Applied as KeyApplied;
use crate::crm::salesforce::{
    MergeOutcome, MergeRequest, RecordOutcome, RecordQuery, RecordUpdate, RecordUpsert,
    UpsertOutcome,
};
use crate::letter::PayloadObject;
use crate::ordering::{Applied, Claim, Fence, Order};
use crate::queue::{OutgoingMessage, SendFailure};
use crate::reltio::model::{CrosswalkKey, EntityBody, ItemOutcome};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The instant by which an invocation's calls must be done (Lambda's deadline less a margin for answering).
pub type Deadline = Instant;

/// Time left before `deadline`, zero when past it.
pub fn remaining(deadline: Deadline) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A call through a port that failed as a whole, classified by the adapter: the domain only needs to know
/// whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// May succeed later (unavailable, throttled, timed out, out of time, credentials unreadable).
    #[error("{0}")]
    Transient(String),
    /// The request itself was refused as invalid: sending it again fails the same way. A request carrying
    /// several items is split to find the item at fault.
    #[error("{0}")]
    Rejected(String),
}

impl PortError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient(_))
    }
}

/// Reltio entity writes (the CDC path).
pub trait EntityWriter: Sync {
    /// `POST /entities`: one outcome per entity, in request order; `partial_override` sends
    /// `options=partialOverride`.
    fn post_entities<'a>(
        &'a self,
        entities: &'a [&'a EntityBody],
        partial_override: bool,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<ItemOutcome>, PortError>>;

    /// Removes the crosswalk for good (already gone counts as done).
    fn delete_crosswalk<'a>(
        &'a self,
        key: &'a CrosswalkKey,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<(), PortError>>;
}

/// Reltio entity reads (a merged loser's URI resolves to the winner).
pub trait EntitySource: Sync {
    fn entity<'a>(
        &'a self,
        uri: &'a str,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Value, PortError>>;
}

/// The Salesforce calls the crm-updater makes.
pub trait Crm: Sync {
    /// One sObject Collections update (the executor keeps it within 200 records and 10 type chunks); one
    /// outcome per record, in order.
    fn update<'a>(
        &'a self,
        records: &'a [&'a RecordUpdate],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, PortError>>;

    /// The records a typed query selects (every page), each with the fields it asked for.
    fn find<'a>(
        &'a self,
        query: &'a RecordQuery,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<Map<String, Value>>, PortError>>;

    /// SOAP `merge()`: one outcome per request, in order.
    fn merge<'a>(
        &'a self,
        requests: &'a [MergeRequest],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<MergeOutcome>, PortError>>;

    /// sObject Collections delete (`allOrNone: false`; the adapter sends at most 200 ids a call); one outcome per
    /// id, in order (a record already deleted is `Missing`).
    fn delete<'a>(
        &'a self,
        ids: &'a [&'a str],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, PortError>>;

    /// sObject Collections upsert by external id (the adapter sends one call per 200 records of one sObject and
    /// field); one outcome per record, in order.
    fn upsert<'a>(
        &'a self,
        records: &'a [&'a RecordUpsert],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<UpsertOutcome>, PortError>>;
}

/// crm-updater's ledger: per Reltio entity, what was applied (DynamoDB in AWS; a fake in tests).
pub trait Ledger: Send + Sync {
    /// Takes the entity's lease for `owner` unless the event is a duplicate or stale; with a `fence`, also marks
    /// the merge's losers, all in one conditional transaction.
    fn claim<'a>(
        &'a self,
        entity: &'a str,
        order: &'a Order,
        event_id: &'a str,
        owner: &'a str,
        fence: Option<Fence<'a>>,
    ) -> BoxFuture<'a, Result<Claim, PortError>>;

    /// Records what `applied` says (Salesforce confirmed it) and releases the lease.
    fn commit<'a>(
        &'a self,
        entity: &'a str,
        applied: Applied<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), PortError>>;

    /// Releases the lease without recording anything.
    fn release<'a>(
        &'a self,
        entity: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), PortError>>;
}

/// cdc-ingest's key ledger: per crosswalk key, the newest source version applied.
pub trait KeyLedger: Sync {
    /// What was last applied to each of `keys` that the ledger knows.
    fn applied<'a>(
        &'a self,
        keys: &'a [&'a CrosswalkKey],
    ) -> BoxFuture<'a, Result<HashMap<CrosswalkKey, KeyApplied>, PortError>>;

    /// Records each entry unless a newer version is already recorded for its key.
    fn record<'a>(
        &'a self,
        entries: &'a [(CrosswalkKey, KeyApplied)],
    ) -> BoxFuture<'a, Result<(), PortError>>;
}

/// A queue or topic the functions hand messages to (SQS `SendMessageBatch`, SNS `PublishBatch`).
pub trait MessageSink: Sync {
    /// Sends every message (retrying what can be retried) and returns those still not sent, by input position.
    fn send<'a>(&'a self, messages: &'a [OutgoingMessage]) -> BoxFuture<'a, Vec<SendFailure>>;

    /// The queue is FIFO: messages need group and deduplication ids.
    fn is_fifo(&self) -> bool;
}

/// Changes messages' visibility timeouts on a queue (SQS `ChangeMessageVisibilityBatch`). A change that fails
/// only leaves its message to the queue's own visibility timeout, so the port never fails as a whole: it
/// returns the changes not made, by input position.
pub trait MessageVisibility: Sync {
    fn change<'a>(
        &'a self,
        queue_url: &'a str,
        changes: &'a [VisibilityChange],
    ) -> BoxFuture<'a, Vec<VisibilityFailure>>;
}

/// Where change records go (Firehose `PutRecordBatch` in production).
pub trait RecordSink: Sync {
    /// Writes every record (one NDJSON line each), retrying what can be retried within the deadline; one result
    /// per record, in order. A record the sink reports failed was not written.
    fn put<'a>(
        &'a self,
        records: &'a [Vec<u8>],
        deadline: Deadline,
    ) -> BoxFuture<'a, Vec<Result<(), PortError>>>;
}

/// Tells dashboards that a batch was written (EventBridge in production); best effort.
pub trait BatchSignal: Sync {
    /// Signals the batch `report` describes; `Ok(false)` when it wrote nothing (nothing sent).
    fn batch_written<'a>(
        &'a self,
        report: &'a AnalyticsReport,
    ) -> BoxFuture<'a, Result<bool, PortError>>;
}

/// Which ids were already handed on (a webhook delivery answered 200, an analytics record written), so that a
/// replay is answered again without a second copy. Ids are remembered only once their effect is durable, and a
/// cache that cannot answer counts nothing as seen: it can cost a duplicate (which the consumers' ledgers
/// absorb), never an event.
pub trait DeliveredIds: Send + Sync {
    /// For each id, whether it was delivered before (within the cache's time to live).
    fn seen<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<bool>, PortError>>;

    /// Remembers the ids as delivered.
    fn remember<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<(), PortError>>;
}

/// Where the letter store wrote an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bucket: String,
    pub key: String,
}

/// The letter store: payloads too large for their dead letters, kept as objects (S3 in production) that the
/// letters point at. A payload that cannot be stored leaves its record to be retried: nothing is acknowledged
/// before its payload is kept.
pub trait PayloadStore: Sync {
    /// Writes the object (its key names its payload's hash: writing it twice is harmless) and says where.
    fn put<'a>(
        &'a self,
        object: &'a PayloadObject,
    ) -> BoxFuture<'a, Result<StoredObject, PortError>>;
}

/// Sends `items` through `send` as one request; a request the far side refuses as a whole
/// ([`PortError::Rejected`]) is split in halves and each half sent again, until the item at fault stands alone,
/// so that one invalid item does not fail its neighbours. `send` takes the items and gives them back with one
/// result per item (a missing result counts as a transient failure: nothing says the item was applied).
/// Returns each item with its result, in input order, and the number of requests made.
pub async fn isolate_rejections<'a, T, R>(
    items: Vec<T>,
    send: impl Fn(Vec<T>) -> futures::future::BoxFuture<'a, (Vec<T>, Result<Vec<R>, PortError>)>,
) -> (Vec<(T, Result<R, PortError>)>, usize) {
    let mut done: Vec<(usize, T, Result<R, PortError>)> = Vec::with_capacity(items.len());
    let mut pending: Vec<Vec<(usize, T)>> = vec![items.into_iter().enumerate().collect()];
    let mut requests = 0;
    while let Some(batch) = pending.pop() {
        if batch.is_empty() {
            continue;
        }
        let (positions, items): (Vec<usize>, Vec<T>) = batch.into_iter().unzip();
        requests += 1;
        let (items, result) = send(items).await;
        match result {
            Err(PortError::Rejected(_)) if items.len() > 1 => {
                let mut first: Vec<(usize, T)> = positions.into_iter().zip(items).collect();
                let second = first.split_off(first.len() / 2);
                // Popped last-in first: the first half goes out first.
                pending.push(second);
                pending.push(first);
            }
            Err(e) => {
                for (p, item) in positions.into_iter().zip(items) {
                    done.push((p, item, Err(e.clone())));
                }
            }
            Ok(results) => {
                let mut results = results.into_iter();
                for (p, item) in positions.into_iter().zip(items) {
                    let r = results.next().ok_or_else(|| {
                        PortError::Transient("no result was returned for this item".into())
                    });
                    done.push((p, item, r));
                }
            }
        }
    }
    done.sort_by_key(|(p, _, _)| *p);
    (done.into_iter().map(|(_, t, r)| (t, r)).collect(), requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn a_rejected_request_is_split_until_the_bad_item_stands_alone() {
        let sent = std::sync::Mutex::new(Vec::new());
        let (results, requests) = block_on(isolate_rejections(
            vec!["a", "b", "bad", "c", "d"],
            |items: Vec<&str>| {
                sent.lock().unwrap().push(items.join(""));
                Box::pin(async move {
                    let result = if items.contains(&"bad") {
                        Err(PortError::Rejected("400".into()))
                    } else {
                        Ok(items.iter().map(|i| i.to_uppercase()).collect())
                    };
                    (items, result)
                })
            },
        ));
        let got: Vec<(&str, Result<String, PortError>)> = results;
        assert_eq!(
            got,
            vec![
                ("a", Ok("A".into())),
                ("b", Ok("B".into())),
                ("bad", Err(PortError::Rejected("400".into()))),
                ("c", Ok("C".into())),
                ("d", Ok("D".into())),
            ]
        );
        // [a b bad c d] → [a b] + [bad c d] → [bad] + [c d]
        assert_eq!(
            *sent.lock().unwrap(),
            vec!["abbadcd", "ab", "badcd", "bad", "cd"]
        );
        assert_eq!(requests, 5);
    }

    #[test]
    fn a_transient_failure_or_a_short_answer_is_not_split() {
        let (results, requests) = block_on(isolate_rejections(vec![1, 2, 3], |items: Vec<i32>| {
            Box::pin(async move {
                let r = if items.len() == 3 {
                    Ok(vec![10])
                } else {
                    Err(PortError::Transient("down".into()))
                };
                (items, r)
            })
        }));
        assert_eq!(requests, 1);
        assert_eq!(results[0].1, Ok(10));
        assert!(results[1..]
            .iter()
            .all(|(_, r)| r.as_ref().is_err_and(PortError::is_transient)));
    }
}
