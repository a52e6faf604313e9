//! The AWS SDK configuration every function loads: the environment's (which honours `AWS_ENDPOINT_URL`, how local
//! runs reach an emulator) with explicit timeouts, so that no SDK call can outlast the invocation's deadline.

use std::time::Duration;

/// Timeouts for the queue-fed functions, whose invocations run for up to minutes: an attempt is cut at 3 s and a
/// call with its retries at 8 s, well inside the margin [`crate::retry::work_deadline`] keeps. (The SDK's own
/// defaults set no operation timeout at all: a stalled DynamoDB or SQS call could hold the invocation until Lambda
/// killed it.)
pub fn batch_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// The environment's SDK configuration with `timeouts`.
pub async fn sdk_config(timeouts: aws_config::timeout::TimeoutConfig) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_call_of_a_queue_fed_function_is_bounded() {
        let t = batch_timeouts();
        // Inside the 2 s margin work_deadline keeps is not possible for a whole call; inside a 60 s invocation it is.
        assert!(t
            .operation_timeout()
            .is_some_and(|d| d <= Duration::from_secs(10)));
        assert!(t
            .operation_attempt_timeout()
            .is_some_and(|d| d < t.operation_timeout().unwrap()));
        assert!(t.connect_timeout().is_some());
        assert!(t.read_timeout().is_some());
    }
}
