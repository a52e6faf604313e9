//! stream-consumer: Reltio's change stream on Kafka (a self-managed Apache Kafka or MSK event source) → the SQS
//! event queue, with the webhook receiver's message contract and subscription filter, so that the crm-updater reads
//! both alike.
//!
//! Every record ends enqueued (all its subscribed events durably on the queue), filtered, dead-lettered with its
//! reason (a poison record: no value, not JSON, not a Reltio event, too large), or reported in Kafka's partial batch
//! response at the first failed record of its partition, from which Lambda redelivers that partition. Logs carry
//! topic/partition/offset and event ids, never values.
//!
//! The batch runner (`mdm_sync_adapters::runner`) does the rest around the plan and apply below.

mod config;
pub use config::*;

use futures::future::BoxFuture;
use mdm_sync_adapters::enqueue::enqueue;
use mdm_sync_adapters::kafka::{KafkaEvent, KafkaEventResponse, StreamRecord};
use mdm_sync_adapters::metrics::Metrics;
use mdm_sync_adapters::runner::{self, Function};
use mdm_sync_adapters::s3::letter_store;
use mdm_sync_adapters::sns::event_sink;
use mdm_sync_adapters::source::{Kafka, KafkaInput};
use mdm_sync_adapters::sqs::SqsQueue;
use mdm_sync_domain::letter::LetterContext;
use mdm_sync_domain::outcome::{Outcome, SkipReason};
use mdm_sync_domain::ports::{Deadline, MessageSink, PayloadStore};
use mdm_sync_domain::queue::OutgoingMessage;
use mdm_sync_domain::settle::Settlement;
use mdm_sync_domain::stream::plan_record;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub const FUNCTION_NAME: &str = "stream-consumer";
/// What the handler works with; built once per container. No network I/O here.
pub struct Deps {
    pub config: Config,
    /// `EVENT_TOPIC_ARN` or `EVENT_QUEUE_URL`.
    pub queue: Arc<dyn MessageSink + Send + Sync>,
    /// `STREAM_DLQ_URL`.
    pub dlq: Arc<dyn MessageSink + Send + Sync>,
    /// The letter store (`LETTER_STORE_BUCKET`), when set.
    pub letter_store: Option<Arc<dyn PayloadStore + Send + Sync>>,
}

impl Deps {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Deps {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Deps {
            queue: event_sink(&config.destination, sdk),
            dlq: Arc::new(SqsQueue::new(sqs, &config.dlq_url)),
            letter_store: letter_store(config.letter_store_bucket.as_deref(), sdk),
            config,
        }
    }
}

/// One record once handled: how it ended, and the events it handed on (id, entity, objectVersion), logged once
/// the record is settled.
pub struct Handed {
    outcome: Outcome,
    events: Vec<(String, Option<String>, Option<String>)>,
    timestamp_ms: i64,
}

/// Handles one Kafka event and writes its metrics line: the partial batch response names, per partition, the
/// first record to redeliver.
pub async fn handle(deps: &Deps, event: KafkaEvent, deadline: Instant) -> KafkaEventResponse {
    let handled = runner::run::<Kafka, _>(deps, event, deadline).await;
    handled.metrics.emit();
    handled.response
}

impl Function<Kafka> for Deps {
    type Item = Handed;
    type Summary = ();

