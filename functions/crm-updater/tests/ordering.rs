//! crm-updater's ordering, end to end against a wiremock Salesforce and Reltio and a moto_server's ledger: older
//! versions and snapshots are stale, a merge's losers skip their changes up to the merge, a FIFO batch stops at
//! its first failure, concurrent invocations of one entity take turns, and ledger records expire.

mod common;
mod events;

use common::{
    entity, env, env_full, env_with, mount_entity, run, sqs, writes, Collections, C1, C2, C3,
    COLLECTIONS, QUERY,
};
use events::{changed, failures, FIFO_ARN, QUEUE_ARN};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// An ENTITY_LOST_MERGE of `loser` into `winner` at 5000.
fn lost_merge(loser: &str, winner: &str) -> String {
    json!({
        "type": "ENTITY_LOST_MERGE",
        "updatedTime": 5000,
        "uris": [format!("entities/{loser}"), format!("entities/{winner}")],
        "object": {"uri": format!("entities/{loser}"), "type": "configuration/entityTypes/Individual"}
    })
    .to_string()
}

/// Every SOQL query finds no records.
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
