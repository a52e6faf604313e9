//! Reltio's own stream in every form it sends (issue: "Reltio's own stream, as Reltio sends it"): the same logical
//! change as a SNAPSHOT, SNAPSHOT_WITH_DELTA, DELTAS or skipPayload event, plain JSON or JSON_ZIP_BASE64, with
//! Reltio's headers as message attributes, ends as the same Contact write; the forms without a snapshot fetch the
//! entity. Built with the testkit's `reltio_stream`, which follows Reltio's message-streaming documentation.

mod events;

use crm_updater::{handle, Deps, Handled};
use events::{failures, fake_config, QUEUE_ARN, SFDC};
use futures::future::BoxFuture;
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_domain::backoff::{VisibilityChange, VisibilityFailure};
use mdm_sync_domain::crm::CrmMapping;
use mdm_sync_domain::ports::MessageVisibility;
use mdm_sync_testkit::fakes::{FakeLedger, FakeQueue, FakeReltio, FakeSalesforce};
use mdm_sync_testkit::reltio_stream::{body, event_json, headers, Format, PayloadType};
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoVisibility;

impl MessageVisibility for NoVisibility {
    fn change<'a>(
        &'a self,
        _: &'a str,
        _: &'a [VisibilityChange],
    ) -> BoxFuture<'a, Vec<VisibilityFailure>> {
        Box::pin(async { Vec::new() })
    }
}

struct World {
    deps: Deps,
    salesforce: Arc<FakeSalesforce>,
    reltio: Arc<FakeReltio>,
    dlq: Arc<FakeQueue>,
}

fn world(mapping_extra: &str) -> World {
    let config = fake_config(&[]);
    let mapping = format!(
        "{mapping_extra}\n{}",
        include_str!("../mapping.example.toml")
    );
    let salesforce = Arc::new(FakeSalesforce::default());
    let reltio = Arc::new(FakeReltio::with(&[
        (
            "entities/A",
            entity("entities/A", "003000000000001AAA", "Ann"),
        ),
        (
            "entities/B",
            entity("entities/B", "003000000000002AAA", "Bo"),
        ),
    ]));
    let dlq = Arc::new(FakeQueue::default());
    World {
        deps: Deps {
            config,
            mapping: CrmMapping::parse(&mapping).unwrap(),
            salesforce: salesforce.clone(),
            reltio: reltio.clone(),
            reltio_writer: reltio.clone(),
            ledger: Arc::new(FakeLedger::default()),
            dlq: dlq.clone(),
            letter_store: None,
            visibility: Arc::new(NoVisibility),
        },
        salesforce,
        reltio,
        dlq,
    }
}

/// The entity as Reltio holds it (what a fetch returns, and what a SNAPSHOT event carries).
fn entity(uri: &str, contact: &str, first_name: &str) -> Value {
    json!({
        "uri": uri, "type": "configuration/entityTypes/Individual", "updatedTime": 1_700_000_000_000i64,
        "attributes": {"FirstName": [{"type": "configuration/entityTypes/Individual/attributes/FirstName",
                                      "ov": true, "value": first_name, "uri": format!("{uri}/attributes/FirstName/1")}],
                       "LastName": [{"ov": true, "value": "Smith"}],
                       "Email": [{"ov": true, "value": "ann@example.com"}]},
        "crosswalks": [{"type": SFDC, "value": contact}, {"type": "configuration/sources/ERP", "value": "46"}]
    })
}

fn snapshot(uri: &str, contact: &str, first_name: &str) -> Value {
    json!({"type": "ENTITY_CHANGED", "object": entity(uri, contact, first_name), "ovChanged": true})
}

/// `(message id, body, attributes)`.
type Message<'a> = (String, String, Vec<(&'a str, &'a str)>);

async fn run(world: &World, messages: &[(String, Vec<(String, String)>)]) -> Handled {
    let owned: Vec<Message> = messages
        .iter()
        .enumerate()
        .map(|(i, (body, headers))| {
            let attrs = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (format!("m{i}"), body.clone(), attrs)
        })
        .collect();
    let records: Vec<SqsTestMessage> = owned
        .iter()
        .map(|(id, body, attrs)| (id.as_str(), body.as_str(), attrs.as_slice()))
        .collect();
    let event: SqsEvent = serde_json::from_value(sqs_event(QUEUE_ARN, &records)).unwrap();
    handle(&world.deps, event, Instant::now() + Duration::from_secs(10)).await
}

fn written(world: &World) -> HashMap<String, Vec<Map<String, Value>>> {
    world.salesforce.written.lock().unwrap().clone()
}

