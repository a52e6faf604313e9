//! analytics-sink's settings, read once at start-up (docs/contract.md, "analytics-sink").

use mdm_sync_adapters::config::{self, ConfigError, Env, ReltioSettings};
use mdm_sync_adapters::metrics::DEFAULT_NAMESPACE;
use std::time::Duration;

/// `ANALYTICS_DEDUP_TTL_DAYS` default: an id is remembered longer than any message can wait in SQS (14 days).
pub const DEFAULT_DEDUP_TTL_DAYS: u64 = 15;

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
    /// `LETTER_STORE_BUCKET` (optional): the letter store, the S3 bucket that keeps payloads too large for their
    /// dead letters; without it such a letter points at where the source holds the payload.
    pub letter_store_bucket: Option<String>,
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
        let reltio = ReltioSettings::optional(env)?;
        Ok(Config {
            stream_name: config::required(env, "FIREHOSE_STREAM_NAME")?,
            mapping_file: config::required(env, "ANALYTICS_MAPPING_FILE")?,
            dlq_url: config::url(env, "ANALYTICS_DLQ_URL")?,
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            dedup,
            event_bus: config::optional(env, "ANALYTICS_EVENT_BUS"),
            reltio,
            letter_store_bucket: config::letter_store_bucket(env)?,
        })
    }
}
