//! The analytics sink's batch, planned then applied through its ports: decode each queue message into the change
//! record it calls for (pure), drop events already recorded (in this batch, or earlier when a dedup store is
//! configured), fetch the snapshot of oversized events, write the records, remember what was written. Every
//! message ends with one outcome, which the handler settles.

use super::mapping::AnalyticsMapping;
use super::record::{plan_record, with_snapshot, ChangeRecord, RecordPlan};
use crate::outcome::{Outcome, SkipReason};
use crate::ports::{Deadline, DeliveredIds, EntitySource, PortError, RecordSink};
use crate::reltio::event::ReltioEvent;
use crate::reltio::message::QueuedEvent;
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Firehose's largest record (1,000 KiB): a larger change record can never be written.
pub const MAX_RECORD_BYTES: usize = 1_000 * 1024;
/// Entity fetches in flight at once.
const MAX_FETCHES_IN_FLIGHT: usize = 8;

/// What the sink works through. Without `reltio`, an oversized event cannot be completed (dead-lettered with
/// the reason); without `dedup`, duplicates are dropped within a batch only, and the warehouse's views drop the
/// rest (they deduplicate by event id).
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub sink: &'a dyn RecordSink,
    pub reltio: Option<&'a dyn EntitySource>,
    pub dedup: Option<&'a dyn DeliveredIds>,
}

/// One message being worked on.
#[derive(Debug, Clone)]
pub struct Item {
    pub message_id: String,
    pub event_id: String,
    /// The trace of the invocation that enqueued the event (for the hand-over line).
    pub trace: Option<String>,
    /// The event's entity (for logs and the dead letter).
    pub entity_uri: Option<String>,
    plan: Option<RecordPlan>,
    /// Set once decided.
    pub outcome: Option<Outcome>,
    /// The record, once written.
    pub written: Option<ChangeRecord>,
}

impl Item {
    pub fn is_pending(&self) -> bool {
        self.outcome.is_none()
    }
}

/// Parses an event and plans its record (pure). `received_at` is stamped on the record.
pub fn decode(mapping: &AnalyticsMapping, queued: QueuedEvent, received_at: &str) -> Item {
    let mut item = Item {
        message_id: queued.message_id,
        event_id: queued.event_id,
        trace: queued.trace,
        entity_uri: None,
        plan: None,
        outcome: None,
        written: None,
    };
    let mut event: ReltioEvent = match serde_json::from_str(&queued.json) {
        Ok(e) => e,
        Err(e) => {
            item.outcome = Some(Outcome::Permanent(format!("not a Reltio event: {e}")));
            return item;
        }
    };
    // A `skipPayload` event names its entity only in the message's `sourceObjectUri` header.
    if event.entity_uri().is_none() {
        event.uri = queued.source_object_uri;
    }
    item.entity_uri = event.entity_uri().map(str::to_owned);
    let plan = plan_record(
        mapping,
        &event,
        &item.event_id,
        queued.tenant_id.as_deref(),
        queued.object_version.as_deref(),
        received_at,
    );
    match plan {
        Ok(RecordPlan::Skip(code)) => item.outcome = Some(Outcome::Skipped(code)),
        Ok(plan) => item.plan = Some(plan),
        Err(e) => item.outcome = Some(Outcome::Permanent(e.to_string())),
    }
    item
}

/// What applying a batch did, beyond each item's outcome: counters by metric name, and the records written (for
/// the refresh signal).
#[derive(Debug, Default)]
pub struct Report {
    pub counts: BTreeMap<&'static str, u64>,
    /// Entity types of the records written (`unknown` for a merge record without one).
    pub entity_types: BTreeSet<String>,
    /// The newest and oldest change times (ms) of the records written.
    pub newest_change: Option<i64>,
    pub oldest_change: Option<i64>,
}

impl Report {
    fn count(&mut self, name: &'static str, n: u64) {
        *self.counts.entry(name).or_default() += n;
    }

    pub fn written(&self) -> u64 {
        self.counts.get("RecordsWritten").copied().unwrap_or(0)
    }
}

/// Applies every item (each one's `outcome` is set).
pub async fn apply(
    ports: Ports<'_>,
    items: &mut [Item],
    deadline: Deadline,
    mapping: &AnalyticsMapping,
) -> Report {
    let mut report = Report::default();
    drop_duplicates_in_batch(items);
    drop_recorded(ports, items, &mut report).await;
    fetch_snapshots(ports, mapping, items, deadline, &mut report).await;
    write(ports, items, deadline, &mut report).await;
    remember(ports, items, &mut report).await;
    report
}

/// The same event twice in one batch (a duplicate delivery) is written once: the first copy stands for both.
fn drop_duplicates_in_batch(items: &mut [Item]) {
    let mut seen = HashSet::new();
    for item in items.iter_mut().filter(|i| i.is_pending()) {
        if !seen.insert(item.event_id.clone()) {
            item.outcome = Some(Outcome::Skipped(SkipReason::Duplicate));
        }
    }
}

