//! crm-updater's handler over in-memory fakes of its ports (Reltio, Salesforce, the ledger, the DLQ, the event
//! queue's visibility): how a batch's steps are packed, isolated, tracked and settled, and how its retries back
//! off. The adapters are tested on wiremock and moto in `updates.rs`, `archive_merge.rs`, `soap_merge.rs` and
//! `ordering.rs`.

mod events;

use crm_updater::{handle, Config, Deps, Handled};
use events::{changed, deliver, failures, fake_config, FIFO_ARN, QUEUE_ARN, SFDC};
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_domain::backoff::Backoff;
use mdm_sync_domain::crm::salesforce::{MAX_CHUNKS, MAX_COLLECTION};
use mdm_sync_domain::crm::CrmMapping;
use mdm_sync_testkit::fakes::{
    chunks, FakeLedger, FakeQueue, FakeReltio, FakeSalesforce, FakeVisibility,
};
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct World {
    deps: Deps,
    salesforce: Arc<FakeSalesforce>,
    ledger: Arc<FakeLedger>,
    dlq: Arc<FakeQueue>,
    visibility: Arc<FakeVisibility>,
}

fn config() -> Config {
    fake_config(&[])
}

fn world(salesforce: FakeSalesforce, reltio: FakeReltio) -> World {
    world_with(salesforce, reltio, config())
}

