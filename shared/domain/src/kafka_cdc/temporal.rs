//! Kafka Connect and Debezium logical types (from the JSON converter's schema) rendered as DMS renders column
//! values: decimals as exact decimal text, dates as `YYYY-MM-DD`, times as `HH:MM:SS[.f]`, timestamps as
//! `YYYY-MM-DDTHH:MM:SS[.f]` (UTC, no zone, as the epoch numbers mean). Types not listed pass unchanged.

use crate::dms::Cell;
use base64::Engine;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// A column's logical type: its schema `name` and, for `Decimal`, its `scale` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logical {
    pub name: String,
    pub scale: Option<u32>,
}

/// Logical types by column name.
pub type Columns = HashMap<String, Logical>;

/// The logical types of an envelope's `before` and `after` rows.
#[derive(Debug, Clone, Default)]
pub struct FieldTypes {
    rows: HashMap<String, Columns>,
    none: Columns,
}

impl FieldTypes {
    /// From the envelope's schema (a struct whose `before`/`after` fields are the row structs).
    pub fn of_envelope(schema: &Value) -> FieldTypes {
        let mut rows = HashMap::new();
        for field in fields(schema) {
            if let Some(name) = field.get("field").and_then(Value::as_str) {
                rows.insert(name.to_owned(), FieldTypes::of_struct(field));
            }
        }
        FieldTypes {
            rows,
            none: Columns::new(),
        }
    }

    /// From a struct schema (a row, or a key).
    pub fn of_struct(schema: &Value) -> Columns {
        let mut columns = Columns::new();
        for field in fields(schema) {
            let (Some(column), Some(name)) = (
                field.get("field").and_then(Value::as_str),
                field.get("name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let scale = field
                .get("parameters")
                .and_then(|p| p.get("scale"))
                .and_then(|s| match s {
                    Value::String(s) => s.parse().ok(),
                    Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                    _ => None,
                });
            columns.insert(
                column.to_owned(),
                Logical {
                    name: name.to_owned(),
                    scale,
                },
            );
        }
        columns
    }

    pub fn row(&self, name: &str) -> &Columns {
        self.rows.get(name).unwrap_or(&self.none)
    }
}

fn fields(schema: &Value) -> impl Iterator<Item = &Value> {
    schema
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| f.is_object())
}

/// The value rendered for its logical type; an error names what is wrong (never the value).
pub fn render(cell: Cell<'_>, logical: &Logical) -> Result<Cell<'static>, String> {
    if cell.is_null() {
        return Ok(Cell::Null);
    }
    let int = |c: &Cell| {
        match c {
            Cell::Number(n) => n.parse::<i64>().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("{} is not an integer", short(&logical.name)))
    };
    let text = match logical.name.as_str() {
        "org.apache.kafka.connect.data.Decimal" => {
            let Cell::Text(b64) = &cell else {
                // decimal.handling.mode=double or string already gives a plain value.
                return Ok(cell.into_owned());
            };
            let scale = logical.scale.ok_or("Decimal without its scale parameter")?;
            decimal(b64, scale)?
        }
        "io.debezium.data.VariableScaleDecimal" => {
            let value = match &cell {
                Cell::Json(json) => serde_json::from_str::<Value>(json).unwrap_or(Value::Null),
                _ => Value::Null,
            };
            let scale = value
                .get("scale")
                .and_then(Value::as_u64)
                .and_then(|s| u32::try_from(s).ok())
                .ok_or("VariableScaleDecimal without a scale")?;
            let digits = value
                .get("value")
                .and_then(Value::as_str)
                .ok_or("VariableScaleDecimal without a value")?;
            decimal(digits, scale)?
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            let days = int(&cell)?;
            chrono::NaiveDate::from_yo_opt(1970, 1)
                .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::try_days(days)?))
                .ok_or("date out of range")?
                .format("%Y-%m-%d")
                .to_string()
        }
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => timestamp(
            int(&cell)?
                .checked_mul(1_000_000)
                .ok_or("timestamp out of range")?,
        )?,
        "io.debezium.time.MicroTimestamp" => timestamp(
            int(&cell)?
                .checked_mul(1_000)
                .ok_or("timestamp out of range")?,
        )?,
        "io.debezium.time.NanoTimestamp" => timestamp(int(&cell)?)?,
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => time_of_day(
            int(&cell)?
                .checked_mul(1_000_000)
                .ok_or("time out of range")?,
        )?,
        "io.debezium.time.MicroTime" => {
            time_of_day(int(&cell)?.checked_mul(1_000).ok_or("time out of range")?)?
        }
        "io.debezium.time.NanoTime" => time_of_day(int(&cell)?)?,
        _ => return Ok(cell.into_owned()),
    };
    Ok(Cell::Text(Cow::Owned(text)))
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Connect's decimal: the unscaled value as big-endian two's-complement bytes, base64, and a scale.
fn decimal(b64: &str, scale: u32) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "Decimal bytes are not base64".to_owned())?;
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(format!(
            "Decimal of {} bytes (1 to 16 are read); use decimal.handling.mode=string",
            bytes.len()
        ));
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut unscaled: i128 = if negative { -1 } else { 0 };
    for b in &bytes {
        unscaled = (unscaled << 8) | i128::from(*b);
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let (whole, fraction) = if scale == 0 {
        (digits, String::new())
    } else if digits.len() > scale {
        let (w, f) = digits.split_at(digits.len() - scale);
        (w.to_owned(), f.to_owned())
    } else {
        ("0".to_owned(), format!("{digits:0>scale$}"))
    };
    let sign = if unscaled < 0 { "-" } else { "" };
    Ok(if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    })
}

fn timestamp(nanos: i64) -> Result<String, String> {
    let t = chrono::DateTime::from_timestamp_nanos(nanos).naive_utc();
    Ok(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn time_of_day(nanos: i64) -> Result<String, String> {
    if !(0..86_400_000_000_000).contains(&nanos) {
        return Err("time of day out of range".into());
    }
    let secs = (nanos / 1_000_000_000) as u32;
    let t =
        chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, (nanos % 1_000_000_000) as u32)
            .ok_or("time of day out of range")?;
    Ok(t.format("%H:%M:%S%.f").to_string())
}
