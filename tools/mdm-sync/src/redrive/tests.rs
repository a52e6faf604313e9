use super::*;
use crate::letters::read;
use aws_sdk_sqs::types::MessageAttributeValue;

fn message(body: &str) -> Message {
    Message::builder().message_id("m-9").body(body).build()
}

fn letter(role: Role, m: &Message) -> Letter {
    sqs_io::letter(role, m)
}

#[test]
fn an_event_goes_back_exactly_as_written_with_the_receivers_attributes_and_fifo_ids() {
    // Numbers no f64 holds, and spacing no serialiser would write: the body is the letter's text, byte for byte.
    let event = r#"{"type":"ENTITY_CHANGED", "tenantId":"T1","object":{"uri":"entities/A","type":"configuration/entityTypes/Individual","attributes":{"Balance":[{"value":98765432109876.54321012}],"Big":[{"value":123456789012345678901234}]}}}"#;
    let body = format!(
        r#"{{"function":"crm-updater","reason":"r","attempts":3,"messageId":"m-1","eventId":"e-1","entityUri":"entities/A","event":{event}}}"#
    );
    let m = message(&body);
    let sent = queue_message(&letter(Role::Crm, &m), &m, true).unwrap();
    assert_eq!(sent.body, event);
    assert!(sent.attributes.contains(&("eventId".into(), "e-1".into())));
    assert!(sent
        .attributes
        .contains(&("entityType".into(), "Individual".into())));
    assert_eq!(sent.group_id.as_deref(), Some("entities/A"));
    assert_eq!(sent.dedup_id.as_deref(), Some("e-1"));
    let standard = queue_message(&letter(Role::Crm, &m), &m, false).unwrap();
    assert_eq!((standard.group_id, standard.dedup_id), (None, None));
    assert_eq!(standard.body, event);
}

#[test]
fn text_that_is_no_event_goes_back_as_the_same_text_with_its_id() {
    let raw = r#"{"reason":"not a Reltio event","messageId":"m-1","eventId":"bad-1","event":"not json {\"n\":1.10}"}"#;
    let m = message(raw);
    let sent = queue_message(&letter(Role::Analytics, &m), &m, true).unwrap();
    assert_eq!(sent.body, r#"not json {"n":1.10}"#);
    assert_eq!(sent.attributes, vec![("eventId".into(), "bad-1".into())]);
    assert_eq!(sent.group_id.as_deref(), Some("bad-1"));
    assert_eq!(sent.dedup_id.as_deref(), Some("bad-1"));
}

#[test]
fn a_redrive_dlq_message_goes_back_as_it_is_with_its_attributes_and_fifo_ids() {
    let text = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    };
    let body = r#"{"type":"ENTITY_CHANGED","object":{"uri":"entities/A","n":1.10}}"#;
    let m = Message::builder()
        .message_id("m-9")
        .body(body)
        .message_attributes("eventId", text("e-7"))
        .message_attributes("sourceObjectUri", text("entities/A"))
        .attributes(MessageSystemAttributeName::MessageGroupId, "entities/A")
        .build();
    let sent = queue_message(&letter(Role::Events, &m), &m, true).unwrap();
    assert_eq!(sent.body, body);
    assert_eq!(sent.group_id.as_deref(), Some("entities/A"));
    assert_eq!(sent.dedup_id.as_deref(), Some("e-7"), "no system dedup id");
    assert!(sent.attributes.contains(&("eventId".into(), "e-7".into())));
}

#[test]
fn a_stream_letter_is_no_queue_message_and_says_how_to_put_it_back() {
    let kafka = message(r#"{"reason":"not JSON","topic":"t","partition":2,"offset":41}"#);
    let letter = letter(Role::Stream, &kafka);
    assert_eq!(queue_message(&letter, &kafka, false), None);
    assert!(unsupported_hint(&letter).contains("t-2@41"));
    let unreadable = read(Role::Crm, "[1]", |_| None);
    assert_eq!(queue_message(&unreadable, &kafka, false), None);
    assert!(describe(&unreadable, Some("m-9"))["what"]
        .as_str()
        .unwrap()
        .starts_with("not redriven: "));
}
