//! The upsert of a row: its mapped columns' values in the record's image (a value, NULL, or absent from a
//! partial image), and the Reltio body serialised straight from them. A partial image is a partial write of what
//! it holds, refused where that would lose data.

use super::TransformError;
use super::{transform_value, ReltioWrite, WriteOp};
use crate::cdc::mapping::{
    AbsentColumns, AttributeNode, AttributeTarget, OverrideMode, TableMapping,
};
use crate::dms::{Cell, DmsRecord, Image};
use crate::reltio::model::{Attributes, Crosswalk, CrosswalkKey, EntityBody};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::borrow::Cow;

/// A mapped column's value in a record's image.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Mapped<'a> {
    /// Not in the image, and not known to be NULL: its attribute is left as it is.
    Absent,
    /// NULL, or a value the transforms made absent.
    Null,
    Value(Cow<'a, str>),
}

impl Mapped<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            Mapped::Value(v) => Some(v),
            Mapped::Absent | Mapped::Null => None,
        }
    }
}

/// Every mapped column's value in the record's image, transformed, in the mapping's order (so the first bad
/// column is the one reported).
pub(super) fn mapped_values<'r>(
    table: &TableMapping,
    record: &'r DmsRecord,
) -> Result<Vec<Mapped<'r>>, TransformError> {
    let absent_is_null = match record.image {
        Image::Whole => true,
        Image::Changes => false,
        Image::Unknown => table.absent_columns == AbsentColumns::Null,
    };
    let mut values = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let value = match record.data.get(&column.column).map(Cell::render) {
            None if absent_is_null => Mapped::Null,
            None => Mapped::Absent,
            Some(None) => Mapped::Null,
            Some(Some(raw)) => match transform_value(&column.transforms, raw) {
                Ok(Some(v)) => Mapped::Value(v),
                Ok(None) => Mapped::Null,
                Err(reason) => {
                    return Err(TransformError::BadValue {
                        table: table.table.clone(),
                        column: column.column.clone(),
                        reason,
                    })
                }
            },
        };
        values.push(value);
    }
    Ok(values)
}

/// The mapped columns the image lacks, by name.
pub(super) fn absent_columns<'t>(table: &'t TableMapping, values: &[Mapped]) -> Vec<&'t str> {
    table
        .columns
        .iter()
        .zip(values)
        .filter(|(_, v)| **v == Mapped::Absent)
        .map(|(c, _)| c.column.as_str())
        .collect()
}

/// The upsert of the row's mapped values. When the image lacks a mapped column it is a partial write of the
/// attributes the image holds (`options=partialOverride`): the others are left as they are.
pub(super) fn upsert(
    table: &TableMapping,
    key: &CrosswalkKey,
    values: &[Mapped],
) -> Result<ReltioWrite, TransformError> {
    let partial_image = values.contains(&Mapped::Absent);
    if partial_image {
        refuse_partial_nested(table, values)?;
    }
    let attributes = Attributes::of(&AttributesOf {
        table,
        key,
        nodes: &table.attributes,
        values,
        top_level: true,
        // A full write would have cleared a NULL column's attribute; a partial one must say so.
        clear_nulls: partial_image && table.override_mode == OverrideMode::Full,
    })
    .map_err(|e| TransformError::BadValue {
        table: table.table.clone(),
        column: "(attributes)".into(),
        reason: e.to_string(),
    })?;
    Ok(ReltioWrite {
        key: key.clone(),
        op: WriteOp::Post {
            body: EntityBody {
                entity_type: table.entity_type.clone(),
                attributes,
                crosswalks: vec![key.crosswalk()],
            },
            partial: partial_image || table.override_mode == OverrideMode::Partial,
        },
    })
}