#[tokio::test]
async fn every_payload_type_in_either_format_ends_as_the_same_contact_write() {
    let change = snapshot("entities/A", "003000000000001AAA", "Ann");
    let reference = world("");
    let h = run(
        &reference,
        &[(change.to_string(), headers(&change, "T", Some(7)))],
    )
    .await;
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    let expected = written(&reference);
    assert_eq!(expected["003000000000001AAA"].len(), 1);
    assert_eq!(expected["003000000000001AAA"][0]["FirstName"], "Ann");

    for payload in PayloadType::ALL {
        for format in [Format::Json, Format::JsonZipBase64] {
            let w = world("");
            let message = body(&event_json(&change, payload), format);
            let h = run(&w, &[(message, headers(&change, "T", Some(7)))]).await;
            let form = format!("{payload:?} {format:?}");
            assert!(failures(&h).is_empty(), "{form}: {:?}", failures(&h));
            assert!(w.dlq.bodies().is_empty(), "{form}: {:?}", w.dlq.bodies());
            assert_eq!(h.metrics.counter("RecordsApplied"), 1, "{form}");
            assert_eq!(written(&w), expected, "{form}: the same Contact write");
            let fetched = w.reltio.fetched.lock().unwrap().clone();
            if payload.has_snapshot() {
                assert!(
                    fetched.is_empty(),
                    "{form}: no fetch when the snapshot is there"
                );
            } else {
                assert_eq!(
                    fetched,
                    vec!["entities/A".to_owned()],
                    "{form}: the entity fetched"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_skipped_payload_without_its_source_object_header_is_dead_lettered_with_the_reason() {
    let change = snapshot("entities/A", "003000000000001AAA", "Ann");
    let w = world("");
    let message = event_json(&change, PayloadType::SkipPayload);
    let h = run(&w, &[(message, vec![("tenantId".into(), "T".into())])]).await;
    assert!(failures(&h).is_empty());
    let letters = w.dlq.bodies();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["reason"], "the event names no entity");
    assert!(written(&w).is_empty());
}

#[tokio::test]
async fn a_message_of_several_events_applies_each_and_settles_as_one() {
    let a = snapshot("entities/A", "003000000000001AAA", "Ann");
    let b = snapshot("entities/B", "003000000000002AAA", "Bo");
    let array = format!("[{a},{b}]");
    for format in [Format::Json, Format::JsonZipBase64] {
        let w = world("");
        let h = run(&w, &[(body(&array, format), Vec::new())]).await;
        assert!(failures(&h).is_empty());
        assert_eq!(h.metrics.counter("RecordsApplied"), 1, "one message");
        let w = written(&w);
        assert_eq!(w["003000000000001AAA"][0]["FirstName"], "Ann");
        assert_eq!(w["003000000000002AAA"][0]["FirstName"], "Bo");
    }
}

#[tokio::test]
async fn an_unchanged_golden_record_is_skipped_only_where_the_mapping_says_so() {
    let mut change = snapshot("entities/A", "003000000000001AAA", "Ann");
    change["ovChanged"] = json!(false);
    for payload in [PayloadType::Snapshot, PayloadType::Deltas] {
        let message = event_json(&change, payload);
        let skipping = world("skip_ov_unchanged = true");
        let h = run(
            &skipping,
            &[(message.clone(), headers(&change, "T", Some(8)))],
        )
        .await;
        assert_eq!(h.metrics.counter("SkippedNoGoldenChange"), 1, "{payload:?}");
        assert!(written(&skipping).is_empty());
        assert!(
            skipping.reltio.fetched.lock().unwrap().is_empty(),
            "nothing fetched for it"
        );
        let default = world("");
        let h = run(&default, &[(message, headers(&change, "T", Some(8)))]).await;
        assert_eq!(
            h.metrics.counter("RecordsApplied"),
            1,
            "{payload:?}: applied by default"
        );
    }
}

#[tokio::test]
async fn a_body_that_is_neither_json_nor_reltios_zipped_json_is_dead_lettered_as_received() {
    // base64 of a gzip header followed by no gzip stream.
    let junk = "H4sIACBub3QgYSBnemlwIHN0cmVhbQ==".to_owned();
    let w = world("");
    let h = run(&w, &[(junk.clone(), Vec::new())]).await;
    assert!(failures(&h).is_empty());
    let letters = w.dlq.bodies();
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not a Reltio event"));
    assert_eq!(letters[0]["event"], junk, "the body as received");
}
