//! Reltio's change stream on Kafka: what one record's value holds (one Reltio event or a JSON array of them, as
//! JSON or as Reltio's zipped-base64 JSON), the subscription filter applied to it, and the queue messages it
//! becomes (docs/contract.md, "stream-consumer"). Pure: the stream-consumer function adds the Kafka event,
//! SQS and settlement around it.

use crate::queue::OutgoingMessage;
use crate::webhook::{parse_body, BodyError, Subscription, WebhookEvent};
use std::io::Read;

/// Reltio's message headers, as Kafka record headers (all optional; the event's own fields win).
pub const HEADER_TENANT_ID: &str = "tenantId";
pub const HEADER_EVENT_TYPE: &str = "eventType";
pub const HEADER_SOURCE_OBJECT_URI: &str = "sourceObjectUri";
pub const HEADER_OBJECT_VERSION: &str = "objectVersion";

/// Why a record can never be handed on (a poison record: dead-lettered, then counted as handled). Messages never
/// quote the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record has no value (a tombstone or an empty message)")]
    NoValue,
    #[error("value is neither JSON nor base64 ({0})")]
    NotEncoded(&'static str),
    #[error("value is base64 but not zipped JSON: {0}")]
    NotZippedJson(String),
    #[error("value is larger than {limit} bytes once unzipped")]
    TooLargeUnzipped { limit: usize },
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("event {index} of the record is {bytes} bytes as a queue message, over the {limit}-byte limit")]
    EventTooLarge {
        index: usize,
        bytes: usize,
        limit: usize,
    },
}

/// What one record becomes: the events to enqueue (subscribed) and those the filter left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordPlan {
    pub accepted: Vec<WebhookEvent>,
    pub filtered: Vec<WebhookEvent>,
}

/// How a value is turned into events.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub subscription: Subscription,
    /// Largest queue message one event may become (body and attributes): the event queue's
    /// `MaximumMessageSize`. A larger event could never be sent, so it is poison, not a transient failure.
    pub max_event_bytes: usize,
}

impl StreamSettings {
    /// The most a zipped value may unzip to: a record may hold an array of events, each within the limit.
    pub fn max_unzipped_bytes(&self) -> usize {
        self.max_event_bytes.saturating_mul(16)
    }
}

/// Looks up a record header's value by name (`None` when absent or not UTF-8).
pub trait RecordHeaders {
    fn header(&self, name: &str) -> Option<&str>;
}

impl RecordHeaders for Vec<(&str, &str)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// Plans one record from its (already base64-decoded) value and headers.
///
/// Event ids are the hex SHA-256 of each event's canonical JSON (as for a webhook array): a record delivered twice,
/// or the same event published twice, gives the same id, so FIFO deduplication and the crm-updater's ledger absorb
/// it. When the record holds exactly one event, Reltio's headers fill what its body does not carry (tenant,
/// entity URI, `objectVersion`), so the queue message carries the attributes the crm-updater orders by.
pub fn plan_record(
    value: Option<&[u8]>,
    headers: &dyn RecordHeaders,
    settings: &StreamSettings,
    fifo: bool,
) -> Result<(RecordPlan, Vec<OutgoingMessage>), RecordError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(RecordError::NoValue)?;
    let json = payload_json(value, settings.max_unzipped_bytes())?;
    let mut events = parse_body(&json, None)?;
    if let [event] = events.as_mut_slice() {
        fill_from_headers(event, headers);
    }
    let (accepted, filtered): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| settings.subscription.matches(e));
    let mut messages = Vec::with_capacity(accepted.len());
    for (index, event) in accepted.iter().enumerate() {
        let message = event.to_message(fifo);
        let bytes = message.size();
        if bytes > settings.max_event_bytes {
            return Err(RecordError::EventTooLarge {
                index,
                bytes,
                limit: settings.max_event_bytes,
            });
        }
        messages.push(message);
    }
    Ok((RecordPlan { accepted, filtered }, messages))
}

fn fill_from_headers(event: &mut WebhookEvent, headers: &dyn RecordHeaders) {
    let from = |name| {
        headers
            .header(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if event.tenant_id.is_none() {
        event.tenant_id = from(HEADER_TENANT_ID);
    }
    if event.entity_uri.is_none() {
        event.entity_uri = from(HEADER_SOURCE_OBJECT_URI);
    }
    if event.object_version.is_none() {
        event.object_version = from(HEADER_OBJECT_VERSION);
    }
}

/// The value's JSON: as it is when it is JSON (after optional whitespace and byte-order mark), else Reltio's
/// `JSON_ZIP_BASE64` payload: base64 of compressed JSON. gzip and zlib are recognised by their headers; anything
/// else is tried as raw deflate. What Reltio's zip is exactly is not documented beyond its name, so all three are
/// taken, and a result that is not JSON is refused with a reason rather than guessed at.
pub fn payload_json(
    value: &[u8],
    max_unzipped: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, RecordError> {
    let text = value
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(value)
        .trim_ascii();
    if text.first().is_some_and(|b| matches!(b, b'{' | b'[')) {
        return Ok(std::borrow::Cow::Borrowed(value));
    }
    if text.is_empty() {
        return Err(RecordError::NoValue);
    }
    // gzip bytes without the base64 (a producer compressing the value itself) are read too.
    let zipped = if value.starts_with(&[0x1f, 0x8b]) {
        value.to_vec()
    } else {
        base64_of(text)?
    };
    let json = unzip(&zipped, max_unzipped)?;
    let start = json.trim_ascii();
    if !start.first().is_some_and(|b| matches!(b, b'{' | b'[')) {
        return Err(RecordError::NotZippedJson(
            "unzipped content is not a JSON object or array".into(),
        ));
    }
    Ok(std::borrow::Cow::Owned(json))
}

fn base64_of(text: &[u8]) -> Result<Vec<u8>, RecordError> {
    use base64::Engine;
    // Line-wrapped base64 (MIME style) is still base64; spaces are not.
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| RecordError::NotEncoded("not JSON, and not base64 either"))
}

fn unzip(data: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
    let is_zlib = data.len() >= 2
        && data[0] & 0x0f == 8
        && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
    let reader: Box<dyn Read + '_> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(GzDecoder::new(data))
    } else if is_zlib {
        Box::new(ZlibDecoder::new(data))
    } else if data.starts_with(b"PK\x03\x04") {
        return Err(RecordError::NotZippedJson(
            "a zip archive; only gzip, zlib and deflate streams are read".into(),
        ));
    } else {
        Box::new(DeflateDecoder::new(data))
    };
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it" without unzipping a bomb in full.
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordError::NotZippedJson(e.kind().to_string()))?;
    if out.len() > limit {
        return Err(RecordError::TooLargeUnzipped { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
