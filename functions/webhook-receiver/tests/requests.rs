//! The handler end to end in-process, for every way a request arrives (REST v1, HTTP API v2, ALB, as
//! `sam local generate-event` writes them) and every answer docs/contract.md lists, against a wiremock SQS that
//! records each `SendMessageBatch` (so "nothing enqueued" and "3 batches" are observed, not assumed).

mod common;

use common::*;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use mdm_sync_adapters::metrics::Metrics;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use webhook_receiver::{arrived_over_https, handle, respond, Config};

const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/mdm-events";
const FIFO_QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/mdm-events.fifo";

async fn run(
    sqs: &FakeSqs,
    config: Config,
    req: lambda_http::Request,
) -> (lambda_http::Response<lambda_http::Body>, Metrics) {
    let deps = deps(config, &sqs.sdk_config().await);
    let mut metrics = Metrics::new("Test", "webhook-receiver");
    let response = respond(&deps, &req, &mut metrics).await;
    (response, metrics)
}

#[tokio::test]
async fn a_rest_v1_event_with_a_base64_body_and_mixed_case_headers_is_enqueued() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let event = event_json(
        Origin::RestV1,
        body,
        &refs(&reltio_headers(SECRET, Some(NOW), body)),
    );
    assert_eq!(event["isBase64Encoded"], true);
    assert!(event["headers"]["X-Reltio-Signature"].is_string());
    let req = to_request(&event);
    assert!(matches!(
        req.request_context_ref(),
        Some(RequestContext::ApiGatewayV1(_))
    ));

    let (response, metrics) = run(&sqs, config(QUEUE, &[]), req).await;

    assert_eq!(status(&response), 200);
    assert_eq!(body_json(&response), json!({"accepted": 1, "filtered": 0}));
    let batches = sqs.batches().await;
    assert_eq!(batches.len(), 1);
    let entry = &batches[0][0];
    // The body as sent (decoded from base64 by lambda_http), not re-serialised.
    assert_eq!(entry["MessageBody"], ENTITY_CHANGED);
    let attrs = entry_attributes(entry);
    assert_eq!(attrs["eventType"], "ENTITY_CHANGED");
    assert_eq!(attrs["tenantId"], "T1");
    assert_eq!(attrs["sourceObjectUri"], "entities/0Abc123");
    assert_eq!(attrs["objectVersion"], "12");
    assert_eq!(attrs["eventId"].as_str().unwrap().len(), 64);
    // A standard queue takes no group or deduplication id.
    assert!(entry.get("MessageGroupId").is_none());
    assert!(entry.get("MessageDeduplicationId").is_none());
    assert_eq!(metrics.counter("Requests"), 1);
    assert_eq!(metrics.counter("EventsAccepted"), 1);
}

#[tokio::test]
async fn an_http_api_v2_event_with_lowercase_headers_is_enqueued() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITIES_MERGED.as_bytes();
    let h = reltio_headers(SECRET, Some(NOW), body);
    let mut headers = refs(&h);
    headers.push(("X-Forwarded-Proto", "https"));
    headers.push(("X-Reltio-Event-Id", "evt-merge-1"));
    let event = event_json(Origin::HttpV2, body, &headers);
    assert!(event["headers"]["x-reltio-signature"].is_string());
    assert!(event["headers"].get("X-Reltio-Signature").is_none());
    let req = to_request(&event);
    assert!(matches!(
        req.request_context_ref(),
        Some(RequestContext::ApiGatewayV2(_))
    ));

    let (response, _) = run(&sqs, config(FIFO_QUEUE, &[]), req).await;

    assert_eq!(status(&response), 200);
    let batches = sqs.batches().await;
    let entry = &batches[0][0];
    assert_eq!(entry["MessageBody"], ENTITIES_MERGED);
    assert_eq!(entry["MessageGroupId"], "entities/0Win");
    // The unsigned X-Reltio-Event-Id is never the id: the signed event bytes' hash is.
    let id = entry["MessageDeduplicationId"].as_str().unwrap();
    assert_eq!(id.len(), 64, "{id}");
    assert_ne!(id, "evt-merge-1");
    assert_eq!(entry_attributes(entry)["eventId"], id);
    assert!(!entry_attributes(entry).contains_key("objectVersion"));
}

