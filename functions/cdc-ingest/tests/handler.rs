//! cdc-ingest end to end in-process: a Kinesis event of real-format DMS records → the handler → a wiremock
//! Reltio, with Secrets Manager and the DLQ queue on a local moto_server.

mod common;

use cdc_ingest::{handle, Config};
use common::{customer, event, failures, ok_per_entity, soon, World};
use mdm_sync_adapters::kinesis::KinesisEvent;
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_testkit::sequence_number;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, Request, ResponseTemplate};

const INSERT_46: &[u8] = include_bytes!("../../../tests/fixtures/dms/insert.json");
const PK_CHANGE_46_TO_47: &[u8] =
    include_bytes!("../../../tests/fixtures/dms/update-pk-change.json");
const DELETE_46: &[u8] = include_bytes!("../../../tests/fixtures/dms/delete-key-only.json");
const LOAD_7: &[u8] = include_bytes!("../../../tests/fixtures/dms/load-minimal.json");
const ORDER_LINE: &[u8] = include_bytes!("../../../tests/fixtures/dms/composite-key.json");
const CREATE_TABLE: &[u8] = include_bytes!("../../../tests/fixtures/dms/create-table.json");
const APPLY_EXCEPTIONS: &[u8] =
    include_bytes!("../../../tests/fixtures/dms/apply-exceptions-control.json");
const UNMAPPED: &[u8] = br#"{"data":{"id":1,"what":"x"},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"audit_log","timestamp":"2024-07-29T00:00:00Z"}}"#;

#[tokio::test]
async fn a_clean_batch_sends_exactly_the_mapped_entities_and_skips_the_rest() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let ev = event(&[
        INSERT_46,
        PK_CHANGE_46_TO_47,
        ORDER_LINE,
        CREATE_TABLE,
        APPLY_EXCEPTIONS,
        UNMAPPED,
    ]);

    let response = handle(&deps, ev, soon()).await;

    assert!(failures(&response).is_empty());
    assert!(world.dlq().await.is_empty());
    let posts = world.posts().await;
    // Wave 1: 46's insert and the order line; wave 2: the primary-key change retires 46 (after 46's insert);
    // wave 3: only then is 47 upserted.
    assert_eq!(posts.len(), 4, "{posts:#?}");
    let address = customer("46:address");
    let full: Vec<&Value> = posts
        .iter()
        .filter(|(q, _)| q == "returnObjects=false")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        full,
        vec![
            &json!([
                {"type": "configuration/entityTypes/Individual",
                 "attributes": {
                     "FirstName": [{"value": "Jane"}], "LastName": [{"value": "Doe"}],
                     "Email": [{"value": "jane.doe@example.com"}], "DateOfBirth": [{"value": "1990-03-04"}],
                     "Address": [{"value": {"City": [{"value": "Austin"}]},
                                  "refEntity": {"type": "configuration/entityTypes/Location", "crosswalks": [address]},
                                  "refRelation": {"type": "configuration/relationTypes/HasAddress", "crosswalks": [address]}}]},
                 "crosswalks": [customer("46")]}
            ]),
            &json!([
                {"type": "configuration/entityTypes/Individual",
                 "attributes": {
                     "FirstName": [{"value": "Jane"}], "LastName": [{"value": "Doe"}],
                     "Email": [{"value": "jane@example.com"}],
                     "Address": [{"value": {"City": [{"value": "Austin"}]},
                                  "refEntity": {"type": "configuration/entityTypes/Location", "crosswalks": [customer("47:address")]},
                                  "refRelation": {"type": "configuration/relationTypes/HasAddress", "crosswalks": [customer("47:address")]}}]},
                 "crosswalks": [customer("47")]}
            ])
        ]
    );
    let partial: Vec<&Value> = posts
        .iter()
        .filter(|(q, _)| q == "returnObjects=false&options=partialOverride")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(partial.len(), 2);
    assert!(partial.contains(&&json!([
        {"type": "configuration/entityTypes/Product",
         "attributes": {"SKU": [{"value": "AB-1"}], "Quantity": [{"value": "3"}]},
         "crosswalks": [{"type": "configuration/sources/ERP", "value": "9001|2"}]}
    ])));
    let mut retired = customer("46");
    retired["deleteDate"] = json!("2024-07-29T00:58:59.000Z");
    assert_eq!(
        posts[2].1,
        json!([{"type": "configuration/entityTypes/Individual", "crosswalks": [retired]}]),
        "the retirement of 46 is the third request"
    );
    assert_eq!(
        posts[3].1[0]["crosswalks"],
        json!([customer("47")]),
        "47 comes last"
    );
}

