//! crm-updater end to end against a wiremock Salesforce and Reltio, with DynamoDB (ledger), SQS (DLQ) and
//! Secrets Manager on a local moto_server.

use crm_updater::{handle, Config, Deps, Handled};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_testkit::{sqs_event, MotoServer, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;
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
    env_full(mount_defaults, fail, &[]).await
}

/// `settings`: extra environment variables; `("merge_strategy", "soap")` switches the mapping file to SOAP.
async fn env_full(mount_defaults: bool, fail: &[(&str, &str)], settings: &[(&str, &str)]) -> Env {
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
    let mut mapping = format!("{}/mapping.example.toml", env!("CARGO_MANIFEST_DIR"));
    let mut temporary_mapping = None;
    if settings.contains(&("merge_strategy", "soap")) {
        let text = std::fs::read_to_string(&mapping)
            .unwrap()
            .replace("merge_strategy = \"archive\"", "merge_strategy = \"soap\"");
        mapping = std::env::temp_dir()
            .join(format!("crm-mapping-soap-{:x}.toml", rand_id()))
            .display()
            .to_string();
        std::fs::write(&mapping, text).unwrap();
        temporary_mapping = Some(mapping.clone());
    }
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("SALESFORCE_SECRET_ID", sf_secret),
        ("RELTIO_API_URL", format!("{}/reltio/api/T", server.uri())),
        ("RELTIO_AUTH_URL", format!("{}/oauth/token", server.uri())),
        ("RELTIO_SECRET_ID", reltio_secret),
        ("CRM_MAPPING_FILE", mapping),
        ("SYNC_STATE_TABLE", "sync-state".into()),
        ("CRM_DLQ_URL", dlq_url.clone()),
    ]);
    for (k, v) in settings {
        vars.insert(k, v.to_string());
    }
    let config = Config::from_env(&move |name: &str| vars.get(name).cloned()).expect("config");
    let retry = RetryPolicy {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
        max_attempts: 2,
    };
    let deps = Deps::new(
        config,
        &moto.sdk_config().await,
        mdm_sync_adapters::http::client(),
        retry,
    )
    .expect("deps");
    // The mapping is read once, at start-up: the temporary copy is not needed past this point.
    if let Some(path) = temporary_mapping {
        std::fs::remove_file(path).expect("remove the temporary mapping");
    }
    Env {
        moto,
        server,
        deps,
        dlq_url,
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
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
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    let h = run(&env, sqs(QUEUE_ARN, &[("m3", &body, attrs)])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    assert_eq!(writes(&env.server).await.len(), 1);
}

#[tokio::test]
async fn entity_without_contact_crosswalk_is_ignored_and_counted() {
    let env = env().await;
    let body = changed(&entity("E1", &[], "Ann", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedNoCrosswalk"), 1);
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
    assert_eq!(h.metrics.counter("SkippedEntityType"), 1);
    assert_eq!(h.metrics.counter("SkippedEventType"), 1);
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
    assert_eq!(h.metrics.counter("SkippedStale"), 1);
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
    assert_eq!(h.metrics.counter("RecordsDeadLettered"), 1);
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
    assert_eq!(h.metrics.counter("RecordsApplied"), 2);
    let w = writes(&env.server).await;
    // Round 1: the update; round 2: the merge archives the other Contact. The survivor's values are those the
    // update just wrote: not written again.
    assert_eq!(w.len(), 2, "{w:#?}");
    assert_eq!(w[0]["id"], "0035e00000AbCdEAAV");
    assert_eq!(w[1]["id"], "0035e00000ZzZzZAAV");
    assert_eq!(w[1]["Merged_Into__c"], "0035e00000AbCdEAAV");
    assert_eq!(h.metrics.counter("UnchangedContactsSkipped"), 1);
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
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
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
    assert_eq!(h.metrics.counter("RecordsDeadLettered"), 0);
}

// ---------------------------------------------------------------------------------------------- ordering

fn lost_merge(loser: &str, winner: &str) -> String {
    json!({
        "type": "ENTITY_LOST_MERGE",
        "updatedTime": 5000,
        "uris": [format!("entities/{loser}"), format!("entities/{winner}")],
        "object": {"uri": format!("entities/{loser}"), "type": "configuration/entityTypes/Individual"}
    })
    .to_string()
}

async fn empty_queries(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(QUERY))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"done": true, "totalSize": 0, "records": []})),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_winner_change_after_a_loser_lost_merge_with_a_higher_version_is_applied() {
    let env = env().await;
    // L (objectVersion 5) lost a merge to W (objectVersion 3): L's URI resolves to W.
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/L"))
        .respond_with(ResponseTemplate::new(200).set_body_json(entity(
            "W",
            &[C1, C2],
            "Merged",
            5000,
        )))
        .mount(&env.server)
        .await;
    empty_queries(&env.server).await;
    let lost = lost_merge("L", "W");
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[(
                "m1",
                &lost,
                &[
                    ("objectVersion", "5"),
                    ("sourceObjectUri", "entities/L"),
                    ("eventId", "L-5-LOST"),
                ],
            )],
        ),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);

    // W's own next change carries W's objectVersion 4: lower than L's 5, but another object's counter.
    let after = changed(&entity("W", &[C1, C2], "After", 6000));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[(
                "m2",
                &after,
                &[
                    ("objectVersion", "4"),
                    ("sourceObjectUri", "entities/W"),
                    ("eventId", "W-4"),
                ],
            )],
        ),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("SkippedStale"), 0);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    let w = writes(&env.server).await;
    let last_survivor = w.iter().rev().find(|r| r["id"] == C1).unwrap();
    assert_eq!(last_survivor["FirstName"], "After");

    // Older events of each object are still skipped: W's objectVersion 3, and L's 4 (fetched again).
    let before = changed(&entity("W", &[C1, C2], "Before", 4000));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[
                (
                    "m3",
                    &before,
                    &[
                        ("objectVersion", "3"),
                        ("sourceObjectUri", "entities/W"),
                        ("eventId", "W-3"),
                    ],
                ),
                (
                    "m4",
                    &lost,
                    &[
                        ("objectVersion", "4"),
                        ("sourceObjectUri", "entities/L"),
                        ("eventId", "L-4"),
                    ],
                ),
            ],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedStale"), 2);
    assert_eq!(writes(&env.server).await.len(), w.len(), "nothing written");
}

