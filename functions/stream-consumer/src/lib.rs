//! stream-consumer: Reltio's change stream on Kafka (a self-managed Apache Kafka or MSK event source) → the SQS
//! event queue, with the webhook receiver's message contract and subscription filter, so that the crm-updater reads
//! both alike.
//!
//! Every record ends enqueued (all its subscribed events durably on the queue), filtered, dead-lettered with its
//! reason (a poison record: no value, not JSON, not a Reltio event, too large), or reported in Kafka's partial batch
//! response at the first failed record of its partition, from which Lambda redelivers that partition. Logs carry
//! topic/partition/offset and event ids, never values.

use aws_lambda_events::event::kafka::KafkaEvent;
use mdm_sync_adapters::config::{self, ConfigError, Env, EventDestination};
use mdm_sync_adapters::event_source::kafka_response;
use mdm_sync_adapters::kafka::{dead_letter, records, KafkaEventResponse, StreamRecord};
use mdm_sync_adapters::metrics::{Metrics, DEFAULT_NAMESPACE};
use mdm_sync_adapters::sns::event_sink;
use mdm_sync_adapters::sqs::SqsQueue;
use mdm_sync_domain::outcome::{Outcome, SkipReason};
use mdm_sync_domain::ports::MessageSink;
use mdm_sync_domain::queue::{OutgoingMessage, SendFailure};
use mdm_sync_domain::settle::{settle_batch, Ordering, Settlement};
use mdm_sync_domain::stream::{plan_record, StreamSettings};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub const FUNCTION_NAME: &str = "stream-consumer";
/// `STREAM_MAX_EVENT_BYTES` default: the event queue's `MaximumMessageSize` in the template (1 MiB, SQS's largest).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Settings, read once at start-up (docs/contract.md, "stream-consumer").
#[derive(Debug, Clone)]
pub struct Config {
    /// `EVENT_TOPIC_ARN` (the fan-out topic) when set, else `EVENT_QUEUE_URL` (FIFO when it ends in `.fifo`).
    pub destination: EventDestination,
    /// `STREAM_DLQ_URL`.
    pub dlq_url: String,
    /// `EVENT_TYPES`, `ENTITY_TYPES`; `STREAM_MAX_EVENT_BYTES` (default 1 MiB, at most 1 MiB).
    pub settings: StreamSettings,
    /// `METRICS_NAMESPACE` (default `MdmSync`).
    pub metrics_namespace: String,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        Ok(Config {
            destination: config::event_destination(env)?,
            dlq_url: config::url(env, "STREAM_DLQ_URL")?,
            settings: StreamSettings {
                subscription: config::subscription(env)?,
                max_event_bytes: config::positive_or(
                    env,
                    "STREAM_MAX_EVENT_BYTES",
                    DEFAULT_MAX_EVENT_BYTES,
                    DEFAULT_MAX_EVENT_BYTES,
                )?,
            },
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        })
    }

    fn fifo(&self) -> bool {
        self.destination.is_fifo()
    }
}

/// What the handler works with; built once per container. No network I/O here.
pub struct Deps {
    pub config: Config,
    /// `EVENT_TOPIC_ARN` or `EVENT_QUEUE_URL`.
    pub queue: Arc<dyn MessageSink + Send + Sync>,
    /// `STREAM_DLQ_URL`.
    pub dlq: Arc<dyn MessageSink + Send + Sync>,
}

impl Deps {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Deps {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Deps {
            queue: event_sink(&config.destination, sdk),
            dlq: Arc::new(SqsQueue::new(sqs, &config.dlq_url)),
            config,
        }
    }
}

/// Per-invocation counts (also the metrics): `RecordsReceived`, `EventsEnqueued`, `EventsFiltered`,
/// `RecordsDeadLettered`, `BatchItemFailures`, …
#[derive(Debug, Default)]
struct Tally {
    enqueued: u64,
    filtered: u64,
    empty: u64,
}

