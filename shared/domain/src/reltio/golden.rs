//! An entity snapshot read as crm-updater plans from it: of each attribute only its golden value (the first
//! value marked `ov: true`, nested attributes alike), of each crosswalk its type, value and whether it is
//! end-dated. Reltio sends a `type` and a `uri` with every value, every value (golden or not) of every
//! attribute, and dates and attribute lists with every crosswalk: most of a snapshot's text. Building them into
//! a tree only to drop them was most of the cost of planning a batch.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use std::fmt;

/// A snapshot's `attributes`: per attribute name its golden value (`Null` when it has none), a nested
/// attribute's value being itself such a map. [`GoldenAttributes::golden_value`] gives for any path what
/// [`golden_value`](super::golden_value) gives over the full tree (for a nested attribute, its leaner map). Accepts and rejects
/// exactly what a `Value` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GoldenAttributes(Map<String, Value>);

impl GoldenAttributes {
    /// The golden value at a dotted attribute path (`Email.Email`), `None` when there is none or it is null.
    pub fn golden_value(&self, path: &str) -> Option<&Value> {
        let mut current = &self.0;
        let mut segments = path.split('.').peekable();
        while let Some(segment) = segments.next() {
            let value = current.get(segment)?;
            if segments.peek().is_none() {
                return Some(value).filter(|v| !v.is_null());
            }
            current = value.as_object()?;
        }
        None
    }

    /// The golden values of attributes already parsed into a full tree (a fetched entity's).
    pub fn from_value(attributes: Value) -> GoldenAttributes {
        // Reading a `Value` cannot fail: every shape is accepted.
        GoldenAttributes::deserialize(attributes).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for GoldenAttributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Lean::Attributes.deserialize(d)? {
            Part::Attributes(map) => GoldenAttributes(map),
            _ => GoldenAttributes::default(),
        })
    }
}

/// One crosswalk: what names the source record and whether it is live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeanCrosswalk {
    /// The source type (`configuration/sources/SFDC_CONTACT`), when a string.
    pub source_type: Option<String>,
    /// The source record's id, when a string.
    pub value: Option<String>,
    /// `sourceTable`, when a string (part of the crosswalk's identity).
    pub source_table: Option<String>,
    /// `deleteDate` is set: the crosswalk is end-dated.
    pub end_dated: bool,
}

/// A snapshot's `crosswalks`: the elements shaped like crosswalks, in order. Accepts and rejects exactly what a
/// `Value` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeanCrosswalks(pub Vec<LeanCrosswalk>);

impl LeanCrosswalks {
    /// The crosswalks of a full tree (a fetched entity's).
    pub fn from_value(crosswalks: Value) -> LeanCrosswalks {
        LeanCrosswalks::deserialize(crosswalks).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for LeanCrosswalks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Lean::Crosswalks.deserialize(d)? {
            Part::Crosswalks(list) => LeanCrosswalks(list),
            _ => LeanCrosswalks::default(),
        })
    }
}

/// An entity as crm-updater plans from it, from an event's snapshot or a fetched entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntitySnapshot {
    pub uri: Option<String>,
    pub entity_type: Option<String>,
    pub updated_time: Option<i64>,
    pub attributes: GoldenAttributes,
    pub crosswalks: LeanCrosswalks,
}

impl EntitySnapshot {
    /// A fetched entity (`GET /entities/{id}`): fields of another type than expected are taken as absent.
    pub fn from_entity(entity: Value) -> EntitySnapshot {
        let Value::Object(mut entity) = entity else {
            return EntitySnapshot::default();
        };
        let mut text = |key: &str| match entity.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        EntitySnapshot {
            uri: text("uri"),
            entity_type: text("type"),
            updated_time: entity.get("updatedTime").and_then(Value::as_i64),
            attributes: entity
                .remove("attributes")
                .map(GoldenAttributes::from_value)
                .unwrap_or_default(),
            crosswalks: entity
                .remove("crosswalks")
                .map(LeanCrosswalks::from_value)
                .unwrap_or_default(),
        }
    }
}

/// What the part being read is expected to be.
#[derive(Clone, Copy)]
enum Lean {
    /// `{"Name": [value, ...], ...}`
    Attributes,
    /// `[value, ...]`: the values of one attribute.
    Values,
    /// `{"type": ..., "ov": true, "value": ..., "uri": ...}`: one value.
    Entry,
    /// A value's `value`: nested attributes, or a simple value kept whole.
    Value,
    /// `[crosswalk, ...]`
    Crosswalks,
    /// `{"type": ..., "value": ..., "uri": ..., "createDate": ..., ...}`: one crosswalk.
    Crosswalk,
}

/// What was read.
enum Part {
    /// A golden value (from `Values`, `Entry` and `Value`).
    Value(Value),
    Attributes(Map<String, Value>),
    Crosswalks(Vec<LeanCrosswalk>),
    Crosswalk(LeanCrosswalk),
    /// A value not marked golden, or a part not shaped as expected: what the full tree's reader skips.
    Nothing,
}

