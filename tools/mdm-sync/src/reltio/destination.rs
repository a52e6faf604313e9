//! `mdm-sync reltio configure --destination sns|sqs`: Reltio's own stream into the stack, an external-queue
//! destination. Built from the stack's outputs (the topic or queue ARN the streaming role may write to, the role's
//! ARN, the account from the ARN) and the subscription file (the type filter); printed as the destination object
//! and the tenant's `streamingConfig` fragment, or, with `--send`, posted to the tenant management API.
//!
//! Field names and values are docs/reference.md's ("Reltio streaming to SNS/SQS"). **Unverified against a live
//! tenant**, and kept in this file only: the `provider` value for role-based AWS streaming, the name of the role
//! field ([`ROLE_FIELD`]), the per-destination filtering fields, the management API's host and how it answers a
//! listing or a duplicate ([`super::management`]).

use super::management::{destinations_path, send};
use super::subscription::Subscription;
use super::{reltio_token, ConfigureArgs};
use crate::error::CliError;
use crate::output;
use crate::stack::{self, Stack};
use crate::Global;
use clap::ValueEnum;
use serde_json::{json, Value};
use std::process::ExitCode;

/// Which of the stack's stores Reltio writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// The event topic (EventTopicArn): every consumer reads it.
    Sns,
    /// The event queue (EventQueueUrl): crm-updater alone.
    Sqs,
}

impl Kind {
    /// The destination's `type`.
    fn reltio_type(self) -> &'static str {
        match self {
            Kind::Sns => "topic",
            Kind::Sqs => "queue",
        }
    }
    fn service(self) -> &'static str {
        match self {
            Kind::Sns => "sns",
            Kind::Sqs => "sqs",
        }
    }
}

/// The destination's `format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    /// UTF-8 JSON, gzipped, then base64 (the Console's default).
    JsonZipBase64,
}

impl Format {
    fn reltio(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::JsonZipBase64 => "JSON_ZIP_BASE64",
        }
    }
}

/// The destination's `payloadType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Payload {
    Snapshot,
    SnapshotWithDelta,
    Deltas,
}

impl Payload {
    fn reltio(self) -> &'static str {
        match self {
            Payload::Snapshot => "SNAPSHOT",
            Payload::SnapshotWithDelta => "SNAPSHOT_WITH_DELTA",
            Payload::Deltas => "DELTAS",
        }
    }
}

/// The stack outputs read here.
pub const ROLE_OUTPUT: &str = stack::RELTIO_STREAMING_ROLE;
pub const DESTINATION_OUTPUT: &str = stack::RELTIO_STREAMING_DESTINATION;

/// The destination's field for the role Reltio assumes (the name is unverified: the Console asks for a role ARN).
pub const ROLE_FIELD: &str = "roleArn";

/// The object fields the consumers read, and `objectVersion`: Reltio sends it (a message attribute) only when it is
/// listed, and the consumers order each entity's events by it.
const FILTERING_FIELDS: [&str; 7] = [
    "uri",
    "type",
    "createdTime",
    "updatedTime",
    "attributes",
    "crosswalks",
    "objectVersion",
];
/// A relationship's ends, with `include_relationships`.
const RELATION_FIELDS: [&str; 2] = ["startObject", "endObject"];

/// An ARN's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    pub resource: String,
}

impl Arn {
    pub fn parse(text: &str) -> Option<Arn> {
        let mut parts = text.trim().splitn(6, ':');
        let (prefix, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        (prefix == "arn" && partition.starts_with("aws") && account_ok && !resource.is_empty())
            .then(|| Arn {
                partition: partition.to_owned(),
                service: service.to_owned(),
                region: region.to_owned(),
                account: account.to_owned(),
                resource: resource.to_owned(),
            })
    }
}

/// `https://sqs.<region>.amazonaws.com[.cn]/<account>/<name>` (or the legacy `<region>.queue.amazonaws.com`) → the
/// queue's ARN; an emulator's URL (`http://127.0.0.1:<port>/<account>/<name>`) takes `region`, the SDK's.
pub fn queue_arn(url: &str, region: Option<&str>) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .or_else(|| {
            host.split_once(".queue.amazonaws.com")
                .map(|(region, _)| region)
        })
        .or(region)?;
    let mut path = u.path_segments()?;
    let (account, name) = (path.next()?, path.next()?);
    let partition = if host.ends_with(".amazonaws.com.cn") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    let arn = format!("arn:{partition}:sqs:{region}:{account}:{name}");
    Arn::parse(&arn).map(|_| arn)
}

/// Where Reltio writes, and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    pub arn: Arn,
    pub arn_text: String,
    pub role_arn: String,
}

