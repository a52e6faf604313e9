//! The dead-letter queues for `dlq list`, `show` and `redrive`: messages received (held for a while, or peeked
//! and released at once), read as letters, deleted, and messages sent back to their queues.

use crate::error::CliError;
use crate::letters::{read, Letter, Role};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use mdm_sync_adapters::sqs::SqsQueue;
use mdm_sync_domain::ports::MessageSink;
use mdm_sync_domain::queue::OutgoingMessage;
use std::collections::{BTreeMap, HashSet};

/// Up to `n` (at most 10) messages, each hidden for `visibility` seconds.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    visibility: i32,
    n: usize,
) -> Result<Vec<Message>, CliError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(n.clamp(1, 10) as i32)
        .visibility_timeout(visibility)
        .wait_time_seconds(0)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| CliError::aws(&format!("receiving from {url}"), e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Messages now on the queue, up to `max`, each received once and released at once (visible again).
pub async fn peek(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: usize,
) -> Result<Vec<Message>, CliError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while out.len() < max {
        let got = receive(sqs, url, 30, (max - out.len()).min(10)).await?;
        let mut fresh = Vec::new();
        for m in got {
            if seen.insert(id(&m).to_owned()) {
                fresh.push(m);
            } else {
                // Received again (its 30 s ran out): this receipt is the one that hides it now.
                release(sqs, url, &m).await;
            }
        }
        if fresh.is_empty() {
            break;
        }
        out.extend(fresh);
    }
    for m in &out {
        release(sqs, url, m).await;
    }
    Ok(out)
}

/// Makes a message visible again at once.
pub async fn release(sqs: &aws_sdk_sqs::Client, url: &str, m: &Message) {
    if let Some(handle) = m.receipt_handle() {
        let _ = sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
}

/// Deletes a received message; the error says why it was not.
pub async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, m: &Message) -> Result<(), String> {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(m.receipt_handle().unwrap_or_default())
        .send()
        .await
        .map(drop)
        .map_err(|e| mdm_sync_adapters::http::error_chain(&e))
}

/// Sends one message to `queue` (its attributes and FIFO ids as given).
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    message: OutgoingMessage,
) -> Result<(), CliError> {
    let failures = SqsQueue::new(sqs.clone(), queue).send(&[message]).await;
    match failures.first() {
        None => Ok(()),
        Some(f) => Err(CliError::Failed(format!(
            "sending to {queue}: {}",
            f.reason
        ))),
    }
}

/// Messages on the queue, visible or held.
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, CliError> {
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| CliError::aws(&format!("reading {url}"), e))?
        .attributes
        .unwrap_or_default();
    let n = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
        + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

pub fn id(m: &Message) -> &str {
    m.message_id().unwrap_or_default()
}

/// A message attribute's string value.
pub fn attribute(m: &Message, name: &str) -> Option<String> {
    m.message_attributes()?
        .get(name)?
        .string_value()
        .map(str::to_owned)
}

/// Every message attribute with a string value.
pub fn attributes(m: &Message) -> BTreeMap<String, String> {
    m.message_attributes()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
        .collect()
}

pub fn system(m: &Message, name: MessageSystemAttributeName) -> Option<String> {
    m.attributes()?.get(&name).cloned()
}

/// The message read as a letter of a queue of `role`.
pub fn letter(role: Role, m: &Message) -> Letter {
    read(role, m.body().unwrap_or_default(), |n| attribute(m, n))
}
