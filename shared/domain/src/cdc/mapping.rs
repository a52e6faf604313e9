//! The CDC mapping file (`CDC_MAPPING_FILE`, TOML): per source table, the Reltio entity type, the crosswalk,
//! the key columns and the column → attribute mappings. Validated once at start-up; every error names the
//! table (and column) it is about.

use crate::kafka_cdc::{ChangeFormat, DEFAULT_UNAVAILABLE_VALUE};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use topics::RawTopic;
pub use topics::TopicMapping;

mod topics;

/// Joins the values of a composite key into one crosswalk value unless a table says otherwise.
pub const DEFAULT_KEY_SEPARATOR: &str = "|";

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read mapping file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("mapping file is not valid TOML for the mapping format: {0}")]
    Syntax(String),
    #[error("mapping for table {table}: {reason}")]
    Table { table: String, reason: String },
    #[error("mapping for topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("mapping for table {table}, column {column}: {reason}")]
    Column {
        table: String,
        column: String,
        reason: String,
    },
}

/// What a source delete does to the row's crosswalk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteStrategy {
    /// Set the crosswalk's `deleteDate`: its values stop counting, matching keeps the link (Reltio's advice
    /// when a source record may come back or its history matters).
    EndDate,
    /// Remove the crosswalk for good.
    DeleteCrosswalk,
}

/// Whether a write replaces the source's whole contribution or only the attributes sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverrideMode {
    /// The row's crosswalk contribution is replaced: a NULL column clears the attribute.
    Full,
    /// `options=partialOverride`: only the attributes sent are overwritten.
    Partial,
}

/// What a column a DMS record's image does not hold means. DMS leaves NULL and empty columns out unless the
/// endpoint sets `IncludeNullAndEmpty` (default false), so by default an absent column is NULL; the other sources
/// say themselves (see `crate::dms::Image`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbsentColumns {
    /// Not in the image: the attribute is left as it is (a partial write of the columns the image holds), for an
    /// endpoint with `IncludeNullAndEmpty=true` (a NULL then arrives as `null`) whose images can leave a column out.
    Unchanged,
    /// NULL (the default): DMS without `IncludeNullAndEmpty` leaves NULL columns out of otherwise whole images.
    Null,
}

/// A simple value transform, applied in the order listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transform {
    Trim,
    Upper,
    Lower,
    /// `""` (after earlier transforms) becomes absent instead of an empty value.
    EmptyAsAbsent,
    /// Any ISO-8601 date or timestamp (or `YYYYMMDD`) → `YYYY-MM-DD`.
    Date,
    /// Any ISO-8601 timestamp (zone-less means UTC) → RFC 3339 UTC with milliseconds.
    Timestamp,
}

/// A reference attribute (Reltio's standard `Address` is one): the referenced entity and the relation get
/// crosswalks of their own, the row's key plus `crosswalk_suffix`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceMapping {
    pub entity_type: String,
    pub relation_type: String,
    #[serde(default)]
    pub crosswalk_suffix: String,
}

/// One column's target: an attribute path (`FirstName`, `Address.City`) and its transforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    pub column: String,
    /// Attribute names from the top level down: `["Address", "City"]`.
    pub path: Vec<String>,
    pub transforms: Vec<Transform>,
}

/// Everything needed to turn one source table's rows into Reltio entities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMapping {
    /// `schema.table`.
    pub table: String,
    pub entity_type: String,
    pub source: String,
    pub source_table: Option<String>,
    pub key_columns: Vec<String>,
    pub key_separator: String,
    pub delete_strategy: DeleteStrategy,
    pub override_mode: OverrideMode,
    /// What a column missing from a DMS record's image means.
    pub absent_columns: AbsentColumns,
    pub columns: Vec<ColumnMapping>,
    /// Top-level attribute name → reference settings.
    pub references: BTreeMap<String, ReferenceMapping>,
    /// The columns' attribute paths as one tree, names in order: what a row's `attributes` are written from.
    pub attributes: Vec<AttributeNode>,
}

/// One attribute of the tree: a column's value, or the parent of nested attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeNode {
    pub name: String,
    pub target: AttributeTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeTarget {
    /// The index of the column in `TableMapping::columns`.
    Column(usize),
    Nested(Vec<AttributeNode>),
}

impl AttributeNode {
    /// The indices of the columns beneath the node, added to `out`.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match &self.target {
            AttributeTarget::Column(i) => out.push(*i),
            AttributeTarget::Nested(children) => children.iter().for_each(|c| c.columns(out)),
        }
    }
}

