//! The change record: one append-only row per distinct Reltio entity event, as the analytics sink lands it (one
//! JSON object per line) for a warehouse to derive the `current` golden records and their `history` from
//! (infra/analytics/). Every field is always written, `null` when empty: the warehouse's column list must not
//! depend on which events a file happens to hold.

use super::mapping::AnalyticsMapping;
use crate::outcome::SkipReason;
use crate::reltio::event::{short_type, EventCategory, ReltioEvent};
use crate::reltio::golden_value;
use serde::Serialize;
use serde_json::{Map, Value};

/// What happened to the entity, in the warehouse's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeType {
    Create,
    Update,
    /// The merge winner's record (the event names the losers).
    Merge,
    /// A merge loser's record: it now lives on in `merged_into`.
    LostMerge,
    Unmerge,
    Remove,
}

impl ChangeType {
    /// The change type of a Reltio event type; `None` for events that are not about one entity's state.
    pub fn of(event_type: &str) -> Option<ChangeType> {
        Some(match EventCategory::of(event_type)? {
            EventCategory::Create => ChangeType::Create,
            EventCategory::Update => ChangeType::Update,
            EventCategory::Merge if event_type == "ENTITY_LOST_MERGE" => ChangeType::LostMerge,
            EventCategory::Merge => ChangeType::Merge,
            EventCategory::Unmerge => ChangeType::Unmerge,
            EventCategory::Delete => ChangeType::Remove,
        })
    }
}

/// A crosswalk as the record carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordCrosswalk {
    #[serde(rename = "type")]
    pub source: Option<String>,
    pub value: Option<String>,
    pub source_table: Option<String>,
}

/// One change record. Field names are the warehouse contract (infra/analytics/README.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRecord {
    pub event_id: String,
    pub event_type: String,
    pub change_type: ChangeType,
    pub entity_uri: String,
    /// Short form (`Individual`); unknown for a merge event, which names only URIs.
    pub entity_type: Option<String>,
    pub tenant_id: Option<String>,
    pub object_version: Option<i64>,
    /// When Reltio made the change, ms since the epoch: the event's `updatedTime`, else the snapshot's.
    pub updated_time: Option<i64>,
    /// The same instant, ISO-8601 UTC with milliseconds (the date partitions the landed files).
    pub updated_at: Option<String>,
    /// The attribute columns and `crosswalks` come from an entity snapshot.
    pub has_snapshot: bool,
    /// The mapped operational values, one column each (`null` when the entity has no golden value).
    #[serde(flatten)]
    pub columns: Map<String, Value>,
    pub crosswalks: Option<Vec<RecordCrosswalk>>,
    /// LOST_MERGE: the entity it was merged into.
    pub merged_into: Option<String>,
    /// MERGE: the entities merged into this one.
    pub merged_uris: Option<Vec<String>>,
    pub removed: bool,
    /// When the sink wrote the record (never used for ordering).
    pub received_at: String,
}

/// Why an event cannot become a record (dead-lettered with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the event names no entity (no object.uri, uri or uris)")]
    NoEntity,
}

/// What one event calls for.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordPlan {
    /// Not an entity event the mapping records.
    Skip(SkipReason),
    /// The record, complete.
    Record(Box<ChangeRecord>),
    /// A state change that carries no snapshot (an oversized event, Reltio's `DELTAS` and `skipPayload` payload
    /// types): the entity must be fetched for its snapshot, then [`with_snapshot`] completes the record.
    Fetch {
        uri: String,
        record: Box<ChangeRecord>,
    },
}

