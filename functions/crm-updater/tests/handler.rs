//! crm-updater end to end against a wiremock Salesforce and Reltio, with DynamoDB (ledger), SQS (DLQ) and
//! Secrets Manager on a local moto_server.

use aws_lambda_events::event::sqs::SqsEvent;
use crm_updater::{handle, Config, Deps, Handled};
use mdm_sync_core::retry::RetryPolicy;
use mdm_sync_testkit::{sqs_event, MotoServer, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const COLLECTIONS: &str = "/services/data/v66.0/composite/sobjects";
const QUERY: &str = "/services/data/v66.0/query";
const SFDC: &str = "configuration/sources/SFDC_CONTACT";
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:events";
const FIFO_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:events.fifo";

/// sObject Collections: success for every record except the Ids in `fail` (Id → statusCode).
struct Collections {
    fail: HashMap<String, String>,
}

impl Respond for Collections {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let results: Vec<Value> = body["records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let id = r["id"].as_str().unwrap_or_default();
                match self.fail.get(id) {
                    Some(code) => json!({"id": id, "success": false, "errors": [{"statusCode": code, "message": "injected", "fields": []}]}),
                    None => json!({"id": id, "success": true, "errors": []}),
                }
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(results)
    }
}

struct Env {
    moto: MotoServer,
    server: MockServer,
    deps: Deps,
    dlq_url: String,
}

async fn env_with(mount_defaults: bool, fail: &[(&str, &str)]) -> Env {
    let moto = MotoServer::start();
    let server = MockServer::start().await;
    let dlq_url = moto.create_queue("crm-dlq").await;
    moto.create_ledger_table("sync-state").await;
    let sf_secret = moto
        .create_secret(
            "sf",
            &json!({"token_url": format!("{}/services/oauth2/token", server.uri()), "client_id": "id", "client_secret": "secret"}),
        )
        .await;
    let reltio_secret = moto
        .create_secret(
            "reltio",
            &json!({"client_id": "rid", "client_secret": "rsecret"}),
        )
        .await;
    if mount_defaults {
        mount_token(&server, "tok1").await;
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .respond_with(Collections {
                fail: fail
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            })
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "rtok", "expires_in": 3600})),
        )
        .mount(&server)
        .await;
    let mapping = format!("{}/mapping.example.toml", env!("CARGO_MANIFEST_DIR"));
    let vars: HashMap<&str, String> = HashMap::from([
        ("SALESFORCE_SECRET_ID", sf_secret),
        ("RELTIO_API_URL", format!("{}/reltio/api/T", server.uri())),
        ("RELTIO_AUTH_URL", format!("{}/oauth/token", server.uri())),
        ("RELTIO_SECRET_ID", reltio_secret),
        ("CRM_MAPPING_FILE", mapping),
        ("SYNC_STATE_TABLE", "sync-state".into()),
        ("CRM_DLQ_URL", dlq_url.clone()),
    ]);
    let config = Config::from_env(&move |name: &str| vars.get(name).cloned()).expect("config");
    let retry = RetryPolicy {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
        max_attempts: 2,
    };
    let deps = Deps::new(
        config,
        &moto.sdk_config().await,
        mdm_sync_core::http::client(),
        retry,
    )
    .expect("deps");
    Env {
        moto,
        server,
        deps,
        dlq_url,
    }
}

async fn env() -> Env {
    env_with(true, &[]).await
}

async fn mount_token(server: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": token, "instance_url": server.uri(), "token_type": "Bearer"}),
        ))
        .mount(server)
        .await;
}

fn attr(value: &str) -> Value {
    json!([{"value": value, "ov": true}])
}

fn entity(id: &str, contacts: &[&str], first_name: &str, updated: i64) -> Value {
    let mut crosswalks: Vec<Value> = contacts
        .iter()
        .map(|c| json!({"type": SFDC, "value": c}))
        .collect();
    crosswalks.push(json!({"type": "configuration/sources/Reltio", "value": id}));
    json!({
        "uri": format!("entities/{id}"),
        "type": "configuration/entityTypes/Individual",
        "updatedTime": updated,
        "attributes": {
            "FirstName": [{"value": "Stale", "ov": false}, {"value": first_name, "ov": true}],
            "LastName": attr("Smith"),
            "Email": [{"ov": true, "value": {"Email": attr("Ann@Example.com")}}]
        },
        "crosswalks": crosswalks
    })
}

fn changed(entity: &Value) -> String {
    json!({"type": "ENTITY_CHANGED", "object": entity, "updatedTime": entity["updatedTime"]})
        .to_string()
}

