//! webhook-receiver's CPU work for one signed 4 KB Reltio event: collect the headers, verify the
//! `X-Reltio-Signature` over `<timestamp>.<body>` (two secrets listed, current first, as during a rotation),
//! parse the body, apply the subscription filter and build the SQS `SendMessageBatch` entries plus the request
//! body the SDK sends (AWS JSON 1.0). Target (issue 7): ≤ 20 µs. Prints a figures table after criterion's
//! report, with the time of each step alone.
//!
//! Not included: lambda_http's conversion of the API Gateway event into a `Request` and the network call.

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use criterion::Criterion;
use mdm_sync_domain::reltio::event::{EntityTypeFilter, EventTypeFilter};
use mdm_sync_domain::webhook::signature::{RELTIO_EVENT_ID, RELTIO_SIGNATURE, RELTIO_TIMESTAMP};
use mdm_sync_domain::webhook::{
    parse_body, sign_reltio, verify, RequestHeaders, Subscription, VerifyOptions, WebhookSecrets,
};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};

const EVENT_BYTES: usize = 4096;
const SECRET: &str = "bench-webhook-secret-current";
const QUEUE_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/mdm-sync-events";
const TARGET: Duration = Duration::from_micros(20);

/// An `ENTITY_CHANGED` event with a full snapshot, grown with more crosswalks until it is ~4 KB.
fn event_body() -> Vec<u8> {
    let uri = "entities/0Abc123";
    let attr = |name: &str, n: usize, value: Value| {
        json!({"type": format!("configuration/entityTypes/Individual/attributes/{name}"), "ov": true,
               "value": value, "uri": format!("{uri}/attributes/{name}/{n}")})
    };
    let mut attributes = Map::new();
    attributes.insert(
        "FirstName".into(),
        json!([attr("FirstName", 1, json!("Jane"))]),
    );
    attributes.insert(
        "LastName".into(),
        json!([attr("LastName", 2, json!("Doe"))]),
    );
    attributes.insert(
        "Email".into(),
        json!([attr(
            "Email",
            3,
            json!({"Email": [attr("Email/Email", 4, json!("jane.doe@example.com"))]})
        )]),
    );
    attributes.insert(
        "Address".into(),
        json!([attr(
            "Address",
            5,
            json!({
                "City": [attr("Address/City", 6, json!("Austin"))],
                "AddressLine1": [attr("Address/AddressLine1", 7, json!("500 Main St"))],
                "Zip": [attr("Address/Zip", 8, json!("78701"))]
            })
        )]),
    );
    attributes.insert(
        "Phone".into(),
        json!([attr("Phone", 9, json!("+1-512-555-0100"))]),
    );
    let mut crosswalks = Vec::new();
    loop {
        let i = crosswalks.len();
        let event = json!({
            "type": "ENTITY_CHANGED",
            "tenantId": "T1",
            "objectVersion": 12,
            "updatedTime": 1722214697983i64,
            "object": {
                "uri": uri,
                "type": "configuration/entityTypes/Individual",
                "createdTime": 1722214600000i64,
                "updatedTime": 1722214697983i64,
                "attributes": attributes,
                "crosswalks": crosswalks,
            },
            "ovChanged": true
        });
        let bytes = serde_json::to_vec(&event).unwrap();
        if bytes.len() >= EVENT_BYTES {
            return bytes;
        }
        crosswalks.push(json!({
            "uri": format!("{uri}/crosswalks/{i}"),
            "type": if i % 2 == 0 { "configuration/sources/SFDC_CONTACT" } else { "configuration/sources/CRM_DB" },
            "value": format!("003AB0000{i:07}"),
            "sourceTable": if i % 2 == 0 { "" } else { "CUSTOMER" },
            "createDate": "2024-07-29T00:58:17.983Z",
            "updateDate": "2024-07-29T00:58:17.983Z",
        }));
    }
}

/// Request headers as API Gateway HTTP API v2 passes them (lower case), signed now.
fn request_headers(body: &[u8], now: i64) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("user-agent".into(), "Reltio-Webhook/1.0".into()),
        ("x-forwarded-proto".into(), "https".into()),
        ("x-forwarded-for".into(), "203.0.113.7".into()),
        (RELTIO_TIMESTAMP.into(), now.to_string()),
        (
            RELTIO_SIGNATURE.into(),
            sign_reltio(SECRET, Some(now), body),
        ),
        (RELTIO_EVENT_ID.into(), "0Abc123-12-ENTITY_CHANGED".into()),
    ]
}

