//! In-memory fakes of the domain's ports, for handler tests and benchmarks: they keep state and record calls,
//! with failures injected per record or per call. They follow the real systems' documented behaviour closely
//! enough for the handlers' logic (the adapters have their own tests against wiremock and moto).

use futures::future::BoxFuture;
use mdm_sync_domain::backoff::{VisibilityChange, VisibilityFailure};
use mdm_sync_domain::crm::salesforce::{
    MergeOutcome, MergeRequest, RecordOutcome, RecordQuery, RecordUpdate, RecordUpsert,
    UpsertOutcome, MAX_CHUNKS, MAX_COLLECTION,
};
use mdm_sync_domain::letter::PayloadObject;
use mdm_sync_domain::ordering::{Applied, Claim, EntityRecord, Fence, Order, Verdict};
use mdm_sync_domain::ports::{
    Crm, Deadline, EntitySource, EntityWriter, Ledger, MessageSink, MessageVisibility,
    PayloadStore, PortError, RecordSink, StoredObject,
};
use mdm_sync_domain::queue::{OutgoingMessage, SendFailure};
use mdm_sync_domain::reltio::model::{CrosswalkKey, EntityBody, ItemOutcome};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Reltio's entity reads: `GET /{uri}` answered from a map (a merged loser's URI may map to the winner); entity
/// writes recorded as the JSON bodies they send.
#[derive(Default)]
pub struct FakeReltio {
    pub entities: Mutex<HashMap<String, Value>>,
    pub fetched: Mutex<Vec<String>>,
    /// Every `POST /entities` call: its bodies, as JSON.
    pub posted: Mutex<Vec<Vec<Value>>>,
    /// Every write fails with this (none by default).
    pub down: Mutex<Option<PortError>>,
}

impl FakeReltio {
    pub fn with(entities: &[(&str, Value)]) -> FakeReltio {
        FakeReltio {
            entities: Mutex::new(
                entities
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            ..Default::default()
        }
    }
}

impl EntityWriter for FakeReltio {
    fn post_entities<'a>(
        &'a self,
        entities: &'a [&'a EntityBody],
        _partial_override: bool,
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<ItemOutcome>, PortError>> {
        let bodies = entities
            .iter()
            .map(|b| serde_json::to_value(b).expect("a body serialises"))
            .collect();
        self.posted.lock().unwrap().push(bodies);
        let result = match self.down.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(entities
                .iter()
                .map(|_| ItemOutcome::Written { uri: None })
                .collect()),
        };
        Box::pin(async move { result })
    }

    fn delete_crosswalk<'a>(
        &'a self,
        _key: &'a CrosswalkKey,
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async { Ok(()) })
    }
}

impl EntitySource for FakeReltio {
    fn entity<'a>(
        &'a self,
        uri: &'a str,
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Value, PortError>> {
        self.fetched.lock().unwrap().push(uri.to_owned());
        let found = self.entities.lock().unwrap().get(uri).cloned();
        Box::pin(async move {
            found.ok_or_else(|| PortError::Transient(format!("Reltio answered HTTP 404 for {uri}")))
        })
    }
}

/// Salesforce: Collections updates applied to an in-memory org (per record id: the fields written, in order),
/// queries answered from configured children, `merge()` deleting the merged records.
#[derive(Default)]
pub struct FakeSalesforce {
    /// Record id → every field map written to it, oldest first.
    pub written: Mutex<HashMap<String, Vec<serde_json::Map<String, Value>>>>,
    /// Every Collections request: the records it carried.
    pub requests: Mutex<Vec<Vec<RecordUpdate>>>,
    /// Record id → an item error code (e.g. `FIELD_CUSTOM_VALIDATION_EXCEPTION`, `UNABLE_TO_LOCK_ROW`).
    pub fail: Mutex<HashMap<String, String>>,
    /// Record ids that do not exist (ENTITY_IS_DELETED).
    pub deleted: Mutex<HashSet<String>>,
    /// SOQL text fragment → the records a query containing it returns.
    pub children: Mutex<Vec<(String, Vec<Value>)>>,
    pub queries: Mutex<Vec<String>>,
    /// Every `merge()` call: its requests.
    pub merges: Mutex<Vec<Vec<MergeRequest>>>,
    /// Record ids whose presence makes Salesforce refuse the whole request (HTTP 400).
    pub poison: Mutex<HashSet<String>>,
    /// Every call fails with this (none by default).
    pub down: Mutex<Option<PortError>>,
    /// Upserts: `(sObject, external id field, external id)` → the record's Id.
    pub external_ids: Mutex<HashMap<(String, String, String), String>>,
    /// Every upsert call: the records it carried.
    pub upserts: Mutex<Vec<Vec<RecordUpsert>>>,
    /// Every delete call: its ids.
    pub deleted_calls: Mutex<Vec<Vec<String>>>,
}

