//! sObject Collections upsert by external id, and delete by ids. Upsert: `PATCH /composite/sobjects/{sObject}/{externalIdField}` with
//! `allOrNone: false`, at most 200 records of one sObject a call, each carrying its `attributes.type` and the
//! external id (never an `Id`). Each result says whether the record was created (`created`) and its `id`
//! (Salesforce REST API guide, "Upsert Multiple Records Using sObject Collections"; UpsertResult).

use super::{item_outcome, serialize_record, SalesforceClient, SalesforceError};
use crate::http;
use mdm_sync_domain::crm::salesforce::{
    RecordOutcome, RecordUpsert, UpsertOutcome, MAX_COLLECTION,
};
use serde_json::Value;
use std::time::Instant;

impl SalesforceClient {
    /// Upserts `records` in input order, one call per run of at most 200 records with the same sObject and
    /// external id field. A call that fails as a whole returns its error (the upserts are idempotent: a retry
    /// finds what an earlier call created).
    pub async fn upsert_records(
        &self,
        records: &[&RecordUpsert],
        deadline: Instant,
    ) -> Result<Vec<UpsertOutcome>, SalesforceError> {
        let mut outcomes = Vec::with_capacity(records.len());
        for run in records
            .chunk_by(|a, b| a.sobject == b.sobject && a.external_id_field == b.external_id_field)
        {
            for chunk in run.chunks(MAX_COLLECTION) {
                let first = chunk[0];
                let body = serde_json::json!({
                    "allOrNone": false,
                    "records": chunk.iter().map(|&r| UpsertRecord(r)).collect::<Vec<_>>(),
                });
                let body = bytes::Bytes::from(
                    serde_json::to_vec(&body)
                        .map_err(|e| SalesforceError::Decode(e.to_string()))?,
                );
                let path = format!(
                    "/services/data/{}/composite/sobjects/{}/{}",
                    self.api_version, first.sobject, first.external_id_field
                );
                let response = self
                    .session
                    .send(deadline, |http, t| {
                        http.patch(format!("{}{path}", t.instance_url()))
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone())
                    })
                    .await?;
                let items: Vec<Value> = http::read_json(response).await?;
                outcomes.extend((0..chunk.len()).map(|i| upsert_outcome(items.get(i))));
            }
        }
        Ok(outcomes)
    }

    /// `DELETE /composite/sobjects?ids=…&allOrNone=false`, at most 200 ids a call; results in input order (a
    /// record already deleted answers `ENTITY_IS_DELETED`: missing).
    pub async fn delete_records(
        &self,
        ids: &[&str],
        deadline: Instant,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        let mut outcomes = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_COLLECTION) {
            let path = format!(
                "/services/data/{}/composite/sobjects?ids={}&allOrNone=false",
                self.api_version,
                chunk
                    .iter()
                    .map(|id| url_escape(id))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let response = self
                .session
                .send(deadline, |http, t| {
                    http.delete(format!("{}{path}", t.instance_url()))
                })
                .await?;
            let items: Vec<Value> = http::read_json(response).await?;
            outcomes.extend((0..chunk.len()).map(|i| item_outcome(items.get(i))));
        }
        Ok(outcomes)
    }
}

/// A record id as a query value: ids are alphanumeric, anything else is percent-encoded.
fn url_escape(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One result: its `id` and `created` when it succeeded, else its first error, classified as an update's.
fn upsert_outcome(item: Option<&Value>) -> UpsertOutcome {
    let success = item.and_then(|i| i.get("success")).and_then(Value::as_bool) == Some(true);
    let id = item.and_then(|i| i.get("id")).and_then(Value::as_str);
    match (success, id) {
        (true, Some(id)) => UpsertOutcome::Upserted {
            id: id.to_owned(),
            created: item.and_then(|i| i.get("created")).and_then(Value::as_bool) == Some(true),
        },
        (true, None) => UpsertOutcome::Failed {
            code: "NO_ID".into(),
            message: "Salesforce reported success without the record's id".into(),
            transient: true,
        },
        (false, _) => match item_outcome(item) {
            RecordOutcome::Failed {
                code,
                message,
                transient,
            } => UpsertOutcome::Failed {
                code,
                message,
                transient,
            },
            // An upsert creates what is missing: a "missing" code here is a failure like any other.
            RecordOutcome::Missing { code } => UpsertOutcome::Failed {
                code,
                message: String::new(),
                transient: false,
            },
            RecordOutcome::Updated => UpsertOutcome::Failed {
                code: "UNKNOWN_ERROR".into(),
                message: String::new(),
                transient: true,
            },
        },
    }
}

/// A record as the upsert sends it: its type, its external id, its fields (a field named like either never
/// overrides them).
struct UpsertRecord<'a>(&'a RecordUpsert);

impl serde::Serialize for UpsertRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let key = (r.external_id_field.as_str(), r.external_id.as_str());
        serialize_record(s, &r.sobject, key, &r.fields, |n| {
            n.eq_ignore_ascii_case("id") || n == r.external_id_field
        })
    }
}
