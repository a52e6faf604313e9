//! crm-updater: applies Reltio change and merge events from SQS to Salesforce Contacts, with an SQS partial
//! batch response. Every message ends applied, deliberately skipped (filtered, no Contact crosswalk, duplicate,
//! stale; counted), dead-lettered to `CRM_DLQ_URL` with its reason (permanent failure), or reported as a batch
//! item failure (transient failure; on a FIFO queue the first one and every later message).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use mdm_sync_adapters::config::{self, ConfigError, Env};
use mdm_sync_adapters::ledger::{Applied, Claim, DynamoLedger, Ledger, Order};
use mdm_sync_adapters::metrics::{Metrics, DEFAULT_NAMESPACE};
use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::salesforce::{
    MergeOutcome, RecordOutcome, RecordUpdate, SalesforceClient, SalesforceCredentialSource,
};
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::sqs::{send_all, OutgoingMessage};
use mdm_sync_domain::crm::{
    child_query, merge_requests, parse_version, plan_contacts, ContactPlan, CrmMapping,
    CrmMappingError, MergeStrategy,
};
use mdm_sync_domain::reltio::event::{EventCategory, ReltioEvent};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// Settings, read once at start-up (CONTRACT.md, "crm-updater").
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
        })
    }
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

/// What the handler works with; built once per container.
pub struct Deps {
    pub config: Config,
    pub mapping: CrmMapping,
    pub salesforce: SalesforceClient,
    pub reltio: ReltioClient,
    pub ledger: Box<dyn Ledger>,
    pub sqs: aws_sdk_sqs::Client,
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
        Ok(Deps {
            mapping,
            salesforce,
            reltio,
            ledger: Box::new(ledger),
            sqs: aws_sdk_sqs::Client::new(sdk),
            config,
        })
    }
}

/// The handler's answer and the invocation's metrics (the caller emits them).
pub struct Handled {
    pub response: SqsBatchResponse,
    pub metrics: Metrics,
}

/// Where one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Pending,
    Ignored(&'static str),
    Duplicate,
    Stale,
    Applied,
    Permanent(String),
    Transient(String),
}

/// One message being worked on.
struct Item {
    message_id: String,
    event_id: String,
    body: String,
    attempts: u32,
    event: Option<ReltioEvent>,
    event_uri: Option<String>,
    order: Order,
    entity: Option<Value>,
    entity_uri: Option<String>,
    plan: Option<ContactPlan>,
    event_time: Option<i64>,
    /// A merge event: the losers merged into the fetched winner and the merge time, recorded on each loser's
    /// ledger record once Salesforce confirmed the merge.
    merge: Option<LostMerge>,
    fate: Fate,
}

/// The entities a merge event merged into the winner, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LostMerge {
    losers: Vec<String>,
    /// The event's `updatedTime` (the merge), else the fetched winner's `updatedTime` (not earlier than the merge).
    at: i64,
}

/// The losers of a merge event whose entity was fetched as `winner`: for ENTITY_LOST_MERGE the event's own entity
/// (when it is not the winner), for ENTITIES_MERGED* every URI of the event other than the winner. `None` for other
/// events, for a merge naming no loser, or when no merge time is known (event `updatedTime`, else `fetched_time`).
fn lost_merge(event: &ReltioEvent, winner: &str, fetched_time: Option<i64>) -> Option<LostMerge> {
    let mut losers: Vec<String> = match event.event_type.as_str() {
        "ENTITY_LOST_MERGE" => event.entity_uri().map(str::to_owned).into_iter().collect(),
        t if EventCategory::of(t) == Some(EventCategory::Merge) => event.uris.clone(),
        _ => return None,
    };
    losers.retain(|l| l != winner && !l.is_empty());
    losers.sort();
    losers.dedup();
    let at = event.updated_time.or(fetched_time)?;
    (!losers.is_empty()).then_some(LostMerge { losers, at })
}

