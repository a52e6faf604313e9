//! Turns one DMS record into the Reltio writes that apply it, per the table's mapping. Pure: no I/O.

use super::mapping::{CdcMapping, DeleteStrategy, TableMapping, Transform};
use crate::dms::{Cell, DataOperation, DmsRecord, RecordKind, Row};
use crate::outcome::SkipReason;
use crate::reltio::model::{Attributes, Crosswalk, CrosswalkKey, EntityBody};
use chrono::{DateTime, SecondsFormat, Utc};
use std::borrow::Cow;
use upsert::{absent_columns, mapped_values, upsert};

mod upsert;

/// A record the mapping cannot turn into writes. Permanent: the same record fails the same way again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("table {table}: key column {column} is missing or null")]
    MissingKey { table: String, column: String },
    #[error("table {table}, column {column}: {reason}")]
    BadValue {
        table: String,
        column: String,
        reason: String,
    },
    /// The image lacks columns and a write of only the others would lose or alter data. Names columns, never
    /// values.
    #[error("table {table}: {reason}")]
    PartialImage { table: String, reason: String },
}

/// One call's worth of change to one crosswalk.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// An element of `POST /entities`; `partial` sends it with `options=partialOverride`.
    Post { body: EntityBody, partial: bool },
    /// Remove the crosswalk for good.
    DeleteCrosswalk,
}

/// A write to the crosswalk `key`. Writes to one key must be applied in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReltioWrite {
    pub key: CrosswalkKey,
    pub op: WriteOp,
}

impl ReltioWrite {
    /// A full-override upsert: applying two in a row equals applying only the second, since each replaces
    /// the source's whole contribution. That is what allows coalescing them.
    pub fn is_full_upsert(&self) -> bool {
        matches!(&self.op, WriteOp::Post { body, partial: false }
            if body.crosswalks.first().is_some_and(|c| c.delete_date.is_none()))
    }

    /// The write retires its key: a crosswalk delete, or an end-dating post.
    pub fn retires(&self) -> bool {
        match &self.op {
            WriteOp::DeleteCrosswalk => true,
            WriteOp::Post { body, .. } => body
                .crosswalks
                .first()
                .is_some_and(|c| c.delete_date.is_some()),
        }
    }
}

/// What to do with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordPlan {
    Skip(SkipReason),
    /// The record's crosswalk key and its writes, in the order they must be applied.
    Write {
        key: CrosswalkKey,
        writes: Vec<ReltioWrite>,
    },
}

/// Plans one record. `now` dates a deletion when the record carries no source time.
pub fn plan_record(
    mapping: &CdcMapping,
    record: &DmsRecord,
    now: DateTime<Utc>,
) -> Result<RecordPlan, TransformError> {
    let operation = match record.kind {
        RecordKind::Control(_) => return Ok(RecordPlan::Skip(SkipReason::Control)),
        RecordKind::Data(op) => op,
    };
    if record.table.is_dms_internal() {
        return Ok(RecordPlan::Skip(SkipReason::DmsInternal));
    }
    let Some(table) = mapping.table_of(&record.table) else {
        return Ok(RecordPlan::Skip(SkipReason::Unmapped));
    };
    let key = crosswalk_key(table, &record.data)?;
    let writes = match operation {
        DataOperation::Load | DataOperation::Insert => {
            vec![upsert(table, &key, &mapped_values(table, record)?)?]
        }
        DataOperation::Update => {
            let old_key = record
                .before_image
                .as_ref()
                .filter(|before| table.key_columns.iter().all(|c| has_value(before, c)))
                .map(|before| crosswalk_key(table, before))
                .transpose()?
                .filter(|old| old != &key);
            let values = mapped_values(table, record)?;
            let mut writes = Vec::with_capacity(2);
            if let Some(old) = old_key {
                let absent = absent_columns(table, &values);
                if !absent.is_empty() {
                    return Err(TransformError::PartialImage {
                        table: table.table.clone(),
                        reason: format!(
                            "the key changed and the image lacks column(s) {}: the new key's crosswalk would \
                             get only the columns present (send full images: see the README)",
                            absent.join(", ")
                        ),
                    });
                }
                // A primary-key change: the old row is gone from the source's point of view.
                writes.push(retire(table, old, record, now));
            }
            writes.push(upsert(table, &key, &values)?);
            writes
        }
        DataOperation::Delete => vec![retire(table, key.clone(), record, now)],
    };
    Ok(RecordPlan::Write { key, writes })
}

/// The key of the row as the crosswalk value: key column values joined with the table's separator. In a
/// composite key, a backslash or the separator inside a value is escaped with a backslash, so that two rows'
/// keys never join into the same value (`a|b` + `c` and `a` + `b|c`).
pub fn crosswalk_key(table: &TableMapping, row: &Row) -> Result<CrosswalkKey, TransformError> {
    let composite = table.key_columns.len() > 1;
    let mut value = String::new();
    for (i, column) in table.key_columns.iter().enumerate() {
        let raw = &row[column.as_str()];
        if let Some(reason) = inexact_key(raw) {
            return Err(TransformError::BadValue {
                table: table.table.clone(),
                column: column.clone(),
                reason,
            });
        }
        let text =
            raw.render()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| TransformError::MissingKey {
                    table: table.table.clone(),
                    column: column.clone(),
                })?;
        if i > 0 {
            value.push_str(&table.key_separator);
        }
        if composite {
            let sep = &table.key_separator;
            value.push_str(
                &text
                    .replace('\\', "\\\\")
                    .replace(sep.as_str(), &format!("\\{sep}")),
            );
        } else {
            value.push_str(&text);
        }
    }
    Ok(CrosswalkKey {
        source: table.source.clone(),
        source_table: table.source_table.clone(),
        value,
    })
}

