//! Applies scheduled writes to Reltio: wave after wave, each wave's posts batched by `RELTIO_BATCH_SIZE` with up
//! to `RELTIO_MAX_CONCURRENCY` requests in flight, and the outcome mapped back to every record.

use super::schedule::{ScheduledWrite, Wave};
use super::transform::WriteOp;
use crate::reltio::client::{ItemOutcome, ReltioClient, ReltioError};
use crate::reltio::model::{CrosswalkKey, EntityBody};
use crate::retry::remaining;
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use tokio::time::Instant;

/// The writes cdc-ingest needs from Reltio (implemented by `ReltioClient`; fakes in tests).
pub trait EntityWriter: Sync {
    fn post_entities<'a>(
        &'a self,
        entities: &'a [EntityBody],
        partial_override: bool,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<ItemOutcome>, ReltioError>> + Send + 'a>>;

    fn delete_crosswalk<'a>(
        &'a self,
        key: &'a CrosswalkKey,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = Result<(), ReltioError>> + Send + 'a>>;
}

impl EntityWriter for ReltioClient {
    fn post_entities<'a>(
        &'a self,
        entities: &'a [EntityBody],
        partial_override: bool,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<ItemOutcome>, ReltioError>> + Send + 'a>> {
        Box::pin(ReltioClient::post_entities(
            self,
            entities,
            partial_override,
            deadline,
        ))
    }

    fn delete_crosswalk<'a>(
        &'a self,
        key: &'a CrosswalkKey,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = Result<(), ReltioError>> + Send + 'a>> {
        Box::pin(ReltioClient::delete_crosswalk(self, key, deadline))
    }
}

/// How one write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// Will never succeed: dead-letter the record.
    Permanent(String),
    /// May succeed later: report the record as a batch item failure.
    Transient(String),
}

