//! `relman completions SHELL` and `relman man`: generated from the command line's own
//! definition, so they never drift from it.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{CliError, OK};
use crate::ui;

pub(crate) fn completions(shell: clap_complete::Shell) -> Result<u8, CliError> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "relman", &mut out);
    ui::document(&out);
    Ok(OK)
}

pub(crate) fn man() -> Result<u8, CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .expect("rendering into memory cannot fail");
    ui::document(&out);
    Ok(OK)
}
