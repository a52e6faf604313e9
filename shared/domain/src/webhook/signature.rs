//! Webhook signature verification (docs/contract.md, "Accepted signature schemes"; practice from docs/reference.md,
//! "Webhook signature practice"): HMAC-SHA256 over the exact raw body bytes, compared in constant time
//! (`hmac::Mac::verify_slice`) on decoded bytes, several secrets (rotation) and several signatures per header,
//! signed timestamps checked against a window in both directions.
//!
//! Two schemes are accepted; a request passes when any one signature of any present scheme matches any secret:
//! 1. `X-Reltio-Signature: sha256=<hex>` (or bare hex; comma-separated list) over the body, or over
//!    `<timestamp>.<body>` when `X-Reltio-Timestamp: <unix seconds>` is present.
//! 2. Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` (space-separated
//!    list) over `<id>.<timestamp>.<body>`, secrets written `whsec_<base64>`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const RELTIO_SIGNATURE: &str = "x-reltio-signature";
pub const RELTIO_TIMESTAMP: &str = "x-reltio-timestamp";
pub const RELTIO_EVENT_ID: &str = "x-reltio-event-id";
pub const STANDARD_ID: &str = "webhook-id";
pub const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE: &str = "webhook-signature";

/// Default allowed clock difference for signed timestamps, in seconds (the common 5-minute window).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// At most this many signatures per request are tried (bounds the work a forged request can cause).
const MAX_SIGNATURES: usize = 16;
/// SHA-256 output length: a `sha256=` signature of another length can never match.
const SHA256_LEN: usize = 32;

/// Request headers as the verifier sees them: names compared case-insensitively (REST APIs keep the sender's
/// case, HTTP APIs lowercase them), every value of a repeated header kept in order.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders {
    entries: Vec<(String, String)>,
}

impl RequestHeaders {
    pub fn new() -> RequestHeaders {
        RequestHeaders::default()
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.entries
            .push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name` (any case), in arrival order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        // Names are stored lower-cased.
        let name = name.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for RequestHeaders {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = RequestHeaders::new();
        for (k, v) in iter {
            headers.insert(k.as_ref(), v.as_ref());
        }
        headers
    }
}

/// The accepted secrets (current first, then previous ones during rotation), trimmed. `Debug` shows only
/// how many there are.
#[derive(Clone)]
pub struct WebhookSecrets {
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} secrets)", self.secrets.len())
    }
}

/// The Secrets Manager document: `{"secrets": ["<current>", "<previous>"]}`.
#[derive(Deserialize)]
pub struct SecretDocument {
    pub secrets: Vec<SecretString>,
}

impl WebhookSecrets {
    /// Trims every secret and drops blank ones; `None` when none is left (no request could ever pass).
    pub fn new<I, S>(secrets: I) -> Option<WebhookSecrets>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let secrets: Vec<SecretString> = secrets
            .into_iter()
            .map(|s| s.as_ref().trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .collect();
        (!secrets.is_empty()).then_some(WebhookSecrets { secrets })
    }

    pub fn from_document(doc: &SecretDocument) -> Option<WebhookSecrets> {
        WebhookSecrets::new(doc.secrets.iter().map(|s| s.expose_secret()))
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Keys for `X-Reltio-Signature`: each secret's UTF-8 bytes as written (GitHub's practice).
    fn reltio_keys(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes().to_vec())
    }

    /// Keys for Standard Webhooks: see [`standard_key`].
    fn standard_keys(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.secrets
            .iter()
            .filter_map(|s| standard_key(s.expose_secret()))
    }
}

/// The Standard Webhooks key of a secret: `whsec_<base64>` → the decoded bytes (the spec's form); a secret
/// without the prefix → its base64 decoding when it is valid base64, else its UTF-8 bytes. `None` for a
/// `whsec_` secret whose remainder is not base64.
fn standard_key(secret: &str) -> Option<Vec<u8>> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => decode_base64(b64),
        None => Some(decode_base64(secret).unwrap_or_else(|| secret.as_bytes().to_vec())),
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
        .filter(|k| !k.is_empty())
}

/// Which scheme a request was verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Reltio,
    StandardWebhooks,
}

/// Settings of the check (`WEBHOOK_TOLERANCE_SECONDS`, `WEBHOOK_REQUIRE_TIMESTAMP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Allowed difference between a signed timestamp and the clock, in seconds, in both directions.
    pub tolerance_seconds: u64,
    /// Reject `X-Reltio-Signature` requests without `X-Reltio-Timestamp` (Standard Webhooks always has one).
    pub require_timestamp: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            require_timestamp: false,
        }
    }
}

