//! cdc-ingest: applies database change records to Reltio: AWS DMS records arriving on Kinesis, and Debezium,
//! GoldenGate or DMS messages arriving on Kafka (self-managed or MSK), with the source's partial batch response.
//! Every record ends written, deliberately skipped, dead-lettered with its reason, or reported as a batch item
//! failure so Lambda retries it (and, on Kafka, the rest of its partition) from there.

/// cdc-ingest's allocator (and so its tests' and benches'): the CDC path builds a small JSON tree per record, and
/// under glibc's malloc `perf` put over a third of its time in malloc, free and their consolidation. mimalloc took
/// the 10,000-record event → request bodies path from 287 ms to 187–209 ms (`make bench-cdc`). Only here: the
/// other functions allocate little per invocation, and the crm-updater's package would pass 6 MB with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aws_lambda_events::event::streams::KinesisEventResponse;
use mdm_sync_adapters::config::{self, ConfigError, Env};
use mdm_sync_adapters::event_source::{kafka_response, kinesis_response};
use mdm_sync_adapters::kafka::{self, KafkaEventResponse};
use mdm_sync_adapters::key_ledger::DynamoKeyLedger;
use mdm_sync_adapters::kinesis::{self, KinesisEvent, KinesisEventRecord};
use mdm_sync_adapters::metrics::{Metrics, DEFAULT_NAMESPACE};
use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::sqs::SqsQueue;
use mdm_sync_domain::cdc::apply::{apply, ApplySettings};
use mdm_sync_domain::cdc::batch::{plan_records, BatchPlan, Planned, RecordInfo};
use mdm_sync_domain::cdc::mapping::{CdcMapping, MappingError};
use mdm_sync_domain::dms::DEFAULT_BEFORE_IMAGE_FIELD;
use mdm_sync_domain::outcome::{Outcome, SkipReason};
use mdm_sync_domain::ports::{EntityWriter, KeyLedger, MessageSink};
use mdm_sync_domain::queue::{omitted, OutgoingMessage, DEAD_LETTER_MAX_BYTES};
use mdm_sync_domain::settle::{settle_batch, Ordering, Settlement};
use serde_json::{json, Value};
use std::time::Instant;

mod event;
pub use event::{CdcEvent, CdcResponse};

pub const FUNCTION_NAME: &str = "cdc-ingest";
/// Reltio's default token endpoint.
pub const DEFAULT_AUTH_URL: &str = "https://auth.reltio.com/oauth/token";
pub const DEFAULT_BATCH_SIZE: usize = 100;
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// Settings, read once at start-up (docs/contract.md, "cdc-ingest").
#[derive(Debug, Clone)]
pub struct Config {
    pub reltio_api_url: String,
    /// Default `https://auth.reltio.com/oauth/token`.
    pub reltio_auth_url: String,
    pub reltio_secret_id: String,
    pub mapping_file: String,
    pub dlq_url: String,
    /// Entities per `POST /entities` (default 100, at most 1000).
    pub batch_size: usize,
    /// `POST`s in flight at once (default 4, at most 64).
    pub max_concurrency: usize,
    /// CloudWatch namespace for metrics (default `MdmSync`).
    pub metrics_namespace: String,
    /// The DMS task's `BeforeImageSettings.FieldName` (default `before-image`).
    pub before_image_field: String,
    /// `CDC_KEY_LEDGER_TABLE` (optional) and `CDC_KEY_LEDGER_RETENTION_DAYS` (default 8: past Kinesis's
    /// 7-day maximum retention): the CDC key ledger, which skips changes older than what was applied per key.
    pub key_ledger: Option<(String, std::time::Duration)>,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        Ok(Config {
            reltio_api_url: config::url(env, "RELTIO_API_URL")?,
            reltio_auth_url: config::url_or(env, "RELTIO_AUTH_URL", DEFAULT_AUTH_URL)?,
            reltio_secret_id: config::required(env, "RELTIO_SECRET_ID")?,
            mapping_file: config::required(env, "CDC_MAPPING_FILE")?,
            dlq_url: config::url(env, "CDC_DLQ_URL")?,
            batch_size: config::positive_or(env, "RELTIO_BATCH_SIZE", DEFAULT_BATCH_SIZE, 1000)?,
            max_concurrency: config::positive_or(
                env,
                "RELTIO_MAX_CONCURRENCY",
                DEFAULT_MAX_CONCURRENCY,
                64,
            )?,
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            before_image_field: config::optional(env, "CDC_BEFORE_IMAGE_FIELD")
                .unwrap_or_else(|| DEFAULT_BEFORE_IMAGE_FIELD.to_owned()),
            key_ledger: match config::optional(env, "CDC_KEY_LEDGER_TABLE") {
                None => None,
                Some(table) => {
                    let days = config::positive_or(env, "CDC_KEY_LEDGER_RETENTION_DAYS", 8, 3650)?;
                    Some((table, std::time::Duration::from_secs(days as u64 * 86_400)))
                }
            },
        })
    }
}