#[tokio::test]
async fn an_http_api_v2_event_as_sam_generates_it_counts_as_https_without_x_forwarded_proto() {
    // `sam local generate-event apigateway http-api-proxy` has no X-Forwarded-Proto; API Gateway endpoints
    // serve only HTTPS (and set the header in AWS).
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let req = request(
        Origin::HttpV2,
        body,
        &refs(&reltio_headers(SECRET, None, body)),
    );
    assert!(req.headers().get("x-forwarded-proto").is_none());
    let (response, _) = run(&sqs, config(QUEUE, &[]), req).await;
    assert_eq!(status(&response), 200);
    assert_eq!(sqs.batches().await.len(), 1);
}

#[tokio::test]
async fn an_alb_event_is_enqueued() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let req = signed(Origin::Alb, body, &[]);
    assert!(matches!(
        req.request_context_ref(),
        Some(RequestContext::Alb(_))
    ));
    let (response, _) = run(&sqs, config(QUEUE, &[]), req).await;
    assert_eq!(status(&response), 200);
    assert_eq!(body_json(&response), json!({"accepted": 1, "filtered": 0}));
    assert_eq!(sqs.batches().await[0][0]["MessageBody"], ENTITY_CHANGED);
}

#[tokio::test]
async fn a_request_not_over_https_is_refused_with_403_and_nothing_enqueued() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let h = reltio_headers(SECRET, Some(NOW), body);
    let mut cases = Vec::new();
    // The ALB sample as sam writes it says `x-forwarded-proto: http`.
    cases.push(request(Origin::Alb, body, &refs(&h)));
    // Values that are not URL schemes ("", "https, http") go through the guard that keeps lambda_http's
    // conversion from panicking; they are refused all the same.
    for proto in ["http", "HTTP", "ftp", "", "https, http", "https,https,http"] {
        let mut headers = refs(&h);
        headers.push(("X-Forwarded-Proto", proto));
        cases.push(request(Origin::RestV1, body, &headers));
        cases.push(request(Origin::HttpV2, body, &headers));
    }
    // An ALB request without the header cannot show it came over HTTPS.
    let mut alb = event_json(Origin::Alb, body, &refs(&h));
    remove_header(&mut alb, "x-forwarded-proto");
    cases.push(to_request(&alb));

    for req in cases {
        let (response, metrics) = run(&sqs, config(QUEUE, &[]), req).await;
        assert_eq!(status(&response), 403);
        assert_eq!(body_json(&response)["error"], "HTTPS required");
        assert_eq!(metrics.counter("RejectedInsecure"), 1);
    }
    assert_eq!(sqs.calls().await, 0);
}

#[tokio::test]
async fn a_forwarded_proto_list_where_every_hop_was_https_is_accepted() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let h = reltio_headers(SECRET, Some(NOW), body);
    let mut headers = refs(&h);
    headers.push(("X-Forwarded-Proto", "https, https"));
    let (response, _) = run(
        &sqs,
        config(QUEUE, &[]),
        request(Origin::Alb, body, &headers),
    )
    .await;
    assert_eq!(status(&response), 200);
    assert_eq!(sqs.batches().await.len(), 1);
}

#[test]
fn https_means_every_forwarded_proto_value_is_https() {
    let with = |values: &[&str]| {
        let mut b = lambda_http::http::Request::builder();
        for v in values {
            b = b.header("X-Forwarded-Proto", *v);
        }
        b.body(lambda_http::Body::Empty).unwrap()
    };
    assert!(arrived_over_https(&with(&["https"])));
    assert!(arrived_over_https(&with(&["HTTPS"])));
    assert!(arrived_over_https(&with(&["https, https"])));
    assert!(!arrived_over_https(&with(&["https, http"])));
    assert!(!arrived_over_https(&with(&["https", "http"])));
    assert!(!arrived_over_https(&with(&[""])));
    assert!(!arrived_over_https(&with(&["http"])));
    // No header and no API Gateway request context: not HTTPS.
    assert!(!arrived_over_https(&with(&[])));
}

