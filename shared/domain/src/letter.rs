//! The dead letter: one typed format for every function and event source, written by the batch runner and read
//! back by the operator CLI through the same type.
//!
//! A letter says who gave up on what and why: the function, the reason, how often the input was received, where
//! it came from (a Kinesis record, a Kafka record or a queue message: its coordinates), what the function knew of
//! it (table and crosswalk key, entity, event id) and the input itself — kept as received (JSON verbatim, so a
//! number keeps its digits; else text or base64 of the bytes), or, when it does not fit a dead letter, a pointer
//! to where it is kept with its size and SHA-256: an object in the stack's letter store (`store.rs`), else where
//! the source still holds it.
//!
//! On the wire a letter is one flat JSON object. Field names follow the source, as they always have: a Kinesis
//! letter carries `sequenceNumber`, `partitionKey`, `shardId` and the `record`; a Kafka letter `topic`,
//! `partition`, `offset`, the record's `key` and the `value`; a queue letter `messageId`, `eventId` and the
//! `event`. docs/contract.md lists every field.

use crate::queue::{oversized_stand_in, OutgoingMessage, DEAD_LETTER_MAX_BYTES};
use base64::Engine;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The function that gave up (`cdc-ingest`, `crm-updater`, …).
    pub function: String,
    /// Why, in codes and field names (never values).
    pub reason: String,
    /// How often the input was received (SQS's receive count); `None` where the source does not say.
    pub attempts: Option<u32>,
    /// When the function gave up (RFC 3339).
    pub failed_at: Option<String>,
    pub origin: Origin,
    pub context: LetterContext,
    pub payload: Payload,
}

/// Where the input came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Kinesis record: put back on the stream with its partition key.
    Kinesis {
        stream_arn: Option<String>,
        shard_id: Option<String>,
        sequence_number: String,
        partition_key: String,
    },
    /// A Kafka record: put back on its topic with its key.
    Kafka {
        topic: String,
        partition: i64,
        offset: i64,
        /// The record's timestamp (epoch ms) as Lambda gave it.
        timestamp: Option<i64>,
        key: Option<Vec<u8>>,
    },
    /// A queue message: put back on its queue.
    Queue { message_id: String },
}

/// What the function knew of the input when it gave up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LetterContext {
    /// The source table (`schema.table`).
    pub table: Option<String>,
    /// The crosswalk value of the row's key, whenever the key decoded.
    pub key: Option<String>,
    pub entity_uri: Option<String>,
    /// The Reltio event's id.
    pub event_id: Option<String>,
}

/// The input itself, or where it is kept.
#[derive(Debug, Clone)]
pub enum Payload {
    /// JSON, verbatim.
    Json(Box<RawValue>),
    /// Text that is not JSON.
    Text(String),
    /// Bytes that are not UTF-8 text (base64 on the wire).
    Bytes(Vec<u8>),
    /// Too large for a dead letter: where to fetch it, and (queued events) the event in Reltio's own large-event
    /// form, which a redrive puts back (the consumer fetches the entity).
    Omitted {
        pointer: Pointer,
        stand_in: Option<Box<RawValue>>,
    },
    /// The input had no payload (a Kafka tombstone).
    Empty,
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        use Payload::*;
        match (self, other) {
            (Json(a), Json(b)) => a.get() == b.get(),
            (Text(a), Text(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (
                Omitted {
                    pointer: a,
                    stand_in: x,
                },
                Omitted {
                    pointer: b,
                    stand_in: y,
                },
            ) => a == b && x.as_ref().map(|r| r.get()) == y.as_ref().map(|r| r.get()),
            (Empty, Empty) => true,
            _ => false,
        }
    }
}

/// Where a payload too large for its letter is kept: its size and SHA-256 (to check what is fetched), and
/// either an object in the stack's letter store or a description of where the source still holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pointer {
    pub bytes: usize,
    pub sha256: String,
    /// The letter store's bucket and key, when the payload was stored there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where the source keeps it (e.g. the stream, while within its retention), when not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Payload {
    /// The payload as received: JSON kept verbatim, else text, else bytes.
    pub fn of(bytes: &[u8]) -> Payload {
        if bytes.is_empty() {
            return Payload::Empty;
        }
        match std::str::from_utf8(bytes) {
            // Only JSON that stays byte for byte what it was (no surrounding whitespace to trim) is embedded.
            Ok(text) => match RawValue::from_string(text.to_owned()) {
                Ok(raw) if raw.get().len() == text.len() => Payload::Json(raw),
                _ => Payload::Text(text.to_owned()),
            },
            Err(_) => Payload::Bytes(bytes.to_vec()),
        }
    }

