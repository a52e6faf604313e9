//! Nothing altered, nothing lost: partial row images become partial writes of what they hold (or dead letters
//! where that would lose data), a change without its row is never written from its key, and numbers reach
//! Reltio with the digits the source wrote. Records written from the sources' documentation (docs/reference.md).

use crate::cdc::batch::{plan_batch, BatchPlan};
use crate::cdc::input::{CdcInput, KafkaChange, Position, SourceChange};
use crate::cdc::mapping::CdcMapping;
use crate::cdc::transform::{plan_record, RecordPlan, TransformError, WriteOp};
use crate::dms::{DmsRecord, DEFAULT_BEFORE_IMAGE_FIELD};
use crate::outcome::Outcome;
use chrono::TimeZone;
use serde_json::{json, Value};

const EXAMPLE: &str = include_str!("../../../../../functions/cdc-ingest/mapping.example.toml");
const DBZ_TOPIC: &str = "dbserver1.public.customer";
const GG_TOPIC: &str = "ogg.public.customer";

/// The example mapping with its DMS table read as an endpoint with `IncludeNullAndEmpty=true` would be: a column
/// the image lacks is not in it (`absent_columns = "unchanged"`).
fn mapping() -> CdcMapping {
    let partial = EXAMPLE.replace(
        "absent_columns = \"null\"",
        "absent_columns = \"unchanged\"",
    );
    assert_ne!(partial, EXAMPLE, "the example names absent_columns");
    CdcMapping::parse(&partial).unwrap()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

/// A DMS record of public.customer: `operation` with `data` (a JSON object's text).
fn dms(operation: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"data":{data},"metadata":{{"record-type":"data","operation":"{operation}","schema-name":"public","table-name":"customer","commit-timestamp":"2024-07-29T00:59:09.000000Z"}}}}"#
    )
    .into_bytes()
}

/// Every mapped column of public.customer: a full image (nulls present).
const FULL_46: &str = r#"{"id":46,"first_name":"Jane","last_name":"Doe","email":"jane@example.com","birth_date":null,"street":"1 Main St","city":"Austin","zip":"78701"}"#;

/// Kafka messages on `topic` (key, value), planned as cdc-ingest plans them.
fn plan_kafka(mapping: &CdcMapping, topic: &str, messages: &[(Option<&[u8]>, &[u8])]) -> BatchPlan {
    let inputs: Vec<CdcInput> = messages
        .iter()
        .map(|(key, value)| CdcInput {
            change: SourceChange::Kafka(KafkaChange {
                topic,
                key: *key,
                value: Ok(Some(value)),
                headers: &[],
            }),
            lane: 0,
            position: Position::Offset {
                partition: topic,
                offset: 0,
            },
        })
        .collect();
    plan_batch(mapping, DEFAULT_BEFORE_IMAGE_FIELD, &inputs, now())
}

/// The plan's POSTs in order: whether partial, and the body.
fn posts(plan: &BatchPlan) -> Vec<(bool, Value)> {
    plan.waves
        .iter()
        .flatten()
        .filter_map(|w| match &w.write.op {
            WriteOp::Post { body, partial } => {
                Some((*partial, serde_json::to_value(body).unwrap()))
            }
            WriteOp::DeleteCrosswalk => None,
        })
        .collect()
}

/// The single POST a DMS record plans: whether partial, and the body's text.
fn dms_post(mapping: &CdcMapping, record: &[u8]) -> Result<(bool, String), TransformError> {
    let record = DmsRecord::parse(record, DEFAULT_BEFORE_IMAGE_FIELD).unwrap();
    let RecordPlan::Write { writes, .. } = plan_record(mapping, &record, now())? else {
        panic!("not a write")
    };
    match &writes[..] {
        [w] => match &w.op {
            WriteOp::Post { body, partial } => Ok((*partial, serde_json::to_string(body).unwrap())),
            WriteOp::DeleteCrosswalk => panic!("not a post"),
        },
        other => panic!("{other:?}"),
    }
}

fn attributes(body: &str) -> Value {
    serde_json::from_str::<Value>(body).unwrap()["attributes"].clone()
}

