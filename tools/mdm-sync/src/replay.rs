//! `mdm-sync replay`: DMS records onto the CDC stream, for backfills and re-runs: NDJSON (one DMS record a line) or
//! a saved Kinesis event (its records with their partition keys). A record's partition key is its Kinesis one,
//! else DMS's `partition-key-value` metadata, else `schema.table` (DMS's schema-table partitioning: the table's
//! order kept).

use crate::error::CliError;
use crate::kinesis_io;
use crate::output;
use crate::stack::{self, Stack};
use crate::Global;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct ReplayArgs {
    /// NDJSON of DMS records, or a Kinesis event JSON (`-`: standard input).
    file: PathBuf,
    /// The stream (name or ARN); default: the stack's CdcStreamArn.
    #[arg(long)]
    stream: Option<String>,
    /// Print what would be put; put nothing.
    #[arg(long)]
    dry_run: bool,
    /// At most this many records a second.
    #[arg(long)]
    rate: Option<f64>,
}

/// The records of `input` with their partition keys (pure).
pub fn records(input: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    if let Ok(event) = serde_json::from_slice::<mdm_sync_adapters::kinesis::KinesisEvent>(input) {
        if !event.records.is_empty() {
            return Ok(event
                .records
                .into_iter()
                .map(|r| (r.kinesis.partition_key, r.kinesis.data))
                .collect());
        }
    }
    let text = std::str::from_utf8(input).map_err(|_| "the input is not UTF-8 text".to_owned())?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(line)
            .map_err(|e| format!("line {}: not a JSON record: {e}", n + 1))?;
        let meta = record
            .get("metadata")
            .ok_or_else(|| format!("line {}: a DMS record has metadata", n + 1))?;
        let key = match meta.get("partition-key-value").and_then(Value::as_str) {
            Some(k) => k.to_owned(),
            None => {
                let schema = meta
                    .get("schema-name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let table = meta
                    .get("table-name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("line {}: metadata has no table-name", n + 1))?;
                format!("{schema}.{table}")
            }
        };
        out.push((key, line.as_bytes().to_vec()));
    }
    Ok(out)
}

pub async fn run(g: &Global, args: ReplayArgs) -> Result<ExitCode, CliError> {
    let input = crate::read_input(&args.file)?;
    let records =
        records(&input).map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    if args.dry_run {
        let doc = json!({"records": records.len(), "partitionKeys": records.iter().map(|(k, _)| k).collect::<Vec<_>>()});
        println!(
            "{}",
            if g.json {
                output::json(&doc)
            } else {
                format!("would put {} records", records.len())
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let sdk = stack::sdk().await;
    let stack = Stack::load(g, &sdk).await?;
    let stream = match &args.stream {
        Some(s) => s.clone(),
        None => stack.require(stack::CDC_STREAM)?.to_owned(),
    };
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let bar = output::progress(records.len() as u64, "replaying");
    // With a rate, records go one call per second's worth; without, 500 a call.
    let per_call = args
        .rate
        .map(|r| (r.max(1.0) as usize).min(500))
        .unwrap_or(500);
    let mut put = 0;
    for chunk in records.chunks(per_call) {
        put += kinesis_io::put_records(&kinesis, &stream, chunk).await?;
        bar.inc(chunk.len() as u64);
        if args.rate.is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    bar.finish_and_clear();
    let doc = json!({"stream": stream, "recordsPut": put});
    println!(
        "{}",
        if g.json {
            output::json(&doc)
        } else {
            format!("{put} records put on {stream}")
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_records_take_their_partition_key_from_dms_metadata() {
        let input = br#"{"data":{"id":1},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer","partition-key-value":"public.customer.1"}}

{"data":{"id":2},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}
"#;
        let r = records(input).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "public.customer.1");
        assert_eq!(r[1].0, "public.customer");
        assert!(r[0].1.starts_with(br#"{"data":{"id":1}"#));
        assert!(records(b"{\"data\": {}}").unwrap_err().contains("metadata"));
        assert!(records(b"not json").unwrap_err().contains("line 1"));
    }

    #[test]
    fn a_kinesis_event_keeps_its_partition_keys_and_data() {
        let input = br#"{"Records":[{"kinesis":{"partitionKey":"k1","sequenceNumber":"1","data":"eyJhIjoxfQ=="}}]}"#;
        assert_eq!(
            records(input).unwrap(),
            vec![("k1".to_owned(), br#"{"a":1}"#.to_vec())]
        );
    }
}
