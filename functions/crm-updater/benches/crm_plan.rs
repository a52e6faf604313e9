//! crm-updater's CPU work for a 200-event SQS batch, everything but the network: decode the invocation payload,
//! parse every event, apply the mapping's filters, pick the ordering versions, map the golden values, plan
//! merges (survivor, archived losers, child-record queries), group the batch into rounds, pack the sObject
//! Collections requests, conclude each message and settle the batch. Target: ≤ 2 ms. Prints a figures table
//! after criterion's report.
//!
//! It runs the handler itself (`crm_updater::handle`: the planner and the executor) over the in-memory fakes of
//! its ports: entity fetches for merge events are answered from memory, the ledger grants every claim of a
//! fresh batch, Salesforce applies every write.

use criterion::Criterion;
use crm_updater::{handle, Config, Deps};
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_domain::backoff::{VisibilityChange, VisibilityFailure};
use mdm_sync_domain::crm::plan::CrmEvent;
use mdm_sync_domain::crm::CrmMapping;
use mdm_sync_domain::ports::MessageVisibility;
use mdm_sync_testkit::fakes::{FakeLedger, FakeQueue, FakeReltio, FakeSalesforce};
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: usize = 200;
const TARGET: Duration = Duration::from_millis(2);
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:mdm-sync-events";

fn contact_id(n: usize) -> String {
    format!("003AB{n:013}")
}

/// The snapshot Reltio streams for entity `e` at version `v`: every 8th entity holds two Contacts (a merge).
fn snapshot(e: usize, v: usize) -> Value {
    let uri = format!("entities/0E{e:06}");
    let attr = |name: &str, n: usize, value: Value| {
        json!({"type": format!("configuration/entityTypes/Individual/attributes/{name}"), "ov": true,
               "value": value, "uri": format!("{uri}/attributes/{name}/{n}")})
    };
    let mut crosswalks = vec![
        json!({"uri": format!("{uri}/crosswalks/1"), "type": "configuration/sources/SFDC_CONTACT",
               "value": contact_id(2 * e), "createDate": 1722214600000i64, "updateDate": 1722214697983i64}),
        json!({"uri": format!("{uri}/crosswalks/2"), "type": "configuration/sources/CRM_DB",
               "value": (1000 + e).to_string(), "sourceTable": "CUSTOMER",
               "createDate": 1722214600000i64, "updateDate": 1722214697983i64}),
    ];
    if e % 8 == 3 {
        crosswalks.push(json!({"uri": format!("{uri}/crosswalks/3"), "type": "configuration/sources/SFDC_CONTACT",
                               "value": contact_id(2 * e + 1), "createDate": 1722214600000i64,
                               "updateDate": 1722214697983i64}));
    }
    json!({
        "uri": uri,
        "type": "configuration/entityTypes/Individual",
        "createdTime": 1722214600000i64,
        "updatedTime": 1722214697983i64 + v as i64,
        "attributes": {
            "FirstName": [attr("FirstName", 1, json!(format!(" Person{e} ")))],
            "LastName": [attr("LastName", 2, json!(format!("Last{e}-v{v}")))],
            "Email": [attr("Email", 3, json!({"Email": [attr("Email/Email", 4, json!(format!("Person.{e}@Example.com")))]}))],
            "Address": [attr("Address", 5, json!({"City": [attr("Address/City", 6, json!("Austin"))],
                                                  "Zip": [attr("Address/Zip", 7, json!("78701"))]}))],
            "Phone": [attr("Phone", 8, json!(format!("+1-512-555-{e:04}")))]
        },
        "crosswalks": crosswalks
    })
}

/// `(message id, body, message attributes)`.
type Message = (String, String, Vec<(&'static str, String)>);

/// 200 messages: 170 `ENTITY_CHANGED` with full snapshots of 140 entities (30 of them change twice in the
/// batch) and 30 merge events (`ENTITIES_MERGED`, no snapshot: fetched) of entities holding two Contacts.
/// Returns the invocation payload and the snapshots a fetch would return.
fn batch() -> (Vec<u8>, HashMap<String, Value>) {
    let mut messages: Vec<Message> = Vec::new();
    let mut fetched = HashMap::new();
    for i in 0..EVENTS {
        let (e, v) = match i {
            0..140 => (i, 1),
            140..170 => (i - 140, 2),
            _ => (8 * (i - 170) + 3, 3),
        };
        let uri = format!("entities/0E{e:06}");
        let event = if i >= 170 {
            fetched.insert(uri.clone(), snapshot(e, v));
            json!({"type": "ENTITIES_MERGED", "tenantId": "T1", "objectVersion": v,
                   "updatedTime": 1722214697990i64, "uris": [uri, format!("entities/0L{e:06}")]})
        } else {
            json!({"type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": v,
                   "updatedTime": 1722214697983i64 + v as i64, "object": snapshot(e, v), "ovChanged": true})
        };
        let version = event["objectVersion"].to_string();
        let event_id = format!(
            "{}-{version}-{}",
            &uri[9..],
            event["type"].as_str().unwrap()
        );
        let attributes = vec![
            ("eventType", event["type"].as_str().unwrap().to_owned()),
            ("tenantId", "T1".to_owned()),
            ("sourceObjectUri", uri),
            ("objectVersion", version),
            ("eventId", event_id),
        ];
        messages.push((format!("msg-{i}"), event.to_string(), attributes));
    }
    let attrs: Vec<Vec<(&str, &str)>> = messages
        .iter()
        .map(|(_, _, a)| a.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let records: Vec<SqsTestMessage> = messages
        .iter()
        .zip(&attrs)
        .map(|((id, body, _), a)| (id.as_str(), body.as_str(), a.as_slice()))
        .collect();
    let payload = serde_json::to_vec(&sqs_event(QUEUE_ARN, &records)).unwrap();
    (payload, fetched)
}

fn config() -> Config {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("SALESFORCE_SECRET_ID", "sf"),
        ("RELTIO_API_URL", "https://reltio.example.com/reltio/api/T"),
        ("RELTIO_SECRET_ID", "reltio"),
        ("CRM_MAPPING_FILE", "unused"),
        ("SYNC_STATE_TABLE", "sync-state"),
        (
            "CRM_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/0/crm-dlq",
        ),
    ]);
    Config::from_env(&move |name: &str| vars.get(name).map(|v| v.to_string())).unwrap()
}

/// The event queue's visibility (the retry backoff): never asked for here, every message is applied.
struct NoRetries;

impl MessageVisibility for NoRetries {
    fn change<'a>(
        &'a self,
        _queue_url: &'a str,
        _changes: &'a [VisibilityChange],
    ) -> futures::future::BoxFuture<'a, Vec<VisibilityFailure>> {
        Box::pin(async { Vec::new() })
    }
}

