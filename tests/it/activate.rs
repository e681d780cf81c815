//! `activate` and `rollback` without PM2 (`pm2.app` empty): the flip, the probe gate, exit codes
//! 3 and 4, the history, and `current` under `kill -9`. The "app" here is a tiny HTTP server in
//! the test that answers for whatever release `ROOT/current` points to, so a probe can pass for
//! one release and fail for another.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Root {
    _temp: tempfile::TempDir,
    path: PathBuf,
}

impl Root {
    fn new(extra_config: &str) -> Root {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("root");
        let root = Root { _temp: temp, path };
        assert!(root.relman(&["init"]).status.success());
        std::fs::write(
            root.path.join("relman.toml"),
            format!("[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n\n{extra_config}"),
        )
        .unwrap();
        root
    }

    fn relman(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_relman"))
            .args(args)
            .arg("--root")
            .arg(&self.path)
            .env_remove("RELMAN_ROOT")
            .output()
            .unwrap()
    }

    fn build(&self, id: &str) {
        let source = self.path.parent().unwrap().join(format!("src-{id}"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("index.js"), format!("// {id}\n")).unwrap();
        let out = self.relman(&["build", "--source", source.to_str().unwrap(), "--id", id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn current(&self) -> Option<String> {
        std::fs::read_link(self.path.join("current"))
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }

    fn history(&self) -> Vec<Value> {
        serde_json::from_slice(&self.relman(&["history", "--json"]).stdout).unwrap()
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The exit code is `expected` and stderr says `text`.
fn expect_exit(out: &Output, expected: i32, text: &str) {
    assert_eq!(code(out), expected, "{}", stderr(out));
    assert!(stderr(out).contains(text), "{}", stderr(out));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Serves `GET /health` with 200 and `release=ID` when `current` points to a release in
/// `healthy`, else 500. Stops when dropped.
struct App {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl App {
    fn start(root: &Path, healthy: &[&str]) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let current = root.join("current");
        let healthy: Vec<String> = healthy.iter().map(|s| (*s).to_owned()).collect();
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer);
                let release = std::fs::read_link(&current)
                    .ok()
                    .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                let (status, body) = if healthy.contains(&release) {
                    ("200 OK", format!("release={release}"))
                } else {
                    ("500 Internal Server Error", "broken".to_owned())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        App { port, stop }
    }

    fn config(&self) -> String {
        format!(
            "[verify]\nurl = \"http://127.0.0.1:{}/health\"\nbody_contains = \"release={{release}}\"\nattempts = 3\ninterval_ms = 50\ntimeout_ms = 500\n",
            self.port
        )
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn root_with_app(healthy: &[&str]) -> (Root, App) {
    let root = Root::new("");
    let app = App::start(&root.path, healthy);
    std::fs::write(
        root.path.join("relman.toml"),
        format!(
            "[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n\n{}",
            app.config()
        ),
    )
    .unwrap();
    (root, app)
}

#[test]
fn activate_flips_and_records_history() {
    let (root, _app) = root_with_app(&["a", "b"]);
    root.build("a");
    root.build("b");
    let out = root.relman(&["activate", "a", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["from"], Value::Null);
    assert_eq!(report["to"], "a");
    assert_eq!(report["result"], "ok");
    assert!(report["durations_ms"]["probe"].is_u64());
    assert_eq!(root.current().as_deref(), Some("releases/a"));

    assert_eq!(code(&root.relman(&["activate", "b"])), 0);
    assert_eq!(root.current().as_deref(), Some("releases/b"));
    let out = root.relman(&["rollback"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a");
    assert_eq!(root.current().as_deref(), Some("releases/a"));

    let history = root.history();
    let actions: Vec<_> = history
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["to"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("rollback", "a", "ok"),
            ("activate", "b", "ok"),
            ("activate", "a", "ok")
        ]
    );
    // Every line is one whole JSON object with the contract's fields.
    let text = std::fs::read_to_string(root.path.join(".relman/history.jsonl")).unwrap();
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        for field in [
            "at",
            "action",
            "from",
            "to",
            "result",
            "reason",
            "durations_ms",
        ] {
            assert!(entry.get(field).is_some(), "{field} missing in {line}");
        }
        // Whose line it is, when histories of a fleet are read together.
        assert!(
            entry["host"].as_str().is_some_and(|host| !host.is_empty()),
            "{line}"
        );
    }
}

#[test]
fn a_failing_probe_rolls_back_with_exit_3() {
    let (root, _app) = root_with_app(&["a"]);
    root.build("a");
    root.build("bad");
    assert_eq!(code(&root.relman(&["activate", "a"])), 0);
    let out = root.relman(&["activate", "bad", "--json"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "failed");
    assert_eq!(report["rolled_back_to"], "a");
    assert_eq!(report["code"], 3);
    assert!(report["error"].as_str().unwrap().contains("rolled back"));
    assert_eq!(root.current().as_deref(), Some("releases/a"));
    let history = root.history();
    assert_eq!(history[0]["action"], "auto-rollback");
    assert_eq!(history[0]["to"], "a");
    assert_eq!(history[1]["result"], "failed");

    // The failed release is skipped as a rollback target.
    root.build("c");
    assert_eq!(code(&root.relman(&["activate", "c", "--no-probe"])), 0);
    let status: Value = serde_json::from_slice(&root.relman(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["rollback_target"], "a");
}

#[test]
fn no_way_back_is_exit_4_and_says_what_is_live() {
    let (root, _app) = root_with_app(&[]);
    root.build("a");
    root.build("b");
    // First activation: nothing to go back to.
    let out = root.relman(&["activate", "a"]);
    expect_exit(&out, 4, "`current` points to a");
    // The way back fails its probe too.
    let out = root.relman(&["activate", "b"]);
    expect_exit(&out, 4, "way back to a failed too");
    assert_eq!(root.current().as_deref(), Some("releases/a"));
}

#[test]
fn refusals_change_nothing() {
    let root = Root::new("");
    root.build("a");
    let failed_source = root.path.parent().unwrap().join("src-failed");
    std::fs::create_dir_all(&failed_source).unwrap();
    std::fs::write(
        root.path.join("relman.toml"),
        "[build]\ninstall = \"\"\ncommand = \"exit 1\"\nexpect = []\n",
    )
    .unwrap();
    let out = root.relman(&[
        "build",
        "--source",
        failed_source.to_str().unwrap(),
        "--id",
        "failed",
    ]);
    assert_eq!(code(&out), 1);
    std::fs::write(
        root.path.join("relman.toml"),
        "[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n",
    )
    .unwrap();

    for (args, expected, message) in [
        (vec!["activate", "nope"], 1, "does not exist"),
        (vec!["activate", "failed"], 1, "is not sealed"),
        (vec!["activate", "../a"], 2, "invalid release ID"),
        (vec!["activate", ".a"], 2, "invalid release ID"),
        (vec!["rollback"], 1, "nothing is live yet"),
        (vec!["rollback", "--to", "a b"], 2, "invalid release ID"),
    ] {
        let out = root.relman(&args);
        assert_eq!(code(&out), expected, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out)
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1
        );
        assert_eq!(root.current(), None);
        assert!(root.history().is_empty());
    }

    // A tampered release is refused before anything changes.
    assert_eq!(code(&root.relman(&["activate", "a", "--no-probe"])), 0);
    root.build("b");
    std::fs::write(root.path.join("releases/b/index.js"), "tampered").unwrap();
    let out = root.relman(&["activate", "b"]);
    expect_exit(&out, 1, "does not match its manifest");
    assert_eq!(root.current().as_deref(), Some("releases/a"));
    assert_eq!(
        code(&root.relman(&["activate", "b", "--skip-integrity", "--no-probe"])),
        0
    );

    // `current` that is not a symlink is never replaced.
    std::fs::remove_file(root.path.join("current")).unwrap();
    std::fs::create_dir(root.path.join("current")).unwrap();
    let out = root.relman(&["activate", "a"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("not a symlink"), "{}", stderr(&out));
    assert!(root.path.join("current").is_dir());
}

#[test]
fn probe_command_reports_hangs_refusals_and_garbage() {
    let root = Root::new("");
    // A server that accepts and never answers, one that answers garbage, and a closed port.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in garbage.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n");
        }
    });
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (port, expected) in [
        (hang.local_addr().unwrap().port(), "timed out"),
        (garbage_port, "not HTTP"),
        (closed, "refused"),
    ] {
        std::fs::write(
            root.path.join("relman.toml"),
            format!("[verify]\nurl = \"http://127.0.0.1:{port}/health\"\nattempts = 2\ninterval_ms = 10\ntimeout_ms = 300\n"),
        )
        .unwrap();
        let started = Instant::now();
        let out = root.relman(&["probe", "--json"]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(started.elapsed() < Duration::from_secs(5));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], false);
        assert_eq!(report["code"], 1);
        assert!(
            report["error"].as_str().unwrap().contains(expected),
            "{report}"
        );
    }
    drop(hang);

    std::fs::write(
        root.path.join("relman.toml"),
        "[verify]\nurl = \"https://example.invalid/\"\n",
    )
    .unwrap();
    let out = root.relman(&["probe"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("verify.url"));
}

#[test]
fn current_is_never_missing_while_flipping() {
    let root = Root::new("");
    root.build("a");
    root.build("b");
    assert_eq!(code(&root.relman(&["activate", "a"])), 0);
    let link = root.path.join("current");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let link = link.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let target = std::fs::read_link(&link).expect("`current` vanished during a flip");
                assert!(target == Path::new("releases/a") || target == Path::new("releases/b"));
                reads += 1;
            }
            reads
        })
    };
    for i in 0..20 {
        let id = if i % 2 == 0 { "b" } else { "a" };
        assert_eq!(code(&root.relman(&["activate", id])), 0);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 100);
}

#[test]
fn kill_9_at_any_instant_leaves_current_on_a_sealed_release() {
    let root = Root::new("");
    root.build("a");
    root.build("b");
    assert_eq!(code(&root.relman(&["activate", "a"])), 0);
    for round in 0..40u64 {
        let id = if round % 2 == 0 { "b" } else { "a" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_relman"))
            .args(["activate", id, "--root"])
            .arg(&root.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(round * 150));
        let _ = child.kill();
        let _ = child.wait();
        let target = root.current().expect("`current` must survive kill -9");
        assert!(target == "releases/a" || target == "releases/b", "{target}");
        let sealed = root.path.join(&target).join(".relman/release.json");
        assert!(sealed.is_file(), "`current` points to an unsealed release");
        // No temp link is left behind to confuse anyone… or it is only a `current.tmp-*`.
        for entry in std::fs::read_dir(&root.path).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                ["current", "releases", "shared", ".relman", "relman.toml"]
                    .contains(&name.as_str())
                    || name.starts_with("current.tmp-"),
                "unexpected {name}"
            );
        }
    }
    // History lines written before a kill are whole, or the torn last one is ignored.
    assert_eq!(code(&root.relman(&["history"])), 0);
}

#[test]
fn an_interrupt_during_the_preflight_changes_nothing_and_stops_it() {
    let marker = "sleep 42.4242";
    let root = Root::new(&format!(
        "[preflight]\ncommand = \"{marker}\"\nurl = \"http://127.0.0.1:{{port}}/health\"\ntimeout_secs = 1\n"
    ));
    root.build("a");
    root.build("b");
    assert_eq!(
        code(&root.relman(&["activate", "a", "--skip-integrity"])),
        3,
        "the preflight of a never answers"
    );
    std::fs::write(
        root.path.join("relman.toml"),
        format!(
            "[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n[preflight]\ncommand = \"{marker}\"\nurl = \"http://127.0.0.1:{{port}}/health\"\ntimeout_secs = 60\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(["activate", "b", "--root"])
        .arg(&root.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running() {
        assert!(Instant::now() < deadline, "the preflight never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    relman_sys::process::signal_process(child.id(), relman_sys::process::Signal::Terminate)
        .unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing changed"), "{}", stderr(&out));
    assert!(!running(), "the preflight's process group outlived relman");
    assert_eq!(root.current(), None);
    assert_eq!(
        root.history().len(),
        1,
        "only the first, rejected activation"
    );
}

#[test]
fn bad_urls_are_configuration_errors_before_anything_runs() {
    let root = Root::new("");
    root.build("a");
    for (config, key) in [
        (
            "[verify]\nurl = \"http://127.0.0.1:3000/{release}\"\n",
            "verify.url",
        ),
        (
            "[verify]\nurl = \"http://127.0.0.1:99999/health\"\n",
            "verify.url",
        ),
        (
            "[preflight]\ncommand = \"node server.js\"\nurl = \"http://127.0.0.1:3000/health\"\n",
            "preflight.url",
        ),
        (
            "[preflight]\ncommand = \"node server.js\"\nurl = \"http://:{port}/health\"\n",
            "preflight.url",
        ),
    ] {
        std::fs::write(
            root.path.join("relman.toml"),
            format!("[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n{config}"),
        )
        .unwrap();
        // Every command that reads the config refuses it, not only the ones that probe.
        for args in [
            &["activate", "a"][..],
            &["status"],
            &["prune", "--dry-run"],
            &["probe"],
        ] {
            let out = root.relman(args);
            assert_eq!(code(&out), 2, "{args:?} {config}: {}", stderr(&out));
            assert!(stderr(&out).contains(key), "{config}: {}", stderr(&out));
        }
        assert_eq!(root.current(), None);
        assert!(root.history().is_empty());
    }
}

/// Runs relman with failpoints armed; it must die by SIGKILL at the point.
fn killed_at(root: &Root, failpoint: &str, args: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(args)
        .arg("--root")
        .arg(&root.path)
        .env("RELMAN_FAILPOINTS", failpoint)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{failpoint}: relman {args:?} was expected to die there: {out:?}"
    );
}

/// `current` is a symlink to a sealed release, and the read-only commands work.
fn assert_consistent(root: &Root, failpoint: &str) {
    let target = root.current().expect("`current` survives");
    assert!(
        root.path
            .join(&target)
            .join(".relman/release.json")
            .is_file(),
        "{failpoint}: `current` -> {target} is not sealed"
    );
    for args in [
        ["list", "--json"],
        ["history", "--json"],
        ["status", "--json"],
    ] {
        let out = root.relman(&args);
        assert_eq!(code(&out), 0, "{failpoint}: {args:?}: {}", stderr(&out));
    }
}

#[test]
fn every_failpoint_leaves_a_state_relman_reads_and_recovers_from() {
    let (root, _app) = root_with_app(&["a", "b"]);
    root.build("a");
    root.build("b");
    root.build("bad");
    assert_eq!(code(&root.relman(&["activate", "a"])), 0);
    let mut exercised = vec!["activate-after-worker"]; // needs PM2: tests/it/e2e.rs

    for failpoint in [
        "activate-after-lock",
        "activate-after-preflight",
        "activate-after-flip",
        "activate-after-roll",
        "activate-before-history",
    ] {
        killed_at(&root, failpoint, &["activate", "b"]);
        assert_consistent(&root, failpoint);
        let out = root.relman(&["activate", "a"]);
        assert_eq!(code(&out), 0, "{failpoint}: recovery: {}", stderr(&out));
        exercised.push(failpoint);
    }
    // Killed on the way back: `current` is already back on the good release.
    killed_at(&root, "activate-after-flip-back", &["activate", "bad"]);
    assert_eq!(root.current().as_deref(), Some("releases/a"));
    assert_consistent(&root, "activate-after-flip-back");
    exercised.push("activate-after-flip-back");

    let source = root.path.parent().unwrap().join("src-a");
    for failpoint in [
        "build-after-claim",
        "build-after-copy",
        "build-after-install",
        "build-after-build",
        "build-after-manifest",
        "build-after-unclaim",
        "build-after-seal",
    ] {
        let id = failpoint.trim_start_matches("build-after-");
        killed_at(
            &root,
            failpoint,
            &["build", "--source", source.to_str().unwrap(), "--id", id],
        );
        assert_consistent(&root, failpoint);
        let list: Value = serde_json::from_slice(&root.relman(&["list", "--json"]).stdout).unwrap();
        let state = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["state"]
            .clone();
        let expected = if failpoint == "build-after-seal" {
            "sealed"
        } else {
            "failed"
        };
        assert_eq!(state, expected, "{failpoint}");
        if expected == "sealed" {
            assert_eq!(
                code(&root.relman(&["verify", id])),
                0,
                "a sealed release verifies"
            );
        }
        exercised.push(failpoint);
    }

    // Killed between moving a release to the trash and deleting it: it is gone from
    // `releases/`, and the next prune empties the trash.
    killed_at(&root, "prune-after-trash", &["prune", "--keep", "1"]);
    assert_consistent(&root, "prune-after-trash");
    assert!(
        root.path
            .join(".relman/trash")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
    assert_eq!(code(&root.relman(&["prune", "--keep", "1"])), 0);
    assert!(
        root.path
            .join(".relman/trash")
            .read_dir()
            .unwrap()
            .next()
            .is_none()
    );
    let list: Value = serde_json::from_slice(&root.relman(&["list", "--json"]).stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "sealed"),
        "{list}"
    );
    exercised.push("prune-after-trash");

    exercised.sort_unstable();
    let mut all = relman_releases::failpoint::ALL.to_vec();
    all.sort_unstable();
    assert_eq!(exercised, all, "every failpoint is exercised");
}

/// Issue 7, defect 2: the exit code and the history never lie about what is live.
#[test]
fn a_history_that_cannot_be_written_stops_the_activation_before_the_flip() {
    let (root, _app) = root_with_app(&["a", "b"]);
    root.build("a");
    root.build("b");
    assert_eq!(code(&root.relman(&["activate", "a"])), 0);
    let history = root.path.join(".relman/history.jsonl");
    let kept = root.path.join("history.kept");
    std::fs::rename(&history, &kept).unwrap();
    // Not a file relman can append to (as root, a read-only file would still be writable).
    std::fs::create_dir(&history).unwrap();
    let out = root.relman(&["activate", "b"]);
    expect_exit(&out, 1, "history.jsonl");
    assert_eq!(
        root.current().as_deref(),
        Some("releases/a"),
        "nothing changed"
    );
    std::fs::remove_dir(&history).unwrap();
    std::fs::rename(&kept, &history).unwrap();
    assert_eq!(root.history().len(), 1);
}

#[test]
fn a_history_lost_after_the_flip_is_exit_4_saying_what_is_live() {
    let root = Root::new("");
    root.build("a");
    root.build("b");
    // The app: answers the probe for whatever `current` names, and, the first time it sees
    // `b` live (after the flip, when the history's space was already reserved), takes the
    // history away, as a disk failing at the worst moment would.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let current = root.path.join("current");
    let history = root.path.join(".relman/history.jsonl");
    std::thread::spawn(move || {
        let mut sabotaged = false;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let release = std::fs::read_link(&current)
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            if release == "b" && !sabotaged {
                sabotaged = true;
                let _ = std::fs::rename(&history, history.with_extension("gone"));
                let _ = std::fs::create_dir(&history);
            }
            let body = format!("release={release}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    std::fs::write(
        root.path.join("relman.toml"),
        format!(
            "[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n\n[verify]\nurl = \"http://127.0.0.1:{port}/health\"\nbody_contains = \"release={{release}}\"\nattempts = 3\ninterval_ms = 50\ntimeout_ms = 500\n"
        ),
    )
    .unwrap();
    assert_eq!(code(&root.relman(&["activate", "a"])), 0);
    let out = root.relman(&["activate", "b", "--json"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "ok", "{report}");
    assert_eq!(report["live"], "b", "{report}");
    assert!(report["history_error"].is_string(), "{report}");
    let error = stderr(&out);
    assert!(
        error.contains("b is live (was a)") && error.contains("history entry could not be written"),
        "{error}"
    );
    assert_eq!(root.current().as_deref(), Some("releases/b"));
}

#[test]
fn deploy_of_a_release_that_fails_its_probe_is_exit_3_and_prunes_nothing() {
    let (root, _app) = root_with_app(&["a"]);
    root.build("a");
    assert_eq!(code(&root.relman(&["activate", "a"])), 0);
    let source = root.path.parent().unwrap().join("src-bad");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("index.js"), "// bad\n").unwrap();
    let out = root.relman(&[
        "deploy",
        "--source",
        source.to_str().unwrap(),
        "--id",
        "bad",
        "--json",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["activate"]["rolled_back_to"], "a", "{report}");
    assert_eq!(report["prune"], Value::Null, "{report}");
    assert_eq!(root.current().as_deref(), Some("releases/a"));
}
