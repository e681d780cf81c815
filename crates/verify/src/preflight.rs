//! The preflight (SPEC activate step 2): start a release on a free loopback port in its own
//! process group, wait until its URL passes the probe checks and its routes do not regress
//! against the live release, and always stop the whole group.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use relman_sys::process::Group;

use crate::error::{Error, Failure};
use crate::probe::{ProbeSpec, check_once, validate_url};
use crate::regression::{Answer, Origin, Regression, RouteChecks, settle};

/// How many lines of the command's output an error quotes.
const TAIL_LINES: usize = 40;
/// A longer line is cut: one runaway line must not hold the memory of the tail.
const MAX_LINE_BYTES: usize = 1024;
/// How long a stopped group gets to finish after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long SIGKILL gets to take effect before the survivors are reported.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the last output once the group is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// How to start a release for its preflight and what counts as healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightSpec {
    /// Run with `sh -c`; `{port}` is replaced by the chosen port.
    pub command: String,
    /// Polled until it passes; must contain `{port}`, which is replaced by the chosen port.
    pub url: String,
    /// Environment variable that receives the port (e.g. `PORT`); empty: none is set.
    pub port_env: String,
    /// The working directory of the command: the release directory.
    pub dir: PathBuf,
    /// Added to the inherited environment (`RELMAN_RELEASE` among them); `port_env` wins over it.
    pub env: Vec<(String, String)>,
    /// The bound of the whole preflight, from start to a passing try.
    pub timeout: Duration,
    /// The status that counts as healthy.
    pub status: u16,
    /// Text the body must contain, taken literally.
    pub body_contains: Option<String>,
    /// The bound of one try.
    pub try_timeout: Duration,
    /// The pause after a failed try.
    pub interval: Duration,
    /// How long the release may keep failing the checks once it answers HTTP at all. Booting
    /// (connection refused) is bounded by `timeout` alone; an app that answers `500` for this
    /// long is broken, and waiting out the whole `timeout` would only delay saying so. Also
    /// how long, once the URL passed, a route may keep regressing (a page may need a moment
    /// after boot).
    pub answered_grace: Duration,
    /// The pages asked on the release's port once the URL passed, and the live release's
    /// answers to compare with; [`RouteChecks::none`] asks none.
    pub routes: RouteChecks,
}

/// What a passing [`preflight`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightReport {
    /// The loopback port the release was started on.
    pub port: u16,
    /// Time from starting the command to the passing URL and routes (stopping it is not
    /// counted).
    pub elapsed: Duration,
    /// The last answer of every route of `spec.routes`, in its order; failures that the
    /// live release shares are here too (see [`already_failing`](crate::already_failing)).
    pub routes: Vec<(String, Answer)>,
}

/// Starts `spec.command` on a free loopback port, waits until `spec.url` passes, and stops the
/// command's whole process group, whatever the outcome.
///
/// Fails when the command exits before the URL passes ([`Error::PreflightExited`]), the URL
/// has not passed within `spec.timeout` ([`Error::PreflightTimedOut`]), or a route of
/// `spec.routes` still regresses `spec.answered_grace` after the URL passed
/// ([`Error::RouteRegressed`]); all quote the last lines the command printed. A process that
/// leaves the group (`setsid`, a daemonizing server) is out of reach and is not stopped.
pub fn preflight(spec: &PreflightSpec) -> Result<PreflightReport, Error> {
    preflight_cancellable(spec, &AtomicBool::new(false))
}

