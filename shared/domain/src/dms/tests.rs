use super::*;
use serde_json::json;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../../tests/fixtures/dms/", $name))
    };
}

fn parse(bytes: &[u8]) -> Result<DmsRecord<'_>, DmsError> {
    DmsRecord::parse(bytes, DEFAULT_BEFORE_IMAGE_FIELD)
}

#[test]
fn an_insert_with_every_metadata_key_parses() {
    let r = parse(fixture!("insert.json")).unwrap();
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Insert));
    assert_eq!(r.table.to_string(), "public.customer");
    assert_eq!(r.data["id"], json!(46));
    assert_eq!(r.data["balance"], json!(12.5));
    assert_eq!(
        r.commit_timestamp.as_deref(),
        Some("2024-07-29T00:58:17.974340Z")
    );
    assert_eq!(r.transaction_id.as_deref(), Some("1139"));
    assert_eq!(r.partition_key_value.as_deref(), Some("public.customer.46"));
    assert!(r.stream_position.is_some());
    assert!(r.before_image.is_none());
}

#[test]
fn a_load_record_with_only_the_required_metadata_parses() {
    let r = parse(fixture!("load-minimal.json")).unwrap();
    assert_eq!(r.operation(), Some(DataOperation::Load));
    assert_eq!(r.commit_timestamp, None);
    assert_eq!(r.transaction_id, None);
    assert_eq!(r.data["id"], json!("7"));
    // Without a commit timestamp the DMS timestamp is the source time.
    assert_eq!(
        r.source_time().unwrap().to_rfc3339(),
        "2024-07-29T00:00:01+00:00"
    );
}

#[test]
fn an_update_with_a_primary_key_change_carries_the_old_key() {
    let r = parse(fixture!("update-pk-change.json")).unwrap();
    assert_eq!(r.operation(), Some(DataOperation::Update));
    assert_eq!(r.before_image.unwrap()["id"], json!(46));
    assert_eq!(r.data["id"], json!(47));
}

#[test]
fn an_empty_before_image_means_the_key_did_not_change() {
    let r = parse(fixture!("update-same-key.json")).unwrap();
    assert_eq!(r.before_image, Some(Row::default()));
    assert_eq!(r.transaction_id.as_deref(), Some("1141"));
}

#[test]
fn the_before_image_field_name_is_configurable() {
    let raw = br#"{"data":{"id":2},"old":{"id":1},"metadata":{"record-type":"data","operation":"update","schema-name":"s","table-name":"t"}}"#;
    let r = DmsRecord::parse(raw, "old").unwrap();
    assert_eq!(r.before_image.unwrap()["id"], json!(1));
    // Under the default name the same record has no before image.
    assert!(parse(raw).unwrap().before_image.is_none());
}

#[test]
fn a_key_only_delete_keeps_its_null_columns() {
    let r = parse(fixture!("delete-key-only.json")).unwrap();
    assert_eq!(r.operation(), Some(DataOperation::Delete));
    assert_eq!(r.data["id"], json!(46));
    assert!(r.data["email"].is_null());
}

#[test]
fn create_and_drop_table_are_control_records() {
    let c = parse(fixture!("create-table.json")).unwrap();
    assert_eq!(c.kind, RecordKind::Control("create-table".into()));
    assert!(c.data.is_empty());
    let d = parse(fixture!("drop-table.json")).unwrap();
    assert_eq!(d.kind, RecordKind::Control("drop-table".into()));
    assert_eq!(d.table.to_string(), "public.old_customer");
}

#[test]
fn the_apply_exceptions_control_record_has_an_empty_schema_and_is_internal() {
    let r = parse(fixture!("apply-exceptions-control.json")).unwrap();
    assert_eq!(r.table.schema, "");
    assert_eq!(r.table.to_string(), "awsdms_apply_exceptions");
    assert!(r.table.is_dms_internal());
    assert!(!parse(fixture!("insert.json"))
        .unwrap()
        .table
        .is_dms_internal());
}

#[test]
fn pretty_and_one_line_json_parse_the_same() {
    let pretty = parse(fixture!("insert.json")).unwrap();
    let value: serde_json::Value = serde_json::from_slice(fixture!("insert.json")).unwrap();
    let one_line = serde_json::to_vec(&value).unwrap();
    assert_eq!(parse(&one_line).unwrap(), pretty);
}

#[test]
fn an_unknown_data_operation_is_rejected_with_its_name() {
    let err = parse(fixture!("unknown-operation.json")).unwrap_err();
    assert_eq!(
        err,
        DmsError::WrongShape("unknown data operation \"upsert\"".into())
    );
}

#[test]
fn non_json_bytes_are_rejected_without_panicking() {
    for bytes in [&b"\xff\xfe\x00garbage"[..], b"", b"{\"data\":", b"not json"] {
        assert!(
            matches!(parse(bytes), Err(DmsError::NotJson(_))),
            "{bytes:?}"
        );
    }
}

