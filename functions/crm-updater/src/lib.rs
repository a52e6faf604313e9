//! crm-updater: applies Reltio change and merge events from SQS to Salesforce Contacts, with an SQS partial
//! batch response. Every message ends applied, deliberately skipped (filtered, no Contact crosswalk, duplicate,
//! stale; counted), dead-lettered to `CRM_DLQ_URL` with its reason (permanent failure), or reported as a batch
//! item failure (transient failure; on a FIFO queue the first one and every later message), made visible again
//! after a short backoff on its receive count rather than the queue's whole visibility timeout.

/// crm-updater's allocator (and so its tests' and benches'): a batch decodes up to 10,000 messages and a snapshot
/// tree per event, and under glibc's malloc `perf` put about 40 % of planning a 200-event batch in malloc, free and
/// their consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use mdm_sync_adapters::config::{self, ConfigError, Env};
use mdm_sync_adapters::event_source::{sqs_ordering, sqs_response};
use mdm_sync_adapters::ledger::DynamoLedger;
use mdm_sync_adapters::metrics::{Metrics, DEFAULT_NAMESPACE};
use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::salesforce::{SalesforceClient, SalesforceCredentialSource};
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::sqs::{queue_url_from_arn, SqsQueue, SqsVisibility};
use mdm_sync_adapters::sqs_event::{SqsEvent, SqsMessage};
use mdm_sync_domain::backoff::{retry_delays, Backoff, VisibilityChange, MAX_VISIBILITY_SECONDS};
use mdm_sync_domain::crm::apply::{apply, Ports};
use mdm_sync_domain::crm::plan::{decode, Delivery, Item};
use mdm_sync_domain::crm::{CrmMapping, CrmMappingError};
use mdm_sync_domain::outcome::Outcome;
use mdm_sync_domain::ports::{Crm, EntitySource, Ledger, MessageSink, MessageVisibility};
use mdm_sync_domain::queue::{event_dead_letter, EventLetter, OutgoingMessage};
use mdm_sync_domain::settle::{settle_batch, Ordering, Settlement};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
pub const FUNCTION_NAME: &str = "crm-updater";
pub const DEFAULT_AUTH_URL: &str = "https://auth.reltio.com/oauth/token";
pub const DEFAULT_API_VERSION: &str = "v66.0";
pub const DEFAULT_LEASE_SECONDS: usize = 300;
/// Days an entity's ledger record is kept after its last write: longer than SQS's 14-day maximum retention.
pub const DEFAULT_LEDGER_RETENTION_DAYS: u64 = 35;
/// The shortest retention accepted: one day more than the longest an SQS message can wait.
pub const MIN_LEDGER_RETENTION_DAYS: u64 = 15;
const MAX_LEDGER_RETENTION_DAYS: u64 = 3650;
/// The first retry's visibility timeout, in seconds; it doubles with each receive.
pub const DEFAULT_RETRY_BACKOFF_SECONDS: u32 = 2;
/// The longest retry visibility timeout, in seconds: well below the event queue's (370 s in the template).
pub const DEFAULT_RETRY_BACKOFF_MAX_SECONDS: u32 = 300;

