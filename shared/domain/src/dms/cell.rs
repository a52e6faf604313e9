//! A column value as the source wrote it, read from its JSON text (`RawValue`): a number keeps its digits (no float
//! stands between the record and Reltio), a string is borrowed from the record unless it holds an escape.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// A column value as the source rendered it.
#[derive(Debug, Clone)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    /// A JSON number's text, exactly as written (`98765432109876.54321012`, `123456789012345678901234`,
    /// `1.2345678901234567E+23`).
    Number(Cow<'a, str>),
    Text(Cow<'a, str>),
    /// An object or array (JSON columns of some sources), kept as its JSON text: rare, and only ever rendered.
    Json(Cow<'a, str>),
}

impl Cell<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// The value as text; NULL is absent. Text and numbers are borrowed: they are transformed or copied once
    /// into the body, digit for digit.
    pub fn render(&self) -> Option<Cow<'_, str>> {
        match self {
            Cell::Null => None,
            Cell::Text(s) | Cell::Number(s) => Some(Cow::Borrowed(s)),
            Cell::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Cell::Json(json) => Some(Cow::Owned(compact(json))),
        }
    }

    /// The same value as a `serde_json::Value` (numbers as `serde_json` reads them: beyond a float's digits they
    /// are rounded, so the planner never uses this).
    pub fn to_value(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Number(n) => serde_json::from_str(n).unwrap_or(Value::Null),
            Cell::Text(s) => Value::String(s.to_string()),
            Cell::Json(json) => serde_json::from_str(json).unwrap_or(Value::Null),
        }
    }
}

/// JSON text without the whitespace between its tokens (a pretty-printed record's JSON column renders as the
/// one-line text a compact record gives), strings and numbers untouched.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Cells are equal when they are the same value: numbers digit for digit (`1.0` is not `1`), JSON columns as
/// JSON (whitespace aside).
impl PartialEq for Cell<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Bool(a), Cell::Bool(b)) => a == b,
            (Cell::Number(a), Cell::Number(b)) | (Cell::Text(a), Cell::Text(b)) => a == b,
            (Cell::Json(a), Cell::Json(b)) => compact(a) == compact(b),
            _ => false,
        }
    }
}

impl PartialEq<Value> for Cell<'_> {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Cell::Null, Value::Null) => true,
            (Cell::Bool(a), Value::Bool(b)) => a == b,
            (Cell::Number(a), Value::Number(b)) => *a == b.to_string(),
            (Cell::Text(a), Value::String(b)) => a == b,
            (Cell::Json(_), b) => self.to_value() == *b,
            _ => false,
        }
    }
}

impl Cell<'_> {
    /// The same value, no longer borrowing.
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Bool(b) => Cell::Bool(b),
            Cell::Number(n) => Cell::Number(Cow::Owned(n.into_owned())),
            Cell::Text(s) => Cell::Text(Cow::Owned(s.into_owned())),
            Cell::Json(j) => Cell::Json(Cow::Owned(j.into_owned())),
        }
    }
}

impl From<Value> for Cell<'static> {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(b),
            Value::Number(n) => Cell::Number(Cow::Owned(n.to_string())),
            Value::String(s) => Cell::Text(Cow::Owned(s)),
            other => Cell::Json(Cow::Owned(other.to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for Cell<'de> {
    /// Through the value's JSON text: a number's digits are kept as written (a `deserialize_any` visitor only
    /// ever sees them as an `f64` or a 64-bit integer), a string is borrowed unless it holds an escape.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        Cell::of_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

impl<'a> Cell<'a> {
    /// The cell of one JSON value's text (as a `RawValue` holds it: valid JSON, no surrounding whitespace).
    pub(crate) fn of_json(json: &'a str) -> Result<Cell<'a>, serde_json::Error> {
        Ok(match json.as_bytes().first() {
            Some(b'n') => Cell::Null,
            Some(b't') => Cell::Bool(true),
            Some(b'f') => Cell::Bool(false),
            Some(b'"') => {
                let inner = &json[1..json.len() - 1];
                if inner.contains('\\') {
                    Cell::Text(Cow::Owned(serde_json::from_str(json)?))
                } else {
                    Cell::Text(Cow::Borrowed(inner))
                }
            }
            Some(b'{' | b'[') => Cell::Json(Cow::Borrowed(json)),
            _ => Cell::Number(Cow::Borrowed(json)),
        })
    }
}
