//! Orders a batch's writes so that changes to one crosswalk key are applied in sequence while changes to
//! different keys go out together. Pure: no I/O.
//!
//! The batch is cut into waves, each sent only once the previous one is done: a key's writes go into increasing
//! waves, so one wave never holds two writes to the same key and may be sent in any order and concurrency. A
//! record's own writes are ordered too: the upsert of a primary-key change goes in a later wave than the
//! retirement of the old key. Consecutive full-override upserts of one key are coalesced into the last one,
//! which is exactly what applying them in order leaves behind.

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

/// Where one write goes: a new slot in a wave, or folded into an earlier slot (coalesced).
#[derive(Clone, Copy)]
enum Placement {
    New,
    Into { slot: usize },
}

/// `writes` holds `(record position, write)` in record order (a record's own writes in their order).
pub fn schedule(writes: Vec<(usize, ReltioWrite)>) -> Vec<Wave> {
    // Decide every placement by reference first (keys are not cloned), then move the writes into place.
    let mut placements = Vec::with_capacity(writes.len());
    let mut slot_waves: Vec<usize> = Vec::with_capacity(writes.len());
    {
        // Per key: the next free wave and the key's last slot (with whether it is a full upsert).
        let mut keys: HashMap<&CrosswalkKey, (usize, usize, bool)> =
            HashMap::with_capacity(writes.len());
        let mut previous: Option<(usize, usize)> = None; // (record, wave) of the write before
        for (record, write) in &writes {
            // A record's later write waits for its earlier one.
            let after = match previous {
                Some((r, wave)) if r == *record => Some(wave + 1),
                _ => None,
            };
            let full = write.is_full_upsert();
            let wave = match keys.get_mut(&write.key) {
                Some((_, slot, last_full)) if *last_full && full && after.is_none() => {
                    placements.push(Placement::Into { slot: *slot });
                    slot_waves[*slot]
                }
                entry => {
                    let next = entry.as_ref().map_or(0, |e| e.0);
                    let wave = next.max(after.unwrap_or(0));
                    placements.push(Placement::New);
                    slot_waves.push(wave);
                    keys.insert(&write.key, (wave + 1, slot_waves.len() - 1, full));
                    wave
                }
            };
            previous = Some((*record, wave));
        }
    }
    let mut slots: Vec<ScheduledWrite> = Vec::with_capacity(slot_waves.len());
    for ((record, write), placement) in writes.into_iter().zip(placements) {
        match placement {
            Placement::New => slots.push(ScheduledWrite {
                records: vec![record],
                write,
            }),
            Placement::Into { slot } => {
                let s = &mut slots[slot];
                if s.records.last() != Some(&record) {
                    s.records.push(record);
                }
                s.write = write;
            }
        }
    }
    let mut waves: Vec<Wave> =
        vec![Vec::new(); slot_waves.iter().map(|w| w + 1).max().unwrap_or(0)];
    for (scheduled, wave) in slots.into_iter().zip(slot_waves) {
        waves[wave].push(scheduled);
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
                    attributes: attributes.into(),
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
                        body.attributes.to_value()["Name"][0]["value"]
                            .as_str()
                            .unwrap()
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

    /// The wave of each record's writes, as `(record, key, deleted?)` in wave order.
    fn placed(waves: &[Wave]) -> Vec<(usize, usize, String)> {
        let mut out = Vec::new();
        for (n, wave) in waves.iter().enumerate() {
            for s in wave {
                let what = match &s.write.op {
                    WriteOp::DeleteCrosswalk => format!("{}=deleted", s.write.key.value),
                    WriteOp::Post { .. } => s.write.key.value.clone(),
                };
                for &r in &s.records {
                    out.push((n, r, what.clone()));
                }
            }
        }
        out
    }

    fn wave_of(waves: &[Wave], record: usize, what: &str) -> usize {
        placed(waves)
            .into_iter()
            .find(|(_, r, w)| *r == record && w == what)
            .unwrap_or_else(|| panic!("record {record} has no write {what}: {:?}", placed(waves)))
            .0
    }

    #[test]
    fn a_primary_key_change_retires_the_old_key_before_upserting_the_new_one_in_every_batch_shape()
    {
        // (record writes in batch order) → for each record with a retire + upsert, the retire's wave comes first.
        let change = |from: &str, to: &str| vec![delete(from), upsert(to, "v", false)];
        let shapes: Vec<Vec<Vec<ReltioWrite>>> = vec![
            // The change alone.
            vec![change("a", "b")],
            // The new key written before the change in the same batch.
            vec![vec![upsert("b", "0", false)], change("a", "b")],
            // The new key written after the change (coalescable with the change's upsert).
            vec![change("a", "b"), vec![upsert("b", "2", false)]],
            // The old key revived after the change.
            vec![change("a", "b"), vec![upsert("a", "3", false)]],
            // A chain: a → b, then b → c.
            vec![change("a", "b"), change("b", "c")],
            // Other keys around it.
            vec![
                vec![upsert("x", "1", false)],
                change("a", "b"),
                vec![upsert("y", "1", true)],
            ],
            // Partial upserts of the new key.
            vec![
                vec![upsert("b", "p", true)],
                change("a", "b"),
                vec![upsert("b", "q", true)],
            ],
        ];
        for (n, shape) in shapes.into_iter().enumerate() {
            let mut writes = Vec::new();
            let mut changes = Vec::new();
            for (record, record_writes) in shape.into_iter().enumerate() {
                if record_writes.len() == 2 {
                    changes.push((
                        record,
                        format!("{}=deleted", record_writes[0].key.value),
                        record_writes[1].key.value.clone(),
                    ));
                }
                writes.extend(record_writes.into_iter().map(|w| (record, w)));
            }
            let waves = schedule(writes.clone());
            for (record, retired, upserted) in &changes {
                assert!(
                    wave_of(&waves, *record, retired) < wave_of(&waves, *record, upserted),
                    "shape {n}: record {record} upserts {upserted} no later than it retires: {:?}",
                    placed(&waves)
                );
            }
            // Per key, the writes still go out in record order, and every record is scheduled.
            let mut last: HashMap<String, (usize, usize)> = HashMap::new();
            for (wave, record, what) in placed(&waves) {
                let key = what.trim_end_matches("=deleted").to_owned();
                if let Some((w, r)) = last.get(&key) {
                    assert!(
                        *w < wave || (*w == wave && *r <= record),
                        "shape {n}: {key} out of order"
                    );
                }
                last.insert(key, (wave, record));
            }
            let mut records: Vec<usize> = placed(&waves).iter().map(|p| p.1).collect();
            records.sort();
            records.dedup();
            assert_eq!(
                records.len(),
                writes.iter().map(|w| w.0).max().unwrap() + 1,
                "shape {n}"
            );
        }
    }
}
