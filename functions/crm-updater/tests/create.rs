//! crm-updater creating Contacts for golden records that have none (`create = true`), over in-memory fakes of
//! its ports: the upsert by external id, the write-back of the Contact's Id to Reltio, what the ledger records
//! between them, and the write-back's own change event applied as a no-op.

mod events;

use crm_updater::{Deps, Handled};
use events::{deliver, failures, fake_config, SFDC};
use mdm_sync_domain::crm::CrmMapping;
use mdm_sync_domain::ports::PortError;
use mdm_sync_testkit::fakes::{FakeLedger, FakeQueue, FakeReltio, FakeSalesforce, FakeVisibility};
use serde_json::{json, Value};
use std::sync::Arc;

const MAPPING: &str = r#"
event_types = ["CREATE", "UPDATE", "MERGE"]
crosswalk_type = "configuration/sources/SFDC_CONTACT"
create = true
external_id_field = "Reltio_Id__c"
require = ["LastName"]

[[fields]]
attribute = "FirstName"
field = "FirstName"

[[fields]]
attribute = "LastName"
field = "LastName"
"#;

struct World {
    deps: Deps,
    salesforce: Arc<FakeSalesforce>,
    reltio: Arc<FakeReltio>,
    ledger: Arc<FakeLedger>,
    dlq: Arc<FakeQueue>,
}

fn world() -> World {
    let config = fake_config(&[]);
    let salesforce = Arc::new(FakeSalesforce::default());
    let reltio = Arc::new(FakeReltio::default());
    let ledger = Arc::new(FakeLedger::default());
    let dlq = Arc::new(FakeQueue::default());
    World {
        deps: Deps {
            config,
            mapping: CrmMapping::parse(MAPPING).unwrap(),
            salesforce: salesforce.clone(),
            reltio: reltio.clone(),
            reltio_writer: reltio.clone(),
            ledger: ledger.clone(),
            dlq: dlq.clone(),
            visibility: Arc::new(FakeVisibility::default()),
            letter_store: None,
        },
        salesforce,
        reltio,
        ledger,
        dlq,
    }
}

/// An Individual mastered from the CRM database (no Contact crosswalk), with `contact` once written back.
fn entity(id: &str, last: Option<&str>, contact: Option<&str>, updated: i64) -> Value {
    let mut crosswalks = vec![
        json!({"type": "configuration/sources/CRM_DB", "value": format!("c-{id}"),
                                     "sourceTable": "CUSTOMER"}),
    ];
    if let Some(c) = contact {
        crosswalks.push(json!({"type": SFDC, "value": c}));
    }
    let mut attributes = json!({"FirstName": [{"value": "Ann", "ov": true}]});
    if let Some(l) = last {
        attributes["LastName"] = json!([{"value": l, "ov": true}]);
    }
    json!({"uri": format!("entities/{id}"), "type": "configuration/entityTypes/Individual",
           "updatedTime": updated, "attributes": attributes, "crosswalks": crosswalks})
}

/// Reltio's event carrying `entity`, which Reltio then holds as it is (what a fetch returns).
fn event(w: &World, kind: &str, entity: &Value) -> String {
    w.reltio
        .entities
        .lock()
        .unwrap()
        .insert(entity["uri"].as_str().unwrap().to_owned(), entity.clone());
    json!({"type": kind, "object": entity, "updatedTime": entity["updatedTime"]}).to_string()
}

/// `(message id, body, event id, object version)`.
async fn run(world: &World, messages: &[(&str, String, &str, &str)]) -> Handled {
    deliver(&world.deps, messages).await
}

fn upserted_ids(world: &World) -> Vec<String> {
    world
        .salesforce
        .upserts
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|u| u.external_id.clone())
        .collect()
}

