//! Typed reading of environment settings: a missing or invalid setting is an error that names it.

use std::str::FromStr;

/// A setting that is missing or cannot be used. The message names the variable, never its value
/// (values may be secret ids or URLs with credentials).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("required setting {0} is not set")]
    Missing(&'static str),
    #[error("setting {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where settings come from: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A non-empty, trimmed value, or `None` when unset or blank.
pub fn optional(env: &dyn Env, name: &'static str) -> Option<String> {
    env.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub fn required(env: &dyn Env, name: &'static str) -> Result<String, ConfigError> {
    optional(env, name).ok_or(ConfigError::Missing(name))
}

/// A parsed value with a default when unset.
pub fn parsed_or<T>(env: &dyn Env, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match optional(env, name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

/// A positive integer with a default, bounded above by `max`.
pub fn positive_or(
    env: &dyn Env,
    name: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let value: usize = parsed_or(env, name, default)?;
    if value == 0 || value > max {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("must be between 1 and {max}"),
        });
    }
    Ok(value)
}

/// An `https://` URL (plain `http://` only to a loopback host, for local runs) without a trailing slash.
pub fn url(env: &dyn Env, name: &'static str) -> Result<String, ConfigError> {
    let raw = required(env, name)?;
    check_url(name, raw)
}

pub fn url_or(env: &dyn Env, name: &'static str, default: &str) -> Result<String, ConfigError> {
    let raw = optional(env, name).unwrap_or_else(|| default.to_owned());
    check_url(name, raw)
}

fn check_url(name: &'static str, raw: String) -> Result<String, ConfigError> {
    if is_secure_url(&raw) {
        Ok(raw.trim_end_matches('/').to_owned())
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: "must be an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)".into(),
        })
    }
}

/// Whether `raw` is an `https://` URL with a host, or an `http://` one to a loopback host (local runs and
/// tests): credentials and personal data never travel in clear text to anything else.
pub fn is_secure_url(raw: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(raw) else {
        return false;
    };
    let host = u.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "https" => !host.is_empty(),
        "http" => loopback,
        _ => false,
    }
}

/// Comma-separated list; empty entries dropped.
pub fn list(env: &dyn Env, name: &'static str) -> Vec<String> {
    optional(env, name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

pub fn bool_or(env: &dyn Env, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match optional(env, name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
        Some(_) => Err(ConfigError::Invalid {
            name,
            reason: "must be true or false".into(),
        }),
    }
}

/// `LETTER_STORE_BUCKET` (optional, every batch-fed function): the S3 bucket that keeps the payloads too large for
/// their dead letters. Unset, such a letter points at where its source holds the payload (the stream, while within
/// its retention; Reltio's large-event form for an event): the degraded mode.
pub fn letter_store_bucket(env: &dyn Env) -> Result<Option<String>, ConfigError> {
    let name = "LETTER_STORE_BUCKET";
    let Some(bucket) = optional(env, name) else {
        return Ok(None);
    };
    // S3's bucket naming rules (3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit at each end):
    // an ARN or a URL given by mistake stops the start-up instead of failing every put.
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(ConfigError::Invalid {
            name,
            reason: "is not an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)"
                .into(),
        });
    }
    Ok(Some(bucket))
}

/// Reltio's default token endpoint.
pub const DEFAULT_RELTIO_AUTH_URL: &str = "https://auth.reltio.com/oauth/token";

/// Access to a Reltio tenant: `RELTIO_API_URL` (the tenant's base, `https://{env}.reltio.com/reltio/api/{tenant}`),
/// `RELTIO_AUTH_URL` (default Reltio's) and `RELTIO_SECRET_ID` (`{"client_id", "client_secret"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReltioSettings {
    pub api_url: String,
    pub auth_url: String,
    pub secret_id: String,
}

impl ReltioSettings {
    /// Required settings.
    pub fn from_env(env: &dyn Env) -> Result<ReltioSettings, ConfigError> {
        Ok(ReltioSettings {
            api_url: url(env, "RELTIO_API_URL")?,
            auth_url: url_or(env, "RELTIO_AUTH_URL", DEFAULT_RELTIO_AUTH_URL)?,
            secret_id: required(env, "RELTIO_SECRET_ID")?,
        })
    }

    /// `None` when `RELTIO_API_URL` is unset (a function that only sometimes needs Reltio).
    pub fn optional(env: &dyn Env) -> Result<Option<ReltioSettings>, ConfigError> {
        match optional(env, "RELTIO_API_URL") {
            None => Ok(None),
            Some(_) => ReltioSettings::from_env(env).map(Some),
        }
    }
}

/// Where the functions that hand Reltio's events on (webhook-receiver, stream-consumer) publish them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventDestination {
    /// `EVENT_TOPIC_ARN`: the fan-out topic; every consumer reads its own subscription queue.
    Topic(String),
    /// `EVENT_QUEUE_URL`: one queue, read by the crm-updater.
    Queue(String),
}

impl EventDestination {
    /// FIFO (its ARN or URL ends in `.fifo`): messages get group and deduplication ids.
    pub fn is_fifo(&self) -> bool {
        match self {
            EventDestination::Topic(t) => t.ends_with(".fifo"),
            EventDestination::Queue(q) => q.ends_with(".fifo"),
        }
    }
}

