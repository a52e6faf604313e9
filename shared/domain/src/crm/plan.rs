//! The crm-updater's batch planner, pure: queue messages → items (decoded, filtered, ordered), the rounds they
//! are applied in, each claimed item's steps given what the ledger knows (SOAP merges, the survivor write, loser
//! archives, child re-points), and, once the steps ran, what the item's outcome is and what its commit records.
//!
//! Steps are tracked one by one: a step that succeeded is committed (never redone), a step that failed for good
//! is dead-lettered with the message and given up on (later changes of the entity still try it, since its cause
//! may have been fixed, but are not failed by it), and the change's order is committed as soon as its survivor
//! write is done, so an older version delivered later is stale whatever else failed.

use super::contacts::contact_ids;
use super::contacts::{child_query, merge_requests, parse_version, plan_contacts};
use super::contacts::{write_hash, ContactPlan};
use super::create::{create_steps, plan_create, CreatePlan, CreateResults, CreateSteps};
use super::mapping::DeletePolicy;
use super::mapping::{CrmMapping, MergeStrategy};
use super::removal::{is_removal, removal_steps, Removal};
use super::salesforce::{MergeOutcome, MergeRequest, RecordOutcome, RecordQuery, RecordUpdate};
use crate::ordering::{EntityRecord, Fence, Order};
use crate::outcome::{Outcome, SkipReason};
use crate::ports::PortError;
use crate::reltio::event::{EventCategory, ReltioEvent};
use crate::reltio::golden::{EntitySnapshot, GoldenAttributes, LeanCrosswalks};
use crate::reltio::message::QueuedEvent;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A Reltio event as crm-updater reads it: of the snapshot's attributes only the golden values (all the mapping
/// reads), of its crosswalks what names a Contact and whether it is live.
pub type CrmEvent = ReltioEvent<GoldenAttributes, LeanCrosswalks>;

/// The entities a merge event merged into the winner, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostMerge {
    pub losers: Vec<String>,
    /// The event's `updatedTime` (the merge), else the fetched winner's `updatedTime` (not earlier than the merge).
    pub at: i64,
}

impl LostMerge {
    pub fn fence(&self) -> Fence<'_> {
        Fence {
            losers: &self.losers,
            merged_at: self.at,
        }
    }
}

/// One message being worked on.
#[derive(Debug, Clone)]
pub struct Item {
    pub message_id: String,
    pub event_id: String,
    /// The trace of the invocation that enqueued the event (for the hand-over line).
    pub trace: Option<String>,
    /// Decided: `None` while the item is still to be applied.
    pub outcome: Option<Outcome>,
    pub event: Option<CrmEvent>,
    /// The entity the event names.
    pub event_uri: Option<String>,
    pub order: Order,
    /// The entity snapshot (the event's, or fetched).
    pub entity: Option<EntitySnapshot>,
    /// The snapshot's URI: the ledger key (a merged loser's URI resolves to the winner).
    pub entity_uri: Option<String>,
    pub plan: Option<ContactPlan>,
    /// The Contact to create, for an entity with none (`create = true`).
    pub create: Option<CreatePlan>,
    /// The entity was removed in Reltio (`on_delete`).
    pub removal: Option<Removal>,
    /// The snapshot was read from Reltio (not the event's own).
    pub fetched: bool,
    /// The snapshot's `updatedTime`, for the end-to-end latency.
    pub event_time: Option<i64>,
    pub merge: Option<LostMerge>,
}

impl Item {
    pub fn is_pending(&self) -> bool {
        self.outcome.is_none()
    }

    /// The URI to fetch from Reltio when the event carries no usable snapshot.
    pub fn fetch_uri(&self) -> Option<&str> {
        (self.is_pending() && self.entity.is_none())
            .then_some(self.event_uri.as_deref())
            .flatten()
    }

    /// The entity for logs and the dead letter.
    pub fn uri(&self) -> Option<&str> {
        self.entity_uri.as_deref().or(self.event_uri.as_deref())
    }
}

