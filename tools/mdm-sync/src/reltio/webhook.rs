//! The integration-hub paths: the webhook registration (the stack's `WebhookUrl`, the entity types and events, the
//! signing header and secret, the retry policy), updating a registration of the same name rather than adding one;
//! and, with `--kafka`, the stream subscription for a Kafka destination (re-streaming). Reltio itself streams to
//! SQS, SNS, Pub/Sub and Service Bus only ([`super::destination`]); these serve hubs and relays in between.
//!
//! The configuration endpoint and the registration's shape are the integration guide's and are **unverified against
//! a live tenant**: both live in this file only ([`WEBHOOKS_PATH`], [`registration`]).

use super::subscription::Subscription;
use super::{reltio_token, secret_json, ConfigureArgs};
use crate::error::CliError;
use crate::output;
use crate::stack::{self, Stack};
use crate::Global;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::process::ExitCode;

/// Where webhook registrations live, under the tenant's API URL (unverified).
pub const WEBHOOKS_PATH: &str = "configuration/webhooks";

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

/// The stream subscription for a Kafka destination (printed for the tenant's configuration).
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

/// `--kafka`: prints the subscription.
pub fn print_kafka(sub: &Subscription) -> Result<ExitCode, CliError> {
    let doc = stream_subscription(sub).map_err(CliError::Usage)?;
    println!("{}", output::json(&doc));
    Ok(ExitCode::SUCCESS)
}

/// Registers (or updates) the webhook; `--dry-run` prints the registration, its secret redacted.
pub async fn register(
    g: &Global,
    args: &ConfigureArgs,
    sub: &Subscription,
) -> Result<ExitCode, CliError> {
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
    let body = registration(sub, &url, signing.as_ref().map(|s| s.expose_secret()));
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
    let http = mdm_sync_adapters::http::client();
    let token = reltio_token(&http, args, Some(&secrets)).await?;
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
    fn kafka_needs_a_stream_section() {
        let s = Subscription::parse("").unwrap();
        assert!(stream_subscription(&s).is_err());
    }
}