    /// The bytes as received, when the letter holds them (a redrive puts back exactly these).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Payload::Json(raw) => Some(raw.get().as_bytes().to_vec()),
            Payload::Text(t) => Some(t.as_bytes().to_vec()),
            Payload::Bytes(b) => Some(b.clone()),
            Payload::Omitted { .. } | Payload::Empty => None,
        }
    }
}

impl Pointer {
    /// A pointer to `payload` kept where `fetch` says.
    pub fn to_source(payload: &[u8], fetch: &str) -> Pointer {
        Pointer {
            bytes: payload.len(),
            sha256: hex::encode(Sha256::digest(payload)),
            bucket: None,
            key: None,
            fetch: Some(fetch.to_owned()),
            reason: Some(format!(
                "too large for a dead letter ({DEAD_LETTER_MAX_BYTES} bytes at most)"
            )),
        }
    }
}

impl Origin {
    /// The wire name of the payload field: `record` (Kinesis), `value` (Kafka), `event` (queue).
    fn payload_field(&self) -> &'static str {
        match self {
            Origin::Kinesis { .. } => "record",
            Origin::Kafka { .. } => "value",
            Origin::Queue { .. } => "event",
        }
    }

    /// Where the source still holds an input left out of its letter.
    fn fetch_hint(&self) -> &'static str {
        match self {
            Origin::Kinesis { .. } => {
                "the stream: GetShardIterator AT_SEQUENCE_NUMBER sequenceNumber in shardId, while within the \
                 stream's retention"
            }
            Origin::Kafka { .. } => {
                "the topic: this partition at this offset, while within the topic's retention"
            }
            Origin::Queue { .. } => "Reltio: the entity is fetched by its URI when `event` is redriven",
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Serialize for DeadLetter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("function", &self.function)?;
        m.serialize_entry("reason", &self.reason)?;
        if let Some(a) = self.attempts {
            m.serialize_entry("attempts", &a)?;
        }
        if let Some(t) = &self.failed_at {
            m.serialize_entry("failedAt", t)?;
        }
        let c = &self.context;
        if let Some(t) = &c.table {
            m.serialize_entry("table", t)?;
        }
        match &self.origin {
            Origin::Kinesis {
                stream_arn,
                shard_id,
                sequence_number,
                partition_key,
            } => {
                m.serialize_entry("sequenceNumber", sequence_number)?;
                m.serialize_entry("partitionKey", partition_key)?;
                m.serialize_entry("shardId", shard_id)?;
                m.serialize_entry("eventSourceArn", stream_arn)?;
                m.serialize_entry("key", &c.key)?;
            }
            Origin::Kafka {
                topic,
                partition,
                offset,
                timestamp,
                key,
            } => {
                m.serialize_entry("topic", topic)?;
                m.serialize_entry("partition", partition)?;
                m.serialize_entry("offset", offset)?;
                m.serialize_entry("timestamp", timestamp)?;
                match key.as_deref().map(std::str::from_utf8) {
                    None => m.serialize_entry("key", &None::<&str>)?,
                    Some(Ok(text)) => m.serialize_entry("key", text)?,
                    Some(Err(_)) => {
                        m.serialize_entry("keyBase64", &b64(key.as_deref().unwrap_or_default()))?
                    }
                }
                if c.key.is_some() || c.table.is_some() {
                    m.serialize_entry("crosswalkValue", &c.key)?;
                }
            }
            Origin::Queue { message_id } => {
                m.serialize_entry("messageId", message_id)?;
            }
        }
        if let Some(e) = &c.event_id {
            m.serialize_entry("eventId", e)?;
        }
        if c.entity_uri.is_some() || matches!(self.origin, Origin::Queue { .. }) {
            m.serialize_entry("entityUri", &c.entity_uri)?;
        }
        let field = self.origin.payload_field();
        match &self.payload {
            Payload::Json(raw) => m.serialize_entry(field, raw)?,
            // A queue body is text: a redrive sends the same text back.
            Payload::Text(t) if matches!(self.origin, Origin::Queue { .. }) => {
                m.serialize_entry(field, t)?
            }
            Payload::Text(t) => m.serialize_entry(&format!("{field}Base64"), &b64(t.as_bytes()))?,
            Payload::Bytes(b) => m.serialize_entry(&format!("{field}Base64"), &b64(b))?,
            Payload::Omitted { pointer, stand_in } => {
                m.serialize_entry(&format!("{field}Omitted"), pointer)?;
                if let Some(s) = stand_in {
                    m.serialize_entry(field, s)?;
                } else if matches!(self.origin, Origin::Queue { .. }) {
                    m.serialize_entry(field, &None::<()>)?;
                }
            }
            Payload::Empty => {}
        }
        m.end()
    }
}

