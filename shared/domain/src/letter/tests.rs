use super::*;
use serde_json::{json, Value};

fn kinesis(payload: &[u8]) -> DeadLetter {
    DeadLetter {
        function: "cdc-ingest".into(),
        reason: "table public.customer: key column id is missing".into(),
        attempts: None,
        failed_at: Some("2026-12-07T20:00:00Z".into()),
        origin: Origin::Kinesis {
            stream_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()),
            shard_id: Some("shardId-000000000001".into()),
            sequence_number: "495".into(),
            partition_key: "public.customer.46".into(),
        },
        context: LetterContext {
            table: Some("public.customer".into()),
            key: Some("46".into()),
            ..LetterContext::default()
        },
        payload: Payload::of(payload),
    }
}

#[test]
fn a_json_record_is_kept_verbatim_numbers_and_all() {
    let record = br#"{"data":{"id":46,"balance":98765432109876.54321012,"big":123456789012345678901234},"metadata":{"operation":"update"}}"#;
    let letter = kinesis(record);
    let text = letter.to_json();
    assert!(
        text.contains(r#""balance":98765432109876.54321012"#),
        "{text}"
    );
    assert!(text.contains(r#""big":123456789012345678901234"#), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["sequenceNumber"], "495");
    assert_eq!(v["partitionKey"], "public.customer.46");
    assert_eq!(v["shardId"], "shardId-000000000001");
    assert_eq!(v["key"], "46");
    assert_eq!(v["table"], "public.customer");
    assert_eq!(v["function"], "cdc-ingest");
    let read = DeadLetter::parse(&text).unwrap();
    assert_eq!(read, letter);
    assert_eq!(
        read.payload.bytes().unwrap(),
        record.to_vec(),
        "the same bytes"
    );
}

#[test]
fn a_record_that_is_not_json_or_not_text_is_kept_as_base64_of_its_bytes() {
    for bytes in [
        &b"not json"[..],
        &[0xff, 0x00, 0x9c][..],
        &b" {\"a\":1}\n"[..],
    ] {
        let letter = kinesis(bytes);
        let v: Value = serde_json::from_str(&letter.to_json()).unwrap();
        assert!(v.get("record").is_none(), "{v}");
        assert!(v["recordBase64"].is_string(), "{v}");
        let read = DeadLetter::parse(&letter.to_json()).unwrap();
        assert_eq!(read.payload.bytes().unwrap(), bytes.to_vec());
    }
}

#[test]
fn a_kafka_letter_names_its_offsets_and_keeps_its_key_and_value() {
    let letter = DeadLetter {
        function: "stream-consumer".into(),
        reason: "not a Reltio event".into(),
        attempts: None,
        failed_at: None,
        origin: Origin::Kafka {
            topic: "reltio-events".into(),
            partition: 2,
            offset: 41,
            timestamp: Some(1_764_000_001_041),
            key: Some(b"entities/1".to_vec()),
        },
        context: LetterContext::default(),
        payload: Payload::of(br#"{"n":1.10}"#),
    };
    let v: Value = serde_json::from_str(&letter.to_json()).unwrap();
    assert_eq!(
        (&v["topic"], &v["partition"], &v["offset"], &v["key"]),
        (
            &json!("reltio-events"),
            &json!(2),
            &json!(41),
            &json!("entities/1")
        )
    );
    assert_eq!(v["timestamp"], 1_764_000_001_041i64, "integer milliseconds");
    assert!(letter.to_json().contains(r#""value":{"n":1.10}"#));
    assert_eq!(DeadLetter::parse(&letter.to_json()).unwrap(), letter);

    // A binary key, a CDC context.
    let cdc = DeadLetter {
        function: "cdc-ingest".into(),
        origin: Origin::Kafka {
            topic: "dbserver1.public.customer".into(),
            partition: 0,
            offset: 7,
            timestamp: None,
            key: Some(vec![0xff, 0x01]),
        },
        context: LetterContext {
            table: Some("public.customer".into()),
            key: Some("46".into()),
            ..LetterContext::default()
        },
        ..letter.clone()
    };
    let v: Value = serde_json::from_str(&cdc.to_json()).unwrap();
    assert_eq!(v["keyBase64"], "/wE=");
    assert_eq!(v["crosswalkValue"], "46");
    assert_eq!(v["table"], "public.customer");
    assert_eq!(DeadLetter::parse(&cdc.to_json()).unwrap(), cdc);
}

fn queued(body: &str) -> DeadLetter {
    DeadLetter {
        function: "crm-updater".into(),
        reason: "not a Reltio event".into(),
        attempts: Some(3),
        failed_at: None,
        origin: Origin::Queue {
            message_id: "m-1".into(),
        },
        context: LetterContext {
            entity_uri: Some("entities/A".into()),
            event_id: Some("e-1".into()),
            ..LetterContext::default()
        },
        payload: Payload::of(body.as_bytes()),
    }
}

#[test]
fn a_queue_letter_keeps_the_event_or_the_text_and_its_fifo_ids() {
    let event = r#"{"type":"ENTITY_CHANGED","object":{"uri":"entities/A","attributes":{"Amount":[{"value":12.500}]}}}"#;
    let letter = queued(event);
    let v: Value = serde_json::from_str(&letter.to_json()).unwrap();
    assert_eq!(
        (
            &v["messageId"],
            &v["eventId"],
            &v["entityUri"],
            &v["attempts"]
        ),
        (
            &json!("m-1"),
            &json!("e-1"),
            &json!("entities/A"),
            &json!(3)
        )
    );
    assert_eq!(v["event"]["object"]["uri"], "entities/A");
    assert!(letter.to_json().contains(r#"{"value":12.500}"#));
    assert_eq!(DeadLetter::parse(&letter.to_json()).unwrap(), letter);

    let text = queued("not json at all");
    let v: Value = serde_json::from_str(&text.to_json()).unwrap();
    assert_eq!(v["event"], "not json at all");
    let read = DeadLetter::parse(&text.to_json()).unwrap();
    assert_eq!(read.payload.bytes().unwrap(), b"not json at all".to_vec());

    let m = letter.to_message(true);
    assert_eq!(m.group_id.as_deref(), Some("entities/A"));
    assert_eq!(m.dedup_id.as_ref().map(String::len), Some(64));
    assert!(m.attributes.contains(&("eventId".into(), "e-1".into())));
    assert!(m
        .attributes
        .contains(&("function".into(), "crm-updater".into())));
    assert_eq!(letter.to_message(false).group_id, None);
}

#[test]
fn a_payload_too_large_for_a_letter_is_left_out_with_where_to_fetch_it() {
    // A record of 900 KB: the letter keeps its position, size and hash.
    let big = format!(r#"{{"data":{{"notes":"{}"}}}}"#, "x".repeat(900 * 1024));
    let m = kinesis(big.as_bytes()).to_message(false);
    assert!(m.size() <= DEAD_LETTER_MAX_BYTES);
    let v: Value = serde_json::from_str(&m.body).unwrap();
    assert_eq!(v["recordOmitted"]["bytes"], big.len());
    assert_eq!(v["recordOmitted"]["sha256"].as_str().unwrap().len(), 64);
    assert!(v["recordOmitted"]["fetch"]
        .as_str()
        .unwrap()
        .contains("AT_SEQUENCE_NUMBER"));
    assert_eq!(v["shardId"], "shardId-000000000001");
    let read = DeadLetter::parse(&m.body).unwrap();
    assert!(
        matches!(read.payload, Payload::Omitted { ref pointer, stand_in: None } if pointer.bytes == big.len())
    );

    // A queued event: Reltio's own large-event form stands in, which a redrive can put back.
    let event = json!({"type": "ENTITY_CHANGED", "objectVersion": 7,
        "object": {"uri": "entities/A", "updatedTime": 9, "attributes": {"Notes": "y".repeat(300_000)}}});
    let m = queued(&event.to_string()).to_message(false);
    assert!(m.size() <= DEAD_LETTER_MAX_BYTES);
    let v: Value = serde_json::from_str(&m.body).unwrap();
    assert_eq!(v["event"]["exceededQueueSizeLimit"], true);
    assert_eq!(v["event"]["uri"], "entities/A");
    assert_eq!(v["eventOmitted"]["bytes"], event.to_string().len());
    let read = DeadLetter::parse(&m.body).unwrap();
    assert!(matches!(
        read.payload,
        Payload::Omitted {
            stand_in: Some(_),
            ..
        }
    ));

    // Text that is no event has no stand-in: the letter says so with `event: null`.
    let m = queued(&"z".repeat(300_000)).to_message(false);
    let v: Value = serde_json::from_str(&m.body).unwrap();
    assert!(v["event"].is_null() && v["eventOmitted"]["bytes"] == 300_000);
}

#[test]
fn letters_written_before_the_typed_format_still_read() {
    let old_cdc = json!({"function": "cdc-ingest", "reason": "r", "table": "public.customer", "key": "46",
        "sequenceNumber": "495", "partitionKey": "public.customer.46",
        "eventSourceArn": "arn:aws:kinesis:us-east-1:1:stream/s", "eventId": "shardId-000000000001:495",
        "failedAt": "2026-01-01T00:00:00Z", "record": {"data": {"id": 46}}});
    let read = DeadLetter::parse(&old_cdc.to_string()).unwrap();
    assert!(
        matches!(read.origin, Origin::Kinesis { ref shard_id, .. } if shard_id.as_deref() == Some("shardId-000000000001"))
    );
    assert_eq!(read.context.key.as_deref(), Some("46"));
    assert_eq!(
        read.context.event_id, None,
        "a Kinesis event id is no Reltio event id"
    );
    assert_eq!(
        read.payload.bytes().unwrap(),
        br#"{"data":{"id":46}}"#.to_vec()
    );

    let old_event = json!({"reason": "r", "attempts": 1, "messageId": "m", "eventId": "e", "entityUri": null,
        "event": {"type": "ENTITY_CHANGED"}});
    let read = DeadLetter::parse(&old_event.to_string()).unwrap();
    assert_eq!(
        read.origin,
        Origin::Queue {
            message_id: "m".into()
        }
    );
    assert_eq!(read.context.event_id.as_deref(), Some("e"));

    assert!(matches!(
        DeadLetter::parse("[1]"),
        Err(LetterError::NotJson(_))
    ));
    assert!(matches!(
        DeadLetter::parse(r#"{"reason":"r"}"#),
        Err(LetterError::Missing(_))
    ));
    assert!(matches!(
        DeadLetter::parse(r#"{"reason":"r","topic":"t"}"#),
        Err(LetterError::Missing(_))
    ));
}
