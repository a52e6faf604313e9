//! The subscription file: which entity and event types the Reltio side sends, in the vocabulary the consumers'
//! filters use (categories `CREATE`, `UPDATE`, `MERGE`, `UNMERGE`, `DELETE`, or Reltio's event type names). The
//! webhook registration, the Kafka subscription and the streaming destination are all built from it.

use mdm_sync_domain::reltio::event::{EventCategory, EventTypeFilter};
use serde::Deserialize;

/// Reltio's entity event types (what the categories expand to).
pub const EVENT_TYPES: [&str; 9] = [
    "ENTITY_CREATED",
    "ENTITY_CHANGED",
    "ENTITIES_MERGED",
    "ENTITIES_MERGED_MANUALLY",
    "ENTITIES_MERGED_ON_THE_FLY",
    "ENTITY_LOST_MERGE",
    "ENTITIES_SPLITTED",
    "ENTITY_REMOVED",
    "ENTITY_REMOVED_GDPR",
];
pub const RELATIONSHIP_EVENT_TYPES: [&str; 3] = [
    "RELATIONSHIP_CREATED",
    "RELATIONSHIP_CHANGED",
    "RELATIONSHIP_REMOVED",
];

/// The subscription file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    #[serde(default = "default_entity_types")]
    pub entity_types: Vec<String>,
    #[serde(default = "default_event_types")]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<String>,
    #[serde(default)]
    pub include_relationships: bool,
    #[serde(default)]
    pub webhook: WebhookSettings,
    #[serde(default)]
    pub stream: Option<StreamSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_signing_header")]
    pub signing_header: String,
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            name: default_name(),
            signing_header: default_signing_header(),
            retry: RetryPolicy::default(),
        }
    }
}

/// Reltio's webhook retry policy (the integration guide's `maxRetries`, `retryDelay` ms, `backoffMultiplier`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_delay")]
    pub retry_delay_ms: u64,
    #[serde(default = "default_multiplier")]
    pub backoff_multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: default_retries(),
            retry_delay_ms: default_delay(),
            backoff_multiplier: default_multiplier(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    #[serde(default = "default_stream_name")]
    pub name: String,
    pub bootstrap_servers: String,
    pub topic: String,
    /// `kafka-plain`, `kafka-scram-sha-256`, `kafka-scram-sha-512` (Reltio's provider types).
    #[serde(default = "default_provider")]
    pub provider: String,
    /// `JSON` or `JSON_ZIP_BASE64`.
    #[serde(default = "default_payload")]
    pub payload_format: String,
}

