//! analytics-sink: Reltio's entity change events from its subscription queue → one append-only change record per
//! distinct event on Amazon Data Firehose (S3, gzip NDJSON, partitioned by entity type and date), with an SQS
//! partial batch response. Every message ends recorded, deliberately skipped (not an entity event the mapping
//! records, or recorded before; counted), dead-lettered to `ANALYTICS_DLQ_URL` with its reason (permanent
//! failure), or reported as a batch item failure (transient: Firehose or Reltio unavailable). A batch that wrote
//! records sends a refresh signal on EventBridge when `ANALYTICS_EVENT_BUS` is set.

//!
//! The batch runner (`mdm_sync_adapters::runner`) does the rest around the plan and apply below.

mod config;
pub use config::*;

use futures::future::BoxFuture;
use mdm_sync_adapters::eventbridge::RefreshSignal;
use mdm_sync_adapters::firehose::FirehoseSink;
use mdm_sync_adapters::metrics::Metrics;
use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::replay::DynamoReplayCache;
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::runner::{self, Function};
use mdm_sync_adapters::s3::letter_store;
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::source::Sqs;
use mdm_sync_adapters::sqs::SqsQueue;
use mdm_sync_adapters::sqs_event::{SqsEvent, SqsMessage};
use mdm_sync_domain::analytics::{
    apply, decode, AnalyticsMapping, AnalyticsMappingError, Item, Ports, Report,
};
use mdm_sync_domain::letter::LetterContext;
use mdm_sync_domain::outcome::Outcome;
use mdm_sync_domain::ports::{
    BatchSignal, Deadline, DeliveredIds, EntitySource, MessageSink, PayloadStore, RecordSink,
};
use mdm_sync_domain::queue::Delivery;
use mdm_sync_domain::reltio::message::{unpack, MessageItems};
use mdm_sync_domain::settle::Settlement;
use std::sync::Arc;
use std::time::Instant;

pub const FUNCTION_NAME: &str = "analytics-sink";

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
    /// The letter store (`LETTER_STORE_BUCKET`), when set.
    pub letter_store: Option<Arc<dyn PayloadStore + Send + Sync>>,
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
            letter_store: letter_store(config.letter_store_bucket.as_deref(), sdk),
            mapping,
            reltio,
            dedup,
            signal,
            config,
        })
    }
}

/// How one event ended (one left undecided was not recorded in this invocation).
fn event_outcome(item: &Item) -> Outcome {
    item.outcome
        .clone()
        .unwrap_or_else(|| Outcome::Transient("not recorded in this invocation".into()))
}

/// The handler's answer and the invocation's metrics (the caller emits them).
pub type Handled = runner::Handled<aws_lambda_events::event::sqs::SqsBatchResponse>;

/// Plan → apply (through the ports) → settle (dead letters, partial batch response) → refresh signal.
pub async fn handle(deps: &Deps, event: SqsEvent, deadline: Instant) -> Handled {
    runner::run::<Sqs, _>(deps, event, deadline).await
}

impl Function<Sqs> for Deps {
    /// A message's events (Reltio may put several in one message).
    type Item = MessageItems<Item>;
    /// What was written, for the refresh signal.
    type Summary = Report;

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

    fn apply<'a>(
        &'a self,
        deliveries: Vec<Delivery>,
        deadline: Deadline,
        metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, (Vec<MessageItems<Item>>, Report)> {
        Box::pin(async move {
            let received_at = chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            let mut unpacked = unpack(deliveries, |e| decode(&self.mapping, e, &received_at));
            let ports = Ports {
                sink: self.sink.as_ref(),
                reltio: self.reltio.as_deref().map(|r| r as &dyn EntitySource),
                dedup: self.dedup.as_deref(),
            };
            let report = apply(ports, &mut unpacked.items, deadline, &self.mapping).await;
            for (name, n) in &report.counts {
                metrics.count(name, *n);
            }
            (unpacked.regroup(), report)
        })
    }

    fn outcome(&self, message: &MessageItems<Item>) -> Outcome {
        message.outcome(event_outcome)
    }

    fn context(&self, message: &MessageItems<Item>) -> LetterContext {
        let first = message.events.first();
        LetterContext {
            entity_uri: first.and_then(|e| e.entity_uri.clone()),
            event_id: first.map(|e| e.event_id.clone()),
            ..LetterContext::default()
        }
    }

    /// The hand-over of each event recorded: the entity and version (the upstream hops' id), and the trace of
    /// the invocation that enqueued the event.
    fn hand_over(&self, message: &MessageItems<Item>, _: &SqsMessage) {
        for item in message.events.iter().filter(|e| e.written.is_some()) {
            let record = item.written.as_ref();
            tracing::info!(
                entity = item.entity_uri.as_deref(),
                object_version = record.and_then(|r| r.object_version),
                change_type = record.map(|r| format!("{:?}", r.change_type)).as_deref(),
                event_id = %item.event_id,
                upstream_trace = item.trace.as_deref(),
                "recorded"
            );
        }
    }

    fn source_time_ms(&self, message: &MessageItems<Item>) -> Option<i64> {
        message
            .events
            .iter()
            .filter_map(|e| e.written.as_ref().and_then(|r| r.updated_time))
            .max()
    }

    /// The refresh signal, once the records are written (best effort).
    fn settled<'a>(
        &'a self,
        _messages: &'a [SqsMessage],
        report: &'a Report,
        _settlement: &'a Settlement,
        metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(signal) = &self.signal else {
                return;
            };
            match signal.batch_written(report).await {
                Ok(sent) => metrics.count("RefreshSignalsSent", sent as u64),
                Err(reason) => {
                    tracing::warn!(%reason, "the refresh signal could not be sent (the records are written)");
                    metrics.count("RefreshSignalFailures", 1);
                }
            }
        })
    }
}
