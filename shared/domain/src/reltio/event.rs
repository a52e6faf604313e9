//! Reltio outbound events (as streamed to SQS and relayed over webhooks): the envelope fields every consumer
//! needs, and the event-type and entity-type vocabulary that subscriptions and mapping files use.
//!
//! Shapes from docs/reference.md ("Outbound events"): CRUD events carry `object` (the entity snapshot), merge events
//! carry only `uris`, oversized events carry `exceededQueueSizeLimit: true` and no `object`.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// The categories users write in stream subscriptions, each standing for a set of Reltio event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventCategory {
    Create,
    Update,
    Merge,
    Unmerge,
    Delete,
}

impl EventCategory {
    /// The category of a Reltio event type name, if it has one (relation and match events have none).
    pub fn of(event_type: &str) -> Option<EventCategory> {
        Some(match event_type {
            "ENTITY_CREATED" => EventCategory::Create,
            "ENTITY_CHANGED" => EventCategory::Update,
            "ENTITIES_MERGED"
            | "ENTITIES_MERGED_MANUALLY"
            | "ENTITIES_MERGED_ON_THE_FLY"
            | "ENTITY_LOST_MERGE" => EventCategory::Merge,
            "ENTITIES_SPLITTED" => EventCategory::Unmerge,
            "ENTITY_REMOVED" | "ENTITY_REMOVED_GDPR" => EventCategory::Delete,
            _ => return None,
        })
    }

    pub fn parse(name: &str) -> Option<EventCategory> {
        Some(match name.to_ascii_uppercase().as_str() {
            "CREATE" => EventCategory::Create,
            "UPDATE" => EventCategory::Update,
            "MERGE" => EventCategory::Merge,
            "UNMERGE" => EventCategory::Unmerge,
            "DELETE" => EventCategory::Delete,
            _ => return None,
        })
    }
}

/// Which event types pass: by category (`MERGE`) or exact type name (`ENTITY_CHANGED`). Empty passes all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypeFilter {
    categories: BTreeSet<EventCategory>,
    names: BTreeSet<String>,
}

impl EventTypeFilter {
    /// Entries are categories or Reltio event type names (upper case, e.g. `ENTITY_CHANGED`).
    /// An entry that is neither a category nor shaped like a type name is returned as the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<EventTypeFilter, String> {
        let mut filter = EventTypeFilter::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if let Some(c) = EventCategory::parse(entry) {
                filter.categories.insert(c);
            } else if !entry.is_empty()
                && entry
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            {
                filter.names.insert(entry.to_owned());
            } else {
                return Err(entry.to_owned());
            }
        }
        Ok(filter)
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty() && self.names.is_empty()
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.is_empty()
            || self.names.contains(event_type)
            || EventCategory::of(event_type).is_some_and(|c| self.categories.contains(&c))
    }
}

/// Which entity types pass: full URIs (`configuration/entityTypes/Individual`) or last segments
/// (`Individual`). Empty passes all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityTypeFilter {
    names: BTreeSet<String>,
}

impl EntityTypeFilter {
    pub fn new<S: AsRef<str>>(entries: &[S]) -> EntityTypeFilter {
        EntityTypeFilter {
            names: entries
                .iter()
                .map(|e| short_type(e.as_ref().trim()).to_owned())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// An event whose entity type is unknown (merge events carry only URIs) passes: the consumer decides
    /// once it has fetched the entity.
    pub fn matches(&self, entity_type: Option<&str>) -> bool {
        match entity_type {
            _ if self.is_empty() => true,
            None => true,
            Some(t) => self.names.contains(short_type(t)),
        }
    }
}

/// `configuration/entityTypes/Individual` → `Individual`.
pub fn short_type(type_uri: &str) -> &str {
    type_uri.rsplit('/').next().unwrap_or(type_uri)
}

/// The envelope of one Reltio event. Unknown fields are ignored; the consumer keeps the raw JSON too.
///
/// `A` holds the snapshot's `attributes` and `C` its `crosswalks` (by default the same type): a `Value` for the
/// consumers that read them, a type that only checks them (the webhook receiver's readability check), or one that
/// keeps only the golden values (crm-updater), all accepting exactly the same events.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReltioEvent<A = Value, C = A> {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub object: Option<EventObject<A, C>>,
    /// Merge events: the URIs involved (which one is the winner is unverified: fetch to decide).
    #[serde(default)]
    pub uris: Vec<String>,
    #[serde(default)]
    pub updated_time: Option<i64>,
    #[serde(default)]
    pub exceeded_queue_size_limit: bool,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Present when the stream is configured to include it (an increasing number per object).
    #[serde(default)]
    pub object_version: Option<Value>,
    /// Some relays put the URI at the top level; oversized events may carry only this, and so do the `DELTAS`
    /// and `SNAPSHOT_WITH_DELTA` payload types.
    #[serde(default)]
    pub uri: Option<String>,
    /// Whether an operational (golden) value changed (`ENTITY_CHANGED`, `RELATIONSHIP_CHANGED`; absent when the
    /// tenant's `analyzeOvChanges` is off).
    #[serde(default)]
    pub ov_changed: Option<bool>,
    /// The `DELTAS` / `SNAPSHOT_WITH_DELTA` payload's deltas: only its `ovChanged` is read (consumers apply
    /// snapshots, fetched when the event carries none).
    #[serde(default)]
    pub deltas: Option<Deltas>,
}

/// A delta payload's summary.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deltas {
    #[serde(default)]
    pub ov_changed: Option<bool>,
}

