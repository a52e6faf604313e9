//! The event sources' partial-batch responses, built from a [`Settlement`]: one small adapter per source.

use crate::kafka::{KafkaBatchItemFailure, KafkaEventResponse, KafkaItemIdentifier, StreamRecord};
use crate::kinesis::KinesisEventRecord;
use crate::sqs_event::SqsMessage;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use mdm_sync_domain::settle::{Ordering, Settlement};

/// Kinesis: the sequence number of the first record to retry (Lambda checkpoints there and redelivers the rest
/// of the shard's batch); an empty list when everything was settled.
pub fn kinesis_response(
    settlement: &Settlement,
    records: &[KinesisEventRecord],
) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    if let Some(&i) = settlement.checkpoints.first() {
        let mut failure = KinesisBatchItemFailure::default();
        failure.item_identifier = Some(records[i].kinesis.sequence_number.clone());
        response.batch_item_failures.push(failure);
    }
    response
}

/// Kafka: per partition, the first record to deliver again (Lambda commits the offsets before it); an empty list
/// when everything was settled.
pub fn kafka_response(settlement: &Settlement, records: &[StreamRecord]) -> KafkaEventResponse {
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

/// SQS: the message id of every message to deliver again (on FIFO, the first failed one and all after it).
pub fn sqs_response(settlement: &Settlement, messages: &[SqsMessage]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for &i in &settlement.retry {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = messages[i].message_id.clone().unwrap_or_default();
        response.batch_item_failures.push(failure);
    }
    response
}

/// The ordering rule of an SQS batch: FIFO (its queue ARN ends in `.fifo`) is a sequence.
pub fn sqs_ordering(messages: &[SqsMessage]) -> Ordering<'static> {
    let fifo = messages
        .first()
        .and_then(|m| m.event_source_arn.as_deref())
        .is_some_and(|arn| arn.ends_with(".fifo"));
    if fifo {
        Ordering::Sequence
    } else {
        Ordering::Independent
    }
}