fn sqs(arn: &str, messages: &[SqsTestMessage]) -> SqsEvent {
    serde_json::from_value(sqs_event(arn, messages)).expect("SQS event")
}

async fn run(env: &Env, event: SqsEvent) -> Handled {
    handle(&env.deps, event, Instant::now() + Duration::from_secs(20)).await
}

fn failures(h: &Handled) -> Vec<String> {
    h.response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Every record written through sObject Collections so far, in order.
async fn writes(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "PATCH" && r.url.path() == COLLECTIONS)
        .flat_map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["records"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

async fn dead_letters(env: &Env) -> Vec<Value> {
    env.moto
        .drain_queue(&env.dlq_url)
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

const C1: &str = "003000000000001AAA";
const C2: &str = "003000000000002AAA";
const C3: &str = "003000000000003AAA";

#[tokio::test]
async fn update_of_one_contact() {
    let env = env().await;
    let body = changed(&entity("E1", &[C1], " Ann ", 1000));
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &body, &[("eventId", "ev1")])]),
    )
    .await;
    assert!(failures(&h).is_empty());
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["id"], C1);
    assert_eq!(w[0]["attributes"]["type"], "Contact");
    assert_eq!(w[0]["FirstName"], "Ann");
    assert_eq!(w[0]["LastName"], "Smith");
    assert_eq!(w[0]["Email"], "ann@example.com");
    assert_eq!(h.metrics.counter("ContactsUpdated"), 1);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn same_event_twice_is_a_no_op() {
    let env = env().await;
    let body = changed(&entity("E1", &[C1], "Ann", 1000));
    let attrs: &[(&str, &str)] = &[("eventId", "ev1")];
    // Twice in one batch, then once more in a later invocation.
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &body, attrs), ("m2", &body, attrs)]),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("DuplicateEventsSkipped"), 1);
    let h = run(&env, sqs(QUEUE_ARN, &[("m3", &body, attrs)])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("DuplicateEventsSkipped"), 1);
    assert_eq!(writes(&env.server).await.len(), 1);
}

#[tokio::test]
async fn entity_without_contact_crosswalk_is_ignored_and_counted() {
    let env = env().await;
    let body = changed(&entity("E1", &[], "Ann", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("EventsIgnoredNoContactCrosswalk"), 1);
    assert!(writes(&env.server).await.is_empty());
}

#[tokio::test]
async fn non_individual_entity_is_ignored() {
    let env = env().await;
    let mut org = entity("O1", &[C1], "Acme", 1000);
    org["type"] = json!("configuration/entityTypes/Organization");
    let created =
        json!({"type": "ENTITY_CREATED", "object": entity("E2", &[C2], "Bo", 1)}).to_string();
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[("m1", &changed(&org), &[]), ("m2", &created, &[])],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("EventsIgnoredEntityType"), 1);
    assert_eq!(h.metrics.counter("EventsIgnoredEventType"), 1);
    assert!(writes(&env.server).await.is_empty());
}

#[tokio::test]
async fn merge_of_winner_and_two_losers_then_redelivered() {
    let env = env().await;
    let winner = entity("W", &[C2, C1, C3], "Ann", 5000);
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/W"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&winner))
        .mount(&env.server)
        .await;
    // The first query of each relationship finds children of the losers; afterwards they point at the survivor.
    Mock::given(method("GET"))
        .and(path(QUERY))
        .and(wiremock::matchers::query_param_contains("q", "FROM Case"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"done": true, "totalSize": 2, "records": [{"Id": "500000000000001AAA"}, {"Id": "500000000000002AAA"}]}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.server)
        .await;
    Mock::given(method("GET"))
        .and(path(QUERY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"done": true, "totalSize": 0, "records": []})),
        )
        .with_priority(5)
        .mount(&env.server)
        .await;
    let merge = json!({"type": "ENTITIES_MERGED", "updatedTime": 5000, "uris": ["entities/W", "entities/L1", "entities/L2"]}).to_string();
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &merge, &[("eventId", "merge-1")])]),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 5, "{w:#?}");
    assert_eq!(w[0]["id"], C1, "lowest Id survives");
    assert_eq!(w[0]["FirstName"], "Ann");
    for loser in [&w[1], &w[2]] {
        assert_eq!(loser["Merged_Into__c"], C1);
        assert_eq!(loser["Status__c"], "Merged");
    }
    let archived: Vec<&str> = [&w[1], &w[2]]
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(archived, vec![C2, C3]);
    for child in [&w[3], &w[4]] {
        assert_eq!(child["attributes"]["type"], "Case");
        assert_eq!(child["ContactId"], C1);
    }
    assert_eq!(h.metrics.counter("ContactsArchived"), 2);
    assert_eq!(h.metrics.counter("ChildRecordsRepointed"), 2);

    // The same merge again: same event (duplicate), and the same merge under another event id (unchanged).
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m2", &merge, &[("eventId", "merge-1")])]),
    )
    .await;
    assert!(failures(&h).is_empty());
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[("m3", &merge, &[("eventId", "merge-1-again")])],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(writes(&env.server).await.len(), 5, "no new writes");
}

