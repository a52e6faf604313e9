//! The event sources the batch runner takes (`runner::Source`), one small adapter each: how Lambda's event splits
//! into records and in what order they settle, what the domain reads of a record, where a record is for its
//! dead letter, and the partial batch response.

use crate::kafka::{
    self, KafkaBatchItemFailure, KafkaEvent, KafkaEventResponse, KafkaItemIdentifier, StreamRecord,
};
use crate::kinesis::{KinesisEvent, KinesisEventRecord};
use crate::metrics::Metrics;
use crate::runner::{Sequencing, Source};
use crate::sqs::queue_url_from_arn;
use crate::sqs_event::{SqsEvent, SqsMessage};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use mdm_sync_domain::backoff::{retry_delays, Backoff, VisibilityChange};
use mdm_sync_domain::cdc::input::CdcInput;
use mdm_sync_domain::letter::{Origin, Payload};
use mdm_sync_domain::ports::MessageVisibility;
use mdm_sync_domain::queue::Delivery;
use mdm_sync_domain::settle::Settlement;
use std::collections::BTreeMap;

/// An SQS queue (standard: every message on its own; FIFO, its ARN ending in `.fifo`: one sequence). The domain
/// reads each message as a [`Delivery`] of the event queue's contract.
pub struct Sqs;

impl Source for Sqs {
    type Event = SqsEvent;
    type Record = SqsMessage;
    type Input<'r> = Delivery;
    type Response = SqsBatchResponse;

    fn split(event: SqsEvent) -> (Vec<SqsMessage>, Sequencing) {
        let sequencing = sqs_sequencing(&event.records);
        (event.records, sequencing)
    }

    fn inputs(messages: &[SqsMessage], _: &Sequencing) -> Vec<Delivery> {
        messages.iter().map(delivery).collect()
    }

    fn position(m: &SqsMessage) -> String {
        format!("message {}", m.message_id.as_deref().unwrap_or("?"))
    }

    fn letter(m: &SqsMessage) -> (Origin, Payload, Option<u32>) {
        let origin = Origin::Queue {
            message_id: m.message_id.clone().unwrap_or_default(),
        };
        let payload = Payload::of(m.body.as_deref().unwrap_or_default().as_bytes());
        (origin, payload, Some(receive_count(m)))
    }

    /// The message id of every message to deliver again (on FIFO, the first failed one and all after it).
    fn response(settlement: &Settlement, messages: &[SqsMessage]) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for &i in &settlement.retry {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = messages[i].message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
        response
    }
}

/// A message as a [`Delivery`]: its body and the event queue contract's attributes.
pub fn delivery(m: &SqsMessage) -> Delivery {
    let attribute = |name: &str| {
        m.message_attributes
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Delivery {
        message_id: m.message_id.clone().unwrap_or_default(),
        body: m.body.clone().unwrap_or_default(),
        event_id: attribute("eventId"),
        tenant_id: attribute("tenantId"),
        source_object_uri: attribute("sourceObjectUri"),
        object_version: attribute("objectVersion"),
        receive_count: receive_count(m),
        trace: m.attributes.aws_trace_header.clone(),
    }
}

/// The ordering rule of an SQS batch: FIFO (its queue ARN ends in `.fifo`) is a sequence.
pub fn sqs_sequencing(messages: &[SqsMessage]) -> Sequencing {
    let fifo = messages
        .first()
        .and_then(|m| m.event_source_arn.as_deref())
        .is_some_and(|arn| arn.ends_with(".fifo"));
    if fifo {
        Sequencing::Sequence
    } else {
        Sequencing::Independent
    }
}

/// A consumed queue's retry backoff: every message reported for another delivery gets a visibility timeout from
/// the backoff on its receive count, so that a transient failure is retried within seconds instead of after the
/// queue's whole visibility timeout (on FIFO the reported followers too: their group is released only when all of
/// them are visible). Best effort, after the batch is settled: a change not made is logged and counted
/// (`RetryBackoffSet`, `RetryBackoffFailed`), and its message waits the queue's own timeout.
pub struct QueueBackoff<'a> {
    pub visibility: &'a dyn MessageVisibility,
    pub backoff: Backoff,
    /// The queue's URL; unset, it is derived from each message's `eventSourceARN`.
    pub queue_url: Option<&'a str>,
}