    fn name(&self) -> &'static str {
        FUNCTION_NAME
    }

    fn metrics_namespace(&self) -> &str {
        &self.config.metrics_namespace
    }

    fn dead_letters(&self) -> &dyn MessageSink {
        self.dlq.as_ref()
    }

    fn letter_store(&self) -> Option<&dyn PayloadStore> {
        self.letter_store.as_deref().map(|s| s as &dyn PayloadStore)
    }

    /// Plans every record, then sends every message of the batch at once: one SendMessageBatch per ten events
    /// whatever the partitions, instead of a round trip per record.
    fn apply<'a>(
        &'a self,
        inputs: Vec<KafkaInput<'a>>,
        deadline: Deadline,
        metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, (Vec<Handed>, ())> {
        Box::pin(async move {
            let fifo = self.config.fifo();
            let mut handed = Vec::with_capacity(inputs.len());
            let mut messages: Vec<OutgoingMessage> = Vec::new();
            let mut owners: Vec<usize> = Vec::new();
            let mut filtered = 0;
            for (i, record) in inputs.iter().map(|input| input.record).enumerate() {
                let mut item = Handed {
                    outcome: Outcome::Done,
                    events: Vec::new(),
                    timestamp_ms: record.timestamp_ms,
                };
                let value = match &record.value {
                    Ok(v) => v.as_deref(),
                    Err(reason) => {
                        item.outcome = Outcome::Permanent((*reason).to_owned());
                        handed.push(item);
                        continue;
                    }
                };
                match plan_record(value, &record.headers, &self.config.settings, fifo) {
                    Ok((plan, batch)) => {
                        filtered += plan.filtered.len() as u64;
                        for e in &plan.filtered {
                            tracing::debug!(record = %position(record), event_id = %e.id, event_type = %e.event_type, "filtered out");
                        }
                        if batch.is_empty() {
                            item.outcome = Outcome::Skipped(if plan.filtered.is_empty() {
                                SkipReason::Empty
                            } else {
                                SkipReason::Filtered
                            });
                        }
                        for (e, m) in plan.accepted.into_iter().zip(batch) {
                            owners.push(i);
                            messages.push(m);
                            item.events.push((e.id, e.entity_uri, e.object_version));
                        }
                    }
                    Err(e) => item.outcome = Outcome::Permanent(e.to_string()),
                }
                handed.push(item);
            }
            let failures = enqueue(self.queue.as_ref(), &messages, deadline).await;
            metrics.count("EventsFiltered", filtered);
            metrics.count("EventsEnqueued", (messages.len() - failures.len()) as u64);
            metrics.count("EnqueueFailures", failures.len() as u64);
            for f in failures {
                handed[owners[f.index]].outcome =
                    Outcome::Transient(format!("enqueueing failed: {}", f.reason));
            }
            (handed, ())
        })
    }

    fn outcome(&self, item: &Handed) -> Outcome {
        item.outcome.clone()
    }

    fn context(&self, _item: &Handed) -> LetterContext {
        LetterContext::default()
    }

    /// The hand-over: the stream's position and each event's entity, which crm-updater logs under the same URI.
    fn hand_over(&self, item: &Handed, record: &StreamRecord) {
        for (event_id, entity, version) in &item.events {
            tracing::info!(
                record = %position(record),
                event_id = %event_id,
                entity = entity.as_deref(),
                object_version = version.as_deref(),
                "enqueued"
            );
        }
    }

    fn source_time_ms(&self, item: &Handed) -> Option<i64> {
        Some(item.timestamp_ms)
    }

    fn settled<'a>(
        &'a self,
        records: &'a [StreamRecord],
        _summary: &'a (),
        settlement: &'a Settlement,
        _metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, ()> {
        log_partitions(records, settlement);
        Box::pin(async {})
    }
}

/// One line per partition: records received, the offsets they span, and how many are redelivered.
fn log_partitions(records: &[StreamRecord], settlement: &Settlement) {
    let mut per_partition: BTreeMap<&str, (usize, i64, i64, usize)> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let entry = per_partition
            .entry(r.partition_id.as_str())
            .or_insert((0, r.offset, r.offset, 0));
        entry.0 += 1;
        entry.1 = entry.1.min(r.offset);
        entry.2 = entry.2.max(r.offset);
        if !settlement.is_settled(i) {
            entry.3 += 1;
        }
    }
    for (partition, (received, first, last, retried)) in per_partition {
        tracing::info!(
            partition,
            received,
            first_offset = first,
            last_offset = last,
            retried,
            "partition batch done"
        );
    }
}

/// `<topic>-<partition>@<offset>`: follows a record from the stream to the queue.
fn position(r: &StreamRecord) -> String {
    format!("{}@{}", r.partition_id, r.offset)
}
