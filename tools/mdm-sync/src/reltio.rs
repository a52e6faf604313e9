//! `mdm-sync reltio configure`: the Reltio side of the integration, from the stack's outputs and one subscription
//! file. It registers the webhook (the stack's `WebhookUrl`, the entity types and events, the signing header and
//! secret, the retry policy), updating a registration of the same name rather than adding one; or, with `--kafka`,
//! prints the stream subscription for Reltio's Kafka destination. `--dry-run` prints the JSON (the secret
//! redacted) and sends nothing.
//!
//! The configuration endpoint and the registration's shape are the integration guide's and are **unverified against
//! a live tenant**: both live in this file only ([`WEBHOOKS_PATH`], [`registration`]).

use crate::error::CliError;
use crate::output;
use crate::stack::{self, Stack};
use crate::Global;
use clap::{Args, Subcommand};
use mdm_sync_domain::reltio::event::{EventCategory, EventTypeFilter};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Reltio's entity event types (what the categories expand to).
const EVENT_TYPES: [&str; 9] = [
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
const RELATIONSHIP_EVENT_TYPES: [&str; 3] = [
    "RELATIONSHIP_CREATED",
    "RELATIONSHIP_CHANGED",
    "RELATIONSHIP_REMOVED",
];

/// Where webhook registrations live, under the tenant's API URL (unverified).
pub const WEBHOOKS_PATH: &str = "configuration/webhooks";
const DEFAULT_AUTH_URL: &str = "https://auth.reltio.com/oauth/token";

#[derive(Subcommand)]
pub enum ReltioCommand {
    /// Registers (or updates) the webhook, or prints the Kafka stream subscription (`--kafka`).
    Configure(ConfigureArgs),
}

#[derive(Args)]
pub struct ConfigureArgs {
    /// The subscription file (TOML): entity_types, event_types, attributes, include_relationships, [webhook],
    /// [stream].
    #[arg(long)]
    subscription: PathBuf,
    /// The webhook URL (default: the stack's WebhookUrl output).
    #[arg(long)]
    webhook_url: Option<String>,
    /// The tenant's API URL, `https://<env>.reltio.com/reltio/api/<tenant>`.
    #[arg(long, env = "RELTIO_API_URL")]
    reltio_url: Option<String>,
    #[arg(long, env = "RELTIO_AUTH_URL", default_value = DEFAULT_AUTH_URL)]
    auth_url: String,
    /// Secrets Manager secret `{"client_id", "client_secret"}` (else RELTIO_CLIENT_ID / RELTIO_CLIENT_SECRET).
    #[arg(long)]
    reltio_secret_id: Option<String>,
    /// Secrets Manager secret `{"secrets": ["<current>", ...]}` whose current secret Reltio signs with (else
    /// WEBHOOK_SECRET; without either, no signing is registered: a hub in between signs).
    #[arg(long)]
    webhook_secret_id: Option<String>,
    /// Print the Kafka stream subscription instead of registering a webhook.
    #[arg(long)]
    kafka: bool,
    /// Print the JSON; send nothing.
    #[arg(long)]
    dry_run: bool,
}

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

    /// Reltio event type names: categories expanded.
    pub fn event_names(&self) -> Vec<String> {
        let all = EVENT_TYPES;
        let mut out = Vec::new();
        for e in &self.event_types {
            let e = e.trim();
            match EventCategory::parse(e) {
                Some(c) => out.extend(
                    all.iter()
                        .filter(|n| EventCategory::of(n) == Some(c))
                        .map(|n| n.to_string()),
                ),
                None => out.push(e.to_owned()),
            }
        }
        out.dedup();
        out
    }
}

/// The webhook registration (the integration guide's shape; unverified). `secret` is sent to Reltio to sign with.
pub fn registration(s: &Subscription, url: &str, secret: Option<&str>) -> Value {
    let mut r = json!({
        "name": s.webhook.name,
        "url": url,
        "entityTypes": s.entity_type_uris(),
        "events": s.event_names(),
        "includeRelationships": s.include_relationships,
        "retryPolicy": {"maxRetries": s.webhook.retry.max_retries, "retryDelay": s.webhook.retry.retry_delay_ms,
                        "backoffMultiplier": s.webhook.retry.backoff_multiplier},
    });
    if !s.attributes.is_empty() {
        r["attributes"] = json!(s.attributes);
    }
    if let Some(secret) = secret {
        r["signing"] = json!({"header": s.webhook.signing_header, "algorithm": "HmacSHA256",
                              "timestampHeader": "X-Reltio-Timestamp", "secret": secret});
    }
    r
}

