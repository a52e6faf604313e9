use super::*;
use crate::reltio::event::{EntityTypeFilter, EventTypeFilter};
use base64::Engine;
use std::io::Write;

const CHANGED: &str = r#"{"type":"ENTITY_CHANGED","object":{"uri":"entities/1","type":"configuration/entityTypes/Individual","attributes":{}}}"#;
const MERGED: &str =
    r#"{"type":"ENTITIES_MERGED","tenantId":"T1","uris":["entities/1","entities/2"]}"#;
const ORG: &str = r#"{"type":"ENTITY_CREATED","object":{"uri":"entities/9","type":"configuration/entityTypes/Organization"}}"#;

fn settings() -> StreamSettings {
    StreamSettings {
        subscription: Subscription::default(),
        max_event_bytes: 1024 * 1024,
    }
}

fn no_headers() -> Vec<(&'static str, &'static str)> {
    Vec::new()
}

fn plan(value: &[u8]) -> Result<(RecordPlan, Vec<OutgoingMessage>), RecordError> {
    plan_record(Some(value), &no_headers(), &settings(), false)
}

fn attribute<'a>(m: &'a OutgoingMessage, name: &str) -> Option<&'a str> {
    m.attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn b64(bytes: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into_bytes()
}

#[test]
fn one_event_becomes_one_message_with_its_bytes_as_the_body() {
    let (plan, messages) = plan(CHANGED.as_bytes()).unwrap();
    assert_eq!(plan.accepted.len(), 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, CHANGED);
    assert_eq!(attribute(&messages[0], "eventType"), Some("ENTITY_CHANGED"));
    assert_eq!(
        attribute(&messages[0], "sourceObjectUri"),
        Some("entities/1")
    );
    assert_eq!(messages[0].group_id, None, "standard queue: no group id");
}

#[test]
fn an_array_becomes_one_message_per_event_each_with_its_own_id() {
    let value = format!("[{CHANGED}, {MERGED}]");
    let (plan, messages) = plan(value.as_bytes()).unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].body, CHANGED);
    assert_eq!(messages[1].body, MERGED);
    assert_ne!(plan.accepted[0].id, plan.accepted[1].id);
    // The same event in another record (a duplicate delivery, a second publish) keeps its id.
    let (alone, _) = super::tests::plan(MERGED.as_bytes()).unwrap();
    assert_eq!(alone.accepted[0].id, plan.accepted[1].id);
}

#[test]
fn an_empty_array_holds_no_event_and_is_not_poison() {
    let (plan, messages) = plan(b" [] ").unwrap();
    assert!(plan.accepted.is_empty() && plan.filtered.is_empty() && messages.is_empty());
}

#[test]
fn fifo_messages_are_grouped_by_entity_and_deduplicated_by_event_id() {
    let (plan, messages) =
        plan_record(Some(CHANGED.as_bytes()), &no_headers(), &settings(), true).unwrap();
    assert_eq!(messages[0].group_id.as_deref(), Some("entities/1"));
    assert_eq!(
        messages[0].dedup_id.as_deref(),
        Some(plan.accepted[0].id.as_str())
    );
}

#[test]
fn headers_fill_what_a_single_event_does_not_carry_and_never_override_it() {
    let headers = [
        ("tenantId", "T9"),
        ("objectVersion", " 42 "),
        ("sourceObjectUri", "entities/other"),
        ("eventType", "ENTITY_REMOVED"),
    ];
    let (_, messages) = plan_record(
        Some(CHANGED.as_bytes()),
        &headers.to_vec(),
        &settings(),
        true,
    )
    .unwrap();
    let m = &messages[0];
    assert_eq!(attribute(m, "tenantId"), Some("T9"));
    assert_eq!(attribute(m, "objectVersion"), Some("42"));
    // The body names the entity and the type: headers do not replace them.
    assert_eq!(attribute(m, "sourceObjectUri"), Some("entities/1"));
    assert_eq!(m.group_id.as_deref(), Some("entities/1"));
    assert_eq!(attribute(m, "eventType"), Some("ENTITY_CHANGED"));

    // An oversized event carries no object: the header's URI is what groups it.
    let large = r#"{"type":"ENTITY_CHANGED","exceededQueueSizeLimit":true}"#;
    let (_, messages) =
        plan_record(Some(large.as_bytes()), &headers.to_vec(), &settings(), true).unwrap();
    assert_eq!(
        attribute(&messages[0], "sourceObjectUri"),
        Some("entities/other")
    );
    assert_eq!(messages[0].group_id.as_deref(), Some("entities/other"));

    // The body's own tenant wins.
    let (_, messages) = plan_record(
        Some(MERGED.as_bytes()),
        &headers.to_vec(),
        &settings(),
        false,
    )
    .unwrap();
    assert_eq!(attribute(&messages[0], "tenantId"), Some("T1"));

    // Headers describe one message: with several events they are not spread over all of them.
    let value = format!("[{CHANGED},{ORG}]");
    let (_, messages) = plan_record(
        Some(value.as_bytes()),
        &headers.to_vec(),
        &settings(),
        false,
    )
    .unwrap();
    assert!(messages
        .iter()
        .all(|m| attribute(m, "objectVersion").is_none()));
}