#[tokio::test]
async fn an_oversize_body_is_refused_with_413_before_the_signature_is_checked() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let small = config(QUEUE, &[("WEBHOOK_MAX_BODY_BYTES", "100")]);
    let body = ENTITY_CHANGED.as_bytes();
    assert!(body.len() > 100);
    // Correctly signed, still too large.
    let (response, metrics) = run(&sqs, small.clone(), signed(Origin::RestV1, body, &[])).await;
    assert_eq!(status(&response), 413);
    assert_eq!(metrics.counter("RejectedTooLarge"), 1);
    // Unsigned and too large: the size answers first.
    let (response, _) = run(&sqs, small.clone(), request(Origin::HttpV2, body, &[])).await;
    assert_eq!(status(&response), 413);
    // Exactly at the limit passes the size check (and then fails the signature check).
    let at_limit = vec![b' '; 100];
    let (response, _) = run(&sqs, small, request(Origin::RestV1, &at_limit, &[])).await;
    assert_eq!(status(&response), 401);
    // The default limit is 1 MiB.
    let big = vec![b' '; 1024 * 1024 + 1];
    let (response, _) = run(&sqs, config(QUEUE, &[]), signed(Origin::HttpV2, &big, &[])).await;
    assert_eq!(status(&response), 413);
    assert_eq!(sqs.calls().await, 0);
}

#[tokio::test]
async fn every_signature_failure_is_a_401_with_an_empty_body_counted_by_reason() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let good = reltio_headers(SECRET, Some(NOW), body);
    let sig = good[0].1.clone();
    let ts = NOW.to_string();
    let old = (NOW - 301).to_string();
    let future = (NOW + 301).to_string();
    let old_sig = mdm_sync_domain::webhook::sign_reltio(SECRET, Some(NOW - 301), body);
    let future_sig = mdm_sync_domain::webhook::sign_reltio(SECRET, Some(NOW + 301), body);
    let wrong = mdm_sync_domain::webhook::sign_reltio("wrong", Some(NOW), body);
    let mut tampered = body.to_vec();
    tampered[20] ^= 0x01;

    // (expected metric, body, headers)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("SignatureRejectedMissing", body.to_vec(), vec![]),
        (
            "SignatureRejectedMalformed",
            body.to_vec(),
            vec![("X-Reltio-Signature", "sha256=zzzz")],
        ),
        (
            "SignatureRejectedEmpty",
            body.to_vec(),
            vec![("X-Reltio-Signature", "")],
        ),
        (
            "SignatureRejectedMismatch",
            body.to_vec(),
            vec![("X-Reltio-Signature", &wrong), ("X-Reltio-Timestamp", &ts)],
        ),
        (
            "SignatureRejectedMismatch",
            tampered,
            vec![("X-Reltio-Signature", &sig), ("X-Reltio-Timestamp", &ts)],
        ),
        (
            "SignatureRejectedTooOld",
            body.to_vec(),
            vec![
                ("X-Reltio-Signature", &old_sig),
                ("X-Reltio-Timestamp", &old),
            ],
        ),
        (
            "SignatureRejectedInFuture",
            body.to_vec(),
            vec![
                ("X-Reltio-Signature", &future_sig),
                ("X-Reltio-Timestamp", &future),
            ],
        ),
    ];
    for (metric, body, headers) in cases {
        for origin in [Origin::RestV1, Origin::HttpV2] {
            let mut headers = headers.clone();
            headers.push(("X-Forwarded-Proto", "https"));
            let req = request(origin, &body, &headers);
            let (response, metrics) = run(&sqs, config(QUEUE, &[]), req).await;
            assert_eq!(status(&response), 401, "{metric}");
            assert!(response.body().as_ref().is_empty(), "{metric}");
            assert_eq!(metrics.counter("SignatureRejected"), 1, "{metric}");
            assert_eq!(metrics.counter(metric), 1, "{metric}");
        }
    }
    assert_eq!(sqs.calls().await, 0);
}

