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
    for protected in &report.protected {
        ui::say(format!("kept {} ({})", protected.id, protected.reason));
    }
    ui::say(format!(
        "{verb} {} release{}, {} freed; {} kept",
        report.deleted.len(),
        if report.deleted.len() == 1 { "" } else { "s" },
        ui::bytes(report.bytes_freed),
        report.kept.len()
    ));
}
