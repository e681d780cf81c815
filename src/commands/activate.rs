//! `relman activate` and `relman rollback`.

use relman_activate::{ActivateReport, Event, Gates, Goal, Outcome};

use crate::cli::{ActivateArgs, GateArgs, GlobalArgs, RollbackArgs};
use crate::error::CliError;
use crate::ui;

pub(crate) fn activate(global: &GlobalArgs, args: ActivateArgs) -> Result<u8, CliError> {
    let id = super::parse_id(&args.id)?;
    run(global, Goal::Activate(id), &args.gates)
}

pub(crate) fn rollback(global: &GlobalArgs, args: RollbackArgs) -> Result<u8, CliError> {
    let to = args.to.as_deref().map(super::parse_id).transpose()?;
    run(global, Goal::Rollback(to), &args.gates)
}

fn run(global: &GlobalArgs, goal: Goal, gates: &GateArgs) -> Result<u8, CliError> {
    let gates = gates_of(gates);
    let root = super::open_root(global)?;
    on_interrupt();
    let report =
        relman_activate::activate(&root, &goal, gates, super::cancelled(), &mut show_event)?;
    let code = report.exit_code();
    if global.json {
        let mut value = serde_json::to_value(&report).expect("a report always serialises");
        if code != 0 {
            value["error"] = serde_json::Value::String(summary(&report));
            value["code"] = code.into();
        }
        ui::json(&value);
    } else {
        ui::data(report.live().map_or("-", |id| id.as_str()));
    }
    tell(&report);
    Ok(code)
}

/// The gates the flags leave on.
pub(super) fn gates_of(gates: &GateArgs) -> Gates {
    Gates {
        reload: !gates.no_reload,
        probe: !gates.no_probe,
        integrity: !gates.skip_integrity,
        hooks: !gates.no_hooks,
    }
}

/// Ctrl-C, SIGTERM and SIGHUP ask the activation to stop; it decides when that is safe.
pub(super) fn on_interrupt() {
    super::on_interrupt(|| {
        crate::ui::say(
            "interrupt received: stopping if nothing has changed yet, else finishing the roll and its proof first",
        );
    });
}

/// Shows one activation event on stderr.
pub(super) fn show_event(event: Event<'_>) {
    match event {
        Event::Waiting(holder) => super::waiting(holder),
        Event::Step(message) => ui::say(message),
        Event::Output(bytes) => ui::raw(bytes),
    }
}

/// The last lines on stderr: the summary, or the error with its context first.
pub(super) fn tell(report: &ActivateReport) {
    if report.exit_code() == 0 {
        ui::say(summary(report));
    } else {
        // A reason over several lines (a preflight's output after its first line) is printed
        // whole and in order; the error line after it repeats the first.
        let mut summary = summary(report);
        if let Some(reason) = report.reason().filter(|r| r.contains('\n')) {
            ui::say(reason.trim_end());
            summary = summary.replace("; its last output:", "; its last output is above");
        }
        ui::say(format!("error: {summary}"));
    }
}

pub(super) fn summary(report: &ActivateReport) -> String {
    let total = report.durations_ms.get("total").copied().unwrap_or(0);
    let from = report.from.as_ref().map_or("nothing", |id| id.as_str());
    let reason = report
        .reason()
        .and_then(|r| r.lines().next())
        .unwrap_or("no reason recorded");
    let summary = match &report.outcome {
        Outcome::Live if report.from.as_ref() == Some(&report.to) => format!(
            "{} was already live; it is live and proven again after {total} ms",
            report.to
        ),
        Outcome::Live => format!("{} is live (was {from}) after {total} ms", report.to),
        Outcome::Rejected { .. } => format!(
            "{} was rejected before going live, {from} is still live: {reason}",
            report.to
        ),
        Outcome::RolledBack { to, .. } => format!(
            "{} failed its checks and was rolled back, {to} is live again: {reason}",
            report.to
        ),
        Outcome::Stuck { live, .. } => format!(
            "{} failed and relman could not get back to a healthy state; `current` points to {live}: {reason}",
            report.to
        ),
    };
    match &report.history_error {
        Some(err) => format!(
            "{summary}; but its history entry could not be written ({err}): `relman history` and the rollback target miss it, free the disk or fix `.relman/history.jsonl`, then check `relman status`"
        ),
        None => summary,
    }
}