#[tokio::test]
async fn changes_to_one_key_reach_reltio_in_order() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;

    let response = handle(&deps, event(&[INSERT_46, DELETE_46, INSERT_46]), soon()).await;

    assert!(failures(&response).is_empty());
    let posts = world.posts().await;
    let kinds: Vec<&str> = posts
        .iter()
        .map(|(_, b)| {
            if b[0]["crosswalks"][0].get("deleteDate").is_some() {
                "end-date"
            } else {
                "upsert"
            }
        })
        .collect();
    assert_eq!(kinds, vec!["upsert", "end-date", "upsert"]);
}

#[tokio::test]
async fn a_malformed_record_is_dead_lettered_with_its_reason_and_the_rest_written() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let ev = event(&[INSERT_46, b"\x00not json at all", ORDER_LINE]);

    let response = handle(&deps, ev, soon()).await;

    assert!(
        failures(&response).is_empty(),
        "a permanent failure is handled, not retried"
    );
    let dlq = world.dlq().await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["sequenceNumber"], sequence_number(1));
    assert!(dlq[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("record is not valid JSON"));
    assert_eq!(dlq[0]["recordBase64"], "AG5vdCBqc29uIGF0IGFsbA==");
    assert_eq!(dlq[0]["function"], "cdc-ingest");
    let written: Vec<String> = world
        .posts()
        .await
        .iter()
        .map(|(_, b)| b[0]["crosswalks"][0]["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(written.len(), 2);
    assert!(written.contains(&"46".to_string()) && written.contains(&"9001|2".to_string()));
}

#[tokio::test]
async fn a_record_the_mapping_cannot_key_is_dead_lettered_with_table_and_reason() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    let no_key: &[u8] = br#"{"data":{"id":null,"first_name":"X"},"metadata":{"record-type":"data","operation":"insert","schema-name":"public","table-name":"customer"}}"#;

    let response = handle(&deps, event(&[no_key]), soon()).await;

    assert!(failures(&response).is_empty());
    let dlq = world.dlq().await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["table"], "public.customer");
    assert_eq!(
        dlq[0]["reason"],
        "table public.customer: key column id is missing or null"
    );
    assert_eq!(dlq[0]["record"]["data"]["first_name"], "X");
    assert!(world.posts().await.is_empty());
}

#[tokio::test]
async fn reltio_503_mid_batch_fails_from_the_first_unwritten_record_and_dead_letters_nothing_after_it(
) {
    let world = World::start().await;
    Mock::given(method("POST"))
        .and(path("/reltio/api/T1/entities"))
        .and(body_string_contains(r#""value":"7""#))
        .respond_with(ResponseTemplate::new(503))
        .mount(&world.reltio)
        .await;
    world.entities_ok().await;
    let deps = world
        .deps(&[("RELTIO_BATCH_SIZE", "1"), ("RELTIO_MAX_CONCURRENCY", "1")])
        .await;
    // 46 is written; 7 keeps getting 503; the malformed record after it must wait for the retry.
    let ev = event(&[INSERT_46, LOAD_7, b"{broken", ORDER_LINE]);

    let response = handle(&deps, ev, soon()).await;

    assert_eq!(failures(&response), vec![sequence_number(1)]);
    assert!(
        world.dlq().await.is_empty(),
        "records after the checkpoint are retried, not dead-lettered"
    );
    let tries_for_7 = world
        .posts()
        .await
        .iter()
        .filter(|(_, b)| b[0]["crosswalks"][0]["value"] == "7")
        .count();
    assert_eq!(
        tries_for_7, 3,
        "retried up to max_attempts inside the invocation"
    );
}

#[tokio::test]
async fn an_entity_reltio_rejects_is_dead_lettered_and_its_neighbours_written() {
    let world = World::start().await;
    Mock::given(method("POST"))
        .and(path("/reltio/api/T1/entities"))
        .respond_with(|request: &Request| {
            let sent: Vec<Value> = serde_json::from_slice(&request.body).unwrap();
            let items: Vec<Value> = sent
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    if e["crosswalks"][0]["value"] == "7" {
                        json!({"index": i, "errors": {"errorCode": 103, "errorMessage": "Invalid attribute value"}})
                    } else {
                        json!({"index": i, "uri": "entities/x", "status": "OK"})
                    }
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(items)
        })
        .mount(&world.reltio)
        .await;
    let deps = world.deps(&[]).await;

    let response = handle(&deps, event(&[INSERT_46, LOAD_7]), soon()).await;

    assert!(failures(&response).is_empty());
    let dlq = world.dlq().await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["key"], "7");
    assert_eq!(dlq[0]["sequenceNumber"], sequence_number(1));
    // The error code, never Reltio's message text (it can echo the values sent).
    assert_eq!(dlq[0]["reason"], "Reltio rejected the entity: error 103");
}

#[tokio::test]
async fn a_dead_letter_queue_that_cannot_be_reached_turns_the_record_into_a_retry() {
    let world = World::start().await;
    world.entities_ok().await;
    let missing_queue = format!("{}/123456789012/no-such-queue", world.moto.endpoint);
    let deps = world.deps(&[("CDC_DLQ_URL", &missing_queue)]).await;

    let response = handle(&deps, event(&[INSERT_46, b"garbage", ORDER_LINE]), soon()).await;

    assert_eq!(failures(&response), vec![sequence_number(1)]);
}

#[tokio::test]
async fn unreadable_credentials_are_transient_and_nothing_is_dead_lettered() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[("RELTIO_SECRET_ID", "no-such-secret")]).await;

    let response = handle(&deps, event(&[INSERT_46, ORDER_LINE]), soon()).await;

    assert_eq!(failures(&response), vec![sequence_number(0)]);
    assert!(world.dlq().await.is_empty());
}

