//! The batch runner: what every batch-fed function does around its plan and apply, written once.
//!
//! A function supplies a [`Function`] (its plan and apply over the domain's inputs, what its dead letters and its
//! hand-over line say of a record) and runs it over a [`Source`] (SQS, Kinesis, Kafka: `source.rs`). The runner
//! then owns the rest, the same way for every function:
//! 1. decode the event source's batch into the domain's inputs ([`Source::input`]);
//! 2. call the function's plan and apply ([`Function::apply`]): one outcome per record;
//! 3. settle under the source's ordering rule (`settle.rs`): permanent failures are dead-lettered in the one typed
//!    letter format (`mdm_sync_domain::letter`), a letter that cannot be sent turns its record transient. A
//!    payload too large for its letter is first written to the function's letter store (S3), and the letter
//!    points at it (bucket, key, size, SHA-256); a payload the store could not keep turns its record transient
//!    too. Without a store, such a letter points at where the source holds the payload (the degraded mode);
//! 4. log the one hand-over line per change applied ([`Function::hand_over`]) and a warning per record reported
//!    for another delivery;
//! 5. count outcomes in one metric vocabulary: `RecordsReceived`, `RecordsApplied`, `RecordsSkipped` and one
//!    `Skipped<Reason>` per skip reason, `RecordsDeadLettered`, `DeadLetterFailures`, `LetterPayloadsStored`,
//!    `LetterStoreFailures`, `RecordsRetried`, `BatchItemFailures`, `EndToEndLatency`, `HandlerLatency` (the
//!    function adds its own: API calls, latencies);
//! 6. let the function do its best-effort work after settlement ([`Function::settled`]: a retry backoff, a
//!    refresh signal);
//! 7. build the source's partial batch response.

use crate::metrics::Metrics;
use futures::future::BoxFuture;
use mdm_sync_domain::letter::{DeadLetter, LetterContext, Origin, Payload};
use mdm_sync_domain::outcome::Outcome;
use mdm_sync_domain::ports::{Deadline, MessageSink, PayloadStore, PortError};
use mdm_sync_domain::settle::{settle, settle_batch, Ordering, Settlement};
use std::collections::HashMap;
use std::time::Instant;

/// The ordering rule of a batch, as its source states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequencing {
    /// Every record on its own (a standard SQS queue).
    Independent,
    /// One ordered sequence (a Kinesis shard, a FIFO queue's batch).
    Sequence,
    /// Several ordered sequences (Kafka partitions): record `i` belongs to sequence `lanes[i]`.
    Lanes(Vec<usize>),
}

impl Sequencing {
    pub fn ordering(&self) -> Ordering<'_> {
        match self {
            Sequencing::Independent => Ordering::Independent,
            Sequencing::Sequence => Ordering::Sequence,
            Sequencing::Lanes(lanes) => Ordering::Lanes(lanes),
        }
    }
}

/// An event source: how its Lambda event splits into records, what the domain reads of a record, where a record
/// is (for logs and dead letters), and the partial batch response.
pub trait Source {
    /// What Lambda invokes the function with.
    type Event;
    /// One record as the source keeps it (for the response and the dead letter).
    type Record: Sync;
    /// What the domain reads of a record (it may borrow the record: a payload is never copied for it).
    type Input<'r>
    where
        Self: 'r;
    /// The partial batch response.
    type Response;

    /// The batch's records, in the source's order, and its ordering rule.
    fn split(event: Self::Event) -> (Vec<Self::Record>, Sequencing);
    /// The domain's input of each record, in order (`sequencing` is the batch's, from [`Source::split`]).
    fn inputs<'r>(records: &'r [Self::Record], sequencing: &Sequencing) -> Vec<Self::Input<'r>>;
    /// Where the record sits in its source, for logs (`topic-2@41`, a sequence number, a message id).
    fn position(record: &Self::Record) -> String;
    /// The record's coordinates, payload as received and receive count, for its dead letter.
    fn letter(record: &Self::Record) -> (Origin, Payload, Option<u32>);
    /// The response that has the event source deliver again what `settlement` reports.
    fn response(settlement: &Settlement, records: &[Self::Record]) -> Self::Response;
}

/// A batch-fed function: its plan and apply over the domain's inputs, and what its logs and dead letters say of
/// each record. See the module documentation for what the runner does around it.
pub trait Function<S: Source>: Sync {
    /// One record's state once applied.
    type Item: Send + Sync;
    /// What applying the batch found beyond each record's item, for [`Function::settled`] (`()` when nothing).
    type Summary: Send + Sync;

