//! Reltio's own stream in every form it sends: the same logical change as a SNAPSHOT, SNAPSHOT_WITH_DELTA, DELTAS
//! or skipPayload event, plain JSON or JSON_ZIP_BASE64, with Reltio's headers as message attributes, becomes the
//! same change record; the forms without a snapshot fetch the entity. Built with the testkit's `reltio_stream`,
//! which follows Reltio's message-streaming documentation.

use analytics_sink::{handle, Config, Deps, Handled};
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_domain::analytics::AnalyticsMapping;
use mdm_sync_testkit::fakes::{FakeQueue, FakeRecordSink, FakeReltio};
use mdm_sync_testkit::reltio_stream::{body, event_json, headers, Format, PayloadType};
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:mdm-sync-analytics";

struct World {
    sink: Arc<FakeRecordSink>,
    reltio: Arc<FakeReltio>,
    dlq: Arc<FakeQueue>,
    deps: Deps,
}

fn entity(uri: &str, first_name: &str) -> Value {
    json!({"uri": uri, "type": "configuration/entityTypes/Individual", "updatedTime": 1_780_000_000_007i64,
           "attributes": {"FirstName": [{"ov": true, "value": first_name}],
                          "Address": [{"ov": true, "value": {"City": [{"ov": true, "value": "Austin"}]}}]},
           "crosswalks": [{"type": "configuration/sources/CRM_DB", "value": "1", "sourceTable": "CUSTOMER"}]})
}

fn world() -> World {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("FIREHOSE_STREAM_NAME", "changes"),
        ("ANALYTICS_MAPPING_FILE", "unused"),
        (
            "ANALYTICS_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/1/analytics-dlq",
        ),
    ]);
    let config = Config::from_env(&move |k: &str| vars.get(k).map(|v| v.to_string())).unwrap();
    let sink = Arc::new(FakeRecordSink::default());
    let reltio = Arc::new(FakeReltio::with(&[
        ("entities/A", entity("entities/A", "Ann")),
        ("entities/B", entity("entities/B", "Bo")),
    ]));
    let dlq = Arc::new(FakeQueue::default());
    let deps = Deps {
        config,
        mapping: AnalyticsMapping::parse(include_str!("../mapping.example.toml")).unwrap(),
        sink: sink.clone(),
        reltio: Some(reltio.clone()),
        dedup: None,
        signal: None,
        dlq: dlq.clone(),
        letter_store: None,
    };
    World {
        sink,
        reltio,
        dlq,
        deps,
    }
}

async fn run(w: &World, body: String, attributes: &[(String, String)]) -> Handled {
    let attrs: Vec<(&str, &str)> = attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let records: Vec<SqsTestMessage> = vec![("m1", body.as_str(), attrs.as_slice())];
    let event: SqsEvent = serde_json::from_value(sqs_event(QUEUE_ARN, &records)).unwrap();
    handle(&w.deps, event, Instant::now() + Duration::from_secs(30)).await
}

/// The records written, without the fields a second run changes by itself (its receive time, and the event id
/// derived from the body's bytes, which a zipped or delta body changes).
fn records(w: &World) -> Vec<Value> {
    w.sink
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            for field in ["received_at", "event_id"] {
                r.as_object_mut().unwrap().remove(field);
            }
            r
        })
        .collect()
}

#[tokio::test]
async fn every_payload_type_in_either_format_becomes_the_same_change_record() {
    let change =
        json!({"type": "ENTITY_CHANGED", "object": entity("entities/A", "Ann"), "ovChanged": true});
    let attributes = headers(&change, "T1", Some(7));
    let reference = world();
    run(&reference, change.to_string(), &attributes).await;
    let expected = records(&reference);
    assert_eq!(expected.len(), 1);
    assert_eq!(expected[0]["first_name"], "Ann");
    assert_eq!(expected[0]["object_version"], 7);

    for payload in PayloadType::ALL {
        for format in [Format::Json, Format::JsonZipBase64] {
            let w = world();
            let h = run(&w, body(&event_json(&change, payload), format), &attributes).await;
            let form = format!("{payload:?} {format:?}");
            assert!(h.response.batch_item_failures.is_empty(), "{form}");
            assert!(w.dlq.bodies().is_empty(), "{form}: {:?}", w.dlq.bodies());
            assert_eq!(records(&w), expected, "{form}: the same record");
            let fetched = w.reltio.fetched.lock().unwrap().len();
            assert_eq!(
                fetched,
                usize::from(!payload.has_snapshot()),
                "{form}: fetched"
            );
        }
    }
}

#[tokio::test]
async fn a_message_of_several_events_records_each() {
    let a = json!({"type": "ENTITY_CHANGED", "object": entity("entities/A", "Ann")});
    let b = json!({"type": "ENTITY_CHANGED", "object": entity("entities/B", "Bo")});
    let w = world();
    let h = run(&w, body(&format!("[{a},{b}]"), Format::JsonZipBase64), &[]).await;
    assert!(h.response.batch_item_failures.is_empty());
    let names: Vec<Value> = records(&w)
        .iter()
        .map(|r| r["first_name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Ann"), json!("Bo")]);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1, "one message");
}