/// Parses a message and applies the mapping's event filters; what is left needs an entity snapshot.
pub fn decode(mapping: &CrmMapping, queued: QueuedEvent) -> Item {
    let QueuedEvent {
        message_id,
        json: body,
        event_id,
        source_object_uri,
        object_version,
        trace,
        ..
    } = queued;
    let mut item = Item {
        message_id,
        event_id,
        trace,
        outcome: None,
        event: None,
        event_uri: None,
        order: Order::default(),
        entity: None,
        entity_uri: None,
        plan: None,
        create: None,
        removal: None,
        fetched: false,
        event_time: None,
        merge: None,
    };
    let mut event: CrmEvent = match serde_json::from_str(&body) {
        Ok(e) => e,
        Err(e) => {
            item.outcome = Some(Outcome::Permanent(format!("not a Reltio event: {e}")));
            return item;
        }
    };
    if !mapping.event_types.matches(&event.event_type) {
        item.outcome = Some(Outcome::Skipped(SkipReason::EventType));
        return item;
    }
    if let Some(t) = event.entity_type() {
        if !mapping.entity_types.matches(Some(t)) {
            item.outcome = Some(Outcome::Skipped(SkipReason::EntityType));
            return item;
        }
    }
    if mapping.skip_ov_unchanged
        && event.event_type == "ENTITY_CHANGED"
        && event.golden_values_unchanged()
    {
        item.outcome = Some(Outcome::Skipped(SkipReason::NoGoldenChange));
        return item;
    }
    // A `skipPayload` event names its entity only in the message's `sourceObjectUri` header.
    item.event_uri = event
        .entity_uri()
        .map(str::to_owned)
        .or_else(|| source_object_uri.clone());
    if item.event_uri.is_none() {
        item.outcome = Some(Outcome::Permanent("the event names no entity".into()));
        return item;
    }
    // objectVersion counts per object (docs/reference.md), so it is kept with the object it counts for (the
    // event's sourceObjectUri: for a merged loser's ENTITY_LOST_MERGE the loser, not the winner the ledger entry
    // belongs to). Version: the objectVersion attribute, else the event's objectVersion; never a time (a time
    // recorded as a version would make every later real version look stale). The snapshot's own updatedTime
    // orders snapshots of the entity, times against times.
    item.order.object = source_object_uri.or_else(|| item.event_uri.clone());
    let explicit_version = object_version
        .as_deref()
        .and_then(parse_version)
        .or_else(|| event.object_version().as_deref().and_then(parse_version));
    item.event_time = event
        .object
        .as_ref()
        .and_then(|o| o.updated_time)
        .or(event.updated_time);
    let complete = event
        .object
        .as_ref()
        .is_some_and(|o| o.uri.is_some() && o.attributes.is_some() && o.crosswalks.is_some());
    let is_merge = EventCategory::of(&event.event_type) == Some(EventCategory::Merge);
    if is_removal(&event.event_type) {
        if mapping.on_delete == DeletePolicy::Ignore {
            item.outcome = Some(Outcome::Skipped(SkipReason::EventType));
            return item;
        }
        // A removed entity can no longer be fetched: the event's own snapshot (crosswalks, if any) and the ledger
        // name its Contacts.
        let object = event.object.take();
        let time = object
            .as_ref()
            .and_then(|o| o.updated_time)
            .or(event.updated_time);
        item.order.snapshot_time = time;
        item.order.version = explicit_version;
        item.entity = Some(EntitySnapshot {
            uri: object
                .as_ref()
                .and_then(|o| o.uri.clone())
                .or_else(|| item.event_uri.clone()),
            entity_type: object.as_ref().and_then(|o| o.entity_type.clone()),
            updated_time: time,
            attributes: GoldenAttributes::default(),
            crosswalks: object.and_then(|o| o.crosswalks).unwrap_or_default(),
        });
        item.event = Some(event);
        return item;
    }
    if complete && !event.exceeded_queue_size_limit && !is_merge {
        // Moved, not copied: the snapshot is most of the event, and nothing reads it from the event again.
        if let Some(o) = event.object.take() {
            item.order.snapshot_time = o.updated_time;
            item.entity = Some(EntitySnapshot {
                uri: o.uri,
                entity_type: o.entity_type,
                updated_time: o.updated_time,
                attributes: o.attributes.unwrap_or_default(),
                crosswalks: o.crosswalks.unwrap_or_default(),
            });
        }
    }
    // Otherwise the entity is fetched: its snapshot is ordered by the fetched entity's own updatedTime.
    item.order.version = explicit_version;
    item.event = Some(event);
    item
}

