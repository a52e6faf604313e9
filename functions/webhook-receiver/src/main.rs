//! webhook-receiver: signed Reltio events over HTTPS → SQS event queue.

use lambda_http::{service_fn, Adapter, Error, Request};
use mdm_sync_adapters::config::ProcessEnv;
use webhook_receiver::guard::SafeConversion;
use webhook_receiver::{handle, Config, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("{e}"))?;
    let sdk = mdm_sync_adapters::aws::request_sdk_config().await;
    let deps = Deps::new(config, &sdk);
    let deps = &deps;
    let handler = service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(handle(deps, req).await)
    });
    // `lambda_http::run(handler)` is `lambda_runtime::run(Adapter::from(handler))`; the guard in between keeps
    // malformed events from reaching lambda_http's panicking conversion.
    lambda_http::lambda_runtime::run(SafeConversion::new(Adapter::from(handler))).await
}
