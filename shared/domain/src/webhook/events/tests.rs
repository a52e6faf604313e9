//! Body parsing, event ids and the queue messages events become.

use super::*;
use crate::reltio::event::{EntityTypeFilter, EventTypeFilter};
use serde_json::json;

const CHANGED: &str = r#"{"type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": 7,
  "object": {"uri": "entities/0Abc", "type": "configuration/entityTypes/Individual",
             "attributes": {"FirstName": [{"value": "Jane", "ov": true}]}, "crosswalks": []},
  "ovChanged": true}"#;
const MERGED: &str =
    r#"{"type":"ENTITIES_MERGED","updatedTime":5,"uris":["entities/W","entities/L1"]}"#;

#[test]
fn one_event_keeps_its_exact_bytes_and_takes_the_delivery_id() {
    let events = parse_body(CHANGED.as_bytes(), Some("evt-123")).unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.body, CHANGED);
    assert_eq!(e.id, "evt-123");
    assert_eq!(e.event_type, "ENTITY_CHANGED");
    assert_eq!(e.entity_uri.as_deref(), Some("entities/0Abc"));
    assert_eq!(
        e.entity_type.as_deref(),
        Some("configuration/entityTypes/Individual")
    );
    assert_eq!(e.tenant_id.as_deref(), Some("T1"));
    assert_eq!(e.object_version.as_deref(), Some("7"));
}

#[test]
fn a_single_event_body_is_kept_byte_for_byte_including_whitespace() {
    let body = format!("\n{CHANGED}\r\n");
    let events = parse_body(body.as_bytes(), None).unwrap();
    assert_eq!(events[0].body, body);
    // Except a UTF-8 byte-order mark, which no JSON parser downstream would take.
    let bom = format!("\u{feff}{CHANGED}");
    assert_eq!(parse_body(bom.as_bytes(), None).unwrap()[0].body, CHANGED);
}

#[test]
fn without_a_delivery_id_the_id_is_the_hash_of_the_canonical_event() {
    let a = parse_body(CHANGED.as_bytes(), None).unwrap();
    // Same event, other key order and whitespace: same id.
    let reordered = json!({
        "ovChanged": true, "objectVersion": 7, "tenantId": "T1",
        "object": {"crosswalks": [], "attributes": {"FirstName": [{"ov": true, "value": "Jane"}]},
                   "type": "configuration/entityTypes/Individual", "uri": "entities/0Abc"},
        "type": "ENTITY_CHANGED"
    })
    .to_string();
    let b = parse_body(reordered.as_bytes(), Some("   ")).unwrap();
    assert_eq!(a[0].id, b[0].id);
    assert_eq!(a[0].id.len(), 64);
    assert!(a[0].id.bytes().all(|c| c.is_ascii_hexdigit()));
    let expected = hex::encode(Sha256::digest(
        br#"{"object":{"attributes":{"FirstName":[{"ov":true,"value":"Jane"}]},"crosswalks":[],"type":"configuration/entityTypes/Individual","uri":"entities/0Abc"},"objectVersion":7,"ovChanged":true,"tenantId":"T1","type":"ENTITY_CHANGED"}"#,
    ));
    assert_eq!(a[0].id, expected);
    // A different event: a different id.
    let c = parse_body(MERGED.as_bytes(), None).unwrap();
    assert_ne!(a[0].id, c[0].id);
}

#[test]
fn an_array_gives_one_event_per_element_with_exact_bytes_and_own_ids() {
    let body = format!("[\n  {CHANGED} ,\n{MERGED}\n]\n");
    let events = parse_body(body.as_bytes(), Some("delivery-1")).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].body, CHANGED);
    assert_eq!(events[1].body, MERGED);
    assert_eq!(
        events[0].id,
        parse_body(CHANGED.as_bytes(), None).unwrap()[0].id
    );
    assert_ne!(events[0].id, events[1].id);
    assert_eq!(events[1].entity_uri.as_deref(), Some("entities/W"));
    assert_eq!(events[1].entity_type, None);
    // Strings holding brackets, commas and escaped quotes do not confuse the element boundaries.
    let tricky = r#"[{"type":"ENTITY_CREATED","object":{"uri":"entities/1","label":"a,b]}\"[{"}},{"type":"ENTITY_REMOVED","uri":"entities/2"}]"#;
    let events = parse_body(tricky.as_bytes(), None).unwrap();
    assert_eq!(
        events[0].body,
        r#"{"type":"ENTITY_CREATED","object":{"uri":"entities/1","label":"a,b]}\"[{"}}"#
    );
    assert_eq!(
        events[1].body,
        r#"{"type":"ENTITY_REMOVED","uri":"entities/2"}"#
    );
    assert!(parse_body(b"[]", None).unwrap().is_empty());
}

