//! crm-updater's handler over in-memory fakes of its ports (Reltio, Salesforce, the ledger, the DLQ): how a
//! batch's steps are packed, isolated, tracked and settled. The adapters are tested on wiremock and moto in
//! `handler.rs`.

use aws_lambda_events::event::sqs::SqsEvent;
use crm_updater::{handle, Config, Deps, Handled};
use mdm_sync_domain::crm::salesforce::{MAX_CHUNKS, MAX_COLLECTION};
use mdm_sync_domain::crm::CrmMapping;
use mdm_sync_testkit::fakes::{chunks, FakeLedger, FakeQueue, FakeReltio, FakeSalesforce};
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SFDC: &str = "configuration/sources/SFDC_CONTACT";
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:events";

struct World {
    deps: Deps,
    salesforce: Arc<FakeSalesforce>,
    ledger: Arc<FakeLedger>,
    dlq: Arc<FakeQueue>,
}

fn config() -> Config {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("SALESFORCE_SECRET_ID", "sf"),
        ("RELTIO_API_URL", "https://reltio.example.com/reltio/api/T"),
        ("RELTIO_SECRET_ID", "reltio"),
        ("CRM_MAPPING_FILE", "unused"),
        ("SYNC_STATE_TABLE", "sync-state"),
        (
            "CRM_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/0/crm-dlq",
        ),
    ]);
    Config::from_env(&move |name: &str| vars.get(name).map(|v| v.to_string())).unwrap()
}

fn world(salesforce: FakeSalesforce, reltio: FakeReltio) -> World {
    let salesforce = Arc::new(salesforce);
    let ledger = Arc::new(FakeLedger::default());
    let dlq = Arc::new(FakeQueue::default());
    let deps = Deps {
        config: config(),
        mapping: CrmMapping::parse(include_str!("../mapping.example.toml")).unwrap(),
        salesforce: salesforce.clone(),
        reltio: Arc::new(reltio),
        ledger: ledger.clone(),
        dlq: dlq.clone(),
    };
    World {
        deps,
        salesforce,
        ledger,
        dlq,
    }
}

fn contact(n: usize) -> String {
    format!("003{n:015}")
}

fn case(n: usize) -> String {
    format!("500{n:015}")
}

fn entity(id: &str, contacts: &[String], first_name: &str, updated: i64) -> Value {
    let crosswalks: Vec<Value> = contacts
        .iter()
        .map(|c| json!({"type": SFDC, "value": c}))
        .collect();
    json!({
        "uri": format!("entities/{id}"),
        "type": "configuration/entityTypes/Individual",
        "updatedTime": updated,
        "attributes": {"FirstName": [{"value": first_name, "ov": true}], "LastName": [{"value": "Smith", "ov": true}]},
        "crosswalks": crosswalks
    })
}

fn changed(entity: &Value) -> String {
    json!({"type": "ENTITY_CHANGED", "object": entity, "updatedTime": entity["updatedTime"]})
        .to_string()
}

fn merged(winner: &str, loser: &str, at: i64) -> String {
    json!({"type": "ENTITIES_MERGED", "updatedTime": at, "uris": [format!("entities/{winner}"), format!("entities/{loser}")]})
        .to_string()
}

/// `(message id, body, event id, object version)`.
type Msg<'a> = (&'a str, &'a str, &'a str, &'a str);

