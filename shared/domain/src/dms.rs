//! AWS DMS change records as DMS writes them to Kinesis (`MessageFormat` `json` or `json-unformatted`).
//!
//! Shapes from the DMS Kinesis target documentation (see docs/reference.md): a `data` row, an optional before image
//! under a configurable field name (update records only), and `metadata` whose keys beyond
//! `record-type`/`operation`/`table-name` depend on endpoint settings and are therefore all optional.

mod cell;
mod row;

pub use cell::Cell;
use row::RawRecord;
pub use row::Row;
pub(crate) use row::{row_of_json, Slot};
use std::borrow::Cow;
use std::fmt;

/// Field name DMS uses for the before image unless `BeforeImageSettings.FieldName` says otherwise.
pub const DEFAULT_BEFORE_IMAGE_FIELD: &str = "before-image";

/// Why bytes are not a DMS record. Always permanent: the same bytes never parse on a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmsError {
    #[error("record is not valid JSON: {0}")]
    NotJson(String),
    #[error("record is not a DMS message: {0}")]
    WrongShape(String),
}

/// The four data operations DMS emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOperation {
    /// A row from the full-load phase.
    Load,
    Insert,
    Update,
    Delete,
}

/// What a record is: a row change, or a control record (DDL and DMS's own bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    Data(DataOperation),
    /// `create-table`, `drop-table`, `add-column`, ... kept verbatim: consumers only skip them.
    Control(String),
}

/// `schema.table` as it names a source table in the mapping. The schema may be empty on control records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    /// DMS's own tables (`awsdms_apply_exceptions`, `awsdms_status`, ...), which consumers skip.
    pub fn is_dms_internal(&self) -> bool {
        self.table.to_ascii_lowercase().starts_with("awsdms_")
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.schema.is_empty() {
            f.write_str(&self.table)
        } else {
            write!(f, "{}.{}", self.schema, self.table)
        }
    }
}

/// How much of the row a record's image holds, that is, what a column it does not hold means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The whole row: a column it does not hold is NULL (GoldenGate inserts, Debezium creates and snapshot
    /// reads).
    Whole,
    /// The key and what changed: a column it does not hold did not change (GoldenGate's compressed updates;
    /// Debezium updates, whose unchanged TOASTed columns arrive as a placeholder and are left out).
    Changes,
    /// The source does not say: the table's `absent_columns` decides (DMS leaves NULL and empty columns out unless
    /// the endpoint sets `IncludeNullAndEmpty`).
    Unknown,
}

/// One row change. Column values are kept as DMS rendered them (numbers, strings, booleans, null), borrowed
/// from the record's bytes where they need no unescaping.
#[derive(Debug, Clone, PartialEq)]
pub struct DmsRecord<'a> {
    pub kind: RecordKind,
    pub table: TableName,
    /// Row after the change (for deletes: the deleted row, possibly only its key columns).
    pub data: Row<'a>,
    /// What a column `data` does not hold means.
    pub image: Image,
    /// Before image of an update, when the task enables it. PostgreSQL sends `{}` when the key did not change.
    pub before_image: Option<Row<'a>>,
    /// DMS's own timestamp of the change (`metadata.timestamp`).
    pub timestamp: Option<Cow<'a, str>>,
    /// Source commit time, present with `IncludeTransactionDetails`.
    pub commit_timestamp: Option<Cow<'a, str>>,
    /// Source log position, present with `IncludeTransactionDetails`.
    pub stream_position: Option<Cow<'a, str>>,
    pub transaction_id: Option<Cow<'a, str>>,
    /// The record's offset within its transaction, present with `IncludeTransactionDetails`.
    pub transaction_record_id: Option<Cow<'a, str>>,
    pub partition_key_value: Option<Cow<'a, str>>,
}