#[test]
fn a_missing_setting_stops_start_up_naming_it() {
    let env: HashMap<String, String> = HashMap::new();
    let err = Config::from_env(&|k: &str| env.get(k).cloned()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "required setting RELTIO_API_URL is not set"
    );
}

#[test]
fn defaults_are_documented_values() {
    let env: HashMap<&str, &str> = [
        ("RELTIO_API_URL", "https://test.reltio.com/reltio/api/T1/"),
        (
            "RELTIO_SECRET_ID",
            "arn:aws:secretsmanager:us-east-1:1:secret:r",
        ),
        ("CDC_MAPPING_FILE", "/var/task/mapping.toml"),
        ("CDC_DLQ_URL", "https://sqs.us-east-1.amazonaws.com/1/dlq"),
    ]
    .into_iter()
    .collect();
    let config = Config::from_env(&|k: &str| env.get(k).map(|v| v.to_string())).unwrap();
    assert_eq!(
        config.reltio.api_url,
        "https://test.reltio.com/reltio/api/T1"
    );
    assert_eq!(
        config.reltio.auth_url,
        "https://auth.reltio.com/oauth/token"
    );
    assert_eq!(config.batch_size, 100);
    assert_eq!(config.max_concurrency, 4);
    assert_eq!(config.metrics_namespace, "MdmSync");
    assert_eq!(config.before_image_field, "before-image");
}

#[test]
fn the_sample_event_plans_every_record_without_dead_letters() {
    let event: KinesisEvent =
        serde_json::from_slice(include_bytes!("../../../events/cdc-ingest.json")).unwrap();
    let mapping =
        mdm_sync_domain::cdc::mapping::CdcMapping::parse(include_str!("../mapping.example.toml"))
            .unwrap();
    let plan = mdm_sync_domain::cdc::batch::plan_batch(
        &mapping,
        "before-image",
        &mdm_sync_adapters::kinesis::cdc_inputs(&event.records),
        chrono::Utc::now(),
    );
    let decisions = plan.decisions();
    assert_eq!(decisions.len(), 5);
    assert!(decisions[0].ends_with("skip: control"), "{decisions:?}");
    assert!(
        decisions[1..].iter().all(|d| d.ends_with("→ write")),
        "{decisions:?}"
    );
    assert_eq!(
        plan.waves.len(),
        3,
        "the primary-key change retires 46 after 46's upsert, then upserts 47"
    );
}

/// Reltio unavailable (`status`) until `until`, then [`ok_per_entity`].
struct DownUntil {
    until: Instant,
    status: u16,
}

impl wiremock::Respond for DownUntil {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if Instant::now() < self.until {
            ResponseTemplate::new(self.status).set_body_json(json!({"errorMessage": "down"}))
        } else {
            ok_per_entity(request)
        }
    }
}

#[tokio::test]
async fn an_outage_longer_than_the_request_retries_is_waited_out_within_the_invocation() {
    for status in [503, 401] {
        let world = World::start().await;
        Mock::given(method("POST"))
            .and(path("/reltio/api/T1/entities"))
            .respond_with(DownUntil {
                until: Instant::now() + Duration::from_millis(800),
                status,
            })
            .mount(&world.reltio)
            .await;
        let mut deps = world.deps(&[]).await;
        deps.outage_backoff = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(200),
            max_attempts: u32::MAX,
        };
        let response = handle(&deps, event(&[INSERT_46, LOAD_7]), soon()).await;
        assert!(
            failures(&response).is_empty(),
            "HTTP {status}: nothing left for Lambda to retry"
        );
        assert!(
            world.dlq().await.is_empty(),
            "HTTP {status}: nothing dead-lettered"
        );
        let written: Vec<String> = world
            .posts()
            .await
            .iter()
            .filter_map(|(_, b)| b[0]["crosswalks"][0]["value"].as_str().map(str::to_owned))
            .collect();
        assert!(
            written.contains(&"46".to_owned()),
            "HTTP {status}: {written:?}"
        );
    }
}

