//! SQS sending shared by the functions: `SendMessageBatch` in batches of 10, failed entries retried; the
//! [`MessageSink`] port over one queue.

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use futures::future::BoxFuture;
pub use mdm_sync_domain::queue::{MessageSink, OutgoingMessage, SendFailure};
use std::time::Duration;

/// SQS takes at most 10 entries per `SendMessageBatch`.
const MAX_ENTRIES: usize = 10;
/// Keep each batch's payload under SQS's default 256 KiB limit.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// `SendMessageBatch` calls in flight at once (a large array body must not open a connection per batch).
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Attempts per entry (the first one included) before it is reported as not sent.
const ATTEMPTS: u32 = 3;

/// Sends every message, in batches, retrying entries SQS reports as failed and batches whose call failed.
/// Returns the messages still not sent (empty when all were).
pub async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[OutgoingMessage],
) -> Vec<SendFailure> {
    use futures::stream::{self, StreamExt};
    let results: Vec<Vec<SendFailure>> = stream::iter(chunk(messages))
        .map(|indexes| send_chunk(sqs, queue_url, messages, indexes))
        .buffer_unordered(MAX_BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let mut failures: Vec<SendFailure> = results.into_iter().flatten().collect();
    failures.sort_by_key(|f| f.index);
    failures
}

/// One SQS queue as a [`MessageSink`] (FIFO when its URL ends in `.fifo`).
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl MessageSink for SqsQueue {
    fn send<'a>(&'a self, messages: &'a [OutgoingMessage]) -> BoxFuture<'a, Vec<SendFailure>> {
        Box::pin(send_all(&self.client, &self.url, messages))
    }

    fn is_fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }
}

/// Groups message indexes into batches of at most 10 entries and `MAX_BATCH_BYTES`.
fn chunk(messages: &[OutgoingMessage]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let size = m.body.len()
            + m.attributes
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        match chunks.last_mut() {
            Some(last) if last.len() < MAX_ENTRIES && bytes + size <= MAX_BATCH_BYTES => {
                last.push(i);
                bytes += size;
            }
            _ => {
                chunks.push(vec![i]);
                bytes = size;
            }
        }
    }
    chunks
}

async fn send_chunk(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[OutgoingMessage],
    mut pending: Vec<usize>,
) -> Vec<SendFailure> {
    let mut reasons: Vec<(usize, String)> = Vec::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt - 2))).await;
        }
        let entries: Vec<SendMessageBatchRequestEntry> =
            pending.iter().map(|&i| entry(i, &messages[i])).collect();
        match sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                reasons = out
                    .failed
                    .iter()
                    .filter_map(|f| {
                        let index = f.id.parse::<usize>().ok()?;
                        let reason = format!(
                            "{}: {}",
                            f.code,
                            f.message.as_deref().unwrap_or("no message")
                        );
                        Some((index, reason))
                    })
                    .collect();
                // Sender faults (invalid attribute, too large) fail the same way every time.
                if out.failed.iter().all(|f| f.sender_fault) {
                    break;
                }
            }
            Err(e) => {
                let reason = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                reasons = pending.iter().map(|&i| (i, reason.clone())).collect();
            }
        }
        pending = reasons.iter().map(|(i, _)| *i).collect();
        if pending.is_empty() {
            break;
        }
    }
    reasons
        .into_iter()
        .map(|(index, reason)| SendFailure { index, reason })
        .collect()
}

fn entry(index: usize, m: &OutgoingMessage) -> SendMessageBatchRequestEntry {
    let mut b = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(&m.body)
        .set_message_group_id(m.group_id.clone())
        .set_message_deduplication_id(m.dedup_id.clone());
    for (name, value) in &m.attributes {
        b = b.message_attributes(
            name,
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type is set"),
        );
    }
    b.build().expect("id and body are set")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(size: usize) -> OutgoingMessage {
        OutgoingMessage {
            body: "x".repeat(size),
            ..Default::default()
        }
    }

    #[test]
    fn batches_hold_at_most_ten_messages() {
        let messages: Vec<_> = (0..25).map(|_| message(10)).collect();
        let sizes: Vec<usize> = chunk(&messages).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
    }

    #[test]
    fn batches_stay_under_the_payload_limit() {
        let messages: Vec<_> = (0..4).map(|_| message(100 * 1024)).collect();
        let chunks = chunk(&messages);
        assert_eq!(chunks, vec![vec![0, 1], vec![2, 3]]);
    }
}