/// The stack's streaming destination and role: `ReltioStreamingDestinationArn` (or, when only given by hand, the
/// event topic or queue; `region` for a queue URL that names none), `ReltioStreamingRoleArn`.
pub fn target(stack: &Stack, kind: Kind, region: Option<&str>) -> Result<Target, CliError> {
    let role_arn = stack.get(ROLE_OUTPUT).ok_or_else(|| {
        CliError::Config(format!(
            "the stack has no {ROLE_OUTPUT} output: deploy it with ReltioStreamingPrincipalArns and \
             ReltioStreamingExternalId (README, Connect Reltio), or give --set {ROLE_OUTPUT}=ARN"
        ))
    })?;
    let role = Arn::parse(role_arn)
        .filter(|a| a.service == "iam" && a.resource.starts_with("role/"))
        .ok_or_else(|| CliError::Config(format!("{ROLE_OUTPUT} {role_arn} is not a role ARN")))?;
    if role.resource.trim_start_matches("role/").contains('/') {
        return Err(CliError::Config(format!(
            "{ROLE_OUTPUT} {role_arn} has a path: Reltio cannot assume such a role (arn:aws:iam::ACCOUNT:role/NAME)"
        )));
    }
    let arn_text = match (stack.get(DESTINATION_OUTPUT), kind) {
        (Some(arn), _) => arn.to_owned(),
        (None, Kind::Sns) => stack.require(stack::EVENT_TOPIC)?.to_owned(),
        (None, Kind::Sqs) => {
            let url = stack.require(stack::EVENT_QUEUE)?;
            queue_arn(url, region).ok_or_else(|| {
                CliError::Config(format!(
                    "{} {url} names no region (AWS_REGION) or account: give --set {DESTINATION_OUTPUT}=ARN",
                    stack::EVENT_QUEUE
                ))
            })?
        }
    };
    let arn = Arn::parse(&arn_text)
        .filter(|a| a.service == "sns" || a.service == "sqs")
        .ok_or_else(|| {
            CliError::Config(format!("{arn_text} is not an SNS topic or SQS queue ARN"))
        })?;
    if arn.service != kind.service() {
        let (flag, store) = if arn.service == "sns" {
            ("sns", "topic")
        } else {
            ("sqs", "queue")
        };
        return Err(CliError::Config(format!(
            "the stack's streaming role writes to the {store} {arn_text}: use --destination {flag}, or redeploy \
             with ReltioStreamingDestination={}",
            kind.reltio_type()
        )));
    }
    Ok(Target {
        kind,
        arn,
        arn_text,
        role_arn: role_arn.trim().to_owned(),
    })
}

/// `JMSEventsFilteringFields`: what the consumers read, `objectVersion` always.
pub fn filtering_fields(sub: &Subscription) -> Vec<&'static str> {
    let mut fields = FILTERING_FIELDS.to_vec();
    if sub.include_relationships {
        fields.extend(RELATION_FIELDS);
    }
    fields
}

/// The destination object: one entry of `streamingConfig.messaging.destinations`, and the body of the management
/// API's POST.
pub fn destination(
    sub: &Subscription,
    target: &Target,
    format: Format,
    payload: Payload,
    provider: &str,
) -> Value {
    json!({
        "provider": provider,
        "type": target.kind.reltio_type(),
        "name": target.arn_text,
        "enabled": true,
        "awsAccountId": target.arn.account,
        ROLE_FIELD: target.role_arn,
        "format": format.reltio(),
        "payloadType": payload.reltio(),
        "typeFilter": sub.stream_type_filter(),
        "JMSEventsFilteringFields": filtering_fields(sub),
    })
}

/// The tenant's `streamingConfig` fragment with this destination: merge it into the tenant's physical
/// configuration, keeping its other destinations.
pub fn streaming_config(sub: &Subscription, destination: &Value) -> Value {
    let mut config = json!({
        "streamingEnabled": true,
        // An event over SNS/SQS's 256 KB arrives as its URI with exceededQueueSizeLimit: the consumers fetch it.
        "largeObjectsSupport": true,
        "JMSEventsFilteringFields": filtering_fields(sub),
        "messaging": {"destinations": [destination]},
    });
    if sub.include_relationships {
        config["RelationEventsFilteringFields"] = json!(filtering_fields(sub));
    }
    json!({ "streamingConfig": config })
}

/// What the user should know about this destination, always.
fn notes(payload: Payload) -> Vec<String> {
    let mut notes = vec![
        "Enter `destination` in the Reltio Console (Tenant Management > External queues > Add configuration: \
         Amazon SNS/SQS, authenticate using the role `role.arn` with the external id Reltio Support gave you), or \
         merge `streamingConfig` into the tenant's physical configuration (keep its other destinations), or send it \
         with --send --management-url URL."
            .to_owned(),
        "Ordering relies on objectVersion in JMSEventsFilteringFields (tenant level): keep it there.".to_owned(),
        "Unverified against a live tenant: the provider value, the roleArn field's name, the per-destination \
         JMSEventsFilteringFields, the management API's host and its answer to a duplicate (docs/reference.md, \
         Reltio streaming to SNS/SQS)."
            .to_owned(),
    ];
    if payload == Payload::Deltas {
        notes.push(
            "payloadType DELTAS carries no object: the consumers fetch each entity from Reltio (one read per event)."
                .to_owned(),
        );
    }
    notes
}