fn attribute<'a>(m: &'a SqsMessage, name: &str) -> Option<&'a str> {
    m.message_attributes
        .get(name)
        .and_then(|a| a.string_value.as_deref())
        .filter(|s| !s.is_empty())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn owner_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Parses a message and applies the mapping's filters; what is left needs an entity snapshot.
fn prepare(mapping: &CrmMapping, m: &SqsMessage) -> Item {
    let body = m.body.clone().unwrap_or_default();
    let mut item = Item {
        message_id: m.message_id.clone().unwrap_or_default(),
        event_id: attribute(m, "eventId")
            .map(str::to_owned)
            .unwrap_or_else(|| sha256_hex(body.as_bytes())),
        attempts: m
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        event: None,
        event_uri: None,
        order: Order::default(),
        entity: None,
        entity_uri: None,
        plan: None,
        event_time: None,
        merge: None,
        fate: Fate::Pending,
        body,
    };
    let event: ReltioEvent = match serde_json::from_str(&item.body) {
        Ok(e) => e,
        Err(e) => {
            item.fate = Fate::Permanent(format!("not a Reltio event: {e}"));
            return item;
        }
    };
    if !mapping.event_types.matches(&event.event_type) {
        item.fate = Fate::Ignored("EventType");
        return item;
    }
    if let Some(t) = event.entity_type() {
        if !mapping.entity_types.matches(Some(t)) {
            item.fate = Fate::Ignored("EntityType");
            return item;
        }
    }
    item.event_uri = event.entity_uri().map(str::to_owned);
    if item.event_uri.is_none() {
        item.fate = Fate::Permanent("the event names no entity".into());
        return item;
    }
    // Order: objectVersion counts per object (REFERENCE.md), so it is kept with the object it counts for (the
    // event's sourceObjectUri: for a merged loser's ENTITY_LOST_MERGE the loser, not the winner the ledger entry
    // belongs to). Version: objectVersion attribute, else the event's objectVersion, else the snapshot's
    // updatedTime, else the event's. The snapshot's own updatedTime orders snapshots of the entity.
    item.order.object = attribute(m, "sourceObjectUri")
        .map(str::to_owned)
        .or_else(|| item.event_uri.clone());
    let explicit_version = attribute(m, "objectVersion")
        .and_then(parse_version)
        .or_else(|| event.object_version().as_deref().and_then(parse_version));
    item.event_time = event
        .object
        .as_ref()
        .and_then(|o| o.updated_time)
        .or(event.updated_time);
    let complete = event
        .object
        .as_ref()
        .is_some_and(|o| o.uri.is_some() && o.attributes.is_some() && o.crosswalks.is_some());
    let is_merge = EventCategory::of(&event.event_type) == Some(EventCategory::Merge);
    if complete && !event.exceeded_queue_size_limit && !is_merge {
        let o = event.object.as_ref().expect("checked above");
        item.order.version = explicit_version.or(o.updated_time).or(event.updated_time);
        item.order.snapshot_time = o.updated_time;
        item.entity = Some(json!({
            "uri": o.uri,
            "type": o.entity_type,
            "attributes": o.attributes,
            "crosswalks": o.crosswalks,
        }));
    } else {
        // The entity is fetched: its snapshot is ordered by the fetched entity's own updatedTime; the event's
        // objectVersion (if any) only orders the events of its own object.
        item.order.version = explicit_version;
    }
    item.event = Some(event);
    item
}