/// What the handler works with; built once per container and reused across invocations.
pub struct Deps {
    pub config: Config,
    pub mapping: CdcMapping,
    pub writer: Box<dyn EntityWriter + Send>,
    /// `CDC_DLQ_URL`.
    pub dlq: Box<dyn MessageSink + Send>,
    /// The CDC key ledger, when `CDC_KEY_LEDGER_TABLE` is set.
    pub key_ledger: Option<Box<dyn KeyLedger + Send>>,
    /// Waits between whole-batch attempts while every write fails transiently (an outage, a refused
    /// credential): the invocation keeps trying until its deadline instead of failing fast.
    pub outage_backoff: RetryPolicy,
}

/// The least time a whole-batch attempt is given after an outage wait.
const OUTAGE_MIN_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whole-batch attempts during an outage: 1 s doubling to 10 s, as many as the invocation's deadline allows.
pub const OUTAGE_BACKOFF: RetryPolicy = RetryPolicy {
    base: std::time::Duration::from_secs(1),
    cap: std::time::Duration::from_secs(10),
    max_attempts: u32::MAX,
};

impl Deps {
    /// Loads and validates the mapping (an invalid file stops start-up) and builds the clients. No network
    /// I/O: the secret and the token are fetched on first use.
    pub fn new(
        config: Config,
        sdk: &aws_config::SdkConfig,
        http: reqwest::Client,
        retry: RetryPolicy,
    ) -> Result<Deps, MappingError> {
        let mapping = CdcMapping::load(&config.mapping_file)?;
        let secrets = SecretCache::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            &config.reltio_secret_id,
        );
        let reltio = ReltioClient::new(
            http,
            &config.reltio_api_url,
            &config.reltio_auth_url,
            CredentialSource::Secret(secrets),
            retry,
        );
        Ok(Deps {
            mapping,
            writer: Box::new(reltio),
            dlq: Box::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                &config.dlq_url,
            )),
            outage_backoff: OUTAGE_BACKOFF,
            key_ledger: config.key_ledger.as_ref().map(|(table, retention)| {
                Box::new(DynamoKeyLedger::new(
                    aws_sdk_dynamodb::Client::new(sdk),
                    table,
                    *retention,
                )) as Box<dyn KeyLedger + Send>
            }),
            config,
        })
    }
}

/// The batch planned, with the changes the key ledger knows to be older than what was applied left out.
async fn plan(deps: &Deps, mut planned: Planned, metrics: &mut Metrics) -> BatchPlan {
    if let Some(ledger) = &deps.key_ledger {
        let keys = planned.versioned_keys();
        if !keys.is_empty() {
            match ledger.applied(&keys).await {
                Ok(applied) => {
                    let stale = planned.skip_stale(&applied);
                    metrics.count("StaleWritesSkipped", stale as u64);
                }
                Err(e) => planned.fail_pending(Outcome::Transient(e.to_string())),
            }
        }
    }
    planned.into_batch()
}

