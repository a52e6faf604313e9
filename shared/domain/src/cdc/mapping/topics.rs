//! The mapping's `[topics]`: how each Kafka topic's messages are read.

use super::MappingError;
use crate::kafka_cdc::ChangeFormat;
use serde::Deserialize;

/// A Kafka topic's entry in `[topics]`: `"topic" = "debezium"`, or a table with the format and, for Debezium,
/// the connector's `unavailable.value.placeholder` when it is not the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMapping {
    pub format: ChangeFormat,
    pub unavailable_value: Option<String>,
}

/// `"topic" = "debezium"` or `"topic" = { format = "debezium", unavailable_value = "..." }`.
pub(super) enum RawTopic {
    Format(ChangeFormat),
    Detailed(RawTopicTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopicTable {
    format: ChangeFormat,
    unavailable_value: Option<String>,
}

impl<'de> Deserialize<'de> for RawTopic {
    /// By hand rather than `untagged`, so that an unknown format is named in the error.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TopicVisitor;
        impl<'de> serde::de::Visitor<'de> for TopicVisitor {
            type Value = RawTopic;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a format name or a table with `format`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawTopic, E> {
                ChangeFormat::deserialize(serde::de::value::StrDeserializer::<E>::new(s))
                    .map(RawTopic::Format)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawTopic, A::Error> {
                RawTopicTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawTopic::Detailed)
            }
        }
        d.deserialize_any(TopicVisitor)
    }
}

impl RawTopic {
    pub(super) fn validate(self, topic: &str) -> Result<TopicMapping, MappingError> {
        let (format, unavailable_value) = match self {
            RawTopic::Format(format) => (format, None),
            RawTopic::Detailed(t) => (t.format, t.unavailable_value),
        };
        let err = |reason: &str| MappingError::Topic {
            topic: topic.to_owned(),
            reason: reason.to_owned(),
        };
        match &unavailable_value {
            Some(_) if format != ChangeFormat::Debezium => {
                return Err(err("unavailable_value is a Debezium setting"))
            }
            Some(v) if v.is_empty() => return Err(err("unavailable_value must not be empty")),
            _ => {}
        }
        Ok(TopicMapping {
            format,
            unavailable_value,
        })
    }
}
