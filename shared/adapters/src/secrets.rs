//! Secrets Manager adapter: reads a JSON secret once per container and keeps it until told it went stale, or, for
//! a secret that must follow rotation on its own (the webhook's signing keys), until a maximum age, with a
//! rate-limited forced re-read.

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Why a secret could not be had. Both are treated as transient by the handlers: a missing or misshapen
/// secret is a deployment problem that an operator fixes, and records must wait for it, not be dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read secret {id}: {reason}")]
    Unavailable { id: String, reason: String },
    /// The reason never quotes the secret's content.
    #[error("secret {id} does not have the expected JSON shape ({reason})")]
    Malformed { id: String, reason: String },
}

/// A Secrets Manager secret by id or ARN, fetched lazily (no network I/O at start-up) and cached: until
/// [`invalidate`](Self::invalidate)d, or, with [`with_ages`](Self::with_ages), until it is older than a maximum age.
pub struct SecretCache {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    cached: Mutex<Option<Cached>>,
    max_age: Option<Duration>,
    min_refresh: Duration,
}

/// The secret's value and when it was read.
struct Cached {
    value: SecretString,
    read_at: Instant,
}

impl SecretCache {
    /// Kept until invalidated (credentials: re-read when the service they are for refuses them).
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretCache {
            client,
            secret_id: secret_id.into(),
            cached: Mutex::new(None),
            max_age: None,
            min_refresh: Duration::ZERO,
        }
    }

    /// Re-read once older than `max_age` (so that a value removed from the secret stops working), and by
    /// [`refreshed_json`](Self::refreshed_json) when older than `min_refresh` (a value added since may be wanted).
    pub fn with_ages(self, max_age: Duration, min_refresh: Duration) -> Self {
        SecretCache {
            max_age: Some(max_age),
            min_refresh,
            ..self
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The secret's JSON parsed as `T`: the cached value, or the secret read anew when none is cached or it is
    /// past its maximum age.
    pub async fn get_json<T: DeserializeOwned>(&self) -> Result<T, SecretError> {
        let mut cached = self.cached.lock().await;
        let expired = |c: &Cached| self.max_age.is_some_and(|age| c.read_at.elapsed() >= age);
        if cached.as_ref().is_none_or(expired) {
            *cached = Some(self.fetch().await?);
        }
        let raw = cached
            .as_ref()
            .map(|c| c.value.expose_secret())
            .unwrap_or("");
        self.parse(raw)
    }

    /// After the cached value was found wanting (say, a signature matched none of its keys): the secret read
    /// anew and parsed, unless the cached copy is younger than the minimum refresh age, which keeps a flood of
    /// bad requests from reading the secret each time. `None` when nothing was read, or what was read could not
    /// be had as `T` (the cached value is kept then).
    pub async fn refreshed_json<T: DeserializeOwned>(&self) -> Option<T> {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.read_at.elapsed() < self.min_refresh)
        {
            return None;
        }
        let fresh = self.fetch().await.ok()?;
        let parsed = self.parse(fresh.value.expose_secret()).ok()?;
        *cached = Some(fresh);
        Some(parsed)
    }

    /// Forget the cached value, e.g. after the credentials it held were refused (the secret was rotated).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    fn parse<T: DeserializeOwned>(&self, raw: &str) -> Result<T, SecretError> {
        serde_json::from_str(raw).map_err(|e| SecretError::Malformed {
            id: self.secret_id.clone(),
            // Position and category only: serde's message can quote the offending value.
            reason: format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        })
    }

    async fn fetch(&self) -> Result<Cached, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretError::Unavailable {
                id: self.secret_id.clone(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })?;
        let value =
            out.secret_string
                .map(SecretString::from)
                .ok_or_else(|| SecretError::Malformed {
                    id: self.secret_id.clone(),
                    reason: "no SecretString (binary secrets are not supported)".into(),
                })?;
        Ok(Cached {
            value,
            read_at: Instant::now(),
        })
    }
}
