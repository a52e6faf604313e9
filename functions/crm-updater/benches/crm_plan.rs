//! crm-updater's CPU work for a 200-event SQS batch, before and between its network calls: decode the
//! invocation payload, parse every event, apply the mapping's filters, pick the ordering version, map the
//! golden values, plan merges (survivor, archived losers, child-record queries), group the batch into
//! per-entity rounds, hash each plan (the ledger's no-op check, on claim and commit) and serialise the sObject
//! Collections request bodies. Target (issue 7): ≤ 2 ms. Prints a figures table after criterion's report.
//!
//! The handler's planning steps are private; this follows them through the public API of
//! `mdm_sync_domain::crm` (the same functions the handler calls). Entity fetches for merge events are answered
//! from memory (a clone of the snapshot, as a fetch would produce); ledger and Salesforce calls are left out.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use criterion::Criterion;
use mdm_sync_adapters::salesforce::{RecordUpdate, MAX_COLLECTION};
use mdm_sync_domain::crm::{child_query, parse_version, plan_contacts, ContactPlan, CrmMapping};
use mdm_sync_domain::reltio::event::{EventCategory, ReltioEvent};
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
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

fn attribute<'a>(m: &'a SqsMessage, name: &str) -> Option<&'a str> {
    m.message_attributes
        .get(name)
        .and_then(|a| a.string_value.as_deref())
        .filter(|s| !s.is_empty())
}

struct Item {
    version: Option<i64>,
    entity: Option<Value>,
    event_uri: Option<String>,
    entity_uri: Option<String>,
    plan: Option<ContactPlan>,
}

/// The handler's planning path for one invocation; returns the bytes of the Collections bodies.
fn plan_batch(mapping: &CrmMapping, payload: &[u8], fetched: &HashMap<String, Value>) -> usize {
    let event: SqsEvent = serde_json::from_slice(payload).unwrap();
    let mut items: Vec<Item> = event
        .records
        .iter()
        .filter_map(|m| {
            let body = m.body.clone().unwrap_or_default();
            let _event_id = attribute(m, "eventId").map(str::to_owned);
            let event: ReltioEvent = serde_json::from_str(&body).ok()?;
            if !mapping.event_types.matches(&event.event_type)
                || !mapping.entity_types.matches(event.entity_type())
            {
                return None;
            }
            let explicit_version = attribute(m, "objectVersion")
                .and_then(parse_version)
                .or_else(|| event.object_version().as_deref().and_then(parse_version));
            let complete = event.object.as_ref().is_some_and(|o| {
                o.uri.is_some() && o.attributes.is_some() && o.crosswalks.is_some()
            });
            let is_merge = EventCategory::of(&event.event_type) == Some(EventCategory::Merge);
            let (version, entity) = match event.object.as_ref() {
                Some(o) if complete && !event.exceeded_queue_size_limit && !is_merge => (
                    explicit_version.or(o.updated_time).or(event.updated_time),
                    Some(
                        json!({"uri": o.uri, "type": o.entity_type, "attributes": o.attributes,
                                "crosswalks": o.crosswalks}),
                    ),
                ),
                _ => (explicit_version, None),
            };
            Some(Item {
                version,
                entity,
                event_uri: event.entity_uri().map(str::to_owned),
                entity_uri: None,
                plan: None,
            })
        })
        .collect();
    for item in &mut items {
        if item.entity.is_none() {
            item.entity = item
                .event_uri
                .as_ref()
                .and_then(|u| fetched.get(u))
                .cloned();
        }
        let Some(entity) = item.entity.as_ref() else {
            continue;
        };
        item.entity_uri = entity.get("uri").and_then(Value::as_str).map(str::to_owned);
        item.plan = plan_contacts(mapping, entity);
    }
    let mut per_entity: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (idx, item) in items.iter().enumerate() {
        if item.plan.is_some() {
            per_entity
                .entry(item.entity_uri.clone().unwrap_or_default())
                .or_default()
                .push(idx);
        }
    }
    let rounds = per_entity.values().map(Vec::len).max().unwrap_or(0);
    let mut bytes = 0;
    for k in 0..rounds {
        let mut records: Vec<RecordUpdate> = Vec::new();
        for idx in per_entity.values().filter_map(|v| v.get(k).copied()) {
            let item = &items[idx];
            black_box(item.version);
            let plan = item.plan.clone().expect("grouped items have a plan");
            // The ledger compares this hash with the last applied one (claim) and records it (commit).
            black_box(plan.hash());
            records.push(RecordUpdate {
                sobject: "Contact".into(),
                id: plan.survivor.clone(),
                fields: plan.survivor_fields.clone(),
            });
            for (id, fields) in &plan.archived {
                records.push(RecordUpdate {
                    sobject: "Contact".into(),
                    id: id.clone(),
                    fields: fields.clone(),
                });
            }
            for rel in &mapping.children {
                black_box(child_query(rel, &plan.losers()));
            }
            black_box(plan.hash());
        }
        records.retain(|r| !r.fields.is_empty());
        // The sObject Collections bodies, as SalesforceClient::update_records writes them.
        for chunk in records.chunks(MAX_COLLECTION) {
            let body: Vec<Value> = chunk
                .iter()
                .map(|r| {
                    let mut m = r.fields.clone();
                    m.insert("attributes".into(), json!({ "type": r.sobject }));
                    m.insert("id".into(), Value::String(r.id.clone()));
                    Value::Object(m)
                })
                .collect();
            bytes += serde_json::to_vec(&json!({ "allOrNone": false, "records": body }))
                .unwrap()
                .len();
        }
    }
    bytes
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
    assert!(plan_batch(&mapping, &payload, &fetched) > 0);

    let mut c = Criterion::default().configure_from_args().sample_size(30);
    c.bench_function("crm: plan a 200-event batch", |b| {
        b.iter(|| plan_batch(black_box(&mapping), black_box(&payload), &fetched))
    });
    c.final_summary();

    let t = per_call(
        || {
            black_box(plan_batch(&mapping, &payload, &fetched));
        },
        20,
        15,
    );
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
                black_box(serde_json::from_str::<ReltioEvent>(black_box(b)).unwrap());
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
        ("parse of the 200 event bodies (ReltioEvent) alone", parse),
    ] {
        println!(
            "| crm-updater: {step} | {:.2} ms | |",
            d.as_secs_f64() * 1e3
        );
    }
}
