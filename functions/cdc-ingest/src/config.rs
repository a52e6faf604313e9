//! cdc-ingest's settings, read once at start-up (docs/contract.md, "cdc-ingest").

use mdm_sync_adapters::config::{self, ConfigError, Env, ReltioSettings};
use mdm_sync_adapters::metrics::DEFAULT_NAMESPACE;
use mdm_sync_domain::dms::DEFAULT_BEFORE_IMAGE_FIELD;

pub const DEFAULT_BATCH_SIZE: usize = 100;
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// Settings, read once at start-up (docs/contract.md, "cdc-ingest").
#[derive(Debug, Clone)]
pub struct Config {
    /// `RELTIO_API_URL`, `RELTIO_AUTH_URL` (default Reltio's), `RELTIO_SECRET_ID`.
    pub reltio: ReltioSettings,
    pub mapping_file: String,
    pub dlq_url: String,
    /// Entities per `POST /entities` (default 100, at most 1000).
    pub batch_size: usize,
    /// `POST`s in flight at once (default 4, at most 64).
    pub max_concurrency: usize,
    /// CloudWatch namespace for metrics (default `MdmSync`).
    pub metrics_namespace: String,
    /// The DMS task's `BeforeImageSettings.FieldName` (default `before-image`).
    pub before_image_field: String,
    /// `CDC_KEY_LEDGER_TABLE` (optional) and `CDC_KEY_LEDGER_RETENTION_DAYS` (default 8: past Kinesis's
    /// 7-day maximum retention): the CDC key ledger, which skips changes older than what was applied per key.
    pub key_ledger: Option<(String, std::time::Duration)>,
    /// `LETTER_STORE_BUCKET` (optional): the letter store, the S3 bucket that keeps records too large for their
    /// dead letters; without it such a letter points at where the stream holds the record.
    pub letter_store_bucket: Option<String>,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        Ok(Config {
            reltio: ReltioSettings::from_env(env)?,
            mapping_file: config::required(env, "CDC_MAPPING_FILE")?,
            dlq_url: config::url(env, "CDC_DLQ_URL")?,
            batch_size: config::positive_or(env, "RELTIO_BATCH_SIZE", DEFAULT_BATCH_SIZE, 1000)?,
            max_concurrency: config::positive_or(
                env,
                "RELTIO_MAX_CONCURRENCY",
                DEFAULT_MAX_CONCURRENCY,
                64,
            )?,
            metrics_namespace: config::optional(env, "METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            before_image_field: config::optional(env, "CDC_BEFORE_IMAGE_FIELD")
                .unwrap_or_else(|| DEFAULT_BEFORE_IMAGE_FIELD.to_owned()),
            key_ledger: match config::optional(env, "CDC_KEY_LEDGER_TABLE") {
                None => None,
                Some(table) => {
                    let days = config::positive_or(env, "CDC_KEY_LEDGER_RETENTION_DAYS", 8, 3650)?;
                    Some((table, std::time::Duration::from_secs(days as u64 * 86_400)))
                }
            },
            letter_store_bucket: config::letter_store_bucket(env)?,
        })
    }
}
