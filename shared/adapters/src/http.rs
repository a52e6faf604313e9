//! What the HTTP API adapters share: the client (rustls, pooled connections reused across invocations), and the
//! reading of responses and transport failures into the few cases every client distinguishes.

use reqwest::Response;
use std::time::Duration;

/// Longest error text kept from a response (it ends up in logs and DLQ messages).
pub const MAX_ERROR_TEXT: usize = 300;

/// A call that failed below the API's own answers; each client turns it into its error type.
#[derive(Debug)]
pub enum Transport {
    Timeout,
    Connection(String),
    /// The body could not be read as the expected JSON.
    Decode(String),
}

/// A reqwest failure: timed out, or could not connect or read.
pub fn transport(e: reqwest::Error) -> Transport {
    if e.is_timeout() {
        Transport::Timeout
    } else {
        Transport::Connection(error_chain(&e))
    }
}

/// Longest single HTTP exchange; the invocation's deadline shortens it further.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` with a bearer `token`, timed out at the deadline (or [`REQUEST_TIMEOUT`]); no time left is a
/// timeout without sending anything.
pub async fn send_bearer(
    request: reqwest::RequestBuilder,
    token: &secrecy::SecretString,
    deadline: std::time::Instant,
) -> Result<Response, Transport> {
    use secrecy::ExposeSecret;
    let left = mdm_sync_domain::ports::remaining(deadline);
    if left.is_zero() {
        return Err(Transport::Timeout);
    }
    request
        .bearer_auth(token.expose_secret())
        .timeout(left.min(REQUEST_TIMEOUT))
        .send()
        .await
        .map_err(transport)
}

/// The whole body read as JSON.
pub async fn read_json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, Transport> {
    let bytes = response.bytes().await.map_err(transport)?;
    serde_json::from_slice(&bytes).map_err(|e| Transport::Decode(e.to_string()))
}

/// The response's `Retry-After`, in seconds (the HTTP-date form is not used by the APIs we call).
pub fn retry_after(response: &Response) -> Option<Duration> {
    crate::retry::parse_retry_after(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    )
}

/// `text` cut to [`MAX_ERROR_TEXT`] bytes (on a character boundary), marked with `…` when cut.
pub fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// One client per container: connections and TLS sessions survive between invocations.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("the TLS backend initialises")
}

/// An error and its sources joined with ": ", for a log line or a DLQ reason. reqwest's chain names the URL
/// and the failure kind, never a request or response body.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