#[tokio::test]
async fn an_outage_past_the_deadline_ends_as_a_batch_failure_from_the_first_record() {
    let world = World::start().await;
    Mock::given(method("POST"))
        .and(path("/reltio/api/T1/entities"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&world.reltio)
        .await;
    let mut deps = world.deps(&[]).await;
    deps.outage_backoff = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(200),
        max_attempts: u32::MAX,
    };
    let started = Instant::now();
    let response = handle(
        &deps,
        event(&[INSERT_46, LOAD_7]),
        started + Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        failures(&response),
        vec![mdm_sync_testkit::sequence_number(0)]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited before giving up"
    );
    assert!(world.dlq().await.is_empty());
}

#[tokio::test]
async fn a_bad_record_too_large_for_the_dlq_is_dead_lettered_with_a_pointer_not_retried() {
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    // A 900 KB record that is not DMS JSON: wrapped in base64 it would be far over SQS's 256 KiB.
    let huge = vec![b'x'; 900 * 1024];
    let response = handle(&deps, event(&[INSERT_46, &huge]), soon()).await;

    assert!(
        failures(&response).is_empty(),
        "dead-lettered once, never cycled as a send failure"
    );
    let dlq = world.dlq().await;
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert!(d.get("recordBase64").is_none() && d.get("record").is_none());
    assert_eq!(d["sequenceNumber"], sequence_number(1));
    assert_eq!(d["shardId"], "shardId-000000000000");
    assert_eq!(d["recordOmitted"]["bytes"], 900 * 1024);
    assert_eq!(d["recordOmitted"]["sha256"].as_str().unwrap().len(), 64);
    assert!(d["reason"].as_str().unwrap().contains("JSON"), "{d}");
}

const SAME_KEY_UPDATE_46: &[u8] =
    include_bytes!("../../../tests/fixtures/dms/update-same-key.json");

/// The crosswalk values upserted (not end-dated) in the POSTs Reltio received.
async fn upserted(world: &World) -> Vec<String> {
    world
        .posts()
        .await
        .iter()
        .flat_map(|(_, b)| b.as_array().cloned().unwrap_or_default())
        .filter(|e| e["crosswalks"][0].get("deleteDate").is_none())
        .filter_map(|e| e["crosswalks"][0]["value"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn with_the_key_ledger_an_old_key_is_not_revived_after_its_primary_key_change() {
    let world = World::start().await;
    world.entities_ok().await;
    world.moto.create_ledger_table("cdc-keys").await;
    let deps = world.deps(&[("CDC_KEY_LEDGER_TABLE", "cdc-keys")]).await;
    // 46 → 47 at 00:58:59 retires 46; 46's own insert from 00:58:17, on another shard, arrives after it.
    let r = handle(&deps, event(&[PK_CHANGE_46_TO_47]), soon()).await;
    assert!(failures(&r).is_empty());
    let r = handle(&deps, event(&[INSERT_46]), soon()).await;
    assert!(failures(&r).is_empty());
    assert!(world.dlq().await.is_empty());
    assert_eq!(
        upserted(&world).await,
        vec!["47".to_owned()],
        "46 stays retired"
    );
}

#[tokio::test]
async fn without_the_key_ledger_the_late_insert_revives_the_old_key() {
    // The documented limit the ledger closes, pinned so that the difference stays visible.
    let world = World::start().await;
    world.entities_ok().await;
    let deps = world.deps(&[]).await;
    handle(&deps, event(&[PK_CHANGE_46_TO_47]), soon()).await;
    handle(&deps, event(&[INSERT_46]), soon()).await;
    assert_eq!(
        upserted(&world).await,
        vec!["47".to_owned(), "46".to_owned()]
    );
}

#[tokio::test]
async fn with_the_key_ledger_a_replay_of_old_records_is_skipped_and_counted() {
    let world = World::start().await;
    world.entities_ok().await;
    world.moto.create_ledger_table("cdc-keys").await;
    let deps = world.deps(&[("CDC_KEY_LEDGER_TABLE", "cdc-keys")]).await;
    let r = handle(&deps, event(&[INSERT_46, SAME_KEY_UPDATE_46]), soon()).await;
    assert!(failures(&r).is_empty());
    let before = world.posts().await.len();
    // A backfill or redrive replays the insert of 00:58:17 after the update of 00:59:09 was applied.
    let r = handle(&deps, event(&[INSERT_46]), soon()).await;
    assert!(failures(&r).is_empty());
    assert_eq!(
        world.posts().await.len(),
        before,
        "nothing sent for the stale record"
    );
    assert!(world.dlq().await.is_empty(), "skipped, not dead-lettered");
    // The same update delivered again (Kinesis duplicates) is applied again: idempotent, not stale.
    handle(&deps, event(&[SAME_KEY_UPDATE_46]), soon()).await;
    assert_eq!(world.posts().await.len(), before + 1);
}
