//! The handler over in-memory queues: what each kind of record becomes (enqueued, filtered, dead-lettered,
//! redelivered), the partial batch response per partition, and the settlement rule that nothing after a
//! partition's first transient failure is final.

use mdm_sync_testkit::fakes::FakeQueue;
use mdm_sync_testkit::{kafka_event, KafkaTestRecord};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream_consumer::{handle, Config, Deps};

const TOPIC: &str = "reltio.T1.entities.changes";

fn changed(entity: &str, version: u64) -> String {
    json!({"type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": version,
           "object": {"uri": format!("entities/{entity}"), "type": "configuration/entityTypes/Individual",
                      "attributes": {"FirstName": [{"value": "Jane", "ov": true}]}}})
    .to_string()
}

fn config(extra: &[(&str, &str)]) -> Config {
    let vars: HashMap<String, String> = [
        (
            "EVENT_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/events",
        ),
        (
            "STREAM_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/1/stream-dlq",
        ),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Config::from_env(&move |k: &str| vars.get(k).cloned()).unwrap()
}

struct World {
    deps: Deps,
    queue: Arc<FakeQueue>,
    dlq: Arc<FakeQueue>,
}

impl World {
    fn new(config: Config) -> World {
        let queue = Arc::new(FakeQueue::default());
        let dlq = Arc::new(FakeQueue::default());
        World {
            deps: Deps {
                config,
                queue: queue.clone(),
                dlq: dlq.clone(),
                letter_store: None,
            },
            queue,
            dlq,
        }
    }

    fn queue(&self) -> &FakeQueue {
        &self.queue
    }

    fn dlq(&self) -> &FakeQueue {
        &self.dlq
    }

    async fn handle(&self, records: &[KafkaTestRecord<'_>]) -> Value {
        let event = serde_json::from_value(kafka_event(records)).unwrap();
        let response = handle(&self.deps, event, Instant::now() + Duration::from_secs(10)).await;
        serde_json::to_value(response).unwrap()
    }
}

fn record<'a>(partition: i64, offset: i64, value: &'a [u8]) -> KafkaTestRecord<'a> {
    KafkaTestRecord {
        topic: TOPIC,
        partition,
        offset,
        key: Some(b"entities/1"),
        value: Some(value),
        headers: vec![],
    }
}

fn attribute(m: &mdm_sync_domain::queue::OutgoingMessage, name: &str) -> Option<String> {
    m.attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn every_subscribed_event_is_enqueued_and_nothing_is_reported() {
    let world = World::new(config(&[]));
    let a = changed("1", 3);
    let b = format!("[{}, {}]", changed("2", 1), changed("3", 9));
    let response = world
        .handle(&[record(0, 10, a.as_bytes()), record(1, 4, b.as_bytes())])
        .await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    let sent = world.queue().sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].body, a);
    assert_eq!(attribute(&sent[0], "objectVersion").as_deref(), Some("3"));
    assert_eq!(
        attribute(&sent[2], "sourceObjectUri").as_deref(),
        Some("entities/3")
    );
    assert!(world.dlq().sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn headers_give_the_version_and_a_fifo_queue_gets_group_and_dedup_ids() {
    let world = World::new(config(&[(
        "EVENT_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/1/events.fifo",
    )]));
    let body = r#"{"type":"ENTITY_CHANGED","exceededQueueSizeLimit":true}"#;
    let mut r = record(0, 1, body.as_bytes());
    r.headers = vec![
        ("objectVersion", b"17"),
        ("sourceObjectUri", b"entities/0Big"),
        ("tenantId", b"T1"),
    ];
    let response = world.handle(&[r]).await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    let sent = world.queue().sent.lock().unwrap().clone();
    assert_eq!(attribute(&sent[0], "objectVersion").as_deref(), Some("17"));
    assert_eq!(sent[0].group_id.as_deref(), Some("entities/0Big"));
    assert_eq!(
        sent[0].dedup_id,
        attribute(&sent[0], "eventId"),
        "deduplicated by event id"
    );
}

#[tokio::test]
async fn the_subscription_filters_events_and_a_fully_filtered_record_is_handled() {
    let world = World::new(config(&[
        ("EVENT_TYPES", "MERGE"),
        ("ENTITY_TYPES", "Individual"),
    ]));
    let merged = r#"{"type":"ENTITIES_MERGED","uris":["entities/1","entities/2"]}"#;
    let response = world
        .handle(&[
            record(0, 1, changed("1", 1).as_bytes()),
            record(0, 2, merged.as_bytes()),
        ])
        .await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    let sent = world.queue().sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, merged);
}

