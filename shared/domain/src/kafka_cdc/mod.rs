//! CDC change events that arrive on Kafka — Debezium's change-event envelope and Oracle GoldenGate's Kafka
//! handler JSON — decoded to the same change model as AWS DMS records ([`DmsRecord`]), so that the mapping,
//! transform, ordering and key ledger of the DMS path apply to them unchanged. Pure; formats from the tools'
//! public documentation (docs/reference.md).

mod debezium;
mod goldengate;
mod temporal;

pub use debezium::decode as decode_debezium;
pub use goldengate::decode as decode_goldengate;

use crate::dms::{DmsError, DmsRecord, TableName};
use crate::outcome::SkipReason;

/// The format of a topic's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeFormat {
    Dms,
    Debezium,
    Goldengate,
}

/// What one Kafka message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A row change, in the DMS model.
    Row(Box<DmsRecord<'static>>),
    /// Deliberately not applied, with a short reason code (a tombstone after a delete, the delete half of a
    /// Debezium primary-key change whose create half carries the change, a truncate).
    Skip(SkipReason, Option<TableName>),
}

/// A Kafka message as the decoders see it: key and value bytes (value `None` for a tombstone) and a header lookup
/// (headers are a few bytes: the lookup hands out a copy).
pub struct Message<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub header: &'a dyn Fn(&str) -> Option<Vec<u8>>,
}

/// Decodes one message of `format` (`Dms` takes the value as a DMS record, with `before_image_field`).
pub fn decode(
    format: ChangeFormat,
    message: &Message<'_>,
    before_image_field: &str,
) -> Result<Change, DmsError> {
    match format {
        ChangeFormat::Dms => {
            let value = message
                .value
                .ok_or_else(|| DmsError::WrongShape("message has no value".into()))?;
            let record = DmsRecord::parse(value, before_image_field)?;
            Ok(Change::Row(Box::new(owned(record))))
        }
        ChangeFormat::Debezium => decode_debezium(message),
        ChangeFormat::Goldengate => decode_goldengate(message),
    }
}

/// The format of a message whose topic the mapping does not name, from its top-level fields: DMS's `metadata` and
/// `data`, GoldenGate's `op_type`, Debezium's `op` (or the JSON converter's `schema`/`payload` wrapper). A null
/// value is a Debezium tombstone (the only one of the three that sends them). `None`: none of them.
pub fn detect(value: Option<&[u8]>) -> Option<ChangeFormat> {
    let Some(value) = value else {
        return Some(ChangeFormat::Debezium);
    };
    let fields = serde_json::from_slice::<TopFields>(value).ok()?.0;
    let has = |name: &str| fields.iter().any(|f| f == name);
    if has("metadata") && has("data") {
        Some(ChangeFormat::Dms)
    } else if has("op_type") {
        Some(ChangeFormat::Goldengate)
    } else if has("op") || (has("schema") && has("payload")) {
        Some(ChangeFormat::Debezium)
    } else {
        None
    }
}

/// The names of a JSON object's fields, their values skipped unread.
struct TopFields(Vec<String>);

impl<'de> serde::Deserialize<'de> for TopFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = TopFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TopFields, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    names.push(name);
                }
                Ok(TopFields(names))
            }
        }
        d.deserialize_map(Names)
    }
}

/// A record that no longer borrows from the bytes it was parsed from.
fn owned(record: DmsRecord<'_>) -> DmsRecord<'static> {
    use std::borrow::Cow;
    let own = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
    DmsRecord {
        kind: record.kind,
        table: record.table,
        data: record.data.into_owned(),
        before_image: record.before_image.map(|r| r.into_owned()),
        timestamp: own(record.timestamp),
        commit_timestamp: own(record.commit_timestamp),
        stream_position: own(record.stream_position),
        transaction_id: own(record.transaction_id),
        transaction_record_id: own(record.transaction_record_id),
        partition_key_value: own(record.partition_key_value),
    }
}

fn shape(reason: impl Into<String>) -> DmsError {
    DmsError::WrongShape(reason.into())
}

/// The JSON of a message part, or why it is not JSON (position only: serde's message may quote the value).
fn json(bytes: &[u8], what: &str) -> Result<serde_json::Value, DmsError> {
    serde_json::from_slice(bytes).map_err(|e| {
        DmsError::NotJson(format!(
            "{what}: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Microseconds since the epoch as DMS writes commit timestamps (`2024-07-29T00:58:17.983670Z`).
fn dms_time(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

#[cfg(test)]
mod tests;
