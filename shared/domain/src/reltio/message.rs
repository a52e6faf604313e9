//! A queue message as Reltio's stream sends it, read the same way by every consumer of the event queue: the body
//! in either of Reltio's destination formats (`JSON`, or `JSON_ZIP_BASE64`: UTF-8 JSON gzipped, then base64), one
//! event or (undocumented, read all the same) a JSON array of them, in any payload type (`SNAPSHOT`,
//! `SNAPSHOT_WITH_DELTA`, `DELTAS`, `skipPayload`; docs/reference.md, "Reltio streaming to SQS/SNS"). The events
//! the webhook receiver and stream-consumer enqueue are plain JSON, one per message, and read the same way.
//!
//! An event's id, tenant, entity and version come from the message attributes when the message holds one event
//! (Reltio's headers, and our receivers' attributes), else from the event's body, else (the id) the hex SHA-256 of
//! the event's JSON.

use crate::queue::Delivery;
use crate::stream::{payload_json, RecordError};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The most a zipped body may unzip to: well above the 1 MiB a queue message holds (JSON compresses about 10×),
/// so that no real event is refused, and a bound on what a hostile body can cost.
pub const MAX_UNZIPPED_BYTES: usize = 16 * 1024 * 1024;

/// One Reltio event of a queue message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuedEvent {
    pub message_id: String,
    /// The event's JSON (unzipped).
    pub json: String,
    pub event_id: String,
    /// The message attributes Reltio sends as headers, when the message holds one event.
    pub tenant_id: Option<String>,
    pub source_object_uri: Option<String>,
    pub object_version: Option<String>,
    /// The trace of the invocation that sent the message.
    pub trace: Option<String>,
}

/// Why a message holds no readable event (permanent: the same body fails the same way again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("not a Reltio event: {0}")]
    Payload(#[from] RecordError),
    #[error("not a Reltio event: the unzipped body is not UTF-8 text")]
    NotText,
    #[error("not a Reltio event: the array is not JSON (line {line}, column {column})")]
    NotArray { line: usize, column: usize },
}

/// The events of a message, in the message's order (an empty array gives none).
pub fn queued_events(delivery: Delivery) -> Result<Vec<QueuedEvent>, MessageError> {
    let Delivery {
        message_id,
        body,
        event_id,
        tenant_id,
        source_object_uri,
        object_version,
        trace,
        ..
    } = delivery;
    // A plain JSON body (the usual case) moves on without a copy; a zipped one is unzipped.
    let json = match payload_json(body.as_bytes(), MAX_UNZIPPED_BYTES) {
        Ok(std::borrow::Cow::Borrowed(_)) => body,
        Ok(std::borrow::Cow::Owned(bytes)) => {
            String::from_utf8(bytes).map_err(|_| MessageError::NotText)?
        }
        // Not JSON and not a payload either: the event parser names the fault.
        Err(RecordError::NotEncoded(_)) | Err(RecordError::NoValue) => body,
        Err(e) => return Err(e.into()),
    };
    let hash = |text: &str| hex::encode(Sha256::digest(text.as_bytes()));
    if !json
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('[')
    {
        // One event: the attributes are its own. Without an eventId attribute the id is the hash of the event's JSON
        // (unzipped, so the same event streamed in both formats has one id) and of Reltio's headers naming its
        // object and version: a skipPayload body (`type` and `ovChanged` only) or a DELTAS body reverting an earlier
        // change would otherwise look like another event of the same text.
        let event_id = event_id.unwrap_or_else(|| match (&source_object_uri, &object_version) {
            (None, None) => hash(&json),
            (uri, version) => hash(&format!(
                "{json}\n{}\n{}",
                uri.as_deref().unwrap_or(""),
                version.as_deref().unwrap_or("")
            )),
        });
        return Ok(vec![QueuedEvent {
            message_id,
            json,
            event_id,
            tenant_id,
            source_object_uri,
            object_version,
            trace,
        }]);
    }
    let events: Vec<Box<RawValue>> =
        serde_json::from_str(&json).map_err(|e| MessageError::NotArray {
            line: e.line(),
            column: e.column(),
        })?;
    // Several events: the message's attributes name none of them in particular (an event id given for the
    // message would make its events duplicates of each other), so each is read from its own body.
    let single = events.len() == 1;
    Ok(events
        .into_iter()
        .map(|raw| {
            let json = raw.get().to_owned();
            QueuedEvent {
                message_id: message_id.clone(),
                event_id: match (&event_id, single) {
                    (Some(id), true) => id.clone(),
                    _ => hash(&json),
                },
                tenant_id: tenant_id.clone().filter(|_| single),
                source_object_uri: source_object_uri.clone().filter(|_| single),
                object_version: object_version.clone().filter(|_| single),
                trace: trace.clone(),
                json,
            }
        })
        .collect())
}

/// The items of a batch of messages, flattened (the planners work per event), with the message each came from;
/// `regroup` puts them back per message.
pub struct Unpacked<T> {
    pub items: Vec<T>,
    pub owners: Vec<usize>,
    /// Per message, why it held no readable event (dead-lettered as it is).
    pub unreadable: Vec<Option<MessageError>>,
}

/// Reads every message's events and makes an item of each with `decode`.
pub fn unpack<T>(
    deliveries: Vec<Delivery>,
    mut decode: impl FnMut(QueuedEvent) -> T,
) -> Unpacked<T> {
    let mut unpacked = Unpacked {
        items: Vec::with_capacity(deliveries.len()),
        owners: Vec::with_capacity(deliveries.len()),
        unreadable: Vec::with_capacity(deliveries.len()),
    };
    for (m, delivery) in deliveries.into_iter().enumerate() {
        match queued_events(delivery) {
            Ok(events) => {
                unpacked.unreadable.push(None);
                for event in events {
                    unpacked.owners.push(m);
                    unpacked.items.push(decode(event));
                }
            }
            Err(e) => unpacked.unreadable.push(Some(e)),
        }
    }
    unpacked
}

/// One message's events once applied.
#[derive(Debug)]
pub struct MessageItems<T> {
    pub events: Vec<T>,
    pub unreadable: Option<MessageError>,
}

impl<T> Unpacked<T> {
    /// The items back per message, in message order.
    pub fn regroup(self) -> Vec<MessageItems<T>> {
        let mut messages: Vec<MessageItems<T>> = self
            .unreadable
            .into_iter()
            .map(|unreadable| MessageItems {
                events: Vec::new(),
                unreadable,
            })
            .collect();
        for (item, owner) in self.items.into_iter().zip(self.owners) {
            messages[owner].events.push(item);
        }
        messages
    }
}

impl<T> MessageItems<T> {
    /// How the message ended, its events' outcomes combined (`Outcome::combine`): an unreadable message is
    /// permanent, one with no event is skipped as empty.
    pub fn outcome(&self, of: impl Fn(&T) -> crate::outcome::Outcome) -> crate::outcome::Outcome {
        use crate::outcome::{Outcome, SkipReason};
        if let Some(e) = &self.unreadable {
            return Outcome::Permanent(e.to_string());
        }
        let mut events = self.events.iter().map(of);
        let Some(first) = events.next() else {
            return Outcome::Skipped(SkipReason::Empty);
        };
        events.fold(first, Outcome::combine)
    }
}

#[cfg(test)]
mod tests;
