//! The CDC stream for redrives and replays: records read back by shard and sequence number (while within the
//! stream's retention), and records put with their partition keys, failed entries retried.

use crate::error::CliError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use std::cmp::Ordering;
use std::time::Duration;

/// A record as the stream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub sequence_number: String,
}

/// Sequence numbers are decimal strings of up to 56 digits: compared as numbers.
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A stream given by ARN or by name.
fn stream_ref(stream: &str) -> (Option<String>, Option<String>) {
    if stream.starts_with("arn:") {
        (Some(stream.to_owned()), None)
    } else {
        (None, Some(stream.to_owned()))
    }
}

/// The shard's records from `start` through `end` (both sequence numbers included), in order.
pub async fn read_range(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    start: &str,
    end: &str,
) -> Result<Vec<StreamRecord>, CliError> {
    let (arn, name) = stream_ref(stream);
    let mut iterator = kinesis
        .get_shard_iterator()
        .set_stream_arn(arn)
        .set_stream_name(name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(start)
        .send()
        .await
        .map_err(|e| {
            CliError::aws(
                &format!("reading {shard} at {start} (past the stream's retention?)"),
                e,
            )
        })?
        .shard_iterator;
    let mut out = Vec::new();
    while let Some(it) = iterator {
        let page = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(1000)
            .send()
            .await
            .map_err(|e| CliError::aws(&format!("reading {shard}"), e))?;
        let mut past_end = false;
        for r in page.records() {
            if compare_sequence(r.sequence_number(), end) == Ordering::Greater {
                past_end = true;
                break;
            }
            out.push(StreamRecord {
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                data: r.data().as_ref().to_vec(),
                sequence_number: r.sequence_number().to_owned(),
            });
        }
        let caught_up = page.records().is_empty() && page.millis_behind_latest().unwrap_or(0) == 0;
        if past_end || caught_up || out.last().is_some_and(|r| r.sequence_number == end) {
            break;
        }
        iterator = page.next_shard_iterator;
    }
    Ok(out)
}

/// One record, by its shard and sequence number.
pub async fn read_one(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    sequence: &str,
) -> Result<StreamRecord, CliError> {
    read_range(kinesis, stream, shard, sequence, sequence)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            CliError::Failed(format!(
                "{shard} has no record {sequence} any more (past the stream's retention?)"
            ))
        })
}

/// Puts `records` (partition key, data) on the stream, 500 a call, retrying failed entries; returns how many
/// were put (the rest failed after retries, with the last reason).
pub async fn put_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> Result<usize, CliError> {
    let (arn, name) = stream_ref(stream);
    let mut put = 0;
    for chunk in records.chunks(500) {
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        let mut reason = String::new();
        for attempt in 0..4 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
            }
            let entries: Vec<PutRecordsRequestEntry> = pending
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&chunk[i].0)
                        .data(Blob::new(chunk[i].1.clone()))
                        .build()
                        .expect("key and data are set")
                })
                .collect();
            let out = kinesis
                .put_records()
                .set_stream_arn(arn.clone())
                .set_stream_name(name.clone())
                .set_records(Some(entries))
                .send()
                .await;
            match out {
                Ok(out) => {
                    let failed: Vec<usize> = pending
                        .iter()
                        .zip(out.records())
                        .filter(|(_, r)| r.error_code().is_some())
                        .map(|(&i, r)| {
                            reason = r.error_code().unwrap_or_default().to_owned();
                            i
                        })
                        .collect();
                    put += pending.len() - failed.len();
                    pending = failed;
                }
                Err(e) => reason = mdm_sync_adapters::http::error_chain(&e),
            }
            if pending.is_empty() {
                break;
            }
        }
        if !pending.is_empty() {
            return Err(CliError::Failed(format!(
                "{} records could not be put on {stream}: {reason} ({put} were)",
                pending.len()
            )));
        }
    }
    Ok(put)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence("9", "10"), Ordering::Less);
        assert_eq!(
            compare_sequence(
                "49545115243490985018280067714973144582180062593244200961",
                "49545115243490985018280067714973144582180062593244200961"
            ),
            Ordering::Equal
        );
        assert_eq!(compare_sequence("0010", "9"), Ordering::Greater);
    }
}
