use super::*;
use crate::outcome::{Outcome, SkipReason};
use serde_json::json;

/// `JSON_ZIP_BASE64` as Reltio documents it: the UTF-8 JSON, gzipped, then base64 (`base64 --decode | gunzip`).
fn zipped(json: &str) -> String {
    use base64::Engine;
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

fn delivery(body: &str) -> Delivery {
    Delivery {
        message_id: "m1".into(),
        body: body.into(),
        receive_count: 1,
        ..Delivery::default()
    }
}

fn changed(uri: &str) -> String {
    json!({"type": "ENTITY_CHANGED", "object": {"uri": uri, "attributes": {"Amount": [{"value": 12.50, "ov": true}]}},
           "ovChanged": true})
    .to_string()
}

#[test]
fn a_plain_event_moves_on_as_it_is_with_the_messages_attributes() {
    let mut d = delivery(&changed("entities/A"));
    d.event_id = Some("e-1".into());
    d.object_version = Some("7".into());
    d.source_object_uri = Some("entities/A".into());
    let events = queued_events(d).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].json, changed("entities/A"));
    assert_eq!(events[0].event_id, "e-1");
    assert_eq!(events[0].object_version.as_deref(), Some("7"));
    // Without an eventId attribute: the hash of the body, as before.
    let plain = queued_events(delivery(&changed("entities/A"))).unwrap();
    assert_eq!(
        plain[0].event_id,
        hex::encode(Sha256::digest(changed("entities/A").as_bytes()))
    );
}

#[test]
fn events_of_the_same_text_are_told_apart_by_reltios_headers() {
    // skipPayload: every change of every entity is `{"type":"ENTITY_CHANGED","ovChanged":true}`.
    let body = r#"{"type":"ENTITY_CHANGED","ovChanged":true}"#;
    let with = |uri: &str, version: &str| {
        let mut d = delivery(body);
        d.source_object_uri = Some(uri.into());
        d.object_version = Some(version.into());
        queued_events(d).unwrap().remove(0).event_id
    };
    assert_ne!(
        with("entities/A", "7"),
        with("entities/B", "7"),
        "other entity"
    );
    assert_ne!(
        with("entities/A", "7"),
        with("entities/A", "8"),
        "other version"
    );
    assert_eq!(
        with("entities/A", "7"),
        with("entities/A", "7"),
        "a redelivery"
    );
}

#[test]
fn a_zipped_event_reads_as_the_same_event_with_the_same_id() {
    let json = changed("entities/A");
    let plain = queued_events(delivery(&json)).unwrap();
    let unzipped = queued_events(delivery(&zipped(&json))).unwrap();
    assert_eq!(unzipped.len(), 1);
    assert_eq!(unzipped[0].json, json, "numbers keep their digits");
    assert_eq!(unzipped[0].event_id, plain[0].event_id);
}

#[test]
fn an_array_gives_each_event_its_own_id_and_none_of_the_messages_attributes() {
    let body = format!("[{},{}]", changed("entities/A"), changed("entities/B"));
    for body in [body.clone(), zipped(&body)] {
        let mut d = delivery(&body);
        d.event_id = Some("e-1".into());
        d.object_version = Some("7".into());
        let events = queued_events(d).unwrap();
        assert_eq!(events.len(), 2);
        assert_ne!(events[0].event_id, events[1].event_id);
        assert!(events
            .iter()
            .all(|e| e.event_id != "e-1" && e.object_version.is_none()));
        assert!(events[1].json.contains("entities/B"));
        assert!(events.iter().all(|e| e.message_id == "m1"));
    }
    // One event in an array is that event, with the message's attributes.
    let mut d = delivery(&format!("[{}]", changed("entities/A")));
    d.event_id = Some("e-1".into());
    assert_eq!(queued_events(d).unwrap()[0].event_id, "e-1");
    assert!(queued_events(delivery("[]")).unwrap().is_empty());
}

#[test]
fn a_body_that_is_no_event_fails_with_a_reason_and_never_panics() {
    // Not JSON, not base64: left to the event parser, which names the fault.
    let events = queued_events(delivery("not json at all")).unwrap();
    assert_eq!(events[0].json, "not json at all");
    // Base64 of something that is no gzip stream of JSON.
    use base64::Engine;
    let junk = base64::engine::general_purpose::STANDARD.encode(b"\x1f\x8b\x08 broken");
    assert!(matches!(
        queued_events(delivery(&junk)),
        Err(MessageError::Payload(_))
    ));
    assert!(matches!(
        queued_events(delivery("[{\"type\": ")),
        Err(MessageError::NotArray { .. })
    ));
    let e = queued_events(delivery(&junk)).unwrap_err().to_string();
    assert!(e.starts_with("not a Reltio event"), "{e}");
}

#[test]
fn a_zip_bomb_is_refused_past_the_bound() {
    let huge = format!("[\"{}\"]", "a".repeat(MAX_UNZIPPED_BYTES + 10));
    assert!(matches!(
        queued_events(delivery(&zipped(&huge))),
        Err(MessageError::Payload(RecordError::TooLargeUnzipped { .. }))
    ));
}

#[test]
fn messages_regroup_and_end_as_their_events_combined() {
    use base64::Engine;
    let bodies = [
        format!("[{},{}]", changed("entities/A"), changed("entities/B")),
        "[]".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(b"\x1f\x8b\x08 broken"),
        changed("entities/C"),
    ];
    let unpacked = unpack(bodies.iter().map(|b| delivery(b)).collect(), |e| {
        e.json.contains("entities/B")
    });
    assert_eq!(unpacked.owners, vec![0, 0, 3]);
    let messages = unpacked.regroup();
    assert_eq!(messages.len(), 4);
    let outcome = |skip_b: bool| {
        move |&is_b: &bool| {
            if is_b && skip_b {
                Outcome::Skipped(SkipReason::Stale)
            } else if is_b {
                Outcome::Transient("down".into())
            } else {
                Outcome::Done
            }
        }
    };
    assert_eq!(
        messages[0].outcome(outcome(true)),
        Outcome::Done,
        "one applied, one skipped"
    );
    assert!(messages[0].outcome(outcome(false)).is_transient());
    assert_eq!(
        messages[1].outcome(outcome(true)),
        Outcome::Skipped(SkipReason::Empty)
    );
    assert!(matches!(
        messages[2].outcome(outcome(true)),
        Outcome::Permanent(_)
    ));
    assert_eq!(messages[3].outcome(outcome(true)), Outcome::Done);
}
