//! Applies scheduled writes to Reltio: wave after wave, each wave's posts batched by `RELTIO_BATCH_SIZE` with up
//! to `RELTIO_MAX_CONCURRENCY` requests in flight, and the outcome mapped back to every record.

use super::schedule::{ScheduledWrite, Wave};
use super::transform::WriteOp;
use crate::outcome::Outcome;
use crate::ports::{isolate_rejections, remaining, Deadline, EntityWriter, PortError};
use crate::reltio::model::{CrosswalkKey, EntityBody, ItemOutcome};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy)]
pub struct ApplySettings {
    /// Entities per `POST /entities`.
    pub batch_size: usize,
    /// Requests in flight at once.
    pub max_concurrency: usize,
}

/// What applying a batch did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Per record position: the combined outcome of its writes.
    pub outcomes: BTreeMap<usize, Outcome>,
    /// Requests sent to Reltio (bisected retries included).
    pub requests: usize,
    /// Latency of each request, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Per record position: the URI Reltio answered for the entity it wrote, the CDC hop's hand-over id.
    pub entity_uris: BTreeMap<usize, String>,
}

impl ApplyReport {
    fn record(&mut self, records: &[usize], outcome: Outcome) {
        for &r in records {
            let combined = match self.outcomes.remove(&r) {
                Some(previous) => previous.combine(outcome.clone()),
                None => outcome.clone(),
            };
            self.outcomes.insert(r, combined);
        }
    }
}

/// One request's worth of work.
enum Task {
    Post {
        partial: bool,
        writes: Vec<ScheduledWrite>,
    },
    Delete(ScheduledWrite),
}

/// Applies the waves in order. A key whose write failed transiently gets none of its later writes
/// attempted (they would overtake it), nor does a record whose earlier write failed transiently (the upsert of
/// a primary-key change whose retirement failed); they are reported transient so the event source retries them
/// in order.
pub async fn apply(
    writer: &dyn EntityWriter,
    waves: Vec<Wave>,
    settings: ApplySettings,
    deadline: Deadline,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut blocked: HashSet<CrosswalkKey> = HashSet::new();
    let mut failed_records: HashSet<usize> = HashSet::new();
    for wave in waves {
        let mut full = Vec::new();
        let mut partial = Vec::new();
        let mut tasks = Vec::new();
        for scheduled in wave {
            let reason = if blocked.contains(&scheduled.write.key) {
                Some("an earlier change to the same key failed")
            } else if scheduled.records.iter().any(|r| failed_records.contains(r)) {
                Some("an earlier write of the same record failed")
            } else {
                None
            };
            if let Some(reason) = reason {
                blocked.insert(scheduled.write.key.clone());
                failed_records.extend(scheduled.records.iter().copied());
                report.record(&scheduled.records, Outcome::Transient(reason.into()));
                continue;
            }
            match &scheduled.write.op {
                WriteOp::Post { partial: true, .. } => partial.push(scheduled),
                WriteOp::Post { partial: false, .. } => full.push(scheduled),
                WriteOp::DeleteCrosswalk => tasks.push(Task::Delete(scheduled)),
            }
        }
        for (is_partial, writes) in [(false, full), (true, partial)] {
            let mut writes = writes.into_iter().peekable();
            while writes.peek().is_some() {
                tasks.push(Task::Post {
                    partial: is_partial,
                    writes: writes.by_ref().take(settings.batch_size.max(1)).collect(),
                });
            }
        }
        let results: Vec<TaskResult> = stream::iter(tasks)
            .map(|task| run_task(writer, task, deadline))
            .buffer_unordered(settings.max_concurrency.max(1))
            .collect()
            .await;
        for (done, requests, latencies) in results {
            report.requests += requests;
            report.latencies_ms.extend(latencies);
            for (scheduled, outcome, uri) in done {
                if let Some(uri) = uri {
                    for &r in &scheduled.records {
                        report.entity_uris.insert(r, uri.clone());
                    }
                }
                if matches!(outcome, Outcome::Transient(_)) {
                    blocked.insert(scheduled.write.key.clone());
                    failed_records.extend(scheduled.records.iter().copied());
                }
                report.record(&scheduled.records, outcome);
            }
        }
    }
    report
}

/// The writes of one task with their outcome and, when Reltio named it, the entity's URI.
type TaskResult = (
    Vec<(ScheduledWrite, Outcome, Option<String>)>,
    usize,
    Vec<f64>,
);

async fn run_task(writer: &dyn EntityWriter, task: Task, deadline: Deadline) -> TaskResult {
    match task {
        Task::Delete(scheduled) => {
            if remaining(deadline).is_zero() {
                return (vec![(scheduled, out_of_time(), None)], 0, vec![]);
            }
            let started = std::time::Instant::now();
            let result = writer
                .delete_crosswalk(&scheduled.write.key, deadline)
                .await;
            let latency = started.elapsed().as_secs_f64() * 1000.0;
            let outcome = match result {
                Ok(()) => Outcome::Done,
                Err(e) => from_error(&e),
            };
            (vec![(scheduled, outcome, None)], 1, vec![latency])
        }
        Task::Post { partial, writes } => post(writer, partial, writes, deadline).await,
    }
}

