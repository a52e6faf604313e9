//! The analytics-sink binary itself under the Lambda Runtime API, configured only through the contract's variables
//! (`FIREHOSE_STREAM_NAME`, `ANALYTICS_MAPPING_FILE`, `ANALYTICS_DLQ_URL`): moto for Firehose (delivering to S3)
//! and the dead-letter queue.

use mdm_sync_testkit::runtime::invoke_once;
use mdm_sync_testkit::{sqs_event, workspace_root, MotoServer};
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_analytics-sink");
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:mdm-sync-analytics";

fn changed(uri: &str, name: &str, version: i64) -> String {
    json!({"type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": version, "updatedTime": 1_780_000_000_000i64,
           "object": {"uri": uri, "type": "configuration/entityTypes/Individual",
                      "attributes": {"FirstName": [{"ov": true, "value": name}]}, "crosswalks": []}})
    .to_string()
}

#[tokio::test]
async fn the_binary_lands_one_record_per_distinct_event_and_dead_letters_what_is_no_event() {
    let moto = MotoServer::start();
    moto.create_bucket("landing").await;
    moto.create_delivery_stream("changes", "landing", "changes/")
        .await;
    let dlq = moto.create_queue("analytics-dlq").await;
    let mapping = workspace_root().join("functions/analytics-sink/mapping.example.toml");
    let env = vec![
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("FIREHOSE_STREAM_NAME", "changes".to_owned()),
        ("ANALYTICS_MAPPING_FILE", mapping.display().to_string()),
        ("ANALYTICS_DLQ_URL", dlq.clone()),
    ];
    let (a, b) = (
        changed("entities/A", "Ann", 1),
        changed("entities/B", "Bo", 2),
    );
    let event = sqs_event(
        QUEUE_ARN,
        &[
            ("m1", &a, &[("eventId", "e1")]),
            ("m2", &b, &[("eventId", "e2")]),
            ("m3", &a, &[("eventId", "e1")]),
            ("m4", "{\"not\": \"an event\"", &[("eventId", "e4")]),
        ],
    );

    let run = invoke_once(BINARY, "analytics-sink", &env, &event).await;

    assert_eq!(
        run.answer,
        Some(json!({"batchItemFailures": []})),
        "{}",
        run.logs
    );
    let landed = moto.objects_text("landing", "changes/").await;
    let records: Vec<Value> = landed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["e1", "e2"], "one record per distinct event");
    assert!(records
        .iter()
        .any(|r| r["first_name"] == "Bo" && r["object_version"] == 2));
    let dead = moto.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1);
    let letter: Value = serde_json::from_str(dead[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(letter["messageId"], "m4");
    assert!(letter["reason"]
        .as_str()
        .unwrap()
        .contains("not a Reltio event"));
    assert!(
        run.logs.contains("\"recorded\"") || run.logs.contains("recorded"),
        "the hand-over is logged"
    );
}

#[tokio::test]
async fn a_missing_setting_stops_the_binary_at_start_up_naming_it() {
    let run = invoke_once(
        BINARY,
        "analytics-sink",
        &[
            ("ANALYTICS_MAPPING_FILE", "x".to_owned()),
            (
                "ANALYTICS_DLQ_URL",
                "https://sqs.us-east-1.amazonaws.com/1/q".to_owned(),
            ),
        ],
        &json!({"Records": []}),
    )
    .await;
    assert_eq!(run.answer, None);
    assert!(run.logs.contains("FIREHOSE_STREAM_NAME"), "{}", run.logs);
}