/// The flat wire form, every field optional (letters written by earlier versions read too).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    function: Option<String>,
    reason: Option<String>,
    attempts: Option<u32>,
    failed_at: Option<String>,
    table: Option<String>,
    // Kinesis
    sequence_number: Option<String>,
    partition_key: Option<String>,
    shard_id: Option<String>,
    event_source_arn: Option<String>,
    // Kafka
    topic: Option<String>,
    partition: Option<i64>,
    offset: Option<i64>,
    timestamp: Option<i64>,
    key_base64: Option<String>,
    crosswalk_value: Option<String>,
    // Kinesis: the crosswalk value; Kafka: the record's key (text).
    key: Option<String>,
    // Queue
    message_id: Option<String>,
    event_id: Option<String>,
    entity_uri: Option<String>,
    // Payloads
    record: Option<Box<RawValue>>,
    record_base64: Option<String>,
    record_omitted: Option<Pointer>,
    value: Option<Box<RawValue>>,
    value_base64: Option<String>,
    value_omitted: Option<Pointer>,
    event: Option<Box<RawValue>>,
    event_omitted: Option<Pointer>,
}

/// Why a message could not be read as a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LetterError {
    #[error("the message is not a JSON object: {0}")]
    NotJson(String),
    #[error("a dead letter without {0}")]
    Missing(&'static str),
}

impl DeadLetter {
    /// Reads a dead letter's message body.
    pub fn parse(body: &str) -> Result<DeadLetter, LetterError> {
        let w: Wire = serde_json::from_str(body).map_err(|e| {
            LetterError::NotJson(format!("line {} column {}", e.line(), e.column()))
        })?;
        let decode = |s: Option<String>| {
            s.and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        };
        let (origin, key, raw, base64, omitted) = if let Some(topic) = w.topic {
            let (Some(partition), Some(offset)) = (w.partition, w.offset) else {
                return Err(LetterError::Missing("partition and offset"));
            };
            let record_key = w.key.map(String::into_bytes).or(decode(w.key_base64));
            let origin = Origin::Kafka {
                topic,
                partition,
                offset,
                timestamp: w.timestamp,
                key: record_key,
            };
            (
                origin,
                w.crosswalk_value,
                w.value,
                w.value_base64,
                w.value_omitted,
            )
        } else if let Some(partition_key) = w.partition_key {
            let origin = Origin::Kinesis {
                stream_arn: w.event_source_arn,
                // Letters of earlier versions named the shard only in Lambda's event id, `shardId-…:seq`.
                shard_id: w.shard_id.or_else(|| {
                    w.event_id
                        .as_deref()
                        .and_then(|id| id.split_once(':'))
                        .map(|(s, _)| s.to_owned())
                }),
                sequence_number: w.sequence_number.unwrap_or_default(),
                partition_key,
            };
            (origin, w.key, w.record, w.record_base64, w.record_omitted)
        } else if let Some(message_id) = w.message_id.or(w.event_id.clone()) {
            (
                Origin::Queue { message_id },
                None,
                w.event,
                None,
                w.event_omitted,
            )
        } else {
            return Err(LetterError::Missing(
                "its origin (partitionKey, topic or messageId)",
            ));
        };
        let queue = matches!(origin, Origin::Queue { .. });
        let payload = match (omitted, raw, decode(base64)) {
            (Some(pointer), stand_in, _) => Payload::Omitted {
                pointer,
                stand_in: stand_in.filter(|s| s.get() != "null"),
            },
            (None, Some(raw), _) if raw.get() == "null" => Payload::Empty,
            // A queue body that was no JSON is kept as a JSON string: the text itself.
            (None, Some(raw), _) if queue && raw.get().starts_with('"') => {
                match serde_json::from_str::<String>(raw.get()) {
                    Ok(text) => Payload::Text(text),
                    Err(_) => Payload::Json(raw),
                }
            }
            (None, Some(raw), _) => Payload::Json(raw),
            (None, None, Some(bytes)) => Payload::of(&bytes),
            (None, None, None) => Payload::Empty,
        };
        let event_id = if matches!(origin, Origin::Kinesis { .. }) {
            None
        } else {
            w.event_id
        };
        Ok(DeadLetter {
            function: w.function.unwrap_or_default(),
            reason: w.reason.unwrap_or_default(),
            attempts: w.attempts,
            failed_at: w.failed_at,
            origin,
            context: LetterContext {
                table: w.table,
                key,
                entity_uri: w.entity_uri,
                event_id,
            },
            payload,
        })
    }

