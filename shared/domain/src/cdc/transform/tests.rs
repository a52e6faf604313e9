use super::*;
use crate::cdc::mapping::CdcMapping;
use crate::dms::{DmsRecord, DEFAULT_BEFORE_IMAGE_FIELD};
use chrono::TimeZone;
use serde_json::{json, Map, Value};

const EXAMPLE: &str = include_str!("../../../../../functions/cdc-ingest/mapping.example.toml");

macro_rules! record {
    ($name:literal) => {
        DmsRecord::parse(
            include_bytes!(concat!("../../../../../tests/fixtures/dms/", $name)),
            DEFAULT_BEFORE_IMAGE_FIELD,
        )
        .unwrap()
    };
}

fn mapping() -> CdcMapping {
    CdcMapping::parse(EXAMPLE).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

fn plan(record: &DmsRecord) -> RecordPlan {
    plan_record(&mapping(), record, now()).unwrap()
}

fn writes(record: &DmsRecord) -> Vec<ReltioWrite> {
    match plan(record) {
        RecordPlan::Write { writes, .. } => writes,
        other => panic!("expected writes, got {other:?}"),
    }
}

fn body_json(write: &ReltioWrite) -> (serde_json::Value, bool) {
    match &write.op {
        WriteOp::Post { body, partial } => (serde_json::to_value(body).unwrap(), *partial),
        WriteOp::DeleteCrosswalk => panic!("not a post"),
    }
}

#[test]
fn an_insert_becomes_a_full_upsert_with_nested_and_reference_attributes() {
    let w = writes(&record!("insert.json"));
    assert_eq!(w.len(), 1);
    let (body, partial) = body_json(&w[0]);
    assert!(!partial);
    let crosswalk =
        json!({"type": "configuration/sources/CRM_DB", "value": "46", "sourceTable": "CUSTOMER"});
    let address_crosswalk = json!({"type": "configuration/sources/CRM_DB", "value": "46:address", "sourceTable": "CUSTOMER"});
    assert_eq!(
        body,
        json!({
            "type": "configuration/entityTypes/Individual",
            "attributes": {
                "FirstName": [{"value": "Jane"}],
                "LastName": [{"value": "Doe"}],
                "Email": [{"value": "jane.doe@example.com"}],
                "DateOfBirth": [{"value": "1990-03-04"}],
                "Address": [{
                    "value": {"City": [{"value": "Austin"}]},
                    "refEntity": {"type": "configuration/entityTypes/Location", "crosswalks": [address_crosswalk]},
                    "refRelation": {"type": "configuration/relationTypes/HasAddress", "crosswalks": [address_crosswalk]}
                }]
            },
            "crosswalks": [crosswalk]
        })
    );
}

#[test]
fn a_load_record_is_an_upsert_too() {
    let w = writes(&record!("load-minimal.json"));
    let (body, _) = body_json(&w[0]);
    assert_eq!(body["crosswalks"][0]["value"], "7");
    assert_eq!(body["attributes"], json!({"FirstName": [{"value": "Ann"}]}));
}

#[test]
fn a_primary_key_change_retires_the_old_crosswalk_then_upserts_the_new_one() {
    let w = writes(&record!("update-pk-change.json"));
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].key.value, "46");
    let (retire, partial) = body_json(&w[0]);
    assert!(partial, "an end-date must not clear attributes");
    assert_eq!(
        retire["crosswalks"][0]["deleteDate"],
        "2024-07-29T00:58:59.000Z"
    );
    assert!(retire.get("attributes").is_none());
    assert_eq!(w[1].key.value, "47");
    assert!(w[1].is_full_upsert());
}

#[test]
fn an_update_with_an_empty_before_image_only_upserts() {
    let w = writes(&record!("update-same-key.json"));
    assert_eq!(w.len(), 1);
    let (body, _) = body_json(&w[0]);
    assert_eq!(body["attributes"]["FirstName"][0]["value"], "Janet");
}

#[test]
fn a_key_only_delete_end_dates_the_crosswalk_at_the_commit_time() {
    let w = writes(&record!("delete-key-only.json"));
    assert_eq!(w.len(), 1);
    let (body, _) = body_json(&w[0]);
    assert_eq!(
        body,
        json!({
            "type": "configuration/entityTypes/Individual",
            "crosswalks": [{"type": "configuration/sources/CRM_DB", "value": "46", "sourceTable": "CUSTOMER",
                            "deleteDate": "2024-07-29T00:59:59.000Z"}]
        })
    );
}

#[test]
fn a_composite_key_joins_its_columns_and_partial_tables_say_so() {
    let w = writes(&record!("composite-key.json"));
    assert_eq!(w[0].key.value, "9001|2");
    let (body, partial) = body_json(&w[0]);
    assert!(partial);
    assert_eq!(body["attributes"]["SKU"][0]["value"], "AB-1");
    assert_eq!(body["attributes"]["Quantity"][0]["value"], "3");
}

