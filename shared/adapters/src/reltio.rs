//! HTTP client for Reltio's data API over the shared OAuth session (`oauth.rs`: client-credentials token cached
//! across invocations, retries of throttling and unavailability with backoff bounded by the invocation's deadline),
//! per-item results.
//!
//! Retry rules from Reltio's guidance (docs/reference.md): 401 → new token; 429 → back off, honouring
//! `Retry-After`; 502/503/504 → exponential backoff; 403/404/500 → not retried here.

use crate::http;
use crate::oauth::{self, Api, Session, Token, TokenAnswer};
use crate::retry::{RetryPolicy, Retryable};
use crate::secrets::SecretError;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use std::time::Instant;

use futures::future::BoxFuture;
use mdm_sync_domain::ports::{Deadline, EntitySource, EntityWriter, PortError};
use mdm_sync_domain::reltio::model::{CrosswalkKey, EntityBody, ItemOutcome};

/// The shape of the `RELTIO_SECRET_ID` secret.
#[derive(Deserialize, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

/// Where the client's OAuth credentials come from: fixed, or the `RELTIO_SECRET_ID` secret.
pub type CredentialSource = oauth::CredentialSource<ClientCredentials>;

/// A failed call. `is_transient` tells the handler whether to retry the record (batch item failure) or
/// dead-letter it.
#[derive(Debug, thiserror::Error)]
pub enum ReltioError {
    #[error("Reltio throttled the request (retry after {0:?})")]
    Throttled(Option<Duration>),
    #[error("Reltio is unavailable (HTTP {0})")]
    Unavailable(u16),
    #[error("Reltio did not answer in time")]
    Timeout,
    #[error("could not reach Reltio: {0}")]
    Connection(String),
    #[error("Reltio refused the credentials: {0}")]
    Unauthorized(String),
    /// 403, 404, 500 and other statuses Reltio says not to retry at once; the event source retries later.
    #[error("Reltio answered HTTP {status}: {message}")]
    Failed { status: u16, message: String },
    /// 400/422: the request itself is invalid and will never succeed.
    #[error("Reltio rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("Reltio's response could not be read: {0}")]
    Decode(String),
    #[error(transparent)]
    Credentials(#[from] SecretError),
    #[error("no time left in this invocation to finish the call (last error: {0})")]
    BudgetExhausted(String),
}

impl ReltioError {
    /// Transient errors may succeed later; only a rejected request is permanent.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ReltioError::Rejected { .. })
    }
}

impl Retryable for ReltioError {
    fn retry_now(&self) -> bool {
        matches!(
            self,
            ReltioError::Throttled(_)
                | ReltioError::Unavailable(_)
                | ReltioError::Timeout
                | ReltioError::Connection(_)
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ReltioError::Throttled(d) => *d,
            _ => None,
        }
    }

    fn is_unauthorized(&self) -> bool {
        matches!(self, ReltioError::Unauthorized(_))
    }

    fn out_of_time(self) -> Self {
        ReltioError::BudgetExhausted(self.to_string())
    }
}

/// Refresh this long before the token expires, so that no request carries a token about to lapse.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Reltio's token endpoint (`RELTIO_AUTH_URL`): HTTP Basic client credentials, a token that lives `expires_in`.
pub struct ReltioAuth {
    auth_url: String,
}

impl Api for ReltioAuth {
    type Credentials = ClientCredentials;
    type Error = ReltioError;
    const NAME: &'static str = "Reltio";

    fn token_request(
        &self,
        http: &reqwest::Client,
        credentials: &ClientCredentials,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(http
            .post(&self.auth_url)
            .basic_auth(
                &credentials.client_id,
                Some(credentials.client_secret.expose_secret()),
            )
            .form(&[("grant_type", "client_credentials")]))
    }

