//! Salesforce client over the shared OAuth session (`oauth.rs`): client-credentials token and `instance_url` cached
//! across invocations, one re-authentication on `INVALID_SESSION_ID` (REST 401 or SOAP fault), sObject Collections
//! updates and upserts by external id (≤ 200 records a call) with per-item results, SOQL queries, and SOAP
//! `merge()`. Retries 5xx and timeouts
//! within the invocation's deadline.

mod collections;
pub mod soap;

use futures::future::BoxFuture;
use mdm_sync_domain::crm::salesforce::{
    is_already_merged_code, is_missing_code, is_transient_code, MergeOutcome, MergeRequest,
    RecordOutcome, RecordQuery, RecordUpdate, RecordUpsert, UpsertOutcome, MAX_COLLECTION,
    MAX_REQUESTS_PER_CALL,
};
use mdm_sync_domain::ports::{Crm, Deadline, PortError};

use crate::http;
use crate::oauth::{self, Api, Session, Token, TokenAnswer};
use crate::retry::{RetryPolicy, Retryable};
use crate::secrets::SecretError;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;
use std::time::Instant;

/// The shape of the `SALESFORCE_SECRET_ID` secret.
#[derive(Deserialize, Clone)]
pub struct SalesforceCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

/// Where the client's OAuth credentials come from: fixed, or the `SALESFORCE_SECRET_ID` secret.
pub type SalesforceCredentialSource = oauth::CredentialSource<SalesforceCredentials>;

/// A failed call as a whole. `is_transient` decides between retry (batch item failure) and dead-letter.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    #[error("Salesforce API limit exceeded (REQUEST_LIMIT_EXCEEDED)")]
    LimitExceeded,
    #[error("Salesforce is unavailable (HTTP {status})")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("Salesforce did not answer in time")]
    Timeout,
    #[error("could not reach Salesforce: {0}")]
    Connection(String),
    #[error("Salesforce refused the credentials: {0}")]
    Unauthorized(String),
    /// `message`: the field names involved, never the error's text.
    #[error("Salesforce rejected the request (HTTP {status} {code}) {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// A SOAP call failed as a whole (SOAP fault other than an expired session or the API limit).
    #[error("Salesforce SOAP fault {code}{message}")]
    SoapFault { code: String, message: String },
    #[error("Salesforce's response could not be read: {0}")]
    Decode(String),
    #[error(transparent)]
    Credentials(#[from] SecretError),
    #[error("no time left in this invocation to finish the call (last error: {0})")]
    BudgetExhausted(String),
}

impl SalesforceError {
    /// Only a request Salesforce rejected as invalid (HTTP 400) is permanent; the rest may succeed later. A
    /// 403/404 on a whole request points at configuration or permissions (wrong API version, missing access),
    /// which fixing the deployment cures: retried, never dead-lettered.
    pub fn is_transient(&self) -> bool {
        match self {
            SalesforceError::Rejected { status, code, .. } => {
                *status != 400 || is_transient_code(code)
            }
            SalesforceError::SoapFault { code, .. } => is_transient_code(code),
            _ => true,
        }
    }
}

