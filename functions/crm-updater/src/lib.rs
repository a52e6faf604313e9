//! crm-updater: applies Reltio change and merge events from SQS to Salesforce Contacts, with an SQS partial
//! batch response. Every message ends applied, deliberately skipped (filtered, no Contact crosswalk, duplicate,
//! stale; counted), dead-lettered to `CRM_DLQ_URL` with its reason (permanent failure), or reported as a batch
//! item failure (transient failure; on a FIFO queue the first one and every later message), made visible again
//! after a short backoff on its receive count rather than the queue's whole visibility timeout.
//!
//! The batch runner (`mdm_sync_adapters::runner`) does the rest around the plan and apply below.

/// crm-updater's allocator (and so its tests' and benches'): a batch decodes up to 10,000 messages and a snapshot
/// tree per event, and under glibc's malloc `perf` put about 40 % of planning a 200-event batch in malloc, free and
/// their consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config;
pub use config::*;

use futures::future::BoxFuture;
use mdm_sync_adapters::ledger::DynamoLedger;
use mdm_sync_adapters::metrics::Metrics;
use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::runner::{self, Function};
use mdm_sync_adapters::s3::letter_store;
use mdm_sync_adapters::salesforce::{SalesforceClient, SalesforceCredentialSource};
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::source::{QueueBackoff, Sqs};
use mdm_sync_adapters::sqs::{SqsQueue, SqsVisibility};
use mdm_sync_adapters::sqs_event::{SqsEvent, SqsMessage};
use mdm_sync_domain::crm::apply::{apply, Ports};
use mdm_sync_domain::crm::plan::{decode, Item};
use mdm_sync_domain::crm::{CrmMapping, CrmMappingError};
use mdm_sync_domain::letter::LetterContext;
use mdm_sync_domain::outcome::Outcome;
use mdm_sync_domain::ports::{
    Crm, Deadline, EntitySource, EntityWriter, Ledger, MessageSink, MessageVisibility, PayloadStore,
};
use mdm_sync_domain::queue::Delivery;
use mdm_sync_domain::reltio::message::{unpack, MessageItems};
use mdm_sync_domain::settle::Settlement;
use std::sync::Arc;
use std::time::Instant;

pub const FUNCTION_NAME: &str = "crm-updater";

/// What the handler works with; built once per container. The ports are shared trait objects so that tests
/// can run the handler over fakes they keep a handle on.
pub struct Deps {
    pub config: Config,
    pub mapping: CrmMapping,
    pub salesforce: Arc<dyn Crm + Send + Sync>,
    pub reltio: Arc<dyn EntitySource + Send + Sync>,
    /// Created Contacts' crosswalks written back (`create = true`).
    pub reltio_writer: Arc<dyn EntityWriter + Send + Sync>,
    pub ledger: Arc<dyn Ledger>,
    /// `CRM_DLQ_URL`.
    pub dlq: Arc<dyn MessageSink + Send + Sync>,
    /// The event queue, for the retry backoff.
    pub visibility: Arc<dyn MessageVisibility + Send + Sync>,
    /// The letter store (`LETTER_STORE_BUCKET`), when set.
    pub letter_store: Option<Arc<dyn PayloadStore + Send + Sync>>,
}

impl Deps {
    /// Loads and validates the mapping (an invalid file stops start-up) and builds the clients; no network
    /// I/O happens here.
    pub fn new(
        config: Config,
        sdk: &aws_config::SdkConfig,
        http: reqwest::Client,
        retry: RetryPolicy,
    ) -> Result<Deps, CrmMappingError> {
        let mapping = CrmMapping::load(&config.mapping_file)?;
        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        let salesforce = SalesforceClient::new(
            http.clone(),
            &config.salesforce_api_version,
            SalesforceCredentialSource::Secret(SecretCache::new(
                secrets.clone(),
                &config.salesforce_secret_id,
            )),
            retry,
        );
        let reltio = Arc::new(ReltioClient::new(
            http,
            &config.reltio.api_url,
            &config.reltio.auth_url,
            CredentialSource::Secret(SecretCache::new(secrets, &config.reltio.secret_id)),
            retry,
        ));
        let ledger = DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.sync_state_table,
            config.lease,
            config.ledger_retention,
        );
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Ok(Deps {
            mapping,
            salesforce: Arc::new(salesforce),
            reltio: reltio.clone(),
            reltio_writer: reltio,
            ledger: Arc::new(ledger),
            dlq: Arc::new(SqsQueue::new(sqs.clone(), &config.dlq_url)),
            visibility: Arc::new(SqsVisibility::new(sqs)),
            letter_store: letter_store(config.letter_store_bucket.as_deref(), sdk),
            config,
        })
    }
}

