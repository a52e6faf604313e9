//! The Salesforce vocabulary the CRM planner speaks: record updates and their per-record results (sObject
//! Collections), `merge()` requests and their results, and what Salesforce's error codes mean. Pure.

use serde_json::{Map, Value};
use std::borrow::Borrow;

/// Records per sObject Collections call (Salesforce's limit).
pub const MAX_COLLECTION: usize = 200;
/// Type chunks per sObject Collections call: records are processed in runs of one type, at most 10 runs a
/// request (Salesforce REST API developer guide, "sObject Collections").
pub const MAX_CHUNKS: usize = 10;

/// Packs records into sObject Collections requests, as record positions: ordered by type (stable, types in order
/// of first appearance) so that each type is one chunk, then cut at [`MAX_COLLECTION`] records and
/// [`MAX_CHUNKS`] chunks per request. Any contiguous part of a request is itself within the limits.
pub fn collection_requests<R: Borrow<RecordUpdate>>(records: &[R]) -> Vec<Vec<usize>> {
    let sobject = |i: usize| records[i].borrow().sobject.as_str();
    let mut types: Vec<&str> = Vec::new();
    for i in 0..records.len() {
        if !types.contains(&sobject(i)) {
            types.push(sobject(i));
        }
    }
    let rank = |i: usize| types.iter().position(|t| *t == sobject(i)).unwrap_or(0);
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| rank(i));
    let mut requests: Vec<Vec<usize>> = Vec::new();
    let mut chunks = 0;
    for i in order {
        let new_chunk = requests
            .last()
            .and_then(|r| r.last())
            .is_none_or(|&last| sobject(last) != sobject(i));
        match requests.last_mut() {
            Some(r) if r.len() < MAX_COLLECTION && (!new_chunk || chunks < MAX_CHUNKS) => {
                r.push(i);
                chunks += usize::from(new_chunk);
            }
            _ => {
                requests.push(vec![i]);
                chunks = 1;
            }
        }
    }
    requests
}

/// A typed query: the `fields` of the `sobject` records whose `field` is one of `values` (Salesforce ids or
/// external ids). The adapter turns it into SOQL ([`RecordQuery::soql`]) and follows every page; the domain
/// never writes SOQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordQuery {
    pub sobject: String,
    /// The fields to read (`Id` is always read).
    pub fields: Vec<String>,
    pub field: String,
    pub values: Vec<String>,
}

impl RecordQuery {
    /// The query's SOQL: `SELECT Id[, fields] FROM sobject WHERE field IN ('v1','v2')`. Values are quoted with
    /// SOQL's escapes (backslash and quote), so a value can never end the string; names come from the mapping,
    /// which validated them as API names.
    pub fn soql(&self) -> String {
        let mut select = vec!["Id"];
        select.extend(
            self.fields
                .iter()
                .map(String::as_str)
                .filter(|f| *f != "Id"),
        );
        let values: Vec<String> = self
            .values
            .iter()
            .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect();
        format!(
            "SELECT {} FROM {} WHERE {} IN ({})",
            select.join(", "),
            self.sobject,
            self.field,
            values.join(",")
        )
    }
}

/// Records merged into the master per `MergeRequest` (Salesforce: up to three records including the master).
pub const MAX_MERGED_PER_REQUEST: usize = 2;
/// `MergeRequest`s per `merge()` call (Salesforce's limit).
pub const MAX_REQUESTS_PER_CALL: usize = 200;

/// One `MergeRequest`: `records` (at most [`MAX_MERGED_PER_REQUEST`]) are merged into `master`, an sObject of
/// type `sobject`; `fields` (optional) are set on the master in the same transaction (`null` clears a field).
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRequest {
    pub sobject: String,
    pub master: String,
    pub records: Vec<String>,
    pub fields: Map<String, Value>,
}

/// Error codes (per item or per request) that may succeed on a later try.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "REQUEST_LIMIT_EXCEEDED"
            | "UNABLE_TO_LOCK_ROW"
            | "SERVER_UNAVAILABLE"
            | "API_CURRENTLY_DISABLED"
            | "CONCURRENT_REQUESTS_LIMIT_EXCEEDED"
    )
}

