use super::*;
use crate::queue::Delivery;
use crate::reltio::message::queued_events;
use futures::executor::block_on;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INDIVIDUAL: &str = "configuration/entityTypes/Individual";

fn mapping() -> AnalyticsMapping {
    AnalyticsMapping::parse("[entity_types.Individual.columns]\nfirst_name = \"FirstName\"")
        .unwrap()
}

fn deadline() -> Deadline {
    Instant::now() + Duration::from_secs(30)
}

/// Writes what it is given; fails (transiently) the records whose line contains a string of `refuse`.
#[derive(Default)]
struct Sink {
    refuse: Vec<&'static str>,
    written: Mutex<Vec<Value>>,
}

impl RecordSink for Sink {
    fn put<'a>(
        &'a self,
        records: &'a [Vec<u8>],
        _: Deadline,
    ) -> BoxFuture<'a, Vec<Result<(), PortError>>> {
        Box::pin(async move {
            records
                .iter()
                .map(|r| {
                    let text = std::str::from_utf8(r).unwrap();
                    if self.refuse.iter().any(|s| text.contains(s)) {
                        Err(PortError::Transient("ServiceUnavailableException".into()))
                    } else {
                        self.written
                            .lock()
                            .unwrap()
                            .push(serde_json::from_str(text).unwrap());
                        Ok(())
                    }
                })
                .collect()
        })
    }
}

#[derive(Default)]
struct Store {
    ids: Mutex<Vec<String>>,
    broken: bool,
}

impl DeliveredIds for Store {
    fn seen<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<bool>, PortError>> {
        Box::pin(async move {
            if self.broken {
                return Err(PortError::Transient("unavailable".into()));
            }
            let known = self.ids.lock().unwrap();
            Ok(ids.iter().map(|id| known.iter().any(|k| k == id)).collect())
        })
    }

    fn remember<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async move {
            if self.broken {
                return Err(PortError::Transient("unavailable".into()));
            }
            self.ids
                .lock()
                .unwrap()
                .extend(ids.iter().map(|s| s.to_string()));
            Ok(())
        })
    }
}

struct Reltio(Result<Value, PortError>);

impl EntitySource for Reltio {
    fn entity<'a>(&'a self, _: &'a str, _: Deadline) -> BoxFuture<'a, Result<Value, PortError>> {
        Box::pin(async move { self.0.clone() })
    }
}

fn delivery(id: &str, event_id: &str, body: Value) -> Delivery {
    Delivery {
        message_id: id.into(),
        body: body.to_string(),
        event_id: Some(event_id.into()),
        ..Delivery::default()
    }
}

fn changed(uri: &str, name: &str, version: i64) -> Value {
    json!({"type": "ENTITY_CHANGED", "objectVersion": version, "updatedTime": 1000 + version,
           "object": {"uri": uri, "type": INDIVIDUAL,
                      "attributes": {"FirstName": [{"ov": true, "value": name}]}, "crosswalks": []}})
}

fn run(ports: Ports<'_>, deliveries: Vec<Delivery>) -> (Vec<Item>, Report) {
    let m = mapping();
    let mut items: Vec<Item> = deliveries
        .into_iter()
        .flat_map(|d| queued_events(d).unwrap())
        .map(|e| decode(&m, e, "now"))
        .collect();
    let report = block_on(apply(ports, &mut items, deadline(), &m));
    (items, report)
}

fn outcomes(items: &[Item]) -> Vec<&Outcome> {
    items.iter().map(|i| i.outcome.as_ref().unwrap()).collect()
}

#[test]
fn every_distinct_event_is_written_once_and_bad_messages_fail_for_good() {
    let sink = Sink::default();
    let ports = Ports {
        sink: &sink,
        reltio: None,
        dedup: None,
    };
    let (items, report) = run(
        ports,
        vec![
            delivery("m1", "e1", changed("entities/A", "Ann", 1)),
            delivery("m2", "e2", changed("entities/B", "Bo", 1)),
            delivery("m3", "e1", changed("entities/A", "Ann", 1)), // the same event again
            Delivery {
                message_id: "m4".into(),
                body: "not json".into(),
                ..Delivery::default()
            },
            delivery(
                "m5",
                "e5",
                json!({"type": "RELATIONSHIP_CHANGED", "object": {"uri": "relations/1"}}),
            ),
        ],
    );
    assert_eq!(
        outcomes(&items),
        [
            &Outcome::Done,
            &Outcome::Done,
            &Outcome::Skipped(SkipReason::Duplicate),
            &Outcome::Permanent("not a Reltio event: expected ident at line 1 column 2".into()),
            &Outcome::Skipped(SkipReason::EventType),
        ]
    );
    let written = sink.written.lock().unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(written[0]["event_id"], "e1");
    assert_eq!(written[1]["first_name"], "Bo");
    assert_eq!(report.written(), 2);
    assert_eq!(
        report.entity_types.iter().collect::<Vec<_>>(),
        ["Individual"]
    );
    assert_eq!(
        (report.oldest_change, report.newest_change),
        (Some(1001), Some(1001))
    );
    assert!(
        items[3].event_id.len() == 64,
        "a message without eventId: the body's SHA-256"
    );
}

