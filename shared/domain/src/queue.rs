//! Queue messages as the functions hand them on (the event queue, the dead-letter queues), and the port that
//! sends them.

use futures::future::BoxFuture;

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

/// A queue the functions send to (implemented over SQS `SendMessageBatch`; fakes in tests).
pub trait MessageSink: Sync {
    /// Sends every message (retrying what can be retried) and returns those still not sent, by input position.
    fn send<'a>(&'a self, messages: &'a [OutgoingMessage]) -> BoxFuture<'a, Vec<SendFailure>>;

    /// The queue is FIFO: messages need group and deduplication ids.
    fn is_fifo(&self) -> bool;
}
