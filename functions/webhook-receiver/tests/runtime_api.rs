//! The webhook-receiver binary itself under the Lambda Runtime API, configured only through docs/contract.md's
//! variables: a wiremock stands in for the Runtime API and feeds it API Gateway events of both versions
//! (REST v1 and HTTP API v2, as `sam local generate-event` shapes them); moto serves Secrets Manager and SQS.

mod common;

use common::*;
use mdm_sync_testkit::runtime::lambda_env;
use mdm_sync_testkit::MotoServer;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The binary under test: this build's, or another one (e.g. the release build) named by
/// `WEBHOOK_RECEIVER_BIN`.
fn binary() -> String {
    std::env::var("WEBHOOK_RECEIVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_webhook-receiver").to_owned())
}
const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// Queues `events` on the fake Runtime API as invocations `req-0`, `req-1`, ...
async fn runtime_with(events: &[Value]) -> MockServer {
    let runtime = MockServer::start().await;
    let deadline_ms = chrono::Utc::now().timestamp_millis() + 30_000;
    for (i, event) in events.iter().enumerate() {
        Mock::given(method("GET"))
            .and(path(NEXT))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(event)
                    .insert_header("lambda-runtime-aws-request-id", format!("req-{i}"))
                    .insert_header("lambda-runtime-deadline-ms", deadline_ms.to_string())
                    .insert_header(
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:webhook-receiver",
                    ),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&runtime)
            .await;
    }
    // Later polls wait, as the real Runtime API does between invocations.
    Mock::given(method("GET"))
        .and(path(NEXT))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(120)))
        .with_priority(5)
        .mount(&runtime)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&runtime)
        .await;
    runtime
}