/// Settings, read once at start-up (docs/contract.md, "crm-updater").
#[derive(Debug, Clone)]
pub struct Config {
    pub salesforce_secret_id: String,
    /// Default `v66.0`.
    pub salesforce_api_version: String,
    pub reltio_api_url: String,
    /// Default `https://auth.reltio.com/oauth/token`.
    pub reltio_auth_url: String,
    pub reltio_secret_id: String,
    pub mapping_file: String,
    pub sync_state_table: String,
    pub dlq_url: String,
    /// Default `MdmSync`.
    pub metrics_namespace: String,
    /// How long an invocation holds an entity's ledger lease (default 300 s, at most 3600).
    pub lease: Duration,
    /// How long an entity's ledger record is kept after its last write (`CRM_LEDGER_RETENTION_DAYS`, default
    /// 35 days, at least 15: longer than any event can wait in SQS).
    pub ledger_retention: Duration,
    /// The visibility timeout given to a message reported for another delivery (`CRM_RETRY_BACKOFF_SECONDS`,
    /// default 2 s, 0 disables; doubling with each receive up to `CRM_RETRY_BACKOFF_MAX_SECONDS`, default 300 s).
    pub retry_backoff: Backoff,
    /// The event queue's URL (`CRM_EVENT_QUEUE_URL`); unset, it is derived from each message's
    /// `eventSourceARN`.
    pub event_queue_url: Option<String>,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let api_version = config::optional(env, "SALESFORCE_API_VERSION")
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        let valid = api_version
            .strip_prefix('v')
            .is_some_and(|n| n.parse::<f64>().is_ok());
        if !valid {
            return Err(ConfigError::Invalid {
                name: "SALESFORCE_API_VERSION",
                reason: format!("`{api_version}` is not like v66.0"),
            });
        }
        Ok(Config {
            salesforce_secret_id: config::required(env, "SALESFORCE_SECRET_ID")?,
            salesforce_api_version: api_version,
            reltio_api_url: config::url(env, "RELTIO_API_URL")?,
            reltio_auth_url: config::url_or(env, "RELTIO_AUTH_URL", DEFAULT_AUTH_URL)?,
            reltio_secret_id: config::required(env, "RELTIO_SECRET_ID")?,
            mapping_file: config::required(env, "CRM_MAPPING_FILE")?,
            sync_state_table: config::required(env, "SYNC_STATE_TABLE")?,
            dlq_url: config::url(env, "CRM_DLQ_URL")?,
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            lease: Duration::from_secs(config::positive_or(
                env,
                "CRM_LEASE_SECONDS",
                DEFAULT_LEASE_SECONDS,
                3600,
            )? as u64),
            ledger_retention: ledger_retention(env)?,
            retry_backoff: retry_backoff(env)?,
            event_queue_url: match config::optional(env, "CRM_EVENT_QUEUE_URL") {
                Some(_) => Some(config::url(env, "CRM_EVENT_QUEUE_URL")?),
                None => None,
            },
        })
    }
}

fn retry_backoff(env: &dyn Env) -> Result<Backoff, ConfigError> {
    let base_name = "CRM_RETRY_BACKOFF_SECONDS";
    let base: u32 = config::parsed_or(env, base_name, DEFAULT_RETRY_BACKOFF_SECONDS)?;
    if base > MAX_VISIBILITY_SECONDS {
        return Err(ConfigError::Invalid {
            name: base_name,
            reason: format!(
                "must be between 0 (no backoff) and {MAX_VISIBILITY_SECONDS} (SQS's limit)"
            ),
        });
    }
    let max_name = "CRM_RETRY_BACKOFF_MAX_SECONDS";
    // Unset, the cap never undercuts an explicitly larger base.
    let max = match config::optional(env, max_name) {
        None => DEFAULT_RETRY_BACKOFF_MAX_SECONDS.max(base),
        Some(_) => {
            let max = config::positive_or(
                env,
                max_name,
                DEFAULT_RETRY_BACKOFF_MAX_SECONDS as usize,
                MAX_VISIBILITY_SECONDS as usize,
            )? as u32;
            if max < base {
                return Err(ConfigError::Invalid {
                    name: max_name,
                    reason: format!("must be at least {base_name}"),
                });
            }
            max
        }
    };
    Ok(Backoff::new(base, max))
}

fn ledger_retention(env: &dyn Env) -> Result<Duration, ConfigError> {
    let name = "CRM_LEDGER_RETENTION_DAYS";
    let days: u64 = config::parsed_or(env, name, DEFAULT_LEDGER_RETENTION_DAYS)?;
    if !(MIN_LEDGER_RETENTION_DAYS..=MAX_LEDGER_RETENTION_DAYS).contains(&days) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!(
                "must be between {MIN_LEDGER_RETENTION_DAYS} (longer than SQS's 14-day retention) and \
                 {MAX_LEDGER_RETENTION_DAYS} days"
            ),
        });
    }
    Ok(Duration::from_secs(days * 24 * 3600))
}