impl WriteOutcome {
    /// The outcome of a record with several writes: transient beats permanent beats written.
    fn worse(self, other: WriteOutcome) -> WriteOutcome {
        use WriteOutcome::*;
        match (self, other) {
            (Transient(r), _) | (_, Transient(r)) => Transient(r),
            (Permanent(r), _) | (_, Permanent(r)) => Permanent(r),
            _ => Written,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ApplySettings {
    /// Entities per `POST /entities`.
    pub batch_size: usize,
    /// Requests in flight at once.
    pub max_concurrency: usize,
}

/// What applying a batch did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Per record position: the combined outcome of its writes.
    pub outcomes: BTreeMap<usize, WriteOutcome>,
    /// Requests sent to Reltio (bisected retries included).
    pub requests: usize,
    /// Latency of each request, in milliseconds.
    pub latencies_ms: Vec<f64>,
}

impl ApplyReport {
    fn record(&mut self, records: &[usize], outcome: WriteOutcome) {
        for &r in records {
            let combined = match self.outcomes.remove(&r) {
                Some(previous) => previous.worse(outcome.clone()),
                None => outcome.clone(),
            };
            self.outcomes.insert(r, combined);
        }
    }
}

/// One request's worth of work.
enum Task {
    Post {
        partial: bool,
        writes: Vec<ScheduledWrite>,
    },
    Delete(ScheduledWrite),
}

/// Applies the waves in order. A key whose write failed transiently gets none of its later writes
/// attempted (they would overtake it); they are reported transient so the event source retries them in order.
pub async fn apply(
    writer: &dyn EntityWriter,
    waves: Vec<Wave>,
    settings: ApplySettings,
    deadline: Instant,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut blocked: HashSet<CrosswalkKey> = HashSet::new();
    for wave in waves {
        let mut full = Vec::new();
        let mut partial = Vec::new();
        let mut tasks = Vec::new();
        for scheduled in wave {
            if blocked.contains(&scheduled.write.key) {
                report.record(
                    &scheduled.records,
                    WriteOutcome::Transient("an earlier change to the same key failed".into()),
                );
                continue;
            }
            match &scheduled.write.op {
                WriteOp::Post { partial: true, .. } => partial.push(scheduled),
                WriteOp::Post { partial: false, .. } => full.push(scheduled),
                WriteOp::DeleteCrosswalk => tasks.push(Task::Delete(scheduled)),
            }
        }
        for (is_partial, writes) in [(false, full), (true, partial)] {
            let mut writes = writes.into_iter().peekable();
            while writes.peek().is_some() {
                tasks.push(Task::Post {
                    partial: is_partial,
                    writes: writes.by_ref().take(settings.batch_size.max(1)).collect(),
                });
            }
        }
        let results: Vec<TaskResult> = stream::iter(tasks)
            .map(|task| run_task(writer, task, deadline))
            .buffer_unordered(settings.max_concurrency.max(1))
            .collect()
            .await;
        for (done, requests, latencies) in results {
            report.requests += requests;
            report.latencies_ms.extend(latencies);
            for (scheduled, outcome) in done {
                if matches!(outcome, WriteOutcome::Transient(_)) {
                    blocked.insert(scheduled.write.key.clone());
                }
                report.record(&scheduled.records, outcome);
            }
        }
    }
    report
}

type TaskResult = (Vec<(ScheduledWrite, WriteOutcome)>, usize, Vec<f64>);

async fn run_task(writer: &dyn EntityWriter, task: Task, deadline: Instant) -> TaskResult {
    match task {
        Task::Delete(scheduled) => {
            if remaining(deadline).is_zero() {
                return (vec![(scheduled, out_of_time())], 0, vec![]);
            }
            let started = std::time::Instant::now();
            let result = writer
                .delete_crosswalk(&scheduled.write.key, deadline)
                .await;
            let latency = started.elapsed().as_secs_f64() * 1000.0;
            let outcome = match result {
                Ok(()) => WriteOutcome::Written,
                Err(e) => from_error(&e),
            };
            (vec![(scheduled, outcome)], 1, vec![latency])
        }
        Task::Post { partial, writes } => post(writer, partial, writes, deadline).await,
    }
}

/// Posts `writes` as one request. A whole request rejected as invalid (400/422) is split in halves and
/// retried, so that one bad entity is isolated instead of dead-lettering its whole batch.
fn post<'a>(
    writer: &'a dyn EntityWriter,
    partial: bool,
    writes: Vec<ScheduledWrite>,
    deadline: Instant,
) -> Pin<Box<dyn Future<Output = TaskResult> + Send + 'a>> {
    Box::pin(async move {
        if remaining(deadline).is_zero() {
            let out = writes.into_iter().map(|w| (w, out_of_time())).collect();
            return (out, 0, vec![]);
        }
        let bodies: Vec<EntityBody> = writes
            .iter()
            .map(|w| match &w.write.op {
                WriteOp::Post { body, .. } => body.clone(),
                WriteOp::DeleteCrosswalk => unreachable!("deletes are not posted"),
            })
            .collect();
        let started = std::time::Instant::now();
        let result = writer.post_entities(&bodies, partial, deadline).await;
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(items) => {
                let out = writes
                    .into_iter()
                    .zip(items)
                    .map(|(w, item)| {
                        let outcome = match item {
                            ItemOutcome::Written { .. } => WriteOutcome::Written,
                            ItemOutcome::Failed {
                                message,
                                transient: true,
                            } => WriteOutcome::Transient(format!("Reltio: {message}")),
                            ItemOutcome::Failed {
                                message,
                                transient: false,
                            } => WriteOutcome::Permanent(format!(
                                "Reltio rejected the entity: {message}"
                            )),
                        };
                        (w, outcome)
                    })
                    .collect();
                (out, 1, vec![latency])
            }
            Err(e) if !e.is_transient() && writes.len() > 1 => {
                let mut first = writes;
                let second = first.split_off(first.len() / 2);
                let (mut a, ra, mut la) = post(writer, partial, first, deadline).await;
                let (b, rb, lb) = post(writer, partial, second, deadline).await;
                a.extend(b);
                la.push(latency);
                la.extend(lb);
                (a, 1 + ra + rb, la)
            }
            Err(e) => {
                let outcome = from_error(&e);
                let out = writes.into_iter().map(|w| (w, outcome.clone())).collect();
                (out, 1, vec![latency])
            }
        }
    })
}

fn from_error(e: &ReltioError) -> WriteOutcome {
    if e.is_transient() {
        WriteOutcome::Transient(e.to_string())
    } else {
        WriteOutcome::Permanent(e.to_string())
    }
}

fn out_of_time() -> WriteOutcome {
    WriteOutcome::Transient("no time left in this invocation".into())
}