/// Events an earlier invocation recorded. A store that cannot answer counts nothing as recorded: it can cost a
/// duplicate record (which the warehouse views drop), never a lost one.
async fn drop_recorded(ports: Ports<'_>, items: &mut [Item], report: &mut Report) {
    let Some(dedup) = ports.dedup else { return };
    let pending: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].is_pending())
        .collect();
    if pending.is_empty() {
        return;
    }
    let ids: Vec<&str> = pending
        .iter()
        .map(|&i| items[i].event_id.as_str())
        .collect();
    match dedup.seen(&ids).await {
        Ok(seen) => {
            let recorded: Vec<usize> = pending
                .iter()
                .zip(seen)
                .filter_map(|(&i, seen)| seen.then_some(i))
                .collect();
            for i in recorded {
                items[i].outcome = Some(Outcome::Skipped(SkipReason::Duplicate));
            }
        }
        Err(reason) => {
            tracing::warn!(%reason, "the dedup store could not answer: recording without it");
            report.count("DedupStoreFailures", 1);
        }
    }
}

async fn fetch_snapshots(
    ports: Ports<'_>,
    mapping: &AnalyticsMapping,
    items: &mut [Item],
    deadline: Deadline,
    report: &mut Report,
) {
    let wanted: Vec<(usize, String)> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.is_pending())
        .filter_map(|(i, item)| match &item.plan {
            Some(RecordPlan::Fetch { uri, .. }) => Some((i, uri.clone())),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let Some(reltio) = ports.reltio else {
        for (i, _) in wanted {
            items[i].outcome = Some(Outcome::Permanent(
                "the event carries no snapshot (too large for the stream, or a delta or skipped payload) and no \
                 Reltio access is configured to fetch it"
                    .into(),
            ));
        }
        return;
    };
    report.count("EntitiesFetched", wanted.len() as u64);
    let fetched: Vec<(usize, Result<serde_json::Value, PortError>)> = stream::iter(wanted)
        .map(|(i, uri)| async move { (i, reltio.entity(&uri, deadline).await) })
        .buffer_unordered(MAX_FETCHES_IN_FLIGHT)
        .collect()
        .await;
    for (i, result) in fetched {
        let item = &mut items[i];
        match (result, item.plan.take()) {
            (Ok(entity), Some(RecordPlan::Fetch { record, .. })) => {
                match with_snapshot(mapping, *record, &entity) {
                    Ok(record) => item.plan = Some(RecordPlan::Record(Box::new(record))),
                    Err(skip) => item.outcome = Some(Outcome::Skipped(skip)),
                }
            }
            (Err(e), plan) => {
                item.plan = plan;
                item.outcome = Some(match e {
                    PortError::Transient(reason) => {
                        Outcome::Transient(format!("fetching the entity failed: {reason}"))
                    }
                    other => Outcome::Permanent(format!("fetching the entity failed: {other}")),
                });
            }
            (Ok(_), plan) => item.plan = plan,
        }
    }
}

async fn write(ports: Ports<'_>, items: &mut [Item], deadline: Deadline, report: &mut Report) {
    let mut lines = Vec::new();
    let mut owners = Vec::new();
    for (i, item) in items.iter_mut().enumerate() {
        if !item.is_pending() {
            continue;
        }
        let Some(RecordPlan::Record(record)) = &item.plan else {
            item.outcome = Some(Outcome::Transient("the record was not completed".into()));
            continue;
        };
        let line = record.to_line();
        if line.len() > MAX_RECORD_BYTES {
            item.outcome = Some(Outcome::Permanent(format!(
                "the change record is {} bytes, over Firehose's {MAX_RECORD_BYTES}",
                line.len()
            )));
            continue;
        }
        lines.push(line);
        owners.push(i);
    }
    if lines.is_empty() {
        return;
    }
    let results = ports.sink.put(&lines, deadline).await;
    for (k, &i) in owners.iter().enumerate() {
        let item = &mut items[i];
        match results.get(k) {
            Some(Ok(())) => {
                item.outcome = Some(Outcome::Done);
                if let Some(RecordPlan::Record(record)) = item.plan.take() {
                    report.count("RecordsWritten", 1);
                    report.entity_types.insert(
                        record
                            .entity_type
                            .clone()
                            .unwrap_or_else(|| "unknown".into()),
                    );
                    if let Some(t) = record.updated_time {
                        report.newest_change = Some(report.newest_change.map_or(t, |n| n.max(t)));
                        report.oldest_change = Some(report.oldest_change.map_or(t, |n| n.min(t)));
                    }
                    item.written = Some(*record);
                }
            }
            Some(Err(e)) => {
                report.count("RecordsFailed", 1);
                item.outcome = Some(match e {
                    PortError::Transient(reason) => Outcome::Transient(reason.clone()),
                    other => Outcome::Permanent(other.to_string()),
                });
            }
            None => {
                report.count("RecordsFailed", 1);
                item.outcome = Some(Outcome::Transient("no result for this record".into()));
            }
        }
    }
}

/// Remembers the events written. A store that cannot remember costs duplicates later, not events.
async fn remember(ports: Ports<'_>, items: &[Item], report: &mut Report) {
    let Some(dedup) = ports.dedup else { return };
    let ids: Vec<&str> = items
        .iter()
        .filter(|i| i.outcome == Some(Outcome::Done))
        .map(|i| i.event_id.as_str())
        .collect();
    if ids.is_empty() {
        return;
    }
    if let Err(reason) = dedup.remember(&ids).await {
        tracing::warn!(%reason, "the dedup store could not remember the events written");
        report.count("DedupStoreFailures", 1);
    }
}

#[cfg(test)]
mod tests;