async fn run(world: &World, messages: &[Msg<'_>]) -> Handled {
    let attrs: Vec<Vec<(&str, &str)>> = messages
        .iter()
        .map(|(_, _, id, v)| {
            let mut a = vec![("eventId", *id)];
            if !v.is_empty() {
                a.push(("objectVersion", *v));
            }
            a
        })
        .collect();
    let records: Vec<SqsTestMessage> = messages
        .iter()
        .zip(&attrs)
        .map(|((m, body, _, _), a)| (*m, *body, a.as_slice()))
        .collect();
    let event: SqsEvent = serde_json::from_value(sqs_event(QUEUE_ARN, &records)).unwrap();
    handle(&world.deps, event, Instant::now() + Duration::from_secs(10)).await
}

fn failures(h: &Handled) -> Vec<String> {
    h.response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn collections_requests_keep_within_10_type_chunks_and_nothing_valid_is_dead_lettered() {
    // Four merges whose losers have a Case and a Task each, and two plain updates, in one round.
    let mut entities = Vec::new();
    let sf = FakeSalesforce::default();
    for m in 0..4 {
        let contacts = [contact(10 * m), contact(10 * m + 1)];
        entities.push((
            format!("entities/W{m}"),
            entity(&format!("W{m}"), &contacts, "Merged", 5_000),
        ));
        sf.children.lock().unwrap().push((
            format!("FROM Case WHERE ContactId IN ('{}')", contacts[1]),
            vec![json!({"Id": case(m)})],
        ));
        sf.children.lock().unwrap().push((
            format!("FROM Task WHERE WhoId IN ('{}')", contacts[1]),
            vec![json!({"Id": format!("00T{m:015}")})],
        ));
    }
    let reltio = FakeReltio::with(
        &entities
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
    );
    let world = world(sf, reltio);
    let bodies: Vec<String> = (0..4)
        .map(|m| merged(&format!("W{m}"), &format!("L{m}"), 5_000))
        .chain([
            changed(&entity("E1", &[contact(100)], "Ann", 1_000)),
            changed(&entity("E2", &[contact(101)], "Bo", 1_000)),
        ])
        .collect();
    let ids: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    let messages: Vec<Msg> = ids
        .iter()
        .zip(&bodies)
        .map(|(m, b)| (m.as_str(), b.as_str(), m.as_str(), ""))
        .collect();

    let h = run(&world, &messages).await;

    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert!(world.dlq.bodies().is_empty(), "{:?}", world.dlq.bodies());
    assert_eq!(h.metrics.counter("EventsApplied"), 6);
    let requests = world.salesforce.requests.lock().unwrap().clone();
    for r in &requests {
        assert!(
            r.len() <= MAX_COLLECTION && chunks(r) <= MAX_CHUNKS,
            "{r:?}"
        );
    }
    assert_eq!(requests.len(), 1, "one Collections call for the round");
    for m in 0..4 {
        let survivor = contact(10 * m);
        assert_eq!(
            world.salesforce.last(&case(m)).unwrap()["ContactId"],
            json!(survivor)
        );
        assert_eq!(
            world.salesforce.last(&contact(10 * m + 1)).unwrap()["Status__c"],
            "Merged"
        );
    }
    assert_eq!(
        world.salesforce.last(&contact(101)).unwrap()["FirstName"],
        "Bo"
    );
}

#[tokio::test]
async fn a_request_rejected_as_a_whole_is_split_until_the_bad_write_stands_alone() {
    let sf = FakeSalesforce::default();
    sf.poison.lock().unwrap().insert(contact(2));
    let world = world(sf, FakeReltio::default());
    let a = changed(&entity("E1", &[contact(1)], "Ann", 1_000));
    let b = changed(&entity("E2", &[contact(2)], "Bad", 1_000));
    let c = changed(&entity("E3", &[contact(3)], "Cy", 1_000));
    let h = run(
        &world,
        &[
            ("m1", &a, "a", ""),
            ("m2", &b, "b", ""),
            ("m3", &c, "c", ""),
        ],
    )
    .await;

    assert!(failures(&h).is_empty());
    let dead = world.dlq.bodies();
    assert_eq!(dead.len(), 1, "only the bad write's message: {dead:?}");
    assert_eq!(dead[0]["eventId"], "b");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("HTTP 400"),
        "{dead:?}"
    );
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Ann"
    );
    assert_eq!(
        world.salesforce.last(&contact(3)).unwrap()["FirstName"],
        "Cy"
    );
    // [1 2 3] → [1] + [2 3] → [2] + [3]
    assert_eq!(world.salesforce.requests.lock().unwrap().len(), 5);
    assert_eq!(h.metrics.counter("SalesforceCalls"), 5);
}

/// A merge of W (survivor `contact(1)`) and L (`contact(2)`, with Cases `case(1)` and `case(2)`), where
/// `case(2)` fails Salesforce's validation.
fn merge_world() -> World {
    let sf = FakeSalesforce::failing(&[(&case(2), "FIELD_CUSTOM_VALIDATION_EXCEPTION")]);
    sf.children.lock().unwrap().push((
        format!("FROM Case WHERE ContactId IN ('{}')", contact(2)),
        vec![json!({"Id": case(1)}), json!({"Id": case(2)})],
    ));
    let winner = entity("W", &[contact(1), contact(2)], "Merged", 5_000);
    world(sf, FakeReltio::with(&[("entities/W", winner)]))
}

