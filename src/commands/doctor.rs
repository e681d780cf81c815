//! `relman doctor`.

use relman_activate::Level;

use crate::cli::GlobalArgs;
use crate::error::{CliError, FAILED, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs) -> Result<u8, CliError> {
    let root = super::open_root(global)?;
    let checks = relman_activate::doctor(&root);
    let failed = checks.iter().any(|c| c.level == Level::Fail);
    if global.json {
        ui::json(&checks);
    } else {
        for check in &checks {
            let level = match check.level {
                Level::Ok => "OK  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            ui::data(format!("{level}  {:14} {}", check.name, check.message));
            if let Some(fix) = &check.fix
                && check.level != Level::Ok
            {
                ui::data(format!("      {:14} fix: {fix}", ""));
            }
        }
    }
    Ok(if failed { FAILED } else { OK })
}
