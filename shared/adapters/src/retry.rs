//! Retry timing shared by the API clients: exponential backoff with jitter, bounded by a deadline.

pub use mdm_sync_domain::port::remaining;
use rand::Rng;
use std::time::Duration;
use std::time::Instant;

/// How long to wait between attempts. Delays double from `base` up to `cap`; each wait is drawn from
/// `[d/2, d]` ("equal jitter") so that many containers retrying at once spread out.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// Reltio's guidance for 502/503/504 is backoff of roughly 1, 3, 7, 15 s; inside one Lambda invocation the
    /// deadline usually ends it sooner, and the event source retries the rest.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
            max_attempts: 6,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (so `attempt` 1 is the wait after the first failure).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let full = exp.min(self.cap);
        let half = full / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// The wait before the next attempt, or `None` when no attempt is left or the wait (the server's
    /// `Retry-After` if it sent one) would not end before `deadline`.
    pub fn next_wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        deadline: Instant,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
        (Instant::now() + wait < deadline).then_some(wait)
    }
}

/// The time an invocation may spend on API calls: Lambda's deadline (epoch ms) less a margin kept for
/// dead-lettering and answering (a fifth of what is left, at most two seconds).
pub fn work_deadline(lambda_deadline_ms: u64) -> Instant {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let left = Duration::from_millis(lambda_deadline_ms.saturating_sub(now_ms));
    let margin = (left / 5).min(Duration::from_secs(2));
    Instant::now() + left - margin
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the APIs we call and is ignored).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stays_within_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_attempts: 10,
        };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = p.backoff(3);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            assert!(p.backoff(30) <= Duration::from_millis(1000));
        }
    }

    #[tokio::test]
    async fn no_wait_is_offered_past_the_deadline_or_the_attempt_limit() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(10),
            max_attempts: 3,
        };
        let far = Instant::now() + Duration::from_secs(60);
        assert!(p.next_wait(1, None, far).is_some());
        assert!(p.next_wait(3, None, far).is_none());
        let near = Instant::now() + Duration::from_secs(2);
        assert!(p.next_wait(1, Some(Duration::from_secs(5)), near).is_none());
        assert_eq!(
            p.next_wait(1, Some(Duration::from_secs(1)), near),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(parse_retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[tokio::test]
    async fn the_work_deadline_keeps_a_margin_for_answering_and_never_lies_in_the_past() {
        let now_ms = chrono::Utc::now().timestamp_millis() as u64;
        let left = remaining(work_deadline(now_ms + 10_000));
        assert!(left <= Duration::from_secs(8), "2 s margin: {left:?}");
        assert!(left > Duration::from_millis(7_500), "{left:?}");
        let short = remaining(work_deadline(now_ms + 1_000));
        assert!(
            short <= Duration::from_millis(800),
            "a fifth kept: {short:?}"
        );
        assert_eq!(
            remaining(work_deadline(now_ms.saturating_sub(5_000))),
            Duration::ZERO
        );
    }
}
