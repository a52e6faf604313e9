//! The analytics sink's handler over in-memory fakes of its ports: what it records, skips, dead-letters and
//! reports for a retry, and the refresh signal.

use analytics_sink::{handle, Config, Deps, Handled};
use futures::future::BoxFuture;
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_domain::analytics::{AnalyticsMapping, Report};
use mdm_sync_domain::ports::{BatchSignal, PortError};
use mdm_sync_testkit::fakes::{FakeQueue, FakeRecordSink, FakeReltio};
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:mdm-sync-analytics";
const INDIVIDUAL: &str = "configuration/entityTypes/Individual";

#[derive(Default)]
struct Signal {
    sent: Mutex<Vec<(u64, Vec<String>)>>,
}

impl BatchSignal for Signal {
    fn batch_written<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<bool, PortError>> {
        Box::pin(async move {
            if report.written() == 0 {
                return Ok(false);
            }
            self.sent.lock().unwrap().push((
                report.written(),
                report.entity_types.iter().cloned().collect(),
            ));
            Ok(true)
        })
    }
}

struct World {
    sink: Arc<FakeRecordSink>,
    dlq: Arc<FakeQueue>,
    signal: Arc<Signal>,
    deps: Deps,
}

fn world(reltio: Option<FakeReltio>) -> World {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("FIREHOSE_STREAM_NAME", "changes"),
        ("ANALYTICS_MAPPING_FILE", "unused"),
        (
            "ANALYTICS_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/1/analytics-dlq",
        ),
    ]);
    let config = Config::from_env(&move |k: &str| vars.get(k).map(|v| v.to_string())).unwrap();
    let mapping = AnalyticsMapping::parse(include_str!("../mapping.example.toml")).unwrap();
    let sink = Arc::new(FakeRecordSink::default());
    let dlq = Arc::new(FakeQueue::default());
    let signal = Arc::new(Signal::default());
    let deps = Deps {
        config,
        mapping,
        sink: sink.clone(),
        reltio: reltio.map(|r| Arc::new(r) as _),
        dedup: None,
        signal: Some(signal.clone()),
        dlq: dlq.clone(),
        letter_store: None,
    };
    World {
        sink,
        dlq,
        signal,
        deps,
    }
}

fn changed(uri: &str, name: &str, version: i64) -> String {
    json!({"type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": version, "updatedTime": 1_780_000_000_000i64 + version,
           "object": {"uri": uri, "type": INDIVIDUAL,
                      "attributes": {"FirstName": [{"ov": true, "value": name}],
                                     "Address": [{"ov": true, "value": {"City": [{"ov": true, "value": "Austin"}]}}]},
                      "crosswalks": [{"type": "configuration/sources/CRM_DB", "value": "1", "sourceTable": "CUSTOMER"}]}})
    .to_string()
}

async fn run(w: &World, messages: &[(&str, &str, &str)]) -> Handled {
    let attrs: Vec<Vec<(&str, &str)>> = messages
        .iter()
        .map(|(_, _, id)| vec![("eventId", *id)])
        .collect();
    let records: Vec<SqsTestMessage> = messages
        .iter()
        .zip(&attrs)
        .map(|((m, body, _), a)| (*m, *body, a.as_slice()))
        .collect();
    let event: SqsEvent = serde_json::from_value(sqs_event(QUEUE_ARN, &records)).unwrap();
    handle(&w.deps, event, Instant::now() + Duration::from_secs(30)).await
}

