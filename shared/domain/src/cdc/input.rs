//! One change record as the CDC planner takes it, whatever carried it: its bytes and how to read them, its
//! settlement lane and where it sits in its stream. The Kinesis and Kafka adapters build these from Lambda's
//! records, borrowing the decoded bytes (nothing is copied).

use std::fmt;

/// A change record and its source coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdcInput<'a> {
    pub change: SourceChange<'a>,
    /// Its ordered sequence within the batch: its Kafka partition's index; 0 on Kinesis (one shard per batch).
    pub lane: usize,
    /// Where it is in its stream: the correlation id's position when the change names none of its own.
    pub position: Position<'a>,
}

/// A change's bytes and how they are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChange<'a> {
    /// A DMS record's JSON (DMS with a Kinesis target).
    Dms(&'a [u8]),
    /// A Kafka message: Debezium, GoldenGate or DMS, by its topic's format in the mapping, else by its content.
    Kafka(KafkaChange<'a>),
}

/// A Kafka message as the planner reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaChange<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    /// The value's bytes (`None`: a tombstone); `Err`: why the event's encoding of it could not be read.
    pub value: Result<Option<&'a [u8]>, &'static str>,
    /// The record's headers in their order (a name may repeat: the first one counts).
    pub headers: &'a [(String, Vec<u8>)],
}

impl KafkaChange<'_> {
    /// The first header named `name` (headers are a few bytes: the decoders get a copy).
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// Where a record is in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position<'a> {
    /// A Kinesis sequence number.
    Sequence(&'a str),
    /// A Kafka partition (`<topic>-<partition>`) and offset.
    Offset { partition: &'a str, offset: i64 },
}

impl fmt::Display for Position<'_> {
    /// `<sequenceNumber>`, or `<topic>-<partition>@<offset>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Sequence(sequence) => f.write_str(sequence),
            Position::Offset { partition, offset } => write!(f, "{partition}@{offset}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_the_sources_name_them() {
        assert_eq!(Position::Sequence("4959").to_string(), "4959");
        let offset = Position::Offset {
            partition: "dbserver1.public.customer-0",
            offset: 12,
        };
        assert_eq!(offset.to_string(), "dbserver1.public.customer-0@12");
    }

    #[test]
    fn the_first_header_of_a_name_counts() {
        let headers = [
            ("op".to_owned(), b"c".to_vec()),
            ("op".to_owned(), b"d".to_vec()),
        ];
        let change = KafkaChange {
            topic: "t",
            key: None,
            value: Ok(None),
            headers: &headers,
        };
        assert_eq!(change.header("op"), Some(b"c".to_vec()));
        assert_eq!(change.header("other"), None);
    }
}