#[tokio::test]
async fn a_required_timestamp_turns_an_untimed_signature_into_a_401() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let strict = config(QUEUE, &[("WEBHOOK_REQUIRE_TIMESTAMP", "true")]);
    let untimed = request(
        Origin::RestV1,
        body,
        &refs(&reltio_headers(SECRET, None, body)),
    );
    let (response, metrics) = run(&sqs, strict.clone(), untimed).await;
    assert_eq!(status(&response), 401);
    assert_eq!(metrics.counter("SignatureRejectedTimestampMissing"), 1);
    let (response, _) = run(&sqs, strict, signed(Origin::RestV1, body, &[])).await;
    assert_eq!(status(&response), 200);
}

#[tokio::test]
async fn the_tolerance_setting_moves_the_replay_window() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let h = reltio_headers(SECRET, Some(NOW - 100), body);
    let tight = config(QUEUE, &[("WEBHOOK_TOLERANCE_SECONDS", "60")]);
    let (response, _) = run(&sqs, tight, request(Origin::RestV1, body, &refs(&h))).await;
    assert_eq!(status(&response), 401);
    let (response, _) = run(
        &sqs,
        config(QUEUE, &[]),
        request(Origin::RestV1, body, &refs(&h)),
    )
    .await;
    assert_eq!(status(&response), 200);
}

#[tokio::test]
async fn the_previous_secret_and_standard_webhooks_are_accepted() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = ENTITY_CHANGED.as_bytes();
    let prev = request(
        Origin::RestV1,
        body,
        &refs(&reltio_headers(PREVIOUS, None, body)),
    );
    let (response, _) = run(&sqs, config(QUEUE, &[]), prev).await;
    assert_eq!(status(&response), 200);

    let mut h = standard_headers(SECRET, "msg_2abc", NOW, body);
    h.push(("x-forwarded-proto".into(), "https".into()));
    let std = request(Origin::HttpV2, body, &refs(&h));
    let (response, _) = run(&sqs, config(FIFO_QUEUE, &[]), std).await;
    assert_eq!(status(&response), 200);
    let batches = sqs.batches().await;
    // The signed webhook-id is the event id.
    assert_eq!(batches[1][0]["MessageDeduplicationId"], "msg_2abc");
}

#[tokio::test]
async fn invalid_json_is_refused_with_400_and_a_reason() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    for body in [
        &b"{\"type\": \"ENTITY_CHANGED\","[..],
        b"not json at all",
        b"",
    ] {
        let (response, metrics) =
            run(&sqs, config(QUEUE, &[]), signed(Origin::RestV1, body, &[])).await;
        assert_eq!(
            status(&response),
            400,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        let reason = body_json(&response)["error"].as_str().unwrap().to_owned();
        assert!(!reason.is_empty());
        assert_eq!(metrics.counter("RejectedInvalidBody"), 1);
    }
    assert_eq!(sqs.calls().await, 0);
}

#[tokio::test]
async fn a_json_body_that_is_not_a_reltio_event_is_refused_with_400() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let not_events = [
        r#"{"email":"test@example.com","username":"test_user"}"#.to_owned(),
        r#"{"type":"push","ref":"refs/heads/main"}"#.to_owned(),
        "[1, 2, 3]".to_owned(),
        format!("[{ENTITY_CHANGED}, {{\"no\": \"type\"}}]"),
        "\"ENTITY_CHANGED\"".to_owned(),
    ];
    for body in &not_events {
        let (response, _) = run(
            &sqs,
            config(QUEUE, &[]),
            signed(Origin::HttpV2, body.as_bytes(), &[]),
        )
        .await;
        assert_eq!(status(&response), 400, "{body}");
        let reason = body_json(&response)["error"].as_str().unwrap().to_owned();
        assert!(reason.contains("not a Reltio event"), "{reason}");
        assert!(
            !reason.contains("example.com"),
            "the reason quotes the body: {reason}"
        );
    }
    // One bad element refuses the whole array: nothing of it is enqueued.
    assert_eq!(sqs.calls().await, 0);
}

