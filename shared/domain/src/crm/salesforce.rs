//! The Salesforce vocabulary the CRM planner speaks: record updates and their per-record results (sObject
//! Collections), `merge()` requests and their results, and what Salesforce's error codes mean. Pure.

use serde_json::{Map, Value};

/// Records per sObject Collections call (Salesforce's limit).
pub const MAX_COLLECTION: usize = 200;

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
