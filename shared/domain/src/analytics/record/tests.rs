use super::*;
use serde_json::json;

const INDIVIDUAL: &str = "configuration/entityTypes/Individual";

fn mapping() -> AnalyticsMapping {
    AnalyticsMapping::parse(
        r#"
        [entity_types.Individual.columns]
        first_name = "FirstName"
        city = "Address.City"
        email = "Email"
        "#,
    )
    .unwrap()
}

fn attr(value: Value, ov: bool) -> Value {
    json!({"type": "x", "ov": ov, "value": value})
}

fn changed(uri: &str, version: i64) -> ReltioEvent {
    serde_json::from_value(json!({
        "type": "ENTITY_CHANGED", "tenantId": "T1", "objectVersion": version, "updatedTime": 1_780_000_000_123i64,
        "object": {"uri": uri, "type": INDIVIDUAL, "updatedTime": 1_780_000_000_000i64,
            "attributes": {
                "FirstName": [attr(json!("Old"), false), attr(json!("Jane"), true)],
                "Address": [attr(json!({"City": [attr(json!("Austin"), true)]}), true)]
            },
            "crosswalks": [
                {"type": "configuration/sources/CRM_DB", "value": "46", "sourceTable": "CUSTOMER"},
                {"type": "configuration/sources/SFDC", "value": "003A", "sourceTable": ""}
            ]}
    }))
    .unwrap()
}

