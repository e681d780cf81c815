//! End to end: real PM2, real Node, real load. A PM2 cluster of two workers serves the fixture
//! app from `ROOT/current` while a load generator sends keep-alive, fresh-connection and slow
//! requests the whole time, and relman activates, rolls back and refuses broken releases.
//! Every request must succeed, and after every step `current` and every worker's
//! `/proc/PID/cwd` must be in the expected release.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods, clippy::print_stderr)]

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use relman_loadgen::Load;
use relman_sys::process::{Signal, signal_group, signal_process};
use support::snapshot_tree;

use crate::support;
use crate::transcript;
use serde_json::{Value, json};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

mod docs;
mod hooks;

/// A PM2 daemon of its own (its own `PM2_HOME`), killed on drop.
struct Pm2 {
    home: PathBuf,
    bin: PathBuf,
}

impl Pm2 {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("PM2_HOME", &self.home)
            .output()
            .expect("run pm2")
    }

    fn jlist(&self) -> Vec<Value> {
        let out = self.cmd(&["jlist"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let start = text.find('[').expect("jlist prints a list");
        serde_json::from_str::<Vec<Value>>(text[start..].trim()).expect("jlist is JSON")
    }
}

impl Drop for Pm2 {
    fn drop(&mut self) {
        let daemon = std::fs::read_to_string(self.home.join("pm2.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        let _ = self.cmd(&["kill"]);
        // Whatever `pm2 kill` missed (a panic mid-start, a wedged daemon) goes too, workers first.
        if let Some(daemon) = daemon {
            let _ = Command::new("pkill")
                .args(["-KILL", "-P", &daemon.to_string()])
                .status();
            // A pid read from our own PM2_HOME; ESRCH when already gone.
            let _ = signal_process(daemon, Signal::Kill);
        }
    }
}

/// Node and the repo's pinned PM2, or `None` (outside CI only) when they are missing.
fn prerequisites() -> Option<PathBuf> {
    let pm2 = Path::new(REPO).join("node_modules/.bin/pm2");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if node && pm2.exists() {
        return Some(pm2);
    }
    let why = if node {
        "PM2 is not installed: run `npm ci` at the repo root"
    } else {
        "Node.js is not installed"
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "end-to-end tests need Node and PM2 in CI: {why}"
    );
    eprintln!("\n\n*** SKIPPED end-to-end test: {why} ***\n\n");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fields drop in order: PM2 is killed before its home directory is removed (a `pm2 kill`
/// whose `PM2_HOME` is gone cannot reach the daemon and leaves it running).
struct Deploy {
    pm2: Pm2,
    root: PathBuf,
    port: u16,
    app: String,
    _temp: tempfile::TempDir,
}

impl Deploy {
    /// A deploy root the way the guide sets one up by hand: init, then a config written here.
    fn new(pm2_bin: PathBuf, app: &str) -> Deploy {
        let deploy = Deploy::uninitialised(pm2_bin, app);
        deploy.relman(&["init"]).success();
        std::fs::write(
            deploy.root.join("relman.toml"),
            format!(
                r#"[build]
install = ""
expect = ["build/BUILD_ID"]

[pm2]
app = "{app}"
bin = "{bin}"
timeout_secs = 60

[preflight]
command = "node server.js"
url = "http://127.0.0.1:{{port}}/health"
timeout_secs = 5

[verify]
url = "http://127.0.0.1:{port}/health"
body_contains = "\"release\":\"{{release}}\""
attempts = 10
interval_ms = 300
"#,
                bin = deploy.pm2.bin.display(),
                port = deploy.port
            ),
        )
        .unwrap();
        deploy
    }

    /// A temp directory with a PM2 home and a free port, and no deploy root yet.
    fn uninitialised(pm2_bin: PathBuf, app: &str) -> Deploy {
        let temp = tempfile::Builder::new()
            .prefix("relman-e2e-")
            .tempdir()
            .unwrap();
        let root = temp.path().join("root");
        let home = temp.path().join("pm2");
        std::fs::create_dir_all(&home).unwrap();
        Deploy {
            root,
            pm2: Pm2 { home, bin: pm2_bin },
            port: free_port(),
            app: app.to_owned(),
            _temp: temp,
        }
    }

    /// What relman runs with: this deploy's `PM2_HOME`, and a `PATH` with `relman` and the
    /// pinned `pm2` first (as `pm2.bin`'s default expects).
    fn env(&self) -> Vec<(String, String)> {
        let relman = Path::new(env!("CARGO_BIN_EXE_relman")).parent().unwrap();
        let path = std::env::join_paths(
            [relman.to_owned(), self.pm2.bin.parent().unwrap().to_owned()]
                .into_iter()
                .chain(std::env::split_paths(
                    &std::env::var_os("PATH").unwrap_or_default(),
                )),
        )
        .unwrap();
        vec![
            ("PM2_HOME".into(), self.pm2.home.display().to_string()),
            ("PATH".into(), path.to_string_lossy().into_owned()),
            ("NEXT_TELEMETRY_DISABLED".into(), "1".into()),
        ]
    }

    fn relman(&self, args: &[&str]) -> Run {
        relman_at(&self.root, &self.env(), args)
    }

    /// Builds the fixture as release `id`, with `variant` written into its source.
    fn build(&self, id: &str, variant: &str) {
        let source = self.root.parent().unwrap().join(format!("src-{id}"));
        copy_dir(&Path::new(REPO).join("fixtures/node-app"), &source);
        std::fs::write(source.join("VARIANT"), variant).unwrap();
        self.relman(&["build", "--source", source.to_str().unwrap(), "--id", id])
            .success();
    }

    /// The first activation (nothing runs yet, so no reload, no probe), then PM2 starts the app.
    fn serve_first(&self, id: &str) {
        self.relman(&["activate", id, "--no-reload", "--no-probe"])
            .success();
        self.start_app();
    }

    fn start_app(&self) {
        self.start_app_under(&self.pm2, self.port);
    }

    /// Starts the app from `ROOT/current` under `pm2` (this deploy's daemon or another one) on
    /// `port`, and waits until it answers there.
    fn start_app_under(&self, pm2: &Pm2, port: u16) {
        self.start_app_with(pm2, port, "", "/health");
    }

    /// The same, with `extra` ecosystem settings (`key: value, `) and the health path.
    fn start_app_with(&self, pm2: &Pm2, port: u16, extra: &str, health: &str) {
        let ecosystem = if std::ptr::eq(pm2, &self.pm2) && port == self.port {
            self.root.join("ecosystem.config.js")
        } else {
            self.root
                .parent()
                .unwrap()
                .join(format!("ecosystem-{port}.config.js"))
        };
        std::fs::write(
            &ecosystem,
            format!(
                "module.exports = {{ apps: [{{ name: '{}', script: 'server.js', cwd: '{}', instances: 2, exec_mode: 'cluster', kill_timeout: 10000, {extra}env: {{ PORT: '{}' }} }}] }};\n",
                self.app,
                self.root.join("current").display(),
                port
            ),
        )
        .unwrap();
        let out = pm2.cmd(&["start", ecosystem.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "pm2 start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{port}{health}");
        while !answers(&url) {
            assert!(Instant::now() < deadline, "the app never answered {url}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn current(&self) -> String {
        std::fs::read_link(self.root.join("current"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `current` and every worker are in `id`, all workers online.
    fn assert_live(&self, id: &str) {
        assert_eq!(self.current(), format!("releases/{id}"));
        let release = std::fs::canonicalize(self.root.join("releases").join(id)).unwrap();
        let workers: Vec<Value> = self
            .pm2
            .jlist()
            .into_iter()
            .filter(|p| p["name"] == self.app.as_str())
            .collect();
        assert_eq!(workers.len(), 2);
        for worker in workers {
            assert_eq!(worker["pm2_env"]["status"], "online", "{worker}");
            let pid = worker["pid"].as_u64().unwrap();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
            assert!(
                cwd.starts_with(&release),
                "worker {pid} runs in {}, expected {id}",
                cwd.display()
            );
        }
    }

    /// [`Deploy::assert_live`], and every worker runs in `sub` of the release (the app of a
    /// workspace, a standalone server).
    fn assert_workers_in(&self, id: &str, sub: &str) {
        self.assert_live(id);
        let release = std::fs::canonicalize(self.root.join("releases").join(id)).unwrap();
        for worker in self.pm2.jlist() {
            let pid = worker["pid"].as_u64().unwrap();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
            assert_eq!(cwd, release.join(sub), "worker {pid}");
        }
    }

    fn history(&self) -> Vec<Value> {
        serde_json::from_slice(&self.relman(&["history", "--json"]).success().stdout).unwrap()
    }
}

struct Run {
    args: String,
    out: Output,
}

impl Run {
    fn code(&self, expected: i32) -> &Output {
        assert_eq!(
            self.out.status.code(),
            Some(expected),
            "relman {}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        );
        &self.out
    }

    fn success(&self) -> &Output {
        self.code(0)
    }

    fn json(&self, expected: i32) -> Value {
        serde_json::from_slice(&self.code(expected).stdout).expect("one JSON document")
    }
}

/// Whether `url` answers 200 (one try, a fresh connection).
fn answers(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(url)
        .call()
        .is_ok_and(|response| response.status() == 200)
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn deploys_under_load_without_a_single_failed_request() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-web");
    for (id, variant) in [
        ("a", "healthy"),
        ("b", "healthy"),
        ("c", "healthy"),
        ("unhealthy", "unhealthy"),
        ("boot-crash", "boot-crash"),
        ("worker-crash", "worker-crash"),
    ] {
        deploy.build(id, variant);
    }
    // Started the way the guide sets PM2 up, `listen_timeout` included (doctor holds it against
    // the slowest worker's boot at the end).
    deploy
        .relman(&["activate", "a", "--no-reload", "--no-probe"])
        .success();
    deploy.start_app_with(
        &deploy.pm2,
        deploy.port,
        "listen_timeout: 30000, ",
        "/health",
    );
    deploy.assert_live("a");
    // Invariant 1: nothing below, the going live and the rolling back included, writes inside
    // a sealed release, live or not.
    let releases = ["a", "b", "c", "unhealthy", "boot-crash", "worker-crash"];
    let before: Vec<_> = releases
        .iter()
        .map(|id| snapshot_tree(&deploy.root.join("releases").join(id)))
        .collect();

    let load = start_load(deploy.port);

    let run = deploy.relman(&["activate", "b", "--json"]);
    let report = run.json(0);
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(
        !stderr.contains("command line for every step"),
        "the PM2 session must be used: {stderr}"
    );
    // The app sees RELMAN_RELEASE, and nothing of relman's own environment beyond it.
    for worker in deploy.pm2.jlist() {
        if worker["name"] == deploy.app.as_str() {
            assert_eq!(worker["pm2_env"]["RELMAN_RELEASE"], "b", "{worker}");
            assert_eq!(
                worker["pm2_env"]["PM2_PROGRAMMATIC"],
                Value::Null,
                "{worker}"
            );
        }
    }
    assert_eq!(report["from"], "a");
    assert_eq!(report["to"], "b");
    assert_eq!(report["result"], "ok");
    assert_eq!(report["rolled_back_to"], Value::Null);
    assert!(report["durations_ms"]["reload"].as_u64().is_some());
    deploy.assert_live("b");

    let report = deploy.relman(&["rollback", "--json"]).json(0);
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some("b"), Some("a"))
    );
    deploy.assert_live("a");

    deploy.relman(&["rollback", "--to", "b"]).success();
    deploy.assert_live("b");

    // Rejected by the preflight: nothing changes, exit 3.
    for broken in ["unhealthy", "boot-crash"] {
        let report = deploy.relman(&["activate", broken, "--json"]).json(3);
        assert_eq!(report["result"], "rejected", "{report}");
        assert_eq!(report["code"], 3);
        deploy.assert_live("b");
        let last = &deploy.history()[0];
        assert_eq!(
            (last["to"].as_str(), last["result"].as_str()),
            (Some(broken), Some("rejected"))
        );
    }

    // Passes the preflight, goes live on one worker, is caught and rolled back.
    let report = deploy
        .relman(&["activate", "worker-crash", "--json"])
        .json(3);
    assert_eq!(report["result"], "failed", "{report}");
    assert_eq!(report["rolled_back_to"], "b");
    deploy.assert_live("b");
    let history = deploy.history();
    assert_eq!(history[0]["action"], "auto-rollback");
    assert_eq!(
        (history[0]["from"].as_str(), history[0]["to"].as_str()),
        (Some("worker-crash"), Some("b"))
    );
    assert_eq!(history[0]["result"], "ok");
    assert_eq!(
        (history[1]["action"].as_str(), history[1]["result"].as_str()),
        (Some("activate"), Some("failed"))
    );

    deploy.relman(&["activate", "c"]).success();
    deploy.assert_live("c");
    // After a failed activation the rollback target skips it: back to b.
    let status = deploy.relman(&["status", "--json"]).json(0);
    assert_eq!(status["current"], "c");
    assert_eq!(status["rollback_target"], "b");
    // What a fleet's table reads: whose status, since when live, and the verdict.
    assert!(
        status["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{status}"
    );
    assert_eq!(
        (&status["went_live"]["action"], &status["went_live"]["to"]),
        (&json!("activate"), &json!("c")),
        "{status}"
    );
    assert_eq!(status["probe"]["ok"], true, "{status}");
    assert_eq!(status["health"], json!({"state": "healthy"}), "{status}");
    assert_eq!(status["pm2"]["instances"].as_array().unwrap().len(), 2);
    for instance in status["pm2"]["instances"].as_array().unwrap() {
        assert_eq!(instance["status"], "online");
        assert_eq!(instance["release"], "c");
        assert!(
            instance["cwd"].as_str().unwrap().ends_with("/releases/c"),
            "{instance}"
        );
    }
    // A host set up the way the guide says passes every doctor check.
    let checks = deploy.relman(&["doctor", "--json"]).json(0);
    for check in checks.as_array().unwrap() {
        assert_eq!(check["level"], "OK", "{check}");
    }

    let stats = load.stop();
    eprintln!("load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 1000,
        "too little load to prove anything: {stats:?}"
    );
    for id in ["a", "b", "c"] {
        assert!(
            stats.by_release.get(id).copied().unwrap_or(0) > 0,
            "{id} never served: {stats:?}"
        );
    }
    for (id, tree) in releases.iter().zip(before) {
        tree.assert_same(&snapshot_tree(&deploy.root.join("releases").join(id)), id);
        deploy.relman(&["verify", id]).success();
    }

    // A worker stopped behind relman's back: degraded while the other serves; both: down.
    let status = deploy.relman(&["status", "--json"]).json(0);
    let second = status["pm2"]["instances"][1]["pm_id"].as_u64().unwrap();
    assert!(
        deploy
            .pm2
            .cmd(&["stop", &second.to_string()])
            .status
            .success()
    );
    let status = deploy.relman(&["status", "--json"]).json(0);
    assert_eq!(
        status["health"],
        json!({"state": "degraded", "problems": [format!("worker {second} is stopped")]}),
        "{status}"
    );
    assert!(deploy.pm2.cmd(&["stop", &deploy.app]).status.success());
    let status = deploy.relman(&["status", "--json"]).json(0);
    assert_eq!(status["health"]["state"], "down", "{status}");
    let problems = status["health"]["problems"].to_string();
    assert!(
        problems.contains("no worker of") && problems.contains("probe: http://127.0.0.1:"),
        "{status}"
    );
    let text = deploy.relman(&["status", "--no-probe"]);
    text.success();
    let stdout = String::from_utf8_lossy(&text.out.stdout);
    assert!(
        stdout.contains("\nhealth:           down\n  no worker of ") && !stdout.contains("probe:"),
        "{stdout}"
    );
}

/// The journey of a new user: `init --app`, `deploy` (PM2 has no such app yet: relman starts
/// it from the ecosystem file init wrote and proves every worker), then `deploy` again and a
/// broken release deployed under load, with not one failed request.
#[test]
fn init_then_deploy_twice_takes_an_app_from_nothing_to_zero_downtime_deploys() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::uninitialised(pm2, "relman-e2e-journey");
    let source = deploy.root.parent().unwrap().join("src");
    copy_dir(&Path::new(REPO).join("fixtures/node-app"), &source);
    let port = deploy.port.to_string();
    deploy
        .relman(&[
            "init",
            "--app",
            &deploy.app,
            "--port",
            &port,
            "--source",
            source.to_str().unwrap(),
        ])
        .success();
    assert!(deploy.root.join("ecosystem.config.js").is_file());
    assert!(
        !deploy.pm2.home.join("pm2.pid").exists(),
        "no PM2 daemon runs yet"
    );

    let run = deploy.relman(&["deploy", "--id", "a"]);
    run.success();
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(stderr.contains("pm2 save"), "says how to keep it: {stderr}");
    deploy.assert_live("a");
    let history = deploy.history();
    assert_eq!(
        (history[0]["to"].as_str(), history[0]["result"].as_str()),
        (Some("a"), Some("ok"))
    );

    let load = start_load(deploy.port);
    let report = deploy.relman(&["deploy", "--id", "b", "--json"]).json(0);
    assert_eq!(
        report["activate"]["workers"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    deploy.assert_live("b");
    std::fs::write(source.join("VARIANT"), "worker-crash").unwrap();
    let report = deploy.relman(&["deploy", "--id", "c", "--json"]).json(3);
    assert_eq!(report["activate"]["rolled_back_to"], "b", "{report}");
    deploy.assert_live("b");
    let stats = load.stop();
    eprintln!("load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 300,
        "too little load to prove anything: {stats:?}"
    );
    assert!(
        stats.by_release.get("b").copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
}

#[test]
fn refuses_to_flip_when_pm2_cannot_roll_safely() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-fork");
    deploy.build("a", "healthy");
    deploy.build("b", "healthy");
    deploy
        .relman(&["activate", "a", "--no-reload", "--no-probe"])
        .success();

    // The daemon is down: any pm2 command would start an empty one, relman must not.
    let run = deploy.relman(&["activate", "b"]);
    let err = String::from_utf8_lossy(&run.code(1).stderr).into_owned();
    assert!(err.contains("PM2 daemon is not running"), "{err}");
    assert_eq!(deploy.current(), "releases/a");

    // The app is unknown to a running daemon.
    let out = deploy.pm2.cmd(&["ping"]);
    assert!(out.status.success());
    let err =
        String::from_utf8_lossy(&deploy.relman(&["activate", "b"]).code(1).stderr).into_owned();
    assert!(err.contains("no app named"), "{err}");
    assert_eq!(deploy.current(), "releases/a");

    // Fork mode: a reload is a restart, refused.
    let current = deploy.root.join("current");
    let out = deploy.pm2.cmd(&[
        "start",
        current.join("server.js").to_str().unwrap(),
        "--name",
        "relman-e2e-fork",
        "--cwd",
        current.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let err =
        String::from_utf8_lossy(&deploy.relman(&["activate", "b"]).code(1).stderr).into_owned();
    assert!(err.contains("fork_mode"), "{err}");
    let checks = deploy.relman(&["doctor", "--json"]).json(1);
    let level = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["level"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(level("cluster"), "FAIL", "{checks}");
    assert_eq!(level("cwd"), "OK", "{checks}");
    assert_eq!(
        level("kill_timeout"),
        "WARN",
        "PM2's default 1600 ms: {checks}"
    );

    assert_eq!(
        deploy.history().len(),
        1,
        "refusals before the flip leave no history"
    );

    // A cluster started from a resolved release path keeps serving that release on every
    // reload: doctor says so, and an activation is caught at its first worker.
    assert!(
        deploy
            .pm2
            .cmd(&["delete", "relman-e2e-fork"])
            .status
            .success()
    );
    let resolved = deploy.root.join("releases/a");
    let ecosystem = deploy.root.join("resolved.config.js");
    std::fs::write(
        &ecosystem,
        format!(
            "module.exports = {{ apps: [{{ name: 'relman-e2e-fork', script: 'server.js', cwd: '{}', instances: 2, exec_mode: 'cluster', kill_timeout: 10000, env: {{ PORT: '{}' }} }}] }};\n",
            resolved.display(),
            deploy.port
        ),
    )
    .unwrap();
    assert!(
        deploy
            .pm2
            .cmd(&["start", ecosystem.to_str().unwrap()])
            .status
            .success()
    );
    let checks = deploy.relman(&["doctor", "--json"]).json(1);
    let cwd = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cwd")
        .unwrap();
    assert_eq!(cwd["level"], "FAIL", "{checks}");
    let report = deploy
        .relman(&["activate", "b", "--json", "--no-probe"])
        .json(3);
    assert!(
        report["reason"].as_str().unwrap().contains("not in b"),
        "{report}"
    );
    assert_eq!(report["rolled_back_to"], "a");
    assert_eq!(deploy.current(), "releases/a");

    // Started from a directory outside every release: caught too, after a short grace; and
    // since no worker can be proven in any release, not even the way back, that is exit 4.
    assert!(
        deploy
            .pm2
            .cmd(&["delete", "relman-e2e-fork"])
            .status
            .success()
    );
    let elsewhere = deploy.root.parent().unwrap().join("elsewhere");
    copy_dir(&Path::new(REPO).join("fixtures/node-app"), &elsewhere);
    let text = std::fs::read_to_string(&ecosystem).unwrap();
    std::fs::write(
        &ecosystem,
        text.replace(resolved.to_str().unwrap(), elsewhere.to_str().unwrap()),
    )
    .unwrap();
    assert!(
        deploy
            .pm2
            .cmd(&["start", ecosystem.to_str().unwrap()])
            .status
            .success()
    );
    let report = deploy
        .relman(&["activate", "b", "--json", "--no-probe"])
        .json(4);
    assert!(
        report["reason"].as_str().unwrap().contains("elsewhere"),
        "{report}"
    );
    assert_eq!(deploy.current(), "releases/a");
    let history = deploy.history();
    assert_eq!(
        history.len(),
        5,
        "the first activation and the caught one: {history:?}"
    );

    // PM2 itself missing.
    let toml = deploy.root.join("relman.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace(deploy.pm2.bin.to_str().unwrap(), "/nonexistent/pm2"),
    )
    .unwrap();
    let err =
        String::from_utf8_lossy(&deploy.relman(&["activate", "b"]).code(1).stderr).into_owned();
    assert!(err.contains("PM2 not found"), "{err}");
    assert_eq!(deploy.current(), "releases/a");
}

#[test]
fn reloads_through_an_ecosystem_file_with_the_same_proof() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-eco");
    deploy.build("a", "healthy");
    deploy.build("b", "healthy");
    deploy.build("worker-crash", "worker-crash");
    deploy.serve_first("a");
    let toml = deploy.root.join("relman.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let ecosystem = deploy.root.join("ecosystem.config.js");
    // A wrapper script instead of PM2's own executable: relman cannot find PM2's package, so
    // this test also covers running every step through PM2's command line.
    let wrapper = deploy.root.parent().unwrap().join("pm2-wrapper");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", deploy.pm2.bin.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let text = text.replace(deploy.pm2.bin.to_str().unwrap(), wrapper.to_str().unwrap());
    std::fs::write(
        &toml,
        text.replace(
            "[pm2]\n",
            &format!("[pm2]\necosystem = \"{}\"\n", ecosystem.display()),
        ),
    )
    .unwrap();

    let report = deploy.relman(&["activate", "b", "--json"]).json(0);
    assert_eq!(report["workers"].as_array().unwrap().len(), 2, "{report}");
    deploy.assert_live("b");

    // PM2 reloads every worker itself here, so the broken release takes both down until
    // relman brings them back; it must still end on b, proven, with exit 3.
    let report = deploy
        .relman(&["activate", "worker-crash", "--json"])
        .json(3);
    assert_eq!(report["rolled_back_to"], "b", "{report}");
    deploy.assert_live("b");
}

#[test]
fn a_hangup_and_ctrl_c_to_the_whole_terminal_mid_roll_still_end_proven() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-sig");
    deploy.build("a", "healthy");
    deploy.build("b", "healthy");
    deploy.serve_first("a");

    // Like a terminal: relman leads its own process group, which receives the signals, and its
    // output goes to pipes whose reading ends are gone (the SSH session dropped).
    let mut child = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(["activate", "b", "--root"])
        .arg(&deploy.root)
        .env("PM2_HOME", &deploy.pm2.home)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while deploy.current() != "releases/b" {
        assert!(Instant::now() < deadline, "the flip never happened");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal_group(child.id(), Signal::Hangup).unwrap();
    signal_group(child.id(), Signal::Interrupt).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the roll must finish and prove itself: {status:?}"
    );
    deploy.assert_live("b");
    let history = deploy.history();
    assert_eq!(
        (history[0]["to"].as_str(), history[0]["result"].as_str()),
        (Some("b"), Some("ok"))
    );

    // `kill -9` mid-roll (after the first worker moved): `current` is on the new release, the
    // workers are split, nothing is recorded; activating again brings every worker over.
    let out = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(["activate", "a", "--root"])
        .arg(&deploy.root)
        .env("PM2_HOME", &deploy.pm2.home)
        .env("RELMAN_FAILPOINTS", "activate-after-worker")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    assert_eq!(deploy.current(), "releases/a");
    let status = deploy.relman(&["status", "--json"]).json(0);
    let releases: Vec<_> = status["pm2"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["release"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(releases, ["a", "b"], "split between the two: {status}");
    deploy.relman(&["activate", "a"]).success();
    deploy.assert_live("a");
}

#[test]
fn a_real_nextjs_app_deploys_under_load_without_a_failed_request() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-next");
    // The defaults: `npm ci`, `npm run build`, expect `.next/BUILD_ID`; node_modules reused
    // as hard links (`"link"`: the tests may run as root, where the default copies), so Next.js
    // builds and serves from read-only files two releases share.
    std::fs::write(
        deploy.root.join("relman.toml"),
        format!(
            r#"[build]
env = {{ NEXT_TELEMETRY_DISABLED = "1" }}
reuse_node_modules = "link"

[pm2]
app = "{app}"
bin = "{bin}"
timeout_secs = 60

[preflight]
command = "node server.js"
url = "http://127.0.0.1:{{port}}/api/health"
timeout_secs = 60

[verify]
url = "http://127.0.0.1:{port}/api/health"
body_contains = "\"release\":\"{{release}}\""
attempts = 20
interval_ms = 300
"#,
            app = deploy.app,
            bin = deploy.pm2.bin.display(),
            port = deploy.port
        ),
    )
    .unwrap();
    let source = deploy.root.parent().unwrap().join("next-src");
    copy_dir(&Path::new(REPO).join("fixtures/next-app"), &source);
    let source = source.to_str().unwrap();
    let first = deploy
        .relman(&["build", "--source", source, "--id", "a", "--json"])
        .json(0);
    assert_eq!(first["reused_node_modules"], false, "{first}");
    assert!(deploy.root.join("releases/a/.next/BUILD_ID").is_file());
    let second = deploy
        .relman(&["build", "--source", source, "--id", "b", "--json"])
        .json(0);
    assert_eq!(second["reused_node_modules"], true, "{second}");
    let next_js = |id: &str| {
        let path = deploy
            .root
            .join("releases")
            .join(id)
            .join("node_modules/next/package.json");
        std::fs::metadata(path).unwrap()
    };
    assert_eq!(next_js("a").ino(), next_js("b").ino(), "hard-linked");
    assert_eq!(next_js("b").mode() & 0o222, 0, "read-only");
    eprintln!(
        "next builds: {} / {} (node_modules reused)",
        first["durations_ms"], second["durations_ms"]
    );

    deploy
        .relman(&["activate", "a", "--no-reload", "--no-probe"])
        .success();
    // PM2 set up as the guide says for Next.js: a `listen_timeout` above its boot time (PM2's
    // 3000 ms default fails a boot slowed by a busy machine, and relman holds PM2 to it).
    deploy.start_app_with(
        &deploy.pm2,
        deploy.port,
        "listen_timeout: 30000, ",
        "/api/health",
    );
    deploy.assert_live("a");

    let load = start_load(deploy.port);
    for id in ["b", "a", "b"] {
        let report = deploy.relman(&["activate", id, "--json"]).json(0);
        assert_eq!(report["result"], "ok", "{report}");
        deploy.assert_live(id);
    }
    let stats = load.stop();
    eprintln!("next load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 200,
        "too little load to prove anything: {stats:?}"
    );
    for id in ["a", "b"] {
        deploy.relman(&["verify", id]).success();
    }
}

/// Starts the load the zero-downtime tests run under: keep-alive, fresh-connection and slow
/// requests against the app's port.
fn start_load(port: u16) -> Load {
    start_load_with(port, 1)
}

/// The load of the stock-app tests: keep-alive and fresh-connection requests, no slow ones
/// (the stock app has no slow route, and nothing is added to it).
fn start_plain_load(port: u16) -> Load {
    start_load_with(port, 0)
}

fn start_load_with(port: u16, slow_workers: usize) -> Load {
    support::start_load(port, slow_workers)
}

/// Replaces the first `from` in the file at `path` by `to`; `from` must be there (a template
/// that changed fails here, not later).
fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{}: no {from:?} in\n{text}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_release_that_never_listens_under_pm2_is_caught_at_its_first_worker() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-hang");
    deploy.build("a", "healthy");
    deploy.build("b", "healthy");
    // Passes the preflight (plain `node server.js` listens); under PM2 it boots and never
    // listens, so PM2's reload returns when its listen_timeout (3 s) runs out.
    deploy.build("hang", "hang-under-pm2");
    deploy.serve_first("a");
    let load = start_load(deploy.port);

    let report = deploy.relman(&["activate", "hang", "--json"]).json(3);
    assert_eq!(report["result"], "failed", "{report}");
    assert_eq!(report["rolled_back_to"], "a", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("worker 0") && reason.contains("never served"),
        "{reason}"
    );
    // Only worker 0 went to `hang` (and back): worker 1 kept serving `a` throughout.
    let moved: Vec<(u64, &str)> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["pm_id"].as_u64().unwrap(), w["release"].as_str().unwrap()))
        .collect();
    let first = moved[0].0;
    assert_eq!(moved, [(first, "hang"), (first, "a")], "{report}");
    deploy.assert_live("a");

    // A good release after it, then a manual rollback away from it: that release is never the
    // rollback target again, so a second rollback has nowhere to go.
    deploy.relman(&["activate", "b"]).success();
    deploy.assert_live("b");
    let report = deploy.relman(&["rollback", "--json"]).json(0);
    assert_eq!(report["to"], "a", "{report}");
    deploy.assert_live("a");
    let list = deploy.relman(&["list", "--json"]).json(0);
    for row in list.as_array().unwrap() {
        assert_eq!(row["rollback_target"], false, "{row}");
        if row["id"] == "b" {
            assert_eq!(row["exclusion"], "rolled-back-from", "{row}");
        }
        if row["id"] == "hang" {
            assert_eq!(row["exclusion"], "failed", "{row}");
        }
    }
    let status = deploy.relman(&["status", "--json"]).json(0);
    assert_eq!(status["rollback_target"], Value::Null, "{status}");
    let run = deploy.relman(&["rollback"]);
    let err = String::from_utf8_lossy(&run.code(1).stderr).into_owned();
    assert!(
        err.contains("no rollback target") && err.contains("b (rolled back from"),
        "{err}"
    );
    deploy.assert_live("a");

    let stats = load.stop();
    eprintln!("never-listens load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 500,
        "too little load to prove anything: {stats:?}"
    );
}

#[test]
fn an_app_served_by_another_pm2_daemon_is_refused_before_the_flip() {
    let Some(pm2_bin) = prerequisites() else {
        return;
    };
    let deploy = Deploy::new(pm2_bin.clone(), "relman-e2e-twin");
    deploy.build("a", "healthy");
    deploy.build("b", "healthy");
    deploy
        .relman(&["activate", "a", "--no-reload", "--no-probe"])
        .success();
    // The daemon users reach: another PM2_HOME, on the port relman probes.
    let other_home = deploy.root.parent().unwrap().join("other-pm2");
    std::fs::create_dir_all(&other_home).unwrap();
    let other = Pm2 {
        home: other_home.clone(),
        bin: pm2_bin,
    };
    deploy.start_app_under(&other, deploy.port);
    // The daemon relman drives has an app of the same name, on a port nobody uses.
    deploy.start_app_under(&deploy.pm2, free_port());
    let load = start_load(deploy.port);

    let run = deploy.relman(&["activate", "b"]);
    let err = String::from_utf8_lossy(&run.code(1).stderr).into_owned();
    assert!(
        err.contains("another PM2 daemon") && err.contains(other_home.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(deploy.current(), "releases/a");
    assert_eq!(deploy.history().len(), 1, "a refusal leaves no history");
    let checks = deploy.relman(&["doctor", "--json"]).json(1);
    let port = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "port")
        .unwrap_or_else(|| panic!("no port check: {checks}"));
    assert_eq!(port["level"], "FAIL", "{checks}");
    assert!(
        port["fix"]
            .as_str()
            .unwrap()
            .contains(other_home.to_str().unwrap()),
        "{port}"
    );

    let stats = load.stop();
    eprintln!("twin-daemon load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    drop(other);
}

#[test]
fn a_broken_page_is_rejected_before_the_flip_and_caught_by_the_probe_without_a_preflight() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-page");
    let toml = deploy.root.join("relman.toml");
    let config = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{config}routes = [\"/\"]\n")).unwrap();
    deploy.build("a", "healthy");
    // `/health` answers 200, `/` answers 500.
    deploy.build("broken-home", "home-500");
    // `/` answers 200, `/health` 500.
    deploy.build("sick", "unhealthy");
    deploy.serve_first("a");

    let load = start_load(deploy.port);
    let run = deploy.relman(&["activate", "broken-home", "--json"]);
    let report = run.json(3);
    assert_eq!(report["result"], "rejected", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("route `/` answered 500 on the new release (the live release answers 200)"),
        "{reason}"
    );
    deploy.assert_live("a");
    let stats = load.stop();
    eprintln!("broken-page (preflight) load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);

    // The same release on an app without a preflight: it goes live, the probe after the roll
    // asks `/`, and the way back restores `a`. Users see its 500s until then (that is what the
    // preflight is for): the count is reported, not asserted.
    let without: String = std::fs::read_to_string(&toml)
        .unwrap()
        .lines()
        .filter(|line| {
            !line.starts_with("command =") && !line.starts_with("url = \"http://127.0.0.1:{port}")
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&toml, without).unwrap();
    let load = start_load(deploy.port);
    let report = deploy
        .relman(&["activate", "broken-home", "--json"])
        .json(3);
    assert_eq!(report["result"], "failed", "{report}");
    assert_eq!(report["rolled_back_to"], "a", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("answered 500 for page `/` (the previous release answered 200)"),
        "{report}"
    );
    // Caught with the first worker moved: only it went to the broken release and back.
    let moved: Vec<&str> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["release"].as_str().unwrap())
        .collect();
    assert_eq!(moved, ["broken-home", "a"], "{report}");
    deploy.assert_live("a");
    let stats = load.stop();
    eprintln!(
        "broken-page (no preflight) load: {} ok, {} failed while the broken release was live (exit 3, rolled back)",
        stats.ok, stats.failed
    );
    assert!(stats.ok > 100, "{stats:?}");

    // A failing health route, without a preflight: the first new worker is asked for it
    // itself, so the release goes no further than that worker.
    let load = start_load(deploy.port);
    let report = deploy.relman(&["activate", "sick", "--json"]).json(3);
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed its health check `/health`") && reason.contains("status 500"),
        "{report}"
    );
    let moved: Vec<&str> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["release"].as_str().unwrap())
        .collect();
    assert_eq!(moved, ["sick", "a"], "{report}");
    deploy.assert_live("a");
    let stats = load.stop();
    eprintln!("sick health (no preflight) load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
}

/// The fenced block of `docs/guide.md` whose first line starts with `marker`, without the
/// indentation of the list item it may sit in: the guide's code is what the tests run.
fn guide_block(marker: &str) -> String {
    let guide = std::fs::read_to_string(Path::new(REPO).join("docs/guide.md")).unwrap();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let fence = line.trim_start();
        if fence.starts_with("```") && fence.len() > 3 {
            let indent = line.len() - fence.len();
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.trim_start().starts_with("```"))
                .collect();
            if body
                .first()
                .is_some_and(|first| first.trim_start().starts_with(marker))
            {
                return body
                    .iter()
                    .map(|l| format!("{}\n", l.get(indent..).unwrap_or("").trim_end()))
                    .collect();
            }
        }
    }
    panic!("docs/guide.md has no code block starting with {marker:?}");
}

/// `relman ARGS --root ROOT` with `env` (and no `RELMAN_ROOT` from the test's own).
fn relman_at(root: &Path, env: &[(String, String)], args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(args)
        .arg("--root")
        .arg(root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("RELMAN_ROOT")
        .output()
        .unwrap();
    Run {
        args: args.join(" "),
        out,
    }
}

/// Runs a command to success, or panics with its output.
fn run_ok(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `create-next-app` 16.4.3's App Router template at `dir` (pinned in the repo's package.json),
/// its lockfile made by npm, nothing added.
fn create_next_app(dir: &Path) {
    let create = Path::new(REPO).join("node_modules/.bin/create-next-app");
    run_ok(
        Command::new(&create)
            .arg(dir)
            .args([
                "--js",
                "--app",
                "--no-tailwind",
                "--no-eslint",
                "--no-biome",
                "--no-src-dir",
                "--no-react-compiler",
                "--import-alias",
                "@/*",
                "--use-npm",
                "--disable-git",
                "--skip-install",
                "--no-agent-feedback",
                "--yes",
            ])
            .env("NEXT_TELEMETRY_DISABLED", "1"),
    );
    run_ok(
        Command::new("npm")
            .args(["install", "--package-lock-only", "--no-audit", "--no-fund"])
            .current_dir(dir),
    );
}

/// The template's layout loads Geist through `next/font/google`, fetched from Google at build
/// time, which these machines cannot reach: the import and its two uses go, nothing else.
fn drop_google_fonts(dir: &Path) {
    let layout = dir.join("app/layout.js");
    let text = std::fs::read_to_string(&layout).unwrap();
    let mut kept = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("import") && line.contains("next/font/google") {
            continue;
        }
        if line.starts_with("const geist") {
            // `const geistSans = Geist({` … `});` and the blank line after it.
            for inner in lines.by_ref() {
                if inner.starts_with("});") {
                    break;
                }
            }
            lines.next();
            continue;
        }
        kept.push(line.replace(
            " className={`${geistSans.variable} ${geistMono.variable}`}",
            "",
        ));
    }
    let text = kept.join("\n") + "\n";
    assert!(!text.contains("geist"), "the template changed:\n{text}");
    std::fs::write(&layout, text).unwrap();
}

/// A stock Next.js app at `dir`, as an operator following the guide has it: the template,
/// plus the guide's `server.js` and health route and a slow route for the load.
fn stock_next_app(dir: &Path) {
    create_next_app(dir);
    std::fs::write(dir.join("server.js"), guide_block("// server.js:")).unwrap();
    let health = dir.join("app/api/health");
    std::fs::create_dir_all(&health).unwrap();
    std::fs::write(
        health.join("route.js"),
        guide_block("// app/api/health/route.js"),
    )
    .unwrap();
    let slow = dir.join("app/slow");
    std::fs::create_dir_all(&slow).unwrap();
    std::fs::copy(
        Path::new(REPO).join("fixtures/stock-next/add/app/slow/route.js"),
        slow.join("route.js"),
    )
    .unwrap();
}

/// The stock app with one change, the way real apps break.
fn stock_variant(base: &Path, dir: &Path, variant: &str) {
    copy_dir(base, dir);
    stock_variant_in_place(dir, variant);
}

/// The change of [`stock_variant`], made in `dir` itself.
fn stock_variant_in_place(dir: &Path, variant: &str) {
    match variant {
        "healthy" => {}
        "changed" => {
            let page = dir.join("app/page.js");
            let text = std::fs::read_to_string(&page).unwrap();
            std::fs::write(&page, text.replace("To get started", "To begin")).unwrap();
        }
        // Every `GET /` throws while rendering: a 500, while `/api/health` still answers 200.
        "throws" => std::fs::write(
            dir.join("app/page.js"),
            "import { connection } from 'next/server';\n\n// Rendered per request (not at build time), where it throws.\nexport const instant = false;\n\nexport default async function Home() {\n  await connection();\n  throw new Error('the home page is broken in this release');\n}\n",
        )
        .unwrap(),
        // Boot waits for a service that never answers.
        "hangs" => std::fs::write(
            dir.join("instrumentation.js"),
            "export async function register() {\n  await new Promise(() => {});\n}\n",
        )
        .unwrap(),
        other => panic!("no stock variant {other}"),
    }
}

/// The three commands on an app nobody here wrote, exactly as the tutorial (docs/tutorial.md) runs
/// them (its transcripts replayed, and held to what they show): `create-next-app`'s template
/// (its Google Fonts import dropped, nothing else), `init --app`, `deploy`, and `deploy` again
/// under load with not one failed request, then the tutorial's bad releases: a build that fails,
/// a home page that throws (refused, exit 3), a rollback.
#[test]
fn a_stock_nextjs_app_goes_from_init_to_zero_downtime_deploys_in_three_commands() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::uninitialised(pm2, "web");
    let source = deploy.root.parent().unwrap().join("src");
    create_next_app(&source);
    drop_google_fonts(&source);
    // A checkout, as the tutorial has it (relman records its commit).
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "app",
        ],
    ] {
        run_ok(Command::new("git").args(args).current_dir(&source));
    }
    let mut steps = transcript::block("docs/tutorial.md", "relman init --root /srv/web");
    steps.extend(transcript::block(
        "docs/tutorial.md",
        "/srv/src/web/app/page.js",
    ));
    let swaps = [
        ("/srv/src/web", source.display().to_string()),
        ("/srv/web", deploy.root.display().to_string()),
        ("3000", deploy.port.to_string()),
    ];
    let mut env = deploy.env();
    let mut load = None;
    let (mut deploys, mut refused) = (0, 0);
    // Section 3: the hooks, set the way it says (its first `[hooks]` block in place of the
    // section `init` wrote), then its block.
    let hooks = transcript::block("docs/tutorial.md", "git -C /srv/src/web checkout");
    let tutorial = std::fs::read_to_string(Path::new(REPO).join("docs/tutorial.md")).unwrap();
    let (_, rest) = tutorial
        .split_once("```toml\n[hooks]\n")
        .expect("the tutorial sets [hooks]");
    let (keys, _) = rest.split_once("```").unwrap();
    let mut hooks_set = false;
    for step in steps.iter().chain(&hooks) {
        if !hooks_set && hooks.first().is_some_and(|first| std::ptr::eq(first, step)) {
            let toml = deploy.root.join("relman.toml");
            let mut keys = keys.to_owned();
            for (from, to) in &swaps {
                keys = keys.replace(from, to);
            }
            let text: String = std::fs::read_to_string(&toml)
                .unwrap()
                .lines()
                .map(|line| {
                    if line.starts_with("[hooks]") {
                        format!("[hooks]\n{keys}")
                    } else {
                        format!("{line}\n")
                    }
                })
                .collect();
            std::fs::write(&toml, text).unwrap();
            hooks_set = true;
        }
        if let Some((key, value)) = step
            .command
            .strip_prefix("export ")
            .and_then(|a| a.split_once('='))
        {
            let mut value = value.to_owned();
            for (from, to) in &swaps {
                value = value.replace(from, to);
            }
            env.push((key.to_owned(), value));
            continue;
        }
        let (code, output) = transcript::run(step, &swaps, &env);
        assert_eq!(code, step.expected_code(), "$ {}\n{output}", step.command);
        transcript::assert_matches(step, &output);
        if step.command.starts_with("relman deploy") || step.command.starts_with("relman rollback")
        {
            // Whatever the exit code, every worker runs what `current` names.
            let live = deploy.current().trim_start_matches("releases/").to_owned();
            deploy.assert_live(&live);
            refused += usize::from(code == 3);
        }
        if step.command.starts_with("relman deploy") && code == 0 {
            deploys += 1;
            if deploys == 1 {
                // Under load from here on.
                load = Some(start_plain_load(deploy.port));
            }
        }
    }
    assert!(hooks_set, "the tutorial's hooks block ran");
    assert!(deploys >= 3, "the tutorial deploys twice, then with hooks");
    assert!(refused >= 1, "the tutorial shows a release refused");
    let last = &deploy.history()[0];
    assert_eq!(last["hooks"]["before_flip"]["result"], "ok", "{last}");
    assert_eq!(last["hooks"]["after_live"]["result"], "ok", "{last}");

    // Skew protection: two releases whose home page is a client component that differs, so
    // each has a chunk of its own; once the second is live, the first one's chunks still load.
    for (id, text) in [("client-1", "one"), ("client-2", "two")] {
        std::fs::write(
            source.join("app/page.js"),
            format!("'use client';\n\nexport default function Home() {{\n  return <button onClick={{() => console.log('{text}')}}>{text}</button>;\n}}\n"),
        )
        .unwrap();
        deploy.relman(&["deploy", "--id", id]).success();
        deploy.assert_live(id);
    }
    assert_skew_protected(&deploy, "client-1", "client-2");
    let stats = load.expect("load ran").stop();
    eprintln!("load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 500,
        "too little load to prove anything: {stats:?}"
    );

    let checks = deploy.relman(&["doctor", "--json"]).json(0);
    for check in checks.as_array().unwrap() {
        assert_eq!(check["level"], "OK", "{check}");
    }
    let names: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in [
        "server",
        "node",
        "actions_key",
        "deployment_id",
        "listen_timeout",
    ] {
        assert!(
            names.contains(&name),
            "doctor checks {name} for Next.js: {names:?}"
        );
    }

    // The same app as many run it by hand: `next start`, no Server Actions key. doctor says
    // what is wrong and how to fix it.
    let ecosystem = deploy.root.join("ecosystem.config.js");
    let text = std::fs::read_to_string(&ecosystem).unwrap();
    let by_hand: String = text
        .lines()
        .filter(|l| !l.contains("NEXT_SERVER_ACTIONS_ENCRYPTION_KEY"))
        .map(|l| {
            if l.trim_start().starts_with("script:") {
                format!(
                    "      script: \"node_modules/next/dist/bin/next\", args: \"start -p {}\",",
                    deploy.port
                )
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let by_hand_file = deploy.root.parent().unwrap().join("by-hand.config.js");
    std::fs::write(&by_hand_file, by_hand).unwrap();
    assert!(deploy.pm2.cmd(&["delete", "web"]).status.success());
    assert!(
        deploy
            .pm2
            .cmd(&["start", by_hand_file.to_str().unwrap()])
            .status
            .success()
    );
    let url = format!("http://127.0.0.1:{}/", deploy.port);
    support::wait_for("next start to answer", Duration::from_secs(30), || {
        answers(&url).then_some(())
    });
    let checks = deploy.relman(&["doctor", "--json"]).json(0);
    for (name, says) in [
        ("server", "next start"),
        (
            "actions_key",
            "NEXT_SERVER_ACTIONS_ENCRYPTION_KEY is not set",
        ),
    ] {
        let check = checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {checks}"));
        assert_eq!(check["level"], "WARN", "{check}");
        assert!(check["message"].as_str().unwrap().contains(says), "{check}");
        assert!(
            check["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{check}"
        );
    }
}

/// `output: 'standalone'` on the stock template, the three commands as the tutorial has
/// them, the second deploy under load: the workers serve from the release's
/// `.next/standalone` (the standalone server's traced modules, not the release's
/// `node_modules`), static files and `public` answer through it, not one request fails, and
/// doctor calls it OK.
#[test]
fn a_standalone_nextjs_app_deploys_under_load_with_the_same_three_commands() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::uninitialised(pm2, "web");
    let source = deploy.root.parent().unwrap().join("src");
    create_next_app(&source);
    drop_google_fonts(&source);
    edit_file(
        &source.join("next.config.mjs"),
        "/* config options here */",
        "output: \"standalone\",",
    );
    let port = deploy.port.to_string();
    let src = source.to_str().unwrap();
    deploy
        .relman(&["init", "--app", "web", "--port", &port, "--source", src])
        .success();
    deploy.relman(&["deploy", "--id", "one"]).success();
    deploy.assert_workers_in("one", ".next/standalone");

    let load = start_plain_load(deploy.port);
    std::fs::write(
        source.join("app/page.js"),
        "'use client';\n\nexport default function Home() {\n  return <button onClick={() => console.log('two')}>two</button>;\n}\n",
    )
    .unwrap();
    deploy.relman(&["deploy", "--id", "two"]).success();
    deploy.assert_workers_in("two", ".next/standalone");
    assert_skew_protected(&deploy, "one", "two");
    let stats = load.stop();
    eprintln!("load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 200,
        "too little load to prove anything: {stats:?}"
    );

    // `public` is served through the standalone server too.
    let url = format!("http://127.0.0.1:{}/next.svg", deploy.port);
    assert!(answers(&url), "{url}");
    let checks = deploy.relman(&["doctor", "--json"]).json(0);
    let server = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "server")
        .expect("a server check");
    assert_eq!(server["level"], "OK", "{server}");
    assert!(
        server["message"].as_str().unwrap().contains("standalone"),
        "{server}"
    );
    for check in checks.as_array().unwrap() {
        assert_eq!(check["level"], "OK", "{check}");
    }
}

/// The pnpm workspace of the guide (section 4, an app in a workspace): `create-next-app`'s
/// template as `apps/web`, importing `packages/ui` of the same workspace; the workspace's
/// files are the guide's, its lockfile made by pnpm (pinned in the repo's package.json).
fn pnpm_workspace(dir: &Path) {
    let app = dir.join("apps/web");
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    create_next_app(&app);
    drop_google_fonts(&app);
    std::fs::remove_file(app.join("package-lock.json")).unwrap();
    edit_file(
        &app.join("package.json"),
        "\"dependencies\": {",
        "\"dependencies\": {\n    \"@shop/ui\": \"workspace:*\",",
    );
    edit_file(
        &app.join("next.config.mjs"),
        "/* config options here */",
        "transpilePackages: [\"@shop/ui\"],",
    );
    edit_file(
        &app.join("app/page.js"),
        "import styles from \"./page.module.css\";\n",
        "import styles from \"./page.module.css\";\nimport { Greeting } from \"@shop/ui\";\n",
    );
    edit_file(
        &app.join("app/page.js"),
        "<div className={styles.intro}>",
        "<Greeting />\n        <div className={styles.intro}>",
    );
    std::fs::write(
        dir.join("package.json"),
        "{\n  \"name\": \"shop\",\n  \"private\": true,\n  \"packageManager\": \"pnpm@10.34.8\"\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pnpm-workspace.yaml"),
        guide_block("# pnpm-workspace.yaml"),
    )
    .unwrap();
    let ui = dir.join("packages/ui");
    std::fs::create_dir_all(&ui).unwrap();
    std::fs::write(
        ui.join("package.json"),
        "{\n  \"name\": \"@shop/ui\",\n  \"version\": \"0.0.0\",\n  \"private\": true,\n  \"main\": \"index.js\"\n}\n",
    )
    .unwrap();
    std::fs::write(ui.join("index.js"), guide_block("// packages/ui/index.js")).unwrap();
    run_ok(
        Command::new(Path::new(REPO).join("node_modules/.bin/pnpm"))
            .args(["install", "--lockfile-only"])
            .current_dir(dir),
    );
}

/// An app in a pnpm workspace, as the guide shows it: its transcript (`init --app-dir`, two
/// deploys, the second with `node_modules` reused and the build cache warm) replayed and held
/// to what it shows, then a deploy of a changed page under load with 0 failed requests, the
/// workers in the release's `apps/web`, the workspace's package rendered, doctor all OK.
#[test]
fn an_app_in_a_pnpm_workspace_deploys_with_one_key_as_the_guide_shows() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::uninitialised(pm2, "shop");
    let source = deploy.root.parent().unwrap().join("src");
    pnpm_workspace(&source);
    let swaps = [
        ("/srv/src/shop", source.display().to_string()),
        ("/srv/shop", deploy.root.display().to_string()),
        ("3000", deploy.port.to_string()),
    ];
    transcript::replay(
        "docs/guide.md",
        "relman init --root /srv/shop",
        &swaps,
        &deploy.env(),
    );
    let live = deploy.current().trim_start_matches("releases/").to_owned();
    deploy.assert_workers_in(&live, "apps/web");

    let load = start_plain_load(deploy.port);
    stock_variant_in_place(&source.join("apps/web"), "changed");
    deploy.relman(&["deploy", "--id", "changed"]).success();
    deploy.assert_live("changed");
    let stats = load.stop();
    eprintln!("load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 200,
        "too little load to prove anything: {stats:?}"
    );

    let seal: Value = serde_json::from_slice(
        &std::fs::read(deploy.root.join("releases/changed/.relman/release.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(seal["reused_node_modules"], true, "{seal}");
    assert!(seal["warm_cache_from"].is_string(), "{seal}");
    let page = ureq::get(&format!("http://127.0.0.1:{}/", deploy.port))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        page.contains("Hello from @shop/ui"),
        "the workspace's package is rendered"
    );
    assert!(page.contains("To begin"), "the changed page is live");
    deploy.relman(&["verify", "changed"]).success();
    let checks = deploy.relman(&["doctor", "--json"]).json(0);
    for check in checks.as_array().unwrap() {
        assert_eq!(check["level"], "OK", "{check}");
    }
}

/// Skew protection, with `new` live and `old` the release before it: every `/_next/static`
/// file of `old` answers 200 from `new`'s workers (some of them exist only because the build
/// added them), and `new`'s pages carry its deployment id.
fn assert_skew_protected(deploy: &Deploy, old: &str, new: &str) {
    let static_dir = deploy.root.join("releases").join(old).join(".next/static");
    let log = std::fs::read_to_string(
        deploy
            .root
            .join("releases")
            .join(new)
            .join(".relman/build.log"),
    )
    .unwrap();
    let added: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("relman: added "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        added > 0,
        "the build of {new} added no static file of {old}:\n{log}"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut checked = 0;
    for entry in walkdir_files(&static_dir) {
        let relative = entry.strip_prefix(&static_dir).unwrap();
        let url = format!(
            "http://127.0.0.1:{}/_next/static/{}",
            deploy.port,
            relative.display()
        );
        let status = agent
            .get(&url)
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 200, "{url}: a tab still on {old} asks {new} for it");
        checked += 1;
    }
    assert!(checked > 0, "{old} has static files");
    let page = agent
        .get(&format!("http://127.0.0.1:{}/", deploy.port))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        page.contains(&format!("dpl={new}")),
        "the page of {new} carries its deployment id"
    );
}

/// Every regular file below `dir`.
fn walkdir_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

#[test]
fn a_stock_nextjs_app_passes_every_gate_under_load() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-stock");
    let fonts = Path::new(REPO).join("fixtures/stock-next/google-fonts.js");
    let config = |preflight: bool| {
        format!(
            r#"[build]
command = "npm run build -- --webpack"
env = {{ NEXT_TELEMETRY_DISABLED = "1", NEXT_FONT_GOOGLE_MOCKED_RESPONSES = "{fonts}" }}

[pm2]
app = "{app}"
bin = "{bin}"
timeout_secs = 60
{preflight}
[verify]
url = "http://127.0.0.1:{port}/api/health"
body_contains = "\"release\":\"{{release}}\""
attempts = 20
interval_ms = 300
"#,
            fonts = fonts.display(),
            app = deploy.app,
            bin = deploy.pm2.bin.display(),
            port = deploy.port,
            preflight = if preflight {
                "\n[preflight]\ncommand = \"node server.js\"\nurl = \"http://127.0.0.1:{port}/api/health\"\ntimeout_secs = 20\n"
            } else {
                ""
            }
        )
    };
    std::fs::write(deploy.root.join("relman.toml"), config(true)).unwrap();
    let base = deploy.root.parent().unwrap().join("stock");
    stock_next_app(&base);
    // `a` first (npm ci), then the others at once, copying its node_modules: builds run in
    // parallel by design (the root lock is held only while an ID is claimed).
    let build = |id: &str, variant: &str| {
        let source = deploy.root.parent().unwrap().join(format!("src-{id}"));
        stock_variant(&base, &source, variant);
        let mut command = Command::new(env!("CARGO_BIN_EXE_relman"));
        command
            .args(["build", "--id", id, "--source"])
            .arg(&source)
            .arg("--root")
            .arg(&deploy.root)
            .env_remove("RELMAN_ROOT");
        command
    };
    run_ok(&mut build("a", "healthy"));
    let builds: Vec<_> = [("b", "changed"), ("throws", "throws"), ("hangs", "hangs")]
        .into_iter()
        .map(|(id, variant)| {
            let child = build(id, variant)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (id, child)
        })
        .collect();
    for (id, child) in builds {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "build {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    deploy
        .relman(&["activate", "a", "--no-reload", "--no-probe"])
        .success();
    deploy.start_app_with(
        &deploy.pm2,
        deploy.port,
        "listen_timeout: 30000, ",
        "/api/health",
    );
    deploy.assert_live("a");
    let load = start_load(deploy.port);

    // `a` serves its static page: Next.js writes its route cache into `a` at run time.
    let home = format!("http://127.0.0.1:{}/", deploy.port);
    assert!(answers(&home), "the stock home page answers");
    let route_cache = deploy.root.join("releases/a/.next/server/route-cache");
    assert!(route_cache.is_dir(), "Next.js wrote no route cache");
    let verify = deploy.relman(&["verify", "a", "--json"]).json(0);
    assert!(
        !verify["runtime"]["added"].as_array().unwrap().is_empty(),
        "{verify}"
    );

    deploy.relman(&["activate", "b"]).success();
    deploy.assert_live("b");
    // Back to `a`, which has served traffic, with the integrity check on.
    let report = deploy.relman(&["rollback", "--json"]).json(0);
    assert_eq!(report["to"], "a", "{report}");
    deploy.assert_live("a");

    // The home page throws: the build's own manifests name `/`, the preflight asks it. Next.js
    // 16 answers such a page 200 with its error document ("Application error").
    let report = deploy.relman(&["activate", "throws", "--json"]).json(3);
    assert_eq!(report["result"], "rejected", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("route `/` answered 200 with Next.js's error page on the new release (the live release answers 200)"),
        "{reason}"
    );
    deploy.assert_live("a");

    // Boot never ends (`instrumentation.js` waits for ever): the server takes connections and
    // answers none. The preflight never sees its health route answer.
    let report = deploy.relman(&["activate", "hangs", "--json"]).json(3);
    assert_eq!(report["result"], "rejected", "{report}");
    deploy.assert_live("a");

    // A tampered chunk in `b` is refused.
    let chunks = deploy.root.join("releases/b/.next/server/chunks");
    let chunk = std::fs::read_dir(&chunks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "js"))
        .expect("a server chunk");
    let mut text = std::fs::read(&chunk).unwrap();
    text.extend_from_slice(b"\n// tampered\n");
    std::fs::write(&chunk, text).unwrap();
    let run = deploy.relman(&["activate", "b"]);
    let err = String::from_utf8_lossy(&run.code(1).stderr).into_owned();
    assert!(err.contains("does not match its manifest"), "{err}");
    deploy.assert_live("a");

    let stats = load.stop();
    eprintln!("stock next load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 200,
        "too little load to prove anything: {stats:?}"
    );

    // Without a preflight the hanging release goes as far as its first worker, which takes
    // connections and answers none: caught when that worker is asked for `/`, and rolled back.
    // The requests the cluster handed it meanwhile are lost (that is what the preflight is
    // for): counted and reported, not asserted.
    std::fs::write(deploy.root.join("relman.toml"), config(false)).unwrap();
    let load = start_load(deploy.port);
    let report = deploy.relman(&["activate", "hangs", "--json"]).json(3);
    assert_eq!(report["rolled_back_to"], "a", "{report}");
    let moved: Vec<&str> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["release"].as_str().unwrap())
        .collect();
    assert_eq!(moved, ["hangs", "a"], "{report}");
    deploy.assert_live("a");
    let stats = load.stop();
    eprintln!(
        "stock next, hang without a preflight: {} ok, {} failed (exit 3 after {} ms, rolled back)",
        stats.ok, stats.failed, report["durations_ms"]["total"]
    );
}

/// A small deterministic generator (xorshift64*): the kills are random but reproducible from
/// the seed the test prints (`RELMAN_KILL_SEED=N` replays a run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One kind of command the kills are spread over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Killed {
    Build,
    Activate,
    Rollback,
    Prune,
}

impl Deploy {
    /// The IDs of sealed releases, and the state of every release, from `list --json`.
    fn states(&self) -> Vec<(String, String)> {
        support::release_states(&self.relman(&["list", "--json"]).json(0))
    }

    /// The releases the PM2 daemon's children (the app's workers) run in, from `/proc`
    /// directly: asking PM2 costs a third of a second per look.
    fn worker_releases(&self) -> Vec<Option<String>> {
        let releases = std::fs::canonicalize(self.root.join("releases")).unwrap();
        let daemon: u32 = std::fs::read_to_string(self.pm2.home.join("pm2.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| relman_sys::proc::info(*pid).is_some_and(|i| i.parent == daemon))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("server.js"))
            })
            .map(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .ok()
                    .and_then(|cwd| {
                        cwd.strip_prefix(&releases)
                            .ok()
                            .and_then(|rest| rest.components().next())
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    })
            })
            .collect()
    }
}

fn sealed_ids(deploy: &Deploy) -> Vec<String> {
    deploy
        .states()
        .into_iter()
        .filter(|(_, state)| state == "sealed")
        .map(|(id, _)| id)
        .collect()
}

/// Starts relman, waits `delay`, and SIGKILLs it if it still runs. Returns how long it took
/// when it finished before the kill (a trial that tested nothing), `None` when it was killed.
fn kill_after(deploy: &Deploy, args: &[&str], delay: Duration) -> Option<Duration> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(args)
        .arg("--root")
        .arg(&deploy.root)
        .env("PM2_HOME", &deploy.pm2.home)
        .env_remove("RELMAN_ROOT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = signal_process(child.id(), Signal::Kill).is_ok();
    let status = child.wait().unwrap();
    if killed && std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) {
        None
    } else {
        Some(started.elapsed())
    }
}

#[test]
fn hundreds_of_random_kills_leave_a_root_that_reads_and_recovers() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = Deploy::new(pm2, "relman-e2e-kills");
    let seed: u64 = std::env::var("RELMAN_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("random kills: seed {seed} (RELMAN_KILL_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let target: usize = std::env::var("RELMAN_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);

    for (id, variant) in [("a", "healthy"), ("b", "healthy")] {
        deploy.build(id, variant);
    }
    deploy.serve_first("a");
    let source = deploy.root.parent().unwrap().join("src-kills");
    copy_dir(&Path::new(REPO).join("fixtures/node-app"), &source);
    let source = source.to_str().unwrap().to_owned();

    // How long each command takes when nothing interrupts it: kills are spread over that.
    let mut took = std::collections::BTreeMap::new();
    for (kind, args) in [
        (Killed::Build, vec!["build", "--source", source.as_str()]),
        (Killed::Activate, vec!["activate", "b"]),
        (Killed::Rollback, vec!["rollback", "--to", "a"]),
        (Killed::Prune, vec!["prune", "--keep", "3"]),
    ] {
        let started = Instant::now();
        let run = deploy.relman(&args);
        run.success();
        took.insert(format!("{kind:?}"), started.elapsed());
    }
    eprintln!("random kills: unkilled durations {took:?}");

    let mut sealed = sealed_ids(&deploy);
    let mut kills: std::collections::BTreeMap<String, usize> = Default::default();
    let mut trials = 0;
    let mut recoveries = 0;
    while kills.values().sum::<usize>() < target {
        trials += 1;
        assert!(
            trials < target * 4,
            "too many trials finished before the kill: {kills:?}"
        );
        // Activations with PM2 cost seconds each, prunes milliseconds: the mix keeps a CI run's
        // 300 kills within a few minutes while every kind gets dozens.
        let kind = match rng.below(20) {
            0..=2 => Killed::Activate,
            3..=4 => Killed::Rollback,
            5..=9 => Killed::Build,
            _ => Killed::Prune,
        };
        let pick = sealed[rng.below(sealed.len() as u64) as usize].clone();
        let args: Vec<&str> = match kind {
            Killed::Build => vec!["build", "--source", &source],
            Killed::Activate => vec!["activate", &pick],
            Killed::Rollback => vec!["rollback", "--to", &pick],
            Killed::Prune => vec!["prune", "--keep", "3"],
        };
        let full = took[&format!("{kind:?}")];
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 + 1));
        if let Some(finished) = kill_after(&deploy, &args, delay) {
            // A run that finished first is a fresh measurement: the first one may have been
            // taken while the machine was busier (another test building), and kills spread
            // over a duration the command no longer takes would mostly come too late.
            took.insert(format!("{kind:?}"), finished);
            continue;
        }
        *kills.entry(format!("{kind:?}")).or_default() += 1;

        // The invariants, right after the kill: `current` a relative symlink to a sealed
        // release, every read command working, no release left `building`.
        let current = deploy.current();
        let live = current
            .strip_prefix("releases/")
            .unwrap_or_else(|| panic!("after killing {args:?}: current -> {current}"))
            .to_owned();
        let states = deploy.states();
        assert!(
            states
                .iter()
                .any(|(id, state)| *id == live && state == "sealed"),
            "after killing {args:?} at {delay:?}: current -> {live}, states {states:?}"
        );
        sealed = states
            .iter()
            .filter(|(_, state)| state == "sealed")
            .map(|(id, _)| id.clone())
            .collect();
        assert!(
            states.iter().all(|(_, state)| state != "building"),
            "after killing {args:?}: {states:?}"
        );
        deploy.relman(&["history", "--json"]).json(0);
        deploy.relman(&["verify", &live]).success();
        if trials % 10 == 0 {
            // `status` asks PM2 (a third of a second): not after every kill.
            deploy.relman(&["status", "--json"]).json(0);
        }

        // The next command recovers: workers split between two releases (a kill mid-roll) are
        // brought over by activating what `current` names; after it, no worker runs a release
        // that `current` does not name.
        if deploy
            .worker_releases()
            .iter()
            .any(|r| r.as_deref() != Some(live.as_str()))
        {
            recoveries += 1;
            deploy.relman(&["activate", &live]).success();
            deploy.assert_live(&live);
        }
        // Failed builds pile up; a prune that is not killed keeps the root small.
        if trials % 25 == 0 {
            deploy.relman(&["prune", "--keep", "3"]).success();
            sealed = sealed_ids(&deploy);
        }
    }
    // And the root still deploys: the newest sealed release goes live, proven.
    let newest = deploy
        .states()
        .into_iter()
        .find(|(_, state)| state == "sealed")
        .map(|(id, _)| id)
        .unwrap();
    deploy.relman(&["activate", &newest]).success();
    deploy.assert_live(&newest);
    eprintln!(
        "random kills: {} SIGKILLs in {trials} trials ({kills:?}), {recoveries} needed a recovery activation; every one left a consistent root",
        kills.values().sum::<usize>()
    );
}
