//! Firehose's partial failures on the wire (a wiremock `PutRecordBatch`): the records an answer reports failed
//! (`FailedPutCount`, an `ErrorCode` in their `RequestResponses` entry) are sent again, alone; one that keeps
//! failing is reported transient with its code after the attempts, never dropped; no retry starts past the
//! deadline.

use base64::Engine;
use mdm_sync_adapters::firehose::FirehoseSink;
use mdm_sync_domain::ports::{PortError, RecordSink};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A Firehose that fails the record whose data is `bad` the first `times` times it is sent.
async fn firehose(bad: &'static str, times: usize) -> MockServer {
    let server = MockServer::start().await;
    let left = Arc::new(AtomicUsize::new(times));
    let respond = move |request: &Request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let mut failed = 0;
        let answers: Vec<Value> = body["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let fail = data(r) == bad

                    && left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                if fail {
                    failed += 1;
                    json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
                } else {
                    json!({"RecordId": "r"})
                }
            })
            .collect();
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/x-amz-json-1.1")
            .set_body_json(
                json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": answers}),
            )
    };
    Mock::given(method("POST"))
        .and(header("x-amz-target", "Firehose_20150804.PutRecordBatch"))
        .respond_with(respond)
        .mount(&server)
        .await;
    server
}

async fn sink(server: &MockServer) -> FirehoseSink {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(server.uri())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    FirehoseSink::new(aws_sdk_firehose::Client::new(&config), "changes")
}

/// A record's data (base64 on the wire), as text.
fn data(record: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(record["Data"].as_str().unwrap())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The records of each call, as text.
async fn calls(server: &MockServer) -> Vec<Vec<String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(data)
                .collect()
        })
        .collect()
}

fn records() -> Vec<Vec<u8>> {
    ["a", "b", "c"].map(|r| r.as_bytes().to_vec()).to_vec()
}

#[tokio::test]
async fn a_record_reported_failed_is_sent_again_alone() {
    let server = firehose("b", 1).await;
    let results = sink(&server)
        .await
        .put(&records(), Instant::now() + Duration::from_secs(5))
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(calls(&server).await, vec![vec!["a", "b", "c"], vec!["b"]]);
}

#[tokio::test]
async fn a_record_that_keeps_failing_is_reported_transient_after_four_attempts() {
    let server = firehose("b", usize::MAX).await;
    let results = sink(&server)
        .await
        .put(&records(), Instant::now() + Duration::from_secs(5))
        .await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    match &results[1] {
        Err(PortError::Transient(reason)) => {
            assert!(reason.contains("ServiceUnavailableException"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls(&server).await.len(), 4);
}

#[tokio::test]
async fn no_retry_starts_past_the_deadline() {
    let server = firehose("b", usize::MAX).await;
    // The first wait is at least 50 ms: past this deadline.
    let results = sink(&server)
        .await
        .put(&records(), Instant::now() + Duration::from_millis(40))
        .await;
    assert!(matches!(results[1], Err(PortError::Transient(_))));
    assert_eq!(calls(&server).await.len(), 1);
}
