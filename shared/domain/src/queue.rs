//! Queue messages as the functions hand them on (the event queue, the dead-letter queues), and the port that
//! sends them.

/// One message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// String message attributes.
    pub attributes: Vec<(String, String)>,
    /// FIFO queues only.
    pub group_id: Option<String>,
    /// FIFO queues only.
    pub dedup_id: Option<String>,
}

/// The size a dead letter is kept within, whatever its queue allows: SQS's default (256 KiB). A payload that
/// does not fit is replaced by what is needed to fetch it again, so that an oversized bad record never cycles as
/// a send failure.
pub const DEAD_LETTER_MAX_BYTES: usize = 256 * 1024;

impl OutgoingMessage {
    /// The size SQS counts: the body and every attribute's name, type and value.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>()
    }
}

/// What stands in a dead letter for a payload too large to keep: its size, its SHA-256 and where to fetch it.
pub fn omitted(payload: &[u8], fetch: &str) -> serde_json::Value {
    use sha2::{Digest, Sha256};
    serde_json::json!({
        "bytes": payload.len(),
        "sha256": hex::encode(Sha256::digest(payload)),
        "reason": format!("too large for a dead letter ({} bytes at most)", DEAD_LETTER_MAX_BYTES),
        "fetch": fetch,
    })
}

/// A message that could not be sent after retries: `index` is its position in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub index: usize,
    pub reason: String,
}

/// A stand-in for an event too large for a destination of `limit` bytes (an SNS topic takes 256 KiB where the
/// event queue takes 1 MiB): the event in the form Reltio itself streams oversized events (docs/reference.md,
/// "largeObjectsSupport"): its type, `exceededQueueSizeLimit: true`, the entity's URI and the envelope's tenant,
/// version and time, with the same attributes (the event id among them). The consumers fetch the entity, as for
/// Reltio's own oversized events. `None` when the message is no single event naming an entity, or still too large.
pub fn oversized_stand_in(message: &OutgoingMessage, limit: usize) -> Option<OutgoingMessage> {
    use crate::reltio::event::ReltioEvent;
    let event: ReltioEvent<serde::de::IgnoredAny> = serde_json::from_str(&message.body).ok()?;
    let uri = event.entity_uri()?;
    let mut body = serde_json::Map::new();
    body.insert("type".into(), event.event_type.as_str().into());
    body.insert("exceededQueueSizeLimit".into(), true.into());
    body.insert("uri".into(), uri.into());
    if !event.uris.is_empty() {
        body.insert("uris".into(), event.uris.clone().into());
    }
    if let Some(t) = &event.tenant_id {
        body.insert("tenantId".into(), t.as_str().into());
    }
    if let Some(v) = event.object_version.clone() {
        body.insert("objectVersion".into(), v);
    }
    let time = event
        .updated_time
        .or_else(|| event.object.as_ref().and_then(|o| o.updated_time));
    if let Some(t) = time {
        body.insert("updatedTime".into(), t.into());
    }
    let stand_in = OutgoingMessage {
        body: serde_json::Value::Object(body).to_string(),
        ..message.clone()
    };
    (stand_in.size() <= limit).then_some(stand_in)
}

/// A queued Reltio event that can never be applied, as its consumer (crm-updater, analytics-sink) dead-letters
/// it.
pub struct EventLetter<'a> {
    pub reason: &'a str,
    /// SQS's receive count of the message.
    pub attempts: u32,
    pub message_id: &'a str,
    pub event_id: &'a str,
    pub entity_uri: Option<&'a str>,
    /// The message body (the event as queued).
    pub body: &'a str,
}

/// The dead letter of a queued event: `reason`, `attempts`, `messageId`, `eventId`, `entityUri` and the `event`
/// (its JSON, else the raw body), which a redrive puts back on the event queue as it is. An event too large for a
/// dead letter keeps Reltio's own large-event form instead (`exceededQueueSizeLimit` and the entity's URI: the
/// consumer fetches the entity), with `eventOmitted` saying what was left out. On a FIFO queue the group is the
/// entity and the deduplication id that of this event and message.
pub fn event_dead_letter(letter: &EventLetter<'_>, fifo: bool) -> OutgoingMessage {
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};
    let event = serde_json::from_str::<Value>(letter.body)
        .unwrap_or_else(|_| Value::String(letter.body.to_owned()));
    let mut body = json!({
        "reason": letter.reason,
        "attempts": letter.attempts,
        "messageId": letter.message_id,
        "eventId": letter.event_id,
        "entityUri": letter.entity_uri,
        "event": event,
    });
    let mut message = OutgoingMessage {
        body: body.to_string(),
        attributes: vec![("eventId".into(), letter.event_id.to_owned())],
        group_id: fifo.then(|| letter.entity_uri.unwrap_or("unknown").to_owned()),
        dedup_id: fifo.then(|| {
            hex::encode(Sha256::digest(
                format!("{}|{}", letter.event_id, letter.message_id).as_bytes(),
            ))
        }),
    };
    if message.size() > DEAD_LETTER_MAX_BYTES {
        body["eventOmitted"] = omitted(
            letter.body.as_bytes(),
            "Reltio: the entity is fetched by its URI when `event` is redriven",
        );
        let whole = OutgoingMessage {
            body: letter.body.to_owned(),
            ..OutgoingMessage::default()
        };
        body["event"] = oversized_stand_in(&whole, DEAD_LETTER_MAX_BYTES)
            .and_then(|m| serde_json::from_str(&m.body).ok())
            .unwrap_or(Value::Null);
        message.body = body.to_string();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn an_oversized_event_becomes_reltios_own_oversized_form_with_its_attributes() {
        let big = json!({"type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": 7,
                         "object": {"uri": "entities/E", "updatedTime": 99, "attributes": {"Notes": "x".repeat(300_000)}}});
        let message = OutgoingMessage {
            body: big.to_string(),
            attributes: vec![("eventId".into(), "e-1".into())],
            group_id: Some("entities/E".into()),
            dedup_id: Some("e-1".into()),
        };
        let small = oversized_stand_in(&message, 256 * 1024).unwrap();
        let body: Value = serde_json::from_str(&small.body).unwrap();
        assert_eq!(
            body,
            json!({"type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/E",
                   "tenantId": "T1", "objectVersion": 7, "updatedTime": 99})
        );
        assert_eq!(
            (small.attributes, small.group_id, small.dedup_id),
            (message.attributes, message.group_id, message.dedup_id)
        );
        // The crm-updater reads it as Reltio's own oversized event.
        let read: crate::reltio::event::ReltioEvent = serde_json::from_str(&small.body).unwrap();
        assert!(read.exceeded_queue_size_limit && read.entity_uri() == Some("entities/E"));
    }

    #[test]
    fn a_message_that_is_no_single_event_has_no_stand_in() {
        let not_event = OutgoingMessage {
            body: "[1,2]".into(),
            ..Default::default()
        };
        assert_eq!(oversized_stand_in(&not_event, 10), None);
        let no_entity = OutgoingMessage {
            body: r#"{"type":"ENTITY_CHANGED"}"#.into(),
            ..Default::default()
        };
        assert_eq!(oversized_stand_in(&no_entity, 1000), None);
        let event = OutgoingMessage {
            body: r#"{"type":"ENTITY_CHANGED","uri":"entities/E"}"#.into(),
            ..Default::default()
        };
        assert_eq!(oversized_stand_in(&event, 10), None, "still too large");
    }
}
