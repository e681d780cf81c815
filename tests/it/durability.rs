//! Durability order, as the kernel saw it: the real binary runs `build`, `activate` and `prune`
//! under `strace -f`, and the system calls it made are checked against the contract.
//!
//! - The seal (invariant 3): `manifest.sha256` written and fsynced; then `release.json` written
//!   to a temp file in `releases/ID/.relman/`, that fd fsynced, the temp file renamed onto
//!   `release.json`, and only then `.relman/` fsynced.
//! - The flip (invariant 2): `current.tmp-*` made by `symlink`, renamed onto `current`, then
//!   the root fsynced; `current` itself is never unlinked.
//! - The history: one `write` of a whole line to `history.jsonl`, opened with `O_APPEND`,
//!   then an `fsync` of it.
//! - Prune: the release is renamed into `.relman/trash/` before anything under it is unlinked,
//!   and nothing is unlinked in `releases/` itself.
//!
//! A missing (or unusable) `strace` skips the test loudly, and fails it on CI (`CI=true`).
#![allow(clippy::disallowed_methods)]

use crate::support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{Run, Sandbox, read_file, run_command};

/// The calls traced: every file and descriptor call, and the three kinds of sync.
const TRACE: &str = "trace=%file,%desc,fsync,fdatasync,syncfs";

/// A shell-only build (no Node.js), as in `tests/it/cli.rs`.
const CONFIG: &str = r#"[build]
install = ""
command = "mkdir -p build && echo \"$RELMAN_RELEASE\" > build/BUILD_ID"
expect = ["build/BUILD_ID"]
"#;

#[test]
fn build_activate_and_prune_make_their_changes_durable_in_order() {
    if !strace_usable("durability") {
        return;
    }
    let sb = Sandbox::with_config(CONFIG);
    let source = sb.fixture_source("src");
    let source = source.to_str().expect("UTF-8 test path");
    let root = sb.root.to_str().expect("UTF-8 test path").to_owned();
    for id in ["one", "two"] {
        sb.relman(&["build", "--source", source, "--id", id]).ok();
    }
    sb.relman(&["activate", "two", "--no-reload", "--no-probe"])
        .ok();

    let (run, trace) = traced(&sb, &["build", "--source", source, "--id", "three"]);
    run.ok();
    check_seal(&trace, &root, "three");

    let (run, trace) = traced(&sb, &["activate", "three", "--no-reload", "--no-probe"]);
    run.ok();
    check_flip(&trace, &root, "three");
    check_history(&trace, &root);

    // `three` is current, `two` the rollback target: `one` is the only release prune may take.
    let (run, trace) = traced(&sb, &["prune", "--keep", "1", "--json"]);
    run.ok();
    assert_eq!(
        run.json()["deleted"],
        serde_json::json!(["one"]),
        "prune deletes `one` alone\n{run}"
    );
    check_prune(&trace, &root, "one");
}

// ---------------------------------------------------------------------------------------------
// The four orders

fn check_seal(trace: &Trace, root: &str, id: &str) {
    let what = "`relman build` (the seal, invariant 3)";
    let order = "write the manifest and fsync it; write `release.json` to a temp file in `.relman/`, fsync that fd, rename it onto `release.json`, then fsync `.relman/`";
    let meta = format!("{root}/releases/{id}/.relman");
    let seal = format!("{meta}/release.json");
    let manifest = format!("{meta}/manifest.sha256");

    let rename = trace.only(what, order, "rename onto `release.json`", |c| {
        c.rename().is_some_and(|(_, to)| to == seal)
    });
    let (temp, _) = rename.rename().expect("a rename");
    trace.require(
        parent(&temp) == meta && file_name(&temp).starts_with(".tmp"),
        what,
        order,
        &format!("`release.json` was renamed from `{temp}`, not from a temp file in `{meta}`"),
        &[rename],
    );
    let seal_len = std::fs::metadata(&seal).expect("release.json").len();
    trace.written_and_synced(what, order, &temp, seal_len, rename, "the seal's temp file");
    let manifest_len = std::fs::metadata(&manifest).expect("manifest.sha256").len();
    trace.written_and_synced(what, order, &manifest, manifest_len, rename, "the manifest");
    trace.synced_after(what, order, &meta, rename, "the directory `.relman/`");
}

