//! The batch runner's letter store, over fakes: a payload too large for its dead letter is stored first and the
//! letter points at it (the stored bytes are the record's exactly); a payload the store cannot keep leaves its
//! record to be retried, never acknowledged; without a store the letter points at the source, as before.

use futures::future::BoxFuture;
use mdm_sync_adapters::kafka::{KafkaEvent, KafkaEventResponse};
use mdm_sync_adapters::metrics::Metrics;
use mdm_sync_adapters::runner::{run, Function, Handled};
use mdm_sync_adapters::source::{Kafka, KafkaInput, Sqs};
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_domain::letter::{DeadLetter, LetterContext, Payload};
use mdm_sync_domain::outcome::Outcome;
use mdm_sync_domain::ports::{Deadline, MessageSink, PayloadStore};
use mdm_sync_domain::queue::Delivery;
use mdm_sync_testkit::fakes::{FakePayloadStore, FakeQueue};
use mdm_sync_testkit::{kafka_event, sqs_event, KafkaTestRecord};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// A function that refuses for good every payload holding `reject`, fails transiently on `down`, applies the rest.
struct Judge {
    dlq: FakeQueue,
    store: Option<FakePayloadStore>,
}

impl Judge {
    fn with_store() -> Judge {
        Judge {
            dlq: FakeQueue::default(),
            store: Some(FakePayloadStore::new("mdm-sync-letters")),
        }
    }

    fn letters(&self) -> Vec<DeadLetter> {
        let sent = self.dlq.sent.lock().unwrap();
        sent.iter()
            .map(|m| {
                assert!(m.size() <= 256 * 1024, "a letter fits its queue");
                DeadLetter::parse(&m.body).unwrap()
            })
            .collect()
    }

    fn puts(&self) -> usize {
        self.store.as_ref().map_or(0, |s| *s.puts.lock().unwrap())
    }
}

fn judge(payload: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(payload);
    if text.contains("reject") {
        Outcome::Permanent("not a Reltio event".into())
    } else if text.contains("down") {
        Outcome::Transient("Salesforce unavailable".into())
    } else {
        Outcome::Done
    }
}

fn deadline() -> Deadline {
    Instant::now() + Duration::from_secs(30)
}

impl<S: mdm_sync_adapters::runner::Source> Function<S> for Judge
where
    Judge: Apply<S>,
{
    type Item = Outcome;
    type Summary = ();

    fn name(&self) -> &'static str {
        "crm-updater"
    }

    fn metrics_namespace(&self) -> &str {
        "Test"
    }

    fn dead_letters(&self) -> &dyn MessageSink {
        &self.dlq
    }

    fn letter_store(&self) -> Option<&dyn PayloadStore> {
        self.store.as_ref().map(|s| s as &dyn PayloadStore)
    }

    fn apply<'a>(
        &'a self,
        inputs: Vec<S::Input<'a>>,
        _deadline: Deadline,
        _metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, (Vec<Outcome>, ())> {
        let outcomes = inputs.iter().map(|i| judge(Judge::payload(i))).collect();
        Box::pin(async move { (outcomes, ()) })
    }

    fn outcome(&self, item: &Outcome) -> Outcome {
        item.clone()
    }

    fn context(&self, _item: &Outcome) -> LetterContext {
        LetterContext {
            event_id: Some("e-1".into()),
            ..LetterContext::default()
        }
    }

    fn hand_over(&self, _item: &Outcome, _record: &S::Record) {}
}

/// What the judge reads of an input.
trait Apply<S: mdm_sync_adapters::runner::Source> {
    fn payload<'i>(input: &'i S::Input<'_>) -> &'i [u8];
}

impl Apply<Sqs> for Judge {
    fn payload(input: &Delivery) -> &[u8] {
        input.body.as_bytes()
    }
}

impl Apply<Kafka> for Judge {
    fn payload<'i>(input: &'i KafkaInput<'_>) -> &'i [u8] {
        match &input.record.value {
            Ok(Some(v)) => v,
            _ => &[],
        }
    }
}