impl FakeSalesforce {
    pub fn failing(fail: &[(&str, &str)]) -> FakeSalesforce {
        let f = FakeSalesforce::default();
        f.fail
            .lock()
            .unwrap()
            .extend(fail.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        f
    }

    /// The last field map written to `id`.
    pub fn last(&self, id: &str) -> Option<serde_json::Map<String, Value>> {
        self.written.lock().unwrap().get(id)?.last().cloned()
    }

    /// How many writes reached `id`.
    pub fn writes_to(&self, id: &str) -> usize {
        self.written.lock().unwrap().get(id).map_or(0, Vec::len)
    }

    pub fn down(&self) -> Option<PortError> {
        self.down.lock().unwrap().clone()
    }
}

/// Type chunks of a Collections request (runs of one type).
pub fn chunks<R: std::borrow::Borrow<RecordUpdate>>(records: &[R]) -> usize {
    records
        .windows(2)
        .filter(|w| w[0].borrow().sobject != w[1].borrow().sobject)
        .count()
        + usize::from(!records.is_empty())
}

impl Crm for FakeSalesforce {
    fn update<'a>(
        &'a self,
        records: &'a [&'a RecordUpdate],
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, PortError>> {
        self.requests
            .lock()
            .unwrap()
            .push(records.iter().map(|&r| r.clone()).collect());
        let result = if let Some(e) = self.down() {
            Err(e)
        } else if records.len() > MAX_COLLECTION
            || chunks(records) > MAX_CHUNKS
            || records
                .iter()
                .any(|r| self.poison.lock().unwrap().contains(&r.id))
        {
            // Salesforce refuses the whole request.
            Err(PortError::Rejected(
                "Salesforce rejected the request (HTTP 400 INVALID_BATCH): too many records or chunks"
                    .into(),
            ))
        } else {
            let fail = self.fail.lock().unwrap();
            let deleted = self.deleted.lock().unwrap();
            let mut written = self.written.lock().unwrap();
            Ok(records
                .iter()
                .map(|r| {
                    if deleted.contains(&r.id) {
                        return RecordOutcome::Missing {
                            code: "ENTITY_IS_DELETED".into(),
                        };
                    }
                    match fail.get(&r.id) {
                        Some(code) => RecordOutcome::Failed {
                            code: code.clone(),
                            message: "injected".into(),
                            transient: mdm_sync_domain::crm::salesforce::is_transient_code(code),
                        },
                        None => {
                            written
                                .entry(r.id.clone())
                                .or_default()
                                .push(r.fields.clone());
                            RecordOutcome::Updated
                        }
                    }
                })
                .collect())
        };
        Box::pin(async move { result })
    }

    /// Answers from the configured children whose fragment the query's SOQL contains (what the real client
    /// sends), and records that SOQL.
    fn find<'a>(
        &'a self,
        query: &'a RecordQuery,
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<Map<String, Value>>, PortError>> {
        let soql = query.soql();
        self.queries.lock().unwrap().push(soql.clone());
        let result = match self.down() {
            Some(e) => Err(e),
            None => Ok(self
                .children
                .lock()
                .unwrap()
                .iter()
                .filter(|(fragment, _)| soql.contains(fragment.as_str()))
                .flat_map(|(_, records)| records.iter().filter_map(|r| r.as_object().cloned()))
                .collect()),
        };
        Box::pin(async move { result })
    }

