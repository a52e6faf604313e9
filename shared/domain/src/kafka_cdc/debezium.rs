//! Debezium's change-event envelope (`before`, `after`, `source`, `op`, `ts_ms`), with or without the JSON
//! converter's `schema`/`payload` wrapper, to the DMS change model.
//!
//! With schemas on, columns of Debezium's logical types (Connect `Decimal`, `VariableScaleDecimal`, dates, times and
//! timestamps as epoch numbers) are rendered as DMS renders them (decimal text, ISO dates and times). Without schemas
//! those values cannot be told from plain numbers: run the connector with `decimal.handling.mode=string` and
//! `time.precision.mode=connect`, or with schemas on.

use super::temporal::{self, FieldTypes};
use super::{dms_time, json, shape, Change, Message};
use crate::dms::{DataOperation, DmsError, DmsRecord, RecordKind, Row, TableName};
use crate::outcome::SkipReason;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Header Debezium puts on the delete half of a primary-key change (names the new key).
pub const NEW_KEY_HEADER: &str = "__debezium.newkey";
/// Header Debezium puts on the create half of a primary-key change (names the old key).
pub const OLD_KEY_HEADER: &str = "__debezium.oldkey";

pub fn decode(m: &Message<'_>) -> Result<Change, DmsError> {
    let Some(value) = m.value else {
        return Ok(Change::Skip(SkipReason::Tombstone, None));
    };
    let (schema, payload) = unwrap(json(value, "value")?);
    let envelope = match payload {
        Value::Null => return Ok(Change::Skip(SkipReason::Tombstone, None)),
        Value::Object(o) => o,
        _ => {
            return Err(shape(
                "value is not a Debezium change event (not an object)",
            ))
        }
    };
    let op = match envelope.get("op") {
        Some(Value::String(op)) => op.as_str(),
        _ => return Err(shape("not a Debezium change event: no \"op\"")),
    };
    let source = match envelope.get("source") {
        Some(Value::Object(s)) => s,
        _ => return Err(shape("Debezium change event has no \"source\" object")),
    };
    let table = table_of(source)?;
    let kind = match op {
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
    let row = |name: &str| -> Result<Option<Row<'static>>, DmsError> {
        match envelope.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(columns(o.clone(), types.row(name))?)),
            Some(_) => Err(shape(format!("Debezium \"{name}\" is not an object"))),
        }
    };
    let key = match m.key {
        Some(k) => key_row(k)?,
        None => None,
    };
    let (mut data, mut before_image) = match kind {
        DataOperation::Insert | DataOperation::Load => (row("after")?, None),
        DataOperation::Update => (row("after")?, row("before")?),
        DataOperation::Delete => (row("before")?, None),
    };
    // A delete under PostgreSQL's default replica identity carries only the key in `before`, or nothing: the
    // message key then names the row.
    if let Some(key) = &key {
        let target = data.get_or_insert_with(Row::default);
        for (column, cell) in key.columns() {
            if target.get(column).is_none() {
                target.set(column.to_owned(), cell.clone().into_owned());
            }
        }
    }
    let Some(data) = data else {
        return Err(shape(format!(
            "Debezium op \"{op}\" without the row it changes"
        )));
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
    let (position, ordinal) = position(source);
    Ok(Change::Row(Box::new(DmsRecord {
        kind: RecordKind::Data(kind),
        table,
        data,
        before_image,
        timestamp: number(envelope.get("ts_ms"))
            .and_then(|ms| dms_time(ms.saturating_mul(1000)))
            .map(Cow::Owned),
        commit_timestamp: commit_micros(source).and_then(dms_time).map(Cow::Owned),
        stream_position: position.map(Cow::Owned),
        transaction_id: text(source.get("txId"))
            .or_else(|| envelope.get("transaction").and_then(|t| text(t.get("id"))))
            .map(Cow::Owned),
        transaction_record_id: ordinal.map(|o| Cow::Owned(o.to_string())),
        partition_key_value: None,
    })))
}

/// The JSON converter with schemas on wraps every message as `{"schema": …, "payload": …}`.
fn unwrap(value: Value) -> (Option<Value>, Value) {
    match value {
        Value::Object(mut o)
            if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") =>
        {
            let payload = o.remove("payload").unwrap_or(Value::Null);
            (o.remove("schema"), payload)
        }
        other => (None, other),
    }
}

/// The message key as a row (Debezium's key is the primary key's columns), or `None` for a null key.
fn key_row(bytes: &[u8]) -> Result<Option<Row<'static>>, DmsError> {
    let (schema, payload) = unwrap(json(bytes, "key")?);
    match payload {
        Value::Null => Ok(None),
        Value::Object(o) => {
            let types = schema
                .as_ref()
                .map(FieldTypes::of_struct)
                .unwrap_or_default();
            Ok(Some(columns(o, &types)?))
        }
        _ => Err(shape("Debezium key is not an object of key columns")),
    }
}

fn columns(
    object: Map<String, Value>,
    types: &temporal::Columns,
) -> Result<Row<'static>, DmsError> {
    let mut converted = Map::with_capacity(object.len());
    for (column, value) in object {
        let value = match types.get(&column) {
            Some(logical) => temporal::render(value, logical)
                .map_err(|reason| shape(format!("column \"{column}\": {reason}")))?,
            None => value,
        };
        converted.insert(column, value);
    }
    Ok(Row::from(converted))
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
    match v? {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}
