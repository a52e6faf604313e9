//! The retry discipline of the AWS batch calls (SQS `SendMessageBatch`, SNS `PublishBatch`, Firehose
//! `PutRecordBatch`, Kinesis `PutRecords`): one call takes many entries and answers for each. The entries that
//! failed for a passing reason are sent again with [`RetryPolicy`]'s backoff while attempts and the deadline allow;
//! what is still not sent comes back with its reason, never dropped.

use super::RetryPolicy;
use mdm_sync_domain::queue::SendFailure;
use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

/// Which entries a retry sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Only the failed ones: the entries are independent (messages to a queue or topic, records to Firehose).
    Failed,
    /// Everything from the first failed entry on, the entries after it that did land included, so that the
    /// entries land in their given order (records of one key on a stream). What lands twice is a duplicate,
    /// which the consumers' at-least-once handling absorbs.
    FromFirstFailure,
}

/// An entry a batch call did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    /// The entry, as the caller numbered it.
    pub index: usize,
    pub reason: String,
    /// Sending it again may succeed (throttled, an internal error, the call failed as a whole). A sender fault
    /// (an invalid attribute, an entry too large) fails the same way every time: not retried.
    pub retryable: bool,
}

impl EntryFailure {
    /// The failure of a queue or topic batch entry, from its `Id` (the entry's index as text), error code,
    /// message and sender-fault flag. `None` for an id this client never sent.
    pub fn of_entry(
        id: &str,
        code: &str,
        message: Option<&str>,
        sender_fault: bool,
    ) -> Option<Self> {
        Some(EntryFailure {
            index: id.parse().ok()?,
            reason: format!("{code}: {}", message.unwrap_or("no message")),
            retryable: !sender_fault,
        })
    }
}

/// The failures of a call whose answer lists one result per entry in request order (Firehose, Kinesis): the
/// entries of `sent` whose result carries an error (`Some(reason)`).
pub fn failed_in_order(
    sent: &[usize],
    errors: impl IntoIterator<Item = Option<String>>,
) -> Vec<EntryFailure> {
    sent.iter()
        .zip(errors)
        .filter_map(|(&index, error)| {
            error.map(|reason| EntryFailure {
                index,
                reason,
                retryable: true,
            })
        })
        .collect()
}

impl From<EntryFailure> for SendFailure {
    fn from(f: EntryFailure) -> SendFailure {
        SendFailure {
            index: f.index,
            reason: f.reason,
        }
    }
}

/// Sends `entries` (the caller's indexes, ascending) through `call` until every one is taken, or the attempts or the
/// deadline run out; returns the entries not taken, in index order, each with the last reason it failed for.
///
/// `call` sends the entries it is given and answers the ones that failed; `Err(reason)` is a call that failed as a
/// whole (every entry failed, retryable). An entry is given up once it has failed `policy.max_attempts` times, at
/// once when its failure is not retryable, and when the wait before the next attempt would not end before
/// `deadline`. The first call is always made; the calls themselves are bounded by the SDK's timeouts.
///
/// With [`Resend::FromFirstFailure`] the first failed entry holds the rest back: its failures count, and what
/// comes back is everything from it on (the entries after it that had landed, landed out of order; they carry
/// the first one's reason).
pub async fn send_batch<C, F>(
    policy: &RetryPolicy,
    deadline: Instant,
    resend: Resend,
    entries: Vec<usize>,
    mut call: C,
) -> Vec<EntryFailure>
where
    C: FnMut(Vec<usize>) -> F,
    F: Future<Output = Result<Vec<EntryFailure>, String>>,
{
    let mut pending = entries;
    // How often each entry has failed so far.
    let mut failures: HashMap<usize, u32> = HashMap::new();
    let mut unsent = Vec::new();
    while !pending.is_empty() {
        let mut failed = answered(call(pending.clone()).await, &pending);
        for index in failed.keys() {
            *failures.entry(*index).or_default() += 1;
        }
        let worth_retrying =
            |f: &EntryFailure| f.retryable && failures[&f.index] < policy.max_attempts;
        let retry: Vec<EntryFailure> = match resend {
            Resend::Failed => {
                let (retry, given_up): (Vec<_>, Vec<_>) = pending
                    .iter()
                    .filter_map(|index| failed.remove(index))
                    .partition(worth_retrying);
                unsent.extend(given_up);
                retry
            }
            Resend::FromFirstFailure => {
                let Some(first) = pending.iter().position(|i| failed.contains_key(i)) else {
                    break;
                };
                let head = failed[&pending[first]].clone();
                let rest: Vec<EntryFailure> = pending[first..]
                    .iter()
                    .map(|&index| {
                        failed.remove(&index).unwrap_or_else(|| EntryFailure {
                            index,
                            ..head.clone()
                        })
                    })
                    .collect();
                if !worth_retrying(&head) {
                    unsent.extend(rest);
                    break;
                }
                rest
            }
        };
        let Some(next) = retry.first() else {
            break;
        };
        // The entries sent again have failed equally often (unordered: in every call so far), or are held back
        // by the first (ordered): its count is the attempt.
        let attempt = failures[&next.index];
        match policy.next_wait(attempt, None, deadline) {
            Some(wait) => {
                tracing::debug!(
                    entries = retry.len(),
                    attempt,
                    ?wait,
                    "sending failed batch entries again"
                );
                tokio::time::sleep(wait).await;
                pending = retry.iter().map(|f| f.index).collect();
            }
            None => {
                unsent.extend(retry);
                break;
            }
        }
    }
    unsent.sort_by_key(|f| f.index);
    unsent
}

