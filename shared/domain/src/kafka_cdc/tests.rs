//! Fixtures written from the formats' documentation: Debezium's PostgreSQL and MySQL connector pages ("Data change
//! events") and GoldenGate for Big Data's JSON formatter.

use super::*;
use crate::dms::{Cell, DataOperation, RecordKind};
use serde_json::json;

const SETTINGS: Settings = Settings {
    before_image_field: "before-image",
    unavailable_value: DEFAULT_UNAVAILABLE_VALUE,
};

fn no_headers(_: &str) -> Option<Vec<u8>> {
    None
}

fn message<'a>(
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    header: &'a dyn Fn(&str) -> Option<Vec<u8>>,
) -> Message<'a> {
    Message { key, value, header }
}

fn row(change: Change) -> DmsRecord<'static> {
    match change {
        Change::Row(r) => *r,
        other => panic!("expected a row, got {other:?}"),
    }
}

fn debezium(value: &serde_json::Value) -> Result<Change, DmsError> {
    let bytes = value.to_string().into_bytes();
    decode(
        ChangeFormat::Debezium,
        &message(None, Some(&bytes), &no_headers),
        &SETTINGS,
    )
}

fn postgres_create() -> serde_json::Value {
    json!({
        "before": null,
        "after": {"id": 1004, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"},
        "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "PostgreSQL_server",
                   "ts_ms": 1559033904863i64, "snapshot": "false", "db": "postgres",
                   "sequence": "[\"24023119\",\"24023128\"]", "schema": "public", "table": "customers",
                   "txId": 555, "lsn": 24023128, "xmin": null},
        "op": "c",
        "ts_ms": 1559033904961i64
    })
}

#[test]
fn a_postgres_create_is_an_insert_of_the_after_row_with_its_commit_time_and_lsn() {
    let r = row(debezium(&postgres_create()).unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Insert));
    assert_eq!(r.table.to_string(), "public.customers");
    assert_eq!(r.data["id"], json!(1004));
    assert_eq!(r.data["email"], json!("annek@noanswer.org"));
    assert_eq!(r.before_image, None);
    assert_eq!(
        r.commit_timestamp.as_deref(),
        Some("2019-05-28T08:58:24.863000Z")
    );
    assert_eq!(r.timestamp.as_deref(), Some("2019-05-28T08:58:24.961000Z"));
    assert_eq!(r.stream_position.as_deref(), Some("24023128"));
    assert_eq!(r.transaction_id.as_deref(), Some("555"));
    // The CDC key ledger orders changes of one commit time by the LSN.
    let v = crate::cdc::versions::SourceVersion::of(&r).unwrap();
    assert_eq!(v.record, 24023128);
}

#[test]
fn the_same_row_from_dms_and_from_debezium_is_the_same_change() {
    let dms = br#"{"data":{"id":1004,"first_name":"Anne","last_name":"Kretchmar","email":"annek@noanswer.org"},
        "metadata":{"timestamp":"2019-05-28T08:58:24.961000Z","record-type":"data","operation":"insert",
        "partition-key-type":"schema-table","schema-name":"public","table-name":"customers",
        "commit-timestamp":"2019-05-28T08:58:24.863000Z"}}"#;
    let from_dms = DmsRecord::parse(dms, "before-image").unwrap();
    let from_debezium = row(debezium(&postgres_create()).unwrap());
    assert_eq!(from_debezium.kind, from_dms.kind);
    assert_eq!(from_debezium.table, from_dms.table);
    assert_eq!(from_debezium.data, from_dms.data);
    assert_eq!(from_debezium.source_time(), from_dms.source_time());
}