pub async fn handle(deps: &Deps, event: SqsEvent, deadline: Instant) -> Handled {
    let mut metrics = Metrics::new(&deps.config.metrics_namespace, FUNCTION_NAME);
    let mapping = &deps.mapping;
    let fifo = event
        .records
        .first()
        .and_then(|r| r.event_source_arn.as_deref())
        .is_some_and(|a| a.ends_with(".fifo"));
    metrics.count("EventsReceived", event.records.len() as u64);
    let mut items: Vec<Item> = event.records.iter().map(|m| prepare(mapping, m)).collect();

    // Complete the events that carry no usable snapshot (merges, oversized) by fetching the entity; a merged
    // loser's URI resolves to the winner.
    let fetches = items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.fate == Fate::Pending && i.entity.is_none())
        .map(|(idx, i)| {
            let uri = i.event_uri.clone().unwrap_or_default();
            async move { (idx, deps.reltio.get_entity(&uri, deadline).await) }
        });
    for (idx, result) in futures::future::join_all(fetches).await {
        let item = &mut items[idx];
        match result {
            Ok(entity) => {
                item.order.snapshot_time = entity.get("updatedTime").and_then(Value::as_i64);
                item.entity = Some(entity);
            }
            Err(e) if e.is_transient() => {
                item.fate = Fate::Transient(format!("fetching the entity from Reltio: {e}"))
            }
            Err(e) => item.fate = Fate::Permanent(format!("fetching the entity from Reltio: {e}")),
        }
    }

    for item in items.iter_mut().filter(|i| i.fate == Fate::Pending) {
        let entity = item.entity.as_ref().expect("pending items have an entity");
        let entity_type = entity.get("type").and_then(Value::as_str);
        if entity_type.is_some() && !mapping.entity_types.matches(entity_type) {
            item.fate = Fate::Ignored("EntityType");
            continue;
        }
        item.entity_uri = entity
            .get("uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| item.event_uri.clone());
        if let (Some(event), Some(winner)) = (&item.event, &item.entity_uri) {
            let fetched_time = entity.get("updatedTime").and_then(Value::as_i64);
            item.merge = lost_merge(event, winner, fetched_time);
        }
        match plan_contacts(mapping, entity) {
            Some(plan) => item.plan = Some(plan),
            None => item.fate = Fate::Ignored("NoContactCrosswalk"),
        }
    }

    // Rounds: the k-th pending message of every entity, so that one entity's events apply in batch order and
    // each round needs one Collections call.
    let mut per_entity: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (idx, item) in items.iter().enumerate() {
        if item.fate == Fate::Pending {
            per_entity
                .entry(item.entity_uri.clone().unwrap_or_default())
                .or_default()
                .push(idx);
        }
    }
    let owner = owner_id();
    let rounds = per_entity.values().map(Vec::len).max().unwrap_or(0);
    for k in 0..rounds {
        let round: Vec<usize> = per_entity
            .values()
            .filter_map(|v| v.get(k).copied())
            .collect();
        apply_round(
            deps,
            &mut items,
            &round,
            &per_entity,
            k,
            &owner,
            deadline,
            &mut metrics,
        )
        .await;
    }

    finish(deps, items, fifo, metrics).await
}

