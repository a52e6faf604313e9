use super::*;
use mdm_sync_domain::letter::LetterContext;
use serde_json::json;

fn none(_: &str) -> Option<String> {
    None
}

fn record(letter: &Letter) -> NamedRecord<'_> {
    letter
        .named_record()
        .unwrap_or_else(|| panic!("no record: {letter:?}"))
}

#[test]
fn a_cdc_dead_letter_gives_its_record_and_partition_key() {
    let body = json!({"function": "cdc-ingest", "reason": "table public.customer: key column id is missing",
        "table": "public.customer", "partitionKey": "public.customer.46", "sequenceNumber": "495",
        "eventSourceArn": "arn:aws:kinesis:us-east-1:1:stream/s", "eventId": "shardId-000000000001:495",
        "record": {"data": {"id": 46}}});
    let letter = read(Role::Cdc, &body.to_string(), none);
    assert_eq!(
        letter.reason(),
        "table public.customer: key column id is missing"
    );
    assert_eq!(letter.table(), Some("public.customer"));
    assert_eq!(
        record(&letter),
        NamedRecord {
            stream_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s"),
            partition_key: "public.customer.46",
            position: Some(("shardId-000000000001", "495")),
            data: Some(br#"{"data":{"id":46}}"#.to_vec()),
        }
    );
    let raw = json!({"reason": "not JSON", "partitionKey": "k", "recordBase64": "bm90IGpzb24="});
    let letter = read(Role::Cdc, &raw.to_string(), none);
    assert_eq!(record(&letter).data.as_deref(), Some(&b"not json"[..]));
    assert_eq!(record(&letter).position, None);
    let omitted = json!({"reason": "r", "partitionKey": "k", "shardId": "shardId-0", "sequenceNumber": "77",
                         "recordOmitted": {"bytes": 1_048_000, "sha256": "ab".repeat(32)}});
    let letter = read(Role::Cdc, &omitted.to_string(), none);
    assert_eq!(record(&letter).data, None);
    assert_eq!(record(&letter).position, Some(("shardId-0", "77")));
    assert!(matches!(
        read(Role::Cdc, "{\"reason\": \"r\"}", none),
        Letter::Unreadable(_)
    ));
    // Neither the record nor where the stream holds it: nothing to redrive.
    let lost = json!({"reason": "r", "partitionKey": "k", "sequenceNumber": "77"});
    assert!(matches!(
        read(Role::Cdc, &lost.to_string(), none),
        Letter::Unreadable(ref why) if why.contains("neither the record nor where")
    ));
}

#[test]
fn a_kinesis_record_is_given_to_redrive_byte_for_byte() {
    // Numbers no f64 holds: a re-serialisation of parsed JSON would round them.
    let data = r#"{"data":{"id":46,"balance":98765432109876.54321012,"big":123456789012345678901234},"metadata":{"operation":"update"}}"#;
    let body = format!(
        r#"{{"function":"cdc-ingest","reason":"r","partitionKey":"public.customer.46","sequenceNumber":"495","eventId":"shardId-000000000001:495","record":{data}}}"#
    );
    let letter = read(Role::Cdc, &body, none);
    assert_eq!(record(&letter).data.as_deref(), Some(data.as_bytes()));

    // The same record in a letter the runner writes.
    let typed = DeadLetter {
        function: "cdc-ingest".into(),
        reason: "r".into(),
        attempts: None,
        failed_at: None,
        origin: Origin::Kinesis {
            stream_arn: None,
            shard_id: Some("shardId-000000000001".into()),
            sequence_number: "495".into(),
            partition_key: "public.customer.46".into(),
        },
        context: LetterContext::default(),
        payload: Payload::of(data.as_bytes()),
    };
    let letter = read(Role::Cdc, &typed.to_json(), none);
    assert_eq!(record(&letter).data.as_deref(), Some(data.as_bytes()));
}

#[test]
fn a_kinesis_letter_the_runner_writes_names_its_shard() {
    let typed = DeadLetter {
        function: "cdc-ingest".into(),
        reason: "table public.customer: key column id is missing".into(),
        attempts: None,
        failed_at: Some("2026-12-07T20:00:00Z".into()),
        origin: Origin::Kinesis {
            stream_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()),
            shard_id: Some("shardId-000000000003".into()),
            sequence_number: "4951".into(),
            partition_key: "public.customer.46".into(),
        },
        context: LetterContext {
            table: Some("public.customer".into()),
            key: Some("46".into()),
            ..LetterContext::default()
        },
        payload: Payload::of(&[0xff, 0x00, 0x9c]),
    };
    let letter = read(Role::Cdc, &typed.to_json(), none);
    assert_eq!(
        record(&letter),
        NamedRecord {
            stream_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s"),
            partition_key: "public.customer.46",
            position: Some(("shardId-000000000003", "4951")),
            data: Some(vec![0xff, 0x00, 0x9c]),
        }
    );
    assert!(Filter::parse("table=public.customer")
        .unwrap()
        .matches(&letter));
    assert!(Filter::parse("reason=KEY COLUMN").unwrap().matches(&letter));
    // Left out of its letter: read back from the stream at its position.
    let left_out = typed.with_payload_left_out();
    let letter = read(Role::Cdc, &left_out.to_json(), none);
    assert_eq!(record(&letter).data, None);
    assert_eq!(
        record(&letter).position,
        Some(("shardId-000000000003", "4951"))
    );
}