/// The failures of one call among `sent`, by index: a call failed as a whole failed every entry (retryable); an
/// answer naming an entry not sent in this call is not one of ours.
fn answered(
    answer: Result<Vec<EntryFailure>, String>,
    sent: &[usize],
) -> HashMap<usize, EntryFailure> {
    let failed: Vec<EntryFailure> = match answer {
        Ok(failed) => failed,
        Err(reason) => sent
            .iter()
            .map(|&index| EntryFailure {
                index,
                reason: reason.clone(),
                retryable: true,
            })
            .collect(),
    };
    failed
        .into_iter()
        .filter(|f| sent.contains(&f.index))
        .map(|f| (f.index, f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_attempts,
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    fn fails(index: usize, reason: &str) -> EntryFailure {
        EntryFailure {
            index,
            reason: reason.into(),
            retryable: true,
        }
    }

    /// Runs the helper over `script` (one answer per call; every entry taken once the script ends) and returns
    /// what was not sent and the entries of each call.
    async fn run(
        policy: RetryPolicy,
        deadline: Instant,
        resend: Resend,
        entries: Vec<usize>,
        script: Vec<Result<Vec<EntryFailure>, String>>,
    ) -> (Vec<EntryFailure>, Vec<Vec<usize>>) {
        let script = Mutex::new(script.into_iter());
        let calls = Mutex::new(Vec::new());
        let unsent = send_batch(&policy, deadline, resend, entries, |sent| {
            calls.lock().unwrap().push(sent);
            let answer = script.lock().unwrap().next().unwrap_or(Ok(Vec::new()));
            async move { answer }
        })
        .await;
        (unsent, calls.into_inner().unwrap())
    }

    #[tokio::test]
    async fn only_the_failed_entries_are_sent_again() {
        let script = vec![Ok(vec![
            fails(1, "InternalError: x"),
            fails(3, "Throttled: y"),
        ])];
        let (unsent, calls) = run(quick(3), far(), Resend::Failed, vec![0, 1, 2, 3], script).await;
        assert!(unsent.is_empty(), "{unsent:?}");
        assert_eq!(calls, vec![vec![0, 1, 2, 3], vec![1, 3]]);
    }

    #[tokio::test]
    async fn a_sender_fault_is_given_up_at_once_while_the_rest_are_retried() {
        let bad = EntryFailure {
            index: 0,
            reason: "InvalidAttributeValue: no".into(),
            retryable: false,
        };
        let script = vec![Ok(vec![bad.clone(), fails(2, "InternalError: x")])];
        let (unsent, calls) = run(quick(3), far(), Resend::Failed, vec![0, 1, 2], script).await;
        assert_eq!(unsent, vec![bad]);
        assert_eq!(calls, vec![vec![0, 1, 2], vec![2]]);
    }

    #[tokio::test]
    async fn an_entry_that_keeps_failing_is_returned_with_its_last_reason_after_the_attempts() {
        let script = (1..=5)
            .map(|n| Ok(vec![fails(1, &format!("InternalError: {n}"))]))
            .collect();
        let (unsent, calls) = run(quick(3), far(), Resend::Failed, vec![0, 1], script).await;
        assert_eq!(unsent, vec![fails(1, "InternalError: 3")]);
        assert_eq!(calls, vec![vec![0, 1], vec![1], vec![1]]);
    }

    #[tokio::test]
    async fn a_call_that_fails_as_a_whole_fails_every_entry_and_is_retried() {
        let script = vec![
            Err("connection reset".to_owned()),
            Err("timed out".to_owned()),
        ];
        let (unsent, calls) = run(quick(2), far(), Resend::Failed, vec![0, 1], script).await;
        assert_eq!(unsent, vec![fails(0, "timed out"), fails(1, "timed out")]);
        assert_eq!(calls.len(), 2);
        let script = vec![Err("connection reset".to_owned())];
        let (unsent, _) = run(quick(2), far(), Resend::Failed, vec![0, 1], script).await;
        assert!(unsent.is_empty());
    }

    #[tokio::test]
    async fn no_retry_starts_when_its_wait_would_end_past_the_deadline() {
        let slow = RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(2),
            max_attempts: 5,
        };
        let started = Instant::now();
        let script = vec![Ok(vec![fails(0, "Throttled: x")])];
        let deadline = started + Duration::from_millis(500);
        let (unsent, calls) = run(slow, deadline, Resend::Failed, vec![0, 1], script).await;
        assert_eq!(unsent, vec![fails(0, "Throttled: x")]);
        assert_eq!(calls.len(), 1);
        assert!(started.elapsed() < Duration::from_millis(500));
        // The waits grow with the attempts, jittered within RetryPolicy's bounds.
        let policy = RetryPolicy {
            base: Duration::from_millis(40),
            cap: Duration::from_millis(80),
            max_attempts: 3,
        };
        let started = Instant::now();
        let script = vec![Ok(vec![fails(0, "a")]), Ok(vec![fails(0, "b")])];
        run(policy, far(), Resend::Failed, vec![0], script).await;
        // 20-40 ms, then 40-80 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_answer_about_an_entry_not_sent_is_ignored() {
        let script = vec![Ok(vec![fails(7, "InternalError: x")])];
        let (unsent, calls) = run(quick(3), far(), Resend::Failed, vec![0, 1], script).await;
        assert!(unsent.is_empty());
        assert_eq!(calls.len(), 1);
    }

    #[tokio::test]
    async fn an_ordered_batch_is_sent_again_from_its_first_failed_entry_on() {
        let script = vec![
            Ok(vec![fails(1, "Throughput"), fails(3, "Throughput")]),
            Ok(vec![fails(2, "InternalFailure")]),
        ];
        let (unsent, calls) = run(
            quick(5),
            far(),
            Resend::FromFirstFailure,
            vec![0, 1, 2, 3],
            script,
        )
        .await;
        assert!(unsent.is_empty(), "{unsent:?}");
        assert_eq!(calls, vec![vec![0, 1, 2, 3], vec![1, 2, 3], vec![2, 3]]);
    }

    #[tokio::test]
    async fn an_ordered_batch_whose_first_failure_keeps_failing_returns_everything_from_it_on() {
        let script = vec![Ok(vec![fails(1, "Throughput")]); 5];
        let (unsent, calls) = run(
            quick(3),
            far(),
            Resend::FromFirstFailure,
            vec![0, 1, 2],
            script,
        )
        .await;
        assert_eq!(calls, vec![vec![0, 1, 2], vec![1, 2], vec![1, 2]]);
        // Entry 2 landed each time, out of order: it is named with the reason that held it back.
        assert_eq!(unsent, vec![fails(1, "Throughput"), fails(2, "Throughput")]);
        // A failure not worth retrying ends an ordered batch at once.
        let refused = EntryFailure {
            index: 0,
            reason: "Invalid".into(),
            retryable: false,
        };
        let script = vec![Ok(vec![refused.clone()])];
        let (unsent, calls) = run(
            quick(3),
            far(),
            Resend::FromFirstFailure,
            vec![0, 1],
            script,
        )
        .await;
        assert_eq!(calls.len(), 1);
        assert_eq!(unsent[0], refused);
        assert_eq!(unsent.len(), 2);
    }

    #[test]
    fn entry_failures_are_read_from_ids_and_from_answers_in_order() {
        assert_eq!(
            EntryFailure::of_entry("4", "InternalError", None, false),
            Some(fails(4, "InternalError: no message"))
        );
        assert!(
            !EntryFailure::of_entry("4", "X", Some("m"), true)
                .unwrap()
                .retryable
        );
        assert_eq!(EntryFailure::of_entry("x", "X", None, false), None);
        let failed = failed_in_order(&[5, 6, 7], [None, Some("Throttled".to_owned()), None]);
        assert_eq!(failed, vec![fails(6, "Throttled")]);
    }
}