/// What the handler works with; built once per container. The ports are shared trait objects so that tests
/// can run the handler over fakes they keep a handle on.
pub struct Deps {
    pub config: Config,
    pub mapping: CrmMapping,
    pub salesforce: Arc<dyn Crm + Send + Sync>,
    pub reltio: Arc<dyn EntitySource + Send + Sync>,
    pub ledger: Arc<dyn Ledger>,
    /// `CRM_DLQ_URL`.
    pub dlq: Arc<dyn MessageSink + Send + Sync>,
    /// The event queue, for the retry backoff.
    pub visibility: Arc<dyn MessageVisibility + Send + Sync>,
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
        let reltio = ReltioClient::new(
            http,
            &config.reltio_api_url,
            &config.reltio_auth_url,
            CredentialSource::Secret(SecretCache::new(secrets, &config.reltio_secret_id)),
            retry,
        );
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
            reltio: Arc::new(reltio),
            ledger: Arc::new(ledger),
            dlq: Arc::new(SqsQueue::new(sqs.clone(), &config.dlq_url)),
            visibility: Arc::new(SqsVisibility::new(sqs)),
            config,
        })
    }
}

/// The handler's answer and the invocation's metrics (the caller emits them).
pub struct Handled {
    pub response: SqsBatchResponse,
    pub metrics: Metrics,
}

fn attribute(m: &SqsMessage, name: &str) -> Option<String> {
    m.message_attributes
        .get(name)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The planner's view of an SQS message; the body moves into it (the message keeps its other fields).
pub fn delivery(m: &mut SqsMessage) -> Delivery {
    Delivery {
        message_id: m.message_id.clone().unwrap_or_default(),
        body: m.body.take().unwrap_or_default(),
        event_id: attribute(m, "eventId"),
        source_object_uri: attribute(m, "sourceObjectUri"),
        object_version: attribute(m, "objectVersion"),
        receive_count: receive_count(m),
    }
}

/// The trace of the invocation that sent the message (SQS's `AWSTraceHeader` system attribute).
fn trace_header(m: &SqsMessage) -> Option<&str> {
    m.attributes.aws_trace_header.as_deref()
}

/// SQS's `ApproximateReceiveCount` (1 when missing or unreadable).
fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes
        .approximate_receive_count
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

fn owner_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Plan → apply (through the ports) → settle (dead letters, partial batch response) → retry backoff.
pub async fn handle(deps: &Deps, event: SqsEvent, deadline: Instant) -> Handled {
    let mut metrics = Metrics::new(&deps.config.metrics_namespace, FUNCTION_NAME);
    let mut messages = event.records;
    metrics.count("RecordsReceived", messages.len() as u64);
    let mut items: Vec<Item> = messages
        .iter_mut()
        .map(|m| decode(&deps.mapping, delivery(m)))
        .collect();
    let ports = Ports {
        reltio: deps.reltio.as_ref(),
        crm: deps.salesforce.as_ref(),
        ledger: deps.ledger.as_ref(),
    };
    let report = apply(ports, &deps.mapping, &mut items, &owner_id(), deadline).await;
    for (name, n) in &report.counts {
        metrics.count(name, *n);
    }
    for ms in &report.salesforce_latencies_ms {
        metrics.time_ms("SalesforceLatency", *ms);
    }

    let mut outcomes: Vec<Outcome> = items
        .iter()
        .map(|i| {
            i.outcome
                .clone()
                .unwrap_or_else(|| Outcome::Transient("not applied in this invocation".into()))
        })
        .collect();
    let fifo_dlq = deps.dlq.is_fifo();
    let ordering = sqs_ordering(&messages);
    let settled = settle_batch(&mut outcomes, ordering, deps.dlq.as_ref(), |i, reason| {
        dlq_message(&items[i], reason, fifo_dlq)
    })
    .await;
    metrics.count("RecordsDeadLettered", settled.dead_lettered as u64);
    let settlement = &settled.settlement;
    for (i, (item, outcome)) in items.iter().zip(&outcomes).enumerate() {
        if !settlement.is_settled(i) {
            metrics.count("RecordsRetried", 1);
            if let Outcome::Transient(reason) = outcome {
                tracing::warn!(entity = item.uri(), event_id = %item.event_id, %reason, "will be retried");
            }
            continue;
        }
        match outcome {
            Outcome::Done => {
                metrics.count("RecordsApplied", 1);
                if let Some(t) = item.event_time {
                    let ms = chrono::Utc::now().timestamp_millis() - t;
                    metrics.time_ms("EndToEndLatency", ms.max(0) as f64);
                }
                // The hand-over: the entity and version (the upstream hops' id), the Contact written, and the
                // trace of the invocation that enqueued the event (its message's AWSTraceHeader).
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
                    upstream_trace = trace_header(&messages[i]),
                    "applied"
                );
            }
            Outcome::Skipped(reason) => metrics.count(reason.metric(), 1),
            Outcome::Permanent(_) | Outcome::Transient(_) => {}
        }
    }
    back_off(deps, &messages, &items, ordering, settlement, &mut metrics).await;
    Handled {
        response: sqs_response(settlement, &messages),
        metrics,
    }
}

