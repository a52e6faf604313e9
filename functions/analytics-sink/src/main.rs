//! analytics-sink: Reltio's entity change events from its subscription queue → change records on Firehose.

use analytics_sink::{handle, Config, Deps};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use mdm_sync_adapters::config::ProcessEnv;
use mdm_sync_adapters::retry::{work_deadline, RetryPolicy};
use mdm_sync_adapters::sqs_event::SqsEvent;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("{e}"))?;
    let sdk = mdm_sync_adapters::aws::sdk_config(mdm_sync_adapters::aws::batch_timeouts()).await;
    let deps =
        Deps::new(config, &sdk, RetryPolicy::default()).inspect_err(|e| tracing::error!("{e}"))?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = work_deadline(event.context.deadline);
        let handled = handle(deps, event.payload, deadline).await;
        handled.metrics.emit();
        Ok::<_, Error>(handled.response)
    }))
    .await
}
