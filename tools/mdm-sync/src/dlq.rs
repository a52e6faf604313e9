//! `mdm-sync dlq`: the stack's dead-letter and failure queues listed (depth, oldest message, reasons counted), one
//! message shown in full (its payload fetched back from the stream when the letter left it out), and the queue
//! helpers `redrive` uses.

use crate::error::CliError;
use crate::letters::{read, Letter, Role};
use crate::output;
use crate::redrive;
use crate::stack::{self, Stack};
use crate::Global;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use clap::Subcommand;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Every dead-letter and failure queue of the stack: depth, the oldest message's age, reasons counted.
    List {
        /// Messages read from each queue to find the oldest and count the reasons.
        #[arg(long, default_value_t = 100)]
        peek: usize,
    },
    /// One message in full: the first one, or `--message-id`.
    Show {
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
    },
    /// Puts dead letters back where they came from, each deleted only once its re-put succeeded.
    Redrive(redrive::RedriveArgs),
}

pub async fn run(g: &Global, command: DlqCommand) -> Result<ExitCode, CliError> {
    let sdk = stack::sdk().await;
    let stack = Stack::load(g, &sdk).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    match command {
        DlqCommand::List { peek } => list(g, &stack, &sqs, peek).await,
        DlqCommand::Show {
            queue,
            message_id,
            fetch,
            peek,
        } => {
            show(
                &stack,
                &sdk,
                &sqs,
                &queue,
                message_id.as_deref(),
                fetch,
                peek,
            )
            .await
        }
        DlqCommand::Redrive(args) => redrive::run(g, &stack, &sdk, &sqs, args).await,
    }
}

/// Messages now on the queue, up to `max`, each received once and released at once (visible again).
async fn peek(sqs: &aws_sdk_sqs::Client, url: &str, max: usize) -> Result<Vec<Message>, CliError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while out.len() < max {
        let got = receive(sqs, url, 30, (max - out.len()).min(10)).await?;
        let mut fresh = Vec::new();
        for m in got {
            if seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                fresh.push(m);
            } else {
                // Received again (its 30 s ran out): this receipt is the one that hides it now.
                release(sqs, url, &m).await;
            }
        }
        if fresh.is_empty() {
            break;
        }
        out.extend(fresh);
    }
    for m in &out {
        release(sqs, url, m).await;
    }
    Ok(out)
}

pub(crate) async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    visibility: i32,
    n: usize,
) -> Result<Vec<Message>, CliError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(n.clamp(1, 10) as i32)
        .visibility_timeout(visibility)
        .wait_time_seconds(0)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| CliError::aws(&format!("receiving from {url}"), e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Makes a message visible again at once.
pub(crate) async fn release(sqs: &aws_sdk_sqs::Client, url: &str, m: &Message) {
    if let Some(handle) = m.receipt_handle() {
        let _ = sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
}

pub(crate) fn attribute(m: &Message, name: &str) -> Option<String> {
    m.message_attributes()?
        .get(name)?
        .string_value()
        .map(str::to_owned)
}

pub(crate) fn system(m: &Message, name: MessageSystemAttributeName) -> Option<String> {
    m.attributes()?.get(&name).cloned()
}

pub(crate) fn letter_of(role: Role, m: &Message) -> Letter {
    read(role, m.body().unwrap_or_default(), |n| attribute(m, n))
}

pub(crate) async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, CliError> {
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| CliError::aws(&format!("reading {url}"), e))?
        .attributes
        .unwrap_or_default();
    let n = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
        + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
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

async fn list(
    g: &Global,
    stack: &Stack,
    sqs: &aws_sdk_sqs::Client,
    max: usize,
) -> Result<ExitCode, CliError> {
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
        let n = depth(sqs, url).await?;
        let peeked = if n > 0 {
            peek(sqs, url, max).await?
        } else {
            Vec::new()
        };
        let oldest = peeked.iter().filter_map(age).max();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for m in &peeked {
            *reasons
                .entry(letter_of(role, m).reason().to_owned())
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

pub(crate) fn stream_of(
    letter_stream: Option<&str>,
    args_stream: Option<&str>,
    stack: &Stack,
) -> Result<String, CliError> {
    args_stream
        .or(letter_stream)
        .or(stack.get(stack::CDC_STREAM))
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Config(
                "no CDC stream: give --stream, --stack or --set CdcStreamArn=ARN".into(),
            )
        })
}

#[allow(clippy::too_many_arguments)]
async fn show(
    stack: &Stack,
    sdk: &aws_config::SdkConfig,
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    message_id: Option<&str>,
    fetch: bool,
    max: usize,
) -> Result<ExitCode, CliError> {
    let role = Role::named(queue)?;
    let url = stack.require(role.output())?;
    let peeked = peek(sqs, url, max).await?;
    let Some(m) = peeked
        .iter()
        .find(|m| message_id.is_none_or(|id| m.message_id() == Some(id)))
    else {
        eprintln!("no such message on {queue} ({} read)", peeked.len());
        return Ok(ExitCode::from(1));
    };
    let body: Value = serde_json::from_str(m.body().unwrap_or_default())
        .unwrap_or_else(|_| Value::String(m.body().unwrap_or_default().to_owned()));
    let attributes: BTreeMap<String, String> = m
        .message_attributes()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
        .collect();
    let letter = letter_of(role, m);
    let mut fetched = Value::Null;
    if fetch {
        let kinesis = aws_sdk_kinesis::Client::new(sdk);
        // What a redrive would put back, read as the redrive reads it; a letter that holds its payload has
        // nothing on the stream to read.
        let holds_payload = letter.named_record().is_some_and(|r| r.data.is_some());
        let named = if holds_payload {
            None
        } else {
            redrive::named_records(&letter, stack, &kinesis, None).await?
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
    Ok(ExitCode::SUCCESS)
}

/// A payload for display: its JSON, else its text, else base64.
pub(crate) fn payload(data: &[u8]) -> Value {
    use base64::Engine;
    serde_json::from_slice(data).unwrap_or_else(|_| match std::str::from_utf8(data) {
        Ok(t) => Value::String(t.to_owned()),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(data)}),
    })
}
