//! Amazon Data Firehose as the analytics sink's [`RecordSink`]: `PutRecordBatch` in calls of at most 500 records
//! and 4 MiB; a record Firehose reports failed (`FailedPutCount`, an `ErrorCode` in its `RequestResponses` entry)
//! is sent again with `retry::batch`'s backoff while the deadline allows, then reported transient: never dropped.

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use futures::future::BoxFuture;
use mdm_sync_domain::ports::{Deadline, PortError, RecordSink};
use std::time::Duration;

use crate::retry::batch::{failed_in_order, send_batch, Resend};
use crate::retry::RetryPolicy;

/// `PutRecordBatch` limits: 500 records and 4 MiB a call (docs/reference.md, Firehose).
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// A failed record is sent again after about 100, 200, then 400 ms while the deadline allows: four attempts in all.
const PUT_RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    cap: Duration::from_millis(400),
    max_attempts: 4,
};

pub struct FirehoseSink {
    client: aws_sdk_firehose::Client,
    stream: String,
}

impl FirehoseSink {
    pub fn new(client: aws_sdk_firehose::Client, stream: impl Into<String>) -> FirehoseSink {
        FirehoseSink {
            client,
            stream: stream.into(),
        }
    }
}

impl RecordSink for FirehoseSink {
    fn put<'a>(
        &'a self,
        records: &'a [Vec<u8>],
        deadline: Deadline,
    ) -> BoxFuture<'a, Vec<Result<(), PortError>>> {
        Box::pin(async move {
            let mut results: Vec<Result<(), PortError>> = vec![Ok(()); records.len()];
            for call in calls(records) {
                for (i, failure) in self.put_call(records, call, deadline).await {
                    results[i] = Err(PortError::Transient(failure));
                }
            }
            results
        })
    }
}

/// Groups record indexes into calls within both limits (a record is at most 1,000 KiB: the domain checks).
fn calls(records: &[Vec<u8>]) -> Vec<Vec<usize>> {
    let mut calls: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        match calls.last_mut() {
            Some(last)
                if last.len() < MAX_RECORDS_PER_CALL && bytes + r.len() <= MAX_BYTES_PER_CALL =>
            {
                last.push(i);
                bytes += r.len();
            }
            _ => {
                calls.push(vec![i]);
                bytes = r.len();
            }
        }
    }
    calls
}

impl FirehoseSink {
    /// One call's records, the failed ones sent again; returns those still failed, with the reason.
    async fn put_call(
        &self,
        records: &[Vec<u8>],
        indexes: Vec<usize>,
        deadline: Deadline,
    ) -> Vec<(usize, String)> {
        let unsent = send_batch(&PUT_RETRY, deadline, Resend::Failed, indexes, |pending| {
            let batch: Vec<Record> = pending
                .iter()
                .map(|&i| {
                    Record::builder()
                        .data(Blob::new(records[i].clone()))
                        .build()
                        .expect("data is set")
                })
                .collect();
            let call = self
                .client
                .put_record_batch()
                .delivery_stream_name(&self.stream)
                .set_records(Some(batch));
            async move {
                let out = call
                    .send()
                    .await
                    .map_err(|e| aws_sdk_firehose::error::DisplayErrorContext(&e).to_string())?;
                if out.failed_put_count() == 0 {
                    return Ok(Vec::new());
                }
                // Entries answer in request order; one with an error code was not written.
                let errors = out.request_responses().iter().map(|r| {
                    r.error_code().map(|code| {
                        format!("{code}: {}", r.error_message().unwrap_or("no message"))
                    })
                });
                Ok(failed_in_order(&pending, errors))
            }
        })
        .await;
        unsent.into_iter().map(|f| (f.index, f.reason)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_keep_within_500_records_and_4_mib() {
        let small = vec![vec![b'x'; 10]; 1201];
        let c = calls(&small);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 201]);
        let big = vec![vec![b'x'; 1000 * 1024]; 9];
        let c = calls(&big);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 1]);
        assert!(calls(&[]).is_empty());
    }
}
