//! `mdm-sync transform` against cdc-ingest itself: the same Kinesis event through the function's handler (to a
//! wiremock Reltio) and through the CLI (offline), both planning with the domain's CDC planner over the adapters'
//! Kinesis input, gives the same requests in the same order.

#[path = "../../../functions/cdc-ingest/tests/common/mod.rs"]
mod common;

use cdc_ingest::handle;
use common::{failures, soon, World};
use mdm_sync_adapters::kinesis::KinesisEvent;
use mdm_sync_testkit::{kinesis_event, workspace_root};
use serde_json::{json, Value};
use std::process::Command;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/fixtures/dms").join(name)).unwrap()
}

/// A request as the CLI prints it, from what Reltio received.
fn as_printed(r: &wiremock::Request) -> Value {
    let tail = r
        .url
        .path()
        .split_once("/reltio/api/T1")
        .map(|(_, t)| t.to_owned())
        .unwrap();
    if r.method.as_str() == "DELETE" {
        let q: std::collections::HashMap<String, String> =
            r.url.query_pairs().into_owned().collect();
        let value = tail.trim_start_matches("/entities/_byCrosswalk/");
        return json!({"method": "DELETE", "path": "/entities/_byCrosswalk",
                      "crosswalk": {"type": q.get("type"), "value": value, "sourceTable": q.get("sourceTable")}});
    }
    let path = match r.url.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail,
    };
    json!({"method": r.method.as_str(), "path": path,
           "body": serde_json::from_slice::<Value>(&r.body).unwrap()})
}

#[tokio::test]
async fn transform_prints_exactly_the_requests_cdc_ingest_sends() {
    let sample: Value = serde_json::from_slice(
        &std::fs::read(workspace_root().join("events/cdc-ingest.json")).unwrap(),
    )
    .unwrap();
    let mut records: Vec<Value> = sample["Records"].as_array().unwrap().clone();
    let more = [
        "insert.json",
        "update-pk-change.json",
        "delete-key-only.json",
        "composite-key.json",
        "load-minimal.json",
    ]
    .map(fixture);
    let pairs: Vec<(&str, &[u8])> = more
        .iter()
        .map(|d| ("public.customer", d.as_slice()))
        .collect();
    let extra = kinesis_event(&pairs);
    for (i, mut r) in extra["Records"]
        .as_array()
        .unwrap()
        .clone()
        .into_iter()
        .enumerate()
    {
        // Sequence numbers after the sample's, so that the order of the whole event is the records' order.
        r["kinesis"]["sequenceNumber"] = json!(format!(
            "49700000000000000000000000000000000000000000000000{i:04}"
        ));
        records.push(r);
    }
    let event = json!({"Records": records});
    let file = std::env::temp_dir().join(format!("mdm-sync-transform-{}.json", std::process::id()));
    std::fs::write(&file, event.to_string()).unwrap();

    // The function: one request at a time (so its order is comparable) and two entities per POST.
    let world = World::start().await;
    world.entities_ok().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success"})))
        .mount(&world.reltio)
        .await;
    let deps = world
        .deps(&[("RELTIO_MAX_CONCURRENCY", "1"), ("RELTIO_BATCH_SIZE", "2")])
        .await;
    let ev: KinesisEvent = serde_json::from_value(event).unwrap();
    let response = handle(&deps, ev, soon()).await;
    assert!(failures(&response).is_empty());
    let sent: Vec<Value> = world
        .reltio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| !r.url.path().ends_with("/oauth/token"))
        .map(as_printed)
        .collect();
    assert!(sent.len() >= 4, "{sent:#?}");

    // The CLI, offline.
    let out = Command::new(env!("CARGO_BIN_EXE_mdm-sync"))
        .args(["--json", "transform", "--batch-size", "2", "--mapping"])
        .arg(workspace_root().join("functions/cdc-ingest/mapping.example.toml"))
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["requests"].as_array().unwrap(), &sent);
    let decisions = printed["records"].as_array().unwrap();
    assert_eq!(
        decisions.len(),
        10,
        "one decision per record: {decisions:#?}"
    );
}

#[test]
fn transform_of_a_missing_mapping_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_mdm-sync"))
        .args(["transform", "--mapping", "/nonexistent/mapping.toml", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mapping.toml"));
}
