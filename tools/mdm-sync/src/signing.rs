//! `mdm-sync sign` and `mdm-sync verify`: webhook payloads under both signature schemes, with the receiver's own
//! signing and verification code (so a header that `verify` passes is one the receiver passes). Secrets come from a
//! flag or the environment and are never printed.

use crate::error::CliError;
use crate::output;
use crate::Global;
use clap::{Args, ValueEnum};
use mdm_sync_domain::webhook::signature::{
    RELTIO_SIGNATURE, RELTIO_TIMESTAMP, STANDARD_ID, STANDARD_SIGNATURE, STANDARD_TIMESTAMP,
};
use mdm_sync_domain::webhook::{
    sign_reltio, sign_standard, verify as verify_request, RequestHeaders, VerifyOptions,
    WebhookSecrets,
};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum Scheme {
    /// `X-Reltio-Signature: sha256=<hex>` over `<timestamp>.<body>` (or the body alone).
    Reltio,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    Standard,
}

#[derive(Args)]
pub struct SignArgs {
    /// The body to sign (`-`: standard input), signed byte for byte.
    file: PathBuf,
    /// The webhook secret (`whsec_<base64>` for Standard Webhooks).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long, value_enum, default_value_t = Scheme::Reltio)]
    scheme: Scheme,
    /// Unix seconds to sign (default: now).
    #[arg(long, conflicts_with = "no_timestamp")]
    timestamp: Option<i64>,
    /// Reltio scheme: sign the body alone (no X-Reltio-Timestamp).
    #[arg(long)]
    no_timestamp: bool,
    /// Standard Webhooks' `webhook-id` (default msg_<timestamp>).
    #[arg(long)]
    id: Option<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The body as received (`-`: standard input).
    file: PathBuf,
    /// A secret to accept (repeatable: current and previous, as during a rotation).
    #[arg(
        long = "secret",
        env = "WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ',',
        required = true
    )]
    secrets: Vec<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Allowed clock difference for a signed timestamp, in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: u64,
    /// Refuse a Reltio signature without a signed timestamp.
    #[arg(long)]
    require_timestamp: bool,
    /// The clock to verify against, unix seconds (default: now).
    #[arg(long)]
    now: Option<i64>,
}

pub fn sign(g: &Global, args: SignArgs) -> Result<ExitCode, CliError> {
    let body = crate::read_input(&args.file)?;
    let now = args
        .timestamp
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    let headers: Vec<(&str, String)> = match args.scheme {
        Scheme::Reltio => {
            let ts = (!args.no_timestamp).then_some(now);
            let mut h = vec![("X-Reltio-Signature", sign_reltio(&args.secret, ts, &body))];
            if let Some(ts) = ts {
                h.push(("X-Reltio-Timestamp", ts.to_string()));
            }
            h
        }
        Scheme::Standard => {
            let id = args.id.clone().unwrap_or_else(|| format!("msg_{now}"));
            let signature = sign_standard(&args.secret, &id, now, &body).ok_or_else(|| {
                CliError::Usage("a Standard Webhooks secret is whsec_ followed by base64".into())
            })?;
            vec![
                ("webhook-id", id),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", signature),
            ]
        }
    };
    if g.json {
        let map: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        println!("{}", output::json(&serde_json::Value::Object(map)));
    } else {
        for (k, v) in headers {
            println!("{k}: {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(g: &Global, args: VerifyArgs) -> Result<ExitCode, CliError> {
    let body = crate::read_input(&args.file)?;
    let secrets = WebhookSecrets::new(args.secrets.iter().map(String::as_str))
        .ok_or_else(|| CliError::Usage("no usable secret given".into()))?;
    let mut headers = RequestHeaders::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| CliError::Usage(format!("--header {h}: expected 'Name: value'")))?;
        headers.insert(k.trim(), v.trim());
    }
    let known = [
        RELTIO_SIGNATURE,
        RELTIO_TIMESTAMP,
        STANDARD_ID,
        STANDARD_TIMESTAMP,
        STANDARD_SIGNATURE,
    ];
    if !args
        .headers
        .iter()
        .any(|h| known.iter().any(|k| h.to_ascii_lowercase().starts_with(k)))
    {
        eprintln!("note: no signature header given (-H 'X-Reltio-Signature: ...' or the webhook-* headers)");
    }
    let now = args.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    let options = VerifyOptions {
        tolerance_seconds: args.tolerance,
        require_timestamp: args.require_timestamp,
    };
    let result = verify_request(&headers, &body, &secrets, now, options);
    let doc = match &result {
        Ok(v) => {
            json!({"valid": true, "scheme": format!("{:?}", v.scheme), "timestamp": v.timestamp,
                        "webhookId": v.webhook_id})
        }
        Err(r) => json!({"valid": false, "reason": r.to_string()}),
    };
    if g.json {
        println!("{}", output::json(&doc));
    } else {
        match &result {
            Ok(v) => println!("valid ({:?})", v.scheme),
            Err(r) => println!("invalid: {r}"),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
