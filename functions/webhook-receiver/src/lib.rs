//! webhook-receiver: takes signed Reltio events over HTTPS (API Gateway REST v1 and HTTP API v2, ALB,
//! function URLs: `lambda_http` turns them all into one `Request`), checks them and enqueues one SQS message
//! per event for the crm-updater, answering within a fixed budget well under the senders' 5 seconds.
//!
//! Checks, in this order (docs/contract.md, "webhook-receiver"): HTTPS (403), size (413), signature (401, empty
//! body), parse (400), subscription filter (acknowledged, not enqueued), enqueue (200, or 503 so the sender
//! retries). Nothing is enqueued unless the signature passed. Logs carry event ids, never bodies or secrets.

pub mod guard;

use lambda_http::http::{header::CONTENT_TYPE, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use mdm_sync_adapters::config::EventDestination;
use mdm_sync_adapters::config::{self, ConfigError, Env};
use mdm_sync_adapters::enqueue::enqueue;
use mdm_sync_adapters::metrics::{Metrics, DEFAULT_NAMESPACE};
use mdm_sync_adapters::replay::DynamoReplayCache;
use mdm_sync_adapters::secrets::{SecretCache, SecretError};
use mdm_sync_adapters::sns::event_sink;
use mdm_sync_domain::ports::{DeliveredIds, MessageSink, PortError};
use mdm_sync_domain::queue::SendFailure;
use mdm_sync_domain::webhook::signature::{
    SecretDocument, RELTIO_EVENT_ID, RELTIO_SIGNATURE, STANDARD_SIGNATURE,
};
use mdm_sync_domain::webhook::{
    parse_body, verify, Rejection, RequestHeaders, Subscription, Verified, VerifyOptions,
    WebhookEvent, WebhookSecrets,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

pub const FUNCTION_NAME: &str = "webhook-receiver";
/// `WEBHOOK_MAX_BODY_BYTES` default: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Upper bound for `WEBHOOK_MAX_BODY_BYTES`: Lambda's 6 MB synchronous payload limit.
pub const MAX_BODY_BYTES_LIMIT: usize = 6 * 1024 * 1024;
/// `WEBHOOK_TOLERANCE_SECONDS` default (docs/reference.md: 5 minutes is the common window).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// Time one request may take, all network calls included: senders give up after 5 s.
pub const DEFAULT_RESPONSE_BUDGET: Duration = Duration::from_secs(4);
/// Cached secrets are re-read after this long, so a secret removed from the list stops working.
pub const SECRET_MAX_AGE: Duration = Duration::from_secs(300);
/// After a signature mismatch the secret is re-read (a new secret may have been added) at most this often.
pub const SECRET_MIN_REFRESH: Duration = Duration::from_secs(30);

/// Settings, read once at start-up (docs/contract.md, "webhook-receiver").
#[derive(Debug, Clone)]
pub struct Config {
    /// `WEBHOOK_SECRET_ID`: secret `{"secrets": ["<current>", "<previous>"]}`.
    pub secret_id: String,
    /// `EVENT_TOPIC_ARN` (the fan-out topic) when set, else `EVENT_QUEUE_URL`.
    pub destination: EventDestination,
    /// The destination is FIFO (its ARN or URL ends in `.fifo`): messages get group and deduplication ids.
    pub fifo: bool,
    /// `WEBHOOK_TOLERANCE_SECONDS` (default 300) and `WEBHOOK_REQUIRE_TIMESTAMP` (default false).
    pub verify: VerifyOptions,
    /// `WEBHOOK_MAX_BODY_BYTES` (default 1 MiB, at most 6 MiB).
    pub max_body_bytes: usize,
    /// `EVENT_TYPES`, `ENTITY_TYPES` (comma-separated; empty means all).
    pub subscription: Subscription,
    /// `METRICS_NAMESPACE` (default `MdmSync`).
    pub metrics_namespace: String,
    /// Time allowed for one request (default 4 s; not an environment setting).
    pub response_budget: Duration,
    /// `WEBHOOK_REPLAY_TABLE` (optional): DynamoDB table of delivered event ids; `WEBHOOK_REPLAY_TTL_SECONDS`
    /// (default 86400, at least the tolerance): how long an id is remembered.
    pub replay: Option<(String, Duration)>,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let destination = config::event_destination(env)?;
        Ok(Config {
            secret_id: config::required(env, "WEBHOOK_SECRET_ID")?,
            fifo: destination.is_fifo(),
            destination,
            verify: VerifyOptions {
                tolerance_seconds: config::parsed_or(
                    env,
                    "WEBHOOK_TOLERANCE_SECONDS",
                    DEFAULT_TOLERANCE_SECONDS,
                )?,
                require_timestamp: config::bool_or(env, "WEBHOOK_REQUIRE_TIMESTAMP", false)?,
            },
            max_body_bytes: config::positive_or(
                env,
                "WEBHOOK_MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                MAX_BODY_BYTES_LIMIT,
            )?,
            subscription: config::subscription(env)?,
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            response_budget: DEFAULT_RESPONSE_BUDGET,
            replay: replay_settings(env)?,
        })
    }
}

/// `WEBHOOK_REPLAY_TTL_SECONDS` default: a day, well past the timestamp tolerance and a sender's retries.
pub const DEFAULT_REPLAY_TTL_SECONDS: u64 = 86_400;

fn replay_settings(env: &dyn Env) -> Result<Option<(String, Duration)>, ConfigError> {
    let Some(table) = config::optional(env, "WEBHOOK_REPLAY_TABLE") else {
        return Ok(None);
    };
    let tolerance: u64 =
        config::parsed_or(env, "WEBHOOK_TOLERANCE_SECONDS", DEFAULT_TOLERANCE_SECONDS)?;
    let ttl: u64 = config::parsed_or(
        env,
        "WEBHOOK_REPLAY_TTL_SECONDS",
        DEFAULT_REPLAY_TTL_SECONDS,
    )?;
    if ttl <= tolerance {
        return Err(ConfigError::Invalid {
            name: "WEBHOOK_REPLAY_TTL_SECONDS",
            reason: "must be longer than WEBHOOK_TOLERANCE_SECONDS (a replay inside the window must be caught)"
                .into(),
        });
    }
    Ok(Some((table, Duration::from_secs(ttl))))
}

/// Where the webhook secrets come from.
pub enum SecretSource {
    /// Secrets Manager, read on first use and cached (with [`SECRET_MAX_AGE`] and [`SECRET_MIN_REFRESH`] in
    /// [`Deps::new`]).
    Manager(SecretCache),
    /// Fixed secrets (tests, tools).
    Fixed(WebhookSecrets),
}

impl SecretSource {
    /// The secrets to verify with, read when not cached or older than the cache's maximum age.
    pub async fn current(&self) -> Result<WebhookSecrets, SecretError> {
        match self {
            SecretSource::Fixed(s) => Ok(s.clone()),
            SecretSource::Manager(cache) => secrets_of(cache, &cache.get_json().await?),
        }
    }

    /// After a mismatch: the secret read anew if the cached copy is older than the cache's minimum refresh age (a
    /// new secret may have been added since). `None` when nothing was re-read.
    async fn refreshed(&self) -> Option<WebhookSecrets> {
        let SecretSource::Manager(cache) = self else {
            return None;
        };
        secrets_of(cache, &cache.refreshed_json().await?).ok()
    }
}

fn secrets_of(cache: &SecretCache, doc: &SecretDocument) -> Result<WebhookSecrets, SecretError> {
    WebhookSecrets::from_document(doc).ok_or_else(|| SecretError::Malformed {
        id: cache.secret_id().to_owned(),
        reason: "\"secrets\" lists no non-blank secret".into(),
    })
}

/// The clock, in unix seconds (replaceable in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp())
}

