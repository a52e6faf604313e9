//! A snapshot read as the golden-value readers need it: of each attribute value only its `ov` flag and its
//! `value` (nested attributes alike), and only the values marked `ov: true`; of each crosswalk its identity and
//! liveness. Reltio sends a `type` and a `uri` with every value and dates and attribute lists with every
//! crosswalk, most of a snapshot's text; building them into a tree only to drop them was most of the cost of
//! parsing an event in crm-updater.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use std::fmt;

/// A snapshot's `attributes`, keeping what [`golden_value`](super::golden_value) reads and nothing else: for any
/// path to a simple attribute it gives the same golden value as the full tree (a nested attribute's own value is
/// the leaner tree). Accepts and rejects exactly what a `Value` does; a part not shaped like attributes is kept
/// whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GoldenAttributes(pub Value);

impl<'de> Deserialize<'de> for GoldenAttributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lean::Attributes.deserialize(d).map(GoldenAttributes)
    }
}

/// A snapshot's `crosswalks`, each with only its `type`, `value`, `sourceTable` and `deleteDate` (what names the
/// source record and says whether it is live). Accepts and rejects exactly what a `Value` does; a part not shaped
/// like crosswalks is kept whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeanCrosswalks(pub Value);

impl<'de> Deserialize<'de> for LeanCrosswalks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lean::Crosswalks.deserialize(d).map(LeanCrosswalks)
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
    Value,
    /// `[crosswalk, ...]`
    Crosswalks,
    /// `{"type": ..., "value": ..., "uri": ..., "createDate": ..., ...}`: one crosswalk.
    Crosswalk,
}

