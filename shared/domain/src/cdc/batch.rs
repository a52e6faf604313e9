//! A CDC batch decoded and planned, before anything is sent: each record's outcome when already decided, its
//! writes, and (with the CDC key ledger) the writes older than what was applied to their keys left out. It plans
//! the sources' records as [`CdcInput`]s (DMS records from Kinesis, Kafka messages), so that cdc-ingest and the
//! operator CLI plan alike.

use crate::cdc::input::{CdcInput, KafkaChange, SourceChange};
use crate::cdc::mapping::CdcMapping;
use crate::cdc::schedule::{schedule, Wave};
use crate::cdc::transform::{crosswalk_key, plan_record, RecordPlan, ReltioWrite};
use crate::cdc::versions::{self, is_stale, Applied, SourceVersion};
use crate::dms::DmsRecord;
use crate::kafka_cdc::{self, Change, Message};
use crate::outcome::{Outcome, SkipReason};
use crate::reltio::model::CrosswalkKey;
use std::collections::HashMap;

/// What is known of a record for logs and dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordInfo {
    pub table: Option<String>,
    pub key: Option<CrosswalkKey>,
    /// The change's own position: its commit time, else its stream position (DMS metadata).
    pub position: Option<String>,
    pub source_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every record decoded and planned; writes not yet scheduled.
pub struct Planned {
    outcomes: Vec<Option<Outcome>>,
    infos: Vec<RecordInfo>,
    writes: Vec<(usize, ReltioWrite)>,
    versions: Vec<Option<SourceVersion>>,
}

/// A batch planned and scheduled.
pub struct BatchPlan {
    /// Per record, its outcome when it is already decided (`None`: it has writes to apply).
    pub outcomes: Vec<Option<Outcome>>,
    pub infos: Vec<RecordInfo>,
    /// The Reltio writes, in waves (see `mdm_sync_domain::cdc::schedule`).
    pub waves: Vec<Wave>,
    /// `(record, key, version, retires)` of each versioned write, for the key ledger once they are done.
    pub tracked: Vec<(usize, CrosswalkKey, SourceVersion, bool)>,
}