/// Handles either event (what `main` is invoked with).
pub async fn handle_event(deps: &Deps, event: CdcEvent, deadline: Instant) -> CdcResponse {
    match event {
        CdcEvent::Kinesis(event) => CdcResponse::Kinesis(handle(deps, event, deadline).await),
        CdcEvent::Kafka(event) => CdcResponse::Kafka(handle_kafka(deps, event, deadline).await),
    }
}

/// A Kinesis event of DMS records: one shard, in order, so Lambda retries everything from the first reported
/// record on.
pub async fn handle(deps: &Deps, event: KinesisEvent, deadline: Instant) -> KinesisEventResponse {
    let records = event.records;
    let inputs = kinesis::cdc_inputs(&records);
    let planner = || {
        plan_records(
            &deps.mapping,
            &deps.config.before_image_field,
            &inputs,
            chrono::Utc::now(),
        )
    };
    let locate = |i: usize| inputs[i].position.to_string();
    let dead_letter =
        |i: usize, info: &RecordInfo, reason: &str| dlq_message(&records[i], info, reason);
    let source = Source {
        records: records.len(),
        ordering: Ordering::Sequence,
        plan: &planner,
        locate: &locate,
        dead_letter: &dead_letter,
    };
    let settlement = process(deps, source, deadline).await;
    kinesis_response(&settlement, &records)
}

/// A Kafka event (Debezium, GoldenGate or DMS messages): each partition is its own ordered sequence, redelivered
/// from its first reported record.
pub async fn handle_kafka(
    deps: &Deps,
    event: aws_lambda_events::event::kafka::KafkaEvent,
    deadline: Instant,
) -> KafkaEventResponse {
    let (records, lanes) = kafka::records(event);
    let inputs = kafka::cdc_inputs(&records, &lanes);
    let planner = || {
        plan_records(
            &deps.mapping,
            &deps.config.before_image_field,
            &inputs,
            chrono::Utc::now(),
        )
    };
    let locate = |i: usize| inputs[i].position.to_string();
    let dead_letter = |i: usize, info: &RecordInfo, reason: &str| {
        let mut context = serde_json::Map::new();
        context.insert("table".into(), json!(info.table));
        context.insert(
            "crosswalkValue".into(),
            json!(info.key.as_ref().map(|k| k.value.clone())),
        );
        kafka::dead_letter(&records[i], FUNCTION_NAME, reason, context)
    };
    let source = Source {
        records: records.len(),
        ordering: Ordering::Lanes(&lanes),
        plan: &planner,
        locate: &locate,
        dead_letter: &dead_letter,
    };
    let settlement = process(deps, source, deadline).await;
    kafka_response(&settlement, &records)
}

/// What the shared core needs of a batch's source.
struct Source<'a> {
    records: usize,
    ordering: Ordering<'a>,
    /// Decodes and plans the batch (again on each whole-batch attempt: the key ledger's answer may change).
    plan: &'a (dyn Fn() -> Planned + Sync),
    /// Where a record is in its stream, for logs when its change names no position.
    locate: &'a (dyn Fn(usize) -> String + Sync),
    /// The DLQ message of a record.
    dead_letter: &'a (dyn Fn(usize, &RecordInfo, &str) -> OutgoingMessage + Sync),
}

