//! The crm-updater binary itself under the Lambda Runtime API, configured only through the contract's variables:
//! wiremock for Salesforce and Reltio, moto for Secrets Manager, SQS and DynamoDB.

use mdm_sync_testkit::runtime::{assert_no_sentinel, invoke_once};
use mdm_sync_testkit::{sqs_event, workspace_root, MotoServer};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const BINARY: &str = env!("CARGO_BIN_EXE_crm-updater");
const SECRET_SENTINEL: &str = "SENTINEL-SF-CLIENT-SECRET-77aa";
const TOKEN_SENTINEL: &str = "SENTINEL-SF-ACCESS-TOKEN-31bd";
const PERSON_SENTINEL: &str = "Sentinelperson";
const EMAIL_SENTINEL: &str = "sentinel.person@example.com";
const CONTACT: &str = "003000000000001AAA";

/// Salesforce rejects every record with a validation message that echoes the value written.
fn echoing_collections(r: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let results: Vec<Value> = body["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|rec| {
            json!({"id": rec["id"], "success": false, "errors": [{
                "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "message": format!("{} is not allowed for FirstName", rec["FirstName"]),
                "fields": ["FirstName"]}]})
        })
        .collect();
    ResponseTemplate::new(200).set_body_json(results)
}

async fn world() -> (MotoServer, MockServer, Vec<(&'static str, String)>, String) {
    let moto = MotoServer::start();
    let server = MockServer::start().await;
    let dlq = moto.create_queue("crm-dlq").await;
    moto.create_ledger_table("sync-state").await;
    let sf_secret = moto
        .create_secret(
            "sf",
            &json!({"token_url": format!("{}/services/oauth2/token", server.uri()),
                    "client_id": "id", "client_secret": SECRET_SENTINEL}),
        )
        .await;
    let reltio_secret = moto
        .create_secret(
            "reltio",
            &json!({"client_id": "r", "client_secret": SECRET_SENTINEL}),
        )
        .await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": TOKEN_SENTINEL, "instance_url": server.uri(), "token_type": "Bearer"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/services/data/v66.0/composite/sobjects"))
        .respond_with(echoing_collections)
        .mount(&server)
        .await;
    let env = vec![
        ("RUST_LOG", "debug".to_owned()),
        ("AWS_LAMBDA_LOG_LEVEL", "DEBUG".to_owned()),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("SALESFORCE_SECRET_ID", sf_secret),
        ("RELTIO_API_URL", format!("{}/reltio/api/T", server.uri())),
        ("RELTIO_AUTH_URL", format!("{}/oauth/token", server.uri())),
        ("RELTIO_SECRET_ID", reltio_secret),
        (
            "CRM_MAPPING_FILE",
            workspace_root()
                .join("functions/crm-updater/mapping.example.toml")
                .display()
                .to_string(),
        ),
        ("SYNC_STATE_TABLE", "sync-state".to_owned()),
        ("CRM_DLQ_URL", dlq.clone()),
    ];
    (moto, server, env, dlq)
}

fn changed_event() -> Value {
    let entity = json!({
        "uri": "entities/E1",
        "type": "configuration/entityTypes/Individual",
        "updatedTime": 1000,
        "attributes": {
            "FirstName": [{"value": PERSON_SENTINEL, "ov": true}],
            "Email": [{"ov": true, "value": {"Email": [{"value": EMAIL_SENTINEL, "ov": true}]}}]
        },
        "crosswalks": [{"type": "configuration/sources/SFDC_CONTACT", "value": CONTACT}]
    });
    let body = json!({"type": "ENTITY_CHANGED", "object": entity}).to_string();
    sqs_event(
        "arn:aws:sqs:us-east-1:000000000000:events",
        &[("m1", &body, &[("eventId", "ev-1")])],
    )
}

#[tokio::test]
async fn the_binary_dead_letters_a_rejected_write_and_its_debug_logs_carry_no_secret_or_personal_value(
) {
    let (moto, _server, env, dlq) = world().await;
    let run = invoke_once(BINARY, "crm-updater", &env, &changed_event()).await;

    assert_eq!(run.answer, Some(json!({"batchItemFailures": []})));
    let dead = moto.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_str(dead[0].body.as_deref().unwrap()).unwrap();
    let reason = dead["reason"].as_str().unwrap();
    assert!(
        reason.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION") && reason.contains("FirstName"),
        "{reason}"
    );
    assert!(
        !reason.contains(PERSON_SENTINEL),
        "the reason carries codes and field names only: {reason}"
    );
    assert!(
        run.logs.contains("dead-lettering"),
        "debug logs were written ({} bytes, {} lines)",
        run.logs.len(),
        run.logs.lines().count()
    );
    assert_no_sentinel(
        &run.logs,
        &[
            SECRET_SENTINEL,
            TOKEN_SENTINEL,
            PERSON_SENTINEL,
            EMAIL_SENTINEL,
        ],
    );
}

#[tokio::test]
async fn a_missing_setting_stops_the_binary_with_one_line_naming_it() {
    let (_moto, _server, mut env, _dlq) = world().await;
    env.retain(|(k, _)| *k != "SYNC_STATE_TABLE");
    let run = invoke_once(BINARY, "crm-updater", &env, &changed_event()).await;
    assert!(run.answer.is_none());
    assert!(run.logs.contains("SYNC_STATE_TABLE"), "{}", run.logs);
}