    fn token(&self, answer: TokenAnswer) -> Result<Token, ReltioError> {
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        // Short-lived tokens (tests, simulators) are refreshed at 90 % of their life instead.
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 10);
        Ok(Token {
            access_token: answer.access_token,
            instance_url: None,
            refresh_at: Some(Instant::now() + lifetime - margin),
        })
    }

    fn error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> ReltioError {
        let message = error_text(body);
        match status {
            StatusCode::UNAUTHORIZED => ReltioError::Unauthorized(message),
            StatusCode::TOO_MANY_REQUESTS => ReltioError::Throttled(retry_after),
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ReltioError::Unavailable(status.as_u16()),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ReltioError::Rejected {
                status: status.as_u16(),
                message,
            },
            _ => ReltioError::Failed {
                status: status.as_u16(),
                message,
            },
        }
    }

    fn refused(error: ReltioError) -> ReltioError {
        let message = match error {
            ReltioError::Unauthorized(m)
            | ReltioError::Rejected { message: m, .. }
            | ReltioError::Failed { message: m, .. } => m,
            other => other.to_string(),
        };
        ReltioError::Unauthorized(format!("token endpoint refused the client: {message}"))
    }
}

pub struct ReltioClient {
    session: Session<ReltioAuth>,
    api_url: String,
}

