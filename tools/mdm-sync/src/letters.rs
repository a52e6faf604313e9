//! What a dead-letter or on-failure message holds, read from its queue's role and its body (pure). The functions'
//! dead letters are read through their one typed format (`mdm_sync_domain::letter::DeadLetter`): the record to put
//! back on the stream or the event to put back on a queue, byte for byte as the letter holds it (or as the letter
//! store holds it, for a payload too large for its letter: `store_io`). Lambda's
//! on-failure records give the shard range or Kafka offsets it gave up on, and a queue's own redrive DLQ the
//! original message itself.

use crate::error::CliError;
use crate::stack;
use mdm_sync_domain::letter::{DeadLetter, Origin, Payload};
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

    /// The role a command line names, or a usage error listing them.
    pub fn named(name: &str) -> Result<Role, CliError> {
        Role::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            CliError::Usage(format!("unknown queue {name}: one of {}", names.join(", ")))
        })
    }
}

/// One message, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Letter {
    /// A function's dead letter, in the one letter format: a Kinesis record (cdc-ingest: back on the stream with
    /// its partition key), a Kafka record (cdc-ingest, stream-consumer: back on its topic, by hand) or a queued
    /// Reltio event (crm-updater, analytics-sink: back on its queue with its event id). [`read`] has checked that
    /// it holds what its queue's redrive needs.
    Dead(Box<DeadLetter>),
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

/// The record a Kinesis dead letter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRecord<'a> {
    pub stream_arn: Option<&'a str>,
    pub partition_key: &'a str,
    /// Where the stream holds it (shard, sequence number): the record is read back from there when the letter
    /// left it out, and a redrive re-puts the later records of its key after it.
    pub position: Option<(&'a str, &'a str)>,
    /// The record's bytes exactly as the letter holds them; `None` when the letter left them out.
    pub data: Option<Vec<u8>>,
}

/// The event a consumer's dead letter puts back on its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedEvent<'a> {
    pub id: &'a str,
    /// The event's text as written (for an event too large for its letter, Reltio's own large-event form, whose
    /// entity the consumer fetches).
    pub text: &'a str,
}

impl Letter {
    /// The reason, for grouping (`dlq list`) and `--filter reason=`.
    pub fn reason(&self) -> &str {
        match self {
            Letter::Dead(d) => &d.reason,
            Letter::KinesisBatch { condition, .. } | Letter::KafkaBatch { condition, .. } => {
                condition
            }
            Letter::Message { .. } => "failed maxReceiveCount times",
            Letter::Unreadable(why) => why,
        }
    }

    pub fn table(&self) -> Option<&str> {
        match self {
            Letter::Dead(d) => d.context.table.as_deref(),
            _ => None,
        }
    }

    /// The entity type of the event a letter holds (read from the event, or the queue contract's attribute).
    pub fn entity_type(&self) -> Option<String> {
        match self {
            Letter::Dead(_) => self.queued_event().and_then(|e| entity_type_of(e.text)),
            Letter::Message { entity_type } => entity_type.clone(),
            _ => None,
        }
    }

    /// The record of a Kinesis dead letter.
    pub fn named_record(&self) -> Option<NamedRecord<'_>> {
        match self {
            Letter::Dead(d) => named_record(d),
            _ => None,
        }
    }

    /// The event of a consumer's dead letter.
    pub fn queued_event(&self) -> Option<QueuedEvent<'_>> {
        match self {
            Letter::Dead(d) => queued_event(d),
            _ => None,
        }
    }
}

fn named_record(d: &DeadLetter) -> Option<NamedRecord<'_>> {
    let Origin::Kinesis {
        stream_arn,
        shard_id,
        sequence_number,
        partition_key,
    } = &d.origin
    else {
        return None;
    };
    Some(NamedRecord {
        stream_arn: stream_arn.as_deref(),
        partition_key,
        position: shard_id
            .as_deref()
            .zip(Some(sequence_number.as_str()).filter(|s| !s.is_empty())),
        data: d.payload.bytes(),
    })
}

fn queued_event(d: &DeadLetter) -> Option<QueuedEvent<'_>> {
    if !matches!(d.origin, Origin::Queue { .. }) {
        return None;
    }
    let text = match &d.payload {
        Payload::Json(raw) => raw.get(),
        // A body that was no JSON: the same text.
        Payload::Text(text) => text,
        Payload::Omitted {
            stand_in: Some(stand_in),
            ..
        } => stand_in.get(),
        _ => return None,
    };
    Some(QueuedEvent {
        id: d.context.event_id.as_deref()?,
        text,
    })
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
            Filter::EntityType(t) => letter.entity_type().as_deref().map(short) == Some(t.as_str()),
        }
    }
}

fn short(t: &str) -> &str {
    t.rsplit('/').next().unwrap_or(t)
}

/// An event's `object.type`.
fn entity_type_of(event: &str) -> Option<String> {
    serde_json::from_str::<Value>(event)
        .ok()?
        .pointer("/object/type")?
        .as_str()
        .map(str::to_owned)
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
    match role {
        Role::Events | Role::AnalyticsQueue => Letter::Message {
            entity_type: attribute("entityType").or_else(|| entity_type_of(body)),
        },
        Role::CdcFailures | Role::StreamFailures => on_failure(body),
        Role::Cdc | Role::Stream | Role::Crm | Role::Analytics => dead(role, body),
    }
}

/// A function's dead letter, checked for what its queue's redrive needs.
fn dead(role: Role, body: &str) -> Letter {
    let d = match DeadLetter::parse(body) {
        Ok(d) => d,
        Err(e) => return Letter::Unreadable(e.to_string()),
    };
    let of_events = matches!(role, Role::Crm | Role::Analytics);
    let problem = match &d.origin {
        Origin::Queue { .. } if !of_events => Some("a dead letter without partitionKey or topic"),
        Origin::Kinesis { .. } | Origin::Kafka { .. } if of_events => {
            Some("a stream record's dead letter, not an event's")
        }
        Origin::Queue { .. } if d.context.event_id.is_none() => {
            Some("a dead letter without eventId")
        }
        // A payload in the letter store is read back from there (`store_io`).
        Origin::Queue { .. } if queued_event(&d).is_none() && d.stored_payload().is_none() => {
            Some("a dead letter without its event")
        }
        Origin::Kinesis { .. }
            if d.stored_payload().is_none()
                && named_record(&d).is_some_and(|r| r.data.is_none() && r.position.is_none()) =>
        {
            Some("a dead letter with neither the record nor where to fetch it")
        }
        _ => None,
    };
    match problem {
        Some(why) => Letter::Unreadable(why.into()),
        None => Letter::Dead(Box::new(d)),
    }
}

/// Lambda's on-failure record of a Kinesis or Kafka mapping.
fn on_failure(body: &str) -> Letter {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Letter::Unreadable("the message is not JSON".into());
    };
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
            _ => Letter::Unreadable("a KinesisBatchInfo without shard and sequence numbers".into()),
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
    Letter::Unreadable("an on-failure record without KinesisBatchInfo or KafkaBatchInfo".into())
}

#[cfg(test)]
mod tests;
