//! Signs a webhook body for manual testing, printing the headers, a curl command, or a complete Lambda event
//! (API Gateway REST v1 or HTTP API v2, as `sam local generate-event` shapes them) for `sam local invoke` /
//! `cargo lambda invoke`.
//!
//! ```text
//! cargo run -p webhook-receiver --example sign -- --secret mdm-sync-test-webhook-secret body.json
//! cargo run -p webhook-receiver --example sign -- --secret S --format apigw-v1 --no-timestamp body.json > ev.json
//! cargo run -p webhook-receiver --example sign -- --secret whsec_... --scheme standard --format curl \
//!     --url https://abc.execute-api.us-east-1.amazonaws.com/webhook body.json
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mdm_sync_domain::webhook::{sign_reltio, sign_standard};
use serde_json::{json, Value};
use std::io::Read;
use std::process::ExitCode;

const USAGE: &str = "usage: sign --secret SECRET [--scheme reltio|standard] [--timestamp UNIX|--no-timestamp]
            [--id ID] [--format headers|curl|apigw-v1|apigw-v2] [--url URL] FILE|-

  --secret        the webhook secret (or set WEBHOOK_SECRET); whsec_<base64> for Standard Webhooks
  --scheme        reltio: X-Reltio-Signature (+ X-Reltio-Timestamp); standard: webhook-id/-timestamp/-signature
  --timestamp     unix seconds to sign (default: now); --no-timestamp signs the body alone (reltio only;
                  use it for event files that must stay valid, since signed timestamps expire)
  --id            X-Reltio-Event-Id (reltio, optional) or webhook-id (standard, default msg_<time>)
  --format        headers (default), curl, apigw-v1 (REST API event), apigw-v2 (HTTP API event)
  --url           the endpoint for --format curl (default https://localhost/webhook)";

const REST_V1: &str = include_str!("../tests/fixtures/apigw-rest-v1.json");
const HTTP_V2: &str = include_str!("../tests/fixtures/apigw-http-v2.json");

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let mut secret = std::env::var("WEBHOOK_SECRET").ok();
    let mut scheme = "reltio".to_owned();
    let mut timestamp = Some(chrono::Utc::now().timestamp());
    let mut id = None;
    let mut format = "headers".to_owned();
    let mut url = "https://localhost/webhook".to_owned();
    let mut file = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--secret" => secret = Some(value("--secret")?),
            "--scheme" => scheme = value("--scheme")?,
            "--timestamp" => {
                timestamp = Some(
                    value("--timestamp")?
                        .parse()
                        .map_err(|_| "--timestamp takes unix seconds".to_owned())?,
                )
            }
            "--no-timestamp" => timestamp = None,
            "--id" => id = Some(value("--id")?),
            "--format" => format = value("--format")?,
            "--url" => url = value("--url")?,
            "-h" | "--help" => return Ok(USAGE.to_owned()),
            other if file.is_none() && (other == "-" || !other.starts_with("--")) => {
                file = Some(other.to_owned())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let secret = secret.ok_or("--secret (or WEBHOOK_SECRET) is required")?;
    let file = file.ok_or("the body file is required (- for stdin)")?;
    let body = if file == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| e.to_string())?;
        b
    } else {
        std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?
    };

    let mut headers: Vec<(String, String)> = Vec::new();
    match scheme.as_str() {
        "reltio" => {
            headers.push((
                "X-Reltio-Signature".into(),
                sign_reltio(&secret, timestamp, &body),
            ));
            if let Some(ts) = timestamp {
                headers.push(("X-Reltio-Timestamp".into(), ts.to_string()));
            }
            if let Some(id) = id {
                headers.push(("X-Reltio-Event-Id".into(), id));
            }
        }
        "standard" => {
            let ts = timestamp.ok_or("Standard Webhooks always signs a timestamp")?;
            let id = id.unwrap_or_else(|| format!("msg_{ts}"));
            let sig = sign_standard(&secret, &id, ts, &body)
                .ok_or("the whsec_ secret is not valid base64")?;
            headers.push(("webhook-id".into(), id));
            headers.push(("webhook-timestamp".into(), ts.to_string()));
            headers.push(("webhook-signature".into(), sig));
        }
        other => return Err(format!("unknown scheme {other}")),
    }

    Ok(match format.as_str() {
        "headers" => headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        "curl" => {
            let mut cmd = format!("curl -sS -X POST '{url}' -H 'Content-Type: application/json'");
            for (k, v) in &headers {
                cmd.push_str(&format!(" -H '{k}: {v}'"));
            }
            cmd.push_str(&format!(" --data-binary @{file}"));
            cmd
        }
        "apigw-v1" => {
            let mut event: Value = serde_json::from_str(REST_V1).map_err(|e| e.to_string())?;
            event["body"] = json!(B64.encode(&body));
            event["isBase64Encoded"] = json!(true);
            event["headers"]["Content-Type"] = json!("application/json");
            event["multiValueHeaders"]["Content-Type"] = json!(["application/json"]);
            for (k, v) in &headers {
                event["headers"][k] = json!(v);
                event["multiValueHeaders"][k] = json!([v]);
            }
            serde_json::to_string_pretty(&event).map_err(|e| e.to_string())?
        }
        "apigw-v2" => {
            let mut event: Value = serde_json::from_str(HTTP_V2).map_err(|e| e.to_string())?;
            match std::str::from_utf8(&body) {
                Ok(text) => {
                    event["body"] = json!(text);
                    event["isBase64Encoded"] = json!(false);
                }
                Err(_) => {
                    event["body"] = json!(B64.encode(&body));
                    event["isBase64Encoded"] = json!(true);
                }
            }
            let h = event["headers"].as_object_mut().ok_or("bad template")?;
            h.clear();
            h.insert("content-type".into(), json!("application/json"));
            h.insert(
                "host".into(),
                json!("id.execute-api.us-east-1.amazonaws.com"),
            );
            h.insert("x-forwarded-proto".into(), json!("https"));
            h.insert("x-forwarded-port".into(), json!("443"));
            for (k, v) in &headers {
                h.insert(k.to_ascii_lowercase(), json!(v));
            }
            serde_json::to_string_pretty(&event).map_err(|e| e.to_string())?
        }
        other => return Err(format!("unknown format {other}")),
    })
}
