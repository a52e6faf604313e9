//! Debezium's change-event envelope (`before`, `after`, `source`, `op`, `ts_ms`), with or without the JSON
//! converter's `schema`/`payload` wrapper, to the DMS change model.
//!
//! With schemas on, columns of Debezium's logical types (Connect `Decimal`, `VariableScaleDecimal`, dates, times and
//! timestamps as epoch numbers) are rendered as DMS renders them (decimal text, ISO dates and times). Without schemas
//! those values cannot be told from plain numbers: run the connector with `decimal.handling.mode=string` and
//! `time.precision.mode=connect`, or with schemas on.

use super::temporal::{self, FieldTypes};
use super::{dms_time, json, shape, Change, Fields, Message};
use crate::dms::{
    row_of_json, Cell, DataOperation, DmsError, DmsRecord, Image, RecordKind, Row, Slot, TableName,
};
use crate::outcome::SkipReason;
use base64::Engine;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Header Debezium puts on the delete half of a primary-key change (names the new key).
pub const NEW_KEY_HEADER: &str = "__debezium.newkey";
/// Header Debezium puts on the create half of a primary-key change (names the old key).
pub const OLD_KEY_HEADER: &str = "__debezium.oldkey";

/// `unavailable_value`: the connector's `unavailable.value.placeholder`. A column holding it did not change (an
/// unchanged TOASTed PostgreSQL column, an Oracle LOB): it is left out of the row, which is then a partial image.
pub fn decode(m: &Message<'_>, unavailable_value: &str) -> Result<Change, DmsError> {
    let Some(value) = m.value else {
        return Ok(Change::Skip(SkipReason::Tombstone, None));
    };
    let (schema, payload) = unwrap(json(value, "value")?)?;
    if payload.get() == "null" {
        return Ok(Change::Skip(SkipReason::Tombstone, None));
    }
    let Some(envelope) = Fields::of(payload)? else {
        return Err(shape(
            "value is not a Debezium change event (not an object)",
        ));
    };
    let op = match envelope.tree("op") {
        Some(Value::String(op)) => op,
        _ => return Err(shape("not a Debezium change event: no \"op\"")),
    };
    let source = match envelope.tree("source") {
        Some(Value::Object(s)) => s,
        _ => return Err(shape("Debezium change event has no \"source\" object")),
    };
    let table = table_of(&source)?;
    let kind = match op.as_str() {
        "c" => DataOperation::Insert,
        "r" => DataOperation::Load,
        "u" => DataOperation::Update,
        "d" => DataOperation::Delete,
        "t" => return Ok(Change::Skip(SkipReason::Truncate, Some(table))),
        "m" => {
            return Err(shape(
                "Debezium logical-decoding message events carry no row",
            ))
        }
        other => return Err(shape(format!("unknown Debezium op \"{other}\""))),
    };
    if kind == DataOperation::Delete && (m.header)(NEW_KEY_HEADER).is_some() {
        // The create half, which carries the old key, applies the whole primary-key change.
        return Ok(Change::Skip(SkipReason::KeyChangeDelete, Some(table)));
    }
    let types = schema
        .as_ref()
        .map(FieldTypes::of_envelope)
        .unwrap_or_default();
    let placeholder = Placeholder::of(unavailable_value);
    let mut unavailable = false;
    let mut row = |name: &str| -> Result<Option<Row<'static>>, DmsError> {
        let Some(row) = envelope.row(name, "Debezium")? else {
            return Ok(None);
        };
        let (row, left_out) = columns(row, types.row(name), Some(&placeholder))?;
        unavailable |= left_out;
        Ok(Some(row))
    };
    let key = match m.key {
        Some(k) => key_row(k)?,
        None => None,
    };
    let (data, mut before_image) = match kind {
        DataOperation::Insert | DataOperation::Load => (row("after")?, None),
        DataOperation::Update => (row("after")?, row("before")?),
        DataOperation::Delete => (row("before")?, None),
    };
    // A delete under PostgreSQL's default replica identity carries only the key in `before`, or nothing: the
    // message key then names the row. Any other change must carry its row: one made of the key alone would write
    // a row the source does not have (and bring a deleted key back).
    let data = match data {
        None if kind == DataOperation::Delete && key.is_some() => Some(Row::default()),
        data => data,
    };
    let Some(mut data) = data else {
        let image = if kind == DataOperation::Delete {
            "before"
        } else {
            "after"
        };
        return Err(shape(format!(
            "Debezium op \"{op}\" without the row it changes (no \"{image}\")"
        )));
    };
    if let Some(key) = &key {
        for (column, cell) in key.columns() {
            if data.get(column).is_none() {
                data.set(column.to_owned(), cell.clone().into_owned());
            }
        }
    }
    // An update holds every column but those Debezium could not read; a create or a snapshot read is the whole
    // row.
    let image = if kind == DataOperation::Update || unavailable {
        Image::Changes
    } else {
        Image::Whole
    };
    let mut kind = kind;
    if kind == DataOperation::Insert {
        if let Some(old) = (m.header)(OLD_KEY_HEADER) {
            // The create half of a primary-key change: an update from the old key, as DMS sends one.
            kind = DataOperation::Update;
            before_image = Some(
                key_row(&old)?
                    .ok_or_else(|| shape("__debezium.oldkey header is not a key object"))?,
            );
        }
    }
    let (position, ordinal) = position(&source);
    Ok(Change::Row(Box::new(DmsRecord {
        kind: RecordKind::Data(kind),
        table,
        data,
        image,
        before_image,
        timestamp: envelope
            .tree("ts_ms")
            .as_ref()
            .and_then(Value::as_i64)
            .and_then(|ms| dms_time(ms.saturating_mul(1000)))
            .map(Cow::Owned),
        commit_timestamp: commit_micros(&source).and_then(dms_time).map(Cow::Owned),
        stream_position: position.map(Cow::Owned),
        transaction_id: text(source.get("txId"))
            .or_else(|| envelope.tree("transaction").and_then(|t| text(t.get("id"))))
            .map(Cow::Owned),
        transaction_record_id: ordinal.map(|o| Cow::Owned(o.to_string())),
        partition_key_value: None,
    })))
}