#[test]
fn a_goldengate_compressed_update_writes_only_the_column_it_changed() {
    // GoldenGate's default: `after` holds the key and the changed column; no before image.
    let update = br#"{"table": "CRM.public.customer", "op_type": "U", "op_ts": "2024-07-29 00:59:09.000000",
        "current_ts": "2024-07-29T00:59:10.000000", "pos": "00000000000000002400", "after": {"id": 46, "first_name": "Janet"}}"#;
    let plan = plan_kafka(&mapping(), GG_TOPIC, &[(None, update)]);
    assert_eq!(plan.outcomes[0], None, "{:?}", plan.decisions());
    let posts = posts(&plan);
    assert_eq!(posts.len(), 1);
    let (partial, body) = &posts[0];
    assert!(partial, "options=partialOverride");
    assert_eq!(
        body["attributes"],
        json!({"FirstName": [{"value": "Janet"}]})
    );
    assert_eq!(body["crosswalks"][0]["value"], "46");
}

#[test]
fn a_goldengate_update_with_its_full_before_image_is_a_full_write() {
    let update = br#"{"table": "CRM.public.customer", "op_type": "U", "op_ts": "2024-07-29 00:59:09.000000",
        "pos": "00000000000000002400",
        "before": {"id": 46, "first_name": "Jane", "last_name": "Doe", "email": "jane@example.com", "birth_date": null,
                   "street": "1 Main St", "city": "Austin", "zip": "78701"},
        "after": {"id": 46, "first_name": "Janet"}}"#;
    let posts = posts(&plan_kafka(&mapping(), GG_TOPIC, &[(None, update)]));
    let (partial, body) = &posts[0];
    assert!(!partial);
    assert_eq!(body["attributes"]["FirstName"], json!([{"value": "Janet"}]));
    assert_eq!(body["attributes"]["LastName"], json!([{"value": "Doe"}]));
}

/// A Debezium update (PostgreSQL, default replica identity) whose `last_name` is an unchanged TOASTed value.
fn debezium_update(last_name: &str, email: &str) -> Vec<u8> {
    format!(
        r#"{{"before": null, "after": {{"id": 46, "first_name": "Janet", "last_name": "{last_name}", "email": "{email}",
            "birth_date": null, "street": "1 Main St", "city": "Austin", "zip": "78701"}},
            "source": {{"connector": "postgresql", "db": "crm", "schema": "public", "table": "customer",
                        "ts_ms": 1722214749000, "lsn": 2088526350, "txId": 1142}},
            "op": "u", "ts_ms": 1722214750000}}"#
    )
    .into_bytes()
}

