//! The hooks around going live, with real PM2 and load: a migration into a SQLite file in
//! `shared/` that runs once per activation, a failing migration that rejects the release, a
//! failing notification that never undoes a good activation, `after_rollback` after a broken
//! release is rolled back, a hanging hook killed at its timeout with its whole group, and a
//! SIGKILL of relman in the middle of a migration.

use super::*;

/// The migration every test runs as `before_flip`: it records each run (release, previous,
/// action) in `data/app.db` (the shared `data` directory, through the release's link), after
/// creating its tables. A release whose ID starts with `reject` fails before writing anything,
/// `slow` takes 3 s (and says when it started), `hang` never ends and leaves a child behind.
const MIGRATE: &str = r#"#!/bin/sh
set -e
case "$RELMAN_RELEASE" in
  reject*) echo "migrating $RELMAN_RELEASE"; echo "error: column \"plan\" of relation \"users\" already exists" >&2; exit 1 ;;
  hang*) sleep 1000 & echo $! > "$TEST_DIR/hang.pid"; echo "waiting for a lock on users"; wait ;;
  slow*) echo "migrating $RELMAN_RELEASE slowly"; touch "$TEST_DIR/slow.started"; sleep 3 ;;
esac
python3 - <<'PY'
import os, sqlite3
db = sqlite3.connect("data/app.db")
db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
db.execute("CREATE TABLE IF NOT EXISTS migrations (release TEXT, previous TEXT, action TEXT, cwd TEXT)")
db.execute("INSERT INTO migrations VALUES (?, ?, ?, ?)",
           (os.environ["RELMAN_RELEASE"], os.environ["RELMAN_PREVIOUS"], os.environ["RELMAN_ACTION"], os.getcwd()))
db.commit()
print("migrated", os.environ["RELMAN_RELEASE"])
PY
"#;

/// A deploy root of the fixture app with `[hooks]` set and a shared `data` directory.
fn hooked(pm2: PathBuf, app: &str, timeout_secs: u64) -> Deploy {
    let deploy = Deploy::new(pm2, app);
    let dir = deploy.root.parent().unwrap().to_owned();
    std::fs::write(dir.join("migrate.sh"), MIGRATE).unwrap();
    std::fs::create_dir_all(deploy.root.join("shared/data")).unwrap();
    let notify = dir.join("notify.log");
    let toml = deploy.root.join("relman.toml");
    let config = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        format!(
            r#"{config}
[shared]
paths = ["data"]

[hooks]
before_flip = "sh {migrate}"
after_live = "echo live $RELMAN_RELEASE from $RELMAN_PREVIOUS >> {notify}; test $RELMAN_RELEASE != quiet"
after_rollback = "echo $RELMAN_ACTION to $RELMAN_RELEASE from $RELMAN_PREVIOUS >> {notify}"
timeout_secs = {timeout_secs}
"#,
            migrate = dir.join("migrate.sh").display(),
            notify = notify.display(),
        ),
    )
    .unwrap();
    deploy
}

impl Deploy {
    fn test_dir(&self) -> PathBuf {
        self.root.parent().unwrap().to_owned()
    }

