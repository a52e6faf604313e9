//! What the end-to-end tests share: one wiremock server for Salesforce and Reltio, a local moto_server for the
//! DynamoDB ledger, the SQS DLQ and Secrets Manager, the function's Deps over them, entity and batch builders,
//! and readers of what was written and dead-lettered. `soap` mocks Salesforce's SOAP merge().

#[allow(dead_code)] // only soap_merge.rs merges over SOAP
pub mod soap;

use crate::events::SFDC;
use crm_updater::{handle, Config, Deps, Handled};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_testkit::{sqs_event, MotoServer, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const COLLECTIONS: &str = "/services/data/v66.0/composite/sobjects";
#[allow(dead_code)] // updates.rs queries nothing
pub const QUERY: &str = "/services/data/v66.0/query";

pub const C1: &str = "003000000000001AAA";
pub const C2: &str = "003000000000002AAA";
pub const C3: &str = "003000000000003AAA";

/// sObject Collections: success for every record except the Ids in `fail` (Id → statusCode).
pub struct Collections {
    pub fail: HashMap<String, String>,
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

pub struct Env {
    #[allow(dead_code)] // kept alive; archive_merge.rs reads neither the ledger nor the DLQ
    pub moto: MotoServer,
    pub server: MockServer,
    pub deps: Deps,
    #[allow(dead_code)] // only dead_letters reads it
    pub dlq_url: String,
}

#[allow(dead_code)] // soap_merge.rs starts from env_full
pub async fn env_with(mount_defaults: bool, fail: &[(&str, &str)]) -> Env {
    env_full(mount_defaults, fail, &[]).await
}

/// `settings`: extra environment variables; `("merge_strategy", "soap")` switches the mapping file to SOAP.
pub async fn env_full(
    mount_defaults: bool,
    fail: &[(&str, &str)],
    settings: &[(&str, &str)],
) -> Env {
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

#[allow(dead_code)] // soap_merge.rs starts from env_full
pub async fn env() -> Env {
    env_with(true, &[]).await
}

pub async fn mount_token(server: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": token, "instance_url": server.uri(), "token_type": "Bearer"}),
        ))
        .mount(server)
        .await;
}

/// Reltio answers a GET of `entities/{uri_id}` with `entity`.
#[allow(dead_code)] // updates.rs and archive_merge.rs mount their own or none
pub async fn mount_entity(server: &MockServer, uri_id: &str, entity: &Value) {
    Mock::given(method("GET"))
        .and(path(format!("/reltio/api/T/entities/{uri_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(entity))
        .mount(server)
        .await;
}

fn attr(value: &str) -> Value {
    json!([{"value": value, "ov": true}])
}

pub fn entity(id: &str, contacts: &[&str], first_name: &str, updated: i64) -> Value {
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

pub fn sqs(arn: &str, messages: &[SqsTestMessage]) -> SqsEvent {
    serde_json::from_value(sqs_event(arn, messages)).expect("SQS event")
}

pub async fn run(env: &Env, event: SqsEvent) -> Handled {
    handle(&env.deps, event, Instant::now() + Duration::from_secs(20)).await
}

/// Every record written through sObject Collections so far, in order.
pub async fn writes(server: &MockServer) -> Vec<Value> {
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

#[allow(dead_code)] // archive_merge.rs and ordering.rs dead-letter nothing
pub async fn dead_letters(env: &Env) -> Vec<Value> {
    env.moto
        .drain_queue(&env.dlq_url)
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}
