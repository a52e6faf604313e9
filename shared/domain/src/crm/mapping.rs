//! The crm-updater's mapping file: which events and entity types it applies, the Contact crosswalk type, the
//! field mapping, the survivor rule and the merge strategy. Validated once at start-up.

use crate::reltio::event::{EntityTypeFilter, EventCategory, EventTypeFilter};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A mapping file that cannot be used; the message names the offending setting.
#[derive(Debug, thiserror::Error)]
pub enum CrmMappingError {
    #[error("cannot read CRM mapping file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid CRM mapping file: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurvivorRule {
    /// The smallest Salesforce Id (byte order): stable whatever order Reltio lists the crosswalks in.
    LowestId,
    /// The Contact of the first listed crosswalk.
    FirstCrosswalk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStrategy {
    /// Losers stay, marked with `archive_fields`; configured child relationships are re-pointed.
    Archive,
    /// Losers are merged into the survivor with SOAP `merge()`, which deletes them and re-parents all their
    /// related records.
    Soap,
}

/// What a golden record's removal in Reltio (`ENTITY_REMOVED`) does to its Contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeletePolicy {
    /// Nothing: the Contacts stay as they are (the event is skipped).
    #[default]
    Ignore,
    /// The Contacts are marked with `delete_fields` (e.g. a status).
    Archive,
    /// The Contacts are deleted (to Salesforce's recycle bin).
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    #[default]
    None,
    Trim,
    Upper,
    Lower,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// Reltio attribute path, nested with dots: `Address.City`.
    pub attribute: String,
    /// Contact field API name.
    pub field: String,
    #[serde(default)]
    pub transform: Transform,
    /// When the entity has no golden value: `true` clears the field, `false` (default) leaves it alone.
    #[serde(default)]
    pub clear_when_missing: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildRelationship {
    pub sobject: String,
    pub field: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default = "default_entity_types")]
    entity_types: Vec<String>,
    #[serde(default = "default_event_types")]
    event_types: Vec<String>,
    crosswalk_type: String,
    #[serde(default = "default_survivor")]
    survivor: SurvivorRule,
    #[serde(default = "default_strategy")]
    merge_strategy: MergeStrategy,
    #[serde(default)]
    fields: Vec<FieldMapping>,
    /// Fields set on each merged (losing) Contact; the value `{survivor}` is replaced by the survivor's Id.
    #[serde(default)]
    archive_fields: BTreeMap<String, Value>,
    #[serde(default)]
    children: Vec<ChildRelationship>,
    #[serde(default)]
    skip_ov_unchanged: bool,
    #[serde(default)]
    create: bool,
    external_id_field: Option<String>,
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    on_delete: DeletePolicy,
    #[serde(default)]
    delete_fields: BTreeMap<String, Value>,
}

fn default_entity_types() -> Vec<String> {
    vec!["Individual".into()]
}
fn default_event_types() -> Vec<String> {
    vec!["UPDATE".into(), "MERGE".into()]
}
fn default_survivor() -> SurvivorRule {
    SurvivorRule::LowestId
}
fn default_strategy() -> MergeStrategy {
    MergeStrategy::Archive
}

/// The validated mapping.
#[derive(Debug, Clone)]
pub struct CrmMapping {
    pub entity_types: EntityTypeFilter,
    pub event_types: EventTypeFilter,
    pub crosswalk_type: String,
    pub survivor: SurvivorRule,
    pub merge_strategy: MergeStrategy,
    pub fields: Vec<FieldMapping>,
    pub archive_fields: BTreeMap<String, Value>,
    pub children: Vec<ChildRelationship>,
    /// Skip `ENTITY_CHANGED` events Reltio marks `ovChanged: false` (no golden value changed), counted
    /// `SkippedNoGoldenChange` (default off: such an event may still carry a new Contact crosswalk, whose Contact
    /// then waits for the next golden change).
    pub skip_ov_unchanged: bool,
    /// Entities of a mapped type with no live Contact crosswalk become Contacts (`create = true`); `None`: they
    /// are skipped (`SkippedNoCrosswalk`).
    pub create: Option<CreateSettings>,
    /// What an `ENTITY_REMOVED` does to the entity's Contacts (`on_delete`, default `ignore`).
    pub on_delete: DeletePolicy,
    /// Fields set on a removed entity's Contacts under `on_delete = "archive"`.
    pub delete_fields: BTreeMap<String, Value>,
}

/// How a golden record without a Contact becomes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSettings {
    /// The Contact's external-ID field that holds the Reltio entity id (`external_id_field`): the upsert's key,
    /// so that a retry, a duplicate or a concurrent invocation finds the Contact instead of creating another.
    pub external_id_field: String,
    /// Mapped Contact fields a Contact cannot be created without (`require`, e.g. `LastName`): an entity
    /// without a golden value for one is skipped (`SkippedIncomplete`) until a change gives it one.
    pub require: Vec<String>,
}

/// In `archive_fields` values: replaced by the survivor's Id.
pub const SURVIVOR_PLACEHOLDER: &str = "{survivor}";

fn is_api_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