/// A request whose signature passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scheme: Scheme,
    /// The signed timestamp (unix seconds), when the request carried one.
    pub timestamp: Option<i64>,
    /// `webhook-id` of a Standard Webhooks request.
    pub webhook_id: Option<String>,
}

/// Why a signature check failed. The HTTP answer is the same 401 for all (no detail leaks to the sender);
/// the reason goes to metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("no signature header")]
    Missing,
    #[error("signature header present but empty")]
    Empty,
    #[error("signature or timestamp header is malformed")]
    Malformed,
    #[error("no signed timestamp, and one is required")]
    TimestampMissing,
    #[error("signed timestamp is older than the tolerance")]
    TooOld,
    #[error("signed timestamp is further in the future than the tolerance")]
    InFuture,
    #[error("no signature matches any secret")]
    Mismatch,
}

impl Rejection {
    pub const ALL: [Rejection; 7] = [
        Rejection::Missing,
        Rejection::Empty,
        Rejection::Malformed,
        Rejection::TimestampMissing,
        Rejection::TooOld,
        Rejection::InFuture,
        Rejection::Mismatch,
    ];

    /// Short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Empty => "empty",
            Rejection::Malformed => "malformed",
            Rejection::TimestampMissing => "timestamp_missing",
            Rejection::TooOld => "too_old",
            Rejection::InFuture => "in_future",
            Rejection::Mismatch => "mismatch",
        }
    }

    /// The metric counting this reason.
    pub fn metric(self) -> &'static str {
        match self {
            Rejection::Missing => "SignatureRejectedMissing",
            Rejection::Empty => "SignatureRejectedEmpty",
            Rejection::Malformed => "SignatureRejectedMalformed",
            Rejection::TimestampMissing => "SignatureRejectedTimestampMissing",
            Rejection::TooOld => "SignatureRejectedTooOld",
            Rejection::InFuture => "SignatureRejectedInFuture",
            Rejection::Mismatch => "SignatureRejectedMismatch",
        }
    }
}

