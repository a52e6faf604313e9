//! SNS for the functions that hand Reltio's events on (webhook-receiver, stream-consumer): the event topic as a
//! [`MessageSink`], so that each event is published once and every consumer (crm-updater, analytics-sink, an ERP
//! sync) reads its own subscription queue. `PublishBatch` in batches of 10 within 256 KiB, failed entries retried
//! as the queue's are, the queue contract's attributes as SNS message attributes (raw message delivery turns them
//! back into SQS message attributes), FIFO group and deduplication ids on a FIFO topic. An event over SNS's 256 KiB
//! is published as Reltio publishes its own oversized events ([`oversized_stand_in`]): the consumers fetch the
//! entity.

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use futures::future::BoxFuture;
use mdm_sync_domain::ports::MessageSink;
use mdm_sync_domain::queue::{oversized_stand_in, OutgoingMessage, SendFailure};
use std::time::Instant;

use crate::retry::batch::{send_batch, EntryFailure, Resend};
use crate::sqs::{SEND_RETRY, SEND_TIME_LIMIT};

/// SNS's largest message (body and attributes): 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// `PublishBatch` calls in flight at once.
const MAX_BATCHES_IN_FLIGHT: usize = 4;

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

/// Publishes every message, in batches, retrying entries SNS reports as failed (sender faults aside) and batches
/// whose call failed, as the queue does (`sqs::SEND_RETRY` within `sqs::SEND_TIME_LIMIT`). Returns the messages
/// still not published (empty when all were).
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
    let deadline = Instant::now() + SEND_TIME_LIMIT;
    let results: Vec<Vec<SendFailure>> = stream::iter(crate::sqs::chunk(&fitted))
        .map(|indexes| publish_chunk(sns, topic_arn, &fitted, indexes, deadline))
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
    indexes: Vec<usize>,
    deadline: Instant,
) -> Vec<SendFailure> {
    let unsent = send_batch(&SEND_RETRY, deadline, Resend::Failed, indexes, |pending| {
        let entries: Vec<PublishBatchRequestEntry> =
            pending.iter().map(|&i| entry(i, &messages[i])).collect();
        let call = sns
            .publish_batch()
            .topic_arn(topic_arn)
            .set_publish_batch_request_entries(Some(entries));
        async move {
            let out = call
                .send()
                .await
                .map_err(|e| aws_sdk_sns::error::DisplayErrorContext(&e).to_string())?;
            // Sender faults (an invalid attribute, say) fail the same way every time: not retried.
            Ok(out
                .failed()
                .iter()
                .filter_map(|f| {
                    EntryFailure::of_entry(f.id(), f.code(), f.message(), f.sender_fault())
                })
                .collect())
        }
    })
    .await;
    unsent.into_iter().map(SendFailure::from).collect()
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
