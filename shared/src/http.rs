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
