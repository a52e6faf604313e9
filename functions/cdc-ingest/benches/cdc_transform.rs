//! CDC transform of a 10,000-record DMS batch (decode, map, build the Reltio request bodies) against the
//! physical floor: a bare `serde_json` parse of the same record bytes into `serde_json::Value`.
//! Target: transform ≤ 1.5 × the bare parse. Prints a figures table after criterion's report.
//!
//! With `BENCH_CDC_EVENT` (a Kinesis event JSON file) and `BENCH_CDC_MAPPING` (a mapping TOML) set, as
//! `make bench-cdc EVENT=… MAPPING=…` does, it times that event instead: the whole path from the event's bytes to
//! the serialised POST bodies, and a bare parse of the same record bytes, each the median of several runs after
//! a warm-up, printed as two lines.

// Linked for its global allocator (mimalloc, see its lib.rs): the path is timed as the function runs it. Nothing
// else of the crate is used, and an unused crate would not be linked.
use cdc_ingest as _;
use criterion::Criterion;
use mdm_sync_adapters::kinesis::{cdc_inputs, KinesisEvent, KinesisEventRecord};
use mdm_sync_domain::cdc::batch::{plan_batch, BatchPlan};
use mdm_sync_domain::cdc::mapping::CdcMapping;
use mdm_sync_domain::cdc::transform::WriteOp;
use mdm_sync_domain::reltio::model::EntityBody;
use mdm_sync_testkit::kinesis_event;
use std::hint::black_box;
use std::time::{Duration, Instant};

const RECORDS: usize = 10_000;
const BATCH_SIZE: usize = 100;

/// Realistic one-line DMS records: inserts and updates (some with before images) of distinct customers.
fn records() -> Vec<KinesisEventRecord> {
    let datas: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| {
            let op = if i % 3 == 0 { "insert" } else { "update" };
            let before = if i % 3 == 1 { format!(r#","before-image":{{"id":{i}}}"#) } else { String::new() };
            format!(
                r#"{{"data":{{"id":{i},"first_name":"First{i}","last_name":"Last{i}","email":" Person.{i}@Example.com ","city":"Austin","street":"{i} Main St","zip":"78701","birth_date":"1990-03-04 00:00:00","balance":12.5}}{before},"metadata":{{"timestamp":"2024-07-29T00:58:17.983670Z","record-type":"data","operation":"{op}","partition-key-type":"primary-key","partition-key-value":"public.customer.{i}","schema-name":"public","table-name":"customer","transaction-id":{i},"commit-timestamp":"2024-07-29T00:58:17.974340Z","stream-position":"00000002/7C007178.3.00000002/7C007178","transaction-record-id":1}}}}"#
            )
            .into_bytes()
        })
        .collect();
    let pairs: Vec<(&str, &[u8])> = datas.iter().map(|d| ("k", d.as_slice())).collect();
    let event: KinesisEvent = serde_json::from_value(kinesis_event(&pairs)).unwrap();
    event.records
}

fn bare_parse(records: &[KinesisEventRecord]) -> usize {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.kinesis.data)
                .map(|v| v.as_object().map_or(0, |o| o.len()))
                .unwrap_or(0)
        })
        .sum()
}

/// Everything the handler does before the network: decode, plan, schedule, and serialise each POST body.
fn transform(mapping: &CdcMapping, records: &[KinesisEventRecord]) -> usize {
    serialise(&plan_batch(
        mapping,
        "before-image",
        &cdc_inputs(records),
        chrono::Utc::now(),
    ))
}

/// Serialises every POST body of the plan, in requests of `BATCH_SIZE`, as the Reltio client does; the bytes.
fn serialise(plan: &BatchPlan) -> usize {
    let mut bytes = 0;
    for wave in &plan.waves {
        let bodies: Vec<&EntityBody> = wave
            .iter()
            .filter_map(|w| match &w.write.op {
                WriteOp::Post { body, .. } => Some(body),
                WriteOp::DeleteCrosswalk => None,
            })
            .collect();
        for chunk in bodies.chunks(BATCH_SIZE) {
            bytes += serde_json::to_vec(chunk).unwrap().len();
        }
    }
    bytes
}

/// The handler's path from the Lambda event's bytes: deserialise the event (base64 included), then `transform`.
fn event_to_bodies(mapping: &CdcMapping, event: &[u8]) -> usize {
    let event: KinesisEvent = serde_json::from_slice(event).expect("a Kinesis event");
    transform(mapping, &event.records)
}

