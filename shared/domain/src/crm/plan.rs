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
use super::salesforce::{MergeRequest, RecordQuery, RecordUpdate};
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

mod conclude;
pub use conclude::{conclude, merge_outcome, write_outcome, Conclusion, StepResults};

#[cfg(test)]
mod tests;
