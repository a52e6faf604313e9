//! cdc-ingest's Kafka input in-process: Debezium and GoldenGate change events (fixtures written from the tools'
//! documentation) in a Lambda Kafka event → the handler → a wiremock Reltio, compared with what the equivalent DMS
//! records send; per-partition partial batch responses; bad messages dead-lettered with where they are.

mod common;

use cdc_ingest::{handle, handle_event, handle_kafka, CdcEvent, CdcResponse};
use common::{event, soon, World};
use mdm_sync_adapters::kafka::{KafkaEvent, KafkaEventResponse};
use mdm_sync_testkit::{kafka_event, KafkaTestRecord};
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

const DMS_INSERT_46: &[u8] = include_bytes!("../../../tests/fixtures/dms/insert.json");
const DMS_PK_CHANGE: &[u8] = include_bytes!("../../../tests/fixtures/dms/update-pk-change.json");
const DMS_DELETE_46: &[u8] = include_bytes!("../../../tests/fixtures/dms/delete-key-only.json");
const DBZ_INSERT_46: &[u8] = include_bytes!("../../../tests/fixtures/debezium/insert.json");
const DBZ_PK_DELETE: &[u8] =
    include_bytes!("../../../tests/fixtures/debezium/update-pk-change-delete.json");
const DBZ_PK_CREATE: &[u8] =
    include_bytes!("../../../tests/fixtures/debezium/update-pk-change-create.json");
const DBZ_DELETE_46: &[u8] =
    include_bytes!("../../../tests/fixtures/debezium/delete-key-only.json");
const DBZ_TRUNCATE: &[u8] = include_bytes!("../../../tests/fixtures/debezium/truncate.json");
const GG_INSERT_46: &[u8] = include_bytes!("../../../tests/fixtures/goldengate/insert.json");
const GG_PK_CHANGE: &[u8] =
    include_bytes!("../../../tests/fixtures/goldengate/update-pk-change.json");
const GG_DELETE_46: &[u8] = include_bytes!("../../../tests/fixtures/goldengate/delete.json");

/// Named in mapping.example.toml's `[topics]` as Debezium.
const DBZ_TOPIC: &str = "dbserver1.public.customer";
/// Not named there: its format is told from the messages.
const GG_TOPIC: &str = "ogg.public.customer";

fn record<'a>(topic: &'a str, partition: i64, offset: i64, value: &'a [u8]) -> KafkaTestRecord<'a> {
    KafkaTestRecord {
        topic,
        partition,
        offset,
        value: Some(value),
        ..Default::default()
    }
}

fn kafka(records: &[KafkaTestRecord]) -> KafkaEvent {
    serde_json::from_value(kafka_event(records)).unwrap()
}

fn failures(response: &KafkaEventResponse) -> Vec<(String, i64)> {
    response
        .batch_item_failures
        .iter()
        .map(|f| {
            (
                f.item_identifier.partition.clone(),
                f.item_identifier.offset,
            )
        })
        .collect()
}

/// What the DMS path sends Reltio for `records` (one Kinesis event), in arrival order.
async fn dms_posts(records: &[&[u8]]) -> Vec<(String, Value)> {
    let world = World::start().await;
    world.entities_ok().await;
    let response = handle(&world.deps(&[]).await, event(records), soon()).await;
    assert!(response.batch_item_failures.is_empty());
    world.posts().await
}

/// Hands `ev` to the Kafka path and checks it is settled (no retry, no dead letter) and that what it sent Reltio is
/// exactly what the DMS path sends for `dms`.
async fn sends_what_dms_sends(
    world: &World,
    deps: &cdc_ingest::Deps,
    ev: KafkaEvent,
    dms: &[&[u8]],
) {
    let before = world.posts().await.len();
    let response = handle_kafka(deps, ev, soon()).await;
    assert!(failures(&response).is_empty());
    assert!(world.dlq().await.is_empty());
    assert_eq!(world.posts().await[before..], dms_posts(dms).await[..]);
}

#[tokio::test]
async fn debezium_changes_send_reltio_what_the_same_dms_records_send() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let key46 = br#"{"id": 46}"#;
    let key47 = br#"{"id": 47}"#;
    let ev = kafka(&[
        KafkaTestRecord {
            key: Some(key46),
            ..record(DBZ_TOPIC, 0, 10, DBZ_INSERT_46)
        },
        // A primary-key change: the delete half names the new key, the create half the old one.
        KafkaTestRecord {
            key: Some(key46),
            headers: vec![("__debezium.newkey", key47)],
            ..record(DBZ_TOPIC, 0, 11, DBZ_PK_DELETE)
        },
        KafkaTestRecord {
            key: Some(key46),
            value: None,
            ..record(DBZ_TOPIC, 0, 12, b"")
        },
        KafkaTestRecord {
            key: Some(key47),
            headers: vec![("__debezium.oldkey", key46)],
            ..record(DBZ_TOPIC, 0, 13, DBZ_PK_CREATE)
        },
    ]);
    sends_what_dms_sends(&world, &deps, ev, &[DMS_INSERT_46, DMS_PK_CHANGE]).await;

    // A delete whose before image holds only the key, then the tombstone after it.
    let ev = kafka(&[
        KafkaTestRecord {
            key: Some(key46),
            ..record(DBZ_TOPIC, 0, 14, DBZ_DELETE_46)
        },
        KafkaTestRecord {
            key: Some(key46),
            value: None,
            ..record(DBZ_TOPIC, 0, 15, b"")
        },
    ]);
    sends_what_dms_sends(&world, &deps, ev, &[DMS_DELETE_46]).await;
}