fn default_entity_types() -> Vec<String> {
    vec!["Individual".into()]
}
fn default_event_types() -> Vec<String> {
    ["CREATE", "UPDATE", "MERGE", "UNMERGE", "DELETE"]
        .map(String::from)
        .to_vec()
}
fn default_name() -> String {
    "mdm-sync".into()
}
fn default_signing_header() -> String {
    "X-Reltio-Signature".into()
}
fn default_retries() -> u32 {
    3
}
fn default_delay() -> u64 {
    5000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_stream_name() -> String {
    "mdm-sync-stream".into()
}
fn default_provider() -> String {
    "kafka-plain".into()
}
fn default_payload() -> String {
    "JSON".into()
}

impl Subscription {
    pub fn parse(text: &str) -> Result<Subscription, String> {
        let s: Subscription = toml::from_str(text).map_err(|e| e.to_string())?;
        EventTypeFilter::parse(&s.event_types)
            .map_err(|e| format!("event_types: unknown event type {e}"))?;
        // A registration is checked harder than a consumer's filter: a name Reltio does not send is a typo.
        if let Some(e) = s.event_types.iter().map(|e| e.trim()).find(|e| {
            EventCategory::parse(e).is_none()
                && !EVENT_TYPES.contains(e)
                && !RELATIONSHIP_EVENT_TYPES.contains(e)
        }) {
            return Err(format!(
                "event_types: unknown event type {e} (categories CREATE, UPDATE, MERGE, UNMERGE, DELETE, or one of {})",
                EVENT_TYPES.join(", ")
            ));
        }
        if s.entity_types.is_empty() {
            return Err("entity_types must list at least one entity type".into());
        }
        Ok(s)
    }

    /// Full entity type URIs.
    pub fn entity_type_uris(&self) -> Vec<String> {
        self.entity_types
            .iter()
            .map(|t| {
                if t.contains('/') {
                    t.clone()
                } else {
                    format!("configuration/entityTypes/{t}")
                }
            })
            .collect()
    }

    /// Reltio event type names: categories expanded, each name once, in the order first named.
    pub fn event_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.event_types {
            let e = e.trim();
            match EventCategory::parse(e) {
                Some(c) => out.extend(
                    EVENT_TYPES
                        .iter()
                        .filter(|n| EventCategory::of(n) == Some(c))
                        .map(|n| n.to_string()),
                ),
                None => out.push(e.to_owned()),
            }
        }
        once_each(out)
    }

    /// A streaming destination's `typeFilter`: the event names, and Reltio's relationship event types when
    /// `include_relationships` is set (a stream has no separate switch for them).
    pub fn stream_type_filter(&self) -> Vec<String> {
        let mut out = self.event_names();
        if self.include_relationships {
            out.extend(RELATIONSHIP_EVENT_TYPES.map(String::from));
        }
        once_each(out)
    }
}

fn once_each(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_subscription_file_names_the_problem() {
        assert!(Subscription::parse("event_types = [\"SOMETIMES maybe\"]")
            .unwrap_err()
            .contains("event_types"));
        let typo =
            Subscription::parse("event_types = [\"CREATE\", \"ENTITY_UPDATED\"]").unwrap_err();
        assert!(typo.contains("ENTITY_UPDATED"), "{typo}");
        assert!(Subscription::parse(
            "event_types = [\"ENTITY_LOST_MERGE\", \"RELATIONSHIP_CHANGED\"]"
        )
        .is_ok());
        assert!(Subscription::parse("entity_types = []")
            .unwrap_err()
            .contains("entity_types"));
        assert!(Subscription::parse("colour = 1").is_err());
        let s = Subscription::parse("").unwrap();
        assert_eq!(s.webhook.retry.max_retries, 3);
    }

    #[test]
    fn the_type_filter_expands_categories_once_and_adds_relationships_when_asked() {
        let s = Subscription::parse("event_types = [\"MERGE\", \"ENTITY_LOST_MERGE\", \"DELETE\"]")
            .unwrap();
        assert_eq!(
            s.stream_type_filter(),
            [
                "ENTITIES_MERGED",
                "ENTITIES_MERGED_MANUALLY",
                "ENTITIES_MERGED_ON_THE_FLY",
                "ENTITY_LOST_MERGE",
                "ENTITY_REMOVED",
                "ENTITY_REMOVED_GDPR"
            ]
        );
        let all = Subscription::parse("include_relationships = true").unwrap();
        let filter = all.stream_type_filter();
        assert_eq!(
            filter.len(),
            EVENT_TYPES.len() + RELATIONSHIP_EVENT_TYPES.len()
        );
        assert_eq!(filter[..EVENT_TYPES.len()], EVENT_TYPES.map(String::from));
        assert!(filter.ends_with(&RELATIONSHIP_EVENT_TYPES.map(String::from)));
        // A relationship type named explicitly stays once.
        let named = Subscription::parse(
            "event_types = [\"RELATIONSHIP_CHANGED\"]\ninclude_relationships = true",
        )
        .unwrap();
        assert_eq!(
            named.stream_type_filter(),
            [
                "RELATIONSHIP_CHANGED",
                "RELATIONSHIP_CREATED",
                "RELATIONSHIP_REMOVED"
            ]
        );
    }
}