#[tokio::test]
async fn a_body_wrapped_in_non_json_whitespace_is_refused_with_400() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    for wrap in ['\u{a0}', '\u{2028}', '\u{3000}'] {
        let body = format!("{wrap}{ENTITY_CHANGED}{wrap}");
        let (response, _) = run(
            &sqs,
            config(QUEUE, &[]),
            signed(Origin::HttpV2, body.as_bytes(), &[]),
        )
        .await;
        assert_eq!(status(&response), 400, "{wrap:?}");
    }
    assert_eq!(sqs.calls().await, 0);
    // JSON's own whitespace around the event is fine.
    let body = format!(" \r\n\t{ENTITY_CHANGED}\n");
    let (response, _) = run(
        &sqs,
        config(QUEUE, &[]),
        signed(Origin::HttpV2, body.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 200);
}

#[tokio::test]
async fn a_value_sqs_refuses_as_an_attribute_is_left_out_and_the_event_enqueued_once() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    // A NUL inside the tenant id and the entity URI: valid JSON, but not an SQS attribute value.
    let body = r#"{"type":"ENTITY_CHANGED","tenantId":"T\u0000X","object":{"uri":"entities/0Ab\u0000c","type":"configuration/entityTypes/Individual"}}"#;
    let (response, _) = run(
        &sqs,
        config(FIFO_QUEUE, &[]),
        signed(Origin::HttpV2, body.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 200, "{:?}", body_json(&response));
    let batches = sqs.batches().await;
    let entry = &batches[0][0];
    let attrs = entry_attributes(entry);
    assert!(
        !attrs.contains_key("tenantId") && !attrs.contains_key("sourceObjectUri"),
        "{attrs:?}"
    );
    assert_eq!(attrs["eventType"], "ENTITY_CHANGED");
    assert_eq!(entry["MessageBody"], body, "the body as sent");
    // The group id stays usable: the URI's hash.
    assert_eq!(entry["MessageGroupId"].as_str().unwrap().len(), 64);
}

fn many_events(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            json!({"type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": i,
                   "object": {"uri": format!("entities/e{i}"), "type": "configuration/entityTypes/Individual"}})
            .to_string()
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[tokio::test]
async fn an_array_of_25_events_is_sent_in_3_batches() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = many_events(25);
    let (response, metrics) = run(
        &sqs,
        config(FIFO_QUEUE, &[]),
        signed(Origin::RestV1, body.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 200);
    assert_eq!(body_json(&response), json!({"accepted": 25, "filtered": 0}));
    let batches = sqs.batches().await;
    let mut sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![5, 10, 10]);
    // Every event once, each in its own group with its own deduplication id.
    let mut groups: Vec<String> = batches
        .iter()
        .flatten()
        .map(|e| e["MessageGroupId"].as_str().unwrap().to_owned())
        .collect();
    groups.sort();
    groups.dedup();
    assert_eq!(groups.len(), 25);
    let mut dedup: Vec<&str> = batches
        .iter()
        .flatten()
        .map(|e| e["MessageDeduplicationId"].as_str().unwrap())
        .collect();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), 25);
    assert_eq!(metrics.counter("EventsReceived"), 25);
    assert_eq!(metrics.counter("EventsAccepted"), 25);
}

#[tokio::test]
async fn events_outside_the_subscription_are_acknowledged_but_not_enqueued() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let body = format!(
        "[{ENTITY_CHANGED},{ENTITIES_MERGED},{}]",
        json!({"type": "ENTITY_CREATED", "object": {"uri": "entities/org1", "type": "configuration/entityTypes/Organization"}})
    );
    let cfg = config(
        QUEUE,
        &[
            ("EVENT_TYPES", "UPDATE, MERGE"),
            ("ENTITY_TYPES", "Individual"),
        ],
    );
    let (response, metrics) = run(&sqs, cfg, signed(Origin::RestV1, body.as_bytes(), &[])).await;
    assert_eq!(status(&response), 200);
    // CREATE is outside EVENT_TYPES; the merge (no entity type) passes ENTITY_TYPES.
    assert_eq!(body_json(&response), json!({"accepted": 2, "filtered": 1}));
    let types: Vec<Value> = sqs.batches().await[0]
        .iter()
        .map(|e| entry_attributes(e)["eventType"].clone())
        .collect();
    assert_eq!(
        types,
        vec![json!("ENTITY_CHANGED"), json!("ENTITIES_MERGED")]
    );
    assert_eq!(metrics.counter("EventsFiltered"), 1);

    // Everything filtered: 200 and no SQS call at all.
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let cfg = config(QUEUE, &[("EVENT_TYPES", "DELETE")]);
    let (response, _) = run(
        &sqs,
        cfg,
        signed(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 200);
    assert_eq!(body_json(&response), json!({"accepted": 0, "filtered": 1}));
    assert_eq!(sqs.calls().await, 0);
}

