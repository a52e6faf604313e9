//! The Kinesis event as Lambda delivers it to cdc-ingest, reading only the fields the function uses: the
//! record's data is base64-decoded straight from the event's bytes (no copy of the text first), and the
//! per-record fields nothing reads (region, event name, schema version, ...) are skipped, not allocated.
//! Field names are those of `aws_lambda_events`' `KinesisEvent`, which this replaces on the hot path. Each record
//! is handed to the CDC planner as a [`CdcInput`] borrowing its data.

use mdm_sync_domain::cdc::input::{CdcInput, Position, SourceChange};
use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KinesisEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<KinesisEventRecord>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KinesisEventRecord {
    #[serde(rename = "eventID", default)]
    pub event_id: Option<String>,
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: Option<String>,
    pub kinesis: KinesisRecord,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisRecord {
    /// Where Lambda checkpoints on a partial batch response.
    #[serde(default)]
    pub sequence_number: String,
    #[serde(default)]
    pub partition_key: String,
    /// The record's bytes (the event carries them base64-encoded). Missing: empty, which no decoder accepts, so
    /// the record is dead-lettered rather than the batch failing.
    #[serde(default, deserialize_with = "base64_bytes")]
    pub data: Vec<u8>,
}

impl KinesisEventRecord {
    /// The record as the CDC planner takes it: its data is a DMS record, its position its sequence number; a
    /// batch is one shard, so one lane.
    pub fn cdc_input(&self) -> CdcInput<'_> {
        CdcInput {
            change: SourceChange::Dms(&self.kinesis.data),
            lane: 0,
            position: Position::Sequence(&self.kinesis.sequence_number),
        }
    }
}

/// The batch's records as the CDC planner takes them, in order.
pub fn cdc_inputs(records: &[KinesisEventRecord]) -> Vec<CdcInput<'_>> {
    records.iter().map(KinesisEventRecord::cdc_input).collect()
}

fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    // As bytes: serde_json hands over the string's raw (unescaped) bytes without validating them as UTF-8, which
    // base64 text cannot need; the SIMD decoder then checks every byte anyway.
    d.deserialize_bytes(Base64Visitor)
}

struct Base64Visitor;

impl Base64Visitor {
    fn decode<E: serde::de::Error>(text: &[u8]) -> Result<Vec<u8>, E> {
        base64_simd::STANDARD
            .decode_to_vec(text)
            .map_err(|_| E::custom("invalid base64"))
    }
}

impl Visitor<'_> for Base64Visitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("base64 text")
    }

    fn visit_bytes<E: serde::de::Error>(self, text: &[u8]) -> Result<Vec<u8>, E> {
        Self::decode(text)
    }

    /// From a `serde_json::Value` (tests build events as trees).
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        Self::decode(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> serde_json::Value {
        json!({"Records": [{
            "eventID": "shardId-000000000000:4959", "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
            "eventSource": "aws:kinesis", "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "public.customer.1",
                        "sequenceNumber": "4959", "data": "eyJhIjoxfQ==",
                        "approximateArrivalTimestamp": 1_700_000_000.5}
        }]})
    }

    #[test]
    fn reads_what_aws_lambda_events_reads() {
        let bytes = serde_json::to_vec(&event()).unwrap();
        let ours: KinesisEvent = serde_json::from_slice(&bytes).unwrap();
        let theirs: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_slice(&bytes).unwrap();
        let (o, t) = (&ours.records[0], &theirs.records[0]);
        assert_eq!(o.kinesis.data, t.kinesis.data.to_vec());
        assert_eq!(o.kinesis.data, br#"{"a":1}"#);
        assert_eq!(o.kinesis.sequence_number, t.kinesis.sequence_number);
        assert_eq!(o.kinesis.partition_key, t.kinesis.partition_key);
        assert_eq!(o.event_id, t.event_id);
        assert_eq!(o.event_source_arn, t.event_source_arn);
        // From a tree (tests build events that way) as from bytes; an escaped slash is still base64.
        let from_tree: KinesisEvent = serde_json::from_value(event()).unwrap();
        assert_eq!(from_tree.records[0].kinesis.data, o.kinesis.data);
        let escaped: KinesisEvent = serde_json::from_slice(
            br#"{"Records":[{"kinesis":{"sequenceNumber":"1","partitionKey":"k","data":"\/w=="}}]}"#,
        )
        .unwrap();
        assert_eq!(escaped.records[0].kinesis.data, [0xff]);
    }

    #[test]
    fn invalid_base64_is_an_error_and_missing_data_is_empty() {
        let bad =
            br#"{"Records":[{"kinesis":{"sequenceNumber":"1","partitionKey":"k","data":"@@"}}]}"#;
        assert!(serde_json::from_slice::<KinesisEvent>(bad).is_err());
        let none = br#"{"Records":[{"kinesis":{"sequenceNumber":"1"}}]}"#;
        let event: KinesisEvent = serde_json::from_slice(none).unwrap();
        assert!(event.records[0].kinesis.data.is_empty());
    }

    #[test]
    fn a_record_is_a_dms_change_on_one_lane_at_its_sequence_number() {
        let event: KinesisEvent = serde_json::from_value(event()).unwrap();
        let inputs = cdc_inputs(&event.records);
        assert_eq!(
            inputs,
            [CdcInput {
                change: SourceChange::Dms(br#"{"a":1}"#),
                lane: 0,
                position: Position::Sequence("4959"),
            }]
        );
        // Borrowed, not copied: the planner reads the event's own bytes.
        let SourceChange::Dms(data) = inputs[0].change else {
            unreachable!()
        };
        assert!(std::ptr::eq(data, event.records[0].kinesis.data.as_slice()));
        assert_eq!(inputs[0].position.to_string(), "4959");
    }
}
