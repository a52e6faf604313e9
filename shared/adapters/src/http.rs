//! The HTTP client the API adapters share: rustls, pooled connections reused across invocations.

use std::time::Duration;

/// One client per container: connections and TLS sessions survive between invocations.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("the TLS backend initialises")
}

/// An error and its sources joined with ": ", for a log line or a DLQ reason. reqwest's chain names the URL
/// and the failure kind, never a request or response body.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
