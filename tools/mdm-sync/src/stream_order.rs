//! The order a stream redrive puts records back in (pure). When Lambda gives up on a Kinesis batch it discards the
//! rest of it and the shard moves on, and a dead-lettered record's key keeps changing after it: by the time an
//! operator redrives, later changes of the same keys have been applied. Re-putting only the old records would leave
//! each of those keys at an older state, so each key's later records (read from the shard up to its tip) are put
//! again after them, and every key ends at its newest record, its changes applied in the source's order.

use crate::kinesis_io::{compare_sequence, StreamRecord};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// What one shard's redrive puts back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// In the shard's sequence order, each record once.
    pub records: Vec<StreamRecord>,
    /// How many of them the letters named.
    pub named: usize,
    /// How many are later records of the same keys.
    pub later: usize,
}

/// The records the letters name (`named`, any order, duplicates allowed) and, of `shard_after` (the shard read from
/// the earliest named record on), each named key's records after that key's first named record.
pub fn ordered_replay(named: Vec<StreamRecord>, shard_after: Vec<StreamRecord>) -> Replay {
    let mut first: HashMap<String, String> = HashMap::new();
    for r in &named {
        first
            .entry(r.partition_key.clone())
            .and_modify(|s| {
                if compare_sequence(&r.sequence_number, s) == Ordering::Less {
                    s.clone_from(&r.sequence_number);
                }
            })
            .or_insert_with(|| r.sequence_number.clone());
    }
    let mut records = named;
    records.sort_by(|a, b| compare_sequence(&a.sequence_number, &b.sequence_number));
    records.dedup_by(|a, b| a.sequence_number == b.sequence_number);
    let named_count = records.len();
    let seen: HashSet<String> = records.iter().map(|r| r.sequence_number.clone()).collect();
    records.extend(
        shard_after
            .into_iter()
            .filter(|r| !seen.contains(&r.sequence_number))
            .filter(|r| {
                first
                    .get(&r.partition_key)
                    .is_some_and(|s| compare_sequence(&r.sequence_number, s) == Ordering::Greater)
            }),
    );
    records.sort_by(|a, b| compare_sequence(&a.sequence_number, &b.sequence_number));
    records.dedup_by(|a, b| a.sequence_number == b.sequence_number);
    Replay {
        later: records.len() - named_count,
        named: named_count,
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, seq: u64) -> StreamRecord {
        StreamRecord {
            partition_key: key.into(),
            data: format!("{key}@{seq}").into_bytes(),
            sequence_number: seq.to_string(),
        }
    }

    fn order(replay: &Replay) -> Vec<String> {
        replay
            .records
            .iter()
            .map(|r| String::from_utf8(r.data.clone()).unwrap())
            .collect()
    }

    #[test]
    fn each_named_key_ends_at_its_newest_record_in_sequence_order() {
        // A range 10..12 (keys a, b, a) given up on; the shard went on with b, c, a, b.
        let named = vec![r("a", 10), r("b", 11), r("a", 12)];
        let shard = vec![
            r("a", 10),
            r("b", 11),
            r("a", 12),
            r("b", 13),
            r("c", 14),
            r("a", 15),
            r("b", 99),
        ];
        let replay = ordered_replay(named, shard);
        assert_eq!(
            order(&replay),
            ["a@10", "b@11", "a@12", "b@13", "a@15", "b@99"]
        );
        assert_eq!((replay.named, replay.later), (3, 3));
    }

    #[test]
    fn letters_naming_one_record_twice_or_out_of_order_put_it_once_in_place() {
        // Two on-failure ranges of one key, received newest first, and a redelivered dead letter of one record.
        let named = vec![r("k", 20), r("k", 21), r("k", 5), r("k", 20)];
        let shard = vec![
            r("k", 5),
            r("x", 6),
            r("k", 7),
            r("k", 20),
            r("k", 21),
            r("k", 30),
        ];
        let replay = ordered_replay(named, shard);
        assert_eq!(order(&replay), ["k@5", "k@7", "k@20", "k@21", "k@30"]);
        assert_eq!((replay.named, replay.later), (3, 2));
    }

    #[test]
    fn sequence_numbers_order_as_numbers_not_text() {
        let named = vec![r("k", 9)];
        let shard = vec![r("k", 9), r("k", 10), r("k", 100)];
        assert_eq!(
            order(&ordered_replay(named, shard)),
            ["k@9", "k@10", "k@100"]
        );
    }

    #[test]
    fn without_the_shard_read_only_the_named_records_are_put() {
        let replay = ordered_replay(vec![r("b", 2), r("a", 1)], Vec::new());
        assert_eq!(order(&replay), ["a@1", "b@2"]);
        assert_eq!((replay.named, replay.later), (2, 0));
    }
}
