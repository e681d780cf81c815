//! `relman status`.

use relman_activate::StatusProbe;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: &StatusArgs) -> Result<u8, CliError> {
    let root = super::open_root(global)?;
    let probe = if args.no_probe {
        StatusProbe::Skip
    } else {
        StatusProbe::Once
    };
    let status = relman_activate::status(&root, probe)?;
    if global.json {
        ui::json(&status);
        return Ok(OK);
    }
    let show = |id: &Option<relman_releases::ReleaseId>| {
        id.as_ref().map_or("-".to_owned(), ToString::to_string)
    };
    ui::data(format!("current:          {}", show(&status.current)));
    if let Some(entry) = &status.went_live {
        ui::data(format!(
            "live since:       {} ({})",
            entry.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            super::history::action_name(entry.action),
        ));
    }
    ui::data(format!(
        "rollback target:  {}",
        show(&status.rollback_target)
    ));
    // Why the target is not simply the release before: a rollback never goes back to what
    // was rolled back from, failed or was rejected, and an operator asking "where would a
    // rollback go" needs to see that.
    for (index, excluded) in status.excluded.iter().enumerate() {
        ui::data(format!(
            "{:18}{} ({}, {})",
            if index == 0 { "excluded:" } else { "" },
            excluded.id,
            excluded.exclusion,
            excluded
                .exclusion
                .at()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    match &status.pm2 {
        None => ui::data("pm2:              (no pm2.app configured)"),
        Some(pm2) => {
            ui::data(format!("pm2 app:          {}", pm2.app));
            if let Some(error) = &pm2.error {
                ui::data(format!("  error: {error}"));
            }
            for instance in &pm2.instances {
                ui::data(format!(
                    "  worker {:<3} pid {:<8} {:<10} restarts {:<4} release {}",
                    instance.pm_id,
                    instance.pid,
                    instance.status,
                    instance.restarts,
                    instance.release.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    if let Some(journal) = &status.unfinished {
        ui::data(format!(
            "unfinished:       {} {} -> {} started {}: relman stopped before it ended",
            super::history::action_name(journal.action),
            journal.from.as_ref().map_or("-", |id| id.as_str()),
            journal.to,
            journal
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ));
        for (hook, run) in &journal.hooks {
            ui::data(format!("  hook {hook}: {}", run.describe()));
        }
        ui::data(format!(
            "  `relman activate {}` goes on from it: a hook that succeeded is not run again, one left running is waited for",
            journal.to
        ));
    }
    if let Some(probe) = &status.probe {
        ui::data(format!("probe:            {}", probe.message));
    }
    ui::data(format!("health:           {}", status.health.state()));
    for problem in status.health.problems() {
        ui::data(format!("  {problem}"));
    }
    match &status.last {
        None => ui::data("last:             (no history)"),
        Some(entry) => ui::data(format!(
            "last:             {} {} {} -> {} {}",
            entry.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            super::history::action_name(entry.action),
            entry.from.as_ref().map_or("-", |id| id.as_str()),
            entry.to,
            super::history::result_name(entry.result),
        )),
    }
    Ok(OK)
}