/// Completes an item with the entity fetched for it (a merged loser's URI resolves to the winner).
pub fn complete(item: &mut Item, fetched: Result<Value, PortError>) {
    match fetched {
        Ok(entity) => {
            let entity = EntitySnapshot::from_entity(entity);
            item.order.snapshot_time = entity.updated_time;
            item.entity = Some(entity);
            item.fetched = true;
        }
        Err(PortError::Transient(e)) => {
            item.outcome = Some(Outcome::Transient(format!(
                "fetching the entity from Reltio: {e}"
            )))
        }
        Err(PortError::Rejected(e)) => {
            item.outcome = Some(Outcome::Permanent(format!(
                "fetching the entity from Reltio: {e}"
            )))
        }
    }
}

/// The losers of a merge event whose entity was fetched as `winner`: for ENTITY_LOST_MERGE the event's own entity
/// (when it is not the winner), for ENTITIES_MERGED* every URI of the event other than the winner. `None` for other
/// events, for a merge naming no loser, or when no merge time is known (event `updatedTime`, else `fetched_time`).
pub fn lost_merge<A, C>(
    event: &ReltioEvent<A, C>,
    winner: &str,
    fetched_time: Option<i64>,
) -> Option<LostMerge> {
    let mut losers: Vec<String> = match event.event_type.as_str() {
        "ENTITY_LOST_MERGE" => event.entity_uri().map(str::to_owned).into_iter().collect(),
        t if EventCategory::of(t) == Some(EventCategory::Merge) => event.uris.clone(),
        _ => return None,
    };
    losers.retain(|l| l != winner && !l.is_empty());
    losers.sort();
    losers.dedup();
    let at = event.updated_time.or(fetched_time)?;
    (!losers.is_empty()).then_some(LostMerge { losers, at })
}

/// Plans an item whose snapshot is in: the entity-type filter on the snapshot, the ledger key, the merge it
/// records, and the Contact plan (none: skipped).
pub fn plan_entity(mapping: &CrmMapping, item: &mut Item) {
    let Some(entity) = item.entity.as_ref().filter(|_| item.outcome.is_none()) else {
        return;
    };
    let entity_type = entity.entity_type.as_deref();
    if entity_type.is_some() && !mapping.entity_types.matches(entity_type) {
        item.outcome = Some(Outcome::Skipped(SkipReason::EntityType));
        return;
    }
    item.entity_uri = entity.uri.clone().or_else(|| item.event_uri.clone());
    if let (Some(event), Some(winner)) = (&item.event, &item.entity_uri) {
        item.merge = lost_merge(event, winner, entity.updated_time);
    }
    if item
        .event
        .as_ref()
        .is_some_and(|e| is_removal(&e.event_type))
    {
        item.removal = Some(Removal {
            contacts: contact_ids(mapping, &entity.crosswalks),
        });
        return;
    }
    let contacts = plan_contacts(mapping, entity);
    if contacts.is_none() && mapping.create.is_some() && !item.fetched {
        // A Contact is created from the entity as Reltio holds it now, not from the event's snapshot: an entity
        // created a moment ago is often merged into one that has a Contact by the time its event is applied.
        item.entity = None;
        item.entity_uri = None;
        item.merge = None;
        return;
    }
    match (contacts, &mapping.create, &item.entity_uri) {
        (Some(plan), _, _) => item.plan = Some(plan),
        (None, Some(settings), Some(uri)) => match plan_create(mapping, settings, entity, uri) {
            Ok(plan) => item.create = Some(plan),
            Err(outcome) => item.outcome = Some(outcome),
        },
        (None, _, _) => item.outcome = Some(Outcome::Skipped(SkipReason::NoCrosswalk)),
    }
}

