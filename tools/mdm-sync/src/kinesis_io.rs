//! The CDC stream for redrives and replays: records read back by shard and sequence number (while within the
//! stream's retention), the records a letter names, and records put with their partition keys in order, failed
//! entries retried.

use crate::error::CliError;
use crate::letters::Letter;
use crate::stack::{self, Stack};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use mdm_sync_adapters::retry::batch::{failed_in_order, send_batch, Resend};
use mdm_sync_adapters::retry::RetryPolicy;
use std::cmp::Ordering;
use std::time::{Duration, Instant};

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

/// PutRecords takes at most 500 records a call.
const MAX_RECORDS_PER_CALL: usize = 500;
/// A call's failed records are put again after about 0.4, 0.8, 1.6, then 3.2 s: five attempts of the record
/// that holds the rest back.
const PUT_RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(400),
    cap: Duration::from_millis(3200),
    max_attempts: 5,
};
/// How long the retries of one call's records may go on (the CLI has no invocation deadline; the waits above
/// come to about 6 s, the SDK's timeouts bound each call).
const PUT_TIME_LIMIT: Duration = Duration::from_secs(60);

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
    for (n, chunk) in records.chunks(MAX_RECORDS_PER_CALL).enumerate() {
        let deadline = Instant::now() + PUT_TIME_LIMIT;
        let positions = (0..chunk.len()).collect();
        let unsent = send_batch(
            &PUT_RETRY,
            deadline,
            Resend::FromFirstFailure,
            positions,
            |pending| {
                let entries: Vec<PutRecordsRequestEntry> = pending
                    .iter()
                    .map(|&i| {
                        let (key, data) = &chunk[i];
                        PutRecordsRequestEntry::builder()
                            .partition_key(key)
                            .data(Blob::new(data.clone()))
                            .build()
                            .expect("key and data are set")
                    })
                    .collect();
                let call = kinesis
                    .put_records()
                    .set_stream_arn(arn.clone())
                    .set_stream_name(name.clone())
                    .set_records(Some(entries));
                async move {
                    let out = call
                        .send()
                        .await
                        .map_err(|e| mdm_sync_adapters::http::error_chain(&e))?;
                    let errors = out
                        .records()
                        .iter()
                        .map(|r| r.error_code().map(str::to_owned));
                    Ok(failed_in_order(&pending, errors))
                }
            },
        )
        .await;
        if let Some(first) = unsent.first() {
            let put = n * MAX_RECORDS_PER_CALL + first.index;
            return Err(CliError::Failed(format!(
                "{} records could not be put on {stream}: {} ({put} were, in order)",
                records.len() - put,
                first.reason
            )));
        }
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wiremock Kinesis whose `PutRecords` fails the entry of key `bad` (throughput exceeded) the first time
    /// it is sent, and takes the rest.
    async fn kinesis(bad: &'static str) -> wiremock::MockServer {
        use wiremock::matchers::{header, method};
        use wiremock::{Mock, MockServer, Request, ResponseTemplate};
        let server = MockServer::start().await;
        let failed_once = std::sync::atomic::AtomicBool::new(false);
        let respond = move |request: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let mut failed = 0;
            let answers: Vec<serde_json::Value> = body["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    if r["PartitionKey"] == bad
                        && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst)
                    {
                        failed += 1;
                        serde_json::json!({"ErrorCode": "ProvisionedThroughputExceededException",
                                           "ErrorMessage": "Rate exceeded for shard shardId-000000000000"})
                    } else {
                        serde_json::json!({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
                    }
                })
                .collect();
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(serde_json::json!({"FailedRecordCount": failed, "Records": answers}))
        };
        Mock::given(method("POST"))
            .and(header("x-amz-target", "Kinesis_20131202.PutRecords"))
            .respond_with(respond)
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn a_put_is_repeated_from_its_first_failed_record_on_so_each_key_keeps_its_order() {
        let server = kinesis("k2").await;
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(server.uri())
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let records: Vec<(String, Vec<u8>)> = ["k1", "k2", "k1", "k3"]
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), vec![b'0' + i as u8]))
            .collect();
        let put = put_records(&aws_sdk_kinesis::Client::new(&config), "dms-cdc", &records)
            .await
            .unwrap();
        assert_eq!(put, 4);
        let keys: Vec<Vec<String>> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                body["Records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["PartitionKey"].as_str().unwrap().to_owned())
                    .collect()
            })
            .collect();
        // The second k1 landed before the failed k2: it is put again after it.
        assert_eq!(
            keys,
            vec![vec!["k1", "k2", "k1", "k3"], vec!["k2", "k1", "k3"]]
        );
    }

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
