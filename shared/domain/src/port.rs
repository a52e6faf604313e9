//! What the ports share: the deadline every call is bounded by, and how a call through a port failed.

use std::time::{Duration, Instant};

/// The instant by which an invocation's calls must be done (Lambda's deadline less a margin for answering).
pub type Deadline = Instant;

/// Time left before `deadline`, zero when past it.
pub fn remaining(deadline: Deadline) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A call through a port that failed as a whole, classified by the adapter: the domain only needs to know
/// whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// May succeed later (unavailable, throttled, timed out, out of time, credentials unreadable).
    #[error("{0}")]
    Transient(String),
    /// The request itself was refused as invalid: sending it again fails the same way. A request carrying
    /// several items is split to find the item at fault.
    #[error("{0}")]
    Rejected(String),
}

impl PortError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient(_))
    }
}

/// Sends `items` through `send` as one request; a request the far side refuses as a whole
/// ([`PortError::Rejected`]) is split in halves and each half sent again, until the item at fault stands alone,
/// so that one invalid item does not fail its neighbours. `send` takes the items and gives them back with one
/// result per item (a missing result counts as a transient failure: nothing says the item was applied).
/// Returns each item with its result, in input order, and the number of requests made.
pub async fn isolate_rejections<'a, T, R>(
    items: Vec<T>,
    send: impl Fn(Vec<T>) -> futures::future::BoxFuture<'a, (Vec<T>, Result<Vec<R>, PortError>)>,
) -> (Vec<(T, Result<R, PortError>)>, usize) {
    let mut done: Vec<(usize, T, Result<R, PortError>)> = Vec::with_capacity(items.len());
    let mut pending: Vec<Vec<(usize, T)>> = vec![items.into_iter().enumerate().collect()];
    let mut requests = 0;
    while let Some(batch) = pending.pop() {
        if batch.is_empty() {
            continue;
        }
        let (positions, items): (Vec<usize>, Vec<T>) = batch.into_iter().unzip();
        requests += 1;
        let (items, result) = send(items).await;
        match result {
            Err(PortError::Rejected(_)) if items.len() > 1 => {
                let mut first: Vec<(usize, T)> = positions.into_iter().zip(items).collect();
                let second = first.split_off(first.len() / 2);
                // Popped last-in first: the first half goes out first.
                pending.push(second);
                pending.push(first);
            }
            Err(e) => {
                for (p, item) in positions.into_iter().zip(items) {
                    done.push((p, item, Err(e.clone())));
                }
            }
            Ok(results) => {
                let mut results = results.into_iter();
                for (p, item) in positions.into_iter().zip(items) {
                    let r = results.next().ok_or_else(|| {
                        PortError::Transient("no result was returned for this item".into())
                    });
                    done.push((p, item, r));
                }
            }
        }
    }
    done.sort_by_key(|(p, _, _)| *p);
    (done.into_iter().map(|(_, t, r)| (t, r)).collect(), requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn a_rejected_request_is_split_until_the_bad_item_stands_alone() {
        let sent = std::sync::Mutex::new(Vec::new());
        let (results, requests) = block_on(isolate_rejections(
            vec!["a", "b", "bad", "c", "d"],
            |items: Vec<&str>| {
                sent.lock().unwrap().push(items.join(""));
                Box::pin(async move {
                    let result = if items.contains(&"bad") {
                        Err(PortError::Rejected("400".into()))
                    } else {
                        Ok(items.iter().map(|i| i.to_uppercase()).collect())
                    };
                    (items, result)
                })
            },
        ));
        let got: Vec<(&str, Result<String, PortError>)> = results;
        assert_eq!(
            got,
            vec![
                ("a", Ok("A".into())),
                ("b", Ok("B".into())),
                ("bad", Err(PortError::Rejected("400".into()))),
                ("c", Ok("C".into())),
                ("d", Ok("D".into())),
            ]
        );
        // [a b bad c d] → [a b] + [bad c d] → [bad] + [c d]
        assert_eq!(
            *sent.lock().unwrap(),
            vec!["abbadcd", "ab", "badcd", "bad", "cd"]
        );
        assert_eq!(requests, 5);
    }

    #[test]
    fn a_transient_failure_or_a_short_answer_is_not_split() {
        let (results, requests) = block_on(isolate_rejections(vec![1, 2, 3], |items: Vec<i32>| {
            Box::pin(async move {
                let r = if items.len() == 3 {
                    Ok(vec![10])
                } else {
                    Err(PortError::Transient("down".into()))
                };
                (items, r)
            })
        }));
        assert_eq!(requests, 1);
        assert_eq!(results[0].1, Ok(10));
        assert!(results[1..]
            .iter()
            .all(|(_, r)| r.as_ref().is_err_and(PortError::is_transient)));
    }
}