/// The order items are applied in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rounds {
    /// Round k holds the k-th pending item of every entity (one entity's events keep batch order), merges first,
    /// so that a merge fences its losers before their own changes in the same round are claimed.
    pub rounds: Vec<Vec<usize>>,
    /// Per item, the entity's previous pending item (which must not have failed transiently).
    pub previous: Vec<Option<usize>>,
}

pub fn rounds(items: &[Item]) -> Rounds {
    let mut per_entity: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if item.is_pending() {
            per_entity
                .entry(item.entity_uri.as_deref().unwrap_or_default())
                .or_default()
                .push(i);
        }
    }
    let mut previous = vec![None; items.len()];
    let count = per_entity.values().map(Vec::len).max().unwrap_or(0);
    let mut rounds = vec![Vec::new(); count];
    for queue in per_entity.values() {
        for (k, &i) in queue.iter().enumerate() {
            rounds[k].push(i);
            previous[i] = k.checked_sub(1).map(|p| queue[p]);
        }
    }
    for round in &mut rounds {
        round.sort_by_key(|&i| (items[i].merge.is_none(), i));
    }
    Rounds { rounds, previous }
}

/// What a write is, for counting and for what its failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// The survivor Contact's golden values: the change's main write.
    Survivor,
    /// A losing Contact marked with the archive fields.
    Archive,
    /// A child record re-pointed at the survivor.
    Repoint,
}

/// One record write of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub item: usize,
    pub kind: WriteKind,
    pub record: RecordUpdate,
    /// Recorded once confirmed, so that the same fields are not written again (Contacts only).
    pub hash: Option<String>,
}

/// What a claimed item calls for, given what the ledger knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steps {
    /// SOAP `merge()` requests, before anything is written.
    pub merges: Vec<MergeRequest>,
    /// Contact writes: the survivor's (unless unchanged or empty), the losers' archives.
    pub writes: Vec<Write>,
    /// Queries for the children to re-point, by `[[children]]` index.
    pub queries: Vec<(usize, RecordQuery)>,
    /// The survivor's values are what was last written: not written again.
    pub survivor_unchanged: bool,
    /// The Contact to create and write back, for an entity with none.
    pub create: Option<CreateSteps>,
    /// Contacts to delete (a removed entity's, `on_delete = "delete"`).
    pub deletes: Vec<String>,
}

/// The steps of claimed item `index`, leaving out what the ledger says is done.
pub fn plan_steps(
    mapping: &CrmMapping,
    items: &[Item],
    index: usize,
    record: &EntityRecord,
) -> Steps {
    let item = &items[index];
    if let Some(removal) = &item.removal {
        let (writes, deletes) = removal_steps(mapping, index, removal, record);
        return Steps {
            writes,
            deletes,
            ..Steps::default()
        };
    }
    if let (Some(plan), Some(settings)) = (&item.create, &mapping.create) {
        return Steps {
            create: Some(create_steps(settings, plan, record)),
            ..Steps::default()
        };
    }
    let Some(plan) = &item.plan else {
        return Steps::default();
    };
    let mut steps = Steps::default();
    let hash = write_hash(&plan.survivor_fields);
    if record.unchanged(&plan.survivor, &hash) {
        steps.survivor_unchanged = true;
    } else if !plan.survivor_fields.is_empty() {
        steps.writes.push(Write {
            item: index,
            kind: WriteKind::Survivor,
            record: RecordUpdate {
                sobject: "Contact".into(),
                id: plan.survivor.clone(),
                fields: plan.survivor_fields.clone(),
            },
            hash: Some(hash),
        });
    }
    match mapping.merge_strategy {
        MergeStrategy::Soap => {
            steps.merges = merge_requests(plan, &record.merged);
        }
        MergeStrategy::Archive => {
            for (id, fields) in &plan.archived {
                let hash = write_hash(fields);
                if fields.is_empty() || record.unchanged(id, &hash) {
                    continue;
                }
                steps.writes.push(Write {
                    item: index,
                    kind: WriteKind::Archive,
                    record: RecordUpdate {
                        sobject: "Contact".into(),
                        id: id.clone(),
                        fields: fields.clone(),
                    },
                    hash: Some(hash),
                });
            }
            // Children are looked up even when the Contacts are unchanged: new ones may point at a loser since.
            // A re-delivered merge finds none and writes nothing.
            for (r, rel) in mapping.children.iter().enumerate() {
                if let Some(query) = child_query(rel, &plan.losers()) {
                    steps.queries.push((r, query));
                }
            }
        }
    }
    steps
}

