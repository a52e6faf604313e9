//! crm-updater's archive merge, end to end against a wiremock Salesforce and Reltio and a moto_server: the
//! survivor is written, the losers archived and their child records re-pointed, once, however often the merge
//! is delivered; and the sample event (an update, then a merge) applies both.

mod common;
mod events;

use common::{entity, env, run, sqs, writes, C1, C2, C3, QUERY};
use events::{failures, QUEUE_ARN, SFDC};
use mdm_sync_adapters::sqs_event::SqsEvent;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

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