/// [`preflight`] that also stops, with [`Error::Cancelled`], soon after `cancel` is set (an
/// operator's Ctrl-C): the command's group is stopped the same way.
pub fn preflight_cancellable(
    spec: &PreflightSpec,
    cancel: &AtomicBool,
) -> Result<PreflightReport, Error> {
    if spec.command.trim().is_empty() {
        return Err(Error::EmptyCommand);
    }
    if !spec.url.contains("{port}") {
        return Err(Error::PortlessUrl {
            url: spec.url.clone(),
        });
    }
    validate_url(&spec.url.replace("{port}", "1"))?;
    if !spec.dir.is_dir() {
        return Err(Error::MissingDir {
            dir: spec.dir.clone(),
        });
    }

    let port = free_port()?;
    let command = spec.command.replace("{port}", &port.to_string());
    let url = spec.url.replace("{port}", &port.to_string());
    let origin = Origin::of(&url)?;

    let (reader, writer) = io::pipe().map_err(|source| Error::Io {
        action: "create the pipe for the preflight output",
        source,
    })?;
    let writer_for_stderr = writer.try_clone().map_err(|source| Error::Io {
        action: "create the pipe for the preflight output",
        source,
    })?;
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(&command)
        .current_dir(&spec.dir)
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr);
    // Its own group, so that one signal reaches every process the shell starts.
    relman_sys::process::in_own_group(&mut child);
    if !spec.port_env.is_empty() {
        child.env(&spec.port_env, port.to_string());
    }
    let spawned = child.spawn();
    // The `Command` holds our copies of the pipe's write end: drop them, or the reader
    // never sees the end of the output.
    drop(child);
    let child = spawned.map_err(|source| Error::Spawn {
        command: command.clone(),
        dir: spec.dir.clone(),
        source,
    })?;
    let mut group = Group::new(child);
    let output = Output::drain(reader);

    let started = Instant::now();
    let deadline = started + spec.timeout;
    let mut probe = ProbeSpec {
        url: url.clone(),
        status: spec.status,
        body_contains: spec.body_contains.clone(),
        attempts: 1,
        interval: spec.interval,
        timeout: spec.try_timeout,
    };
    let mut last: Option<Failure> = None;
    let mut first_answer: Option<Instant> = None;
    let outcome = loop {
        // Checked before the try: a try that fails because the command just died should
        // be reported as the exit, which is the real cause.
        let exited_before = group.leader_exited();
        let budget = spec
            .try_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        probe.timeout = budget;
        match check_once(&probe) {
            Ok(_) => break Ok(()),
            // A try cut short by the deadline says nothing about the release; the failure
            // before it (say `status 500`) is the one worth reporting.
            Err(Failure::TimedOut { .. }) if budget < spec.try_timeout && last.is_some() => {}
            Err(failure) => last = Some(failure),
        }
        // `last` is set: the first try always records its failure.
        let failure = last.clone().unwrap_or(Failure::Refused);
        if exited_before || group.leader_exited() {
            break Err(Stop::Exited(failure));
        }
        if cancel.load(Ordering::SeqCst) {
            break Err(Stop::Cancelled);
        }
        if matches!(
            failure,
            Failure::Status { .. } | Failure::BodyMismatch { .. }
        ) {
            let since = *first_answer.get_or_insert_with(Instant::now);
            if since.elapsed() >= spec.answered_grace {
                break Err(Stop::Failing(failure, since.elapsed()));
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break Err(Stop::TimedOut(failure));
        }
        thread::sleep(spec.interval.min(remaining));
    };
    let outcome = outcome
        .and_then(|()| prove_routes(spec, &origin, &group, cancel))
        .map(|routes| (started.elapsed(), routes));

    let stopped = group
        .stop(TERM_GRACE, KILL_GRACE)
        .map_err(|stray| Error::StrayProcesses {
            pgid: stray.pgid,
            pids: stray.pids,
        });
    let output = output.finish();
    match (outcome, stopped) {
        (Ok((elapsed, routes)), Ok(_)) => Ok(PreflightReport {
            port,
            elapsed,
            routes,
        }),
        (Ok(_), Err(error)) => Err(error),
        (Err(Stop::Exited(last)), stopped) => Err(Error::PreflightExited {
            status: match stopped {
                Ok(status) => describe(status),
                Err(_) => "an unknown status".to_owned(),
            },
            url,
            last,
            output,
        }),
        (Err(Stop::Cancelled), _) => Err(Error::Cancelled),
        (Err(Stop::Failing(last, after)), _) => Err(Error::PreflightFailing {
            url,
            after_ms: after.as_millis(),
            last,
            output,
        }),
        (Err(Stop::TimedOut(last)), _) => Err(Error::PreflightTimedOut {
            url,
            timeout_ms: spec.timeout.as_millis(),
            last,
            output,
        }),
        (Err(Stop::Regressed(first, also)), _) => Err(Error::RouteRegressed {
            route: first.route,
            live: first.live,
            new: first.new,
            also,
            output,
        }),
    }
}

