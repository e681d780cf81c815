//! `relman verify`.

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::error::{CliError, FAILED, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<u8, CliError> {
    let id = args.id.as_deref().map(super::parse_id).transpose()?;
    let root = super::open_root(global)?;
    root.require_initialised()?;
    let report = relman_releases::manifest::verify(&root, id.as_ref())?;
    if global.json {
        ui::json(&report);
    } else {
        for (label, paths) in [
            ("changed", &report.diff.changed),
            ("missing", &report.diff.missing),
            ("added", &report.diff.added),
        ] {
            for path in paths {
                ui::data(format!("{label:8} {path}"));
            }
        }
        if report.ok {
            ui::say(format!(
                "release {} matches its manifest ({} files, {})",
                report.id,
                report.files,
                ui::bytes(report.bytes)
            ));
        } else {
            ui::say(format!(
                "release {} does not match its manifest: {} changed, {} missing, {} added",
                report.id,
                report.diff.changed.len(),
                report.diff.missing.len(),
                report.diff.added.len()
            ));
        }
    }
    Ok(if report.ok { OK } else { FAILED })
}
