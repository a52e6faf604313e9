//! Entity and crosswalk bodies as `POST {tenant}/entities` takes them, and the per-item results it returns.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

/// A crosswalk: which source record contributes to an entity. Its identity is type + value (+ sourceTable).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Crosswalk {
    /// Source type URI, e.g. `configuration/sources/SAP`.
    #[serde(rename = "type")]
    pub source: String,
    pub value: String,
    #[serde(
        rename = "sourceTable",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub source_table: Option<String>,
    /// Set to end-date the crosswalk: its values stop counting, matching keeps the link.
    #[serde(
        rename = "deleteDate",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub delete_date: Option<String>,
    /// `false` on a crosswalk that only names the entity another crosswalk of the body is attached to (it
    /// contributes no values): Reltio's association of a crosswalk with its contributor.
    #[serde(
        rename = "dataProvider",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub data_provider: Option<bool>,
    /// `true` with `dataProvider: false`: the entity this crosswalk belongs to is the one the body's other
    /// crosswalks are attached to.
    #[serde(
        rename = "contributorProvider",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub contributor_provider: Option<bool>,
}

/// The identity of a source row in Reltio: the crosswalk without its dates. Changes to one key keep their order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrosswalkKey {
    pub source: String,
    pub source_table: Option<String>,
    pub value: String,
}

impl CrosswalkKey {
    pub fn crosswalk(&self) -> Crosswalk {
        Crosswalk {
            source: self.source.clone(),
            value: self.value.clone(),
            source_table: self.source_table.clone(),
            delete_date: None,
            data_provider: None,
            contributor_provider: None,
        }
    }

    /// The crosswalk as the contributor that a body's other crosswalks are attached to: it names its entity and
    /// contributes nothing (`dataProvider: false, contributorProvider: true`).
    pub fn contributor(&self) -> Crosswalk {
        Crosswalk {
            data_provider: Some(false),
            contributor_provider: Some(true),
            ..self.crosswalk()
        }
    }
}

impl fmt::Display for CrosswalkKey {
    /// `SOURCE[/TABLE]:value` with the source's last path segment; used in logs and DLQ messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.source.rsplit('/').next().unwrap_or(&self.source);
        match &self.source_table {
            Some(t) => write!(f, "{short}/{t}:{}", self.value),
            None => write!(f, "{short}:{}", self.value),
        }
    }
}

/// One element of the `POST /entities` array.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityBody {
    /// Entity type URI, e.g. `configuration/entityTypes/Individual`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Attribute name → `[{"value": ...}]`, nested attributes holding their sub-attributes inside `value`.
    #[serde(skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    pub crosswalks: Vec<Crosswalk>,
}

/// An entity's `attributes` object, kept as the JSON text it was serialised to once (a body is written
/// once and sent as it is: no tree of small values per attribute). `None`: no attributes.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Attributes(Option<Box<RawValue>>);

impl Attributes {
    pub fn none() -> Attributes {
        Attributes(None)
    }

    /// Serialises `object`, which must serialise to a JSON object (an empty one counts as none).
    pub fn of<T: Serialize + ?Sized>(object: &T) -> Result<Attributes, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(object)?;
        Ok(Attributes((raw.get() != "{}").then_some(raw)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The attributes as a tree (tests and tools; the send path never needs it).
    pub fn to_value(&self) -> Value {
        self.0
            .as_ref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
}

impl From<Map<String, Value>> for Attributes {
    fn from(object: Map<String, Value>) -> Attributes {
        Attributes::of(&object).expect("a JSON object always serialises")
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Attributes) -> bool {
        self.to_value() == other.to_value()
    }
}

/// The result for one element of a `POST /entities` array.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Written { uri: Option<String> },
    Failed { message: String, transient: bool },
}

/// The golden value of an attribute path: at each level the value marked `ov: true` (else none).
pub fn golden_value<'a>(attributes: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = attributes;
    let mut result = None;
    for (i, segment) in path.split('.').enumerate() {
        let values = current.get(segment)?.as_array()?;
        let ov = values
            .iter()
            .find(|v| v.get("ov").and_then(Value::as_bool) == Some(true))?;
        let value = ov.get("value")?;
        if i + 1 == path.split('.').count() {
            result = Some(value);
        } else {
            current = value;
        }
    }
    result.filter(|v| !v.is_null())
}
