//! The analytics-sink's mapping file: which events become change records, and which attributes of each entity
//! type become columns. Validated once at start-up; errors name the offending setting.

use crate::reltio::event::{short_type, EventCategory, EventTypeFilter};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A mapping file that cannot be used; the message names the offending setting.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsMappingError {
    #[error("cannot read analytics mapping file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid analytics mapping file: {0}")]
    Invalid(String),
}

/// The change record's own fields: a column may not take one of these names.
pub const RECORD_FIELDS: &[&str] = &[
    "event_id",
    "event_type",
    "change_type",
    "entity_uri",
    "entity_type",
    "tenant_id",
    "object_version",
    "updated_time",
    "updated_at",
    "has_snapshot",
    "crosswalks",
    "merged_into",
    "merged_uris",
    "removed",
    "received_at",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default = "default_event_types")]
    event_types: Vec<String>,
    #[serde(default)]
    entity_types: BTreeMap<String, RawEntityType>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntityType {
    /// Column name → Reltio attribute path (dots for nested attributes).
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

fn default_event_types() -> Vec<String> {
    ["CREATE", "UPDATE", "MERGE", "UNMERGE", "DELETE"]
        .map(String::from)
        .to_vec()
}

/// One column: its name and the attribute whose operational value fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub attribute: String,
}

/// The validated mapping.
#[derive(Debug, Clone)]
pub struct AnalyticsMapping {
    pub event_types: EventTypeFilter,
    /// Entity type (short name, `Individual`) → its columns, in name order. Empty: every entity type is recorded,
    /// without columns.
    entity_types: BTreeMap<String, Vec<Column>>,
}

/// Column names are warehouse identifiers: lower case, digits and `_`, starting with a letter.
fn is_column_name(s: &str) -> bool {
    s.len() <= 128
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl AnalyticsMapping {
    pub fn load(path: &str) -> Result<AnalyticsMapping, AnalyticsMappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| AnalyticsMappingError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        AnalyticsMapping::parse(&text)
    }

    pub fn parse(text: &str) -> Result<AnalyticsMapping, AnalyticsMappingError> {
        let invalid = |m: String| AnalyticsMappingError::Invalid(m);
        let raw: RawMapping = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        // Only entity events can become change records: a category, or an event type that belongs to one.
        for e in &raw.event_types {
            let e = e.trim();
            if EventCategory::parse(e).is_none() && EventCategory::of(e).is_none() {
                return Err(invalid(format!(
                    "event_types: `{e}` is not an entity event type (CREATE, UPDATE, MERGE, UNMERGE, DELETE or \
                     one of their Reltio type names)"
                )));
            }
        }
        let event_types = EventTypeFilter::parse(&raw.event_types)
            .map_err(|e| invalid(format!("event_types: unknown event type {e}")))?;
        if event_types.is_empty() {
            return Err(invalid(
                "event_types must list at least one event type".into(),
            ));
        }
        let mut entity_types = BTreeMap::new();
        for (name, raw_type) in raw.entity_types {
            let short = short_type(name.trim()).to_owned();
            if short.is_empty() {
                return Err(invalid(format!("entity_types: `{name}` is not a type")));
            }
            let mut columns = Vec::new();
            for (column, attribute) in raw_type.columns {
                if !is_column_name(&column) {
                    return Err(invalid(format!(
                        "entity_types.{short}.columns: `{column}` is not a column name (lower case letters, \
                         digits and _, starting with a letter)"
                    )));
                }
                if RECORD_FIELDS.contains(&column.as_str()) {
                    return Err(invalid(format!(
                        "entity_types.{short}.columns: `{column}` is a field of the change record itself"
                    )));
                }
                if attribute.is_empty() || attribute.split('.').any(str::is_empty) {
                    return Err(invalid(format!(
                        "entity_types.{short}.columns.{column}: attribute path `{attribute}` is malformed"
                    )));
                }
                columns.push(Column {
                    name: column,
                    attribute,
                });
            }
            if entity_types.insert(short.clone(), columns).is_some() {
                return Err(invalid(format!("entity_types: `{short}` is listed twice")));
            }
        }
        Ok(AnalyticsMapping {
            event_types,
            entity_types,
        })
    }

    /// Whether events of this entity type are recorded: every type when the mapping lists none, else the listed
    /// ones. An unknown type (a merge event names only URIs) is recorded.
    pub fn records_type(&self, entity_type: Option<&str>) -> bool {
        match entity_type {
            Some(t) if !self.entity_types.is_empty() => {
                self.entity_types.contains_key(short_type(t))
            }
            _ => true,
        }
    }

    /// The columns of an entity type (none for a type the mapping does not list).
    pub fn columns(&self, entity_type: Option<&str>) -> &[Column] {
        entity_type
            .and_then(|t| self.entity_types.get(short_type(t)))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        event_types = ["CREATE", "UPDATE", "MERGE", "DELETE"]
        [entity_types.Individual.columns]
        first_name = "FirstName"
        city = "Address.City"
        [entity_types."configuration/entityTypes/Organization".columns]
        name = "Name"
    "#;

    #[test]
    fn columns_per_entity_type_by_full_or_short_type() {
        let m = AnalyticsMapping::parse(EXAMPLE).unwrap();
        let names = |t| {
            m.columns(t)
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Some("configuration/entityTypes/Individual")),
            ["city", "first_name"]
        );
        assert_eq!(names(Some("Organization")), ["name"]);
        assert!(names(Some("Location")).is_empty() && names(None).is_empty());
        assert!(m.records_type(Some("Individual")) && m.records_type(None));
        assert!(!m.records_type(Some("configuration/entityTypes/Location")));
        assert!(m.event_types.matches("ENTITY_LOST_MERGE"));
        assert!(!m.event_types.matches("ENTITIES_SPLITTED"));
    }

    #[test]
    fn an_empty_mapping_records_every_event_and_type_without_columns() {
        let m = AnalyticsMapping::parse("").unwrap();
        assert!(m.records_type(Some("Anything")));
        assert!(m.event_types.matches("ENTITIES_SPLITTED"));
        assert!(!m.event_types.matches("RELATIONSHIP_CREATED"));
        assert!(m.columns(Some("Individual")).is_empty());
    }

    #[test]
    fn invalid_mappings_name_the_setting() {
        for (text, needle) in [
            ("event_types = [\"SOMETIMES\"]", "event_types"),
            ("event_types = []", "event_types"),
            (
                "[entity_types.Individual.columns]\nFirstName = \"FirstName\"",
                "FirstName",
            ),
            (
                "[entity_types.Individual.columns]\nevent_id = \"X\"",
                "event_id",
            ),
            ("[entity_types.Individual.columns]\nname = \"A..B\"", "A..B"),
            ("[entity_types.Individual]\ncolumn = {}", "column"),
            ("unknown = 1", "unknown"),
        ] {
            let e = AnalyticsMapping::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
