//! Applies a crm-updater batch through its ports: fetch the snapshots events do not carry, then round by round
//! claim each entity in the ledger, merge (SOAP), look up children, write through sObject Collections, delete
//! removed entities' Contacts (`removal.rs`), create the Contacts of entities without one and write their Ids
//! back (`create.rs`), and commit what Salesforce and Reltio confirmed. Every decision is the planner's (`plan.rs`, `crm/create.rs`); this sequences the I/O.

mod create;
mod removal;

use super::create::conclude_create;
use super::mapping::CrmMapping;
use super::plan::{
    complete, conclude, merge_outcome, plan_entity, plan_steps, repoint_writes, rounds,
    write_outcome, Item, Rounds, StepResults, Steps, Write, WriteKind,
};
use super::salesforce::{
    collection_requests, MergeOutcome, RecordQuery, RecordUpdate, MAX_REQUESTS_PER_CALL,
};
use crate::ordering::{Applied, Claim, EntityRecord};
use crate::outcome::{Outcome, SkipReason};
use crate::ports::{
    isolate_rejections, remaining, Crm, Deadline, EntitySource, EntityWriter, Ledger, PortError,
};
use futures::stream::{self, StreamExt};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Entity fetches, ledger calls and child queries in flight at once.
const MAX_IN_FLIGHT: usize = 8;

/// What the executor works through.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub reltio: &'a dyn EntitySource,
    /// The write-back of a created Contact's crosswalk.
    pub writer: &'a dyn EntityWriter,
    pub crm: &'a dyn Crm,
    pub ledger: &'a dyn Ledger,
}

/// What applying a batch did, beyond each item's outcome.
#[derive(Debug, Default)]
pub struct Report {
    /// Counters by metric name (`ContactsUpdated`, `SalesforceCalls`, ...).
    pub counts: BTreeMap<&'static str, u64>,
    /// Per Salesforce call, in milliseconds.
    pub salesforce_latencies_ms: Vec<f64>,
}

impl Report {
    fn count(&mut self, name: &'static str, n: u64) {
        *self.counts.entry(name).or_default() += n;
    }
}

/// Applies every item (their `outcome` is set, each one decided). `owner` names this invocation's leases.
pub async fn apply(
    ports: Ports<'_>,
    mapping: &CrmMapping,
    items: &mut [Item],
    owner: &str,
    deadline: Deadline,
) -> Report {
    let mut report = Report::default();
    fetch_snapshots(ports, items, deadline).await;
    for item in items.iter_mut() {
        plan_entity(mapping, item);
    }
    // Entities without a Contact that would be created are read again first (the planner let go of their event's
    // snapshot): planned from Reltio's current state, a merged one updates its winner's Contact instead.
    let recheck: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].fetch_uri().is_some())
        .collect();
    if !recheck.is_empty() {
        report.count("EntitiesReadBeforeCreate", recheck.len() as u64);
        fetch_snapshots(ports, items, deadline).await;
        for &i in &recheck {
            plan_entity(mapping, &mut items[i]);
        }
    }
    let order = rounds(items);
    let mut busy = Vec::new();
    let mut held_back = Vec::new();
    run_rounds(
        ports,
        mapping,
        items,
        &order,
        owner,
        deadline,
        &mut report,
        (&mut busy, &mut held_back),
    )
    .await;
    // An entity another invocation was applying (a merge's events land in concurrent batches of a standard queue)
    // is usually free again once this batch's own work is done: its events get one more try now, before being
    // reported for a retry, which would cost a backoff, a batching window and another batch.
    if !busy.is_empty() && remaining(deadline) >= SECOND_PASS_MIN_TIME {
        report.count("BusyEntitiesRetried", busy.len() as u64);
        for &i in busy.iter().chain(&held_back) {
            items[i].outcome = None;
        }
        let (mut still_busy, mut still_held) = (Vec::new(), Vec::new());
        run_rounds(
            ports,
            mapping,
            items,
            &order,
            owner,
            deadline,
            &mut report,
            (&mut still_busy, &mut still_held),
        )
        .await;
    }
    report
}