impl QueueBackoff<'_> {
    pub async fn apply(
        &self,
        messages: &[SqsMessage],
        settlement: &Settlement,
        metrics: &mut Metrics,
    ) {
        let counts: Vec<u32> = messages.iter().map(receive_count).collect();
        let sequencing = sqs_sequencing(messages);
        let delays = retry_delays(settlement, sequencing.ordering(), &counts, self.backoff);
        if delays.is_empty() {
            return;
        }
        let (mut changed, mut failed) = (0, 0);
        let mut by_queue: BTreeMap<String, Vec<(usize, VisibilityChange)>> = BTreeMap::new();
        for d in delays {
            let m = &messages[d.index];
            let url = self
                .queue_url
                .map(str::to_owned)
                .or_else(|| m.event_source_arn.as_deref().and_then(queue_url_from_arn));
            let handle = m.receipt_handle.as_deref().filter(|h| !h.is_empty());
            match (url, handle) {
                (Some(url), Some(handle)) => by_queue.entry(url).or_default().push((
                    d.index,
                    VisibilityChange {
                        receipt_handle: handle.to_owned(),
                        seconds: d.seconds,
                    },
                )),
                (url, _) => {
                    failed += 1;
                    let reason = if url.is_none() {
                        "no queue URL: the event source ARN is not an SQS queue's (set the queue URL)"
                    } else {
                        "the message has no receipt handle"
                    };
                    tracing::warn!(record = %Sqs::position(m), reason, "retry backoff not set");
                }
            }
        }
        for (url, entries) in by_queue {
            let (indexes, changes): (Vec<usize>, Vec<VisibilityChange>) =
                entries.into_iter().unzip();
            let failures = self.visibility.change(&url, &changes).await;
            for f in &failures {
                if let Some(m) = indexes.get(f.index).map(|&i| &messages[i]) {
                    tracing::warn!(
                        record = %Sqs::position(m),
                        reason = %f.reason,
                        "retry backoff not set: the message waits the queue's visibility timeout"
                    );
                }
            }
            let not_changed = failures.len().min(changes.len());
            failed += not_changed;
            changed += changes.len() - not_changed;
        }
        metrics.count("RetryBackoffSet", changed as u64);
        metrics.count("RetryBackoffFailed", failed as u64);
    }
}

/// SQS's `ApproximateReceiveCount` (1 when missing or unreadable).
pub fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes
        .approximate_receive_count
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// A Kafka event source (self-managed or MSK): records in partition order, each partition its own sequence. The
/// domain reads each record as it is, with its partition's lane.
pub struct Kafka;

/// A Kafka record and its settlement lane (its partition's index in the batch).
#[derive(Debug, Clone, Copy)]
pub struct KafkaInput<'r> {
    pub record: &'r StreamRecord,
    pub lane: usize,
}

impl<'r> KafkaInput<'r> {
    /// The record as the CDC planner takes it.
    pub fn cdc_input(&self) -> CdcInput<'r> {
        self.record.cdc_input(self.lane)
    }
}

impl Source for Kafka {
    type Event = KafkaEvent;
    type Record = StreamRecord;
    type Input<'r> = KafkaInput<'r>;
    type Response = KafkaEventResponse;

    fn split(event: KafkaEvent) -> (Vec<StreamRecord>, Sequencing) {
        let (records, lanes) = kafka::records(event);
        (records, Sequencing::Lanes(lanes))
    }