#[test]
fn json_of_the_wrong_shape_is_rejected_with_a_reason() {
    let cases: [(&[u8], &str); 6] = [
        (fixture!("wrong-shape.json"), "missing \"metadata\" object"),
        (b"[1,2]", "top level is not a JSON object"),
        (br#"{"metadata":{"operation":"insert","table-name":"t"}}"#, "no \"record-type\""),
        (br#"{"metadata":{"record-type":"data","operation":"insert"}}"#, "no \"table-name\""),
        (br#"{"metadata":{"record-type":"data","operation":"insert","table-name":"t"}}"#, "no \"data\" object"),
        (br#"{"data":[1],"metadata":{"record-type":"data","operation":"insert","table-name":"t"}}"#, "\"data\" is not an object"),
    ];
    for (bytes, reason) in cases {
        match parse(bytes) {
            Err(DmsError::WrongShape(r)) => assert!(r.contains(reason), "{r} vs {reason}"),
            other => panic!("expected WrongShape for {reason}, got {other:?}"),
        }
    }
}

#[test]
fn timestamps_without_a_zone_are_utc() {
    assert_eq!(
        parse_dms_timestamp("2024-07-29 00:58:17.5")
            .unwrap()
            .to_rfc3339(),
        "2024-07-29T00:58:17.500+00:00"
    );
    assert!(parse_dms_timestamp("yesterday").is_none());
}

/// The one-pass decoder reads rows as a `serde_json::Value` tree parse does, numbers aside: it keeps their text.
#[test]
fn rows_decode_as_a_tree_parse_reads_them() {
    let tree_row = |bytes: &[u8], field: &str| -> Option<serde_json::Value> {
        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        value.get(field).filter(|v| v.is_object()).cloned()
    };
    let records: [&[u8]; 5] = [
        fixture!("insert.json"),
        fixture!("update-pk-change.json"),
        br#"{"data":{"a":"x\"y\u00e9","a":2,"n":null,"j":{"k":[1,2]},"f":1.5e300,"t":true,"big":18446744073709551615,"neg":-3},"metadata":{"record-type":"data","operation":"insert","table-name":"t"}}"#,
        br#"{"data":{"id":1},"before-image":{"id":"0"},"metadata":{"record-type":"data","operation":"update","table-name":"t"}}"#,
        br#"{"data":{},"metadata":{"record-type":"data","operation":"delete","table-name":"t"}}"#,
    ];
    for bytes in records {
        let r = parse(bytes).unwrap();
        assert_eq!(Some(r.data.to_value()), tree_row(bytes, "data"));
        assert_eq!(
            r.before_image.map(|b| b.to_value()),
            tree_row(bytes, DEFAULT_BEFORE_IMAGE_FIELD)
        );
    }
}

/// Where a float would round, the decoder keeps what the source wrote, digit for digit.
#[test]
fn numbers_keep_the_digits_the_source_wrote() {
    let r = parse(br#"{"data":{"price":98765432109876.54321012,"id":123456789012345678901234,"sci":1.2345678901234567E+23,"f":1.5e300,"neg":-0.10,"j":{"n":[1.000000000000000000001]}},"metadata":{"record-type":"data","operation":"insert","table-name":"t"}}"#).unwrap();
    let text = |column: &str| r.data[column].render().map(|t| t.into_owned());
    assert_eq!(text("price").as_deref(), Some("98765432109876.54321012"));
    assert_eq!(text("id").as_deref(), Some("123456789012345678901234"));
    assert_eq!(text("sci").as_deref(), Some("1.2345678901234567E+23"));
    assert_eq!(text("f").as_deref(), Some("1.5e300"));
    assert_eq!(text("neg").as_deref(), Some("-0.10"));
    assert_eq!(
        text("j").as_deref(),
        Some(r#"{"n":[1.000000000000000000001]}"#)
    );
    // A pretty-printed JSON column renders as the one-line text, its strings untouched.
    let pretty = parse(b"{\"data\":{\"j\":{ \"a b\" : [ 1 ,\n 2 ] }},\"metadata\":{\"record-type\":\"data\",\"operation\":\"insert\",\"table-name\":\"t\"}}").unwrap();
    assert_eq!(
        pretty.data["j"].render().as_deref(),
        Some(r#"{"a b":[1,2]}"#)
    );
}

#[test]
fn a_repeated_key_keeps_its_last_value_and_escaped_text_is_unescaped() {
    let r = parse(br#"{"data":{"id":1,"name":"a\nb","id":2},"metadata":{"record-type":"data","operation":"load","table-name":"t","table-name":"u","transaction-id":7.5}}"#).unwrap();
    assert_eq!(r.data["id"], json!(2));
    assert_eq!(r.data["name"].render().as_deref(), Some("a\nb"));
    assert_eq!(r.table.table, "u");
    assert_eq!(r.transaction_id.as_deref(), Some("7.5"));
    // A repeated "metadata" object replaces the first one entirely.
    let err = parse(br#"{"data":{"id":1},"metadata":{"record-type":"data","operation":"load","table-name":"t"},"metadata":{"operation":"load"}}"#).unwrap_err();
    assert_eq!(
        err,
        DmsError::WrongShape("metadata has no \"record-type\"".into())
    );
}

#[test]
fn metadata_values_of_the_wrong_type_are_named() {
    for (key, value) in [
        ("timestamp", "true"),
        ("table-name", "{}"),
        ("operation", "[1]"),
    ] {
        let raw = format!(
            r#"{{"data":{{"id":1}},"metadata":{{"record-type":"data","operation":"load","table-name":"t","{key}":{value}}}}}"#
        );
        assert_eq!(
            parse(raw.as_bytes()).unwrap_err(),
            DmsError::WrongShape(format!("metadata \"{key}\" is not a string or number")),
        );
    }
}
