//! `mdm-sync dlq list` and `dlq show`: the stack's dead-letter and failure queues listed (depth, oldest message,
//! reasons counted), and one message shown in full (its payload read back from the letter store when the letter
//! points there, checked against the letter's size and SHA-256; or, asked for, from the stream when the letter left
//! it out).

use crate::error::CliError;
use crate::kinesis_io;
use crate::letters::{Letter, Role};
use crate::output;
use crate::sqs_io::{self, system};
use crate::stack::{self, Stack};
use crate::store_io::{self, S3Objects};
use crate::Global;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use clap::Args;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct ListArgs {
    /// Messages read from each queue to find the oldest and count the reasons.
    #[arg(long, default_value_t = 100)]
    peek: usize,
}

#[derive(Args)]
pub struct ShowArgs {
    /// cdc, cdc-failures, events, crm, stream, stream-failures, analytics, analytics-queue.
    queue: String,
    #[arg(long)]
    message_id: Option<String>,
    /// Read what the message names back from the stream: a record left out of the letter, or an on-failure
    /// record's shard range.
    #[arg(long)]
    fetch: bool,
    #[arg(long, default_value_t = 1000)]
    peek: usize,
}

fn age(m: &Message) -> Option<Duration> {
    let sent: i64 = system(m, MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()?;
    let now = chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis((now - sent).max(0) as u64))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{:.1} h", s as f64 / 3600.0),
        _ => format!("{:.1} d", s as f64 / 86400.0),
    }
}

/// Every dead-letter and failure queue of the stack: depth, the oldest message's age, reasons counted (exit 1 when
/// any holds messages).
pub async fn list(g: &Global, args: ListArgs) -> Result<ExitCode, CliError> {
    let sdk = stack::sdk().await;
    let stack = Stack::load(g, &sdk).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut rows = Vec::new();
    let mut report = Vec::new();
    let mut findings = false;
    let roles: Vec<(Role, &str)> = Role::ALL
        .iter()
        .filter_map(|&r| stack.get(r.output()).map(|url| (r, url)))
        .collect();
    if roles.is_empty() {
        return Err(CliError::Config(
            "the stack names no dead-letter queue: give --stack NAME, or --set CdcDeadLetterQueueUrl=URL ...".into(),
        ));
    }
    for (role, url) in roles {
        let n = sqs_io::depth(&sqs, url).await?;
        let peeked = if n > 0 {
            sqs_io::peek(&sqs, url, args.peek).await?
        } else {
            Vec::new()
        };
        let oldest = peeked.iter().filter_map(age).max();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for m in &peeked {
            *reasons
                .entry(sqs_io::letter(role, m).reason().to_owned())
                .or_default() += 1;
        }
        findings |= n > 0;
        let mut by_count: Vec<(String, u64)> = reasons.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.push(vec![
            role.name().to_owned(),
            n.to_string(),
            oldest.map(human).unwrap_or_else(|| "-".into()),
            by_count
                .iter()
                .take(5)
                .map(|(r, c)| format!("{c} x {}", truncate(r, 90)))
                .collect::<Vec<_>>()
                .join("\n"),
        ]);
        report.push(json!({"queue": role.name(), "url": url, "depth": n,
                           "oldestAgeSeconds": oldest.map(|d| d.as_secs()),
                           "reasons": by_count.iter().map(|(r, c)| json!({"reason": r, "count": c})).collect::<Vec<_>>()}));
    }
    if g.json {
        println!("{}", output::json(&Value::Array(report)));
    } else {
        println!(
            "{}",
            output::table(&["queue", "depth", "oldest", "reasons (read)"], rows)
        );
    }
    Ok(if findings {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// One message in full: the first one, or `--message-id` (exit 1 when there is none).
pub async fn show(g: &Global, args: ShowArgs) -> Result<ExitCode, CliError> {
    let sdk = stack::sdk().await;
    let stack = Stack::load(g, &sdk).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let role = Role::named(&args.queue)?;
    let url = stack.require(role.output())?;
    let peeked = sqs_io::peek(&sqs, url, args.peek).await?;
    let wanted = args.message_id.as_deref();
    let Some(m) = peeked
        .iter()
        .find(|m| wanted.is_none_or(|id| m.message_id() == Some(id)))
    else {
        eprintln!("no such message on {} ({} read)", args.queue, peeked.len());
        return Ok(ExitCode::from(1));
    };
    let body: Value = serde_json::from_str(m.body().unwrap_or_default())
        .unwrap_or_else(|_| Value::String(m.body().unwrap_or_default().to_owned()));
    let attributes = sqs_io::attributes(m);
    let letter = sqs_io::letter(role, m);
    let mut code = ExitCode::SUCCESS;
    let mut fetched = Value::Null;
    match store_io::resolve(letter.clone(), &S3Objects::new(&sdk)).await {
        // The payload the letter store keeps, as the letter would hold it had it fitted.
        Ok((Letter::Dead(d), Some(at))) => {
            fetched = json!({"from": at, "payload": d.payload.bytes().as_deref().map(payload)});
        }
        Ok(_) => {}
        Err(e) => {
            fetched = json!({"error": e.to_string()});
            code = ExitCode::from(1);
        }
    }
    if args.fetch && fetched.is_null() {
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        // What a redrive would put back, read as the redrive reads it; a letter that holds its payload has
        // nothing on the stream to read.
        let holds_payload = letter.named_record().is_some_and(|r| r.data.is_some());
        let named = if holds_payload {
            None
        } else {
            kinesis_io::named_records(&letter, &stack, &kinesis, None).await?
        };
        fetched = match named {
            Some((_, _, records)) => {
                let shown: Vec<Value> = records
                    .iter()
                    .map(|r| {
                        json!({"partitionKey": r.partition_key, "sequenceNumber": r.sequence_number,
                                    "record": payload(&r.data)})
                    })
                    .collect();
                match &letter {
                    Letter::KinesisBatch { .. } => json!(shown),
                    _ => shown.into_iter().next().unwrap_or(Value::Null),
                }
            }
            None => json!("nothing to fetch: the message holds its payload"),
        };
    }
    let doc = json!({"queue": role.name(), "messageId": m.message_id(), "age": age(m).map(human),
                     "receiveCount": system(m, MessageSystemAttributeName::ApproximateReceiveCount),
                     "reason": letter.reason(), "attributes": attributes, "body": body, "fetched": fetched});
    println!("{}", output::json(&doc));
    Ok(code)
}

/// A payload for display: its JSON, else its text, else base64.
fn payload(data: &[u8]) -> Value {
    use base64::Engine;
    serde_json::from_slice(data).unwrap_or_else(|_| match std::str::from_utf8(data) {
        Ok(t) => Value::String(t.to_owned()),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(data)}),
    })
}
