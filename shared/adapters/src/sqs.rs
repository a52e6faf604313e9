//! SQS for the functions: sending (`SendMessageBatch` in batches of 10, failed entries retried by
//! `retry::batch` within [`SEND_TIME_LIMIT`]; the
//! [`MessageSink`] port over one queue) and retry backoff on a consumed queue (`ChangeMessageVisibilityBatch`;
//! the [`MessageVisibility`] port).

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeNameForSends, MessageSystemAttributeValue, SendMessageBatchRequestEntry,
};
use futures::future::BoxFuture;
use mdm_sync_domain::backoff::{VisibilityChange, VisibilityFailure};
use mdm_sync_domain::ports::{MessageSink, MessageVisibility};
use mdm_sync_domain::queue::{OutgoingMessage, SendFailure};
use std::time::{Duration, Instant};

use crate::retry::batch::{send_batch, EntryFailure, Resend};
use crate::retry::RetryPolicy;

/// SQS takes at most 10 entries per `SendMessageBatch`.
const MAX_ENTRIES: usize = 10;
/// Keep each batch's payload under SQS's default 256 KiB limit.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// `SendMessageBatch` calls in flight at once (a large array body must not open a connection per batch).
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// A failed entry is sent again after about 50, then 100 ms: three attempts in all.
pub(crate) const SEND_RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(50),
    cap: Duration::from_millis(200),
    max_attempts: 3,
};
/// How long the retries of one send may go on. The [`MessageSink`] port takes no deadline: its callers send
/// events within the handler's budget and dead letters in the margin kept before Lambda's deadline (at most 2 s,
/// `retry::work_deadline`), so no retry starts later than this after the send began. What is still unsent comes
/// back to the caller, which retries the record or answers 5xx; the SDK's timeouts bound each call.
pub const SEND_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Sends every message, in batches, retrying entries SQS reports as failed (sender faults aside) and batches whose
/// call failed, with [`SEND_RETRY`]'s backoff within [`SEND_TIME_LIMIT`]. Returns the messages still not sent
/// (empty when all were).
pub async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[OutgoingMessage],
) -> Vec<SendFailure> {
    send_all_traced(
        sqs,
        queue_url,
        messages,
        invocation_trace_header().as_deref(),
    )
    .await
}

/// The invocation's X-Ray trace header: Lambda's runtime client sets `_X_AMZN_TRACE_ID` for each invocation (as
/// the X-Ray SDKs read it). Unset outside Lambda.
pub fn invocation_trace_header() -> Option<String> {
    std::env::var("_X_AMZN_TRACE_ID")
        .ok()
        .filter(|t| !t.trim().is_empty())
}

/// [`send_all`] with the trace header given: every message carries it as the `AWSTraceHeader` system attribute,
/// so that X-Ray joins the consumer's invocation to this one's trace (and the consumer can log it).
pub async fn send_all_traced(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[OutgoingMessage],
    trace: Option<&str>,
) -> Vec<SendFailure> {
    use futures::stream::{self, StreamExt};
    let deadline = Instant::now() + SEND_TIME_LIMIT;
    let results: Vec<Vec<SendFailure>> = stream::iter(chunk(messages))
        .map(|indexes| send_chunk(sqs, queue_url, messages, indexes, trace, deadline))
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
pub(crate) fn chunk(messages: &[OutgoingMessage]) -> Vec<Vec<usize>> {
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
    indexes: Vec<usize>,
    trace: Option<&str>,
    deadline: Instant,
) -> Vec<SendFailure> {
    let unsent = send_batch(&SEND_RETRY, deadline, Resend::Failed, indexes, |pending| {
        let entries: Vec<SendMessageBatchRequestEntry> = pending
            .iter()
            .map(|&i| entry(i, &messages[i], trace))
            .collect();
        let call = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries));
        async move {
            let out = call
                .send()
                .await
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
            // Sender faults (an invalid attribute, too large) fail the same way every time: not retried.
            Ok(out
                .failed
                .iter()
                .filter_map(|f| {
                    EntryFailure::of_entry(&f.id, &f.code, f.message.as_deref(), f.sender_fault)
                })
                .collect())
        }
    })
    .await;
    unsent.into_iter().map(SendFailure::from).collect()
}

fn entry(index: usize, m: &OutgoingMessage, trace: Option<&str>) -> SendMessageBatchRequestEntry {
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
    if let Some(trace) = trace {
        b = b.message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(trace)
                .build()
                .expect("data type is set"),
        );
    }
    b.build().expect("id and body are set")
}

/// How long [`SqsVisibility`] may take in all by default: it runs after the batch is settled, inside the
/// margin kept before Lambda's deadline (`retry::work_deadline`, at most 2 s, shared with dead-lettering). A
/// change not made in time only leaves its message to the queue's own visibility timeout.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);
/// `ChangeMessageVisibilityBatch` calls in flight at once.
const MAX_VISIBILITY_CALLS_IN_FLIGHT: usize = 4;

/// The [`MessageVisibility`] port over SQS `ChangeMessageVisibilityBatch`: batches of 10, one attempt each
/// (beyond the SDK's own retries), everything within one time bound.
#[derive(Clone)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    time_limit: Duration,
}

impl SqsVisibility {
    pub fn new(client: aws_sdk_sqs::Client) -> SqsVisibility {
        SqsVisibility::with_time_limit(client, DEFAULT_VISIBILITY_TIMEOUT)
    }