#[test]
fn a_debezium_placeholder_is_never_sent_its_attribute_is_left_as_it_is() {
    use base64::Engine;
    // Text columns hold the placeholder itself; a bytes column its bytes, base64 (the JSON converter's bytes).
    let bytes_placeholder =
        base64::engine::general_purpose::STANDARD.encode("__debezium_unavailable_value");
    let update = debezium_update("__debezium_unavailable_value", &bytes_placeholder);
    let plan = plan_kafka(&mapping(), DBZ_TOPIC, &[(Some(br#"{"id": 46}"#), &update)]);
    let posts = posts(&plan);
    let (partial, body) = &posts[0];
    assert!(partial, "options=partialOverride");
    let attributes = body["attributes"].as_object().unwrap();
    assert!(!attributes.contains_key("LastName"), "{body}");
    assert!(!attributes.contains_key("Email"), "{body}");
    assert_eq!(body["attributes"]["FirstName"], json!([{"value": "Janet"}]));
    assert!(body["attributes"]["Address"].is_array());
    let text = body.to_string();
    assert!(
        !text.contains("__debezium") && !text.contains(&bytes_placeholder),
        "{text}"
    );
}

#[test]
fn a_connectors_own_placeholder_is_read_from_the_topics_mapping() {
    let mapping = CdcMapping::parse(&format!(
        "{EXAMPLE}\n[topics.\"pg.public.customer\"]\nformat = \"debezium\"\nunavailable_value = \"~toast~\"\n"
    ))
    .unwrap();
    let update = debezium_update("~toast~", "jane@example.com");
    let posts = posts(&plan_kafka(
        &mapping,
        "pg.public.customer",
        &[(None, &update)],
    ));
    let (partial, body) = &posts[0];
    assert!(partial);
    assert!(body["attributes"].get("LastName").is_none(), "{body}");
    // On a topic with the default placeholder, "~toast~" is a value like any other.
    let posts = self::posts(&plan_kafka(&mapping, DBZ_TOPIC, &[(None, &update)]));
    assert_eq!(
        posts[0].1["attributes"]["LastName"],
        json!([{"value": "~toast~"}])
    );
    assert!(!posts[0].0, "a whole update is a full write");
}

#[test]
fn a_dms_image_without_a_mapped_column_is_a_partial_write_that_still_clears_its_nulls() {
    // IncludeNullAndEmpty=true: a NULL column is present as null; last_name is not in the image at all.
    let record = dms(
        "update",
        r#"{"id":46,"first_name":"Janet","email":"jane@example.com","birth_date":null,"street":"1 Main St","city":"Austin","zip":"78701"}"#,
    );
    let (partial, body) = dms_post(&mapping(), &record).unwrap();
    assert!(partial);
    let sent = attributes(&body);
    assert!(sent.get("LastName").is_none(), "{body}");
    assert_eq!(sent["FirstName"], json!([{"value": "Janet"}]));
    // A full write would have cleared DateOfBirth: the partial one says so with an empty list.
    assert_eq!(sent["DateOfBirth"], json!([]));
    // By default (DMS without IncludeNullAndEmpty) the absent column reads as NULL: a full write.
    let whole = CdcMapping::parse(EXAMPLE).unwrap();
    let (partial, body) = dms_post(&whole, &record).unwrap();
    assert!(!partial);
    assert!(attributes(&body).get("DateOfBirth").is_none(), "{body}");
    // A full image is a full write.
    assert!(!dms_post(&mapping(), &dms("update", FULL_46)).unwrap().0);
}

#[test]
fn a_nested_attribute_the_image_holds_in_part_is_a_dead_letter_naming_its_columns() {
    // Address.City and Address.Zip.Zip5 are there, Address.AddressLine1 (street) is not: a partial write would
    // replace Address whole and lose the street.
    let record = dms(
        "update",
        r#"{"id":46,"first_name":"Janet","last_name":"Doe","email":"jane@example.com","birth_date":null,"city":"Secret-City","zip":"78701"}"#,
    );
    let err = dms_post(&mapping(), &record).unwrap_err();
    let TransformError::PartialImage { table, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(table, "public.customer");
    assert!(
        reason.contains("city, zip") && reason.contains("street"),
        "{reason}"
    );
    assert!(reason.contains("Address"), "{reason}");
    assert!(
        !err.to_string().contains("Secret-City"),
        "never the values: {err}"
    );
}

#[test]
fn a_primary_key_change_with_a_partial_image_is_a_dead_letter() {
    // The new key's crosswalk would get only the columns present.
    let record = br#"{"data":{"id":47,"first_name":"Janet"},"before-image":{"id":46},"metadata":{"record-type":"data","operation":"update","schema-name":"public","table-name":"customer"}}"#;
    let record = DmsRecord::parse(record, DEFAULT_BEFORE_IMAGE_FIELD).unwrap();
    let err = plan_record(&mapping(), &record, now()).unwrap_err();
    assert!(err.to_string().contains("the key changed"), "{err}");
    assert!(err.to_string().contains("last_name"), "{err}");
}

#[test]
fn a_debezium_change_without_its_row_is_a_dead_letter_never_a_write_from_its_key() {
    let key: &[u8] = br#"{"id": 46}"#;
    for op in ["c", "r", "u"] {
        let event = format!(
            r#"{{"before": null, "after": null, "source": {{"connector": "postgresql", "schema": "public",
                "table": "customer", "ts_ms": 1722214749000, "lsn": 2088526360}}, "op": "{op}", "ts_ms": 1722214750000}}"#
        );
        let plan = plan_kafka(&mapping(), DBZ_TOPIC, &[(Some(key), event.as_bytes())]);
        let Some(Outcome::Permanent(reason)) = &plan.outcomes[0] else {
            panic!("{op}: {:?}", plan.decisions())
        };
        assert!(reason.contains("without the row"), "{op}: {reason}");
        assert!(plan.waves.is_empty(), "{op}: nothing is written");
    }
    // A delete's row is its key: it still retires the crosswalk.
    let delete = br#"{"before": null, "after": null, "source": {"connector": "postgresql", "schema": "public",
        "table": "customer", "ts_ms": 1722214749000, "lsn": 2088526370}, "op": "d", "ts_ms": 1722214750000}"#;
    let plan = plan_kafka(&mapping(), DBZ_TOPIC, &[(Some(key), delete)]);
    assert_eq!(plan.outcomes[0], None);
    assert!(plan.waves[0][0].write.retires());
}