impl CrmMapping {
    pub fn load(path: &str) -> Result<CrmMapping, CrmMappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| CrmMappingError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        CrmMapping::parse(&text)
    }

    pub fn parse(text: &str) -> Result<CrmMapping, CrmMappingError> {
        let raw: RawMapping =
            toml::from_str(text).map_err(|e| CrmMappingError::Invalid(e.to_string()))?;
        let invalid = |m: String| Err(CrmMappingError::Invalid(m));
        if raw.crosswalk_type.trim().is_empty() {
            return invalid("crosswalk_type must name the Contact crosswalk source".into());
        }
        if raw.entity_types.is_empty() {
            return invalid("entity_types must list at least one entity type".into());
        }
        for e in &raw.event_types {
            let known = EventCategory::parse(&e.trim().to_ascii_uppercase()).is_some()
                || EventCategory::of(e.trim()).is_some();
            if !known {
                return invalid(format!("event_types: unknown event type {e}"));
            }
        }
        let event_types = EventTypeFilter::parse(&raw.event_types).map_err(|e| {
            CrmMappingError::Invalid(format!("event_types: unknown event type {e}"))
        })?;
        if event_types.is_empty() {
            return invalid("event_types must list at least one event type".into());
        }
        if raw.fields.is_empty() {
            return invalid("fields: at least one [[fields]] mapping is required".into());
        }
        let mut seen = std::collections::HashSet::new();
        for f in &raw.fields {
            if !is_api_name(&f.field) {
                return invalid(format!(
                    "fields: `{}` is not a Salesforce field name",
                    f.field
                ));
            }
            if f.attribute.split('.').any(str::is_empty) {
                return invalid(format!(
                    "fields: attribute path `{}` is malformed",
                    f.attribute
                ));
            }
            if !seen.insert(f.field.to_ascii_lowercase()) {
                return invalid(format!("fields: `{}` is mapped twice", f.field));
            }
        }
        for k in raw.archive_fields.keys() {
            if !is_api_name(k) {
                return invalid(format!(
                    "archive_fields: `{k}` is not a Salesforce field name"
                ));
            }
        }
        for c in &raw.children {
            if !is_api_name(&c.sobject) || !is_api_name(&c.field) {
                return invalid(format!(
                    "children: `{}.{}` is not an sObject field",
                    c.sobject, c.field
                ));
            }
        }
        let create = create_settings(&raw)?;
        match (raw.on_delete, raw.delete_fields.is_empty()) {
            (DeletePolicy::Archive, true) => {
                return invalid(
                    "on_delete = \"archive\" needs delete_fields: the fields that mark a removed entity's \
                     Contacts"
                        .into(),
                )
            }
            (DeletePolicy::Ignore | DeletePolicy::Delete, false) => {
                return invalid("delete_fields are used with on_delete = \"archive\" only".into())
            }
            _ => {}
        }
        if raw.on_delete != DeletePolicy::Ignore && !event_types.matches("ENTITY_REMOVED") {
            return invalid("on_delete acts on removals: add \"DELETE\" to event_types".into());
        }
        for (k, v) in &raw.delete_fields {
            if !is_api_name(k) {
                return invalid(format!(
                    "delete_fields: `{k}` is not a Salesforce field name"
                ));
            }
            if v.as_str().is_some_and(|s| s.contains(SURVIVOR_PLACEHOLDER)) {
                return invalid(format!(
                    "delete_fields: `{k}` uses {SURVIVOR_PLACEHOLDER}: a removed entity has no survivor"
                ));
            }
        }
        Ok(CrmMapping {
            entity_types: EntityTypeFilter::new(&raw.entity_types),
            event_types,
            crosswalk_type: raw.crosswalk_type,
            survivor: raw.survivor,
            merge_strategy: raw.merge_strategy,
            fields: raw.fields,
            archive_fields: raw.archive_fields,
            children: raw.children,
            skip_ov_unchanged: raw.skip_ov_unchanged,
            create,
            on_delete: raw.on_delete,
            delete_fields: raw.delete_fields.clone(),
        })
    }
}

/// The create settings: `external_id_field` an API name no `[[fields]]` entry writes, each `require` entry a
/// mapped field.
fn create_settings(raw: &RawMapping) -> Result<Option<CreateSettings>, CrmMappingError> {
    let invalid = |m: String| Err(CrmMappingError::Invalid(m));
    if !raw.create {
        if !raw.require.is_empty() || raw.external_id_field.is_some() {
            return invalid(
                "require and external_id_field are create settings: set create = true".into(),
            );
        }
        return Ok(None);
    }
    let Some(field) = raw.external_id_field.as_deref().map(str::trim) else {
        return invalid(
            "create = true needs external_id_field: the Contact field (an External ID) that holds the \
             Reltio entity id"
                .into(),
        );
    };
    if !is_api_name(field) {
        return invalid(format!(
            "external_id_field: `{field}` is not a Salesforce field name"
        ));
    }
    let mapped = |name: &str| {
        raw.fields
            .iter()
            .any(|f| f.field.eq_ignore_ascii_case(name))
    };
    if mapped(field) {
        return invalid(format!(
            "external_id_field: `{field}` is also a [[fields]] target; it holds the entity id"
        ));
    }
    for r in &raw.require {
        if !mapped(r) {
            return invalid(format!("require: `{r}` is not a mapped field"));
        }
    }
    Ok(Some(CreateSettings {
        external_id_field: field.to_owned(),
        require: raw.require.clone(),
    }))
}