#[test]
fn the_subscription_filters_events_of_a_record() {
    let settings = StreamSettings {
        subscription: Subscription {
            event_types: EventTypeFilter::parse(&["UPDATE", "MERGE"]).unwrap(),
            entity_types: EntityTypeFilter::new(&["Individual"]),
        },
        ..settings()
    };
    let value = format!("[{CHANGED},{MERGED},{ORG}]");
    let (plan, messages) =
        plan_record(Some(value.as_bytes()), &no_headers(), &settings, false).unwrap();
    assert_eq!(
        plan.accepted
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["ENTITY_CHANGED", "ENTITIES_MERGED"]
    );
    assert_eq!(plan.filtered.len(), 1);
    assert_eq!(plan.filtered[0].event_type, "ENTITY_CREATED");
    assert_eq!(messages.len(), 2);
}

#[test]
fn zipped_base64_values_are_read_as_gzip_zlib_or_deflate() {
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    let json = format!("[{CHANGED},{MERGED}]");
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(json.as_bytes()).unwrap();
    let mut zl = ZlibEncoder::new(Vec::new(), Compression::default());
    zl.write_all(json.as_bytes()).unwrap();
    let mut df = DeflateEncoder::new(Vec::new(), Compression::default());
    df.write_all(json.as_bytes()).unwrap();
    for (name, zipped) in [
        ("gzip", gz.finish().unwrap()),
        ("zlib", zl.finish().unwrap()),
        ("deflate", df.finish().unwrap()),
    ] {
        let mut value = b64(&zipped);
        // Line-wrapped base64, as some encoders write it.
        value.insert(10, b'\n');
        let (_, messages) = plan(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(messages.len(), 2, "{name}");
        assert_eq!(messages[0].body, CHANGED, "{name}");
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(json.as_bytes()).unwrap();
    let (_, messages) = plan(&gz.finish().unwrap()).expect("gzip bytes without base64");
    assert_eq!(messages.len(), 2);
}

#[test]
fn poison_values_are_refused_with_a_reason_that_never_quotes_them() {
    let secret = "Sentinel-Jane";
    type Case = (Vec<u8>, fn(&RecordError) -> bool);
    let cases: Vec<Case> = vec![
        (b"".to_vec(), |e| *e == RecordError::NoValue),
        (b"  \n".to_vec(), |e| *e == RecordError::NoValue),
        (format!("not json {secret}").into_bytes(), |e| {
            matches!(e, RecordError::NotEncoded(_))
        }),
        (format!("{{\"type\": \"{secret}").into_bytes(), |e| {
            matches!(e, RecordError::Body(BodyError::InvalidJson(_)))
        }),
        (format!("{{\"name\": \"{secret}\"}}").into_bytes(), |e| {
            matches!(e, RecordError::Body(BodyError::NotAnEvent(_)))
        }),
        (b64(format!("plain text {secret}").as_bytes()), |e| {
            matches!(e, RecordError::NotZippedJson(_))
        }),
        (b64(b"PK\x03\x04rest of an archive"), |e| {
            matches!(e, RecordError::NotZippedJson(_))
        }),
        (vec![0xff, 0xfe, 0x00], |e| {
            matches!(e, RecordError::NotEncoded(_))
        }),
    ];
    for (value, expected) in cases {
        let err = plan(&value).expect_err(&String::from_utf8_lossy(&value));
        assert!(
            expected(&err),
            "{:?}: {err:?}",
            String::from_utf8_lossy(&value)
        );
        assert!(!err.to_string().contains(secret), "{err}");
    }
    assert_eq!(
        plan_record(None, &no_headers(), &settings(), false).unwrap_err(),
        RecordError::NoValue
    );
}

#[test]
fn an_event_too_large_for_the_queue_is_poison_not_a_send_failure() {
    let settings = StreamSettings {
        max_event_bytes: CHANGED.len() + 10,
        ..settings()
    };
    let err = plan_record(Some(CHANGED.as_bytes()), &no_headers(), &settings, false).unwrap_err();
    assert!(
        matches!(err, RecordError::EventTooLarge { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn a_zip_bomb_is_cut_at_the_limit() {
    use flate2::write::GzEncoder;
    use flate2::Compression;
    let settings = StreamSettings {
        max_event_bytes: 1024,
        ..settings()
    };
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(b"[").unwrap();
    gz.write_all(&vec![b' '; 10 * 1024 * 1024]).unwrap();
    gz.write_all(b"]").unwrap();
    let value = b64(&gz.finish().unwrap());
    assert!(value.len() < 64 * 1024);
    let err = plan_record(Some(&value), &no_headers(), &settings, false).unwrap_err();
    assert_eq!(err, RecordError::TooLargeUnzipped { limit: 16 * 1024 });
}