#[tokio::test]
async fn a_losers_older_change_delivered_after_its_merge_is_stale() {
    let env = env().await;
    // L (Contact C2) lost a merge to W (Contact C1) at 5000; L's URI resolves to W.
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/L"))
        .respond_with(ResponseTemplate::new(200).set_body_json(entity(
            "W",
            &[C1, C2],
            "Merged",
            5000,
        )))
        .mount(&env.server)
        .await;
    empty_queries(&env.server).await;
    let lost = lost_merge("L", "W");
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &lost, &[("eventId", "L-LOST")])]),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    let applied = writes(&env.server).await;
    assert_eq!(applied.len(), 2, "survivor and archived: {applied:#?}");

    // L's own change from before the merge (its snapshot at 4000) arrives late: not written.
    let late = changed(&entity("L", &[C2], "OldL", 4000));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[("m2", &late, &[("objectVersion", "7"), ("eventId", "L-7")])],
        ),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("SkippedStale"), 1);
    assert_eq!(h.metrics.counter("RecordsApplied"), 0);
    assert_eq!(
        writes(&env.server).await.len(),
        applied.len(),
        "nothing written"
    );
    let item = env
        .moto
        .dynamodb()
        .await
        .get_item()
        .table_name("sync-state")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("entities/L".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["merged_into"].as_s().unwrap(), "entities/W");
    assert_eq!(item["merged_at"].as_n().unwrap(), "5000");

    // After an unmerge, L's newer snapshot is applied to its Contact.
    let unmerged = changed(&entity("L", &[C2], "Unmerged", 7000));
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m3", &unmerged, &[("eventId", "L-9")])]),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("SkippedStale"), 0);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    let w = writes(&env.server).await;
    assert_eq!(w.len(), applied.len() + 1);
    assert_eq!(w.last().unwrap()["id"], C2);
    assert_eq!(w.last().unwrap()["FirstName"], "Unmerged");
}