impl Retryable for SalesforceError {
    /// `REQUEST_LIMIT_EXCEEDED` is a daily allocation: not retried within the invocation.
    fn retry_now(&self) -> bool {
        matches!(
            self,
            SalesforceError::Unavailable { .. }
                | SalesforceError::Timeout
                | SalesforceError::Connection(_)
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SalesforceError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn is_unauthorized(&self) -> bool {
        matches!(self, SalesforceError::Unauthorized(_))
    }

    fn out_of_time(self) -> Self {
        SalesforceError::BudgetExhausted(self.to_string())
    }
}

/// One outcome for a request that was split per record: the first failure, else what was merged.
fn combine(parts: Vec<MergeOutcome>) -> MergeOutcome {
    if let Some(f) = parts
        .iter()
        .find(|p| matches!(p, MergeOutcome::Failed { .. }))
    {
        return f.clone();
    }
    let (mut merged, mut related, mut any) = (Vec::new(), 0, false);
    for p in &parts {
        if let MergeOutcome::Merged {
            merged: m,
            related: r,
        } = p
        {
            merged.extend(m.iter().cloned());
            related += r;
            any = true;
        }
    }
    match parts.into_iter().next() {
        Some(first @ MergeOutcome::AlreadyMerged { .. }) if !any => first,
        _ => MergeOutcome::Merged { merged, related },
    }
}

fn merge_outcome(result: Option<&soap::MergeResult>) -> MergeOutcome {
    let Some(result) = result else {
        return MergeOutcome::Failed {
            code: "NO_RESULT".into(),
            message: "Salesforce returned no result for this merge".into(),
            transient: true,
        };
    };
    if result.success {
        return MergeOutcome::Merged {
            merged: result.merged_record_ids.clone(),
            related: result.updated_related_ids.len(),
        };
    }
    // The code only: the message text can echo the records' values.
    let code = result
        .errors
        .first()
        .map(|(code, _)| code.clone())
        .unwrap_or_else(|| "UNKNOWN_ERROR".into());
    if is_already_merged_code(&code) {
        MergeOutcome::AlreadyMerged { code }
    } else {
        MergeOutcome::Failed {
            transient: is_transient_code(&code),
            code,
            message: String::new(),
        }
    }
}

/// Salesforce's token endpoint (the secret's `token_url`): client credentials in the form; the answer names the
/// org's instance URL, and the session lasts until Salesforce refuses it.
pub struct SalesforceAuth;

impl Api for SalesforceAuth {
    type Credentials = SalesforceCredentials;
    type Error = SalesforceError;
    const NAME: &'static str = "Salesforce";

    fn token_request(
        &self,
        http: &reqwest::Client,
        credentials: &SalesforceCredentials,
    ) -> Result<RequestBuilder, String> {
        if !crate::config::is_secure_url(&credentials.token_url) {
            return Err("token_url must be an https:// URL".into());
        }
        Ok(http.post(&credentials.token_url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.client_secret.expose_secret()),
        ]))
    }

    fn token(&self, answer: TokenAnswer) -> Result<Token, SalesforceError> {
        let instance_url = answer
            .instance_url
            .map(|url| url.trim_end_matches('/').to_owned())
            .filter(|url| crate::config::is_secure_url(url))
            .ok_or_else(|| {
                SalesforceError::Decode(
                    "the token response's instance_url is not an https:// URL".into(),
                )
            })?;
        Ok(Token {
            access_token: answer.access_token,
            instance_url: Some(instance_url),
            refresh_at: None,
        })
    }

    fn error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SalesforceError {
        response_error(status, retry_after, body)
    }

    fn refused(error: SalesforceError) -> SalesforceError {
        SalesforceError::Unauthorized(format!("token endpoint refused the client: {error}"))
    }
}

pub struct SalesforceClient {
    session: Session<SalesforceAuth>,
    api_version: String,
}

impl SalesforceClient {
    /// `api_version` like `v66.0`.
    pub fn new(
        http: reqwest::Client,
        api_version: impl Into<String>,
        credentials: SalesforceCredentialSource,
        retry: RetryPolicy,
    ) -> Self {
        SalesforceClient {
            session: Session::new(http, SalesforceAuth, credentials, retry),
            api_version: api_version.into(),
        }
    }

    /// `PATCH /composite/sobjects` with `allOrNone: false`, in calls of at most 200 records. Results come
    /// back in input order. A call that fails as a whole returns its error (the earlier calls' results are
    /// lost to the caller, which is safe: the updates are idempotent).
    pub async fn update_records(
        &self,
        records: &[&RecordUpdate],
        deadline: Instant,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        let mut outcomes = Vec::with_capacity(records.len());
        for chunk in records.chunks(MAX_COLLECTION) {
            let update = CollectionsUpdate {
                all_or_none: false,
                records: chunk.iter().map(|&r| CollectionsRecord(r)).collect(),
            };
            let body = bytes::Bytes::from(
                serde_json::to_vec(&update).map_err(|e| SalesforceError::Decode(e.to_string()))?,
            );
            let path = format!("/services/data/{}/composite/sobjects", self.api_version);
            let response = self
                .session
                .send(deadline, |http, t| {
                    http.patch(format!("{}{path}", t.instance_url()))
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                })
                .await?;
            let items: Vec<Value> = http::read_json(response).await?;
            for i in 0..chunk.len() {
                outcomes.push(item_outcome(items.get(i)));
            }
        }
        Ok(outcomes)
    }

