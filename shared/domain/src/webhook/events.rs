//! The body of a verified webhook: one Reltio event object or a JSON array of them (docs/contract.md,
//! "webhook-receiver"), each becoming one queue message (docs/contract.md, "The event queue between them").
//!
//! Message bodies are the event's bytes exactly as sent (so a native Reltio SQS stream can feed the same
//! queue); ids and group ids are sanitised so SQS never refuses them.

use crate::queue::OutgoingMessage;
use crate::reltio::event::{EntityTypeFilter, EventTypeFilter, ReltioEvent};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// SQS limit for `MessageGroupId` and `MessageDeduplicationId`.
const MAX_SQS_ID_LEN: usize = 128;
/// Longest accepted Reltio event type name.
const MAX_TYPE_LEN: usize = 128;

/// Why a body is not a Reltio event or an array of them (answered with 400). Messages never quote the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is empty")]
    Empty,
    #[error("body is not UTF-8 text")]
    NotUtf8,
    #[error("body is not valid JSON ({0})")]
    InvalidJson(String),
    #[error("body is not a Reltio event or an array of them: {0}")]
    NotAnEvent(String),
    #[error("body holds characters an SQS message cannot carry (U+FFFE or U+FFFF)")]
    Unsendable,
}

/// One accepted event, ready to filter and enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Deduplication id (see [`parse_body`]); at most 128 characters that SQS accepts as an id.
    pub id: String,
    pub event_type: String,
    /// The entity the event is about (`object.uri`, else `uri`, else the first of `uris`).
    pub entity_uri: Option<String>,
    /// `object.type`, e.g. `configuration/entityTypes/Individual`.
    pub entity_type: Option<String>,
    pub tenant_id: Option<String>,
    pub object_version: Option<String>,
    /// The event's JSON exactly as sent.
    pub body: String,
}

/// Parses a verified body. `delivery_id` is the signed `webhook-id` (Standard Webhooks), when the request had
/// one; an unsigned header never is.
///
/// Event ids: a single event object takes `delivery_id`, else the hex SHA-256 of its canonical JSON (keys
/// sorted, no whitespace). Events of an array always take their own canonical hash, so each has its own id
/// and a sender that regroups events on retry still produces the same ids. A `delivery_id` longer than 128
/// characters or holding characters SQS refuses in ids is replaced by its hex SHA-256.
pub fn parse_body(body: &[u8], delivery_id: Option<&str>) -> Result<Vec<WebhookEvent>, BodyError> {
    let (full, text) = body_text(body)?;
    match parse_single(full, text, delivery_id) {
        Some(parsed) => parsed,
        None => parse_tree(full, text, delivery_id),
    }
}

/// Whether a consumer parses `event` as a [`ReltioEvent`]: the same parse, with the snapshot's attributes and
/// crosswalks checked as a `Value` checks them but not built.
#[doc(hidden)]
pub fn check_readable(event: &str) -> serde_json::Result<()> {
    serde_json::from_str::<ReltioEvent<Checked>>(event).map(drop)
}

/// The body as text (`full`, without a byte-order mark) and its JSON (`text`, without JSON's own whitespace
/// around it: a body wrapped in other Unicode spaces, U+00A0 or U+2028, is not JSON and no consumer could read
/// it).
fn body_text(body: &[u8]) -> Result<(&str, &str), BodyError> {
    let full = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    let full = full.strip_prefix('\u{feff}').unwrap_or(full);
    let text = full.trim_matches([' ', '\t', '\n', '\r']);
    if text.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok((full, text))
}

/// A body's events, or why it has none.
pub type Parsed = Result<Vec<WebhookEvent>, BodyError>;

/// Both parse paths over the same body, for the property tests: the fast path's answer (when it gives one)
/// and the tree parse's. They must agree.
#[doc(hidden)]
pub fn parse_both_ways(body: &[u8], delivery_id: Option<&str>) -> Option<(Parsed, Parsed)> {
    let (full, text) = body_text(body).ok()?;
    let fast = parse_single(full, text, delivery_id)?;
    Some((fast, parse_tree(full, text, delivery_id)))
}