    /// The function's name (`crm-updater`): the metrics' `Function` dimension and the dead letters' `function`.
    fn name(&self) -> &'static str;
    /// The CloudWatch namespace of its metrics.
    fn metrics_namespace(&self) -> &str;
    /// Where its dead letters go.
    fn dead_letters(&self) -> &dyn MessageSink;

    /// Where the payloads too large for its dead letters go (`LETTER_STORE_BUCKET`); `None`: such a letter points
    /// at where the source holds the payload instead (the degraded mode).
    fn letter_store(&self) -> Option<&dyn PayloadStore> {
        None
    }

    /// Plans and applies the batch through the function's ports: one item per input, in order. The function
    /// counts its own figures (API calls, latencies) in `metrics`.
    fn apply<'a>(
        &'a self,
        inputs: Vec<S::Input<'a>>,
        deadline: Deadline,
        metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, (Vec<Self::Item>, Self::Summary)>;

    /// How the item ended.
    fn outcome(&self, item: &Self::Item) -> Outcome;

    /// What the function knew of the record (its dead letter's context, and the label of its log lines).
    fn context(&self, item: &Self::Item) -> LetterContext;

    /// Logs the one INFO line of a change handed on (the hop's hand-over: fields that the next hop logs too).
    fn hand_over(&self, item: &Self::Item, record: &S::Record);

    /// When the change was made at its source (epoch ms), for `EndToEndLatency`.
    fn source_time_ms(&self, _item: &Self::Item) -> Option<i64> {
        None
    }

