//! stream-consumer's settings, read once at start-up (docs/contract.md, "stream-consumer").

use mdm_sync_adapters::config::{self, ConfigError, Env, EventDestination};
use mdm_sync_adapters::metrics::DEFAULT_NAMESPACE;
use mdm_sync_domain::stream::StreamSettings;

/// `STREAM_MAX_EVENT_BYTES` default: the event queue's `MaximumMessageSize` in the template (1 MiB, SQS's largest).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Settings, read once at start-up (docs/contract.md, "stream-consumer").
#[derive(Debug, Clone)]
pub struct Config {
    /// `EVENT_TOPIC_ARN` (the fan-out topic) when set, else `EVENT_QUEUE_URL` (FIFO when it ends in `.fifo`).
    pub destination: EventDestination,
    /// `STREAM_DLQ_URL`.
    pub dlq_url: String,
    /// `EVENT_TYPES`, `ENTITY_TYPES`; `STREAM_MAX_EVENT_BYTES` (default 1 MiB, at most 1 MiB).
    pub settings: StreamSettings,
    /// `METRICS_NAMESPACE` (default `MdmSync`).
    pub metrics_namespace: String,
    /// `LETTER_STORE_BUCKET` (optional): the letter store, the S3 bucket that keeps payloads too large for their
    /// dead letters; without it such a letter points at where the source holds the payload.
    pub letter_store_bucket: Option<String>,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        Ok(Config {
            destination: config::event_destination(env)?,
            dlq_url: config::url(env, "STREAM_DLQ_URL")?,
            settings: StreamSettings {
                subscription: config::subscription(env)?,
                max_event_bytes: config::positive_or(
                    env,
                    "STREAM_MAX_EVENT_BYTES",
                    DEFAULT_MAX_EVENT_BYTES,
                    DEFAULT_MAX_EVENT_BYTES,
                )?,
            },
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            letter_store_bucket: config::letter_store_bucket(env)?,
        })
    }

    pub(crate) fn fifo(&self) -> bool {
        self.destination.is_fifo()
    }
}