#[tokio::test]
async fn every_loser_of_entities_merged_skips_its_snapshots_up_to_the_merge_time() {
    let env = env().await;
    let winner = entity("W", &[C1, C2, C3], "Ann", 9000);
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/W"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&winner))
        .mount(&env.server)
        .await;
    empty_queries(&env.server).await;
    // The merge time is the event's (5000), not the fetched winner's later updatedTime.
    let merge = json!({"type": "ENTITIES_MERGED", "updatedTime": 5000, "uris": ["entities/W", "entities/L1", "entities/L2"]}).to_string();
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &merge, &[("eventId", "merge")])]),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    let applied = writes(&env.server).await.len();

    let l1 = changed(&entity("L1", &[C2], "OldL1", 5000));
    let l2 = changed(&entity("L2", &[C3], "OldL2", 4999));
    let l2_after = changed(&entity("L2", &[C3], "NewL2", 5001));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[
                ("m2", &l1, &[("eventId", "L1-a")]),
                ("m3", &l2, &[("eventId", "L2-a")]),
                ("m4", &l2_after, &[("eventId", "L2-b")]),
            ],
        ),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("SkippedStale"), 2);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    let w = writes(&env.server).await;
    assert_eq!(w.len(), applied + 1);
    assert_eq!(w.last().unwrap()["id"], C3);
    assert_eq!(w.last().unwrap()["FirstName"], "NewL2");
}

#[tokio::test]
async fn a_fetched_snapshot_older_than_the_applied_one_is_stale() {
    let env = env().await;
    // The oversized event's fetch returns a state older than the snapshot already applied.
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/E1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(entity("E1", &[C1], "Old", 1000)))
        .mount(&env.server)
        .await;
    let new = changed(&entity("E1", &[C1], "New", 2000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &new, &[("eventId", "e2")])])).await;
    assert!(failures(&h).is_empty());
    let big =
        json!({"type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/E1"})
            .to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m2", &big, &[("eventId", "big")])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedStale"), 1);
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["FirstName"], "New");
}