#[tokio::test]
async fn goldengate_operations_send_reltio_what_the_same_dms_records_send() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let ev = kafka(&[
        record(GG_TOPIC, 0, 1, GG_INSERT_46),
        // A compressed update that changes the key: `after` holds only the new key, `before` the whole row.
        record(GG_TOPIC, 0, 2, GG_PK_CHANGE),
    ]);
    sends_what_dms_sends(&world, &deps, ev, &[DMS_INSERT_46, DMS_PK_CHANGE]).await;

    let ev = kafka(&[record(GG_TOPIC, 0, 3, GG_DELETE_46)]);
    sends_what_dms_sends(&world, &deps, ev, &[DMS_DELETE_46]).await;
}

#[tokio::test]
async fn a_transient_failure_redelivers_its_partition_from_that_record_and_no_other_partition() {
    let world = World::start().await;
    // Entity 7 cannot be written (Reltio answers 503 every time); every other entity can.
    Mock::given(method("POST"))
        .and(path("/reltio/api/T1/entities"))
        .and(body_string_contains(r#""value":"7""#))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&world.reltio)
        .await;
    world.entities_ok().await;
    // One entity per POST, so that 7's failure is its own.
    let deps = world.deps(&[("RELTIO_BATCH_SIZE", "1")]).await;
    let insert = |id: u32| {
        String::from_utf8_lossy(GG_INSERT_46)
            .replace("\"id\": 46", &format!("\"id\": {id}"))
            .into_bytes()
    };
    let (i5, i7, i8, i9) = (insert(5), insert(7), insert(8), insert(9));
    let ev = kafka(&[
        record(GG_TOPIC, 0, 20, &i5),
        record(GG_TOPIC, 0, 21, &i7),
        record(GG_TOPIC, 0, 22, &i9),
        record(GG_TOPIC, 1, 40, &i8),
    ]);

    let response = handle_kafka(&deps, ev, soon()).await;

    assert_eq!(failures(&response), vec![(format!("{GG_TOPIC}-0"), 21)]);
    assert!(world.dlq().await.is_empty(), "nothing is dead-lettered");
    let written: Vec<Value> = world
        .posts()
        .await
        .into_iter()
        .flat_map(|(_, body)| body.as_array().unwrap().clone())
        .map(|e| e["crosswalks"][0]["value"].clone())
        .collect();
    for id in ["5", "8"] {
        assert!(
            written.contains(&json!(id)),
            "{id} was written: {written:?}"
        );
    }
}

#[tokio::test]
async fn bad_messages_are_dead_lettered_with_where_they_are_and_truncates_are_skipped() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let unknown_op = String::from_utf8_lossy(DBZ_PK_CREATE).replace(r#""op": "c""#, r#""op": "x""#);
    assert!(unknown_op.contains(r#""op": "x""#), "the fixture has an op");
    let ev = kafka(&[
        KafkaTestRecord {
            key: Some(b"k1"),
            ..record(DBZ_TOPIC, 0, 3, b"not json")
        },
        record(DBZ_TOPIC, 0, 4, unknown_op.as_bytes()),
        record("some.other.topic", 0, 9, br#"{"hello": "world"}"#),
        record(DBZ_TOPIC, 0, 5, DBZ_TRUNCATE),
        // A GoldenGate message on a topic the mapping says is Debezium.
        record(DBZ_TOPIC, 0, 6, GG_INSERT_46),
        record(GG_TOPIC, 2, 7, GG_INSERT_46),
    ]);

    let response = handle_kafka(&deps, ev, soon()).await;

    assert!(
        failures(&response).is_empty(),
        "a bad message never blocks its partition"
    );
    let mut dlq = world.dlq().await;
    dlq.sort_by_key(|m| {
        (
            m["topic"].as_str().unwrap().to_owned(),
            m["offset"].as_i64(),
        )
    });
    let located: Vec<(&str, i64, i64)> = dlq
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap(),
                m["partition"].as_i64().unwrap(),
                m["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        located,
        [
            (DBZ_TOPIC, 0, 3),
            (DBZ_TOPIC, 0, 4),
            (DBZ_TOPIC, 0, 6),
            ("some.other.topic", 0, 9)
        ]
    );
    for m in &dlq {
        assert_eq!(m["function"], "cdc-ingest");
        assert!(!m["reason"].as_str().unwrap().is_empty(), "{m}");
    }
    assert_eq!(dlq[0]["key"], "k1");
    assert_eq!(
        dlq[0]["valueBase64"], "bm90IGpzb24=",
        "a value that is not JSON is kept as base64"
    );
    assert!(
        dlq[1]["reason"].as_str().unwrap().contains("\"x\""),
        "{}",
        dlq[1]["reason"]
    );
    assert!(
        dlq[3]["reason"].as_str().unwrap().contains("[topics]"),
        "{}",
        dlq[3]["reason"]
    );
    // The truncate wrote nothing; the good message on the other partition was written.
    let posts = world.posts().await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].1[0]["crosswalks"][0]["value"], "46");
}

#[tokio::test]
async fn the_event_shape_picks_the_source_and_its_response() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let kafka: CdcEvent =
        serde_json::from_value(kafka_event(&[record(GG_TOPIC, 0, 1, GG_INSERT_46)])).unwrap();
    let kinesis: CdcEvent =
        serde_json::from_value(mdm_sync_testkit::kinesis_event(&[("k", DMS_INSERT_46)])).unwrap();
    assert!(
        matches!(handle_event(&deps, kafka, soon()).await, CdcResponse::Kafka(r) if r.batch_item_failures.is_empty())
    );
    assert!(
        matches!(handle_event(&deps, kinesis, soon()).await, CdcResponse::Kinesis(r) if r.batch_item_failures.is_empty())
    );
    assert_eq!(world.posts().await.len(), 2);
}

#[test]
fn the_sample_kafka_event_plans_every_record_without_dead_letters() {
    let CdcEvent::Kafka(event) =
        serde_json::from_slice(include_bytes!("../../../events/cdc-ingest-kafka.json")).unwrap()
    else {
        panic!("events/cdc-ingest-kafka.json is a Kafka event")
    };
    let mapping =
        mdm_sync_domain::cdc::mapping::CdcMapping::parse(include_str!("../mapping.example.toml"))
            .unwrap();
    let (records, lanes) = mdm_sync_adapters::kafka::records(event);
    let inputs = mdm_sync_adapters::kafka::cdc_inputs(&records, &lanes);
    let plan = mdm_sync_domain::cdc::batch::plan_batch(
        &mapping,
        "before-image",
        &inputs,
        chrono::Utc::now(),
    );
    let decisions = plan.decisions();
    let ends: Vec<&str> = decisions
        .iter()
        .map(|d| d.rsplit("→ ").next().unwrap())
        .collect();
    assert_eq!(
        ends,
        [
            "write",
            "skip: key-change-delete",
            "skip: tombstone",
            "write",
            "write"
        ],
        "{decisions:?}"
    );
    assert_eq!(plan.waves.len(), 3, "46's upsert, its retirement, then 47");
}

#[tokio::test]
async fn a_key_in_two_partitions_is_written_in_source_order_not_partition_order() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    // 46 is updated at 00:58:30 (its own partition, 1), then changes its key to 47 at 00:58:59: Debezium sends
    // the create half under the new key, here to partition 0, which the event lists first.
    let mut update: Value = serde_json::from_slice(DBZ_INSERT_46).unwrap();
    update["payload"]["op"] = json!("u");
    update["payload"]["source"]["ts_us"] = json!(1_722_214_710_000_000i64);
    update["payload"]["source"]["ts_ms"] = json!(1_722_214_710_000i64);
    let update = update.to_string().into_bytes();
    let ev = kafka(&[
        KafkaTestRecord {
            key: Some(br#"{"id": 47}"#),
            headers: vec![("__debezium.oldkey", br#"{"id": 46}"#)],
            ..record(DBZ_TOPIC, 0, 8, DBZ_PK_CREATE)
        },
        KafkaTestRecord {
            key: Some(br#"{"id": 46}"#),
            ..record(DBZ_TOPIC, 1, 3, &update)
        },
    ]);

    let response = handle_kafka(&deps, ev, soon()).await;

    assert!(failures(&response).is_empty());
    // Every entity written for crosswalk 46, in the order Reltio received them (a POST may carry several).
    let last_46 = world
        .posts()
        .await
        .into_iter()
        .flat_map(|(_, body)| body.as_array().unwrap().clone())
        .rfind(|entity| entity["crosswalks"][0]["value"] == "46")
        .expect("46 was written");
    assert!(
        last_46["crosswalks"][0].get("deleteDate").is_some(),
        "46 ends retired, not revived by its older update: {last_46:?}"
    );
}
