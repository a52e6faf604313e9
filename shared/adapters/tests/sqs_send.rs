//! `send_all_traced` on the wire: every `SendMessageBatch` entry carries the invocation's trace header as the
//! `AWSTraceHeader` message system attribute (what X-Ray and the consumer read), besides its own attributes;
//! without a header none is set. A wiremock SQS reads the requests (moto stores system attributes from
//! `SendMessage` only, not from `SendMessageBatch`).

use mdm_sync_adapters::sqs::send_all_traced;
use mdm_sync_domain::queue::OutgoingMessage;
use serde_json::{json, Value};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// Answers every entry of a `SendMessageBatch` as sent.
fn all_sent(request: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let ok: Vec<Value> = body["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            json!({"Id": e["Id"], "MessageId": format!("m-{}", e["Id"].as_str().unwrap()),
                        "MD5OfMessageBody": "00000000000000000000000000000000"})
        })
        .collect();
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.0")
        .set_body_json(json!({"Successful": ok, "Failed": []}))
}

async fn client(sqs: &MockServer) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(sqs.uri())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// Every entry the mock received, in order.
async fn entries(sqs: &MockServer) -> Vec<Value> {
    sqs.received_requests()
        .await
        .unwrap()
        .iter()
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["Entries"].as_array().unwrap().clone()
        })
        .collect()
}

#[tokio::test]
async fn the_trace_header_travels_with_every_message() {
    let sqs = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "AmazonSQS.SendMessageBatch"))
        .respond_with(all_sent)
        .mount(&sqs)
        .await;
    let client = client(&sqs).await;
    let messages: Vec<OutgoingMessage> = (0..12)
        .map(|i| OutgoingMessage {
            body: format!("{{\"n\":{i}}}"),
            attributes: vec![("eventId".into(), format!("e{i}"))],
            ..Default::default()
        })
        .collect();

    let failures = send_all_traced(&client, "https://sqs.local/1/q", &messages, Some(TRACE)).await;
    assert!(failures.is_empty(), "{failures:?}");
    let sent = entries(&sqs).await;
    assert_eq!(sent.len(), 12, "two batches of at most ten");
    for e in &sent {
        assert_eq!(
            e["MessageSystemAttributes"]["AWSTraceHeader"],
            json!({"DataType": "String", "StringValue": TRACE}),
            "{e}"
        );
        assert_eq!(e["MessageAttributes"]["eventId"]["DataType"], "String");
    }

    sqs.reset().await;
    Mock::given(method("POST"))
        .respond_with(all_sent)
        .mount(&sqs)
        .await;
    assert!(
        send_all_traced(&client, "https://sqs.local/1/q", &messages[..1], None)
            .await
            .is_empty()
    );
    let sent = entries(&sqs).await;
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].get("MessageSystemAttributes").is_none(),
        "{}",
        sent[0]
    );
}