fn check_flip(trace: &Trace, root: &str, id: &str) {
    let what = "`relman activate` (the flip, invariant 2)";
    let order =
        "symlink `current.tmp-*` -> `releases/ID`, rename it onto `current`, then fsync the root";
    let current = format!("{root}/current");
    let rename = trace.only(what, order, "rename onto `current`", |c| {
        c.rename().is_some_and(|(_, to)| to == current)
    });
    let (temp, _) = rename.rename().expect("a rename");
    trace.require(
        parent(&temp) == root && file_name(&temp).starts_with("current.tmp-"),
        what,
        order,
        &format!("`current` was replaced by `{temp}`, not by a fresh `current.tmp-*`"),
        &[rename],
    );
    let symlink = trace.only(what, order, "symlink of the temp link", |c| {
        c.symlink().is_some_and(|(_, link)| link == temp)
    });
    let (target, _) = symlink.symlink().expect("a symlink");
    trace.require(
        target == format!("releases/{id}"),
        what,
        order,
        &format!("`{temp}` points to `{target}`, not to the relative `releases/{id}`"),
        &[symlink],
    );
    trace.require(
        symlink.end < rename.start,
        what,
        order,
        "the rename onto `current` came before the symlink it renames was made",
        &[symlink, rename],
    );
    let unlinks: Vec<&Call> = trace
        .calls
        .iter()
        .filter(|c| c.removed().is_some_and(|path| path == current))
        .collect();
    trace.require(
        unlinks.is_empty(),
        what,
        order,
        "`current` was unlinked: it must only ever be replaced by rename(2)",
        &unlinks,
    );
    trace.synced_after(what, order, root, rename, "the root directory");
}

fn check_history(trace: &Trace, root: &str) {
    let what = "`relman activate` (history.jsonl)";
    let order = "open `history.jsonl` with O_APPEND, one `write` of a whole line, then fsync it";
    let history = format!("{root}/.relman/history.jsonl");
    let opens: Vec<&Call> = trace
        .calls
        .iter()
        .filter(|c| c.opened().is_some_and(|p| p == history) && c.writable())
        .collect();
    trace.require(
        !opens.is_empty(),
        what,
        order,
        "`history.jsonl` was never opened for writing",
        &[],
    );
    for open in &opens {
        trace.require(
            open.args.iter().any(|a| a.contains("O_APPEND")),
            what,
            order,
            "`history.jsonl` was opened for writing without O_APPEND",
            &[open],
        );
    }
    let writes: Vec<&Call> = trace
        .calls
        .iter()
        .filter(|c| c.is_write() && c.fd_path(0).as_deref() == Some(history.as_str()))
        .collect();
    trace.require(
        writes.len() == 1,
        what,
        order,
        &format!(
            "{} writes to `history.jsonl`, expected exactly one",
            writes.len()
        ),
        &writes,
    );
    let write = writes[0];
    let text = read_file(Path::new(&history));
    let last = text.lines().last().unwrap_or("");
    let line = format!("{last}\n");
    let written = write.args.get(1).map(|a| unquote(a)).unwrap_or_default();
    trace.require(
        write.ret == line.len() as i64 && written == line,
        what,
        order,
        &format!(
            "the write put {} bytes {written:?}, not the whole last line {line:?} ({} bytes)",
            write.ret,
            line.len()
        ),
        &[write],
    );
    trace.synced_after(what, order, &history, write, "`history.jsonl`");
}

fn check_prune(trace: &Trace, root: &str, id: &str) {
    let what = "`relman prune`";
    let order = "rename the release into `.relman/trash/` first, then unlink what is under it";
    let release = format!("{root}/releases/{id}");
    let trash = format!("{root}/.relman/trash");
    let rename = trace.only(
        what,
        order,
        "rename of the release out of `releases/`",
        |c| c.rename().is_some_and(|(from, _)| from == release),
    );
    let (_, moved) = rename.rename().expect("a rename");
    trace.require(
        parent(&moved) == trash && file_name(&moved).starts_with(&format!("{id}.")),
        what,
        order,
        &format!("`{release}` was renamed to `{moved}`, not into `{trash}/`"),
        &[rename],
    );
    let removals: Vec<&Call> = trace
        .calls
        .iter()
        .filter(|c| c.removed().is_some_and(|p| is_under(&p, &moved)))
        .collect();
    trace.require(
        !removals.is_empty(),
        what,
        order,
        &format!("nothing under `{moved}` was removed: the trash was not emptied"),
        &[rename],
    );
    let early: Vec<&Call> = removals
        .iter()
        .copied()
        .filter(|c| c.start < rename.end)
        .collect();
    trace.require(
        early.is_empty(),
        what,
        order,
        "files were removed from the trash before the release was renamed there",
        &[&early[..], &[rename]].concat(),
    );
    let in_place: Vec<&Call> = trace
        .calls
        .iter()
        .filter(|c| c.removed().is_some_and(|p| is_under(&p, &release)))
        .collect();
    trace.require(
        in_place.is_empty(),
        what,
        order,
        &format!("files were removed inside `{release}` itself, before it left `releases/`"),
        &in_place,
    );
}

