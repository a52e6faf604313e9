//! crm-updater's settings, read once at start-up (docs/contract.md, "crm-updater").

use mdm_sync_adapters::config::{self, ConfigError, Env, ReltioSettings};
use mdm_sync_adapters::metrics::DEFAULT_NAMESPACE;
use mdm_sync_domain::backoff::{Backoff, MAX_VISIBILITY_SECONDS};
use std::time::Duration;

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
    /// `RELTIO_API_URL`, `RELTIO_AUTH_URL`, `RELTIO_SECRET_ID`: to fetch entities that an event does not carry
    /// in full.
    pub reltio: ReltioSettings,
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
    /// `LETTER_STORE_BUCKET` (optional): the letter store, the S3 bucket that keeps payloads too large for their
    /// dead letters; without it such a letter points at where the source holds the payload.
    pub letter_store_bucket: Option<String>,
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
            reltio: ReltioSettings::from_env(env)?,
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
            letter_store_bucket: config::letter_store_bucket(env)?,
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