async fn queue_batch(
    judge: &Judge,
    messages: &[(&str, &str)],
) -> Handled<aws_lambda_events::event::sqs::SqsBatchResponse> {
    let messages: Vec<_> = messages
        .iter()
        .map(|(id, body)| (*id, *body, &[][..]))
        .collect();
    let event: SqsEvent =
        serde_json::from_value(sqs_event("arn:aws:sqs:us-east-1:1:events", &messages)).unwrap();
    run::<Sqs, _>(judge, event, deadline()).await
}

fn retried(handled: &Handled<aws_lambda_events::event::sqs::SqsBatchResponse>) -> Vec<String> {
    handled
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// A malformed message of 900 KB: JSON cut off, so there is no event to stand in for it.
fn malformed() -> String {
    format!(
        "{{\"type\":\"ENTITY_CHANGED\",\"reject\":\"{}",
        "x".repeat(900 * 1024)
    )
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn an_oversized_dead_letter_points_at_its_payload_in_the_store() {
    let judge = Judge::with_store();
    let big = malformed();
    let event = json!({"type": "ENTITY_CHANGED", "reject": true, "objectVersion": 3,
                       "object": {"uri": "entities/A", "attributes": {"Notes": "y".repeat(900_000)}}})
    .to_string();
    let handled = queue_batch(
        &judge,
        &[
            ("m-big", &big),
            ("m-small", "reject: small"),
            ("m-event", &event),
            ("m-ok", "{}"),
        ],
    )
    .await;
    assert!(retried(&handled).is_empty());
    assert_eq!(handled.metrics.counter("RecordsDeadLettered"), 3);
    assert_eq!(handled.metrics.counter("LetterPayloadsStored"), 2);
    assert_eq!(handled.metrics.counter("LetterStoreFailures"), 0);
    assert_eq!(
        judge.puts(),
        2,
        "a letter that fits holds its payload itself"
    );
    let store = judge.store.as_ref().unwrap();

    let letters = judge.letters();
    let v: Value = serde_json::from_str(&judge.dlq.sent.lock().unwrap()[0].body).unwrap();
    let (bucket, key) = letters[0]
        .stored_payload()
        .expect("a pointer into the store");
    assert_eq!(bucket, "mdm-sync-letters");
    assert!(
        key.starts_with("crm-updater/") && key.ends_with(&hex_sha256(big.as_bytes())),
        "{key}"
    );
    assert_eq!(
        store.object(key).unwrap(),
        big.as_bytes(),
        "the message body exactly"
    );
    assert_eq!(v["eventOmitted"]["bytes"], big.len());
    assert_eq!(v["eventOmitted"]["sha256"], hex_sha256(big.as_bytes()));
    assert!(
        v["eventOmitted"].get("fetch").is_none(),
        "{}",
        v["eventOmitted"]
    );
    assert!(
        v["event"].is_null(),
        "no event to stand in for a malformed message"
    );
    assert_eq!(v["messageId"], "m-big");
    // Read back from the store, the letter is the message again.
    let restored = letters[0].restored(&store.object(key).unwrap()).unwrap();
    assert_eq!(restored.payload.bytes().unwrap(), big.as_bytes());

    assert_eq!(letters[1].payload, Payload::Text("reject: small".into()));

    // A Reltio event keeps its large-event form in `event` as well, for a redrive without the store.
    let v: Value = serde_json::from_str(&judge.dlq.sent.lock().unwrap()[2].body).unwrap();
    assert_eq!(v["event"]["exceededQueueSizeLimit"], true);
    assert_eq!(v["event"]["uri"], "entities/A");
    let (_, key) = letters[2].stored_payload().unwrap();
    assert_eq!(store.object(key).unwrap(), event.as_bytes());
}

#[tokio::test]
async fn a_payload_the_store_cannot_keep_leaves_its_record_to_be_retried() {
    let judge = Judge::with_store();
    *judge.store.as_ref().unwrap().refuse.lock().unwrap() = true;
    let big = malformed();
    let handled = queue_batch(&judge, &[("m-big", &big), ("m-small", "reject: small")]).await;
    assert_eq!(
        retried(&handled),
        ["m-big"],
        "never acknowledged without its payload kept"
    );
    let letters = judge.letters();
    assert_eq!(letters.len(), 1, "the small one is dead-lettered as ever");
    assert_eq!(letters[0].payload, Payload::Text("reject: small".into()));
    assert_eq!(handled.metrics.counter("LetterStoreFailures"), 1);
    assert_eq!(handled.metrics.counter("LetterPayloadsStored"), 0);
    assert_eq!(handled.metrics.counter("RecordsDeadLettered"), 1);
    assert_eq!(handled.metrics.counter("RecordsRetried"), 1);

    // The store is back: the redelivery stores it and dead-letters it.
    *judge.store.as_ref().unwrap().refuse.lock().unwrap() = false;
    let handled = queue_batch(&judge, &[("m-big", &big)]).await;
    assert!(retried(&handled).is_empty());
    assert!(judge.letters()[1].stored_payload().is_some());
}

#[tokio::test]
async fn without_a_store_the_letter_points_at_the_source_as_before() {
    let judge = Judge {
        dlq: FakeQueue::default(),
        store: None,
    };
    let big = malformed();
    let handled = queue_batch(&judge, &[("m-big", &big)]).await;
    assert!(retried(&handled).is_empty());
    assert_eq!(handled.metrics.counter("LetterPayloadsStored"), 0);
    let v: Value = serde_json::from_str(&judge.dlq.sent.lock().unwrap()[0].body).unwrap();
    assert_eq!(v["eventOmitted"]["bytes"], big.len());
    assert!(v["eventOmitted"]["fetch"].is_string());
    assert!(v["eventOmitted"].get("bucket").is_none());
    assert_eq!(judge.letters()[0].stored_payload(), None);
}

async fn kafka_batch(judge: &Judge, values: &[&[u8]]) -> KafkaEventResponse {
    let records: Vec<KafkaTestRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| KafkaTestRecord {
            topic: "cdc.changes",
            partition: 0,
            offset: 40 + i as i64,
            key: Some(b"public.customer.46"),
            value: Some(v),
            ..KafkaTestRecord::default()
        })
        .collect();
    let event: KafkaEvent = serde_json::from_value(kafka_event(&records)).unwrap();
    run::<Kafka, _>(judge, event, deadline()).await.response
}

#[tokio::test]
async fn an_oversized_stream_record_is_stored_and_a_failed_store_holds_its_partition() {
    // A change record of 900 KB (a CDC row with a large column), refused for good.
    let record = format!(r#"{{"op":"u","reject":"{}"}}"#, "z".repeat(900 * 1024));
    let judge = Judge::with_store();
    let response = kafka_batch(&judge, &[record.as_bytes(), b"{}"]).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap()["batchItemFailures"],
        json!([])
    );
    let letters = judge.letters();
    let v: Value = serde_json::from_str(&judge.dlq.sent.lock().unwrap()[0].body).unwrap();
    assert_eq!(
        (&v["topic"], &v["offset"]),
        (&json!("cdc.changes"), &json!(40))
    );
    let (_, key) = letters[0].stored_payload().unwrap();
    assert_eq!(v["valueOmitted"]["key"], key);
    assert_eq!(
        judge.store.as_ref().unwrap().object(key).unwrap(),
        record.as_bytes()
    );

    // The store down: the partition is held at that record (the one after it is not acknowledged either).
    let judge = Judge::with_store();
    *judge.store.as_ref().unwrap().refuse.lock().unwrap() = true;
    let response = kafka_batch(&judge, &[b"{}", record.as_bytes(), b"{}"]).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap()["batchItemFailures"],
        json!([{"itemIdentifier": {"partition": "cdc.changes-0", "offset": 41}}])
    );
    assert!(judge.letters().is_empty());
}
