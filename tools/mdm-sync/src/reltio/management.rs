//! Reltio's tenant management API for streaming destinations: `POST /tenants/{tenantId}/messaging/destinations`
//! with one destination object (docs/reference.md, "Reltio streaming to SNS/SQS"). **Unverified**: the host (so
//! `--management-url` is explicit), whether a `GET` on the same path lists the destinations and in which shape, and
//! what it answers to a duplicate. So [`send`] lists first and sends nothing it cannot tell is new.

use crate::error::CliError;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// The management API's path for a tenant's destinations (the host is not documented).
pub fn destinations_path(tenant: &str) -> String {
    format!("/tenants/{tenant}/messaging/destinations")
}

/// What the management API did with the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Created,
    /// A destination of the same name (ARN) with the same settings is already there: nothing sent.
    Unchanged,
}

impl Sent {
    pub fn word(self) -> &'static str {
        match self {
            Sent::Created => "created",
            Sent::Unchanged => "unchanged",
        }
    }
}

/// The destinations of a listing: an array, or one under `destinations`, `messaging` or `streamingConfig`
/// (the listing's shape is unverified).
fn listed(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) => ["destinations", "messaging", "streamingConfig"]
            .iter()
            .find_map(|k| o.get(*k))
            .map(listed)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The fields of `wanted` that `existing` holds with another value (lists compared as sets; a field Reltio does
/// not echo is not a difference).
fn differing(existing: &Map<String, Value>, wanted: &Map<String, Value>) -> Vec<String> {
    let as_set = |v: &Value| -> Option<Vec<String>> {
        let mut items: Vec<String> = v.as_array()?.iter().map(Value::to_string).collect();
        items.sort();
        Some(items)
    };
    wanted
        .iter()
        .filter(|(k, want)| {
            existing
                .get(*k)
                .is_some_and(|have| match (as_set(have), as_set(want)) {
                    (Some(a), Some(b)) => a != b,
                    _ => have != *want,
                })
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Posts the destination unless the tenant has it already: lists the tenant's destinations first, and sends
/// nothing when it cannot (a second destination for the same ARN would deliver every event twice), or when one of
/// the same name differs (updating one through the API is undocumented: the Console does it).
pub async fn send(
    http: &reqwest::Client,
    management_url: &str,
    tenant: &str,
    token: &SecretString,
    destination: &Value,
) -> Result<Sent, CliError> {
    let url = format!(
        "{}{}",
        management_url.trim_end_matches('/'),
        destinations_path(tenant)
    );
    let failed = |what: &str, e: reqwest::Error| {
        CliError::Failed(format!(
            "{what}: {}",
            mdm_sync_adapters::http::error_chain(&e)
        ))
    };
    let list = http
        .get(&url)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(|e| failed("listing the tenant's destinations", e))?;
    let status = list.status();
    if !status.is_success() {
        return Err(CliError::Failed(format!(
            "listing the tenant's destinations answered {status}: nothing sent (a second destination for the \
             same ARN would deliver every event twice); enter it in the Console instead"
        )));
    }
    let existing: Value = list
        .json()
        .await
        .map_err(|e| failed("listing the tenant's destinations", e))?;
    let name = destination.get("name").and_then(Value::as_str);
    let same_name = listed(&existing)
        .into_iter()
        .filter_map(Value::as_object)
        .find(|d| d.get("name").and_then(Value::as_str) == name);
    if let (Some(have), Some(want)) = (same_name, destination.as_object()) {
        let fields = differing(have, want);
        if fields.is_empty() {
            return Ok(Sent::Unchanged);
        }
        return Err(CliError::Failed(format!(
            "the tenant has a destination {} with other {}: nothing sent (updating one through the API is \
             undocumented); change it in the Console (Tenant Management > External queues)",
            name.unwrap_or_default(),
            fields.join(", ")
        )));
    }
    let answer = http
        .post(&url)
        .bearer_auth(token.expose_secret())
        .json(destination)
        .send()
        .await
        .map_err(|e| failed("sending the destination", e))?;
    let status = answer.status();
    if !status.is_success() {
        let text = answer.text().await.unwrap_or_default();
        return Err(CliError::Failed(format!(
            "Reltio answered {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    Ok(Sent::Created)
}

#[cfg(test)]
mod tests;
