use super::*;
use crate::ordering::Applied;
use serde_json::json;

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

[[fields]]
attribute = "Email"
field = "Email"
transform = "lower"
clear_when_missing = true
"#;

fn mapping() -> CrmMapping {
    CrmMapping::parse(MAPPING).unwrap()
}

fn settings(m: &CrmMapping) -> &CreateSettings {
    m.create.as_ref().unwrap()
}

fn entity(attributes: Value, crosswalks: Value) -> EntitySnapshot {
    EntitySnapshot::from_entity(json!({
        "uri": "entities/0Abc12", "type": "configuration/entityTypes/Individual", "updatedTime": 5,
        "attributes": attributes, "crosswalks": crosswalks,
    }))
}

fn golden(v: &str) -> Value {
    json!([{"value": v, "ov": true}])
}

fn crm_db() -> Value {
    json!([{"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER"}])
}

#[test]
fn the_create_settings_are_validated() {
    let m = mapping();
    assert_eq!(
        m.create,
        Some(CreateSettings {
            external_id_field: "Reltio_Id__c".into(),
            require: vec!["LastName".into()],
        })
    );
    assert!(CrmMapping::parse(&MAPPING.replace("create = true\n", ""))
        .unwrap_err()
        .to_string()
        .contains("set create = true"));
    assert!(
        CrmMapping::parse(&MAPPING.replace("external_id_field = \"Reltio_Id__c\"\n", ""))
            .unwrap_err()
            .to_string()
            .contains("needs external_id_field")
    );
    assert!(
        CrmMapping::parse(&MAPPING.replace("[\"LastName\"]", "[\"Phone\"]"))
            .unwrap_err()
            .to_string()
            .contains("`Phone` is not a mapped field")
    );
    assert!(CrmMapping::parse(&MAPPING.replace("Reltio_Id__c", "Email"))
        .unwrap_err()
        .to_string()
        .contains("holds the entity id"));
    assert!(
        CrmMapping::parse(&MAPPING.replace("Reltio_Id__c", "Reltio Id"))
            .unwrap_err()
            .to_string()
            .contains("not a Salesforce field name")
    );
    // Off by default.
    let off = MAPPING
        .replace("create = true\n", "")
        .replace("external_id_field = \"Reltio_Id__c\"\n", "")
        .replace("require = [\"LastName\"]\n", "");
    assert_eq!(CrmMapping::parse(&off).unwrap().create, None);
}

#[test]
fn an_entity_with_its_required_fields_plans_a_contact_keyed_by_its_id() {
    let m = mapping();
    let e = entity(
        json!({"FirstName": golden("Ann"), "LastName": golden("Lee"),
               "Phone": golden("+1 555")}),
        json!([
            {"type": "configuration/sources/ERP", "value": "E-1", "deleteDate": "2024-01-01T00:00:00Z"},
            {"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER"},
            {"type": "configuration/sources/ERP", "value": "E-2"}
        ]),
    );
    let plan = plan_create(&m, settings(&m), &e, "entities/0Abc12").unwrap();
    assert_eq!(plan.external_id, "0Abc12");
    assert_eq!(plan.entity_type, "configuration/entityTypes/Individual");
    // Email has no golden value: clear_when_missing means nothing to a new Contact.
    assert_eq!(
        Value::Object(plan.fields.clone()),
        json!({"FirstName": "Ann", "LastName": "Lee"})
    );
    // The first live crosswalk, with its table: the end-dated one cannot name the entity.
    assert_eq!(
        plan.contributor,
        CrosswalkKey {
            source: "configuration/sources/CRM_DB".into(),
            source_table: Some("CUSTOMER".into()),
            value: "42".into(),
        }
    );
}

#[test]
fn an_entity_without_a_required_field_or_a_crosswalk_to_attach_to_is_not_created() {
    let m = mapping();
    let no_last = entity(json!({"FirstName": golden("Ann")}), crm_db());
    assert_eq!(
        plan_create(&m, settings(&m), &no_last, "entities/0Abc12"),
        Err(Outcome::Skipped(SkipReason::Incomplete))
    );
    let blank_last = entity(json!({"LastName": golden("  ")}), crm_db());
    assert_eq!(
        plan_create(&m, settings(&m), &blank_last, "entities/0Abc12"),
        Err(Outcome::Skipped(SkipReason::Incomplete))
    );
    let ended = entity(
        json!({"LastName": golden("Lee")}),
        json!([{"type": "configuration/sources/CRM_DB", "value": "42", "deleteDate": "2024-01-01"}]),
    );
    let Err(Outcome::Permanent(reason)) = plan_create(&m, settings(&m), &ended, "entities/0Abc12")
    else {
        panic!("no live crosswalk: a permanent failure")
    };
    assert!(reason.contains("no live crosswalk"), "{reason}");
    let e = entity(json!({"LastName": golden("Lee")}), crm_db());
    assert!(matches!(
        plan_create(&m, settings(&m), &e, "relations/9"),
        Err(Outcome::Permanent(_))
    ));
    assert_eq!(entity_id("entities/0Abc12/crosswalks/x"), None);
    assert_eq!(entity_id("entities/"), None);
}

