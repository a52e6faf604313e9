//! `mdm-sync dlq redrive`: dead letters put back where they came from, each message deleted only after its re-put
//! succeeded, so an interrupted redrive loses nothing and a second one finds nothing left to do (what it does
//! re-put again is a no-op for the ledgers).
//!
//! A letter whose payload is in the letter store is redriven with that payload, read back and checked against the
//! letter's size and SHA-256 (`store_io`); one that does not match is set aside as failed, never redriven.
//!
//! Events go back on their queue (FIFO group and deduplication ids kept); a redrive DLQ's messages back on their
//! source queue. The CDC queues go back on the stream in the source's order per key: every record the letters name
//! (a dead-lettered record, or the range of a Lambda on-failure record), then each of those keys' later records,
//! read from the shard up to its tip (`stream_order`), so that no key is left at an older state than the one it had
//! reached. `--range-only` puts only the named records.

use crate::error::CliError;
use crate::kinesis_io::{self, StreamRecord};
use crate::letters::{Filter, Letter, Role};
use crate::output;
use crate::sqs_io::{self, attribute, id, receive, release, system};
use crate::stack::{self, Stack};
use crate::store_io::{self, Objects, S3Objects};
use crate::stream_order::ordered_replay;
use crate::Global;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use clap::Args;
use mdm_sync_domain::letter::Origin;
use mdm_sync_domain::queue::OutgoingMessage;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

/// How long received messages stay invisible while a redrive works on them (the CDC path reads the stream first).
const HOLD_SECONDS: i32 = 900;

#[derive(Args)]
pub struct RedriveArgs {
    /// cdc, cdc-failures, events, crm, stream, stream-failures, analytics, analytics-queue.
    queue: String,
    /// Print what would be redriven; put and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only messages matching: reason=TEXT (a part of it), table=SCHEMA.TABLE, entity-type=TYPE (repeatable; all
    /// must match).
    #[arg(long)]
    filter: Vec<String>,
    /// At most this many messages.
    #[arg(long)]
    max: Option<usize>,
    /// At most this many messages a second (events; the CDC queues are put back shard by shard).
    #[arg(long)]
    rate: Option<f64>,
    /// The CDC stream (name or ARN), when neither the letter nor the stack names it.
    #[arg(long)]
    stream: Option<String>,
    /// CDC queues: put back only the records the letters name, not their keys' later records (which a redrive
    /// otherwise puts again after them, so that no key is left at an older state).
    #[arg(long)]
    range_only: bool,
}

/// What a redrive did.
#[derive(Default)]
struct Tally {
    redriven: u64,
    records_put: u64,
    later_records_put: u64,
    filtered: u64,
    failed: Vec<String>,
    unsupported: Vec<String>,
    planned: Vec<Value>,
}

