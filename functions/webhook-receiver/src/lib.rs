//! webhook-receiver: takes signed Reltio events over HTTPS (API Gateway REST v1 and HTTP API v2, ALB,
//! function URLs: `lambda_http` turns them all into one `Request`), checks them and enqueues one SQS message
//! per event for the crm-updater, answering within a fixed budget well under the senders' 5 seconds.
//!
//! Checks, in this order (docs/contract.md, "webhook-receiver"): HTTPS (403), size (413), signature (401, empty
//! body), parse (400), subscription filter (acknowledged, not enqueued), enqueue (200, or 503 so the sender
//! retries). Nothing is enqueued unless the signature passed. Logs carry event ids, never bodies or secrets.

mod config;
pub mod guard;
mod http;
mod signing;

pub use config::*;
pub use http::arrived_over_https;
use http::{answer, empty};
use signing::{check_signature, Failure};
pub use signing::{system_clock, Clock, SecretSource};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use mdm_sync_adapters::enqueue::enqueue;
use mdm_sync_adapters::metrics::Metrics;
use mdm_sync_adapters::replay::DynamoReplayCache;
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_adapters::sns::event_sink;
use mdm_sync_domain::ports::{DeliveredIds, MessageSink, PortError};
use mdm_sync_domain::queue::SendFailure;
use mdm_sync_domain::webhook::signature::RELTIO_EVENT_ID;
use mdm_sync_domain::webhook::{parse_body, RequestHeaders, WebhookEvent};
use serde_json::json;
use std::time::Instant;

pub const FUNCTION_NAME: &str = "webhook-receiver";
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
