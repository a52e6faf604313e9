//! Handing events on to the event topic or queue within a deadline: what webhook-receiver and stream-consumer
//! share. Anything not sent in time is reported unsent (some of it may have gone out: the redelivery is
//! deduplicated downstream by event id).

use mdm_sync_domain::ports::{Deadline, MessageSink};
use mdm_sync_domain::queue::{OutgoingMessage, SendFailure};

/// Sends `messages` (batched, failed entries retried by the sink) within `deadline`; returns what is still unsent,
/// by input position (all of it when the deadline passed first).
pub async fn enqueue(
    sink: &dyn MessageSink,
    messages: &[OutgoingMessage],
    deadline: Deadline,
) -> Vec<SendFailure> {
    if messages.is_empty() {
        return Vec::new();
    }
    match tokio::time::timeout_at(deadline.into(), sink.send(messages)).await {
        Ok(failures) => failures,
        Err(_) => (0..messages.len())
            .map(|index| SendFailure {
                index,
                reason: "timed out".into(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::time::{Duration, Instant};

    /// Answers after `delay`, failing the messages whose body is "bad".
    struct Slow(Duration);

    impl MessageSink for Slow {
        fn send<'a>(&'a self, messages: &'a [OutgoingMessage]) -> BoxFuture<'a, Vec<SendFailure>> {
            Box::pin(async move {
                tokio::time::sleep(self.0).await;
                messages
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.body == "bad")
                    .map(|(index, _)| SendFailure {
                        index,
                        reason: "refused".into(),
                    })
                    .collect()
            })
        }
        fn is_fifo(&self) -> bool {
            false
        }
    }

    fn messages(bodies: &[&str]) -> Vec<OutgoingMessage> {
        bodies
            .iter()
            .map(|b| OutgoingMessage {
                body: (*b).into(),
                ..OutgoingMessage::default()
            })
            .collect()
    }

    #[tokio::test]
    async fn what_the_sink_refuses_or_the_deadline_cuts_off_is_reported_unsent() {
        let far = Instant::now() + Duration::from_secs(5);
        let failed = enqueue(&Slow(Duration::ZERO), &messages(&["a", "bad", "c"]), far).await;
        assert_eq!(failed.iter().map(|f| f.index).collect::<Vec<_>>(), [1]);
        let near = Instant::now() + Duration::from_millis(50);
        let failed = enqueue(&Slow(Duration::from_secs(2)), &messages(&["a", "b"]), near).await;
        assert_eq!(failed.len(), 2);
        assert!(failed.iter().all(|f| f.reason == "timed out"));
        assert!(enqueue(&Slow(Duration::ZERO), &[], far).await.is_empty());
    }
}