/// Redrives the queue `args` names (exit 1 when a letter failed or is not redriven).
pub async fn run(g: &Global, args: RedriveArgs) -> Result<ExitCode, CliError> {
    let sdk = stack::sdk().await;
    let stack = &Stack::load(g, &sdk).await?;
    let sqs = &aws_sdk_sqs::Client::new(&sdk);
    let role = Role::named(&args.queue)?;
    let url = stack.require(role.output())?.to_owned();
    let filters: Vec<Filter> = args
        .filter
        .iter()
        .map(|f| Filter::parse(f).map_err(CliError::Usage))
        .collect::<Result<_, _>>()?;
    let limit = args.max.unwrap_or(usize::MAX);
    let total = sqs_io::depth(sqs, &url).await?;
    let bar = output::progress(
        total.min(limit as u64),
        if args.dry_run { "dry run" } else { "redriving" },
    );
    let mut tally = Tally::default();
    let objects = S3Objects::new(&sdk);
    let taken = take(sqs, &objects, &url, role, &filters, limit, &mut tally).await?;
    bar.set_length(taken.len() as u64);
    if matches!(role, Role::Cdc | Role::CdcFailures) {
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        redrive_to_stream(stack, sqs, &kinesis, &url, &args, taken, &bar, &mut tally).await;
    } else {
        redrive_to_queue(stack, sqs, &url, role, &args, taken, &bar, &mut tally).await?;
    }
    bar.finish_and_clear();
    report(g, role, &args, &tally);
    Ok(if tally.failed.is_empty() && tally.unsupported.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Receives up to `limit` matching messages and holds them, each letter with its payload read back from the
/// letter store when it points there (one that cannot be read, or does not match, is set aside as failed).
/// Messages the filters leave out are held too until the queue is read through (released at once, they would be
/// received again), then released together.
async fn take(
    sqs: &aws_sdk_sqs::Client,
    objects: &dyn Objects,
    url: &str,
    role: Role,
    filters: &[Filter],
    limit: usize,
    tally: &mut Tally,
) -> Result<Vec<(Message, Letter)>, CliError> {
    let mut seen = HashSet::new();
    let mut taken = Vec::new();
    let mut left = Vec::new();
    while taken.len() < limit {
        let batch = receive(sqs, url, HOLD_SECONDS, (limit - taken.len()).min(10)).await?;
        let mut fresh = Vec::new();
        for m in batch {
            if seen.insert(id(&m).to_owned()) {
                fresh.push(m);
            } else {
                // Received again (its hold ran out): this receipt is the one that hides it now.
                release(sqs, url, &m).await;
            }
        }
        if fresh.is_empty() {
            break;
        }
        for m in fresh {
            let letter = match store_io::resolve(sqs_io::letter(role, &m), objects).await {
                Ok((letter, _)) => letter,
                Err(e) => {
                    set_aside(sqs, url, &m, &mut tally.failed, e.to_string()).await;
                    continue;
                }
            };
            if taken.len() >= limit || !filters.iter().all(|f| f.matches(&letter)) {
                tally.filtered += u64::from(taken.len() < limit);
                left.push(m);
                continue;
            }
            taken.push((m, letter));
        }
    }
    for m in &left {
        release(sqs, url, m).await;
    }
    Ok(taken)
}

/// A letter not redriven this time: listed with why, and made visible again at once for another try.
async fn set_aside(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    m: &Message,
    list: &mut Vec<String>,
    why: String,
) {
    list.push(format!("{}: {why}", id(m)));
    release(sqs, url, m).await;
}

async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, m: &Message, tally: &mut Tally) {
    match sqs_io::delete(sqs, url, m).await {
        Ok(()) => tally.redriven += 1,
        // Re-put but not deleted: a second redrive puts it again, which the ledgers absorb.
        Err(why) => tally
            .failed
            .push(format!("{}: re-put, but not deleted: {why}", id(m))),
    }
}

/// Events and queue messages, one by one.
#[allow(clippy::too_many_arguments)]
async fn redrive_to_queue(
    stack: &Stack,
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    role: Role,
    args: &RedriveArgs,
    taken: Vec<(Message, Letter)>,
    bar: &indicatif::ProgressBar,
    tally: &mut Tally,
) -> Result<(), CliError> {
    let target = match role.source_queue() {
        Some(output) => Some(stack.require(output)?.to_owned()),
        None => None,
    };
    let pause = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut taken = taken.into_iter();
    for (m, letter) in taken.by_ref() {
        bar.inc(1);
        if args.dry_run {
            tally.planned.push(describe(&letter, m.message_id()));
            release(sqs, url, &m).await;
            continue;
        }
        match reput_message(&letter, &m, sqs, target.as_deref()).await {
            Ok(true) => {
                tally.records_put += 1;
                delete(sqs, url, &m, tally).await;
            }
            Ok(false) => {
                set_aside(
                    sqs,
                    url,
                    &m,
                    &mut tally.unsupported,
                    unsupported_hint(&letter),
                )
                .await
            }
            Err(e) => set_aside(sqs, url, &m, &mut tally.failed, e.to_string()).await,
        }
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
        if tally.failed.len() >= 10 {
            eprintln!("stopping: 10 re-puts failed");
            break;
        }
    }
    for (m, _) in taken {
        release(sqs, url, &m).await;
    }
    Ok(())
}

/// The messages of one shard's redrive, and the records they name.
#[derive(Default)]
struct ShardGroup {
    messages: Vec<Message>,
    named: Vec<StreamRecord>,
}

/// CDC letters back on the stream: grouped by stream and shard, each group's named records and their keys' later
/// records put in sequence order, the group's messages deleted once all of it is put.
#[allow(clippy::too_many_arguments)]
async fn redrive_to_stream(
    stack: &Stack,
    sqs: &aws_sdk_sqs::Client,
    kinesis: &aws_sdk_kinesis::Client,
    url: &str,
    args: &RedriveArgs,
    taken: Vec<(Message, Letter)>,
    bar: &indicatif::ProgressBar,
    tally: &mut Tally,
) {
    // (stream, shard): a record whose letter names no position forms a group of its own shard "".
    let mut groups: BTreeMap<(String, String), ShardGroup> = BTreeMap::new();
    for (m, letter) in taken {
        match kinesis_io::named_records(&letter, stack, kinesis, args.stream.as_deref()).await {
            Ok(Some((stream, shard, records))) => {
                let g = groups.entry((stream, shard)).or_default();
                g.messages.push(m);
                g.named.extend(records);
            }
            Ok(None) => {
                set_aside(
                    sqs,
                    url,
                    &m,
                    &mut tally.unsupported,
                    unsupported_hint(&letter),
                )
                .await
            }
            Err(e) => set_aside(sqs, url, &m, &mut tally.failed, e.to_string()).await,
        }
    }
    for ((stream, shard), mut group) in groups {
        let earliest = group
            .named
            .iter()
            .map(|r| r.sequence_number.as_str())
            .min_by(|a, b| kinesis_io::compare_sequence(a, b))
            .map(str::to_owned);
        let after = match (&earliest, args.range_only || shard.is_empty()) {
            (Some(start), false) => {
                match kinesis_io::read_from(kinesis, &stream, &shard, start, None).await {
                    Ok(rs) => rs,
                    Err(e) => {
                        fail_group(sqs, url, &group.messages, &format!("{e}"), tally).await;
                        continue;
                    }
                }
            }
            _ => Vec::new(),
        };
        let positioned = !shard.is_empty();
        let replay = if positioned {
            ordered_replay(std::mem::take(&mut group.named), after)
        } else {
            // Records without a position go back in their letters' order.
            let n = group.named.len();
            crate::stream_order::Replay {
                records: std::mem::take(&mut group.named),
                named: n,
                later: 0,
            }
        };
        bar.inc(group.messages.len() as u64);
        if args.dry_run {
            tally.planned.push(json!({
                "stream": stream, "shard": shard, "messages": group.messages.iter().map(id).collect::<Vec<_>>(),
                "namedRecords": replay.named, "laterRecords": replay.later,
                "partitionKeys": replay.records.iter().map(|r| r.partition_key.as_str())
                    .collect::<std::collections::BTreeSet<_>>()}));
            for m in &group.messages {
                release(sqs, url, m).await;
            }
            continue;
        }
        let pairs: Vec<(String, Vec<u8>)> = replay
            .records
            .into_iter()
            .map(|r| (r.partition_key, r.data))
            .collect();
        match kinesis_io::put_records(kinesis, &stream, &pairs).await {
            Ok(_) => {
                tally.records_put += replay.named as u64;
                tally.later_records_put += replay.later as u64;
                for m in &group.messages {
                    delete(sqs, url, m, tally).await;
                }
            }
            Err(e) => fail_group(sqs, url, &group.messages, &format!("{e}"), tally).await,
        }
    }
}

async fn fail_group(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    messages: &[Message],
    why: &str,
    tally: &mut Tally,
) {
    for m in messages {
        tally.failed.push(format!("{}: {why}", id(m)));
        release(sqs, url, m).await;
    }
}

fn report(g: &Global, role: Role, args: &RedriveArgs, tally: &Tally) {
    let summary = json!({"queue": role.name(), "dryRun": args.dry_run, "redriven": tally.redriven,
                         "recordsPut": tally.records_put, "laterRecordsPut": tally.later_records_put,
                         "skippedByFilter": tally.filtered, "failed": tally.failed,
                         "notRedriven": tally.unsupported, "planned": tally.planned});
    if g.json {
        println!("{}", output::json(&summary));
        return;
    }
    if args.dry_run {
        for p in &tally.planned {
            println!("would redrive {p}");
        }
    }
    let redriven = if args.dry_run {
        format!("{} (dry run)", tally.planned.len())
    } else {
        tally.redriven.to_string()
    };
    println!(
        "{}",
        output::table(
            &[
                "queue",
                "redriven",
                "records put",
                "later records put",
                "skipped (filter)",
                "failed",
                "not redriven"
            ],
            vec![vec![
                role.name().into(),
                redriven,
                tally.records_put.to_string(),
                tally.later_records_put.to_string(),
                tally.filtered.to_string(),
                tally.failed.len().to_string(),
                tally.unsupported.len().to_string(),
            ]]
        )
    );
    for f in tally.failed.iter().chain(&tally.unsupported) {
        eprintln!("  {f}");
    }
}

fn describe(letter: &Letter, id: Option<&str>) -> Value {
    let what = if let Some(event) = letter.queued_event() {
        format!("event {} onto its queue", event.id)
    } else if let Letter::Message { .. } = letter {
        "the message onto its source queue".into()
    } else {
        unsupported_hint(letter)
    };
    json!({"messageId": id, "reason": letter.reason(), "what": what})
}

fn unsupported_hint(letter: &Letter) -> String {
    match letter {
        Letter::Dead(d) => match &d.origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
                ..
            } => format!(
                "a Kafka record ({topic}-{partition}@{offset}): produce its value back to the topic with its \
                 key (kafka-console-producer), then delete the message"
            ),
            _ => "not redriven".into(),
        },
        Letter::KafkaBatch { ranges, .. } => format!(
            "Kafka offsets {}: re-read them from the topic while it retains them and produce them again",
            ranges.iter().map(|(tp, a, b)| format!("{tp} {a}..{b}")).collect::<Vec<_>>().join(", ")
        ),
        Letter::Unreadable(why) => format!("not redriven: {why}"),
        _ => "not redriven".into(),
    }
}

