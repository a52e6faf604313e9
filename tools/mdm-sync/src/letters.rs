//! What a dead-letter or on-failure message holds, read from its queue's role and its body (pure): the record to
//! put back on the stream, the event to put back on a queue, the shard range or Kafka offsets Lambda gave up on,
//! or (a queue's own redrive DLQ) the original message itself.

use crate::stack;
use base64::Engine;
use serde_json::Value;

/// The dead-letter and failure queues of a stack, by what their messages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// cdc-ingest's dead letters: DMS (Kinesis) or Debezium/GoldenGate/DMS (Kafka) records.
    Cdc,
    /// Lambda's on-failure records of cdc-ingest's Kinesis or Kafka mapping.
    CdcFailures,
    /// The event queue's redrive DLQ: event messages as queued.
    Events,
    /// crm-updater's dead letters: events.
    Crm,
    /// stream-consumer's dead letters: Kafka records that are no Reltio event.
    Stream,
    /// Lambda's on-failure records of stream-consumer's Kafka mapping.
    StreamFailures,
    /// analytics-sink's dead letters: events.
    Analytics,
    /// The analytics queue's redrive DLQ: event messages as queued.
    AnalyticsQueue,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Cdc,
        Role::CdcFailures,
        Role::Events,
        Role::Crm,
        Role::Stream,
        Role::StreamFailures,
        Role::Analytics,
        Role::AnalyticsQueue,
    ];

    /// The name the CLI takes (`mdm-sync dlq show cdc`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Cdc => "cdc",
            Role::CdcFailures => "cdc-failures",
            Role::Events => "events",
            Role::Crm => "crm",
            Role::Stream => "stream",
            Role::StreamFailures => "stream-failures",
            Role::Analytics => "analytics",
            Role::AnalyticsQueue => "analytics-queue",
        }
    }

    /// The stack output naming the queue.
    pub fn output(self) -> &'static str {
        match self {
            Role::Cdc => stack::CDC_DLQ,
            Role::CdcFailures => stack::CDC_FAILURES,
            Role::Events => stack::EVENT_DLQ,
            Role::Crm => stack::CRM_DLQ,
            Role::Stream => stack::STREAM_DLQ,
            Role::StreamFailures => stack::STREAM_FAILURES,
            Role::Analytics => stack::ANALYTICS_DLQ,
            Role::AnalyticsQueue => stack::ANALYTICS_QUEUE_DLQ,
        }
    }

    /// The queue a redriven event goes back to (none for the stream roles).
    pub fn source_queue(self) -> Option<&'static str> {
        match self {
            Role::Events | Role::Crm => Some(stack::EVENT_QUEUE),
            Role::Analytics | Role::AnalyticsQueue => Some(stack::ANALYTICS_QUEUE),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One message, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Letter {
    /// A Kinesis record cdc-ingest could not apply: back on the stream with its partition key. `position` (shard,
    /// sequence number) is where the stream holds it: `record` is read again from there when it was too large for
    /// the letter, and a redrive re-puts the later records of its key after it.
    CdcRecord {
        reason: String,
        table: Option<String>,
        partition_key: String,
        record: Option<Vec<u8>>,
        position: Option<(String, String)>,
        stream_arn: Option<String>,
    },
    /// A Kafka record (cdc-ingest's or stream-consumer's): back on its topic, with its key.
    KafkaRecord {
        reason: String,
        table: Option<String>,
        topic: String,
        partition: i64,
        offset: i64,
    },
    /// A queued Reltio event a consumer dead-lettered: back on its queue, with its event id.
    Event {
        reason: String,
        event_id: String,
        entity_uri: Option<String>,
        entity_type: Option<String>,
        /// The event's JSON text.
        event: String,
    },
    /// Lambda's on-failure record of a Kinesis mapping: the shard's records from `start` to `end`.
    KinesisBatch {
        condition: String,
        stream_arn: Option<String>,
        shard_id: String,
        start: String,
        end: String,
    },
    /// Lambda's on-failure record of a Kafka mapping: per topic-partition, the offsets given up.
    KafkaBatch {
        condition: String,
        ranges: Vec<(String, i64, i64)>,
    },
    /// A redrive DLQ's message: the original, re-sent to its queue as it is.
    Message { entity_type: Option<String> },
    /// A body this CLI cannot read (shown, never redriven).
    Unreadable(String),
}

impl Letter {
    /// The reason, for grouping (`dlq list`) and `--filter reason=`.
    pub fn reason(&self) -> &str {
        match self {
            Letter::CdcRecord { reason, .. }
            | Letter::KafkaRecord { reason, .. }
            | Letter::Event { reason, .. } => reason,
            Letter::KinesisBatch { condition, .. } | Letter::KafkaBatch { condition, .. } => {
                condition
            }
            Letter::Message { .. } => "failed maxReceiveCount times",
            Letter::Unreadable(why) => why,
        }
    }

    pub fn table(&self) -> Option<&str> {
        match self {
            Letter::CdcRecord { table, .. } | Letter::KafkaRecord { table, .. } => table.as_deref(),
            _ => None,
        }
    }

    pub fn entity_type(&self) -> Option<&str> {
        match self {
            Letter::Event { entity_type, .. } | Letter::Message { entity_type } => {
                entity_type.as_deref()
            }
            _ => None,
        }
    }
}

/// `--filter KEY=VALUE`: `reason` (a case-insensitive part of it), `table` (`schema.table`), `entity-type`
/// (`Individual` or the full type URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Reason(String),
    Table(String),
    EntityType(String),
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| format!("--filter {text}: expected KEY=VALUE"))?;
        let v = v.trim().to_owned();
        match k.trim() {
            "reason" => Ok(Filter::Reason(v.to_lowercase())),
            "table" => Ok(Filter::Table(v)),
            "entity-type" => Ok(Filter::EntityType(short(&v).to_owned())),
            other => Err(format!(
                "--filter {other}: expected reason, table or entity-type"
            )),
        }
    }

    pub fn matches(&self, letter: &Letter) -> bool {
        match self {
            Filter::Reason(part) => letter.reason().to_lowercase().contains(part),
            Filter::Table(t) => letter.table() == Some(t.as_str()),
            Filter::EntityType(t) => letter.entity_type().map(short) == Some(t.as_str()),
        }
    }
}

