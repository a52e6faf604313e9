//! What the handler tests share: a moto_server (Secrets Manager, the DLQ) and a wiremock Reltio, the function's
//! environment and Deps over them, and the assertions' helpers.
#![allow(dead_code)] // each test crate uses its own part

use cdc_ingest::{Config, Deps};
use mdm_sync_adapters::kinesis::KinesisEvent;
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_testkit::{kinesis_event, workspace_root, MotoServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub struct World {
    pub moto: MotoServer,
    pub reltio: MockServer,
    pub dlq_url: String,
    pub secret_arn: String,
}

impl World {
    pub async fn start() -> World {
        let moto = MotoServer::start();
        let secret_arn = moto
            .create_secret(
                "reltio-client",
                &json!({"client_id": "cdc", "client_secret": "s3cr3t-value"}),
            )
            .await;
        let dlq_url = moto.create_queue("cdc-ingest-dlq").await;
        let reltio = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"access_token": "tok", "token_type": "bearer", "expires_in": 3600}),
            ))
            .mount(&reltio)
            .await;
        World {
            moto,
            reltio,
            dlq_url,
            secret_arn,
        }
    }

    pub fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            (
                "RELTIO_API_URL",
                format!("{}/reltio/api/T1", self.reltio.uri()),
            ),
            (
                "RELTIO_AUTH_URL",
                format!("{}/oauth/token", self.reltio.uri()),
            ),
            ("RELTIO_SECRET_ID", self.secret_arn.clone()),
            (
                "CDC_MAPPING_FILE",
                workspace_root()
                    .join("functions/cdc-ingest/mapping.example.toml")
                    .display()
                    .to_string(),
            ),
            ("CDC_DLQ_URL", self.dlq_url.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    pub async fn deps(&self, extra: &[(&str, &str)]) -> Deps {
        let env = self.env(extra);
        let config = Config::from_env(&|k: &str| env.get(k).cloned()).unwrap();
        let retry = RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
            max_attempts: 3,
        };
        Deps::new(
            config,
            &self.moto.sdk_config().await,
            reqwest::Client::new(),
            retry,
        )
        .unwrap()
    }

    /// Reltio answers every POST /entities with one OK item per entity.
    pub async fn entities_ok(&self) {
        Mock::given(method("POST"))
            .and(path("/reltio/api/T1/entities"))
            .respond_with(ok_per_entity)
            .mount(&self.reltio)
            .await;
    }

    /// The bodies of the POST /entities requests Reltio received, in arrival order, with their query.
    pub async fn posts(&self) -> Vec<(String, Value)> {
        self.reltio
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path().ends_with("/entities"))
            .map(|r| {
                (
                    r.url.query().unwrap_or("").to_owned(),
                    serde_json::from_slice(&r.body).unwrap(),
                )
            })
            .collect()
    }

    pub async fn dlq(&self) -> Vec<Value> {
        self.moto
            .drain_queue(&self.dlq_url)
            .await
            .into_iter()
            .map(|m| serde_json::from_str(m.body.as_deref().unwrap()).unwrap())
            .collect()
    }
}

pub fn ok_per_entity(request: &Request) -> ResponseTemplate {
    let sent: Vec<Value> = serde_json::from_slice(&request.body).unwrap();
    let items: Vec<Value> = (0..sent.len())
        .map(|i| json!({"index": i, "uri": format!("entities/e{i}"), "status": "OK"}))
        .collect();
    ResponseTemplate::new(200).set_body_json(items)
}

pub fn event(records: &[&[u8]]) -> KinesisEvent {
    let pairs: Vec<(&str, &[u8])> = records.iter().map(|d| ("public.customer", *d)).collect();
    serde_json::from_value(kinesis_event(&pairs)).unwrap()
}

pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

pub fn failures(response: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

pub fn customer(value: &str) -> Value {
    json!({"type": "configuration/sources/CRM_DB", "value": value, "sourceTable": "CUSTOMER"})
}
