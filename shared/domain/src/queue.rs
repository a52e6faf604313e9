//! Queue messages as the functions hand them on (the event queue, the dead-letter queues), and the port that
//! sends them.

/// One queue message as a consumer of the event queue reads it (crm-updater, analytics-sink, and every consumer to
/// come): its body and the attributes of the event queue's contract (docs/contract.md), which the SQS source
/// adapter reads from the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
    /// The `eventId`, `tenantId`, `sourceObjectUri` and `objectVersion` message attributes, when set.
    pub event_id: Option<String>,
    pub tenant_id: Option<String>,
    pub source_object_uri: Option<String>,
    pub object_version: Option<String>,
    /// SQS's `ApproximateReceiveCount` (1 when missing or unreadable).
    pub receive_count: u32,
    /// The trace of the invocation that sent the message (SQS's `AWSTraceHeader`), for the hand-over log line.
    pub trace: Option<String>,
}

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