/// The tree of the columns' paths (validated: no path is another's prefix), names sorted at every level.
fn attribute_tree(columns: &[ColumnMapping]) -> Vec<AttributeNode> {
    fn build(paths: Vec<(usize, &[String])>) -> Vec<AttributeNode> {
        let mut by_name: BTreeMap<&str, Vec<(usize, &[String])>> = BTreeMap::new();
        for (i, path) in paths {
            if let Some((name, rest)) = path.split_first() {
                by_name.entry(name).or_default().push((i, rest));
            }
        }
        by_name
            .into_iter()
            .map(|(name, under)| {
                let target = match under.as_slice() {
                    [(i, [])] => AttributeTarget::Column(*i),
                    _ => AttributeTarget::Nested(build(under)),
                };
                AttributeNode {
                    name: name.to_owned(),
                    target,
                }
            })
            .collect()
    }
    build(
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.path.as_slice()))
            .collect(),
    )
}

/// The validated mapping: source tables by `schema.table`, matched case-insensitively (DMS reports names
/// in the source's own case, which differs between engines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdcMapping {
    tables: HashMap<String, TableMapping>,
    /// `[topics]`: how each Kafka topic the CDC path reads is decoded.
    topics: BTreeMap<String, TopicMapping>,
}

impl CdcMapping {
    pub fn load(path: &str) -> Result<CdcMapping, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        CdcMapping::parse(&text)
    }

    pub fn parse(text: &str) -> Result<CdcMapping, MappingError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| MappingError::Syntax(e.to_string()))?;
        if raw.tables.is_empty() {
            return Err(MappingError::Syntax(
                "no [tables.\"schema.table\"] section".into(),
            ));
        }
        let default_separator = raw
            .key_separator
            .unwrap_or_else(|| DEFAULT_KEY_SEPARATOR.to_owned());
        let mut tables = HashMap::new();
        for (name, table) in raw.tables {
            let mapping = table.validate(&name, &default_separator)?;
            if tables.insert(name.to_ascii_lowercase(), mapping).is_some() {
                return Err(MappingError::Table {
                    table: name,
                    reason: "mapped twice (names are matched case-insensitively)".into(),
                });
            }
        }
        let mut topics = BTreeMap::new();
        for (topic, raw) in raw.topics {
            let mapping = raw.validate(&topic)?;
            topics.insert(topic, mapping);
        }
        Ok(CdcMapping { tables, topics })
    }

    /// The message format of a Kafka topic (`[topics]`), if the mapping names it.
    pub fn topic_format(&self, topic: &str) -> Option<ChangeFormat> {
        self.topics.get(topic).map(|t| t.format)
    }

    /// What the topic's Debezium connector puts in place of a value it could not read (an unchanged TOASTed
    /// column): the topic's `unavailable_value`, else Debezium's default.
    pub fn unavailable_value(&self, topic: &str) -> &str {
        self.topics
            .get(topic)
            .and_then(|t| t.unavailable_value.as_deref())
            .unwrap_or(DEFAULT_UNAVAILABLE_VALUE)
    }

    /// The mapping for `schema.table`, if the table is mapped.
    pub fn table(&self, qualified_name: &str) -> Option<&TableMapping> {
        self.tables.get(&qualified_name.to_ascii_lowercase())
    }

    /// [`CdcMapping::table`] for a DMS table name, without building the qualified name twice.
    pub fn table_of(&self, name: &crate::dms::TableName) -> Option<&TableMapping> {
        // `name.to_string().to_ascii_lowercase()`, in one allocation.
        let mut key = String::with_capacity(name.schema.len() + 1 + name.table.len());
        if !name.schema.is_empty() {
            key.push_str(&name.schema);
            key.push('.');
        }
        key.push_str(&name.table);
        key.make_ascii_lowercase();
        self.tables.get(&key)
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    key_separator: Option<String>,
    #[serde(default)]
    topics: BTreeMap<String, RawTopic>,
    #[serde(default)]
    tables: BTreeMap<String, RawTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    entity_type: String,
    source: String,
    source_table: Option<String>,
    key_columns: Vec<String>,
    key_separator: Option<String>,
    #[serde(default = "default_delete")]
    delete: DeleteStrategy,
    #[serde(default = "default_override", rename = "override")]
    override_mode: OverrideMode,
    #[serde(default = "default_absent")]
    absent_columns: AbsentColumns,
    #[serde(default)]
    columns: BTreeMap<String, RawColumn>,
    #[serde(default)]
    references: BTreeMap<String, ReferenceMapping>,
}

fn default_delete() -> DeleteStrategy {
    DeleteStrategy::EndDate
}

fn default_override() -> OverrideMode {
    OverrideMode::Full
}

fn default_absent() -> AbsentColumns {
    // DMS's own default (`IncludeNullAndEmpty=false`) leaves NULL columns out: an absent column is NULL.
    AbsentColumns::Null
}

/// `column = "Attribute"` or `column = { attribute = "Address.City", transforms = ["trim"] }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawColumn {
    Attribute(String),
    Detailed {
        attribute: String,
        #[serde(default)]
        transforms: Vec<String>,
    },
}