impl<'de> DeserializeSeed<'de> for Lean {
    type Value = Part;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Part, D::Error> {
        d.deserialize_any(self)
    }
}

impl Lean {
    /// A scalar where this part was expected.
    fn scalar(self, value: Value) -> Part {
        match self {
            Lean::Value => Part::Value(value),
            _ => Part::Nothing,
        }
    }
}

/// Reads an attributes map: each attribute's golden value, `Null` when it has none (a name given twice keeps
/// its last values, as in a `Value`).
fn attributes<'de, A: MapAccess<'de>>(mut map: A) -> Result<Map<String, Value>, A::Error> {
    let mut object = Map::new();
    while let Some(name) = map.next_key::<String>()? {
        let golden = match map.next_value_seed(Lean::Values)? {
            Part::Value(v) => v,
            _ => Value::Null,
        };
        object.insert(name, golden);
    }
    Ok(object)
}

/// Reads a text field as a `Value` does, keeping it only when it is a string.
fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<String>, A::Error> {
    Ok(match map.next_value::<Value>()? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

impl<'de> Visitor<'de> for Lean {
    type Value = Part;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part, A::Error> {
        match self {
            Lean::Attributes => Ok(Part::Attributes(attributes(map)?)),
            Lean::Value => Ok(Part::Value(Value::Object(attributes(map)?))),
            Lean::Entry => {
                let (mut ov, mut value) = (false, Value::Null);
                while let Some(key) = map.next_key::<KeyName>()? {
                    match key {
                        KeyName::Ov => ov = map.next_value::<Value>()? == Value::Bool(true),
                        KeyName::Value => {
                            value = match map.next_value_seed(Lean::Value)? {
                                Part::Value(v) => v,
                                _ => Value::Null,
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(if ov {
                    Part::Value(value)
                } else {
                    Part::Nothing
                })
            }
            Lean::Crosswalk => {
                let mut crosswalk = LeanCrosswalk::default();
                while let Some(key) = map.next_key::<KeyName>()? {
                    match key {
                        KeyName::Type => crosswalk.source_type = text(&mut map)?,
                        KeyName::Value => crosswalk.value = text(&mut map)?,
                        KeyName::SourceTable => crosswalk.source_table = text(&mut map)?,
                        KeyName::DeleteDate => {
                            crosswalk.end_dated = !map.next_value::<Value>()?.is_null()
                        }
                        KeyName::Ov | KeyName::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Part::Crosswalk(crosswalk))
            }
            // Not shaped as expected: read (so that what a `Value` rejects is rejected) and skipped.
            Lean::Values | Lean::Crosswalks => {
                while map.next_key::<IgnoredAny>()?.is_some() {
                    map.next_value::<Value>()?;
                }
                Ok(Part::Nothing)
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Part, A::Error> {
        match self {
            Lean::Values => {
                // The first value marked `ov: true` is the golden one; the rest are read and dropped.
                let mut golden = None;
                while let Some(part) = seq.next_element_seed(Lean::Entry)? {
                    if let (None, Part::Value(v)) = (&golden, part) {
                        golden = Some(v);
                    }
                }
                Ok(golden.map_or(Part::Nothing, Part::Value))
            }
            Lean::Crosswalks => {
                let mut list = Vec::new();
                while let Some(part) = seq.next_element_seed(Lean::Crosswalk)? {
                    if let Part::Crosswalk(c) = part {
                        list.push(c);
                    }
                }
                Ok(Part::Crosswalks(list))
            }
            Lean::Value => {
                let mut array = Vec::new();
                while let Some(value) = seq.next_element()? {
                    array.push(value);
                }
                Ok(Part::Value(Value::Array(array)))
            }
            Lean::Attributes | Lean::Entry | Lean::Crosswalk => {
                while seq.next_element::<Value>()?.is_some() {}
                Ok(Part::Nothing)
            }
        }
    }

    fn visit_bool<E>(self, b: bool) -> Result<Part, E> {
        Ok(self.scalar(Value::Bool(b)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Part, E> {
        Ok(self.scalar(Value::Number(n.into())))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Part, E> {
        Ok(self.scalar(Value::Number(n.into())))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Part, E> {
        // As `Value` does: a float JSON cannot hold becomes null.
        Ok(self.scalar(Number::from_f64(n).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Part, E> {
        Ok(self.scalar(Value::String(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Part, E> {
        Ok(self.scalar(Value::String(s)))
    }
    fn visit_unit<E>(self) -> Result<Part, E> {
        Ok(self.scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Part, E> {
        Ok(self.scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Part, D::Error> {
        self.deserialize(d)
    }
}

/// The keys that are kept; every other key is skipped without being built.
enum KeyName {
    Ov,
    Value,
    Type,
    DeleteDate,
    SourceTable,
    Other,
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, s: &str) -> Result<KeyName, E> {
                Ok(match s {
                    "ov" => KeyName::Ov,
                    "value" => KeyName::Value,
                    "type" => KeyName::Type,
                    "deleteDate" => KeyName::DeleteDate,
                    "sourceTable" => KeyName::SourceTable,
                    _ => KeyName::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests;
