//! stream-consumer: Reltio's change stream on Kafka → the SQS event queue.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use mdm_sync_adapters::config::ProcessEnv;
use mdm_sync_adapters::kafka::KafkaEvent;
use mdm_sync_adapters::retry::work_deadline;
use stream_consumer::{handle, Config, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&ProcessEnv).inspect_err(|e| tracing::error!("{e}"))?;
    let sdk = mdm_sync_adapters::aws::sdk_config(mdm_sync_adapters::aws::batch_timeouts()).await;
    let deps = Deps::new(config, &sdk);
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KafkaEvent>| async move {
            let deadline = work_deadline(event.context.deadline);
            Ok::<_, Error>(handle(deps, event.payload, deadline).await)
        },
    ))
    .await
}
