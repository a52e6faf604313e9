use super::*;
use serde_json::json;

fn event(value: Value) -> ReltioEvent {
    serde_json::from_value(value).unwrap()
}

#[test]
fn the_losers_of_a_merge_are_every_other_entity_it_names() {
    let merged = event(
        json!({"type": "ENTITIES_MERGED_MANUALLY", "updatedTime": 5, "uris": ["entities/W", "entities/L2", "entities/L1", "entities/W"]}),
    );
    assert_eq!(
        lost_merge(&merged, "entities/W", Some(9)),
        Some(LostMerge {
            losers: vec!["entities/L1".into(), "entities/L2".into()],
            at: 5
        })
    );
    // A first URI that was a loser resolves to the winner: it is a loser too.
    assert_eq!(
        lost_merge(&merged, "entities/L1", Some(9)).unwrap().losers,
        vec!["entities/L2".to_owned(), "entities/W".to_owned()]
    );
    let lost = event(
        json!({"type": "ENTITY_LOST_MERGE", "uris": ["entities/L", "entities/W"], "object": {"uri": "entities/L"}}),
    );
    assert_eq!(
        lost_merge(&lost, "entities/W", Some(9)),
        Some(LostMerge {
            losers: vec!["entities/L".into()],
            at: 9
        }),
        "no event time: the fetched winner's"
    );
    // Not merged (anymore): the entity resolved to itself.
    assert_eq!(lost_merge(&lost, "entities/L", Some(9)), None);
    assert_eq!(lost_merge(&lost, "entities/W", None), None);
    let changed = event(
        json!({"type": "ENTITY_CHANGED", "updatedTime": 5, "uris": ["entities/L"], "object": {"uri": "entities/W"}}),
    );
    assert_eq!(lost_merge(&changed, "entities/W", Some(9)), None);
}

fn item(entity: &str, merge: bool) -> Item {
    let mapping = CrmMapping::parse(
        "crosswalk_type = \"configuration/sources/SFDC\"\n[[fields]]\nattribute = \"A\"\nfield = \"A\"\n",
    )
    .unwrap();
    let mut item = decode(&mapping, QueuedEvent::default());
    item.outcome = None;
    item.entity_uri = Some(entity.into());
    item.merge = merge.then(|| LostMerge {
        losers: vec!["entities/L".into()],
        at: 1,
    });
    item
}

#[test]
fn rounds_keep_each_entitys_order_and_put_merges_first() {
    let mut items = vec![
        item("entities/L", false),
        item("entities/A", false),
        item("entities/W", true),
        item("entities/A", false),
        item("entities/X", false),
    ];
    items[4].outcome = Some(Outcome::Done);
    let r = rounds(&items);
    assert_eq!(r.rounds, vec![vec![2, 0, 1], vec![3]]);
    assert_eq!(r.previous, vec![None, None, None, Some(1), None]);
}

fn write(kind: WriteKind, id: &str) -> Write {
    Write {
        item: 0,
        kind,
        record: RecordUpdate {
            sobject: "Contact".into(),
            id: id.into(),
            fields: Map::new(),
        },
        hash: Some(format!("h-{id}")),
    }
}

#[test]
fn conclusions_by_step_outcome() {
    let done = Outcome::Done;
    let bad = Outcome::Permanent("bad".into());
    let down = Outcome::Transient("down".into());
    let results = |steps: Vec<(WriteKind, &str, &Outcome)>| StepResults {
        writes: steps
            .into_iter()
            .map(|(k, id, o)| (write(k, id), o.clone()))
            .collect(),
        ..StepResults::default()
    };
    let none = EntityRecord::default();
    // All done: complete, ordered, every Contact hash recorded.
    let c = conclude(
        "e",
        &results(vec![
            (WriteKind::Survivor, "S", &done),
            (WriteKind::Archive, "L", &done),
        ]),
        &none,
    );
    assert_eq!(c.outcome, Outcome::Done);
    assert!(c.complete && c.ordered);
    assert_eq!(c.written.len(), 2);
    // A bad child: dead-lettered, given up on; the survivor's order still advances.
    let c = conclude(
        "e",
        &results(vec![
            (WriteKind::Survivor, "S", &done),
            (WriteKind::Repoint, "C", &bad),
        ]),
        &none,
    );
    assert_eq!(c.outcome, Outcome::Permanent("bad".into()));
    assert!(!c.complete && c.ordered);
    assert_eq!(c.given_up, vec!["C".to_owned()]);
    // A bad survivor: not given up on, and the order does not advance.
    let c = conclude("e", &results(vec![(WriteKind::Survivor, "S", &bad)]), &none);
    assert!(!c.ordered && c.given_up.is_empty());
    // Transient beats permanent.
    let c = conclude(
        "e",
        &results(vec![
            (WriteKind::Archive, "L", &bad),
            (WriteKind::Repoint, "C", &down),
        ]),
        &none,
    );
    assert_eq!(c.outcome, Outcome::Transient("down".into()));
    // A record another event gave up on fails again: known, the change is done; done later: recovered.
    let mut known = EntityRecord::default();
    known.given_up.push(("C".into(), "other".into()));
    let c = conclude("e", &results(vec![(WriteKind::Repoint, "C", &bad)]), &known);
    assert_eq!(c.outcome, Outcome::Done);
    assert!(c.complete && c.given_up.is_empty());
    let c = conclude(
        "e",
        &results(vec![(WriteKind::Repoint, "C", &done)]),
        &known,
    );
    assert_eq!(c.recovered, vec!["C".to_owned()]);
    // The same event's own earlier failure is its own again (a redrive before the fix).
    let c = conclude(
        "other",
        &results(vec![(WriteKind::Repoint, "C", &bad)]),
        &known,
    );
    assert_eq!(c.outcome, Outcome::Permanent("bad".into()));
}
