//! crm-updater's oversized dead letters, through `handle` over in-memory fakes: a 900 KB malformed message (the
//! case that was dead-lettered with `event: null`, lost) is kept in the letter store, its letter points at it,
//! and the letter restored from the stored bytes is the message again; with the store down the message is
//! retried, never acknowledged.

mod events;

use crm_updater::{handle, Config, Deps};
use events::{failures, fake_config, QUEUE_ARN};
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_domain::crm::CrmMapping;
use mdm_sync_domain::letter::DeadLetter;
use mdm_sync_testkit::fakes::{
    FakeLedger, FakePayloadStore, FakeQueue, FakeReltio, FakeSalesforce, FakeVisibility,
};
use mdm_sync_testkit::sqs_event;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config() -> Config {
    fake_config(&[("LETTER_STORE_BUCKET", "mdm-sync-prod-letters")])
}

fn deps(dlq: Arc<FakeQueue>, store: Arc<FakePayloadStore>) -> Deps {
    Deps {
        config: config(),
        mapping: CrmMapping::parse(include_str!("../mapping.example.toml")).unwrap(),
        salesforce: Arc::new(FakeSalesforce::default()),
        reltio: Arc::new(FakeReltio::default()),
        reltio_writer: Arc::new(FakeReltio::default()),
        ledger: Arc::new(FakeLedger::default()),
        dlq,
        visibility: Arc::new(FakeVisibility::default()),
        letter_store: Some(store),
    }
}

fn batch(body: &str) -> SqsEvent {
    serde_json::from_value(sqs_event(
        QUEUE_ARN,
        &[("m-900", body, &[("eventId", "e-900")])],
    ))
    .unwrap()
}

/// 900 KB of a Reltio event cut off mid-attribute: not JSON, so there is no event to stand in for it.
fn malformed() -> String {
    format!(
        r#"{{"type":"ENTITY_CHANGED","object":{{"uri":"entities/A","attributes":{{"Notes":[{{"value":"{}"#,
        "n".repeat(900 * 1024)
    )
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn a_900_kb_malformed_message_is_kept_in_the_letter_store_and_its_letter_points_there() {
    assert_eq!(
        config().letter_store_bucket.as_deref(),
        Some("mdm-sync-prod-letters")
    );
    let dlq = Arc::new(FakeQueue::default());
    let store = Arc::new(FakePayloadStore::new("mdm-sync-prod-letters"));
    let deps = deps(dlq.clone(), store.clone());
    let body = malformed();
    let handled = handle(&deps, batch(&body), deadline()).await;

    assert!(failures(&handled).is_empty(), "dead-lettered, acknowledged");
    assert_eq!(handled.metrics.counter("RecordsDeadLettered"), 1);
    assert_eq!(handled.metrics.counter("LetterPayloadsStored"), 1);
    let sent = dlq.sent.lock().unwrap();
    assert!(sent[0].size() <= 256 * 1024);
    let v: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(
        (&v["function"], &v["messageId"], &v["eventId"]),
        (&"crm-updater".into(), &"m-900".into(), &"e-900".into())
    );
    assert_eq!(v["eventOmitted"]["bucket"], "mdm-sync-prod-letters");
    assert_eq!(v["eventOmitted"]["bytes"], body.len());
    let letter = DeadLetter::parse(&sent[0].body).unwrap();
    let (_, key) = letter.stored_payload().unwrap();
    assert!(key.starts_with("crm-updater/"), "{key}");
    let stored = store.object(key).unwrap();
    assert_eq!(stored, body.as_bytes(), "the message body exactly");
    // What `mdm-sync dlq redrive crm` puts back: the message as it came.
    let restored = letter.restored(&stored).unwrap();
    assert_eq!(restored.payload.bytes().unwrap(), body.as_bytes());
}

#[tokio::test]
async fn with_the_store_down_the_message_is_retried_not_dead_lettered() {
    let dlq = Arc::new(FakeQueue::default());
    let store = Arc::new(FakePayloadStore::new("mdm-sync-prod-letters"));
    *store.refuse.lock().unwrap() = true;
    let deps = deps(dlq.clone(), store);
    let handled = handle(&deps, batch(&malformed()), deadline()).await;
    assert_eq!(failures(&handled), ["m-900"]);
    assert!(dlq.sent.lock().unwrap().is_empty());
    assert_eq!(handled.metrics.counter("LetterStoreFailures"), 1);
    assert_eq!(handled.metrics.counter("RecordsDeadLettered"), 0);
}
