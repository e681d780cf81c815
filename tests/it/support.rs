//! Helpers shared by the integration tests: a temp deploy root, running the real binary with
//! its exit code, stdout and stderr captured, a snapshot (and hash) of a whole directory tree,
//! and the Node.js gate.
//!
//! Every module of the one test binary (`tests/it/`) uses it; not every module every helper.
#![allow(dead_code, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn relman_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_relman"))
}

/// The fixture app shipped in `fixtures/node-app`.
pub fn fixture_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/node-app")
}

/// Environment variables of the caller that would change what the binary does.
const SCRUBBED_ENV: [&str; 3] = ["RELMAN_ROOT", "RELMAN_LOCK_WAIT_SECS", "RELMAN_RELEASE"];

/// A `relman` command with a clean environment: no inherited `RELMAN_*`, and a short root-lock
/// wait so that a test that deadlocks on the lock fails in seconds, not in five minutes.
pub fn relman_command() -> Command {
    let mut command = Command::new(relman_bin());
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command
        .env("RELMAN_LOCK_WAIT_SECS", "20")
        .stdin(Stdio::null());
    command
}

/// How one run of the binary ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command line, for messages.
    pub args: Vec<String>,
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Run {
    fn from_output(args: Vec<String>, output: Output, elapsed: Duration) -> Run {
        Run {
            args,
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed,
        }
    }

    /// Panics with the whole run unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "wrong exit code\n{self}");
        self
    }

    /// Panics unless it exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Run {
        self.expect_code(0)
    }

    /// stdout parsed as exactly one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not one JSON document ({err})\n{self}"))
    }

    /// The last non-empty line of stdout.
    #[track_caller]
    pub fn last_stdout_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("nothing on stdout\n{self}"))
    }

    /// The last non-empty line of stderr.
    pub fn last_stderr_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    /// The one `error: …` line of stderr, which must be its last line (after progress or a
    /// log tail) and the only line starting so.
    #[track_caller]
    pub fn expect_error_line(&self) -> &str {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert!(
            errors.len() == 1 && errors[0] == self.last_stderr_line(),
            "expected one `error: ...` line, last on stderr\n{self}"
        );
        errors[0]
    }

    /// Panics unless stderr is exactly one line `error: …` and stdout is empty (the contract's
    /// shape for an error without `--json`). Returns the message.
    #[track_caller]
    pub fn expect_one_line_error(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("error: "),
            "expected exactly one `error: ...` line on stderr\n{self}"
        );
        assert!(self.stdout.is_empty(), "expected nothing on stdout\n{self}");
        lines[0]
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ relman {}\nexit code: {} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}---",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

impl Run {
    /// The run as a snapshot: exit code, stdout and stderr, with what changes from one run to
    /// the next replaced (see [`assert_run_snapshot`]).
    pub fn snapshot(&self) -> String {
        format!(
            "exit code: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Asserts an inline insta snapshot of a run (`support::assert_run_snapshot!(sandbox, run,
/// @"...")`), with the sandbox's temp directory, release IDs made of the clock, times,
/// durations and sizes filtered, so the snapshot holds only what a user would see the same
/// every time.
macro_rules! assert_run_snapshot {
    ($sandbox:expr, $run:expr, @$snapshot:literal) => {{
        let base = $crate::support::regex_escape(&$sandbox.base().display().to_string());
        insta::with_settings!({filters => vec![
            (base.as_str(), "[TMP]"),
            (r"\b20\d{12}(-\d+)?\b", "[ID]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]"),
            (r"\b\d+ ms\b", "[N] ms"),
            (r"\b\d+(\.\d+)? (B|KiB|MiB)\b", "[SIZE]"),
        ]}, {
            insta::assert_snapshot!($run.snapshot(), @$snapshot);
        });
    }};
}
pub(crate) use assert_run_snapshot;

/// A literal for a regular expression.
pub fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Runs a prepared command to completion.
pub fn run_command(mut command: Command) -> Run {
    let args = command
        .get_args()
        .map(|a| a.to_string_lossy().escape_debug().to_string())
        .collect();
    let started = Instant::now();
    let output = command.output().expect("failed to start relman");
    Run::from_output(args, output, started.elapsed())
}

/// A temp directory holding a deploy root (`ROOT`, not created until `init`) and room for
/// sources and anything else a test needs beside it. Removed on drop.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// The deploy root, canonical.
    pub root: PathBuf,
}

impl Sandbox {
    /// A fresh sandbox; the deploy root does not exist yet.
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("relman-test-")
            .tempdir()
            .expect("temp dir");
        // Canonical, so that paths relman prints (it canonicalises the root) compare equal.
        let base = fs::canonicalize(dir.path()).expect("canonical temp dir");
        Sandbox {
            root: base.join("root"),
            dir,
        }
    }

    /// A sandbox whose root went through `relman init`, with `config` as its `relman.toml`.
    pub fn with_config(config: &str) -> Sandbox {
        let sandbox = Sandbox::new();
        sandbox.relman(&["init"]).ok();
        sandbox.write_config(config);
        sandbox
    }

    /// The temp directory around the root.
    pub fn base(&self) -> PathBuf {
        self.root.parent().expect("root has a parent").to_owned()
    }

    /// A path in the temp directory, outside the root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.base().join(relative)
    }