/// Error codes meaning the record no longer exists (deleted, merged away, or never there).
pub fn is_missing_code(code: &str) -> bool {
    matches!(code, "ENTITY_IS_DELETED" | "NOT_FOUND")
}

/// `merge()` error codes meaning a record to merge is already gone (merged away earlier, deleted): a
/// re-delivered merge finds nothing left to do.
pub fn is_already_merged_code(code: &str) -> bool {
    is_missing_code(code) || code == "INVALID_CROSS_REFERENCE_KEY"
}

/// The result of merging some records into a master.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeOutcome {
    /// Merged now: the records merged away and the number of related records re-parented to the master.
    Merged { merged: Vec<String>, related: usize },
    /// Nothing was left to merge (already merged away or deleted).
    AlreadyMerged { code: String },
    Failed {
        code: String,
        message: String,
        transient: bool,
    },
}

/// The result for one record of a Collections call.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    Updated,
    /// The record no longer exists: nothing to update.
    Missing {
        code: String,
    },
    Failed {
        code: String,
        message: String,
        transient: bool,
    },
}

/// One record update: the sObject type, its id and the fields to set (`null` clears a field).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpdate {
    pub sobject: String,
    pub id: String,
    pub fields: Map<String, Value>,
}

/// One upsert by external id (sObject Collections upsert): the `sobject` record whose `external_id_field` holds
/// `external_id` gets `fields`, and is created when there is none. Keyed by the external id, a retry, a duplicate
/// or a concurrent call finds the record created before instead of creating another.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpsert {
    pub sobject: String,
    pub external_id_field: String,
    pub external_id: String,
    pub fields: Map<String, Value>,
}

/// The result for one record of an upsert call.
#[derive(Debug, Clone, PartialEq)]
pub enum UpsertOutcome {
    /// The record's Id; `created` when Salesforce inserted it (else it updated the record it found).
    Upserted { id: String, created: bool },
    Failed {
        code: String,
        message: String,
        transient: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sobject: &str, id: usize) -> RecordUpdate {
        RecordUpdate {
            sobject: sobject.into(),
            id: format!("{id}"),
            fields: Map::new(),
        }
    }

    fn chunks(records: &[RecordUpdate], request: &[usize]) -> usize {
        request
            .windows(2)
            .filter(|w| records[w[0]].sobject != records[w[1]].sobject)
            .count()
            + usize::from(!request.is_empty())
    }

    #[test]
    fn interleaved_types_are_grouped_into_one_chunk_each() {
        // Four merges (Contact + Case each) and two updates, interleaved as the rounds build them: 12 runs.
        let mut records = Vec::new();
        for m in 0..4 {
            records.push(record("Contact", m * 10));
            records.push(record("Case", m * 10 + 1));
        }
        records.push(record("Contact", 100));
        records.push(record("Contact", 101));
        let requests = collection_requests(&records);
        assert_eq!(requests.len(), 1);
        assert_eq!(chunks(&records, &requests[0]), 2);
        let first: Vec<&str> = requests[0]
            .iter()
            .map(|&i| records[i].sobject.as_str())
            .collect();
        assert_eq!(
            &first[..6],
            &["Contact"; 6],
            "Contacts first, in their order"
        );
        assert_eq!(requests[0][..2], [0, 2]);
    }

    #[test]
    fn requests_stay_within_200_records_and_10_chunks() {
        let types: Vec<String> = (0..13).map(|t| format!("T{t}__c")).collect();
        let mut records = Vec::new();
        for i in 0..450 {
            records.push(record(&types[i % types.len()], i));
        }
        let requests = collection_requests(&records);
        let mut seen: Vec<usize> = requests.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(
            seen,
            (0..450).collect::<Vec<_>>(),
            "every record exactly once"
        );
        for r in &requests {
            assert!(r.len() <= MAX_COLLECTION, "{}", r.len());
            assert!(chunks(&records, r) <= MAX_CHUNKS);
            // Halves (what a bisected request sends) are within the limits too.
            let (a, b) = r.split_at(r.len() / 2);
            assert!(chunks(&records, a) <= MAX_CHUNKS && chunks(&records, b) <= MAX_CHUNKS);
        }
        assert!(collection_requests::<RecordUpdate>(&[]).is_empty());
    }
}
