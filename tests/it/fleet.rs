//! The Ansible role of `contrib/ansible/` on a fleet of three real hosts, under load.
//!
//! `tests/fleet/fleet` brings the fleet up on this machine: three network namespaces on a
//! bridge, each with its own sshd and hostname (web1..3), deploy root and PM2 cluster of two
//! workers of the fixture app, behind nginx on loopback. The playbook runs with ansible-core
//! over SSH, as on any fleet, while the load generator sends keep-alive, fresh-connection and
//! slow requests through nginx; every request must succeed, and afterwards each host's own
//! `relman status --json` must show the release the scenario expects:
//!
//! - `--check`: `relman doctor` on every host, nothing changed;
//! - a healthy release rolled over all three hosts;
//! - a release that crashes under PM2: stopped at web1 (relman rolled it back), web2 and web3
//!   never activated;
//! - a release that passes on web1 and crashes on web2: web1 rolled back by the role, web2 by
//!   relman, web3 never activated;
//! - a tampered stream: refused by `relman receive` on every host, nothing activated;
//! - a healthy release two hosts at a time (`relman_serial=2`), onto web1 without relman and
//!   web2 with another version of it: both get the build host's binary, web3 keeps its own;
//!   each host leaves nginx's upstream for its activation and comes back (the role's
//!   load-balancer hooks, with `contrib/ansible/examples/nginx-{out,in}.yml`);
//! - web2's sshd down: the play names it and stops before anything ships, nothing activated;
//! - a release whose workers kill the PM2 daemon (`kill-pm2`): relman starts the app again
//!   from web1's ecosystem file in the release it had (exit 3), the roll stops there;
//! - the same on a web1 without an ecosystem file: relman exits 4 on web1, the play
//!   says a person must look at web1, web2 and web3 are never activated; last, since web1 is
//!   left without its app. Then no process of the fleet outlives `fleet down`.
//!
//! It needs root (namespaces), and installs what it lacks (`tests/fleet/fleet setup`: apt, pip,
//! npm). Without root it is skipped loudly, except under `CI=true`, where it fails. It takes
//! about 5 minutes on two shared cores (5.5 to 7 beside other tests); `RELMAN_FLEET_TEST=skip`
//! leaves it out (loudly).
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use relman_loadgen::{Load, Stats};
use serde_json::Value;

use crate::support;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const HOSTS: [&str; 3] = ["web1", "web2", "web3"];

/// The fleet, brought down (processes, then namespaces) on drop, even after a panic.
struct Fleet {
    dir: PathBuf,
    port: u16,
    _lock: std::fs::File,
}

impl Fleet {
    fn script() -> Command {
        let mut command = Command::new(Path::new(REPO).join("tests/fleet/fleet"));
        command
            .env("RELMAN_BIN", env!("CARGO_BIN_EXE_relman"))
            .env_remove("RELMAN_ROOT")
            .stdin(Stdio::null());
        command
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Fleet::script();
        command.args(args).env("FLEET_DIR", &self.dir);
        command
    }

    fn up() -> Fleet {
        // One fleet per machine (its bridge and addresses are fixed): a second run waits, and
        // says how long, which the times printed below include.
        let path = std::env::temp_dir().join("relman-fleet.lock");
        let lock = std::fs::File::create(&path).unwrap();
        if lock.try_lock().is_err() {
            let waiting = Instant::now();
            eprintln!(
                "fleet: blocking waiting for `{}`: another fleet is up",
                path.display()
            );
            lock.lock().unwrap();
            eprintln!("fleet: waited {:?} for the lock", waiting.elapsed());
        }
        let dir = std::env::temp_dir().join(format!("relman-fleet-{}", std::process::id()));
        let mut fleet = Fleet {
            dir,
            port: 0,
            _lock: lock,
        };
        let out = fleet.command(&["up"]).output().unwrap();
        assert!(out.status.success(), "fleet up failed\n{}", text(&out));
        fleet.port = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        fleet
    }

