//! Shared by the webhook-receiver tests: Lambda HTTP events in the formats `sam local generate-event`
//! produces (REST v1 `apigateway aws-proxy`, HTTP API v2 `apigateway http-api-proxy`, `alb`), turned into
//! `lambda_http::Request` by lambda_http's own deserializer (the production path), signed bodies, and a
//! wiremock SQS that records every `SendMessageBatch`.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use lambda_http::Request;
use mdm_sync_domain::webhook::{sign_reltio, sign_standard, WebhookSecrets};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use webhook_receiver::{Config, Deps, SecretSource};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request as WireRequest, ResponseTemplate};

/// The secret the tests sign with, and a previous one still accepted during rotation.
pub const SECRET: &str = "test-webhook-secret";
pub const PREVIOUS: &str = "previous-webhook-secret";
/// The fixed clock of handler tests (unix seconds).
pub const NOW: i64 = 1_722_214_700;

pub const ENTITY_CHANGED: &str = include_str!("../fixtures/reltio-entity-changed.json");
pub const ENTITIES_MERGED: &str = include_str!("../fixtures/reltio-entities-merged.json");

const REST_V1: &str = include_str!("../fixtures/apigw-rest-v1.json");
const HTTP_V2: &str = include_str!("../fixtures/apigw-http-v2.json");
const ALB: &str = include_str!("../fixtures/alb.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// API Gateway REST API: header names as sent, body base64-encoded.
    RestV1,
    /// API Gateway HTTP API (and function URLs): lower-case header names, plain body.
    HttpV2,
    /// Application Load Balancer: lower-case names, body base64-encoded; the sample says `x-forwarded-proto: http`.
    Alb,
}

/// The Lambda event JSON for a request with `body` and `headers` added to the sam sample.
pub fn event_json(origin: Origin, body: &[u8], headers: &[(&str, &str)]) -> Value {
    let (template, lowercase, base64) = match origin {
        Origin::RestV1 => (REST_V1, false, true),
        Origin::HttpV2 => (HTTP_V2, true, false),
        Origin::Alb => (ALB, true, true),
    };
    let mut event: Value = serde_json::from_str(template).unwrap();
    let body_text = match std::str::from_utf8(body) {
        Ok(text) if !base64 => text.to_owned(),
        _ => B64.encode(body),
    };
    let is_b64 = base64 || std::str::from_utf8(body).is_err();
    event["body"] = json!(body_text);
    event["isBase64Encoded"] = json!(is_b64);
    for (name, value) in headers {
        let name = if lowercase {
            name.to_ascii_lowercase()
        } else {
            (*name).to_owned()
        };
        set_header(&mut event, &name, value);
    }
    event
}

fn set_header(event: &mut Value, name: &str, value: &str) {
    let headers = event["headers"].as_object_mut().unwrap();
    headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
    headers.insert(name.to_owned(), json!(value));
    if let Some(multi) = event
        .get_mut("multiValueHeaders")
        .and_then(Value::as_object_mut)
    {
        multi.retain(|k, _| !k.eq_ignore_ascii_case(name));
        multi.insert(name.to_owned(), json!([value]));
    }
}

/// Removes a header (any case) from the event.
pub fn remove_header(event: &mut Value, name: &str) {
    for key in ["headers", "multiValueHeaders"] {
        if let Some(map) = event.get_mut(key).and_then(Value::as_object_mut) {
            map.retain(|k, _| !k.eq_ignore_ascii_case(name));
        }
    }
}

/// The production path: lambda_http's deserializer, the guard (`webhook_receiver::guard`), lambda_http's
/// conversion into a `Request`.
pub fn to_request(event: &Value) -> Request {
    let mut lambda: lambda_http::request::LambdaRequest =
        serde_json::from_str(&event.to_string()).expect("lambda_http accepts the event");
    webhook_receiver::guard::make_convertible(&mut lambda);
    Request::from(lambda)
}

pub fn request(origin: Origin, body: &[u8], headers: &[(&str, &str)]) -> Request {
    to_request(&event_json(origin, body, headers))
}

/// `X-Reltio-Signature` (+ `X-Reltio-Timestamp`) headers for `body`, written in mixed case.
pub fn reltio_headers(secret: &str, timestamp: Option<i64>, body: &[u8]) -> Vec<(String, String)> {
    let mut h = vec![(
        "X-Reltio-Signature".to_owned(),
        sign_reltio(secret, timestamp, body),
    )];
    if let Some(ts) = timestamp {
        h.push(("X-Reltio-Timestamp".to_owned(), ts.to_string()));
    }
    h
}

pub fn standard_headers(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        (
            "webhook-signature".to_owned(),
            sign_standard(secret, id, timestamp, body).unwrap(),
        ),
    ]
}