/// The least time left for the second pass over entities another invocation held: a claim, a Salesforce call
/// and a commit, well inside the invocation.
const SECOND_PASS_MIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Applies the rounds in order to the items still pending; collects the items whose entity another invocation
/// held (`busy`) and those held back because an earlier event of their entity failed.
#[allow(clippy::too_many_arguments)]
async fn run_rounds(
    ports: Ports<'_>,
    mapping: &CrmMapping,
    items: &mut [Item],
    order: &Rounds,
    owner: &str,
    deadline: Deadline,
    report: &mut Report,
    (busy, held_back): (&mut Vec<usize>, &mut Vec<usize>),
) {
    for round in &order.rounds {
        for &i in round {
            if !items[i].is_pending() {
                continue;
            }
            let previous_failed = order.previous[i]
                .is_some_and(|p| items[p].outcome.as_ref().is_some_and(Outcome::is_transient));
            if previous_failed {
                items[i].outcome = Some(Outcome::Transient(
                    "an earlier event of this entity failed".into(),
                ));
                held_back.push(i);
            }
        }
        apply_round(ports, mapping, items, round, owner, deadline, report, busy).await;
    }
}

async fn fetch_snapshots(ports: Ports<'_>, items: &mut [Item], deadline: Deadline) {
    let wanted: Vec<(usize, String)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| Some((i, item.fetch_uri()?.to_owned())))
        .collect();
    let fetched: Vec<(usize, Result<Value, PortError>)> = stream::iter(wanted)
        .map(|(i, uri)| async move { (i, ports.reltio.entity(&uri, deadline).await) })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await;
    for (i, result) in fetched {
        complete(&mut items[i], result);
    }
}

/// A claimed item: what the ledger knew, what it calls for, and how its steps went.
struct Claimed {
    item: usize,
    event_id: String,
    record: EntityRecord,
    steps: Steps,
    results: StepResults,
}

#[allow(clippy::too_many_arguments)]
async fn apply_round(
    ports: Ports<'_>,
    mapping: &CrmMapping,
    items: &mut [Item],
    round: &[usize],
    owner: &str,
    deadline: Deadline,
    report: &mut Report,
    busy: &mut Vec<usize>,
) {
    // Merges first (they fence their losers), then the rest of the round.
    let (merges, others): (Vec<usize>, Vec<usize>) = round
        .iter()
        .copied()
        .filter(|&i| items[i].is_pending())
        .partition(|&i| items[i].merge.is_some());
    let mut claimed = Vec::new();
    for group in [merges, others] {
        for (i, claim) in claim_all(ports.ledger, items, &group, owner).await {
            match claim {
                Ok(Claim::Granted(record)) => {
                    let steps = plan_steps(mapping, items, i, &record);
                    if steps.survivor_unchanged {
                        report.count("UnchangedContactsSkipped", 1);
                    }
                    claimed.push(Claimed {
                        item: i,
                        event_id: items[i].event_id.clone(),
                        results: StepResults {
                            survivor_unchanged: steps.survivor_unchanged,
                            ..StepResults::default()
                        },
                        record,
                        steps,
                    });
                }
                Ok(Claim::Duplicate) => {
                    items[i].outcome = Some(Outcome::Skipped(SkipReason::Duplicate))
                }
                Ok(Claim::Stale) => items[i].outcome = Some(Outcome::Skipped(SkipReason::Stale)),
                Ok(Claim::Busy) => {
                    items[i].outcome = Some(Outcome::Transient(
                        "another invocation is applying this entity".into(),
                    ));
                    busy.push(i);
                }
                Err(e) => items[i].outcome = Some(Outcome::Transient(e.to_string())),
            }
        }
    }
    if claimed.is_empty() {
        return;
    }
    merge(ports.crm, &mut claimed, deadline, report).await;
    query_children(ports.crm, mapping, items, &mut claimed, deadline, report).await;
    write(ports.crm, &mut claimed, deadline, report).await;
    removal::delete(ports.crm, &mut claimed, deadline, report).await;
    create::upsert(ports.crm, &mut claimed, deadline, report).await;
    create::write_back_all(ports.writer, mapping, items, &mut claimed, deadline, report).await;
    commit(ports.ledger, items, claimed, owner).await;
}

