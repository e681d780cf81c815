//! `relman init`.

use relman_releases::{AppName, AppSpec, DeployRoot};

use crate::cli::{GlobalArgs, InitArgs};
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: InitArgs) -> Result<u8, CliError> {
    let app = match (args.app, args.port) {
        (Some(name), Some(port)) => Some(AppSpec {
            name: AppName::parse(&name)?,
            port,
            source: args.source,
            app_dir: args.app_dir,
        }),
        _ => None,
    };
    let (root, report) =
        DeployRoot::init(&super::root_path(global), app.as_ref(), &mut super::waiting)?;
    if global.json {
        ui::json(&report);
        return Ok(OK);
    }
    if report.created.is_empty() && app.is_none() {
        ui::say(format!(
            "`{}` is already a deploy root; nothing to do",
            report.root
        ));
        return Ok(OK);
    }
    if let Some(app) = report.app.as_ref().filter(|_| !report.created.is_empty()) {
        ui::say(format!("for {app}"));
    }
    for path in &report.created {
        ui::say(format!("created `{path}`"));
    }
    for path in &report.kept {
        ui::say(format!("kept `{path}` as it was (never overwritten)"));
    }
    if app.is_some()
        && report
            .kept
            .iter()
            .any(|p| p.file_name() == Some("relman.toml"))
    {
        ui::say(
            "this init set none of the app's keys in the kept relman.toml: check `pm2.app`, `[build]`, `[preflight]` and `[verify]` there (docs/reference.md, section 2), or move it away and run this init again",
        );
    }
    ui::data(&report.root);
    let next = match &app {
        Some(AppSpec {
            source: Some(_), ..
        }) => format!("relman --root {} deploy", root.path()),
        Some(_) => format!("relman --root {} deploy --source DIR", root.path()),
        None => format!(
            "edit `{}`, then `relman --root {} deploy --source DIR`",
            root.path().join("relman.toml"),
            root.path()
        ),
    };
    ui::say(format!("next: {next}"));
    Ok(OK)
}