/// The fast path: a single event object whose id is the delivery id, read as the [`ReltioEvent`] a consumer
/// parses (which is also the readability check), the snapshot checked but not built. `None` at any doubt
/// (not an object, no delivery id, a parse or type error, a type name to refuse): [`parse_tree`] then decides and
/// gives the exact error. Whenever it answers, it answers as [`parse_tree`].
fn parse_single(
    full: &str,
    text: &str,
    delivery_id: Option<&str>,
) -> Option<Result<Vec<WebhookEvent>, BodyError>> {
    let id = delivery_id.map(str::trim).filter(|d| !d.is_empty())?;
    if !text.starts_with('{') {
        return None;
    }
    // Two passes, neither building a tree: the whole text checked as a `Value` checks it (the derive only skips
    // the fields it does not read, e.g. a lone surrogate escape there), then the envelope.
    serde_json::from_str::<Checked>(text).ok()?;
    let envelope: ReltioEvent<Checked> = serde_json::from_str(text).ok()?;
    if text.contains(['\u{fffe}', '\u{ffff}']) {
        return Some(Err(BodyError::Unsendable));
    }
    if !is_event_type_name(&envelope.event_type) {
        return None;
    }
    Some(Ok(vec![webhook_event(envelope, full, sqs_id(id))]))
}

/// The general path: the body as a `Value` (arrays need each element's canonical hash).
fn parse_tree(
    full: &str,
    text: &str,
    delivery_id: Option<&str>,
) -> Result<Vec<WebhookEvent>, BodyError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // Category and position only: serde's message can quote the body.
        BodyError::InvalidJson(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if text.contains(['\u{fffe}', '\u{ffff}']) {
        return Err(BodyError::Unsendable);
    }
    let events = match value {
        Value::Object(_) => {
            let id = delivery_id
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(sqs_id)
                .unwrap_or_else(|| content_id(&value));
            Ok(vec![event(&value, full, id).map_err(BodyError::NotAnEvent)?])
        }
        Value::Array(items) => {
            let spans = element_spans(text).filter(|s| s.len() == items.len());
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let raw = match &spans {
                        Some(spans) => spans[i].to_owned(),
                        None => item.to_string(),
                    };
                    event(item, &raw, content_id(item))
                        .map_err(|reason| BodyError::NotAnEvent(format!("element {i}: {reason}")))
                })
                .collect()
        }
        other => Err(BodyError::NotAnEvent(format!(
            "the body is a JSON {}, not an object or array",
            kind(&other)
        ))),
    }?;
    // Accepted means readable downstream: each event must be what the crm-updater parses (found by fuzzing: a
    // repeated key such as two "tenantId" is JSON every tree parser takes, but not a Reltio event).
    for event in &events {
        if let Err(e) = check_readable(&event.body) {
            return Err(BodyError::NotAnEvent(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            )));
        }
    }
    Ok(events)
}

fn event(value: &Value, raw: &str, id: String) -> Result<WebhookEvent, String> {
    let Value::Object(map) = value else {
        return Err(format!("a JSON {}, not an object", kind(value)));
    };
    let event_type = match map.get("type") {
        Some(Value::String(t)) => t,
        Some(_) => return Err("\"type\" is not a string".into()),
        None => return Err("no \"type\"".into()),
    };
    if !is_event_type_name(event_type) {
        return Err("\"type\" is not a Reltio event type name".into());
    }
    let envelope = ReltioEvent::<Checked>::deserialize(value).map_err(|_| {
        "envelope fields (object, uris, uri, tenantId, updatedTime) have unexpected types"
            .to_owned()
    })?;
    Ok(webhook_event(envelope, raw, id))
}

/// The event to enqueue, from its envelope (empty strings count as absent).
fn webhook_event<A>(envelope: ReltioEvent<A>, raw: &str, id: String) -> WebhookEvent {
    WebhookEvent {
        id,
        entity_uri: envelope
            .entity_uri()
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
        entity_type: envelope
            .entity_type()
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        object_version: envelope.object_version().filter(|v| !v.is_empty()),
        tenant_id: envelope.tenant_id.filter(|t| !t.is_empty()),
        event_type: envelope.event_type,
        body: raw.to_owned(),
    }
}

/// Any JSON value, checked as parsing into a `Value` checks it (serde_json's `deserialize_any`, which parses
/// every string and number and counts nesting) but not kept. Unlike `serde::de::IgnoredAny`, which only skips over
/// text, it refuses what a `Value` refuses (e.g. lone surrogate escapes, numbers out of range).
#[derive(Default)]
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Checked, D::Error> {
        Checked::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while let Some((Checked, Checked)) = map.next_entry::<Checked, Checked>()? {}
        Ok(Checked)
    }
}