#[test]
fn goldengate_and_dms_changes_without_their_row_are_dead_letters() {
    for op in [
        r#"{"table": "CRM.public.customer", "op_type": "I", "pos": "1"}"#,
        r#"{"table": "CRM.public.customer", "op_type": "U", "pos": "2", "before": {"id": 46}}"#,
    ] {
        let plan = plan_kafka(&mapping(), GG_TOPIC, &[(None, op.as_bytes())]);
        assert!(
            matches!(&plan.outcomes[0], Some(Outcome::Permanent(r)) if r.contains("without the row")),
            "{op}: {:?}",
            plan.outcomes[0]
        );
        assert!(plan.waves.is_empty());
    }
    for operation in ["insert", "update", "load"] {
        let record = format!(
            r#"{{"metadata":{{"record-type":"data","operation":"{operation}","schema-name":"public","table-name":"customer"}}}}"#
        );
        let err = DmsRecord::parse(record.as_bytes(), DEFAULT_BEFORE_IMAGE_FIELD).unwrap_err();
        assert!(
            err.to_string().contains("no \"data\""),
            "{operation}: {err}"
        );
    }
}

#[test]
fn numbers_reach_the_body_with_the_digits_the_source_wrote() {
    // A decimal(22,8) and a 24-digit integer: a float would make them 98765432109876.55 and 1.2345678901234567e23.
    let record = dms(
        "insert",
        r#"{"id":123456789012345678901234,"first_name":98765432109876.54321012,"last_name":123456789012345678901234,"email":null,"birth_date":null,"street":null,"city":null,"zip":null}"#,
    );
    let (partial, body) = dms_post(&mapping(), &record).unwrap();
    assert!(!partial);
    assert!(
        body.contains(r#""FirstName":[{"value":"98765432109876.54321012"}]"#),
        "{body}"
    );
    assert!(
        body.contains(r#""LastName":[{"value":"123456789012345678901234"}]"#),
        "{body}"
    );
    // A plain integer is exact however long: a usable key.
    assert!(
        body.contains(r#""value":"123456789012345678901234","sourceTable""#),
        "{body}"
    );
    // The same digits from GoldenGate and Debezium.
    let gg = br#"{"table": "CRM.public.customer", "op_type": "I", "pos": "3",
        "after": {"id": 46, "first_name": 98765432109876.54321012, "last_name": 123456789012345678901234}}"#;
    let dbz = br#"{"before": null, "after": {"id": 46, "first_name": 98765432109876.54321012, "last_name": 123456789012345678901234},
        "source": {"connector": "postgresql", "schema": "public", "table": "customer", "ts_ms": 1722214749000, "lsn": 1},
        "op": "c", "ts_ms": 1722214750000}"#;
    for (topic, value) in [(GG_TOPIC, &gg[..]), (DBZ_TOPIC, &dbz[..])] {
        let posts = posts(&plan_kafka(&mapping(), topic, &[(None, value)]));
        let attributes = &posts[0].1["attributes"];
        assert_eq!(
            attributes["FirstName"][0]["value"], "98765432109876.54321012",
            "{topic}"
        );
        assert_eq!(
            attributes["LastName"][0]["value"], "123456789012345678901234",
            "{topic}"
        );
    }
}

#[test]
fn a_key_in_scientific_notation_is_still_refused() {
    // DMS without UseLargeIntegerValue: 123456789012345678 as 1.2345678901234568E+17.
    for key in ["1.2345678901234568E+17", "1.2345678901234567e23"] {
        let record = dms("insert", &format!(r#"{{"id":{key},"first_name":"Ann"}}"#));
        let err = dms_post(&mapping(), &record).unwrap_err();
        assert!(
            err.to_string().contains("UseLargeIntegerValue"),
            "{key}: {err}"
        );
    }
}

#[test]
fn a_record_whose_column_fails_keeps_its_key_for_the_dead_letter() {
    let record = dms(
        "insert",
        r#"{"id":46,"first_name":"Jane","birth_date":"not a date","street":null,"city":null,"zip":null}"#,
    );
    let inputs = [CdcInput {
        change: SourceChange::Dms(&record),
        lane: 0,
        position: Position::Sequence("1"),
    }];
    let plan = plan_batch(&mapping(), DEFAULT_BEFORE_IMAGE_FIELD, &inputs, now());
    assert!(matches!(&plan.outcomes[0], Some(Outcome::Permanent(r)) if r.contains("birth_date")));
    assert_eq!(
        plan.infos[0].key.as_ref().map(|k| k.value.as_str()),
        Some("46")
    );
}
