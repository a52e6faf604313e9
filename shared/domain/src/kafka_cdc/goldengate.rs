//! Oracle GoldenGate for Big Data's Kafka handler JSON (operation-modelled: `table`, `op_type` I/U/D/T, `op_ts`,
//! `current_ts`, `pos`, `before`/`after`, optionally `primary_keys`) to the DMS change model.
//!
//! An update's row is its before image overlaid with its after image: with compressed updates (GoldenGate's
//! default) `after` holds only the key and the changed columns, and the before image, when the source sends it
//! (`GETUPDATEBEFORES`, `LOGALLSUPCOLS`), the others. A column neither holds did not change: the update is a
//! partial image (`Image::Changes`), written as a partial write of what it holds. An insert is the whole row.

use super::{dms_time, json, shape, Change, Fields, Message};
use crate::dms::{
    parse_dms_timestamp, DataOperation, DmsError, DmsRecord, Image, RecordKind, TableName,
};
use crate::outcome::SkipReason;
use serde_json::Value;
use std::borrow::Cow;

pub fn decode(m: &Message<'_>) -> Result<Change, DmsError> {
    let Some(value) = m.value else {
        return Ok(Change::Skip(SkipReason::Tombstone, None));
    };
    let Some(op) = Fields::of(json(value, "value")?)? else {
        return Err(shape("value is not a GoldenGate operation (not an object)"));
    };
    let table = match op.tree("table") {
        Some(Value::String(t)) => table_name(&t)?,
        _ => return Err(shape("not a GoldenGate operation: no \"table\"")),
    };
    let kind = match op.tree("op_type").as_ref().and_then(Value::as_str) {
        Some("I") => DataOperation::Insert,
        Some("U") => DataOperation::Update,
        Some("D") => DataOperation::Delete,
        Some("T") => return Ok(Change::Skip(SkipReason::Truncate, Some(table))),
        Some(other) => return Err(shape(format!("unknown GoldenGate op_type \"{other}\""))),
        None => return Err(shape("not a GoldenGate operation: no \"op_type\"")),
    };
    let row = |name: &str| op.row(name, "GoldenGate");
    let (data, before_image, image) = match kind {
        DataOperation::Insert | DataOperation::Load => (row("after")?, None, Image::Whole),
        DataOperation::Delete => (row("before")?, None, Image::Whole),
        DataOperation::Update => {
            let before = row("before")?;
            // What `after` lacks did not change (compressed updates): the before image, when the source sends
            // it, has it.
            let data = row("after")?.map(|after| match &before {
                Some(before) => {
                    let mut merged = before.clone();
                    merged.overlay(after);
                    merged
                }
                None => after,
            });
            (data, before, Image::Changes)
        }
    };
    let data = data.ok_or_else(|| {
        let image = if kind == DataOperation::Delete {
            "before"
        } else {
            "after"
        };
        shape(format!(
            "GoldenGate {kind:?} without the row it changes (no \"{image}\")"
        ))
    })?;
    let pos = op.text("pos");
    let time = |name: &str| {
        op.tree(name)
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_dms_timestamp)
            .and_then(|t| dms_time(t.timestamp_micros()))
            .map(Cow::Owned)
    };
    Ok(Change::Row(Box::new(DmsRecord {
        kind: RecordKind::Data(kind),
        table,
        data: data.into_owned(),
        image,
        before_image: before_image.map(|b| b.into_owned()),
        timestamp: time("current_ts"),
        commit_timestamp: time("op_ts"),
        // `pos` is the trail's sequence number and byte offset, zero-padded: in order as a number.
        transaction_record_id: pos
            .as_deref()
            .and_then(|p| p.trim_start_matches('0').parse::<u64>().ok().or(Some(0)))
            .map(|n| Cow::Owned(n.to_string())),
        stream_position: pos.map(Cow::Owned),
        transaction_id: op
            .tree("xid")
            .or_else(|| op.tree("txid"))
            .as_ref()
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