impl RawTable {
    fn validate(self, table: &str, default_separator: &str) -> Result<TableMapping, MappingError> {
        let table_err = |reason: String| MappingError::Table {
            table: table.to_owned(),
            reason,
        };
        let col_err = |column: &str, reason: String| MappingError::Column {
            table: table.to_owned(),
            column: column.to_owned(),
            reason,
        };
        match table.split_once('.') {
            Some((s, t)) if !s.is_empty() && !t.is_empty() => {}
            _ => return Err(table_err("name must be \"schema.table\"".into())),
        }
        check_uri(&self.entity_type, "configuration/entityTypes/")
            .map_err(|r| table_err(format!("entity_type {r}")))?;
        check_uri(&self.source, "configuration/sources/")
            .map_err(|r| table_err(format!("source {r}")))?;
        if self
            .source_table
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(table_err(
                "source_table must not be empty when given".into(),
            ));
        }
        if self.key_columns.is_empty() {
            return Err(table_err(
                "key_columns must name at least one column".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for k in &self.key_columns {
            if k.trim().is_empty() {
                return Err(table_err("key_columns holds an empty name".into()));
            }
            if !seen.insert(k.as_str()) {
                return Err(col_err(k, "listed twice in key_columns".into()));
            }
        }
        let key_separator = self
            .key_separator
            .unwrap_or_else(|| default_separator.to_owned());
        if key_separator.is_empty() && self.key_columns.len() > 1 {
            return Err(table_err(
                "key_separator must not be empty for a composite key".into(),
            ));
        }
        if key_separator.contains('\\') {
            return Err(table_err(
                "key_separator must not contain a backslash (it escapes the separator inside key values)"
                    .into(),
            ));
        }

        let mut columns = Vec::with_capacity(self.columns.len());
        // Attribute path → column, to find two columns writing one attribute, or an attribute used both as a
        // simple value and as a nested parent.
        let mut targets: BTreeMap<Vec<String>, String> = BTreeMap::new();
        for (column, raw) in self.columns {
            let (attribute, transform_names) = match raw {
                RawColumn::Attribute(a) => (a, Vec::new()),
                RawColumn::Detailed {
                    attribute,
                    transforms,
                } => (attribute, transforms),
            };
            let path: Vec<String> = attribute.split('.').map(str::to_owned).collect();
            if let Some(bad) = path.iter().find(|s| !valid_attribute_name(s)) {
                return Err(col_err(
                    &column,
                    format!("attribute \"{attribute}\" has an invalid name segment \"{bad}\""),
                ));
            }
            for (other_path, other_column) in &targets {
                let clash = other_path == &path
                    || other_path.starts_with(&path)
                    || path.starts_with(other_path);
                if clash {
                    return Err(col_err(
                        &column,
                        format!(
                            "attribute \"{attribute}\" collides with column {other_column}'s \"{}\"",
                            other_path.join(".")
                        ),
                    ));
                }
            }
            let transforms = transform_names
                .iter()
                .map(|name| parse_transform(name))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|name| {
                    col_err(
                        &column,
                        format!(
                            "unknown transform \"{name}\" (known: trim, upper, lower, empty-as-absent, date, timestamp)"
                        ),
                    )
                })?;
            targets.insert(path.clone(), column.clone());
            columns.push(ColumnMapping {
                column,
                path,
                transforms,
            });
        }
        for (attribute, reference) in &self.references {
            let nested = columns
                .iter()
                .any(|c| c.path.len() > 1 && &c.path[0] == attribute);
            if !nested {
                return Err(table_err(format!(
                    "reference \"{attribute}\" is not the parent of any mapped nested attribute"
                )));
            }
            check_uri(&reference.entity_type, "configuration/entityTypes/")
                .map_err(|r| table_err(format!("reference \"{attribute}\" entity_type {r}")))?;
            check_uri(&reference.relation_type, "configuration/relationTypes/")
                .map_err(|r| table_err(format!("reference \"{attribute}\" relation_type {r}")))?;
        }
        Ok(TableMapping {
            table: table.to_owned(),
            entity_type: self.entity_type,
            source: self.source,
            source_table: self.source_table,
            key_columns: self.key_columns,
            key_separator,
            delete_strategy: self.delete,
            override_mode: self.override_mode,
            absent_columns: self.absent_columns,
            attributes: attribute_tree(&columns),
            columns,
            references: self.references,
        })
    }
}

fn check_uri(value: &str, prefix: &str) -> Result<(), String> {
    match value.strip_prefix(prefix) {
        Some(rest) if !rest.is_empty() && !rest.contains('/') => Ok(()),
        _ => Err(format!("\"{value}\" must look like \"{prefix}Name\"")),
    }
}

fn valid_attribute_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_transform(name: &str) -> Result<Transform, String> {
    Ok(match name {
        "trim" => Transform::Trim,
        "upper" => Transform::Upper,
        "lower" => Transform::Lower,
        "empty-as-absent" => Transform::EmptyAsAbsent,
        "date" => Transform::Date,
        "timestamp" => Transform::Timestamp,
        other => return Err(other.to_owned()),
    })
}

#[cfg(test)]
mod tests;
