//! crm-updater on a golden record removed in Reltio (`ENTITY_REMOVED`), over in-memory fakes of its ports: the
//! mapping's `on_delete` policy (ignore, archive, delete) applied to the entity's Contacts, once, and a late
//! update of the removed entity never bringing it back.

mod events;

use crm_updater::{Deps, Handled};
use events::{changed, deliver, failures, fake_config, SFDC};
use mdm_sync_domain::crm::CrmMapping;
use mdm_sync_testkit::fakes::{FakeLedger, FakeQueue, FakeReltio, FakeSalesforce, FakeVisibility};
use serde_json::{json, Value};
use std::sync::Arc;

fn mapping(policy: &str) -> String {
    let fields = if policy == "archive" {
        "delete_fields = { Status__c = \"Removed in MDM\" }\n"
    } else {
        ""
    };
    format!(
        "event_types = [\"UPDATE\", \"MERGE\", \"DELETE\"]\ncrosswalk_type = \"{SFDC}\"\non_delete = \"{policy}\"\n\
         {fields}[[fields]]\nattribute = \"LastName\"\nfield = \"LastName\"\n"
    )
}

struct World {
    deps: Deps,
    salesforce: Arc<FakeSalesforce>,
    dlq: Arc<FakeQueue>,
}

fn world(policy: &str) -> World {
    let config = fake_config(&[]);
    let salesforce = Arc::new(FakeSalesforce::default());
    let reltio = Arc::new(FakeReltio::default());
    let dlq = Arc::new(FakeQueue::default());
    World {
        deps: Deps {
            config,
            mapping: CrmMapping::parse(&mapping(policy)).unwrap(),
            salesforce: salesforce.clone(),
            reltio: reltio.clone(),
            reltio_writer: reltio,
            ledger: Arc::new(FakeLedger::default()),
            dlq: dlq.clone(),
            visibility: Arc::new(FakeVisibility::default()),
            letter_store: None,
        },
        salesforce,
        dlq,
    }
}

fn entity(contacts: &[&str], last: &str, updated: i64) -> Value {
    let crosswalks: Vec<Value> = contacts
        .iter()
        .map(|c| json!({"type": SFDC, "value": c}))
        .collect();
    json!({"uri": "entities/E1", "type": "configuration/entityTypes/Individual", "updatedTime": updated,
           "attributes": {"LastName": [{"value": last, "ov": true}]}, "crosswalks": crosswalks})
}

/// Reltio's ENTITY_REMOVED: the entity's last snapshot (without its attributes, which a removal does not need).
fn removed(contacts: &[&str], updated: i64) -> String {
    let mut object = entity(contacts, "", updated);
    object.as_object_mut().unwrap().remove("attributes");
    json!({"type": "ENTITY_REMOVED", "object": object, "updatedTime": updated}).to_string()
}

async fn run(world: &World, messages: &[(&str, String, &str, &str)]) -> Handled {
    deliver(&world.deps, messages).await
}

#[tokio::test]
async fn archive_marks_every_contact_of_the_removed_entity_once_and_a_late_update_is_stale() {
    let w = world("archive");
    // The entity's Contact was written before; then the entity is removed, its last snapshot naming the Contact
    // and a second one the ledger does not know.
    let h = run(
        &w,
        &[("m1", changed(&entity(&["003A"], "Lee", 1_000)), "ev-1", "1")],
    )
    .await;
    assert!(failures(&h).is_empty());
    let h = run(
        &w,
        &[("m2", removed(&["003A", "003B"], 3_000), "ev-3", "3")],
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsArchived"), 2);
    for id in ["003A", "003B"] {
        assert_eq!(
            w.salesforce.last(id).unwrap()["Status__c"],
            "Removed in MDM",
            "{id}"
        );
    }
    // Redelivered under another id: each Contact is marked already, nothing is written.
    let h = run(
        &w,
        &[("m3", removed(&["003A", "003B"], 3_000), "ev-3b", "3")],
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(w.salesforce.writes_to("003A"), 2);
    // An update of the entity from before the removal, delivered late: stale, the Contact stays archived.
    let h = run(
        &w,
        &[(
            "m4",
            changed(&entity(&["003A"], "Lee-Late", 2_000)),
            "ev-2",
            "2",
        )],
    )
    .await;
    assert_eq!(h.metrics.counter("SkippedStale"), 1);
    assert_eq!(
        w.salesforce.last("003A").unwrap()["Status__c"],
        "Removed in MDM"
    );
    assert!(w.dlq.bodies().is_empty());
}

#[tokio::test]
async fn delete_removes_the_contacts_the_ledger_knows_even_without_a_snapshot() {
    let w = world("delete");
    let h = run(
        &w,
        &[("m1", changed(&entity(&["003A"], "Lee", 1_000)), "ev-1", "1")],
    )
    .await;
    assert!(failures(&h).is_empty());
    // A removal without a snapshot (no crosswalks): the Contact written for the entity is deleted.
    let bare =
        json!({"type": "ENTITY_REMOVED", "uri": "entities/E1", "updatedTime": 3_000}).to_string();
    let h = run(&w, &[("m2", bare, "ev-3", "3")]).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsDeleted"), 1);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert!(w.salesforce.deleted.lock().unwrap().contains("003A"));
    // Redelivered: already deleted, counted as missing, not a failure.
    let again =
        json!({"type": "ENTITY_REMOVED", "uri": "entities/E1", "updatedTime": 3_000}).to_string();
    let h = run(&w, &[("m3", again, "ev-3b", "3")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SalesforceRecordsMissing"), 1);
    // A transient failure is retried; a permanent one dead-lettered.
    w.salesforce
        .fail
        .lock()
        .unwrap()
        .insert("003Z".into(), "UNABLE_TO_LOCK_ROW".into());
    let other = json!({"type": "ENTITY_REMOVED", "object": {"uri": "entities/E2",
        "crosswalks": [{"type": SFDC, "value": "003Z"}]}, "updatedTime": 5_000})
    .to_string();
    let h = run(&w, &[("m4", other, "ev-9", "9")]).await;
    assert_eq!(failures(&h), vec!["m4".to_owned()]);
    assert!(w.dlq.bodies().is_empty());
    w.salesforce
        .fail
        .lock()
        .unwrap()
        .insert("003Z".into(), "DELETE_FAILED".into());
    let again = json!({"type": "ENTITY_REMOVED", "object": {"uri": "entities/E2",
        "crosswalks": [{"type": SFDC, "value": "003Z"}]}, "updatedTime": 5_000})
    .to_string();
    let h = run(&w, &[("m4", again, "ev-9", "9")]).await;
    assert!(failures(&h).is_empty());
    let letters = w.dlq.bodies();
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["reason"]
        .as_str()
        .unwrap()
        .contains("Salesforce rejected a Contact delete: DELETE_FAILED"));
}

#[tokio::test]
async fn ignore_leaves_the_contacts_alone() {
    let w = world("ignore");
    let h = run(&w, &[("m1", removed(&["003A"], 3_000), "ev-3", "3")]).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedEventType"), 1);
    assert!(w.salesforce.requests.lock().unwrap().is_empty());
    assert!(w.salesforce.deleted_calls.lock().unwrap().is_empty());
}