/// Why a key value cannot be used as it is: a number in scientific notation too large to be exact (DMS writes
/// integers over 16 digits that way unless the endpoint sets `UseLargeIntegerValue`, and a rounded key could name
/// another row's crosswalk). Plain digits are exact however many there are: the key is their text.
fn inexact_key(value: &Cell) -> Option<String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let Cell::Number(n) = value else {
        return None;
    };
    if !n.contains(['e', 'E']) {
        return None;
    }
    match n.parse::<f64>() {
        Ok(f) if f.is_finite() && f.abs() < EXACT => None,
        _ => Some(format!(
            "key value {n} is not an exact integer (DMS writes integers over 16 digits in scientific \
             notation unless the endpoint sets UseLargeIntegerValue): not used, so that it cannot name another \
             row's crosswalk"
        )),
    }
}

fn has_value(row: &Row, column: &str) -> bool {
    row.get(column).is_some_and(|v| !v.is_null())
}

/// Removes the source row's contribution per the table's delete strategy.
fn retire(
    table: &TableMapping,
    key: CrosswalkKey,
    record: &DmsRecord,
    now: DateTime<Utc>,
) -> ReltioWrite {
    let op = match table.delete_strategy {
        DeleteStrategy::DeleteCrosswalk => WriteOp::DeleteCrosswalk,
        DeleteStrategy::EndDate => {
            let when = record.source_time().unwrap_or(now);
            WriteOp::Post {
                body: EntityBody {
                    entity_type: table.entity_type.clone(),
                    attributes: Attributes::none(),
                    crosswalks: vec![Crosswalk {
                        delete_date: Some(when.to_rfc3339_opts(SecondsFormat::Millis, true)),
                        ..key.crosswalk()
                    }],
                },
                // Only the crosswalk's date changes; sending no attributes must not clear anything.
                partial: true,
            }
        }
    };
    ReltioWrite { key, op }
}

/// `None` when a transform made the value absent; `Err` with a reason when it cannot be transformed.
pub fn apply_transforms(transforms: &[Transform], value: String) -> Result<Option<String>, String> {
    transform_value(transforms, Cow::Owned(value)).map(|v| v.map(Cow::into_owned))
}

/// [`apply_transforms`] without copying a value a transform leaves unchanged.
fn transform_value<'a>(
    transforms: &[Transform],
    mut value: Cow<'a, str>,
) -> Result<Option<Cow<'a, str>>, String> {
    for t in transforms {
        value = match t {
            Transform::Trim => match value {
                Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
                Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
            },
            // For ASCII text without letters to change, the case mappings are the identity.
            Transform::Upper
                if value.is_ascii() && !value.bytes().any(|b| b.is_ascii_lowercase()) =>
            {
                value
            }
            Transform::Upper => Cow::Owned(value.to_uppercase()),
            Transform::Lower
                if value.is_ascii() && !value.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                value
            }
            Transform::Lower => Cow::Owned(value.to_lowercase()),
            Transform::EmptyAsAbsent if value.is_empty() => return Ok(None),
            Transform::EmptyAsAbsent => value,
            Transform::Date => Cow::Owned(normalise_date(&value)?),
            Transform::Timestamp => Cow::Owned(normalise_timestamp(&value)?),
        };
    }
    Ok(Some(value))
}

fn normalise_date(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if let Some(d) = plain_date(raw) {
        return Ok(ymd(d));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(ymd(d));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y%m%d") {
        return Ok(ymd(d));
    }
    crate::dms::parse_dms_timestamp(raw)
        .map(|t| ymd(t.date_naive()))
        .ok_or_else(|| format!("\"{}\" is not a date", short(raw)))
}

/// The date of the two shapes DMS writes most, `YYYY-MM-DD` and `YYYY-MM-DD HH:MM:SS` (an in-range
/// time), read without chrono's format parser. `None` means "not recognised here": the caller then takes
/// the general path, which accepts everything this accepts and gives the same date.
fn plain_date(raw: &str) -> Option<chrono::NaiveDate> {
    let b = raw.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if !(b.len() == 10 || b.len() == 19) || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if b.len() == 19 {
        let time_ok = b[10] == b' '
            && b[13] == b':'
            && b[16] == b':'
            && num(11..13)? <= 23
            && num(14..16)? <= 59
            && num(17..19)? <= 59;
        if !time_ok {
            return None;
        }
    }
    chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// `%Y-%m-%d` as chrono formats it (four-digit years written directly, others left to chrono).
fn ymd(d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    if (0..=9999).contains(&d.year()) {
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    } else {
        d.format("%Y-%m-%d").to_string()
    }
}

fn normalise_timestamp(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    crate::dms::parse_dms_timestamp(raw)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .ok_or_else(|| format!("\"{}\" is not a timestamp", short(raw)))
}

/// Values can be personal data: error texts quote at most a few characters.
fn short(raw: &str) -> String {
    let mut s: String = raw.chars().take(12).collect();
    if raw.chars().count() > 12 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod fidelity_tests;
#[cfg(test)]
mod tests;
