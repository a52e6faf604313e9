//! Batch settlement, written once for every event source: from each record's outcome and the source's ordering
//! rule to what is dead-lettered now, what is reported back for another delivery, and what is acknowledged.
//!
//! The rule per source: a Kinesis shard, an SQS FIFO batch and a Kafka partition are sequences — the event
//! source redelivers everything from the first reported record on, so nothing after a sequence's first transient
//! failure is final (dead-lettering it now would dead-letter it again on the redelivery). A standard SQS batch
//! settles each message on its own. A dead letter that cannot be sent turns its record transient: nothing is
//! acknowledged before its effect (or its dead letter) is durable. So does a payload too large for its letter that
//! the letter store could not keep (the batch runner stores it before settling, and rewrites the outcome).

use crate::outcome::Outcome;
use crate::ports::MessageSink;
use crate::queue::OutgoingMessage;
use std::collections::BTreeMap;

/// The event source's ordering rule for one batch.
#[derive(Debug, Clone, Copy)]
pub enum Ordering<'a> {
    /// Every record on its own (standard SQS).
    Independent,
    /// One ordered sequence (a Kinesis shard, an SQS FIFO batch).
    Sequence,
    /// Several ordered sequences (Kafka partitions): `lanes[i]` names record `i`'s sequence.
    Lanes(&'a [usize]),
}

impl Ordering<'_> {
    /// The sequence record `record` belongs to (`None`: it is settled on its own).
    pub(crate) fn lane(&self, record: usize) -> Option<usize> {
        match self {
            Ordering::Independent => None,
            Ordering::Sequence => Some(0),
            Ordering::Lanes(lanes) => Some(lanes.get(record).copied().unwrap_or(usize::MAX)),
        }
    }
}

/// What to do with a batch, by record position (ascending everywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Permanent failures settled now: dead-letter them.
    pub dead_letter: Vec<usize>,
    /// Records to report for another delivery.
    pub retry: Vec<usize>,
    /// Per sequence, its first reported record (what a Kinesis or Kafka response names); under
    /// [`Ordering::Independent`], every reported record.
    pub checkpoints: Vec<usize>,
}

impl Settlement {
    /// Whether record `i` is acknowledged in this invocation (done, skipped or dead-lettered).
    pub fn is_settled(&self, i: usize) -> bool {
        self.retry.binary_search(&i).is_err()
    }
}

/// Settles `outcomes` under `ordering` (pure).
pub fn settle(outcomes: &[Outcome], ordering: Ordering<'_>) -> Settlement {
    let mut first_transient: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        if let (Outcome::Transient(_), Some(lane)) = (o, ordering.lane(i)) {
            first_transient.entry(lane).or_insert(i);
        }
    }
    let mut settlement = Settlement::default();
    for (i, o) in outcomes.iter().enumerate() {
        let retried = match ordering.lane(i) {
            None => o.is_transient(),
            Some(lane) => first_transient.get(&lane).is_some_and(|&f| i >= f),
        };
        if retried {
            settlement.retry.push(i);
        } else if matches!(o, Outcome::Permanent(_)) {
            settlement.dead_letter.push(i);
        }
    }
    settlement.checkpoints = match ordering {
        Ordering::Independent => settlement.retry.clone(),
        _ => first_transient.into_values().collect(),
    };
    settlement.checkpoints.sort_unstable();
    settlement
}

/// A batch settled, with its dead letters sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    pub settlement: Settlement,
    /// Records dead-lettered and acknowledged.
    pub dead_lettered: usize,
    /// Records whose dead letter could not be sent (now transient, with the reason in their outcome).
    pub dead_letter_failures: Vec<usize>,
}