#[tokio::test]
async fn a_new_golden_record_becomes_one_contact_whose_id_is_written_back_and_its_echo_writes_nothing(
) {
    let w = world();
    let created = entity("0Abc", Some("Lee"), None, 1_000);
    // Created, and the same event delivered again in the same batch (at least once): one Contact.
    let h = run(
        &w,
        &[
            ("m1", event(&w, "ENTITY_CREATED", &created), "ev-1", "1"),
            ("m2", event(&w, "ENTITY_CREATED", &created), "ev-1", "1"),
        ],
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsCreated"), 1);
    assert_eq!(h.metrics.counter("CrosswalksWrittenBack"), 1);
    assert_eq!(upserted_ids(&w), vec!["0Abc".to_owned()]);
    let upsert = w.salesforce.upserts.lock().unwrap()[0][0].clone();
    assert_eq!(
        (upsert.sobject.as_str(), upsert.external_id_field.as_str()),
        ("Contact", "Reltio_Id__c")
    );
    assert_eq!(
        Value::Object(upsert.fields),
        json!({"FirstName": "Ann", "LastName": "Lee"})
    );
    let contact = w.salesforce.external_ids.lock().unwrap()[&(
        "Contact".to_owned(),
        "Reltio_Id__c".to_owned(),
        "0Abc".to_owned(),
    )]
        .clone();
    // The write-back: one POST, the Contact's crosswalk attached through the entity's own.
    let posted = w.reltio.posted.lock().unwrap().clone();
    assert_eq!(
        posted,
        vec![vec![
            json!({"type": "configuration/entityTypes/Individual", "crosswalks": [
                {"type": "configuration/sources/CRM_DB", "value": "c-0Abc", "sourceTable": "CUSTOMER",
                 "dataProvider": false, "contributorProvider": true},
                {"type": SFDC, "value": contact}
            ]})
        ]]
    );
    assert_eq!(
        w.ledger.record("entities/0Abc").created.as_deref(),
        Some(contact.as_str())
    );

    // Reltio's change event for the write-back: the entity now maps to the Contact with the values just
    // written, a counted no-op (no Salesforce write, no second write-back).
    let echoed = entity("0Abc", Some("Lee"), Some(&contact), 2_000);
    let h = run(
        &w,
        &[("m3", event(&w, "ENTITY_CHANGED", &echoed), "ev-2", "2")],
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("UnchangedContactsSkipped"), 1);
    assert_eq!(h.metrics.counter("SalesforceCalls"), 0);
    assert!(w.salesforce.requests.lock().unwrap().is_empty());
    assert_eq!(w.salesforce.upserts.lock().unwrap().len(), 1);
    assert_eq!(w.reltio.posted.lock().unwrap().len(), 1);

    // A later golden change updates that Contact by its Id, as for any other Contact.
    let renamed = entity("0Abc", Some("Lee-Smith"), Some(&contact), 3_000);
    let h = run(
        &w,
        &[("m4", event(&w, "ENTITY_CHANGED", &renamed), "ev-3", "3")],
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(
        w.salesforce.last(&contact).unwrap()["LastName"],
        "Lee-Smith"
    );
    assert_eq!(w.salesforce.upserts.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_write_back_is_retried_alone_and_never_creates_twice() {
    let w = world();
    let created = entity("0Abc", Some("Lee"), None, 1_000);
    *w.reltio.down.lock().unwrap() = Some(PortError::Transient("Reltio answered 503".into()));
    let h = run(
        &w,
        &[("m1", event(&w, "ENTITY_CREATED", &created), "ev-1", "1")],
    )
    .await;
    assert_eq!(failures(&h), vec!["m1".to_owned()], "retried");
    assert_eq!(h.metrics.counter("ContactsCreated"), 1);
    assert!(w.dlq.bodies().is_empty());
    let contact = w.ledger.record("entities/0Abc").created.unwrap();
    // The redelivery: the Contact the ledger knows holds these values; only the write-back is sent.
    *w.reltio.down.lock().unwrap() = None;
    let h = run(
        &w,
        &[("m1", event(&w, "ENTITY_CREATED", &created), "ev-1", "1")],
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(upserted_ids(&w), vec!["0Abc".to_owned()], "upserted once");
    assert_eq!(h.metrics.counter("ContactsCreated"), 0);
    assert_eq!(h.metrics.counter("CrosswalksWrittenBack"), 1);
    let posted = w.reltio.posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[1][0]["crosswalks"][1]["value"], json!(contact));
    // Complete now: a third delivery is a duplicate.
    let h = run(
        &w,
        &[("m1", event(&w, "ENTITY_CREATED", &created), "ev-1", "1")],
    )
    .await;
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    assert_eq!(w.reltio.posted.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_write_back_reltio_refuses_for_good_is_dead_lettered_and_its_redrive_writes_back_alone() {
    let w = world();
    let created = entity("0Abc", Some("Lee"), None, 1_000);
    let body = event(&w, "ENTITY_CREATED", &created);
    *w.reltio.down.lock().unwrap() = Some(PortError::Rejected("Reltio answered 400".into()));
    let h = run(&w, &[("m1", body.clone(), "ev-1", "1")]).await;
    assert!(failures(&h).is_empty(), "dead-lettered, not retried");
    let letters = w.dlq.bodies();
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["reason"]
        .as_str()
        .unwrap()
        .contains("writing the Contact's crosswalk back to Reltio"));
    assert!(w.ledger.record("entities/0Abc").created.is_some());
    // Fixed, the letter redriven (same event id): the write-back alone.
    *w.reltio.down.lock().unwrap() = None;
    let h = run(&w, &[("m2", body, "ev-1", "1")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("CrosswalksWrittenBack"), 1);
    assert_eq!(upserted_ids(&w), vec!["0Abc".to_owned()], "upserted once");
}

#[tokio::test]
async fn a_record_without_a_required_field_waits_and_a_refused_upsert_is_dead_lettered() {
    let w = world();
    let nameless = entity("0Abc", None, None, 1_000);
    let h = run(
        &w,
        &[("m1", event(&w, "ENTITY_CREATED", &nameless), "ev-1", "1")],
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedIncomplete"), 1);
    assert!(upserted_ids(&w).is_empty());
    // Once it has a LastName it is created.
    let named = entity("0Abc", Some("Lee"), None, 2_000);
    let h = run(
        &w,
        &[("m2", event(&w, "ENTITY_CHANGED", &named), "ev-2", "2")],
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("ContactsCreated"), 1);

    // Salesforce refuses another one for good: dead-lettered with its reason, nothing written back.
    w.salesforce
        .fail
        .lock()
        .unwrap()
        .insert("0Def".into(), "FIELD_CUSTOM_VALIDATION_EXCEPTION".into());
    let refused = entity("0Def", Some("Lee"), None, 1_000);
    let h = run(
        &w,
        &[("m3", event(&w, "ENTITY_CREATED", &refused), "ev-3", "1")],
    )
    .await;
    assert!(failures(&h).is_empty());
    let letters = w.dlq.bodies();
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["reason"]
        .as_str()
        .unwrap()
        .contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"));
    assert_eq!(w.reltio.posted.lock().unwrap().len(), 1, "0Abc's only");
    assert_eq!(w.ledger.record("entities/0Def").created, None);
}

#[tokio::test]
async fn without_create_an_entity_with_no_contact_is_skipped_as_before() {
    let mut w = world();
    w.deps.mapping = CrmMapping::parse(
        &MAPPING
            .replace("create = true\n", "")
            .replace("external_id_field = \"Reltio_Id__c\"\n", "")
            .replace("require = [\"LastName\"]\n", ""),
    )
    .unwrap();
    let created = entity("0Abc", Some("Lee"), None, 1_000);
    let h = run(
        &w,
        &[("m1", event(&w, "ENTITY_CREATED", &created), "ev-1", "1")],
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedNoCrosswalk"), 1);
    assert!(upserted_ids(&w).is_empty() && w.reltio.posted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_thousand_creates_in_batches_of_100_take_10_upsert_calls_and_10_write_back_calls() {
    // The template's CrmBatchSize is 100: each batch's creates go in one upsert call (≤ 200 records) and one
    // write-back call (≤ 100 entities).
    let w = world();
    for batch in 0..10 {
        let messages: Vec<(String, String, String)> = (0..100)
            .map(|i| {
                let id = format!("0E{batch:02}{i:03}");
                (
                    format!("m-{id}"),
                    event(&w, "ENTITY_CREATED", &entity(&id, Some("Lee"), None, 1_000)),
                    format!("ev-{id}"),
                )
            })
            .collect();
        let refs: Vec<(&str, String, &str, &str)> = messages
            .iter()
            .map(|(m, b, e)| (m.as_str(), b.clone(), e.as_str(), "1"))
            .collect();
        let h = run(&w, &refs).await;
        assert!(failures(&h).is_empty());
        assert_eq!(h.metrics.counter("ContactsCreated"), 100);
        assert_eq!(h.metrics.counter("SalesforceCalls"), 1);
        assert_eq!(h.metrics.counter("ReltioWriteBackCalls"), 1);
    }
    assert_eq!(w.salesforce.upserts.lock().unwrap().len(), 10);
    assert_eq!(w.reltio.posted.lock().unwrap().len(), 10);
    assert_eq!(w.salesforce.external_ids.lock().unwrap().len(), 1_000);
}

#[tokio::test]
async fn an_entity_merged_into_one_with_a_contact_before_its_create_is_applied_creates_nothing() {
    let w = world();
    // Reltio created X (no Contact), then merged it into W, which has one: X's URI now resolves to W.
    let created = event(&w, "ENTITY_CREATED", &entity("X", Some("Lee"), None, 1_000));
    let winner = entity("W", Some("Lee"), Some("003000000000001AAA"), 2_000);
    w.reltio
        .entities
        .lock()
        .unwrap()
        .insert("entities/X".into(), winner);
    let h = run(&w, &[("m1", created, "ev-x", "1")]).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("EntitiesReadBeforeCreate"), 1);
    assert!(upserted_ids(&w).is_empty(), "no Contact created");
    assert!(w.reltio.posted.lock().unwrap().is_empty());
    // The winner's Contact gets the golden values instead.
    assert_eq!(
        w.salesforce.last("003000000000001AAA").unwrap()["LastName"],
        "Lee"
    );
}
