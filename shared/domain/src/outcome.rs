//! How one input ended: the one outcome type, from the executors through settlement to metrics and logs.
//!
//! Every record, message or event a function is handed ends in exactly one [`Outcome`]: done, deliberately
//! skipped (a [`SkipReason`], counted under the metric the reason names), permanent (dead-lettered with the
//! reason, then acknowledged) or transient (reported so that the event source delivers it again). Reasons say
//! what failed in codes and field names, never in values (they reach logs and dead letters).
//!
//! Beside it stand three smaller vocabularies, each with one conversion into an `Outcome`: how a port call
//! failed as a whole ([`crate::ports::PortError`]), how one item of a batch API call ended
//! ([`crate::reltio::model::ItemOutcome`] for Reltio's entity arrays, [`crate::crm::salesforce::RecordOutcome`]
//! for Salesforce Collections), and how a SOAP merge ended ([`crate::crm::salesforce::MergeOutcome`]).

use crate::ports::PortError;

/// How one input ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is durable (written, applied, enqueued).
    Done,
    /// Deliberately not applied: counted and logged, never dead-lettered.
    Skipped(SkipReason),
    /// Can never succeed: dead-lettered with the reason, then acknowledged.
    Permanent(String),
    /// May succeed later: reported, so that the event source delivers it again.
    Transient(String),
}

impl Outcome {
    pub fn is_transient(&self) -> bool {
        matches!(self, Outcome::Transient(_))
    }

    /// A port call's failure, with what was being done (`context`) in front of its reason.
    pub fn from_port(context: &str, e: PortError) -> Outcome {
        match e {
            PortError::Transient(m) => Outcome::Transient(format!("{context}: {m}")),
            PortError::Rejected(m) => Outcome::Permanent(format!("{context}: {m}")),
        }
    }

    /// The outcome of an input with several parts (a record's writes, a message's events): transient beats
    /// permanent (the input must come again, else be dead-lettered), and one part applied makes the input applied
    /// even where other parts were skipped.
    pub fn combine(self, other: Outcome) -> Outcome {
        use Outcome::*;
        match (self, other) {
            (Transient(r), _) | (_, Transient(r)) => Transient(r),
            (Permanent(r), _) | (_, Permanent(r)) => Permanent(r),
            (Done, _) | (_, Done) => Done,
            (Skipped(r), Skipped(_)) => Skipped(r),
        }
    }
}

/// Why an input was deliberately not applied. Each reason is counted under its own metric
/// ([`SkipReason::metric`]); the code ([`SkipReason::code`]) is what logs and plans print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Already applied (the same event or record id).
    Duplicate,
    /// Older than what was already applied.
    Stale,
    /// An event type the function's mapping or subscription does not take.
    EventType,
    /// An entity type the function's mapping or subscription does not take.
    EntityType,
    /// Left out by the subscription filter (stream-consumer).
    Filtered,
    /// A record that holds no event (stream-consumer: an empty array).
    Empty,
    /// No crosswalk names a record of the target (crm-updater: no live Contact crosswalk).
    NoCrosswalk,
    /// The target record cannot be created yet: a field it requires has no golden value (crm-updater's
    /// `require`).
    Incomplete,
    /// The target record no longer exists (deleted, merged away): nothing to do.
    RecordMissing,
    /// Reltio says no golden value changed (`ovChanged: false`), and the consumer reads golden values only.
    NoGoldenChange,
    /// A DMS control record (table definitions and the like).
    Control,
    /// A change to DMS's own tables (`awsdms_*`).
    DmsInternal,
    /// A change to a table the mapping does not list.
    Unmapped,
    /// A Kafka tombstone (the null value after a delete).
    Tombstone,
    /// The delete half of a Debezium primary-key change (the create half retires the old key).
    KeyChangeDelete,
    /// A source table was truncated: Reltio keeps its entities until someone decides (logged as a warning).
    Truncate,
}

impl SkipReason {
    pub const ALL: [SkipReason; 16] = [
        SkipReason::Duplicate,
        SkipReason::Stale,
        SkipReason::EventType,
        SkipReason::EntityType,
        SkipReason::Filtered,
        SkipReason::Empty,
        SkipReason::NoCrosswalk,
        SkipReason::Incomplete,
        SkipReason::RecordMissing,
        SkipReason::NoGoldenChange,
        SkipReason::Control,
        SkipReason::DmsInternal,
        SkipReason::Unmapped,
        SkipReason::Tombstone,
        SkipReason::KeyChangeDelete,
        SkipReason::Truncate,
    ];