impl<'de> DeserializeSeed<'de> for Lean {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lean {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        match self {
            Lean::Attributes => {
                while let Some(name) = map.next_key::<String>()? {
                    let values = map.next_value_seed(Lean::Values)?;
                    object.insert(name, values);
                }
            }
            Lean::Value => {
                while let Some(key) = map.next_key::<KeyName>()? {
                    match key {
                        KeyName::Ov => {
                            object.insert("ov".into(), map.next_value()?);
                        }
                        KeyName::Value => {
                            let value = map.next_value_seed(Lean::Attributes)?;
                            object.insert("value".into(), value);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            Lean::Crosswalk => {
                while let Some(key) = map.next_key::<KeyName>()? {
                    let name = match key {
                        KeyName::Type => "type",
                        KeyName::Value => "value",
                        KeyName::SourceTable => "sourceTable",
                        KeyName::DeleteDate => "deleteDate",
                        KeyName::Ov | KeyName::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    object.insert(name.into(), map.next_value()?);
                }
            }
            // Not shaped as expected: kept whole.
            Lean::Values | Lean::Crosswalks => {
                while let Some(key) = map.next_key::<String>()? {
                    object.insert(key, map.next_value()?);
                }
            }
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut array = Vec::new();
        match self {
            Lean::Values => {
                while let Some(value) = seq.next_element_seed(Lean::Value)? {
                    // A value not marked `ov: true` is never golden.
                    let golden = value.get("ov").and_then(Value::as_bool) == Some(true);
                    if golden || !value.is_object() {
                        array.push(value);
                    }
                }
            }
            Lean::Crosswalks => {
                while let Some(crosswalk) = seq.next_element_seed(Lean::Crosswalk)? {
                    array.push(crosswalk);
                }
            }
            Lean::Attributes | Lean::Value | Lean::Crosswalk => {
                while let Some(value) = seq.next_element()? {
                    array.push(value);
                }
            }
        }
        Ok(Value::Array(array))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // As `Value` does: a float JSON cannot hold becomes null.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
}

/// The keys that are kept; every other key is skipped without being built.
enum KeyName {
    Ov,
    Value,
    Type,
    SourceTable,
    DeleteDate,
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
                    "sourceTable" => KeyName::SourceTable,
                    "deleteDate" => KeyName::DeleteDate,
                    _ => KeyName::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reltio::golden_value;
    use serde_json::json;

    fn snapshot_attributes() -> Value {
        json!({
            "FirstName": [
                {"type": "configuration/entityTypes/Individual/attributes/FirstName", "ov": false,
                 "value": "Old", "uri": "entities/1/attributes/FirstName/a"},
                {"type": "configuration/entityTypes/Individual/attributes/FirstName", "ov": true,
                 "value": " Ann ", "uri": "entities/1/attributes/FirstName/b"}
            ],
            "Age": [{"value": 41, "ov": true, "uri": "u"}],
            "Score": [{"value": 1.5, "ov": true}],
            "Vip": [{"ov": true, "value": true}],
            "Gone": [{"ov": true, "value": null}],
            "NoOv": [{"value": "x"}],
            "OvLast": [{"type": "t", "value": "late", "uri": "u", "ov": true}],
            "Address": [{
                "type": "configuration/entityTypes/Individual/attributes/Address", "ov": true,
                "uri": "entities/1/attributes/Address/c", "label": "Oslo",
                "refEntity": {"type": "configuration/entityTypes/Location", "objectURI": "entities/L"},
                "value": {
                    "City": [{"type": "t", "ov": true, "value": "Oslo", "uri": "u"}],
                    "Zip": [{"type": "t", "ov": false, "value": "0150", "uri": "u"},
                            {"type": "t", "ov": true, "value": "0151", "uri": "u"}],
                    "Lines": [{"ov": true, "value": ["a", {"b": 1}]}]
                }
            }],
            "Odd": "not an array",
            "OddValues": [1, "two", [3]],
            "Dupe": [{"ov": true, "value": "first"}],
            "Escaped\u{e9}\"": [{"ov": true, "value": "q\"\\\u{1F600}"}]
        })
    }

    fn lean(v: &Value) -> Value {
        serde_json::from_str::<GoldenAttributes>(&v.to_string())
            .unwrap()
            .0
    }

    #[test]
    fn every_path_has_the_golden_value_of_the_full_tree() {
        let full = snapshot_attributes();
        let lean = lean(&full);
        for path in [
            "FirstName",
            "Age",
            "Score",
            "Vip",
            "Gone",
            "NoOv",
            "OvLast",
            "Address",
            "Address.City",
            "Address.Zip",
            "Address.Lines",
            "Address.Missing",
            "Odd",
            "OddValues",
            "Dupe",
            "Escaped\u{e9}\"",
            "Missing",
        ] {
            let (want, got) = (golden_value(&full, path), golden_value(&lean, path));
            match path {
                // The nested value itself is leaner; its golden values are compared above.
                "Address" => assert!(got.is_some_and(Value::is_object), "{path}"),
                _ => assert_eq!(got, want, "{path}"),
            }
        }
        assert_eq!(
            golden_value(&lean, "FirstName"),
            Some(&json!(" Ann ")),
            "the golden value, not the first"
        );
        assert_eq!(golden_value(&lean, "OvLast"), Some(&json!("late")));
    }

    #[test]
    fn only_ov_and_value_of_golden_values_are_kept() {
        let lean = lean(&snapshot_attributes());
        assert_eq!(lean["FirstName"], json!([{"ov": true, "value": " Ann "}]));
        assert_eq!(
            lean["Address"],
            json!([{"ov": true, "value": {
                "City": [{"ov": true, "value": "Oslo"}],
                "Zip": [{"ov": true, "value": "0151"}],
                "Lines": [{"ov": true, "value": ["a", {"b": 1}]}]
            }}])
        );
        assert_eq!(lean["NoOv"], json!([]));
        // Not shaped like attributes: kept as they are.
        assert_eq!(lean["Odd"], json!("not an array"));
        assert_eq!(lean["OddValues"], json!([1, "two", [3]]));
    }

    #[test]
    fn crosswalks_keep_their_identity_and_liveness_only() {
        let full = json!([
            {"type": "configuration/sources/SFDC_CONTACT", "value": "003A", "uri": "entities/1/crosswalks/a",
             "createDate": "2024-07-29T00:58:17.983Z", "updateDate": "2024-07-29T00:58:17.983Z",
             "attributes": ["entities/1/attributes/FirstName/b"], "singleAttributeUpdateDates": {}},
            {"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER",
             "deleteDate": "2024-08-01T00:00:00.000Z", "reltioLoadDate": "x"},
            "odd",
            [1]
        ]);
        let lean = serde_json::from_str::<LeanCrosswalks>(&full.to_string())
            .unwrap()
            .0;
        assert_eq!(
            lean,
            json!([
                {"type": "configuration/sources/SFDC_CONTACT", "value": "003A"},
                {"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER",
                 "deleteDate": "2024-08-01T00:00:00.000Z"},
                "odd",
                [1]
            ])
        );
        let not_an_array = json!({"type": "t", "uri": "u"});
        let kept = serde_json::from_str::<LeanCrosswalks>(&not_an_array.to_string()).unwrap();
        assert_eq!(kept.0, not_an_array);
    }

    #[test]
    fn accepts_and_rejects_exactly_what_a_value_does() {
        for text in [
            "{}",
            "[]",
            "null",
            "7",
            "-7",
            "1e400",
            "\"s\"",
            r#"{"A": {"x": 1}}"#,
            r#"{"A": [{"ov": true, "value": {"B": 3}}]}"#,
            r#"{"A": [{"ov": true}], "A": []}"#,
            r#"{"A": [}"#,
            r#"{"A": [{"ov": true, "value": "x"}]"#,
            r#"{"A": [{"ov": tru}]}"#,
            r#"{"A": [{"type": "\u12"}]}"#,
            r#"[{"type": "t", "uri": "\u12"}]"#,
            r#"[{"type": "t", "attributes": [1, 2}]"#,
            r#"[{"type": "t", "value": "v", "createDate": 1}]"#,
            "",
        ] {
            let value = serde_json::from_str::<Value>(text);
            let ours = serde_json::from_str::<GoldenAttributes>(text);
            assert_eq!(ours.is_ok(), value.is_ok(), "{text}");
            let crosswalks = serde_json::from_str::<LeanCrosswalks>(text);
            assert_eq!(crosswalks.is_ok(), value.is_ok(), "{text}");
            if let (Ok(ours), Ok(value)) = (ours, value) {
                if !value.is_object() {
                    assert_eq!(ours.0, value, "{text}");
                }
            }
        }
        // A key given twice keeps its last value, as in a `Value`.
        let twice = serde_json::from_str::<GoldenAttributes>(
            r#"{"A": [{"ov": true, "value": 1}], "A": [{"ov": true, "value": 2}]}"#,
        )
        .unwrap();
        assert_eq!(golden_value(&twice.0, "A"), Some(&json!(2)));
    }
}
