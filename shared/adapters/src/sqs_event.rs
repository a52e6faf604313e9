//! The SQS event as Lambda delivers it to the queue consumers (crm-updater, analytics-sink), reading only the
//! fields they use: the message's id, receipt handle, body, source queue, the two system attributes that matter
//! (`ApproximateReceiveCount`, `AWSTraceHeader`) and the String message attributes. Everything else (MD5s,
//! timestamps, sender, binary and list attributes) is skipped, not allocated: `aws_lambda_events`' `SqsEvent`
//! builds a map per message and per attribute, which cost as much as planning the batch itself. Field names and
//! types are those of `aws_lambda_events`' `SqsMessage`, which this replaces on the hot path; a missing or `null`
//! field reads as absent, as it does there.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records", default, deserialize_with = "nullable")]
    pub records: Vec<SqsMessage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsMessage {
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub receipt_handle: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: SystemAttributes,
    #[serde(default, deserialize_with = "nullable")]
    pub message_attributes: MessageAttributes,
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: Option<String>,
}

/// The system attributes the consumers read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SystemAttributes {
    #[serde(rename = "ApproximateReceiveCount", default)]
    pub approximate_receive_count: Option<String>,
    /// The trace of the invocation that sent the message (X-Ray), when it carried one.
    #[serde(rename = "AWSTraceHeader", default)]
    pub aws_trace_header: Option<String>,
}

/// The message attributes that carry a String value, as (name, value) in the event's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageAttributes(pub Vec<(String, String)>);

impl MessageAttributes {
    /// The attribute's String value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageAttributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AttributesVisitor)
    }
}

struct AttributesVisitor;

impl<'de> Visitor<'de> for AttributesVisitor {
    type Value = MessageAttributes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("SQS message attributes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MessageAttributes, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(6));
        while let Some(name) = map.next_key::<String>()? {
            if let Some(value) = map.next_value::<Attribute>()?.string_value {
                out.push((name, value));
            }
        }
        Ok(MessageAttributes(out))
    }
}

/// One message attribute: only its String value is kept (a Binary attribute has none).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attribute {
    #[serde(default)]
    string_value: Option<String>,
}

/// `null` reads as the default, as `aws_lambda_events` reads it.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> serde_json::Value {
        json!({"Records": [{
            "messageId": "m-1", "receiptHandle": "rh-1", "body": "{\"type\":\"ENTITY_CHANGED\"}",
            "attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000000",
                           "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
                           "SenderId": "AIDA", "ApproximateFirstReceiveTimestamp": "1700000000001"},
            "messageAttributes": {
                "eventId": {"stringValue": "e-1", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
                "objectVersion": {"stringValue": "7", "dataType": "Number"},
                "blob": {"binaryValue": "AAE=", "dataType": "Binary"}
            },
            "md5OfBody": "x", "md5OfMessageAttributes": null, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:1:q.fifo", "awsRegion": "us-east-1"
        }]})
    }

    #[test]
    fn reads_what_aws_lambda_events_reads() {
        let bytes = serde_json::to_vec(&event()).unwrap();
        let ours: SqsEvent = serde_json::from_slice(&bytes).unwrap();
        let theirs: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_slice(&bytes).unwrap();
        let (o, t) = (&ours.records[0], &theirs.records[0]);
        assert_eq!(o.message_id, t.message_id);
        assert_eq!(o.receipt_handle, t.receipt_handle);
        assert_eq!(o.body, t.body);
        assert_eq!(o.event_source_arn, t.event_source_arn);
        assert_eq!(
            o.attributes.approximate_receive_count.as_ref(),
            t.attributes.get("ApproximateReceiveCount")
        );
        assert_eq!(
            o.attributes.aws_trace_header.as_ref(),
            t.attributes.get("AWSTraceHeader")
        );
        for name in ["eventId", "objectVersion", "blob", "absent"] {
            assert_eq!(
                o.message_attributes.get(name),
                t.message_attributes
                    .get(name)
                    .and_then(|a| a.string_value.as_deref()),
                "{name}"
            );
        }
        // From a tree (tests build events that way) as from bytes.
        let from_tree: SqsEvent = serde_json::from_value(event()).unwrap();
        assert_eq!(
            from_tree.records[0].message_attributes,
            o.message_attributes
        );
    }

    #[test]
    fn null_or_missing_parts_read_as_absent() {
        let event: SqsEvent = serde_json::from_value(json!({"Records": [
            {"messageId": "m", "attributes": null, "messageAttributes": null, "body": null},
            {"messageId": "n"}
        ]}))
        .unwrap();
        for m in &event.records {
            assert!(m.body.is_none() && m.message_attributes.0.is_empty());
            assert!(m.attributes.approximate_receive_count.is_none());
        }
        let empty: SqsEvent = serde_json::from_value(json!({"Records": null})).unwrap();
        assert!(empty.records.is_empty());
    }
}
