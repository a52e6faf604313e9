//! The CDC key ledger's verdicts: the source version of a change (its commit time and its offset in the
//! transaction), what was last applied per crosswalk key, and which writes are older than that. Pure; the
//! `KeyLedger` port is implemented on DynamoDB by the adapters.
//!
//! It makes replays and primary-key changes order-safe: DMS partitions a primary-key change by the new key, so
//! on another shard an older change of the old key can arrive after the old key was retired; and a replay or a
//! dead-letter redrive can bring back records older than what was applied since.

use crate::dms::{parse_dms_timestamp, DmsRecord};
use crate::reltio::model::CrosswalkKey;
use std::collections::HashMap;

/// Where a change stands in its source's history: ordered by commit time (µs), then by the record's offset in
/// its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceVersion {
    pub commit_micros: i64,
    pub record: u64,
}

impl SourceVersion {
    /// The record's version, when DMS sent its commit timestamp (`IncludeTransactionDetails`); `None`: the
    /// change cannot be ordered and is always applied.
    pub fn of(record: &DmsRecord) -> Option<SourceVersion> {
        let commit = parse_dms_timestamp(record.commit_timestamp.as_deref()?)?;
        Some(SourceVersion {
            commit_micros: commit.timestamp_micros(),
            record: record
                .transaction_record_id
                .as_deref()
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or(0),
        })
    }
}

/// What was last applied to a crosswalk key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub version: SourceVersion,
    /// The last applied change retired the key (a delete, or the old key of a primary-key change).
    pub retired: bool,
}

/// Whether a write of `version` to a key is older than what was applied to it: then it is skipped (applying
/// it would bring back an older state, or revive a retired key). An equal version is a redelivery of the same
/// change, applied again (idempotent); an unversioned change is never stale.
pub fn is_stale(version: Option<SourceVersion>, applied: Option<&Applied>) -> bool {
    matches!((version, applied), (Some(v), Some(a)) if v < a.version)
}

/// The entries to record once writes are done: per key the newest version written, and whether that write
/// retired it. `writes` holds `(key, version, retires)` in application order.
pub fn entries<'a>(
    writes: impl IntoIterator<Item = (&'a CrosswalkKey, SourceVersion, bool)>,
) -> Vec<(CrosswalkKey, Applied)> {
    let mut newest: HashMap<&CrosswalkKey, Applied> = HashMap::new();
    for (key, version, retired) in writes {
        let entry = newest.entry(key).or_insert(Applied { version, retired });
        if version >= entry.version {
            *entry = Applied { version, retired };
        }
    }
    let mut out: Vec<(CrosswalkKey, Applied)> =
        newest.into_iter().map(|(k, a)| (k.clone(), a)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(micros: i64, record: u64) -> SourceVersion {
        SourceVersion {
            commit_micros: micros,
            record,
        }
    }

    fn key(value: &str) -> CrosswalkKey {
        CrosswalkKey {
            source: "configuration/sources/S".into(),
            source_table: None,
            value: value.into(),
        }
    }

    #[test]
    fn only_strictly_older_versions_are_stale() {
        let applied = Applied {
            version: v(100, 2),
            retired: true,
        };
        assert!(is_stale(Some(v(99, 9)), Some(&applied)));
        assert!(
            is_stale(Some(v(100, 1)), Some(&applied)),
            "same commit, earlier record"
        );
        assert!(!is_stale(Some(v(100, 2)), Some(&applied)), "a redelivery");
        assert!(!is_stale(Some(v(101, 0)), Some(&applied)));
        assert!(!is_stale(None, Some(&applied)), "unversioned: never stale");
        assert!(!is_stale(Some(v(1, 0)), None), "unknown key");
    }

    #[test]
    fn the_newest_write_per_key_is_recorded() {
        let (a, b) = (key("a"), key("b"));
        let out = entries([
            (&a, v(10, 0), false),
            (&b, v(10, 1), true),
            (&a, v(20, 0), true),
            (&a, v(15, 0), false),
        ]);
        assert_eq!(
            out,
            vec![
                (
                    a.clone(),
                    Applied {
                        version: v(20, 0),
                        retired: true
                    }
                ),
                (
                    b.clone(),
                    Applied {
                        version: v(10, 1),
                        retired: true
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_record_without_a_commit_timestamp_has_no_version() {
        let with = DmsRecord::parse(
            include_bytes!("../../../../tests/fixtures/dms/insert.json"),
            "before-image",
        )
        .unwrap();
        let version = SourceVersion::of(&with).unwrap();
        assert_eq!(version.record, 1);
        let without = DmsRecord::parse(
            include_bytes!("../../../../tests/fixtures/dms/load-minimal.json"),
            "before-image",
        )
        .unwrap();
        assert_eq!(SourceVersion::of(&without), None);
    }
}
