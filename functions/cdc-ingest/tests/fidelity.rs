//! Nothing altered, nothing lost, at the handler: a compressed GoldenGate update reaches Reltio as a partial
//! override of what changed, numbers reach Reltio and the dead-letter queue with the digits the source wrote, a
//! Debezium create without its row never brings a deleted key back, and a Kafka letter keeps its record's
//! timestamp to the millisecond.

mod common;

use cdc_ingest::{handle, handle_kafka};
use common::{customer, event, soon, World};
use mdm_sync_adapters::kafka::KafkaEvent;
use mdm_sync_testkit::{kafka_event, KafkaTestRecord};
use serde_json::{json, Value};

const GG_INSERT_46: &[u8] = include_bytes!("../../../tests/fixtures/goldengate/insert.json");
const DBZ_DELETE_46: &[u8] =
    include_bytes!("../../../tests/fixtures/debezium/delete-key-only.json");
/// Not in mapping.example.toml's `[topics]`: told from its messages.
const GG_TOPIC: &str = "ogg.public.customer";
/// Named in mapping.example.toml's `[topics]` as Debezium.
const DBZ_TOPIC: &str = "dbserver1.public.customer";

/// GoldenGate's default (compressed) update: the key and the one changed column.
const GG_COMPRESSED_UPDATE_46: &[u8] = br#"{"table": "CRM.public.customer", "op_type": "U", "op_ts": "2024-07-29 00:59:09.000000", "current_ts": "2024-07-29T00:59:10.000000", "pos": "00000000000000002400", "primary_keys": ["id"], "after": {"id": 46, "first_name": "Janet"}}"#;

/// A DMS insert whose columns hold a decimal(22,8) and a 24-digit integer: a float would round both.
fn dms_numbers(id: u32, birth_date: &str) -> Vec<u8> {
    format!(
        r#"{{"data":{{"id":{id},"first_name":98765432109876.54321012,"last_name":123456789012345678901234,"email":null,"birth_date":{birth_date},"street":null,"city":"Austin","zip":null}},"metadata":{{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer","commit-timestamp":"2024-07-29T00:58:17.974340Z"}}}}"#
    )
    .into_bytes()
}

fn record<'a>(topic: &'a str, offset: i64, key: &'a [u8], value: &'a [u8]) -> KafkaTestRecord<'a> {
    KafkaTestRecord {
        topic,
        partition: 0,
        offset,
        key: Some(key),
        value: Some(value),
        ..Default::default()
    }
}

fn kafka(records: &[KafkaTestRecord]) -> KafkaEvent {
    serde_json::from_value(kafka_event(records)).unwrap()
}

/// The bodies of the POST /entities requests as sent, with their query.
async fn raw_posts(world: &World) -> Vec<(String, String)> {
    world
        .reltio
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/entities"))
        .map(|r| {
            let query = r.url.query().unwrap_or("").to_owned();
            (query, String::from_utf8(r.body).unwrap())
        })
        .collect()
}

/// The dead letters as queued, text for text.
async fn raw_letters(world: &World) -> Vec<String> {
    world
        .moto
        .drain_queue(&world.dlq_url)
        .await
        .into_iter()
        .map(|m| m.body.unwrap())
        .collect()
}

#[tokio::test]
async fn a_compressed_goldengate_update_is_a_partial_override_of_the_column_it_changed() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let ev = kafka(&[
        record(GG_TOPIC, 1, b"46", GG_INSERT_46),
        record(GG_TOPIC, 2, b"46", GG_COMPRESSED_UPDATE_46),
    ]);

    let response = handle_kafka(&deps, ev, soon()).await;

    assert!(response.batch_item_failures.is_empty());
    assert!(world.dlq().await.is_empty());
    let posts = world.posts().await;
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(
        posts[0].0, "returnObjects=false",
        "the insert is the whole row"
    );
    assert_eq!(posts[1].0, "returnObjects=false&options=partialOverride");
    // Only what changed: FirstName, LastName, Email and Address stay as the insert left them.
    assert_eq!(
        posts[1].1,
        json!([{
            "type": "configuration/entityTypes/Individual",
            "attributes": {"FirstName": [{"value": "Janet"}]},
            "crosswalks": [customer("46")]
        }])
    );
}

#[tokio::test]
async fn numbers_reach_reltio_and_the_dead_letter_queue_with_their_digits() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let good = dms_numbers(46, "null");
    // A date no transform reads: the record is dead-lettered as received.
    let bad = dms_numbers(47, "\"not a date\"");

    let response = handle(&deps, event(&[&good, &bad]), soon()).await;

    assert!(response.batch_item_failures.is_empty());
    let posts = raw_posts(&world).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    let body = &posts[0].1;
    assert!(
        body.contains(r#""FirstName":[{"value":"98765432109876.54321012"}]"#),
        "{body}"
    );
    assert!(
        body.contains(r#""LastName":[{"value":"123456789012345678901234"}]"#),
        "{body}"
    );
    let letters = raw_letters(&world).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].contains(
            r#""first_name":98765432109876.54321012,"last_name":123456789012345678901234"#
        ),
        "the record as received: {}",
        letters[0]
    );
    let letter: Value = serde_json::from_str(&letters[0]).unwrap();
    assert!(letter["reason"].as_str().unwrap().contains("birth_date"));
    // The key decoded before the column failed: the letter names the row.
    assert_eq!(letter["key"], "47");
}

#[tokio::test]
async fn a_debezium_create_without_its_row_after_a_delete_leaves_the_key_retired() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let key: &[u8] = br#"{"id": 46}"#;
    let create_without_row = br#"{"before": null, "after": null, "source": {"version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": 1722214801000, "db": "crm", "schema": "public", "table": "customer", "txId": 1143, "lsn": 2088526600}, "op": "c", "ts_ms": 1722214801001}"#;
    let ev = kafka(&[
        record(DBZ_TOPIC, 1, key, DBZ_DELETE_46),
        record(DBZ_TOPIC, 2, key, create_without_row),
    ]);

    let response = handle_kafka(&deps, ev, soon()).await;

    assert!(response.batch_item_failures.is_empty());
    let dlq = world.dlq().await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["offset"], 2);
    assert!(
        dlq[0]["reason"]
            .as_str()
            .unwrap()
            .contains("without the row"),
        "{}",
        dlq[0]["reason"]
    );
    // The delete end-dated 46; nothing wrote it back.
    let posts = world.posts().await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    let crosswalk = &posts[0].1[0]["crosswalks"][0];
    assert_eq!(crosswalk["value"], "46");
    assert!(crosswalk["deleteDate"].is_string(), "{crosswalk}");
}

#[tokio::test]
async fn a_kafka_letter_keeps_its_records_timestamp_to_the_millisecond() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let mut ev = kafka_event(&[record(DBZ_TOPIC, 7, b"k", b"not json")]);
    ev["records"][format!("{DBZ_TOPIC}-0")][0]["timestamp"] = json!(1_764_000_001_041i64);

    handle_kafka(&deps, serde_json::from_value(ev).unwrap(), soon()).await;

    let dlq = world.dlq().await;
    assert_eq!(dlq.len(), 1);
    // Read through a float, it was 1764000001040.
    assert_eq!(dlq[0]["timestamp"], json!(1_764_000_001_041i64));
}