/// Plans, writes, records in the key ledger, settles and counts a batch; the settlement is what the source's
/// partial batch response is built from.
async fn process(deps: &Deps, source: Source<'_>, deadline: Instant) -> Settlement {
    let mut metrics = Metrics::new(&deps.config.metrics_namespace, FUNCTION_NAME);
    metrics.count("RecordsReceived", source.records as u64);
    let settings = ApplySettings {
        batch_size: deps.config.batch_size,
        max_concurrency: deps.config.max_concurrency,
    };
    // When every write of the batch fails transiently (Reltio down, a refused credential), back off and try the
    // batch again within this invocation rather than hand Lambda a failure at once: the event source's retries
    // then only take over when the outage outlasts the invocation.
    let mut attempt = 0;
    let (plan, report) = loop {
        attempt += 1;
        let mut plan = plan(deps, (source.plan)(), &mut metrics).await;
        let waves = std::mem::take(&mut plan.waves);
        let report = apply(deps.writer.as_ref(), waves, settings, deadline).await;
        metrics.count("ReltioRequests", report.requests as u64);
        for ms in &report.latencies_ms {
            metrics.time_ms("ReltioLatency", *ms);
        }
        let outage = !report.outcomes.is_empty()
            && report
                .outcomes
                .values()
                .all(|o| matches!(o, Outcome::Transient(_)));
        // Leave room for one more attempt after the wait.
        let wait = deps
            .outage_backoff
            .next_wait(attempt, None, deadline - OUTAGE_MIN_ATTEMPT)
            .filter(|_| outage && deadline > Instant::now() + OUTAGE_MIN_ATTEMPT);
        match wait {
            Some(wait) => {
                let reason = report.outcomes.values().find_map(|o| match o {
                    Outcome::Transient(r) => Some(r.as_str()),
                    _ => None,
                });
                tracing::warn!(
                    attempt,
                    ?wait,
                    reason,
                    "every write failed transiently; retrying the batch"
                );
                metrics.count("BatchRetriesInInvocation", 1);
                tokio::time::sleep(wait).await;
            }
            None => break (plan, report),
        }
    };

    let mut outcomes: Vec<Outcome> = plan
        .outcomes
        .iter()
        .map(|o| o.clone().unwrap_or(Outcome::Done))
        .collect();
    let entity_uris = report.entity_uris;
    for (i, outcome) in report.outcomes {
        outcomes[i] = outcome;
    }
    // The key ledger learns what was written; if it cannot, the records are retried (their writes are
    // idempotent) rather than left unrecorded, where an older replay could undo them.
    if let Some(ledger) = &deps.key_ledger {
        let entries = plan.ledger_entries(|i| outcomes[i] == Outcome::Done);
        if !entries.is_empty() {
            if let Err(e) = ledger.record(&entries).await {
                for (i, _, _, _) in &plan.tracked {
                    if outcomes[*i] == Outcome::Done {
                        outcomes[*i] =
                            Outcome::Transient(format!("recording in the CDC key ledger: {e}"));
                    }
                }
            }
        }
    }
    let infos = &plan.infos;
    let correlation = |i: usize| correlation_id(&infos[i], || (source.locate)(i));

    let settled = settle_batch(
        &mut outcomes,
        source.ordering,
        deps.dlq.as_ref(),
        |i, reason| {
            tracing::warn!(
                correlation_id = %correlation(i),
                reason = %reason,
                "dead-lettering record"
            );
            (source.dead_letter)(i, &infos[i], reason)
        },
    )
    .await;
    for &i in &settled.dead_letter_failures {
        tracing::error!(
            correlation_id = %correlation(i),
            "could not dead-letter record; it will be retried"
        );
    }
    let settlement = settled.settlement;
    metrics.count("RecordsDeadLettered", settled.dead_lettered as u64);

    let mut written = 0;
    let mut skipped = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        if !settlement.is_settled(i) {
            continue;
        }
        match outcome {
            Outcome::Done => {
                written += 1;
                // The hand-over: the source's change and the Reltio entity it became (absent for a crosswalk
                // deletion), which the webhook receiver and crm-updater log under the same URI.
                tracing::info!(
                    correlation_id = %correlation(i),
                    entity = entity_uris.get(&i).map(String::as_str),
                    "written to Reltio"
                );
                if let Some(t) = infos[i].source_time {
                    let ms = (chrono::Utc::now() - t).num_milliseconds().max(0);
                    metrics.time_ms("EndToEndLatency", ms as f64);
                }
            }
            Outcome::Skipped(reason) => {
                skipped += 1;
                metrics.count(reason.metric(), 1);
                if *reason == SkipReason::Truncate {
                    // A truncate empties a table at the source; Reltio keeps its entities until someone decides.
                    tracing::warn!(correlation_id = %correlation(i), "source table truncated: not applied to Reltio");
                }
            }
            _ => {}
        }
    }
    metrics.count("RecordsWritten", written);
    metrics.count("RecordsSkipped", skipped);

    for &i in &settlement.checkpoints {
        if let Outcome::Transient(reason) = &outcomes[i] {
            tracing::warn!(
                correlation_id = %correlation(i),
                reason = %reason,
                "transient failure: Lambda retries from this record"
            );
        }
    }
    metrics.count("BatchItemFailures", settlement.checkpoints.len() as u64);
    tracing::info!(
        received = source.records,
        written,
        skipped,
        dead_lettered = settled.dead_lettered,
        retried = settlement.retry.len(),
        "batch done"
    );
    metrics.emit();
    settlement
}