/// A partial write replaces a nested (or reference) attribute whole (Reltio's default without
/// `enableNestedPartialOverride`): one whose columns the image holds only in part would lose the others' values.
fn refuse_partial_nested(table: &TableMapping, values: &[Mapped]) -> Result<(), TransformError> {
    for node in &table.attributes {
        if let AttributeTarget::Nested(_) = node.target {
            let mut columns = Vec::new();
            node.columns(&mut columns);
            let (absent, held): (Vec<usize>, Vec<usize>) = columns
                .into_iter()
                .partition(|&i| values[i] == Mapped::Absent);
            if !absent.is_empty() && !held.is_empty() {
                let names = |ids: &[usize]| -> String {
                    let names: Vec<&str> = ids
                        .iter()
                        .map(|&i| table.columns[i].column.as_str())
                        .collect();
                    names.join(", ")
                };
                return Err(TransformError::PartialImage {
                    table: table.table.clone(),
                    reason: format!(
                        "the image holds column(s) {} of attribute {} but lacks {}: a partial write would replace \
                         {} whole and lose them (send full images: see the README)",
                        names(&held),
                        node.name,
                        names(&absent),
                        node.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A row's attributes in Reltio's shape, serialised straight from the mapped values: each attribute
/// `[{"value": ...}]`, a nested one holding its sub-attributes in `value`, a reference attribute also its
/// `refEntity` and `refRelation` (crosswalk: the row's key plus the reference's suffix). An attribute with no
/// value anywhere beneath it is left out, or, with `clear_nulls`, sent as `[]` unless the image lacks it.
struct AttributesOf<'a> {
    table: &'a TableMapping,
    key: &'a CrosswalkKey,
    nodes: &'a [AttributeNode],
    values: &'a [Mapped<'a>],
    /// References are top-level attributes only.
    top_level: bool,
    /// A top-level attribute whose columns are NULL is sent empty, to clear it under a partial write.
    clear_nulls: bool,
}

impl AttributesOf<'_> {
    /// Whether a value is beneath the node.
    fn has_value(&self, node: &AttributeNode) -> bool {
        match &node.target {
            AttributeTarget::Column(i) => self.values[*i].text().is_some(),
            AttributeTarget::Nested(children) => children.iter().any(|c| self.has_value(c)),
        }
    }

    /// Whether the image holds a column beneath the node (a value or NULL).
    fn held(&self, node: &AttributeNode) -> bool {
        match &node.target {
            AttributeTarget::Column(i) => self.values[*i] != Mapped::Absent,
            AttributeTarget::Nested(children) => children.iter().any(|c| self.held(c)),
        }
    }
}

impl Serialize for AttributesOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for node in self.nodes {
            if self.has_value(node) {
                let element = AttributeElement { of: self, node };
                map.serialize_entry(&node.name, &[element])?;
            } else if self.clear_nulls && self.top_level && self.held(node) {
                map.serialize_entry(&node.name, &[] as &[(); 0])?;
            }
        }
        map.end()
    }
}

/// The one element of an attribute's array.
struct AttributeElement<'a> {
    of: &'a AttributesOf<'a>,
    node: &'a AttributeNode,
}

impl Serialize for AttributeElement<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match &self.node.target {
            AttributeTarget::Column(i) => {
                map.serialize_entry("value", &self.of.values[*i].text())?
            }
            AttributeTarget::Nested(children) => map.serialize_entry(
                "value",
                &AttributesOf {
                    nodes: children,
                    top_level: false,
                    ..*self.of
                },
            )?,
        }
        let reference = self.of.table.references.get(&self.node.name);
        if let Some(reference) = reference.filter(|_| self.of.top_level) {
            let key = self.of.key;
            let mut value =
                String::with_capacity(key.value.len() + reference.crosswalk_suffix.len());
            value.push_str(&key.value);
            value.push_str(&reference.crosswalk_suffix);
            let crosswalks = [Crosswalk {
                value,
                ..key.crosswalk()
            }];
            map.serialize_entry(
                "refEntity",
                &Reference {
                    type_uri: &reference.entity_type,
                    crosswalks: &crosswalks,
                },
            )?;
            map.serialize_entry(
                "refRelation",
                &Reference {
                    type_uri: &reference.relation_type,
                    crosswalks: &crosswalks,
                },
            )?;
        }
        map.end()
    }
}

/// `{"type": type_uri, "crosswalks": crosswalks}`.
#[derive(Serialize)]
struct Reference<'a> {
    #[serde(rename = "type")]
    type_uri: &'a str,
    crosswalks: &'a [Crosswalk],
}