/// Gives every message reported for another delivery a visibility timeout from the backoff on its receive
/// count, so that a transient failure is retried within seconds instead of after the queue's whole visibility
/// timeout (on FIFO the reported followers too: their group is released only when all of them are visible).
/// Best effort, after the batch is settled: a change not made is logged and counted, and its message waits the
/// queue's own timeout, as without the backoff; nothing here fails the batch.
async fn back_off(
    deps: &Deps,
    messages: &[SqsMessage],
    items: &[Item],
    ordering: Ordering<'_>,
    settlement: &Settlement,
    metrics: &mut Metrics,
) {
    let counts: Vec<u32> = messages.iter().map(receive_count).collect();
    let delays = retry_delays(settlement, ordering, &counts, deps.config.retry_backoff);
    if delays.is_empty() {
        return;
    }
    let mut changed = 0;
    let mut failed = 0;
    let mut by_queue: BTreeMap<String, Vec<(usize, VisibilityChange)>> = BTreeMap::new();
    for d in delays {
        let m = &messages[d.index];
        let url = deps
            .config
            .event_queue_url
            .clone()
            .or_else(|| m.event_source_arn.as_deref().and_then(queue_url_from_arn));
        let handle = m.receipt_handle.as_deref().filter(|h| !h.is_empty());
        match (url, handle) {
            (Some(url), Some(handle)) => by_queue.entry(url).or_default().push((
                d.index,
                VisibilityChange {
                    receipt_handle: handle.to_owned(),
                    seconds: d.seconds,
                },
            )),
            (url, _) => {
                failed += 1;
                let reason = if url.is_none() {
                    "no queue URL: the event source ARN is not an SQS queue's (set CRM_EVENT_QUEUE_URL)"
                } else {
                    "the message has no receipt handle"
                };
                let item = &items[d.index];
                tracing::warn!(entity = item.uri(), event_id = %item.event_id, reason, "retry backoff not set");
            }
        }
    }
    for (url, entries) in by_queue {
        let (indexes, changes): (Vec<usize>, Vec<VisibilityChange>) = entries.into_iter().unzip();
        let failures = deps.visibility.change(&url, &changes).await;
        for f in &failures {
            if let Some(item) = indexes.get(f.index).map(|&i| &items[i]) {
                tracing::warn!(
                    entity = item.uri(),
                    event_id = %item.event_id,
                    reason = %f.reason,
                    "retry backoff not set: the message waits the queue's visibility timeout"
                );
            }
        }
        let not_changed = failures.len().min(changes.len());
        failed += not_changed;
        changed += changes.len() - not_changed;
    }
    metrics.count("RetryBackoffSet", changed as u64);
    metrics.count("RetryBackoffFailed", failed as u64);
}

/// The DLQ message: why, how often it was received, and the original event (JSON, or the raw body).
fn dlq_message(item: &Item, reason: &str, fifo: bool) -> OutgoingMessage {
    tracing::warn!(entity = item.uri(), event_id = %item.event_id, %reason, "dead-lettering");
    event_dead_letter(
        &EventLetter {
            reason,
            attempts: item.attempts,
            message_id: &item.message_id,
            event_id: &item.event_id,
            entity_uri: item.uri(),
            body: &item.body,
        },
        fifo,
    )
}
