//! Ordering and idempotency verdicts for the crm-updater: what the ledger knows about one Reltio entity, whether
//! a change may be applied given that, what a commit records, and the `Ledger` port the DynamoDB adapter
//! implements. Pure: no I/O.

use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// DynamoDB could not be reached or failed: always transient.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// What orders one change against what was applied before for the same entity.
///
/// Reltio's `objectVersion` is a counter per object (REFERENCE.md), so a version is only ever compared with
/// versions of the same `object` (a merged loser's events carry the loser's counter, not the winner's). The
/// snapshot time is the entity's own `updatedTime` of the snapshot being applied (the event's, or the fetched
/// entity's): a snapshot older than one already applied to this entity is stale whatever event brought it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    /// The Reltio object the version counts for (the event's `sourceObjectUri`).
    pub object: Option<String>,
    /// `objectVersion` (or a timestamp when the stream carries none); `None`: no order.
    pub version: Option<i64>,
    /// The snapshot's `updatedTime` (epoch ms), when known.
    pub snapshot_time: Option<i64>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Go ahead. `last_hash`: the hash of what was last written for this entity; `merged`: the Contact Ids
    /// already merged away (SOAP `merge()`), which need no further merge.
    Granted {
        last_hash: Option<String>,
        merged: BTreeSet<String>,
    },
    /// This event id was already applied.
    Duplicate,
    /// A newer version of the same object, or a newer snapshot of the entity, was already applied.
    Stale,
    /// Another invocation holds the entity's lease: try again later.
    Busy,
}

/// What a commit records.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    pub order: &'a Order,
    pub event_id: &'a str,
    /// Hash of the plan written.
    pub hash: &'a str,
    /// Contact Ids merged away by this change (added to those already recorded).
    pub merged: &'a [String],
}

pub trait Ledger: Send + Sync {
    /// Takes the entity's lease for `owner` unless the event is a duplicate or stale.
    fn claim<'a>(
        &'a self,
        entity: &'a str,
        order: &'a Order,
        event_id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>>;

    /// Records the change as applied (Salesforce confirmed) and releases the lease: per object the highest
    /// version seen, the newest snapshot time, the event id, the hash and the merged Contacts.
    fn commit<'a>(
        &'a self,
        entity: &'a str,
        applied: Applied<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// Records on the loser's own record that it was merged into `winner` at `merged_at` (epoch ms; call only
    /// once Salesforce confirmed the merge): from then on a snapshot of `loser` with `updatedTime <= merged_at`
    /// is stale. Keeps the latest merge when called again; does not need or touch the loser's lease, but bumps
    /// its `rev` so that a claim judged on the record before the merge was recorded is refused (retried).
    fn record_merge<'a>(
        &'a self,
        loser: &'a str,
        winner: &'a str,
        merged_at: i64,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// Releases the lease without recording anything.
    fn release<'a>(
        &'a self,
        entity: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
}

/// Event ids kept per entity (the newest); older duplicates are still caught by the version checks.
pub const MAX_EVENT_IDS: usize = 50;

/// Default time an entity's record is kept after its last write: longer than SQS's 14-day maximum retention,
/// so no event that can still be delivered outlives its entity's record.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(35 * 24 * 3600);

/// What the ledger knows about one entity (pure; the DynamoDB item in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityRecord {
    /// Source object URI → highest version applied.
    pub versions: BTreeMap<String, i64>,
    /// Newest snapshot `updatedTime` applied.
    pub snapshot_time: Option<i64>,
    /// Newest last.
    pub event_ids: Vec<String>,
    pub hash: Option<String>,
    pub merged: BTreeSet<String>,
    /// Set when this entity lost a merge (applied and confirmed): the winner's URI.
    pub merged_into: Option<String>,
    /// The time of that merge (epoch ms): this entity's own snapshots up to it are stale.
    pub merged_at: Option<i64>,
}

/// Whether a change may be applied given what was applied before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    Duplicate,
    Stale,
}

impl EntityRecord {
    /// Duplicate when the event id was applied; stale when the same object's version applied is higher, or
    /// the snapshot applied is newer, or the entity was merged into another at or after the snapshot's time (a
    /// loser's snapshot delivered after its merge was applied; a snapshot newer than the merge, e.g. after an
    /// unmerge, is fresh). Versions of different objects are never compared; no snapshot time, no merge check.
    pub fn judge(&self, order: &Order, event_id: &str) -> Verdict {
        if self.event_ids.iter().any(|e| e == event_id) {
            return Verdict::Duplicate;
        }
        if let (Some(_), Some(at), Some(t)) =
            (&self.merged_into, self.merged_at, order.snapshot_time)
        {
            if t <= at {
                return Verdict::Stale;
            }
        }
        if let (Some(object), Some(version)) = (&order.object, order.version) {
            if self.versions.get(object).is_some_and(|&a| a > version) {
                return Verdict::Stale;
            }
        }
        if let (Some(applied), Some(t)) = (self.snapshot_time, order.snapshot_time) {
            if applied > t {
                return Verdict::Stale;
            }
        }
        Verdict::Fresh
    }