/// `table/key@position`: follows a change from the source through Reltio. Never holds column values beyond the
/// key. The position is the change's commit time, else where the record is in its stream.
fn correlation_id(info: &RecordInfo, locate: impl FnOnce() -> String) -> String {
    format!(
        "{}/{}@{}",
        info.table.as_deref().unwrap_or("?"),
        info.key.as_ref().map(|k| k.value.as_str()).unwrap_or("?"),
        info.position.clone().unwrap_or_else(locate)
    )
}
/// The DLQ message: the original record (as JSON when it is JSON, else base64) with why it failed.
fn dlq_message(record: &KinesisEventRecord, info: &RecordInfo, reason: &str) -> OutgoingMessage {
    let data: &[u8] = &record.kinesis.data;
    let original = match serde_json::from_slice::<Value>(data) {
        Ok(v) => json!({ "record": v }),
        Err(_) => {
            use base64::Engine;
            json!({ "recordBase64": base64::engine::general_purpose::STANDARD.encode(data) })
        }
    };
    let mut body = json!({
        "function": FUNCTION_NAME,
        "reason": reason,
        "table": info.table,
        "key": info.key.as_ref().map(|k| k.value.clone()),
        "sequenceNumber": record.kinesis.sequence_number,
        "partitionKey": record.kinesis.partition_key,
        "eventSourceArn": record.event_source_arn,
        "eventId": record.event_id,
        "failedAt": chrono::Utc::now().to_rfc3339(),
    });
    let mut attributes = vec![("function".to_owned(), FUNCTION_NAME.to_owned())];
    if let Some(t) = &info.table {
        attributes.push(("table".to_owned(), t.clone()));
    }
    let mut message = OutgoingMessage {
        body: String::new(),
        attributes,
        ..Default::default()
    };
    let Value::Object(fields) = &mut body else {
        unreachable!("built as an object")
    };
    let mut full = fields.clone();
    if let Value::Object(o) = original {
        full.extend(o);
    }
    message.body = Value::Object(full).to_string();
    if message.size() > DEAD_LETTER_MAX_BYTES {
        // A record of up to 1 MiB does not fit: it stays in the stream, fetched by its sequence number.
        let shard = record
            .event_id
            .as_deref()
            .and_then(|id| id.split_once(':'))
            .map(|(shard, _)| shard.to_owned());
        fields.insert("shardId".into(), json!(shard));
        fields.insert(
            "recordOmitted".into(),
            omitted(
                data,
                "the stream: GetShardIterator AT_SEQUENCE_NUMBER sequenceNumber in shardId, while within the \
                 stream's retention",
            ),
        );
        message.body = body.to_string();
    }
    message
}