/// A claimed message: whether its Contacts are unchanged since last applied, the Contacts already merged away,
/// and the Contacts merged away by this change (recorded on commit).
struct Claimed {
    idx: usize,
    unchanged: bool,
    already_merged: BTreeSet<String>,
    merged_now: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn apply_round(
    deps: &Deps,
    items: &mut [Item],
    round: &[usize],
    per_entity: &BTreeMap<String, Vec<usize>>,
    k: usize,
    owner: &str,
    deadline: Instant,
    metrics: &mut Metrics,
) {
    // An entity whose earlier event did not apply must not have a later one applied before it.
    let mut claimed: Vec<Claimed> = Vec::new();
    for &idx in round {
        let entity = items[idx].entity_uri.clone().unwrap_or_default();
        if k > 0 {
            let previous = per_entity[&entity][k - 1];
            if matches!(items[previous].fate, Fate::Transient(_)) {
                items[idx].fate = Fate::Transient("an earlier event of this entity failed".into());
                continue;
            }
        }
        let item = &items[idx];
        match deps
            .ledger
            .claim(&entity, &item.order, &item.event_id, owner)
            .await
        {
            Ok(Claim::Duplicate) => items[idx].fate = Fate::Duplicate,
            Ok(Claim::Stale) => items[idx].fate = Fate::Stale,
            Ok(Claim::Busy) => {
                items[idx].fate =
                    Fate::Transient("another invocation is applying this entity".into())
            }
            Ok(Claim::Granted { last_hash, merged }) => {
                let plan = item.plan.as_ref().expect("pending items have a plan");
                let unchanged = last_hash.as_deref() == Some(plan.hash().as_str());
                claimed.push(Claimed {
                    idx,
                    unchanged,
                    already_merged: merged,
                    merged_now: Vec::new(),
                });
                if unchanged {
                    metrics.count("UnchangedContactsSkipped", 1);
                }
            }
            Err(e) => items[idx].fate = Fate::Transient(e.to_string()),
        }
    }

    if deps.mapping.merge_strategy == MergeStrategy::Soap {
        soap_merges(deps, items, &mut claimed, deadline, metrics).await;
    }

    // Build the writes: survivor update and archive of losers (unless unchanged), child re-pointing.
    let mut records: Vec<RecordUpdate> = Vec::new();
    let mut owners: Vec<(usize, &'static str)> = Vec::new();
    for c in &claimed {
        let idx = c.idx;
        if items[idx].fate != Fate::Pending {
            continue;
        }
        let plan = items[idx].plan.clone().expect("claimed items have a plan");
        if !c.unchanged {
            records.push(RecordUpdate {
                sobject: "Contact".into(),
                id: plan.survivor.clone(),
                fields: plan.survivor_fields.clone(),
            });
            owners.push((idx, "ContactsUpdated"));
            if deps.mapping.merge_strategy == MergeStrategy::Archive {
                for (id, fields) in &plan.archived {
                    records.push(RecordUpdate {
                        sobject: "Contact".into(),
                        id: id.clone(),
                        fields: fields.clone(),
                    });
                    owners.push((idx, "ContactsArchived"));
                }
            }
        }
        // SOAP merge() re-parents related records itself.
        if deps.mapping.merge_strategy == MergeStrategy::Soap {
            continue;
        }
        // Child records are looked up again even when the Contacts are unchanged: new ones may point at a
        // loser since. A re-delivered merge finds none and writes nothing.
        for rel in &deps.mapping.children {
            let Some(soql) = child_query(rel, &plan.losers()) else {
                continue;
            };
            let started = std::time::Instant::now();
            let result = deps.salesforce.query(&soql, deadline).await;
            metrics.count("SalesforceCalls", 1);
            metrics.time_ms(
                "SalesforceLatency",
                started.elapsed().as_secs_f64() * 1000.0,
            );
            match result {
                Ok(children) => {
                    for child in children {
                        if let Some(id) = child.get("Id").and_then(Value::as_str) {
                            let mut fields = Map::new();
                            fields.insert(rel.field.clone(), Value::String(plan.survivor.clone()));
                            records.push(RecordUpdate {
                                sobject: rel.sobject.clone(),
                                id: id.to_owned(),
                                fields,
                            });
                            owners.push((idx, "ChildRecordsRepointed"));
                        }
                    }
                }
                Err(e) if e.is_transient() => {
                    items[idx].fate = Fate::Transient(format!("querying {}: {e}", rel.sobject))
                }
                Err(e) => {
                    items[idx].fate = Fate::Permanent(format!("querying {}: {e}", rel.sobject))
                }
            }
        }
    }
    // Survivor writes that only carry no fields are dropped (nothing mapped has a golden value).
    let mut kept_records = Vec::new();
    let mut kept_owners = Vec::new();
    for (r, o) in records.into_iter().zip(owners) {
        if items[o.0].fate == Fate::Pending && !r.fields.is_empty() {
            kept_records.push(r);
            kept_owners.push(o);
        }
    }

    if !kept_records.is_empty() {
        let started = std::time::Instant::now();
        let result = deps
            .salesforce
            .update_records(&kept_records, deadline)
            .await;
        metrics.count(
            "SalesforceCalls",
            kept_records
                .len()
                .div_ceil(mdm_sync_adapters::salesforce::MAX_COLLECTION) as u64,
        );
        metrics.time_ms(
            "SalesforceLatency",
            started.elapsed().as_secs_f64() * 1000.0,
        );
        let mut counts: HashMap<&'static str, u64> = HashMap::new();
        match result {
            Ok(outcomes) => {
                for ((idx, kind), outcome) in kept_owners.iter().zip(outcomes) {
                    let item = &mut items[*idx];
                    match outcome {
                        RecordOutcome::Updated => *counts.entry(kind).or_default() += 1,
                        RecordOutcome::Missing { code } => {
                            tracing::info!(entity = ?item.entity_uri, event_id = %item.event_id, code, "a Salesforce record no longer exists; skipped");
                            metrics.count("SalesforceRecordsMissing", 1);
                        }
                        RecordOutcome::Failed {
                            code,
                            message,
                            transient,
                        } => {
                            let reason =
                                format!("Salesforce rejected a {kind} write: {code}: {message}");
                            if transient {
                                item.fate = Fate::Transient(reason);
                            } else if !matches!(item.fate, Fate::Transient(_)) {
                                item.fate = Fate::Permanent(reason);
                            }
                        }
                    }
                }
            }
            Err(e) => {
                for (idx, _) in &kept_owners {
                    items[*idx].fate = if e.is_transient() {
                        Fate::Transient(e.to_string())
                    } else {
                        Fate::Permanent(e.to_string())
                    };
                }
            }
        }
        for (k, v) in counts {
            metrics.count(k, v);
        }
    }

    // Record what Salesforce confirmed; release what it did not. A merge is first recorded on each loser's own
    // record (so that the loser's older snapshots delivered late are stale), then on the winner's: if recording
    // fails the message is retried, and the re-delivered merge (unchanged, not a duplicate) records it again.
    for c in &claimed {
        let item = &mut items[c.idx];
        let entity = item.entity_uri.clone().unwrap_or_default();
        if item.fate == Fate::Pending {
            if let Some(merge) = &item.merge {
                for loser in &merge.losers {
                    if let Err(e) = deps.ledger.record_merge(loser, &entity, merge.at).await {
                        item.fate = Fate::Transient(format!("recording the merge of {loser}: {e}"));
                        break;
                    }
                }
            }
        }
        if item.fate == Fate::Pending {
            let hash = item
                .plan
                .as_ref()
                .map(ContactPlan::hash)
                .unwrap_or_default();
            let applied = Applied {
                order: &item.order,
                event_id: &item.event_id,
                hash: &hash,
                merged: &c.merged_now,
            };
            match deps.ledger.commit(&entity, applied, owner).await {
                Ok(()) => {
                    item.fate = Fate::Applied;
                    if let Some(t) = item.event_time {
                        let ms = chrono::Utc::now().timestamp_millis() - t;
                        metrics.time_ms("EndToEndLatency", ms.max(0) as f64);
                    }
                    tracing::info!(entity = %entity, event_id = %item.event_id, "applied");
                }
                Err(e) => item.fate = Fate::Transient(format!("recording in the ledger: {e}")),
            }
        } else if let Err(e) = deps.ledger.release(&entity, owner).await {
            tracing::warn!(entity = %entity, error = %e, "could not release the ledger lease");
        }
    }
}

/// SOAP strategy: merges every claimed plan's losers not yet merged into its survivor, in one `merge()` call
/// per 200 requests for the whole round. A loser already merged away (or deleted) counts as merged; a failed
/// merge fails its message by error class, and its survivor is then not written.
async fn soap_merges(
    deps: &Deps,
    items: &mut [Item],
    claimed: &mut [Claimed],
    deadline: Instant,
    metrics: &mut Metrics,
) {
    let mut requests = Vec::new();
    let mut request_owner = Vec::new();
    for (ci, c) in claimed.iter().enumerate() {
        if c.unchanged || items[c.idx].fate != Fate::Pending {
            continue;
        }
        let plan = items[c.idx]
            .plan
            .as_ref()
            .expect("claimed items have a plan");
        for r in merge_requests(plan, &c.already_merged) {
            requests.push(r);
            request_owner.push(ci);
        }
    }
    if requests.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let result = deps.salesforce.merge(&requests, deadline).await;
    metrics.count(
        "SalesforceCalls",
        requests
            .len()
            .div_ceil(mdm_sync_adapters::salesforce::soap::MAX_REQUESTS_PER_CALL) as u64,
    );
    metrics.time_ms(
        "SalesforceLatency",
        started.elapsed().as_secs_f64() * 1000.0,
    );
    let outcomes = match result {
        Ok(outcomes) => outcomes,
        Err(e) => {
            for &ci in &request_owner {
                let item = &mut items[claimed[ci].idx];
                let reason = format!("merging Contacts: {e}");
                item.fate = if e.is_transient() {
                    Fate::Transient(reason)
                } else {
                    Fate::Permanent(reason)
                };
            }
            return;
        }
    };
    for ((request, &ci), outcome) in requests.iter().zip(&request_owner).zip(outcomes) {
        let c = &mut claimed[ci];
        let item = &mut items[c.idx];
        match outcome {
            MergeOutcome::Merged { merged, related } => {
                metrics.count("ContactsMerged", merged.len() as u64);
                metrics.count("ChildRecordsRepointed", related as u64);
                c.merged_now.extend(request.records.iter().cloned());
            }
            MergeOutcome::AlreadyMerged { code } => {
                tracing::info!(entity = ?item.entity_uri, event_id = %item.event_id, code, "Contacts already merged away; skipped");
                metrics.count("SalesforceRecordsMissing", 1);
                c.merged_now.extend(request.records.iter().cloned());
            }
            MergeOutcome::Failed {
                code,
                message,
                transient,
            } => {
                let reason = format!("Salesforce rejected a merge: {code}: {message}");
                if transient {
                    item.fate = Fate::Transient(reason);
                } else if !matches!(item.fate, Fate::Transient(_)) {
                    item.fate = Fate::Permanent(reason);
                }
            }
        }
    }
}

/// Dead-letters permanent failures, counts, and builds the partial batch response.
async fn finish(deps: &Deps, mut items: Vec<Item>, fifo: bool, mut metrics: Metrics) -> Handled {
    // On FIFO, nothing after the first transient failure is final: it is all retried in order.
    let first_transient = if fifo {
        items
            .iter()
            .position(|i| matches!(i.fate, Fate::Transient(_)))
    } else {
        None
    };
    let mut dlq: Vec<(usize, OutgoingMessage)> = Vec::new();
    for (idx, item) in items.iter().enumerate() {
        if first_transient.is_some_and(|f| idx > f) {
            continue;
        }
        if let Fate::Permanent(reason) = &item.fate {
            tracing::warn!(entity = ?item.entity_uri.as_ref().or(item.event_uri.as_ref()), event_id = %item.event_id, %reason, "dead-lettering");
            let event = serde_json::from_str::<Value>(&item.body)
                .unwrap_or_else(|_| Value::String(item.body.clone()));
            let body = json!({
                "reason": reason,
                "attempts": item.attempts,
                "messageId": item.message_id,
                "eventId": item.event_id,
                "entityUri": item.entity_uri.as_ref().or(item.event_uri.as_ref()),
                "event": event,
            });
            dlq.push((
                idx,
                OutgoingMessage {
                    body: body.to_string(),
                    attributes: vec![("eventId".into(), item.event_id.clone())],
                    group_id: deps.config.dlq_url.ends_with(".fifo").then(|| {
                        item.entity_uri
                            .clone()
                            .or(item.event_uri.clone())
                            .unwrap_or_else(|| "unknown".into())
                    }),
                    dedup_id: deps.config.dlq_url.ends_with(".fifo").then(|| {
                        sha256_hex(format!("{}|{}", item.event_id, item.message_id).as_bytes())
                    }),
                },
            ));
        }
    }
    if !dlq.is_empty() {
        let messages: Vec<OutgoingMessage> = dlq.iter().map(|(_, m)| m.clone()).collect();
        let failures = send_all(&deps.sqs, &deps.config.dlq_url, &messages).await;
        let mut failed = vec![false; dlq.len()];
        for f in failures {
            failed[f.index] = true;
            let idx = dlq[f.index].0;
            items[idx].fate = Fate::Transient(format!("dead-lettering failed: {}", f.reason));
        }
        metrics.count(
            "DeadLettered",
            failed.iter().filter(|f| !**f).count() as u64,
        );
    }
    let first_transient = if fifo {
        items
            .iter()
            .position(|i| matches!(i.fate, Fate::Transient(_)))
    } else {
        None
    };
    let mut response = SqsBatchResponse::default();
    for (idx, item) in items.iter().enumerate() {
        match &item.fate {
            Fate::Ignored(reason) => metrics.count(&format!("EventsIgnored{reason}"), 1),
            Fate::Duplicate => metrics.count("DuplicateEventsSkipped", 1),
            Fate::Stale => metrics.count("StaleEventsSkipped", 1),
            Fate::Applied => metrics.count("EventsApplied", 1),
            _ => {}
        }
        let failed = match &item.fate {
            Fate::Transient(reason) => {
                tracing::warn!(entity = ?item.entity_uri.as_ref().or(item.event_uri.as_ref()), event_id = %item.event_id, %reason, "will be retried");
                true
            }
            Fate::Pending => true,
            _ => false,
        } || first_transient.is_some_and(|f| idx > f);
        if failed {
            metrics.count("EventsRetried", 1);
            let mut f = BatchItemFailure::default();
            f.item_identifier = item.message_id.clone();
            response.batch_item_failures.push(f);
        }
    }
    Handled { response, metrics }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(value: Value) -> ReltioEvent {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_losers_of_a_merge_are_every_other_entity_it_names() {
        let merged = event(
            json!({"type": "ENTITIES_MERGED_MANUALLY", "updatedTime": 5, "uris": ["entities/W", "entities/L2", "entities/L1", "entities/W"]}),
        );
        assert_eq!(
            lost_merge(&merged, "entities/W", Some(9)),
            Some(LostMerge {
                losers: vec!["entities/L1".into(), "entities/L2".into()],
                at: 5
            })
        );
        // A first URI that was a loser resolves to the winner: it is a loser too.
        assert_eq!(
            lost_merge(&merged, "entities/L1", Some(9)).unwrap().losers,
            vec!["entities/L2".to_owned(), "entities/W".to_owned()]
        );
        let lost = event(
            json!({"type": "ENTITY_LOST_MERGE", "uris": ["entities/L", "entities/W"], "object": {"uri": "entities/L"}}),
        );
        assert_eq!(
            lost_merge(&lost, "entities/W", Some(9)),
            Some(LostMerge {
                losers: vec!["entities/L".into()],
                at: 9
            }),
            "no event time: the fetched winner's"
        );
        // Not merged (anymore): the entity resolved to itself.
        assert_eq!(lost_merge(&lost, "entities/L", Some(9)), None);
        assert_eq!(lost_merge(&lost, "entities/W", None), None);
        let changed = event(
            json!({"type": "ENTITY_CHANGED", "updatedTime": 5, "uris": ["entities/L"], "object": {"uri": "entities/W"}}),
        );
        assert_eq!(lost_merge(&changed, "entities/W", Some(9)), None);
    }
}
