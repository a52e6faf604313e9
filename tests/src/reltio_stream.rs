//! Reltio's streaming forms of one logical event, as Reltio's message-streaming documentation describes them
//! (docs/reference.md, "Reltio streaming to SQS/SNS"), for tests that check every form reads the same:
//! - payload types: `SNAPSHOT` (`type`, `object`, `ovChanged`), `SNAPSHOT_WITH_DELTA` (adds `uri` and `deltas`),
//!   `DELTAS` (`type`, `uri` and `deltas` only: no object), `skipPayload` (`type` and `ovChanged` only);
//! - formats: `JSON`, and `JSON_ZIP_BASE64` (the UTF-8 JSON gzipped, then base64);
//! - headers (as SQS message attributes: inferred, unverified): `tenantId`, `eventType`, `sourceObjectUri`, and
//!   `objectVersion` when the filtering fields list it.

use serde_json::{json, Value};

/// A destination's `payloadType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    Snapshot,
    SnapshotWithDelta,
    Deltas,
    SkipPayload,
}

impl PayloadType {
    pub const ALL: [PayloadType; 4] = [
        PayloadType::Snapshot,
        PayloadType::SnapshotWithDelta,
        PayloadType::Deltas,
        PayloadType::SkipPayload,
    ];

    /// Whether the event still carries the entity's snapshot.
    pub fn has_snapshot(self) -> bool {
        matches!(self, PayloadType::Snapshot | PayloadType::SnapshotWithDelta)
    }
}

/// A destination's `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    JsonZipBase64,
}

/// The deltas of a change: one `ATTRIBUTE_CHANGED` per attribute of the snapshot (a `DELTAS` consumer re-reads the
/// entity anyway; the items follow the documented shape: `type`, `attributeType`, `newValue`).
fn deltas(snapshot: &Value, ov_changed: bool) -> Value {
    let entity_type = snapshot["object"]["type"].as_str().unwrap_or("");
    let delta: Vec<Value> = snapshot["object"]["attributes"]
        .as_object()
        .map(|attributes| {
            attributes
                .iter()
                .filter_map(|(name, values)| {
                    let value = values.as_array()?.first()?;
                    Some(json!({"type": "ATTRIBUTE_CHANGED",
                                "attributeType": format!("{entity_type}/attributes/{name}"),
                                "newValue": {"value": value.get("value"), "ov": value.get("ov")}}))
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"ovChanged": ov_changed, "delta": delta})
}

/// The event `snapshot` (a SNAPSHOT event: `type`, `object`, optional `ovChanged`) as Reltio streams it with
/// `payload`, as JSON text.
pub fn event_json(snapshot: &Value, payload: PayloadType) -> String {
    let ov_changed = snapshot
        .get("ovChanged")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let uri = snapshot["object"]["uri"].clone();
    let event = match payload {
        PayloadType::Snapshot => snapshot.clone(),
        PayloadType::SnapshotWithDelta => {
            let mut e = snapshot.clone();
            e["uri"] = uri;
            e["deltas"] = deltas(snapshot, ov_changed);
            e
        }
        PayloadType::Deltas => {
            json!({"type": snapshot["type"], "uri": uri, "deltas": deltas(snapshot, ov_changed)})
        }
        PayloadType::SkipPayload => json!({"type": snapshot["type"], "ovChanged": ov_changed}),
    };
    event.to_string()
}

/// A message body in `format`.
pub fn body(json: &str, format: Format) -> String {
    match format {
        Format::Json => json.to_owned(),
        Format::JsonZipBase64 => zip_base64(json),
    }
}

/// `JSON_ZIP_BASE64`: gzip, then base64 (Reltio's example decodes with `base64 --decode | gunzip`).
pub fn zip_base64(json: &str) -> String {
    use base64::Engine;
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).expect("gzip in memory");
    base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip in memory"))
}

/// The headers Reltio sends with the event, as `(name, value)`: `tenantId`, `eventType`, `sourceObjectUri`, and
/// `objectVersion` when given.
pub fn headers(
    snapshot: &Value,
    tenant: &str,
    object_version: Option<i64>,
) -> Vec<(String, String)> {
    let mut h = vec![
        ("tenantId".to_owned(), tenant.to_owned()),
        (
            "eventType".to_owned(),
            snapshot["type"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "sourceObjectUri".to_owned(),
            snapshot["object"]["uri"].as_str().unwrap_or("").to_owned(),
        ),
    ];
    if let Some(v) = object_version {
        h.push(("objectVersion".to_owned(), v.to_string()));
    }
    h
}
