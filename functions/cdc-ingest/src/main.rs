//! cdc-ingest: applies database change records (DMS on Kinesis; Debezium, GoldenGate or DMS on Kafka) to Reltio.

use cdc_ingest::{handle_event, CdcEvent, Config, Deps};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use mdm_sync_adapters::config::ProcessEnv;
use mdm_sync_adapters::retry::work_deadline;
use mdm_sync_adapters::retry::RetryPolicy;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("{e}"))?;
    let sdk = mdm_sync_adapters::aws::sdk_config(mdm_sync_adapters::aws::batch_timeouts()).await;
    let http = mdm_sync_adapters::http::client();
    let deps = Deps::new(config, &sdk, http, RetryPolicy::default())
        .inspect_err(|e| tracing::error!("{e}"))?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CdcEvent>| async move {
        let deadline = work_deadline(event.context.deadline);
        Ok::<_, Error>(handle_event(deps, event.payload, deadline).await)
    }))
    .await
}
