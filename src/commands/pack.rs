//! `relman pack`.

use std::io::IsTerminal;

use relman_releases::{Error, PackOutput};

use crate::cli::{GlobalArgs, PackArgs};
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: PackArgs) -> Result<u8, CliError> {
    let id = super::parse_id(&args.id)?;
    if args.output.is_none() {
        if global.json {
            return Err(Error::Usage(
                "`--json` needs `--output FILE`: without it stdout carries the stream".into(),
            )
            .into());
        }
        if std::io::stdout().is_terminal() {
            return Err(Error::Usage(
                "stdout is a terminal: pipe the stream (`relman pack ID | ssh HOST relman receive`) or pass `--output FILE`".into(),
            )
            .into());
        }
    }
    let root = super::open_root(global)?;
    super::on_interrupt(|| {});
    let report = match &args.output {
        Some(path) => {
            relman_releases::pack(&root, &id, PackOutput::File(path), super::cancelled())?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            relman_releases::pack(
                &root,
                &id,
                PackOutput::Writer(&mut stdout),
                super::cancelled(),
            )?
        }
    };
    if global.json {
        ui::json(&report);
    } else {
        ui::say(format!(
            "packed release {}: {} files, {} ({} compressed){}",
            report.id,
            report.files,
            ui::bytes(report.content_bytes),
            ui::bytes(report.bytes),
            report
                .output
                .as_ref()
                .map_or_else(String::new, |path| format!(" into `{path}`"))
        ));
    }
    Ok(OK)
}