    /// `GET /query?q=...`, following `nextRecordsUrl`. Returns the records.
    pub async fn query(
        &self,
        soql: &str,
        deadline: Instant,
    ) -> Result<Vec<Value>, SalesforceError> {
        let mut records = Vec::new();
        let mut path = format!("/services/data/{}/query", self.api_version);
        let mut first = true;
        loop {
            let p = path.clone();
            let response = self
                .session
                .send(deadline, |http, t| {
                    let req = http.get(format!("{}{p}", t.instance_url()));
                    if first {
                        req.query(&[("q", soql)])
                    } else {
                        req
                    }
                })
                .await?;
            let page: Value = http::read_json(response).await?;
            if let Some(Value::Array(items)) = page.get("records") {
                records.extend(items.iter().cloned());
            }
            match page.get("nextRecordsUrl").and_then(Value::as_str) {
                Some(next) if page.get("done") == Some(&Value::Bool(false)) => {
                    path = next.to_owned();
                    first = false;
                }
                _ => return Ok(records),
            }
        }
    }

    /// SOAP `merge()` (`POST {instance_url}/services/Soap/u/{version}`), at most 200 requests a call; each
    /// request merges at most two records into its master and is its own transaction. Outcomes come back in
    /// request order. A request of two records that fails because one is already gone is sent again as one
    /// request per record, so the live one is still merged.
    pub async fn merge(
        &self,
        requests: &[MergeRequest],
        deadline: Instant,
    ) -> Result<Vec<MergeOutcome>, SalesforceError> {
        let mut outcomes = self.merge_calls(requests, deadline).await?;
        let split: Vec<(usize, MergeRequest)> = requests
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                r.records.len() > 1 && matches!(outcomes[*i], MergeOutcome::AlreadyMerged { .. })
            })
            .flat_map(|(i, r)| {
                r.records.iter().map(move |id| {
                    (
                        i,
                        MergeRequest {
                            records: vec![id.clone()],
                            ..r.clone()
                        },
                    )
                })
            })
            .collect();
        if split.is_empty() {
            return Ok(outcomes);
        }
        let singles: Vec<MergeRequest> = split.iter().map(|(_, r)| r.clone()).collect();
        let results = self.merge_calls(&singles, deadline).await?;
        let mut parts: Vec<Vec<MergeOutcome>> = vec![Vec::new(); requests.len()];
        for ((i, _), outcome) in split.iter().zip(results) {
            parts[*i].push(outcome);
        }
        for (i, part) in parts.into_iter().enumerate() {
            if !part.is_empty() {
                outcomes[i] = combine(part);
            }
        }
        Ok(outcomes)
    }

    async fn merge_calls(
        &self,
        requests: &[MergeRequest],
        deadline: Instant,
    ) -> Result<Vec<MergeOutcome>, SalesforceError> {
        let version = self.api_version.trim_start_matches('v').to_owned();
        let mut outcomes = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(MAX_REQUESTS_PER_CALL) {
            let path = format!("/services/Soap/u/{version}");
            let response = self
                .session
                .send(deadline, |http, t| {
                    http.post(format!("{}{path}", t.instance_url()))
                        .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=UTF-8")
                        .header("SOAPAction", "merge")
                        .body(soap::merge_envelope(t.access_token.expose_secret(), chunk))
                })
                .await?;
            let bytes = response.bytes().await.map_err(http::transport)?;
            let text = String::from_utf8_lossy(&bytes);
            let results = soap::parse_merge_response(&text).map_err(SalesforceError::Decode)?;
            for i in 0..chunk.len() {
                outcomes.push(merge_outcome(results.get(i)));
            }
        }
        Ok(outcomes)
    }
}

