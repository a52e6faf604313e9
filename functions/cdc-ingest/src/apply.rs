//! cdc-ingest's apply: plan the batch against the key ledger, write it to Reltio wave by wave (again within the
//! invocation while an outage lasts), and record what was written in the key ledger.

use crate::Deps;
use mdm_sync_adapters::metrics::Metrics;
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_domain::cdc::apply::{apply, ApplySettings};
use mdm_sync_domain::cdc::batch::{plan_records, BatchPlan, RecordInfo};
use mdm_sync_domain::cdc::input::CdcInput;
use mdm_sync_domain::outcome::{Outcome, SkipReason};
use mdm_sync_domain::ports::Deadline;
use std::time::{Duration, Instant};

/// The least time a whole-batch attempt is given after an outage wait.
const OUTAGE_MIN_ATTEMPT: Duration = Duration::from_secs(2);

/// Whole-batch attempts during an outage: 1 s doubling to 10 s, as many as the invocation's deadline allows.
pub const OUTAGE_BACKOFF: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(10),
    max_attempts: u32::MAX,
};

/// One record once applied: how it ended, what is known of it (table, key, position, source time) and the
/// entity Reltio answered for it.
pub struct Change {
    pub outcome: Outcome,
    pub info: RecordInfo,
    pub entity: Option<String>,
}

impl Deps {
    /// Plans the batch (leaving out what the key ledger knows to be older than what was applied), writes it,
    /// records what was written in the key ledger. When every write fails transiently (Reltio down, a refused
    /// credential) the batch is planned and tried again within the invocation rather than handed to Lambda's
    /// retry at once: the event source's retries only take over when the outage outlasts the invocation.
    pub(crate) async fn apply_changes(
        &self,
        inputs: &[CdcInput<'_>],
        deadline: Deadline,
        metrics: &mut Metrics,
    ) -> Vec<Change> {
        let settings = ApplySettings {
            batch_size: self.config.batch_size,
            max_concurrency: self.config.max_concurrency,
        };
        let mut attempt = 0;
        let (plan, report) = loop {
            attempt += 1;
            let mut plan = self.plan(inputs, metrics).await;
            let waves = std::mem::take(&mut plan.waves);
            let report = apply(self.writer.as_ref(), waves, settings, deadline).await;
            metrics.count("ReltioRequests", report.requests as u64);
            for ms in &report.latencies_ms {
                metrics.time_ms("ReltioLatency", *ms);
            }
            let outage =
                !report.outcomes.is_empty() && report.outcomes.values().all(Outcome::is_transient);
            // Leave room for one more attempt after the wait.
            let wait = self
                .outage_backoff
                .next_wait(attempt, None, deadline - OUTAGE_MIN_ATTEMPT)
                .filter(|_| outage && deadline > Instant::now() + OUTAGE_MIN_ATTEMPT);
            let Some(wait) = wait else {
                break (plan, report);
            };
            let reason = report.outcomes.values().find_map(|o| match o {
                Outcome::Transient(r) => Some(r.as_str()),
                _ => None,
            });
            tracing::warn!(
                attempt,
                ?wait,
                reason,
                "every write failed transiently; retrying the batch"
            );
            metrics.count("BatchRetriesInInvocation", 1);
            tokio::time::sleep(wait).await;
        };
        let mut outcomes: Vec<Outcome> = plan
            .outcomes
            .iter()
            .map(|o| o.clone().unwrap_or(Outcome::Done))
            .collect();
        for (i, outcome) in report.outcomes {
            outcomes[i] = outcome;
        }
        self.record_applied(&plan, &mut outcomes).await;
        let mut entities = report.entity_uris;
        let changes: Vec<Change> = plan
            .infos
            .into_iter()
            .zip(outcomes)
            .enumerate()
            .map(|(i, (info, outcome))| Change {
                entity: entities.remove(&i),
                outcome,
                info,
            })
            .collect();
        for c in changes
            .iter()
            .filter(|c| c.outcome == Outcome::Skipped(SkipReason::Truncate))
        {
            // A truncate empties a table at the source; Reltio keeps its entities until someone decides.
            tracing::warn!(
                table = c.info.table.as_deref(),
                "source table truncated: not applied to Reltio"
            );
        }
        changes
    }

    /// The batch planned, with the changes the key ledger knows to be older than what was applied left out.
    async fn plan(&self, inputs: &[CdcInput<'_>], metrics: &mut Metrics) -> BatchPlan {
        let now = chrono::Utc::now();
        let mut planned = plan_records(&self.mapping, &self.config.before_image_field, inputs, now);
        if let Some(ledger) = &self.key_ledger {
            let keys = planned.versioned_keys();
            if !keys.is_empty() {
                match ledger.applied(&keys).await {
                    Ok(applied) => {
                        let stale = planned.skip_stale(&applied);
                        metrics.count("StaleWritesSkipped", stale as u64);
                    }
                    Err(e) => planned.fail_pending(Outcome::Transient(e.to_string())),
                }
            }
        }
        planned.into_batch()
    }

    /// The key ledger learns what was written; if it cannot, the records are retried (their writes are
    /// idempotent) rather than left unrecorded, where an older replay could undo them.
    async fn record_applied(&self, plan: &BatchPlan, outcomes: &mut [Outcome]) {
        let Some(ledger) = &self.key_ledger else {
            return;
        };
        let entries = plan.ledger_entries(|i| outcomes[i] == Outcome::Done);
        if entries.is_empty() {
            return;
        }
        if let Err(e) = ledger.record(&entries).await {
            for (i, _, _, _) in &plan.tracked {
                if outcomes[*i] == Outcome::Done {
                    outcomes[*i] =
                        Outcome::Transient(format!("recording in the CDC key ledger: {e}"));
                }
            }
        }
    }
}

/// `table/key@position`: follows a change from the source through Reltio. Never holds column values beyond the
/// key. The position is the change's commit time, else where the record is in its stream.
pub(crate) fn correlation_id(info: &RecordInfo, position: impl FnOnce() -> String) -> String {
    format!(
        "{}/{}@{}",
        info.table.as_deref().unwrap_or("?"),
        info.key.as_ref().map(|k| k.value.as_str()).unwrap_or("?"),
        info.position.clone().unwrap_or_else(position)
    )
}
