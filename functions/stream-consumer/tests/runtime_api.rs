//! The stream-consumer binary itself under the Lambda Runtime API, configured only through docs/contract.md's
//! variables: a wiremock stands in for the Runtime API, moto for SQS.

use mdm_sync_testkit::runtime::{assert_no_sentinel, invoke_once, lambda_env};
use mdm_sync_testkit::{kafka_event, KafkaTestRecord, MotoServer};
use serde_json::{json, Value};
use std::process::Command;
use wiremock::MockServer;

const BINARY: &str = env!("CARGO_BIN_EXE_stream-consumer");
const TOPIC: &str = "reltio.T1.entities.changes";
/// A personal value that must never reach the logs.
const PERSON: &str = "Sentinelperson";

fn attr(m: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    m.message_attributes
        .as_ref()?
        .get(name)?
        .string_value
        .clone()
}

#[tokio::test]
async fn the_binary_enqueues_subscribed_events_dead_letters_poison_and_answers_per_partition() {
    let moto = MotoServer::start();
    let queue = moto.create_queue("events.fifo").await;
    let dlq = moto.create_queue("stream-dlq").await;
    let changed = json!({"type": "ENTITY_CHANGED", "tenantId": "T1",
        "object": {"uri": "entities/0Abc", "type": "configuration/entityTypes/Individual",
                   "attributes": {"FirstName": [{"value": PERSON, "ov": true}]}}})
    .to_string();
    let created_org = json!({"type": "ENTITY_CREATED",
        "object": {"uri": "entities/0Org", "type": "configuration/entityTypes/Organization"}})
    .to_string();
    let poison = format!("{{\"FirstName\": \"{PERSON}\"}}");
    let event = kafka_event(&[
        KafkaTestRecord {
            topic: TOPIC,
            partition: 0,
            offset: 41,
            key: Some(b"entities/0Abc"),
            value: Some(changed.as_bytes()),
            headers: vec![("objectVersion", b"7"), ("eventType", b"ENTITY_CHANGED")],
        },
        KafkaTestRecord {
            topic: TOPIC,
            partition: 0,
            offset: 42,
            key: Some(b"entities/0Org"),
            value: Some(created_org.as_bytes()),
            headers: vec![],
        },
        KafkaTestRecord {
            topic: TOPIC,
            partition: 3,
            offset: 9,
            key: Some(b"k"),
            value: Some(poison.as_bytes()),
            headers: vec![],
        },
    ]);
    let invocation = invoke_once(
        BINARY,
        "stream-consumer",
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
            ("EVENT_QUEUE_URL", queue.clone()),
            ("STREAM_DLQ_URL", dlq.clone()),
            ("ENTITY_TYPES", "Individual".into()),
            ("RUST_LOG", "debug".into()),
        ],
        &event,
    )
    .await;
    assert_eq!(
        invocation.answer.expect("the binary answered within 30 s"),
        json!({"batchItemFailures": []})
    );
    let enqueued = moto.drain_queue(&queue).await;
    assert_eq!(enqueued.len(), 1, "the Organization is filtered out");
    assert_eq!(enqueued[0].body.as_deref(), Some(changed.as_str()));
    assert_eq!(attr(&enqueued[0], "objectVersion").as_deref(), Some("7"));
    assert_eq!(
        attr(&enqueued[0], "sourceObjectUri").as_deref(),
        Some("entities/0Abc")
    );
    let dead = moto.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1);
    let letter: Value = serde_json::from_str(dead[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        (
            &letter["topic"],
            &letter["partition"],
            &letter["offset"],
            &letter["key"]
        ),
        (&json!(TOPIC), &json!(3), &json!(9), &json!("k"))
    );
    assert!(letter["reason"]
        .as_str()
        .unwrap()
        .contains("not a Reltio event"));
    assert_no_sentinel(&invocation.logs, &[PERSON]);
}

#[tokio::test]
async fn an_unreachable_queue_is_reported_at_each_partitions_first_record() {
    let moto = MotoServer::start();
    let dlq = moto.create_queue("stream-dlq").await;
    let event_json = json!({"type": "ENTITY_REMOVED", "object": {"uri": "entities/1"}}).to_string();
    let record = |partition, offset| KafkaTestRecord {
        topic: TOPIC,
        partition,
        offset,
        key: None,
        value: Some(event_json.as_bytes()),
        headers: vec![],
    };
    let event = kafka_event(&[record(0, 5), record(0, 6), record(1, 2)]);
    let answer = invoke_once(
        BINARY,
        "stream-consumer",
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
            // A queue that does not exist: every send fails.
            (
                "EVENT_QUEUE_URL",
                format!("{}/123456789012/missing", moto.endpoint),
            ),
            ("STREAM_DLQ_URL", dlq.clone()),
        ],
        &event,
    )
    .await
    .answer;
    assert_eq!(
        answer.expect("the binary answered within 30 s"),
        json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": format!("{TOPIC}-0"), "offset": 5}},
            {"itemIdentifier": {"partition": format!("{TOPIC}-1"), "offset": 2}}
        ]})
    );
    assert!(moto.drain_queue(&dlq).await.is_empty());
}

#[tokio::test]
async fn a_missing_setting_stops_the_binary_with_one_line_naming_it() {
    let runtime = MockServer::start().await;
    let output = Command::new(BINARY)
        .envs(lambda_env(&runtime, "stream-consumer"))
        .env("EVENT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/q")
        .env_remove("STREAM_DLQ_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("STREAM_DLQ_URL"), "{text}");
    assert!(
        runtime.received_requests().await.unwrap().is_empty(),
        "no invocation was taken"
    );
}