#[test]
fn bodies_that_are_not_json_are_invalid_json() {
    for bad in [
        &b"{"[..],
        b"not json",
        b"{\"type\": \"ENTITY_CHANGED\",}",
        b"[1,2",
    ] {
        assert!(
            matches!(parse_body(bad, None), Err(BodyError::InvalidJson(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(parse_body(b"  \n", None), Err(BodyError::Empty));
    assert_eq!(
        parse_body(&[0xff, 0xfe, b'{'], None),
        Err(BodyError::NotUtf8)
    );
}

#[test]
fn json_that_is_not_a_reltio_event_is_refused_without_quoting_it() {
    for bad in [
        r#"{"email":"test@example.com","username":"test_user"}"#,
        r#"{"type":"push","secret":"hunter2"}"#,
        r#"{"type":42}"#,
        r#"{"type":""}"#,
        r#"{"type":"ENTITY_CHANGED","uris":"entities/1"}"#,
        r#"{"type":"ENTITY_CHANGED","object":"hunter2"}"#,
        r#""ENTITY_CHANGED""#,
        "42",
        "null",
        r#"[{"type":"ENTITY_CHANGED"}, {"nope": true}]"#,
        r#"[{"type":"ENTITY_CHANGED"}, 3]"#,
    ] {
        match parse_body(bad.as_bytes(), None) {
            Err(BodyError::NotAnEvent(reason)) => {
                assert!(!reason.contains("hunter2"), "{reason}");
                assert!(!reason.contains("example.com"), "{reason}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(
        parse_body(br#"[{"type":"ENTITY_CHANGED"}, {"nope": true}]"#, None),
        Err(BodyError::NotAnEvent(r)) if r.starts_with("element 1")
    ));
}

#[test]
fn characters_sqs_cannot_carry_are_refused() {
    let body = "{\"type\":\"ENTITY_CHANGED\",\"x\":\"\u{ffff}\"}";
    assert_eq!(
        parse_body(body.as_bytes(), None),
        Err(BodyError::Unsendable)
    );
}

#[test]
fn a_standard_queue_message_carries_the_body_and_attributes() {
    let e = &parse_body(CHANGED.as_bytes(), Some("evt-1")).unwrap()[0];
    let m = e.to_message(false);
    assert_eq!(m.body, CHANGED);
    assert_eq!(
        m.attributes,
        vec![
            ("eventType".to_owned(), "ENTITY_CHANGED".to_owned()),
            ("entityType".to_owned(), "Individual".to_owned()),
            ("tenantId".to_owned(), "T1".to_owned()),
            ("sourceObjectUri".to_owned(), "entities/0Abc".to_owned()),
            ("objectVersion".to_owned(), "7".to_owned()),
            ("eventId".to_owned(), "evt-1".to_owned()),
        ]
    );
    assert_eq!(m.group_id, None);
    assert_eq!(m.dedup_id, None);
    // Unknown values are left out, not sent empty.
    let merged = &parse_body(MERGED.as_bytes(), None).unwrap()[0];
    let message = merged.to_message(false);
    let names: Vec<&str> = message.attributes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["eventType", "sourceObjectUri", "eventId"]);
}

#[test]
fn a_fifo_message_is_grouped_by_entity_and_deduplicated_by_event_id() {
    let e = &parse_body(CHANGED.as_bytes(), Some("evt-1")).unwrap()[0];
    let m = e.to_message(true);
    assert_eq!(m.group_id.as_deref(), Some("entities/0Abc"));
    assert_eq!(m.dedup_id.as_deref(), Some("evt-1"));
    // No entity named: the event id groups it.
    let anon = &parse_body(
        br#"{"type":"ENTITY_CHANGED","exceededQueueSizeLimit":true}"#,
        None,
    )
    .unwrap()[0];
    let m = anon.to_message(true);
    assert_eq!(m.group_id.as_deref(), Some(anon.id.as_str()));
}

#[test]
fn ids_sqs_would_refuse_are_replaced_by_their_hash() {
    let long = "x".repeat(129);
    for bad in [long.as_str(), "has space", "naïve"] {
        let id = sqs_id(bad);
        assert_eq!(id, hex::encode(Sha256::digest(bad.as_bytes())));
    }
    assert_eq!(
        sqs_id("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"
    );
    let e = &parse_body(CHANGED.as_bytes(), Some("an id with spaces")).unwrap()[0];
    assert_eq!(e.id.len(), 64);
    assert_eq!(e.to_message(true).dedup_id.as_deref(), Some(e.id.as_str()));
}

#[test]
fn the_subscription_filters_by_event_category_and_entity_type() {
    let changed = &parse_body(CHANGED.as_bytes(), None).unwrap()[0];
    let merged = &parse_body(MERGED.as_bytes(), None).unwrap()[0];
    assert!(Subscription::default().matches(changed));
    let only_merges = Subscription {
        event_types: EventTypeFilter::parse(&["MERGE"]).unwrap(),
        entity_types: EntityTypeFilter::default(),
    };
    assert!(only_merges.matches(merged));
    assert!(!only_merges.matches(changed));
    let organizations = Subscription {
        event_types: EventTypeFilter::default(),
        entity_types: EntityTypeFilter::new(&["Organization"]),
    };
    assert!(!organizations.matches(changed));
    // Merge events name no entity type: they pass, the consumer decides after fetching.
    assert!(organizations.matches(merged));
    let individuals = Subscription {
        event_types: EventTypeFilter::parse(&["UPDATE"]).unwrap(),
        entity_types: EntityTypeFilter::new(&["configuration/entityTypes/Individual"]),
    };
    assert!(individuals.matches(changed));
}

#[test]
fn the_one_pass_path_answers_exactly_as_the_full_parse_or_defers_to_it() {
    let bodies = [
        CHANGED,
        MERGED,
        r#"{"type":"ENTITY_CHANGED","uri":"entities/top","uris":["entities/u"]}"#,
        r#"{"type":"ENTITY_CHANGED","object":{"uri":""},"uri":"entities/top"}"#,
        r#"{"type":"ENTITY_CHANGED","object":null,"uris":[],"tenantId":"","objectVersion":"v9"}"#,
        r#"{"type":"ENTITY_CHANGED","objectVersion":1.5e3,"exceededQueueSizeLimit":true}"#,
        r#"{"type":"ENTITY_CHANGED","objectVersion":{"a":1},"updatedTime":null}"#,
        r#"{"type":"ENTITY_CHANGED","type":"ENTITY_REMOVED"}"#,
        r#"{"type":1,"type":"ENTITY_REMOVED"}"#,
        r#"{"type":"ENTITY_REMOVED","type":1}"#,
        r#"{"type":"entity_changed"}"#,
        r#"{"tenantId":"T1"}"#,
        r#"{"type":"ENTITY_CHANGED","updatedTime":1.5}"#,
        r#"{"type":"ENTITY_CHANGED","updatedTime":18446744073709551615}"#,
        r#"{"type":"ENTITY_CHANGED","exceededQueueSizeLimit":null}"#,
        r#"{"type":"ENTITY_CHANGED","uris":null}"#,
        r#"{"type":"ENTITY_CHANGED","uris":["a",1]}"#,
        r#"{"type":"ENTITY_CHANGED","object":["u","t"]}"#,
        r#"{"type":"ENTITY_CHANGED","object":{"uri":"e/1","uri":"e/2","type":null}}"#,
        r#"{"type":"ENTITY_CHANGED","object":{"updatedTime":"x"}}"#,
        r#"{"type":"ENTITY_CHANGED","other":"\ud800"}"#,
        r#"{"type":"ENTITY_CHANGED","other":1e400}"#,
        r#"{"type":"ENTITY_CHANGED","other":[1,{"x":[true,null,-0,"\u00e9"]}]}"#,
        r#"{"type":"ENTITY_CHANGED","o\u0062ject":{"uri":"escaped-key"}}"#,
        r#"{"type":"ENTITY_CHANGED"} trailing"#,
        r#"{"type":"ENTITY_CHANGED",}"#,
        "{\"type\":\"ENTITY_CHANGED\",\"x\":\"\u{ffff}\"}",
        r#"[{"type":"ENTITY_CHANGED"}]"#,
        r#""text""#,
    ];
    let deep = format!(
        "{{\"type\":\"ENTITY_CHANGED\",\"x\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let ids = [Some("evt-1"), Some("  "), None, Some(&*"x".repeat(200))];
    for body in bodies.iter().copied().chain([deep.as_str()]) {
        for id in ids {
            let full = format!(" \n{body}\n");
            let text = full.trim();
            let expected = parse_tree(&full, text, id);
            if let Some(fast) = parse_single(&full, text, id) {
                assert_eq!(fast, expected, "{body}");
            }
            // parse_body also refuses what the crm-updater could not read (a repeated key, say).
            let readable = expected.as_ref().map_or(true, |events| {
                events
                    .iter()
                    .all(|e| serde_json::from_str::<ReltioEvent>(&e.body).is_ok())
            });
            match parse_body(full.as_bytes(), id) {
                Err(BodyError::NotAnEvent(_)) if !readable => {}
                got => assert_eq!(got, expected, "{body}"),
            }
        }
    }
    // The benchmark's shape takes the one-pass path.
    assert!(parse_single(CHANGED, CHANGED, Some("evt-1")).is_some());
}

#[test]
fn a_body_the_crm_updater_could_not_read_is_refused() {
    // Found by fuzzing: a repeated envelope key is JSON, but not a Reltio event.
    let body = br#"[{"type": "ENTITIES_MERGED", "tenantId": "T1", "tenantId": "T2", "uris": ["entities/A"]}]"#;
    assert!(matches!(
        parse_body(body, None),
        Err(BodyError::NotAnEvent(_))
    ));
    let single =
        br#"{"type": "ENTITY_CHANGED", "object": {"uri": "entities/A", "uri": "entities/B"}}"#;
    assert!(matches!(
        parse_body(single, Some("msg_1")),
        Err(BodyError::NotAnEvent(_))
    ));
}

#[test]
fn the_readability_check_accepts_exactly_what_the_crm_updater_parses() {
    let deep = format!(
        r#"{{"type":"ENTITY_CHANGED","object":{{"attributes":{}{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases = [
        CHANGED.to_owned(),
        MERGED.to_owned(),
        // Repeated keys: refused at the envelope, taken (last wins) inside the snapshot, as a Value takes them.
        r#"{"type":"ENTITY_CHANGED","tenantId":"a","tenantId":"b"}"#.to_owned(),
        r#"{"type":"ENTITY_CHANGED","object":{"attributes":{"A":1,"A":2},"crosswalks":[]}}"#
            .to_owned(),
        r#"{"type":"ENTITY_CHANGED","object":{"uri":"u","uri":"v"}}"#.to_owned(),
        // What a Value refuses inside the snapshot: a lone surrogate, a number out of range, too deep a nesting.
        r#"{"type":"ENTITY_CHANGED","object":{"attributes":{"A":"\ud800"}}}"#.to_owned(),
        r#"{"type":"ENTITY_CHANGED","object":{"crosswalks":[1e400]}}"#.to_owned(),
        deep,
        // Any JSON value, or null, is a Value.
        r#"{"type":"ENTITY_CHANGED","object":{"attributes":7,"crosswalks":null}}"#.to_owned(),
        r#"{"type":"ENTITY_CHANGED","object":{"attributes":{"A":"\u00e9\"x\""}}}"#.to_owned(),
        // Envelope types.
        r#"{"type":"ENTITY_CHANGED","object":{"updatedTime":"soon"}}"#.to_owned(),
        r#"{"type":"ENTITY_CHANGED","object":null,"uris":["a",2]}"#.to_owned(),
        r#"{"object":{}}"#.to_owned(),
    ];
    let mut refused = 0;
    for case in &cases {
        let parsed = serde_json::from_str::<ReltioEvent>(case).is_ok();
        assert_eq!(check_readable(case).is_ok(), parsed, "{case}");
        refused += usize::from(!parsed);
    }
    assert_eq!(refused, 8, "the cases cover both answers");
}
