//! The Lambda Kafka event (self-managed Apache Kafka and MSK) as the functions read it: records in partition order,
//! each with its key and value base64-decoded and its headers as bytes (handed to the CDC planner as
//! [`CdcInput`]s borrowing them), and the partial batch response that `aws_lambda_events` does not model yet.
//! The event type is this crate's own, with `aws_lambda_events`' field names and types but one: a record's
//! `timestamp` is the integer milliseconds Lambda sends (`aws_lambda_events` reads it through a float, which
//! can be a millisecond off).

use mdm_sync_domain::cdc::input::{CdcInput, KafkaChange, Position, SourceChange};
use mdm_sync_domain::stream::RecordHeaders;
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// What Lambda invokes a Kafka consumer with: the records by `<topic>-<partition>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaEvent {
    #[serde(default)]
    pub event_source: Option<String>,
    #[serde(default)]
    pub event_source_arn: Option<String>,
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub records: HashMap<String, Vec<KafkaRecord>>,
}

/// One record as the event carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRecord {
    #[serde(default)]
    pub topic: Option<String>,
    pub partition: i64,
    pub offset: i64,
    /// Milliseconds since the epoch, exactly as sent.
    #[serde(deserialize_with = "millis")]
    pub timestamp: i64,
    #[serde(default)]
    pub timestamp_type: Option<String>,
    /// Base64.
    #[serde(default)]
    pub key: Option<String>,
    /// Base64; `None` for a null value (a tombstone).
    #[serde(default)]
    pub value: Option<String>,
    /// Each header an object of one name and its bytes, as Java's signed bytes.
    #[serde(default, deserialize_with = "nullable")]
    pub headers: Vec<BTreeMap<String, Vec<i8>>>,
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An integer as it is; a number with a fraction (never sent, but a float is what `aws_lambda_events` accepts) to
/// the nearest millisecond.
fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Millis;
    impl Visitor<'_> for Millis {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("milliseconds since the epoch")
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(|_| E::custom("timestamp out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<i64, E> {
            if n.is_finite() && n.abs() < 9.2e18 {
                Ok(n.round() as i64)
            } else {
                Err(E::custom("timestamp out of range"))
            }
        }
    }
    d.deserialize_any(Millis)
}

/// One record of the event, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// `<topic>-<partition>`: what the partial batch response names.
    pub partition_id: String,
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    /// Milliseconds since the epoch (the producer's or the broker's time, per `timestamp_type`).
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    /// The value's bytes, `Ok(None)` for a null value; `Err` when the event's base64 is broken.
    pub value: Result<Option<Vec<u8>>, &'static str>,
    pub headers: Headers,
}

/// A record's headers in their order (a name may repeat: the first one counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<u8>)>);

impl RecordHeaders for Headers {
    fn header(&self, name: &str) -> Option<&str> {
        let (_, value) = self.0.iter().find(|(n, _)| n == name)?;
        std::str::from_utf8(value).ok()
    }
}

/// The event's records, partitions in name order and each partition's records by offset, with each record's
/// partition index (its settlement lane: Lambda redelivers a partition from its first reported record on).
pub fn records(event: KafkaEvent) -> (Vec<StreamRecord>, Vec<usize>) {
    let mut partitions: Vec<(String, Vec<KafkaRecord>)> = event.records.into_iter().collect();
    partitions.sort_by(|a, b| a.0.cmp(&b.0));
    let mut records = Vec::new();
    let mut lanes = Vec::new();
    for (lane, (name, mut batch)) in partitions.into_iter().enumerate() {
        batch.sort_by_key(|r| r.offset);
        for r in batch {
            lanes.push(lane);
            records.push(decode(&name, r));
        }
    }
    (records, lanes)
}

impl StreamRecord {
    /// The record as the CDC planner takes it, on settlement lane `lane` (its partition's index in the batch).
    pub fn cdc_input(&self, lane: usize) -> CdcInput<'_> {
        CdcInput {
            change: SourceChange::Kafka(KafkaChange {
                topic: &self.topic,
                key: self.key.as_deref(),
                value: self.value.as_ref().map(Option::as_deref).map_err(|e| *e),
                headers: &self.headers.0,
            }),
            lane,
            position: Position::Offset {
                partition: &self.partition_id,
                offset: self.offset,
            },
        }
    }
}

/// The batch's records (with their lanes, from [`records`]) as the CDC planner takes them, in order.
pub fn cdc_inputs<'a>(records: &'a [StreamRecord], lanes: &[usize]) -> Vec<CdcInput<'a>> {
    records
        .iter()
        .zip(lanes)
        .map(|(record, lane)| record.cdc_input(*lane))
        .collect()
}

fn decode(map_key: &str, r: KafkaRecord) -> StreamRecord {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.trim());
    let topic = r.topic.unwrap_or_else(|| {
        // The map key is `<topic>-<partition>`; a topic name may itself hold dashes.
        map_key
            .rsplit_once('-')
            .map_or(map_key, |(t, _)| t)
            .to_owned()
    });
    let headers = r
        .headers
        .into_iter()
        .flatten()
        .map(|(name, bytes)| (name, bytes.into_iter().map(|b| b as u8).collect()))
        .collect();
    StreamRecord {
        partition_id: format!("{topic}-{}", r.partition),
        value: match r.value.as_deref() {
            None => Ok(None),
            Some(v) => b64(v)
                .map(Some)
                .map_err(|_| "the event's record value is not base64"),
        },
        key: r.key.as_deref().and_then(|k| b64(k).ok()),
        topic,
        partition: r.partition,
        offset: r.offset,
        timestamp_ms: r.timestamp,
        headers: Headers(headers),
    }
}

