//! `relman deploy`: build a release, make it live through every gate, then prune to
//! `retention.keep`, in one command.
//!
//! Each step is the command of the same name, with its own guarantees: a build that fails
//! changes nothing live (exit 1), a rejected or rolled-back activation is exit 3, and a prune
//! that fails after a good activation is a warning, never a reason to undo it.

use std::sync::atomic::AtomicBool;

use relman_releases::{BuildEvent, BuildReport, BuildRequest, DeployRoot, PruneReport};
use serde::Serialize;

use crate::error::Result;
use crate::outcome::{ActivateReport, Outcome};
use crate::roll::{Event, Gates, Goal, activate};

/// Progress of a deploy, step by step.
#[derive(Debug)]
pub enum DeployEvent<'a> {
    /// From the build.
    Build(BuildEvent<'a>),
    /// The build sealed its release; the activation begins.
    Built(&'a BuildReport),
    /// From the activation.
    Activate(Event<'a>),
    /// The prune begins.
    Prune,
}

/// How the prune after a good activation ended.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PruneOutcome {
    /// It ran.
    Done(PruneReport),
    /// It failed; the activation stands.
    Failed {
        /// Why.
        error: String,
    },
    /// It did not run: the activation did not end with the new release live.
    Skipped,
}

/// What `relman deploy` did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The sealed build.
    pub build: BuildReport,
    /// Its activation.
    pub activate: ActivateReport,
    /// The prune after it.
    pub prune: PruneOutcome,
}

impl DeployReport {
    /// The activation's exit code: a prune never changes it.
    pub fn exit_code(&self) -> u8 {
        self.activate.exit_code()
    }
}

/// Builds, activates and prunes. A failed build is an error (nothing live changed).
pub fn deploy(
    root: &DeployRoot,
    request: &BuildRequest,
    gates: Gates,
    cancel: &AtomicBool,
    events: &mut dyn FnMut(DeployEvent<'_>),
) -> Result<DeployReport> {
    let build = relman_releases::build(root, request, cancel, &mut |event| {
        events(DeployEvent::Build(event));
    })?;
    events(DeployEvent::Built(&build));
    let activation = activate(
        root,
        &Goal::Activate(build.id.clone()),
        gates,
        cancel,
        &mut |event| events(DeployEvent::Activate(event)),
    )?;
    let prune = if activation.outcome == Outcome::Live && activation.history_error.is_none() {
        events(DeployEvent::Prune);
        let keep = root.config()?.keep();
        match relman_releases::prune(root, Some(keep), false, &mut |holder| {
            events(DeployEvent::Activate(Event::Waiting(holder)));
        }) {
            Ok(report) => PruneOutcome::Done(report),
            Err(err) => PruneOutcome::Failed {
                error: err.to_string(),
            },
        }
    } else {
        PruneOutcome::Skipped
    };
    Ok(DeployReport {
        build,
        activate: activation,
        prune,
    })
}