    /// The reason as logs and plans print it (`stale`, `event-type`, …).
    pub fn code(self) -> &'static str {
        match self {
            SkipReason::Duplicate => "duplicate",
            SkipReason::Stale => "stale",
            SkipReason::EventType => "event-type",
            SkipReason::EntityType => "entity-type",
            SkipReason::Filtered => "filtered",
            SkipReason::Empty => "empty",
            SkipReason::NoCrosswalk => "no-crosswalk",
            SkipReason::Incomplete => "incomplete",
            SkipReason::RecordMissing => "record-missing",
            SkipReason::NoGoldenChange => "no-golden-change",
            SkipReason::Control => "control",
            SkipReason::DmsInternal => "dms-internal",
            SkipReason::Unmapped => "unmapped",
            SkipReason::Tombstone => "tombstone",
            SkipReason::KeyChangeDelete => "key-change-delete",
            SkipReason::Truncate => "truncate",
        }
    }

    /// The metric that counts it (`Skipped<Reason>`: `SkippedStale`, `SkippedEventType`, …), beside the
    /// function's total `RecordsSkipped`.
    pub fn metric(self) -> &'static str {
        match self {
            SkipReason::Duplicate => "SkippedDuplicate",
            SkipReason::Stale => "SkippedStale",
            SkipReason::EventType => "SkippedEventType",
            SkipReason::EntityType => "SkippedEntityType",
            SkipReason::Filtered => "SkippedFiltered",
            SkipReason::Empty => "SkippedEmpty",
            SkipReason::NoCrosswalk => "SkippedNoCrosswalk",
            SkipReason::Incomplete => "SkippedIncomplete",
            SkipReason::RecordMissing => "SkippedRecordMissing",
            SkipReason::NoGoldenChange => "SkippedNoGoldenChange",
            SkipReason::Control => "SkippedControl",
            SkipReason::DmsInternal => "SkippedDmsInternal",
            SkipReason::Unmapped => "SkippedUnmapped",
            SkipReason::Tombstone => "SkippedTombstone",
            SkipReason::KeyChangeDelete => "SkippedKeyChangeDelete",
            SkipReason::Truncate => "SkippedTruncate",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_code_and_metric() {
        let codes: std::collections::BTreeSet<&str> =
            SkipReason::ALL.iter().map(|r| r.code()).collect();
        let metrics: std::collections::BTreeSet<&str> =
            SkipReason::ALL.iter().map(|r| r.metric()).collect();
        assert_eq!(codes.len(), SkipReason::ALL.len());
        assert_eq!(metrics.len(), SkipReason::ALL.len());
        for r in SkipReason::ALL {
            assert!(r.metric().starts_with("Skipped"), "{r:?}");
            let name = format!("{r:?}");
            assert_eq!(
                r.metric(),
                format!("Skipped{name}"),
                "the metric is the variant's name"
            );
        }
    }

    #[test]
    fn parts_combine_failures_first_then_what_was_applied() {
        let t = || Outcome::Transient("down".into());
        let p = || Outcome::Permanent("bad".into());
        let s = || Outcome::Skipped(SkipReason::Stale);
        assert_eq!(Outcome::Done.combine(t()), t());
        assert_eq!(p().combine(t()), t());
        assert_eq!(p().combine(Outcome::Done), p());
        assert_eq!(s().combine(p()), p());
        assert_eq!(Outcome::Done.combine(s()), Outcome::Done);
        assert_eq!(s().combine(Outcome::Done), Outcome::Done);
        assert_eq!(
            s().combine(Outcome::Skipped(SkipReason::Duplicate)),
            s(),
            "the first skip's reason"
        );
    }

    #[test]
    fn a_port_failure_keeps_its_class_and_says_what_was_being_done() {
        assert_eq!(
            Outcome::from_port("fetching", PortError::Transient("down".into())),
            Outcome::Transient("fetching: down".into())
        );
        assert_eq!(
            Outcome::from_port("writing", PortError::Rejected("400".into())),
            Outcome::Permanent("writing: 400".into())
        );
    }
}