/// Handles one Kafka event: the partial batch response names, per partition, the first record to redeliver.
pub async fn handle(deps: &Deps, event: KafkaEvent, deadline: Instant) -> KafkaEventResponse {
    let started = Instant::now();
    let mut metrics = Metrics::new(&deps.config.metrics_namespace, FUNCTION_NAME);
    let (records, lanes) = records(event);
    metrics.count("RecordsReceived", records.len() as u64);

    // Plan every record, then send every message of the batch at once: one SendMessageBatch per ten events
    // whatever the partitions, instead of a round trip per record.
    let fifo = deps.config.fifo();
    let mut outcomes = Vec::with_capacity(records.len());
    let mut messages: Vec<OutgoingMessage> = Vec::new();
    let mut owners: Vec<usize> = Vec::new();
    // Per message: the event's id, entity URI and objectVersion, logged once the message is handed on.
    let mut handed: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    let mut tally = Tally::default();
    for (i, record) in records.iter().enumerate() {
        let value = match &record.value {
            Ok(v) => v.as_deref(),
            Err(reason) => {
                outcomes.push(Outcome::Permanent((*reason).to_owned()));
                continue;
            }
        };
        match plan_record(value, &record.headers, &deps.config.settings, fifo) {
            Ok((plan, batch)) => {
                tally.filtered += plan.filtered.len() as u64;
                for e in &plan.filtered {
                    tracing::debug!(record = %position(record), event_id = %e.id, event_type = %e.event_type, "filtered out");
                }
                outcomes.push(match (batch.is_empty(), plan.filtered.is_empty()) {
                    (false, _) => Outcome::Done,
                    (true, false) => Outcome::Skipped(SkipReason::Filtered),
                    (true, true) => {
                        tally.empty += 1;
                        Outcome::Skipped(SkipReason::Empty)
                    }
                });
                for (e, m) in plan.accepted.into_iter().zip(batch) {
                    owners.push(i);
                    messages.push(m);
                    handed.push((e.id, e.entity_uri, e.object_version));
                }
            }
            Err(e) => outcomes.push(Outcome::Permanent(e.to_string())),
        }
    }

    let failures = enqueue(deps.queue.as_ref(), &messages, deadline).await;
    metrics.count("EnqueueFailures", failures.len() as u64);
    for f in &failures {
        let i = owners[f.index];
        if !outcomes[i].is_transient() {
            tracing::warn!(record = %position(&records[i]), "not enqueued: {}", f.reason);
        }
        outcomes[i] = Outcome::Transient(format!("enqueueing failed: {}", f.reason));
    }
    let failed_messages: std::collections::HashSet<usize> =
        failures.iter().map(|f| f.index).collect();

    let settled = settle_batch(
        &mut outcomes,
        Ordering::Lanes(&lanes),
        deps.dlq.as_ref(),
        |i, reason| {
            tracing::warn!(record = %position(&records[i]), reason = %reason, "dead-lettering record");
            dlq_message(&records[i], reason)
        },
    )
    .await;
    for &i in &settled.dead_letter_failures {
        tracing::error!(record = %position(&records[i]), "could not dead-letter record; it will be redelivered");
    }
    let settlement = &settled.settlement;

    // Enqueued and settled: an event of a record that is redelivered anyway is enqueued again then, and
    // deduplicated downstream by its event id.
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (m, &i) in owners.iter().enumerate() {
        if settlement.is_settled(i) && !failed_messages.contains(&m) {
            tally.enqueued += 1;
            // The hand-over: the stream's position and the entity, which crm-updater logs under the same URI.
            let (event_id, entity, version) = &handed[m];
            tracing::info!(
                record = %position(&records[i]),
                event_id = %event_id,
                entity = entity.as_deref(),
                object_version = version.as_deref(),
                "enqueued"
            );
        }
    }
    for (i, record) in records.iter().enumerate() {
        if settlement.is_settled(i) && outcomes[i] == Outcome::Done {
            metrics.time_ms(
                "EndToEndLatency",
                (now_ms - record.timestamp_ms).max(0) as f64,
            );
        }
    }
    for &i in &settlement.checkpoints {
        if let Outcome::Transient(reason) = &outcomes[i] {
            tracing::warn!(record = %position(&records[i]), reason = %reason, "transient failure: Lambda redelivers the partition from this record");
        }
    }
    log_partitions(&records, settlement);
    metrics.count("EventsEnqueued", tally.enqueued);
    metrics.count("EventsFiltered", tally.filtered);
    metrics.count("RecordsEmpty", tally.empty);
    metrics.count("RecordsDeadLettered", settled.dead_lettered as u64);
    metrics.count(
        "DeadLetterFailures",
        settled.dead_letter_failures.len() as u64,
    );
    metrics.count("BatchItemFailures", settlement.checkpoints.len() as u64);
    metrics.count("RecordsRetried", settlement.retry.len() as u64);
    metrics.time_ms("HandlerLatency", started.elapsed().as_secs_f64() * 1000.0);
    metrics.emit();
    kafka_response(settlement, &records)
}

/// Sends within the deadline; what is still unsent (all of it when the deadline passed first: some may have gone
/// out, and the redelivery is deduplicated downstream by event id).
async fn enqueue(
    queue: &dyn MessageSink,
    messages: &[OutgoingMessage],
    deadline: Instant,
) -> Vec<SendFailure> {
    if messages.is_empty() {
        return Vec::new();
    }
    match tokio::time::timeout_at(deadline.into(), queue.send(messages)).await {
        Ok(failures) => failures,
        Err(_) => (0..messages.len())
            .map(|index| SendFailure {
                index,
                reason: "timed out".into(),
            })
            .collect(),
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

/// The DLQ message: where the record is, its key, the reason and the value (mdm_sync_adapters::kafka).
fn dlq_message(record: &StreamRecord, reason: &str) -> OutgoingMessage {
    dead_letter(record, FUNCTION_NAME, reason, serde_json::Map::new())
}