/// `EVENT_TOPIC_ARN` when set (an SNS topic ARN), else `EVENT_QUEUE_URL` (required then).
pub fn event_destination(env: &dyn Env) -> Result<EventDestination, ConfigError> {
    match optional(env, "EVENT_TOPIC_ARN") {
        Some(arn) => {
            let parts: Vec<&str> = arn.split(':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
                return Err(ConfigError::Invalid {
                    name: "EVENT_TOPIC_ARN",
                    reason:
                        "is not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)"
                            .into(),
                });
            }
            Ok(EventDestination::Topic(arn))
        }
        None => Ok(EventDestination::Queue(url(env, "EVENT_QUEUE_URL")?)),
    }
}

/// The subscription filter, `EVENT_TYPES` and `ENTITY_TYPES` (comma-separated; empty means all), as every
/// function that takes Reltio events reads it (docs/contract.md, "webhook-receiver").
pub fn subscription(env: &dyn Env) -> Result<mdm_sync_domain::webhook::Subscription, ConfigError> {
    use mdm_sync_domain::reltio::event::{EntityTypeFilter, EventTypeFilter};
    let event_types = EventTypeFilter::parse(&list(env, "EVENT_TYPES")).map_err(|entry| {
        ConfigError::Invalid {
            name: "EVENT_TYPES",
            reason: format!(
                "`{entry}` is neither a category (CREATE, UPDATE, MERGE, UNMERGE, DELETE) nor a Reltio event type name"
            ),
        }
    })?;
    Ok(mdm_sync_domain::webhook::Subscription {
        event_types,
        entity_types: EntityTypeFilter::new(&list(env, "ENTITY_TYPES")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Env {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn the_event_topic_when_set_else_the_event_queue() {
        let topic = "arn:aws:sns:us-east-1:123456789012:mdm-sync-events.fifo";
        let d = event_destination(&env(&[("EVENT_TOPIC_ARN", topic)])).unwrap();
        assert_eq!(d, EventDestination::Topic(topic.into()));
        assert!(d.is_fifo());
        let q = "https://sqs.us-east-1.amazonaws.com/1/events";
        let d =
            event_destination(&env(&[("EVENT_QUEUE_URL", q), ("EVENT_TOPIC_ARN", " ")])).unwrap();
        assert_eq!(d, EventDestination::Queue(q.into()));
        assert!(!d.is_fifo());
        let err = event_destination(&env(&[])).unwrap_err().to_string();
        assert!(err.contains("EVENT_QUEUE_URL"), "{err}");
        for bad in [
            "arn:aws:sqs:us-east-1:1:events",
            "events",
            "arn:aws:sns:us-east-1:1:",
        ] {
            let err = event_destination(&env(&[("EVENT_TOPIC_ARN", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("EVENT_TOPIC_ARN") && !err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_setting_is_named() {
        let err = required(&env(&[]), "RELTIO_API_URL").unwrap_err();
        assert_eq!(
            err.to_string(),
            "required setting RELTIO_API_URL is not set"
        );
    }

    #[test]
    fn a_blank_setting_counts_as_missing() {
        assert!(required(&env(&[("X_Y", "  ")]), "X_Y").is_err());
    }

    #[test]
    fn an_out_of_range_number_is_invalid_and_named() {
        let e = env(&[("RELTIO_BATCH_SIZE", "0")]);
        let err = positive_or(&e, "RELTIO_BATCH_SIZE", 100, 1000).unwrap_err();
        assert!(err.to_string().contains("RELTIO_BATCH_SIZE"), "{err}");
        let e = env(&[("RELTIO_BATCH_SIZE", "abc")]);
        assert!(positive_or(&e, "RELTIO_BATCH_SIZE", 100, 1000).is_err());
        assert_eq!(
            positive_or(&env(&[]), "RELTIO_BATCH_SIZE", 100, 1000).unwrap(),
            100
        );
    }

    #[test]
    fn urls_must_be_http_and_lose_their_trailing_slash() {
        let e = env(&[("U", "https://test.reltio.com/reltio/api/T/")]);
        assert_eq!(
            url(&e, "U").unwrap(),
            "https://test.reltio.com/reltio/api/T"
        );
        assert!(url(&env(&[("U", "ftp://x")]), "U").is_err());
        // Clear text only to loopback.
        assert!(url(&env(&[("U", "http://reltio.example.com/api")]), "U").is_err());
        assert!(url(&env(&[("U", "http://10.0.0.1:8080")]), "U").is_err());
        for local in [
            "http://127.0.0.1:9000/x",
            "http://localhost:1",
            "http://[::1]:80",
        ] {
            assert!(url(&env(&[("U", local)]), "U").is_ok(), "{local}");
        }
        assert!(url(&env(&[("U", "not a url")]), "U").is_err());
    }

    #[test]
    fn the_letter_store_bucket_is_optional_and_must_be_a_bucket_name() {
        assert_eq!(letter_store_bucket(&env(&[])).unwrap(), None);
        assert_eq!(
            letter_store_bucket(&env(&[(
                "LETTER_STORE_BUCKET",
                " mdm-sync-prod-letters-1a2b "
            )]))
            .unwrap(),
            Some("mdm-sync-prod-letters-1a2b".into())
        );
        for bad in [
            "arn:aws:s3:::letters",
            "s3://letters",
            "Letters",
            "ab",
            "letters-",
        ] {
            let err = letter_store_bucket(&env(&[("LETTER_STORE_BUCKET", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("LETTER_STORE_BUCKET") && !err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn lists_and_booleans_parse() {
        let e = env(&[("L", " a, ,b "), ("B", "TRUE"), ("C", "maybe")]);
        assert_eq!(list(&e, "L"), vec!["a", "b"]);
        assert!(bool_or(&e, "B", false).unwrap());
        assert!(bool_or(&e, "C", false).is_err());
        assert!(!bool_or(&e, "D", false).unwrap());
    }
}
