//! The CDC stream for redrives and replays: records read back by shard and sequence number (while within the
//! stream's retention), the records a letter names, and records put with their partition keys in order, failed
//! entries retried.

use crate::error::CliError;
use crate::letters::Letter;
use crate::stack::{self, Stack};
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

/// A stream given by ARN or by name, as the (name, ARN) pair the Kinesis calls take. An ARN is passed as its
/// name: the stack's stream is in the caller's account, and emulators (moto) only read `StreamName`.
fn stream_ref(stream: &str) -> (Option<String>, Option<String>) {
    match stream
        .strip_prefix("arn:")
        .and_then(|_| stream.rsplit_once(":stream/"))
    {
        Some((_, name)) => (None, Some(name.to_owned())),
        None if stream.starts_with("arn:") => (Some(stream.to_owned()), None),
        None => (None, Some(stream.to_owned())),
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
    read_from(kinesis, stream, shard, start, Some(end)).await
}

/// The shard's records from `start` (included) through `end`, or to the shard's tip as it is now (`None`).
pub async fn read_from(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    start: &str,
    end: Option<&str>,
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
            if end.is_some_and(|e| compare_sequence(r.sequence_number(), e) == Ordering::Greater) {
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
        let at_end = end.is_some_and(|e| out.last().is_some_and(|r| r.sequence_number == e));
        if past_end || caught_up || at_end {
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

/// The stream a letter's records are on: `--stream`, else the letter's, else the stack's.
fn stream_of(
    letter_stream: Option<&str>,
    args_stream: Option<&str>,
    stack: &Stack,
) -> Result<String, CliError> {
    args_stream
        .or(letter_stream)
        .or(stack.get(stack::CDC_STREAM))
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Config(
                "no CDC stream: give --stream, --stack or --set CdcStreamArn=ARN".into(),
            )
        })
}

/// The records a letter names, with the stream and shard they are on (`""` for a record whose letter names no
/// position); `None` for what this CLI cannot put back on the stream (Kafka, events, unreadable). A dead letter's
/// record is the bytes the letter holds, exactly, else read back from its position; an on-failure record's are
/// read from its shard range.
pub async fn named_records(
    letter: &Letter,
    stack: &Stack,
    kinesis: &aws_sdk_kinesis::Client,
    stream_arg: Option<&str>,
) -> Result<Option<(String, String, Vec<StreamRecord>)>, CliError> {
    if let Letter::KinesisBatch {
        stream_arn,
        shard_id,
        start,
        end,
        ..
    } = letter
    {
        let stream = stream_of(stream_arn.as_deref(), stream_arg, stack)?;
        let records = read_range(kinesis, &stream, shard_id, start, end).await?;
        return Ok(Some((stream, shard_id.clone(), records)));
    }
    let Some(named) = letter.named_record() else {
        return Ok(None);
    };
    let stream = stream_of(named.stream_arn, stream_arg, stack)?;
    let (shard, sequence_number) = named.position.unwrap_or_default();
    let data = match (named.data, named.position) {
        (Some(data), _) => data,
        (None, Some((shard, seq))) => read_one(kinesis, &stream, shard, seq).await?.data,
        (None, None) => {
            return Err(CliError::Failed(
                "the letter holds neither its record nor where to read it".into(),
            ))
        }
    };
    let record = StreamRecord {
        partition_key: named.partition_key.to_owned(),
        data,
        sequence_number: sequence_number.to_owned(),
    };
    Ok(Some((stream, shard.to_owned(), vec![record])))
}

/// Puts `records` (partition key, data) on the stream in their order, 500 a call; returns how many were put.
/// PutRecords goes on past a failed entry, so a record of the same key after it would land first: the call is
/// repeated from the first failed entry on (what had landed after it lands again, after it), so that each key's
/// records end in their given order. Duplicates are what the functions' at-least-once handling absorbs anyway.
pub async fn put_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> Result<usize, CliError> {
    let (arn, name) = stream_ref(stream);
    let mut next = 0;
    let mut attempt = 0;
    let mut reason = String::new();
    while next < records.len() {
        let chunk = &records[next..(next + 500).min(records.len())];
        let entries: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
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
        let landed = match out {
            Ok(out) => match out.records().iter().position(|r| r.error_code().is_some()) {
                Some(i) => {
                    reason = out.records()[i].error_code().unwrap_or_default().to_owned();
                    i
                }
                None => chunk.len(),
            },
            Err(e) => {
                reason = mdm_sync_adapters::http::error_chain(&e);
                0
            }
        };
        next += landed;
        if landed == chunk.len() {
            attempt = 0;
            continue;
        }
        attempt = if landed > 0 { 1 } else { attempt + 1 };
        if attempt > 4 {
            return Err(CliError::Failed(format!(
                "{} records could not be put on {stream}: {reason} ({next} were, in order)",
                records.len() - next
            )));
        }
        tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_arn_is_called_by_its_name() {
        assert_eq!(
            stream_ref("arn:aws:kinesis:eu-west-1:123456789012:stream/dms-cdc"),
            (None, Some("dms-cdc".to_owned()))
        );
        assert_eq!(stream_ref("dms-cdc"), (None, Some("dms-cdc".to_owned())));
    }

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
