//! The `relman` binary: parse the command line, run one command, map the outcome to an exit code.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod error;
mod ui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { error::USAGE } else { 0 };
            let _ = err.print();
            if code != 0 && std::env::args().any(|a| a == "--json") {
                // clap's message runs until its blank line; JSON gets it on one line.
                let rendered = err.render().to_string();
                let message = rendered
                    .lines()
                    .take_while(|line| !line.trim().is_empty())
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                let message = message.strip_prefix("error: ").unwrap_or(&message);
                ui::json(&serde_json::json!({ "error": message, "code": code }));
            }
            return ExitCode::from(code);
        }
    };
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => ExitCode::from(ui::report_error(&err, json)),
    }
}