#[tokio::test]
async fn out_of_order_older_version_is_skipped() {
    let env = env().await;
    let v2 = changed(&entity("E1", &[C1], "New", 2000));
    let v1 = changed(&entity("E1", &[C1], "Old", 1000));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[("m2", &v2, &[("objectVersion", "2"), ("eventId", "e2")])],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[("m1", &v1, &[("objectVersion", "1"), ("eventId", "e1")])],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("StaleEventsSkipped"), 1);
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["FirstName"], "New");
}

#[tokio::test]
async fn oversized_event_is_fetched() {
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/BIG"))
        .respond_with(ResponseTemplate::new(200).set_body_json(entity("BIG", &[C1], "Big", 3000)))
        .expect(1)
        .mount(&env.server)
        .await;
    let body = json!({"type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/BIG", "updatedTime": 3000}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["FirstName"], "Big");
}

#[tokio::test]
async fn expired_salesforce_token_is_renewed_once() {
    let env = env_with(false, &[]).await;
    // First token tok1, then tok2; tok1 is refused as expired.
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "tok1", "instance_url": env.server.uri()})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.server)
        .await;
    mount_token(&env.server, "tok2").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .and(header("authorization", "Bearer tok1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        ))
        .with_priority(1)
        .mount(&env.server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .and(header("authorization", "Bearer tok2"))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    let a = changed(&entity("E1", &[C1], "Ann", 1000));
    let b = changed(&entity("E2", &[C2], "Bo", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &a, &[]), ("m2", &b, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsUpdated"), 2);
    let tokens = env
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/services/oauth2/token")
        .count();
    assert_eq!(tokens, 2);
}

#[tokio::test]
async fn collections_item_failures_by_error_class() {
    let env = env_with(
        true,
        &[
            (C2, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            (C3, "UNABLE_TO_LOCK_ROW"),
        ],
    )
    .await;
    let a = changed(&entity("E1", &[C1], "Ann", 1000));
    let b = changed(&entity("E2", &[C2], "Bo", 1000));
    let c = changed(&entity("E3", &[C3], "Cy", 1000));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[
                ("m1", &a, &[]),
                ("m2", &b, &[("eventId", "bad")]),
                ("m3", &c, &[]),
            ],
        ),
    )
    .await;
    assert_eq!(
        failures(&h),
        vec!["m3"],
        "only the transient failure is retried"
    );
    assert_eq!(
        writes(&env.server).await.len(),
        3,
        "one Collections call for the batch"
    );
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["eventId"], "bad");
    assert_eq!(dl[0]["attempts"], 1);
    assert!(dl[0]["reason"]
        .as_str()
        .unwrap()
        .contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"));
    assert_eq!(dl[0]["event"]["type"], "ENTITY_CHANGED");
    assert_eq!(h.metrics.counter("DeadLettered"), 1);
    // The transient one was not recorded: delivered again (now succeeding) it is applied.
    env.server.reset().await;
    mount_token(&env.server, "tok1").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m3", &c, &[])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(writes(&env.server).await.len(), 1);
}

#[tokio::test]
async fn request_limit_exceeded_is_transient() {
    let env = env_with(false, &[]).await;
    mount_token(&env.server, "tok1").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        ))
        .mount(&env.server)
        .await;
    let a = changed(&entity("E1", &[C1], "Ann", 1000));
    let b = changed(&entity("E2", &[C2], "Bo", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &a, &[]), ("m2", &b, &[])])).await;
    assert_eq!(failures(&h), vec!["m1", "m2"]);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn fifo_batch_with_a_failure_in_the_middle() {
    let env = env_with(true, &[(C2, "UNABLE_TO_LOCK_ROW")]).await;
    let a = changed(&entity("E1", &[C1], "Ann", 1000));
    let b = changed(&entity("E2", &[C2], "Bo", 1000));
    let c = changed(&entity("E3", &[C3], "Cy", 1000));
    let h = run(
        &env,
        sqs(
            FIFO_ARN,
            &[("m1", &a, &[]), ("m2", &b, &[]), ("m3", &c, &[])],
        ),
    )
    .await;
    assert_eq!(failures(&h), vec!["m2", "m3"]);
}