    /// What relman runs with, and the test's directory for the migration's marks.
    fn hook_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push(("TEST_DIR".into(), self.test_dir().display().to_string()));
        env
    }

    fn relman_hooked(&self, args: &[&str]) -> Run {
        relman_at(&self.root, &self.hook_env(), args)
    }

    /// Every migration run, in order: (release, previous, action).
    fn migrations(&self) -> Vec<(String, String, String)> {
        let out = self.query("SELECT release, previous, action FROM migrations ORDER BY rowid");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let mut parts = line.split('|').map(str::to_owned);
                (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                )
            })
            .collect()
    }

    /// Rows of a query on the shared database, fields joined by `|`.
    fn query(&self, sql: &str) -> Output {
        Command::new("python3")
            .arg("-c")
            .arg("import sqlite3, sys\nfor row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print('|'.join(map(str, row)))")
            .arg(self.root.join("shared/data/app.db"))
            .arg(sql)
            .output()
            .unwrap()
    }

    fn notifications(&self) -> Vec<String> {
        std::fs::read_to_string(self.test_dir().join("notify.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn migration(release: &str, previous: &str, action: &str) -> (String, String, String) {
    (release.into(), previous.into(), action.into())
}

fn stderr(run: &Run) -> String {
    String::from_utf8_lossy(&run.out.stderr).into_owned()
}

#[test]
fn hooks_run_once_around_going_live_and_their_failures_do_what_they_say_under_load() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = hooked(pm2, "relman-e2e-hooks", 60);
    for (id, variant) in [
        ("a", "healthy"),
        ("b", "healthy"),
        ("reject", "healthy"),
        ("quiet", "healthy"),
        ("worker-crash", "worker-crash"),
    ] {
        deploy.build(id, variant);
    }
    // The first activation runs the hooks too: the migration creates the tables.
    deploy
        .relman_hooked(&["activate", "a", "--no-reload", "--no-probe"])
        .success();
    deploy.start_app();
    assert_eq!(deploy.migrations(), [migration("a", "", "activate")]);
    let load = start_load(deploy.port);

    // A good activation: the migration once, in the new release's directory with the shared
    // data linked, before the flip; the notification once it is proven.
    let run = deploy.relman_hooked(&["activate", "b", "--json"]);
    let report = run.json(0);
    deploy.assert_live("b");
    assert_eq!(report["hooks"]["before_flip"]["result"], "ok", "{report}");
    assert_eq!(report["hooks"]["after_live"]["result"], "ok", "{report}");
    let err = stderr(&run);
    assert!(
        err.contains("migrated b"),
        "the hook's output is streamed: {err}"
    );
    let log = report["hooks"]["before_flip"]["log"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(deploy.root.join(log)).unwrap(),
        "migrated b\n",
        "the hook's output is kept beside the history entry"
    );
    let history = deploy.history();
    assert_eq!(history[0]["hooks"], report["hooks"]);
    let cwd = deploy.query("SELECT cwd FROM migrations WHERE release = 'b'");
    assert_eq!(
        String::from_utf8_lossy(&cwd.stdout).trim(),
        deploy.root.join("releases/b").display().to_string()
    );

    // A failing migration rejects the release: exit 3, nothing changed, its last lines in the
    // message, no notification.
    let run = deploy.relman_hooked(&["activate", "reject", "--json"]);
    let report = run.json(3);
    assert_eq!(report["result"], "rejected", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the before_flip hook exited with status 1")
            && reason.contains("column \"plan\" of relation \"users\" already exists"),
        "{reason}"
    );
    deploy.assert_live("b");
    assert_eq!(deploy.history()[0]["result"], "rejected");
    assert_eq!(
        deploy.history()[0]["hooks"]["before_flip"]["result"],
        "failed"
    );

    // A failing notification never undoes a good activation: exit 0, a warning, and the
    // history says so.
    let run = deploy.relman_hooked(&["activate", "quiet", "--json"]);
    let report = run.json(0);
    deploy.assert_live("quiet");
    assert!(
        stderr(&run).contains("warning: the after_live hook exited with status 1"),
        "{}",
        stderr(&run)
    );
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("quiet is live and proven all the same"),
        "{report}"
    );
    let last = &deploy.history()[0];
    assert_eq!(last["result"], "ok");
    assert_eq!(last["hooks"]["after_live"]["result"], "failed", "{last}");
    let text = deploy.relman(&["history"]).success().stdout.clone();
    assert!(
        String::from_utf8_lossy(&text).contains("hook after_live: failed: exited with status 1"),
        "{}",
        String::from_utf8_lossy(&text)
    );

    // A release that crashes under PM2 is rolled back, then `after_rollback` runs, in the
    // release that is live again.
    let report = deploy
        .relman_hooked(&["activate", "worker-crash", "--json"])
        .json(3);
    assert_eq!(report["rolled_back_to"], "quiet", "{report}");
    deploy.assert_live("quiet");
    let history = deploy.history();
    assert_eq!(history[0]["action"], "auto-rollback");
    assert_eq!(history[0]["hooks"]["after_rollback"]["result"], "ok");
    assert_eq!(history[1]["hooks"]["before_flip"]["result"], "ok");
    assert_eq!(history[1]["hooks"].get("after_rollback"), None);
    assert_eq!(history[1]["hooks"].get("after_live"), None);

    // A rollback by hand runs `after_rollback` too.
    deploy.relman_hooked(&["rollback"]).success();
    deploy.assert_live("b");

    // `--no-hooks` runs none, and the history says they were skipped.
    deploy
        .relman_hooked(&["activate", "quiet", "--no-hooks"])
        .success();
    deploy.assert_live("quiet");
    let last = &deploy.history()[0];
    for hook in ["before_flip", "after_live"] {
        assert_eq!(last["hooks"][hook]["result"], "skipped", "{last}");
    }

    let stats = load.stop();
    eprintln!("hooks load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
    assert!(
        stats.ok > 500,
        "too little load to prove anything: {stats:?}"
    );

    // Exactly one migration per activation that reached the flip's gate, none for the
    // rejected one (it failed before writing) nor for `--no-hooks`.
    assert_eq!(
        deploy.migrations(),
        [
            migration("a", "", "activate"),
            migration("b", "a", "activate"),
            migration("quiet", "b", "activate"),
            migration("worker-crash", "quiet", "activate"),
            migration("b", "quiet", "rollback"),
        ]
    );
    assert_eq!(
        deploy.notifications(),
        [
            "live a from",
            "live b from a",
            "live quiet from b",
            "auto-rollback to quiet from worker-crash",
            "rollback to b from quiet",
        ]
    );
    let doctor = deploy.relman(&["doctor", "--json"]).json(0);
    let hooks = doctor
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "hooks")
        .unwrap();
    assert!(
        hooks["message"]
            .as_str()
            .unwrap()
            .starts_with("before_flip `sh "),
        "{hooks}"
    );
}