/// Reltio event types are upper-case names such as `ENTITY_CHANGED`.
fn is_event_type_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TYPE_LEN
        && t.starts_with(|c: char| c.is_ascii_uppercase())
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl WebhookEvent {
    /// The queue message: body as sent; String attributes `eventType`, `entityType` (the short type, for
    /// subscription filter policies), `tenantId`, `sourceObjectUri` and `objectVersion` when known, `eventId`; on
    /// a FIFO queue `MessageGroupId` = the entity URI (the event id when the event names no entity) and
    /// `MessageDeduplicationId` = the event id.
    pub fn to_message(&self, fifo: bool) -> OutgoingMessage {
        let mut attributes = vec![("eventType".to_owned(), self.event_type.clone())];
        let entity_type = self
            .entity_type
            .as_deref()
            .map(|t| crate::reltio::event::short_type(t).to_owned());
        for (name, value) in [
            ("entityType", &entity_type),
            ("tenantId", &self.tenant_id),
            ("sourceObjectUri", &self.entity_uri),
            ("objectVersion", &self.object_version),
        ] {
            // A value SQS would refuse (empty, or holding a character outside its set, such as a decoded
            // \u0000) is left out: the event itself, in the body, still carries it.
            if let Some(v) = value.as_deref().filter(|v| sqs_attribute_ok(v)) {
                attributes.push((name.to_owned(), v.to_owned()));
            }
        }
        attributes.push(("eventId".to_owned(), self.id.clone()));
        OutgoingMessage {
            body: self.body.clone(),
            attributes,
            group_id: fifo.then(|| {
                self.entity_uri
                    .as_deref()
                    .map(sqs_id)
                    .unwrap_or_else(|| self.id.clone())
            }),
            dedup_id: fifo.then(|| self.id.clone()),
        }
    }
}

/// The subscription filter (`EVENT_TYPES`, `ENTITY_TYPES`): events outside it are acknowledged, not enqueued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub event_types: EventTypeFilter,
    pub entity_types: EntityTypeFilter,
}

impl Subscription {
    /// Events whose entity type is unknown (merge events carry only URIs) pass the entity-type filter.
    pub fn matches(&self, event: &WebhookEvent) -> bool {
        self.event_types.matches(&event.event_type)
            && self.entity_types.matches(event.entity_type.as_deref())
    }
}

/// Whether SQS takes `value` as a String attribute value: not empty, and only the characters its messages may hold
/// (tab, newline, carriage return, U+0020–U+D7FF, U+E000–U+FFFD, U+10000–U+10FFFF).
pub fn sqs_attribute_ok(value: &str) -> bool {
    !value.is_empty()
        && value.chars().all(|c| {
            matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        })
}

/// A value usable as an SQS FIFO id: kept when it is 1–128 characters of SQS's allowed set (alphanumerics
/// and ASCII punctuation), else replaced by its hex SHA-256.
pub fn sqs_id(value: &str) -> String {
    let usable = !value.is_empty()
        && value.len() <= MAX_SQS_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation());
    if usable {
        value.to_owned()
    } else {
        hex::encode(Sha256::digest(value.as_bytes()))
    }
}

/// Hex SHA-256 of the value's canonical JSON.
pub fn content_id(value: &Value) -> String {
    let mut canonical = Vec::with_capacity(1024);
    write_canonical(value, &mut canonical);
    hex::encode(Sha256::digest(&canonical))
}

/// Canonical JSON: object keys sorted, no whitespace; strings and numbers as serde_json writes them.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("writing to a Vec cannot fail");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

/// The exact text of each element of a JSON array (`text` must already be valid JSON). `None` if the text
/// does not look like an array after all; callers then fall back to re-serialising the parsed values.
fn element_spans(text: &str) -> Option<Vec<&str>> {
    let bytes = text.as_bytes();
    let mut i = text.find('[')? + 1;
    let mut spans = Vec::new();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if *bytes.get(i)? == b']' {
            return Some(spans);
        }
        let start = i;
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        while let Some(&c) = bytes.get(i) {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    in_string = false;
                }
            } else {
                match c {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => break,
                    b'}' | b']' => depth -= 1,
                    b',' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        spans.push(text.get(start..i)?.trim_end());
        match bytes.get(i)? {
            b',' => i += 1,
            b']' => return Some(spans),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests;
