//! Talking to the operator: data on stdout, everything else on stderr.
//!
//! Every write ignores its error: a terminal that went away (a dropped SSH session) must not
//! panic relman in the middle of a roll, which `println!` would.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::error::CliError;

/// Prints one JSON document on stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("output always serialises");
    data(text);
}

/// Prints a line of data on stdout.
pub(crate) fn data(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints a message for the operator on stderr.
pub(crate) fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes raw bytes (a build command's output) to stderr.
pub(crate) fn raw(bytes: &[u8]) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(bytes);
}

/// Writes a generated document (completions, the man page) to stdout. A closed pipe
/// (`relman man | head`) is not worth a message.
pub(crate) fn document(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Whether stderr is a terminal: progress lines may then be redrawn in place.
pub(crate) fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// Prints an error the contract's way and returns its exit code.
pub(crate) fn report_error(err: &CliError, json_mode: bool) -> u8 {
    let code = err.code();
    // A failed build's output was streamed to stderr as it ran, so its last lines are right
    // above: the error names the log instead of printing them twice. A script reading JSON
    // gets them in `log_tail`.
    say(format!("error: {err}"));
    if json_mode {
        let mut value = serde_json::json!({ "error": err.to_string(), "code": code });
        if let Some(tail) = err.log_tail() {
            value["log_tail"] = tail.into();
        }
        json(&value);
    }
    code
}

/// A byte count for people.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