// ---------------------------------------------------------------------------------------------
// Running under strace

/// Whether `strace` is installed and may trace here (containers can forbid ptrace). Without
/// it the test is skipped loudly, or fails on CI.
fn strace_usable(test: &str) -> bool {
    let works = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: strace is required on CI (CI=true) but is missing or cannot trace (install it: apt-get install strace)"
        );
        support::skipped_note(&format!(
            "{test}: strace not found or not allowed to trace (apt-get install strace; set CI=true to make this a failure)"
        ));
    }
    works
}

/// Runs `relman ARGS --root ROOT` (the harness's command, environment and all) under strace.
fn traced(sb: &Sandbox, args: &[&str]) -> (Run, Trace) {
    let inner = sb.command(args);
    let output = sb.path(&format!("strace-{}.txt", args[0]));
    let mut command = Command::new("strace");
    // `-s`: enough of each written buffer to compare the history line whole.
    command
        .args(["-f", "-e", TRACE, "-y", "-s", "4096", "-o"])
        .arg(&output)
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    if let Some(dir) = inner.get_current_dir() {
        command.current_dir(dir);
    }
    let run = run_command(command);
    let text = read_file(&output);
    (
        run,
        Trace::parse(&format!("relman {}", args.join(" ")), &text),
    )
}

// ---------------------------------------------------------------------------------------------
// The trace

/// One system call, its `<unfinished ...>` and `resumed` halves joined.
#[derive(Debug, Clone)]
struct Call {
    /// The thread or process that made it.
    pid: u32,
    name: String,
    /// Raw argument texts, as strace printed them.
    args: Vec<String>,
    /// The return value (`-1` on error; `i64::MIN` when strace printed `?`).
    ret: i64,
    /// The path strace printed for a returned descriptor (`= 3</path>`).
    ret_path: Option<String>,
    /// Line numbers (1-based) where the call started and where its result was printed.
    start: usize,
    end: usize,
    /// The whole call, for messages.
    text: String,
}

struct Trace {
    command: String,
    calls: Vec<Call>,
}

