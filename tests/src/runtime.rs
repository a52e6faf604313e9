//! A Lambda Runtime API stand-in (wiremock on 127.0.0.1) that hands a function binary one event and takes its
//! answer, with the binary's stdout and stderr kept for the test to read.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// What one invocation of a binary gave.
pub struct Invocation {
    /// The function's answer (`None` when it answered nothing within 30 s).
    pub answer: Option<Value>,
    /// Everything it wrote to stdout and stderr.
    pub logs: String,
}

/// The environment Lambda gives every function (credentials for the local emulator).
pub fn lambda_env(runtime: &MockServer, function: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime.address().to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs `binary` with `env` (on top of [`lambda_env`]) for one invocation carrying `event`, then stops it.
pub async fn invoke_once(
    binary: &str,
    function: &str,
    env: &[(&str, String)],
    event: &Value,
) -> Invocation {
    let runtime = MockServer::start().await;
    let deadline_ms = chrono_now_ms() + 30_000;
    Mock::given(method("GET"))
        .and(path(NEXT))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(event)
                .insert_header("lambda-runtime-aws-request-id", "req-1")
                .insert_header("lambda-runtime-deadline-ms", deadline_ms.to_string())
                .insert_header(
                    "lambda-runtime-invoked-function-arn",
                    format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
                ),
        )
        .up_to_n_times(1)
        .mount(&runtime)
        .await;
    // Later polls wait, as the real Runtime API does between invocations.
    Mock::given(method("GET"))
        .and(path(NEXT))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(120)))
        .mount(&runtime)
        .await;
    Mock::given(method("POST"))
        .and(path("/2018-06-01/runtime/invocation/req-1/response"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&runtime)
        .await;
    // Tests of one binary run in parallel threads of one process, often within the same millisecond: the
    // counter keeps each invocation's log file its own (a shared one was truncated and removed by the other).
    static NEXT_LOG: AtomicUsize = AtomicUsize::new(0);
    let logs = std::env::temp_dir().join(format!(
        "mdm-sync-{function}-{}-{}.log",
        std::process::id(),
        NEXT_LOG.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&logs).expect("log file");
    let mut child = Command::new(binary)
        .envs(lambda_env(&runtime, function))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("the binary starts");
    let mut answer = None;
    for _ in 0..300 {
        let requests = runtime.received_requests().await.unwrap_or_default();
        if let Some(r) = requests
            .iter()
            .find(|r| r.url.path().ends_with("/response"))
        {
            answer = serde_json::from_slice(&r.body).ok();
            break;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break; // it stopped (at start-up, say) without answering
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&logs).unwrap_or_default();
    let _ = std::fs::remove_file(&logs);
    Invocation { answer, logs: text }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Panics naming the first line of `logs` that holds any of `sentinels`.
pub fn assert_no_sentinel(logs: &str, sentinels: &[&str]) {
    for sentinel in sentinels {
        if let Some(line) = logs.lines().find(|l| l.contains(sentinel)) {
            panic!("{sentinel} reached the logs: {line}");
        }
    }
}