    fn inputs<'r>(records: &'r [StreamRecord], sequencing: &Sequencing) -> Vec<KafkaInput<'r>> {
        let lane = |i: usize| match sequencing {
            Sequencing::Lanes(lanes) => lanes.get(i).copied().unwrap_or(0),
            _ => 0,
        };
        records
            .iter()
            .enumerate()
            .map(|(i, record)| KafkaInput {
                record,
                lane: lane(i),
            })
            .collect()
    }

    fn position(r: &StreamRecord) -> String {
        format!("{}@{}", r.partition_id, r.offset)
    }

    fn letter(r: &StreamRecord) -> (Origin, Payload, Option<u32>) {
        let origin = Origin::Kafka {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp: Some(r.timestamp_ms),
            key: r.key.clone(),
        };
        let payload = match &r.value {
            Ok(Some(v)) => Payload::of(v),
            _ => Payload::Empty,
        };
        (origin, payload, None)
    }

    /// Per partition, the first record to deliver again (Lambda commits the offsets before it); an empty list
    /// when everything was settled.
    fn response(settlement: &Settlement, records: &[StreamRecord]) -> KafkaEventResponse {
        KafkaEventResponse {
            batch_item_failures: settlement
                .checkpoints
                .iter()
                .map(|&i| KafkaBatchItemFailure {
                    item_identifier: KafkaItemIdentifier {
                        partition: records[i].partition_id.clone(),
                        offset: records[i].offset,
                    },
                })
                .collect(),
        }
    }
}

/// A Kinesis stream (DMS records): one shard per batch, one ordered sequence; Lambda retries from the first
/// reported record on. The domain reads each record as a CDC input borrowing its data.
pub struct Kinesis;

impl Source for Kinesis {
    type Event = KinesisEvent;
    type Record = KinesisEventRecord;
    type Input<'r> = CdcInput<'r>;
    type Response = KinesisEventResponse;

    fn split(event: KinesisEvent) -> (Vec<KinesisEventRecord>, Sequencing) {
        (event.records, Sequencing::Sequence)
    }

