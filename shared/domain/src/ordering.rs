//! Ordering and idempotency verdicts for the crm-updater: what the ledger knows about one Reltio entity, whether
//! a change may be applied given that, what a commit records (per step of a change, so that a step that
//! succeeded is never redone). Pure: no I/O; the `Ledger` port (crate::ports) is implemented on DynamoDB by the
//! adapters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What orders one change against what was applied before for the same entity.
///
/// Reltio's `objectVersion` is a counter per object (docs/reference.md), so a version is only ever compared
/// with versions of the same `object` (a merged loser's events carry the loser's counter, not the winner's).
/// The snapshot time is the entity's own `updatedTime` of the snapshot being applied (the event's, or the
/// fetched entity's): a snapshot older than one already applied to this entity is stale whatever event brought
/// it.
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
    /// Go ahead, knowing what was applied before (what was written, merged or given up on).
    Granted(EntityRecord),
    /// This event id was already applied.
    Duplicate,
    /// A newer version of the same object, or a newer snapshot of the entity, was already applied.
    Stale,
    /// Another invocation holds the entity's lease (or one of a merge's losers): try again later.
    Busy,
}

/// A merge being claimed: in the same conditional transaction that takes the winner's lease, each loser's own
/// record is marked merged into the winner at `merged_at` (epoch ms), unless another invocation holds that
/// loser's lease (then the claim is `Busy`). From then on a snapshot of a loser up to `merged_at` is stale, so
/// a loser's older change can neither be in flight while the merge is applied nor be applied after it.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub losers: &'a [String],
    pub merged_at: i64,
}

/// What a commit records. All but the event id is optional, so that a change applied in part records exactly
/// the steps that succeeded.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    pub event_id: &'a str,
    /// Nothing of the change is left to do: the event id is recorded, and a later delivery of it is a
    /// duplicate. `false` while a step failed (transiently, or for good and dead-lettered), so that a
    /// redelivery or a redrive runs the remaining steps again.
    pub complete: bool,
    /// The change's order, once its main write is done (the survivor Contact written, or unchanged): from then
    /// on older changes are stale. `None` when the main write did not happen.
    pub order: Option<&'a Order>,
    /// `(record id, hash of the fields written)` for every record written and confirmed.
    pub written: &'a [(String, String)],
    /// Contact Ids merged away (SOAP `merge()`).
    pub merged: &'a [String],
    /// Records whose write failed for good (dead-lettered with this event): when they fail again in later
    /// changes of the entity, those changes are not failed for it.
    pub given_up: &'a [String],
    /// Records given up on earlier and now written.
    pub recovered: &'a [String],
    /// The Contact created for the entity (upserted by its external id), once Salesforce confirmed it: a later
    /// try of the same change writes its crosswalk back without creating again.
    pub created: Option<&'a str>,
}

impl<'a> Applied<'a> {
    /// A commit of `event_id` recording nothing yet.
    pub fn nothing(event_id: &'a str) -> Applied<'a> {
        Applied {
            event_id,
            complete: false,
            order: None,
            written: &[],
            merged: &[],
            given_up: &[],
            recovered: &[],
            created: None,
        }
    }

    /// Nothing to record: the commit is a plain release.
    pub fn is_empty(&self) -> bool {
        !self.complete
            && self.order.is_none()
            && self.written.is_empty()
            && self.merged.is_empty()
            && self.given_up.is_empty()
            && self.recovered.is_empty()
            && self.created.is_none()
    }
}

/// Event ids kept per entity (the newest); older duplicates are still caught by the version checks.
pub const MAX_EVENT_IDS: usize = 50;
/// Records given up on kept per entity; beyond it the oldest entries are forgotten (those records are then
/// tried again by later changes and dead-lettered again if they still fail).
pub const MAX_GIVEN_UP: usize = 100;

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
    /// Record id → hash of the fields last written to it (a write hashing the same is a no-op).
    pub written: BTreeMap<String, String>,
    /// Contact Ids merged away (SOAP `merge()`).
    pub merged: BTreeSet<String>,
    /// Record id → the event whose write of it failed for good (in that event's dead letter), oldest first.
    pub given_up: Vec<(String, String)>,
    /// Set when this entity lost a merge: the winner's URI.
    pub merged_into: Option<String>,
    /// The time of that merge (epoch ms): this entity's own snapshots up to it are stale.
    pub merged_at: Option<i64>,
    /// The Contact Id created for this entity (`create = true`), whether or not its crosswalk is written back yet.
    pub created: Option<String>,
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
    /// loser's snapshot delivered after its merge; a snapshot newer than the merge, e.g. after an unmerge, is
    /// fresh). Versions of different objects are never compared; no snapshot time, no merge check.
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

    /// Whether writing `fields_hash` to `record` would change nothing.
    pub fn unchanged(&self, record: &str, fields_hash: &str) -> bool {
        self.written.get(record).is_some_and(|h| h == fields_hash)
    }

