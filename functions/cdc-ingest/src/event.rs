//! The two events cdc-ingest is invoked with, told apart by their top-level field: a Kinesis event (`Records`, DMS
//! with a Kinesis target) or a self-managed Kafka / MSK event (`records`, by topic-partition: Debezium, GoldenGate,
//! or DMS with a Kafka target), and the partial batch response of each.

use aws_lambda_events::event::streams::KinesisEventResponse;
use mdm_sync_adapters::kafka::{KafkaEvent, KafkaEventResponse, KafkaRecord};
use mdm_sync_adapters::kinesis::{KinesisEvent, KinesisEventRecord};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// What Lambda invoked the function with.
#[derive(Debug, Clone)]
pub enum CdcEvent {
    Kinesis(KinesisEvent),
    Kafka(KafkaEvent),
}

/// The partial batch response for the event's source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CdcResponse {
    Kinesis(KinesisEventResponse),
    Kafka(KafkaEventResponse),
}

impl<'de> Deserialize<'de> for CdcEvent {
    /// One pass over the event: the records are read straight into their source's types (an untagged enum would
    /// buffer the whole event first, and cdc-ingest's events reach megabytes).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = CdcEvent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kinesis event (\"Records\") or a Kafka event (\"records\")")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CdcEvent, A::Error> {
        let mut kinesis: Option<Vec<KinesisEventRecord>> = None;
        let mut kafka: Option<HashMap<String, Vec<KafkaRecord>>> = None;
        let mut event_source = None;
        let mut event_source_arn = None;
        let mut bootstrap_servers = None;
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                "Records" => kinesis = Some(map.next_value()?),
                "records" => {
                    kafka = Some(
                        map.next_value::<Option<HashMap<String, Vec<KafkaRecord>>>>()?
                            .unwrap_or_default(),
                    )
                }
                "eventSource" => event_source = map.next_value()?,
                "eventSourceArn" => event_source_arn = map.next_value()?,
                "bootstrapServers" => bootstrap_servers = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (kinesis, kafka) {
            (Some(_), Some(_)) => Err(serde::de::Error::custom(
                "the event has both \"Records\" (Kinesis) and \"records\" (Kafka)",
            )),
            (_, Some(records)) => Ok(CdcEvent::Kafka(KafkaEvent {
                event_source,
                event_source_arn,
                bootstrap_servers,
                records,
            })),
            // An event without records is an empty Kinesis batch, as before Kafka sources existed.
            (records, None) => Ok(CdcEvent::Kinesis(KinesisEvent {
                records: records.unwrap_or_default(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_kinesis_event_and_a_kafka_event_are_told_apart() {
        let kinesis = json!({"Records": [{"eventID": "shardId-0:1", "kinesis": {"sequenceNumber": "1", "partitionKey": "k", "data": "e30="}}]});
        let CdcEvent::Kinesis(k) = serde_json::from_value(kinesis).unwrap() else {
            panic!("not read as Kinesis")
        };
        assert_eq!(k.records[0].kinesis.data, b"{}");

        let kafka = json!({
            "eventSource": "SelfManagedKafka", "bootstrapServers": "b-1:9092",
            "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 5, "timestamp": 1_764_000_001_041i64,
                                 "timestampType": "CREATE_TIME", "key": null, "value": "e30=", "headers": []}]}
        });
        let CdcEvent::Kafka(k) = serde_json::from_value(kafka).unwrap() else {
            panic!("not read as Kafka")
        };
        assert_eq!(k.records["t-0"][0].offset, 5);
        // The milliseconds as sent (read through a float they were 1764000001040).
        assert_eq!(k.records["t-0"][0].timestamp, 1_764_000_001_041);
        assert_eq!(k.event_source.as_deref(), Some("SelfManagedKafka"));
        assert_eq!(k.bootstrap_servers.as_deref(), Some("b-1:9092"));
    }

    #[test]
    fn an_event_of_neither_shape_is_an_error_or_an_empty_batch_never_a_guess() {
        assert!(serde_json::from_value::<CdcEvent>(json!([1])).is_err());
        assert!(serde_json::from_value::<CdcEvent>(json!({"Records": [], "records": {}})).is_err());
        let CdcEvent::Kinesis(k) = serde_json::from_value(json!({})).unwrap() else {
            panic!("an empty event is an empty Kinesis batch")
        };
        assert!(k.records.is_empty());
        let CdcEvent::Kafka(k) = serde_json::from_value(json!({"records": null})).unwrap() else {
            panic!("null records is an empty Kafka batch")
        };
        assert!(k.records.is_empty());
    }

    #[test]
    fn each_response_keeps_its_sources_wire_shape() {
        use mdm_sync_adapters::kafka::{KafkaBatchItemFailure, KafkaItemIdentifier};
        let kafka = CdcResponse::Kafka(KafkaEventResponse {
            batch_item_failures: vec![KafkaBatchItemFailure {
                item_identifier: KafkaItemIdentifier {
                    partition: "t-0".into(),
                    offset: 3,
                },
            }],
        });
        assert_eq!(
            serde_json::to_value(&kafka).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 3}}]})
        );
        let kinesis = CdcResponse::Kinesis(KinesisEventResponse::default());
        assert_eq!(
            serde_json::to_value(&kinesis).unwrap(),
            json!({"batchItemFailures": []})
        );
    }
}