    /// `ROOT/releases/ID`.
    pub fn release_dir(&self, id: &str) -> PathBuf {
        self.root.join("releases").join(id)
    }

    /// Replaces `ROOT/relman.toml`.
    pub fn write_config(&self, text: &str) {
        write_file(&self.root.join("relman.toml"), text);
    }

    /// A `relman ... --root ROOT` command, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = relman_command();
        command
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .current_dir(self.base());
        command
    }

    /// Runs `relman ARGS --root ROOT` to completion.
    pub fn relman(&self, args: &[&str]) -> Run {
        run_command(self.command(args))
    }

    /// Runs it with extra environment.
    pub fn relman_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        run_command(command)
    }

    /// Copies the fixture app to `name` in the sandbox and returns its path.
    pub fn fixture_source(&self, name: &str) -> PathBuf {
        let dest = self.path(name);
        copy_tree(&fixture_app(), &dest);
        dest
    }

    /// The IDs under `ROOT/releases`, sorted.
    pub fn release_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = match fs::read_dir(self.root.join("releases")) {
            Ok(entries) => entries
                .map(|e| {
                    e.expect("read releases/")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        ids.sort();
        ids
    }

    /// Keeps the temp directory for a post-mortem.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// Writes a file, creating its parents.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", parent.display()));
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Reads a file as text.
#[track_caller]
pub fn read_file(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Sets the permission bits of a path.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The permission bits of a path (symlinks not followed).
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Makes a symlink `link -> target`.
pub fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target.as_ref(), link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
}

/// Copies a tree like `cp -a`: modes kept, symlinks copied as symlinks.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            symlink(fs::read_link(&source).expect("readlink"), &dest);
        } else if kind.is_dir() {
            copy_tree(&source, &dest);
            chmod(&dest, mode_of(&source));
        } else {
            fs::copy(&source, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
    }
}

/// Bytes of the regular files under `dir`, symlinks not followed.
pub fn tree_bytes(dir: &Path) -> u64 {
    snapshot_tree(dir)
        .entries
        .values()
        .filter_map(|e| match e {
            Node::File { len, .. } => Some(*len),
            _ => None,
        })
        .sum()
}

/// One entry of a [`Tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory, with its permission bits and mtime (ns).
    Dir { mode: u32, mtime: i128 },
    /// A regular file: permission bits, length, a hash of the contents, mtime (ns).
    File {
        mode: u32,
        len: u64,
        digest: u64,
        mtime: i128,
    },
    /// A symlink and its target (never followed).
    Symlink { target: PathBuf },
    /// Anything else (socket, FIFO, device).
    Other { mode: u32 },
}

/// Every path under a directory with its type, mode, contents and symlink target: two
/// snapshots are equal exactly when nothing under the directory was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Relative path (`.` for the directory itself) → entry.
    pub entries: BTreeMap<PathBuf, Node>,
}

/// Takes a [`Tree`] of `dir`; symlinks are recorded, never followed.
pub fn snapshot_tree(dir: &Path) -> Tree {
    let mut entries = BTreeMap::new();
    walk(dir, Path::new("."), &mut entries);
    Tree { entries }
}

fn walk(base: &Path, relative: &Path, entries: &mut BTreeMap<PathBuf, Node>) {
    let path = if relative == Path::new(".") {
        base.to_owned()
    } else {
        base.join(relative)
    };
    let meta =
        fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let mode = meta.permissions().mode() & 0o7777;
    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let kind = meta.file_type();
    let node = if kind.is_symlink() {
        Node::Symlink {
            target: fs::read_link(&path).expect("readlink"),
        }
    } else if kind.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let child = if relative == Path::new(".") {
                PathBuf::from(&name)
            } else {
                relative.join(&name)
            };
            walk(base, &child, entries);
        }
        Node::Dir { mode, mtime }
    } else if kind.is_file() {
        Node::File {
            mode,
            len: meta.len(),
            digest: content_digest(&path),
            mtime,
        }
    } else {
        Node::Other { mode }
    };
    entries.insert(relative.to_owned(), node);
}

fn content_digest(path: &Path) -> u64 {
    // A fixed-key SipHash: deterministic, and plenty to tell contents apart in a test.
    let mut hasher = std::hash::DefaultHasher::new();
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).expect("read");
        if n == 0 {
            break;
        }
        hasher.write(&buffer[..n]);
    }
    hasher.finish()
}

impl Tree {
    /// One hash of the whole tree.
    pub fn hash(&self) -> String {
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(format!("{:?}", self.entries).as_bytes());
        format!("{:016x}", hasher.finish())
    }

    /// The same tree with the given paths left out (and everything below them).
    pub fn without(mut self, paths: &[&str]) -> Tree {
        self.entries
            .retain(|path, _| !paths.iter().any(|p| path.starts_with(p)));
        self
    }