#[test]
fn an_update_keeps_its_before_image_and_the_schema_wrapper_is_unwrapped() {
    let mut event = postgres_create();
    event["op"] = json!("u");
    event["before"] =
        json!({"id": 1004, "first_name": "Anne", "last_name": "K", "email": "old@x.org"});
    let wrapped = json!({"schema": {"type": "struct", "fields": []}, "payload": event});
    let r = row(debezium(&wrapped).unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Update));
    assert_eq!(r.data["email"], json!("annek@noanswer.org"));
    assert_eq!(r.before_image.unwrap()["email"], json!("old@x.org"));
}

#[test]
fn a_delete_takes_its_row_from_before_and_its_key_from_the_message_key() {
    let mut event = postgres_create();
    event["op"] = json!("d");
    event["after"] = json!(null);
    // Default replica identity: `before` holds only the key; here not even that.
    event["before"] = json!(null);
    let value = event.to_string().into_bytes();
    let key = br#"{"schema": {"type": "struct", "fields": [{"type": "int32", "field": "id"}]}, "payload": {"id": 1004}}"#;
    let r = row(decode(
        ChangeFormat::Debezium,
        &message(Some(key), Some(&value), &no_headers),
        &SETTINGS,
    )
    .unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Delete));
    assert_eq!(r.data["id"], json!(1004));
}

