//! Payloads too large for their dead letters, kept in the stack's letter store (an S3 bucket), the pattern of
//! AWS's SQS Extended Client (docs/reference.md): the payload is written as an object and the letter carries a
//! pointer to it, with its size and SHA-256, so that what was received is never lost, however large, and can be
//! read back and checked a week later (the store keeps objects longer than the dead-letter queues keep messages).
//!
//! An object's key is `<function>/<yyyy>/<mm>/<dd>/<SHA-256 of the payload>` (the day the letter was written):
//! one payload is one object, however often it is stored, and the store's put-only grants are per function
//! prefix.

use super::{DeadLetter, Payload, Pointer};
use crate::queue::DEAD_LETTER_MAX_BYTES;
use sha2::{Digest, Sha256};

/// A payload as it is written to the letter store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadObject {
    /// `<function>/<yyyy>/<mm>/<dd>/<sha256>`.
    pub key: String,
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes` (the letter's pointer names it; the store may check the upload against it).
    pub sha256: String,
    /// `application/json`, `text/plain; charset=utf-8` or `application/octet-stream`, by what the payload is.
    pub content_type: &'static str,
}

/// Why a letter's payload could not be restored from what the letter store gave back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredPayloadError {
    #[error("the letter's payload is not in the letter store")]
    NotStored,
    #[error("the stored payload has {got} bytes where the letter says {expected}")]
    Size { expected: usize, got: usize },
    #[error("the stored payload's SHA-256 is not the one the letter names")]
    Sha256,
}

impl Pointer {
    /// The letter store's bucket and key, when the payload was stored there.
    pub fn stored(&self) -> Option<(&str, &str)> {
        self.bucket.as_deref().zip(self.key.as_deref())
    }
}

impl DeadLetter {
    /// The payload as an object for the letter store, keyed by the letter's function, the day it failed and the
    /// payload's hash; `None` when the letter holds no bytes of its own (empty, or already a pointer).
    pub fn payload_object(&self) -> Option<PayloadObject> {
        let bytes = self.payload.bytes()?;
        let content_type = match &self.payload {
            Payload::Json(_) => "application/json",
            Payload::Text(_) => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let day = self
            .failed_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(chrono::Utc::now);
        Some(PayloadObject {
            key: format!("{}/{}/{sha256}", self.function, day.format("%Y/%m/%d")),
            bytes,
            sha256,
            content_type,
        })
    }

    /// The same letter with its payload replaced by a pointer to `object` in the letter store's `bucket`; a queued
    /// event keeps Reltio's large-event form of itself as well, when it fits, so that a redrive without access
    /// to the store still works as it did.
    pub fn with_payload_stored(&self, bucket: &str, object: &PayloadObject) -> DeadLetter {
        self.with_payload(Payload::Omitted {
            pointer: Pointer {
                bytes: object.bytes.len(),
                sha256: object.sha256.clone(),
                bucket: Some(bucket.to_owned()),
                key: Some(object.key.clone()),
                fetch: None,
                reason: Some(format!(
                    "too large for a dead letter ({DEAD_LETTER_MAX_BYTES} bytes at most): kept in the \
                     letter store"
                )),
            },
            stand_in: self.stand_in(),
        })
    }

    /// The letter with the payload its pointer names put back, once `bytes` (read from the letter store) are
    /// checked against the pointer's size and SHA-256: a payload that does not match is an error, never
    /// redriven.
    pub fn restored(&self, bytes: &[u8]) -> Result<DeadLetter, StoredPayloadError> {
        let Payload::Omitted { pointer, .. } = &self.payload else {
            return Err(StoredPayloadError::NotStored);
        };
        if pointer.stored().is_none() {
            return Err(StoredPayloadError::NotStored);
        }
        if bytes.len() != pointer.bytes {
            return Err(StoredPayloadError::Size {
                expected: pointer.bytes,
                got: bytes.len(),
            });
        }
        if !hex::encode(Sha256::digest(bytes)).eq_ignore_ascii_case(&pointer.sha256) {
            return Err(StoredPayloadError::Sha256);
        }
        Ok(self.with_payload(Payload::of(bytes)))
    }

    /// The letter store's bucket and key of the letter's payload, when it was stored there.
    pub fn stored_payload(&self) -> Option<(&str, &str)> {
        match &self.payload {
            Payload::Omitted { pointer, .. } => pointer.stored(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letter::{LetterContext, Origin};
    use serde_json::{json, Value};

    fn queued(body: &str) -> DeadLetter {
        DeadLetter {
            function: "crm-updater".into(),
            reason: "not a Reltio event".into(),
            attempts: Some(1),
            failed_at: Some("2026-12-07T23:59:59-02:00".into()),
            origin: Origin::Queue {
                message_id: "m-1".into(),
            },
            context: LetterContext {
                event_id: Some("e-1".into()),
                ..LetterContext::default()
            },
            payload: Payload::of(body.as_bytes()),
        }
    }

    #[test]
    fn a_payload_is_keyed_by_function_day_and_hash_and_typed_by_what_it_is() {
        let body = format!(
            "{{\"type\":\"ENTITY_CHANGED\",\"x\":\"{}\"",
            "y".repeat(900 * 1024)
        );
        let letter = queued(&body);
        let object = letter.payload_object().unwrap();
        assert_eq!(object.bytes, body.as_bytes(), "the message body exactly");
        assert_eq!(object.sha256, hex::encode(Sha256::digest(body.as_bytes())));
        // The day in UTC: 23:59:59 at -02:00 is the next day.
        assert_eq!(
            object.key,
            format!("crm-updater/2026/12/08/{}", object.sha256)
        );
        assert_eq!(
            object.content_type, "text/plain; charset=utf-8",
            "no JSON: it is cut off"
        );
        assert_eq!(
            queued("{}").payload_object().unwrap().content_type,
            "application/json"
        );
        let stored = letter.with_payload_stored("letters", &object);
        assert_eq!(
            stored.payload_object(),
            None,
            "a pointer has no bytes to store"
        );
    }

    #[test]
    fn a_stored_payload_is_a_pointer_with_bucket_key_size_and_hash_and_reads_back() {
        let event = json!({"type": "ENTITY_CHANGED", "objectVersion": 7,
            "object": {"uri": "entities/A", "attributes": {"Notes": "y".repeat(900_000)}}})
        .to_string();
        let letter = queued(&event);
        assert!(!letter.fits(false));
        let object = letter.payload_object().unwrap();
        let stored = letter.with_payload_stored("mdm-sync-letters", &object);
        assert!(stored.fits(false));
        let m = stored.to_message(false);
        let v: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(
            v["eventOmitted"],
            json!({"bytes": event.len(), "sha256": object.sha256, "bucket": "mdm-sync-letters",
                   "key": object.key,
                   "reason": "too large for a dead letter (262144 bytes at most): kept in the letter store"})
        );
        // Reltio's large-event form stays in `event`, for a redrive without the store.
        assert_eq!(v["event"]["exceededQueueSizeLimit"], true);

        // Read back: the same pointer, and the original once the object's bytes are checked.
        let read = DeadLetter::parse(&m.body).unwrap();
        assert_eq!(
            read.stored_payload(),
            Some(("mdm-sync-letters", object.key.as_str()))
        );
        let restored = read.restored(event.as_bytes()).unwrap();
        assert_eq!(restored.payload.bytes().unwrap(), event.as_bytes());
        assert_eq!(restored, letter);
    }

    #[test]
    fn a_stored_payload_that_does_not_match_its_pointer_is_refused() {
        let letter = queued(&"z".repeat(300_000));
        let object = letter.payload_object().unwrap();
        let stored = letter.with_payload_stored("b", &object);
        assert_eq!(
            stored.restored(&object.bytes[1..]),
            Err(StoredPayloadError::Size {
                expected: 300_000,
                got: 299_999
            })
        );
        let mut altered = object.bytes.clone();
        altered[10] = b'y';
        assert_eq!(stored.restored(&altered), Err(StoredPayloadError::Sha256));
        assert!(stored.restored(&object.bytes).is_ok());
        // A pointer into the source, or a letter that holds its payload, is not the store's.
        let left_out = letter.with_payload_left_out();
        assert_eq!(left_out.stored_payload(), None);
        assert_eq!(
            left_out.restored(&object.bytes),
            Err(StoredPayloadError::NotStored)
        );
        assert_eq!(
            letter.restored(&object.bytes),
            Err(StoredPayloadError::NotStored)
        );
    }

    #[test]
    fn a_stored_pointer_is_kept_when_the_letter_still_does_not_fit() {
        let letter = DeadLetter {
            reason: "r".repeat(300_000),
            ..queued(&json!({"type": "ENTITY_CHANGED", "uri": "entities/A"}).to_string())
        };
        let stored = letter.with_payload_stored("b", &letter.payload_object().unwrap());
        let read = DeadLetter::parse(&stored.to_message(false).body).unwrap();
        assert!(read.stored_payload().is_some());
        assert!(matches!(
            read.payload,
            Payload::Omitted { stand_in: None, .. }
        ));
    }
}