enum Stop {
    Exited(Failure),
    TimedOut(Failure),
    Failing(Failure, Duration),
    Cancelled,
    /// The first route that still regressed, and the others that did.
    Regressed(Regression, Vec<String>),
}

/// Asks the routes on the release under test, its URL having passed, and asks the
/// regressing ones again every `spec.interval` for at most `spec.answered_grace`.
fn prove_routes(
    spec: &PreflightSpec,
    origin: &Origin,
    group: &Group,
    cancel: &AtomicBool,
) -> Result<Vec<(String, Answer)>, Stop> {
    if spec.routes.is_empty() {
        return Ok(Vec::new());
    }
    let since = Instant::now();
    let mut cancelled = false;
    let (answers, regressed) = settle(
        origin,
        &spec.routes,
        spec.try_timeout,
        spec.interval,
        || {
            cancelled = cancel.load(Ordering::SeqCst);
            // A release whose command died will not recover: its output tail, quoted by the
            // error, says why, so there is no point in waiting out the grace.
            !cancelled && !group.leader_exited() && since.elapsed() < spec.answered_grace
        },
    );
    if cancelled {
        return Err(Stop::Cancelled);
    }
    let mut regressed = regressed.into_iter();
    match regressed.next() {
        None => Ok(answers),
        Some(first) => Err(Stop::Regressed(
            first,
            regressed.map(|other| other.route).collect(),
        )),
    }
}