    /// Best-effort work once the batch is settled (nothing here may fail the batch).
    fn settled<'a>(
        &'a self,
        _records: &'a [S::Record],
        _summary: &'a Self::Summary,
        _settlement: &'a Settlement,
        _metrics: &'a mut Metrics,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The response and the invocation's metrics (the caller emits them: `metrics.emit()`).
pub struct Handled<R> {
    pub response: R,
    pub metrics: Metrics,
}

/// Runs `function` over one batch of `S`.
pub async fn run<S: Source, F: Function<S>>(
    function: &F,
    event: S::Event,
    deadline: Deadline,
) -> Handled<S::Response> {
    let started = Instant::now();
    let mut metrics = Metrics::new(function.metrics_namespace(), function.name());
    let (records, sequencing) = S::split(event);
    metrics.count("RecordsReceived", records.len() as u64);
    let inputs = S::inputs(&records, &sequencing);
    let (items, summary) = function.apply(inputs, deadline, &mut metrics).await;
    let mut outcomes: Vec<Outcome> = (0..records.len())
        .map(|i| match items.get(i) {
            Some(item) => function.outcome(item),
            None => Outcome::Transient("not applied in this invocation".into()),
        })
        .collect();
    let label = |i: usize| -> String {
        let context = items.get(i).map(|item| function.context(item));
        label(context.as_ref(), &S::position(&records[i]))
    };

    let ordering = sequencing.ordering();
    let dlq = function.dead_letters();
    let fifo = dlq.is_fifo();
    let failed_at = chrono::Utc::now().to_rfc3339();
    let letter = |i: usize, reason: &str| {
        let (origin, payload, attempts) = S::letter(&records[i]);
        DeadLetter {
            function: function.name().to_owned(),
            reason: reason.to_owned(),
            attempts,
            failed_at: Some(failed_at.clone()),
            origin,
            context: items
                .get(i)
                .map(|item| function.context(item))
                .unwrap_or_default(),
            payload,
        }
    };
    let mut stored = HashMap::new();
    if let Some(store) = function.letter_store() {
        let kept = keep_oversized_payloads(store, &outcomes, ordering, fifo, &letter).await;
        metrics.count("LetterPayloadsStored", kept.letters.len() as u64);
        metrics.count("LetterStoreFailures", kept.failures.len() as u64);
        for (i, error) in kept.failures {
            tracing::error!(record = %label(i), %error, "could not store the payload of the record's dead letter; it will be delivered again");
            outcomes[i] = Outcome::Transient(format!(
                "storing the payload of its dead letter failed: {error}"
            ));
        }
        stored = kept.letters;
    }
    let settled = settle_batch(&mut outcomes, ordering, dlq, |i, reason| {
        tracing::warn!(record = %label(i), %reason, "dead-lettering");
        match stored.get(&i) {
            Some(pointing) => pointing.to_message(fifo),
            None => letter(i, reason).to_message(fifo),
        }
    })
    .await;
    for &i in &settled.dead_letter_failures {
        tracing::error!(record = %label(i), "could not dead-letter the record; it will be delivered again");
    }
    let settlement = settled.settlement;

    let now_ms = chrono::Utc::now().timestamp_millis();
    let (mut applied, mut skipped) = (0u64, 0u64);
    for (i, outcome) in outcomes.iter().enumerate() {
        if !settlement.is_settled(i) {
            if let Outcome::Transient(reason) = outcome {
                tracing::warn!(record = %label(i), %reason, "will be retried");
            }
            continue;
        }
        match (outcome, items.get(i)) {
            (Outcome::Done, Some(item)) => {
                applied += 1;
                function.hand_over(item, &records[i]);
                if let Some(t) = function.source_time_ms(item) {
                    metrics.time_ms("EndToEndLatency", (now_ms - t).max(0) as f64);
                }
            }
            (Outcome::Skipped(reason), _) => {
                skipped += 1;
                metrics.count(reason.metric(), 1);
            }
            _ => {}
        }
    }
    metrics.count("RecordsApplied", applied);
    metrics.count("RecordsSkipped", skipped);
    metrics.count("RecordsDeadLettered", settled.dead_lettered as u64);
    metrics.count(
        "DeadLetterFailures",
        settled.dead_letter_failures.len() as u64,
    );
    metrics.count("RecordsRetried", settlement.retry.len() as u64);
    metrics.count("BatchItemFailures", settlement.checkpoints.len() as u64);

    function
        .settled(&records, &summary, &settlement, &mut metrics)
        .await;
    tracing::info!(
        received = records.len(),
        applied,
        skipped,
        dead_lettered = settled.dead_lettered,
        retried = settlement.retry.len(),
        "batch done"
    );
    metrics.time_ms("HandlerLatency", started.elapsed().as_secs_f64() * 1000.0);
    Handled {
        response: S::response(&settlement, &records),
        metrics,
    }
}

/// The letters that point at payloads the letter store now keeps, and the records whose payload it could not keep.
struct Kept {
    letters: HashMap<usize, DeadLetter>,
    failures: Vec<(usize, PortError)>,
}

/// Writes to the letter store the payload of each record about to be dead-lettered whose letter would not fit its
/// queue (all at once: a batch holds a few such payloads at most, its event being at most 6 MB).
async fn keep_oversized_payloads(
    store: &dyn PayloadStore,
    outcomes: &[Outcome],
    ordering: Ordering<'_>,
    fifo: bool,
    letter: &impl Fn(usize, &str) -> DeadLetter,
) -> Kept {
    let oversized: Vec<(usize, DeadLetter)> = settle(outcomes, ordering)
        .dead_letter
        .into_iter()
        .filter_map(|i| match &outcomes[i] {
            Outcome::Permanent(reason) => Some((i, letter(i, reason))),
            _ => None,
        })
        .filter(|(_, l)| !l.fits(fifo))
        .collect();
    let objects: Vec<_> = oversized.iter().map(|(_, l)| l.payload_object()).collect();
    let results = futures::future::join_all(objects.iter().map(|o| async move {
        match o {
            Some(o) => Some(store.put(o).await),
            None => None,
        }
    }))
    .await;
    let mut kept = Kept {
        letters: HashMap::new(),
        failures: Vec::new(),
    };
    for (((i, l), object), result) in oversized.into_iter().zip(&objects).zip(results) {
        match (object, result) {
            (Some(object), Some(Ok(at))) => {
                kept.letters
                    .insert(i, l.with_payload_stored(&at.bucket, object));
            }
            (_, Some(Err(e))) => kept.failures.push((i, e)),
            // No bytes of its own to store: its letter points at its source as before.
            _ => {}
        }
    }
    kept
}

/// How log lines name a record: its entity and event, else its table and key, and where it is in its source.
/// Never a value beyond the key.
fn label(context: Option<&LetterContext>, position: &str) -> String {
    let Some(c) = context else {
        return position.to_owned();
    };
    let subject = match (&c.entity_uri, &c.event_id, &c.table, &c.key) {
        (Some(entity), Some(event), _, _) => format!("{entity} (event {event})"),
        (Some(entity), None, _, _) => entity.clone(),
        (None, Some(event), _, _) => format!("event {event}"),
        (None, None, Some(table), key) => format!("{table}/{}", key.as_deref().unwrap_or("?")),
        (None, None, None, Some(key)) => key.clone(),
        (None, None, None, None) => return position.to_owned(),
    };
    format!("{subject} at {position}")
}
