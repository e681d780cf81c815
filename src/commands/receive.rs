//! `relman receive`.

use std::io::IsTerminal;

use relman_releases::{Error, ReceiveInput};

use crate::cli::{GlobalArgs, ReceiveArgs};
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn run(global: &GlobalArgs, args: ReceiveArgs) -> Result<u8, CliError> {
    if args.input.is_none() && std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "stdin is a terminal: pipe a stream from `relman pack` (`relman pack ID | ssh HOST relman receive`) or pass `--input FILE`".into(),
        )
        .into());
    }
    let root = super::open_root(global)?;
    super::on_interrupt(|| {});
    let report = match &args.input {
        Some(path) => relman_releases::receive(
            &root,
            ReceiveInput::File(path),
            super::cancelled(),
            &mut |holder| super::waiting(holder),
        )?,
        None => {
            let mut stdin = std::io::stdin().lock();
            relman_releases::receive(
                &root,
                ReceiveInput::Reader(&mut stdin),
                super::cancelled(),
                &mut |holder| super::waiting(holder),
            )?
        }
    };
    for warning in &report.warnings {
        ui::say(format!("warning: {warning}"));
    }
    if global.json {
        ui::json(&report);
    } else {
        if report.received {
            ui::say(format!(
                "received and sealed release {}: {} files, {}",
                report.id,
                report.files,
                ui::bytes(report.content_bytes)
            ));
        } else {
            ui::say(format!(
                "release {} is already sealed here with the same manifest: nothing to do",
                report.id
            ));
        }
        ui::data(&report.id);
    }
    Ok(OK)
}