    /// The same tree without modification times, for checks where only a real change of
    /// contents, types, modes or links matters.
    pub fn without_times(mut self) -> Tree {
        for node in self.entries.values_mut() {
            match node {
                Node::Dir { mtime, .. } | Node::File { mtime, .. } => *mtime = 0,
                _ => {}
            }
        }
        self
    }

    /// What differs from `other`, one line per path, for assertion messages.
    pub fn diff(&self, other: &Tree) -> String {
        let mut out = String::new();
        for (path, node) in &self.entries {
            match other.entries.get(path) {
                None => out.push_str(&format!("- {} {node:?}\n", path.display())),
                Some(after) if after != node => {
                    out.push_str(&format!("~ {} {node:?} -> {after:?}\n", path.display()));
                }
                Some(_) => {}
            }
        }
        for (path, node) in &other.entries {
            if !self.entries.contains_key(path) {
                out.push_str(&format!("+ {} {node:?}\n", path.display()));
            }
        }
        out
    }

    /// Panics with the differences unless `after` equals this tree.
    #[track_caller]
    pub fn assert_same(&self, after: &Tree, context: &dyn fmt::Display) {
        assert!(
            self == after,
            "tree changed: {context}\n{}",
            self.diff(after)
        );
    }
}

/// A hash of the whole tree at `dir`: paths, types, modes, contents, symlink targets, mtimes.
pub fn tree_hash(dir: &Path) -> String {
    snapshot_tree(dir).hash()
}

/// Whether `node` and `npm` are on PATH. When they are not, a test that needs them prints a
/// loud SKIPPED line and returns, except on CI (`CI=true`), where it fails instead.
pub fn node_available(test: &str) -> bool {
    let found = ["node", "npm"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: node and npm are required on CI (CI=true) but were not found on PATH"
        );
        shout(&format!(
            "SKIPPED {test}: node/npm not found on PATH (set CI=true to make this a failure)"
        ));
    }
    found
}

/// Says loudly on stderr that part of a test was skipped, and why.
pub fn skipped_note(what: &str) {
    shout(&format!("SKIPPED {what}"));
}

/// Writes straight to the process's stderr: the test harness captures `eprintln!`, and a skip
/// must be seen even when the test passes.
fn shout(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {line} !!!!!!!!\n");
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed and reaped when dropped, even when the test panics.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Takes charge of a spawned child.
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("child still held").id()
    }

    /// Whether it has exited (it is reaped if so).
    pub fn has_exited(&mut self) -> bool {
        self.0
            .as_mut()
            .expect("child still held")
            .try_wait()
            .expect("try_wait")
            .is_some()
    }

    /// Waits for it and collects its output.
    pub fn wait_with_output(mut self) -> Output {
        self.0
            .take()
            .expect("child still held")
            .wait_with_output()
            .expect("wait for child")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A relman started in the background, its output captured; killed if dropped unfinished.
pub struct Running {
    child: KillOnDrop,
    args: Vec<String>,
    started: Instant,
}

/// Starts a prepared command in the background with stdout and stderr captured.
pub fn spawn_command(mut command: Command) -> Running {
    let args = command
        .get_args()
        .map(|a| a.to_string_lossy().escape_debug().to_string())
        .collect();
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = command.spawn().expect("failed to start relman");
    Running {
        child: KillOnDrop::new(child),
        args,
        started,
    }
}

impl Running {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Whether it has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.has_exited()
    }

    /// Waits for it to finish.
    pub fn finish(self) -> Run {
        let Running {
            child,
            args,
            started,
        } = self;
        let output = child.wait_with_output();
        Run::from_output(args, output, started.elapsed())
    }
}

/// Runs several commands at the same time and waits for all of them.
pub fn run_concurrently(commands: Vec<Command>) -> Vec<Run> {
    let running: Vec<Running> = commands.into_iter().map(spawn_command).collect();
    running.into_iter().map(Running::finish).collect()
}

/// Pids of live processes whose command line contains `needle` as one argument.
pub fn processes_with_arg(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// `(id, state)` of every release in a `relman list --json` document, newest first.
pub fn release_states(list: &serde_json::Value) -> Vec<(String, String)> {
    list.as_array()
        .expect("`list --json` is an array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The load the zero-downtime tests run under, on `127.0.0.1:port`: keep-alive,
/// fresh-connection and `slow_workers` slow (800 ms) request loops, bounded at 600 s; returned
/// once it has had half a second to get going.
pub fn start_load(port: u16, slow_workers: usize) -> relman_loadgen::Load {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let load = relman_loadgen::Load::start(relman_loadgen::LoadConfig {
        keepalive_workers: 4,
        fresh_workers: 2,
        slow_workers,
        slow_ms: 800,
        max_duration: Duration::from_secs(600),
        ..relman_loadgen::LoadConfig::new(addr)
    });
    std::thread::sleep(Duration::from_millis(500));
    load
}
