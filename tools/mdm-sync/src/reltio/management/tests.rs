use super::*;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOPIC: &str = "arn:aws:sns:us-east-1:111122223333:mdm-sync-prod-EventTopic-AbC123";
const ROLE: &str = "arn:aws:iam::111122223333:role/mdm-sync-prod-ReltioStreamingRole-Q1w2E3";

const TOKEN: &str = "t0ken-for-tests";

async fn management() -> MockServer {
    MockServer::start().await
}

/// A destination as `--destination sns` builds it.
fn the_destination() -> Value {
    json!({
        "provider": "aws", "type": "topic", "name": TOPIC, "enabled": true, "awsAccountId": "111122223333",
        "roleArn": ROLE, "format": "JSON_ZIP_BASE64", "payloadType": "SNAPSHOT",
        "typeFilter": ["ENTITY_CREATED", "ENTITY_CHANGED", "ENTITY_REMOVED"],
        "JMSEventsFilteringFields": ["uri", "type", "updatedTime", "attributes", "crosswalks", "objectVersion"],
    })
}

async fn send_to(server: &MockServer) -> Result<Sent, CliError> {
    send(
        &reqwest::Client::new(),
        &server.uri(),
        "T1",
        &SecretString::from(TOKEN),
        &the_destination(),
    )
    .await
}

#[tokio::test]
async fn send_posts_a_new_destination_to_the_tenant() {
    let server = management().await;
    Mock::given(method("GET"))
        .and(path("/tenants/T1/messaging/destinations"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"provider": "aws", "type": "queue", "name": "arn:aws:sqs:us-east-1:111122223333:other"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tenants/T1/messaging/destinations"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(the_destination()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"name": TOPIC})))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(send_to(&server).await.unwrap(), Sent::Created);
}

#[tokio::test]
async fn send_leaves_an_equal_destination_alone() {
    // Reltio's listing (shape unverified) may wrap the list, add fields and reorder lists: still the same.
    let server = management().await;
    let mut have = the_destination();
    have["typeFilter"].as_array_mut().unwrap().reverse();
    have["id"] = json!("dst-1");
    have.as_object_mut().unwrap().remove("roleArn");
    Mock::given(method("GET"))
        .and(path("/tenants/T1/messaging/destinations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"destinations": [have]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    assert_eq!(send_to(&server).await.unwrap(), Sent::Unchanged);
}

#[tokio::test]
async fn send_refuses_to_add_a_second_destination_for_the_same_arn() {
    let server = management().await;
    let mut have = the_destination();
    have["format"] = json!("JSON");
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([have])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let e = send_to(&server).await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("other format"), "{e}");
}

#[tokio::test]
async fn send_sends_nothing_when_it_cannot_list() {
    let server = management().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let e = send_to(&server).await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("nothing sent"), "{e}");
}

#[tokio::test]
async fn a_refused_destination_is_a_failure_with_reltios_status() {
    let server = management().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"errorMessage": "unknown provider"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let e = send_to(&server).await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("400"), "{e}");
}

#[test]
fn only_fields_reltio_holds_otherwise_differ() {
    let want = the_destination();
    let mut have = want.clone();
    have["typeFilter"] = json!(["ENTITY_REMOVED", "ENTITY_CREATED", "ENTITY_CHANGED"]);
    have.as_object_mut()
        .unwrap()
        .remove("JMSEventsFilteringFields");
    have["createdBy"] = json!("someone");
    let (h, w) = (have.as_object().unwrap(), want.as_object().unwrap());
    assert!(differing(h, w).is_empty());
    have["payloadType"] = json!("DELTAS");
    have["typeFilter"] = json!(["ENTITY_CREATED"]);
    assert_eq!(
        differing(have.as_object().unwrap(), w),
        ["payloadType", "typeFilter"]
    );
    // The listing's shapes.
    for listing in [
        json!([want]),
        json!({"destinations": [want]}),
        json!({"messaging": {"destinations": [want]}}),
        json!({"streamingConfig": {"messaging": {"destinations": [want]}}}),
    ] {
        assert_eq!(listed(&listing).len(), 1, "{listing}");
    }
    assert!(listed(&json!({"other": [want]})).is_empty());
}
