//! The event sources' partial-batch responses, built from a [`Settlement`]: one small adapter per source.

use crate::kafka::{KafkaBatchItemFailure, KafkaEventResponse, KafkaItemIdentifier, StreamRecord};
use crate::kinesis::KinesisEventRecord;
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use mdm_sync_domain::settle::Settlement;

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