/// Puts one event or queue message back on its queue; `false` when this letter is not one.
async fn reput_message(
    letter: &Letter,
    m: &Message,
    sqs: &aws_sdk_sqs::Client,
    target: Option<&str>,
) -> Result<bool, CliError> {
    let fifo = target.is_some_and(|q| q.ends_with(".fifo"));
    let Some(message) = queue_message(letter, m, fifo) else {
        return Ok(false);
    };
    let queue =
        target.ok_or_else(|| CliError::Config("no source queue for these messages".into()))?;
    sqs_io::send(sqs, queue, message).await?;
    Ok(true)
}

/// What a queue redrive sends for letter `letter` of message `m`: a dead-lettered event exactly as written, with
/// the attributes and FIFO ids the webhook receiver gives it (text that is no event, with its id); a redrive DLQ's
/// message as it is, with its attributes and FIFO ids. `None` for a letter that is neither.
fn queue_message(letter: &Letter, m: &Message, fifo: bool) -> Option<OutgoingMessage> {
    if let Some(event) = letter.queued_event() {
        let message =
            match mdm_sync_domain::webhook::parse_body(event.text.as_bytes(), Some(event.id)) {
                Ok(events) if events.len() == 1 => events[0].to_message(fifo),
                // Not an event (it was dead-lettered for that): the same text, with its id.
                _ => OutgoingMessage {
                    body: event.text.to_owned(),
                    attributes: vec![("eventId".into(), event.id.to_owned())],
                    group_id: fifo.then(|| event.id.to_owned()),
                    dedup_id: fifo.then(|| event.id.to_owned()),
                },
            };
        return Some(message);
    }
    let Letter::Message { .. } = letter else {
        return None;
    };
    Some(OutgoingMessage {
        body: m.body().unwrap_or_default().to_owned(),
        group_id: fifo.then(|| {
            system(m, MessageSystemAttributeName::MessageGroupId)
                .or_else(|| attribute(m, "sourceObjectUri"))
                .unwrap_or_else(|| "redrive".into())
        }),
        dedup_id: fifo.then(|| {
            system(m, MessageSystemAttributeName::MessageDeduplicationId)
                .or_else(|| attribute(m, "eventId"))
                .unwrap_or_else(|| id(m).to_owned())
        }),
        attributes: sqs_io::attributes(m).into_iter().collect(),
    })
}

#[cfg(test)]
mod tests;
