//! Orders a batch's writes so that changes to one crosswalk key are applied in sequence while changes to
//! different keys go out together. Pure: no I/O.
//!
//! The batch is cut into waves: the n-th write to each key goes into wave n, so one wave never holds two writes
//! to the same key and may be sent in any order and concurrency. Consecutive full-override upserts of one key
//! are coalesced into the last one, which is exactly what applying them in order leaves behind.

use super::transform::ReltioWrite;
use crate::reltio::model::CrosswalkKey;
use std::collections::HashMap;

/// A write and the records (batch positions, ascending) it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledWrite {
    pub records: Vec<usize>,
    pub write: ReltioWrite,
}

/// Writes that can be sent together: at most one per key.
pub type Wave = Vec<ScheduledWrite>;

/// `writes` holds `(record position, write)` in record order (a record's own writes in their order).
pub fn schedule(writes: Vec<(usize, ReltioWrite)>) -> Vec<Wave> {
    // Group by key without cloning keys: each write gets the index of its key's queue, queues numbered in
    // order of the key's first appearance, so waves come out in a stable, record-like order.
    let mut groups: Vec<usize> = Vec::with_capacity(writes.len());
    let mut queue_count = 0;
    {
        let mut index: HashMap<&CrosswalkKey, usize> = HashMap::with_capacity(writes.len());
        for (_, write) in &writes {
            let next = queue_count;
            let g = *index.entry(&write.key).or_insert(next);
            if g == next {
                queue_count += 1;
            }
            groups.push(g);
        }
    }
    let mut queues: Vec<Vec<ScheduledWrite>> = (0..queue_count).map(|_| Vec::new()).collect();
    for ((record, write), g) in writes.into_iter().zip(groups) {
        let queue = &mut queues[g];
        match queue.last_mut() {
            Some(last) if last.write.is_full_upsert() && write.is_full_upsert() => {
                if last.records.last() != Some(&record) {
                    last.records.push(record);
                }
                last.write = write;
            }
            _ => queue.push(ScheduledWrite {
                records: vec![record],
                write,
            }),
        }
    }
    let mut waves: Vec<Wave> = Vec::new();
    for queue in queues {
        for (n, scheduled) in queue.into_iter().enumerate() {
            if waves.len() <= n {
                waves.push(Vec::new());
            }
            waves[n].push(scheduled);
        }
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::transform::WriteOp;
    use crate::reltio::model::EntityBody;
    use serde_json::{json, Map};

    fn key(v: &str) -> CrosswalkKey {
        CrosswalkKey {
            source: "configuration/sources/S".into(),
            source_table: None,
            value: v.into(),
        }
    }

    fn upsert(k: &str, name: &str, partial: bool) -> ReltioWrite {
        let mut attributes = Map::new();
        attributes.insert("Name".into(), json!([{ "value": name }]));
        ReltioWrite {
            key: key(k),
            op: WriteOp::Post {
                body: EntityBody {
                    entity_type: "configuration/entityTypes/Individual".into(),
                    attributes,
                    crosswalks: vec![key(k).crosswalk()],
                },
                partial,
            },
        }
    }

    fn delete(k: &str) -> ReltioWrite {
        ReltioWrite {
            key: key(k),
            op: WriteOp::DeleteCrosswalk,
        }
    }

    fn names(wave: &Wave) -> Vec<(Vec<usize>, String)> {
        wave.iter()
            .map(|s| {
                let label = match &s.write.op {
                    WriteOp::Post { body, .. } => format!(
                        "{}={}",
                        s.write.key.value,
                        body.attributes["Name"][0]["value"].as_str().unwrap()
                    ),
                    WriteOp::DeleteCrosswalk => format!("{}=deleted", s.write.key.value),
                };
                (s.records.clone(), label)
            })
            .collect()
    }

    #[test]
    fn different_keys_share_one_wave() {
        let waves = schedule(vec![
            (0, upsert("a", "1", false)),
            (1, upsert("b", "2", false)),
        ]);
        assert_eq!(waves.len(), 1);
        assert_eq!(
            names(&waves[0]),
            vec![(vec![0], "a=1".into()), (vec![1], "b=2".into())]
        );
    }

    #[test]
    fn consecutive_full_upserts_of_one_key_coalesce_into_the_last() {
        let waves = schedule(vec![
            (0, upsert("a", "old", false)),
            (1, upsert("b", "x", false)),
            (2, upsert("a", "new", false)),
        ]);
        assert_eq!(waves.len(), 1);
        assert_eq!(names(&waves[0])[0], (vec![0, 2], "a=new".into()));
    }

    #[test]
    fn a_delete_between_upserts_keeps_three_ordered_waves() {
        let waves = schedule(vec![
            (0, upsert("a", "1", false)),
            (1, delete("a")),
            (2, upsert("a", "2", false)),
            (3, upsert("b", "x", false)),
        ]);
        let labels: Vec<_> = waves.iter().map(names).collect();
        assert_eq!(
            labels,
            vec![
                vec![(vec![0], "a=1".to_string()), (vec![3], "b=x".to_string())],
                vec![(vec![1], "a=deleted".to_string())],
                vec![(vec![2], "a=2".to_string())],
            ]
        );
    }

    #[test]
    fn partial_upserts_are_never_coalesced() {
        let waves = schedule(vec![
            (0, upsert("a", "1", true)),
            (1, upsert("a", "2", true)),
        ]);
        assert_eq!(waves.len(), 2);
    }
}