/// Settles the batch, sends the dead letters `message` builds (from the record position and its reason) to
/// `dlq`, turns each that could not be sent into a transient failure (its outcome is rewritten), and settles
/// again. Under a sequence, a dead letter sent for a record that a later failure puts back on the retry path is
/// sent again on the redelivery: dead-letter queues may hold a record twice, never zero times.
pub async fn settle_batch(
    outcomes: &mut [Outcome],
    ordering: Ordering<'_>,
    dlq: &dyn MessageSink,
    message: impl Fn(usize, &str) -> OutgoingMessage,
) -> Settled {
    let first = settle(outcomes, ordering);
    let messages: Vec<OutgoingMessage> = first
        .dead_letter
        .iter()
        .map(|&i| match &outcomes[i] {
            Outcome::Permanent(reason) => message(i, reason),
            _ => unreachable!("only permanent failures are dead-lettered"),
        })
        .collect();
    let mut failed = Vec::new();
    if !messages.is_empty() {
        for f in dlq.send(&messages).await {
            let i = first.dead_letter[f.index];
            outcomes[i] = Outcome::Transient(format!("dead-lettering failed: {}", f.reason));
            failed.push(i);
        }
    }
    let settlement = if failed.is_empty() {
        first
    } else {
        settle(outcomes, ordering)
    };
    Settled {
        dead_lettered: settlement.dead_letter.len(),
        dead_letter_failures: failed,
        settlement,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::SendFailure;
    use futures::executor::block_on;
    use futures::future::BoxFuture;
    use std::sync::Mutex;

    fn parse(codes: &str) -> Vec<Outcome> {
        codes
            .chars()
            .map(|c| match c {
                'd' => Outcome::Done,
                's' => Outcome::Skipped(crate::outcome::SkipReason::Filtered),
                'p' => Outcome::Permanent("bad".into()),
                't' => Outcome::Transient("down".into()),
                other => panic!("unknown code {other}"),
            })
            .collect()
    }

    #[test]
    fn settlement_by_ordering_rule() {
        // (outcomes, ordering, dead-lettered, retried, checkpoints)
        type Case<'a> = (&'a str, Ordering<'a>, Vec<usize>, Vec<usize>, Vec<usize>);
        let lanes = [0, 1, 0, 1, 0, 1];
        let cases: Vec<Case> = vec![
            ("dsd", Ordering::Sequence, vec![], vec![], vec![]),
            ("dpd", Ordering::Sequence, vec![1], vec![], vec![]),
            // Nothing after the first transient failure is final, not even a permanent failure.
            ("dptpd", Ordering::Sequence, vec![1], vec![2, 3, 4], vec![2]),
            ("tpd", Ordering::Sequence, vec![], vec![0, 1, 2], vec![0]),
            // Standard queues: each message on its own.
            ("dptpd", Ordering::Independent, vec![1, 3], vec![2], vec![2]),
            ("ttd", Ordering::Independent, vec![], vec![0, 1], vec![0, 1]),
            // Kafka partitions: lane 0 = 0, 2, 4; lane 1 = 1, 3, 5.
            // A permanent failure after its own lane's transient one is retried, not dead-lettered.
            (
                "dtpddp",
                Ordering::Lanes(&lanes),
                vec![2],
                vec![1, 3, 5],
                vec![1],
            ),
            (
                "tdpdtd",
                Ordering::Lanes(&lanes),
                vec![],
                vec![0, 2, 4],
                vec![0],
            ),
            (
                "dtdpdt",
                Ordering::Lanes(&lanes),
                vec![],
                vec![1, 3, 5],
                vec![1],
            ),
            (
                "tddtdd",
                Ordering::Lanes(&lanes),
                vec![],
                vec![0, 2, 3, 4, 5],
                vec![0, 3],
            ),
            ("", Ordering::Sequence, vec![], vec![], vec![]),
        ];
        for (codes, ordering, dead, retry, checkpoints) in cases {
            let s = settle(&parse(codes), ordering);
            assert_eq!(s.dead_letter, dead, "{codes} {ordering:?}: dead letters");
            assert_eq!(s.retry, retry, "{codes} {ordering:?}: retried");
            assert_eq!(
                s.checkpoints, checkpoints,
                "{codes} {ordering:?}: checkpoints"
            );
            for i in 0..codes.len() {
                assert_eq!(s.is_settled(i), !retry.contains(&i), "{codes}: record {i}");
            }
        }
    }

    /// Fails the messages whose body is in `refuse`; records what it was sent.
    struct Dlq {
        refuse: Vec<&'static str>,
        sent: Mutex<Vec<String>>,
    }

    impl MessageSink for Dlq {
        fn send<'a>(&'a self, messages: &'a [OutgoingMessage]) -> BoxFuture<'a, Vec<SendFailure>> {
            Box::pin(async move {
                let mut failures = Vec::new();
                for (index, m) in messages.iter().enumerate() {
                    if self.refuse.contains(&m.body.as_str()) {
                        failures.push(SendFailure {
                            index,
                            reason: "throttled".into(),
                        });
                    } else {
                        self.sent.lock().unwrap().push(m.body.clone());
                    }
                }
                failures
            })
        }

        fn is_fifo(&self) -> bool {
            false
        }
    }

    fn letter(i: usize, reason: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: format!("{i}:{reason}"),
            ..Default::default()
        }
    }

    #[test]
    fn a_dead_letter_that_cannot_be_sent_makes_its_record_transient() {
        let dlq = Dlq {
            refuse: vec!["3:bad"],
            sent: Mutex::new(Vec::new()),
        };
        let mut outcomes = parse("dpdpd");
        let settled = block_on(settle_batch(
            &mut outcomes,
            Ordering::Sequence,
            &dlq,
            letter,
        ));
        assert_eq!(*dlq.sent.lock().unwrap(), vec!["1:bad".to_owned()]);
        assert_eq!(settled.dead_letter_failures, vec![3]);
        assert_eq!(settled.dead_lettered, 1);
        assert_eq!(settled.settlement.retry, vec![3, 4]);
        assert_eq!(settled.settlement.checkpoints, vec![3]);
        assert_eq!(
            outcomes[3],
            Outcome::Transient("dead-lettering failed: throttled".into())
        );

        // Standard queue: only the message whose dead letter failed is retried.
        let mut outcomes = parse("dpdpd");
        let settled = block_on(settle_batch(
            &mut outcomes,
            Ordering::Independent,
            &dlq,
            letter,
        ));
        assert_eq!(settled.settlement.retry, vec![3]);
        assert_eq!(settled.dead_lettered, 1);
    }

    #[test]
    fn nothing_is_sent_when_nothing_failed_for_good() {
        let dlq = Dlq {
            refuse: vec![],
            sent: Mutex::new(Vec::new()),
        };
        let mut outcomes = parse("dstp");
        let settled = block_on(settle_batch(
            &mut outcomes,
            Ordering::Sequence,
            &dlq,
            letter,
        ));
        assert!(dlq.sent.lock().unwrap().is_empty());
        assert_eq!(settled.settlement.retry, vec![2, 3]);
        assert_eq!(settled.dead_lettered, 0);
    }
}
