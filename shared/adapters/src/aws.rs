//! The AWS SDK configuration every function loads: the environment's (which honours `AWS_ENDPOINT_URL`, how local
//! runs reach an emulator) with explicit timeouts, so that no SDK call can outlast the invocation's deadline: one
//! set for the queue-fed functions, one for a function that answers a waiting caller.

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

/// Timeouts for a function that answers a caller who is waiting (webhook-receiver: senders give up after 5 s),
/// which keep one request well under that even when AWS is slow: each call attempt is cut at 1 s, each call (with
/// its one retry, [`request_retries`]) at 2 s; the handler's own budget bounds the total.
pub fn request_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(1))
        .operation_timeout(Duration::from_secs(2))
        .build()
}

/// Two attempts per SDK call for a function that answers a waiting caller; the batch sends retry failed entries
/// on top (`retry::batch`).
pub fn request_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(2)
}

/// The environment's SDK configuration with `timeouts` (and the SDK's standard retries).
pub async fn sdk_config(timeouts: aws_config::timeout::TimeoutConfig) -> aws_config::SdkConfig {
    defaults(timeouts).load().await
}

/// The environment's SDK configuration for a function that answers a waiting caller: [`request_timeouts`] and
/// [`request_retries`].
pub async fn request_sdk_config() -> aws_config::SdkConfig {
    defaults(request_timeouts())
        .retry_config(request_retries())
        .load()
        .await
}

fn defaults(timeouts: aws_config::timeout::TimeoutConfig) -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts)
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

    #[test]
    fn a_waiting_callers_sdk_calls_end_well_inside_five_seconds() {
        let t = request_timeouts();
        assert_eq!(t.connect_timeout(), Some(Duration::from_millis(500)));
        assert_eq!(t.read_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(t.operation_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(request_retries().max_attempts(), 2);
    }
}