    /// `time_limit` bounds all the calls of one [`MessageVisibility::change`] together.
    pub fn with_time_limit(client: aws_sdk_sqs::Client, time_limit: Duration) -> SqsVisibility {
        SqsVisibility { client, time_limit }
    }
}

impl MessageVisibility for SqsVisibility {
    fn change<'a>(
        &'a self,
        queue_url: &'a str,
        changes: &'a [VisibilityChange],
    ) -> BoxFuture<'a, Vec<VisibilityFailure>> {
        Box::pin(change_all(
            &self.client,
            queue_url,
            changes,
            tokio::time::Instant::now() + self.time_limit,
        ))
    }
}

async fn change_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    changes: &[VisibilityChange],
    deadline: tokio::time::Instant,
) -> Vec<VisibilityFailure> {
    use futures::stream::{self, StreamExt};
    let indexes: Vec<usize> = (0..changes.len()).collect();
    let chunks: Vec<Vec<usize>> = indexes.chunks(MAX_ENTRIES).map(<[usize]>::to_vec).collect();
    let results: Vec<Vec<VisibilityFailure>> = stream::iter(chunks)
        .map(|chunk| change_chunk_by(sqs, queue_url, changes, chunk, deadline))
        .buffer_unordered(MAX_VISIBILITY_CALLS_IN_FLIGHT)
        .collect()
        .await;
    let mut failures: Vec<VisibilityFailure> = results.into_iter().flatten().collect();
    failures.sort_by_key(|f| f.index);
    failures
}

async fn change_chunk_by(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    changes: &[VisibilityChange],
    chunk: Vec<usize>,
    deadline: tokio::time::Instant,
) -> Vec<VisibilityFailure> {
    match tokio::time::timeout_at(deadline, change_chunk(sqs, queue_url, changes, &chunk)).await {
        Ok(failures) => failures,
        Err(_) => failed(&chunk, "timed out"),
    }
}

fn failed(chunk: &[usize], reason: &str) -> Vec<VisibilityFailure> {
    chunk
        .iter()
        .map(|&index| VisibilityFailure {
            index,
            reason: reason.to_owned(),
        })
        .collect()
}

/// One `ChangeMessageVisibilityBatch` call. Entry ids are input positions. An entry that SQS lists neither as
/// successful nor as failed counts as failed: nothing says its timeout changed.
async fn change_chunk(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    changes: &[VisibilityChange],
    chunk: &[usize],
) -> Vec<VisibilityFailure> {
    let mut entries = Vec::with_capacity(chunk.len());
    for &i in chunk {
        let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(&changes[i].receipt_handle)
            .visibility_timeout(changes[i].seconds.min(i32::MAX as u32) as i32)
            .build();
        match entry {
            Ok(entry) => entries.push(entry),
            Err(_) => return failed(chunk, "invalid request entry"),
        }
    }
    let out = match sqs
        .change_message_visibility_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            // The SDK error names the operation, code and message; it carries no receipt handle.
            return failed(
                chunk,
                &aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            );
        }
    };
    let succeeded: std::collections::HashSet<&str> =
        out.successful.iter().map(|s| s.id.as_str()).collect();
    let mut failures = Vec::new();
    for &i in chunk {
        let id = i.to_string();
        if succeeded.contains(id.as_str()) {
            continue;
        }
        // Only the code: SQS's message for an invalid receipt handle quotes the handle.
        let reason = match out.failed.iter().find(|f| f.id == id) {
            Some(f) if f.sender_fault => format!("{} (sender fault)", f.code),
            Some(f) => f.code.clone(),
            None => "no result for this entry".to_owned(),
        };
        failures.push(VisibilityFailure { index: i, reason });
    }
    failures
}

/// The URL of the queue an SQS event source ARN names (`arn:PARTITION:sqs:REGION:ACCOUNT:NAME` →
/// `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, `.amazonaws.com.cn` in the China partition), or `None` when the
/// ARN is not one, or is in a partition whose domain this does not know (set the URL explicitly there).
/// Emulators such as moto find the queue by the URL's last segment.
pub fn queue_url_from_arn(arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let domain = match partition {
        "aws" | "aws-us-gov" => "amazonaws.com",
        "aws-cn" => "amazonaws.com.cn",
        _ => return None,
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    if !(plain(region) && plain(account) && plain(name)) {
        return None;
    }
    Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_is_derived_from_its_arn() {
        assert_eq!(
            queue_url_from_arn("arn:aws:sqs:eu-west-1:123456789012:stack-events").as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/stack-events")
        );
        assert_eq!(
            queue_url_from_arn("arn:aws:sqs:us-east-1:123456789012:stack-events.fifo").as_deref(),
            Some("https://sqs.us-east-1.amazonaws.com/123456789012/stack-events.fifo")
        );
        assert_eq!(
            queue_url_from_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q").as_deref(),
            Some("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q")
        );
        for bad in [
            "",
            "arn:aws:sqs:us-east-1:123456789012",
            "arn:aws:kinesis:us-east-1:123456789012:stream/s",
            "arn:aws:sqs:us-east-1:123456789012:q:extra",
            "arn:aws:sqs::123456789012:q",
            "arn:aws:sqs:us-east-1:123456789012:a/b",
            "arn:aws-iso:sqs:us-iso-east-1:123456789012:q",
        ] {
            assert_eq!(queue_url_from_arn(bad), None, "{bad}");
        }
    }

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