/// The handler's answer and the invocation's metrics (the caller emits them).
pub type Handled = runner::Handled<aws_lambda_events::event::sqs::SqsBatchResponse>;

/// Plan → apply (through the ports) → settle (dead letters, partial batch response) → retry backoff.
pub async fn handle(deps: &Deps, event: SqsEvent, deadline: Instant) -> Handled {
    runner::run::<Sqs, _>(deps, event, deadline).await
}

/// How one event ended (one the planner left undecided was not applied in this invocation).
fn event_outcome(item: &Item) -> Outcome {
    item.outcome
        .clone()
        .unwrap_or_else(|| Outcome::Transient("not applied in this invocation".into()))
}

/// A name for this invocation's ledger leases.
fn owner_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Function<Sqs> for Deps {
    /// A message's events (Reltio may put several in one message).
    type Item = MessageItems<Item>;
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
        deliveries: Vec<Delivery>,
        deadline: Deadline,
        metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, (Vec<MessageItems<Item>>, ())> {
        Box::pin(async move {
            let mut unpacked = unpack(deliveries, |event| decode(&self.mapping, event));
            let ports = Ports {
                reltio: self.reltio.as_ref(),
                writer: self.reltio_writer.as_ref(),
                crm: self.salesforce.as_ref(),
                ledger: self.ledger.as_ref(),
            };
            let items = &mut unpacked.items;
            let report = apply(ports, &self.mapping, items, &owner_id(), deadline).await;
            for (name, n) in &report.counts {
                metrics.count(name, *n);
            }
            for ms in &report.salesforce_latencies_ms {
                metrics.time_ms("SalesforceLatency", *ms);
            }
            (unpacked.regroup(), ())
        })
    }

    fn outcome(&self, message: &MessageItems<Item>) -> Outcome {
        message.outcome(event_outcome)
    }

    fn context(&self, message: &MessageItems<Item>) -> LetterContext {
        let first = message.events.first();
        LetterContext {
            entity_uri: first.and_then(|e| e.uri()).map(str::to_owned),
            event_id: first.map(|e| e.event_id.clone()),
            ..LetterContext::default()
        }
    }

    /// The hand-over of each event applied: the entity and version (the upstream hops' id), the Contact written,
    /// and the trace of the invocation that enqueued the event (its message's `AWSTraceHeader`).
    fn hand_over(&self, message: &MessageItems<Item>, _: &SqsMessage) {
        for item in message
            .events
            .iter()
            .filter(|e| event_outcome(e) == Outcome::Done)
        {
            let resolved = item
                .entity_uri
                .as_deref()
                .filter(|u| item.event_uri.as_deref() != Some(*u));
            tracing::info!(
                entity = item.event_uri.as_deref().or(item.entity_uri.as_deref()),
                resolved_entity = resolved,
                object_version = item.order.version,
                contact = item.plan.as_ref().map(|p| p.survivor.as_str()),
                merged_contacts = item.plan.as_ref().map(|p| p.archived.len()).filter(|n| *n > 0),
                event_id = %item.event_id,
                upstream_trace = item.trace.as_deref(),
                "applied"
            );
        }
    }

    fn source_time_ms(&self, message: &MessageItems<Item>) -> Option<i64> {
        message.events.iter().filter_map(|e| e.event_time).max()
    }

    fn settled<'a>(
        &'a self,
        messages: &'a [SqsMessage],
        _summary: &'a (),
        settlement: &'a Settlement,
        metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let backoff = QueueBackoff {
                visibility: self.visibility.as_ref(),
                backoff: self.config.retry_backoff,
                queue_url: self.config.event_queue_url.as_deref(),
            };
            backoff.apply(messages, settlement, metrics).await;
        })
    }
}