    /// Deletes: a deleted record answers ENTITY_IS_DELETED after; a failure injected for the id fails it.
    fn delete<'a>(
        &'a self,
        ids: &'a [&'a str],
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, PortError>> {
        self.deleted_calls
            .lock()
            .unwrap()
            .push(ids.iter().map(|s| s.to_string()).collect());
        let result = match self.down() {
            Some(e) => Err(e),
            None => {
                let fail = self.fail.lock().unwrap();
                let mut deleted = self.deleted.lock().unwrap();
                Ok(ids
                    .iter()
                    .map(|&id| {
                        if let Some(code) = fail.get(id) {
                            return RecordOutcome::Failed {
                                code: code.clone(),
                                message: "injected".into(),
                                transient: mdm_sync_domain::crm::salesforce::is_transient_code(
                                    code,
                                ),
                            };
                        }
                        if !deleted.insert(id.to_owned()) {
                            return RecordOutcome::Missing {
                                code: "ENTITY_IS_DELETED".into(),
                            };
                        }
                        RecordOutcome::Updated
                    })
                    .collect())
            }
        };
        Box::pin(async move { result })
    }

    /// Upsert by external id: the record holding the external id is updated, else one is created with a new Id
    /// (`created: true`); a failure injected for the external id fails it.
    fn upsert<'a>(
        &'a self,
        records: &'a [&'a RecordUpsert],
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<UpsertOutcome>, PortError>> {
        self.upserts
            .lock()
            .unwrap()
            .push(records.iter().map(|&r| r.clone()).collect());
        let result = if let Some(e) = self.down() {
            Err(e)
        } else if records.len() > MAX_COLLECTION {
            Err(PortError::Rejected(
                "Salesforce rejected the request (HTTP 400): more than 200 records".into(),
            ))
        } else {
            let fail = self.fail.lock().unwrap();
            let mut ids = self.external_ids.lock().unwrap();
            let mut written = self.written.lock().unwrap();
            Ok(records
                .iter()
                .map(|r| {
                    if let Some(code) = fail.get(&r.external_id) {
                        return UpsertOutcome::Failed {
                            code: code.clone(),
                            message: "injected".into(),
                            transient: mdm_sync_domain::crm::salesforce::is_transient_code(code),
                        };
                    }
                    let key = (
                        r.sobject.clone(),
                        r.external_id_field.clone(),
                        r.external_id.clone(),
                    );
                    let next = format!("003NEW{:012}", ids.len() + 1);
                    let created = !ids.contains_key(&key);
                    let id = ids.entry(key).or_insert(next).clone();
                    written
                        .entry(id.clone())
                        .or_default()
                        .push(r.fields.clone());
                    UpsertOutcome::Upserted { id, created }
                })
                .collect())
        };
        Box::pin(async move { result })
    }

    fn merge<'a>(
        &'a self,
        requests: &'a [MergeRequest],
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<MergeOutcome>, PortError>> {
        self.merges.lock().unwrap().push(requests.to_vec());
        let result = match self.down() {
            Some(e) => Err(e),
            None => {
                let fail = self.fail.lock().unwrap();
                let mut deleted = self.deleted.lock().unwrap();
                Ok(requests
                    .iter()
                    .map(|r| {
                        if let Some(code) = r.records.iter().find_map(|id| fail.get(id)) {
                            return MergeOutcome::Failed {
                                code: code.clone(),
                                message: "injected".into(),
                                transient: mdm_sync_domain::crm::salesforce::is_transient_code(
                                    code,
                                ),
                            };
                        }
                        if r.records.iter().any(|id| deleted.contains(id)) {
                            return MergeOutcome::AlreadyMerged {
                                code: "ENTITY_IS_DELETED".into(),
                            };
                        }
                        deleted.extend(r.records.iter().cloned());
                        MergeOutcome::Merged {
                            merged: r.records.clone(),
                            related: 0,
                        }
                    })
                    .collect())
            }
        };
        Box::pin(async move { result })
    }
}

/// The ledger in memory, with the DynamoDB ledger's semantics: judged claims, leases, fences taken with the
/// winner's lease (all or nothing), commits under the lease.
#[derive(Default)]
pub struct FakeLedger {
    pub entities: Mutex<HashMap<String, (EntityRecord, Option<String>)>>,
    /// Every claim: `(entity, event id, owner)`.
    pub claims: Mutex<Vec<(String, String, String)>>,
    /// Entities whose next claim answers Busy (another invocation holds them for that long), once each.
    pub busy_once: Mutex<Vec<String>>,
}