/// A free loopback port for the release, taken below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`). The check binds and releases it, so the release can bind it
/// itself; in between, a port from the ephemeral range may be handed to anyone's `bind(0)` (a
/// test harness, another tool picking "a free port") and then serve something else, which the
/// preflight would blame on the release. Below the range only a process that names the port
/// itself can take it. Falls back to `bind(0)` when nothing below the range is free.
fn free_port() -> Result<u16, Error> {
    use std::hash::{BuildHasher, Hasher};
    let (low, _) = ephemeral_range().unwrap_or((32768, 60999));
    let start = low.saturating_sub(16384).max(1024);
    if start < low {
        for _ in 0..64 {
            // A random candidate: `RandomState` is seeded afresh for each hasher.
            let random = std::hash::RandomState::new().build_hasher().finish();
            let candidate = start + u16::try_from(random % u64::from(low - start)).unwrap_or(0);
            if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
                return Ok(candidate);
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Port { source })?;
    let port = listener
        .local_addr()
        .map_err(|source| Error::Port { source })?
        .port();
    Ok(port)
}

/// The kernel's ephemeral port range, `(low, high)`.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The last lines the command printed, read by a thread so the command never blocks on a
/// full pipe.
struct Output {
    lines: Arc<Mutex<VecDeque<String>>>,
    reader: JoinHandle<()>,
}

impl Output {
    fn drain(mut pipe: io::PipeReader) -> Self {
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let shared = Arc::clone(&lines);
        let reader = thread::spawn(move || {
            let mut partial = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        for &byte in &chunk[..n] {
                            if byte == b'\n' {
                                push_line(&shared, &partial);
                                partial.clear();
                            } else if partial.len() < MAX_LINE_BYTES {
                                partial.push(byte);
                            }
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if !partial.is_empty() {
                push_line(&shared, &partial);
            }
        });
        Self { lines, reader }
    }

    /// Waits briefly for the rest of the output, then takes the tail. A process that left
    /// the group may hold the pipe open for ever, so the reader is never waited for long.
    fn finish(self) -> Vec<String> {
        let deadline = Instant::now() + DRAIN_GRACE;
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let lines = self
            .lines
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default();
        lines.into()
    }
}

fn push_line(lines: &Mutex<VecDeque<String>>, bytes: &[u8]) {
    let line = clean_line(&String::from_utf8_lossy(bytes));
    if let Ok(mut lines) = lines.lock() {
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// Drops terminal colour codes and other control characters: the tail ends up in error
/// messages and logs, where they are noise or worse.
pub(crate) fn clean_line(line: &str) -> String {
    let mut clean = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // A CSI sequence ends with a byte in `@`..=`~`.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c == '\t' || !c.is_control() {
            clean.push(c);
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use std::fs;

    use tempfile::TempDir;

    use super::*;
    use crate::regression::Baseline;

    #[test]
    fn the_preflight_port_is_free_and_below_the_ephemeral_range() {
        let (low, _) = ephemeral_range().expect("Linux has an ephemeral range");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let port = free_port().unwrap();
            assert!(port < low, "{port} is in the ephemeral range from {low}");
            TcpListener::bind(("127.0.0.1", port)).expect("free");
            seen.insert(port);
        }
        assert!(seen.len() > 10, "random, not one port: {seen:?}");
    }

    /// Whether `node` can run the tests; a machine without it skips them loudly, CI never.
    #[allow(
        clippy::print_stderr,
        reason = "a skipped test must be seen in the test output"
    )]
    fn have_node() -> bool {
        let found = Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "`node` is required for the preflight tests in CI"
            );
            eprintln!("SKIPPED: `node` is not installed, the preflight tests did not run");
        }
        found
    }

    fn spec(dir: &TempDir, command: &str) -> PreflightSpec {
        PreflightSpec {
            command: command.to_owned(),
            url: "http://127.0.0.1:{port}/health".to_owned(),
            port_env: "PORT".to_owned(),
            dir: dir.path().to_owned(),
            env: vec![("RELMAN_RELEASE".to_owned(), "20260101000000".to_owned())],
            timeout: Duration::from_secs(10),
            status: 200,
            body_contains: None,
            try_timeout: Duration::from_millis(500),
            answered_grace: Duration::from_secs(60),
            interval: Duration::from_millis(50),
            routes: RouteChecks::none(),
        }
    }

    /// A node app whose `/health` answers 200 and whose other pages are up to `pages`, a JS
    /// body run for each request (`req`, `res` and `fs` in scope) that answers or falls
    /// through to a 404.
    fn write_app(dir: &TempDir, pages: &str) {
        let script = format!(
            r#"
            const fs = require('fs');
            fs.writeFileSync('app.pid', String(process.pid));
            require('http').createServer((req, res) => {{
                if (req.url === '/health') {{ res.end('ok'); return; }}
                {pages}
                res.statusCode = 404;
                res.end('not found');
            }}).listen(Number(process.env.PORT), '127.0.0.1');
            "#
        );
        #[allow(
            clippy::disallowed_methods,
            reason = "a test fixture in a temp dir, not a deploy root: nothing to make atomic"
        )]
        fs::write(dir.path().join("app.js"), script).unwrap();
    }

    /// `/` throws: 500, as the page of the incident did.
    const HOME_THROWS: &str =
        "if (req.url === '/') { res.statusCode = 500; res.end('boom'); return; }";

    fn routes(paths: &[&str], baseline: Baseline) -> RouteChecks {
        RouteChecks {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            baseline,
        }
    }

    fn live(answers: &[(&str, u16)]) -> Baseline {
        Baseline::Live(
            answers
                .iter()
                .map(|(route, status)| ((*route).to_owned(), Answer::Status(*status)))
                .collect(),
        )
    }

    /// A node server that records its pid in `name`, answers `status` with its release and
    /// port, and records the port it was given on the command line in `argv`.
    fn write_server(dir: &TempDir, name: &str, status: u16, extra: &str) {
        let script = format!(
            r#"
            const fs = require('fs');
            fs.writeFileSync('{name}.pid', String(process.pid));
            fs.writeFileSync('argv', JSON.stringify(process.argv.slice(2)));
            {extra}
            require('http').createServer((req, res) => {{
                res.statusCode = {status};
                res.end('release ' + process.env.RELMAN_RELEASE + ' port ' + process.env.PORT);
            }}).listen(Number(process.env.PORT), '127.0.0.1');
            "#
        );
        #[allow(
            clippy::disallowed_methods,
            reason = "a test fixture in a temp dir, not a deploy root: nothing to make atomic"
        )]
        fs::write(dir.path().join(format!("{name}.js")), script).unwrap();
    }

    fn read_pid(dir: &TempDir, name: &str) -> i32 {
        fs::read_to_string(dir.path().join(format!("{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Gone means no such process, or only a zombie waiting for a parent that is not us.
    fn is_gone(pid: i32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => matches!(
                relman_sys::proc::state_and_group(&stat),
                Some(('Z' | 'X', _)) | None
            ),
        }
    }

    #[test]
    fn a_healthy_release_passes_and_is_stopped() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        write_server(&dir, "server", 200, "");
        let mut spec = spec(&dir, "exec node server.js {port}");
        spec.body_contains = Some("release 20260101000000".to_owned());
        let report = preflight(&spec).unwrap();
        let argv = fs::read_to_string(dir.path().join("argv")).unwrap();
        assert_eq!(
            argv,
            format!("[\"{}\"]", report.port),
            "`{{port}}` in the command"
        );
        assert!(report.elapsed < spec.timeout);
        assert!(
            is_gone(read_pid(&dir, "server")),
            "the server outlived its preflight"
        );
    }

    #[test]
    fn port_env_wins_over_the_extra_environment() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        write_server(&dir, "server", 200, "");
        let mut spec = spec(&dir, "node server.js");
        // A stale PORT in `env` must not send the release to another port than the probed one.
        spec.env.push(("PORT".to_owned(), "1".to_owned()));
        spec.body_contains = Some("port ".to_owned());
        let report = preflight(&spec).unwrap();
        spec.body_contains = None;
        assert!(report.port > 1);
        assert!(
            is_gone(read_pid(&dir, "server")),
            "the server outlived its preflight"
        );
    }

    #[test]
    fn a_grandchild_is_stopped_too() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        // The shell cannot exec into node here, so node is its child; node starts a child
        // of its own that ignores SIGTERM, which only SIGKILL removes.
        write_server(
            &dir,
            "server",
            200,
            r#"
            const stubborn = require('child_process').spawn(
                process.execPath,
                ['-e', "process.on('SIGTERM', () => {}); require('fs').writeFileSync('stubborn.pid', String(process.pid)); setInterval(() => {}, 1000)"],
                { stdio: 'inherit' });
            while (!fs.existsSync('stubborn.pid')) { require('child_process').execSync('sleep 0.05'); }
            "#,
        );
        let spec = spec(&dir, "node server.js; echo after");
        let started = Instant::now();
        preflight(&spec).unwrap();
        assert!(
            started.elapsed() >= TERM_GRACE,
            "SIGKILL came before the grace period"
        );
        assert!(
            is_gone(read_pid(&dir, "server")),
            "the server outlived its preflight"
        );
        assert!(
            is_gone(read_pid(&dir, "stubborn")),
            "the grandchild outlived its preflight"
        );
    }

    #[test]
    fn a_release_answering_500_fails_with_its_status() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        write_server(&dir, "server", 500, "");
        let mut spec = spec(&dir, "node server.js");
        spec.timeout = Duration::from_secs(1);
        let error = preflight(&spec).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, Error::PreflightTimedOut { .. }),
            "{message}"
        );
        assert!(
            message.contains("within 1000 ms, last try: status 500, expected 200"),
            "{message}"
        );
        assert!(
            is_gone(read_pid(&dir, "server")),
            "the server outlived its preflight"
        );
    }

    #[test]
    fn a_release_that_answers_but_keeps_failing_is_given_up_on_after_the_grace() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        write_server(&dir, "server", 500, "");
        let mut spec = spec(&dir, "node server.js");
        spec.timeout = Duration::from_secs(30);
        spec.answered_grace = Duration::from_millis(500);
        let started = Instant::now();
        let error = preflight(&spec).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let message = error.to_string();
        assert!(matches!(error, Error::PreflightFailing { .. }), "{message}");
        assert!(message.contains("kept failing for"), "{message}");
        assert!(message.contains("status 500, expected 200"), "{message}");
        assert!(
            is_gone(read_pid(&dir, "server")),
            "the server outlived its preflight"
        );
    }

    #[test]
    fn a_page_that_throws_fails_the_preflight_though_health_passes() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        write_app(&dir, &format!("console.log('rendering /'); {HOME_THROWS}"));
        let mut spec = spec(&dir, "node app.js");
        spec.answered_grace = Duration::from_millis(300);
        spec.routes = routes(&["/", "/health"], live(&[("/", 200), ("/health", 200)]));
        let started = Instant::now();
        let error = preflight(&spec).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let message = error.to_string();
        assert!(
            matches!(
                &error,
                Error::RouteRegressed { route, live: Some(200), new: Answer::Status(500), also, .. }
                    if route == "/" && also.is_empty()
            ),
            "{message}"
        );
        assert!(
            message.starts_with(
                "route `/` answered 500 on the new release (the live release answers 200); its last output:"
            ),
            "{message}"
        );
        assert!(message.contains("\n    rendering /"), "{message}");
        assert!(
            is_gone(read_pid(&dir, "app")),
            "the app outlived its preflight"
        );

        // With nothing live, a throwing page is just as much a regression.
        spec.routes.baseline = Baseline::NothingLive;
        let message = preflight(&spec).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "route `/` answered 500 on the new release (no live answer to compare with)"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_page_that_already_fails_on_the_live_release_passes_and_is_reported() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        write_app(&dir, HOME_THROWS);
        let mut spec = spec(&dir, "node app.js");
        spec.answered_grace = Duration::from_millis(300);
        spec.routes = routes(&["/", "/health"], live(&[("/", 500), ("/health", 200)]));
        let report = preflight(&spec).unwrap();
        assert_eq!(
            report.routes,
            [
                ("/".to_owned(), Answer::Status(500)),
                ("/health".to_owned(), Answer::Status(200))
            ]
        );
        let failing = crate::already_failing(&spec.routes.baseline, &report.routes);
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].route, "/");
        assert!(
            is_gone(read_pid(&dir, "app")),
            "the app outlived its preflight"
        );
    }

    #[test]
    fn a_page_that_hangs_gave_no_answer_and_regresses() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        // `/slow` never answers; `/pricing` throws too, and is named after it.
        write_app(
            &dir,
            "if (req.url === '/slow') return; \
             if (req.url === '/pricing') { res.statusCode = 503; res.end(); return; }",
        );
        let mut spec = spec(&dir, "node app.js");
        spec.try_timeout = Duration::from_millis(300);
        spec.answered_grace = Duration::from_millis(500);
        spec.routes = routes(
            &["/slow", "/health", "/pricing"],
            live(&[("/slow", 200), ("/pricing", 200)]),
        );
        let started = Instant::now();
        let error = preflight(&spec).unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
        let message = error.to_string();
        assert!(
            matches!(
                &error,
                Error::RouteRegressed {
                    new: Answer::NoAnswer(Failure::TimedOut { after_ms: 300 }),
                    ..
                }
            ),
            "{message}"
        );
        assert_eq!(
            message,
            "route `/slow` gave no answer (timed out after 300 ms) on the new release (the live release answers 200); `/pricing` regressed too; it printed nothing"
        );
        assert!(
            is_gone(read_pid(&dir, "app")),
            "the app outlived its preflight"
        );
    }

    #[test]
    fn a_page_that_fails_for_a_moment_after_boot_passes_within_the_grace() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        // `/` fails for 300 ms from its first request, not from boot: a slow machine must
        // not let the test pass without a retry. A 500 leaves a mark, so the test knows.
        write_app(
            &dir,
            "if (req.url === '/') { \
                 globalThis.firstHome ??= Date.now(); \
                 if (Date.now() - globalThis.firstHome < 300) { \
                     fs.writeFileSync('answered-500', ''); res.statusCode = 500; res.end(); return; } \
                 res.end('home'); return; }",
        );
        let mut spec = spec(&dir, "node app.js");
        spec.answered_grace = Duration::from_secs(5);
        spec.routes = routes(&["/"], live(&[("/", 200)]));
        let report = preflight(&spec).unwrap();
        assert!(
            dir.path().join("answered-500").exists(),
            "`/` was never asked while it failed: the test proves nothing"
        );
        assert_eq!(report.routes, [("/".to_owned(), Answer::Status(200))]);
        assert!(
            report.elapsed < Duration::from_secs(5),
            "{:?}",
            report.elapsed
        );
    }

    #[test]
    fn a_page_answering_404_or_a_redirect_is_fine() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        write_app(
            &dir,
            "if (req.url === '/old') { res.statusCode = 308; res.setHeader('location', '/gone'); res.end(); return; }",
        );
        let mut spec = spec(&dir, "node app.js");
        spec.answered_grace = Duration::from_millis(300);
        spec.routes = routes(&["/gone", "/old"], Baseline::NothingLive);
        let report = preflight(&spec).unwrap();
        assert_eq!(
            report.routes,
            [
                ("/gone".to_owned(), Answer::Status(404)),
                ("/old".to_owned(), Answer::Status(308))
            ]
        );
    }

    #[test]
    fn a_command_that_exits_fails_fast_with_its_output() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        let command = r#"node -e "console.log('starting'); console.error('boom: DATABASE_URL is not set'); process.exit(1)""#;
        let started = Instant::now();
        let error = preflight(&spec(&dir, command)).unwrap_err();
        let message = error.to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(error, Error::PreflightExited { .. }), "{message}");
        assert!(
            message.starts_with("preflight command exited with status 1 before `http://127.0.0.1:"),
            "{message}"
        );
        assert!(
            message.contains("\n    starting\n    boom: DATABASE_URL is not set"),
            "{message}"
        );
    }

    #[test]
    fn a_command_that_never_listens_times_out() {
        if !have_node() {
            return;
        }
        let dir = TempDir::new().unwrap();
        let command = r#"node -e "require('fs').writeFileSync('idle.pid', String(process.pid)); setInterval(() => {}, 1000)""#;
        let mut spec = spec(&dir, command);
        spec.timeout = Duration::from_secs(1);
        let started = Instant::now();
        let error = preflight(&spec).unwrap_err();
        let elapsed = started.elapsed();
        let message = error.to_string();
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert!(
            message.contains(
                "did not pass within 1000 ms, last try: connection refused; it printed nothing"
            ),
            "{message}"
        );
        assert!(
            is_gone(read_pid(&dir, "idle")),
            "the command outlived its preflight"
        );
    }

    #[test]
    fn a_url_without_port_is_refused_before_anything_runs() {
        let dir = TempDir::new().unwrap();
        let mut spec = spec(&dir, "touch started");
        spec.url = "http://127.0.0.1:3000/health".to_owned();
        let error = preflight(&spec).unwrap_err();
        assert!(matches!(error, Error::PortlessUrl { .. }));
        assert!(error.to_string().contains("`{port}`"), "{error}");
        spec.url = "https://127.0.0.1:{port}/health".to_owned();
        assert!(matches!(preflight(&spec), Err(Error::InvalidUrl { .. })));
        assert!(!dir.path().join("started").exists());
    }

    #[test]
    fn a_missing_directory_or_command_is_named() {
        let dir = TempDir::new().unwrap();
        let mut spec = spec(&dir, "true");
        spec.dir = dir.path().join("missing");
        let message = preflight(&spec).unwrap_err().to_string();
        assert!(
            message.contains("missing`: it is not a directory"),
            "{message}"
        );
        spec.dir = dir.path().to_owned();
        spec.command = "  ".to_owned();
        assert!(matches!(preflight(&spec), Err(Error::EmptyCommand)));
    }

    #[test]
    fn output_lines_are_cleaned() {
        assert_eq!(
            clean_line("\u{1b}[32mready\u{1b}[0m on\tport\r"),
            "ready on\tport"
        );
    }
}