/// Decodes every record and plans its writes: pure, no I/O. The writes of a batch of several lanes (Kafka
/// partitions) are merged in source order (`merge_lanes_by_version`); one lane is in its stream's order already.
pub fn plan_records(
    mapping: &CdcMapping,
    before_image_field: &str,
    inputs: &[CdcInput<'_>],
    now: chrono::DateTime<chrono::Utc>,
) -> Planned {
    let mut planned = Planned::with_capacity(inputs.len());
    for input in inputs {
        match &input.change {
            SourceChange::Dms(data) => match DmsRecord::parse(data, before_image_field) {
                Err(e) => planned.decided(RecordInfo::default(), Outcome::Permanent(e.to_string())),
                Ok(dms) => planned.push_change(mapping, dms, now),
            },
            SourceChange::Kafka(message) => {
                planned.push_kafka(mapping, message, before_image_field, now)
            }
        }
    }
    // Within one lane the merge would keep every write where it is: a Kinesis batch skips it.
    if inputs.windows(2).any(|w| w[0].lane != w[1].lane) {
        let lanes: Vec<usize> = inputs.iter().map(|i| i.lane).collect();
        planned.merge_lanes_by_version(&lanes);
    }
    planned
}

/// Decodes, plans and schedules a batch (no key ledger).
pub fn plan_batch(
    mapping: &CdcMapping,
    before_image_field: &str,
    inputs: &[CdcInput<'_>],
    now: chrono::DateTime<chrono::Utc>,
) -> BatchPlan {
    plan_records(mapping, before_image_field, inputs, now).into_batch()
}

impl Planned {
    fn with_capacity(n: usize) -> Planned {
        Planned {
            outcomes: Vec::with_capacity(n),
            infos: Vec::with_capacity(n),
            writes: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
        }
    }

    /// A record whose outcome is known without writing anything.
    fn decided(&mut self, info: RecordInfo, outcome: Outcome) {
        self.outcomes.push(Some(outcome));
        self.infos.push(info);
        self.versions.push(None);
    }

    /// A decoded change: planned against the mapping, its writes queued.
    fn push_change(
        &mut self,
        mapping: &CdcMapping,
        dms: DmsRecord<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let i = self.outcomes.len();
        let mut key = None;
        let outcome = match plan_record(mapping, &dms, now) {
            Err(e) => {
                // The dead letter names the row whenever its key decoded (a later column may be what failed).
                key = mapping
                    .table_of(&dms.table)
                    .and_then(|table| crosswalk_key(table, &dms.data).ok());
                Some(Outcome::Permanent(e.to_string()))
            }
            Ok(RecordPlan::Skip(reason)) => Some(Outcome::Skipped(reason)),
            Ok(RecordPlan::Write { key: k, writes: w }) => {
                key = Some(k);
                self.writes.extend(w.into_iter().map(|w| (i, w)));
                None
            }
        };
        let version = SourceVersion::of(&dms);
        let source_time = dms.source_time();
        // The record is done with: its strings move into the info rather than being copied.
        self.infos.push(RecordInfo {
            table: Some(dms.table.to_string()),
            key,
            position: dms.commit_timestamp.or(dms.stream_position).map(Into::into),
            source_time,
        });
        self.outcomes.push(outcome);
        self.versions.push(version);
    }

    /// A Kafka message, decoded in its topic's format (the mapping's `[topics]`, else told from the message),
    /// then planned exactly as a DMS record.
    fn push_kafka(
        &mut self,
        mapping: &CdcMapping,
        message: &KafkaChange<'_>,
        before_image_field: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let value = match message.value {
            Ok(v) => v,
            Err(reason) => {
                return self.decided(RecordInfo::default(), Outcome::Permanent(reason.to_owned()))
            }
        };
        let Some(format) = mapping
            .topic_format(message.topic)
            .or_else(|| kafka_cdc::detect(value))
        else {
            return self.decided(
                RecordInfo::default(),
                Outcome::Permanent(format!(
                    "topic \"{}\" is not in the mapping's [topics] and the message is not DMS, Debezium or \
                     GoldenGate JSON",
                    message.topic
                )),
            );
        };
        let header = |name: &str| message.header(name);
        let decoded = Message {
            key: message.key,
            value,
            header: &header,
        };
        let settings = kafka_cdc::Settings {
            before_image_field,
            unavailable_value: mapping.unavailable_value(message.topic),
        };
        match kafka_cdc::decode(format, &decoded, &settings) {
            Err(e) => self.decided(RecordInfo::default(), Outcome::Permanent(e.to_string())),
            Ok(Change::Skip(reason, table)) => {
                let info = RecordInfo {
                    table: table.map(|t| t.to_string()),
                    ..RecordInfo::default()
                };
                self.decided(info, Outcome::Skipped(reason));
            }
            Ok(Change::Row(dms)) => self.push_change(mapping, *dms, now),
        }
    }

    /// Merges the partitions' writes in source order. A batch of several Kafka partitions comes partition by
    /// partition, and a key can appear in two of them: Debezium sends a primary-key change's create half under the
    /// new key, so it can sit in a partition ahead of the old key's earlier changes. Each write is placed by the
    /// newest version its partition has reached at its record, so a partition's own order (the log's) is never
    /// changed, even where a clock makes a version step back; a record's writes stay together and in order.
    /// `lanes[i]` is record `i`'s partition.
    fn merge_lanes_by_version(&mut self, lanes: &[usize]) {
        let mut reached: HashMap<usize, SourceVersion> = HashMap::new();
        let mut place: Vec<Option<SourceVersion>> = Vec::with_capacity(self.versions.len());
        for (r, version) in self.versions.iter().enumerate() {
            let newest = reached.get(&lanes[r]).copied().max(*version);
            if let Some(v) = newest {
                reached.insert(lanes[r], v);
            }
            place.push(newest);
        }
        self.writes.sort_by_key(|(r, _)| (place[*r], lanes[*r]));
    }

    /// The keys of the versioned writes (what the key ledger is asked about).
    pub fn versioned_keys(&self) -> Vec<&CrosswalkKey> {
        let mut keys: Vec<&CrosswalkKey> = self
            .writes
            .iter()
            .filter(|(r, _)| self.versions[*r].is_some())
            .map(|(_, w)| &w.key)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Leaves out every write older than what was applied to its key; a record left with no write is skipped
    /// as stale. Returns how many writes were left out.
    pub fn skip_stale(&mut self, applied: &HashMap<CrosswalkKey, Applied>) -> usize {
        let before = self.writes.len();
        let versions = &self.versions;
        let mut kept_records = vec![false; self.outcomes.len()];
        let mut had_writes = vec![false; self.outcomes.len()];
        self.writes.retain(|(r, w)| {
            had_writes[*r] = true;
            let keep = !is_stale(versions[*r], applied.get(&w.key));
            kept_records[*r] |= keep;
            keep
        });
        for (r, outcome) in self.outcomes.iter_mut().enumerate() {
            if had_writes[r] && !kept_records[r] {
                *outcome = Some(Outcome::Skipped(SkipReason::Stale));
            }
        }
        before - self.writes.len()
    }

    /// Every record not yet decided gets `outcome` (the key ledger could not be read: nothing can be judged).
    pub fn fail_pending(&mut self, outcome: Outcome) {
        for o in self.outcomes.iter_mut().filter(|o| o.is_none()) {
            *o = Some(outcome.clone());
        }
        self.writes.clear();
    }

    pub fn into_batch(self) -> BatchPlan {
        let tracked = self
            .writes
            .iter()
            .filter_map(|(r, w)| Some((*r, w.key.clone(), self.versions[*r]?, w.retires())))
            .collect();
        BatchPlan {
            outcomes: self.outcomes,
            infos: self.infos,
            waves: schedule(self.writes),
            tracked,
        }
    }
}

impl BatchPlan {
    /// One line per record: where it is headed before Reltio answers (`write`, `skip: …`, `dead-letter: …`).
    pub fn decisions(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .zip(&self.infos)
            .map(|(outcome, info)| {
                let what = match outcome {
                    None => "write".to_owned(),
                    Some(Outcome::Skipped(r)) => format!("skip: {r}"),
                    Some(Outcome::Permanent(r)) => format!("dead-letter: {r}"),
                    Some(Outcome::Done) => "written".to_owned(),
                    Some(Outcome::Transient(r)) => format!("retry: {r}"),
                };
                let key = info.key.as_ref().map(|k| k.to_string());
                format!(
                    "{} {} → {what}",
                    info.table.as_deref().unwrap_or("?"),
                    key.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    /// What the key ledger records for the records that ended `done`: per key the newest version written.
    pub fn ledger_entries(&self, done: impl Fn(usize) -> bool) -> Vec<(CrosswalkKey, Applied)> {
        versions::entries(
            self.tracked
                .iter()
                .filter(|(r, ..)| done(*r))
                .map(|(_, k, v, retires)| (k, *v, *retires)),
        )
    }
}

#[cfg(test)]
mod tests;