/// What the handler works with; built once per container and reused across invocations. No network I/O
/// happens here: the secret is read on the first request.
pub struct Deps {
    pub config: Config,
    /// The replay cache, when `WEBHOOK_REPLAY_TABLE` is set.
    pub replay: Option<Box<dyn DeliveredIds>>,
    /// `EVENT_TOPIC_ARN` or `EVENT_QUEUE_URL`.
    pub queue: std::sync::Arc<dyn MessageSink + Send + Sync>,
    pub secrets: SecretSource,
    pub clock: Clock,
}

impl Deps {
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Deps {
        let cache = SecretCache::new(aws_sdk_secretsmanager::Client::new(sdk), &config.secret_id)
            .with_ages(SECRET_MAX_AGE, SECRET_MIN_REFRESH);
        let queue = event_sink(&config.destination, sdk);
        let replay = config.replay.as_ref().map(|(table, ttl)| {
            Box::new(DynamoReplayCache::new(
                aws_sdk_dynamodb::Client::new(sdk),
                table,
                *ttl,
            )) as Box<dyn DeliveredIds>
        });
        Deps {
            replay,
            config,
            queue,
            secrets: SecretSource::Manager(cache),
            clock: system_clock(),
        }
    }
}

/// Handles one request and writes its metrics line (EMF). Never fails: every outcome is an HTTP answer.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    let started = Instant::now();
    let mut metrics = Metrics::new(&deps.config.metrics_namespace, FUNCTION_NAME);
    let response = respond(deps, &req, &mut metrics).await;
    metrics.time_ms("HandlerLatency", started.elapsed().as_secs_f64() * 1000.0);
    metrics.emit();
    response
}

