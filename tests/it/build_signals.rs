//! Ctrl-C and timeouts during `relman build`: the whole command group dies, the release is left
//! unsealed and reads as failed, and nothing keeps running.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn relman(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relman"));
    command.arg("--root").arg(root).env_remove("RELMAN_ROOT");
    command
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) && !cmdline.contains("relman") {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

fn setup(command: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("root");
    let source = temp.path().join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("index.js"), "1\n").unwrap();
    assert!(relman(&root).arg("init").output().unwrap().status.success());
    std::fs::write(
        root.join("relman.toml"),
        format!(
            "[build]\ninstall = \"\"\ncommand = \"{command}\"\nexpect = []\ntimeout_secs = 2\n"
        ),
    )
    .unwrap();
    (temp, root, source)
}

fn state_of(root: &Path, id: &str) -> String {
    let out = relman(root).args(["list", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn ctrl_c_kills_the_build_group_and_leaves_it_unsealed() {
    // A marker unique to this test, so that the check below cannot see other tests' sleeps.
    let marker = "sleep 31.4159";
    let (_temp, root, source) = setup(&format!("sh -c '{marker}' & {marker}"));
    let child = relman(&root)
        .args(["build", "--id", "interrupted", "--source"])
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(marker).len() < 2 {
        assert!(Instant::now() < deadline, "the build command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(state_of(&root, "interrupted"), "building");
    relman_sys::process::signal_process(child.id(), relman_sys::process::Signal::Interrupt)
        .unwrap();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        processes_with(marker).is_empty(),
        "left running: {:?}",
        processes_with(marker)
    );
    assert!(
        !root
            .join("releases/interrupted/.relman/release.json")
            .exists()
    );
    assert_eq!(state_of(&root, "interrupted"), "failed");
}

#[test]
fn timeout_kills_the_build_group() {
    let marker = "sleep 27.1828";
    let (_temp, root, source) = setup(&format!("sh -c '{marker}' & {marker}"));
    let started = Instant::now();
    let output = relman(&root)
        .args(["build", "--id", "slow", "--source"])
        .arg(&source)
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("build.timeout_secs"), "{stderr}");
    assert!(stderr.contains("build.log"), "{stderr}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(processes_with(marker).is_empty());
    assert_eq!(state_of(&root, "slow"), "failed");
}
