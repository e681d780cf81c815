//! `relman init`.

use relman_releases::DeployRoot;

use crate::cli::GlobalArgs;
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs) -> Result<u8, CliError> {
    let (_root, report) = DeployRoot::init(&super::root_path(global), &mut super::waiting)?;
    if global.json {
        ui::json(&report);
    } else if report.created.is_empty() {
        ui::say(format!(
            "`{}` is already a deploy root; nothing to do",
            report.root
        ));
    } else {
        for path in &report.created {
            ui::say(format!("created `{path}`"));
        }
        ui::data(&report.root);
    }
    Ok(OK)
}