/// Everything `webhook_receiver::respond` computes for one request before its SQS call.
fn handle_request(
    raw_headers: &[(String, String)],
    body: &[u8],
    secrets: &WebhookSecrets,
    subscription: &Subscription,
    now: i64,
) -> usize {
    let headers: RequestHeaders = raw_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let verified = verify(&headers, body, secrets, now, VerifyOptions::default()).unwrap();
    let delivery_id = headers
        .get(RELTIO_EVENT_ID)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .or(verified.webhook_id.as_deref());
    let events = parse_body(body, delivery_id).unwrap();
    let messages: Vec<_> = events
        .iter()
        .filter(|e| subscription.matches(e))
        .map(|e| e.to_message(false))
        .collect();
    // The SDK entries, as mdm_sync_adapters::sqs builds them, and the JSON body the SDK would send.
    let entries: Vec<SendMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut b = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&m.body)
                .set_message_group_id(m.group_id.clone())
                .set_message_deduplication_id(m.dedup_id.clone());
            for (name, value) in &m.attributes {
                b = b.message_attributes(
                    name,
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(value)
                        .build()
                        .unwrap(),
                );
            }
            b.build().unwrap()
        })
        .collect();
    // The request body, written straight from the entries as the SDK's JSON serializer (aws-smithy-json's
    // `JsonObjectWriter`) writes it: no intermediate tree.
    let wire = WireRequest {
        queue_url: QUEUE_URL,
        entries: entries
            .iter()
            .map(|e| WireEntry {
                id: e.id(),
                message_body: e.message_body(),
                message_group_id: e.message_group_id(),
                message_deduplication_id: e.message_deduplication_id(),
                message_attributes: e
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.as_str(),
                            WireAttribute {
                                data_type: v.data_type(),
                                string_value: v.string_value(),
                            },
                        )
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_vec(&wire).unwrap().len()
}

/// `SendMessageBatch`'s request body (AWS JSON 1.0), field by field as the SDK writes it.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireRequest<'a> {
    queue_url: &'a str,
    entries: Vec<WireEntry<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireEntry<'a> {
    id: &'a str,
    message_body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_deduplication_id: Option<&'a str>,
    #[serde(serialize_with = "as_map")]
    message_attributes: Vec<(&'a str, WireAttribute<'a>)>,
}

fn as_map<S: serde::Serializer>(
    pairs: &[(&str, WireAttribute<'_>)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireAttribute<'a> {
    data_type: &'a str,
    string_value: Option<&'a str>,
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
    let body = event_body();
    let now = chrono::Utc::now().timestamp();
    let headers = request_headers(&body, now);
    let secrets = WebhookSecrets::new([SECRET, "bench-webhook-secret-previous"]).unwrap();
    let subscription = Subscription {
        event_types: EventTypeFilter::parse(&["UPDATE", "MERGE"]).unwrap(),
        entity_types: EntityTypeFilter::new(&["Individual"]),
    };
    assert!(handle_request(&headers, &body, &secrets, &subscription, now) > body.len());

    let mut c = Criterion::default().configure_from_args().sample_size(50);
    c.bench_function("webhook: verify + parse + SQS batch, one 4 KB event", |b| {
        b.iter(|| {
            handle_request(
                black_box(&headers),
                black_box(&body),
                &secrets,
                &subscription,
                now,
            )
        })
    });
    c.final_summary();

    let t = per_call(
        || {
            black_box(handle_request(
                &headers,
                &body,
                &secrets,
                &subscription,
                now,
            ));
        },
        2_000,
        15,
    );
    // Where the time goes: each step alone.
    let header_list: RequestHeaders = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let verify_only = per_call(
        || {
            black_box(
                verify(&header_list, &body, &secrets, now, VerifyOptions::default()).unwrap(),
            );
        },
        2_000,
        15,
    );
    let parse_only = per_call(
        || {
            black_box(parse_body(black_box(&body), Some("0Abc123-12-ENTITY_CHANGED")).unwrap());
        },
        2_000,
        15,
    );
    let value_only = per_call(
        || {
            black_box(serde_json::from_slice::<Value>(black_box(&body)).unwrap());
        },
        2_000,
        15,
    );
    println!("\n| figure | measured | target |");
    println!("| --- | --- | --- |");
    println!(
        "| webhook: verify + parse + build the SQS batch, one {} B event | {:.1} µs | <= 20 µs{} |",
        body.len(),
        t.as_secs_f64() * 1e6,
        if t <= TARGET { "" } else { "  NOT MET" }
    );
    for (step, d) in [
        ("signature check alone (HMAC-SHA256 over 4 KB)", verify_only),
        ("parse_body alone", parse_only),
        (
            "bare serde_json parse of the body into Value (floor)",
            value_only,
        ),
    ] {
        println!("| webhook: {step} | {:.1} µs | |", d.as_secs_f64() * 1e6);
    }
}