fn failures(h: &Handled) -> Vec<String> {
    h.response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn each_distinct_event_becomes_one_record_and_a_bad_message_is_dead_lettered_with_its_reason()
{
    let w = world(None);
    let a = changed("entities/A", "Ann", 3);
    let merge = json!({"type": "ENTITIES_MERGED", "objectVersion": 4, "updatedTime": 5,
                       "uris": ["entities/A", "entities/B"]})
    .to_string();
    let relation =
        json!({"type": "RELATIONSHIP_CREATED", "object": {"uri": "relations/9"}}).to_string();
    let h = run(
        &w,
        &[
            ("m1", &a, "e1"),
            ("m2", &a, "e1"), // delivered twice
            ("m3", &merge, "e3"),
            ("m4", "not an event", "e4"),
            ("m5", &relation, "e5"),
        ],
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    let records = w.sink.records.lock().unwrap().clone();
    assert_eq!(records.len(), 2, "{records:?}");
    let rec = &records[0];
    assert_eq!(
        (
            rec["event_id"].as_str(),
            rec["change_type"].as_str(),
            rec["entity_type"].as_str()
        ),
        (Some("e1"), Some("UPDATE"), Some("Individual"))
    );
    assert_eq!(
        (
            rec["first_name"].as_str(),
            rec["city"].as_str(),
            rec["email"].is_null()
        ),
        (Some("Ann"), Some("Austin"), true)
    );
    assert_eq!(rec["object_version"], 3);
    assert_eq!(records[1]["merged_uris"], json!(["entities/B"]));
    assert_eq!(h.metrics.counter("RecordsWritten"), 2);
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    assert_eq!(h.metrics.counter("SkippedEventType"), 1);
    let dead = w.dlq.sent.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    let letter: Value = serde_json::from_str(&dead[0].body).unwrap();
    assert_eq!(letter["messageId"], "m4");
    assert_eq!(letter["event"], "not an event");
    assert!(letter["reason"]
        .as_str()
        .unwrap()
        .starts_with("not a Reltio event"));
    assert_eq!(
        *w.signal.sent.lock().unwrap(),
        vec![(2, vec!["Individual".to_owned(), "unknown".to_owned()])]
    );
}

#[tokio::test]
async fn a_record_firehose_fails_is_retried_and_the_batch_signals_only_what_was_written() {
    let w = world(None);
    w.sink.refuse.lock().unwrap().push("entities/B".into());
    let a = changed("entities/A", "Ann", 1);
    let b = changed("entities/B", "Bo", 1);
    let h = run(&w, &[("m1", &a, "e1"), ("m2", &b, "e2")]).await;
    assert_eq!(failures(&h), ["m2"]);
    assert_eq!(h.metrics.counter("RecordsFailed"), 1);
    assert!(
        w.dlq.sent.lock().unwrap().is_empty(),
        "transient: not dead-lettered"
    );
    assert_eq!(
        *w.signal.sent.lock().unwrap(),
        vec![(1, vec!["Individual".to_owned()])]
    );

    w.sink.refuse.lock().unwrap().clear();
    let h = run(&w, &[("m2", &b, "e2")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(w.sink.records.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_oversized_event_is_recorded_from_the_entity_fetched_from_reltio() {
    let entity = json!({"uri": "entities/E", "type": INDIVIDUAL,
                        "attributes": {"LastName": [{"ov": true, "value": "Fetched"}]}, "crosswalks": []});
    let w = world(Some(FakeReltio::with(&[("entities/E", entity)])));
    let big = json!({"type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/E",
                     "objectVersion": 8, "updatedTime": 9})
    .to_string();
    let h = run(&w, &[("m1", &big, "e1")]).await;
    assert!(failures(&h).is_empty());
    let records = w.sink.records.lock().unwrap();
    assert_eq!(records[0]["last_name"], "Fetched");
    assert_eq!(records[0]["has_snapshot"], true);
    assert_eq!(h.metrics.counter("EntitiesFetched"), 1);
}

#[test]
fn settings_name_what_is_wrong_and_reltio_is_all_or_nothing() {
    let cfg = |pairs: &[(&str, &str)]| {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(&move |k: &str| vars.get(k).cloned())
    };
    let base = [
        ("FIREHOSE_STREAM_NAME", "changes"),
        (
            "ANALYTICS_MAPPING_FILE",
            "/opt/mappings/analytics-sink.toml",
        ),
        (
            "ANALYTICS_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/1/dlq",
        ),
    ];
    let c = cfg(&base).unwrap();
    assert!(c.reltio.is_none() && c.dedup.is_none() && c.event_bus.is_none());
    let err = cfg(&base[1..]).unwrap_err().to_string();
    assert!(err.contains("FIREHOSE_STREAM_NAME"), "{err}");
    let with_reltio = [
        &base[..],
        &[("RELTIO_API_URL", "https://test.reltio.com/reltio/api/T")],
    ]
    .concat();
    let err = cfg(&with_reltio).unwrap_err().to_string();
    assert!(err.contains("RELTIO_SECRET_ID"), "{err}");
    let with_dedup = [
        &base[..],
        &[
            ("ANALYTICS_DEDUP_TABLE", "recorded"),
            ("ANALYTICS_DEDUP_TTL_DAYS", "20"),
        ],
    ]
    .concat();
    assert_eq!(
        cfg(&with_dedup).unwrap().dedup,
        Some(("recorded".into(), Duration::from_secs(20 * 86_400)))
    );
}

#[tokio::test]
async fn the_sample_event_for_sam_local_invoke_records_both_events() {
    let w = world(None);
    let path = mdm_sync_testkit::workspace_root().join("events/analytics-sink.json");
    let event: SqsEvent = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let h = handle(&w.deps, event, Instant::now() + Duration::from_secs(30)).await;
    assert!(failures(&h).is_empty());
    let records = w.sink.records.lock().unwrap();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["change_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["UPDATE", "MERGE"]);
    assert_eq!(records[0]["first_name"], "Jane");
}