impl<'a> DmsRecord<'a> {
    /// Parses one Kinesis record's data. `before_image_field` is the task's `BeforeImageSettings.FieldName`.
    pub fn parse(bytes: &'a [u8], before_image_field: &str) -> Result<DmsRecord<'a>, DmsError> {
        let raw =
            row::decode(bytes, before_image_field).map_err(|e| DmsError::NotJson(e.to_string()))?;
        let RawRecord::Object {
            data,
            before_image,
            metadata,
        } = raw
        else {
            return Err(shape("top level is not a JSON object"));
        };
        let Slot::Found(metadata) = metadata else {
            return Err(shape("missing \"metadata\" object"));
        };
        let record_type = text(metadata.record_type, "record-type")?
            .ok_or_else(|| shape("metadata has no \"record-type\""))?;
        let operation = text(metadata.operation, "operation")?
            .ok_or_else(|| shape("metadata has no \"operation\""))?;
        let kind = match record_type.as_ref() {
            "data" => RecordKind::Data(match operation.as_ref() {
                "load" => DataOperation::Load,
                "insert" => DataOperation::Insert,
                "update" => DataOperation::Update,
                "delete" => DataOperation::Delete,
                other => return Err(shape(&format!("unknown data operation \"{other}\""))),
            }),
            "control" => RecordKind::Control(operation.into_owned()),
            other => return Err(shape(&format!("unknown record-type \"{other}\""))),
        };
        let table = TableName {
            schema: text(metadata.schema_name, "schema-name")?
                .map(Cow::into_owned)
                .unwrap_or_default(),
            table: text(metadata.table_name, "table-name")?
                .filter(|t| !t.is_empty())
                .ok_or_else(|| shape("metadata has no \"table-name\""))?
                .into_owned(),
        };
        let data = match data {
            Slot::Found(row) => row,
            Slot::Absent | Slot::Null if matches!(kind, RecordKind::Control(_)) => Row::default(),
            Slot::Absent | Slot::Null => return Err(shape("data record has no \"data\" object")),
            Slot::Wrong => return Err(shape("\"data\" is not an object")),
        };
        let before_image = match before_image {
            Slot::Found(row) => Some(row),
            Slot::Absent | Slot::Null => None,
            Slot::Wrong => {
                return Err(shape(&format!("\"{before_image_field}\" is not an object")))
            }
        };
        Ok(DmsRecord {
            kind,
            table,
            data,
            image: Image::Unknown,
            before_image,
            timestamp: text(metadata.timestamp, "timestamp")?,
            commit_timestamp: text(metadata.commit_timestamp, "commit-timestamp")?,
            stream_position: text(metadata.stream_position, "stream-position")?,
            transaction_id: text(metadata.transaction_id, "transaction-id")?,
            transaction_record_id: text(metadata.transaction_record_id, "transaction-record-id")?,
            partition_key_value: text(metadata.partition_key_value, "partition-key-value")?,
        })
    }

    pub fn operation(&self) -> Option<DataOperation> {
        match self.kind {
            RecordKind::Data(op) => Some(op),
            RecordKind::Control(_) => None,
        }
    }

    /// The best source time of the change: the commit timestamp, else DMS's timestamp.
    pub fn source_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.commit_timestamp
            .as_deref()
            .and_then(parse_dms_timestamp)
            .or_else(|| self.timestamp.as_deref().and_then(parse_dms_timestamp))
    }
}

/// DMS writes `2024-07-29T00:58:17.983670Z`; some sources omit the zone (then UTC is meant).
pub fn parse_dms_timestamp(raw: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(raw, f).ok())
        .map(|n| n.and_utc())
}

fn shape(reason: &str) -> DmsError {
    DmsError::WrongShape(reason.to_owned())
}

/// A metadata value as text (DMS writes ids as numbers or strings depending on the source); `null` is absent.
fn text<'a>(slot: Slot<Cow<'a, str>>, key: &str) -> Result<Option<Cow<'a, str>>, DmsError> {
    match slot {
        Slot::Absent | Slot::Null => Ok(None),
        Slot::Found(s) => Ok(Some(s)),
        Slot::Wrong => Err(shape(&format!(
            "metadata \"{key}\" is not a string or number"
        ))),
    }
}

#[cfg(test)]
mod tests;