/// The responses the binary posted, by invocation index.
async fn answers(runtime: &MockServer, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let requests = runtime.received_requests().await.unwrap_or_default();
        let mut found: Vec<(usize, Value)> = requests
            .iter()
            .filter_map(|r| {
                let p = r.url.path();
                let rest = p.strip_prefix("/2018-06-01/runtime/invocation/req-")?;
                let (i, kind) = rest.split_once('/')?;
                assert_eq!(kind, "response", "the binary reported an invocation error");
                Some((i.parse().ok()?, serde_json::from_slice(&r.body).ok()?))
            })
            .collect();
        if found.len() >= n {
            found.sort_by_key(|(i, _)| *i);
            return found.into_iter().map(|(_, v)| v).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the binary did not answer {n} invocations");
}

#[tokio::test]
async fn the_binary_accepts_signed_api_gateway_events_of_both_versions_and_rejects_forged_ones() {
    let moto = MotoServer::start();
    let secret = moto
        .create_secret("webhook", &json!({"secrets": [SECRET, PREVIOUS]}))
        .await;
    let queue = moto.create_queue("mdm-events.fifo").await;

    let now = chrono::Utc::now().timestamp();
    let body = ENTITY_CHANGED.as_bytes();
    let v1 = event_json(
        Origin::RestV1,
        body,
        &refs(&reltio_headers(SECRET, Some(now), body)),
    );
    let merged = ENTITIES_MERGED.as_bytes();
    let mut h2 = standard_headers(PREVIOUS, "msg_runtime_1", now, merged);
    h2.push(("x-forwarded-proto".into(), "https".into()));
    let v2 = event_json(Origin::HttpV2, merged, &refs(&h2));
    let forged = event_json(
        Origin::RestV1,
        body,
        &refs(&reltio_headers("attacker", Some(now), body)),
    );
    let replayed = event_json(
        Origin::HttpV2,
        body,
        &refs(&reltio_headers(SECRET, Some(now - 3600), body)),
    );
    // Malformed in ways that make lambda_http's own conversion panic (see src/guard.rs).
    let mut h = reltio_headers(SECRET, Some(now), body);
    h.push(("X-Forwarded-Proto".into(), "https, http".into()));
    let odd_proto = event_json(Origin::RestV1, body, &refs(&h));
    let mut bad_base64 = event_json(
        Origin::RestV1,
        body,
        &refs(&reltio_headers(SECRET, Some(now), body)),
    );
    bad_base64["body"] = json!("%%% not base64 %%%");
    let runtime = runtime_with(&[v1, v2, forged, replayed, odd_proto, bad_base64]).await;

    let mut child = Command::new(binary())
        .envs(lambda_env(&runtime, "webhook-receiver"))
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("WEBHOOK_SECRET_ID", &secret)
        .env("EVENT_QUEUE_URL", &queue)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answers = answers(&runtime, 6).await;
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(answers[0]["statusCode"], 200, "{}", answers[0]);
    let v1_body: Value = serde_json::from_str(answers[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(v1_body, json!({"accepted": 1, "filtered": 0}));
    assert_eq!(answers[1]["statusCode"], 200, "{}", answers[1]);
    assert_eq!(answers[2]["statusCode"], 401);
    assert!(answers[2]["body"].as_str().unwrap_or("").is_empty());
    assert_eq!(answers[3]["statusCode"], 401);
    // Answered, not crashed: not HTTPS, and a body that cannot be decoded matches no signature.
    assert_eq!(answers[4]["statusCode"], 403);
    assert_eq!(answers[5]["statusCode"], 401);

    let messages = moto.drain_queue(&queue).await;
    assert_eq!(messages.len(), 2);
    let bodies: Vec<&str> = messages.iter().filter_map(|m| m.body.as_deref()).collect();
    assert!(bodies.contains(&ENTITY_CHANGED));
    assert!(bodies.contains(&ENTITIES_MERGED));
}

#[test]
fn the_binary_stops_at_start_up_naming_a_missing_setting() {
    let out = Command::new(binary())
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("EVENT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/q")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("WEBHOOK_SECRET_ID"), "{text}");
}

#[tokio::test]
async fn debug_logs_carry_no_secret_and_no_personal_value() {
    const SECRET_SENTINEL: &str = "SENTINEL-WEBHOOK-SECRET-5e2f";
    const PERSON_SENTINEL: &str = "Sentinelperson";
    let moto = MotoServer::start();
    let secret = moto
        .create_secret("webhook", &json!({"secrets": [SECRET_SENTINEL]}))
        .await;
    let queue = moto.create_queue("mdm-events").await;
    let now = chrono::Utc::now().timestamp();
    let body = json!({"type": "ENTITY_CHANGED", "object": {"uri": "entities/0Abc",
        "type": "configuration/entityTypes/Individual",
        "attributes": {"FirstName": [{"value": PERSON_SENTINEL, "ov": true}]}, "crosswalks": []}})
    .to_string();
    let good = event_json(
        Origin::RestV1,
        body.as_bytes(),
        &refs(&reltio_headers(SECRET_SENTINEL, Some(now), body.as_bytes())),
    );
    // A forged one (wrong secret) and one whose body is no event: rejections must not quote the body either.
    let forged = event_json(
        Origin::RestV1,
        body.as_bytes(),
        &refs(&reltio_headers("attacker", Some(now), body.as_bytes())),
    );
    let not_event = format!("{{\"name\": \"{PERSON_SENTINEL}\"}}");
    let bad = event_json(
        Origin::RestV1,
        not_event.as_bytes(),
        &refs(&reltio_headers(
            SECRET_SENTINEL,
            Some(now),
            not_event.as_bytes(),
        )),
    );
    let runtime = runtime_with(&[good, forged, bad]).await;
    let logs = std::env::temp_dir().join(format!("webhook-debug-{}.log", std::process::id()));
    let file = std::fs::File::create(&logs).unwrap();
    let mut child = Command::new(binary())
        .envs(lambda_env(&runtime, "webhook-receiver"))
        .env("RUST_LOG", "debug")
        .env("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("WEBHOOK_SECRET_ID", &secret)
        .env("EVENT_QUEUE_URL", &queue)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let answers = answers(&runtime, 3).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answers[0]["statusCode"], 200, "{}", answers[0]);
    assert_eq!(answers[1]["statusCode"], 401);
    assert_eq!(answers[2]["statusCode"], 400);
    let text = std::fs::read_to_string(&logs).unwrap();
    let _ = std::fs::remove_file(&logs);
    assert!(text.contains("enqueued"), "debug logs were written");
    mdm_sync_testkit::runtime::assert_no_sentinel(&text, &[SECRET_SENTINEL, PERSON_SENTINEL]);
}