#[test]
fn tombstones_and_truncates_are_skipped_not_applied() {
    let tombstone = decode(
        ChangeFormat::Debezium,
        &message(Some(b"{\"id\":1}"), None, &no_headers),
        &SETTINGS,
    )
    .unwrap();
    assert_eq!(tombstone, Change::Skip(SkipReason::Tombstone, None));
    assert_eq!(
        debezium(&json!(null)).unwrap(),
        Change::Skip(SkipReason::Tombstone, None)
    );
    let mut event = postgres_create();
    event["op"] = json!("t");
    event["after"] = json!(null);
    match debezium(&event).unwrap() {
        Change::Skip(SkipReason::Truncate, Some(table)) => {
            assert_eq!(table.to_string(), "public.customers")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_primary_key_change_is_one_update_from_the_old_key() {
    let mut delete = postgres_create();
    delete["op"] = json!("d");
    delete["before"] = delete["after"].take();
    let delete = delete.to_string().into_bytes();
    let new_key: &[u8] = br#"{"id": 2000}"#;
    let old_key: &[u8] = br#"{"id": 1004}"#;
    let on_delete = |name: &str| (name == "__debezium.newkey").then(|| new_key.to_vec());
    assert_eq!(
        decode(
            ChangeFormat::Debezium,
            &message(Some(old_key), Some(&delete), &on_delete),
            &SETTINGS
        )
        .unwrap(),
        Change::Skip(
            SkipReason::KeyChangeDelete,
            Some(TableName {
                schema: "public".into(),
                table: "customers".into()
            })
        )
    );
    let mut create = postgres_create();
    create["after"]["id"] = json!(2000);
    let create = create.to_string().into_bytes();
    let on_create = |name: &str| (name == "__debezium.oldkey").then(|| old_key.to_vec());
    let r = row(decode(
        ChangeFormat::Debezium,
        &message(Some(new_key), Some(&create), &on_create),
        &SETTINGS,
    )
    .unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Update));
    assert_eq!(r.data["id"], json!(2000));
    assert_eq!(r.before_image.unwrap()["id"], json!(1004));
}

#[test]
fn a_mysql_event_names_its_database_as_the_schema_and_orders_by_binlog_position() {
    let event = json!({
        "before": null,
        "after": {"id": 1004, "email": "annek@noanswer.org"},
        "source": {"version": "2.5.0.Final", "connector": "mysql", "name": "mysql-server-1", "ts_ms": 1465581029100i64,
                   "snapshot": false, "db": "inventory", "table": "customers", "server_id": 223344,
                   "gtid": null, "file": "mysql-bin.000003", "pos": 484, "row": 0, "thread": 7, "query": null},
        "op": "c", "ts_ms": 1465581029523i64
    });
    let r = row(debezium(&event).unwrap());
    assert_eq!(r.table.to_string(), "inventory.customers");
    assert_eq!(r.stream_position.as_deref(), Some("mysql-bin.000003:484"));
    let ordinal = |file: &str, pos: u64| {
        let mut e = event.clone();
        e["source"]["file"] = json!(file);
        e["source"]["pos"] = json!(pos);
        let r = row(debezium(&e).unwrap());
        r.transaction_record_id.unwrap().parse::<u64>().unwrap()
    };
    assert_eq!(
        r.transaction_record_id.as_deref(),
        Some(((3u64 << 42) | 484_000).to_string().as_str())
    );
    assert!(ordinal("mysql-bin.000003", 485) > ordinal("mysql-bin.000003", 484));
    // After a rotation the position starts again: the file's number keeps the order.
    assert!(ordinal("mysql-bin.000004", 4) > ordinal("mysql-bin.000003", 99_999_999));
}

#[test]
fn logical_types_are_rendered_as_dms_renders_them() {
    let field = |name: &str, logical: &str, params: serde_json::Value| json!({"type": "int64", "field": name, "name": logical, "parameters": params});
    let row_schema = json!({"type": "struct", "field": "after", "fields": [
        field("price", "org.apache.kafka.connect.data.Decimal", json!({"scale": "2"})),
        field("debt", "org.apache.kafka.connect.data.Decimal", json!({"scale": "3"})),
        field("born", "io.debezium.time.Date", json!(null)),
        field("seen", "io.debezium.time.MicroTimestamp", json!(null)),
        field("at", "io.debezium.time.Time", json!(null)),
        field("ratio", "io.debezium.data.VariableScaleDecimal", json!(null)),
        field("zoned", "io.debezium.time.ZonedTimestamp", json!(null))
    ]});
    let mut event = postgres_create();
    event["after"] = json!({
        "id": 1,
        // 12345 unscaled = 0x3039; -5 unscaled = 0xfb
        "price": "MDk=", "debt": "+w==",
        "born": 19000, "seen": 1_700_000_000_123_456i64, "at": 45_296_789,
        "ratio": {"scale": 1, "value": "Bw=="},
        "zoned": "2024-01-01T10:00:00+02:00"
    });
    let wrapped = json!({"schema": {"type": "struct", "fields": [row_schema]}, "payload": event});
    let r = row(debezium(&wrapped).unwrap());
    assert_eq!(r.data["price"], json!("123.45"));
    assert_eq!(r.data["debt"], json!("-0.005"));
    assert_eq!(r.data["born"], json!("2022-01-08"));
    assert_eq!(r.data["seen"], json!("2023-11-14T22:13:20.123456"));
    assert_eq!(r.data["at"], json!("12:34:56.789"));
    assert_eq!(r.data["ratio"], json!("0.7"));
    assert_eq!(r.data["zoned"], json!("2024-01-01T10:00:00+02:00"));
    assert_eq!(r.data["id"], json!(1));
}

#[test]
fn malformed_debezium_messages_are_refused_with_a_reason_that_never_quotes_them() {
    let secret = "Sentinel-Anne";
    let mut no_after = postgres_create();
    no_after["after"] = json!(null);
    let mut bad_op = postgres_create();
    bad_op["op"] = json!("x");
    let mut no_source = postgres_create();
    no_source.as_object_mut().unwrap().remove("source");
    let mut bad_decimal = postgres_create();
    bad_decimal["after"]["price"] = json!(format!("{secret}!"));
    let bad_decimal = json!({"schema": {"type": "struct", "fields": [{"type": "struct", "field": "after", "fields": [
        {"type": "bytes", "field": "price", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}]}]},
        "payload": bad_decimal});
    for (event, expected) in [
        (no_after, "without the row"),
        (bad_op, "unknown Debezium op"),
        (no_source, "no \"source\""),
        (json!({"name": secret}), "no \"op\""),
        (json!([1, 2]), "not an object"),
        (bad_decimal, "column \"price\""),
    ] {
        let err = debezium(&event).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains(secret), "{err}");
    }
    let not_json = format!("not json {secret}");
    let err = decode(
        ChangeFormat::Debezium,
        &message(None, Some(not_json.as_bytes()), &no_headers),
        &SETTINGS,
    )
    .unwrap_err();
    assert!(matches!(err, DmsError::NotJson(_)) && !err.to_string().contains(secret));
}

fn goldengate(value: &serde_json::Value) -> Result<Change, DmsError> {
    let bytes = value.to_string().into_bytes();
    decode(
        ChangeFormat::Goldengate,
        &message(None, Some(&bytes), &no_headers),
        &SETTINGS,
    )
}

#[test]
fn a_goldengate_insert_update_and_delete() {
    let insert = json!({"table": "QASOURCE.TCUSTMER", "op_type": "I", "op_ts": "2015-11-05 18:45:36.000000",
        "current_ts": "2016-10-05T10:15:51.267000", "pos": "00000000000000002928", "primary_keys": ["CUST_CODE"],
        "after": {"CUST_CODE": "WILL", "NAME": "BG SOFTWARE CO.", "CITY": "SEATTLE", "STATE": "WA"}});
    let r = row(goldengate(&insert).unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Insert));
    assert_eq!(r.table.to_string(), "QASOURCE.TCUSTMER");
    assert_eq!(r.data["NAME"], json!("BG SOFTWARE CO."));
    assert_eq!(
        r.commit_timestamp.as_deref(),
        Some("2015-11-05T18:45:36.000000Z")
    );
    assert_eq!(r.stream_position.as_deref(), Some("00000000000000002928"));
    assert_eq!(r.transaction_record_id.as_deref(), Some("2928"));

    // A compressed update: `after` holds the key and the changed column only.
    let update = json!({"table": "QASOURCE.TCUSTMER", "op_type": "U", "op_ts": "2015-11-05 18:45:39.000000",
        "pos": "00000000000000004300",
        "before": {"CUST_CODE": "WILL", "NAME": "BG SOFTWARE CO.", "CITY": "SEATTLE", "STATE": "WA"},
        "after": {"CUST_CODE": "WILL", "CITY": "BOSTON"}});
    let r = row(goldengate(&update).unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Update));
    assert_eq!(r.data["CITY"], json!("BOSTON"));
    assert_eq!(
        r.data["NAME"],
        json!("BG SOFTWARE CO."),
        "before overlaid with after"
    );
    assert_eq!(r.before_image.as_ref().unwrap()["CITY"], json!("SEATTLE"));

    let delete = json!({"table": "CAT.QASOURCE.TCUSTMER", "op_type": "D", "op_ts": "2015-11-05 18:45:40.000000",
        "pos": "00000000000000005000", "before": {"CUST_CODE": "DAVE"}});
    let r = row(goldengate(&delete).unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Delete));
    assert_eq!(
        r.table.to_string(),
        "QASOURCE.TCUSTMER",
        "the catalog is dropped"
    );
    assert_eq!(r.data["CUST_CODE"], json!("DAVE"));
    assert!(matches!(r.data.get("NAME"), None | Some(Cell::Null)));

    let truncate = json!({"table": "QASOURCE.TCUSTMER", "op_type": "T", "op_ts": "2015-11-05 18:45:41.000000", "pos": "1"});
    assert!(matches!(
        goldengate(&truncate).unwrap(),
        Change::Skip(SkipReason::Truncate, Some(_))
    ));
}

