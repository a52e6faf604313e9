//! The lean snapshot against the full tree: the same golden values and crosswalks, the same inputs accepted.

use super::*;
use crate::reltio::event::EventObject;
use crate::reltio::golden_value;
use serde_json::json;

fn snapshot_attributes() -> Value {
    json!({
        "FirstName": [
            {"type": "configuration/entityTypes/Individual/attributes/FirstName", "ov": false,
             "value": "Old", "uri": "entities/1/attributes/FirstName/a"},
            {"type": "configuration/entityTypes/Individual/attributes/FirstName", "ov": true,
             "value": " Ann ", "uri": "entities/1/attributes/FirstName/b"},
            {"ov": true, "value": "Second golden"}
        ],
        "Age": [{"value": 41, "ov": true, "uri": "u"}],
        "Score": [{"value": 1.5, "ov": true}],
        "Vip": [{"ov": true, "value": true}],
        "Gone": [{"ov": true, "value": null}, {"ov": true, "value": "after a null"}],
        "NoValue": [{"ov": true}, {"ov": true, "value": "after a missing value"}],
        "NoOv": [{"value": "x"}],
        "OvNotBool": [{"value": "x", "ov": "true"}],
        "OvLast": [{"type": "t", "value": "late", "uri": "u", "ov": true}],
        "OvTwice": [{"ov": true, "value": "a", "ov": false}, {"ov": false, "value": "b", "ov": true}],
        "Address": [{
            "type": "configuration/entityTypes/Individual/attributes/Address", "ov": true,
            "uri": "entities/1/attributes/Address/c", "label": "Oslo",
            "refEntity": {"type": "configuration/entityTypes/Location", "objectURI": "entities/L"},
            "value": {
                "City": [{"type": "t", "ov": true, "value": "Oslo", "uri": "u"}],
                "Zip": [{"type": "t", "ov": false, "value": "0150", "uri": "u"},
                        {"type": "t", "ov": true, "value": "0151", "uri": "u"}],
                "Lines": [{"ov": true, "value": ["a", {"b": 1}]}],
                "Odd": {"ov": true, "value": "not in an array"}
            }
        }],
        "Leaf": [{"ov": true, "value": "text"}],
        "Odd": "not an array",
        "OddValues": [1, "two", [3], null],
        "Dupe": [{"ov": true, "value": "first"}],
        "Escaped\u{e9}\"": [{"ov": true, "value": "q\"\\\u{1F600}"}]
    })
}

fn lean(v: &Value) -> GoldenAttributes {
    serde_json::from_str::<GoldenAttributes>(&v.to_string()).unwrap()
}

#[test]
fn every_path_has_the_golden_value_of_the_full_tree() {
    let full = snapshot_attributes();
    let parsed = lean(&full);
    let converted = GoldenAttributes::from_value(full.clone());
    assert_eq!(parsed, converted, "parsed from text or from a tree alike");
    for path in [
        "FirstName",
        "Age",
        "Score",
        "Vip",
        "Gone",
        "NoValue",
        "NoOv",
        "OvNotBool",
        "OvLast",
        "OvTwice",
        "Address",
        "Address.City",
        "Address.Zip",
        "Address.Lines",
        "Address.Odd",
        "Address.Missing",
        "Address.City.More",
        "Leaf.More",
        "Odd",
        "OddValues",
        "Dupe",
        "Escaped\u{e9}\"",
        "Missing",
        "",
    ] {
        let (want, got) = (golden_value(&full, path), parsed.golden_value(path));
        match path {
            // The nested value itself is leaner; its golden values are compared above.
            "Address" => assert!(got.is_some_and(Value::is_object), "{path}"),
            _ => assert_eq!(got, want, "{path}"),
        }
    }
    assert_eq!(
        parsed.golden_value("FirstName"),
        Some(&json!(" Ann ")),
        "the first golden value, not the first value"
    );
    assert_eq!(parsed.golden_value("OvLast"), Some(&json!("late")));
    assert_eq!(parsed.golden_value("OvTwice"), Some(&json!("b")));
}

#[test]
fn only_the_first_golden_value_of_each_attribute_is_kept() {
    let lean = lean(&snapshot_attributes());
    assert_eq!(lean.0["FirstName"], json!(" Ann "));
    assert_eq!(
        lean.0["Address"],
        json!({"City": "Oslo", "Zip": "0151", "Lines": ["a", {"b": 1}], "Odd": null})
    );
    // No golden value, or not shaped like attributes: nothing to read.
    for name in ["NoOv", "OvNotBool", "Odd", "OddValues", "Gone", "NoValue"] {
        assert_eq!(lean.0[name], Value::Null, "{name}");
    }
}

