//! `relman history`.

use relman_releases::history::{Action, Outcome};

use crate::cli::GlobalArgs;
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs) -> Result<u8, CliError> {
    let root = super::open_root(global)?;
    root.require_initialised()?;
    let mut entries = relman_releases::history::read(&root)?;
    entries.reverse();
    if global.json {
        ui::json(&entries);
        return Ok(OK);
    }
    if entries.is_empty() {
        ui::say("no activations yet");
    }
    for entry in entries {
        let mut reason = entry.reason.as_deref().unwrap_or("").lines();
        let line = format!(
            "{}  {:13}  {:>16} -> {:16}  {:8}  {}",
            entry.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            action_name(entry.action),
            entry.from.as_ref().map_or("-", |id| id.as_str()),
            entry.to.as_str(),
            result_name(entry.result),
            reason.next().unwrap_or(""),
        );
        ui::data(line.trim_end());
        // The rest of a reason over several lines, in order, indented under its entry.
        for more in reason {
            ui::data(format!("    {more}").trim_end());
        }
        for (hook, run) in &entry.hooks {
            let log = run
                .log()
                .map_or_else(String::new, |log| format!(", output in {log}"));
            ui::data(format!("    hook {hook}: {}{log}", run.describe()));
        }
    }
    Ok(OK)
}

pub(crate) fn action_name(action: Action) -> &'static str {
    match action {
        Action::Activate => "activate",
        Action::Rollback => "rollback",
        Action::AutoRollback => "auto-rollback",
    }
}

pub(crate) fn result_name(result: Outcome) -> &'static str {
    match result {
        Outcome::Ok => "ok",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
    }
}