/// The writes that re-point the children a query found.
pub fn repoint_writes(
    mapping: &CrmMapping,
    items: &[Item],
    index: usize,
    relationship: usize,
    children: &[Map<String, Value>],
) -> Vec<Write> {
    let (Some(plan), Some(rel)) = (&items[index].plan, mapping.children.get(relationship)) else {
        return Vec::new();
    };
    children
        .iter()
        .filter_map(|c| c.get("Id").and_then(Value::as_str))
        .map(|id| {
            let mut fields = Map::new();
            fields.insert(rel.field.clone(), Value::String(plan.survivor.clone()));
            Write {
                item: index,
                kind: WriteKind::Repoint,
                record: RecordUpdate {
                    sobject: rel.sobject.clone(),
                    id: id.to_owned(),
                    fields,
                },
                hash: None,
            }
        })
        .collect()
}

/// How a record write ended (a record no longer there is skipped: nothing to do).
pub fn write_outcome(kind: WriteKind, outcome: Result<RecordOutcome, PortError>) -> Outcome {
    let what = match kind {
        WriteKind::Survivor | WriteKind::Archive => "a Contact",
        WriteKind::Repoint => "a child record",
    };
    match outcome {
        Ok(RecordOutcome::Updated) => Outcome::Done,
        Ok(RecordOutcome::Missing { .. }) => Outcome::Skipped(SkipReason::RecordMissing),
        Ok(RecordOutcome::Failed {
            code,
            message,
            transient,
        }) => {
            let reason = with_detail(
                format!("Salesforce rejected {what} write: {code}"),
                &message,
            );
            if transient {
                Outcome::Transient(reason)
            } else {
                Outcome::Permanent(reason)
            }
        }
        Err(e) => Outcome::from_port("writing to Salesforce", e),
    }
}

/// How a SOAP merge ended (records already merged away or deleted are skipped: nothing to do).
pub fn merge_outcome(outcome: &MergeOutcome) -> Outcome {
    match outcome {
        MergeOutcome::Merged { .. } => Outcome::Done,
        MergeOutcome::AlreadyMerged { .. } => Outcome::Skipped(SkipReason::RecordMissing),
        MergeOutcome::Failed {
            code,
            message,
            transient,
        } => {
            let reason = with_detail(format!("Salesforce rejected a merge: {code}"), message);
            if *transient {
                Outcome::Transient(reason)
            } else {
                Outcome::Permanent(reason)
            }
        }
    }
}

/// `reason`, with `detail` (field names, never values) in parentheses when there is one.
fn with_detail(reason: String, detail: &str) -> String {
    if detail.is_empty() {
        reason
    } else {
        format!("{reason} ({detail})")
    }
}

/// What happened to one item's steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepResults {
    /// Each merge request with how it ended.
    pub merges: Vec<(MergeRequest, Outcome)>,
    /// Each child query that failed, with how.
    pub queries: Vec<Outcome>,
    /// Each write with how it ended (one not attempted because a merge of its item failed carries that failure).
    pub writes: Vec<(Write, Outcome)>,
    pub survivor_unchanged: bool,
    /// A create's upsert and write-back.
    pub create: Option<CreateResults>,
    /// Each Contact deleted, with how it ended.
    pub deletes: Vec<(String, Outcome)>,
}

