//! The stack's settings: its CloudFormation outputs (queue URLs, the stream, tables), with `--set OUTPUT=VALUE`
//! overriding or adding any of them, so that the CLI works the same against AWS, the local stack, or queues given
//! by hand.

use crate::error::CliError;
use crate::Global;
use std::collections::BTreeMap;

/// The outputs of infra/template.yaml the CLI reads.
pub const CDC_DLQ: &str = "CdcDeadLetterQueueUrl";
pub const CDC_FAILURES: &str = "CdcStreamFailureQueueUrl";
pub const EVENT_QUEUE: &str = "EventQueueUrl";
pub const EVENT_DLQ: &str = "EventDeadLetterQueueUrl";
pub const CRM_DLQ: &str = "CrmDeadLetterQueueUrl";
pub const STREAM_DLQ: &str = "StreamDeadLetterQueueUrl";
pub const STREAM_FAILURES: &str = "StreamFailureQueueUrl";
pub const ANALYTICS_QUEUE: &str = "AnalyticsQueueUrl";
pub const ANALYTICS_DLQ: &str = "AnalyticsDeadLetterQueueUrl";
pub const ANALYTICS_QUEUE_DLQ: &str = "AnalyticsQueueDeadLetterQueueUrl";
pub const CDC_STREAM: &str = "CdcStreamArn";
pub const WEBHOOK_URL: &str = "WebhookUrl";
pub const EVENT_TOPIC: &str = "EventTopicArn";
/// Reltio's streaming role and the topic or queue it may write to (with ReltioStreamingPrincipalArns).
pub const RELTIO_STREAMING_ROLE: &str = "ReltioStreamingRoleArn";
pub const RELTIO_STREAMING_DESTINATION: &str = "ReltioStreamingDestinationArn";

#[derive(Debug, Clone, Default)]
pub struct Stack {
    pub outputs: BTreeMap<String, String>,
}

impl Stack {
    /// The stack's outputs (when `--stack` is given), then the `--set` overrides.
    pub async fn load(g: &Global, sdk: &aws_config::SdkConfig) -> Result<Stack, CliError> {
        let mut outputs = BTreeMap::new();
        if let Some(name) = &g.stack {
            let cfn = aws_sdk_cloudformation::Client::new(sdk);
            let out = cfn
                .describe_stacks()
                .stack_name(name)
                .send()
                .await
                .map_err(|e| {
                    CliError::Config(format!(
                        "stack {name}: {}",
                        mdm_sync_adapters::http::error_chain(&e)
                    ))
                })?;
            let stack = out
                .stacks()
                .first()
                .ok_or_else(|| CliError::Config(format!("stack {name} not found")))?;
            for o in stack.outputs() {
                if let (Some(k), Some(v)) = (o.output_key(), o.output_value()) {
                    outputs.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        for pair in &g.set {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--set {pair}: expected OUTPUT=VALUE")))?;
            outputs.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(Stack { outputs })
    }

    pub fn get(&self, output: &str) -> Option<&str> {
        self.outputs.get(output).map(String::as_str)
    }

    pub fn require(&self, output: &str) -> Result<&str, CliError> {
        self.get(output).ok_or_else(|| {
            CliError::Config(format!(
                "the stack has no {output} output: give --stack NAME, or --set {output}=VALUE"
            ))
        })
    }
}

/// The SDK configuration from the environment (`AWS_ENDPOINT_URL` reaches an emulator).
pub async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