/// Posts `writes` as one request. A whole request rejected as invalid (400/422) is split until the bad entity
/// stands alone, so that one bad entity does not dead-letter its whole batch.
async fn post(
    writer: &dyn EntityWriter,
    partial: bool,
    writes: Vec<ScheduledWrite>,
    deadline: Deadline,
) -> TaskResult {
    let latencies = std::sync::Mutex::new(Vec::new());
    let (results, requests) = isolate_rejections(writes, |writes: Vec<ScheduledWrite>| {
        let latencies = &latencies;
        Box::pin(async move {
            if remaining(deadline).is_zero() {
                let e = PortError::Transient("no time left in this invocation".into());
                return (writes, Err(e));
            }
            let bodies: Vec<&EntityBody> = writes
                .iter()
                .map(|w| match &w.write.op {
                    WriteOp::Post { body, .. } => body,
                    WriteOp::DeleteCrosswalk => unreachable!("deletes are not posted"),
                })
                .collect();
            let started = std::time::Instant::now();
            let result = writer.post_entities(&bodies, partial, deadline).await;
            if let Ok(mut l) = latencies.lock() {
                l.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            (writes, result)
        })
    })
    .await;
    let out = results
        .into_iter()
        .map(|(w, item)| {
            let mut uri = None;
            let outcome = match item {
                Ok(ItemOutcome::Written { uri: u }) => {
                    uri = u;
                    Outcome::Done
                }
                Ok(ItemOutcome::Failed {
                    message,
                    transient: true,
                }) => Outcome::Transient(format!("Reltio: {message}")),
                Ok(ItemOutcome::Failed {
                    message,
                    transient: false,
                }) => Outcome::Permanent(format!("Reltio rejected the entity: {message}")),
                Err(e) => from_error(&e),
            };
            (w, outcome, uri)
        })
        .collect();
    // A request not sent for lack of time is not counted.
    let latencies = latencies.into_inner().unwrap_or_default();
    (out, requests.min(latencies.len()), latencies)
}

fn from_error(e: &PortError) -> Outcome {
    match e {
        PortError::Transient(m) => Outcome::Transient(m.clone()),
        PortError::Rejected(m) => Outcome::Permanent(m.clone()),
    }
}

fn out_of_time() -> Outcome {
    Outcome::Transient("no time left in this invocation".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::schedule::schedule;
    use crate::cdc::transform::ReltioWrite;
    use futures::executor::block_on;
    use futures::future::BoxFuture;
    use serde_json::Map;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Rejects (HTTP 400) any request holding the key "bad"; answers 503 for "down"; records every call.
    #[derive(Default)]
    struct FakeReltio {
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl EntityWriter for FakeReltio {
        fn post_entities<'a>(
            &'a self,
            entities: &'a [&'a EntityBody],
            _partial: bool,
            _deadline: Deadline,
        ) -> BoxFuture<'a, Result<Vec<ItemOutcome>, PortError>> {
            let keys: Vec<String> = entities
                .iter()
                .map(|e| e.crosswalks[0].value.clone())
                .collect();
            self.calls.lock().unwrap().push(keys.clone());
            Box::pin(async move {
                if keys.iter().any(|k| k == "bad") {
                    return Err(PortError::Rejected(
                        "Reltio rejected the request (HTTP 400): bad body".into(),
                    ));
                }
                if keys.iter().any(|k| k == "down") {
                    return Err(PortError::Transient(
                        "Reltio is unavailable (HTTP 503)".into(),
                    ));
                }
                Ok(keys
                    .iter()
                    .map(|k| ItemOutcome::Written {
                        uri: Some(format!("entities/{k}")),
                    })
                    .collect())
            })
        }

        fn delete_crosswalk<'a>(
            &'a self,
            _key: &'a CrosswalkKey,
            _deadline: Deadline,
        ) -> BoxFuture<'a, Result<(), PortError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn upsert(value: &str) -> ReltioWrite {
        let key = CrosswalkKey {
            source: "configuration/sources/S".into(),
            source_table: None,
            value: value.into(),
        };
        ReltioWrite {
            op: WriteOp::Post {
                body: EntityBody {
                    entity_type: "configuration/entityTypes/Individual".into(),
                    attributes: Map::new().into(),
                    crosswalks: vec![key.crosswalk()],
                },
                partial: true,
            },
            key,
        }
    }

    fn settings(batch_size: usize) -> ApplySettings {
        ApplySettings {
            batch_size,
            max_concurrency: 2,
        }
    }

    fn soon() -> Deadline {
        Deadline::now() + Duration::from_secs(10)
    }

    #[test]
    fn writes_are_batched_by_the_configured_size() {
        let fake = FakeReltio::default();
        let writes = (0..5).map(|i| (i, upsert(&format!("k{i}")))).collect();
        let report = block_on(apply(&fake, schedule(writes), settings(2), soon()));
        let mut sizes: Vec<usize> = fake.calls.lock().unwrap().iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 2, 2]);
        assert_eq!(report.requests, 3);
        assert!(report.outcomes.values().all(|o| *o == Outcome::Done));
    }

    #[test]
    fn a_rejected_request_is_bisected_until_the_bad_entity_stands_alone() {
        let fake = FakeReltio::default();
        let writes = ["a", "b", "bad", "c"]
            .iter()
            .enumerate()
            .map(|(i, k)| (i, upsert(k)))
            .collect();
        let report = block_on(apply(&fake, schedule(writes), settings(10), soon()));
        assert_eq!(
            report.outcomes[&2],
            Outcome::Permanent("Reltio rejected the request (HTTP 400): bad body".into())
        );
        for i in [0, 1, 3] {
            assert_eq!(report.outcomes[&i], Outcome::Done, "record {i}");
        }
        // [a b bad c] → [a b] + [bad c] → [bad] + [c]
        assert_eq!(report.requests, 5);
    }

    #[test]
    fn after_a_transient_failure_later_changes_to_that_key_are_not_sent() {
        let fake = FakeReltio::default();
        let mut second = upsert("down");
        // A different write to the same key, so that it lands in the next wave.
        if let WriteOp::Post { body, .. } = &mut second.op {
            body.entity_type = "configuration/entityTypes/Other".into();
        }
        let writes = vec![(0, upsert("down")), (1, upsert("ok")), (2, second)];
        let report = block_on(apply(&fake, schedule(writes), settings(1), soon()));
        assert!(matches!(report.outcomes[&0], Outcome::Transient(_)));
        assert_eq!(report.outcomes[&1], Outcome::Done);
        assert_eq!(
            report.outcomes[&2],
            Outcome::Transient("an earlier change to the same key failed".into())
        );
        let sent_down = fake
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.contains(&"down".to_string()))
            .count();
        assert_eq!(sent_down, 1);
    }

    #[test]
    fn every_written_record_is_told_the_uri_reltio_gave_its_entity() {
        let fake = FakeReltio::default();
        // Record 2 is coalesced into record 0's write; "bad" is bisected out and written by nobody.
        let writes = ["a", "b", "a", "bad"]
            .iter()
            .enumerate()
            .map(|(i, k)| (i, upsert(k)))
            .collect();
        let report = block_on(apply(&fake, schedule(writes), settings(10), soon()));
        let uris: Vec<(usize, &str)> = report
            .entity_uris
            .iter()
            .map(|(i, u)| (*i, u.as_str()))
            .collect();
        assert_eq!(
            uris,
            vec![(0, "entities/a"), (1, "entities/b"), (2, "entities/a")]
        );
        assert!(matches!(report.outcomes[&3], Outcome::Permanent(_)));
    }

    #[test]
    fn nothing_is_sent_once_the_deadline_has_passed() {
        let fake = FakeReltio::default();
        let report = block_on(apply(
            &fake,
            schedule(vec![(0, upsert("a"))]),
            settings(10),
            Deadline::now(),
        ));
        assert!(fake.calls.lock().unwrap().is_empty());
        assert!(matches!(report.outcomes[&0], Outcome::Transient(_)));
    }

    #[test]
    fn a_primary_key_change_whose_retirement_failed_does_not_upsert_the_new_key() {
        let fake = FakeReltio::default();
        let retire_down = ReltioWrite {
            key: upsert("down").key,
            op: WriteOp::DeleteCrosswalk,
        };
        let fake_delete_fails = FailingDeletes { inner: &fake };
        // Record 0: a → new (retire "down" fails), record 1: another key, record 2: the new key again.
        let writes = vec![
            (0, retire_down),
            (0, upsert("new")),
            (1, upsert("other")),
            (2, upsert("new")),
        ];
        let report = block_on(apply(
            &fake_delete_fails,
            schedule(writes),
            settings(10),
            soon(),
        ));
        assert!(matches!(report.outcomes[&0], Outcome::Transient(_)));
        assert_eq!(report.outcomes[&1], Outcome::Done);
        assert!(matches!(report.outcomes[&2], Outcome::Transient(_)));
        let sent: Vec<Vec<String>> = fake.calls.lock().unwrap().clone();
        assert!(
            !sent.iter().flatten().any(|k| k == "new"),
            "the new key must wait for the old key's retirement: {sent:?}"
        );
    }

    /// Delegates posts; every crosswalk delete is unavailable.
    struct FailingDeletes<'a> {
        inner: &'a FakeReltio,
    }

    impl EntityWriter for FailingDeletes<'_> {
        fn post_entities<'a>(
            &'a self,
            entities: &'a [&'a EntityBody],
            partial: bool,
            deadline: Deadline,
        ) -> BoxFuture<'a, Result<Vec<ItemOutcome>, PortError>> {
            self.inner.post_entities(entities, partial, deadline)
        }

        fn delete_crosswalk<'a>(
            &'a self,
            _key: &'a CrosswalkKey,
            _deadline: Deadline,
        ) -> BoxFuture<'a, Result<(), PortError>> {
            Box::pin(async {
                Err(PortError::Transient(
                    "Reltio is unavailable (HTTP 503)".into(),
                ))
            })
        }
    }
}