/// Kafka's partial batch response (Lambda developer guide, "Kafka retry configurations"): per partition, the
/// first record to deliver again. Lambda commits the partition's offsets before it and redelivers from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaEventResponse {
    pub batch_item_failures: Vec<KafkaBatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchItemFailure {
    pub item_identifier: KafkaItemIdentifier,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaItemIdentifier {
    /// `<topic>-<partition>`.
    pub partition: String,
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> KafkaEvent {
        serde_json::from_value(value).unwrap()
    }

    fn record(topic: &str, partition: i64, offset: i64, value: Option<&str>) -> serde_json::Value {
        json!({
            "topic": topic, "partition": partition, "offset": offset,
            "timestamp": 1_700_000_000_123i64, "timestampType": "CREATE_TIME",
            "key": "ZW50aXRpZXMvMQ==", "value": value,
            "headers": [{"objectVersion": [52, 50]}, {"tenantId": [84, 49]}, {"bin": [-1, 0]}]
        })
    }

    #[test]
    fn records_come_in_partition_then_offset_order_with_their_lanes() {
        let (records, lanes) = records(event(json!({
            "eventSource": "SelfManagedKafka",
            "records": {
                "my-topic-1": [record("my-topic", 1, 7, Some("e30=")), record("my-topic", 1, 5, Some("e30="))],
                "my-topic-0": [record("my-topic", 0, 3, None)]
            }
        })));
        let order: Vec<(&str, i64)> = records
            .iter()
            .map(|r| (r.partition_id.as_str(), r.offset))
            .collect();
        assert_eq!(
            order,
            [("my-topic-0", 3), ("my-topic-1", 5), ("my-topic-1", 7)]
        );
        assert_eq!(lanes, [0, 1, 1]);
        assert_eq!(records[0].value, Ok(None));
        assert_eq!(records[1].value, Ok(Some(b"{}".to_vec())));
        assert_eq!(records[1].key.as_deref(), Some(&b"entities/1"[..]));
        assert_eq!(records[1].timestamp_ms, 1_700_000_000_123);
        assert_eq!(records[1].headers.header("objectVersion"), Some("42"));
        assert_eq!(records[1].headers.header("tenantId"), Some("T1"));
        // Signed bytes are the header's bytes: -1 is 0xff, not UTF-8.
        assert_eq!(records[1].headers.0[2], ("bin".to_owned(), vec![0xff, 0]));
        assert_eq!(records[1].headers.header("bin"), None);
    }

    #[test]
    fn broken_base64_is_kept_as_a_reason_not_a_failure_of_the_event() {
        let (records, _) = records(event(json!({
            "records": {"t-0": [record("t", 0, 1, Some("%%%"))]}
        })));
        assert!(records[0].value.is_err());
    }

    #[test]
    fn a_record_without_its_topic_takes_it_from_the_partition_name() {
        let mut r = record("x", 2, 1, None);
        r.as_object_mut().unwrap().remove("topic");
        let (records, _) = records(event(json!({"records": {"a-b-2": [r]}})));
        assert_eq!(records[0].topic, "a-b");
        assert_eq!(records[0].partition_id, "a-b-2");
    }

    #[test]
    fn records_are_cdc_inputs_on_their_partitions_lanes_at_their_offsets() {
        let (records, lanes) = records(event(json!({
            "records": {
                "my-topic-1": [record("my-topic", 1, 7, Some("e30="))],
                "my-topic-0": [record("my-topic", 0, 3, None), record("my-topic", 0, 4, Some("%%%"))]
            }
        })));
        let inputs = cdc_inputs(&records, &lanes);
        let changes: Vec<_> = inputs
            .iter()
            .map(|i| {
                let SourceChange::Kafka(change) = i.change else {
                    panic!("a Kafka record is a Kafka change")
                };
                (i.lane, i.position.to_string(), change.value)
            })
            .collect();
        assert_eq!(
            changes,
            [
                (0, "my-topic-0@3".to_owned(), Ok(None)),
                (
                    0,
                    "my-topic-0@4".to_owned(),
                    Err("the event's record value is not base64")
                ),
                (1, "my-topic-1@7".to_owned(), Ok(Some(&b"{}"[..]))),
            ]
        );
        let SourceChange::Kafka(change) = inputs[2].change else {
            unreachable!()
        };
        assert_eq!(change.topic, "my-topic");
        assert_eq!(change.key, Some(&b"entities/1"[..]));
        assert_eq!(change.header("objectVersion"), Some(b"42".to_vec()));
        assert_eq!(change.header("bin"), Some(vec![0xff, 0]));
        assert_eq!(
            inputs[2].position,
            Position::Offset {
                partition: "my-topic-1",
                offset: 7
            }
        );
    }

    #[test]
    fn the_response_has_lambdas_wire_shape() {
        let response = KafkaEventResponse {
            batch_item_failures: vec![KafkaBatchItemFailure {
                item_identifier: KafkaItemIdentifier {
                    partition: "t-0".into(),
                    offset: 15,
                },
            }],
        };
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 15}}]})
        );
    }
}