fn item_outcome(item: Option<&Value>) -> RecordOutcome {
    let Some(item) = item else {
        return RecordOutcome::Failed {
            code: "NO_RESULT".into(),
            message: "Salesforce returned no result for this record".into(),
            transient: true,
        };
    };
    if item.get("success").and_then(Value::as_bool) == Some(true) {
        return RecordOutcome::Updated;
    }
    let first = item
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first());
    let code = first
        .and_then(|e| e.get("statusCode"))
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN_ERROR")
        .to_owned();
    let message = first.map(fields_of).unwrap_or_default();
    if is_missing_code(&code) {
        RecordOutcome::Missing { code }
    } else {
        RecordOutcome::Failed {
            transient: is_transient_code(&code),
            code,
            message,
        }
    }
}

/// `fields: A, B` from an error's `fields` (names, not values), or nothing.
fn fields_of(error: &Value) -> String {
    let names: Vec<&str> = error
        .get("fields")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        String::new()
    } else {
        http::truncate(format!("fields: {}", names.join(", ")))
    }
}

/// The error of a response that did not succeed: a SOAP fault by its code, a REST error by its status and
/// `errorCode`.
fn response_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> SalesforceError {
    // SOAP answers every fault with HTTP 500 and an XML body naming the exception.
    if body.trim_start().starts_with('<') {
        if let Some(fault) = soap::parse_fault(body) {
            // The fault's code only: its text can echo the values sent.
            return match fault.code.as_str() {
                "INVALID_SESSION_ID" => SalesforceError::Unauthorized(fault.code),
                "REQUEST_LIMIT_EXCEEDED" => SalesforceError::LimitExceeded,
                _ => SalesforceError::SoapFault {
                    code: fault.code,
                    message: String::new(),
                },
            };
        }
    }
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let first = parsed.as_ref().map(|v| match v {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    });
    let code = first
        .as_ref()
        .and_then(|v| v.get("errorCode").or_else(|| v.get("error")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    // Codes and field names only, never the message text: validation messages echo field values.
    let message = first.as_ref().map(fields_of).unwrap_or_default();
    match status {
        StatusCode::UNAUTHORIZED => SalesforceError::Unauthorized(if code.is_empty() {
            "HTTP 401".into()
        } else {
            code.clone()
        }),
        _ if code == "REQUEST_LIMIT_EXCEEDED" => SalesforceError::LimitExceeded,
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            SalesforceError::Unavailable {
                status: s.as_u16(),
                retry_after,
            }
        }
        _ => SalesforceError::Rejected {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

impl From<http::Transport> for SalesforceError {
    fn from(t: http::Transport) -> SalesforceError {
        match t {
            http::Transport::Timeout => SalesforceError::Timeout,
            http::Transport::Connection(m) => SalesforceError::Connection(m),
            http::Transport::Decode(m) => SalesforceError::Decode(m),
        }
    }
}

impl From<SalesforceError> for PortError {
    fn from(e: SalesforceError) -> PortError {
        if e.is_transient() {
            PortError::Transient(e.to_string())
        } else {
            PortError::Rejected(e.to_string())
        }
    }
}

/// The sObject Collections update body, `{"allOrNone": false, "records": [...]}`, written straight from the
/// planned records: each record's fields with its `attributes.type` and `id`, nothing copied.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CollectionsUpdate<'a> {
    all_or_none: bool,
    records: Vec<CollectionsRecord<'a>>,
}

struct CollectionsRecord<'a>(&'a RecordUpdate);

#[derive(serde::Serialize)]
struct SObjectType<'a> {
    #[serde(rename = "type")]
    sobject: &'a str,
}

impl serde::Serialize for CollectionsRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        serialize_record(s, &r.sobject, ("id", &r.id), &r.fields, |n| n == "id")
    }
}

/// A Collections record: its `attributes.type`, its key (`id`, or the external id field with its value), then its
/// fields, except `attributes` and those `own` names: the record's own, which a field never overrides.
fn serialize_record<S: serde::Serializer>(
    s: S,
    sobject: &str,
    (key, value): (&str, &str),
    fields: &Map<String, Value>,
    own: impl Fn(&str) -> bool,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut record = s.serialize_map(None)?;
    record.serialize_entry("attributes", &SObjectType { sobject })?;
    record.serialize_entry(key, value)?;
    for (name, v) in fields.iter().filter(|(n, _)| *n != "attributes" && !own(n)) {
        record.serialize_entry(name, v)?;
    }
    record.end()
}

