//! cdc-ingest: applies database change records to Reltio: AWS DMS records arriving on Kinesis, and Debezium,
//! GoldenGate or DMS messages arriving on Kafka (self-managed or MSK), with the source's partial batch response.
//! Every record ends written, deliberately skipped, dead-lettered with its reason, or reported as a batch item
//! failure so Lambda retries it (and, on Kafka, the rest of its partition) from there.
//!
//! The batch runner (`mdm_sync_adapters::runner`) does the rest around the plan and apply below, over either
//! source.

/// cdc-ingest's allocator (and so its tests' and benches'): the CDC path builds a small JSON tree per record, and
/// under glibc's malloc `perf` put over a third of its time in malloc, free and their consolidation. mimalloc took
/// the 10,000-record event → request bodies path from 287 ms to 187–209 ms (`make bench-cdc`). Only here: the
/// other functions allocate little per invocation, and the crm-updater's package would pass 6 MB with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod apply;
mod config;
mod event;
use apply::correlation_id;
pub use apply::{Change, OUTAGE_BACKOFF};
pub use config::*;
pub use event::{CdcEvent, CdcResponse};

use futures::future::BoxFuture;
use mdm_sync_adapters::key_ledger::DynamoKeyLedger;
use mdm_sync_adapters::metrics::Metrics;
use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::runner::{self, Function, Source};
use mdm_sync_adapters::s3::letter_store;
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::source::{Kafka, KafkaInput, Kinesis};
use mdm_sync_adapters::sqs::SqsQueue;
use mdm_sync_domain::cdc::input::CdcInput;
use mdm_sync_domain::cdc::mapping::{CdcMapping, MappingError};
use mdm_sync_domain::letter::LetterContext;
use mdm_sync_domain::outcome::Outcome;
use mdm_sync_domain::ports::{Deadline, EntityWriter, KeyLedger, MessageSink, PayloadStore};
use std::sync::Arc;
use std::time::Instant;

pub const FUNCTION_NAME: &str = "cdc-ingest";

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
    /// The letter store (`LETTER_STORE_BUCKET`), when set. Not used yet: the batch runner stores oversized
    /// payloads once cdc-ingest settles through it (until then its letters point at the stream, as before).
    pub letter_store: Option<Arc<dyn PayloadStore + Send + Sync>>,
}

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
            &config.reltio.secret_id,
        );
        let reltio = ReltioClient::new(
            http,
            &config.reltio.api_url,
            &config.reltio.auth_url,
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
            letter_store: letter_store(config.letter_store_bucket.as_deref(), sdk),
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

/// Handles either event (what `main` is invoked with) and writes its metrics line.
pub async fn handle_event(deps: &Deps, event: CdcEvent, deadline: Instant) -> CdcResponse {
    match event {
        CdcEvent::Kinesis(event) => CdcResponse::Kinesis(handle(deps, event, deadline).await),
        CdcEvent::Kafka(event) => CdcResponse::Kafka(handle_kafka(deps, event, deadline).await),
    }
}

/// A Kinesis event of DMS records: one shard, in order, so Lambda retries everything from the first reported
/// record on.
pub async fn handle(
    deps: &Deps,
    event: <Kinesis as Source>::Event,
    deadline: Instant,
) -> <Kinesis as Source>::Response {
    let handled = runner::run::<Kinesis, _>(deps, event, deadline).await;
    handled.metrics.emit();
    handled.response
}

/// A Kafka event (Debezium, GoldenGate or DMS messages): each partition is its own ordered sequence, redelivered
/// from its first reported record.
pub async fn handle_kafka(
    deps: &Deps,
    event: <Kafka as Source>::Event,
    deadline: Instant,
) -> <Kafka as Source>::Response {
    let handled = runner::run::<Kafka, _>(deps, event, deadline).await;
    handled.metrics.emit();
    handled.response
}

/// A source whose records are change records: Kinesis (DMS) and Kafka (Debezium, GoldenGate, DMS).
pub trait CdcSource: Source {
    /// The planner's inputs of the batch's records.
    fn changes<'r>(inputs: Vec<Self::Input<'r>>) -> Vec<CdcInput<'r>>
    where
        Self: 'r;
}

impl CdcSource for Kinesis {
    fn changes<'r>(inputs: Vec<CdcInput<'r>>) -> Vec<CdcInput<'r>>
    where
        Self: 'r,
    {
        inputs
    }
}

impl CdcSource for Kafka {
    fn changes<'r>(inputs: Vec<KafkaInput<'r>>) -> Vec<CdcInput<'r>>
    where
        Self: 'r,
    {
        inputs.iter().map(KafkaInput::cdc_input).collect()
    }
}

impl<S: CdcSource> Function<S> for Deps {
    type Item = Change;
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

    fn apply<'a>(
        &'a self,
        inputs: Vec<S::Input<'a>>,
        deadline: Deadline,
        metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, (Vec<Change>, ())> {
        let inputs = S::changes(inputs);
        Box::pin(async move { (self.apply_changes(&inputs, deadline, metrics).await, ()) })
    }

    fn outcome(&self, change: &Change) -> Outcome {
        change.outcome.clone()
    }

    fn context(&self, change: &Change) -> LetterContext {
        LetterContext {
            table: change.info.table.clone(),
            key: change.info.key.as_ref().map(|k| k.value.clone()),
            ..LetterContext::default()
        }
    }

    /// The hand-over: the source's change and the Reltio entity it became (absent for a crosswalk deletion),
    /// which the webhook receiver and crm-updater log under the same URI.
    fn hand_over(&self, change: &Change, record: &S::Record) {
        let correlation = correlation_id(&change.info, || S::position(record));
        tracing::info!(
            correlation_id = %correlation,
            entity = change.entity.as_deref(),
            "written to Reltio"
        );
    }

    fn source_time_ms(&self, change: &Change) -> Option<i64> {
        change.info.source_time.map(|t| t.timestamp_millis())
    }
}