/// The stream subscription for Reltio's Kafka destination (printed for the tenant's configuration).
pub fn stream_subscription(s: &Subscription) -> Result<Value, String> {
    let k = s
        .stream
        .as_ref()
        .ok_or("--kafka needs a [stream] section (bootstrap_servers, topic)")?;
    Ok(json!({
        "streamName": k.name,
        "entityTypes": s.entity_type_uris(),
        "eventTypes": s.event_names(),
        "attributes": s.attributes,
        "includeRelationships": s.include_relationships,
        "destination": {"type": k.provider, "bootstrapServers": k.bootstrap_servers, "topic": k.topic,
                        "securityProtocol": "SASL_SSL", "payloadFormat": k.payload_format,
                        "largeObjectsSupport": true},
    }))
}

fn redacted(mut r: Value) -> Value {
    if r.pointer("/signing/secret").is_some() {
        r["signing"]["secret"] = json!("<redacted>");
    }
    r
}

pub async fn run(g: &Global, command: ReltioCommand) -> Result<ExitCode, CliError> {
    let ReltioCommand::Configure(args) = command;
    let text = String::from_utf8(crate::read_input(&args.subscription)?)
        .map_err(|_| CliError::Usage("the subscription file is not UTF-8".into()))?;
    let sub = Subscription::parse(&text)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.subscription.display())))?;
    if args.kafka {
        let doc = stream_subscription(&sub).map_err(CliError::Usage)?;
        println!("{}", output::json(&doc));
        return Ok(ExitCode::SUCCESS);
    }
    let sdk = stack::sdk().await;
    let stack = Stack::load(g, &sdk).await?;
    let url = match &args.webhook_url {
        Some(u) => u.clone(),
        None => stack.require(stack::WEBHOOK_URL)?.to_owned(),
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let signing = match &args.webhook_secret_id {
        Some(id) => {
            let v = secret_json(&secrets, id).await?;
            let current = v
                .get("secrets")
                .and_then(|s| s.get(0))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CliError::Config(format!("secret {id} holds no {{\"secrets\": [...]}}"))
                })?;
            Some(SecretString::from(current.to_owned()))
        }
        None => std::env::var("WEBHOOK_SECRET").ok().map(SecretString::from),
    };
    let body = registration(&sub, &url, signing.as_ref().map(|s| s.expose_secret()));
    if args.dry_run {
        println!(
            "{}",
            output::json(
                &json!({"method": "POST or PUT", "path": WEBHOOKS_PATH, "body": redacted(body)})
            )
        );
        return Ok(ExitCode::SUCCESS);
    }
    let api = args
        .reltio_url
        .as_deref()
        .ok_or_else(|| {
            CliError::Config("the tenant's API URL: --reltio-url or RELTIO_API_URL".into())
        })?
        .trim_end_matches('/')
        .to_owned();
    let (client_id, client_secret) = match &args.reltio_secret_id {
        Some(id) => {
            let v = secret_json(&secrets, id).await?;
            let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            match (field("client_id"), field("client_secret")) {
                (Some(a), Some(b)) => (a, SecretString::from(b)),
                _ => return Err(CliError::Config(format!("secret {id} holds no client_id and client_secret"))),
            }
        }
        None => match (std::env::var("RELTIO_CLIENT_ID"), std::env::var("RELTIO_CLIENT_SECRET")) {
            (Ok(a), Ok(b)) => (a, SecretString::from(b)),
            _ => {
                return Err(CliError::Config(
                    "Reltio credentials: --reltio-secret-id, or RELTIO_CLIENT_ID and RELTIO_CLIENT_SECRET".into(),
                ))
            }
        },
    };
    let http = mdm_sync_adapters::http::client();
    let token = token(&http, &args.auth_url, &client_id, &client_secret).await?;
    let list = http
        .get(format!("{api}/{WEBHOOKS_PATH}"))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(|e| {
            CliError::Failed(format!(
                "listing webhooks: {}",
                mdm_sync_adapters::http::error_chain(&e)
            ))
        })?;
    let existing: Vec<Value> = if list.status().is_success() {
        list.json().await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let found = existing
        .iter()
        .any(|w| w.get("name").and_then(Value::as_str) == Some(sub.webhook.name.as_str()));
    let request = if found {
        http.put(format!("{api}/{WEBHOOKS_PATH}/{}", sub.webhook.name))
    } else {
        http.post(format!("{api}/{WEBHOOKS_PATH}"))
    };
    let answer = request
        .bearer_auth(token.expose_secret())
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            CliError::Failed(format!(
                "registering the webhook: {}",
                mdm_sync_adapters::http::error_chain(&e)
            ))
        })?;
    let status = answer.status();
    if !status.is_success() {
        let text = answer.text().await.unwrap_or_default();
        return Err(CliError::Failed(format!(
            "Reltio answered {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    let what = if found { "updated" } else { "created" };
    let doc = json!({"webhook": sub.webhook.name, "url": url, "result": what});
    println!(
        "{}",
        if g.json {
            output::json(&doc)
        } else {
            format!("webhook {} {what} ({url})", sub.webhook.name)
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn secret_json(sm: &aws_sdk_secretsmanager::Client, id: &str) -> Result<Value, CliError> {
    let out = sm
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            CliError::Config(format!(
                "secret {id}: {}",
                mdm_sync_adapters::http::error_chain(&e)
            ))
        })?;
    serde_json::from_str(out.secret_string().unwrap_or_default())
        .map_err(|_| CliError::Config(format!("secret {id} is not JSON")))
}

/// A client-credentials token (Basic auth, `grant_type=client_credentials`).
async fn token(
    http: &reqwest::Client,
    auth_url: &str,
    client_id: &str,
    client_secret: &SecretString,
) -> Result<SecretString, CliError> {
    let answer = http
        .post(auth_url)
        .basic_auth(client_id, Some(client_secret.expose_secret()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| {
            CliError::Failed(format!(
                "Reltio token: {}",
                mdm_sync_adapters::http::error_chain(&e)
            ))
        })?;
    if !answer.status().is_success() {
        return Err(CliError::Failed(format!(
            "Reltio token: {}",
            answer.status()
        )));
    }
    let v: Value = answer
        .json()
        .await
        .map_err(|e| CliError::Failed(format!("Reltio token: {e}")))?;
    v.get("access_token")
        .and_then(Value::as_str)
        .map(|t| SecretString::from(t.to_owned()))
        .ok_or_else(|| CliError::Failed("Reltio token: no access_token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        entity_types = ["Individual", "configuration/entityTypes/Organization"]
        event_types = ["UPDATE", "MERGE"]
        attributes = ["FirstName", "Email"]
        [webhook]
        name = "mdm-sync-prod"
        [webhook.retry]
        max_retries = 5
        retry_delay_ms = 1000
        backoff_multiplier = 3.0
        [stream]
        bootstrap_servers = "pkc-1.confluent.cloud:9092"
        topic = "reltio.T.entities.changes"
        provider = "kafka-scram-sha-512"
    "#;

    #[test]
    fn the_registration_expands_categories_and_carries_the_retry_policy() {
        let s = Subscription::parse(FILE).unwrap();
        let r = registration(
            &s,
            "https://x.execute-api.us-east-1.amazonaws.com/webhook",
            Some("s3cret"),
        );
        assert_eq!(
            r["entityTypes"],
            json!([
                "configuration/entityTypes/Individual",
                "configuration/entityTypes/Organization"
            ])
        );
        assert_eq!(
            r["events"],
            json!([
                "ENTITY_CHANGED",
                "ENTITIES_MERGED",
                "ENTITIES_MERGED_MANUALLY",
                "ENTITIES_MERGED_ON_THE_FLY",
                "ENTITY_LOST_MERGE"
            ])
        );
        assert_eq!(
            r["retryPolicy"],
            json!({"maxRetries": 5, "retryDelay": 1000, "backoffMultiplier": 3.0})
        );
        assert_eq!(r["signing"]["header"], "X-Reltio-Signature");
        assert_eq!(redacted(r.clone())["signing"]["secret"], "<redacted>");
        assert!(!redacted(r).to_string().contains("s3cret"));
        let k = stream_subscription(&s).unwrap();
        assert_eq!(k["destination"]["type"], "kafka-scram-sha-512");
        assert_eq!(k["attributes"], json!(["FirstName", "Email"]));
    }

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
        assert!(stream_subscription(&s).is_err());
        assert_eq!(s.webhook.retry.max_retries, 3);
    }
}