    /// The letter as a dead-letter queue message, within [`DEAD_LETTER_MAX_BYTES`]: a payload that does not fit
    /// is replaced by a pointer to where its source holds it (a queued event keeps Reltio's own large-event form,
    /// which a redrive can put back). Attributes: `function`, and `table`, `topic` or `eventId` when known. On a
    /// FIFO queue the group is the entity (else the function) and the deduplication id is the input's.
    pub fn to_message(&self, fifo: bool) -> OutgoingMessage {
        let mut message = self.whole_message(fifo);
        if message.size() > DEAD_LETTER_MAX_BYTES {
            message.body = self.with_payload_left_out().to_json();
        }
        message
    }

    /// Whether the letter fits a dead-letter queue message with its payload as it is.
    pub fn fits(&self, fifo: bool) -> bool {
        self.whole_message(fifo).size() <= DEAD_LETTER_MAX_BYTES
    }

    /// The letter as a message, its payload as it is whatever its size.
    fn whole_message(&self, fifo: bool) -> OutgoingMessage {
        let mut attributes = vec![("function".to_owned(), self.function.clone())];
        if let Some(t) = &self.context.table {
            attributes.push(("table".into(), t.clone()));
        }
        if let Origin::Kafka { topic, .. } = &self.origin {
            attributes.push(("topic".into(), topic.clone()));
        }
        if let Some(e) = &self.context.event_id {
            attributes.push(("eventId".into(), e.clone()));
        }
        OutgoingMessage {
            body: self.to_json(),
            attributes,
            group_id: fifo.then(|| {
                self.context
                    .entity_uri
                    .clone()
                    .unwrap_or_else(|| self.function.clone())
            }),
            dedup_id: fifo.then(|| self.dedup_id()),
        }
    }

    /// The same letter with its payload replaced by a pointer to where the source holds it (a payload already
    /// left out keeps its pointer and loses its stand-in).
    pub fn with_payload_left_out(&self) -> DeadLetter {
        let payload = match &self.payload {
            Payload::Omitted { pointer, .. } => Payload::Omitted {
                pointer: pointer.clone(),
                stand_in: None,
            },
            _ => Payload::Omitted {
                pointer: Pointer::to_source(
                    &self.payload.bytes().unwrap_or_default(),
                    self.origin.fetch_hint(),
                ),
                stand_in: self.stand_in(),
            },
        };
        self.with_payload(payload)
    }

    /// The same letter with another payload (the payload it had is not copied: it may be a megabyte).
    pub(crate) fn with_payload(&self, payload: Payload) -> DeadLetter {
        DeadLetter {
            function: self.function.clone(),
            reason: self.reason.clone(),
            attempts: self.attempts,
            failed_at: self.failed_at.clone(),
            origin: self.origin.clone(),
            context: self.context.clone(),
            payload,
        }
    }

    /// For a queued event, Reltio's own large-event form of it (the consumers fetch the entity), when it fits a
    /// letter: what a redrive puts back when the event itself is not at hand.
    fn stand_in(&self) -> Option<Box<RawValue>> {
        match (&self.origin, &self.payload) {
            (Origin::Queue { .. }, Payload::Json(raw)) => {
                let whole = OutgoingMessage {
                    body: raw.get().to_owned(),
                    ..OutgoingMessage::default()
                };
                oversized_stand_in(&whole, DEAD_LETTER_MAX_BYTES)
                    .and_then(|m| RawValue::from_string(m.body).ok())
            }
            _ => None,
        }
    }

    /// The letter's JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// A FIFO deduplication id that names this input at its source.
    fn dedup_id(&self) -> String {
        let coordinates = match &self.origin {
            Origin::Kinesis {
                shard_id,
                sequence_number,
                ..
            } => format!("{}|{sequence_number}", shard_id.as_deref().unwrap_or("")),
            Origin::Kafka {
                topic,
                partition,
                offset,
                ..
            } => format!("{topic}|{partition}|{offset}"),
            Origin::Queue { message_id } => format!(
                "{}|{message_id}",
                self.context.event_id.as_deref().unwrap_or("")
            ),
        };
        hex::encode(Sha256::digest(coordinates.as_bytes()))
    }
}

mod store;
pub use store::{PayloadObject, StoredPayloadError};

#[cfg(test)]
mod tests;