    /// Runs the playbook with `extra` (`-e key=value`, `--check`), its output captured.
    fn play(&self, extra: &[&str]) -> Output {
        let started = Instant::now();
        let out = self.command(&["play"]).args(extra).output().unwrap();
        eprintln!("play {extra:?}: {:?}", started.elapsed());
        out
    }

    /// A source of the fixture app whose VARIANT file says `variant`.
    fn source(&self, id: &str, variant: &str) -> String {
        let out = self.command(&["build", id, variant]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Plays the fixture app with `variant` as release `id`, built by the role (`extra`: more
    /// of the playbook's arguments), under load through nginx; the play's output, and what the
    /// load saw.
    fn roll(&self, id: &str, variant: &str, extra: &[&str]) -> (Output, Stats) {
        let source = self.source(id, variant);
        let load = self.load();
        let build_source = format!("relman_build_source={source}");
        let build_id = format!("relman_build_id={id}");
        let mut args = vec!["-e", &build_source, "-e", &build_id];
        args.extend_from_slice(extra);
        let out = self.play(&args);
        (out, load.stop())
    }

    /// `relman ARGS --json` on `host`, over its SSH, parsed.
    fn relman_json(&self, host: &str, args: &[&str]) -> Value {
        let out = self
            .command(&["relman", host])
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "relman {args:?} on {host}\n{}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Panics unless `host` runs `id` (`current` and both workers) and its last history entry
    /// is `action` to `id`.
    #[track_caller]
    fn assert_host(&self, host: &str, id: &str, action: &str) {
        let status = self.assert_runs(host, id);
        assert_eq!(status["last"]["action"], action, "{host}: {status:#}");
        assert_eq!(status["last"]["to"], id, "{host}: {status:#}");
    }

    /// Panics unless `host` runs `id`: `current` and both workers, online. Returns its status.
    #[track_caller]
    fn assert_runs(&self, host: &str, id: &str) -> Value {
        let status = self.relman_json(host, &["status"]);
        assert_eq!(status["current"], id, "{host}: {status:#}");
        let instances = status["pm2"]["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 2, "{host}: {status:#}");
        for worker in instances {
            assert_eq!(worker["status"], "online", "{host}: {worker}");
            assert_eq!(worker["release"], id, "{host}: {worker}");
        }
        status
    }

    /// `fleet stop-ssh HOST` or `fleet start-ssh HOST`.
    fn ssh(&self, verb: &str, host: &str) {
        let out = self.command(&[verb, host]).output().unwrap();
        assert!(out.status.success(), "fleet {verb} {host}\n{}", text(&out));
    }

    /// The length of every host's history, in `HOSTS` order.
    fn history_lens(&self) -> Vec<usize> {
        HOSTS.iter().map(|host| self.history_len(host)).collect()
    }

    /// Panics unless every host after the first `skip` still has the history it had
    /// (`before`, in `HOSTS` order) and runs `id`, which its last activation made live.
    #[track_caller]
    fn assert_untouched(&self, before: &[usize], skip: usize, id: &str) {
        for (host, len) in HOSTS.iter().zip(before).skip(skip) {
            assert_eq!(self.history_len(host), *len, "{host} was activated");
            self.assert_host(host, id, "activate");
        }
    }

    fn history_len(&self, host: &str) -> usize {
        self.relman_json(host, &["history"])
            .as_array()
            .unwrap()
            .len()
    }

    /// The end-to-end tests' mix, through nginx: keep-alive, fresh-connection and slow requests.
    fn load(&self) -> Load {
        support::start_load(self.port, 1)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let out = self.command(&["down"]).output();
        match out {
            Ok(out) if out.status.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Ok(out) => eprintln!("fleet down failed\n{}", text(&out)),
            Err(err) => eprintln!("fleet down: {err}"),
        }
    }
}

/// Whether a task whose name contains `phrase` reported `result` (e.g. `changed: [web1]`).
/// With `serial` over 1 the task's header names only the batch's first host, so the phrase
/// leaves the host out and the result line names it.
fn task_reported(stdout: &str, phrase: &str, result: &str) -> bool {
    stdout.split("\nTASK [").skip(1).any(|block| {
        let mut lines = block.lines();
        lines.next().is_some_and(|header| header.contains(phrase))
            && lines.any(|line| line.trim_start().starts_with(result))
    })
}

/// The fleet table the play printed (the `relman | fleet` task's lines).
fn table(stdout: &str) -> String {
    let Some(start) = stdout.find("\"msg\": [\n        \"HOST ") else {
        return String::new();
    };
    stdout[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.trim() != "]")
        .map(|line| {
            let line = line.trim().trim_end_matches(',');
            serde_json::from_str::<String>(line).unwrap_or_else(|_| line.to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn text(out: &Output) -> String {
    format!(
        "exit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics unless the play ended with `code`, showing its output.
#[track_caller]
fn expect_play(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "ansible-playbook\n{}",
        text(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_no_failure(stats: &Stats, what: &str) {
    eprintln!(
        "{what}: {} ok, {} failed, by release {:?}",
        stats.ok, stats.failed, stats.by_release
    );
    assert_eq!(
        stats.failed, 0,
        "{what}: failed requests: {:?}",
        stats.failures
    );
    assert!(
        stats.ok > 100,
        "{what}: too little load to mean anything: {stats:?}"
    );
}

/// Root, and what `fleet setup` installs; `false` (outside CI only) when the fleet cannot run,
/// or when `RELMAN_FLEET_TEST=skip` asks to leave it out.
fn prerequisites() -> bool {
    if std::env::var("RELMAN_FLEET_TEST").as_deref() == Ok("skip") {
        support::skipped_note(
            "fleet test: RELMAN_FLEET_TEST=skip (unset it to run the fleet test)",
        );
        return false;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let why = if !root {
        Some("it needs root for network namespaces".to_owned())
    } else {
        let out = Fleet::script().arg("setup").output().unwrap();
        (!out.status.success()).then(|| format!("`tests/fleet/fleet setup` failed\n{}", text(&out)))
    };
    let Some(why) = why else { return true };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the fleet test must run in CI: {why}"
    );
    support::skipped_note(&format!(
        "fleet test: {why} (set CI=true to make this a failure)"
    ));
    false
}

#[test]
fn the_role_rolls_host_by_host_and_rolls_back_what_moved_under_load() {
    if !prerequisites() {
        return;
    }
    let started = Instant::now();
    let fleet = Fleet::up();
    eprintln!("fleet up: {:?}", started.elapsed());
    for host in HOSTS {
        fleet.assert_host(host, "v1", "activate");
    }

    // --check: doctor on every host, nothing else.
    let before: Vec<usize> = HOSTS.iter().map(|h| fleet.history_len(h)).collect();
    let out = expect_play(&fleet.play(&["--check"]), 0);
    assert_eq!(out.matches("OK    cluster").count(), 3, "{out}");
    for (host, len) in HOSTS.iter().zip(&before) {
        assert_eq!(fleet.history_len(host), *len, "{host} changed in --check");
        fleet.assert_host(host, "v1", "activate");
    }

    // A healthy release, built once by the role, rolled over every host.
    let (out, stats) = fleet.roll("v2", "healthy", &[]);
    let stdout = expect_play(&out, 0);
    assert_no_failure(&stats, "healthy roll");
    assert!(stats.by_release.contains_key("v2"), "{stats:?}");
    eprintln!("{}", table(&stdout));
    for host in HOSTS {
        fleet.assert_host(host, "v2", "activate");
        let row = table(&stdout)
            .lines()
            .find(|line| line.starts_with(&format!("{host:<12} v1 ")))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "));
        let row = row.unwrap_or_else(|| panic!("the table shows {host}\n{stdout}"));
        assert!(
            row.starts_with(&format!("{host} v1 v2 healthy 2/2 online in v2 moved "))
                && row.ends_with("(activate)"),
            "{row}"
        );
    }

    // A release that crashes under PM2: relman refuses it on web1 (exit 3) and the roll stops.
    let before: Vec<usize> = HOSTS.iter().map(|h| fleet.history_len(h)).collect();
    let (out, stats) = fleet.roll("crash", "worker-crash", &[]);
    let stdout = expect_play(&out, 2);
    assert_no_failure(&stats, "release crashing at web1");
    assert!(
        stdout.contains("the roll of crash stopped at web1 (relman activate exit 3"),
        "{stdout}"
    );
    fleet.assert_host("web1", "v2", "auto-rollback");
    fleet.assert_untouched(&before, 1, "v2");

    // Passes on web1, crashes on web2 (its hostname): web1 is rolled back by the role, web2 by
    // relman itself, web3 is never activated.
    let before = fleet.history_len("web3");
    let (out, stats) = fleet.roll("split", "worker-crash@web2", &[]);
    let stdout = expect_play(&out, 2);
    assert_no_failure(&stats, "release passing web1, crashing at web2");
    assert!(
        stats.by_release.contains_key("split"),
        "web1 served split: {stats:?}"
    );
    assert!(
        stdout.contains("the roll of split stopped at web2 (relman activate exit 3"),
        "{stdout}"
    );
    eprintln!("{}", table(&stdout));
    for (host, this_run) in [
        ("web1", "rolled-back"),
        ("web2", "rejected"),
        ("web3", "untouched"),
    ] {
        assert!(
            table(&stdout).lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.get(..8)
                    == Some(&[host, "v2", "v2", "healthy", "2/2", "online", "in", "v2"][..])
                    && words.get(8) == Some(&this_run)
            }),
            "{host} {this_run} in the table\n{stdout}"
        );
    }
    fleet.assert_host("web1", "v2", "rollback");
    fleet.assert_host("web2", "v2", "auto-rollback");
    assert_eq!(fleet.history_len("web3"), before, "web3 was activated");
    fleet.assert_host("web3", "v2", "activate");
    let history = fleet.relman_json("web1", &["history"]);
    assert_eq!(
        (history[0]["from"].as_str(), history[1]["to"].as_str()),
        (Some("split"), Some("split")),
        "web1 went to split and back: {history:#}"
    );

    // A tampered stream: one byte of server.js flipped inside the tar, compressed again.
    let build_root = fleet.dir.join("build/root");
    let relman = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_relman"))
            .args(args)
            .arg("--root")
            .arg(&build_root)
            .env_remove("RELMAN_ROOT")
            .output()
            .unwrap();
        assert!(out.status.success(), "relman {args:?}\n{}", text(&out));
    };
    let source = fleet.source("tampered", "healthy");
    relman(&["build", "--source", &source, "--id", "tampered"]);
    let stream = fleet.dir.join("tampered.relman");
    relman(&["pack", "tampered", "--output", stream.to_str().unwrap()]);
    let mut tar = zstd::decode_all(std::fs::File::open(&stream).unwrap()).unwrap();
    let offset = tar::Archive::new(tar.as_slice())
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|entry| entry.path().unwrap().ends_with("server.js"))
        .expect("server.js in the stream")
        .raw_file_position() as usize;
    tar[offset + 10] ^= 0x20;
    std::fs::write(&stream, zstd::encode_all(tar.as_slice(), 3).unwrap()).unwrap();
    let before: Vec<usize> = HOSTS.iter().map(|h| fleet.history_len(h)).collect();
    let out = fleet.play(&[
        "-e",
        &format!("relman_pack_file={}", stream.display()),
        "-e",
        "relman_release=tampered",
    ]);
    let stdout = expect_play(&out, 2);
    assert!(
        stdout.contains("`server.js` does not match the release's manifest"),
        "{stdout}"
    );
    for (host, len) in HOSTS.iter().zip(&before) {
        assert_eq!(fleet.history_len(host), *len, "{host} was activated");
        fleet.assert_runs(host, "v2");
        let releases = fleet.relman_json(host, &["list"]);
        assert!(
            releases
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["id"] != "tampered" || r["state"] != "sealed"),
            "{host} sealed the tampered release: {releases:#}"
        );
    }

    // relman on the hosts: web1 lost its binary, web2 has another version (a script that only
    // says so). The role puts the build host's binary on both and leaves web3's alone, and
    // rolls two hosts at a time: web1 and web2 together, then web3. Each host leaves nginx
    // while it rolls and comes back after: the role's load-balancer hooks, with the example
    // task files of contrib/ansible/examples/ (a `down` on the host's upstream line, a reload).
    let build_bin = std::fs::read(env!("CARGO_BIN_EXE_relman")).unwrap();
    let bin = |host: &str| fleet.dir.join(host).join("bin/relman");
    std::fs::remove_file(bin("web1")).unwrap();
    std::fs::write(bin("web2"), "#!/bin/sh\necho 'relman 0.0.1'\n").unwrap();
    let web3_modified = std::fs::metadata(bin("web3")).unwrap().modified().unwrap();
    let nginx = fleet.dir.join("nginx");
    let nginx_conf = std::fs::read_to_string(nginx.join("nginx.conf")).unwrap();
    let examples = Path::new(REPO).join("contrib/ansible/examples");
    let lb = serde_json::json!({
        "relman_lb_out_tasks": examples.join("nginx-out.yml"),
        "relman_lb_in_tasks": examples.join("nginx-in.yml"),
        "relman_nginx_conf": nginx.join("nginx.conf"),
        "relman_nginx_reload": [
            "nginx", "-e", nginx.join("error.log"), "-c", nginx.join("nginx.conf"),
            "-p", &nginx, "-s", "reload",
        ],
    });
    let (out, stats) = fleet.roll(
        "v3",
        "healthy",
        &["-e", "relman_serial=2", "-e", &lb.to_string()],
    );
    let stdout = expect_play(&out, 0);
    assert_no_failure(&stats, "upgrade of relman, two hosts at a time");
    assert!(stats.by_release.contains_key("v3"), "{stats:?}");
    assert_eq!(
        stdout
            .matches("PLAY [relman | activate host by host]")
            .count(),
        2,
        "two batches: web1 and web2, then web3\n{stdout}"
    );
    let version = Command::new(env!("CARGO_BIN_EXE_relman"))
        .arg("--version")
        .output()
        .unwrap();
    for host in HOSTS {
        assert!(
            std::fs::read(bin(host)).unwrap() == build_bin,
            "{host}'s relman is not the build host's"
        );
        let out = fleet
            .command(&["relman", host, "--version"])
            .output()
            .unwrap();
        assert_eq!(out.stdout, version.stdout, "{host}\n{}", text(&out));
        fleet.assert_host(host, "v3", "activate");
        assert!(
            stdout.contains(&format!("{host:<12} v2")),
            "the table shows {host}\n{stdout}"
        );
    }
    assert_eq!(
        std::fs::metadata(bin("web3")).unwrap().modified().unwrap(),
        web3_modified,
        "web3 had the right relman, yet it was copied again"
    );
    for host in HOSTS {
        for phrase in [
            "out of the upstream",
            "reload without",
            "back into the upstream",
            "reload with ",
        ] {
            let result = format!("changed: [{host} -> localhost]");
            assert!(
                task_reported(&stdout, phrase, &result),
                "{phrase}: {result}\n{stdout}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(nginx.join("nginx.conf")).unwrap(),
        nginx_conf,
        "every host is back in nginx's upstream"
    );

    // web2 does not answer SSH when the play starts: the play stops before anything ships,
    // names it, and no host is activated.
    let before = fleet.history_lens();
    fleet.ssh("stop-ssh", "web2");
    let (out, stats) = fleet.roll("v4", "healthy", &[]);
    fleet.ssh("start-ssh", "web2");
    // 4 is ansible-playbook's own code for an unreachable host.
    let stdout = expect_play(&out, 4);
    assert_no_failure(&stats, "web2 unreachable");
    assert!(!stats.by_release.contains_key("v4"), "{stats:?}");
    assert!(stdout.contains("fatal: [web2]: UNREACHABLE!"), "{stdout}");
    assert!(
        !stdout.contains("TASK [relman : relman | activate v4"),
        "a host was activated\n{stdout}"
    );
    for ((host, len), now) in HOSTS.iter().zip(&before).zip(fleet.history_lens()) {
        assert_eq!(now, *len, "{host} was activated");
        fleet.assert_host(host, "v3", "activate");
    }

    // A release whose workers kill the PM2 daemon, their cluster primary, as they boot. The
    // old workers go with it; relman notices the dead daemon, and on the way back finds a
    // fresh, empty one (started by the next `pm2` command), so it starts the app again from
    // web1's ecosystem file in v3 and proves it: exit 3, web1 serves v3 again, the roll stops.
    // nginx sends web1's requests to web2 and web3 meanwhile (a refused connection or a reset
    // before the answer is retried on the next host), so the load sees no failure.
    let before = fleet.history_lens();
    let (out, stats) = fleet.roll("recover", "kill-pm2", &[]);
    let stdout = expect_play(&out, 2);
    assert_no_failure(&stats, "release killing PM2 at web1, started again");
    assert!(!stats.by_release.contains_key("recover"), "{stats:?}");
    assert!(
        stdout.contains("the roll of recover stopped at web1 (relman activate exit 3"),
        "{stdout}"
    );
    fleet.assert_host("web1", "v3", "auto-rollback");
    fleet.assert_untouched(&before, 1, "v3");

    // Last, as it leaves web1 without its app: the same on a web1 whose app was started by
    // hand (no ecosystem file), so there is nothing to start it again from: relman exits 4
    // there, the play stops and touches nothing else.
    std::fs::remove_file(fleet.dir.join("web1/root/ecosystem.config.js")).unwrap();
    let before = fleet.history_lens();
    let (out, stats) = fleet.roll("stuck", "kill-pm2", &[]);
    let stdout = expect_play(&out, 2);
    assert_no_failure(&stats, "release killing PM2 at web1");
    assert!(!stats.by_release.contains_key("stuck"), "{stats:?}");
    assert!(
        stdout.contains("relman activate exited 4 (stuck)"),
        "{stdout}"
    );
    assert!(stdout.contains("a person must look at web1 ("), "{stdout}");
    let history = fleet.relman_json("web1", &["history"]);
    let entry = |e: &Value| (e["action"].clone(), e["to"].clone(), e["result"].clone());
    assert_eq!(
        history.as_array().unwrap().len(),
        before[0] + 2,
        "{history:#}"
    );
    assert_eq!(
        (entry(&history[1]), entry(&history[0])),
        (
            ("activate".into(), "stuck".into(), "failed".into()),
            ("auto-rollback".into(), "v3".into(), "failed".into())
        ),
        "web1 went to stuck and could not come back: {history:#}"
    );
    let status = fleet.relman_json("web1", &["status"]);
    assert_eq!(status["current"], "v3", "{status:#}");
    assert_eq!(
        status["pm2"]["instances"],
        Value::Array(vec![]),
        "{status:#}"
    );
    fleet.assert_untouched(&before, 1, "v3");

    // `fleet down` stops everything, web1's fresh PM2 daemon and relman's PM2 session there
    // included (its reload's answer never comes, so it never ends by itself).
    let dir = fleet.dir.clone();
    drop(fleet);
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = strays(&dir);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the fleet outlived `fleet down`:\n{}",
            left.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("fleet test: {:?}", started.elapsed());
}

/// The processes whose command line or environment names `dir` (a PM2 daemon and its
/// workers, relman's PM2 session, an sshd), as `pid command`.
fn strays(dir: &Path) -> Vec<String> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let read = |what: &str| std::fs::read(entry.path().join(what)).unwrap_or_default();
        let cmdline = read("cmdline");
        let mentions = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        if mentions(&cmdline) || mentions(&read("environ")) {
            let command = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!(
                "{pid} {}",
                command.chars().take(160).collect::<String>()
            ));
        }
    }
    found
}
