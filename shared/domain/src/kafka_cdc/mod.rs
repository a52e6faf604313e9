//! CDC change events that arrive on Kafka — Debezium's change-event envelope and Oracle GoldenGate's Kafka
//! handler JSON — decoded to the same change model as AWS DMS records ([`DmsRecord`]), so that the mapping,
//! transform, ordering and key ledger of the DMS path apply to them unchanged. Pure; formats from the tools'
//! public documentation (docs/reference.md). Rows are read as DMS rows are (column values as their JSON text),
//! so numbers keep their digits.

mod debezium;
mod goldengate;
mod temporal;

pub use debezium::decode as decode_debezium;
pub use goldengate::decode as decode_goldengate;

use crate::dms::{row_of_json, DmsError, DmsRecord, Row, Slot, TableName};
use crate::outcome::SkipReason;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// What Debezium puts in place of a value the database did not log (an unchanged TOASTed PostgreSQL column, an
/// Oracle LOB) unless the connector's `unavailable.value.placeholder` says otherwise.
pub const DEFAULT_UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

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

/// How a topic's messages are read besides their format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings<'a> {
    /// The DMS task's `BeforeImageSettings.FieldName` (DMS messages).
    pub before_image_field: &'a str,
    /// The Debezium connector's `unavailable.value.placeholder` (Debezium messages).
    pub unavailable_value: &'a str,
}

/// Decodes one message of `format`.
pub fn decode(
    format: ChangeFormat,
    message: &Message<'_>,
    settings: &Settings<'_>,
) -> Result<Change, DmsError> {
    match format {
        ChangeFormat::Dms => {
            let value = message
                .value
                .ok_or_else(|| DmsError::WrongShape("message has no value".into()))?;
            let record = DmsRecord::parse(value, settings.before_image_field)?;
            Ok(Change::Row(Box::new(owned(record))))
        }
        ChangeFormat::Debezium => decode_debezium(message, settings.unavailable_value),
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
        image: record.image,
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

/// The JSON text of a message part, checked but not parsed, or why it is not JSON (position only: serde's message
/// may quote the value).
fn json<'a>(bytes: &'a [u8], what: &str) -> Result<&'a RawValue, DmsError> {
    serde_json::from_slice(bytes).map_err(|e| {
        DmsError::NotJson(format!(
            "{what}: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// A JSON object's fields, their values as JSON text (a field given twice keeps its last value); `None` when the
/// value is not an object.
struct Fields<'a>(HashMap<String, &'a RawValue>);

impl<'a> Fields<'a> {
    fn of(value: &'a RawValue) -> Result<Option<Fields<'a>>, DmsError> {
        if !value.get().starts_with('{') {
            return Ok(None);
        }
        serde_json::from_str(value.get())
            .map(|fields| Some(Fields(fields)))
            .map_err(|e| DmsError::NotJson(format!("{:?} error", e.classify())))
    }

    /// The field's JSON text; `None` when absent or `null`.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name).copied().filter(|v| v.get() != "null")
    }

    /// The field as a tree (for the small parts whose numbers are positions and times, never column values).
    fn tree(&self, name: &str) -> Option<serde_json::Value> {
        self.get(name)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// The field as text: a string, or a number's digits.
    fn text(&self, name: &str) -> Option<String> {
        match self.tree(name)? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(_) => self.get(name).map(|v| v.get().to_owned()),
            _ => None,
        }
    }

    /// A row field (`before`, `after`): `None` when absent or `null`; an error names the field when it is not an
    /// object.
    fn row(&self, name: &str, format: &str) -> Result<Option<Row<'a>>, DmsError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match row_of_json(value.get()) {
            Ok(Slot::Found(row)) => Ok(Some(row)),
            Ok(Slot::Absent | Slot::Null) => Ok(None),
            Ok(Slot::Wrong) => Err(shape(format!("{format} \"{name}\" is not an object"))),
            Err(e) => Err(DmsError::NotJson(format!(
                "\"{name}\": {:?} error",
                e.classify()
            ))),
        }
    }
}

/// Microseconds since the epoch as DMS writes commit timestamps (`2024-07-29T00:58:17.983670Z`).
fn dms_time(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

#[cfg(test)]
mod tests;