impl ReltioClient {
    /// `api_url` is the tenant base (`https://{env}.reltio.com/reltio/api/{tenant}`), without a trailing slash.
    pub fn new(
        http: reqwest::Client,
        api_url: impl Into<String>,
        auth_url: impl Into<String>,
        credentials: CredentialSource,
        retry: RetryPolicy,
    ) -> Self {
        let auth = ReltioAuth {
            auth_url: auth_url.into(),
        };
        ReltioClient {
            session: Session::new(http, auth, credentials, retry),
            api_url: api_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// `POST /entities` (crosswalk-keyed upsert). Results come back in request order, one per entity.
    /// `partial_override` sends `options=partialOverride` so only the attributes sent are overwritten.
    pub async fn post_entities(
        &self,
        entities: &[&EntityBody],
        partial_override: bool,
        deadline: Instant,
    ) -> Result<Vec<ItemOutcome>, ReltioError> {
        let body = bytes::Bytes::from(
            serde_json::to_vec(entities).map_err(|e| ReltioError::Decode(e.to_string()))?,
        );
        let url = format!("{}{}", self.api_url, entities_path(partial_override));
        let response = self
            .session
            .send(deadline, |http, _| {
                http.post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        let items: Vec<Value> = http::read_json(response).await?;
        Ok(item_outcomes(&items, entities.len()))
    }

    /// Deletes a crosswalk by its value and type. The REST call is unverified against a live tenant
    /// (docs/reference.md); a 404 means it is already gone, which is the desired end state.
    pub async fn delete_crosswalk(
        &self,
        key: &CrosswalkKey,
        deadline: Instant,
    ) -> Result<(), ReltioError> {
        let mut url = Url::parse(&format!("{}/entities/_byCrosswalk", self.api_url))
            .map_err(|e| ReltioError::Decode(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|_| ReltioError::Decode("RELTIO_API_URL cannot take a path".into()))?
            .push(&key.value);
        url.query_pairs_mut().append_pair("type", &key.source);
        if let Some(table) = &key.source_table {
            url.query_pairs_mut().append_pair("sourceTable", table);
        }
        match self
            .session
            .send(deadline, |http, _| http.delete(url.clone()))
            .await
        {
            Ok(_) | Err(ReltioError::Failed { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /{uri}` for an entity URI such as `entities/0Abc` (a merged loser's URI resolves to the winner).
    pub async fn get_entity(&self, uri: &str, deadline: Instant) -> Result<Value, ReltioError> {
        let url = format!("{}/{}", self.api_url, uri.trim_start_matches('/'));
        let response = self
            .session
            .send(deadline, |http, _| http.get(&url))
            .await?;
        Ok(http::read_json(response).await?)
    }
}

impl From<ReltioError> for PortError {
    fn from(e: ReltioError) -> PortError {
        if e.is_transient() {
            PortError::Transient(e.to_string())
        } else {
            PortError::Rejected(e.to_string())
        }
    }
}

impl EntitySource for ReltioClient {
    fn entity<'a>(
        &'a self,
        uri: &'a str,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Value, PortError>> {
        Box::pin(async move {
            self.get_entity(uri, deadline)
                .await
                .map_err(PortError::from)
        })
    }
}

/// The path and query of an entity batch POST, below the tenant's API URL (also what `mdm-sync transform` shows).
pub fn entities_path(partial_override: bool) -> &'static str {
    if partial_override {
        "/entities?returnObjects=false&options=partialOverride"
    } else {
        "/entities?returnObjects=false"
    }
}

impl EntityWriter for ReltioClient {
    fn post_entities<'a>(
        &'a self,
        entities: &'a [&'a EntityBody],
        partial_override: bool,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<ItemOutcome>, PortError>> {
        Box::pin(async move {
            ReltioClient::post_entities(self, entities, partial_override, deadline)
                .await
                .map_err(PortError::from)
        })
    }

    fn delete_crosswalk<'a>(
        &'a self,
        key: &'a CrosswalkKey,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async move {
            ReltioClient::delete_crosswalk(self, key, deadline)
                .await
                .map_err(PortError::from)
        })
    }
}

/// What a failed response says, as codes only: Reltio's `errorCode`, or OAuth's `error`. Never its message text,
/// which can echo the values sent (personal data) and ends up in logs.
fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| error_code(&v))
        .map(|code| format!("error {code}"))
        .unwrap_or_else(|| "no error code".into())
}

/// The first `errorCode` (else OAuth's `error`) in an error object or array of them.
fn error_code(v: &Value) -> Option<String> {
    let v = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let code = find_key(v, "errorCode").or_else(|| v.get("error").filter(|e| e.is_string()))?;
    let text = match code {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // A code is a short token; anything else is not one.
    (text.len() <= 64 && !text.contains(char::is_whitespace)).then_some(text)
}

/// Maps the response array back to the request's elements, by each item's `index` when present.
/// An element with no result is a transient failure: nothing says it was written.
fn item_outcomes(items: &[Value], expected: usize) -> Vec<ItemOutcome> {
    let mut outcomes = vec![
        ItemOutcome::Failed {
            message: "Reltio returned no result for this entity".into(),
            transient: true,
        };
        expected
    ];
    for (position, item) in items.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| i as usize)
            .unwrap_or(position);
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = item_outcome(item);
        }
    }
    outcomes
}

/// Fails closed (docs/reference.md): an item is written only when marked so (`successful: true` or
/// `status: "OK"`, and not `successful: false`). A failed item with an error code is permanent unless the code
/// says retry (2008, `TOO_MANY_CONCURRENT_REQUESTS_FOR_OBJECT`); anything else not clearly successful is
/// transient: nothing says it was written, nor that it is invalid.
fn item_outcome(item: &Value) -> ItemOutcome {
    let successful = item.get("successful").and_then(Value::as_bool);
    let status_ok = item
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("ok"));
    if successful == Some(true) || (status_ok && successful != Some(false)) {
        return ItemOutcome::Written {
            uri: item.get("uri").and_then(Value::as_str).map(str::to_owned),
        };
    }
    match item
        .get("errors")
        .or_else(|| item.get("error"))
        .filter(|e| !e.is_null())
    {
        Some(e) => {
            let code = error_code(e);
            let transient = code.as_deref() == Some("2008")
                || e.to_string().contains("TOO_MANY_CONCURRENT_REQUESTS");
            // The code only: the message text can echo the entity's values.
            let message = match code {
                Some(c) => format!("error {c}"),
                None => "no error code".into(),
            };
            ItemOutcome::Failed { message, transient }
        }
        None => ItemOutcome::Failed {
            message: "Reltio did not confirm the entity was written".into(),
            transient: true,
        },
    }
}

fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key),
        Value::Array(items) => items.iter().find_map(|i| find_key(i, key)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

impl From<http::Transport> for ReltioError {
    fn from(t: http::Transport) -> ReltioError {
        match t {
            http::Transport::Timeout => ReltioError::Timeout,
            http::Transport::Connection(m) => ReltioError::Connection(m),
            http::Transport::Decode(m) => ReltioError::Decode(m),
        }
    }
}
