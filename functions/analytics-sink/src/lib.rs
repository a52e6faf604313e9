//! analytics-sink: Reltio's entity change events from its subscription queue → one append-only change record per
//! distinct event on Amazon Data Firehose (S3, gzip NDJSON, partitioned by entity type and date), with an SQS
//! partial batch response. Every message ends recorded, deliberately skipped (not an entity event the mapping
//! records, or recorded before; counted), dead-lettered to `ANALYTICS_DLQ_URL` with its reason (permanent
//! failure), or reported as a batch item failure (transient: Firehose or Reltio unavailable). A batch that wrote
//! records sends a refresh signal on EventBridge when `ANALYTICS_EVENT_BUS` is set.

use aws_lambda_events::event::sqs::SqsBatchResponse;
use mdm_sync_adapters::config::{self, ConfigError, Env};
use mdm_sync_adapters::event_source::{sqs_ordering, sqs_response};
use mdm_sync_adapters::eventbridge::RefreshSignal;
use mdm_sync_adapters::firehose::FirehoseSink;
use mdm_sync_adapters::metrics::{Metrics, DEFAULT_NAMESPACE};
use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::replay::DynamoReplayCache;
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::sqs::SqsQueue;
use mdm_sync_adapters::sqs_event::{SqsEvent, SqsMessage};
use mdm_sync_domain::analytics::{
    apply, decode, AnalyticsMapping, AnalyticsMappingError, Delivery, Item, Ports,
};
use mdm_sync_domain::outcome::Outcome;
use mdm_sync_domain::ports::{BatchSignal, DeliveredIds, EntitySource, MessageSink, RecordSink};
use mdm_sync_domain::queue::{event_dead_letter, EventLetter};
use mdm_sync_domain::settle::settle_batch;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FUNCTION_NAME: &str = "analytics-sink";
pub const DEFAULT_AUTH_URL: &str = "https://auth.reltio.com/oauth/token";
/// `ANALYTICS_DEDUP_TTL_DAYS` default: an id is remembered longer than any message can wait in SQS (14 days).
pub const DEFAULT_DEDUP_TTL_DAYS: u64 = 15;

/// Reltio access, for events that arrive without their snapshot (`exceededQueueSizeLimit`).
#[derive(Debug, Clone)]
pub struct ReltioSettings {
    pub api_url: String,
    pub auth_url: String,
    pub secret_id: String,
}

/// Settings, read once at start-up (docs/contract.md, "analytics-sink").
#[derive(Debug, Clone)]
pub struct Config {
    /// `FIREHOSE_STREAM_NAME`.
    pub stream_name: String,
    /// `ANALYTICS_MAPPING_FILE`.
    pub mapping_file: String,
    /// `ANALYTICS_DLQ_URL`.
    pub dlq_url: String,
    /// `METRICS_NAMESPACE` (default `MdmSync`).
    pub metrics_namespace: String,
    /// `ANALYTICS_DEDUP_TABLE` (optional): DynamoDB table of the event ids recorded, kept
    /// `ANALYTICS_DEDUP_TTL_DAYS` (default 15). Without it, duplicates are dropped within a batch and by the
    /// warehouse's views.
    pub dedup: Option<(String, Duration)>,
    /// `ANALYTICS_EVENT_BUS` (optional): the EventBridge bus (name or ARN) of the refresh signal.
    pub event_bus: Option<String>,
    /// `RELTIO_API_URL` (optional) with `RELTIO_SECRET_ID` and `RELTIO_AUTH_URL` (default Reltio's).
    pub reltio: Option<ReltioSettings>,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let dedup = match config::optional(env, "ANALYTICS_DEDUP_TABLE") {
            None => None,
            Some(table) => {
                let days = config::positive_or(
                    env,
                    "ANALYTICS_DEDUP_TTL_DAYS",
                    DEFAULT_DEDUP_TTL_DAYS as usize,
                    3650,
                )?;
                Some((table, Duration::from_secs(days as u64 * 24 * 3600)))
            }
        };
        let reltio = match config::optional(env, "RELTIO_API_URL") {
            None => None,
            Some(_) => Some(ReltioSettings {
                api_url: config::url(env, "RELTIO_API_URL")?,
                auth_url: config::url_or(env, "RELTIO_AUTH_URL", DEFAULT_AUTH_URL)?,
                secret_id: config::required(env, "RELTIO_SECRET_ID")?,
            }),
        };
        Ok(Config {
            stream_name: config::required(env, "FIREHOSE_STREAM_NAME")?,
            mapping_file: config::required(env, "ANALYTICS_MAPPING_FILE")?,
            dlq_url: config::url(env, "ANALYTICS_DLQ_URL")?,
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            dedup,
            event_bus: config::optional(env, "ANALYTICS_EVENT_BUS"),
            reltio,
        })
    }
}

/// What the handler works with; built once per container. No network I/O here.
pub struct Deps {
    pub config: Config,
    pub mapping: AnalyticsMapping,
    pub sink: Arc<dyn RecordSink + Send + Sync>,
    pub reltio: Option<Arc<dyn EntitySource + Send + Sync>>,
    pub dedup: Option<Arc<dyn DeliveredIds>>,
    pub signal: Option<Arc<dyn BatchSignal + Send + Sync>>,
    /// `ANALYTICS_DLQ_URL`.
    pub dlq: Arc<dyn MessageSink + Send + Sync>,
}