/// An item's outcome and what its commit records.
#[derive(Debug, Clone, PartialEq)]
pub struct Conclusion {
    pub outcome: Outcome,
    /// Nothing of the change is left to do.
    pub complete: bool,
    /// The survivor write is done (or unchanged): the order advances.
    pub ordered: bool,
    pub written: Vec<(String, String)>,
    pub merged: Vec<String>,
    pub given_up: Vec<String>,
    pub recovered: Vec<String>,
    /// The Contact created for the entity.
    pub created: Option<String>,
}

/// Concludes an item from its step results: transient beats permanent beats done; a record whose write (or
/// merge) failed for good is given up on, and one that another event gave up on before does not fail this
/// change when it fails again.
pub fn conclude<'r>(event_id: &str, results: &'r StepResults, record: &EntityRecord) -> Conclusion {
    let mut c = Conclusion {
        outcome: Outcome::Done,
        complete: true,
        ordered: results.survivor_unchanged,
        written: Vec::new(),
        merged: Vec::new(),
        given_up: Vec::new(),
        recovered: Vec::new(),
        created: None,
    };
    let mut failures = Failures::default();
    let mut survivor_written = false;
    let mut survivor_planned = false;
    let mut file = |targets: &[&str], outcome: &'r Outcome, c: &mut Conclusion| {
        failures.file(targets, outcome, c, record, event_id)
    };
    for (request, outcome) in &results.merges {
        let losers: Vec<&str> = request.records.iter().map(String::as_str).collect();
        file(&losers, outcome, &mut c);
        if matches!(outcome, Outcome::Done | Outcome::Skipped(_)) {
            c.merged.extend(request.records.iter().cloned());
        }
    }
    for outcome in &results.queries {
        file(&[], outcome, &mut c);
    }
    for (id, outcome) in &results.deletes {
        file(&[id.as_str()], outcome, &mut c);
    }
    for (write, outcome) in &results.writes {
        let survivor = write.kind == WriteKind::Survivor;
        survivor_planned |= survivor;
        // The survivor is the change's main write: its failure fails the change, never given up on.
        let targets: &[&str] = if survivor {
            &[]
        } else {
            &[write.record.id.as_str()]
        };
        file(targets, outcome, &mut c);
        match outcome {
            Outcome::Done => {
                survivor_written |= survivor;
                if let Some(hash) = &write.hash {
                    c.written.push((write.record.id.clone(), hash.clone()));
                }
            }
            Outcome::Skipped(_) => survivor_written |= survivor,
            _ => {}
        }
    }
    // A plan without a survivor write (nothing mapped has a golden value) has nothing to wait for.
    c.ordered |= survivor_written || !survivor_planned;
    c.outcome = match (failures.transient, failures.permanent.is_empty()) {
        (Some(reason), _) => Outcome::Transient(reason.to_owned()),
        (None, false) => Outcome::Permanent(failures.permanent.join("; ")),
        (None, true) => Outcome::Done,
    };
    c
}

/// The failures of an item's steps, as they are filed.
#[derive(Default)]
struct Failures<'r> {
    transient: Option<&'r str>,
    permanent: Vec<&'r str>,
}

impl<'r> Failures<'r> {
    /// Files one step's outcome for `targets` (the records it concerns).
    fn file(
        &mut self,
        targets: &[&str],
        outcome: &'r Outcome,
        c: &mut Conclusion,
        record: &EntityRecord,
        event_id: &str,
    ) {
        match outcome {
            Outcome::Done | Outcome::Skipped(_) => {
                for t in targets {
                    if record.given_up.iter().any(|(r, _)| r == t) {
                        c.recovered.push((*t).to_owned());
                    }
                }
            }
            Outcome::Permanent(reason) => {
                let known = !targets.is_empty()
                    && targets
                        .iter()
                        .all(|t| record.given_up_by_other(t, event_id));
                // Known: already in the other event's dead letter, and still given up on under that event.
                if !known {
                    c.complete = false;
                    self.permanent.push(reason);
                    c.given_up.extend(targets.iter().map(|t| (*t).to_owned()));
                }
            }
            Outcome::Transient(reason) => {
                c.complete = false;
                self.transient.get_or_insert(reason.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
