//! The webhook secrets (Secrets Manager, cached, re-read after a mismatch at most so often) and the signature
//! check of a request against them.

use crate::Deps;
use mdm_sync_adapters::secrets::{SecretCache, SecretError};
use mdm_sync_domain::webhook::signature::{SecretDocument, RELTIO_SIGNATURE, STANDARD_SIGNATURE};
use mdm_sync_domain::webhook::{verify, Rejection, RequestHeaders, Verified, WebhookSecrets};
use std::sync::Arc;
use std::time::Instant;

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

pub(crate) enum Failure {
    Rejected(Rejection),
    Secret(String),
}

pub(crate) async fn check_signature(
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