#[tokio::test]
async fn the_ledger_record_expires_after_the_configured_retention() {
    let env = env_full(true, &[], &[("CRM_LEDGER_RETENTION_DAYS", "20")]).await;
    let body = changed(&entity("E1", &[C1], "Ann", 1000));
    let start = chrono::Utc::now().timestamp();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    let item = env
        .moto
        .dynamodb()
        .await
        .get_item()
        .table_name("sync-state")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("entities/E1".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
    let retention = 20 * 24 * 3600;
    let end = chrono::Utc::now().timestamp();
    assert!(
        (start + retention..=end + retention).contains(&expires),
        "{expires}"
    );
}

#[test]
fn ledger_retention_defaults_to_35_days_and_must_outlive_sqs_retention() {
    let base = |name: &str| match name {
        "RELTIO_API_URL" | "CRM_DLQ_URL" => Some("https://example.com".to_owned()),
        _ => Some("x".to_owned()),
    };
    let config = Config::from_env(&|name: &str| match name {
        "SALESFORCE_API_VERSION"
        | "CRM_LEASE_SECONDS"
        | "RELTIO_AUTH_URL"
        | "METRICS_NAMESPACE"
        | "CRM_LEDGER_RETENTION_DAYS"
        | "CRM_RETRY_BACKOFF_SECONDS"
        | "CRM_RETRY_BACKOFF_MAX_SECONDS"
        | "CRM_EVENT_QUEUE_URL" => None,
        other => base(other),
    })
    .unwrap();
    assert_eq!(config.ledger_retention, Duration::from_secs(35 * 24 * 3600));
    for bad in ["14", "0", "ten"] {
        let err = Config::from_env(&|name: &str| match name {
            "CRM_LEDGER_RETENTION_DAYS" => Some(bad.to_owned()),
            "SALESFORCE_API_VERSION"
            | "CRM_LEASE_SECONDS"
            | "RELTIO_AUTH_URL"
            | "METRICS_NAMESPACE" => None,
            other => base(other),
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("CRM_LEDGER_RETENTION_DAYS"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn metrics_cover_received_applied_skipped_calls_and_latency() {
    let env = env().await;
    let now = chrono::Utc::now().timestamp_millis();
    let a = changed(&entity("E1", &[C1], "Ann", now));
    let none = changed(&entity("E2", &[], "Bo", now));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[
                ("m1", &a, &[("eventId", "a")]),
                ("m2", &a, &[("eventId", "a")]),
                ("m3", &none, &[]),
            ],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("RecordsReceived"), 3);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert_eq!(h.metrics.counter("ContactsUpdated"), 1);
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    assert_eq!(h.metrics.counter("SkippedNoCrosswalk"), 1);
    assert_eq!(h.metrics.counter("SalesforceCalls"), 1);
    let emf = h.metrics.to_emf(0).unwrap();
    assert!(emf["SalesforceLatency"].as_f64().unwrap() >= 0.0, "{emf}");
    let e2e = emf["EndToEndLatency"].as_f64().unwrap();
    assert!((0.0..60_000.0).contains(&e2e), "{emf}");
}

// ---------------------------------------------------------------------------------------------- SOAP merge

const SOAP: &str = "/services/Soap/u/66.0";

/// SOAP merge(): merges every request unless a record is already gone (ENTITY_IS_DELETED) or listed in
/// `fail` (record Id → statusCode); merged records are remembered as deleted.
struct SoapMerge {
    deleted: std::sync::Mutex<std::collections::HashSet<String>>,
    fail: HashMap<String, String>,
}

impl SoapMerge {
    fn new(fail: &[(&str, &str)]) -> SoapMerge {
        SoapMerge {
            deleted: Default::default(),
            fail: fail
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.split(open)
        .skip(1)
        .filter_map(|part| part.split(close).next())
        .collect()
}

/// `(master, records)` of each MergeRequest in a merge() envelope.
fn merge_requests_in(body: &str) -> Vec<(String, Vec<String>)> {
    between(body, "<urn:request>", "</urn:request>")
        .into_iter()
        .map(|r| {
            let master = between(r, "<urn1:Id>", "</urn1:Id>")[0].to_owned();
            let records = between(r, "<urn:recordToMergeIds>", "</urn:recordToMergeIds>")
                .into_iter()
                .map(str::to_owned)
                .collect();
            (master, records)
        })
        .collect()
}

fn merge_response(results: &[String]) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><mergeResponse>{}</mergeResponse></soapenv:Body></soapenv:Envelope>"#,
        results.concat()
    )
}

fn soap_fault(code: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: injected</faultstring><detail><sf:UnexpectedErrorFault><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>injected</sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
    )
}

impl Respond for SoapMerge {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body);
        let mut deleted = self.deleted.lock().unwrap();
        let results: Vec<String> = merge_requests_in(&body)
            .into_iter()
            .map(|(master, records)| {
                let error = records.iter().find_map(|r| {
                    if deleted.contains(r) {
                        Some("ENTITY_IS_DELETED".to_owned())
                    } else {
                        self.fail.get(r).cloned()
                    }
                });
                match error {
                    Some(code) => format!("<result><errors><message>injected</message><statusCode>{code}</statusCode></errors><id xsi:nil=\"true\"/><success>false</success></result>"),
                    None => {
                        deleted.extend(records.iter().cloned());
                        let merged: String = records.iter().map(|r| format!("<mergedRecordIds>{r}</mergedRecordIds>")).collect();
                        let related: String = records.iter().map(|r| format!("<updatedRelatedIds>500{}</updatedRelatedIds>", &r[3..])).collect();
                        format!("<result><id>{master}</id>{merged}<success>true</success>{related}</result>")
                    }
                }
            })
            .collect();
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/xml; charset=utf-8")
            .set_body_string(merge_response(&results))
    }
}

async fn soap_env(fail: &[(&str, &str)]) -> Env {
    let env = env_full(true, &[], &[("merge_strategy", "soap")]).await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(header("soapaction", "merge"))
        .respond_with(SoapMerge::new(fail))
        .mount(&env.server)
        .await;
    env
}

/// Every merge() call so far: its MergeRequests.
async fn merge_calls(server: &MockServer) -> Vec<Vec<(String, Vec<String>)>> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == SOAP)
        .map(|r| merge_requests_in(&String::from_utf8_lossy(&r.body)))
        .collect()
}