impl FakeLedger {
    pub fn record(&self, entity: &str) -> EntityRecord {
        self.entities
            .lock()
            .unwrap()
            .get(entity)
            .map(|(r, _)| r.clone())
            .unwrap_or_default()
    }
}

impl Ledger for FakeLedger {
    fn claim<'a>(
        &'a self,
        entity: &'a str,
        order: &'a Order,
        event_id: &'a str,
        owner: &'a str,
        fence: Option<Fence<'a>>,
    ) -> BoxFuture<'a, Result<Claim, PortError>> {
        self.claims
            .lock()
            .unwrap()
            .push((entity.into(), event_id.into(), owner.into()));
        let mut all = self.entities.lock().unwrap();
        let (record, lease) = all.get(entity).cloned().unwrap_or_default();
        let held_elsewhere = {
            let mut busy = self.busy_once.lock().unwrap();
            let at = busy.iter().position(|e| e == entity);
            at.map(|i| busy.remove(i)).is_some()
        };
        let claim = match record.judge(order, event_id) {
            Verdict::Fresh if held_elsewhere => Claim::Busy,
            Verdict::Duplicate => Claim::Duplicate,
            Verdict::Stale => Claim::Stale,
            Verdict::Fresh if lease.as_deref().is_some_and(|l| l != owner) => Claim::Busy,
            Verdict::Fresh => {
                let losers: Vec<&String> = fence
                    .map(|f| f.losers.iter().filter(|l| l.as_str() != entity).collect())
                    .unwrap_or_default();
                let blocked = losers.iter().any(|l| {
                    all.get(l.as_str()).is_some_and(|(r, lease)| {
                        fence.is_some_and(|f| r.needs_fence(f.merged_at))
                            && lease.as_deref().is_some_and(|o| o != owner)
                    })
                });
                if blocked {
                    Claim::Busy
                } else {
                    if let Some(f) = fence {
                        for l in losers {
                            let (r, _) = all.entry(l.clone()).or_default();
                            if r.needs_fence(f.merged_at) {
                                r.merged_into = Some(entity.to_owned());
                                r.merged_at = Some(f.merged_at);
                            }
                        }
                    }
                    all.insert(entity.to_owned(), (record.clone(), Some(owner.to_owned())));
                    Claim::Granted(record)
                }
            }
        };
        Box::pin(async move { Ok(claim) })
    }

    fn commit<'a>(
        &'a self,
        entity: &'a str,
        applied: Applied<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        let mut all = self.entities.lock().unwrap();
        let result = match all.get(entity).cloned() {
            Some((record, Some(lease))) if lease == owner => {
                all.insert(entity.to_owned(), (record.with(&applied), None));
                Ok(())
            }
            _ => Err(PortError::Transient(
                "ledger unavailable: the lease was lost".into(),
            )),
        };
        Box::pin(async move { result })
    }

    fn release<'a>(
        &'a self,
        entity: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        if let Some((_, lease)) = self.entities.lock().unwrap().get_mut(entity) {
            if lease.as_deref() == Some(owner) {
                *lease = None;
            }
        }
        Box::pin(async { Ok(()) })
    }
}

/// A queue that keeps what it is sent; sends fail while `refuse` is set, and so does each message whose body
/// holds one of `refuse_containing`.
#[derive(Default)]
pub struct FakeQueue {
    pub sent: Mutex<Vec<OutgoingMessage>>,
    pub refuse: Mutex<bool>,
    pub refuse_containing: Mutex<Vec<String>>,
    pub fifo: bool,
}

impl FakeQueue {
    /// The bodies sent, parsed as JSON.
    pub fn bodies(&self) -> Vec<Value> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|m| serde_json::from_str(&m.body).unwrap_or_else(|_| json!(m.body)))
            .collect()
    }
}

impl MessageSink for FakeQueue {
    fn send<'a>(&'a self, messages: &'a [OutgoingMessage]) -> BoxFuture<'a, Vec<SendFailure>> {
        let failures = if *self.refuse.lock().unwrap() {
            (0..messages.len())
                .map(|index| SendFailure {
                    index,
                    reason: "AWS.SimpleQueueService.NonExistentQueue".into(),
                })
                .collect()
        } else {
            let refused = self.refuse_containing.lock().unwrap();
            let mut failures = Vec::new();
            for (index, m) in messages.iter().enumerate() {
                if refused.iter().any(|r| m.body.contains(r.as_str())) {
                    failures.push(SendFailure {
                        index,
                        reason: "ServiceUnavailable".into(),
                    });
                } else {
                    self.sent.lock().unwrap().push(m.clone());
                }
            }
            failures
        };
        Box::pin(async move { failures })
    }