/// `make bench-cdc`: the given event and mapping, two lines of figures.
fn bench_given_event(event_path: &str, mapping_path: &str) {
    let mapping = CdcMapping::load(mapping_path).unwrap_or_else(|e| panic!("{mapping_path}: {e}"));
    let event = std::fs::read(event_path).unwrap_or_else(|e| panic!("{event_path}: {e}"));
    let records = serde_json::from_slice::<KinesisEvent>(&event)
        .unwrap_or_else(|e| panic!("{event_path} is not a Kinesis event: {e}"))
        .records;
    // `BENCH_CDC_LOOP=N`: only the path, N times, for `perf record` (no bare parse in the profile).
    if let Some(n) = std::env::var("BENCH_CDC_LOOP")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        for _ in 0..n {
            black_box(event_to_bodies(&mapping, &event));
        }
        return;
    }
    assert!(
        event_to_bodies(&mapping, &event) > 0,
        "the event produced no request bodies"
    );
    for _ in 0..3 {
        black_box(event_to_bodies(&mapping, &event));
        black_box(bare_parse(&records));
    }
    let full = median(
        || {
            black_box(event_to_bodies(&mapping, &event));
        },
        11,
    );
    let parse = median(
        || {
            black_box(bare_parse(&records));
        },
        11,
    );
    println!(
        "event bytes -> bodies: {:.1} ms ({} records)",
        full.as_secs_f64() * 1e3,
        records.len()
    );
    println!("bare parse: {:.1} ms", parse.as_secs_f64() * 1e3);
    if std::env::var_os("BENCH_CDC_BREAKDOWN").is_some() {
        breakdown(&mapping, &event, &records);
    }
}

/// Where the path's time goes (`BENCH_CDC_BREAKDOWN=1`): the Lambda event's deserialisation (base64
/// included), decoding and planning the records, and serialising the POST bodies.
fn breakdown(mapping: &CdcMapping, event: &[u8], records: &[KinesisEventRecord]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let event_parse = median(
        || {
            black_box(serde_json::from_slice::<KinesisEvent>(event).expect("a Kinesis event"));
        },
        11,
    );
    let inputs = cdc_inputs(records);
    let plan = median(
        || {
            black_box(plan_batch(
                mapping,
                "before-image",
                &inputs,
                chrono::Utc::now(),
            ));
        },
        11,
    );
    let batch = plan_batch(mapping, "before-image", &inputs, chrono::Utc::now());
    let serialising = median(
        || {
            black_box(serialise(&batch));
        },
        11,
    );
    println!(
        "breakdown: event deserialisation {:.1} ms, decode + plan {:.1} ms, serialise bodies {:.1} ms",
        ms(event_parse),
        ms(plan),
        ms(serialising)
    );
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    if let (Ok(event), Ok(mapping)) = (
        std::env::var("BENCH_CDC_EVENT"),
        std::env::var("BENCH_CDC_MAPPING"),
    ) {
        return bench_given_event(&event, &mapping);
    }
    let mapping = CdcMapping::parse(include_str!("../mapping.example.toml")).unwrap();
    let records = records();
    assert!(transform(&mapping, &records) > 0);

    let mut c = Criterion::default().configure_from_args().sample_size(20);
    c.bench_function("cdc: bare serde_json parse of 10,000 records", |b| {
        b.iter(|| bare_parse(black_box(&records)))
    });
    c.bench_function("cdc: transform 10,000 records", |b| {
        b.iter(|| transform(black_box(&mapping), black_box(&records)))
    });
    c.final_summary();

    let parse = median(
        || {
            black_box(bare_parse(&records));
        },
        15,
    );
    let full = median(
        || {
            black_box(transform(&mapping, &records));
        },
        15,
    );
    let ratio = full.as_secs_f64() / parse.as_secs_f64();
    println!("\n| figure | measured | target |");
    println!("| --- | --- | --- |");
    println!(
        "| bare serde_json parse, 10,000 DMS records | {:.1} ms | (floor) |",
        parse.as_secs_f64() * 1e3
    );
    println!(
        "| CDC transform, 10,000 DMS records | {:.1} ms | |",
        full.as_secs_f64() * 1e3
    );
    println!(
        "| transform / bare parse | {ratio:.2} x | <= 1.5 x{} |",
        if ratio <= 1.5 { "" } else { "  NOT MET" }
    );
}
