//! A Kinesis or Kafka batch decoded and planned, before anything is sent: each record's outcome when already decided,
//! its writes, and (with the CDC key ledger) the writes older than what was applied to their keys left out.

use mdm_sync_adapters::kafka::StreamRecord;
use mdm_sync_adapters::kinesis::KinesisEventRecord;
use mdm_sync_domain::cdc::mapping::CdcMapping;
use mdm_sync_domain::cdc::schedule::{schedule, Wave};
use mdm_sync_domain::cdc::transform::{plan_record, RecordPlan, ReltioWrite};
use mdm_sync_domain::cdc::versions::{self, is_stale, Applied, SourceVersion};
use mdm_sync_domain::dms::DmsRecord;
use mdm_sync_domain::kafka_cdc::{self, Change, Message};
use mdm_sync_domain::outcome::{Outcome, SkipReason};
use mdm_sync_domain::reltio::model::CrosswalkKey;
use std::collections::HashMap;

/// What the handler knows of a record for logs and the DLQ.
pub(crate) struct RecordInfo {
    pub table: Option<String>,
    pub key: Option<CrosswalkKey>,
    pub position: Option<String>,
    pub source_time: Option<chrono::DateTime<chrono::Utc>>,
}

impl RecordInfo {
    fn unknown() -> RecordInfo {
        RecordInfo {
            table: None,
            key: None,
            position: None,
            source_time: None,
        }
    }
}

/// Every record decoded and planned; writes not yet scheduled.
pub struct Planned {
    pub(crate) outcomes: Vec<Option<Outcome>>,
    pub(crate) infos: Vec<RecordInfo>,
    writes: Vec<(usize, ReltioWrite)>,
    versions: Vec<Option<SourceVersion>>,
}

/// A batch planned and scheduled.
pub struct BatchPlan {
    /// Per record, its outcome when it is already decided (`None`: it has writes to apply).
    pub(crate) outcomes: Vec<Option<Outcome>>,
    pub(crate) infos: Vec<RecordInfo>,
    /// The Reltio writes, in waves (see `mdm_sync_domain::cdc::schedule`).
    pub waves: Vec<Wave>,
    /// `(record, key, version, retires)` of each versioned write, for the key ledger once they are done.
    pub(crate) tracked: Vec<(usize, CrosswalkKey, SourceVersion, bool)>,
}

/// Decodes every record and plans its writes: pure, no I/O.
pub fn plan_records(
    mapping: &CdcMapping,
    before_image_field: &str,
    records: &[KinesisEventRecord],
    now: chrono::DateTime<chrono::Utc>,
) -> Planned {
    let mut planned = Planned::with_capacity(records.len());
    for record in records {
        match DmsRecord::parse(&record.kinesis.data, before_image_field) {
            Err(e) => planned.decided(RecordInfo::unknown(), Outcome::Permanent(e.to_string())),
            Ok(dms) => planned.push_change(mapping, dms, now),
        }
    }
    planned
}

/// The Kafka counterpart of [`plan_records`]: each message decoded in its topic's format (the mapping's
/// `[topics]`, else told from the message), then planned exactly as a DMS record.
pub fn plan_kafka_records(
    mapping: &CdcMapping,
    before_image_field: &str,
    records: &[StreamRecord],
    now: chrono::DateTime<chrono::Utc>,
) -> Planned {
    let mut planned = Planned::with_capacity(records.len());
    for record in records {
        let value = match &record.value {
            Ok(v) => v.as_deref(),
            Err(reason) => {
                planned.decided(
                    RecordInfo::unknown(),
                    Outcome::Permanent((*reason).to_owned()),
                );
                continue;
            }
        };
        let Some(format) = mapping
            .topic_format(&record.topic)
            .or_else(|| kafka_cdc::detect(value))
        else {
            planned.decided(
                RecordInfo::unknown(),
                Outcome::Permanent(format!(
                    "topic \"{}\" is not in the mapping's [topics] and the message is not DMS, Debezium or \
                     GoldenGate JSON",
                    record.topic
                )),
            );
            continue;
        };
        let header = |name: &str| {
            record
                .headers
                .0
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let message = Message {
            key: record.key.as_deref(),
            value,
            header: &header,
        };
        match kafka_cdc::decode(format, &message, before_image_field) {
            Err(e) => planned.decided(RecordInfo::unknown(), Outcome::Permanent(e.to_string())),
            Ok(Change::Skip(reason, table)) => {
                let mut info = RecordInfo::unknown();
                info.table = table.map(|t| t.to_string());
                planned.decided(info, Outcome::Skipped(reason));
            }
            Ok(Change::Row(dms)) => planned.push_change(mapping, *dms, now),
        }
    }
    let mut lanes = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let same = i > 0 && records[i - 1].partition_id == record.partition_id;
        lanes.push(lanes.last().map_or(0, |l| l + usize::from(!same)));
    }
    planned.merge_lanes_by_version(&lanes);
    planned
}

/// Decodes, plans and schedules a batch (no key ledger).
pub fn plan_batch(
    mapping: &CdcMapping,
    before_image_field: &str,
    records: &[KinesisEventRecord],
    now: chrono::DateTime<chrono::Utc>,
) -> BatchPlan {
    plan_records(mapping, before_image_field, records, now).into_batch()
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
            Err(e) => Some(Outcome::Permanent(e.to_string())),
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
    pub(crate) fn ledger_entries(
        &self,
        done: impl Fn(usize) -> bool,
    ) -> Vec<(CrosswalkKey, Applied)> {
        versions::entries(
            self.tracked
                .iter()
                .filter(|(r, ..)| done(*r))
                .map(|(_, k, v, retires)| (k, *v, *retires)),
        )
    }
}
