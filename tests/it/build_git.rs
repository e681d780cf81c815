//! `relman build --git`: a clone of a local repository, the commit recorded, `.git` left out.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Output};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn relman(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relman"))
        .args(args)
        .arg("--root")
        .arg(root)
        .env_remove("RELMAN_ROOT")
        .output()
        .unwrap()
}

#[test]
fn builds_from_git_at_a_ref_and_records_the_commit() {
    let temp = tempfile::tempdir().unwrap();
    let repo = temp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("app.js"), "v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "v1"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("app.js"), "v2\n").unwrap();
    git(&repo, &["commit", "-qam", "v2"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);

    let root = temp.path().join("root");
    assert!(relman(&root, &["init"]).status.success());
    std::fs::write(
        root.join("relman.toml"),
        "[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n",
    )
    .unwrap();
    let url = format!("file://{}", repo.display());

    let out = relman(&root, &["build", "--git", &url, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let release = root.join("releases").join(&id);
    assert_eq!(
        std::fs::read_to_string(release.join("app.js")).unwrap(),
        "v2\n"
    );
    assert!(!release.join(".git").exists());
    let list: serde_json::Value =
        serde_json::from_slice(&relman(&root, &["list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["revision"], second.as_str());

    let out = relman(
        &root,
        &["build", "--git", &url, "--ref", "v1", "--id", "old"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("releases/old/app.js")).unwrap(),
        "v1\n"
    );
    let seal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("releases/old/.relman/release.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(seal["revision"], first.as_str());
    assert_eq!(seal["source"]["kind"], "git");
    assert_eq!(seal["source"]["ref"], "v1");
    assert!(
        !root.join(".relman/tmp").read_dir().unwrap().any(|_| true),
        "the clone is cleaned up"
    );

    // A ref that does not exist fails the build (exit 1) and leaves it unsealed.
    let out = relman(
        &root,
        &[
            "build",
            "--git",
            &url,
            "--ref",
            "no-such-ref",
            "--id",
            "bad",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!root.join("releases/bad/.relman/release.json").exists());
    // Option injection through the URL or the ref is refused before anything is made.
    for args in [["--git", "--upload-pack=touch /tmp/x"], ["--git", ""]] {
        let out = relman(&root, &["build", args[0], args[1], "--id", "inj"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!root.join("releases/inj").exists());
    }
}