async fn claim_all(
    ledger: &dyn Ledger,
    items: &[Item],
    group: &[usize],
    owner: &str,
) -> Vec<(usize, Result<Claim, PortError>)> {
    stream::iter(group.iter().copied())
        .map(|i| {
            let item = &items[i];
            async move {
                let entity = item.entity_uri.as_deref().unwrap_or_default();
                let fence = item.merge.as_ref().map(|m| m.fence());
                let claim = ledger
                    .claim(entity, &item.order, &item.event_id, owner, fence)
                    .await;
                (i, claim)
            }
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// SOAP `merge()` for every claimed item of the round, in one call per 200 requests. An item whose merge did not
/// succeed gets none of its writes sent: they carry the merge's failure.
async fn merge(crm: &dyn Crm, claimed: &mut [Claimed], deadline: Deadline, report: &mut Report) {
    let mut requests = Vec::new();
    let mut owners = Vec::new();
    for (c, item) in claimed.iter().enumerate() {
        for r in &item.steps.merges {
            requests.push(r.clone());
            owners.push(c);
        }
    }
    if requests.is_empty() {
        return;
    }
    let started = Instant::now();
    let result = crm.merge(&requests, deadline).await;
    report.count(
        "SalesforceCalls",
        requests.len().div_ceil(MAX_REQUESTS_PER_CALL) as u64,
    );
    report
        .salesforce_latencies_ms
        .push(started.elapsed().as_secs_f64() * 1000.0);
    let outcomes: Vec<Outcome> = match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            requests
                .iter()
                .map(|_| match outcomes.next() {
                    Some(o) => {
                        match &o {
                            MergeOutcome::Merged { merged, related } => {
                                report.count("ContactsMerged", merged.len() as u64);
                                report.count("ChildRecordsRepointed", *related as u64);
                            }
                            MergeOutcome::AlreadyMerged { .. } => {
                                report.count("SalesforceRecordsMissing", 1)
                            }
                            MergeOutcome::Failed { .. } => {}
                        }
                        merge_outcome(&o)
                    }
                    None => Outcome::Transient("no result for this merge".into()),
                })
                .collect()
        }
        Err(e) => requests
            .iter()
            .map(|_| Outcome::from_port("merging Contacts", e.clone()))
            .collect(),
    };
    for ((request, c), outcome) in requests.into_iter().zip(owners).zip(outcomes) {
        claimed[c].results.merges.push((request, outcome));
    }
    for c in claimed.iter_mut() {
        // A merge that failed before, for good, and fails again does not hold up the rest of a later change.
        let failure = c.results.merges.iter().find_map(|(r, o)| {
            let known = r
                .records
                .iter()
                .all(|id| c.record.given_up_by_other(id, &c.event_id));
            match o {
                Outcome::Transient(_) => Some(Outcome::Transient(
                    "not written: a merge of this entity failed".into(),
                )),
                Outcome::Permanent(_) if !known => Some(Outcome::Permanent(
                    "not written: a merge of this entity failed".into(),
                )),
                _ => None,
            }
        });
        if let Some(failure) = failure {
            let blocked = std::mem::take(&mut c.steps.writes);
            c.results
                .writes
                .extend(blocked.into_iter().map(|w| (w, failure.clone())));
            c.steps.queries.clear();
        }
    }
}

/// `(claimed item, relationship, the children found, milliseconds)`.
type QueryResult = (
    usize,
    usize,
    Result<Vec<Map<String, Value>>, PortError>,
    f64,
);

/// Looks up the children each claimed item re-points, and plans their writes.
async fn query_children(
    crm: &dyn Crm,
    mapping: &CrmMapping,
    items: &[Item],
    claimed: &mut [Claimed],
    deadline: Deadline,
    report: &mut Report,
) {
    let queries: Vec<(usize, usize, RecordQuery)> = claimed
        .iter_mut()
        .enumerate()
        .flat_map(|(c, item)| {
            std::mem::take(&mut item.steps.queries)
                .into_iter()
                .map(move |(rel, query)| (c, rel, query))
        })
        .collect();
    let found: Vec<QueryResult> = stream::iter(queries)
        .map(|(c, rel, query)| async move {
            let started = Instant::now();
            let result = crm.find(&query, deadline).await;
            (c, rel, result, started.elapsed().as_secs_f64() * 1000.0)
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await;
    for (c, rel, result, ms) in found {
        report.count("SalesforceCalls", 1);
        report.salesforce_latencies_ms.push(ms);
        let claim = &mut claimed[c];
        match result {
            Ok(children) => {
                let writes = repoint_writes(mapping, items, claim.item, rel, &children);
                claim.steps.writes.extend(writes);
            }
            Err(e) => {
                let context = format!("querying {}", mapping.children[rel].sobject);
                claim.results.queries.push(Outcome::from_port(&context, e));
            }
        }
    }
}

/// Sends every planned write of the round through sObject Collections, packed into as few requests as the
/// limits allow; a request refused as a whole is split until the write at fault stands alone.
async fn write(crm: &dyn Crm, claimed: &mut [Claimed], deadline: Deadline, report: &mut Report) {
    let writes: Vec<Write> = claimed
        .iter_mut()
        .flat_map(|c| std::mem::take(&mut c.steps.writes))
        .collect();
    let owner_of: BTreeMap<usize, usize> = claimed
        .iter()
        .enumerate()
        .map(|(c, x)| (x.item, c))
        .collect();
    // Records are sent by reference: a Contact's fields are never copied on their way to Salesforce.
    let requests = collection_requests(&writes.iter().map(|w| &w.record).collect::<Vec<_>>());
    let mut slots: Vec<Option<Write>> = writes.into_iter().map(Some).collect();
    let latencies = Mutex::new(Vec::new());
    for request in requests {
        let batch: Vec<Write> = request.iter().filter_map(|&i| slots[i].take()).collect();
        let (results, _) = isolate_rejections(batch, |batch: Vec<Write>| {
            let latencies = &latencies;
            Box::pin(async move {
                if remaining(deadline).is_zero() {
                    let e = PortError::Transient("no time left in this invocation".into());
                    return (batch, Err(e));
                }
                let started = Instant::now();
                let records: Vec<&RecordUpdate> = batch.iter().map(|w| &w.record).collect();
                let result = crm.update(&records, deadline).await;
                if let Ok(mut l) = latencies.lock() {
                    l.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                (batch, result)
            })
        })
        .await;
        for (w, result) in results {
            let outcome = write_outcome(w.kind, result);
            match (&outcome, w.kind) {
                (Outcome::Done, WriteKind::Survivor) => report.count("ContactsUpdated", 1),
                (Outcome::Done, WriteKind::Archive) => report.count("ContactsArchived", 1),
                (Outcome::Done, WriteKind::Repoint) => report.count("ChildRecordsRepointed", 1),
                (Outcome::Skipped(SkipReason::RecordMissing), _) => {
                    report.count("SalesforceRecordsMissing", 1)
                }
                _ => {}
            }
            if let Some(&c) = owner_of.get(&w.item) {
                claimed[c].results.writes.push((w, outcome));
            }
        }
    }
    let latencies = latencies.into_inner().unwrap_or_default();
    report.count("SalesforceCalls", latencies.len() as u64);
    report.salesforce_latencies_ms.extend(latencies);
}

/// Records what Salesforce confirmed for each claimed item and decides its outcome.
async fn commit(ledger: &dyn Ledger, items: &mut [Item], claimed: Vec<Claimed>, owner: &str) {
    let items_ref: &[Item] = items;
    let done: Vec<(usize, Outcome)> = stream::iter(claimed)
        .map(|c| async move {
            let item = &items_ref[c.item];
            let entity = item.entity_uri.as_deref().unwrap_or_default();
            let conclusion = match (&c.steps.create, &c.results.create) {
                (Some(steps), Some(results)) => conclude_create(steps, results),
                _ => conclude(&item.event_id, &c.results, &c.record),
            };
            let applied = Applied {
                event_id: &item.event_id,
                complete: conclusion.complete,
                order: conclusion.ordered.then_some(&item.order),
                written: &conclusion.written,
                merged: &conclusion.merged,
                given_up: &conclusion.given_up,
                recovered: &conclusion.recovered,
                created: conclusion.created.as_deref(),
            };
            let recorded = if applied.is_empty() {
                ledger.release(entity, owner).await
            } else {
                ledger.commit(entity, applied, owner).await
            };
            let outcome = match recorded {
                Ok(()) => conclusion.outcome,
                Err(e) => {
                    if applied.is_empty() {
                        // The lease expires on its own; nothing was to be recorded.
                        tracing::warn!(entity, error = %e, "could not release the ledger lease");
                        conclusion.outcome
                    } else {
                        Outcome::Transient(format!("recording in the ledger: {e}"))
                    }
                }
            };
            (c.item, outcome)
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await;
    for (i, outcome) in done {
        items[i].outcome = Some(outcome);
    }
}