/// The JSON converter with schemas on wraps every message as `{"schema": …, "payload": …}`: the schema (a tree:
/// names and parameters) and the payload's text.
fn unwrap(value: &RawValue) -> Result<(Option<Value>, &RawValue), DmsError> {
    if let Some(fields) = Fields::of(value)? {
        if let (2, Some(schema), Some(payload)) = (
            fields.0.len(),
            fields.0.get("schema"),
            fields.0.get("payload"),
        ) {
            return Ok((serde_json::from_str(schema.get()).ok(), payload));
        }
    }
    Ok((None, value))
}

/// The message key as a row (Debezium's key is the primary key's columns), or `None` for a null key.
fn key_row(bytes: &[u8]) -> Result<Option<Row<'static>>, DmsError> {
    let (schema, payload) = unwrap(json(bytes, "key")?)?;
    if payload.get() == "null" {
        return Ok(None);
    }
    let Ok(Slot::Found(row)) = row_of_json(payload.get()) else {
        return Err(shape("Debezium key is not an object of key columns"));
    };
    let types = schema
        .as_ref()
        .map(FieldTypes::of_struct)
        .unwrap_or_default();
    Ok(Some(columns(row, &types, None)?.0))
}

/// The row with its logical-typed columns rendered and the columns holding `placeholder` left out; whether any
/// was.
fn columns(
    row: Row<'_>,
    types: &temporal::Columns,
    placeholder: Option<&Placeholder>,
) -> Result<(Row<'static>, bool), DmsError> {
    let mut out = Row::default();
    let mut left_out = false;
    for (column, cell) in row.into_columns() {
        if placeholder.is_some_and(|p| p.is(&cell)) {
            left_out = true;
            continue;
        }
        let cell = match types.get(column.as_ref()) {
            Some(logical) => temporal::render(cell, logical)
                .map_err(|reason| shape(format!("column \"{column}\": {reason}")))?,
            None => cell.into_owned(),
        };
        out.push(Cow::Owned(column.into_owned()), cell);
    }
    Ok((out, left_out))
}

