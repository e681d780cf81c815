//! `relman prune`.

use crate::cli::{GlobalArgs, PruneArgs};
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: PruneArgs) -> Result<u8, CliError> {
    let root = super::open_root(global)?;
    let report = relman_releases::prune(&root, args.keep, args.dry_run, &mut super::waiting)?;
    if global.json {
        ui::json(&report);
        return Ok(OK);
    }
    tell(&report, true);
    Ok(OK)
}

/// The deleted IDs (on stdout when they are the command's data), what was kept and the total
/// on stderr.
pub(super) fn tell(report: &relman_releases::PruneReport, ids_are_data: bool) {
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for id in &report.deleted {
        if ids_are_data {
            ui::data(id);
        } else {
            ui::say(format!("{verb} {id}"));
        }
    }
    // Every release kept, newest first, and why.
    for id in &report.kept {
        match report.protected.iter().find(|p| p.id == *id) {
            Some(protected) => ui::say(format!("kept {id} ({})", protected.reason)),
            None if report.keep == 1 => ui::say(format!("kept {id} (the newest sealed)")),
            None => ui::say(format!(
                "kept {id} (one of the {} newest sealed)",
                report.keep
            )),
        }
    }
    ui::say(format!(
        "{verb} {} release{}, {} freed; {} kept",
        report.deleted.len(),
        if report.deleted.len() == 1 { "" } else { "s" },
        ui::bytes(report.bytes_freed),
        report.kept.len()
    ));
}