/// Checks the request's signature(s) against every secret. `body` is the exact raw body (after any base64
/// transport decoding, before any JSON parsing); `now` is the clock in unix seconds.
///
/// When both schemes' headers are present, either passing is enough; when both fail, the reason reported is
/// the `X-Reltio-Signature` one.
pub fn verify(
    headers: &RequestHeaders,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: i64,
    options: VerifyOptions,
) -> Result<Verified, Rejection> {
    let reltio = headers.has(RELTIO_SIGNATURE);
    let standard = headers.has(STANDARD_SIGNATURE);
    if !reltio && !standard {
        return Err(Rejection::Missing);
    }
    let mut first_failure = None;
    if reltio {
        match verify_reltio(headers, body, secrets, now, options) {
            Ok(v) => return Ok(v),
            Err(e) => first_failure = Some(e),
        }
    }
    if standard {
        match verify_standard(headers, body, secrets, now, options) {
            Ok(v) => return Ok(v),
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    Err(first_failure.unwrap_or(Rejection::Missing))
}

fn verify_reltio(
    headers: &RequestHeaders,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: i64,
    options: VerifyOptions,
) -> Result<Verified, Rejection> {
    let items: Vec<&str> = headers
        .get_all(RELTIO_SIGNATURE)
        .flat_map(|v| v.split([',', ' ', '\t']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let values: Vec<&str> = items
        .iter()
        .map(|item| strip_prefix_ignore_case(item, "sha256=").unwrap_or(item))
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        // No value at all, or only `sha256=` with nothing after it.
        return Err(Rejection::Empty);
    }
    let signatures: Vec<Vec<u8>> = values
        .iter()
        .filter_map(|v| hex::decode(v).ok())
        .filter(|s| s.len() == SHA256_LEN)
        .take(MAX_SIGNATURES)
        .collect();
    if signatures.is_empty() {
        return Err(Rejection::Malformed);
    }
    let timestamp = match headers.get(RELTIO_TIMESTAMP) {
        None => None,
        Some(raw) => {
            let raw = raw.trim();
            let ts = parse_timestamp(raw).ok_or(Rejection::Malformed)?;
            check_window(ts, now, options.tolerance_seconds)?;
            Some((raw, ts))
        }
    };
    if timestamp.is_none() && options.require_timestamp {
        return Err(Rejection::TimestampMissing);
    }
    for key in secrets.reltio_keys() {
        let mut mac = new_mac(&key);
        if let Some((raw, _)) = timestamp {
            mac.update(raw.as_bytes());
            mac.update(b".");
        }
        mac.update(body);
        if matches_any(&mac, &signatures) {
            return Ok(Verified {
                scheme: Scheme::Reltio,
                timestamp: timestamp.map(|(_, ts)| ts),
                webhook_id: None,
            });
        }
    }
    Err(Rejection::Mismatch)
}

fn verify_standard(
    headers: &RequestHeaders,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: i64,
    options: VerifyOptions,
) -> Result<Verified, Rejection> {
    let items: Vec<&str> = headers
        .get_all(STANDARD_SIGNATURE)
        .flat_map(|v| v.split_whitespace())
        .collect();
    if items.is_empty() {
        return Err(Rejection::Empty);
    }
    let mut any_v1 = false;
    let mut signatures = Vec::new();
    for item in &items {
        // Other versions (e.g. asymmetric `v1a,`) are ignored, as the spec asks.
        let Some(b64) = item.strip_prefix("v1,") else {
            continue;
        };
        if b64.is_empty() {
            continue;
        }
        any_v1 = true;
        if let Some(sig) = decode_base64(b64).filter(|s| s.len() == SHA256_LEN) {
            signatures.push(sig);
        }
    }
    signatures.truncate(MAX_SIGNATURES);
    if signatures.is_empty() {
        return Err(if any_v1 || items.iter().any(|i| *i != "v1,") {
            Rejection::Malformed
        } else {
            // Only `v1,` with nothing after it.
            Rejection::Empty
        });
    }
    let id = headers
        .get(STANDARD_ID)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::Malformed)?;
    let raw_ts = headers
        .get(STANDARD_TIMESTAMP)
        .map(str::trim)
        .ok_or(Rejection::Malformed)?;
    let ts = parse_timestamp(raw_ts).ok_or(Rejection::Malformed)?;
    check_window(ts, now, options.tolerance_seconds)?;
    for key in secrets.standard_keys() {
        let mut mac = new_mac(&key);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(raw_ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        if matches_any(&mac, &signatures) {
            return Ok(Verified {
                scheme: Scheme::StandardWebhooks,
                timestamp: Some(ts),
                webhook_id: Some(id.to_owned()),
            });
        }
    }
    Err(Rejection::Mismatch)
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this never fails, but a failure must not panic either.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| {
        HmacSha256::new_from_slice(&[0u8; 32]).expect("a 32-byte key is always valid")
    })
}

/// Constant-time comparison of every candidate (`verify_slice`); every candidate is checked, so the time
/// taken does not depend on which one matched.
fn matches_any(mac: &HmacSha256, signatures: &[Vec<u8>]) -> bool {
    let mut matched = false;
    for sig in signatures {
        matched |= mac.clone().verify_slice(sig).is_ok();
    }
    matched
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Unix seconds: 1 to 12 ASCII digits (no sign, no fraction, no milliseconds).
fn parse_timestamp(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

fn check_window(ts: i64, now: i64, tolerance: u64) -> Result<(), Rejection> {
    let tolerance = i128::from(tolerance);
    let age = i128::from(now) - i128::from(ts);
    if age > tolerance {
        Err(Rejection::TooOld)
    } else if -age > tolerance {
        Err(Rejection::InFuture)
    } else {
        Ok(())
    }
}

/// `sha256=<hex>` for `X-Reltio-Signature`: over `body`, or over `<timestamp>.<body>` when a timestamp (the
/// value sent in `X-Reltio-Timestamp`) is given.
pub fn sign_reltio(secret: &str, timestamp: Option<i64>, body: &[u8]) -> String {
    let mut mac = new_mac(secret.trim().as_bytes());
    if let Some(ts) = timestamp {
        mac.update(ts.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `v1,<base64>` for `webhook-signature`, over `<id>.<timestamp>.<body>`. `None` when a `whsec_` secret's
/// remainder is not base64.
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = standard_key(secret.trim())?;
    let mut mac = new_mac(&key);
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests;