/// The request's answer, with its counts recorded in `metrics`: `Requests`; `RejectedInsecure`,
/// `RejectedTooLarge`, `RejectedInvalidBody`; `SignatureRejected` and one `SignatureRejected<Reason>`;
/// `SecretUnavailable`; `EventsReceived`, `EventsAccepted` (enqueued), `EventsFiltered`, `EnqueueFailures`.
pub async fn respond(deps: &Deps, req: &Request, metrics: &mut Metrics) -> Response<Body> {
    let deadline = Instant::now() + deps.config.response_budget;
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.as_str())
        .unwrap_or("-");
    metrics.count("Requests", 1);

    if !arrived_over_https(req) {
        metrics.count("RejectedInsecure", 1);
        tracing::warn!(request_id, "rejected: not HTTPS");
        return answer(StatusCode::FORBIDDEN, json!({"error": "HTTPS required"}));
    }

    let body: &[u8] = req.body().as_ref();
    if body.len() > deps.config.max_body_bytes {
        metrics.count("RejectedTooLarge", 1);
        tracing::warn!(request_id, bytes = body.len(), "rejected: body too large");
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("body larger than {} bytes", deps.config.max_body_bytes)}),
        );
    }

    let headers: RequestHeaders = req
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let verified = match check_signature(deps, &headers, body, deadline).await {
        Ok(v) => v,
        Err(Failure::Rejected(reason)) => {
            metrics.count("SignatureRejected", 1);
            metrics.count(reason.metric(), 1);
            tracing::warn!(request_id, reason = reason.as_str(), "rejected: signature");
            return empty(StatusCode::UNAUTHORIZED);
        }
        Err(Failure::Secret(reason)) => {
            metrics.count("SecretUnavailable", 1);
            tracing::error!(request_id, "webhook secret unavailable: {reason}");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "temporarily unable to verify requests"}),
            );
        }
    };

    // Deduplication ids come from signed material only: an unsigned X-Reltio-Event-Id could make a new event
    // look like one already delivered. The header is logged as a correlation hint.
    let hint = headers.get(RELTIO_EVENT_ID).map(str::trim).unwrap_or("-");
    let events = match parse_body(body, verified.webhook_id.as_deref()) {
        Ok(events) => events,
        Err(e) => {
            metrics.count("RejectedInvalidBody", 1);
            tracing::warn!(request_id, "rejected: {e}");
            return answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
        }
    };
    metrics.count("EventsReceived", events.len() as u64);

    let (accepted, filtered): (Vec<WebhookEvent>, Vec<WebhookEvent>) = events
        .into_iter()
        .partition(|e| deps.config.subscription.matches(e));
    metrics.count("EventsFiltered", filtered.len() as u64);
    for e in &filtered {
        tracing::info!(request_id, event_id = %e.id, event_type = %e.event_type, "filtered out");
    }

    // A delivery replayed with the same signed ids is answered again without a second copy on the queue.
    let (accepted, replayed) = match deps.replay.as_ref() {
        Some(cache) if !accepted.is_empty() => {
            let ids: Vec<&str> = accepted.iter().map(|e| e.id.as_str()).collect();
            let seen = match tokio::time::timeout_at(deadline.into(), cache.seen(&ids)).await {
                Ok(Ok(seen)) => seen,
                failed => {
                    let reason = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    // Counting nothing as seen risks a duplicate, which the consumers absorb; never a loss.
                    tracing::warn!(request_id, "replay cache unavailable: {reason}");
                    metrics.count("ReplayCacheUnavailable", 1);
                    vec![false; ids.len()]
                }
            };
            let mut fresh = Vec::with_capacity(accepted.len());
            let mut replayed = Vec::new();
            for (e, seen) in accepted.into_iter().zip(seen) {
                if seen {
                    replayed.push(e);
                } else {
                    fresh.push(e);
                }
            }
            (fresh, replayed)
        }
        _ => (accepted, Vec::new()),
    };
    metrics.count("EventsReplayed", replayed.len() as u64);
    for e in &replayed {
        tracing::info!(request_id, event_id = %e.id, "replayed delivery: already enqueued");
    }

    let failures = enqueue_events(deps, &accepted, deadline).await;
    if !failures.is_empty() {
        metrics.count("EnqueueFailures", failures.len() as u64);
        metrics.count(
            "EventsAccepted",
            (accepted.len() - failures.len().min(accepted.len())) as u64,
        );
        for f in &failures {
            let id = accepted.get(f.index).map(|e| e.id.as_str()).unwrap_or("?");
            tracing::error!(request_id, event_id = %id, "not enqueued: {}", f.reason);
        }
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": format!("{} of {} events could not be enqueued; retry", failures.len(), accepted.len())}),
        );
    }
    metrics.count("EventsAccepted", accepted.len() as u64);
    for e in &accepted {
        // The hand-over: the entity (the CDC hop's id) and this invocation's trace, which the queue message carries
        // to crm-updater as its AWSTraceHeader.
        tracing::info!(
            request_id,
            event_id = %e.id,
            hint,
            event_type = %e.event_type,
            entity = e.entity_uri.as_deref(),
            object_version = e.object_version.as_deref(),
            "enqueued"
        );
    }
    if let Some(cache) = deps.replay.as_ref().filter(|_| !accepted.is_empty()) {
        let ids: Vec<&str> = accepted.iter().map(|e| e.id.as_str()).collect();
        if let Ok(Err(e)) | Err(e) = tokio::time::timeout_at(deadline.into(), cache.remember(&ids))
            .await
            .map_err(|_| PortError::Transient("timed out".into()))
        {
            // Enqueued all the same: a replay would only be enqueued again.
            tracing::warn!(request_id, "could not record the delivered ids: {e}");
            metrics.count("ReplayCacheUnavailable", 1);
        }
    }
    let mut body = json!({"accepted": accepted.len(), "filtered": filtered.len()});
    if !replayed.is_empty() {
        body["replayed"] = json!(replayed.len());
    }
    answer(StatusCode::OK, body)
}

