//! The one retry discipline of every HTTP API client: exponential backoff with jitter, `Retry-After`, one
//! re-authentication on a refused credential, all bounded by the invocation's deadline. A client says what its
//! errors mean through [`Retryable`]; [`send_with_retries`] does the rest. The AWS batch calls, which answer per
//! entry, resend what failed through [`batch::send_batch`] on the same policy. A change of retry policy goes here.

pub mod batch;

use rand::Rng;
use std::future::Future;
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

/// What the send loop needs to know of a client's error.
pub trait Retryable: std::fmt::Display {
    /// Worth another attempt inside this invocation (throttled, unavailable, timed out, connection lost).
    fn retry_now(&self) -> bool;
    /// How long the server asked to wait (`Retry-After`), when it said.
    fn retry_after(&self) -> Option<Duration>;
    /// The credentials were refused: forget the token or session and try once more.
    fn is_unauthorized(&self) -> bool;
    /// The error to return when attempts remain but the deadline leaves no time for the next wait.
    fn out_of_time(self) -> Self;
}

/// Runs `attempt` until it succeeds, fails for good, or the attempts or the deadline run out. A refused
/// credential calls `forget_credentials` once and tries again (that retry does not count as an attempt).
pub async fn send_with_retries<T, E, A, AF, F, FF>(
    policy: &RetryPolicy,
    deadline: Instant,
    target: &str,
    mut attempt: A,
    mut forget_credentials: F,
) -> Result<T, E>
where
    E: Retryable,
    A: FnMut() -> AF,
    AF: Future<Output = Result<T, E>>,
    F: FnMut() -> FF,
    FF: Future<Output = ()>,
{
    let mut attempts = 0;
    let mut reauthenticated = false;
    loop {
        attempts += 1;
        let error = match attempt().await {
            Ok(response) => return Ok(response),
            Err(e) if e.is_unauthorized() && !reauthenticated => {
                reauthenticated = true;
                forget_credentials().await;
                attempts -= 1;
                continue;
            }
            Err(e) if e.retry_now() => e,
            Err(e) => return Err(e),
        };
        match policy.next_wait(attempts, error.retry_after(), deadline) {
            Some(wait) => {
                tracing::debug!(target, attempt = attempts, ?wait, error = %error, "retrying");
                tokio::time::sleep(wait).await;
            }
            None if attempts >= policy.max_attempts => return Err(error),
            None => return Err(error.out_of_time()),
        }
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
    use mdm_sync_domain::ports::remaining;

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

    /// A scripted client error for the send loop.
    #[derive(Debug, Clone, PartialEq)]
    enum Scripted {
        Unavailable(Option<Duration>),
        Unauthorized,
        Invalid,
        OutOfTime(String),
    }

    impl std::fmt::Display for Scripted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl Retryable for Scripted {
        fn retry_now(&self) -> bool {
            matches!(self, Scripted::Unavailable(_))
        }
        fn retry_after(&self) -> Option<Duration> {
            match self {
                Scripted::Unavailable(d) => *d,
                _ => None,
            }
        }
        fn is_unauthorized(&self) -> bool {
            *self == Scripted::Unauthorized
        }
        fn out_of_time(self) -> Self {
            Scripted::OutOfTime(self.to_string())
        }
    }

    /// Runs the loop over `script` (one answer per attempt, then success) and returns the result, the attempts
    /// made and how often the credentials were forgotten.
    async fn run(
        policy: RetryPolicy,
        deadline: Instant,
        script: Vec<Scripted>,
    ) -> (Result<u32, Scripted>, usize, usize) {
        let script = std::sync::Mutex::new(script.into_iter());
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let forgotten = std::sync::atomic::AtomicUsize::new(0);
        let result = send_with_retries(
            &policy,
            deadline,
            "test",
            || {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let next = script.lock().unwrap().next();
                async move { next.map_or(Ok(n as u32), Err) }
            },
            || {
                forgotten.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {}
            },
        )
        .await;
        (result, calls.into_inner(), forgotten.into_inner())
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_attempts,
        }
    }

    #[tokio::test]
    async fn the_send_loop_retries_what_is_worth_it_and_reauthenticates_once() {
        let far = Instant::now() + Duration::from_secs(30);
        let down = Scripted::Unavailable(None);
        // Two unavailable answers, then success.
        let (r, calls, _) = run(quick(3), far, vec![down.clone(), down.clone()]).await;
        assert_eq!((r, calls), (Ok(2), 3));
        // Out of attempts: the last error.
        let (r, calls, _) = run(quick(2), far, vec![down.clone(); 5]).await;
        assert_eq!((r, calls), (Err(down.clone()), 2));
        // A refused credential: forgotten once, tried again without spending an attempt; a second refusal ends it.
        let (r, calls, forgotten) = run(quick(1), far, vec![Scripted::Unauthorized]).await;
        assert_eq!((r, calls, forgotten), (Ok(1), 2, 1));
        let twice = vec![Scripted::Unauthorized, Scripted::Unauthorized];
        let (r, _, forgotten) = run(quick(3), far, twice).await;
        assert_eq!((r, forgotten), (Err(Scripted::Unauthorized), 1));
        // A final error is not retried.
        let (r, calls, _) = run(quick(5), far, vec![Scripted::Invalid]).await;
        assert_eq!((r, calls), (Err(Scripted::Invalid), 1));
    }

    #[tokio::test]
    async fn the_send_loop_honours_retry_after_and_the_deadline() {
        let started = Instant::now();
        let wait = Scripted::Unavailable(Some(Duration::from_millis(300)));
        let (r, _, _) = run(
            quick(3),
            started + Duration::from_secs(5),
            vec![wait.clone()],
        )
        .await;
        assert_eq!(r, Ok(1));
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "waited as asked"
        );
        // The server asks for longer than the invocation has left: give up now, as out of time.
        let long = Scripted::Unavailable(Some(Duration::from_secs(60)));
        let (r, calls, _) = run(
            quick(3),
            Instant::now() + Duration::from_secs(1),
            vec![long],
        )
        .await;
        assert!(matches!(r, Err(Scripted::OutOfTime(_))), "{r:?}");
        assert_eq!(calls, 1);
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
