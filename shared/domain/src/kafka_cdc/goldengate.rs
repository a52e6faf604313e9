//! Oracle GoldenGate for Big Data's Kafka handler JSON (operation-modelled: `table`, `op_type` I/U/D/T, `op_ts`,
//! `current_ts`, `pos`, `before`/`after`, optionally `primary_keys`) to the DMS change model.
//!
//! An update's row is its before image overlaid with its after image: with compressed updates GoldenGate sends only
//! the changed columns and the key in `after`, and the full before image when the source logs it
//! (`GETUPDATEBEFORES`, `LOGALLSUPCOLS`), so the overlay is the whole new row whenever the source sends it.

use super::{dms_time, json, shape, Change, Message};
use crate::dms::{
    parse_dms_timestamp, DataOperation, DmsError, DmsRecord, RecordKind, Row, TableName,
};
use crate::outcome::SkipReason;
use serde_json::{Map, Value};
use std::borrow::Cow;

pub fn decode(m: &Message<'_>) -> Result<Change, DmsError> {
    let Some(value) = m.value else {
        return Ok(Change::Skip(SkipReason::Tombstone, None));
    };
    let Value::Object(op) = json(value, "value")? else {
        return Err(shape("value is not a GoldenGate operation (not an object)"));
    };
    let table = match op.get("table") {
        Some(Value::String(t)) => table_name(t)?,
        _ => return Err(shape("not a GoldenGate operation: no \"table\"")),
    };
    let kind = match op.get("op_type").and_then(Value::as_str) {
        Some("I") => DataOperation::Insert,
        Some("U") => DataOperation::Update,
        Some("D") => DataOperation::Delete,
        Some("T") => return Ok(Change::Skip(SkipReason::Truncate, Some(table))),
        Some(other) => return Err(shape(format!("unknown GoldenGate op_type \"{other}\""))),
        None => return Err(shape("not a GoldenGate operation: no \"op_type\"")),
    };
    let row = |name: &str| -> Result<Option<Map<String, Value>>, DmsError> {
        match op.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o.clone())),
            Some(_) => Err(shape(format!("GoldenGate \"{name}\" is not an object"))),
        }
    };
    let (data, before_image) = match kind {
        DataOperation::Insert | DataOperation::Load => (row("after")?, None),
        DataOperation::Delete => (row("before")?, None),
        DataOperation::Update => {
            let before = row("before")?;
            let after = row("after")?;
            let data = match (&before, after) {
                (Some(b), Some(a)) => {
                    let mut merged = b.clone();
                    merged.extend(a);
                    Some(merged)
                }
                (_, a) => a,
            };
            (data, before)
        }
    };
    let data = data.ok_or_else(|| {
        shape(format!(
            "GoldenGate {kind:?} without the row it changes (\"after\"/\"before\")"
        ))
    })?;
    let pos = op.get("pos").and_then(|p| match p {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let time = |name: &str| {
        op.get(name)
            .and_then(Value::as_str)
            .and_then(parse_dms_timestamp)
            .and_then(|t| dms_time(t.timestamp_micros()))
            .map(Cow::Owned)
    };
    Ok(Change::Row(Box::new(DmsRecord {
        kind: RecordKind::Data(kind),
        table,
        data: Row::from(data),
        before_image: before_image.map(Row::from),
        timestamp: time("current_ts"),
        commit_timestamp: time("op_ts"),
        // `pos` is the trail's sequence number and byte offset, zero-padded: in order as a number.
        transaction_record_id: pos
            .as_deref()
            .and_then(|p| p.trim_start_matches('0').parse::<u64>().ok().or(Some(0)))
            .map(|n| Cow::Owned(n.to_string())),
        stream_position: pos.map(Cow::Owned),
        transaction_id: op
            .get("xid")
            .or_else(|| op.get("txid"))
            .and_then(Value::as_str)
            .map(|s| Cow::Owned(s.to_owned())),
        partition_key_value: None,
    })))
}

/// `SCHEMA.TABLE`, or `CATALOG.SCHEMA.TABLE` (the catalog is dropped: mappings name `schema.table`).
fn table_name(qualified: &str) -> Result<TableName, DmsError> {
    let mut parts = qualified.rsplitn(3, '.');
    let table = parts.next().filter(|t| !t.is_empty());
    let schema = parts.next().unwrap_or_default();
    let table = table.ok_or_else(|| shape("GoldenGate \"table\" is empty"))?;
    Ok(TableName {
        schema: schema.to_owned(),
        table: table.to_owned(),
    })
}
