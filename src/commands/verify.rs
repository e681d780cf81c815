//! `relman verify`.

use relman_releases::manifest::Diff;

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::error::{CliError, FAILED, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<u8, CliError> {
    let id = args.id.as_deref().map(super::parse_id).transpose()?;
    let root = super::open_root(global)?;
    root.require_initialised()?;
    let report = relman_releases::manifest::verify(&root, id.as_ref())?;
    let runtime = runtime_note(&report.runtime);
    // A mismatch is a failure (exit 1), reported like every other error: `error: ...` on
    // stderr and, with `--json`, `error` and `code` in the document.
    let mismatch = (!report.ok).then(|| {
        format!(
            "release {} does not match its manifest: {} changed, {} missing, {} added{}; build a new release rather than editing one in place",
            report.id,
            report.diff.changed.len(),
            report.diff.missing.len(),
            report.diff.added.len(),
            runtime
                .as_ref()
                .map_or_else(String::new, |note| format!("; {note}")),
        )
    });
    if global.json {
        let mut value = serde_json::to_value(&report).expect("a verify report always serialises");
        if let Some(message) = &mismatch {
            value["error"] = message.clone().into();
            value["code"] = FAILED.into();
        }
        ui::json(&value);
    } else {
        // Only the differences that count: the run-time ones are in `--json` and the summary.
        for (label, paths) in [
            ("changed", &report.diff.changed),
            ("missing", &report.diff.missing),
            ("added", &report.diff.added),
        ] {
            for path in paths {
                match report.details.get(path) {
                    Some(detail) => ui::data(format!("{label:8} {path} ({detail})")),
                    None => ui::data(format!("{label:8} {path}")),
                }
            }
        }
    }
    match mismatch {
        Some(message) => {
            ui::say(format!("error: {message}"));
            Ok(FAILED)
        }
        None => {
            if !global.json {
                // The size `relman list` shows is the whole release; say both when the
                // manifest leaves some of it out (node_modules, .next/cache).
                let size = match report.release_bytes {
                    Some(all) if all != report.bytes => format!(
                        "{} files, {} checked of the release's {}",
                        report.files,
                        ui::bytes(report.bytes),
                        ui::bytes(all)
                    ),
                    _ => format!("{} files, {}", report.files, ui::bytes(report.bytes)),
                };
                ui::say(format!(
                    "release {} matches its manifest ({size}){}",
                    report.id,
                    runtime
                        .as_ref()
                        .map_or_else(String::new, |note| format!("; {note}")),
                ));
            }
            Ok(OK)
        }
    }
}

/// `6 files written at run time by the app are not counted (e.g. `PATH`)`, or `None` when no
/// such file differs.
fn runtime_note(runtime: &Diff) -> Option<String> {
    let example = runtime.paths().next()?;
    Some(match runtime.len() {
        1 => format!("1 file written at run time by the app is not counted (`{example}`)"),
        count => format!(
            "{count} files written at run time by the app are not counted (e.g. `{example}`)"
        ),
    })
}
