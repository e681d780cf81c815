//! `relman deploy`: `build`, then `activate`, then `prune`, as those commands show them.

use relman_activate::{DeployEvent, PruneOutcome};

use crate::cli::{DeployArgs, GlobalArgs};
use crate::error::CliError;
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: DeployArgs) -> Result<u8, CliError> {
    let gates = super::activate::gates_of(&args.gates);
    let request = super::build::request(args.build)?;
    let root = super::open_root(global)?;
    super::activate::on_interrupt();
    let interactive = ui::interactive();
    let report = relman_activate::deploy(
        &root,
        &request,
        gates,
        super::cancelled(),
        &mut |event| match event {
            DeployEvent::Build(event) => super::build::show_event(event, interactive),
            DeployEvent::Built(build) => {
                ui::say(super::build::sealed_line(build));
                ui::say(format!("==> activate {}", build.id));
            }
            DeployEvent::Activate(event) => super::activate::show_event(event),
            DeployEvent::Prune => ui::say("==> prune"),
        },
    )?;
    let code = report.exit_code();
    if global.json {
        let mut value = serde_json::to_value(&report).expect("a report always serialises");
        if code != 0 {
            value["error"] = serde_json::Value::String(super::activate::summary(&report.activate));
            value["code"] = code.into();
        }
        ui::json(&value);
        return Ok(code);
    }
    match &report.prune {
        PruneOutcome::Done(prune) => super::prune::tell(prune, false),
        PruneOutcome::Failed { error } => ui::say(format!(
            "warning: the prune after the deploy failed ({error}); the deploy stands: run `relman prune` later"
        )),
        PruneOutcome::Skipped => {}
    }
    ui::data(report.activate.live().map_or("-", |id| id.as_str()));
    super::activate::tell(&report.activate);
    Ok(code)
}