    /// The record after `applied` was committed.
    pub fn with(mut self, applied: &Applied<'_>) -> EntityRecord {
        let order = applied.order;
        if let (Some(object), Some(version)) = (&order.object, order.version) {
            let v = self.versions.entry(object.clone()).or_insert(version);
            *v = (*v).max(version);
        }
        self.snapshot_time = match (self.snapshot_time, order.snapshot_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.event_ids.retain(|e| e != applied.event_id);
        self.event_ids.push(applied.event_id.to_owned());
        if self.event_ids.len() > MAX_EVENT_IDS {
            self.event_ids.drain(..self.event_ids.len() - MAX_EVENT_IDS);
        }
        self.hash = Some(applied.hash.to_owned());
        self.merged.extend(applied.merged.iter().cloned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(object: &str, version: i64, snapshot_time: Option<i64>) -> Order {
        Order {
            object: Some(object.into()),
            version: Some(version),
            snapshot_time,
        }
    }

    fn applied<'a>(order: &'a Order, event_id: &'a str) -> Applied<'a> {
        Applied {
            order,
            event_id,
            hash: "h",
            merged: &[],
        }
    }

    #[test]
    fn versions_of_different_objects_are_never_compared() {
        // The loser L's ENTITY_LOST_MERGE (L's objectVersion 5) was applied under the winner's record ...
        let lost = order("entities/L", 5, None);
        let record = EntityRecord::default().with(&applied(&lost, "L-5-LOST"));
        // ... the winner's own change with its lower objectVersion 4 is fresh, L's older event is stale.
        assert_eq!(
            record.judge(&order("entities/W", 4, None), "W-4"),
            Verdict::Fresh
        );
        assert_eq!(
            record.judge(&order("entities/L", 4, None), "L-4"),
            Verdict::Stale
        );
        assert_eq!(record.judge(&lost, "L-5-LOST"), Verdict::Duplicate);
    }

    #[test]
    fn an_older_snapshot_of_the_entity_is_stale_whatever_event_brought_it() {
        let fetched = Order {
            object: Some("entities/L".into()),
            version: Some(9),
            snapshot_time: Some(2_000),
        };
        let record = EntityRecord::default().with(&applied(&fetched, "a"));
        assert_eq!(
            record.judge(&order("entities/W", 1, Some(1_999)), "b"),
            Verdict::Stale
        );
        assert_eq!(
            record.judge(&order("entities/W", 1, Some(2_000)), "b"),
            Verdict::Fresh
        );
        // No order at all: never stale.
        assert_eq!(record.judge(&Order::default(), "c"), Verdict::Fresh);
        // The recorded version and snapshot time only grow.
        let record = record.with(&applied(&order("entities/L", 3, Some(1_000)), "d"));
        assert_eq!(record.versions["entities/L"], 9);
        assert_eq!(record.snapshot_time, Some(2_000));
    }

    #[test]
    fn a_merged_losers_snapshot_up_to_the_merge_time_is_stale() {
        let mut record =
            EntityRecord::default().with(&applied(&order("entities/L", 1, Some(1_000)), "e0"));
        // Not merged: an older-than-nothing snapshot of L is fresh.
        let e1 = order("entities/L", 2, Some(1_500));
        assert_eq!(record.judge(&e1, "e1"), Verdict::Fresh);
        record.merged_into = Some("entities/W".into());
        record.merged_at = Some(2_000);
        assert_eq!(record.judge(&e1, "e1"), Verdict::Stale);
        assert_eq!(
            record.judge(&order("entities/L", 3, Some(2_000)), "e2"),
            Verdict::Stale,
            "a snapshot at the merge time is the pre-merge state"
        );
        // After an unmerge, L's newer snapshots apply again.
        assert_eq!(
            record.judge(&order("entities/L", 4, Some(2_001)), "e3"),
            Verdict::Fresh
        );
        // Without a snapshot time there is nothing to compare with the merge.
        let unordered = Order {
            object: Some("entities/L".into()),
            version: Some(5),
            snapshot_time: None,
        };
        assert_eq!(record.judge(&unordered, "e4"), Verdict::Fresh);
        // A merge time without a winner (never written so) is ignored.
        record.merged_into = None;
        assert_eq!(record.judge(&e1, "e1"), Verdict::Fresh);
    }

    #[test]
    fn event_ids_keep_the_newest() {
        let o = Order::default();
        let mut record = EntityRecord::default();
        for i in 0..MAX_EVENT_IDS + 5 {
            record = record.with(&applied(&o, &format!("e{i}")));
        }
        assert_eq!(record.event_ids.len(), MAX_EVENT_IDS);
        assert_eq!(record.event_ids.first().unwrap(), "e5");
        assert_eq!(record.judge(&o, "e4"), Verdict::Fresh);
        assert_eq!(
            record.judge(&o, &format!("e{}", MAX_EVENT_IDS + 4)),
            Verdict::Duplicate
        );
    }
}