/// HTTPS when every `X-Forwarded-Proto` value (all hops) is `https`. Without the header, only API Gateway
/// (REST, HTTP API) and function-URL requests count as HTTPS: those endpoints serve nothing but HTTPS, and
/// they always set the header in AWS anyway; an ALB request without it is refused.
pub fn arrived_over_https(req: &Request) -> bool {
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-proto")
        .iter()
        .map(|v| v.to_str().unwrap_or("invalid"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if values.is_empty() {
        return matches!(
            req.request_context_ref(),
            Some(RequestContext::ApiGatewayV1(_) | RequestContext::ApiGatewayV2(_))
        );
    }
    values.iter().all(|v| v.eq_ignore_ascii_case("https"))
}

enum Failure {
    Rejected(Rejection),
    Secret(String),
}

async fn check_signature(
    deps: &Deps,
    headers: &RequestHeaders,
    body: &[u8],
    deadline: Instant,
) -> Result<Verified, Failure> {
    // An unsigned request needs no secret: refuse it without touching Secrets Manager.
    if headers.get(RELTIO_SIGNATURE).is_none() && headers.get(STANDARD_SIGNATURE).is_none() {
        return Err(Failure::Rejected(Rejection::Missing));
    }
    let secrets = match tokio::time::timeout_at(deadline.into(), deps.secrets.current()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Failure::Secret(e.to_string())),
        Err(_) => return Err(Failure::Secret("timed out reading the secret".into())),
    };
    let now = (deps.clock)();
    match verify(headers, body, &secrets, now, deps.config.verify) {
        Err(Rejection::Mismatch) => {
            // A secret added since the cache was filled would fail here: look once more (rate-limited).
            let fresh = tokio::time::timeout_at(deadline.into(), deps.secrets.refreshed())
                .await
                .ok()
                .flatten();
            match fresh {
                Some(fresh) => verify(headers, body, &fresh, now, deps.config.verify),
                None => Err(Rejection::Mismatch),
            }
        }
        other => other,
    }
    .map_err(Failure::Rejected)
}

/// Sends the events (batches of 10, failed entries retried) within the deadline; what is still unsent.
async fn enqueue_events(
    deps: &Deps,
    events: &[WebhookEvent],
    deadline: Instant,
) -> Vec<SendFailure> {
    let messages: Vec<_> = events
        .iter()
        .map(|e| e.to_message(deps.config.fifo))
        .collect();
    enqueue(deps.queue.as_ref(), &messages, deadline).await
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| empty(StatusCode::INTERNAL_SERVER_ERROR))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}