impl Deps {
    /// Loads and validates the mapping (an invalid file stops start-up) and builds the clients.
    pub fn new(
        config: Config,
        sdk: &aws_config::SdkConfig,
        retry: RetryPolicy,
    ) -> Result<Deps, AnalyticsMappingError> {
        let mapping = AnalyticsMapping::load(&config.mapping_file)?;
        let reltio = config.reltio.as_ref().map(|r| {
            Arc::new(ReltioClient::new(
                mdm_sync_adapters::http::client(),
                &r.api_url,
                &r.auth_url,
                CredentialSource::Secret(SecretCache::new(
                    aws_sdk_secretsmanager::Client::new(sdk),
                    &r.secret_id,
                )),
                retry,
            )) as Arc<dyn EntitySource + Send + Sync>
        });
        let dedup = config.dedup.as_ref().map(|(table, ttl)| {
            Arc::new(DynamoReplayCache::new(
                aws_sdk_dynamodb::Client::new(sdk),
                table,
                *ttl,
            )) as Arc<dyn DeliveredIds>
        });
        let signal = config.event_bus.as_ref().map(|bus| {
            Arc::new(RefreshSignal::new(
                aws_sdk_eventbridge::Client::new(sdk),
                bus,
                &config.stream_name,
            )) as Arc<dyn BatchSignal + Send + Sync>
        });
        Ok(Deps {
            sink: Arc::new(FirehoseSink::new(
                aws_sdk_firehose::Client::new(sdk),
                &config.stream_name,
            )),
            dlq: Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                &config.dlq_url,
            )),
            mapping,
            reltio,
            dedup,
            signal,
            config,
        })
    }
}

/// The handler's answer and the invocation's metrics (the caller emits them).
pub struct Handled {
    pub response: SqsBatchResponse,
    pub metrics: Metrics,
}

fn delivery(m: &mut SqsMessage) -> Delivery {
    let attribute = |name: &str| {
        m.message_attributes
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Delivery {
        message_id: m.message_id.clone().unwrap_or_default(),
        event_id: attribute("eventId"),
        tenant_id: attribute("tenantId"),
        object_version: attribute("objectVersion"),
        body: m.body.take().unwrap_or_default(),
    }
}

/// SQS's `ApproximateReceiveCount` (1 when missing or unreadable).
fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes
        .approximate_receive_count
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// Plan → apply (through the ports) → settle (dead letters, partial batch response) → refresh signal.
pub async fn handle(deps: &Deps, event: SqsEvent, deadline: Instant) -> Handled {
    let mut metrics = Metrics::new(&deps.config.metrics_namespace, FUNCTION_NAME);
    let mut messages = event.records;
    metrics.count("RecordsReceived", messages.len() as u64);
    let received_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut items: Vec<Item> = messages
        .iter_mut()
        .map(|m| decode(&deps.mapping, delivery(m), &received_at))
        .collect();
    let ports = Ports {
        sink: deps.sink.as_ref(),
        reltio: deps.reltio.as_deref().map(|r| r as &dyn EntitySource),
        dedup: deps.dedup.as_deref(),
    };
    let report = apply(ports, &mut items, deadline, &deps.mapping).await;
    for (name, n) in &report.counts {
        metrics.count(name, *n);
    }

    let mut outcomes: Vec<Outcome> = items
        .iter()
        .map(|i| {
            i.outcome
                .clone()
                .unwrap_or_else(|| Outcome::Transient("not recorded in this invocation".into()))
        })
        .collect();
    let fifo_dlq = deps.dlq.is_fifo();
    let ordering = sqs_ordering(&messages);
    let settled = settle_batch(&mut outcomes, ordering, deps.dlq.as_ref(), |i, reason| {
        let item = &items[i];
        tracing::warn!(entity = item.entity_uri.as_deref(), event_id = %item.event_id, %reason, "dead-lettering");
        event_dead_letter(
            &EventLetter {
                reason,
                attempts: receive_count(&messages[i]),
                message_id: &item.message_id,
                event_id: &item.event_id,
                entity_uri: item.entity_uri.as_deref(),
                body: &item.body,
            },
            fifo_dlq,
        )
    })
    .await;
    metrics.count("RecordsDeadLettered", settled.dead_lettered as u64);
    let settlement = &settled.settlement;
    let now = chrono::Utc::now().timestamp_millis();
    for (i, (item, outcome)) in items.iter().zip(&outcomes).enumerate() {
        if !settlement.is_settled(i) {
            metrics.count("RecordsRetried", 1);
            if let Outcome::Transient(reason) = outcome {
                tracing::warn!(entity = item.entity_uri.as_deref(), event_id = %item.event_id, %reason, "will be retried");
            }
            continue;
        }
        match outcome {
            Outcome::Done => {
                let record = item.written.as_ref();
                if let Some(t) = record.and_then(|r| r.updated_time) {
                    metrics.time_ms("EndToEndLatency", (now - t).max(0) as f64);
                }
                // The hand-over: the entity and version (the upstream hops' id), and the trace of the invocation
                // that enqueued the event.
                tracing::info!(
                    entity = item.entity_uri.as_deref(),
                    object_version = record.and_then(|r| r.object_version),
                    change_type = record.map(|r| format!("{:?}", r.change_type)).as_deref(),
                    event_id = %item.event_id,
                    upstream_trace = messages[i].attributes.aws_trace_header.as_deref(),
                    "recorded"
                );
            }
            Outcome::Skipped(reason) => metrics.count(reason.metric(), 1),
            Outcome::Permanent(_) | Outcome::Transient(_) => {}
        }
    }
    if let Some(signal) = &deps.signal {
        match signal.batch_written(&report).await {
            Ok(sent) => metrics.count("RefreshSignalsSent", sent as u64),
            Err(reason) => {
                tracing::warn!(%reason, "the refresh signal could not be sent (the records are written)");
                metrics.count("RefreshSignalFailures", 1);
            }
        }
    }
    Handled {
        response: sqs_response(settlement, &messages),
        metrics,
    }
}