async fn mount_entity(server: &MockServer, uri_id: &str, entity: &Value) {
    Mock::given(method("GET"))
        .and(path(format!("/reltio/api/T/entities/{uri_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(entity))
        .mount(server)
        .await;
}

const C4: &str = "003000000000004AAA";

#[tokio::test]
async fn soap_merge_of_a_winner_and_two_losers_then_redelivered() {
    let env = soap_env(&[]).await;
    mount_entity(&env.server, "W", &entity("W", &[C2, C1, C3], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "updatedTime": 5000, "uris": ["entities/W", "entities/L1", "entities/L2"]}).to_string();
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &merge, &[("eventId", "merge-1")])]),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    let calls = merge_calls(&env.server).await;
    assert_eq!(
        calls,
        vec![vec![(C1.to_owned(), vec![C2.to_owned(), C3.to_owned()])]],
        "one request: master + 2"
    );
    // The envelope authenticates with the session token.
    let soap_body = env
        .server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == SOAP)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&soap_body.body).contains("<urn:sessionId>tok1</urn:sessionId>")
    );
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1, "only the survivor is written: {w:#?}");
    assert_eq!(w[0]["id"], C1);
    assert_eq!(w[0]["FirstName"], "Ann");
    assert!(w[0].get("Merged_Into__c").is_none());
    assert_eq!(h.metrics.counter("ContactsMerged"), 2);
    assert_eq!(h.metrics.counter("ChildRecordsRepointed"), 2);
    assert_eq!(h.metrics.counter("ContactsArchived"), 0);
    let queries = env
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == QUERY)
        .count();
    assert_eq!(queries, 0, "merge() re-parents children itself");

    // The same merge again: as the same event (duplicate), and under another event id (unchanged).
    for (m, id) in [("m2", "merge-1"), ("m3", "merge-1-again")] {
        let h = run(&env, sqs(QUEUE_ARN, &[(m, &merge, &[("eventId", id)])])).await;
        assert!(failures(&h).is_empty());
    }
    assert_eq!(
        merge_calls(&env.server).await.len(),
        1,
        "no new merge calls"
    );
    assert_eq!(writes(&env.server).await.len(), 1, "no new writes");

    // A later change of the winner writes the survivor but merges nothing again.
    let later = changed(&entity("W", &[C2, C1, C3], "Annie", 6000));
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m4", &later, &[("eventId", "W-later")])]),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(merge_calls(&env.server).await.len(), 1);
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 2);
    assert_eq!(w[1]["FirstName"], "Annie");
}

#[tokio::test]
async fn soap_three_losers_take_two_merge_requests() {
    let env = soap_env(&[]).await;
    mount_entity(
        &env.server,
        "W",
        &entity("W", &[C4, C3, C2, C1], "Ann", 5000),
    )
    .await;
    let merge =
        json!({"type": "ENTITIES_MERGED", "uris": ["entities/W", "entities/L1"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(
        merge_calls(&env.server).await,
        vec![vec![
            (C1.to_owned(), vec![C2.to_owned(), C3.to_owned()]),
            (C1.to_owned(), vec![C4.to_owned()])
        ]],
        "one call, two requests"
    );
    assert_eq!(h.metrics.counter("ContactsMerged"), 3);
}

#[tokio::test]
async fn soap_already_merged_loser_counts_as_done_and_the_live_one_is_still_merged() {
    let env = soap_env(&[]).await;
    // C2 was merged away before (say by hand): the request of C2 + C3 fails as a whole, so each is retried alone.
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(wiremock::matchers::body_string_contains(format!(
            "<urn:recordToMergeIds>{C2}</urn:recordToMergeIds><urn:recordToMergeIds>{C3}"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_string(merge_response(&[
            "<result><errors><message>gone</message><statusCode>ENTITY_IS_DELETED</statusCode></errors><success>false</success></result>".to_owned(),
        ])))
        .with_priority(1)
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(wiremock::matchers::body_string_contains(format!("<urn:recordToMergeIds>{C2}</urn:recordToMergeIds></urn:request><urn:request>")))
        .respond_with(ResponseTemplate::new(200).set_body_string(merge_response(&[
            "<result><errors><message>gone</message><statusCode>INVALID_CROSS_REFERENCE_KEY</statusCode></errors><success>false</success></result>".to_owned(),
            format!("<result><id>{C1}</id><mergedRecordIds>{C3}</mergedRecordIds><success>true</success></result>"),
        ])))
        .with_priority(1)
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2, C3], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    let calls = merge_calls(&env.server).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[1],
        vec![
            (C1.to_owned(), vec![C2.to_owned()]),
            (C1.to_owned(), vec![C3.to_owned()])
        ]
    );
    assert_eq!(h.metrics.counter("ContactsMerged"), 1);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn soap_permanent_merge_failure_is_dead_lettered_and_the_survivor_not_written() {
    let env = soap_env(&[(C2, "INVALID_FIELD_FOR_INSERT_UPDATE")]).await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &merge, &[("eventId", "bad-merge")])]),
    )
    .await;
    assert!(failures(&h).is_empty());
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["eventId"], "bad-merge");
    assert!(
        dl[0]["reason"]
            .as_str()
            .unwrap()
            .contains("INVALID_FIELD_FOR_INSERT_UPDATE"),
        "{dl:?}"
    );
    assert!(writes(&env.server).await.is_empty());
}

