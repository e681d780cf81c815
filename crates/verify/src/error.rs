//! The errors of this crate: [`Failure`] for one failed try, [`Error`] for a whole operation.

use std::io;
use std::path::PathBuf;

use crate::regression::Answer;

/// Why one HTTP try did not pass: exactly what was seen, worded for an operator.
///
/// Returned by [`check_once`](crate::check_once); the last one of a failed
/// [`probe`](crate::probe) or [`preflight`](crate::preflight) is carried by the [`Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Nothing listens on the port.
    #[error("connection refused")]
    Refused,
    /// The whole try (connect, response and body) took longer than its timeout.
    #[error("timed out after {after_ms} ms")]
    TimedOut {
        /// The timeout of the try, in milliseconds.
        after_ms: u128,
    },
    /// The server answered with another status than the expected one.
    #[error("status {status}, expected {expected}")]
    Status {
        /// The status that came back.
        status: u16,
        /// The status the probe wants.
        expected: u16,
    },
    /// The status was right but the body lacks the expected text.
    #[error(
        "body does not contain {needle:?}{}",
        if *truncated { " in its first 1 MiB (the rest was not read)" } else { "" }
    )]
    BodyMismatch {
        /// The text that was looked for.
        needle: String,
        /// The body was larger than 1 MiB and only its first MiB was searched.
        truncated: bool,
    },
    /// Bytes came back, but not an HTTP/1.x response.
    #[error("the answer is not HTTP: {detail}")]
    NotHttp {
        /// What the HTTP parser said.
        detail: String,
    },
    /// The server closed or reset the connection before a whole response arrived.
    #[error("connection closed before a complete response ({detail})")]
    Closed {
        /// The I/O error seen.
        detail: String,
    },
    /// The host name of the URL does not resolve.
    #[error("host `{host}` not found")]
    HostNotFound {
        /// The host name.
        host: String,
    },
    /// The URL itself is unusable; see [`validate_url`](crate::validate_url).
    #[error("invalid URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// Any other connection problem.
    #[error("connection failed: {detail}")]
    Connection {
        /// The underlying error.
        detail: String,
    },
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The preflight was stopped because the operator interrupted relman.
    #[error("the preflight was interrupted")]
    Cancelled,
    /// A probe or preflight URL is not a plain `http://host[:port]/path` URL.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it, with a hint.
        reason: String,
    },
    /// Every try of [`probe`](crate::probe) failed.
    #[error("`{url}` did not pass the probe after {attempts} {word}, last: {last}", word = plural(*.attempts, "attempt", "attempts"))]
    Probe {
        /// The URL probed.
        url: String,
        /// How many tries were made.
        attempts: u32,
        /// What the last try saw.
        last: Failure,
    },
    /// The preflight URL does not contain `{port}`, so it would not reach the release under test.
    #[error(
        "preflight URL `{url}` does not contain `{{port}}`: it would probe whatever already listens there, not the release under test; write it like `http://127.0.0.1:{{port}}/health`"
    )]
    PortlessUrl {
        /// The URL as given.
        url: String,
    },
    /// The preflight command is empty.
    #[error("the preflight command is empty: set one, or skip the preflight")]
    EmptyCommand,
    /// The directory to run the preflight command in is missing.
    #[error("cannot run the preflight in `{dir}`: it is not a directory")]
    MissingDir {
        /// The directory.
        dir: PathBuf,
    },
    /// No free loopback port could be had.
    #[error("could not pick a free port on 127.0.0.1: {source}")]
    Port {
        /// The bind error.
        #[source]
        source: io::Error,
    },
    /// The preflight command could not be started.
    #[error("could not start the preflight command `{command}` in `{dir}`: {source}")]
    Spawn {
        /// The command, `{port}` replaced.
        command: String,
        /// Its working directory.
        dir: PathBuf,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// The preflight command ended before its URL passed.
    #[error(
        "preflight command exited with {status} before `{url}` answered (it must keep serving in the foreground), last try: {last}{tail}",
        tail = output_tail(.output)
    )]
    PreflightExited {
        /// `status N` or `signal N`.
        status: String,
        /// The URL polled, `{port}` replaced.
        url: String,
        /// What the last try saw.
        last: Failure,
        /// The last lines the command printed (stdout and stderr together).
        output: Vec<String>,
    },
    /// The release answered HTTP but kept failing the checks for the whole grace period.
    #[error(
        "preflight `{url}` answered but kept failing for {after_ms} ms, last try: {last}{tail}",
        tail = output_tail(.output)
    )]
    PreflightFailing {
        /// The URL polled, `{port}` replaced.
        url: String,
        /// How long it kept failing after its first answer.
        after_ms: u128,
        /// What the last try saw.
        last: Failure,
        /// The last lines the command printed (stdout and stderr together).
        output: Vec<String>,
    },
    /// The preflight URL did not pass before the preflight timeout.
    #[error(
        "preflight `{url}` did not pass within {timeout_ms} ms, last try: {last}{tail}",
        tail = output_tail(.output)
    )]
    PreflightTimedOut {
        /// The URL polled, `{port}` replaced.
        url: String,
        /// The preflight timeout, in milliseconds.
        timeout_ms: u128,
        /// What the last try saw.
        last: Failure,
        /// The last lines the command printed (stdout and stderr together).
        output: Vec<String>,
    },
    /// A route of the release under preflight kept answering 500 or more, or nothing, for
    /// the whole grace period where the live release answers below 500 (or nothing is live).
    #[error(
        "route `{route}` {new} on the new release ({live}){also}{tail}",
        new = answered(.new),
        live = compared_with(*.live, "the live release answers", "no live answer to compare with"),
        also = also_regressed(.also),
        tail = output_tail(.output)
    )]
    RouteRegressed {
        /// The route, as requested (a path, perhaps with a query).
        route: String,
        /// What the live release answers for it, below 500; `None`: there is no live answer
        /// to compare with (nothing is live, or it was not asked).
        live: Option<u16>,
        /// What the new release answered last.
        new: Answer,
        /// The other routes that regressed too, in the order they were checked.
        also: Vec<String>,
        /// The last lines the command printed (stdout and stderr together).
        output: Vec<String>,
    },
    /// After the roll, a route kept answering 500 or more, or nothing, for every try of
    /// [`probe_routes`](crate::probe_routes) where the previous release answered below 500.
    #[error(
        "route `{route}` {new} on the new release after {attempts} {word} ({live}){also}",
        new = answered(.new),
        word = plural(*.attempts, "attempt", "attempts"),
        live = compared_with(*.live, "the previous release answered", "no answer from before the roll to compare with"),
        also = also_regressed(.also)
    )]
    RouteProbe {
        /// The route, as requested (a path, perhaps with a query).
        route: String,
        /// What the previous release answered for it, below 500; `None`: there is no answer
        /// from before the roll to compare with (nothing was live, or it was not asked).
        live: Option<u16>,
        /// What the new release answered last.
        new: Answer,
        /// How many tries were made.
        attempts: u32,
        /// The other routes that regressed too, in the order they were checked.
        also: Vec<String>,
    },
    /// A manifest of the Next.js build could not be read.
    #[error("could not read the Next.js manifest `{path}`: {source}")]
    ReadManifest {
        /// The manifest.
        path: PathBuf,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// A manifest of the Next.js build is not the JSON that Next.js writes.
    #[error(
        "the Next.js manifest `{path}` is not valid: {source}; rebuild the release, or list its routes by hand"
    )]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The `basePath` of the Next.js build is not a URL path.
    #[error(
        "the Next.js manifest `{path}` has a `basePath` of {base_path:?}, which is not a URL path like \"/docs\"; rebuild the release, or list its routes by hand"
    )]
    BadBasePath {
        /// The manifest.
        path: PathBuf,
        /// The `basePath` found there.
        base_path: String,
    },
    /// Processes of the preflight's process group survived SIGKILL.
    #[error(
        "preflight processes {pids:?} of process group {pgid} are still running after SIGKILL: stop them by hand"
    )]
    StrayProcesses {
        /// The process group.
        pgid: u32,
        /// The pids still alive.
        pids: Vec<u32>,
    },
    /// A system call around the preflight process failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done, e.g. `create the output pipe`.
        action: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn plural(count: u32, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// `answered 500`, or `gave no answer (connection refused)`.
fn answered(answer: &Answer) -> String {
    match answer {
        Answer::Status(status) => format!("answered {status}"),
        Answer::ErrorPage(status) => format!("answered {status} with Next.js's error page"),
        Answer::NoAnswer(failure) => format!("gave no answer ({failure})"),
    }
}

fn compared_with(live: Option<u16>, answered: &str, nothing: &str) -> String {
    match live {
        Some(status) => format!("{answered} {status}"),
        None => nothing.to_owned(),
    }
}

/// `; `/a` and `/b` regressed too`, or nothing when the first route was the only one.
fn also_regressed(routes: &[String]) -> String {
    let quoted: Vec<String> = routes.iter().map(|route| format!("`{route}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => format!("; {one} regressed too"),
        [rest @ .., last] => format!("; {} and {last} regressed too", rest.join(", ")),
    }
}

/// Renders captured output after a one-line message, indented so it reads as a quote.
fn output_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; it printed nothing".to_owned();
    }
    let mut text = String::from("; its last output:");
    for line in lines {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}