    fn is_fifo(&self) -> bool {
        self.fifo
    }
}

/// The analytics sink's record sink (Firehose): keeps what it is given, as JSON; the records whose line contains a
/// string of `refuse` fail transiently, as a Firehose `ServiceUnavailableException` entry would.
#[derive(Default)]
pub struct FakeRecordSink {
    pub records: Mutex<Vec<Value>>,
    pub refuse: Mutex<Vec<String>>,
}

impl RecordSink for FakeRecordSink {
    fn put<'a>(
        &'a self,
        records: &'a [Vec<u8>],
        _deadline: Deadline,
    ) -> BoxFuture<'a, Vec<Result<(), PortError>>> {
        let refuse = self.refuse.lock().unwrap().clone();
        let results = records
            .iter()
            .map(|r| {
                let line = String::from_utf8_lossy(r);
                if refuse.iter().any(|s| line.contains(s.as_str())) {
                    return Err(PortError::Transient("ServiceUnavailableException".into()));
                }
                let value: Value = serde_json::from_str(line.trim_end()).expect("an NDJSON line");
                self.records.lock().unwrap().push(value);
                Ok(())
            })
            .collect();
        Box::pin(async move { results })
    }
}

/// The letter store (S3): keeps each object put, by key, with its content type; every put fails while `refuse` is
/// set, as an S3 `ServiceUnavailable` would.
#[derive(Default)]
pub struct FakePayloadStore {
    pub bucket: String,
    pub objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
    pub refuse: Mutex<bool>,
    pub puts: Mutex<usize>,
}

impl FakePayloadStore {
    pub fn new(bucket: &str) -> FakePayloadStore {
        FakePayloadStore {
            bucket: bucket.into(),
            ..FakePayloadStore::default()
        }
    }

    /// The bytes stored under `key`.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, _)| b.clone())
    }
}

impl PayloadStore for FakePayloadStore {
    fn put<'a>(
        &'a self,
        object: &'a PayloadObject,
    ) -> BoxFuture<'a, Result<StoredObject, PortError>> {
        *self.puts.lock().unwrap() += 1;
        let result = if *self.refuse.lock().unwrap() {
            Err(PortError::Transient("ServiceUnavailable".into()))
        } else {
            self.objects.lock().unwrap().insert(
                object.key.clone(),
                (object.bytes.clone(), object.content_type.to_owned()),
            );
            Ok(StoredObject {
                bucket: self.bucket.clone(),
                key: object.key.clone(),
            })
        };
        Box::pin(async move { result })
    }
}

/// The event queue's visibility timeouts: every change asked for, as `(queue URL, receipt handle, seconds)`;
/// changes to the receipt handles in `refuse` fail, and every change fails while `down` is set.
#[derive(Default)]
pub struct FakeVisibility {
    pub changes: Mutex<Vec<(String, String, u32)>>,
    pub refuse: Mutex<Vec<String>>,
    pub down: Mutex<bool>,
}

impl FakeVisibility {
    pub fn changes(&self) -> Vec<(String, String, u32)> {
        self.changes.lock().unwrap().clone()
    }
}

impl MessageVisibility for FakeVisibility {
    fn change<'a>(
        &'a self,
        queue_url: &'a str,
        changes: &'a [VisibilityChange],
    ) -> BoxFuture<'a, Vec<VisibilityFailure>> {
        let mut failures = Vec::new();
        for (index, c) in changes.iter().enumerate() {
            if *self.down.lock().unwrap() || self.refuse.lock().unwrap().contains(&c.receipt_handle)
            {
                failures.push(VisibilityFailure {
                    index,
                    reason: "AWS.SimpleQueueService.NonExistentQueue".into(),
                });
            } else {
                self.changes.lock().unwrap().push((
                    queue_url.to_owned(),
                    c.receipt_handle.clone(),
                    c.seconds,
                ));
            }
        }
        Box::pin(async move { failures })
    }
}