impl Trace {
    /// Parses `strace -f -y -o` output: `PID name(args) = ret`, with `<unfinished ...>` /
    /// `<... name resumed>` pairs joined per PID, and signal and exit lines left out.
    fn parse(command: &str, text: &str) -> Trace {
        let mut pending: HashMap<u32, (usize, String)> = HashMap::new();
        let mut calls = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let (pid, rest) = match line.split_once(' ') {
                Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) && !pid.is_empty() => {
                    (pid.parse().unwrap_or(0), rest.trim_start())
                }
                _ => (0, line),
            };
            if rest.starts_with("+++") || rest.starts_with("---") || rest.is_empty() {
                continue;
            }
            if let Some(head) = rest.strip_suffix("<unfinished ...>") {
                pending.insert(pid, (number, head.trim_end().to_owned()));
                continue;
            }
            let (start, whole) = if let Some(resumed) = rest.strip_prefix("<... ") {
                let Some(at) = resumed.find(" resumed>") else {
                    continue;
                };
                let Some((start, head)) = pending.remove(&pid) else {
                    continue; // resumed from before the trace started, or a restart
                };
                (
                    start,
                    format!("{head}{}", &resumed[at + " resumed>".len()..]),
                )
            } else {
                (number, rest.to_owned())
            };
            if let Some(call) = Call::parse(pid, &whole, start, number) {
                calls.push(call);
            }
        }
        Trace {
            command: command.to_owned(),
            calls,
        }
    }

    /// The one call that `matches`; anything else is a failure naming `wanted`.
    #[track_caller]
    fn only(
        &self,
        what: &str,
        order: &str,
        wanted: &str,
        matches: impl Fn(&Call) -> bool,
    ) -> &Call {
        let found: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.ret >= 0 && matches(c))
            .collect();
        self.require(
            found.len() == 1,
            what,
            order,
            &format!("expected exactly one {wanted}, found {}", found.len()),
            &found,
        );
        found[0]
    }

    /// Fails with the order that was violated, why, and the calls that show it.
    #[track_caller]
    fn require(&self, ok: bool, what: &str, order: &str, why: &str, calls: &[&Call]) {
        if ok {
            return;
        }
        let mut message = format!(
            "durability order violated in {what}: {why}\n  required order: {order}\n  traced: {} ({} calls)\n",
            self.command,
            self.calls.len()
        );
        let mut calls = calls.to_vec();
        calls.sort_by_key(|c| c.start);
        for call in calls {
            let text: String = call.text.chars().take(400).collect();
            let cut = if text.len() < call.text.len() {
                "…"
            } else {
                ""
            };
            let _ = writeln!(
                message,
                "  line {:>6} [pid {}] {text}{cut}",
                call.start, call.pid
            );
        }
        panic!("{message}");
    }

    /// `path` was created, written with `len` bytes in all, and fsynced after its last write,
    /// all before `before` started.
    #[track_caller]
    fn written_and_synced(
        &self,
        what: &str,
        order: &str,
        path: &str,
        len: u64,
        before: &Call,
        name: &str,
    ) {
        let created: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.opened().is_some_and(|p| p == path) && c.creates())
            .collect();
        self.require(
            created.len() == 1 && created[0].end < before.start,
            what,
            order,
            &format!("{name} `{path}` was not created (once) before the rename"),
            &[&created[..], &[before]].concat(),
        );
        let writes: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.is_write() && c.fd_path(0).as_deref() == Some(path))
            .collect();
        let total: i64 = writes.iter().map(|c| c.ret.max(0)).sum();
        self.require(
            !writes.is_empty() && total == len as i64,
            what,
            order,
            &format!("{name} `{path}` got {total} bytes in {} writes before the rename, the file has {len}", writes.len()),
            &writes,
        );
        let last_write = writes.iter().map(|c| c.end).max().unwrap_or(0);
        let late: Vec<&Call> = writes
            .iter()
            .copied()
            .filter(|c| c.start > before.start)
            .collect();
        self.require(
            late.is_empty(),
            what,
            order,
            &format!("{name} was written after the rename"),
            &[&[before], &late[..]].concat(),
        );
        let synced = self.calls.iter().any(|c| {
            c.is_sync()
                && c.fd_path(0).as_deref() == Some(path)
                && c.start > last_write
                && c.end < before.start
        });
        if !synced {
            // Say what happened instead: the same file fsynced after the rename (a renamed
            // temp file shows under its new name).
            let renamed_to = before
                .rename()
                .map(|(from, to)| if from == path { to } else { from });
            let later: Vec<&Call> = self
                .calls
                .iter()
                .filter(|c| {
                    c.is_sync()
                        && c.start > before.end
                        && c.fd_path(0)
                            .is_some_and(|p| p == path || Some(&p) == renamed_to.as_ref())
                })
                .collect();
            let why = if later.is_empty() {
                format!("{name} `{path}` was never fsynced between its last write and the rename")
            } else {
                format!(
                    "{name} `{path}` was fsynced only after the rename: a crash in between leaves a seal whose contents may never have reached the disk"
                )
            };
            self.require(
                false,
                what,
                order,
                &why,
                &[&[created[0]], &writes[..], &later[..], &[before]].concat(),
            );
        }
    }

    /// The directory or file `path` was fsynced after `after` finished.
    #[track_caller]
    fn synced_after(&self, what: &str, order: &str, path: &str, after: &Call, name: &str) {
        let syncs: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.is_sync() && c.fd_path(0).as_deref() == Some(path))
            .collect();
        self.require(
            syncs.iter().any(|c| c.start > after.end && c.ret == 0),
            what,
            order,
            &format!("{name} `{path}` was not fsynced after the {}", after.name),
            &[&[after], &syncs[..]].concat(),
        );
    }
}

impl Call {
    /// `name(args) = ret` → a call; `None` for anything else.
    fn parse(pid: u32, text: &str, start: usize, end: usize) -> Option<Call> {
        let open = text.find('(')?;
        let name = text[..open].trim().to_owned();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let (args, close) = split_args(&text[open + 1..])?;
        let after = text[open + 1 + close + 1..].trim_start();
        let result = after.strip_prefix('=')?.trim_start();
        let (ret, ret_path) = match decorated(result.split_whitespace().next().unwrap_or("")) {
            Some((number, path)) => (number, path),
            None => (i64::MIN, None),
        };
        Some(Call {
            pid,
            name,
            args,
            ret,
            ret_path,
            start,
            end,
            text: text.to_owned(),
        })
    }

