//! A DMS record decoded in one pass straight from its bytes, borrowing the column names and values it can
//! (no `serde_json::Value` tree per record): rows as short lists of columns, and a lenient first stage that
//! records what each part of the record *is*, so that `DmsRecord::parse` can judge its shape afterwards with
//! the same reasons a tree parse gives. Column values are [`Cell`]s read from their JSON text, so a number keeps
//! the digits the source wrote.

use super::Cell;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;

/// One row: its columns in the order DMS wrote them. A handful of columns: a scan beats a map.
#[derive(Debug, Clone, Default)]
pub struct Row<'a> {
    columns: Vec<(Cow<'a, str>, Cell<'a>)>,
}

static NULL: Cell<'static> = Cell::Null;

/// Rows are equal as JSON objects are: the same columns with the same (last) values, in any order.
impl PartialEq for Row<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &Row, b: &Row| a.columns().all(|(name, _)| a.get(name) == b.get(name));
        same(self, other) && same(other, self)
    }
}

impl<'a> Row<'a> {
    /// The columns, taken out in order.
    pub(crate) fn into_columns(self) -> impl Iterator<Item = (Cow<'a, str>, Cell<'a>)> {
        self.columns.into_iter()
    }

    /// Adds a column at the end (a name already there is shadowed: the last value counts).
    pub(crate) fn push(&mut self, name: Cow<'a, str>, cell: Cell<'a>) {
        self.columns.push((name, cell));
    }

    /// Sets every column of `other`, replacing a value when present (an image overlaid on another).
    pub(crate) fn overlay(&mut self, other: Row<'a>) {
        for (name, cell) in other.columns {
            match self.columns.iter_mut().rev().find(|(n, _)| *n == name) {
                Some((_, c)) => *c = cell,
                None => self.columns.push((name, cell)),
            }
        }
    }

    /// The column's value. A column written twice has its last value, as a JSON object parse would give.
    pub fn get(&self, column: &str) -> Option<&Cell<'a>> {
        self.columns
            .iter()
            .rev()
            .find(|(name, _)| name == column)
            .map(|(_, cell)| cell)
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    pub fn columns(&self) -> impl Iterator<Item = (&str, &Cell<'a>)> {
        self.columns.iter().map(|(n, c)| (n.as_ref(), c))
    }

    /// The row as a JSON object, as a `serde_json::Value` tree parse of it reads (a column written twice has its
    /// last value; numbers as `Cell::to_value` gives them).
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.columns
                .iter()
                .map(|(name, cell)| (name.to_string(), cell.to_value()))
                .collect(),
        )
    }
}

impl Row<'_> {
    /// The same row, no longer borrowing.
    pub fn into_owned(self) -> Row<'static> {
        Row {
            columns: self
                .columns
                .into_iter()
                .map(|(name, cell)| (Cow::Owned(name.into_owned()), cell.into_owned()))
                .collect(),
        }
    }

    /// Sets a column (replacing its value when present).
    pub fn set(&mut self, column: String, cell: Cell<'static>) {
        match self.columns.iter_mut().find(|(n, _)| n.as_ref() == column) {
            Some((_, c)) => *c = cell,
            None => self.columns.push((Cow::Owned(column), cell)),
        }
    }
}

impl<'a> std::ops::Index<&str> for Row<'a> {
    type Output = Cell<'a>;

    /// The column's value; `Cell::Null` when absent (as indexing a JSON object gives `null`).
    fn index(&self, column: &str) -> &Cell<'a> {
        self.get(column).unwrap_or(&NULL)
    }
}

impl From<serde_json::Map<String, Value>> for Row<'static> {
    fn from(object: serde_json::Map<String, Value>) -> Self {
        Row {
            columns: object
                .into_iter()
                .map(|(name, value)| (Cow::Owned(name), value.into()))
                .collect(),
        }
    }
}

/// What a part of the record was: absent, `null`, what was wanted, or something else.
#[derive(Debug, Default)]
pub(crate) enum Slot<T> {
    #[default]
    Absent,
    Null,
    Found(T),
    Wrong,
}

/// The record's parts as found, not yet judged.
// One lives on the stack per parse and is taken apart at once: boxing the large variant would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum RawRecord<'a> {
    NotObject,
    Object {
        data: Slot<Row<'a>>,
        before_image: Slot<Row<'a>>,
        metadata: Slot<RawMetadata<'a>>,
    },
}

/// The metadata keys the record's meaning depends on; DMS's other keys are skipped.
#[derive(Debug, Default)]
pub(super) struct RawMetadata<'a> {
    pub record_type: Slot<Cow<'a, str>>,
    pub operation: Slot<Cow<'a, str>>,
    pub schema_name: Slot<Cow<'a, str>>,
    pub table_name: Slot<Cow<'a, str>>,
    pub timestamp: Slot<Cow<'a, str>>,
    pub commit_timestamp: Slot<Cow<'a, str>>,
    pub stream_position: Slot<Cow<'a, str>>,
    pub transaction_id: Slot<Cow<'a, str>>,
    pub transaction_record_id: Slot<Cow<'a, str>>,
    pub partition_key_value: Slot<Cow<'a, str>>,
}

