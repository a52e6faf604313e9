//! `mdm-sync reltio configure`: the Reltio side of the integration, from the stack's outputs and one subscription
//! file. Three paths, as a user picks them (README, "Connect Reltio"):
//!
//! - `--destination sns|sqs` ([`destination`]): Reltio's own stream, an external-queue destination writing to the
//!   stack's event topic or event queue through the stack's streaming role. Prints the destination entry and the
//!   tenant's `streamingConfig` fragment; `--send` posts it through the tenant management API.
//! - the webhook registration ([`webhook`]), for an integration hub that relays Reltio's events signed.
//! - `--kafka`: the subscription for a Kafka destination, for re-streaming.
//!
//! `--dry-run` prints the JSON (secrets redacted) and sends nothing.

mod destination;
mod management;
mod subscription;
mod webhook;

use crate::error::CliError;
use crate::Global;
use clap::{Args, Subcommand};
use destination::{Format, Kind, Payload};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use subscription::Subscription;

const DEFAULT_AUTH_URL: &str = "https://auth.reltio.com/oauth/token";

#[derive(Subcommand)]
pub enum ReltioCommand {
    /// Prints (or sends) Reltio's streaming destination for the stack (`--destination sns|sqs`); or registers the
    /// webhook of an integration hub; or prints the Kafka stream subscription (`--kafka`).
    Configure(ConfigureArgs),
}

#[derive(Args)]
pub struct ConfigureArgs {
    /// The subscription file (TOML): entity_types, event_types, attributes, include_relationships, [webhook],
    /// [stream]. Required for the webhook and --kafka; with --destination its defaults apply without it.
    #[arg(long)]
    subscription: Option<PathBuf>,
    /// Reltio's own stream into the stack: the external-queue destination for the event topic (sns) or the event
    /// queue (sqs), written through the stack's streaming role (ReltioStreamingRoleArn).
    #[arg(long, value_enum, conflicts_with_all = ["kafka", "webhook_url", "webhook_secret_id"])]
    destination: Option<Kind>,
    /// The destination's message format: json-zip-base64 (gzip, then base64; the Console's default) or json.
    #[arg(long, value_enum, default_value_t = Format::JsonZipBase64, requires = "destination")]
    format: Format,
    /// The destination's payload: snapshot (the object), snapshot-with-delta (adds uri and deltas) or deltas (uri
    /// and deltas, no object: the consumers fetch each entity).
    #[arg(long, value_enum, default_value_t = Payload::Snapshot, requires = "destination")]
    payload: Payload,
    /// The destination's `provider` (unverified: ask Reltio Support for the value of role-based AWS streaming).
    #[arg(long, default_value = "aws", requires = "destination")]
    provider: String,
    /// Posts the destination to the tenant management API (`--management-url`) instead of only printing it.
    #[arg(long, requires_all = ["destination", "management_url"])]
    send: bool,
    /// The tenant management API's base URL (Reltio documents the path, not the host: ask Reltio Support).
    #[arg(long, env = "RELTIO_MANAGEMENT_URL")]
    management_url: Option<String>,
    /// The tenant id (default: the last path segment of the tenant's API URL).
    #[arg(long, env = "RELTIO_TENANT_ID")]
    tenant: Option<String>,
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

pub async fn run(g: &Global, command: ReltioCommand) -> Result<ExitCode, CliError> {
    let ReltioCommand::Configure(args) = command;
    let sub = match &args.subscription {
        Some(path) => {
            let text = String::from_utf8(crate::read_input(path)?)
                .map_err(|_| CliError::Usage("the subscription file is not UTF-8".into()))?;
            Subscription::parse(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None if args.destination.is_some() => {
            Subscription::parse("").map_err(|e| CliError::Usage(format!("defaults: {e}")))?
        }
        None => {
            return Err(CliError::Usage(
                "--subscription FILE is required for the webhook and --kafka".into(),
            ))
        }
    };
    if let Some(kind) = args.destination {
        return destination::configure(g, &args, &sub, kind).await;
    }
    if args.kafka {
        return webhook::print_kafka(&sub);
    }
    webhook::register(g, &args, &sub).await
}

/// A Reltio token for the configuration calls: the client from `--reltio-secret-id` (read with `secrets`), else
/// RELTIO_CLIENT_ID / RELTIO_CLIENT_SECRET.
async fn reltio_token(
    http: &reqwest::Client,
    args: &ConfigureArgs,
    secrets: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<SecretString, CliError> {
    let (client_id, client_secret) = match (&args.reltio_secret_id, secrets) {
        (Some(id), Some(secrets)) => {
            let v = secret_json(secrets, id).await?;
            let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            match (field("client_id"), field("client_secret")) {
                (Some(a), Some(b)) => (a, SecretString::from(b)),
                _ => {
                    return Err(CliError::Config(format!(
                        "secret {id} holds no client_id and client_secret"
                    )))
                }
            }
        }
        _ => match (
            std::env::var("RELTIO_CLIENT_ID"),
            std::env::var("RELTIO_CLIENT_SECRET"),
        ) {
            (Ok(a), Ok(b)) => (a, SecretString::from(b)),
            _ => return Err(CliError::Config(
                "Reltio credentials: --reltio-secret-id, or RELTIO_CLIENT_ID and RELTIO_CLIENT_SECRET"
                    .into(),
            )),
        },
    };
    token(http, &args.auth_url, &client_id, &client_secret).await
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