#[tokio::test]
async fn malformed_message_is_dead_lettered() {
    let env = env().await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", "{not json", &[])])).await;
    assert!(failures(&h).is_empty());
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"], "{not json");
    assert!(dl[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a Reltio event"));
}

#[tokio::test]
async fn two_concurrent_invocations_for_one_entity() {
    let env = env().await;
    let v1 = changed(&entity("E1", &[C1], "One", 1000));
    let v2 = changed(&entity("E1", &[C1], "Two", 2000));
    let e1 = sqs(QUEUE_ARN, &[("m1", &v1, &[("objectVersion", "1")])]);
    let e2 = sqs(QUEUE_ARN, &[("m2", &v2, &[("objectVersion", "2")])]);
    let (h1, h2) = tokio::join!(run(&env, e1), run(&env, e2));
    // Whatever the interleaving: at most one writes at a time, the loser retries or is stale, and the last
    // write carries version 2 once the retries are done.
    let mut retry: Vec<(String, String)> = Vec::new();
    if !failures(&h1).is_empty() {
        retry.push(("m1".into(), v1.clone()));
    }
    if !failures(&h2).is_empty() {
        retry.push(("m2".into(), v2.clone()));
    }
    assert!(retry.len() < 2, "at least one invocation applies");
    for (id, body) in &retry {
        let v = if id == "m1" { "1" } else { "2" };
        let h = run(&env, sqs(QUEUE_ARN, &[(id, body, &[("objectVersion", v)])])).await;
        assert!(failures(&h).is_empty());
    }
    let w = writes(&env.server).await;
    assert_eq!(w.last().unwrap()["FirstName"], "Two", "{w:#?}");
}

#[tokio::test]
async fn sample_event_applies_update_and_merge() {
    let env = env().await;
    let text = std::fs::read_to_string(format!(
        "{}/../../events/crm-updater.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let event: SqsEvent = serde_json::from_str(&text).unwrap();
    let update: Value = serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
    // After the merge Reltio returns the winner with the loser's Contact crosswalk too.
    let mut winner = update["object"].clone();
    winner["crosswalks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": SFDC, "value": "0035e00000ZzZzZAAV"}));
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/0Abc123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&winner))
        .mount(&env.server)
        .await;
    Mock::given(method("GET"))
        .and(path(QUERY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"done": true, "totalSize": 0, "records": []})),
        )
        .mount(&env.server)
        .await;
    let h = run(&env, event).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("EventsApplied"), 2);
    let w = writes(&env.server).await;
    // Round 1: the update; round 2: the merge (survivor rewritten, the other Contact archived).
    assert_eq!(w.len(), 3, "{w:#?}");
    assert_eq!(w[0]["id"], "0035e00000AbCdEAAV");
    assert_eq!(w[2]["id"], "0035e00000ZzZzZAAV");
    assert_eq!(w[2]["Merged_Into__c"], "0035e00000AbCdEAAV");
}

#[test]
fn configuration_names_the_missing_setting() {
    let err = Config::from_env(&|name: &str| match name {
        "SALESFORCE_SECRET_ID" => Some("sf".to_owned()),
        _ => None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("RELTIO_API_URL"), "{err}");
    let err = Config::from_env(&|name: &str| match name {
        "SALESFORCE_API_VERSION" => Some("66".to_owned()),
        _ => Some("https://example.com".to_owned()),
    })
    .unwrap_err();
    assert!(err.to_string().contains("SALESFORCE_API_VERSION"), "{err}");
}

#[tokio::test]
async fn deleted_contact_is_skipped_not_failed() {
    let env = env_with(true, &[(C1, "ENTITY_IS_DELETED")]).await;
    let body = changed(&entity("E1", &[C1], "Ann", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SalesforceRecordsMissing"), 1);
    assert_eq!(h.metrics.counter("EventsApplied"), 1);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn dead_letter_send_failure_is_transient() {
    let env = env_with(true, &[(C1, "INVALID_EMAIL_ADDRESS")]).await;
    env.moto
        .sqs()
        .await
        .delete_queue()
        .queue_url(&env.dlq_url)
        .send()
        .await
        .unwrap();
    let body = changed(&entity("E1", &[C1], "Ann", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert_eq!(failures(&h), vec!["m1"]);
    assert_eq!(h.metrics.counter("DeadLettered"), 0);
}