    /// Whether another event than `event_id` gave up on `record`: its failure is already in that event's dead
    /// letter, so failing again does not fail this change (it is still tried: the cause may have been fixed).
    pub fn given_up_by_other(&self, record: &str, event_id: &str) -> bool {
        self.given_up
            .iter()
            .any(|(r, e)| r == record && e != event_id)
    }

    /// Whether this loser needs marking for a merge at `merged_at` (a later merge already recorded wins).
    pub fn needs_fence(&self, merged_at: i64) -> bool {
        self.merged_at.is_none_or(|at| at < merged_at)
    }

    /// The record after `applied` was committed.
    pub fn with(mut self, applied: &Applied<'_>) -> EntityRecord {
        if let Some(order) = applied.order {
            if let (Some(object), Some(version)) = (&order.object, order.version) {
                let v = self.versions.entry(object.clone()).or_insert(version);
                *v = (*v).max(version);
            }
            self.snapshot_time = match (self.snapshot_time, order.snapshot_time) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if applied.complete {
            self.event_ids.retain(|e| e != applied.event_id);
            self.event_ids.push(applied.event_id.to_owned());
            if self.event_ids.len() > MAX_EVENT_IDS {
                self.event_ids.drain(..self.event_ids.len() - MAX_EVENT_IDS);
            }
        }
        for (record, hash) in applied.written {
            self.written.insert(record.clone(), hash.clone());
        }
        self.merged.extend(applied.merged.iter().cloned());
        if let Some(id) = applied.created {
            self.created = Some(id.to_owned());
        }
        self.given_up
            .retain(|(r, _)| !applied.recovered.contains(r));
        self.give_up(applied.given_up, applied.event_id);
        self
    }

    /// Records that `event_id` gave up on `records` (kept to [`MAX_GIVEN_UP`], oldest forgotten first).
    fn give_up(&mut self, records: &[String], event_id: &str) {
        for r in records {
            self.given_up.retain(|(g, _)| g != r);
            self.given_up.push((r.clone(), event_id.to_owned()));
        }
        if self.given_up.len() > MAX_GIVEN_UP {
            self.given_up.drain(..self.given_up.len() - MAX_GIVEN_UP);
        }
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
            complete: true,
            order: Some(order),
            ..Applied::nothing(event_id)
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

    #[test]
    fn a_change_applied_in_part_records_its_steps_but_not_its_event_id() {
        let o = order("entities/W", 3, Some(3_000));
        let written = vec![("003A".to_owned(), "h1".to_owned())];
        let given_up = vec!["500X".to_owned()];
        let partial = Applied {
            complete: false,
            order: Some(&o),
            written: &written,
            given_up: &given_up,
            ..Applied::nothing("merge-1")
        };
        let record = EntityRecord::default().with(&partial);
        // Not a duplicate: a redrive of the same event runs again, and finds the survivor unchanged ...
        assert_eq!(record.judge(&o, "merge-1"), Verdict::Fresh);
        assert!(record.unchanged("003A", "h1"));
        assert!(!record.unchanged("003A", "h2"));
        // ... while the order advanced: an older change is stale.
        assert_eq!(
            record.judge(&order("entities/W", 2, Some(2_000)), "old"),
            Verdict::Stale
        );
        // The record given up on is known to other events; to the same one (a redrive) it is its own failure.
        assert!(record.given_up_by_other("500X", "later"));
        assert!(!record.given_up_by_other("500X", "merge-1"));
        assert!(!record.given_up_by_other("500Y", "later"));
        // Written on the redrive: forgotten as given up, and the event is now complete.
        let recovered = vec!["500X".to_owned()];
        let record = record.with(&Applied {
            complete: true,
            recovered: &recovered,
            ..Applied::nothing("merge-1")
        });
        assert!(!record.given_up_by_other("500X", "later"));
        assert_eq!(record.judge(&o, "merge-1"), Verdict::Duplicate);
        assert_eq!(record.versions["entities/W"], 3, "no order: unchanged");
    }

    #[test]
    fn records_given_up_on_are_bounded_oldest_first() {
        let mut record = EntityRecord::default();
        for i in 0..MAX_GIVEN_UP + 3 {
            let ids = vec![format!("r{i}")];
            record = record.with(&Applied {
                given_up: &ids,
                ..Applied::nothing("e")
            });
        }
        assert_eq!(record.given_up.len(), MAX_GIVEN_UP);
        assert_eq!(record.given_up[0].0, "r3");
        assert!(Applied::nothing("e").is_empty());
    }

    #[test]
    fn a_loser_is_fenced_only_by_a_later_merge() {
        let mut record = EntityRecord::default();
        assert!(record.needs_fence(5));
        record.merged_at = Some(5);
        assert!(!record.needs_fence(5));
        assert!(!record.needs_fence(4));
        assert!(record.needs_fence(6));
    }
}
