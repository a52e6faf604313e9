//! The cdc-ingest binary itself under the Lambda Runtime API, configured only through docs/contract.md's
//! variables: a wiremock stands in for the Runtime API, another for Reltio, moto for Secrets Manager and SQS.

use mdm_sync_testkit::runtime::{assert_no_sentinel, invoke_once, lambda_env};
use mdm_sync_testkit::{
    kafka_event, kinesis_event, sequence_number, workspace_root, KafkaTestRecord, MotoServer,
};
use serde_json::{json, Value};
use std::process::Command;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const BINARY: &str = env!("CARGO_BIN_EXE_cdc-ingest");

#[tokio::test]
async fn the_binary_answers_a_kinesis_invocation_with_a_partial_batch_response() {
    let moto = MotoServer::start();
    let secret = moto
        .create_secret("reltio", &json!({"client_id": "c", "client_secret": "s"}))
        .await;
    let dlq = moto.create_queue("cdc-dlq").await;
    let reltio = reltio_issuing("t").await;
    entities_ok(&reltio).await;

    let event = kinesis_event(&[
        (
            "k",
            include_bytes!("../../../tests/fixtures/dms/insert.json"),
        ),
        ("k", b"not json"),
    ]);
    let answer = invoke_once(
        BINARY,
        "cdc-ingest",
        &contract_env(&moto, &reltio, secret, &dlq),
        &event,
    )
    .await
    .answer;

    assert_eq!(
        answer.expect("the binary answered within 30 s"),
        json!({"batchItemFailures": []})
    );
    let dlq_messages = moto.drain_queue(&dlq).await;
    assert_eq!(dlq_messages.len(), 1);
    let dead: Value = serde_json::from_str(dlq_messages[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(dead["sequenceNumber"], sequence_number(1));
    let posted: Vec<Value> = reltio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/entities"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0][0]["crosswalks"][0]["value"], "46");
}

#[tokio::test]
async fn a_missing_setting_stops_the_binary_with_one_line_naming_it() {
    let runtime = MockServer::start().await;
    let output = Command::new(BINARY)
        .envs(lambda_env(&runtime, "cdc-ingest"))
        .env_remove("RELTIO_API_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("RELTIO_API_URL"), "{text}");
    assert!(
        runtime.received_requests().await.unwrap().is_empty(),
        "no invocation was taken"
    );
}

/// Values that must never reach the logs: the OAuth client secret and token, and personal column values.
const SECRET_SENTINEL: &str = "SENTINEL-CLIENT-SECRET-8f3a";
const TOKEN_SENTINEL: &str = "SENTINEL-ACCESS-TOKEN-1c9e";
const PERSON_SENTINEL: &str = "Sentinelperson";

#[tokio::test]
async fn debug_logs_carry_no_secret_and_no_personal_value() {
    let moto = MotoServer::start();
    let secret = moto
        .create_secret(
            "reltio",
            &json!({"client_id": "c", "client_secret": SECRET_SENTINEL}),
        )
        .await;
    let dlq = moto.create_queue("cdc-dlq").await;
    let reltio = reltio_issuing(TOKEN_SENTINEL).await;
    // Reltio rejects the entity with a message that echoes the value (as validation messages do).
    Mock::given(method("POST"))
        .and(path("/reltio/api/T1/entities"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"index": 0, "successful": false, "errors": {"errorCode": 103,
             "errorMessage": format!("Value {PERSON_SENTINEL} of FirstName is not valid")}}
        ])))
        .mount(&reltio)
        .await;
    let record = String::from_utf8_lossy(include_bytes!("../../../tests/fixtures/dms/insert.json"))
        .replace("\"Jane\"", &format!("\"{PERSON_SENTINEL}\""));
    assert!(
        record.contains(PERSON_SENTINEL),
        "the fixture carries a first name"
    );
    let run = invoke_once(
        BINARY,
        "cdc-ingest",
        &[
            contract_env(&moto, &reltio, secret, &dlq),
            vec![
                ("RUST_LOG", "debug".into()),
                ("AWS_LAMBDA_LOG_LEVEL", "DEBUG".into()),
            ],
        ]
        .concat(),
        &kinesis_event(&[("k", record.as_bytes())]),
    )
    .await;
    assert!(run.answer.is_some(), "the binary answered");
    // The record was dead-lettered (the DLQ holds the data; the logs must not).
    assert_eq!(moto.drain_queue(&dlq).await.len(), 1);
    assert!(
        run.logs.contains("dead-lettering"),
        "debug logs were written"
    );
    assert_no_sentinel(
        &run.logs,
        &[SECRET_SENTINEL, TOKEN_SENTINEL, PERSON_SENTINEL],
    );
}