#[tokio::test]
async fn a_merge_with_one_bad_child_commits_what_succeeded_and_does_not_block_later_changes() {
    let world = merge_world();
    let merge = merged("W", "L", 5_000);
    let h = run(&world, &[("m1", &merge, "merge-1", "5")]).await;

    // The merge is dead-lettered for its own invalid write only; what succeeded stands and is recorded.
    assert!(failures(&h).is_empty());
    let dead = world.dlq.bodies();
    assert_eq!(dead.len(), 1);
    assert!(dead[0]["reason"]
        .as_str()
        .unwrap()
        .contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"));
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Merged"
    );
    assert_eq!(
        world.salesforce.last(&case(1)).unwrap()["ContactId"],
        json!(contact(1))
    );
    let record = world.ledger.record("entities/W");
    assert_eq!(record.snapshot_time, Some(5_000), "the order is committed");
    assert!(record.given_up_by_other(&case(2), "later"));
    assert!(
        record.event_ids.is_empty(),
        "not complete: a redrive runs it again"
    );

    // A newer change of the winner: applied, not dead-lettered for the child it still cannot re-point.
    let newer = changed(&entity("W", &[contact(1), contact(2)], "Newer", 6_000));
    let h = run(&world, &[("m2", &newer, "W-6", "6")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(world.dlq.bodies().len(), 1, "no second dead letter");
    assert_eq!(h.metrics.counter("EventsApplied"), 1);
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Newer"
    );

    // An older version of the winner delivered late is never applied.
    let older = changed(&entity("W", &[contact(1), contact(2)], "Older", 4_000));
    let h = run(&world, &[("m3", &older, "W-4", "4")]).await;
    assert_eq!(h.metrics.counter("StaleEventsSkipped"), 1);
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Newer"
    );

    // Once the Case is fixed, the next change re-points it and it is no longer given up on.
    world.salesforce.fail.lock().unwrap().clear();
    let next = changed(&entity("W", &[contact(1), contact(2)], "Next", 7_000));
    let h = run(&world, &[("m4", &next, "W-7", "7")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(
        world.salesforce.last(&case(2)).unwrap()["ContactId"],
        json!(contact(1))
    );
    assert!(world.ledger.record("entities/W").given_up.is_empty());
}

#[tokio::test]
async fn a_redriven_merge_runs_only_its_remaining_steps_and_then_is_a_duplicate() {
    let world = merge_world();
    let merge = merged("W", "L", 5_000);
    run(&world, &[("m1", &merge, "merge-1", "5")]).await;
    let writes_to_survivor = world.salesforce.writes_to(&contact(1));

    // Redriven before the cause is fixed: dead-lettered again (it is this event's own failure).
    let h = run(&world, &[("m2", &merge, "merge-1", "5")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(world.dlq.bodies().len(), 2);

    // Fixed, then redriven: only the child is written; the survivor and archive are not written again.
    world.salesforce.fail.lock().unwrap().clear();
    let h = run(&world, &[("m3", &merge, "merge-1", "5")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(world.dlq.bodies().len(), 2);
    assert_eq!(h.metrics.counter("EventsApplied"), 1);
    assert_eq!(
        world.salesforce.last(&case(2)).unwrap()["ContactId"],
        json!(contact(1))
    );
    assert_eq!(world.salesforce.writes_to(&contact(1)), writes_to_survivor);
    assert_eq!(world.salesforce.writes_to(&contact(2)), 1, "archived once");
    let h = run(&world, &[("m4", &merge, "merge-1", "5")]).await;
    assert_eq!(h.metrics.counter("DuplicateEventsSkipped"), 1);
}

#[tokio::test]
async fn a_transient_failure_after_the_survivor_write_keeps_it_done_for_the_retry() {
    let sf = FakeSalesforce::failing(&[(&contact(2), "UNABLE_TO_LOCK_ROW")]);
    let winner = entity("W", &[contact(1), contact(2)], "Merged", 5_000);
    let world = world(sf, FakeReltio::with(&[("entities/W", winner)]));
    let merge = merged("W", "L", 5_000);
    let h = run(&world, &[("m1", &merge, "merge-1", "5")]).await;
    assert_eq!(failures(&h), vec!["m1"], "the archive is retried");
    assert_eq!(world.salesforce.writes_to(&contact(1)), 1);

    world.salesforce.fail.lock().unwrap().clear();
    let h = run(&world, &[("m1", &merge, "merge-1", "5")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(
        world.salesforce.writes_to(&contact(1)),
        1,
        "the survivor is not written twice"
    );
    assert_eq!(
        world.salesforce.last(&contact(2)).unwrap()["Status__c"],
        "Merged"
    );
    assert!(world.dlq.bodies().is_empty());
}

#[tokio::test]
async fn a_losers_older_change_in_the_same_batch_as_its_merge_is_not_applied() {
    // L's own change from before the merge (snapshot 4000) and W's merge (at 5000), in one batch and round.
    let winner = entity("W", &[contact(1), contact(2)], "Merged", 5_000);
    let world = world(
        FakeSalesforce::default(),
        FakeReltio::with(&[("entities/W", winner)]),
    );
    let late = changed(&entity("L", &[contact(2)], "OldL", 4_000));
    let merge = merged("W", "L", 5_000);
    let h = run(
        &world,
        &[("m1", &late, "L-old", "3"), ("m2", &merge, "merge", "9")],
    )
    .await;

    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("StaleEventsSkipped"), 1);
    assert_eq!(h.metrics.counter("EventsApplied"), 1);
    // contact(1) survives and carries the winner's values; L's old values reached no Contact.
    let written = world.salesforce.written.lock().unwrap().clone();
    assert!(
        written
            .values()
            .flatten()
            .all(|f| f.get("FirstName") != Some(&json!("OldL"))),
        "{written:?}"
    );
}

#[tokio::test]
async fn a_merge_waits_while_a_losers_older_change_is_being_applied_elsewhere() {
    let winner = entity("W", &[contact(1), contact(2)], "Merged", 5_000);
    let world = world(
        FakeSalesforce::default(),
        FakeReltio::with(&[("entities/W", winner)]),
    );
    // Another invocation holds L's lease (it is applying L's older change).
    use mdm_sync_domain::ordering::{Claim, Ledger, Order};
    let older = Order {
        object: Some("entities/L".into()),
        version: Some(3),
        snapshot_time: Some(4_000),
    };
    let claim = world
        .ledger
        .claim("entities/L", &older, "L-old", "other", None)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Granted(_)));

    let merge = merged("W", "L", 5_000);
    let h = run(&world, &[("m1", &merge, "merge", "9")]).await;
    assert_eq!(failures(&h), vec!["m1"], "retried once L is free");
    assert!(world.salesforce.requests.lock().unwrap().is_empty());
    assert!(
        world.ledger.record("entities/L").merged_at.is_none(),
        "nothing fenced"
    );

    world.ledger.release("entities/L", "other").await.unwrap();
    let h = run(&world, &[("m1", &merge, "merge", "9")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(world.ledger.record("entities/L").merged_at, Some(5_000));
}

#[tokio::test]
async fn a_change_without_an_object_version_does_not_make_later_versions_stale() {
    let world = world(FakeSalesforce::default(), FakeReltio::default());
    // No objectVersion (the stream is not configured to send it): ordered by the snapshot's time only ...
    let unversioned = changed(&entity("E", &[contact(1)], "First", 1_000));
    let h = run(&world, &[("m1", &unversioned, "e1", "")]).await;
    assert_eq!(h.metrics.counter("EventsApplied"), 1);
    // ... so a later change that carries objectVersion 2 is not compared with the time 1000 as a version.
    let versioned = changed(&entity("E", &[contact(1)], "Second", 2_000));
    let h = run(&world, &[("m2", &versioned, "e2", "2")]).await;
    assert_eq!(h.metrics.counter("StaleEventsSkipped"), 0);
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Second"
    );
    // Times still order times: an older unversioned snapshot is stale.
    let older = changed(&entity("E", &[contact(1)], "Old", 1_500));
    let h = run(&world, &[("m3", &older, "e3", "")]).await;
    assert_eq!(h.metrics.counter("StaleEventsSkipped"), 1);
}

#[tokio::test]
async fn an_event_too_large_for_the_dlq_is_dead_lettered_in_reltios_large_event_form_and_redriven()
{
    let world = world(
        FakeSalesforce::failing(&[(&contact(1), "FIELD_CUSTOM_VALIDATION_EXCEPTION")]),
        FakeReltio::with(&[("entities/E", entity("E", &[contact(1)], "Fetched", 2_000))]),
    );
    // A 600 KB snapshot (a long attribute): the event queue takes it, a dead letter cannot.
    let mut big = entity("E", &[contact(1)], "Big", 1_000);
    big["attributes"]["Notes"] = json!([{"value": "n".repeat(600 * 1024), "ov": true}]);
    let body = changed(&big);
    let h = run(&world, &[("m1", &body, "big-1", "")]).await;
    assert!(failures(&h).is_empty());
    let sent = world.dlq.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].size() <= mdm_sync_domain::queue::DEAD_LETTER_MAX_BYTES);
    let dead: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(dead["eventOmitted"]["bytes"], body.len());
    assert_eq!(dead["event"]["uri"], "entities/E");
    assert_eq!(dead["event"]["exceededQueueSizeLimit"], true);

    // Fixed, the dead letter's event is redriven as it is: the entity is fetched and applied.
    world.salesforce.fail.lock().unwrap().clear();
    let event = dead["event"].to_string();
    let h = run(&world, &[("m2", &event, "big-1", "")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Fetched"
    );
}