#[test]
fn kafka_dead_letters_and_on_failure_records_name_their_offsets() {
    let poison = json!({"function": "stream-consumer", "reason": "not JSON", "topic": "t", "partition": 2, "offset": 41});
    assert!(matches!(
        read(Role::Stream, &poison.to_string(), none),
        Letter::Dead(ref d) if matches!(d.origin, Origin::Kafka { partition: 2, offset: 41, .. })
    ));
    let batch = json!({"requestContext": {"condition": "RetryAttemptsExhausted"},
        "KafkaBatchInfo": {"recordsInfo": {"t-0": {"firstRecordOffset": "5", "lastRecordOffset": "9"}}}});
    assert_eq!(
        read(Role::StreamFailures, &batch.to_string(), none),
        Letter::KafkaBatch {
            condition: "RetryAttemptsExhausted".into(),
            ranges: vec![("t-0".into(), 5, 9)]
        }
    );
    let kinesis = json!({"requestContext": {"condition": "RecordAgeExceeded"},
        "KinesisBatchInfo": {"shardId": "shardId-1", "startSequenceNumber": "10", "endSequenceNumber": "20",
                             "streamArn": "arn:s"}});
    assert!(
        matches!(read(Role::CdcFailures, &kinesis.to_string(), none),
        Letter::KinesisBatch { ref shard_id, ref start, ref end, .. } if shard_id == "shardId-1" && start == "10" && end == "20")
    );
}