#[tokio::test]
async fn soap_fault_for_the_whole_call_is_dead_lettered_when_permanent() {
    let env = env_full(true, &[], &[("merge_strategy", "soap")]).await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(ResponseTemplate::new(500).set_body_string(soap_fault("INVALID_TYPE")))
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty());
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert!(
        dl[0]["reason"].as_str().unwrap().contains("INVALID_TYPE"),
        "{dl:?}"
    );
    assert_eq!(
        merge_calls(&env.server).await.len(),
        1,
        "a permanent fault is not retried"
    );
}

#[tokio::test]
async fn soap_transient_failures_are_batch_item_failures() {
    // A locked row in one request's result, and the API limit as a fault for the whole call.
    let env = soap_env(&[(C2, "UNABLE_TO_LOCK_ROW")]).await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert_eq!(failures(&h), vec!["m1"]);
    assert!(dead_letters(&env).await.is_empty());
    assert!(writes(&env.server).await.is_empty());

    let env = env_full(true, &[], &[("merge_strategy", "soap")]).await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(
            ResponseTemplate::new(500).set_body_string(soap_fault("REQUEST_LIMIT_EXCEEDED")),
        )
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert_eq!(failures(&h), vec!["m1"]);
    assert!(dead_letters(&env).await.is_empty());
    // The merge is recorded nowhere: delivered again once Salesforce answers, it merges.
    env.server.reset().await;
    mount_token(&env.server, "tok1").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(SoapMerge::new(&[]))
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "rtok", "expires_in": 3600})),
        )
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsMerged"), 1);
}

#[tokio::test]
async fn soap_expired_session_is_renewed_once() {
    let env = env_full(false, &[], &[("merge_strategy", "soap")]).await;
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
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(wiremock::matchers::body_string_contains(
            "<urn:sessionId>tok1</urn:sessionId>",
        ))
        .respond_with(ResponseTemplate::new(500).set_body_string(soap_fault("INVALID_SESSION_ID")))
        .with_priority(1)
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(SoapMerge::new(&[]))
        .mount(&env.server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsMerged"), 1);
    assert_eq!(merge_calls(&env.server).await.len(), 2);
}

/// Answers like [`Collections`], after `delay`.
struct Slow(Duration);

impl Respond for Slow {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        Collections {
            fail: HashMap::new(),
        }
        .respond(req)
        .set_delay(self.0)
    }
}

#[tokio::test]
async fn a_merge_claimed_while_a_losers_older_change_is_in_flight_waits_for_it() {
    let env = env().await;
    // L's own older change (snapshot 4000, Contact C2) is being written slowly by invocation A ...
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .and(wiremock::matchers::body_string_contains("OldL"))
        .respond_with(Slow(Duration::from_millis(1500)))
        .with_priority(1)
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Merged", 5000)).await;
    empty_queries(&env.server).await;
    let late = changed(&entity("L", &[C2], "OldL", 4000));
    let merge = json!({"type": "ENTITIES_MERGED", "updatedTime": 5000, "uris": ["entities/W", "entities/L"]})
        .to_string();
    let a = run(
        &env,
        sqs(QUEUE_ARN, &[("a", &late, &[("eventId", "L-old")])]),
    );
    // ... while invocation B applies W's merge of L.
    let b = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        run(
            &env,
            sqs(QUEUE_ARN, &[("b", &merge, &[("eventId", "merge")])]),
        )
        .await
    };
    let (a, b) = tokio::join!(a, b);
    assert!(failures(&a).is_empty(), "{:?}", failures(&a));
    assert_eq!(failures(&b), vec!["b"], "the merge waits for L's lease");

    let b = run(
        &env,
        sqs(QUEUE_ARN, &[("b", &merge, &[("eventId", "merge")])]),
    )
    .await;
    assert!(failures(&b).is_empty(), "{:?}", failures(&b));
    // The archive of C2 lands after L's old values, and L's old change cannot come back.
    let w = writes(&env.server).await;
    let last_c2 = w.iter().rev().find(|r| r["id"] == C2).unwrap();
    assert_eq!(last_c2["Status__c"], "Merged", "{w:#?}");
    let again = run(
        &env,
        sqs(QUEUE_ARN, &[("a2", &late, &[("eventId", "L-old-2")])]),
    )
    .await;
    assert_eq!(again.metrics.counter("SkippedStale"), 1);
}
