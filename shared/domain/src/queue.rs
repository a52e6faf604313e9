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