/// Fresh fakes for one invocation (a ledger that has seen nothing, Salesforce and Reltio answering from memory):
/// set up outside the timed part, as the real ports are built once per container.
fn fresh_deps(
    mapping: &CrmMapping,
    fetched: &HashMap<String, Value>,
    config: &Config,
) -> (Deps, Arc<FakeSalesforce>) {
    let salesforce = Arc::new(FakeSalesforce::default());
    let reltio = Arc::new(FakeReltio::default());
    *reltio.entities.lock().unwrap() = fetched.clone();
    let deps = Deps {
        config: config.clone(),
        mapping: mapping.clone(),
        salesforce: salesforce.clone(),
        reltio: reltio.clone(),
        reltio_writer: reltio,
        ledger: Arc::new(FakeLedger::default()),
        dlq: Arc::new(FakeQueue::default()),
        letter_store: None,
        visibility: Arc::new(NoRetries),
    };
    (deps, salesforce)
}

/// The handler for one invocation, from the payload's bytes; returns the records written to Salesforce.
fn plan_batch(deps: &Deps, salesforce: &FakeSalesforce, payload: &[u8]) -> usize {
    let event: SqsEvent = serde_json::from_slice(payload).unwrap();
    let handled = futures::executor::block_on(handle(
        deps,
        event,
        Instant::now() + Duration::from_secs(60),
    ));
    assert!(handled.response.batch_item_failures.is_empty());
    let written = salesforce
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    written
}

/// Median over `runs` of the handler's time per invocation, each on fresh fakes set up beforehand.
fn per_invocation(
    mapping: &CrmMapping,
    fetched: &HashMap<String, Value>,
    config: &Config,
    payload: &[u8],
    runs: usize,
) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let (deps, salesforce) = fresh_deps(mapping, fetched, config);
            let t = Instant::now();
            black_box(plan_batch(&deps, &salesforce, payload));
            let elapsed = t.elapsed();
            drop(deps);
            elapsed
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// Median over `runs` of the mean time per call over `iters` calls.
fn per_call(mut f: impl FnMut(), iters: u32, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let mapping = CrmMapping::parse(include_str!("../mapping.example.toml")).unwrap();
    let (payload, fetched) = batch();
    let config = config();
    let (deps, salesforce) = fresh_deps(&mapping, &fetched, &config);
    assert!(plan_batch(&deps, &salesforce, &payload) > 0);

    let mut c = Criterion::default().configure_from_args().sample_size(30);
    c.bench_function("crm: plan a 200-event batch", |b| {
        b.iter_batched(
            || fresh_deps(&mapping, &fetched, &config),
            |(deps, salesforce)| plan_batch(&deps, &salesforce, black_box(&payload)),
            criterion::BatchSize::SmallInput,
        )
    });
    c.final_summary();
    // `cargo test` runs benches once as tests (no `--bench`): the figures below are for `cargo bench` only.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }

    let t = per_invocation(&mapping, &fetched, &config, &payload, 101);
    // Where the time goes: the invocation payload's decode, and the events' parse, alone.
    let decode = per_call(
        || {
            black_box(serde_json::from_slice::<SqsEvent>(black_box(&payload)).unwrap());
        },
        20,
        15,
    );
    let event: SqsEvent = serde_json::from_slice(&payload).unwrap();
    let bodies: Vec<&str> = event
        .records
        .iter()
        .filter_map(|m| m.body.as_deref())
        .collect();
    let parse = per_call(
        || {
            for b in &bodies {
                black_box(serde_json::from_str::<CrmEvent>(black_box(b)).unwrap());
            }
        },
        20,
        15,
    );
    println!("\n| figure | measured | target |");
    println!("| --- | --- | --- |");
    println!(
        "| crm-updater: plan a {EVENTS}-event batch ({} KB payload: decode, versions, mapping, merge plan, Collections bodies) | {:.2} ms | <= 2 ms{} |",
        payload.len() / 1024,
        t.as_secs_f64() * 1e3,
        if t <= TARGET { "" } else { "  NOT MET" }
    );
    for (step, d) in [
        (
            "decode of the SQS invocation payload (SqsEvent) alone",
            decode,
        ),
        (
            "parse of the 200 event bodies (CrmEvent: golden values only) alone",
            parse,
        ),
    ] {
        println!(
            "| crm-updater: {step} | {:.2} ms | |",
            d.as_secs_f64() * 1e3
        );
    }
}