/// The record `event` becomes (pure). `event_id` is the queue message's `eventId` (the id the receiver derived
/// from signed material); `tenant` and `version` are the message attributes, used when the body lacks them.
pub fn plan_record(
    mapping: &AnalyticsMapping,
    event: &ReltioEvent,
    event_id: &str,
    tenant: Option<&str>,
    version: Option<&str>,
    received_at: &str,
) -> Result<RecordPlan, RecordError> {
    let Some(change_type) = ChangeType::of(&event.event_type) else {
        return Ok(RecordPlan::Skip(SkipReason::EventType));
    };
    if !mapping.event_types.matches(&event.event_type) {
        return Ok(RecordPlan::Skip(SkipReason::EventType));
    }
    if !mapping.records_type(event.entity_type()) {
        return Ok(RecordPlan::Skip(SkipReason::EntityType));
    }
    let entity_uri = event.entity_uri().ok_or(RecordError::NoEntity)?.to_owned();
    // The other URIs a merge event names: the losers (MERGE) or the winner (LOST_MERGE).
    let others: Vec<String> = event
        .uris
        .iter()
        .filter(|u| **u != entity_uri)
        .cloned()
        .collect();
    let updated_time = event
        .updated_time
        .or_else(|| event.object.as_ref().and_then(|o| o.updated_time));
    let mut record = ChangeRecord {
        event_id: event_id.to_owned(),
        event_type: event.event_type.clone(),
        change_type,
        entity_uri,
        entity_type: event.entity_type().map(|t| short_type(t).to_owned()),
        tenant_id: event.tenant_id.clone().or(tenant.map(str::to_owned)),
        object_version: event
            .object_version()
            .or(version.map(str::to_owned))
            .and_then(|v| v.trim().parse().ok()),
        updated_time,
        updated_at: updated_time.and_then(iso_millis),
        has_snapshot: false,
        columns: Map::new(),
        crosswalks: None,
        merged_into: match change_type {
            ChangeType::LostMerge => others.first().cloned(),
            _ => None,
        },
        merged_uris: match change_type {
            ChangeType::Merge => Some(others),
            _ => None,
        },
        removed: change_type == ChangeType::Remove,
        received_at: received_at.to_owned(),
    };
    let snapshot = event.object.as_ref().filter(|o| o.attributes.is_some());
    match snapshot {
        Some(object) => {
            fill(
                mapping,
                &mut record,
                object.attributes.as_ref(),
                object.crosswalks.as_ref(),
            );
            Ok(RecordPlan::Record(Box::new(record)))
        }
        // A state change that carries no snapshot (too large for the stream, or a delta or skipped payload): fetch
        // the entity. A merge or removal record is complete without one.
        None if matches!(
            change_type,
            ChangeType::Create | ChangeType::Update | ChangeType::Unmerge
        ) =>
        {
            Ok(RecordPlan::Fetch {
                uri: record.entity_uri.clone(),
                record: Box::new(record),
            })
        }
        None => {
            fill_columns_null(mapping, &mut record);
            Ok(RecordPlan::Record(Box::new(record)))
        }
    }
}

/// Completes a record with a fetched entity (`{uri, type, attributes, crosswalks, ...}`); an entity of a type the
/// mapping does not record is skipped (the event named no type, and the fetched entity tells).
pub fn with_snapshot(
    mapping: &AnalyticsMapping,
    mut record: ChangeRecord,
    entity: &Value,
) -> Result<ChangeRecord, SkipReason> {
    let fetched_type = entity.get("type").and_then(Value::as_str);
    if fetched_type.is_some() && !mapping.records_type(fetched_type) {
        return Err(SkipReason::EntityType);
    }
    if record.entity_type.is_none() {
        record.entity_type = fetched_type.map(|t| short_type(t).to_owned());
    }
    // An event without a snapshot may carry no time either (a DELTAS or skipPayload event): the snapshot's is the
    // change's.
    if record.updated_time.is_none() {
        record.updated_time = entity.get("updatedTime").and_then(Value::as_i64);
        record.updated_at = record.updated_time.and_then(iso_millis);
    }
    fill(
        mapping,
        &mut record,
        entity.get("attributes"),
        entity.get("crosswalks"),
    );
    Ok(record)
}

fn fill(
    mapping: &AnalyticsMapping,
    record: &mut ChangeRecord,
    attributes: Option<&Value>,
    crosswalks: Option<&Value>,
) {
    record.has_snapshot = true;
    let empty = Value::Object(Map::new());
    let attributes = attributes.unwrap_or(&empty);
    for column in mapping.columns(record.entity_type.as_deref()) {
        let value = golden_value(attributes, &column.attribute)
            .cloned()
            .unwrap_or(Value::Null);
        record.columns.insert(column.name.clone(), value);
    }
    let text = |c: &Value, key: &str| c.get(key).and_then(Value::as_str).map(str::to_owned);
    record.crosswalks = Some(
        crosswalks
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .map(|c| RecordCrosswalk {
                        source: text(c, "type"),
                        value: text(c, "value"),
                        source_table: text(c, "sourceTable").filter(|t| !t.is_empty()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    );
}

/// A record without a snapshot still carries its type's columns, as `null`.
fn fill_columns_null(mapping: &AnalyticsMapping, record: &mut ChangeRecord) {
    for column in mapping.columns(record.entity_type.as_deref()) {
        record.columns.insert(column.name.clone(), Value::Null);
    }
}

/// `1780000000123` → `2026-05-28T20:26:40.123Z`.
pub fn iso_millis(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

impl ChangeRecord {
    /// The record as one NDJSON line (with its newline: Firehose concatenates records as they come).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a change record serialises");
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests;