#[test]
fn a_delete_under_the_delete_strategy_deletes_the_crosswalk() {
    let raw = br#"{"data":{"ORDER_ID":9001,"LINE_NO":2},"metadata":{"record-type":"data","operation":"delete","schema-name":"SALES","table-name":"ORDER_LINE"}}"#;
    let record = DmsRecord::parse(raw, DEFAULT_BEFORE_IMAGE_FIELD).unwrap();
    let w = writes(&record);
    assert_eq!(
        w,
        vec![ReltioWrite {
            key: CrosswalkKey {
                source: "configuration/sources/ERP".into(),
                source_table: None,
                value: "9001|2".into()
            },
            op: WriteOp::DeleteCrosswalk,
        }]
    );
}

#[test]
fn control_records_dms_tables_and_unmapped_tables_are_skipped() {
    assert_eq!(
        plan(&record!("create-table.json")),
        RecordPlan::Skip(SkipReason::Control)
    );
    assert_eq!(
        plan(&record!("apply-exceptions-control.json")),
        RecordPlan::Skip(SkipReason::Control)
    );
    let internal = br#"{"data":{"id":1},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"awsdms_status"}}"#;
    assert_eq!(
        plan(&DmsRecord::parse(internal, DEFAULT_BEFORE_IMAGE_FIELD).unwrap()),
        RecordPlan::Skip(SkipReason::DmsInternal)
    );
    let unmapped = br#"{"data":{"id":1},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"audit_log"}}"#;
    assert_eq!(
        plan(&DmsRecord::parse(unmapped, DEFAULT_BEFORE_IMAGE_FIELD).unwrap()),
        RecordPlan::Skip(SkipReason::Unmapped)
    );
}

#[test]
fn a_missing_key_or_a_bad_date_is_a_permanent_error_naming_the_column() {
    let no_key = br#"{"data":{"id":null,"first_name":"X"},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}"#;
    let err = plan_record(
        &mapping(),
        &DmsRecord::parse(no_key, DEFAULT_BEFORE_IMAGE_FIELD).unwrap(),
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "table public.customer: key column id is missing or null"
    );
    let bad_date = br#"{"data":{"id":1,"birth_date":"someday soon maybe"},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}"#;
    let err = plan_record(
        &mapping(),
        &DmsRecord::parse(bad_date, DEFAULT_BEFORE_IMAGE_FIELD).unwrap(),
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "table public.customer, column birth_date: \"someday soon…\" is not a date"
    );
}

#[test]
fn transforms_apply_in_order() {
    use Transform::*;
    assert_eq!(
        apply_transforms(&[Trim, Upper], "  ab ".into()),
        Ok(Some("AB".into()))
    );
    assert_eq!(
        apply_transforms(&[Trim, EmptyAsAbsent], "   ".into()),
        Ok(None)
    );
    assert_eq!(
        apply_transforms(&[EmptyAsAbsent, Trim], "   ".into()),
        Ok(Some("".into()))
    );
    assert_eq!(
        apply_transforms(&[Lower], "ÄB".into()),
        Ok(Some("äb".into()))
    );
    assert_eq!(
        apply_transforms(&[Date], "20240729".into()),
        Ok(Some("2024-07-29".into()))
    );
    assert_eq!(
        apply_transforms(&[Date], "2024-07-29T23:10:00Z".into()),
        Ok(Some("2024-07-29".into()))
    );
    assert_eq!(
        apply_transforms(&[Timestamp], "2024-07-29 10:00:00".into()),
        Ok(Some("2024-07-29T10:00:00.000Z".into()))
    );
}

#[test]
fn null_columns_are_not_sent_and_numbers_become_text() {
    let raw = br#"{"data":{"id":5,"first_name":null,"last_name":"","email":"A@B.C","birth_date":null,"street":null,"city":null,"zip":78701},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}"#;
    let w = writes(&DmsRecord::parse(raw, DEFAULT_BEFORE_IMAGE_FIELD).unwrap());
    let (body, _) = body_json(&w[0]);
    let attributes = body["attributes"].as_object().unwrap();
    assert!(!attributes.contains_key("FirstName"));
    assert!(!attributes.contains_key("LastName"), "empty-as-absent");
    assert_eq!(body["attributes"]["Email"][0]["value"], "a@b.c");
    assert_eq!(
        body["attributes"]["Address"][0]["value"]["Zip"],
        json!([{"value": {"Zip5": [{"value": "78701"}]}}])
    );
}