fn short(t: &str) -> &str {
    t.rsplit('/').next().unwrap_or(t)
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a message of a queue of `role`. `attribute` gives its message attributes (a redrive DLQ's message keeps
/// the event queue's `entityType`).
pub fn read(role: Role, body: &str, attribute: impl Fn(&str) -> Option<String>) -> Letter {
    if matches!(role, Role::Events | Role::AnalyticsQueue) {
        let entity_type = attribute("entityType").or_else(|| {
            serde_json::from_str::<Value>(body).ok().and_then(|v| {
                v.pointer("/object/type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        });
        return Letter::Message { entity_type };
    }
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Letter::Unreadable("the message is not JSON".into());
    };
    let reason = text(&v, "reason").unwrap_or_default();
    match role {
        Role::Cdc | Role::Stream => {
            if let Some(topic) = text(&v, "topic") {
                return match (
                    v.get("partition").and_then(Value::as_i64),
                    v.get("offset").and_then(Value::as_i64),
                ) {
                    (Some(partition), Some(offset)) => Letter::KafkaRecord {
                        reason,
                        table: text(&v, "table"),
                        topic,
                        partition,
                        offset,
                    },
                    _ => Letter::Unreadable(
                        "a Kafka dead letter without partition and offset".into(),
                    ),
                };
            }
            let Some(partition_key) = text(&v, "partitionKey") else {
                return Letter::Unreadable("a dead letter without partitionKey".into());
            };
            let record = match (v.get("record"), text(&v, "recordBase64")) {
                (Some(r), _) => Some(r.to_string().into_bytes()),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
                (None, None) => None,
            };
            // cdc-ingest names the shard when it leaves the record out; Lambda's event id is `shardId-...:seq`.
            let shard = text(&v, "shardId").or_else(|| {
                text(&v, "eventId").and_then(|id| id.split_once(':').map(|(s, _)| s.to_owned()))
            });
            let position = shard.zip(text(&v, "sequenceNumber"));
            if record.is_none() && position.is_none() {
                return Letter::Unreadable(
                    "a dead letter with neither the record nor where to fetch it".into(),
                );
            }
            Letter::CdcRecord {
                reason,
                table: text(&v, "table"),
                partition_key,
                record,
                position,
                stream_arn: text(&v, "eventSourceArn"),
            }
        }
        Role::CdcFailures | Role::StreamFailures => {
            let condition = v
                .pointer("/requestContext/condition")
                .and_then(Value::as_str)
                .unwrap_or("on-failure")
                .to_owned();
            if let Some(info) = v.get("KinesisBatchInfo") {
                return match (
                    text(info, "shardId"),
                    text(info, "startSequenceNumber"),
                    text(info, "endSequenceNumber"),
                ) {
                    (Some(shard_id), Some(start), Some(end)) => Letter::KinesisBatch {
                        condition,
                        stream_arn: text(info, "streamArn"),
                        shard_id,
                        start,
                        end,
                    },
                    _ => Letter::Unreadable(
                        "a KinesisBatchInfo without shard and sequence numbers".into(),
                    ),
                };
            }
            if let Some(info) = v
                .pointer("/KafkaBatchInfo/recordsInfo")
                .and_then(Value::as_object)
            {
                let offset = |r: &Value, k: &str| text(r, k).and_then(|o| o.parse::<i64>().ok());
                let ranges: Vec<(String, i64, i64)> = info
                    .iter()
                    .filter_map(|(tp, r)| {
                        Some((
                            tp.clone(),
                            offset(r, "firstRecordOffset")?,
                            offset(r, "lastRecordOffset")?,
                        ))
                    })
                    .collect();
                return Letter::KafkaBatch { condition, ranges };
            }
            Letter::Unreadable(
                "an on-failure record without KinesisBatchInfo or KafkaBatchInfo".into(),
            )
        }
        Role::Crm | Role::Analytics => {
            let Some(event_id) = text(&v, "eventId") else {
                return Letter::Unreadable("a dead letter without eventId".into());
            };
            let event = match v.get("event") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => {
                    return Letter::Unreadable("a dead letter without its event".into());
                }
                Some(e) => e.to_string(),
            };
            let entity_type = serde_json::from_str::<Value>(&event).ok().and_then(|e| {
                e.pointer("/object/type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            Letter::Event {
                reason,
                event_id,
                entity_uri: text(&v, "entityUri"),
                entity_type,
                event,
            }
        }
        Role::Events | Role::AnalyticsQueue => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_cdc_dead_letter_gives_its_record_and_partition_key() {
        let body = json!({"function": "cdc-ingest", "reason": "table public.customer: key column id is missing",
            "table": "public.customer", "partitionKey": "public.customer.46", "sequenceNumber": "495",
            "eventSourceArn": "arn:aws:kinesis:us-east-1:1:stream/s", "eventId": "shardId-000000000001:495",
            "record": {"data": {"id": 46}}});
        let letter = read(Role::Cdc, &body.to_string(), none);
        assert_eq!(
            letter,
            Letter::CdcRecord {
                reason: "table public.customer: key column id is missing".into(),
                table: Some("public.customer".into()),
                partition_key: "public.customer.46".into(),
                record: Some(br#"{"data":{"id":46}}"#.to_vec()),
                position: Some(("shardId-000000000001".into(), "495".into())),
                stream_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()),
            }
        );
        let raw =
            json!({"reason": "not JSON", "partitionKey": "k", "recordBase64": "bm90IGpzb24="});
        assert!(matches!(read(Role::Cdc, &raw.to_string(), none),
            Letter::CdcRecord { record: Some(r), position: None, .. } if r == b"not json"));
        let omitted = json!({"reason": "r", "partitionKey": "k", "shardId": "shardId-0", "sequenceNumber": "77",
                             "recordOmitted": {"bytes": 1}});
        assert!(matches!(read(Role::Cdc, &omitted.to_string(), none),
            Letter::CdcRecord { record: None, position: Some((s, n)), .. } if s == "shardId-0" && n == "77"));
        assert!(matches!(
            read(Role::Cdc, "{\"reason\": \"r\"}", none),
            Letter::Unreadable(_)
        ));
    }

    #[test]
    fn kafka_dead_letters_and_on_failure_records_name_their_offsets() {
        let poison = json!({"function": "stream-consumer", "reason": "not JSON", "topic": "t", "partition": 2, "offset": 41});
        assert!(matches!(
            read(Role::Stream, &poison.to_string(), none),
            Letter::KafkaRecord {
                partition: 2,
                offset: 41,
                ..
            }
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
    fn consumer_dead_letters_give_the_event_and_filters_select_them() {
        let letter = json!({"reason": "FIELD_CUSTOM_VALIDATION_EXCEPTION on FirstName", "eventId": "e1",
            "entityUri": "entities/A", "attempts": 1,
            "event": {"type": "ENTITY_CHANGED", "object": {"uri": "entities/A", "type": "configuration/entityTypes/Individual"}}});
        let read_letter = read(Role::Crm, &letter.to_string(), none);
        let Letter::Event {
            ref event_id,
            ref event,
            ..
        } = read_letter
        else {
            panic!("{read_letter:?}")
        };
        assert_eq!(event_id, "e1");
        assert_eq!(
            serde_json::from_str::<Value>(event).unwrap()["object"]["uri"],
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
        assert!(
            matches!(read(Role::Analytics, &raw.to_string(), none), Letter::Event { ref event, .. } if event == "not json")
        );
        // A redrive DLQ's message is the original: its type from the queue contract's attribute.
        let m = read(Role::Events, "whatever", |n| {
            (n == "entityType").then(|| "Individual".to_owned())
        });
        assert!(Filter::parse("entity-type=Individual").unwrap().matches(&m));
    }
}
