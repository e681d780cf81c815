//! `relman build`.

use relman_releases::{BuildEvent, BuildRequest, SourceSpec};

use crate::cli::{BuildArgs, GlobalArgs};
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: BuildArgs) -> Result<u8, CliError> {
    let request = request(args)?;
    let root = super::open_root(global)?;
    // Ctrl-C only asks the build to stop: it then kills the command's whole process group and
    // leaves the release unsealed instead of dying with children still running.
    super::on_interrupt(|| {});
    let interactive = ui::interactive();
    let report = relman_releases::build(&root, &request, super::cancelled(), &mut |event| {
        show_event(event, interactive)
    })?;
    if global.json {
        ui::json(&report);
    } else {
        ui::say(sealed_line(&report));
        ui::data(&report.id);
    }
    Ok(OK)
}

/// The request of `build` and `deploy`, from their flags.
pub(super) fn request(args: BuildArgs) -> Result<BuildRequest, CliError> {
    let source = match (args.source, args.git) {
        (Some(dir), _) => Some(SourceSpec::Dir(dir)),
        (None, Some(url)) => Some(SourceSpec::Git {
            url,
            reference: args.reference,
        }),
        (None, None) => None,
    };
    Ok(BuildRequest {
        source,
        id: args.id.as_deref().map(super::parse_id).transpose()?,
        no_reuse: args.no_reuse,
    })
}

/// Shows one build event on stderr.
pub(super) fn show_event(event: BuildEvent<'_>, interactive: bool) {
    match event {
        BuildEvent::Waiting(holder) => super::waiting(holder),
        BuildEvent::Claimed(id, dir) => ui::say(format!("building release {id} in `{dir}`")),
        BuildEvent::Step(step) if interactive => ui::say(format!("\x1b[1m==> {step}\x1b[0m")),
        BuildEvent::Step(step) => ui::say(format!("==> {step}")),
        BuildEvent::Output(bytes) => ui::raw(bytes),
    }
}

/// `sealed release ID: N files, SIZE[, node_modules reused]`.
pub(super) fn sealed_line(report: &relman_releases::BuildReport) -> String {
    format!(
        "sealed release {}: {} files, {}{}{}",
        report.id,
        report.files,
        ui::bytes(report.bytes),
        if report.reused_node_modules {
            ", node_modules reused"
        } else {
            ""
        },
        report
            .warm_cache_from
            .as_ref()
            .map_or_else(String::new, |id| format!(", build cache from {id}"))
    )
}