/// The entity snapshot a CRUD event carries.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventObject<A = Value, C = A> {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(rename = "type", default)]
    pub entity_type: Option<String>,
    #[serde(default)]
    pub updated_time: Option<i64>,
    #[serde(default)]
    pub attributes: Option<A>,
    #[serde(default)]
    pub crosswalks: Option<C>,
}

impl<A, C> ReltioEvent<A, C> {
    /// The entity the event is about: the object's URI, else the top-level `uri`, else the first merge URI.
    pub fn entity_uri(&self) -> Option<&str> {
        self.object
            .as_ref()
            .and_then(|o| o.uri.as_deref())
            .or(self.uri.as_deref())
            .or(self.uris.first().map(String::as_str))
    }

    pub fn entity_type(&self) -> Option<&str> {
        self.object.as_ref().and_then(|o| o.entity_type.as_deref())
    }

    /// Reltio says no operational value changed (`ovChanged: false`, at the top or in the deltas).
    pub fn golden_values_unchanged(&self) -> bool {
        self.ov_changed
            .or(self.deltas.as_ref().and_then(|d| d.ov_changed))
            == Some(false)
    }

    /// `objectVersion` as text, when the event carries it.
    pub fn object_version(&self) -> Option<String> {
        match self.object_version.as_ref()? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn categories_cover_the_reltio_event_types_users_subscribe_to() {
        let merge = EventTypeFilter::parse(&["MERGE"]).unwrap();
        for t in [
            "ENTITIES_MERGED",
            "ENTITIES_MERGED_MANUALLY",
            "ENTITIES_MERGED_ON_THE_FLY",
            "ENTITY_LOST_MERGE",
        ] {
            assert!(merge.matches(t), "{t}");
        }
        assert!(!merge.matches("ENTITY_CHANGED"));
        let f = EventTypeFilter::parse(&["update", "ENTITY_REMOVED"]).unwrap();
        assert!(f.matches("ENTITY_CHANGED"));
        assert!(f.matches("ENTITY_REMOVED"));
        assert!(!f.matches("ENTITY_REMOVED_GDPR"));
        assert!(EventTypeFilter::parse::<&str>(&[])
            .unwrap()
            .matches("ANYTHING"));
        assert_eq!(
            EventTypeFilter::parse(&["Merge-ish"]),
            Err("Merge-ish".into())
        );
    }

    #[test]
    fn entity_types_match_by_full_uri_or_last_segment() {
        let f = EntityTypeFilter::new(&["Individual", "configuration/entityTypes/Organization"]);
        assert!(f.matches(Some("configuration/entityTypes/Individual")));
        assert!(f.matches(Some("Organization")));
        assert!(!f.matches(Some("configuration/entityTypes/Location")));
        assert!(f.matches(None));
    }

    #[test]
    fn crud_merge_and_oversized_envelopes_parse() {
        let crud: ReltioEvent = serde_json::from_value(json!({
            "type": "ENTITY_CHANGED", "objectVersion": 7,
            "object": {"uri": "entities/1", "type": "configuration/entityTypes/Individual",
                       "updatedTime": 1700000000000i64, "attributes": {}, "crosswalks": []},
            "ovChanged": true
        }))
        .unwrap();
        assert_eq!(crud.entity_uri(), Some("entities/1"));
        assert_eq!(
            crud.entity_type(),
            Some("configuration/entityTypes/Individual")
        );
        assert_eq!(crud.object_version().as_deref(), Some("7"));
        let merge: ReltioEvent = serde_json::from_value(json!({
            "type": "ENTITIES_MERGED", "updatedTime": 5, "uris": ["entities/W", "entities/L"]
        }))
        .unwrap();
        assert_eq!(merge.entity_uri(), Some("entities/W"));
        assert_eq!(merge.entity_type(), None);
        let big: ReltioEvent = serde_json::from_value(json!({
            "type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/9"
        }))
        .unwrap();
        assert!(big.exceeded_queue_size_limit);
        assert_eq!(big.entity_uri(), Some("entities/9"));
    }

    #[test]
    fn delta_payloads_name_their_entity_and_say_whether_golden_values_changed() {
        // DELTAS: no object, the entity's URI and the deltas (docs/reference.md, payload types).
        let deltas: ReltioEvent = serde_json::from_value(json!({
            "type": "ENTITY_CHANGED", "uri": "entities/1",
            "deltas": {"ovChanged": false, "delta": [{"type": "ATTRIBUTE_CHANGED", "attributeType":
                "configuration/entityTypes/Individual/attributes/FirstName",
                "newValue": {"value": "Ann", "ov": false}, "oldValue": {"value": "Anne", "ov": false}}]}
        }))
        .unwrap();
        assert_eq!(deltas.entity_uri(), Some("entities/1"));
        assert!(deltas.object.is_none() && deltas.golden_values_unchanged());
        let changed: ReltioEvent = serde_json::from_value(
            json!({"type": "ENTITY_CHANGED", "object": {"uri": "entities/1"}, "ovChanged": true}),
        )
        .unwrap();
        assert!(!changed.golden_values_unchanged());
        // skipPayload: the type and ovChanged only; the entity comes from the message's sourceObjectUri.
        let skipped: ReltioEvent =
            serde_json::from_value(json!({"type": "ENTITY_CHANGED", "ovChanged": true})).unwrap();
        assert_eq!(skipped.entity_uri(), None);
        let unknown: ReltioEvent =
            serde_json::from_value(json!({"type": "ENTITY_CREATED", "uri": "entities/2"})).unwrap();
        assert!(
            !unknown.golden_values_unchanged(),
            "absent is not unchanged"
        );
    }
}