/// docs/contract.md's variables, pointed at moto (Secrets Manager, the DLQ) and the Reltio stand-in.
fn contract_env(
    moto: &MotoServer,
    reltio: &MockServer,
    secret: String,
    dlq: &str,
) -> Vec<(&'static str, String)> {
    let mapping = workspace_root().join("functions/cdc-ingest/mapping.example.toml");
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("RELTIO_API_URL", format!("{}/reltio/api/T1", reltio.uri())),
        ("RELTIO_AUTH_URL", format!("{}/oauth/token", reltio.uri())),
        ("RELTIO_SECRET_ID", secret),
        ("CDC_MAPPING_FILE", mapping.display().to_string()),
        ("CDC_DLQ_URL", dlq.to_owned()),
    ]
}

/// Reltio answers every `POST /entities` with one OK item per entity.
async fn entities_ok(reltio: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/reltio/api/T1/entities"))
        .respond_with(|r: &Request| {
            let n = serde_json::from_slice::<Vec<Value>>(&r.body).unwrap().len();
            let items: Vec<Value> = (0..n)
                .map(|i| json!({"index": i, "status": "OK"}))
                .collect();
            ResponseTemplate::new(200).set_body_json(items)
        })
        .mount(reltio)
        .await;
}

/// A Reltio stand-in whose token endpoint issues `token`; each test mounts its own entities answer.
async fn reltio_issuing(token: &str) -> MockServer {
    let reltio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": token, "expires_in": 3600})),
        )
        .mount(&reltio)
        .await;
    reltio
}

#[tokio::test]
async fn the_binary_answers_a_kafka_invocation_with_a_per_partition_partial_batch_response() {
    let moto = MotoServer::start();
    let secret = moto
        .create_secret("reltio", &json!({"client_id": "c", "client_secret": "s"}))
        .await;
    let dlq = moto.create_queue("cdc-dlq").await;
    let reltio = reltio_issuing("t").await;
    // Entity 7 keeps failing with 503; the rest is written.
    Mock::given(method("POST"))
        .and(path("/reltio/api/T1/entities"))
        .and(wiremock::matchers::body_string_contains(r#""value":"7""#))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&reltio)
        .await;
    entities_ok(&reltio).await;
    let debezium = include_bytes!("../../../tests/fixtures/debezium/insert.json");
    let goldengate_7 = String::from_utf8_lossy(include_bytes!(
        "../../../tests/fixtures/goldengate/insert.json"
    ))
    .replace("\"id\": 46", "\"id\": 7");
    let record = |topic, partition, offset, value| KafkaTestRecord {
        topic,
        partition,
        offset,
        value: Some(value),
        ..Default::default()
    };
    let event = kafka_event(&[
        record("dbserver1.public.customer", 0, 100, debezium),
        record("dbserver1.public.customer", 0, 101, b"not json"),
        record("ogg.public.customer", 1, 7, goldengate_7.as_bytes()),
    ]);
    let answer = invoke_once(
        BINARY,
        "cdc-ingest",
        &[
            contract_env(&moto, &reltio, secret, &dlq),
            vec![("RELTIO_BATCH_SIZE", "1".into())],
        ]
        .concat(),
        &event,
    )
    .await
    .answer;

    assert_eq!(
        answer.expect("the binary answered within 30 s"),
        json!({"batchItemFailures": [{"itemIdentifier": {"partition": "ogg.public.customer-1", "offset": 7}}]})
    );
    let dlq_messages = moto.drain_queue(&dlq).await;
    assert_eq!(dlq_messages.len(), 1);
    let dead: Value = serde_json::from_str(dlq_messages[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        (&dead["topic"], &dead["partition"], &dead["offset"]),
        (&json!("dbserver1.public.customer"), &json!(0), &json!(101))
    );
    let written: Vec<Value> = reltio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/entities"))
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()[0]["crosswalks"][0]["value"].clone()
        })
        .collect();
    assert!(written.contains(&json!("46")), "{written:?}");
}
