//! `mdm-sync reltio configure --destination sns|sqs`, the binary: the destination printed from the stack's outputs,
//! sent through a wiremock tenant management API (token, listing, POST), nothing sent on `--dry-run`, and the exit
//! codes of a missing output or a bad command line.

use serde_json::{json, Value};
use std::process::{Command, Output};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOPIC: &str = "arn:aws:sns:us-east-1:111122223333:mdm-sync-prod-EventTopic-AbC123";
const ROLE: &str = "arn:aws:iam::111122223333:role/mdm-sync-prod-ReltioStreamingRole-Q1w2E3";
const CLIENT_SECRET: &str = "sentinel-client-secret-5f1c";
const TOKEN: &str = "sentinel-token-9a7e";

fn stack_outputs() -> Vec<String> {
    vec![
        "--set".into(),
        format!("ReltioStreamingRoleArn={ROLE}"),
        "--set".into(),
        format!("ReltioStreamingDestinationArn={TOPIC}"),
    ]
}

/// The CLI with a clean environment: no AWS, the Reltio client in the environment, `auth` as the token endpoint.
async fn cli(args: Vec<String>, auth: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mdm-sync"));
        for var in [
            "RELTIO_API_URL",
            "RELTIO_TENANT_ID",
            "RELTIO_MANAGEMENT_URL",
            "MDM_SYNC_STACK",
        ] {
            c.env_remove(var);
        }
        c.env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RELTIO_CLIENT_ID", "mdm-sync")
            .env("RELTIO_CLIENT_SECRET", CLIENT_SECRET)
            .env(
                "RELTIO_AUTH_URL",
                auth.unwrap_or_else(|| "http://127.0.0.1:9/oauth/token".into()),
            )
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(extra: &[&str]) -> Vec<String> {
    let mut a = stack_outputs();
    a.extend(["reltio", "configure"].map(String::from));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn printed(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_destination_is_printed_from_the_stack_outputs() {
    let doc = printed(&cli(args(&["--destination", "sns"]), None).await);
    let d = &doc["destination"];
    assert_eq!(
        (&d["type"], &d["name"], &d["roleArn"], &d["awsAccountId"]),
        (
            &json!("topic"),
            &json!(TOPIC),
            &json!(ROLE),
            &json!("111122223333")
        )
    );
    assert_eq!(
        (&d["format"], &d["payloadType"]),
        (&json!("JSON_ZIP_BASE64"), &json!("SNAPSHOT"))
    );
    assert_eq!(doc["streamingConfig"]["messaging"]["destinations"][0], *d);
    assert!(doc["streamingConfig"]["JMSEventsFilteringFields"]
        .as_array()
        .unwrap()
        .contains(&json!("objectVersion")));
    let plain = printed(
        &cli(
            args(&[
                "--destination",
                "sns",
                "--format",
                "json",
                "--payload",
                "snapshot-with-delta",
            ]),
            None,
        )
        .await,
    );
    assert_eq!(
        (
            &plain["destination"]["format"],
            &plain["destination"]["payloadType"]
        ),
        (&json!("JSON"), &json!("SNAPSHOT_WITH_DELTA"))
    );
}

#[tokio::test]
async fn a_stack_without_the_role_is_a_configuration_error() {
    let out = cli(
        vec![
            "--set".into(),
            format!("EventTopicArn={TOPIC}"),
            "reltio".into(),
            "configure".into(),
            "--destination".into(),
            "sns".into(),
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ReltioStreamingPrincipalArns"));
    // The other destination than the role's.
    let out = cli(args(&["--destination", "sqs"]), None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--destination sns"));
}

#[tokio::test]
async fn a_bad_command_line_is_a_usage_error() {
    for (bad, said) in [
        (vec!["--destination", "sns", "--send"], "--management-url"),
        (
            vec!["--format", "json", "--subscription", "/dev/null"],
            "--destination",
        ),
        (vec!["--destination", "sns", "--kafka"], "--kafka"),
        (vec!["--destination", "sns", "--format", "xml"], "xml"),
        (vec![], "--subscription FILE is required"),
    ] {
        let out = cli(args(&bad), None).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{bad:?}: {stderr}");
    }
}

async fn reltio() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": TOKEN, "expires_in": 3600})),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn send_posts_the_destination_once() {
    let server = reltio().await;
    let send = |server: &MockServer| {
        let mut a = vec!["--json".to_owned()];
        a.extend(args(&[
            "--destination",
            "sns",
            "--send",
            "--management-url",
            &server.uri(),
            "--tenant",
            "T1",
        ]));
        (a, Some(format!("{}/oauth/token", server.uri())))
    };
    let expected =
        printed(&cli(args(&["--destination", "sns"]), None).await)["destination"].clone();
    Mock::given(method("GET"))
        .and(path("/tenants/T1/messaging/destinations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tenants/T1/messaging/destinations"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    let (a, auth) = send(&server);
    let out = cli(a, auth).await;
    assert_eq!(
        printed(&out),
        json!({"destination": TOPIC, "tenant": "T1", "result": "created"})
    );
    // Again: the tenant lists it now, nothing is sent.
    Mock::given(method("GET"))
        .and(path("/tenants/T1/messaging/destinations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([expected])))
        .mount(&server)
        .await;
    let (a, auth) = send(&server);
    let again = cli(a, auth).await;
    assert_eq!(printed(&again)["result"], "unchanged");
    for o in [&out, &again] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !all.contains(CLIENT_SECRET) && !all.contains(TOKEN),
            "{all}"
        );
    }
}

#[tokio::test]
async fn dry_run_sends_nothing() {
    let server = reltio().await;
    let doc = printed(
        &cli(
            args(&[
                "--destination",
                "sns",
                "--send",
                "--dry-run",
                "--management-url",
                &server.uri(),
                "--reltio-url",
                "https://test.reltio.com/reltio/api/T9",
            ]),
            Some(format!("{}/oauth/token", server.uri())),
        )
        .await,
    );
    assert_eq!(doc["request"]["method"], "POST");
    assert_eq!(
        doc["request"]["url"],
        format!("{}/tenants/T9/messaging/destinations", server.uri())
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