#[test]
fn a_record_the_sink_failed_is_reported_transient_and_the_others_stand() {
    let sink = Sink {
        refuse: vec!["entities/B"],
        ..Sink::default()
    };
    let store = Store::default();
    let ports = Ports {
        sink: &sink,
        reltio: None,
        dedup: Some(&store),
    };
    let (items, report) = run(
        ports,
        vec![
            delivery("m1", "e1", changed("entities/A", "Ann", 1)),
            delivery("m2", "e2", changed("entities/B", "Bo", 1)),
        ],
    );
    assert_eq!(outcomes(&items)[0], &Outcome::Done);
    assert!(items[1].outcome.as_ref().unwrap().is_transient());
    assert_eq!(report.counts.get("RecordsFailed"), Some(&1));
    assert_eq!(
        *store.ids.lock().unwrap(),
        ["e1"],
        "only what was written is remembered"
    );

    // Redelivered: e1 is known (skipped), e2 is written now.
    let sink = Sink::default();
    let ports = Ports {
        sink: &sink,
        reltio: None,
        dedup: Some(&store),
    };
    let (items, _) = run(
        ports,
        vec![
            delivery("m1", "e1", changed("entities/A", "Ann", 1)),
            delivery("m2", "e2", changed("entities/B", "Bo", 1)),
        ],
    );
    assert_eq!(
        outcomes(&items),
        [&Outcome::Skipped(SkipReason::Duplicate), &Outcome::Done]
    );
    assert_eq!(sink.written.lock().unwrap().len(), 1);
}

#[test]
fn a_dedup_store_that_cannot_answer_costs_a_duplicate_never_a_record() {
    let sink = Sink::default();
    let store = Store {
        broken: true,
        ..Store::default()
    };
    let ports = Ports {
        sink: &sink,
        reltio: None,
        dedup: Some(&store),
    };
    let (items, report) = run(
        ports,
        vec![delivery("m1", "e1", changed("entities/A", "Ann", 1))],
    );
    assert_eq!(outcomes(&items), [&Outcome::Done]);
    assert_eq!(
        report.counts.get("DedupStoreFailures"),
        Some(&2),
        "seen and remember both failed"
    );
}

#[test]
fn an_oversized_event_is_completed_from_reltio_or_dead_lettered_without_it() {
    let big = json!({"type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/E", "objectVersion": 2});
    let entity = json!({"uri": "entities/E", "type": INDIVIDUAL,
                        "attributes": {"FirstName": [{"ov": true, "value": "Eve"}]}, "crosswalks": []});
    let sink = Sink::default();
    let reltio = Reltio(Ok(entity));
    let (items, report) = run(
        Ports {
            sink: &sink,
            reltio: Some(&reltio),
            dedup: None,
        },
        vec![delivery("m1", "e1", big.clone())],
    );
    assert_eq!(outcomes(&items), [&Outcome::Done]);
    assert_eq!(report.counts.get("EntitiesFetched"), Some(&1));
    let written = sink.written.lock().unwrap();
    assert_eq!(
        (
            written[0]["first_name"].as_str(),
            written[0]["has_snapshot"].as_bool()
        ),
        (Some("Eve"), Some(true))
    );

    let down = Reltio(Err(PortError::Transient("503".into())));
    let (items, _) = run(
        Ports {
            sink: &Sink::default(),
            reltio: Some(&down),
            dedup: None,
        },
        vec![delivery("m1", "e1", big.clone())],
    );
    assert!(items[0].outcome.as_ref().unwrap().is_transient());

    let (items, _) = run(
        Ports {
            sink: &Sink::default(),
            reltio: None,
            dedup: None,
        },
        vec![delivery("m1", "e1", big)],
    );
    assert!(
        matches!(items[0].outcome, Some(Outcome::Permanent(ref r)) if r.contains("no Reltio access"))
    );
}