fn world_with(salesforce: FakeSalesforce, reltio: FakeReltio, config: Config) -> World {
    let salesforce = Arc::new(salesforce);
    let reltio = Arc::new(reltio);
    let ledger = Arc::new(FakeLedger::default());
    let dlq = Arc::new(FakeQueue::default());
    let visibility = Arc::new(FakeVisibility::default());
    let deps = Deps {
        config,
        mapping: CrmMapping::parse(include_str!("../mapping.example.toml")).unwrap(),
        salesforce: salesforce.clone(),
        reltio: reltio.clone(),
        reltio_writer: reltio.clone(),
        ledger: ledger.clone(),
        dlq: dlq.clone(),
        letter_store: None,
        visibility: visibility.clone(),
    };
    World {
        deps,
        salesforce,
        ledger,
        dlq,
        visibility,
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

fn merged(winner: &str, loser: &str, at: i64) -> String {
    json!({"type": "ENTITIES_MERGED", "updatedTime": at, "uris": [format!("entities/{winner}"), format!("entities/{loser}")]})
        .to_string()
}

/// `(message id, body, event id, object version)`.
type Msg<'a> = (&'a str, &'a str, &'a str, &'a str);

async fn run(world: &World, messages: &[Msg<'_>]) -> Handled {
    deliver(&world.deps, messages).await
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
    assert_eq!(h.metrics.counter("RecordsApplied"), 6);
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
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Newer"
    );

    // An older version of the winner delivered late is never applied.
    let older = changed(&entity("W", &[contact(1), contact(2)], "Older", 4_000));
    let h = run(&world, &[("m3", &older, "W-4", "4")]).await;
    assert_eq!(h.metrics.counter("SkippedStale"), 1);
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
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert_eq!(
        world.salesforce.last(&case(2)).unwrap()["ContactId"],
        json!(contact(1))
    );
    assert_eq!(world.salesforce.writes_to(&contact(1)), writes_to_survivor);
    assert_eq!(world.salesforce.writes_to(&contact(2)), 1, "archived once");
    let h = run(&world, &[("m4", &merge, "merge-1", "5")]).await;
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
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
    assert_eq!(h.metrics.counter("SkippedStale"), 1);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
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
    use mdm_sync_domain::ordering::{Claim, Order};
    use mdm_sync_domain::ports::Ledger;
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
async fn an_entity_another_invocation_held_is_applied_once_it_is_free_in_the_same_invocation() {
    // Another invocation holds B while this batch's first round runs (a merge's events in concurrent batches);
    // by the time the batch's own work is done it is free: B's two changes are applied on the second pass
    // instead of going back to the queue.
    let world = world(FakeSalesforce::default(), FakeReltio::default());
    world
        .ledger
        .busy_once
        .lock()
        .unwrap()
        .push("entities/B".into());
    let a = changed(&entity("A", &[contact(1)], "Ann", 1_000));
    let b1 = changed(&entity("B", &[contact(2)], "Bo", 1_000));
    let b2 = changed(&entity("B", &[contact(2)], "Bob", 2_000));
    let h = run(
        &world,
        &[
            ("m1", &a, "a1", "1"),
            ("m2", &b1, "b1", "1"),
            ("m3", &b2, "b2", "2"),
        ],
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("BusyEntitiesRetried"), 1);
    assert_eq!(h.metrics.counter("RecordsApplied"), 3);
    assert_eq!(
        world.salesforce.last(&contact(2)).unwrap()["FirstName"],
        "Bob"
    );
    let claims_of_b = world
        .ledger
        .claims
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _, _)| e == "entities/B")
        .count();
    assert_eq!(claims_of_b, 3, "b1 refused, then b1 and b2 granted");
}

#[tokio::test]
async fn a_change_without_an_object_version_does_not_make_later_versions_stale() {
    let world = world(FakeSalesforce::default(), FakeReltio::default());
    // No objectVersion (the stream is not configured to send it): ordered by the snapshot's time only ...
    let unversioned = changed(&entity("E", &[contact(1)], "First", 1_000));
    let h = run(&world, &[("m1", &unversioned, "e1", "")]).await;
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    // ... so a later change that carries objectVersion 2 is not compared with the time 1000 as a version.
    let versioned = changed(&entity("E", &[contact(1)], "Second", 2_000));
    let h = run(&world, &[("m2", &versioned, "e2", "2")]).await;
    assert_eq!(h.metrics.counter("SkippedStale"), 0);
    assert_eq!(
        world.salesforce.last(&contact(1)).unwrap()["FirstName"],
        "Second"
    );
    // Times still order times: an older unversioned snapshot is stale.
    let older = changed(&entity("E", &[contact(1)], "Old", 1_500));
    let h = run(&world, &[("m3", &older, "e3", "")]).await;
    assert_eq!(h.metrics.counter("SkippedStale"), 1);
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

// ---------------------------------------------------------------- retry backoff

/// `(message id, body, ApproximateReceiveCount)` on the queue `arn`; each message's event id is its message id.
async fn run_received(world: &World, arn: &str, messages: &[(&str, &str, u32)]) -> Handled {
    let attrs: Vec<[(&str, &str); 1]> =
        messages.iter().map(|(m, _, _)| [("eventId", *m)]).collect();
    let records: Vec<SqsTestMessage> = messages
        .iter()
        .zip(&attrs)
        .map(|((m, body, _), a)| (*m, *body, a.as_slice()))
        .collect();
    let mut event = sqs_event(arn, &records);
    for (record, (_, _, count)) in event["Records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(messages)
    {
        record["attributes"]["ApproximateReceiveCount"] = json!(count.to_string());
    }
    let event: SqsEvent = serde_json::from_value(event).unwrap();
    handle(&world.deps, event, Instant::now() + Duration::from_secs(10)).await
}

/// A change of entity `E{n}`, whose one Contact is `contact(n)`.
fn change_of(n: usize) -> String {
    changed(&entity(&format!("E{n}"), &[contact(n)], "Ann", 1_000))
}

/// Salesforce: `contact(2)` and `contact(4)` locked (transient), `contact(3)` fails a validation rule
/// (permanent).
fn mixed_salesforce() -> FakeSalesforce {
    FakeSalesforce::failing(&[
        (&contact(2), "UNABLE_TO_LOCK_ROW"),
        (&contact(3), "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        (&contact(4), "UNABLE_TO_LOCK_ROW"),
    ])
}

const QUEUE_URL: &str = "https://sqs.us-east-1.amazonaws.com/000000000000/events";

fn change(url: &str, handle: &str, seconds: u32) -> (String, String, u32) {
    (url.to_owned(), handle.to_owned(), seconds)
}

#[tokio::test]
async fn transient_failures_come_back_after_a_backoff_on_their_receive_count_and_nothing_else_is_touched(
) {
    let world = world(mixed_salesforce(), FakeReltio::default());
    let bodies: Vec<String> = (1..=4).map(change_of).collect();
    let h = run_received(
        &world,
        QUEUE_ARN,
        &[
            ("m1", &bodies[0], 1),
            ("m2", &bodies[1], 1),
            ("m3", &bodies[2], 2),
            ("m4", &bodies[3], 3),
        ],
    )
    .await;
    assert_eq!(failures(&h), vec!["m2", "m4"]);
    assert_eq!(world.dlq.bodies().len(), 1, "m3 is dead-lettered");
    // Base 2 s doubling: the first receive waits 2 s, the third 8 s, on the queue the ARN names. The applied
    // (m1) and dead-lettered (m3) messages are acknowledged and left alone.
    assert_eq!(
        world.visibility.changes(),
        vec![change(QUEUE_URL, "rh-m2", 2), change(QUEUE_URL, "rh-m4", 8)]
    );
    assert_eq!(h.metrics.counter("RetryBackoffSet"), 2);
    assert_eq!(h.metrics.counter("RetryBackoffFailed"), 0);
}

#[tokio::test]
async fn the_backoff_is_capped_and_configurable() {
    let config = fake_config(&[
        ("CRM_RETRY_BACKOFF_SECONDS", "5"),
        ("CRM_RETRY_BACKOFF_MAX_SECONDS", "30"),
        (
            "CRM_EVENT_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/111111111111/other/",
        ),
    ]);
    let world = world_with(mixed_salesforce(), FakeReltio::default(), config);
    let (two, four) = (change_of(2), change_of(4));
    let h = run_received(&world, QUEUE_ARN, &[("m2", &two, 2), ("m4", &four, 9)]).await;
    assert_eq!(failures(&h), vec!["m2", "m4"]);
    // The explicit URL wins over the one the ARN names.
    let url = "https://sqs.eu-west-1.amazonaws.com/111111111111/other";
    assert_eq!(
        world.visibility.changes(),
        vec![change(url, "rh-m2", 10), change(url, "rh-m4", 30)]
    );
}

#[tokio::test]
async fn on_fifo_every_reported_message_takes_the_first_failures_backoff() {
    let world = world(mixed_salesforce(), FakeReltio::default());
    let (one, two, five, three) = (change_of(1), change_of(2), change_of(5), change_of(3));
    let h = run_received(
        &world,
        FIFO_ARN,
        &[
            ("m1", &one, 4),
            ("m2", &two, 2),
            ("m5", &five, 1),
            ("m3", &three, 6),
        ],
    )
    .await;
    // m2 failed transiently: it and everything after it are reported, the permanent failure m3 included (it is
    // retried in order, not dead-lettered), and all of them take m2's backoff (second receive: 4 s), so that
    // their message groups are released together.
    assert_eq!(failures(&h), vec!["m2", "m5", "m3"]);
    assert!(world.dlq.bodies().is_empty());
    let url = "https://sqs.us-east-1.amazonaws.com/000000000000/events.fifo";
    assert_eq!(
        world.visibility.changes(),
        vec![
            change(url, "rh-m2", 4),
            change(url, "rh-m5", 4),
            change(url, "rh-m3", 4)
        ]
    );
}

#[tokio::test]
async fn a_backoff_that_cannot_be_set_never_fails_or_changes_the_batch() {
    let bodies: Vec<String> = (1..=4).map(change_of).collect();
    let batch = [
        ("m1", bodies[0].as_str(), 1),
        ("m2", bodies[1].as_str(), 1),
        ("m3", bodies[2].as_str(), 1),
        ("m4", bodies[3].as_str(), 1),
    ];

    // One entry refused: the other one is still set.
    let world = world(mixed_salesforce(), FakeReltio::default());
    world.visibility.refuse.lock().unwrap().push("rh-m2".into());
    let h = run_received(&world, QUEUE_ARN, &batch).await;
    assert_eq!(failures(&h), vec!["m2", "m4"]);
    assert_eq!(
        world.visibility.changes(),
        vec![change(QUEUE_URL, "rh-m4", 2)]
    );
    assert_eq!(h.metrics.counter("RetryBackoffSet"), 1);
    assert_eq!(h.metrics.counter("RetryBackoffFailed"), 1);

    // The queue unreachable: the same answer, every change counted as failed.
    let world = self::world(mixed_salesforce(), FakeReltio::default());
    *world.visibility.down.lock().unwrap() = true;
    let h = run_received(&world, QUEUE_ARN, &batch).await;
    assert_eq!(failures(&h), vec!["m2", "m4"]);
    assert_eq!(world.dlq.bodies().len(), 1);
    assert_eq!(h.metrics.counter("RetryBackoffSet"), 0);
    assert_eq!(h.metrics.counter("RetryBackoffFailed"), 2);

    // No queue URL to be had (an event source ARN that is not an SQS queue's, no CRM_EVENT_QUEUE_URL): nothing
    // is asked for.
    let world = self::world(mixed_salesforce(), FakeReltio::default());
    let kinesis = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
    let h = run_received(&world, kinesis, &batch).await;
    assert_eq!(failures(&h), vec!["m2", "m4"]);
    assert!(world.visibility.changes().is_empty());
    assert_eq!(h.metrics.counter("RetryBackoffFailed"), 2);
}

#[tokio::test]
async fn a_zero_base_turns_the_backoff_off() {
    let config = fake_config(&[("CRM_RETRY_BACKOFF_SECONDS", "0")]);
    let world = world_with(mixed_salesforce(), FakeReltio::default(), config);
    let two = change_of(2);
    let h = run_received(&world, QUEUE_ARN, &[("m2", &two, 1)]).await;
    assert_eq!(failures(&h), vec!["m2"]);
    assert!(world.visibility.changes().is_empty());
    assert_eq!(h.metrics.counter("RetryBackoffFailed"), 0);
}

#[test]
fn backoff_settings_default_to_2_and_300_seconds_and_bad_ones_are_named() {
    let config = config();
    assert_eq!(config.retry_backoff, Backoff::new(2, 300));
    assert_eq!(config.event_queue_url, None);
    // A base above the default cap raises the cap when the cap is not set.
    let config = fake_config(&[("CRM_RETRY_BACKOFF_SECONDS", "300")]);
    assert_eq!(config.retry_backoff, Backoff::new(300, 300));

    let base_vars = [
        ("SALESFORCE_SECRET_ID", "sf"),
        ("RELTIO_API_URL", "https://reltio.example.com/reltio/api/T"),
        ("RELTIO_SECRET_ID", "reltio"),
        ("CRM_MAPPING_FILE", "unused"),
        ("SYNC_STATE_TABLE", "sync-state"),
        (
            "CRM_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/0/crm-dlq",
        ),
    ];
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[("CRM_RETRY_BACKOFF_SECONDS", "-1")],
            "CRM_RETRY_BACKOFF_SECONDS",
        ),
        (
            &[("CRM_RETRY_BACKOFF_SECONDS", "two")],
            "CRM_RETRY_BACKOFF_SECONDS",
        ),
        (
            &[("CRM_RETRY_BACKOFF_SECONDS", "43201")],
            "CRM_RETRY_BACKOFF_SECONDS",
        ),
        (
            &[("CRM_RETRY_BACKOFF_MAX_SECONDS", "0")],
            "CRM_RETRY_BACKOFF_MAX_SECONDS",
        ),
        (
            &[("CRM_RETRY_BACKOFF_MAX_SECONDS", "43201")],
            "CRM_RETRY_BACKOFF_MAX_SECONDS",
        ),
        (
            &[
                ("CRM_RETRY_BACKOFF_SECONDS", "10"),
                ("CRM_RETRY_BACKOFF_MAX_SECONDS", "9"),
            ],
            "CRM_RETRY_BACKOFF_MAX_SECONDS",
        ),
        (
            &[("CRM_EVENT_QUEUE_URL", "ftp://queue.example.com/q")],
            "CRM_EVENT_QUEUE_URL",
        ),
    ];
    for (extra, name) in cases {
        let vars: HashMap<&str, &str> = base_vars.iter().chain(extra).copied().collect();
        let err = Config::from_env(&move |n: &str| vars.get(n).map(|v| v.to_string())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(name), "{extra:?}: {text}");
        // Numbers may coincide with the bounds the message states; anything else must not be echoed.
        for (_, value) in extra.iter().filter(|(_, v)| v.parse::<i64>().is_err()) {
            assert!(
                !text.contains(value),
                "{extra:?}: the value is echoed: {text}"
            );
        }
    }
}