#[tokio::test]
async fn poison_records_are_dead_lettered_with_where_they_are_and_why() {
    let world = World::new(config(&[]));
    let mut tombstone = record(2, 7, b"");
    tombstone.value = None;
    let response = world
        .handle(&[
            record(2, 5, b"not json at all"),
            record(2, 6, br#"{"name": "Jane"}"#),
            tombstone,
            record(2, 8, changed("1", 1).as_bytes()),
        ])
        .await;
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(world.queue().sent.lock().unwrap().len(), 1);
    let dead = world.dlq().bodies();
    assert_eq!(dead.len(), 3);
    for (letter, offset) in dead.iter().zip([5, 6, 7]) {
        assert_eq!(letter["topic"], TOPIC);
        assert_eq!(letter["partition"], 2);
        assert_eq!(letter["offset"], offset);
        assert_eq!(letter["key"], "entities/1");
        assert_eq!(letter["function"], "stream-consumer");
        assert!(letter["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .contains("neither JSON nor base64"));
    assert_eq!(dead[0]["valueBase64"], "bm90IGpzb24gYXQgYWxs");
    assert_eq!(dead[1]["value"], json!({"name": "Jane"}));
    assert!(dead[2]["reason"].as_str().unwrap().contains("no value"));
}

#[tokio::test]
async fn a_transient_failure_reports_the_first_failed_record_of_its_partition_only() {
    let world = World::new(config(&[]));
    world
        .queue()
        .refuse_containing
        .lock()
        .unwrap()
        .push("entities/FAIL".into());
    let ok = changed("1", 1);
    let fail = changed("FAIL", 1);
    let response = world
        .handle(&[
            record(0, 1, ok.as_bytes()),
            record(0, 2, fail.as_bytes()),
            // After the partition's first failure nothing is final: this poison record is not dead-lettered now,
            // it comes back with the redelivery.
            record(0, 3, b"not json"),
            record(0, 4, ok.as_bytes()),
            record(1, 9, ok.as_bytes()),
            record(1, 10, b"not json"),
        ])
        .await;
    assert_eq!(
        response,
        json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": format!("{TOPIC}-0"), "offset": 2}}
        ]})
    );
    let dead = world.dlq().bodies();
    assert_eq!(dead.len(), 1, "only partition 1's poison record: {dead:?}");
    assert_eq!(dead[0]["partition"], 1);
    assert_eq!(dead[0]["offset"], 10);
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_sent_turns_its_record_into_a_redelivery() {
    let world = World::new(config(&[]));
    *world.dlq().refuse.lock().unwrap() = true;
    let response = world
        .handle(&[
            record(0, 1, changed("1", 1).as_bytes()),
            record(0, 2, b"not json"),
            record(0, 3, changed("1", 2).as_bytes()),
        ])
        .await;
    assert_eq!(
        response,
        json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": format!("{TOPIC}-0"), "offset": 2}}
        ]})
    );
}

#[tokio::test]
async fn an_event_queue_that_is_down_reports_every_partition_at_its_first_record() {
    let world = World::new(config(&[]));
    *world.queue().refuse.lock().unwrap() = true;
    let v = changed("1", 1);
    let response = world
        .handle(&[
            record(1, 40, v.as_bytes()),
            record(0, 7, v.as_bytes()),
            record(0, 8, v.as_bytes()),
        ])
        .await;
    assert_eq!(
        response,
        json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": format!("{TOPIC}-0"), "offset": 7}},
            {"itemIdentifier": {"partition": format!("{TOPIC}-1"), "offset": 40}}
        ]})
    );
}

#[tokio::test]
async fn an_empty_event_is_answered_with_no_failures() {
    let world = World::new(config(&[]));
    assert_eq!(world.handle(&[]).await, json!({"batchItemFailures": []}));
}

#[test]
fn settings_are_checked_at_start_up_and_errors_name_the_variable() {
    let err = |vars: &[(&str, &str)]| {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(&move |k: &str| vars.get(k).cloned())
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[("STREAM_DLQ_URL", "https://q")]).contains("EVENT_QUEUE_URL"));
    assert!(err(&[("EVENT_QUEUE_URL", "https://q")]).contains("STREAM_DLQ_URL"));
    let e = err(&[
        ("EVENT_QUEUE_URL", "https://q"),
        ("STREAM_DLQ_URL", "https://d"),
        ("EVENT_TYPES", "Sometimes"),
    ]);
    assert!(e.contains("EVENT_TYPES"), "{e}");
    let e = err(&[
        ("EVENT_QUEUE_URL", "https://q"),
        ("STREAM_DLQ_URL", "https://d"),
        ("STREAM_MAX_EVENT_BYTES", "99999999"),
    ]);
    assert!(e.contains("STREAM_MAX_EVENT_BYTES"), "{e}");
}

#[tokio::test]
async fn the_sample_event_is_handled_in_full() {
    let world = World::new(config(&[]));
    let path = mdm_sync_testkit::workspace_root().join("events/stream-consumer.json");
    let event = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let response = handle(&world.deps, event, Instant::now() + Duration::from_secs(10)).await;
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": []})
    );
    let sent = world.queue().sent.lock().unwrap().clone();
    let types: Vec<String> = sent
        .iter()
        .map(|m| attribute(m, "eventType").unwrap())
        .collect();
    assert_eq!(world.dlq().bodies(), Vec::<Value>::new());
    // Partition 0 (a JSON event, a gzip-base64 one), then partition 1 (an array of two).
    assert_eq!(
        types,
        [
            "ENTITY_CHANGED",
            "ENTITY_REMOVED",
            "ENTITIES_MERGED",
            "ENTITY_LOST_MERGE"
        ]
    );
    assert_eq!(attribute(&sent[1], "objectVersion").as_deref(), Some("3"));
    assert!(world.dlq().sent.lock().unwrap().is_empty());
}