#[test]
fn the_date_fast_path_agrees_with_chrono() {
    // The original, chrono-only normalisation.
    fn reference(raw: &str) -> Option<String> {
        let raw = raw.trim();
        for f in ["%Y-%m-%d", "%Y%m%d"] {
            if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, f) {
                return Some(d.format("%Y-%m-%d").to_string());
            }
        }
        crate::dms::parse_dms_timestamp(raw).map(|t| t.format("%Y-%m-%d").to_string())
    }
    for raw in [
        "1990-03-04",
        "1990-03-04 00:00:00",
        " 1990-03-04 23:59:59 ",
        "1990-03-04 24:00:00",
        "1990-03-04 23:60:00",
        "1990-03-04 23:59:60",
        "1990-02-30",
        "1990-02-30 00:00:00",
        "2024-02-29 12:00:00",
        "0000-01-01",
        "19900304",
        "1990-03-04T10:00:00",
        "1990-03-04T23:10:00-05:00",
        "1990-3-04 0:00:00",
        "199a-03-04",
        "1990-03-04 00:00:0x",
    ] {
        assert_eq!(
            super::normalise_date(raw).ok(),
            reference(raw),
            "normalising {raw:?}"
        );
    }
}

#[test]
fn composite_key_parts_holding_the_separator_never_collide() {
    let mapping = CdcMapping::parse(EXAMPLE).unwrap();
    let table = mapping.table("SALES.ORDER_LINE").unwrap();
    let cols = &table.key_columns;
    let row = |a: &str, b: &str| {
        let mut m = Map::new();
        m.insert(cols[0].clone(), json!(a));
        m.insert(cols[1].clone(), json!(b));
        Row::from(m)
    };
    let sep = table.key_separator.as_str();
    let one = crosswalk_key(table, &row(&format!("a{sep}b"), "c"))
        .unwrap()
        .value;
    let two = crosswalk_key(table, &row("a", &format!("b{sep}c")))
        .unwrap()
        .value;
    assert_ne!(one, two);
    assert_eq!(one, format!("a\\{sep}b{sep}c"));
    // A backslash is escaped too, so an escaped separator cannot be forged.
    let three = crosswalk_key(table, &row("a\\", &format!("{sep}c")))
        .unwrap()
        .value;
    assert_ne!(three, one);
    // Plain values are unchanged.
    assert_eq!(
        crosswalk_key(table, &row("9001", "2")).unwrap().value,
        format!("9001{sep}2")
    );
}

#[test]
fn a_key_too_large_to_be_exact_is_refused_not_rounded() {
    let mapping = CdcMapping::parse(EXAMPLE).unwrap();
    let table = mapping.table("public.customer").unwrap();
    let key = &table.key_columns[0];
    let row = |v: Value| {
        let mut m = Map::new();
        m.insert(key.clone(), v);
        Row::from(m)
    };
    // DMS without UseLargeIntegerValue: 123456789012345678 as 1.2345678901234568E+17.
    let sci: Value = serde_json::from_str("1.2345678901234568E+17").unwrap();
    let err = crosswalk_key(table, &row(sci)).unwrap_err();
    assert!(err.to_string().contains("UseLargeIntegerValue"), "{err}");
    // (A plain 24-digit integer is exact as the record's text: see fidelity_tests.)
    // Exact integers, large ones included, and strings are kept.
    let exact: Value = serde_json::from_str("123456789012345678").unwrap();
    assert_eq!(
        crosswalk_key(table, &row(exact)).unwrap().value,
        "123456789012345678"
    );
    assert_eq!(crosswalk_key(table, &row(json!("46"))).unwrap().value, "46");
}

#[test]
fn a_nested_attribute_with_no_value_beneath_it_is_left_out_with_its_reference() {
    let raw = br#"{"data":{"id":5,"first_name":"Ann","last_name":null,"email":null,"birth_date":null,"street":"  ","city":null,"zip":null},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}"#;
    let w = writes(&DmsRecord::parse(raw, DEFAULT_BEFORE_IMAGE_FIELD).unwrap());
    let (body, _) = body_json(&w[0]);
    assert_eq!(body["attributes"], json!({"FirstName": [{"value": "Ann"}]}));
    // No mapped value at all: no attributes object.
    let raw = br#"{"data":{"id":5,"first_name":"","last_name":null,"email":null,"birth_date":null,"street":null,"city":null,"zip":null},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}"#;
    let w = writes(&DmsRecord::parse(raw, DEFAULT_BEFORE_IMAGE_FIELD).unwrap());
    assert!(body_json(&w[0]).0.get("attributes").is_none());
}

#[test]
fn values_that_need_escaping_arrive_intact() {
    let raw = br#"{"data":{"id":"a\"b","first_name":"x\\y \"q\" \n\t\u0001 \u00e9\u4e2d \ud83d\ude00","city":"</script>","last_name":null,"email":null,"birth_date":null,"street":null,"zip":null},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}"#;
    let w = writes(&DmsRecord::parse(raw, DEFAULT_BEFORE_IMAGE_FIELD).unwrap());
    let (body, _) = body_json(&w[0]);
    assert_eq!(
        body["attributes"]["FirstName"][0]["value"],
        "x\\y \"q\" \n\t\u{1} é中 😀"
    );
    assert_eq!(
        body["attributes"]["Address"][0]["value"]["City"][0]["value"],
        "</script>"
    );
    assert_eq!(
        body["attributes"]["Address"][0]["refEntity"]["crosswalks"][0]["value"],
        "a\"b:address"
    );
}