#[test]
fn a_kafka_letter_the_runner_writes_reads_with_its_table_and_offsets() {
    let typed = DeadLetter {
        function: "cdc-ingest".into(),
        reason: "table public.customer: no mapping".into(),
        attempts: None,
        failed_at: None,
        origin: Origin::Kafka {
            topic: "dbserver1.public.customer".into(),
            partition: 0,
            offset: 7,
            timestamp: Some(1_764_000_001_041),
            key: Some(b"{\"id\":46}".to_vec()),
        },
        context: LetterContext {
            table: Some("public.customer".into()),
            key: Some("46".into()),
            ..LetterContext::default()
        },
        payload: Payload::of(br#"{"after":{"id":46,"n":1.10}}"#),
    };
    let letter = read(Role::Cdc, &typed.to_json(), none);
    assert_eq!(letter, Letter::Dead(Box::new(typed.clone())));
    assert!(Filter::parse("table=public.customer")
        .unwrap()
        .matches(&letter));
    assert_eq!(letter.named_record(), None, "not a stream record");
    assert_eq!(letter.queued_event(), None);
    // On an event queue it is not what a redrive there puts back.
    assert!(matches!(
        read(Role::Crm, &typed.to_json(), none),
        Letter::Unreadable(_)
    ));
}

#[test]
fn consumer_dead_letters_give_the_event_and_filters_select_them() {
    let letter = json!({"reason": "FIELD_CUSTOM_VALIDATION_EXCEPTION on FirstName", "eventId": "e1",
        "entityUri": "entities/A", "attempts": 1,
        "event": {"type": "ENTITY_CHANGED", "object": {"uri": "entities/A", "type": "configuration/entityTypes/Individual"}}});
    let read_letter = read(Role::Crm, &letter.to_string(), none);
    let event = read_letter
        .queued_event()
        .unwrap_or_else(|| panic!("{read_letter:?}"));
    assert_eq!(event.id, "e1");
    assert_eq!(
        serde_json::from_str::<Value>(event.text).unwrap()["object"]["uri"],
        "entities/A"
    );
    assert!(Filter::parse("reason=field_custom")
        .unwrap()
        .matches(&read_letter));
    assert!(
        Filter::parse("entity-type=configuration/entityTypes/Individual")
            .unwrap()
            .matches(&read_letter)
    );
    assert!(!Filter::parse("entity-type=Organization")
        .unwrap()
        .matches(&read_letter));
    assert!(!Filter::parse("table=public.customer")
        .unwrap()
        .matches(&read_letter));
    assert!(Filter::parse("colour=red").is_err() && Filter::parse("reason").is_err());
    // A raw body that was no JSON is redriven as the same text.
    let raw = json!({"reason": "not a Reltio event", "eventId": "bad-1", "event": "not json"});
    assert_eq!(
        read(Role::Analytics, &raw.to_string(), none)
            .queued_event()
            .map(|e| e.text),
        Some("not json")
    );
    // Without its id or its event there is nothing to redrive.
    for body in [
        json!({"reason": "r", "messageId": "m", "event": {"type": "ENTITY_CHANGED"}}),
        json!({"reason": "r", "messageId": "m", "eventId": "e", "event": null}),
    ] {
        assert!(matches!(
            read(Role::Crm, &body.to_string(), none),
            Letter::Unreadable(_)
        ));
    }
    // A redrive DLQ's message is the original: its type from the queue contract's attribute.
    let m = read(Role::Events, "whatever", |n| {
        (n == "entityType").then(|| "Individual".to_owned())
    });
    assert!(Filter::parse("entity-type=Individual").unwrap().matches(&m));
}

#[test]
fn a_queue_letter_the_runner_writes_gives_its_event_as_written() {
    // The wire form the runner writes (crm-updater, analytics-sink), numbers and all.
    let event = r#"{"type":"ENTITY_CHANGED","object":{"uri":"entities/A","type":"configuration/entityTypes/Individual","attributes":{"Balance":[{"value":98765432109876.54321012}],"Big":[{"value":123456789012345678901234}]}}}"#;
    let body = format!(
        r#"{{"function":"crm-updater","reason":"FIELD_CUSTOM_VALIDATION_EXCEPTION on FirstName","attempts":3,"failedAt":"2026-12-07T20:00:00Z","messageId":"m-1","eventId":"e-1","entityUri":"entities/A","event":{event}}}"#
    );
    let letter = read(Role::Crm, &body, none);
    assert_eq!(
        letter.queued_event(),
        Some(QueuedEvent {
            id: "e-1",
            text: event
        })
    );
    let Letter::Dead(d) = &letter else {
        panic!("{letter:?}")
    };
    assert_eq!(d.function, "crm-updater");
    assert_eq!(d.attempts, Some(3));
    assert_eq!(d.context.entity_uri.as_deref(), Some("entities/A"));
    assert!(Filter::parse("entity-type=Individual")
        .unwrap()
        .matches(&letter));
    assert!(Filter::parse("reason=field_custom")
        .unwrap()
        .matches(&letter));
    assert_eq!(letter.named_record(), None);

    // An event too large for its letter: Reltio's own large-event form goes back (the consumer fetches it).
    let large = DeadLetter {
        function: "analytics-sink".into(),
        reason: "r".into(),
        attempts: Some(1),
        failed_at: None,
        origin: Origin::Queue {
            message_id: "m-2".into(),
        },
        context: LetterContext {
            entity_uri: Some("entities/B".into()),
            event_id: Some("e-2".into()),
            ..LetterContext::default()
        },
        payload: Payload::of(
            json!({"type": "ENTITY_CHANGED", "objectVersion": 7,
                "object": {"uri": "entities/B", "updatedTime": 9, "attributes": {"Notes": "y".repeat(300_000)}}})
            .to_string()
            .as_bytes(),
        ),
    }
    .with_payload_left_out();
    let letter = read(Role::Analytics, &large.to_json(), none);
    let stand_in: Value = serde_json::from_str(letter.queued_event().unwrap().text).unwrap();
    assert_eq!(stand_in["exceededQueueSizeLimit"], true);
    assert_eq!(stand_in["uri"], "entities/B");

    // On a stream's queue it is not what a redrive there puts back.
    assert!(matches!(
        read(Role::Cdc, &body, none),
        Letter::Unreadable(_)
    ));
}