/// What is likely to fail with this target (printed on stderr too).
fn warnings(target: &Target) -> Vec<String> {
    let mut warnings = Vec::new();
    if target.arn.resource.ends_with(".fifo") {
        warnings.push(format!(
            "{} is FIFO: Reltio's streaming is not FIFO and is not documented to send the MessageGroupId a FIFO {} \
             requires (unverified): prefer a standard event queue and topic (EventQueueType=standard).",
            target.arn_text,
            target.kind.reltio_type()
        ));
    }
    let role_account = Arn::parse(&target.role_arn).map(|a| a.account);
    if role_account.as_deref() != Some(target.arn.account.as_str()) {
        warnings.push(format!(
            "The role is not in the destination's account {}: it can write there only where a resource policy \
             lets it.",
            target.arn.account
        ));
    }
    warnings
}

/// The printed document: the destination, the tenant fragment, the role, and what to do with them.
pub fn document(
    sub: &Subscription,
    target: &Target,
    destination: Value,
    payload: Payload,
) -> Value {
    json!({
        "streamingConfig": streaming_config(sub, &destination)["streamingConfig"],
        "destination": destination,
        "role": {"arn": target.role_arn,
                 "externalId": "ReltioStreamingExternalId: the id Reltio Support gave with its ARNs (not printed)"},
        "notes": notes(payload).into_iter().chain(warnings(target)).collect::<Vec<_>>(),
    })
}

/// The tenant id: `--tenant`, else the last path segment of the tenant's API URL
/// (`https://<env>.reltio.com/reltio/api/<tenant>`).
fn tenant_id(args: &ConfigureArgs) -> Result<String, CliError> {
    let id = match args.tenant.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.to_owned(),
        None => args
            .reltio_url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| u.path_segments()?.rfind(|s| !s.is_empty()).map(str::to_owned))
            .ok_or_else(|| {
                CliError::Config(
                    "the tenant id: --tenant, or the tenant's API URL (--reltio-url / RELTIO_API_URL)".into(),
                )
            })?,
    };
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(CliError::Usage(format!(
            "tenant id {id:?}: letters, digits, - and _ only"
        )));
    }
    Ok(id)
}

pub async fn configure(
    g: &Global,
    args: &ConfigureArgs,
    sub: &Subscription,
    kind: Kind,
) -> Result<ExitCode, CliError> {
    // The AWS configuration only where it is used (the stack's outputs, a secret): printing from --set outputs
    // needs no AWS at all.
    let sdk = if g.stack.is_some() || args.reltio_secret_id.is_some() {
        stack::sdk().await
    } else {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    };
    let stack = Stack::load(g, &sdk).await?;
    let region = sdk.region().map(|r| r.to_string()).or_else(|| {
        std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
    });
    let target = target(&stack, kind, region.as_deref())?;
    let dest = destination(sub, &target, args.format, args.payload, &args.provider);
    for warning in warnings(&target) {
        eprintln!("warning: {warning}");
    }
    if !args.send || args.dry_run {
        let mut doc = document(sub, &target, dest, args.payload);
        if args.send {
            let url = args.management_url.as_deref().unwrap_or_default();
            doc["request"] = json!({"method": "POST",
                                    "url": format!("{}{}", url.trim_end_matches('/'), destinations_path(&tenant_id(args)?))});
        }
        println!("{}", output::json(&doc));
        return Ok(ExitCode::SUCCESS);
    }
    let management_url = args.management_url.as_deref().unwrap_or_default();
    if !mdm_sync_adapters::config::is_secure_url(management_url) {
        return Err(CliError::Usage(
            "--management-url must be an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)".into(),
        ));
    }
    let tenant = tenant_id(args)?;
    let http = mdm_sync_adapters::http::client();
    let secrets = args
        .reltio_secret_id
        .as_ref()
        .map(|_| aws_sdk_secretsmanager::Client::new(&sdk));
    let token = reltio_token(&http, args, secrets.as_ref()).await?;
    let sent = send(&http, management_url, &tenant, &token, &dest).await?;
    let doc = json!({"destination": target.arn_text, "tenant": tenant, "result": sent.word()});
    println!(
        "{}",
        if g.json {
            output::json(&doc)
        } else {
            format!(
                "destination {} {} in tenant {tenant}",
                target.arn_text,
                sent.word()
            )
        }
    );
    eprintln!(
        "The tenant's streamingConfig.JMSEventsFilteringFields must list objectVersion (ordering relies on it): \
         run without --send to print the fragment."
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
