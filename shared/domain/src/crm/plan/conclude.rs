//! How an item's steps ended and what its commit records: each write's and merge's outcome, transient beating
//! permanent beating done, records given up on and recovered, and whether the change's order advances.

use super::{CreateResults, MergeRequest, Write, WriteKind};
use crate::crm::salesforce::{MergeOutcome, RecordOutcome};
use crate::ordering::EntityRecord;
use crate::outcome::{Outcome, SkipReason};
use crate::ports::PortError;

/// How a record write ended (a record no longer there is skipped: nothing to do).
pub fn write_outcome(kind: WriteKind, outcome: Result<RecordOutcome, PortError>) -> Outcome {
    let what = match kind {
        WriteKind::Survivor | WriteKind::Archive => "a Contact",
        WriteKind::Repoint => "a child record",
    };
    match outcome {
        Ok(RecordOutcome::Updated) => Outcome::Done,
        Ok(RecordOutcome::Missing { .. }) => Outcome::Skipped(SkipReason::RecordMissing),
        Ok(RecordOutcome::Failed {
            code,
            message,
            transient,
        }) => {
            let reason = with_detail(
                format!("Salesforce rejected {what} write: {code}"),
                &message,
            );
            if transient {
                Outcome::Transient(reason)
            } else {
                Outcome::Permanent(reason)
            }
        }
        Err(e) => Outcome::from_port("writing to Salesforce", e),
    }
}

/// How a SOAP merge ended (records already merged away or deleted are skipped: nothing to do).
pub fn merge_outcome(outcome: &MergeOutcome) -> Outcome {
    match outcome {
        MergeOutcome::Merged { .. } => Outcome::Done,
        MergeOutcome::AlreadyMerged { .. } => Outcome::Skipped(SkipReason::RecordMissing),
        MergeOutcome::Failed {
            code,
            message,
            transient,
        } => {
            let reason = with_detail(format!("Salesforce rejected a merge: {code}"), message);
            if *transient {
                Outcome::Transient(reason)
            } else {
                Outcome::Permanent(reason)
            }
        }
    }
}

/// `reason`, with `detail` (field names, never values) in parentheses when there is one.
fn with_detail(reason: String, detail: &str) -> String {
    if detail.is_empty() {
        reason
    } else {
        format!("{reason} ({detail})")
    }
}

/// What happened to one item's steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepResults {
    /// Each merge request with how it ended.
    pub merges: Vec<(MergeRequest, Outcome)>,
    /// Each child query that failed, with how.
    pub queries: Vec<Outcome>,
    /// Each write with how it ended (one not attempted because a merge of its item failed carries that failure).
    pub writes: Vec<(Write, Outcome)>,
    pub survivor_unchanged: bool,
    /// A create's upsert and write-back.
    pub create: Option<CreateResults>,
    /// Each Contact deleted, with how it ended.
    pub deletes: Vec<(String, Outcome)>,
}

/// An item's outcome and what its commit records.
#[derive(Debug, Clone, PartialEq)]
pub struct Conclusion {
    pub outcome: Outcome,
    /// Nothing of the change is left to do.
    pub complete: bool,
    /// The survivor write is done (or unchanged): the order advances.
    pub ordered: bool,
    pub written: Vec<(String, String)>,
    pub merged: Vec<String>,
    pub given_up: Vec<String>,
    pub recovered: Vec<String>,
    /// The Contact created for the entity.
    pub created: Option<String>,
}

/// Concludes an item from its step results: transient beats permanent beats done; a record whose write (or
/// merge) failed for good is given up on, and one that another event gave up on before does not fail this
/// change when it fails again.
pub fn conclude<'r>(event_id: &str, results: &'r StepResults, record: &EntityRecord) -> Conclusion {
    let mut c = Conclusion {
        outcome: Outcome::Done,
        complete: true,
        ordered: results.survivor_unchanged,
        written: Vec::new(),
        merged: Vec::new(),
        given_up: Vec::new(),
        recovered: Vec::new(),
        created: None,
    };
    let mut failures = Failures::default();
    let mut survivor_written = false;
    let mut survivor_planned = false;
    let mut file = |targets: &[&str], outcome: &'r Outcome, c: &mut Conclusion| {
        failures.file(targets, outcome, c, record, event_id)
    };
    for (request, outcome) in &results.merges {
        let losers: Vec<&str> = request.records.iter().map(String::as_str).collect();
        file(&losers, outcome, &mut c);
        if matches!(outcome, Outcome::Done | Outcome::Skipped(_)) {
            c.merged.extend(request.records.iter().cloned());
        }
    }
    for outcome in &results.queries {
        file(&[], outcome, &mut c);
    }
    for (id, outcome) in &results.deletes {
        file(&[id.as_str()], outcome, &mut c);
    }
    for (write, outcome) in &results.writes {
        let survivor = write.kind == WriteKind::Survivor;
        survivor_planned |= survivor;
        // The survivor is the change's main write: its failure fails the change, never given up on.
        let targets: &[&str] = if survivor {
            &[]
        } else {
            &[write.record.id.as_str()]
        };
        file(targets, outcome, &mut c);
        match outcome {
            Outcome::Done => {
                survivor_written |= survivor;
                if let Some(hash) = &write.hash {
                    c.written.push((write.record.id.clone(), hash.clone()));
                }
            }
            Outcome::Skipped(_) => survivor_written |= survivor,
            _ => {}
        }
    }
    // A plan without a survivor write (nothing mapped has a golden value) has nothing to wait for.
    c.ordered |= survivor_written || !survivor_planned;
    c.outcome = match (failures.transient, failures.permanent.is_empty()) {
        (Some(reason), _) => Outcome::Transient(reason.to_owned()),
        (None, false) => Outcome::Permanent(failures.permanent.join("; ")),
        (None, true) => Outcome::Done,
    };
    c
}

/// The failures of an item's steps, as they are filed.
#[derive(Default)]
struct Failures<'r> {
    transient: Option<&'r str>,
    permanent: Vec<&'r str>,
}

impl<'r> Failures<'r> {
    /// Files one step's outcome for `targets` (the records it concerns).
    fn file(
        &mut self,
        targets: &[&str],
        outcome: &'r Outcome,
        c: &mut Conclusion,
        record: &EntityRecord,
        event_id: &str,
    ) {
        match outcome {
            Outcome::Done | Outcome::Skipped(_) => {
                for t in targets {
                    if record.given_up.iter().any(|(r, _)| r == t) {
                        c.recovered.push((*t).to_owned());
                    }
                }
            }
            Outcome::Permanent(reason) => {
                let known = !targets.is_empty()
                    && targets
                        .iter()
                        .all(|t| record.given_up_by_other(t, event_id));
                // Known: already in the other event's dead letter, and still given up on under that event.
                if !known {
                    c.complete = false;
                    self.permanent.push(reason);
                    c.given_up.extend(targets.iter().map(|t| (*t).to_owned()));
                }
            }
            Outcome::Transient(reason) => {
                c.complete = false;
                self.transient.get_or_insert(reason.as_str());
            }
        }
    }
}
