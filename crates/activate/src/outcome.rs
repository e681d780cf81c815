//! How an activation ended: one [`Outcome`], from which the history's result, what is live,
//! whether it is healthy and the exit code all derive, so no report can claim a rollback to
//! nothing or a healthy stuck state.

use std::collections::BTreeMap;

use relman_releases::ReleaseId;
use relman_releases::history::{Action, Outcome as Recorded};
use relman_releases::hooks::{Hook, HookRun};
use serde::Serialize;

/// How an activation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The release is live and proven.
    Live,
    /// Refused before going live (preflight, routes): nothing changed.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Went live, failed its proof; the previous release is live again and proven.
    RolledBack {
        /// Why the new release failed.
        reason: String,
        /// The release that is live again.
        to: ReleaseId,
    },
    /// Failed, and could not get back to a proven release: a person must look.
    Stuck {
        /// What failed, the way back included.
        reason: String,
        /// What `current` points to now (unproven).
        live: ReleaseId,
    },
}

/// One worker's move.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    /// PM2's id.
    pub pm_id: u64,
    /// The pid before the reload.
    pub old_pid: u32,
    /// The proven new pid (0 if it never proved itself).
    pub new_pid: u32,
    /// The release it was moved to.
    pub release: ReleaseId,
    /// Whether it was seen serving the app's port (`false` also when that cannot be seen:
    /// no `verify.url`).
    pub serving: bool,
    /// Milliseconds from reload to proof.
    pub ms: u64,
}

/// The report of an activation or rollback.
#[derive(Debug, Clone)]
pub struct ActivateReport {
    /// `activate` or `rollback`.
    pub action: Action,
    /// What was live before.
    pub from: Option<ReleaseId>,
    /// The release asked for.
    pub to: ReleaseId,
    /// How it ended.
    pub outcome: Outcome,
    /// Milliseconds per step.
    pub durations_ms: BTreeMap<String, u64>,
    /// Every worker move, the way back included.
    pub workers: Vec<WorkerReport>,
    /// Things the operator should know that did not fail it (a route that already fails on
    /// the live release, a listen that cannot be seen, an `after_live` hook that failed).
    pub warnings: Vec<String>,
    /// What each hook that is set did.
    pub hooks: BTreeMap<Hook, HookRun>,
    /// Why the history entries could not be appended, if they could not.
    pub history_error: Option<String>,
}

impl ActivateReport {
    /// The history's word: `ok`, `rejected` or `failed`.
    pub fn result(&self) -> Recorded {
        match self.outcome {
            Outcome::Live => Recorded::Ok,
            Outcome::Rejected { .. } => Recorded::Rejected,
            Outcome::RolledBack { .. } | Outcome::Stuck { .. } => Recorded::Failed,
        }
    }

    /// What `current` points to now.
    pub fn live(&self) -> Option<&ReleaseId> {
        match &self.outcome {
            Outcome::Live => Some(&self.to),
            Outcome::Rejected { .. } => self.from.as_ref(),
            Outcome::RolledBack { to, .. } => Some(to),
            Outcome::Stuck { live, .. } => Some(live),
        }
    }

    /// Whether what is live proved itself.
    pub fn healthy(&self) -> bool {
        !matches!(self.outcome, Outcome::Stuck { .. })
    }

    /// Where it went back to after a failure.
    pub fn rolled_back_to(&self) -> Option<&ReleaseId> {
        match &self.outcome {
            Outcome::RolledBack { to, .. } => Some(to),
            _ => None,
        }
    }

    /// Why it did not end well.
    pub fn reason(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Live => None,
            Outcome::Rejected { reason }
            | Outcome::RolledBack { reason, .. }
            | Outcome::Stuck { reason, .. } => Some(reason),
        }
    }

    /// The contract's exit code: 0 live and proven, 3 refused or rolled back to a healthy
    /// release, 4 stuck. A history that could not record a change of what is live is 4 too:
    /// the record `rollback` relies on is then wrong, and a person must look.
    pub fn exit_code(&self) -> u8 {
        match (&self.outcome, &self.history_error) {
            (Outcome::Stuck { .. }, _) => 4,
            (Outcome::Live | Outcome::RolledBack { .. }, Some(_)) => 4,
            (Outcome::Live, None) => 0,
            (Outcome::Rejected { .. } | Outcome::RolledBack { .. }, _) => 3,
        }
    }
}

/// The `--json` document: the contract's field names, derived from the outcome.
impl Serialize for ActivateReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Document<'a> {
            action: Action,
            from: Option<&'a ReleaseId>,
            to: &'a ReleaseId,
            result: Recorded,
            rolled_back_to: Option<&'a ReleaseId>,
            reason: Option<&'a str>,
            live: Option<&'a ReleaseId>,
            healthy: bool,
            durations_ms: &'a BTreeMap<String, u64>,
            workers: &'a [WorkerReport],
            warnings: &'a [String],
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            hooks: &'a BTreeMap<Hook, HookRun>,
            history_error: Option<&'a str>,
        }
        Document {
            action: self.action,
            from: self.from.as_ref(),
            to: &self.to,
            result: self.result(),
            rolled_back_to: self.rolled_back_to(),
            reason: self.reason(),
            live: self.live(),
            healthy: self.healthy(),
            durations_ms: &self.durations_ms,
            workers: &self.workers,
            warnings: &self.warnings,
            hooks: &self.hooks,
            history_error: self.history_error.as_deref(),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome) -> ActivateReport {
        ActivateReport {
            action: Action::Activate,
            from: Some(ReleaseId::parse("a").unwrap()),
            to: ReleaseId::parse("b").unwrap(),
            outcome,
            durations_ms: BTreeMap::new(),
            workers: Vec::new(),
            warnings: Vec::new(),
            hooks: BTreeMap::new(),
            history_error: None,
        }
    }

    #[test]
    fn everything_derives_from_the_outcome() {
        let a = ReleaseId::parse("a").unwrap();
        let b = ReleaseId::parse("b").unwrap();
        let cases = [
            (Outcome::Live, Recorded::Ok, Some(&b), true, None, 0),
            (
                Outcome::Rejected { reason: "r".into() },
                Recorded::Rejected,
                Some(&a),
                true,
                None,
                3,
            ),
            (
                Outcome::RolledBack {
                    reason: "r".into(),
                    to: a.clone(),
                },
                Recorded::Failed,
                Some(&a),
                true,
                Some(&a),
                3,
            ),
            (
                Outcome::Stuck {
                    reason: "r".into(),
                    live: b.clone(),
                },
                Recorded::Failed,
                Some(&b),
                false,
                None,
                4,
            ),
        ];
        for (outcome, result, live, healthy, back, code) in cases {
            let report = report(outcome);
            assert_eq!(report.result(), result);
            assert_eq!(report.live(), live);
            assert_eq!(report.healthy(), healthy);
            assert_eq!(report.rolled_back_to(), back);
            assert_eq!(report.exit_code(), code);
            let json = serde_json::to_value(&report).unwrap();
            assert_eq!(json["healthy"], healthy);
            assert_eq!(json["result"], serde_json::to_value(result).unwrap());
        }
    }

    #[test]
    fn a_history_that_failed_after_the_flip_is_exit_4() {
        let mut live = report(Outcome::Live);
        live.history_error = Some("disk full".into());
        assert_eq!(live.exit_code(), 4);
        // Nothing changed on a rejection: the missing entry does not change what exit 3 says.
        let mut rejected = report(Outcome::Rejected { reason: "r".into() });
        rejected.history_error = Some("disk full".into());
        assert_eq!(rejected.exit_code(), 3);
    }
}