impl Crm for SalesforceClient {
    fn update<'a>(
        &'a self,
        records: &'a [&'a RecordUpdate],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, PortError>> {
        Box::pin(async move {
            self.update_records(records, deadline)
                .await
                .map_err(PortError::from)
        })
    }

    fn find<'a>(
        &'a self,
        query: &'a RecordQuery,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<Map<String, Value>>, PortError>> {
        Box::pin(async move {
            let records = SalesforceClient::query(self, &query.soql(), deadline)
                .await
                .map_err(PortError::from)?;
            // Each record as its fields: Salesforce's `attributes` (type and URL) is not one of them.
            Ok(records
                .into_iter()
                .filter_map(|r| match r {
                    Value::Object(mut fields) => {
                        fields.remove("attributes");
                        Some(fields)
                    }
                    _ => None,
                })
                .collect())
        })
    }

    fn merge<'a>(
        &'a self,
        requests: &'a [MergeRequest],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<MergeOutcome>, PortError>> {
        Box::pin(async move {
            SalesforceClient::merge(self, requests, deadline)
                .await
                .map_err(PortError::from)
        })
    }

    fn delete<'a>(
        &'a self,
        ids: &'a [&'a str],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, PortError>> {
        Box::pin(async move {
            self.delete_records(ids, deadline)
                .await
                .map_err(PortError::from)
        })
    }

    fn upsert<'a>(
        &'a self,
        records: &'a [&'a RecordUpsert],
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<UpsertOutcome>, PortError>> {
        Box::pin(async move {
            self.upsert_records(records, deadline)
                .await
                .map_err(PortError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn client(server: &MockServer) -> SalesforceClient {
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"access_token": "t", "instance_url": server.uri(), "token_type": "Bearer"}),
            ))
            .mount(server)
            .await;
        static_client(&format!("{}/services/oauth2/token", server.uri()))
    }

    /// A client with fixed credentials whose token endpoint is `token_url` (loopback test servers count as https).
    fn static_client(token_url: &str) -> SalesforceClient {
        SalesforceClient::new(
            reqwest::Client::new(),
            "v66.0",
            SalesforceCredentialSource::Static(SalesforceCredentials {
                token_url: token_url.into(),
                client_id: "id".into(),
                client_secret: "secret".into(),
            }),
            RetryPolicy {
                base: Duration::from_millis(5),
                cap: Duration::from_millis(10),
                max_attempts: 3,
            },
        )
    }

    #[tokio::test]
    async fn an_update_sends_each_record_with_its_type_and_id_once_per_200() {
        let server = MockServer::start().await;
        let sf = client(&server).await;
        let record = |i: usize| RecordUpdate {
            sobject: "Contact".into(),
            id: format!("003{i:015}"),
            fields: serde_json::from_value(json!({
                "FirstName": format!("Ann{i}"), "Email": null,
                // Never overrides the record's own type and id.
                "id": "not-this", "attributes": {"type": "Lead"}
            }))
            .unwrap(),
        };
        let records: Vec<RecordUpdate> = (0..201).map(record).collect();
        let expected = |range: std::ops::Range<usize>| {
            json!({"allOrNone": false, "records": range.map(|i| json!({
                "attributes": {"type": "Contact"}, "id": format!("003{i:015}"),
                "FirstName": format!("Ann{i}"), "Email": null
            })).collect::<Vec<_>>()})
        };
        for (range, n) in [(0..200, 200), (200..201, 1)] {
            Mock::given(method("PATCH"))
                .and(path("/services/data/v66.0/composite/sobjects"))
                .and(wiremock::matchers::body_json(expected(range)))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(vec![json!({"success": true, "errors": []}); n]),
                )
                .expect(1)
                .mount(&server)
                .await;
        }
        let refs: Vec<&RecordUpdate> = records.iter().collect();
        let outcomes = sf
            .update_records(&refs, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(outcomes, vec![RecordOutcome::Updated; 201]);
    }

    #[tokio::test]
    async fn an_upsert_is_keyed_by_its_external_id_field_and_reads_created_and_id_per_record() {
        let server = MockServer::start().await;
        let sf = client(&server).await;
        let record = |id: &str| RecordUpsert {
            sobject: "Contact".into(),
            external_id_field: "Reltio_Id__c".into(),
            external_id: id.into(),
            fields: serde_json::from_value(json!({
                "LastName": format!("Lee {id}"),
                // Never overrides the record's type, key or external id.
                "Id": "003X", "Reltio_Id__c": "other", "attributes": {"type": "Lead"}
            }))
            .unwrap(),
        };
        // The example answer of Salesforce's "Upsert Multiple Records Using sObject Collections".
        Mock::given(method("PATCH"))
            .and(path("/services/data/v66.0/composite/sobjects/Contact/Reltio_Id__c"))
            .and(wiremock::matchers::body_json(json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Contact"}, "Reltio_Id__c": "0Abc", "LastName": "Lee 0Abc"},
                {"attributes": {"type": "Contact"}, "Reltio_Id__c": "0Def", "LastName": "Lee 0Def"},
                {"attributes": {"type": "Contact"}, "Reltio_Id__c": "0Ghi", "LastName": "Lee 0Ghi"}
            ]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": "003RM000006NEWAAA", "success": true, "errors": [], "created": true},
                {"id": "003RM000006OLDAAA", "success": true, "errors": [], "created": false},
                {"success": false, "created": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                 "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]}
            ])))
            .expect(1)
            .mount(&server)
            .await;
        let records = [record("0Abc"), record("0Def"), record("0Ghi")];
        let refs: Vec<&RecordUpsert> = records.iter().collect();
        let out = sf
            .upsert_records(&refs, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            out[..2],
            [
                UpsertOutcome::Upserted {
                    id: "003RM000006NEWAAA".into(),
                    created: true
                },
                UpsertOutcome::Upserted {
                    id: "003RM000006OLDAAA".into(),
                    created: false
                }
            ]
        );
        let UpsertOutcome::Failed {
            code,
            message,
            transient,
        } = &out[2]
        else {
            panic!("{:?}", out[2])
        };
        assert_eq!(code, "REQUIRED_FIELD_MISSING");
        assert!(!transient && message.contains("LastName") && !message.contains("Required"));
    }

    #[tokio::test]
    async fn a_delete_names_its_ids_in_the_query_and_reads_each_result() {
        let server = MockServer::start().await;
        let sf = client(&server).await;
        Mock::given(method("DELETE"))
            .and(path("/services/data/v66.0/composite/sobjects"))
            .and(wiremock::matchers::query_param("ids", "003A,003B"))
            .and(wiremock::matchers::query_param("allOrNone", "false"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": "003A", "success": true, "errors": []},
                {"success": false, "errors": [{"statusCode": "ENTITY_IS_DELETED",
                 "message": "entity is deleted", "fields": []}]}
            ])))
            .expect(1)
            .mount(&server)
            .await;
        let out = sf
            .delete_records(&["003A", "003B"], Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                RecordOutcome::Updated,
                RecordOutcome::Missing {
                    code: "ENTITY_IS_DELETED".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn a_503_with_retry_after_is_retried_after_the_servers_wait() {
        let server = MockServer::start().await;
        let sf = client(&server).await;
        Mock::given(method("GET"))
            .and(path("/services/data/v66.0/query"))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/services/data/v66.0/query"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"done": true, "records": [{"Id": "500A"}]})),
            )
            .mount(&server)
            .await;
        let started = Instant::now();
        let records = sf
            .query("SELECT Id FROM Case", started + Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(records.len(), 1);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After honoured"
        );
    }

    #[tokio::test]
    async fn a_token_url_in_clear_text_is_refused_before_any_call() {
        let sf = static_client("http://login.example.com/services/oauth2/token");
        let err = sf
            .query(
                "SELECT Id FROM Case",
                Instant::now() + Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        assert!(
            err.is_transient(),
            "an operator fixes the secret; nothing is dead-lettered"
        );
    }

    #[tokio::test]
    async fn a_wait_past_the_invocations_budget_is_not_taken() {
        let server = MockServer::start().await;
        let sf = client(&server).await;
        Mock::given(method("GET"))
            .and(path("/services/data/v66.0/query"))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "30"))
            .mount(&server)
            .await;
        let started = Instant::now();
        let err = sf
            .query("SELECT Id FROM Case", started + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, SalesforceError::BudgetExhausted(_)), "{err}");
        assert!(err.is_transient());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn the_session_is_kept_until_salesforce_refuses_it_then_renewed_once() {
        let server = MockServer::start().await;
        for token in ["first", "second"] {
            Mock::given(method("POST"))
                .and(path("/services/oauth2/token"))
                .and(wiremock::matchers::body_string_contains(
                    "client_secret=secret",
                ))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    json!({"access_token": token, "instance_url": format!("{}/", server.uri())}),
                ))
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
        }
        let query = || Mock::given(method("GET")).and(path("/services/data/v66.0/query"));
        let records = json!({"done": true, "records": [{"Id": "500A"}]});
        query()
            .and(wiremock::matchers::header("authorization", "Bearer first"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&records))
            .up_to_n_times(2)
            .expect(2)
            .mount(&server)
            .await;
        query()
            .and(wiremock::matchers::header("authorization", "Bearer first"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!([{"message": "Session expired", "errorCode": "INVALID_SESSION_ID"}]),
            ))
            .expect(1)
            .mount(&server)
            .await;
        query()
            .and(wiremock::matchers::header("authorization", "Bearer second"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&records))
            .expect(1)
            .mount(&server)
            .await;
        let sf = static_client(&format!("{}/services/oauth2/token", server.uri()));
        for _ in 0..3 {
            let found = sf
                .query(
                    "SELECT Id FROM Case",
                    Instant::now() + Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert_eq!(found.len(), 1);
        }
    }

    /// A query whose token endpoint answers `answer` (expected `calls` times): its error, and the server.
    async fn query_after_token(
        answer: ResponseTemplate,
        calls: u64,
    ) -> (SalesforceError, MockServer) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(answer)
            .expect(calls)
            .mount(&server)
            .await;
        let sf = static_client(&format!("{}/services/oauth2/token", server.uri()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = sf.query("SELECT Id FROM Case", deadline).await.unwrap_err();
        (err, server)
    }

    #[tokio::test]
    async fn an_instance_url_in_clear_text_is_refused_before_any_call() {
        let answer = ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": "t", "instance_url": "http://na1.example.com"}));
        let (err, server) = query_after_token(answer, 1).await;
        assert!(err.to_string().contains("instance_url"), "{err}");
        assert!(err.is_transient());
        let calls = server.received_requests().await.unwrap();
        assert!(calls
            .iter()
            .all(|r| r.url.path() == "/services/oauth2/token"));
    }

    #[tokio::test]
    async fn a_refused_client_is_reported_by_its_code_without_the_description() {
        let answer = ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_client", "error_description": "client secret 'secret' is wrong"}),
        );
        // Refused, then asked once more: the call's one re-authentication.
        let (err, _) = query_after_token(answer, 2).await;
        assert!(matches!(err, SalesforceError::Unauthorized(_)), "{err}");
        assert!(err.is_transient());
        let text = err.to_string();
        assert!(text.contains("invalid_client"), "{text}");
        assert!(!text.contains("secret'"), "{text}");
    }

    #[test]
    fn item_errors_are_classified() {
        let ok = json!({"id": "003A", "success": true, "errors": []});
        assert_eq!(item_outcome(Some(&ok)), RecordOutcome::Updated);
        let lock = json!({"success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "x"}]});
        assert!(matches!(
            item_outcome(Some(&lock)),
            RecordOutcome::Failed {
                transient: true,
                ..
            }
        ));
        let bad = json!({"success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "x"}]});
        assert!(matches!(
            item_outcome(Some(&bad)),
            RecordOutcome::Failed {
                transient: false,
                ..
            }
        ));
        let gone = json!({"success": false, "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "x"}]});
        assert!(matches!(
            item_outcome(Some(&gone)),
            RecordOutcome::Missing { .. }
        ));
        assert!(matches!(
            item_outcome(None),
            RecordOutcome::Failed {
                transient: true,
                ..
            }
        ));
    }
}