fn plan() -> CreatePlan {
    let m = mapping();
    let e = entity(json!({"LastName": golden("Lee")}), crm_db());
    plan_create(&m, settings(&m), &e, "entities/0Abc12").unwrap()
}

#[test]
fn the_ledger_decides_whether_to_upsert_again() {
    let m = mapping();
    let p = plan();
    let fresh = create_steps(settings(&m), &p, &EntityRecord::default());
    let upsert = fresh.upsert.clone().unwrap();
    assert_eq!(
        (
            upsert.sobject.as_str(),
            upsert.external_id_field.as_str(),
            upsert.external_id.as_str()
        ),
        ("Contact", "Reltio_Id__c", "0Abc12")
    );
    assert_eq!(fresh.contact, None);
    // Created before with these very values: only the write-back is left.
    let written = vec![("003NEW".to_owned(), fresh.hash.clone())];
    let record = EntityRecord::default().with(&Applied {
        written: &written,
        created: Some("003NEW"),
        ..Applied::nothing("ev-1")
    });
    let again = create_steps(settings(&m), &p, &record);
    assert_eq!(again.upsert, None);
    assert_eq!(again.contact.as_deref(), Some("003NEW"));
    // Created with other values: upserted again (the same Contact, found by the entity id).
    let mut changed = p.clone();
    changed.fields.insert("LastName".into(), json!("Lee-Smith"));
    assert!(create_steps(settings(&m), &changed, &record)
        .upsert
        .is_some());
}

#[test]
fn the_write_back_attaches_the_contacts_crosswalk_through_the_entitys_own() {
    let body = write_back(&mapping(), &plan(), "003NEW");
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        json!({"type": "configuration/entityTypes/Individual", "crosswalks": [
            {"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER",
             "dataProvider": false, "contributorProvider": true},
            {"type": "configuration/sources/SFDC_CONTACT", "value": "003NEW"}
        ]})
    );
}

fn steps(upsert: bool) -> CreateSteps {
    let m = mapping();
    let record = if upsert {
        EntityRecord::default()
    } else {
        let s = create_steps(settings(&m), &plan(), &EntityRecord::default());
        let written = vec![("003NEW".to_owned(), s.hash)];
        EntityRecord::default().with(&Applied {
            written: &written,
            created: Some("003NEW"),
            ..Applied::nothing("ev-1")
        })
    };
    create_steps(settings(&m), &plan(), &record)
}

#[test]
fn a_create_is_complete_once_written_back_and_ordered_once_upserted() {
    let upserted = |write_back: Option<Outcome>| CreateResults {
        upsert: Some(Outcome::Done),
        contact: Some("003NEW".into()),
        created: true,
        write_back,
    };
    let s = steps(true);
    let c = conclude_create(&s, &upserted(Some(Outcome::Done)));
    assert_eq!(c.outcome, Outcome::Done);
    assert!(c.complete && c.ordered);
    assert_eq!(c.created.as_deref(), Some("003NEW"));
    assert_eq!(c.written, vec![("003NEW".to_owned(), s.hash.clone())]);
    // The write-back failed: the Contact and the order are recorded, the change is not complete (tried again,
    // without creating again).
    let down = Outcome::Transient("Reltio down".into());
    let c = conclude_create(&s, &upserted(Some(down.clone())));
    assert_eq!(c.outcome, down);
    assert!(!c.complete && c.ordered && c.created.is_some());
    // The upsert failed: nothing recorded, nothing written back.
    let refused = Outcome::Permanent("REQUIRED_FIELD_MISSING".into());
    let c = conclude_create(
        &s,
        &CreateResults {
            upsert: Some(refused.clone()),
            ..CreateResults::default()
        },
    );
    assert_eq!(c.outcome, refused);
    assert!(!c.complete && !c.ordered && c.created.is_none() && c.written.is_empty());
    // The retry: no upsert (unchanged), the write-back alone.
    let s = steps(false);
    assert!(s.upsert.is_none());
    let c = conclude_create(
        &s,
        &CreateResults {
            contact: Some("003NEW".into()),
            write_back: Some(Outcome::Done),
            ..CreateResults::default()
        },
    );
    assert_eq!(c.outcome, Outcome::Done);
    assert!(c.complete && c.ordered && c.written.is_empty());
}

#[test]
fn upsert_and_write_back_results_are_classified() {
    assert_eq!(
        upsert_outcome(Ok(UpsertOutcome::Upserted {
            id: "003A".into(),
            created: false
        })),
        (Outcome::Done, Some(("003A".to_owned(), false)))
    );
    let (o, id) = upsert_outcome(Ok(UpsertOutcome::Failed {
        code: "UNABLE_TO_LOCK_ROW".into(),
        message: String::new(),
        transient: true,
    }));
    assert!(o.is_transient() && id.is_none());
    let (o, _) = upsert_outcome(Err(PortError::Rejected("400".into())));
    assert!(matches!(o, Outcome::Permanent(_)));
    assert_eq!(
        write_back_outcome(Ok(ItemOutcome::Written { uri: None })),
        Outcome::Done
    );
    assert!(matches!(
        write_back_outcome(Ok(ItemOutcome::Failed {
            message: "no such crosswalk".into(),
            transient: false
        })),
        Outcome::Permanent(r) if r.contains("no such crosswalk")
    ));
}
