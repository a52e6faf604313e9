//! webhook-receiver's settings, read once at start-up (docs/contract.md, "webhook-receiver").

use mdm_sync_adapters::config::{self, ConfigError, Env, EventDestination};
use mdm_sync_adapters::metrics::DEFAULT_NAMESPACE;
use mdm_sync_domain::webhook::{Subscription, VerifyOptions};
use std::time::Duration;

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