#[tokio::test]
async fn entries_sqs_reports_failed_are_retried_and_the_request_succeeds() {
    let sqs = FakeSqs::start(SqsBehaviour::FailEntry {
        id: "3".into(),
        times: 1,
    })
    .await;
    let body = many_events(5);
    let (response, metrics) = run(
        &sqs,
        config(QUEUE, &[]),
        signed(Origin::RestV1, body.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 200);
    let batches = sqs.batches().await;
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].len(), 1);
    assert_eq!(batches[1][0]["Id"], "3");
    assert_eq!(metrics.counter("EnqueueFailures"), 0);
}

#[tokio::test]
async fn an_event_sqs_never_takes_makes_the_answer_5xx_so_the_sender_retries() {
    let sqs = FakeSqs::start(SqsBehaviour::FailEntry {
        id: "1".into(),
        times: usize::MAX,
    })
    .await;
    let body = many_events(3);
    let (response, metrics) = run(
        &sqs,
        config(QUEUE, &[]),
        signed(Origin::RestV1, body.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 503);
    assert_eq!(metrics.counter("EnqueueFailures"), 1);
    assert_eq!(metrics.counter("EventsAccepted"), 2);

    let down = FakeSqs::start(SqsBehaviour::Down).await;
    let (response, metrics) = run(
        &down,
        config(QUEUE, &[]),
        signed(Origin::HttpV2, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert!(response.status().is_server_error());
    assert_eq!(metrics.counter("EnqueueFailures"), 1);
}

#[tokio::test]
async fn a_hanging_sqs_is_cut_off_within_the_response_budget() {
    let sqs = FakeSqs::start(SqsBehaviour::Slow(Duration::from_secs(30))).await;
    let mut cfg = config(QUEUE, &[]);
    cfg.response_budget = Duration::from_millis(1500);
    let started = Instant::now();
    let (response, _) = run(
        &sqs,
        cfg,
        signed(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn handle_writes_one_metrics_line_and_answers_json() {
    let sqs = FakeSqs::start(SqsBehaviour::Accept).await;
    let deps = deps(config(QUEUE, &[]), &sqs.sdk_config().await);
    let response = handle(
        &deps,
        signed(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
}

#[test]
fn configuration_has_documented_defaults_and_names_bad_settings() {
    let cfg = config(QUEUE, &[]);
    assert_eq!(cfg.verify.tolerance_seconds, 300);
    assert!(!cfg.verify.require_timestamp);
    assert_eq!(cfg.max_body_bytes, 1024 * 1024);
    assert!(!cfg.fifo);
    assert_eq!(cfg.metrics_namespace, "MdmSync");
    assert!(config(FIFO_QUEUE, &[]).fifo);

    let env = |pairs: Vec<(&'static str, &'static str)>| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let err = Config::from_env(&env(vec![("EVENT_QUEUE_URL", QUEUE)])).unwrap_err();
    assert!(err.to_string().contains("WEBHOOK_SECRET_ID"), "{err}");
    let err = Config::from_env(&env(vec![("WEBHOOK_SECRET_ID", "s")])).unwrap_err();
    assert!(err.to_string().contains("EVENT_QUEUE_URL"), "{err}");
    for (name, value) in [
        ("WEBHOOK_TOLERANCE_SECONDS", "five"),
        ("WEBHOOK_REQUIRE_TIMESTAMP", "maybe"),
        ("WEBHOOK_MAX_BODY_BYTES", "0"),
        ("EVENT_TYPES", "Sometimes"),
        ("EVENT_QUEUE_URL", "not a url"),
    ] {
        let mut pairs = vec![("WEBHOOK_SECRET_ID", "s"), ("EVENT_QUEUE_URL", QUEUE)];
        pairs.retain(|(n, _)| *n != name);
        pairs.push((name, value));
        let err = Config::from_env(&env(pairs)).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}
