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
//! - a tampered stream: refused by `relman receive` on every host, nothing activated.
//!
//! It needs root (namespaces), and installs what it lacks (`tests/fleet/fleet setup`: apt, pip,
//! npm). Without root it is skipped loudly, except under `CI=true`, where it fails. It takes
//! 5 to 6 minutes on two busy shared cores; `RELMAN_FLEET_TEST=skip` leaves it out (loudly).
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
        // One fleet per machine (its bridge and addresses are fixed): a second run waits.
        let lock = std::fs::File::create(std::env::temp_dir().join("relman-fleet.lock")).unwrap();
        lock.lock().unwrap();
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
    let source = fleet.source("v2", "healthy");
    let load = fleet.load();
    let out = fleet.play(&[
        "-e",
        &format!("relman_build_source={source}"),
        "-e",
        "relman_build_id=v2",
    ]);
    let stats = load.stop();
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
    let source = fleet.source("crash", "worker-crash");
    let load = fleet.load();
    let out = fleet.play(&[
        "-e",
        &format!("relman_build_source={source}"),
        "-e",
        "relman_build_id=crash",
    ]);
    let stats = load.stop();
    let stdout = expect_play(&out, 2);
    assert_no_failure(&stats, "release crashing at web1");
    assert!(
        stdout.contains("the roll of crash stopped at web1 (relman activate exit 3"),
        "{stdout}"
    );
    fleet.assert_host("web1", "v2", "auto-rollback");
    for (host, len) in HOSTS.iter().zip(&before).skip(1) {
        assert_eq!(fleet.history_len(host), *len, "{host} was activated");
        fleet.assert_host(host, "v2", "activate");
    }

    // Passes on web1, crashes on web2 (its hostname): web1 is rolled back by the role, web2 by
    // relman itself, web3 is never activated.
    let before = fleet.history_len("web3");
    let source = fleet.source("split", "worker-crash@web2");
    let load = fleet.load();
    let out = fleet.play(&[
        "-e",
        &format!("relman_build_source={source}"),
        "-e",
        "relman_build_id=split",
    ]);
    let stats = load.stop();
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
    eprintln!("fleet test: {:?}", started.elapsed());
}