    /// The descriptor in argument `index`.
    fn fd_arg(&self, index: usize) -> Option<(i64, Option<String>)> {
        decorated(self.args.get(index)?)
    }

    /// The path strace printed for the descriptor in argument `index` (`-y`).
    fn fd_path(&self, index: usize) -> Option<String> {
        self.fd_arg(index)?.1
    }

    /// A path argument: `dirfd` (an index, for the `*at` calls) and the string at `index`.
    fn path_at(&self, dirfd: Option<usize>, index: usize) -> Option<String> {
        let name = unquote(self.args.get(index)?);
        if name.starts_with('/') {
            return Some(normal(&name));
        }
        let base = match dirfd {
            Some(dirfd) => self.fd_path(dirfd)?,
            None => return None, // relative to a cwd strace did not print
        };
        Some(normal(&format!("{base}/{name}")))
    }

    /// `(from, to)` of a rename.
    fn rename(&self) -> Option<(String, String)> {
        match self.name.as_str() {
            "rename" => Some((self.path_at(None, 0)?, self.path_at(None, 1)?)),
            "renameat" | "renameat2" => {
                Some((self.path_at(Some(0), 1)?, self.path_at(Some(2), 3)?))
            }
            _ => None,
        }
    }

    /// `(target, link)` of a symlink; the target as written, the link resolved.
    fn symlink(&self) -> Option<(String, String)> {
        match self.name.as_str() {
            "symlink" => Some((unquote(self.args.first()?), self.path_at(None, 1)?)),
            "symlinkat" => Some((unquote(self.args.first()?), self.path_at(Some(1), 2)?)),
            _ => None,
        }
    }

    /// The path an unlink or rmdir removed (successfully).
    fn removed(&self) -> Option<String> {
        if self.ret != 0 {
            return None;
        }
        match self.name.as_str() {
            "unlink" | "rmdir" => self.path_at(None, 0),
            "unlinkat" => self.path_at(Some(0), 1),
            _ => None,
        }
    }

    /// The path an open returned a descriptor for.
    fn opened(&self) -> Option<String> {
        if self.ret < 0 {
            return None;
        }
        let asked = match self.name.as_str() {
            "open" | "creat" => self.path_at(None, 0),
            "openat" | "openat2" => self.path_at(Some(0), 1),
            _ => return None,
        };
        // Before any rename, the path strace printed for the new descriptor is the one asked.
        asked.or_else(|| self.ret_path.clone())
    }

    fn flags(&self) -> &str {
        let index = match self.name.as_str() {
            "openat" | "openat2" => 2,
            _ => 1,
        };
        self.args.get(index).map_or("", String::as_str)
    }

    fn creates(&self) -> bool {
        self.name == "creat" || self.flags().contains("O_CREAT")
    }

    fn writable(&self) -> bool {
        self.name == "creat" || self.flags().contains("O_WRONLY") || self.flags().contains("O_RDWR")
    }

    fn is_write(&self) -> bool {
        matches!(
            self.name.as_str(),
            "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2"
        )
    }

    fn is_sync(&self) -> bool {
        matches!(self.name.as_str(), "fsync" | "fdatasync" | "syncfs")
    }
}