    fn inputs<'r>(records: &'r [KinesisEventRecord], _: &Sequencing) -> Vec<CdcInput<'r>> {
        records.iter().map(KinesisEventRecord::cdc_input).collect()
    }

    fn position(r: &KinesisEventRecord) -> String {
        r.kinesis.sequence_number.clone()
    }

    fn letter(r: &KinesisEventRecord) -> (Origin, Payload, Option<u32>) {
        let origin = Origin::Kinesis {
            stream_arn: r.event_source_arn.clone(),
            // Lambda's event id is `<shardId>:<sequenceNumber>`.
            shard_id: r
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':'))
                .map(|(shard, _)| shard.to_owned()),
            sequence_number: r.kinesis.sequence_number.clone(),
            partition_key: r.kinesis.partition_key.clone(),
        };
        // Kinesis does not say how often a record was delivered.
        (origin, Payload::of(&r.kinesis.data), None)
    }

    /// The sequence number of the first record to retry (Lambda checkpoints there and redelivers the rest of
    /// the shard's batch); an empty list when everything was settled.
    fn response(settlement: &Settlement, records: &[KinesisEventRecord]) -> KinesisEventResponse {
        let mut response = KinesisEventResponse::default();
        if let Some(&i) = settlement.checkpoints.first() {
            let mut failure = KinesisBatchItemFailure::default();
            failure.item_identifier = Some(records[i].kinesis.sequence_number.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdm_sync_domain::outcome::Outcome;
    use mdm_sync_domain::settle::settle;
    use serde_json::json;

    fn sqs(arn: &str) -> SqsEvent {
        serde_json::from_value(json!({"Records": [
            {"messageId": "m1", "body": "{\"type\":\"ENTITY_CHANGED\"}", "eventSourceARN": arn,
             "attributes": {"ApproximateReceiveCount": "3", "AWSTraceHeader": "Root=1-abc"},
             "messageAttributes": {"eventId": {"stringValue": "e1", "dataType": "String"},
                                   "objectVersion": {"stringValue": "7", "dataType": "Number"},
                                   "tenantId": {"stringValue": "", "dataType": "String"}}},
            {"messageId": "m2", "body": "not json", "eventSourceARN": arn}
        ]}))
        .unwrap()
    }

    #[test]
    fn an_sqs_message_is_read_as_a_delivery_with_the_contracts_attributes() {
        let (messages, sequencing) = Sqs::split(sqs("arn:aws:sqs:us-east-1:1:events"));
        assert_eq!(sequencing, Sequencing::Independent);
        let d = delivery(&messages[0]);
        assert_eq!(d.message_id, "m1");
        assert_eq!(d.event_id.as_deref(), Some("e1"));
        assert_eq!(d.object_version.as_deref(), Some("7"));
        assert_eq!(d.tenant_id, None, "an empty attribute is absent");
        assert_eq!(d.receive_count, 3);
        assert_eq!(d.trace.as_deref(), Some("Root=1-abc"));
        assert_eq!(delivery(&messages[1]).receive_count, 1);
        let (origin, payload, attempts) = Sqs::letter(&messages[1]);
        assert_eq!(
            origin,
            Origin::Queue {
                message_id: "m2".into()
            }
        );
        assert_eq!(payload.bytes().unwrap(), b"not json");
        assert_eq!(attempts, Some(1));
    }

    #[test]
    fn a_fifo_batch_is_one_sequence_and_the_response_names_what_is_retried() {
        let (messages, sequencing) = Sqs::split(sqs("arn:aws:sqs:us-east-1:1:events.fifo"));
        assert_eq!(sequencing, Sequencing::Sequence);
        let outcomes = [Outcome::Transient("down".into()), Outcome::Done];
        let s = settle(&outcomes, sequencing.ordering());
        let response = Sqs::response(&s, &messages);
        let ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(
            ids,
            ["m1", "m2"],
            "on FIFO the failed message and every later one"
        );
    }

    #[test]
    fn a_kafka_record_keeps_its_coordinates_for_its_letter() {
        let event: KafkaEvent = serde_json::from_value(json!({"eventSource": "SelfManagedKafka",
            "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 5, "timestamp": 1_764_000_001_041i64,
                                 "timestampType": "CREATE_TIME", "key": "azE=", "value": "e30=", "headers": []}]}}))
        .unwrap();
        let (records, sequencing) = Kafka::split(event);
        assert_eq!(sequencing, Sequencing::Lanes(vec![0]));
        assert_eq!(Kafka::position(&records[0]), "t-0@5");
        let (origin, payload, _) = Kafka::letter(&records[0]);
        let Origin::Kafka {
            topic,
            partition,
            offset,
            key,
            timestamp,
        } = origin
        else {
            panic!("{origin:?}")
        };
        assert_eq!((topic.as_str(), partition, offset), ("t", 0, 5));
        // The record's own milliseconds: a float in between made this 1764000001040.
        assert_eq!(timestamp, Some(1_764_000_001_041));
        assert_eq!(key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(payload.bytes().unwrap(), b"{}");
    }

    #[test]
    fn a_kinesis_batch_is_one_sequence_whose_letters_name_shard_and_sequence() {
        let event: KinesisEvent = serde_json::from_value(json!({"Records": [
            {"eventID": "shardId-000000000001:49590", "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
             "kinesis": {"sequenceNumber": "49590", "partitionKey": "public.customer.46", "data": "eyJhIjoxfQ=="}},
            {"eventID": "shardId-000000000001:49591",
             "kinesis": {"sequenceNumber": "49591", "partitionKey": "public.customer.47", "data": "eyJhIjoyfQ=="}}
        ]}))
        .unwrap();
        let (records, sequencing) = Kinesis::split(event);
        assert_eq!(sequencing, Sequencing::Sequence);
        let inputs = Kinesis::inputs(&records, &sequencing);
        assert_eq!(inputs[1].position.to_string(), "49591");
        let (origin, payload, attempts) = Kinesis::letter(&records[0]);
        assert_eq!(
            origin,
            Origin::Kinesis {
                stream_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()),
                shard_id: Some("shardId-000000000001".into()),
                sequence_number: "49590".into(),
                partition_key: "public.customer.46".into(),
            }
        );
        assert_eq!(payload.bytes().unwrap(), br#"{"a":1}"#);
        assert_eq!(attempts, None, "Kinesis does not count deliveries");
        // Lambda checkpoints at the first record reported.
        let outcomes = [Outcome::Done, Outcome::Transient("down".into())];
        let s = settle(&outcomes, sequencing.ordering());
        let response = Kinesis::response(&s, &records);
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(ids, vec![Some("49591".to_owned())]);
    }
}