/// A row from the JSON text of an object (`Slot::Null` for `null`, `Slot::Wrong` for any other value), its
/// values read as a DMS record's are: the change-event decoders of other formats read their rows with it.
pub(crate) fn row_of_json(json: &str) -> Result<Slot<Row<'_>>, serde_json::Error> {
    serde_json::from_str(json)
}

/// Decodes `bytes` into its parts. An error here is a JSON syntax error; every shape question is left to the
/// caller.
pub(super) fn decode<'a>(
    bytes: &'a [u8],
    before_image_field: &str,
) -> Result<RawRecord<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let record = RecordSeed { before_image_field }.deserialize(&mut de)?;
    de.end()?;
    Ok(record)
}

struct RecordSeed<'f> {
    before_image_field: &'f str,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = RawRecord<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRecord<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = RawRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a DMS record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecord<'de>, A::Error> {
        let (mut data, mut before_image, mut metadata) = (Slot::Absent, Slot::Absent, Slot::Absent);
        // A key given twice keeps its last value, as a JSON object parse would.
        while let Some(Text(key)) = map.next_key::<Text>()? {
            if key == "data" {
                data = map.next_value::<Slot<Row>>()?;
            } else if key == "metadata" {
                metadata = map.next_value::<Slot<RawMetadata>>()?;
            } else if key == self.before_image_field {
                before_image = map.next_value::<Slot<Row>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(RawRecord::Object {
            data,
            before_image,
            metadata,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawRecord<'de>, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(RawRecord::NotObject)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawRecord<'de>, E> {
        Ok(RawRecord::NotObject)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<RawRecord<'de>, E> {
        Ok(RawRecord::NotObject)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<RawRecord<'de>, E> {
        Ok(RawRecord::NotObject)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawRecord<'de>, E> {
        Ok(RawRecord::NotObject)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<RawRecord<'de>, E> {
        Ok(RawRecord::NotObject)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<RawRecord<'de>, E> {
        Ok(RawRecord::NotObject)
    }
}

/// Parts whose wanted form is a JSON object.
trait FromObject<'de>: Sized {
    fn from_object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de> FromObject<'de> for Row<'de> {
    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut columns = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Text(name)) = map.next_key::<Text>()? {
            columns.push((name, map.next_value::<Cell>()?));
        }
        Ok(Row { columns })
    }
}

impl<'de> FromObject<'de> for RawMetadata<'de> {
    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut m = RawMetadata::default();
        while let Some(Text(key)) = map.next_key::<Text>()? {
            let slot = match key.as_ref() {
                "record-type" => &mut m.record_type,
                "operation" => &mut m.operation,
                "schema-name" => &mut m.schema_name,
                "table-name" => &mut m.table_name,
                "timestamp" => &mut m.timestamp,
                "commit-timestamp" => &mut m.commit_timestamp,
                "stream-position" => &mut m.stream_position,
                "transaction-id" => &mut m.transaction_id,
                "transaction-record-id" => &mut m.transaction_record_id,
                "partition-key-value" => &mut m.partition_key_value,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Slot<MetadataText>>()?.map(|t| t.0);
        }
        Ok(m)
    }
}

impl<T> Slot<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Slot<U> {
        match self {
            Slot::Absent => Slot::Absent,
            Slot::Null => Slot::Null,
            Slot::Found(t) => Slot::Found(f(t)),
            Slot::Wrong => Slot::Wrong,
        }
    }
}

impl<'de, T: FromObject<'de>> Deserialize<'de> for Slot<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectSlot(std::marker::PhantomData))
    }
}

struct ObjectSlot<T>(std::marker::PhantomData<T>);

impl<'de, T: FromObject<'de>> Visitor<'de> for ObjectSlot<T> {
    type Value = Slot<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot<T>, A::Error> {
        T::from_object(map).map(Slot::Found)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Slot<T>, E> {
        Ok(Slot::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Slot<T>, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(Slot::Wrong)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Slot<T>, E> {
        Ok(Slot::Wrong)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Slot<T>, E> {
        Ok(Slot::Wrong)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Slot<T>, E> {
        Ok(Slot::Wrong)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Slot<T>, E> {
        Ok(Slot::Wrong)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Slot<T>, E> {
        Ok(Slot::Wrong)
    }
}

/// A metadata value as text: DMS writes ids as numbers or strings depending on the source.
struct MetadataText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Slot<MetadataText<'de>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MetadataTextSlot)
    }
}

struct MetadataTextSlot;

impl<'de> Visitor<'de> for MetadataTextSlot {
    type Value = Slot<MetadataText<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Slot::Found(MetadataText(Cow::Borrowed(s))))
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Slot::Found(MetadataText(Cow::Owned(s.to_owned()))))
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Slot::Found(MetadataText(Cow::Owned(n.to_string()))))
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Slot::Found(MetadataText(Cow::Owned(n.to_string()))))
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(match Number::from_f64(n) {
            Some(n) => Slot::Found(MetadataText(Cow::Owned(n.to_string()))),
            None => Slot::Null,
        })
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Slot::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Slot::Wrong)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(Slot::Wrong)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(Slot::Wrong)
    }
}

/// A key or name, borrowed from the record's bytes unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(s)))
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(s)))
    }
}