/// The connector's placeholder for a value it could not read, as it appears in each kind of column: the text
/// itself in a string column, its bytes base64-encoded (the JSON converter's form of bytes) or hex-encoded
/// (`binary.handling.mode=hex`) in a bytes column, an array of it in an array column.
struct Placeholder {
    text: String,
    base64: String,
    hex: String,
}

impl Placeholder {
    fn of(text: &str) -> Placeholder {
        Placeholder {
            text: text.to_owned(),
            base64: base64::engine::general_purpose::STANDARD.encode(text),
            hex: text.bytes().map(|b| format!("{b:02x}")).collect(),
        }
    }

    fn is(&self, cell: &Cell) -> bool {
        match cell {
            Cell::Text(t) => *t == self.text || *t == self.base64 || *t == self.hex,
            Cell::Json(json) if json.starts_with('[') && json.contains(self.text.as_str()) => {
                serde_json::from_str::<Vec<Value>>(json).is_ok_and(|items| {
                    !items.is_empty() && items.iter().all(|i| i.as_str() == Some(&self.text))
                })
            }
            _ => false,
        }
    }
}

/// `source.schema` (PostgreSQL, SQL Server, Oracle) else `source.db` (MySQL's database is its schema).
fn table_of(source: &Map<String, Value>) -> Result<TableName, DmsError> {
    let table = text(source.get("table"))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| shape("Debezium source has no \"table\""))?;
    let schema = text(source.get("schema"))
        .filter(|s| !s.is_empty())
        .or_else(|| text(source.get("db")))
        .unwrap_or_default();
    Ok(TableName { schema, table })
}

/// The change's commit time in the source database: `source.ts_us` (Debezium 2.6+) else `source.ts_ms`.
fn commit_micros(source: &Map<String, Value>) -> Option<i64> {
    number(source.get("ts_us"))
        .or_else(|| number(source.get("ts_ms")).map(|ms| ms.saturating_mul(1000)))
}

/// The log position per connector, and a number ordering changes of one commit time: PostgreSQL `lsn`, MySQL
/// `file:pos` (ordered by `pos`, then `row`), Oracle `scn`, SQL Server `change_lsn` (ordered by
/// `event_serial_no`).
fn position(source: &Map<String, Value>) -> (Option<String>, Option<u64>) {
    let unsigned = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    if let Some(lsn) = unsigned(source.get("lsn")) {
        return (Some(lsn.to_string()), Some(lsn));
    }
    if let (Some(file), Some(pos)) = (text(source.get("file")), unsigned(source.get("pos"))) {
        // `mysql-bin.000042`: the file's number orders positions across a rotation (pos starts again at 4).
        // 22 bits of file number, 42 of pos × 1000 + row (a binlog file stays under 4 GiB).
        let file_number = file
            .rsplit_once('.')
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .unwrap_or(0)
            .min((1 << 22) - 1);
        let row = unsigned(source.get("row")).unwrap_or(0);
        let in_file = pos
            .saturating_mul(1000)
            .saturating_add(row.min(999))
            .min((1 << 42) - 1);
        return (
            Some(format!("{file}:{pos}")),
            Some((file_number << 42) | in_file),
        );
    }
    if let Some(scn) = text(source.get("scn")) {
        return (Some(scn.clone()), scn.parse().ok());
    }
    if let Some(lsn) = text(source.get("change_lsn")) {
        return (Some(lsn), unsigned(source.get("event_serial_no")));
    }
    (None, None)
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: Option<&Value>) -> Option<i64> {
    v?.as_i64()
}