#[test]
fn each_change_says_how_much_of_the_row_it_holds() {
    use crate::dms::Image;
    let mut update = postgres_create();
    update["op"] = json!("u");
    let mut read = postgres_create();
    read["op"] = json!("r");
    assert_eq!(
        row(debezium(&postgres_create()).unwrap()).image,
        Image::Whole
    );
    assert_eq!(row(debezium(&read).unwrap()).image, Image::Whole);
    assert_eq!(row(debezium(&update).unwrap()).image, Image::Changes);
    // A create holding the placeholder (never seen, but possible with Oracle LOBs) holds less than the row.
    let mut create = postgres_create();
    create["after"]["email"] = json!(DEFAULT_UNAVAILABLE_VALUE);
    let r = row(debezium(&create).unwrap());
    assert_eq!(r.image, Image::Changes);
    assert!(r.data.get("email").is_none());
    let gg =
        |op: &str| json!({"table": "S.T", "op_type": op, "after": {"id": 1}, "before": {"id": 1}});
    assert_eq!(row(goldengate(&gg("I")).unwrap()).image, Image::Whole);
    assert_eq!(row(goldengate(&gg("U")).unwrap()).image, Image::Changes);
    let dms = br#"{"data":{"id":5},"metadata":{"record-type":"data","operation":"update","schema-name":"s","table-name":"t"}}"#;
    let r = row(decode(
        ChangeFormat::Dms,
        &message(None, Some(dms), &no_headers),
        &SETTINGS,
    )
    .unwrap());
    assert_eq!(
        r.image,
        Image::Unknown,
        "DMS does not say: the table's absent_columns does"
    );
}