#[test]
fn crosswalks_keep_their_identity_and_liveness_only() {
    let full = json!([
        {"type": "configuration/sources/SFDC_CONTACT", "value": "003A", "uri": "entities/1/crosswalks/a",
         "createDate": "2024-07-29T00:58:17.983Z", "updateDate": "2024-07-29T00:58:17.983Z",
         "attributes": ["entities/1/attributes/FirstName/b"], "singleAttributeUpdateDates": {}},
        {"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER",
         "deleteDate": "2024-08-01T00:00:00.000Z", "reltioLoadDate": "x"},
        {"type": 7, "value": {"not": "text"}, "deleteDate": null},
        "odd",
        [1]
    ]);
    let lean = serde_json::from_str::<LeanCrosswalks>(&full.to_string()).unwrap();
    let crosswalk = |t: Option<&str>, v: Option<&str>, end_dated| LeanCrosswalk {
        source_type: t.map(str::to_owned),
        value: v.map(str::to_owned),
        source_table: None,
        end_dated,
    };
    assert_eq!(
        lean.0,
        vec![
            crosswalk(
                Some("configuration/sources/SFDC_CONTACT"),
                Some("003A"),
                false
            ),
            LeanCrosswalk {
                source_table: Some("CUSTOMER".into()),
                ..crosswalk(Some("configuration/sources/CRM_DB"), Some("42"), true)
            },
            crosswalk(None, None, false),
        ]
    );
    assert_eq!(LeanCrosswalks::from_value(full), lean);
    let not_an_array = json!({"type": "t", "uri": "u"});
    let read = serde_json::from_str::<LeanCrosswalks>(&not_an_array.to_string()).unwrap();
    assert!(read.0.is_empty());
}

#[test]
fn a_fetched_entity_reads_as_its_snapshot_in_an_event() {
    let entity = json!({
        "uri": "entities/1", "type": "configuration/entityTypes/Individual", "updatedTime": 1722214697983i64,
        "createdBy": "x", "attributes": snapshot_attributes(),
        "crosswalks": [{"type": "configuration/sources/SFDC_CONTACT", "value": "003A", "uri": "u"}]
    });
    let object: EventObject<GoldenAttributes, LeanCrosswalks> =
        serde_json::from_str(&entity.to_string()).unwrap();
    let fetched = EntitySnapshot::from_entity(entity);
    assert_eq!(fetched.uri, object.uri);
    assert_eq!(fetched.entity_type, object.entity_type);
    assert_eq!(fetched.updated_time, Some(1722214697983));
    assert_eq!(Some(&fetched.attributes), object.attributes.as_ref());
    assert_eq!(Some(&fetched.crosswalks), object.crosswalks.as_ref());
    // Fields of another type than expected are absent, never an error.
    let odd = EntitySnapshot::from_entity(
        json!({"uri": 7, "type": null, "updatedTime": "soon", "attributes": [], "crosswalks": {}}),
    );
    assert_eq!(odd, EntitySnapshot::default());
    assert_eq!(
        EntitySnapshot::from_entity(json!("no entity")),
        EntitySnapshot::default()
    );
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
        r#"{"A": [{"ov": true, "value": 1}, {"ov": true, "value": [}]}"#,
        r#"{"A": {"x": [1, }}"#,
        r#"{"A": [}"#,
        r#"{"A": [{"ov": true, "value": "x"}]"#,
        r#"{"A": [{"ov": tru}]}"#,
        r#"{"A": [{"type": "\u12"}]}"#,
        r#"[{"type": "t", "uri": "\u12"}]"#,
        r#"[{"type": "t", "attributes": [1, 2}]"#,
        r#"[{"type": "t", "value": "v", "createDate": 1}]"#,
        r#"[[1, }]]"#,
        "",
    ] {
        let value = serde_json::from_str::<Value>(text);
        let ours = serde_json::from_str::<GoldenAttributes>(text);
        assert_eq!(ours.is_ok(), value.is_ok(), "{text}");
        let crosswalks = serde_json::from_str::<LeanCrosswalks>(text);
        assert_eq!(crosswalks.is_ok(), value.is_ok(), "{text}");
    }
    // A name given twice keeps its last values, as in a `Value`.
    let twice = serde_json::from_str::<GoldenAttributes>(
        r#"{"A": [{"ov": true, "value": 1}], "A": [{"ov": true, "value": 2}], "B": [{"ov": true, "value": 1}], "B": []}"#,
    )
    .unwrap();
    assert_eq!(twice.golden_value("A"), Some(&json!(2)));
    assert_eq!(twice.golden_value("B"), None);
}
