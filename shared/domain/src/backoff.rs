//! Retry backoff for queue messages reported for another delivery: how long each one stays invisible (a
//! timeout that doubles with the message's receive count), and the port that sets it on the queue.
//!
//! Without it, a message reported as a batch item failure comes back only when the queue's whole visibility
//! timeout has passed (sized for the function's timeout, minutes). A transient failure (a throttled call, a
//! locked row, a lease held by a concurrent invocation) usually clears in seconds.

use crate::settle::{Ordering, Settlement};

/// The longest visibility timeout SQS accepts (12 hours).
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;

/// Exponential backoff on the receive count: `base × 2^(receive count − 1)` seconds, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: u32,
    max: u32,
}

impl Backoff {
    /// A base of 0 disables the backoff (messages wait the queue's own visibility timeout). Both values are
    /// clamped to SQS's limit, and `max` is raised to `base` when below it: callers validate settings first.
    pub fn new(base_seconds: u32, max_seconds: u32) -> Backoff {
        let base = base_seconds.min(MAX_VISIBILITY_SECONDS);
        Backoff {
            base,
            max: max_seconds.clamp(base, MAX_VISIBILITY_SECONDS),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.base > 0
    }

    pub fn base_seconds(&self) -> u32 {
        self.base
    }

    pub fn max_seconds(&self) -> u32 {
        self.max
    }

    /// The visibility timeout for a message received `receive_count` times (SQS's `ApproximateReceiveCount`,
    /// 1 on the first delivery; 0 counts as 1), or `None` when the backoff is disabled.
    pub fn seconds(&self, receive_count: u32) -> Option<u32> {
        if !self.is_enabled() {
            return None;
        }
        // base ≤ 2^16 and the factor ≤ 2^32, so the product fits in a u64.
        let doublings = receive_count.saturating_sub(1).min(32);
        let seconds = u64::from(self.base) << doublings;
        Some(seconds.min(u64::from(self.max)) as u32)
    }
}

/// A reported message's new visibility timeout: `index` is its position in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelay {
    pub index: usize,
    pub seconds: u32,
}

/// The visibility timeout of every record `settlement` reports for another delivery (pure), ascending by
/// position. `receive_counts[i]` is record `i`'s receive count (a missing one counts as 1).
///
/// Records settled on their own ([`Ordering::Independent`]) back off on their own receive count. In a sequence
/// (an SQS FIFO batch), every reported record takes the timeout of its sequence's first reported record: the
/// later ones are reported only because that one failed, and the queue releases none of a message group while
/// any of its messages is still invisible ("inflight messages block delivery of available messages within the
/// same message group": AWS knowledge center, sqs-fifo-messages-not-returned), so one timeout for all keeps the
/// group from waiting on the slowest.
pub fn retry_delays(
    settlement: &Settlement,
    ordering: Ordering<'_>,
    receive_counts: &[u32],
    backoff: Backoff,
) -> Vec<RetryDelay> {
    let count = |i: usize| receive_counts.get(i).copied().unwrap_or(1);
    settlement
        .retry
        .iter()
        .filter_map(|&index| {
            let head = match ordering.lane(index) {
                None => index,
                Some(lane) => settlement
                    .checkpoints
                    .iter()
                    .copied()
                    .find(|&c| ordering.lane(c) == Some(lane))
                    .unwrap_or(index),
            };
            let seconds = backoff.seconds(count(head))?;
            Some(RetryDelay { index, seconds })
        })
        .collect()
}

/// One message's new visibility timeout on its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityChange {
    /// The receipt handle of this delivery (it authorises changes to the message: never logged).
    pub receipt_handle: String,
    pub seconds: u32,
}

/// A change that was not made: `index` is its position in the input; `reason` names the cause without the
/// receipt handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityFailure {
    pub index: usize,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::settle::settle;

    #[test]
    fn the_timeout_doubles_with_each_receive_up_to_the_cap() {
        let b = Backoff::new(2, 60);
        let seconds: Vec<Option<u32>> = (1..=7).map(|n| b.seconds(n)).collect();
        assert_eq!(
            seconds,
            [2, 4, 8, 16, 32, 60, 60].map(Some).to_vec(),
            "receives 1..=7"
        );
        // SQS never reports 0, but a missing or odd count must not shorten the first backoff.
        assert_eq!(b.seconds(0), Some(2));
        // Far past any maxReceiveCount: no overflow, the cap holds.
        assert_eq!(b.seconds(u32::MAX), Some(60));
        assert_eq!(Backoff::new(43_200, 43_200).seconds(u32::MAX), Some(43_200));
    }

    #[test]
    fn a_zero_base_disables_the_backoff() {
        let b = Backoff::new(0, 60);
        assert!(!b.is_enabled());
        assert_eq!(b.seconds(1), None);
        assert_eq!(b.seconds(5), None);
    }

    #[test]
    fn settings_out_of_range_are_clamped_rather_than_trusted() {
        let b = Backoff::new(10, 3);
        assert_eq!((b.base_seconds(), b.max_seconds()), (10, 10));
        let b = Backoff::new(50_000, 90_000);
        assert_eq!((b.base_seconds(), b.max_seconds()), (43_200, 43_200));
        assert_eq!(b.seconds(1), Some(43_200));
    }

    fn outcomes(codes: &str) -> Vec<Outcome> {
        codes
            .chars()
            .map(|c| match c {
                'd' => Outcome::Done,
                'p' => Outcome::Permanent("bad".into()),
                't' => Outcome::Transient("down".into()),
                other => panic!("unknown code {other}"),
            })
            .collect()
    }

    fn delays(codes: &str, ordering: Ordering<'_>, counts: &[u32]) -> Vec<(usize, u32)> {
        let settlement = settle(&outcomes(codes), ordering);
        retry_delays(&settlement, ordering, counts, Backoff::new(2, 60))
            .into_iter()
            .map(|d| (d.index, d.seconds))
            .collect()
    }

    #[test]
    fn on_a_standard_queue_only_transient_failures_back_off_each_on_its_own_count() {
        assert_eq!(
            delays("dtptt", Ordering::Independent, &[1, 1, 3, 3, 9]),
            vec![(1, 2), (3, 8), (4, 60)]
        );
        // Nothing reported, nothing changed.
        assert!(delays("dpd", Ordering::Independent, &[1, 2, 3]).is_empty());
    }

    #[test]
    fn in_a_sequence_the_followers_take_the_first_failures_timeout() {
        // FIFO: the transient failure at 1 reports 1..=4; the done and permanent ones after it follow it.
        assert_eq!(
            delays("dtdpd", Ordering::Sequence, &[5, 3, 1, 1, 4]),
            vec![(1, 8), (2, 8), (3, 8), (4, 8)]
        );
        // Kafka-like lanes: each lane follows its own first failure.
        let lanes = [0, 1, 0, 1];
        assert_eq!(
            delays("tdpt", Ordering::Lanes(&lanes), &[2, 1, 1, 3]),
            vec![(0, 4), (2, 4), (3, 8)]
        );
    }

    #[test]
    fn a_missing_receive_count_counts_as_the_first_delivery() {
        assert_eq!(
            delays("tt", Ordering::Independent, &[4]),
            vec![(0, 16), (1, 2)]
        );
    }

    #[test]
    fn a_disabled_backoff_changes_nothing() {
        let settlement = settle(&outcomes("tt"), Ordering::Independent);
        assert!(retry_delays(
            &settlement,
            Ordering::Independent,
            &[1, 1],
            Backoff::new(0, 0)
        )
        .is_empty());
    }
}