#[test]
fn malformed_goldengate_operations_are_refused() {
    for (event, expected) in [
        (json!({"op_type": "I", "after": {}}), "no \"table\""),
        (json!({"table": "S.T", "after": {}}), "no \"op_type\""),
        (
            json!({"table": "S.T", "op_type": "X"}),
            "unknown GoldenGate op_type",
        ),
        (json!({"table": "S.T", "op_type": "I"}), "without the row"),
        (
            json!({"table": "S.T", "op_type": "D", "before": "x"}),
            "not an object",
        ),
        (json!({"table": "S.", "op_type": "I", "after": {}}), "empty"),
    ] {
        let err = goldengate(&event).unwrap_err().to_string();
        assert!(err.contains(expected), "{event}: {err}");
    }
}

#[test]
fn dms_records_pass_through_the_same_entry_point() {
    let dms = br#"{"data":{"id":5},"metadata":{"record-type":"data","operation":"delete","schema-name":"public","table-name":"customer"}}"#;
    let r = row(decode(
        ChangeFormat::Dms,
        &message(None, Some(dms), &no_headers),
        &SETTINGS,
    )
    .unwrap());
    assert_eq!(r.kind, RecordKind::Data(DataOperation::Delete));
    assert_eq!(r.data["id"], json!(5));
}

#[test]
fn a_message_format_is_told_from_its_top_level_fields() {
    let bytes = |v: serde_json::Value| v.to_string().into_bytes();
    let dms = bytes(json!({"data": {"id": 1}, "metadata": {"record-type": "data"}}));
    let gg = bytes(json!({"table": "S.T", "op_type": "I", "after": {"op": 1}}));
    let dbz = bytes(postgres_create());
    let wrapped = bytes(json!({"schema": {}, "payload": postgres_create()}));
    // A column called like another format's field does not confuse it: only top-level fields count.
    let dms_with_op_column = bytes(json!({"data": {"op_type": "x"}, "metadata": {}}));
    assert_eq!(detect(Some(&dms)), Some(ChangeFormat::Dms));
    assert_eq!(detect(Some(&gg)), Some(ChangeFormat::Goldengate));
    assert_eq!(detect(Some(&dbz)), Some(ChangeFormat::Debezium));
    assert_eq!(detect(Some(&wrapped)), Some(ChangeFormat::Debezium));
    assert_eq!(detect(Some(&dms_with_op_column)), Some(ChangeFormat::Dms));
    assert_eq!(detect(None), Some(ChangeFormat::Debezium), "a tombstone");
    assert_eq!(detect(Some(b"{\"hello\": 1}")), None);
    assert_eq!(detect(Some(b"[1, 2]")), None);
    assert_eq!(detect(Some(b"not json")), None);
}