fn record_of(event: &ReltioEvent) -> ChangeRecord {
    match plan_record(
        &mapping(),
        event,
        "ev-1",
        None,
        None,
        "2026-12-07T00:00:00.000Z",
    )
    .unwrap()
    {
        RecordPlan::Record(r) => *r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_change_with_a_snapshot_carries_its_golden_values_as_columns_and_its_crosswalks() {
    let r = record_of(&changed("entities/E1", 7));
    assert_eq!(r.change_type, ChangeType::Update);
    assert_eq!(r.entity_uri, "entities/E1");
    assert_eq!(r.entity_type.as_deref(), Some("Individual"));
    assert_eq!(r.tenant_id.as_deref(), Some("T1"));
    assert_eq!(r.object_version, Some(7));
    assert_eq!(r.updated_time, Some(1_780_000_000_123));
    assert_eq!(r.updated_at.as_deref(), Some("2026-05-28T20:26:40.123Z"));
    assert!(r.has_snapshot && !r.removed);
    assert_eq!(r.columns["first_name"], json!("Jane"), "the ov: true value");
    assert_eq!(r.columns["city"], json!("Austin"), "nested");
    assert_eq!(r.columns["email"], Value::Null, "no golden value");
    let cw = r.crosswalks.as_ref().unwrap();
    assert_eq!(cw[0].source_table.as_deref(), Some("CUSTOMER"));
    assert_eq!(cw[1].source_table, None, "an empty source table is none");
    assert_eq!(cw[1].value.as_deref(), Some("003A"));
}

#[test]
fn the_line_holds_every_field_even_when_null_and_the_columns_flattened() {
    let r = record_of(&changed("entities/E1", 7));
    let line = r.to_line();
    assert_eq!(line.last(), Some(&b'\n'));
    let v: Value = serde_json::from_slice(&line).unwrap();
    for field in crate::analytics::mapping::RECORD_FIELDS {
        assert!(v.get(field).is_some(), "{field} missing from {v}");
    }
    assert_eq!(v["first_name"], "Jane");
    assert_eq!(v["change_type"], "UPDATE");
    assert_eq!(v["merged_into"], Value::Null);
    assert_eq!(v["crosswalks"][0]["type"], "configuration/sources/CRM_DB");
}

#[test]
fn merges_name_their_losers_and_winners_and_carry_no_snapshot() {
    let merge: ReltioEvent = serde_json::from_value(json!({
        "type": "ENTITIES_MERGED_MANUALLY", "objectVersion": 9, "updatedTime": 5,
        "uris": ["entities/W", "entities/L1", "entities/L2"]
    }))
    .unwrap();
    let r = record_of(&merge);
    assert_eq!(r.change_type, ChangeType::Merge);
    assert_eq!(r.entity_uri, "entities/W");
    assert_eq!(
        r.merged_uris,
        Some(vec!["entities/L1".into(), "entities/L2".into()])
    );
    assert!(!r.has_snapshot && r.crosswalks.is_none() && r.columns.is_empty());
    assert_eq!(r.entity_type, None);

    let lost: ReltioEvent = serde_json::from_value(json!({
        "type": "ENTITY_LOST_MERGE", "objectVersion": 4, "updatedTime": 5,
        "uris": ["entities/L1", "entities/W"], "object": {"uri": "entities/L1", "type": INDIVIDUAL}
    }))
    .unwrap();
    let r = record_of(&lost);
    assert_eq!(r.change_type, ChangeType::LostMerge);
    assert_eq!(r.entity_uri, "entities/L1");
    assert_eq!(r.merged_into.as_deref(), Some("entities/W"));
    assert!(!r.has_snapshot);
    assert_eq!(
        r.columns["first_name"],
        Value::Null,
        "the type's columns, null"
    );
}

#[test]
fn removals_are_flagged_and_versions_come_from_the_message_when_the_body_lacks_them() {
    let removed: ReltioEvent = serde_json::from_value(json!({
        "type": "ENTITY_REMOVED_GDPR", "object": {"uri": "entities/E2", "type": INDIVIDUAL}
    }))
    .unwrap();
    let plan = plan_record(&mapping(), &removed, "ev", Some("T9"), Some(" 12 "), "now").unwrap();
    let RecordPlan::Record(r) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(r.change_type, ChangeType::Remove);
    assert!(r.removed);
    assert_eq!(r.object_version, Some(12));
    assert_eq!(r.tenant_id.as_deref(), Some("T9"));
    assert_eq!((r.updated_time, r.updated_at.as_deref()), (None, None));
}

#[test]
fn an_oversized_change_is_fetched_and_completed_from_the_entity() {
    let big: ReltioEvent = serde_json::from_value(json!({
        "type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/E3", "objectVersion": 3,
        "updatedTime": 10
    }))
    .unwrap();
    let plan = plan_record(&mapping(), &big, "ev", None, None, "now").unwrap();
    let RecordPlan::Fetch { uri, record } = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(uri, "entities/E3");
    assert!(!record.has_snapshot);
    let entity = json!({"uri": "entities/E3", "type": INDIVIDUAL,
                        "attributes": {"FirstName": [attr(json!("Ann"), true)]}, "crosswalks": []});
    let done = with_snapshot(&mapping(), (*record).clone(), &entity).unwrap();
    assert!(done.has_snapshot);
    assert_eq!(done.entity_type.as_deref(), Some("Individual"));
    assert_eq!(done.columns["first_name"], "Ann");
    assert_eq!(done.object_version, Some(3));
    assert_eq!(done.crosswalks, Some(vec![]));
    // The event named no type: a fetched entity of a type the mapping does not record is skipped.
    let location = json!({"uri": "entities/E3", "type": "configuration/entityTypes/Location", "attributes": {}});
    assert_eq!(
        with_snapshot(&mapping(), *record, &location),
        Err(SkipReason::EntityType)
    );
}

#[test]
fn delta_and_skipped_payloads_are_fetched_like_oversized_ones() {
    // DELTAS: the URI and the deltas, no object.
    let deltas: ReltioEvent = serde_json::from_value(json!({
        "type": "ENTITY_CHANGED", "uri": "entities/E4",
        "deltas": {"ovChanged": true, "delta": [{"type": "ATTRIBUTE_CHANGED",
            "attributeType": "configuration/entityTypes/Individual/attributes/FirstName",
            "newValue": {"value": "Ann", "ov": true}, "oldValue": {"value": "Anne", "ov": true}}]}
    }))
    .unwrap();
    assert!(matches!(
        plan_record(&mapping(), &deltas, "ev", None, None, "now").unwrap(),
        RecordPlan::Fetch { ref uri, .. } if uri == "entities/E4"
    ));
    // A removal needs no snapshot.
    let removed: ReltioEvent =
        serde_json::from_value(json!({"type": "ENTITY_REMOVED", "uri": "entities/E4"})).unwrap();
    assert!(matches!(
        plan_record(&mapping(), &removed, "ev", None, None, "now").unwrap(),
        RecordPlan::Record(_)
    ));
}

#[test]
fn events_outside_the_mapping_are_skipped_with_a_reason() {
    let m = AnalyticsMapping::parse(
        "event_types = [\"UPDATE\"]\n[entity_types.Individual.columns]\nfirst_name = \"FirstName\"",
    )
    .unwrap();
    let plan = |body: Value| {
        let e: ReltioEvent = serde_json::from_value(body).unwrap();
        plan_record(&m, &e, "ev", None, None, "now").unwrap()
    };
    assert_eq!(
        plan(json!({"type": "RELATIONSHIP_CREATED", "object": {"uri": "relations/1"}})),
        RecordPlan::Skip(SkipReason::EventType)
    );
    assert_eq!(
        plan(
            json!({"type": "ENTITY_CREATED", "object": {"uri": "entities/1", "type": INDIVIDUAL}})
        ),
        RecordPlan::Skip(SkipReason::EventType),
        "not subscribed"
    );
    assert_eq!(
        plan(json!({"type": "ENTITY_CHANGED",
                    "object": {"uri": "entities/1", "type": "configuration/entityTypes/Location"}})),
        RecordPlan::Skip(SkipReason::EntityType)
    );
    let nameless: ReltioEvent = serde_json::from_value(json!({"type": "ENTITY_CHANGED"})).unwrap();
    assert_eq!(
        plan_record(&m, &nameless, "ev", None, None, "now"),
        Err(RecordError::NoEntity)
    );
}