/// Splits the text after `name(` into arguments at top-level commas, minding strings, brackets
/// and `-y`'s `<path>` decorations. Returns them and the offset of the closing `)`.
fn split_args(text: &str) -> Option<(Vec<String>, usize)> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                current.push(c);
                while let Some((_, c)) = chars.next() {
                    current.push(c);
                    match c {
                        '\\' => current.extend(chars.next().map(|(_, c)| c)),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '<' => {
                // A `-y` path: up to the matching `>`, commas and all.
                current.push(c);
                for (_, c) in chars.by_ref() {
                    current.push(c);
                    if c == '>' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' if depth == 0 => {
                if !current.trim().is_empty() || !args.is_empty() {
                    args.push(current.trim().to_owned());
                }
                return Some((args, at));
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ',' if depth == 0 => {
                args.push(current.trim().to_owned());
                current.clear();
            }
            _ => current.push(c),
        }
    }
    None
}

/// `3</path>` → `(3, Some("/path"))`; `0` → `(0, None)`; `AT_FDCWD</dir>` → `(-100, ..)`.
fn decorated(text: &str) -> Option<(i64, Option<String>)> {
    let (number, path) = match text.find('<') {
        Some(at) if text.ends_with('>') => (&text[..at], Some(&text[at + 1..text.len() - 1])),
        _ => (text, None),
    };
    let number = if number == "AT_FDCWD" {
        -100
    } else {
        number.parse().ok()?
    };
    let path = path.map(|p| normal(&unescape(p.trim_end_matches(" (deleted)"))));
    Some((number, path))
}

/// A quoted strace string (possibly cut short with `...`) → its text.
fn unquote(text: &str) -> String {
    let text = text.trim().trim_end_matches("...");
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    unescape(inner)
}

/// strace's C escapes: `\n`, `\t`, `\"`, `\\`, `\xHH` and octal `\NNN`.
fn unescape(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let raw = text.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' || i + 1 == raw.len() {
            bytes.push(raw[i]);
            i += 1;
            continue;
        }
        let next = raw[i + 1];
        i += 2;
        match next {
            b'n' => bytes.push(b'\n'),
            b't' => bytes.push(b'\t'),
            b'r' => bytes.push(b'\r'),
            b'v' => bytes.push(0x0b),
            b'f' => bytes.push(0x0c),
            b'x' => {
                let hex = std::str::from_utf8(&raw[i..(i + 2).min(raw.len())]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        bytes.push(b);
                        i += 2;
                    }
                    Err(_) => bytes.push(b'x'),
                }
            }
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                let mut digits = 1;
                while digits < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    value = value * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                bytes.push(value as u8);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `a//b/./c/` → `a/b/c` (no `..` handling: relman's paths have none).
fn normal(path: &str) -> String {
    let absolute = path.starts_with('/');
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn is_under(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

// ---------------------------------------------------------------------------------------------
// The parser itself, on strace's own shapes

#[test]
fn the_trace_parser_joins_unfinished_calls_and_reads_decorated_descriptors() {
    let text = r#"100 openat(AT_FDCWD</r>, "/r/.relman/history.jsonl", O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0666) = 3</r/.relman/history.jsonl>
101 write(3</r/.relman/history.jsonl>, "{\"a\":\"x, y\"}\n", 12 <unfinished ...>
100 fsync(4</r/a,b>)            = 0
100 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---
101 <... write resumed>) = 12
101 unlinkat(5</r/.relman/trash/one.0a0b0c0d/sub>, "file", 0) = 0
101 renameat2(AT_FDCWD</r>, "/r/current.tmp-1-2", AT_FDCWD</r>, "current", RENAME_NOREPLACE) = 0
101 symlinkat("releases/x", AT_FDCWD</r>, "/r/current.tmp-1-2") = 0
101 openat(AT_FDCWD</r>, "missing", O_RDONLY) = -1 ENOENT (No such file or directory)
101 +++ exited with 0 +++
"#;
    let trace = Trace::parse("test", text);
    let names: Vec<&str> = trace.calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "openat",
            "fsync",
            "write",
            "unlinkat",
            "renameat2",
            "symlinkat",
            "openat"
        ]
    );
    let open = &trace.calls[0];
    assert_eq!(open.opened().as_deref(), Some("/r/.relman/history.jsonl"));
    assert!(open.writable() && open.creates());
    assert_eq!(trace.calls[1].fd_path(0).as_deref(), Some("/r/a,b"));
    let write = &trace.calls[2];
    assert_eq!((write.start, write.end, write.ret), (2, 5, 12));
    assert_eq!(
        write.fd_path(0).as_deref(),
        Some("/r/.relman/history.jsonl")
    );
    assert_eq!(unquote(&write.args[1]), "{\"a\":\"x, y\"}\n");
    assert_eq!(
        trace.calls[3].removed().as_deref(),
        Some("/r/.relman/trash/one.0a0b0c0d/sub/file")
    );
    assert_eq!(
        trace.calls[4].rename(),
        Some(("/r/current.tmp-1-2".into(), "/r/current".into()))
    );
    assert_eq!(
        trace.calls[5].symlink(),
        Some(("releases/x".into(), "/r/current.tmp-1-2".into()))
    );
    assert_eq!(trace.calls[6].ret, -1);
    assert_eq!(trace.calls[6].opened(), None);
}