#[test]
fn a_hanging_hook_is_killed_at_its_timeout_and_a_kill_of_relman_mid_hook_is_recovered() {
    let Some(pm2) = prerequisites() else { return };
    let deploy = hooked(pm2, "relman-e2e-hook-kill", 6);
    for id in ["a", "hang", "slow"] {
        deploy.build(id, "healthy");
    }
    deploy
        .relman_hooked(&["activate", "a", "--no-reload", "--no-probe"])
        .success();
    deploy.start_app();
    let load = start_load(deploy.port);

    // A hook that hangs: killed at its 6 s timeout with the child it started, the release
    // rejected, the old one live.
    let started = Instant::now();
    let report = deploy
        .relman_hooked(&["activate", "hang", "--json"])
        .json(3);
    assert!(started.elapsed() < Duration::from_secs(30));
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "the before_flip hook ran past its 6 s timeout (`hooks.timeout_secs`) and was killed with its whole process group"
        ) && reason.contains("waiting for a lock on users"),
        "{reason}"
    );
    let child: u32 = std::fs::read_to_string(deploy.test_dir().join("hang.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the hook's child outlived its timeout: {stat}"
    );
    deploy.assert_live("a");

    // relman SIGKILLed while the migration runs: the migration goes on (its output has no
    // pipe to break), the next command reports the unfinished activation, and the retry
    // waits for the migration, sees that it succeeded, and goes live without running it again.
    let mut child = Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(["activate", "slow", "--root"])
        .arg(&deploy.root)
        .envs(deploy.hook_env())
        .env_remove("RELMAN_ROOT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = deploy.test_dir().join("slow.started");
    support::wait_for(
        "the slow migration to start",
        Duration::from_secs(30),
        || started.exists().then_some(()),
    );
    signal_process(child.id(), Signal::Kill).unwrap();
    child.wait().unwrap();
    deploy.assert_live("a");

    let status = deploy.relman(&["status", "--json"]).json(0);
    assert_eq!(status["unfinished"]["to"], "slow", "{status}");
    assert_eq!(
        status["unfinished"]["hooks"]["before_flip"]["result"], "running",
        "{status}"
    );
    let text = deploy.relman(&["status"]).success().stdout.clone();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("unfinished:       activate a -> slow started"),
        "{text}"
    );
    let doctor = deploy.relman(&["doctor", "--json"]).json(0);
    assert!(
        doctor
            .as_array()
            .unwrap()
            .iter()
            .any(|check| check["name"] == "unfinished activation" && check["level"] == "WARN"),
        "{doctor}"
    );

    let run = deploy.relman_hooked(&["activate", "slow", "--json"]);
    let report = run.json(0);
    deploy.assert_live("slow");
    assert_eq!(
        report["hooks"]["before_flip"]["result"], "earlier",
        "{report}"
    );
    let err = stderr(&run);
    assert!(
        err.contains("before_flip already ran successfully and is not run again"),
        "{err}"
    );
    assert_eq!(
        deploy
            .migrations()
            .iter()
            .filter(|(release, ..)| release == "slow")
            .count(),
        1,
        "the migration ran once: {:?}",
        deploy.migrations()
    );
    assert_eq!(
        deploy.history()[0]["hooks"]["before_flip"]["result"],
        "earlier"
    );
    let status = deploy.relman(&["status", "--json"]).json(0);
    assert_eq!(status["unfinished"], Value::Null, "{status}");

    let stats = load.stop();
    eprintln!("hook kill load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.failures);
}
