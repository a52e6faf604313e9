//! SNS for the functions that hand Reltio's events on (webhook-receiver, stream-consumer): the event topic as a
//! [`MessageSink`], so that each event is published once and every consumer (crm-updater, analytics-sink, an ERP
//! sync) reads its own subscription queue. `PublishBatch` in batches of 10 within 256 KiB, failed entries retried,
//! the queue contract's attributes as SNS message attributes (raw message delivery turns them back into SQS
//! message attributes), FIFO group and deduplication ids on a FIFO topic. An event over SNS's 256 KiB is published
//! as Reltio publishes its own oversized events ([`oversized_stand_in`]): the consumers fetch the entity.

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use futures::future::BoxFuture;
use mdm_sync_domain::ports::MessageSink;
use mdm_sync_domain::queue::{oversized_stand_in, OutgoingMessage, SendFailure};
use std::time::Duration;

/// SNS's largest message (body and attributes): 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// `PublishBatch` calls in flight at once.
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Attempts per entry (the first one included) before it is reported as not sent.
const ATTEMPTS: u32 = 3;

/// One SNS topic as a [`MessageSink`] (FIFO when its ARN ends in `.fifo`).
#[derive(Clone)]
pub struct SnsTopic {
    client: aws_sdk_sns::Client,
    arn: String,
}

impl SnsTopic {
    pub fn new(client: aws_sdk_sns::Client, arn: impl Into<String>) -> SnsTopic {
        SnsTopic {
            client,
            arn: arn.into(),
        }
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }
}

impl MessageSink for SnsTopic {
    fn send<'a>(&'a self, messages: &'a [OutgoingMessage]) -> BoxFuture<'a, Vec<SendFailure>> {
        Box::pin(publish_all(&self.client, &self.arn, messages))
    }

    fn is_fifo(&self) -> bool {
        self.arn.ends_with(".fifo")
    }
}

/// The sink of [`EventDestination`](crate::config::EventDestination): the topic, or the queue.
pub fn event_sink(
    destination: &crate::config::EventDestination,
    sdk: &aws_config::SdkConfig,
) -> std::sync::Arc<dyn MessageSink + Send + Sync> {
    use crate::config::EventDestination;
    match destination {
        EventDestination::Topic(arn) => {
            std::sync::Arc::new(SnsTopic::new(aws_sdk_sns::Client::new(sdk), arn))
        }
        EventDestination::Queue(url) => std::sync::Arc::new(crate::sqs::SqsQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            url,
        )),
    }
}

/// Publishes every message, in batches, retrying entries SNS reports as failed and batches whose call failed.
/// Returns the messages still not published (empty when all were).
pub async fn publish_all(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    messages: &[OutgoingMessage],
) -> Vec<SendFailure> {
    use futures::stream::{self, StreamExt};
    // Events over SNS's limit go as their oversized form; one that has none cannot be published at all.
    let mut failures = Vec::new();
    let mut fitted: Vec<OutgoingMessage> = Vec::with_capacity(messages.len());
    let mut positions = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if m.size() <= MAX_MESSAGE_BYTES {
            fitted.push(m.clone());
            positions.push(i);
        } else if let Some(stand_in) = oversized_stand_in(m, MAX_MESSAGE_BYTES) {
            tracing::info!(
                bytes = m.size(),
                "event over SNS's 256 KiB: published as an oversized event"
            );
            fitted.push(stand_in);
            positions.push(i);
        } else {
            failures.push(SendFailure {
                index: i,
                reason: format!("{} bytes, over SNS's {MAX_MESSAGE_BYTES}", m.size()),
            });
        }
    }
    let results: Vec<Vec<SendFailure>> = stream::iter(crate::sqs::chunk(&fitted))
        .map(|indexes| publish_chunk(sns, topic_arn, &fitted, indexes))
        .buffer_unordered(MAX_BATCHES_IN_FLIGHT)
        .collect()
        .await;
    failures.extend(results.into_iter().flatten().map(|f| SendFailure {
        index: positions[f.index],
        reason: f.reason,
    }));
    failures.sort_by_key(|f| f.index);
    failures
}

async fn publish_chunk(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    messages: &[OutgoingMessage],
    mut pending: Vec<usize>,
) -> Vec<SendFailure> {
    let mut reasons: Vec<(usize, String)> = Vec::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt - 2))).await;
        }
        let entries: Vec<PublishBatchRequestEntry> =
            pending.iter().map(|&i| entry(i, &messages[i])).collect();
        match sns
            .publish_batch()
            .topic_arn(topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                reasons = out
                    .failed()
                    .iter()
                    .filter_map(|f| {
                        let index = f.id().parse::<usize>().ok()?;
                        let reason =
                            format!("{}: {}", f.code(), f.message().unwrap_or("no message"));
                        Some((index, reason))
                    })
                    .collect();
                // Sender faults (an invalid attribute, say) fail the same way every time.
                if out.failed().iter().all(|f| f.sender_fault()) {
                    break;
                }
            }
            Err(e) => {
                let reason = aws_sdk_sns::error::DisplayErrorContext(&e).to_string();
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

fn entry(index: usize, m: &OutgoingMessage) -> PublishBatchRequestEntry {
    let mut b = PublishBatchRequestEntry::builder()
        .id(index.to_string())
        .message(&m.body)
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
    b.build().expect("id and message are set")
}
