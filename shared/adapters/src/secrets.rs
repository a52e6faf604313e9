//! Secrets Manager adapter: reads a JSON secret once per container and keeps it until told it went stale.

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
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

/// A Secrets Manager secret by id or ARN, fetched lazily (no network I/O at start-up) and cached.
pub struct SecretCache {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    cached: Mutex<Option<SecretString>>,
}

impl SecretCache {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretCache {
            client,
            secret_id: secret_id.into(),
            cached: Mutex::new(None),
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The secret's JSON parsed as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self) -> Result<T, SecretError> {
        let mut cached = self.cached.lock().await;
        if cached.is_none() {
            *cached = Some(self.fetch().await?);
        }
        let raw = cached.as_ref().map(|s| s.expose_secret()).unwrap_or("");
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

    /// Forget the cached value, e.g. after the credentials it held were refused (the secret was rotated).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<SecretString, SecretError> {
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
        out.secret_string
            .map(SecretString::from)
            .ok_or_else(|| SecretError::Malformed {
                id: self.secret_id.clone(),
                reason: "no SecretString (binary secrets are not supported)".into(),
            })
    }
}