pub fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A REST v1 request signed with `SECRET` at `NOW`.
pub fn signed(origin: Origin, body: &[u8], extra: &[(&str, &str)]) -> Request {
    let h = reltio_headers(SECRET, Some(NOW), body);
    let mut all = refs(&h);
    all.extend_from_slice(extra);
    if origin != Origin::RestV1 {
        all.push(("X-Forwarded-Proto", "https"));
    }
    request(origin, body, &all)
}

/// Settings as the environment would give them, for a queue URL.
pub fn config(queue_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        ("WEBHOOK_SECRET_ID".into(), "webhook".into()),
        ("EVENT_QUEUE_URL".into(), queue_url.into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_env(&move |k: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    })
    .expect("valid test configuration")
}

/// Deps with fixed secrets (`SECRET`, `PREVIOUS`) and the clock at `NOW`.
pub fn deps(config: Config, sdk: &aws_config::SdkConfig) -> Deps {
    let mut d = Deps::new(config, sdk);
    d.secrets = SecretSource::Fixed(WebhookSecrets::new([SECRET, PREVIOUS]).unwrap());
    d.clock = Arc::new(|| NOW);
    d
}

pub fn status(r: &lambda_http::Response<lambda_http::Body>) -> u16 {
    r.status().as_u16()
}

pub fn body_json(r: &lambda_http::Response<lambda_http::Body>) -> Value {
    serde_json::from_slice(r.body().as_ref()).unwrap_or(Value::Null)
}

/// A wiremock SQS (AWS JSON protocol) that records every `SendMessageBatch`.
pub struct FakeSqs {
    pub server: MockServer,
}

pub enum SqsBehaviour {
    /// Every entry succeeds.
    Accept,
    /// Entry id `id` is reported failed (not a sender fault) the first `times` times it is sent.
    FailEntry { id: String, times: usize },
    /// Every call answers HTTP 500.
    Down,
    /// Every call answers after `delay`.
    Slow(Duration),
}

impl FakeSqs {
    pub async fn start(behaviour: SqsBehaviour) -> FakeSqs {
        let server = MockServer::start().await;
        let failures_left = Arc::new(AtomicUsize::new(match &behaviour {
            SqsBehaviour::FailEntry { times, .. } => *times,
            _ => 0,
        }));
        let respond = move |req: &WireRequest| -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let entries = body["Entries"].as_array().cloned().unwrap_or_default();
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            for e in &entries {
                let id = e["Id"].as_str().unwrap_or_default().to_owned();
                let fail = match &behaviour {
                    SqsBehaviour::FailEntry { id: bad, .. } if *bad == id => failures_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok(),
                    _ => false,
                };
                if fail {
                    failed.push(json!({"Id": id, "SenderFault": false, "Code": "InternalError", "Message": "try again"}));
                } else {
                    successful.push(
                        json!({"Id": id, "MessageId": format!("m-{id}"), "MD5OfMessageBody": "0"}),
                    );
                }
            }
            let ok = ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_json(json!({"Successful": successful, "Failed": failed}));
            match &behaviour {
                SqsBehaviour::Down => ResponseTemplate::new(500)
                    .insert_header("content-type", "application/x-amz-json-1.0")
                    .set_body_json(
                        json!({"__type": "com.amazonaws.sqs#InternalError", "message": "down"}),
                    ),
                SqsBehaviour::Slow(d) => ok.set_delay(*d),
                _ => ok,
            }
        };
        Mock::given(method("POST"))
            .and(header("x-amz-target", "AmazonSQS.SendMessageBatch"))
            .respond_with(respond)
            .mount(&server)
            .await;
        FakeSqs { server }
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.server.uri())
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .timeout_config(mdm_sync_adapters::aws::request_timeouts())
            .retry_config(mdm_sync_adapters::aws::request_retries())
            .load()
            .await
    }

    /// The `Entries` of every `SendMessageBatch` received, one vector per call.
    pub async fn batches(&self) -> Vec<Vec<Value>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r.headers
                    .get("x-amz-target")
                    .is_some_and(|v| v == "AmazonSQS.SendMessageBatch")
            })
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                body["Entries"].as_array().cloned().unwrap_or_default()
            })
            .collect()
    }

    /// Every call of any kind the fake received.
    pub async fn calls(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    }
}

/// The String message attributes of one `SendMessageBatch` entry.
pub fn entry_attributes(entry: &Value) -> Map<String, Value> {
    entry["MessageAttributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    assert_eq!(v["DataType"], "String", "{k}");
                    (k.clone(), v["StringValue"].clone())
                })
                .collect()
        })
        .unwrap_or_default()
}
