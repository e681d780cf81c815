//! CLI tests: the real `relman` binary against temp deploy roots.
//!
//! Each test asserts the exit code, stdout (data only) and stderr (one `error: ...` line on
//! failure), and the tree the command leaves behind. Most builds use a shell-only build command
//! (no Node.js) so the file stays fast; the tests that need `node`/`npm` say so and skip loudly
//! without them (or fail, on CI).
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)]

use crate::support;

use relman_sys::process::Signal;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{
    Run, Sandbox, Tree, chmod, mode_of, processes_with_arg, read_file, run_command,
    run_concurrently, snapshot_tree, spawn_command, symlink, tree_bytes, wait_for, write_file,
};

/// The build command of most tests: plain `sh`, no Node. A `FAIL` file in the source makes it
/// fail (exit 3); a `SLOW` file holding a duration makes it `sleep` that long first (each test
/// uses its own odd duration, so its `sleep` can be found in `/proc` and told from the others).
const BUILD_SCRIPT: &str = r#"if [ -e FAIL ]; then echo "failing on purpose: FAIL exists" >&2; exit 3; fi; if [ -e SLOW ]; then sleep "$(cat SLOW)"; fi; mkdir -p build && echo "$RELMAN_RELEASE" > build/BUILD_ID"#;

/// A `relman.toml` with the given install and build commands and `build/BUILD_ID` expected;
/// `extra` continues the `[build]` table and may open further tables.
fn config(install: &str, command: &str, extra: &str) -> String {
    format!(
        "[build]\ninstall = '''{install}'''\ncommand = '''{command}'''\nexpect = [\"build/BUILD_ID\"]\n{extra}\n"
    )
}

/// The fast config: no install, the shell build command.
fn fast_config(extra: &str) -> String {
    config("", BUILD_SCRIPT, extra)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 test path")
}

/// `relman build --source SRC --id ID`, which must succeed and print the ID last.
#[track_caller]
fn build_ok(sb: &Sandbox, src: &Path, id: &str) -> Run {
    let run = sb.relman(&["build", "--source", s(src), "--id", id]);
    run.ok();
    assert_eq!(
        run.stdout,
        format!("{id}\n"),
        "stdout is the ID alone\n{run}"
    );
    run
}

/// `relman list --json` as an array.
#[track_caller]
fn list(sb: &Sandbox) -> Vec<Value> {
    let run = sb.relman(&["list", "--json"]);
    run.ok();
    run.json()
        .as_array()
        .unwrap_or_else(|| panic!("list --json is not an array\n{run}"))
        .clone()
}

/// `(id, state)` of every release, in `list` order.
fn states(sb: &Sandbox) -> Vec<(String, String)> {
    list(sb)
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn state_of(sb: &Sandbox, id: &str) -> Option<String> {
    states(sb)
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, state)| state)
}

fn seal(sb: &Sandbox, id: &str) -> Value {
    let text = read_file(&sb.release_dir(id).join(".relman/release.json"));
    serde_json::from_str(&text).expect("release.json is JSON")
}

/// Makes `id` current without PM2 or HTTP (no `pm2.app` is configured).
#[track_caller]
fn activate(sb: &Sandbox, id: &str) {
    sb.relman(&["activate", id, "--no-reload", "--no-probe"])
        .ok();
    assert_eq!(
        fs::read_link(sb.root.join("current")).unwrap(),
        Path::new("releases").join(id)
    );
}

/// `YYYYMMDDHHMMSS` optionally followed by `-N`.
fn is_timestamp_id(id: &str) -> bool {
    let (stamp, suffix) = match id.split_once('-') {
        Some((stamp, suffix)) => (stamp, Some(suffix)),
        None => (id, None),
    };
    stamp.len() == 14
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && suffix.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 3339 in UTC with at least millisecond precision.
#[track_caller]
fn parse_created_at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    let parsed =
        chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(text.ends_with('Z'), "UTC: {text}");
    let fraction = text
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .unwrap_or("");
    assert!(
        fraction.len() >= 3 && fraction.bytes().all(|b| b.is_ascii_digit()),
        "at least milliseconds: {text}"
    );
    parsed.to_utc()
}

fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y%m%d%H%M%S").to_string()
}

fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn node_version() -> Option<String> {
    let out = Command::new("node").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn count_lines(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Every regular file under `dir` (relative paths), leaving out the given top-level names.
fn regular_files(dir: &Path, skip: &[&str]) -> BTreeSet<String> {
    snapshot_tree(dir)
        .entries
        .into_iter()
        .filter(|(_, node)| matches!(node, support::Node::File { .. }))
        .map(|(path, _)| path.to_string_lossy().into_owned())
        .filter(|path| !skip.iter().any(|s| Path::new(path).starts_with(s)))
        .collect()
}

fn manifest_paths(release: &Path) -> BTreeSet<String> {
    read_file(&release.join(".relman/manifest.sha256"))
        .lines()
        .map(|line| line.split_once("  ").expect("HEX  PATH").1.to_owned())
        .collect()
}

fn set_mtime(path: &Path, to: std::time::SystemTime) {
    fs::File::open(path)
        .and_then(|f| f.set_times(fs::FileTimes::new().set_modified(to)))
        .unwrap_or_else(|e| panic!("touch {}: {e}", path.display()));
}

fn sigint(pid: u32) {
    relman_sys::process::signal_process(pid, Signal::Interrupt)
        .unwrap_or_else(|e| panic!("kill -INT {pid}: {e}"));
}

#[track_caller]
fn assert_no_process_with_arg(arg: &str) {
    // SIGKILL is delivered at once, but the process takes a moment to be gone from /proc.
    wait_for(
        &format!("no process with argument {arg}"),
        Duration::from_secs(3),
        || processes_with_arg(arg).is_empty().then_some(()),
    );
}

// ---------------------------------------------------------------------------------------------
// 1. init

#[test]
fn init_creates_the_layout_is_idempotent_and_never_overwrites_the_config() {
    let sb = Sandbox::new();
    let run = sb.relman(&["init"]);
    run.ok();
    for dir in ["releases", "shared", ".relman"] {
        assert!(sb.root.join(dir).is_dir(), "{dir}/ missing\n{run}");
    }
    let template = read_file(&sb.root.join("relman.toml"));
    assert!(
        template.starts_with('#') && template.contains("[build]"),
        "a commented relman.toml"
    );
    assert_eq!(
        run.stdout,
        format!("{}\n", sb.root.display()),
        "stdout is the root"
    );

    // The template is a valid config: commands that read it work.
    sb.relman(&["list"]).ok();
    sb.relman(&["prune", "--dry-run"]).ok();

    // Idempotent: a second init creates nothing and changes nothing. (`.relman/lock` is left
    // out: every locked command writes its own description into it.)
    let before = snapshot_tree(&sb.root).without(&[".relman/lock"]);
    let again = sb.relman(&["init"]);
    again.ok();
    assert_eq!(again.stdout, "", "nothing created, no data\n{again}");
    assert!(again.stderr.contains("already a deploy root"), "{again}");
    before.assert_same(&snapshot_tree(&sb.root).without(&[".relman/lock"]), &again);
    let json = sb.relman(&["init", "--json"]);
    json.ok();
    assert_eq!(json.json()["created"], serde_json::json!([]), "{json}");

    // An operator's relman.toml is never overwritten, even when the rest has to be recreated.
    let mine = "# mine\n[retention]\nkeep = 3\n";
    write_file(&sb.root.join("relman.toml"), mine);
    fs::remove_dir(sb.root.join("shared")).unwrap();
    let run = sb.relman(&["init", "--json"]);
    run.ok();
    let created = run.json()["created"].clone();
    assert_eq!(
        created,
        serde_json::json!([sb.root.join("shared")]),
        "{run}"
    );
    assert_eq!(read_file(&sb.root.join("relman.toml")), mine);

    // A fresh directory that only has a relman.toml keeps it too.
    let other = Sandbox::new();
    write_file(&other.root.join("relman.toml"), mine);
    other.relman(&["init"]).ok();
    assert_eq!(read_file(&other.root.join("relman.toml")), mine);
    assert!(other.root.join("releases").is_dir());
}

// ---------------------------------------------------------------------------------------------
// 2. build

#[test]
fn build_prints_a_timestamp_id_and_seals_release_json_with_the_spec_fields() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    let before_build = chrono::Utc::now();
    let run = sb.relman(&["build", "--source", s(&src)]);
    run.ok();
    let id = run.last_stdout_line().to_owned();
    assert_eq!(
        run.stdout,
        format!("{id}\n"),
        "stdout carries the ID only\n{run}"
    );
    assert!(is_timestamp_id(&id), "ID format: {id}");
    assert!(
        run.stderr.contains(&format!("building release {id}")),
        "progress on stderr\n{run}"
    );

    let sealed = seal(&sb, &id);
    assert_eq!(sealed["id"], id.as_str());
    let created_at = parse_created_at(&sealed["created_at"]);
    assert!(
        created_at >= before_build - chrono::Duration::seconds(1)
            && created_at <= chrono::Utc::now()
    );
    assert_eq!(stamp(created_at), id, "the ID is the UTC build time");
    assert!(parse_created_at(&sealed["sealed_at"]) >= created_at);
    assert_eq!(sealed["source"]["kind"], "dir");
    assert_eq!(sealed["source"]["path"], s(&src));
    assert_eq!(sealed["revision"], Value::Null, "not a git work tree");
    assert_eq!(
        sealed["lockfile_hash"],
        sha256_hex(&src.join("package-lock.json")).as_str()
    );
    assert_eq!(
        sealed["node_version"],
        node_version().map_or(Value::Null, Value::from)
    );
    assert_eq!(sealed["reused_node_modules"], false);
    let durations = sealed["durations_ms"]
        .as_object()
        .expect("durations_ms object");
    for step in ["copy", "link", "build", "check", "manifest"] {
        assert!(
            durations.get(step).is_some_and(Value::is_u64),
            "durations_ms.{step}: {sealed}"
        );
    }
    let release = sb.release_dir(&id);
    assert_eq!(
        sealed["files"].as_u64().unwrap() as usize,
        manifest_paths(&release).len()
    );
    let bytes = sealed["bytes"].as_u64().unwrap();
    assert!(
        bytes > tree_bytes(&src) && bytes <= tree_bytes(&release),
        "bytes {bytes}"
    );
    assert_eq!(
        read_file(&release.join("build/BUILD_ID")),
        format!("{id}\n"),
        "RELMAN_RELEASE set"
    );

    // `--id` names it; `--json` prints one document with the contract's fields.
    let run = sb.relman(&[
        "build",
        "--source",
        s(&src),
        "--id",
        "v1.2.3_rc-1",
        "--json",
    ]);
    run.ok();
    let report = run.json();
    assert_eq!(report["id"], "v1.2.3_rc-1");
    assert_eq!(report["state"], "sealed");
    assert_eq!(report["reused_node_modules"], false);
    assert!(report["durations_ms"]["total"].is_u64(), "{report}");
    assert_eq!(seal(&sb, "v1.2.3_rc-1")["id"], "v1.2.3_rc-1");
    assert!(
        sb.release_dir("v1.2.3_rc-1")
            .join(".relman/release.json")
            .is_file()
    );
}

#[test]
fn builds_in_the_same_second_get_a_counter_suffix() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");

    // Deterministic: the IDs of every second around now are already taken (as empty, failed
    // releases), so whatever second the builds land in, they must count up from `-1`.
    let now = chrono::Utc::now();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for offset in -2..30 {
        let id = stamp(now + chrono::Duration::seconds(offset));
        fs::create_dir(sb.release_dir(&id)).unwrap();
        taken.insert(id);
    }
    for _ in 0..3 {
        let run = sb.relman(&["build", "--source", s(&src)]);
        run.ok();
        let id = run.last_stdout_line().to_owned();
        let base = stamp(parse_created_at(&seal(&sb, &id)["created_at"]));
        let expected = (1..)
            .map(|n| format!("{base}-{n}"))
            .find(|candidate| !taken.contains(candidate))
            .unwrap();
        assert_eq!(id, expected, "first free ID of second {base}");
        assert!(is_timestamp_id(&id));
        taken.insert(id);
    }

    // And for real: two builds started together at the top of a second share it.
    let fresh = Sandbox::with_config(&fast_config(""));
    let src = fresh.fixture_source("src");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let millis = chrono::Utc::now().timestamp_subsec_millis();
        std::thread::sleep(Duration::from_millis(u64::from(1020 - millis.min(1000))));
        let runs = run_concurrently(vec![
            fresh.command(&["build", "--source", s(&src)]),
            fresh.command(&["build", "--source", s(&src)]),
        ]);
        let mut pair: Vec<String> = runs
            .iter()
            .map(|run| run.ok().last_stdout_line().to_owned())
            .collect();
        pair.sort();
        assert!(pair.iter().all(|id| is_timestamp_id(id)), "{pair:?}");
        assert_ne!(pair[0], pair[1]);
        if pair[0].len() == 14 && pair[1] == format!("{}-1", pair[0]) {
            break;
        }
        assert!(attempts < 3, "two builds never shared a second: {pair:?}");
    }
}

#[test]
fn build_manifest_lists_every_file_and_passes_sha256sum() {
    let sb = Sandbox::with_config(&config(
        "mkdir -p node_modules/x && echo 1 > node_modules/x/index.js",
        &format!(
            "{BUILD_SCRIPT} && mkdir -p .next/cache && echo c > .next/cache/c && echo b > .next/BUILD_ID"
        ),
        "",
    ));
    let src = sb.fixture_source("src");
    write_file(&src.join("odd dir/with space.txt"), "spaces\n");
    build_ok(&sb, &src, "m1");
    let release = sb.release_dir("m1");

    let check = Command::new("sha256sum")
        .args(["-c", "--strict", ".relman/manifest.sha256"])
        .current_dir(&release)
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "sha256sum -c failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // Exactly the regular files, less `.relman/` and the default `manifest.exclude`.
    let expected = regular_files(&release, &[".relman", "node_modules", ".next/cache"]);
    assert!(expected.contains("build/BUILD_ID") && expected.contains(".next/BUILD_ID"));
    assert!(expected.contains("odd dir/with space.txt"));
    assert_eq!(manifest_paths(&release), expected);
    assert!(release.join("node_modules/x/index.js").is_file());
}

#[test]
fn build_copies_the_source_faithfully() {
    let sb = Sandbox::with_config(&fast_config(
        "[source]\nexclude = [\"tmp\", \"docs/private\"]",
    ));
    let src = sb.fixture_source("src");
    let outside = sb.path("outside.txt");
    write_file(&outside, "outside\n");

    // Left out: .git, node_modules (at any depth), .next, .relman, and source.exclude.
    for junk in [
        "node_modules/dep/index.js",
        "lib/node_modules/inner/index.js",
        ".next/cache/x",
        ".next/BUILD_ID",
        ".relman/release.json",
        "tmp/scratch.txt",
        "docs/private/secret.md",
    ] {
        write_file(&src.join(junk), "junk\n");
    }
    write_file(&src.join("docs/public.md"), "public\n");
    write_file(&src.join("lib/util.js"), "module.exports = 1;\n");
    // Modes.
    write_file(&src.join("bin/run.sh"), "#!/bin/sh\necho run\n");
    chmod(&src.join("bin/run.sh"), 0o755);
    write_file(&src.join("secret.env"), "A=1\n");
    chmod(&src.join("secret.env"), 0o600);
    write_file(&src.join("group.txt"), "g\n");
    chmod(&src.join("group.txt"), 0o640);
    write_file(&src.join("private/data.txt"), "p\n");
    chmod(&src.join("private"), 0o700);
    // Symlinks: inside, to a directory, out of the source (absolute and relative), dangling.
    symlink("server.js", &src.join("link-rel"));
    symlink("lib", &src.join("link-dir"));
    symlink(&outside, &src.join("link-abs-out"));
    symlink("../outside.txt", &src.join("link-up-out"));
    symlink("does/not/exist", &src.join("dangling"));

    // A real git work tree, so the revision is recorded and `.git` must still stay out.
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&src)
            .output();
        out.ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let revision = git(&["init", "-q"])
        .and_then(|_| git(&["add", "-A"]))
        .and_then(|_| git(&["commit", "-qm", "fixture"]))
        .and_then(|_| git(&["rev-parse", "HEAD"]));
    if revision.is_none() {
        write_file(&src.join(".git/HEAD"), "ref: refs/heads/main\n");
    }
    let outside_before = snapshot_tree(&sb.path("outside.txt"));

    build_ok(&sb, &src, "c1");
    let release = sb.release_dir("c1");
    for gone in [
        ".git",
        "node_modules",
        "lib/node_modules",
        ".next",
        "tmp",
        "docs/private",
    ] {
        assert!(
            fs::symlink_metadata(release.join(gone)).is_err(),
            "{gone} was copied"
        );
    }
    let meta: BTreeSet<String> = fs::read_dir(release.join(".relman"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The claim (`build.json`) is gone: relman removes it just before it seals.
    assert_eq!(
        meta,
        [
            "build.lock",
            "build.log",
            "manifest.meta",
            "manifest.sha256",
            "release.json"
        ]
        .map(String::from)
        .into(),
        "the source's .relman/ is not copied"
    );
    assert_eq!(
        seal(&sb, "c1")["id"],
        "c1",
        "the source's fake release.json did not win"
    );
    assert_eq!(read_file(&release.join("docs/public.md")), "public\n");
    assert_eq!(
        read_file(&release.join("lib/util.js")),
        "module.exports = 1;\n"
    );

    for (path, mode) in [
        ("bin/run.sh", 0o755),
        ("secret.env", 0o600),
        ("group.txt", 0o640),
        ("private", 0o700),
    ] {
        assert_eq!(mode_of(&release.join(path)), mode, "mode of {path}");
    }
    for link in [
        "link-rel",
        "link-dir",
        "link-abs-out",
        "link-up-out",
        "dangling",
    ] {
        let meta = fs::symlink_metadata(release.join(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} is still a symlink");
        assert_eq!(
            fs::read_link(release.join(link)).unwrap(),
            fs::read_link(src.join(link)).unwrap(),
            "{link}"
        );
    }
    assert_eq!(
        fs::read_link(release.join("link-abs-out")).unwrap(),
        outside
    );
    outside_before.assert_same(
        &snapshot_tree(&sb.path("outside.txt")),
        &"file outside the source",
    );
    // Symlinks are never followed into the manifest.
    assert!(
        manifest_paths(&release)
            .iter()
            .all(|p| !p.starts_with("link-"))
    );

    let listed = list(&sb);
    match revision {
        Some(revision) => {
            assert_eq!(seal(&sb, "c1")["revision"], revision.as_str());
            assert_eq!(listed[0]["revision"], revision.as_str());
        }
        None => {
            support::skipped_note(
                "build_copies_the_source_faithfully: git not usable, revision not checked",
            );
        }
    }
    sb.relman(&["verify", "c1"]).ok();
}

#[test]
fn setuid_and_setgid_bits_do_not_survive_a_change_of_owner() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.path("src");
    write_file(&src.join("index.js"), "x\n");
    if fs::metadata(src.join("index.js")).unwrap().uid() != 0 {
        support::skipped_note(
            "setuid_and_setgid_bits_do_not_survive_a_change_of_owner: needs root to chown",
        );
        return;
    }
    for (name, mode, owner) in [
        ("suid-nobody", 0o4755, Some(65534)),
        ("sgid-nobody", 0o2755, Some(65534)),
        ("suid-mine", 0o4755, None),
        ("sgid-mine", 0o2755, None),
    ] {
        let path = src.join("bin").join(name);
        write_file(&path, "#!/bin/sh\n");
        if let Some(id) = owner {
            std::os::unix::fs::chown(&path, Some(id), Some(id)).unwrap();
        }
        // After the chown, which clears both bits.
        chmod(&path, mode);
        assert_eq!(mode_of(&path), mode);
    }
    build_ok(&sb, &src, "owners");
    let bin = sb.release_dir("owners").join("bin");
    let copied = |name: &str| {
        let meta = fs::symlink_metadata(bin.join(name)).unwrap();
        (mode_of(&bin.join(name)), meta.uid(), meta.gid())
    };
    // The copy belongs to relman's user: a bit that named another owner or group goes.
    assert_eq!(copied("suid-nobody"), (0o755, 0, 0));
    assert_eq!(copied("sgid-nobody"), (0o755, 0, 0));
    assert_eq!(copied("suid-mine"), (0o4755, 0, 0));
    assert_eq!(copied("sgid-mine"), (0o2755, 0, 0));
}

#[test]
fn a_sparse_source_file_stays_sparse_in_the_release() {
    use std::io::{Seek, SeekFrom, Write};
    const MIB: u64 = 1024 * 1024;
    // The manifest reads every byte, holes included: leave the image out of it, so the time
    // printed is the copy's.
    let sb = Sandbox::with_config(&fast_config("[manifest]\nexclude = [\"data\"]"));
    let src = sb.fixture_source("src");
    let image = src.join("data/disk.img");
    write_file(&image, "");
    {
        let mut file = fs::OpenOptions::new().write(true).open(&image).unwrap();
        file.set_len(1024 * MIB).unwrap();
        file.seek(SeekFrom::Start(512 * MIB)).unwrap();
        file.write_all(&[7u8; 4096]).unwrap();
    }
    let allocated = |path: &Path| fs::metadata(path).unwrap().blocks() * 512;
    assert!(allocated(&image) < MIB, "the test file system keeps holes");

    let run = sb.relman(&["build", "--source", s(&src), "--id", "sparse", "--json"]);
    run.ok();
    let report = run.json();
    let copy = sb.release_dir("sparse").join("data/disk.img");
    eprintln!(
        "build of a tree with a 1 GiB sparse file: {:?} (copy step {} ms), {} bytes allocated",
        run.elapsed,
        report["durations_ms"]["copy"],
        allocated(&copy)
    );
    assert_eq!(fs::metadata(&copy).unwrap().len(), 1024 * MIB);
    assert!(
        allocated(&copy) < MIB,
        "{} bytes allocated",
        allocated(&copy)
    );
    let mut head = [1u8; 4096];
    let mut file = fs::File::open(&copy).unwrap();
    std::io::Read::read_exact(&mut file, &mut head).unwrap();
    assert!(head.iter().all(|b| *b == 0));
    file.seek(SeekFrom::Start(512 * MIB)).unwrap();
    std::io::Read::read_exact(&mut file, &mut head).unwrap();
    assert!(head.iter().all(|b| *b == 7));
}

#[test]
fn build_links_shared_paths_as_relative_symlinks_into_shared() {
    let sb = Sandbox::with_config(&fast_config(
        "[shared]\npaths = [\".env.production\", \"public/uploads\"]",
    ));
    write_file(&sb.root.join("shared/.env.production"), "SECRET=live\n");
    write_file(&sb.root.join("shared/public/uploads/a.png"), "png\n");
    let src = sb.fixture_source("src");
    write_file(&src.join(".env.production"), "SECRET=dev\n");
    write_file(&src.join("public/uploads/stale.png"), "stale\n");
    write_file(&src.join("public/robots.txt"), "robots\n");
    let shared_before = snapshot_tree(&sb.root.join("shared"));

    build_ok(&sb, &src, "s1");
    let release = sb.release_dir("s1");
    for (path, target) in [
        (".env.production", "../../shared/.env.production"),
        ("public/uploads", "../../../shared/public/uploads"),
    ] {
        let link = release.join(path);
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{path} is a symlink"
        );
        let actual = fs::read_link(&link).unwrap();
        assert!(
            actual.is_relative(),
            "{path} -> {} is relative",
            actual.display()
        );
        assert_eq!(actual, Path::new(target), "{path}");
        assert_eq!(
            fs::canonicalize(&link).unwrap(),
            fs::canonicalize(sb.root.join("shared").join(path)).unwrap(),
            "{path} resolves into ROOT/shared"
        );
    }
    assert_eq!(read_file(&release.join(".env.production")), "SECRET=live\n");
    assert_eq!(read_file(&release.join("public/uploads/a.png")), "png\n");
    assert_eq!(read_file(&release.join("public/robots.txt")), "robots\n");
    let manifest = manifest_paths(&release);
    assert!(manifest.contains("public/robots.txt"));
    assert!(
        !manifest
            .iter()
            .any(|p| p.starts_with(".env") || p.starts_with("public/uploads")),
        "{manifest:?}"
    );
    shared_before.assert_same(
        &snapshot_tree(&sb.root.join("shared")),
        &"shared/ after a build",
    );

    // Relative links keep working when the whole deploy root moves.
    let moved = sb.path("moved-root");
    fs::rename(&sb.root, &moved).unwrap();
    assert_eq!(
        read_file(&moved.join("releases/s1/.env.production")),
        "SECRET=live\n"
    );
    fs::rename(&moved, &sb.root).unwrap();
}

/// The reproduction of the shared-path escape: a live release built from a source with
/// `uploads/logo.png`, then `shared.paths = ["public/uploads"]` and a new source whose `public`
/// is a symlink to `target`. The build must be refused (exit 2) before anything is created,
/// leaving the live release, `shared/` and the directory outside the root as they were.
#[track_caller]
fn assert_shared_path_through_a_source_symlink_is_refused(target: &dyn Fn(&Sandbox) -> PathBuf) {
    const NO_BUILD: &str = "[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n";
    let sb = Sandbox::with_config(NO_BUILD);
    let live_src = sb.path("live-src");
    write_file(&live_src.join("uploads/logo.png"), "a\n");
    build_ok(&sb, &live_src, "live");
    activate(&sb, "live");
    sb.write_config(&format!(
        "{NO_BUILD}[shared]\npaths = [\"public/uploads\"]\n"
    ));
    write_file(&sb.root.join("shared/public/uploads/a.png"), "shared\n");
    write_file(&sb.root.join("shared/uploads/keep.png"), "keep\n");
    let outside = sb.path("outside");
    write_file(&outside.join("uploads/keep.png"), "keep\n");
    let src = sb.path("next-src");
    write_file(&src.join("index.js"), "x\n");
    symlink(target(&sb), &src.join("public"));
    let root_before = snapshot_tree(&sb.root);
    let outside_before = snapshot_tree(&outside);

    let run = sb.relman(&["build", "--source", s(&src), "--id", "next"]);
    run.expect_code(2);
    let message = run.expect_one_line_error();
    assert!(
        message.contains("`public/uploads`") && message.contains("`public`"),
        "the error names the entry and the symlink\n{run}"
    );
    assert_eq!(sb.release_ids(), ["live"], "nothing created\n{run}");
    root_before.assert_same(&snapshot_tree(&sb.root), &run);
    outside_before.assert_same(&snapshot_tree(&outside), &run);
    sb.relman(&["verify", "live"]).ok();
}

#[test]
fn a_shared_path_through_a_source_symlink_into_the_live_release_is_refused() {
    // From ROOT/releases/next/public, `../live` is the live release.
    assert_shared_path_through_a_source_symlink_is_refused(&|_| PathBuf::from("../live"));
}

#[test]
fn a_shared_path_through_a_source_symlink_to_a_directory_outside_the_root_is_refused() {
    assert_shared_path_through_a_source_symlink_is_refused(&|sb| sb.path("outside"));
}

#[test]
fn a_shared_path_through_a_source_symlink_into_shared_is_refused() {
    // From ROOT/releases/next/public, `../../shared` is ROOT/shared.
    assert_shared_path_through_a_source_symlink_is_refused(&|_| PathBuf::from("../../shared"));
}

#[test]
fn build_reuses_node_modules_as_copies_when_the_lockfile_matches() {
    if !support::node_available("build_reuses_node_modules_as_copies_when_the_lockfile_matches") {
        return;
    }
    let sb = Sandbox::new();
    let marker = sb.path("install-runs");
    sb.relman(&["init"]).ok();
    sb.write_config(&config(
        &format!(
            "mkdir -p node_modules/x && echo 1 > node_modules/x/index.js && echo run >> '{}'",
            s(&marker)
        ),
        BUILD_SCRIPT,
        "reuse_node_modules = \"copy\"",
    ));
    let src = sb.fixture_source("src");
    let reused = |id: &str| seal(&sb, id)["reused_node_modules"].as_bool().unwrap();

    build_ok(&sb, &src, "n1");
    assert_eq!(count_lines(&marker), 1);
    assert!(!reused("n1"));

    let run = sb.relman(&["build", "--source", s(&src), "--id", "n2", "--json"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["reused_node_modules"], true, "{run}");
    assert!(
        report["durations_ms"].get("install").is_none(),
        "install skipped: {report}"
    );
    assert_eq!(count_lines(&marker), 1, "install did not run");
    assert!(reused("n2"));
    assert!(
        read_file(&sb.release_dir("n2").join(".relman/build.log"))
            .contains("node_modules from release n1")
    );
    let old = fs::metadata(sb.release_dir("n1").join("node_modules/x/index.js")).unwrap();
    let new = fs::metadata(sb.release_dir("n2").join("node_modules/x/index.js")).unwrap();
    assert_ne!(old.ino(), new.ino(), "a copy, not the same inode");
    assert_eq!((old.nlink(), new.nlink()), (1, 1), "no hard links");
    assert_eq!(
        read_file(&sb.release_dir("n2").join("node_modules/x/index.js")),
        "1\n"
    );

    let run = sb.relman(&["build", "--source", s(&src), "--id", "n3", "--no-reuse"]);
    run.ok();
    assert_eq!(count_lines(&marker), 2, "--no-reuse installs");
    assert!(!reused("n3"));

    let lockfile = src.join("package-lock.json");
    let changed = read_file(&lockfile).replace("\"requires\": true", "\"requires\": false");
    write_file(&lockfile, changed);
    build_ok(&sb, &src, "n4");
    assert_eq!(count_lines(&marker), 3, "a changed lockfile installs");
    assert!(!reused("n4"));
    build_ok(&sb, &src, "n5");
    assert_eq!(count_lines(&marker), 3, "same lockfile as n4 again: reused");
    assert!(reused("n5"));
    sb.relman(&["verify", "n5"]).ok();
}

/// The user a test runs relman as to see what file modes stop: `nobody` (65534) when the tests
/// run as root (root writes through any mode), the tests' own user otherwise.
fn unprivileged(mut command: Command) -> Command {
    use std::os::unix::process::CommandExt;
    if running_as_root() {
        command.uid(NOBODY).gid(NOBODY);
    }
    command
}

const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn a_write_into_a_shared_node_modules_cannot_reach_another_release() {
    if !support::node_available("a_write_into_a_shared_node_modules_cannot_reach_another_release") {
        return;
    }
    // The install writes a package file and a cache file (`find-cache-dir`'s place); the build
    // writes into the package file, in place, when the source has a WRITE file, as a
    // postinstall or a cache writer might.
    let install = "mkdir -p node_modules/x/.cache && echo 1 > node_modules/x/index.js && echo c > node_modules/x/.cache/c";
    let command = format!(
        "if [ -e WRITE ]; then echo build >> node_modules/x/index.js || exit 4; fi; {BUILD_SCRIPT}"
    );
    let sb = Sandbox::new();
    sb.relman(&["init"]).ok();
    sb.write_config(&config(install, &command, ""));
    let src = sb.fixture_source("src");
    if running_as_root() {
        let run = run_command({
            let mut chown = Command::new("chown");
            chown.args(["-R", &format!("{NOBODY}:{NOBODY}"), s(&sb.base())]);
            chown
        });
        run.ok();
        chmod(&sb.base(), 0o755);
    }
    let build = |id: &str| {
        run_command(unprivileged(sb.command(&[
            "build",
            "--source",
            s(&src),
            "--id",
            id,
        ])))
    };
    let file = |id: &str| sb.release_dir(id).join("node_modules/x/index.js");
    let cache = |id: &str| sb.release_dir(id).join("node_modules/x/.cache/c");

    build("n1").ok();
    build("n2").ok();
    assert_eq!(seal(&sb, "n2")["reused_node_modules"], true);
    let (one, two) = (
        fs::metadata(file("n1")).unwrap(),
        fs::metadata(file("n2")).unwrap(),
    );
    assert_eq!(one.ino(), two.ino(), "hard-linked, not copied");
    assert_eq!(two.mode() & 0o222, 0, "no write bit on a shared file");
    assert_ne!(
        fs::metadata(cache("n1")).unwrap().ino(),
        fs::metadata(cache("n2")).unwrap().ino(),
        "a .cache file is copied"
    );
    assert!(read_file(&sb.release_dir("n2").join(".relman/build.log")).contains("1 hard-linked"));

    // A running app of n2 writing in place (node's writeFileSync, a shell append): refused.
    let path = file("n2");
    let writers: [(&str, &[&str]); 2] = [
        (
            "node",
            &[
                "-e",
                "require('fs').writeFileSync(process.argv[1], 'app\\n')",
                s(&path),
            ],
        ),
        ("sh", &["-c", "echo app >> \"$0\"", s(&path)]),
    ];
    for (program, args) in writers {
        let mut writer = Command::new(program);
        writer.args(args);
        let run = run_command(unprivileged(writer));
        assert_ne!(run.code, 0, "{program}: {run}");
        assert!(
            run.stderr.contains("ermission denied") || run.stderr.contains("EACCES"),
            "{run}"
        );
    }
    // Reading works: the refusal was the file's mode, not a directory on the way.
    let mut reader = Command::new("cat");
    reader.arg(&path);
    assert_eq!(run_command(unprivileged(reader)).ok().stdout, "1\n");
    // A build writing into the shared file fails, and changes no other release.
    write_file(&src.join("WRITE"), "");
    let run = build("n3");
    run.expect_code(1);
    assert!(run.stderr.contains("ermission denied"), "{run}");
    assert_eq!(read_file(&file("n1")), "1\n", "n1 unchanged");
    sb.relman(&["verify", "n1"]).ok();

    // Replacing the file by a rename works: the directory is n2's own.
    let mut replace = Command::new("sh");
    replace.args([
        "-c",
        "echo new > \"$0.new\" && mv -f \"$0.new\" \"$0\"",
        s(&path),
    ]);
    run_command(unprivileged(replace)).ok();
    assert_eq!(read_file(&file("n2")), "new\n");
    assert_eq!(read_file(&file("n1")), "1\n", "n1 unchanged");

    if running_as_root() {
        // As root, where modes stop nothing, `true` (auto) copies instead.
        fs::remove_file(src.join("WRITE")).unwrap();
        let run = build_ok(&sb, &src, "r1");
        assert!(!run.stderr.contains("read-only"), "{run}");
        for path in [file("r1"), cache("r1")] {
            assert_eq!(fs::metadata(&path).unwrap().nlink(), 1, "as root: a copy");
        }
        write_file(&file("r1"), "root\n");
        assert_eq!(read_file(&file("n2")), "new\n", "n2 unchanged");
        assert_eq!(read_file(&file("n1")), "1\n", "n1 unchanged");
    }
}

#[test]
fn prune_counts_as_freed_only_files_no_kept_release_still_links_to() {
    if !support::node_available("prune_counts_as_freed_only_files_no_kept_release_still_links_to") {
        return;
    }
    // "link": hard links even as root, which the tests may be.
    let install = "mkdir -p node_modules/x && head -c 100000 /dev/zero > node_modules/x/big";
    let sb = Sandbox::with_config(&config(
        install,
        BUILD_SCRIPT,
        "reuse_node_modules = \"link\"",
    ));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "n1");
    build_ok(&sb, &src, "n2");
    let big = |id: &str| fs::metadata(sb.release_dir(id).join("node_modules/x/big")).unwrap();
    assert_eq!(big("n1").ino(), big("n2").ino());
    // What n1 frees: all of it but the file n2 keeps.
    let freed = tree_bytes(&sb.release_dir("n1")) - 100_000;

    let dry = sb.relman(&["prune", "--keep", "1", "--dry-run", "--json"]);
    assert_eq!(dry.ok().json()["bytes_freed"], freed, "{dry}");
    let run = sb.relman(&["prune", "--keep", "1", "--json"]);
    let report = run.ok().json();
    assert_eq!(ids(&report["deleted"]), ["n1"], "{run}");
    assert_eq!(report["bytes_freed"], freed, "{run}");
    assert_eq!(big("n2").len(), 100_000, "n2's file is whole");
    assert_eq!(big("n2").nlink(), 1);
    sb.relman(&["verify", "n2"]).ok();
}

#[test]
fn build_with_the_real_npm_ci_and_npm_run_build() {
    if !support::node_available("build_with_the_real_npm_ci_and_npm_run_build") {
        return;
    }
    // install and command left at their defaults: `npm ci`, `npm run build`.
    let sb = Sandbox::with_config("[build]\nexpect = [\"build/BUILD_ID\"]\n");
    let src = sb.fixture_source("src");
    let run = sb.relman(&["build", "--source", s(&src)]);
    run.ok();
    let id = run.last_stdout_line().to_owned();
    assert!(is_timestamp_id(&id));
    let release = sb.release_dir(&id);
    let build_id = read_file(&release.join("build/BUILD_ID"));
    assert!(
        build_id.trim().len() == 16 && build_id.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{build_id:?}"
    );
    let info: Value = serde_json::from_str(&read_file(&release.join("build/info.json"))).unwrap();
    assert_eq!(info["variant"], "healthy");
    let seal = seal(&sb, &id);
    assert_eq!(seal["node_version"], node_version().unwrap().as_str());
    for step in ["install", "build"] {
        assert!(seal["durations_ms"][step].is_u64(), "{seal}");
    }
    assert!(
        read_file(&release.join(".relman/build.log")).contains("built "),
        "build output logged"
    );
    sb.relman(&["verify", &id]).ok();

    // The fixture's `build-fail` variant: npm run build exits 1.
    let bad = sb.fixture_source("bad");
    write_file(&bad.join("VARIANT"), "build-fail\n");
    let run = sb.relman(&["build", "--source", s(&bad), "--id", "bad"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("build failed: variant `build-fail`"),
        "log tail shown\n{run}"
    );
    let log = sb.release_dir("bad").join(".relman/build.log");
    assert!(
        run.expect_error_line().starts_with("error: ") && run.expect_error_line().contains(s(&log)),
        "{run}"
    );
    assert_eq!(state_of(&sb, "bad").as_deref(), Some("failed"));
}

// ---------------------------------------------------------------------------------------------
// 3. failed, crashed and running builds

#[test]
fn a_failed_build_exits_1_shows_the_log_tail_and_stays_unsealed() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    let failing = sb.fixture_source("failing");
    write_file(&failing.join("FAIL"), "");

    let run = sb.relman(&["build", "--source", s(&failing)]);
    run.expect_code(1);
    assert_eq!(run.stdout, "", "no ID on stdout for a failed build\n{run}");
    let ids = sb.release_ids();
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    let release = sb.release_dir(id);
    let log = release.join(".relman/build.log");
    // The output was streamed as it ran: once, not again as a tail.
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| *l == "failing on purpose: FAIL exists")
            .count(),
        1,
        "{run}"
    );
    let last = run.expect_error_line();
    assert!(
        last.starts_with(&format!("error: build of release {id} failed")),
        "{run}"
    );
    assert!(
        last.contains("exited with status 3") && last.contains(s(&log)),
        "{run}"
    );
    assert!(read_file(&log).contains("failing on purpose"));
    assert!(
        release.is_dir() && !release.join(".relman/release.json").exists(),
        "left unsealed"
    );
    let row = list(&sb)
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(row["state"], "failed");
    parse_created_at(&row["created_at"]);
    assert_eq!(row["bytes"], Value::Null);

    // It can be neither verified nor activated.
    let verify = sb.relman(&["verify", id]);
    verify.expect_code(1);
    assert!(
        verify.expect_one_line_error().contains("not sealed"),
        "{verify}"
    );
    let activate = sb.relman(&["activate", id, "--no-reload", "--no-probe"]);
    activate.expect_code(1);
    assert!(
        activate.expect_one_line_error().contains("build.log"),
        "{activate}"
    );
    assert!(fs::symlink_metadata(sb.root.join("current")).is_err());

    // `--json`: the error document on stdout.
    let run = sb.relman(&["build", "--source", s(&failing), "--id", "f-json", "--json"]);
    run.expect_code(1);
    let error = run.json();
    assert_eq!(error["code"], 1);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("build of release f-json failed"),
        "{run}"
    );
    assert_eq!(
        run.expect_error_line(),
        format!("error: {}", error["error"].as_str().unwrap())
    );

    // A build that succeeds but lacks an expected output fails the same way.
    sb.write_config(&config("", "true", ""));
    let run = sb.relman(&["build", "--source", s(&src), "--id", "no-output"]);
    run.expect_code(1);
    assert!(
        run.expect_error_line()
            .contains("expected outputs are missing: build/BUILD_ID"),
        "{run}"
    );
    assert_eq!(state_of(&sb, "no-output").as_deref(), Some("failed"));

    // `command = "exit 3"` straight from the config.
    sb.write_config(&config("", "exit 3", ""));
    let run = sb.relman(&["build", "--source", s(&src), "--id", "exit-3"]);
    run.expect_code(1);
    assert!(
        run.expect_error_line().contains("exited with status 3"),
        "{run}"
    );
    assert_eq!(state_of(&sb, "exit-3").as_deref(), Some("failed"));
}

#[test]
fn a_build_past_its_timeout_is_killed_with_its_whole_process_group() {
    let sb = Sandbox::with_config(&fast_config("timeout_secs = 1"));
    let src = sb.fixture_source("src");
    // `sleep` runs as a child of `sh -c` (a grandchild of relman): only killing the process
    // group gets it.
    write_file(&src.join("SLOW"), "30.0417");
    let run = sb.relman(&["build", "--source", s(&src), "--id", "slow"]);
    run.expect_code(1);
    assert!(run.elapsed >= Duration::from_millis(900), "{run}");
    assert!(
        run.elapsed < Duration::from_secs(6),
        "killed after about 1 s\n{run}"
    );
    assert!(
        run.expect_error_line().contains("build.timeout_secs"),
        "{run}"
    );
    assert_no_process_with_arg("30.0417");
    assert_eq!(state_of(&sb, "slow").as_deref(), Some("failed"));
}

/// A build command that forges relman's seal: it copies `forge/release.json` (a real seal with
/// `"id": "good"`) into `.relman/release.json` under this release's ID, writes a manifest that
/// `sha256sum -c` accepts, then exits with the status in `forge/EXIT`.
const FORGING_SCRIPT: &str = r#"mkdir -p build && echo "$RELMAN_RELEASE" > build/BUILD_ID && sed "s/\"id\": \"good\"/\"id\": \"$RELMAN_RELEASE\"/" forge/release.json > .relman/release.json && find . -type f ! -path './.relman/*' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum > .relman/manifest.sha256 && exit "$(cat forge/EXIT)""#;

/// A sandbox with a sealed release `good` and a source whose build command forges a seal.
fn forging_sandbox(exit: u8) -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "good");
    let forge = sb.path("forge-src");
    write_file(&forge.join("index.js"), "x\n");
    write_file(
        &forge.join("forge/release.json"),
        read_file(&sb.release_dir("good").join(".relman/release.json")),
    );
    write_file(&forge.join("forge/EXIT"), exit.to_string());
    sb.write_config(&config("", FORGING_SCRIPT, ""));
    (sb, forge)
}

#[test]
fn a_seal_written_by_a_failing_build_command_does_not_count() {
    let (sb, forge) = forging_sandbox(1);
    let run = sb.relman(&["build", "--source", s(&forge), "--id", "forged"]);
    run.expect_code(1);
    assert!(
        run.expect_error_line().contains("exited with status 1"),
        "{run}"
    );
    assert_eq!(state_of(&sb, "forged").as_deref(), Some("failed"), "{run}");
    let activate = sb.relman(&["activate", "forged", "--no-reload", "--no-probe"]);
    activate.expect_code(1);
    assert!(
        activate.expect_one_line_error().contains("not sealed"),
        "{activate}"
    );
    assert!(fs::symlink_metadata(sb.root.join("current")).is_err());
    // relman removes what it did not write.
    let meta = sb.release_dir("forged").join(".relman");
    assert!(!meta.join("release.json").exists(), "{run}");
    assert!(!meta.join("manifest.sha256").exists(), "{run}");
}

#[test]
fn a_seal_written_by_a_succeeding_build_command_is_replaced_by_relman_s() {
    let (sb, forge) = forging_sandbox(0);
    let forged = seal(&sb, "good");
    let started = chrono::Utc::now();
    build_ok(&sb, &forge, "forged");
    let sealed = seal(&sb, "forged");
    assert_eq!(sealed["id"], "forged");
    let sealed_at = parse_created_at(&sealed["sealed_at"]);
    assert!(
        sealed_at > started && sealed["sealed_at"] != forged["sealed_at"],
        "relman sealed it after the build: {sealed}"
    );
    assert!(
        parse_created_at(&sealed["created_at"]) > started,
        "{sealed}"
    );
    let release = sb.release_dir("forged");
    assert_eq!(
        sealed["files"].as_u64(),
        Some(count_lines(&release.join(".relman/manifest.sha256")) as u64)
    );
    assert!(
        !release.join(".relman/build.json").exists(),
        "the claim is gone"
    );
    assert_eq!(state_of(&sb, "forged").as_deref(), Some("sealed"));
    sb.relman(&["verify", "forged"]).ok();
}

#[test]
fn a_build_killed_between_removing_its_claim_and_sealing_reads_failed() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "good");
    let run = sb.relman_env(
        &["build", "--source", s(&src), "--id", "unclaimed"],
        &[("RELMAN_FAILPOINTS", "build-after-unclaim")],
    );
    assert_eq!(run.code, -1, "killed at the failpoint\n{run}");
    let meta = sb.release_dir("unclaimed").join(".relman");
    assert!(meta.join("manifest.sha256").is_file(), "{run}");
    assert!(!meta.join("build.json").exists(), "{run}");
    assert!(!meta.join("release.json").exists(), "{run}");
    assert_eq!(state_of(&sb, "unclaimed").as_deref(), Some("failed"));
    sb.relman(&["activate", "unclaimed", "--no-reload", "--no-probe"])
        .expect_code(1);
    let report = sb.relman(&["prune", "--keep", "1", "--json"]).json();
    assert_eq!(ids(&report["deleted"]), ["unclaimed"]);
}

#[test]
fn a_release_sealed_before_claims_were_removed_still_reads_sealed() {
    // Earlier relman kept the claim (no `version`) beside the seal; those releases stay sealed.
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "old");
    let created_at = seal(&sb, "old")["created_at"].clone();
    let claim = sb.release_dir("old").join(".relman/build.json");
    write_file(
        &claim,
        format!(r#"{{"id":"old","created_at":{created_at},"pid":999999}}"#),
    );
    assert_eq!(state_of(&sb, "old").as_deref(), Some("sealed"));
    sb.relman(&["verify", "old"]).ok();
    // A claim of this relman beside a seal means the build never finished.
    write_file(
        &claim,
        format!(r#"{{"id":"old","created_at":{created_at},"pid":999999,"version":2}}"#),
    );
    assert_eq!(state_of(&sb, "old").as_deref(), Some("failed"));
    // So does a claim relman cannot read.
    write_file(&claim, "{");
    assert_eq!(state_of(&sb, "old").as_deref(), Some("failed"));
}

#[test]
fn crashed_builds_and_bad_seals_read_as_failed() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "good");
    let good_seal = read_file(&sb.release_dir("good").join(".relman/release.json"));

    // A crash: claim and an unlocked build lock, no seal.
    let crashed = sb.release_dir("crashed");
    write_file(
        &crashed.join(".relman/build.json"),
        r#"{"id":"crashed","created_at":"2020-01-01T00:00:00.000Z","pid":999999}"#,
    );
    write_file(&crashed.join(".relman/build.lock"), "");
    write_file(&crashed.join(".relman/build.log"), "relman: step build\n");
    write_file(&crashed.join("server.js"), "half copied");
    // Seals that must not count: truncated, not JSON, empty, another release's.
    for (id, text) in [
        ("truncated", &good_seal[..good_seal.len() / 2]),
        ("not-json", "this is not json"),
        ("empty", ""),
        ("other-id", good_seal.as_str()),
    ] {
        write_file(&sb.release_dir(id).join("server.js"), "x");
        write_file(&sb.release_dir(id).join(".relman/release.json"), text);
    }
    // Not a release at all: an invalid ID is left alone by everything.
    write_file(&sb.root.join("releases/not a release/file"), "x");

    let states: std::collections::BTreeMap<String, String> = states(&sb).into_iter().collect();
    let expected: std::collections::BTreeMap<String, String> = [
        ("good", "sealed"),
        ("crashed", "failed"),
        ("truncated", "failed"),
        ("not-json", "failed"),
        ("empty", "failed"),
        ("other-id", "failed"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(states, expected);
    let run = sb.relman(&["activate", "other-id", "--no-reload", "--no-probe"]);
    run.expect_code(1);
    assert!(
        fs::symlink_metadata(sb.root.join("current")).is_err(),
        "nothing went live"
    );
    sb.relman(&["verify", "truncated"]).expect_code(1);

    // prune removes every failed one, keeps the sealed one, ignores the stranger.
    let run = sb.relman(&["prune", "--keep", "1", "--json"]);
    run.ok();
    let report = run.json();
    let deleted: BTreeSet<String> = ids(&report["deleted"]).into_iter().collect();
    assert_eq!(
        deleted,
        ["crashed", "truncated", "not-json", "empty", "other-id"]
            .map(String::from)
            .into()
    );
    assert_eq!(ids(&report["kept"]), ["good"]);
    assert_eq!(sb.release_ids(), ["good", "not a release"]);
}

#[test]
fn a_running_build_reads_as_building_and_other_commands_stay_available() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "base");
    let slow_src = sb.fixture_source("slow-src");
    write_file(&slow_src.join("SLOW"), "5.0311");

    let mut building =
        spawn_command(sb.command(&["build", "--source", s(&slow_src), "--id", "slow"]));
    wait_for(
        "the build's sleep to start",
        Duration::from_secs(10),
        || {
            assert!(!building.has_exited(), "the slow build ended early");
            (!processes_with_arg("5.0311").is_empty()).then_some(())
        },
    );
    assert_eq!(state_of(&sb, "slow").as_deref(), Some("building"));
    assert!(!sb.release_dir("slow").join(".relman/release.json").exists());

    // The build holds only its own lock now: the root lock is free, nothing waits.
    let wait_1s = [("RELMAN_LOCK_WAIT_SECS", "1")];
    let prune = sb.relman_env(&["prune", "--keep", "1", "--json"], &wait_1s);
    prune.ok();
    assert!(!prune.stderr.contains("waiting"), "{prune}");
    let report = prune.json();
    assert_eq!(ids(&report["deleted"]), Vec::<String>::new(), "{prune}");
    assert!(ids(&report["kept"]).contains(&"slow".to_owned()), "{prune}");
    assert!(
        report["protected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "slow" && p["reason"] == "building"),
        "{prune}"
    );
    assert!(sb.release_dir("slow").is_dir());
    let activate = sb.relman_env(&["activate", "base", "--no-reload", "--no-probe"], &wait_1s);
    activate.ok();
    assert!(!activate.stderr.contains("waiting"), "{activate}");

    // Ctrl-C: the whole group goes, the release stays unsealed and reads as failed.
    sigint(building.pid());
    let run = building.finish();
    run.expect_code(1);
    assert!(run.expect_error_line().contains("interrupted"), "{run}");
    assert!(
        run.elapsed < Duration::from_secs(5),
        "the sleep was cut short\n{run}"
    );
    assert_no_process_with_arg("5.0311");
    assert_eq!(state_of(&sb, "slow").as_deref(), Some("failed"));
    let report = sb.relman(&["prune", "--keep", "1", "--json"]).json();
    assert_eq!(ids(&report["deleted"]), ["slow"]);
}

// ---------------------------------------------------------------------------------------------
// 4. list

#[test]
fn list_is_newest_first_by_created_at_with_current_and_rollback_target() {
    let sb = Sandbox::new();
    sb.relman(&["init"]).ok();
    let empty = sb.relman(&["list"]);
    empty.ok();
    assert_eq!(empty.stdout, "", "no data, only a hint on stderr\n{empty}");
    assert_eq!(sb.relman(&["list", "--json"]).json(), serde_json::json!([]));

    sb.write_config(&fast_config(""));
    let src = sb.fixture_source("src");
    // Built in the order c, b, a: newest first is a, b, c, the reverse of ID order.
    for id in ["c", "b", "a"] {
        build_ok(&sb, &src, id);
    }
    let expected_order = ["a", "b", "c"];
    let check_order = |sb: &Sandbox| {
        let rows = list(sb);
        let order: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(order, expected_order);
        let times: Vec<_> = rows
            .iter()
            .map(|r| parse_created_at(&r["created_at"]))
            .collect();
        assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
        rows
    };
    check_order(&sb);

    // mtimes are not the order: make the oldest look brand new.
    let future = std::time::SystemTime::now() + Duration::from_secs(86_400 * 365);
    for path in ["", ".relman", ".relman/release.json", "server.js"] {
        set_mtime(&sb.release_dir("c").join(path), future);
    }
    check_order(&sb);

    // c then a went live: a is current, and the rollback target is c (per the history, not b,
    // which is merely older than a).
    activate(&sb, "c");
    activate(&sb, "a");
    let rows = check_order(&sb);
    for row in &rows {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "id",
            "state",
            "current",
            "rollback_target",
            "created_at",
            "revision",
            "bytes",
        ] {
            assert!(keys.contains(key), "{key} missing: {row}");
        }
        assert_eq!(row["state"], "sealed");
        assert!(row["bytes"].as_u64().unwrap() > 0);
        assert_eq!(row["revision"], Value::Null);
    }
    let flags: Vec<(bool, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["current"].as_bool().unwrap(),
                r["rollback_target"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(flags, [(true, false), (false, false), (false, true)]);

    // The table: a header, then one row per release in the same order, marked.
    let table = sb.relman(&["list"]);
    table.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE") && lines[0].contains("CREATED"),
        "{table}"
    );
    let first_words: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(first_words, expected_order);
    assert!(
        lines[1].contains("sealed") && lines[1].ends_with("current"),
        "{table}"
    );
    assert!(
        !lines[2].contains("current") && !lines[2].contains("rollback"),
        "{table}"
    );
    assert!(lines[3].ends_with("rollback target"), "{table}");
    let created = rows[0]["created_at"].as_str().unwrap();
    assert!(
        lines[1].contains(&created[..19]),
        "created time shown\n{table}"
    );
}

/// `(id, current, rollback_target, rolled_back, exclusion)` of every `list --json` row.
fn rollback_flags(sb: &Sandbox) -> Vec<(String, bool, bool, bool, Value)> {
    list(sb)
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["current"].as_bool().unwrap(),
                r["rollback_target"].as_bool().unwrap(),
                r["rolled_back"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("no rolled_back: {r}")),
                r["exclusion"].clone(),
            )
        })
        .collect()
}

fn row(
    id: &str,
    current: bool,
    target: bool,
    exclusion: Option<&str>,
) -> (String, bool, bool, bool, Value) {
    (
        id.to_owned(),
        current,
        target,
        exclusion.is_some(),
        exclusion.map_or(Value::Null, Value::from),
    )
}

#[test]
fn a_second_rollback_never_goes_back_to_the_release_rolled_back_from() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "a");
    build_ok(&sb, &src, "b");
    activate(&sb, "a");
    activate(&sb, "b");
    let back = sb.relman(&["rollback", "--no-reload", "--no-probe"]);
    back.ok();
    assert_eq!(back.last_stdout_line(), "a", "{back}");

    // b was rolled back from: not the target, and marked so.
    assert_eq!(
        rollback_flags(&sb),
        [
            row("b", false, false, Some("rolled-back-from")),
            row("a", true, false, None)
        ]
    );
    let table = sb.relman(&["list"]);
    table.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[1].starts_with("b ") && lines[1].ends_with("  rolled back from"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("a ") && lines[2].ends_with("  current"),
        "{table}"
    );

    let status = sb.relman(&["status", "--json"]);
    status.ok();
    let status = status.json();
    assert_eq!(status["current"], "a");
    assert_eq!(status["rollback_target"], Value::Null);
    let excluded = status["excluded"].as_array().expect("excluded is an array");
    assert_eq!(excluded.len(), 1, "{status}");
    assert_eq!(excluded[0]["id"], "b");
    assert_eq!(excluded[0]["reason"], "rolled-back-from");
    parse_created_at(&excluded[0]["at"]);
    let text = sb.relman(&["status"]);
    text.ok();
    assert!(
        text.stdout.contains("rollback target:  -\n")
            && text
                .stdout
                .contains("excluded:         b (rolled back from, "),
        "{text}"
    );

    // The bug: a second rollback put the broken release back. Now there is nowhere to go.
    let history = sb.root.join(".relman/history.jsonl");
    let entries = count_lines(&history);
    let again = sb.relman(&["rollback", "--no-reload", "--no-probe"]);
    again.expect_code(1);
    assert!(
        again.expect_one_line_error().contains("no rollback target"),
        "{again}"
    );
    assert_eq!(
        fs::read_link(sb.root.join("current")).unwrap(),
        Path::new("releases/a")
    );
    assert_eq!(count_lines(&history), entries, "nothing recorded");

    // Naming it is still allowed, and makes it eligible again; a is now the one left.
    sb.relman(&["rollback", "--to", "b", "--no-reload", "--no-probe"])
        .ok();
    assert_eq!(
        rollback_flags(&sb),
        [
            row("b", true, false, None),
            row("a", false, false, Some("rolled-back-from"))
        ]
    );
    activate(&sb, "a");
    assert_eq!(
        rollback_flags(&sb),
        [row("b", false, true, None), row("a", true, false, None)]
    );
    let status = sb.relman(&["status", "--json"]).json();
    assert_eq!(status["excluded"], serde_json::json!([]));
}

#[test]
fn a_rollback_after_a_rollback_goes_to_an_older_release_that_nothing_excludes() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    for id in ["old", "a", "b"] {
        build_ok(&sb, &src, id);
    }
    activate(&sb, "a");
    activate(&sb, "b");
    sb.relman(&["rollback", "--no-reload", "--no-probe"]).ok();
    assert_eq!(
        rollback_flags(&sb),
        [
            row("b", false, false, Some("rolled-back-from")),
            row("a", true, false, None),
            row("old", false, true, None),
        ]
    );
    let run = sb.relman(&["rollback", "--no-reload", "--no-probe", "--json"]);
    run.ok();
    assert_eq!(
        (run.json()["from"].clone(), run.json()["to"].clone()),
        ("a".into(), "old".into())
    );
}

// ---------------------------------------------------------------------------------------------
// 5. verify

#[test]
fn verify_reports_exactly_the_changed_missing_and_added_files() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "v1");
    build_ok(&sb, &src, "v2");

    let none = sb.relman(&["verify"]);
    none.expect_code(2);
    assert!(
        none.expect_one_line_error().contains("relman verify ID"),
        "{none}"
    );

    activate(&sb, "v1");
    let clean = sb.relman(&["verify", "--json"]);
    clean.ok();
    assert_eq!(
        clean.json(),
        serde_json::json!({
            "id": "v1", "ok": true, "changed": [], "missing": [], "added": [],
            "runtime": {"changed": [], "missing": [], "added": []},
            "files": clean.json()["files"], "bytes": clean.json()["bytes"],
            "release_bytes": sb.relman(&["list", "--json"]).json()[1]["bytes"],
        })
    );
    let text = sb.relman(&["verify"]);
    text.ok();
    assert_eq!(
        text.stdout, "",
        "a clean release has no differences to list\n{text}"
    );
    assert!(text.stderr.contains("matches its manifest"), "{text}");

    // Tamper with the live release (the test, not relman, writes here).
    let release = sb.release_dir("v1");
    write_file(&release.join("server.js"), "// tampered\n");
    fs::remove_file(release.join("package.json")).unwrap();
    write_file(&release.join("extra/new.txt"), "new\n");
    write_file(
        &release.join("node_modules/ignored.js"),
        "excluded from the manifest\n",
    );

    let run = sb.relman(&["verify", "--json"]);
    run.expect_code(1);
    let report = run.json();
    assert_eq!(report["id"], "v1", "default is current");
    assert_eq!(report["ok"], false);
    assert_eq!(report["changed"], serde_json::json!(["server.js"]));
    assert_eq!(report["missing"], serde_json::json!(["package.json"]));
    assert_eq!(report["added"], serde_json::json!(["extra/new.txt"]));
    // A mismatch is an error like any other: `error`/`code` in the document, the same text on
    // stderr.
    assert_eq!(report["code"], 1, "{run}");
    let message = report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text\n{run}"));
    assert!(message.contains("1 changed, 1 missing, 1 added"), "{run}");
    assert_eq!(run.stderr, format!("error: {message}\n"), "{run}");

    let run = sb.relman(&["verify", "v1"]);
    run.expect_code(1);
    assert_eq!(
        run.stdout, "changed  server.js\nmissing  package.json\nadded    extra/new.txt\n",
        "{run}"
    );
    let error = run.expect_error_line();
    assert!(
        error.contains("does not match its manifest") && error.contains("build a new release"),
        "{run}"
    );

    // The other release is untouched and still verifies by ID.
    let other = sb.relman(&["verify", "v2", "--json"]);
    other.ok();
    assert_eq!(other.json()["ok"], true);
}

// ---------------------------------------------------------------------------------------------
// 6. prune

#[test]
fn prune_keeps_the_newest_sealed_plus_current_and_rollback_target() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    let failing = sb.fixture_source("failing");
    write_file(&failing.join("FAIL"), "");
    // Oldest to newest: r1 r2 f1 r3 r4 r5 f2 (f = failed builds).
    for id in ["r1", "r2"] {
        build_ok(&sb, &src, id);
    }
    sb.relman(&["build", "--source", s(&failing), "--id", "f1"])
        .expect_code(1);
    for id in ["r3", "r4", "r5"] {
        build_ok(&sb, &src, id);
    }
    sb.relman(&["build", "--source", s(&failing), "--id", "f2"])
        .expect_code(1);
    // r1 then r2 went live: current r2, rollback target r1.
    activate(&sb, "r1");
    activate(&sb, "r2");

    let expected_deleted = ["f2", "r3", "f1"];
    let expected_kept = ["r5", "r4", "r2", "r1"];
    let freed: u64 = expected_deleted
        .iter()
        .map(|id| tree_bytes(&sb.release_dir(id)))
        .sum();

    // --dry-run reports and deletes nothing (not even the lock file changes).
    let before = snapshot_tree(&sb.root);
    let dry = sb.relman(&["prune", "--keep", "2", "--dry-run", "--json"]);
    dry.ok();
    let report = dry.json();
    assert_eq!(ids(&report["deleted"]), expected_deleted, "{dry}");
    assert_eq!(ids(&report["kept"]), expected_kept, "{dry}");
    assert_eq!(report["bytes_freed"], freed);
    before.assert_same(&snapshot_tree(&sb.root), &dry);
    let dry_text = sb.relman(&["prune", "--keep", "2", "--dry-run"]);
    dry_text.ok();
    assert_eq!(dry_text.stdout, "f2\nr3\nf1\n", "{dry_text}");
    assert!(
        dry_text.stderr.contains("would delete 3 releases"),
        "{dry_text}"
    );
    // (The text run is compared the same way; the first snapshot already proved the lock
    // file untouched by a dry run.)
    before.assert_same(&snapshot_tree(&sb.root), &dry_text);

    let live = snapshot_tree(&sb.release_dir("r2"));
    let run = sb.relman(&["prune", "--keep", "2", "--json"]);
    run.ok();
    let report = run.json();
    assert_eq!(ids(&report["deleted"]), expected_deleted, "{run}");
    assert_eq!(ids(&report["kept"]), expected_kept, "{run}");
    assert_eq!(report["bytes_freed"], freed, "{run}");
    assert_eq!(sb.release_ids(), ["r1", "r2", "r4", "r5"]);
    live.assert_same(&snapshot_tree(&sb.release_dir("r2")), &run);
    assert!(
        fs::read_dir(sb.root.join(".relman/trash")).map_or(0, |d| d.count()) == 0,
        "nothing left in the trash"
    );

    // Again: nothing more to do; the text form prints deleted IDs only on stdout.
    let again = sb.relman(&["prune", "--keep", "2"]);
    again.ok();
    assert_eq!(again.stdout, "", "{again}");
    // --keep 1: r4 goes, r5 (newest) and the protected two stay; retention.keep from config.
    sb.write_config(&fast_config("[retention]\nkeep = 1"));
    let run = sb.relman(&["prune"]);
    run.ok();
    assert_eq!(run.stdout, "r4\n", "{run}");
    assert_eq!(sb.release_ids(), ["r1", "r2", "r5"]);
}

#[test]
fn prune_spares_a_release_that_a_process_runs_in() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    for id in ["old", "mid", "new"] {
        build_ok(&sb, &src, id);
    }
    let worker = support::KillOnDrop::new(
        Command::new("sleep")
            .arg("30.0523")
            .current_dir(sb.release_dir("old").join("build"))
            .spawn()
            .expect("spawn sleep"),
    );
    wait_for("the worker's cwd", Duration::from_secs(5), || {
        fs::read_link(format!("/proc/{}/cwd", worker.pid()))
            .ok()
            .filter(|cwd| cwd.starts_with(sb.release_dir("old")))
    });

    let run = sb.relman(&["prune", "--keep", "1", "--json"]);
    run.ok();
    let report = run.json();
    assert_eq!(ids(&report["deleted"]), ["mid"], "{run}");
    assert_eq!(ids(&report["kept"]), ["new", "old"], "{run}");
    assert!(
        report["protected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "old" && p["reason"].as_str().unwrap().contains("running process")),
        "{run}"
    );
    assert!(sb.release_dir("old").is_dir());

    drop(worker);
    let run = sb.relman(&["prune", "--keep", "1", "--json"]);
    run.ok();
    assert_eq!(ids(&run.json()["deleted"]), ["old"], "{run}");
}

#[test]
fn prune_spares_a_release_a_process_runs_in_when_releases_is_a_symlink() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    for id in ["a", "b"] {
        build_ok(&sb, &src, id);
    }
    // `releases/` moved elsewhere and linked back: `/proc/PID/cwd` shows the resolved path.
    let moved = sb.path("releases-elsewhere");
    fs::rename(sb.root.join("releases"), &moved).unwrap();
    symlink(&moved, &sb.root.join("releases"));
    let worker = support::KillOnDrop::new(
        Command::new("sleep")
            .arg("30.0611")
            .current_dir(sb.release_dir("a"))
            .spawn()
            .expect("spawn sleep"),
    );
    wait_for("the worker's cwd", Duration::from_secs(5), || {
        fs::read_link(format!("/proc/{}/cwd", worker.pid()))
            .ok()
            .filter(|cwd| cwd.starts_with(moved.join("a")))
    });

    let run = sb.relman(&["prune", "--keep", "1", "--json"]);
    run.ok();
    let report = run.json();
    assert_eq!(ids(&report["deleted"]), Vec::<String>::new(), "{run}");
    assert_eq!(ids(&report["kept"]), ["b", "a"], "{run}");
    assert!(
        report["protected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "a" && p["reason"].as_str().unwrap().contains("running process")),
        "{run}"
    );
    assert!(moved.join("a").is_dir());
    drop(worker);
}

#[test]
fn prune_works_when_releases_is_a_symlink_to_another_filesystem() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    for id in ["a", "b", "c"] {
        build_ok(&sb, &src, id);
    }
    let elsewhere = tempfile::Builder::new()
        .prefix("relman-test-shm-")
        .tempdir_in("/dev/shm")
        .ok();
    let Some(elsewhere) = elsewhere.filter(|dir| {
        fs::metadata(dir.path()).unwrap().dev() != fs::metadata(&sb.root).unwrap().dev()
    }) else {
        support::skipped_note("prune across filesystems: no /dev/shm on another filesystem");
        return;
    };
    // `releases/` on another filesystem: the rename into `.relman/trash/` cannot cross it.
    let moved = elsewhere.path().join("releases");
    support::copy_tree(&sb.root.join("releases"), &moved);
    fs::remove_dir_all(sb.root.join("releases")).unwrap();
    symlink(&moved, &sb.root.join("releases"));
    let run = sb.relman(&["prune", "--keep", "1", "--json"]);
    run.ok();
    assert_eq!(ids(&run.json()["deleted"]), ["b", "a"], "{run}");
    assert!(!moved.join("a").exists() && !moved.join("b").exists());
    assert!(moved.join("c").is_dir());
}

#[test]
fn prune_never_follows_a_symlink_out_of_a_release() {
    let sb = Sandbox::with_config(&fast_config(""));
    let outside = sb.path("outside");
    write_file(&outside.join("keep.txt"), "keep\n");
    write_file(&outside.join("deep/keep.txt"), "keep\n");
    let src = sb.fixture_source("src");
    symlink(&outside, &src.join("abs-dir"));
    symlink(outside.join("keep.txt"), &src.join("abs-file"));
    // From ROOT/releases/ID/up, three levels up is the sandbox, where `outside` lives.
    symlink("../../../outside", &src.join("up"));
    build_ok(&sb, &src, "linked");
    assert_eq!(
        read_file(&sb.release_dir("linked").join("up/keep.txt")),
        "keep\n",
        "the link resolves out"
    );
    build_ok(&sb, &src, "newer");
    let before = snapshot_tree(&outside);

    let run = sb.relman(&["prune", "--keep", "1", "--json"]);
    run.ok();
    assert_eq!(ids(&run.json()["deleted"]), ["linked"], "{run}");
    assert!(!sb.release_dir("linked").exists());
    before.assert_same(&snapshot_tree(&outside), &run);
    // The newer release's links are intact too.
    assert_eq!(
        read_file(&sb.release_dir("newer").join("abs-dir/deep/keep.txt")),
        "keep\n"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. bad input changes nothing

/// Runs `args` twice, plain and with `--json`, and checks the exit code, the one-line error
/// (naming everything in `mentions`), the JSON error document, and that the deploy root is
/// exactly as it was.
///
/// A usage or config error (2) is caught before anything is touched, so the whole tree must be
/// identical. A failure (1) may be found only under the root lock, whose file then holds the
/// new holder's description: that note, and only it, is left out of the comparison.
#[track_caller]
fn assert_rejected(sb: &Sandbox, args: &[&str], code: i32, mentions: &[&str]) {
    let ignored: &[&str] = if code == 2 { &[] } else { &[".relman/lock"] };
    for json in [false, true] {
        let mut args = args.to_vec();
        if json {
            args.push("--json");
        }
        let before = snapshot_tree(&sb.root);
        let run = sb.relman(&args);
        run.expect_code(code);
        let message = if json {
            let error = run.json();
            assert_eq!(error["code"], code, "{run}");
            let message = error["error"]
                .as_str()
                .unwrap_or_else(|| panic!("no error text\n{run}"))
                .to_owned();
            let lines: Vec<&str> = run.stderr.lines().collect();
            assert_eq!(
                lines,
                [format!("error: {message}")],
                "the same text on stderr\n{run}"
            );
            message
        } else {
            run.expect_one_line_error().to_owned()
        };
        for mention in mentions {
            assert!(
                message.contains(mention),
                "the error should mention {mention:?}\n{run}"
            );
        }
        before
            .without(ignored)
            .assert_same(&snapshot_tree(&sb.root).without(ignored), &run);
    }
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    build_ok(&sb, &src, "r2");
    activate(&sb, "r1");
    let good_config = read_file(&sb.root.join("relman.toml"));

    let long = "a".repeat(65);
    for id in [
        "a/b",
        "..",
        ".hidden",
        "a b",
        "a\nb",
        long.as_str(),
        "../../etc",
        "é",
    ] {
        let shown = id.escape_debug().to_string();
        assert_rejected(
            &sb,
            &["build", "--source", s(&src), "--id", id],
            2,
            &["invalid release ID", &shown],
        );
        assert_rejected(&sb, &["verify", id], 2, &["invalid release ID"]);
        assert_rejected(
            &sb,
            &["activate", id, "--no-reload", "--no-probe"],
            2,
            &["invalid release ID"],
        );
        assert_rejected(
            &sb,
            &["rollback", "--to", id, "--no-reload", "--no-probe"],
            2,
            &["invalid release ID"],
        );
    }
    // 64 characters is still an ID: a missing release (exit 1), not a usage error.
    assert_rejected(&sb, &["verify", &"a".repeat(64)], 1, &["does not exist"]);

    // Sources.
    assert_rejected(
        &sb,
        &["build", "--source", s(&src), "--id", "r1"],
        2,
        &["r1 already exists"],
    );
    let missing = sb.path("nope");
    assert_rejected(&sb, &["build", "--source", s(&missing)], 2, &[s(&missing)]);
    assert_rejected(
        &sb,
        &["build", "--source", s(&src.join("server.js"))],
        2,
        &["not a directory"],
    );
    assert_rejected(
        &sb,
        &["build", "--source", s(&sb.root)],
        2,
        &["inside the deploy root"],
    );
    assert_rejected(
        &sb,
        &["build", "--source", s(&sb.root.join("shared"))],
        2,
        &["inside the deploy root"],
    );
    assert_rejected(
        &sb,
        &["build", "--source", s(&sb.release_dir("r1"))],
        2,
        &["inside the deploy root"],
    );
    assert_rejected(
        &sb,
        &["build", "--source", s(&sb.base())],
        2,
        &["is inside the source"],
    );
    // SAFETY: geteuid has no preconditions.
    if relman_sys::process::effective_ids().0 == 0 {
        // root reads through mode 000, so an unreadable source cannot be made here.
        support::skipped_note("unreadable source (chmod 000) not checked: running as root");
    } else {
        let locked = sb.fixture_source("locked");
        chmod(&locked, 0o000);
        assert_rejected(
            &sb,
            &["build", "--source", s(&locked)],
            2,
            &["cannot read source"],
        );
        chmod(&locked, 0o755);
    }

    // Missing releases are failures (1), not usage errors.
    assert_rejected(&sb, &["verify", "nosuch"], 1, &["nosuch does not exist"]);
    assert_rejected(
        &sb,
        &["activate", "nosuch", "--no-reload", "--no-probe"],
        1,
        &["nosuch does not exist"],
    );
    assert_rejected(&sb, &["prune", "--keep", "0"], 2, &["--keep"]);
    // Flags clap refuses: exit 2 and, with `--json`, the error document too.
    for args in [
        ["prune", "--keep", "x"].as_slice(),
        &["build", "--no-such-flag"],
        &["frobnicate"],
    ] {
        let before = snapshot_tree(&sb.root);
        let run = sb.relman(args);
        run.expect_code(2);
        assert!(
            run.stderr.starts_with("error: ") && run.stdout.is_empty(),
            "{run}"
        );
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let run = sb.relman(&with_json);
        run.expect_code(2);
        let error = run.json();
        assert_eq!(error["code"], 2, "{run}");
        assert!(!error["error"].as_str().unwrap_or("").is_empty(), "{run}");
        before.assert_same(&snapshot_tree(&sb.root), &run);
    }

    // Config: each error names the key, and nothing is built or pruned.
    for (text, mention) in [
        (
            fast_config("[shared]\npaths = [\"/etc/passwd\"]"),
            "shared.paths",
        ),
        (fast_config("[shared]\npaths = [\"../up\"]"), "shared.paths"),
        (
            fast_config("[shared]\npaths = [\"a/../../up\"]"),
            "shared.paths",
        ),
        ("[build\ninstall = \"\"\n".to_owned(), "line 1"),
        ("[build]\ninstal = \"npm ci\"\n".to_owned(), "instal"),
        ("[build]\ntimeout_secs = \"x\"\n".to_owned(), "timeout_secs"),
        ("[retention]\nkeep = 0\n".to_owned(), "retention.keep"),
    ] {
        sb.write_config(&text);
        assert_rejected(
            &sb,
            &["build", "--source", s(&src)],
            2,
            &["invalid config", mention],
        );
        assert_rejected(
            &sb,
            &["prune", "--keep", "1"],
            2,
            &["invalid config", mention],
        );
        assert_rejected(&sb, &["verify", "r1"], 2, &["invalid config", mention]);
    }
    // A shared path whose file is missing from shared/.
    sb.write_config(&fast_config("[shared]\npaths = [\".env.production\"]"));
    assert_rejected(
        &sb,
        &["build", "--source", s(&src)],
        2,
        &[".env.production", "shared"],
    );
    sb.write_config(&good_config);

    // A root that was never initialised, or does not exist.
    let bare = Sandbox::new();
    fs::create_dir(&bare.root).unwrap();
    for args in [
        ["list"].as_slice(),
        &["verify", "r1"],
        &["prune", "--keep", "1"],
        &["build", "--source", s(&src)],
    ] {
        assert_rejected(&bare, args, 2, &["relman init"]);
    }
    fs::remove_dir(&bare.root).unwrap();
    let run = bare.relman(&["list"]);
    run.expect_code(2);
    assert!(
        run.expect_one_line_error().contains("does not exist"),
        "{run}"
    );
    assert!(!bare.root.exists());
}

// ---------------------------------------------------------------------------------------------
// 8. invariant 1: relman never writes inside the live release or any sealed one

#[test]
fn invariant_1_no_command_writes_inside_the_live_or_a_sealed_release() {
    let node = node_version().is_some();
    // node_modules in every release, so the next build copies the live release's (when Node is
    // there to compare versions): reading from it must not write to it.
    let sb = Sandbox::with_config(&config(
        "mkdir -p node_modules/x && echo 1 > node_modules/x/index.js",
        BUILD_SCRIPT,
        "",
    ));
    let src = sb.fixture_source("src");
    let failing = sb.fixture_source("failing");
    write_file(&failing.join("FAIL"), "");
    build_ok(&sb, &src, "old");
    build_ok(&sb, &src, "live");
    activate(&sb, "old");
    activate(&sb, "live");
    let watched = ["live", "old"];
    let snapshot = || -> Vec<Tree> {
        watched
            .iter()
            .map(|id| snapshot_tree(&sb.release_dir(id)))
            .collect()
    };
    let before = snapshot();
    let check = |run: &Run| {
        for (id, (was, now)) in watched.iter().zip(before.iter().zip(snapshot())) {
            was.assert_same(&now, &format_args!("release {id} after:\n{run}"));
        }
    };

    let run = sb.relman(&["build", "--source", s(&src), "--id", "next", "--json"]);
    run.ok();
    if node {
        assert_eq!(
            run.json()["reused_node_modules"],
            true,
            "node_modules copied from the live release"
        );
    }
    check(&run);
    let run = sb.relman(&["build", "--source", s(&failing), "--id", "broken"]);
    run.expect_code(1);
    check(&run);
    for args in [
        ["list"].as_slice(),
        &["list", "--json"],
        &["verify"],
        &["verify", "old", "--json"],
        &["verify", "next"],
        &["prune", "--keep", "1", "--dry-run"],
        &["prune", "--keep", "1", "--json"],
        &["status"],
        &["history"],
    ] {
        let run = sb.relman(args);
        run.ok();
        check(&run);
    }
    assert_eq!(
        sb.release_ids(),
        ["live", "next", "old"],
        "prune removed only the failed build"
    );
    let run = sb.relman(&["build", "--source", s(&src), "--id", "../old"]);
    run.expect_code(2);
    check(&run);
}

// ---------------------------------------------------------------------------------------------
// 9. invariant 5: the root lock

#[test]
fn invariant_5_a_held_root_lock_makes_mutating_commands_wait_then_fail_naming_the_holder() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    build_ok(&sb, &src, "r2");
    activate(&sb, "r1");

    // The lock is the root directory's; the note names the last relman that held it, which
    // is gone (and pid 4242 is no relman), so it is only named as the last one recorded.
    let lock = lock_root_directory(&sb);
    write_file(
        &sb.root.join(".relman/lock"),
        "pid 4242 (relman activate r0, since the beginning of time)",
    );
    let holder = "another process (the last relman recorded there was pid 4242, no longer running)";
    let before = snapshot_tree(&sb.root);

    // Mutating commands wait (saying for whom), then fail with exit 1 naming the holder.
    let mutating: [&[&str]; 5] = [
        &["prune", "--keep", "1"],
        &["build", "--source", s(&src), "--id", "r3"],
        &["activate", "r2", "--no-reload", "--no-probe"],
        &["rollback", "--no-reload", "--no-probe"],
        &["init"],
    ];
    let runs = run_concurrently(
        mutating
            .iter()
            .map(|args| {
                let mut command = sb.command(args);
                command.env("RELMAN_LOCK_WAIT_SECS", "1");
                command
            })
            .collect(),
    );
    for run in &runs {
        run.expect_code(1);
        assert!(
            run.elapsed >= Duration::from_millis(900),
            "it waited\n{run}"
        );
        assert!(run.elapsed < Duration::from_secs(8), "then gave up\n{run}");
        assert_eq!(run.stdout, "", "{run}");
        assert!(
            run.stderr.contains(&format!(
                "waiting for the deploy root lock, held by {holder}"
            )),
            "{run}"
        );
        let last = run.expect_error_line();
        assert!(
            last.starts_with(&format!("error: the deploy root is locked by {holder}")),
            "{run}"
        );
        assert!(last.contains("try again"), "{run}");
    }
    let json = sb.relman_env(
        &["prune", "--keep", "1", "--json"],
        &[("RELMAN_LOCK_WAIT_SECS", "1")],
    );
    json.expect_code(1);
    assert!(
        json.json()["error"].as_str().unwrap().contains(holder),
        "{json}"
    );
    before.assert_same(
        &snapshot_tree(&sb.root),
        &"mutating commands while the lock is held",
    );

    // Reading needs no lock.
    for args in [
        ["list"].as_slice(),
        &["verify"],
        &["prune", "--keep", "1", "--dry-run"],
        &["history"],
    ] {
        let run = sb.relman_env(args, &[("RELMAN_LOCK_WAIT_SECS", "1")]);
        run.ok();
        assert!(!run.stderr.contains("waiting"), "{run}");
    }
    before.assert_same(
        &snapshot_tree(&sb.root),
        &"read-only commands while the lock is held",
    );

    // Released: the same prune goes through at once (r2 is the newest sealed, r1 is current).
    drop(lock);
    let run = sb.relman_env(
        &["prune", "--keep", "1", "--json"],
        &[("RELMAN_LOCK_WAIT_SECS", "1")],
    );
    run.ok();
    assert!(!run.stderr.contains("waiting"), "{run}");
    assert_eq!(ids(&run.json()["kept"]), ["r2", "r1"]);
}

#[test]
fn invariant_5_a_waiting_command_proceeds_when_the_lock_comes_free() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    let lock = lock_root_directory(&sb);
    let started = Instant::now();
    let mut waiting = spawn_command(sb.command(&["build", "--source", s(&src), "--id", "r2"]));
    std::thread::sleep(Duration::from_millis(400));
    assert!(!waiting.has_exited(), "the build waits for the lock");
    assert!(
        !sb.release_dir("r2").exists(),
        "nothing claimed while waiting"
    );
    drop(lock);
    let run = waiting.finish();
    run.ok();
    assert!(
        run.stderr.contains("waiting for the deploy root lock"),
        "{run}"
    );
    assert_eq!(run.last_stdout_line(), "r2");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn verify_uses_the_excludes_the_release_was_sealed_with() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    write_file(&src.join("logs/app.log"), "line\n");
    build_ok(&sb, &src, "v1");
    // Excluding more later must not make the older release look tampered with.
    sb.write_config(&fast_config(
        "[manifest]\nexclude = [\"node_modules\", \".next/cache\", \"logs\"]\n",
    ));
    sb.relman(&["verify", "v1"]).ok();
    // And a release sealed with the new list does not list `logs`.
    build_ok(&sb, &src, "v2");
    let manifest = read_file(&sb.release_dir("v2").join(".relman/manifest.sha256"));
    assert!(!manifest.contains("logs/app.log"), "{manifest}");
    sb.relman(&["verify", "v2"]).ok();
}

/// The fast build plus a small `.next` as `next build` leaves it: a `BUILD_ID`, a prerendered
/// page and a chunk.
const NEXT_BUILD_SCRIPT: &str = r#"mkdir -p .next/server/app .next/server/chunks && echo "$RELMAN_RELEASE" > .next/BUILD_ID && echo '<html>prerendered</html>' > .next/server/app/index.html && echo 'chunk' > .next/server/chunks/123.js"#;

fn next_config(extra: &str) -> String {
    config("", &format!("{BUILD_SCRIPT} && {NEXT_BUILD_SCRIPT}"), extra)
}

/// What a Next.js server writes into its release once it has served a static page and
/// regenerated one.
const SERVED: [&str; 3] = [
    ".next/server/route-cache/APP_PAGE/4c1e/$/index.html",
    ".next/server/route-cache/APP_PAGE/4c1e/$/index.meta",
    ".next/server/route-cache/APP_ROUTE/favicon.ico.body",
];

fn serve_traffic(release: &Path) {
    for path in SERVED {
        write_file(&release.join(path), "written by the app\n");
    }
    write_file(
        &release.join(".next/server/app/index.html"),
        "<html>regenerated</html>\n",
    );
}

#[test]
fn files_the_app_writes_at_run_time_do_not_fail_verify_or_activate() {
    let sb = Sandbox::with_config(&next_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "base");
    build_ok(&sb, &src, "served");
    assert!(
        manifest_paths(&sb.release_dir("served")).contains(".next/server/app/index.html"),
        "a prerendered page is hashed at build time"
    );
    activate(&sb, "base");
    let release = sb.release_dir("served");
    serve_traffic(&release);

    let run = sb.relman(&["verify", "served", "--json"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["ok"], true, "{run}");
    for key in ["changed", "missing", "added"] {
        assert_eq!(report[key], serde_json::json!([]), "{key}: {run}");
    }
    assert_eq!(
        report["runtime"],
        serde_json::json!({
            "changed": [".next/server/app/index.html"],
            "missing": [],
            "added": SERVED,
        })
    );
    assert_eq!(run.stderr, "", "{run}");
    let text = sb.relman(&["verify", "served"]);
    text.ok();
    assert_eq!(text.stdout, "", "{text}");
    assert!(
        text.stderr.contains("release served matches its manifest (")
            && text.stderr.contains(
                "; 4 files written at run time by the app are not counted (e.g. `.next/server/route-cache/APP_PAGE/4c1e/$/index.html`)"
            ),
        "{text}"
    );

    // The integrity gate of activate (and so of rollback) passes without --skip-integrity.
    activate(&sb, "served");
    activate(&sb, "base");
    sb.relman(&["rollback", "--to", "served", "--no-reload", "--no-probe"])
        .ok();
    activate(&sb, "base");

    // A real difference still fails both, with the run-time files mentioned apart.
    let chunk = release.join(".next/server/chunks/123.js");
    let package = release.join("package.json");
    let build_id = release.join(".next/BUILD_ID");
    // (kind of difference, path, make it, undo it)
    type Change<'a> = &'a dyn Fn();
    let tampers: [(&str, &str, Change, Change); 4] = [
        (
            "changed",
            ".next/server/chunks/123.js",
            &|| write_file(&chunk, "// injected\n"),
            &|| write_file(&chunk, "chunk\n"),
        ),
        (
            "added",
            "app/new.js",
            &|| write_file(&release.join("app/new.js"), "// new\n"),
            &|| {
                fs::remove_file(release.join("app/new.js")).unwrap();
                let _ = fs::remove_dir(release.join("app"));
            },
        ),
        (
            "changed",
            "package.json",
            &|| write_file(&package, "{}\n"),
            &|| {
                fs::copy(src.join("package.json"), &package)
                    .map(drop)
                    .unwrap()
            },
        ),
        (
            "missing",
            ".next/BUILD_ID",
            &|| fs::remove_file(&build_id).unwrap(),
            &|| write_file(&build_id, "served\n"),
        ),
    ];
    for (kind, path, tamper, restore) in tampers {
        tamper();
        let run = sb.relman(&["verify", "served", "--json"]);
        run.expect_code(1);
        let report = run.json();
        assert_eq!(report["ok"], false, "{run}");
        assert_eq!(report[kind], serde_json::json!([path]), "{run}");
        assert_eq!(
            report["runtime"]["added"],
            serde_json::json!(SERVED),
            "{run}"
        );
        let text = sb.relman(&["verify", "served"]);
        text.expect_code(1);
        assert_eq!(text.stdout, format!("{kind:8} {path}\n"), "{text}");
        let error = text.expect_error_line();
        assert!(
            error.contains("does not match its manifest")
                && error.contains(
                    "added; 4 files written at run time by the app are not counted (e.g. `"
                ),
            "{text}"
        );

        let history = sb.root.join(".relman/history.jsonl");
        let entries = count_lines(&history);
        let refused = sb.relman(&["activate", "served", "--no-reload", "--no-probe"]);
        refused.expect_code(1);
        assert!(
            refused
                .expect_error_line()
                .contains("release served does not match its manifest"),
            "{refused}"
        );
        assert_eq!(
            fs::read_link(sb.root.join("current")).unwrap(),
            Path::new("releases/base"),
            "{path}"
        );
        assert_eq!(count_lines(&history), entries);
        restore();
        sb.relman(&["verify", "served"]).ok();
    }
}

#[test]
fn a_seal_without_a_runtime_class_uses_the_config_s() {
    let sb = Sandbox::with_config(&next_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "old");
    assert_eq!(
        seal(&sb, "old")["manifest_runtime"],
        serde_json::json!([
            ".next/server/route-cache",
            ".next/server/app/**/*.html",
            ".next/server/app/**/*.rsc",
            ".next/server/app/**/*.meta",
            ".next/server/app/**/*.body",
            ".next/server/pages/**/*.html",
            ".next/server/pages/**/*.json"
        ])
    );
    // A release sealed before the key existed.
    let mut old_seal = seal(&sb, "old");
    old_seal.as_object_mut().unwrap().remove("manifest_runtime");
    write_file(
        &sb.release_dir("old").join(".relman/release.json"),
        serde_json::to_vec_pretty(&old_seal).unwrap(),
    );
    assert_eq!(state_of(&sb, "old").as_deref(), Some("sealed"));
    serve_traffic(&sb.release_dir("old"));
    sb.relman(&["verify", "old"]).ok();

    // The config's list decides: without the route cache in it, those files count.
    sb.write_config(&next_config(
        "[manifest]\nruntime = [\".next/server/app/**/*.html\"]\n",
    ));
    let run = sb.relman(&["verify", "old", "--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["added"], serde_json::json!(SERVED), "{run}");
    assert_eq!(
        run.json()["runtime"]["changed"],
        serde_json::json!([".next/server/app/index.html"]),
        "{run}"
    );
}

#[test]
fn a_bad_runtime_entry_is_a_configuration_error() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "v1");
    for entry in [".next/server/[app", "/srv/web/**", "../up/*.html"] {
        sb.write_config(&fast_config(&format!(
            "[manifest]\nruntime = [\"{entry}\"]\n"
        )));
        for args in [vec!["verify", "v1"], vec!["build", "--source", s(&src)]] {
            let run = sb.relman(&args);
            run.expect_code(2);
            let error = run.expect_one_line_error();
            assert!(
                error.contains("`manifest.runtime` entry") && error.contains(entry),
                "{run}"
            );
        }
    }
    assert_eq!(sb.release_ids(), ["v1"], "nothing built");
}

#[test]
fn a_relative_source_path_in_the_config_is_relative_to_the_deploy_root() {
    let sb = Sandbox::with_config(&fast_config("[source]\npath = \"../app-src\"\n"));
    let src = sb.fixture_source("app-src");
    assert_eq!(src, sb.base().join("app-src"));
    // The test's working directory is the repo, nowhere near the deploy root.
    let run = sb.relman(&["build", "--id", "from-config"]);
    run.ok();
    assert!(sb.release_dir("from-config").join("server.js").is_file());
}

// ---------------------------------------------------------------------------------------------
// 10. regressions

/// A crash mid-append leaves a torn last line; the next append must cut it off rather than
/// glue a whole entry onto it, which turned the fragment into a bad middle line that failed
/// every command reading the history.
#[test]
fn a_torn_last_history_line_is_cut_off_by_the_next_append() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    build_ok(&sb, &src, "r2");
    activate(&sb, "r1");
    activate(&sb, "r2");
    let history = sb.root.join(".relman/history.jsonl");
    {
        use std::io::Write;
        let mut file = fs::OpenOptions::new().append(true).open(&history).unwrap();
        file.write_all(br#"{"at":"2026-11-29T04:2"#).unwrap();
    }
    let run = sb.relman(&["rollback", "--no-reload", "--no-probe"]);
    run.ok();
    assert_eq!(run.last_stdout_line(), "r1", "{run}");

    let text = read_file(&history);
    assert!(text.ends_with('\n'), "{text}");
    assert!(
        !text.contains("04:2\"") && !text.contains("04:2{"),
        "{text}"
    );
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{line}: {e}\n{text}"));
    }
    for args in [
        ["status"].as_slice(),
        &["list"],
        &["history"],
        &["prune", "--dry-run"],
    ] {
        sb.relman(args).ok();
    }
    let entries = sb.relman(&["history", "--json"]).json();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0]["action"], "rollback");
    assert_eq!(entries[0]["to"], "r1");
    // And the way back still works, appending after the repaired file.
    sb.relman(&["rollback", "--to", "r2", "--no-reload", "--no-probe"])
        .ok();
    assert_eq!(
        sb.relman(&["history", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// A timeout near `u64::MAX` passed the config check, then panicked adding it to an `Instant`
/// (exit 101). Every duration and count is bounded at load, so it is a config error (exit 2)
/// naming the key and the bound, for every command, with nothing changed.
#[test]
fn huge_timeouts_and_counts_are_configuration_errors_not_panics() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    activate(&sb, "r1");
    let good_config = read_file(&sb.root.join("relman.toml"));
    let with = |table: &str, key: &str, value: u64| {
        let text = if table == "build" {
            fast_config(&format!("{key} = {value}"))
        } else {
            fast_config(&format!("[{table}]\n{key} = {value}"))
        };
        sb.write_config(&text);
    };
    for (table, key, bound) in [
        ("build", "timeout_secs", 604_800),
        ("pm2", "timeout_secs", 604_800),
        ("preflight", "timeout_secs", 604_800),
        ("verify", "timeout_ms", 3_600_000),
        ("verify", "interval_ms", 3_600_000),
        ("verify", "attempts", 1000),
    ] {
        let name = format!("`{table}.{key}`");
        let bound_text = bound.to_string();
        for value in [bound + 1, u64::from(u32::MAX), i64::MAX as u64] {
            if key == "attempts" && value > u64::from(u32::MAX) {
                continue;
            }
            with(table, key, value);
            for args in [
                ["build", "--source", s(&src), "--id", "r2"].as_slice(),
                &["activate", "r1", "--no-reload", "--no-probe"],
                &["prune", "--keep", "1"],
            ] {
                assert_rejected(&sb, args, 2, &["invalid config", &name, &bound_text]);
            }
        }
        with(table, key, bound);
        sb.relman(&["activate", "r1", "--no-reload", "--no-probe"])
            .ok();
        sb.relman(&["prune", "--keep", "5", "--dry-run"]).ok();
    }
    // At the bound a build runs (and is not killed at once).
    with("build", "timeout_secs", 604_800);
    build_ok(&sb, &src, "r2");
    sb.write_config(&good_config);
    assert_eq!(sb.release_ids(), ["r1", "r2"]);
}

/// Holds the kernel lock on the deploy root directory itself, as relman does, from the test
/// process: "another process" for relman.
fn lock_root_directory(sb: &Sandbox) -> fs::File {
    let root = fs::File::open(&sb.root).unwrap();
    root.lock().unwrap();
    root
}

/// The root lock was a lock on the file `.relman/lock`: a process holding the deploy root
/// some other way was not seen, and removing the file (a new file, a new inode, a free lock)
/// let a second relman in beside the first. The lock is on the root directory now.
#[test]
fn a_lock_held_on_the_root_directory_makes_relman_wait_naming_another_process() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    build_ok(&sb, &src, "r2");
    activate(&sb, "r1");
    // The last relman that held the lock wrote itself into the note; it has exited since.
    let note = read_file(&sb.root.join(".relman/lock"));
    let last_pid: u32 = note
        .strip_prefix("pid ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the holder is written: {note:?}"));
    assert!(
        note.contains("(relman activate r1, since "),
        "the holder is written: {note:?}"
    );

    let lock = lock_root_directory(&sb);
    let before = snapshot_tree(&sb.root);
    let holder = format!(
        "another process (the last relman recorded there was pid {last_pid}, no longer running)"
    );
    for args in [
        ["activate", "r2", "--no-reload", "--no-probe"].as_slice(),
        &["prune", "--keep", "1"],
        &["build", "--source", s(&src), "--id", "r3"],
    ] {
        let run = sb.relman_env(args, &[("RELMAN_LOCK_WAIT_SECS", "1")]);
        run.expect_code(1);
        assert!(
            run.elapsed >= Duration::from_millis(900),
            "it waited\n{run}"
        );
        assert!(
            run.stderr.contains(&format!(
                "Blocking waiting for the deploy root lock, held by {holder}"
            )),
            "{run}"
        );
        assert!(
            run.expect_error_line()
                .starts_with(&format!("error: the deploy root is locked by {holder}")),
            "{run}"
        );
    }
    before.assert_same(
        &snapshot_tree(&sb.root),
        &"while another process holds the root",
    );
    drop(lock);
    activate(&sb, "r2");
}

/// While a relman holds the root lock, removing `.relman/lock` frees nothing: a second relman
/// still waits, naming the first while it runs; the next holder writes the note again.
#[test]
fn removing_the_lock_file_does_not_let_a_second_relman_in() {
    let sb = Sandbox::with_config(&fast_config(
        "[preflight]\ncommand = \"sleep 60.0317\"\nurl = \"http://127.0.0.1:{port}/\"\ntimeout_secs = 30\n",
    ));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    build_ok(&sb, &src, "r2");
    // The preflight (a `sleep` that never listens) runs under the root lock.
    let mut holder = spawn_command(sb.command(&["activate", "r1", "--no-reload", "--no-probe"]));
    let note_path = sb.root.join(".relman/lock");
    let described = format!("pid {} (relman activate r1, since ", holder.pid());
    wait_for("the preflight to start", Duration::from_secs(10), || {
        assert!(!holder.has_exited(), "the holder ended early");
        (!processes_with_arg("60.0317").is_empty()).then_some(())
    });
    let note = read_file(&note_path);
    assert!(note.starts_with(&described), "{note:?}");

    let second = ["activate", "r2", "--no-reload", "--no-probe"];
    let wait_1s = [("RELMAN_LOCK_WAIT_SECS", "1")];
    let run = sb.relman_env(&second, &wait_1s);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "Blocking waiting for the deploy root lock, held by {described}"
        )),
        "a live relman is named as the holder\n{run}"
    );

    fs::remove_file(&note_path).unwrap();
    let run = sb.relman_env(&second, &wait_1s);
    run.expect_code(1);
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "it waited\n{run}"
    );
    assert!(
        run.expect_error_line()
            .starts_with("error: the deploy root is locked by another process"),
        "{run}"
    );
    assert!(
        fs::symlink_metadata(sb.root.join("current")).is_err(),
        "nothing went live"
    );

    sigint(holder.pid());
    let run = holder.finish();
    assert_ne!(run.code, 0, "{run}");
    assert_no_process_with_arg("60.0317");
    sb.write_config(&fast_config(""));
    let run = sb.relman_env(&second, &wait_1s);
    run.ok();
    assert!(!run.stderr.contains("waiting"), "{run}");
    assert!(
        read_file(&note_path).contains("(relman activate r2, since "),
        "the note is written again"
    );
}

/// The build lock was a lock on `.relman/build.lock`: removing that file made a running build
/// read as `failed`, and `prune` deleted it under the build. The lock is on the release
/// directory now.
#[test]
fn removing_build_lock_does_not_make_a_running_build_failed() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "base");
    let slow_src = sb.fixture_source("slow-src");
    write_file(&slow_src.join("SLOW"), "5.0319");
    let mut building =
        spawn_command(sb.command(&["build", "--source", s(&slow_src), "--id", "slow"]));
    wait_for(
        "the build's sleep to start",
        Duration::from_secs(10),
        || {
            assert!(!building.has_exited(), "the slow build ended early");
            (!processes_with_arg("5.0319").is_empty()).then_some(())
        },
    );
    fs::remove_file(sb.release_dir("slow").join(".relman/build.lock")).unwrap();
    assert_eq!(state_of(&sb, "slow").as_deref(), Some("building"));
    let report = sb.relman(&["prune", "--keep", "1", "--json"]).json();
    assert_eq!(ids(&report["deleted"]), Vec::<String>::new(), "{report}");
    assert!(sb.release_dir("slow").is_dir());
    let run = building.finish();
    run.ok();
    assert_eq!(state_of(&sb, "slow").as_deref(), Some("sealed"));
}

/// Runs `args` in the background and fails the test (killing it) unless it ends within 10 s:
/// for commands that used to hang on a FIFO.
#[track_caller]
fn run_bounded(sb: &Sandbox, args: &[&str]) -> Run {
    let mut running = spawn_command(sb.command(args));
    wait_for(
        &format!("relman {} to end", args.join(" ")),
        Duration::from_secs(10),
        || running.has_exited().then_some(()),
    );
    running.finish()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// `verify` followed a `manifest.sha256` that was a symlink and reported the lines of its
/// target (it read `/etc/shadow`); the seal and the claim were read the same way, and a FIFO
/// in their place hung `list`. relman's own files in a release are read only as regular
/// files, never through a symlink, and bounded.
#[test]
fn a_release_s_own_files_are_never_read_through_a_symlink_or_a_fifo() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    let manifest = sb.release_dir("r1").join(".relman/manifest.sha256");
    // A target in the manifest's own format, so that following it would show its contents.
    let secret = sb.path("secret");
    write_file(&secret, format!("{}  leaked-secret-line\n", "0".repeat(64)));
    fs::remove_file(&manifest).unwrap();
    symlink(&secret, &manifest);
    for json in [false, true] {
        let mut args = vec!["verify", "r1"];
        if json {
            args.push("--json");
        }
        let run = sb.relman(&args);
        run.expect_code(1);
        assert!(
            !run.stdout.contains("leaked") && !run.stderr.contains("leaked"),
            "{run}"
        );
        let error = if json {
            run.json()["error"].as_str().unwrap().to_owned()
        } else {
            run.expect_one_line_error().to_owned()
        };
        assert!(
            error.contains("manifest.sha256") && error.contains("a symlink, not a regular file"),
            "{run}"
        );
    }
    let run = sb.relman(&["activate", "r1", "--no-reload", "--no-probe"]);
    run.expect_code(1);
    assert!(run.stderr.contains("not a regular file"), "{run}");
    assert!(fs::symlink_metadata(sb.root.join("current")).is_err());

    // A symlinked seal: the release is not sealed, whatever the target says.
    build_ok(&sb, &src, "r2");
    let seal_path = sb.release_dir("r2").join(".relman/release.json");
    let copy = sb.path("r2-seal.json");
    fs::copy(&seal_path, &copy).unwrap();
    fs::remove_file(&seal_path).unwrap();
    symlink(&copy, &seal_path);
    assert_eq!(state_of(&sb, "r2").as_deref(), Some("failed"));
    // A seal larger than any relman writes (1 MiB): not read, not sealed.
    fs::remove_file(&seal_path).unwrap();
    let mut padded = read_file(&copy);
    padded.push_str(&" ".repeat(1024 * 1024));
    write_file(&seal_path, padded);
    assert_eq!(state_of(&sb, "r2").as_deref(), Some("failed"));
    fs::copy(&copy, &seal_path).unwrap();
    assert_eq!(state_of(&sb, "r2").as_deref(), Some("sealed"));

    // A FIFO as the seal or the claim: `list` neither hangs nor counts the release sealed.
    build_ok(&sb, &src, "r3");
    let meta = sb.release_dir("r3").join(".relman");
    fs::remove_file(meta.join("release.json")).unwrap();
    mkfifo(&meta.join("release.json"));
    // A sealed release has no claim any more; a FIFO in its place must not count as one.
    let _ = fs::remove_file(meta.join("build.json"));
    mkfifo(&meta.join("build.json"));
    let run = run_bounded(&sb, &["list", "--json"]);
    run.ok();
    let r3 = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "r3")
        .cloned()
        .unwrap();
    assert_eq!(r3["state"], "failed", "{run}");
    run_bounded(&sb, &["verify", "r3"]).expect_code(1);
}

/// `history.jsonl` was read with `read_to_string`: a FIFO there hung every command that reads
/// it, a link to `/dev/zero` read until memory ran out. It is read only as a regular file,
/// never through a symlink, and bounded (64 MiB: beyond, archive it).
#[test]
fn a_history_that_is_not_a_regular_file_or_too_large_fails_at_once() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    build_ok(&sb, &src, "r2");
    activate(&sb, "r1");
    let history = sb.root.join(".relman/history.jsonl");
    let saved = read_file(&history);
    // `activate` only appends, at its end: it asks first, and stops with nothing changed.
    let readers: [&[&str]; 5] = [
        &["status"],
        &["list"],
        &["history"],
        &["prune", "--dry-run"],
        &["activate", "r2", "--no-reload", "--no-probe"],
    ];
    let check = |what: &str, mention: &str| {
        for args in readers {
            let run = run_bounded(&sb, args);
            run.expect_code(1);
            let error = run.expect_error_line();
            assert!(
                error.contains("history.jsonl") && error.contains(mention),
                "{what}\n{run}"
            );
        }
        assert_eq!(
            fs::read_link(sb.root.join("current")).unwrap(),
            Path::new("releases/r1"),
            "{what}: nothing went live"
        );
    };
    fs::remove_file(&history).unwrap();
    mkfifo(&history);
    check("a FIFO", "it is a FIFO, not a regular file");
    fs::remove_file(&history).unwrap();
    symlink("/dev/zero", &history);
    check(
        "a symlink to /dev/zero",
        "it is a symlink, not a regular file",
    );
    fs::remove_file(&history).unwrap();
    let made = Command::new("mknod")
        .arg(&history)
        .args(["c", "1", "5"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        check(
            "a /dev/zero device node",
            "it is a device, not a regular file",
        );
        fs::remove_file(&history).unwrap();
    } else {
        support::skipped_note("history.jsonl as a device node: mknod not permitted here");
    }
    // Larger than 64 MiB (sparse, so cheap): archive it.
    let file = fs::File::create(&history).unwrap();
    file.set_len(64 * 1024 * 1024 + 1).unwrap();
    drop(file);
    check("too large", "archive it");
    write_file(&history, saved);
    sb.relman(&["history"]).ok();
}

/// `relman.toml` had the same trouble: a FIFO hung, `/dev/zero` ran out of memory. It is read
/// only as a regular file (a symlink to one is fine: operators keep it elsewhere), at most
/// 1 MiB; anything else is a configuration error (exit 2) naming it.
#[test]
fn a_config_that_is_not_a_regular_file_or_too_large_is_a_configuration_error() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    let config = sb.root.join("relman.toml");
    let saved = read_file(&config);
    let commands: [&[&str]; 3] = [
        &["verify", "r1"],
        &["prune", "--dry-run"],
        &["build", "--source", s(&src)],
    ];
    let check = |what: &str, mention: &str| {
        for args in commands {
            let run = run_bounded(&sb, args);
            run.expect_code(2);
            let error = run.expect_one_line_error();
            assert!(
                error.contains("invalid config")
                    && error.contains("relman.toml")
                    && error.contains(mention),
                "{what}\n{run}"
            );
        }
    };
    fs::remove_file(&config).unwrap();
    mkfifo(&config);
    check("a FIFO", "it is a FIFO, not a regular file");
    fs::remove_file(&config).unwrap();
    symlink("/dev/zero", &config);
    check(
        "a symlink to /dev/zero",
        "it is a device, not a regular file",
    );
    fs::remove_file(&config).unwrap();
    let mut large = saved.clone();
    large.push_str(&"#".repeat(1024 * 1024));
    write_file(&config, &large);
    check("too large", "1 MiB");
    // A symlink to a regular file is the operator's choice.
    let elsewhere = sb.path("relman.toml");
    write_file(&elsewhere, &saved);
    fs::remove_file(&config).unwrap();
    symlink(&elsewhere, &config);
    sb.relman(&["verify", "r1"]).ok();
    assert_eq!(sb.release_ids(), ["r1"], "nothing built");
}

/// `shared.paths = [".relman"]` was accepted: every build would have replaced its own
/// `.relman` (claim, lock, manifest, seal) with a symlink into `shared/`, the same for every
/// release. relman's own directory cannot be shared: a configuration error (exit 2).
#[test]
fn relman_s_own_directory_cannot_be_a_shared_path() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    fs::create_dir_all(sb.root.join("shared/.relman")).unwrap();
    for entry in [".relman", ".relman/release.json", ".relman/x/y"] {
        sb.write_config(&fast_config(&format!("[shared]\npaths = [\"{entry}\"]")));
        for args in [
            ["build", "--source", s(&src), "--id", "r2"].as_slice(),
            &["prune", "--dry-run"],
            &["verify", "r1"],
        ] {
            assert_rejected(
                &sb,
                args,
                2,
                &[
                    "invalid config",
                    "`shared.paths`",
                    entry,
                    "relman's own directory",
                ],
            );
        }
    }
    // A name that only starts like it is the app's own.
    write_file(&sb.root.join("shared/.relmanrc"), "x");
    sb.write_config(&fast_config("[shared]\npaths = [\".relmanrc\"]"));
    build_ok(&sb, &src, "r2");
    assert_eq!(sb.release_ids(), ["r1", "r2"]);
}

/// A `relman.toml` that is not UTF-8 was an I/O failure (exit 1); it is a bad config, exit 2,
/// naming the file and saying it must be UTF-8.
#[test]
fn a_config_that_is_not_utf8_is_a_configuration_error() {
    let sb = Sandbox::with_config(&fast_config(""));
    let src = sb.fixture_source("src");
    build_ok(&sb, &src, "r1");
    let mut bytes = fast_config("").into_bytes();
    bytes.extend_from_slice(b"# caf\xe9 in Latin-1\n");
    write_file(&sb.root.join("relman.toml"), bytes);
    for args in [
        ["build", "--source", s(&src), "--id", "r2"].as_slice(),
        &["prune", "--keep", "1"],
        &["verify", "r1"],
        &["activate", "r1", "--no-reload", "--no-probe"],
    ] {
        assert_rejected(
            &sb,
            args,
            2,
            &["invalid config", "relman.toml", "must be UTF-8", "(line 6)"],
        );
    }
}

/// `verify` compared contents only: a file made setuid, or a symlink added, removed or
/// pointed elsewhere, went unnoticed. The build records what `sha256sum` cannot carry in
/// `.relman/manifest.meta` (modes of the manifest's files, every symlink and its target)
/// before the seal, and `verify` compares it too; the manifest stays `sha256sum -c`
/// compatible, and a release sealed without the sidecar verifies as before.
#[test]
fn verify_notices_a_mode_change_and_added_removed_or_retargeted_symlinks() {
    let sb = Sandbox::with_config(&fast_config("[shared]\npaths = [\"uploads\"]"));
    fs::create_dir_all(sb.root.join("shared/uploads")).unwrap();
    let src = sb.fixture_source("src");
    symlink("server.js", &src.join("main.js"));
    chmod(&src.join("build.js"), 0o755);
    build_ok(&sb, &src, "r1");
    let release = sb.release_dir("r1");

    let sidecar = read_file(&release.join(".relman/manifest.meta"));
    assert!(sidecar.contains("0644  server.js\n"), "{sidecar}");
    assert!(sidecar.contains("0755  build.js\n"), "{sidecar}");
    assert!(
        sidecar.contains("link  main.js -> server.js\n"),
        "{sidecar}"
    );
    assert!(
        sidecar.contains("link  uploads -> ../../shared/uploads\n"),
        "shared paths are recorded too: {sidecar}"
    );
    let check = Command::new("sha256sum")
        .args(["-c", "--strict", ".relman/manifest.sha256"])
        .current_dir(&release)
        .output()
        .expect("sha256sum");
    assert!(check.status.success(), "{check:?}");
    sb.relman(&["verify", "r1"]).ok();

    // A file made setuid: changed, with the modes.
    chmod(&release.join("server.js"), 0o4644);
    let run = sb.relman(&["verify", "r1"]);
    run.expect_code(1);
    assert_eq!(
        run.stdout, "changed  server.js (mode 0644 -> 4644)\n",
        "{run}"
    );
    assert!(
        run.expect_error_line()
            .contains("1 changed, 0 missing, 0 added"),
        "{run}"
    );
    let report = sb.relman(&["verify", "r1", "--json"]).json();
    assert_eq!(report["changed"], serde_json::json!(["server.js"]));
    assert_eq!(report["details"]["server.js"], "mode 0644 -> 4644");
    chmod(&release.join("server.js"), 0o644);
    sb.relman(&["verify", "r1"]).ok();

    // A symlink added, one removed, one pointed elsewhere.
    symlink("/etc/shadow", &release.join("evil"));
    let run = sb.relman(&["verify", "r1"]);
    run.expect_code(1);
    assert_eq!(
        run.stdout, "added    evil (symlink -> /etc/shadow)\n",
        "{run}"
    );
    fs::remove_file(release.join("evil")).unwrap();
    fs::remove_file(release.join("main.js")).unwrap();
    let run = sb.relman(&["verify", "r1"]);
    run.expect_code(1);
    assert_eq!(
        run.stdout, "missing  main.js (symlink -> server.js)\n",
        "{run}"
    );
    symlink("/etc", &release.join("main.js"));
    let run = sb.relman(&["verify", "r1", "--json"]);
    run.expect_code(1);
    assert_eq!(
        run.json()["changed"],
        serde_json::json!(["main.js"]),
        "{run}"
    );
    assert_eq!(
        run.json()["details"]["main.js"],
        "symlink -> server.js, now -> /etc"
    );
    // A symlink replaced by a regular file is one change, not a removal and an addition.
    fs::remove_file(release.join("main.js")).unwrap();
    write_file(&release.join("main.js"), "// not a link\n");
    let run = sb.relman(&["verify", "r1", "--json"]);
    run.expect_code(1);
    assert_eq!(
        (
            run.json()["changed"].clone(),
            run.json()["added"].clone(),
            run.json()["missing"].clone()
        ),
        (
            serde_json::json!(["main.js"]),
            serde_json::json!([]),
            serde_json::json!([])
        ),
        "{run}"
    );
    fs::remove_file(release.join("main.js")).unwrap();
    symlink("server.js", &release.join("main.js"));
    sb.relman(&["verify", "r1"]).ok();

    // Sealed without the sidecar (an older relman): contents only, as before.
    fs::remove_file(release.join(".relman/manifest.meta")).unwrap();
    chmod(&release.join("server.js"), 0o4644);
    sb.relman(&["verify", "r1"]).ok();
}

/// What a user reads, snapshotted (insta, inline): the help with its exit codes, a first
/// `init`, a bad ID, a bad config key, `list`, a `verify` mismatch and a `prune --dry-run`.
/// Temp paths, clock-made IDs, times, durations and sizes are filtered.
#[test]
fn what_the_operator_reads_is_stable() {
    use crate::support::assert_run_snapshot;
    let sb = Sandbox::new();
    assert_run_snapshot!(sb, sb.relman(&["--help"]), @"
    exit code: 0
    --- stdout ---
    Zero-downtime release management for Node.js apps served by PM2

    Usage: relman [OPTIONS] <COMMAND>

    Commands:
      init         Create releases/, shared/, .relman/ and a commented relman.toml (with --app, for that app, and its ecosystem.config.js)
      build        Build a new release in a fresh directory and seal it
      list         List every release, newest first
      status       Show current, rollback target, PM2 instances, health and the last activation
      activate     Make a sealed release live, proving it, rolling back on failure
      rollback     Go back to the rollback target (or --to ID) the same way
      deploy       Build a release, activate it, then prune to retention.keep
      prune        Delete old releases, never the live one or the rollback target
      verify       Recompute a release's manifest and list what changed
      probe        Run the HTTP health probe alone
      doctor       Check this host for zero-downtime readiness
      history      Show the activation history, newest first
      pack         Write a sealed release as one stream (zstd-compressed tar) on stdout or to a file
      receive      Read a stream from `relman pack` into releases/ID, check every file, and seal it
      completions  Print shell completions on stdout (e.g. `relman completions bash > /etc/bash_completion.d/relman`)
      man          Print the man page (roff) on stdout (e.g. `relman man > /usr/local/share/man/man1/relman.1`)
      help         Print this message or the help of the given subcommand(s)

    Options:
          --root <DIR>  The deploy root [default: $RELMAN_ROOT, else the working directory]
          --json        Print one JSON document on stdout instead of text
      -h, --help        Print help
      -V, --version     Print version

    Exit codes: 0 done; 1 failed, nothing live changed; 2 usage or config error, nothing changed;
    3 the new release failed its checks and the previous one is live and healthy;
    4 could not get back to a healthy state: a person must look (the message says what is live).

    Docs: docs/guide.md (setup), docs/reference.md (commands, config), docs/troubleshooting.md
    --- stderr ---
    ");
    assert_run_snapshot!(sb, sb.relman(&["init"]), @"
    exit code: 0
    --- stdout ---
    [TMP]/root
    --- stderr ---
    created `[TMP]/root`
    created `[TMP]/root/.relman`
    created `[TMP]/root/releases`
    created `[TMP]/root/shared`
    created `[TMP]/root/relman.toml`
    next: edit `[TMP]/root/relman.toml`, then `relman --root [TMP]/root deploy --source DIR`
    ");
    sb.write_config(&fast_config(""));
    assert_run_snapshot!(sb, sb.relman(&["activate", "../etc"]), @"
    exit code: 2
    --- stdout ---
    --- stderr ---
    error: invalid release ID `../etc`: use 1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit
    ");
    let src = sb.fixture_source("src");
    for id in ["a", "b", "c"] {
        build_ok(&sb, &src, id);
    }
    assert_run_snapshot!(sb, sb.relman(&["activate", "b", "--no-reload", "--no-probe"]), @"
    exit code: 0
    --- stdout ---
    b
    --- stderr ---
    b is live (was nothing) after [N] ms
    ");
    assert_run_snapshot!(sb, sb.relman(&["list"]), @"
    exit code: 0
    --- stdout ---
    ID  STATE     CREATED                   REVISION         SIZE
    c   sealed    [TIME]  -            [SIZE]
    b   sealed    [TIME]  -            [SIZE]  current
    a   sealed    [TIME]  -            [SIZE]  rollback target
    --- stderr ---
    ");
    write_file(&sb.release_dir("a").join("extra.txt"), "added\n");
    assert_run_snapshot!(sb, sb.relman(&["verify", "a"]), @"
    exit code: 1
    --- stdout ---
    added    extra.txt
    --- stderr ---
    error: release a does not match its manifest: 0 changed, 0 missing, 1 added; build a new release rather than editing one in place
    ");
    assert_run_snapshot!(sb, sb.relman(&["prune", "--keep", "1", "--dry-run"]), @"
    exit code: 0
    --- stdout ---
    --- stderr ---
    kept c (the newest sealed)
    kept b (current)
    kept a (rollback target)
    would delete 0 releases, [SIZE] freed; 3 kept
    ");
    sb.write_config("[build]\ninstal = \"npm ci\"\n");
    assert_run_snapshot!(sb, sb.relman(&["list"]), @"
    exit code: 0
    --- stdout ---
    ID  STATE     CREATED                   REVISION         SIZE
    c   sealed    [TIME]  -            [SIZE]
    b   sealed    [TIME]  -            [SIZE]  current
    a   sealed    [TIME]  -            [SIZE]  rollback target
    --- stderr ---
    ");
    assert_run_snapshot!(sb, sb.relman(&["status"]), @"
    exit code: 2
    --- stdout ---
    --- stderr ---
    error: invalid config `[TMP]/root/relman.toml`: `build.instal` (line 2): unknown field `instal`, expected one of `install`, `command`, `expect`, `env`, `timeout_secs`, `reuse_node_modules`, `static_from`
    ");
}

#[test]
fn deploy_builds_activates_and_prunes_in_one_command() {
    let sb = Sandbox::with_config(&fast_config("[retention]\nkeep = 2\n"));
    let src = sb.fixture_source("src");
    for id in ["old1", "old2", "old3"] {
        build_ok(&sb, &src, id);
    }
    let run = sb.relman(&[
        "deploy",
        "--source",
        s(&src),
        "--id",
        "new",
        "--no-reload",
        "--no-probe",
    ]);
    run.ok();
    assert_eq!(run.stdout, "new\n", "stdout is what is live\n{run}");
    assert!(run.stderr.contains("sealed release new"), "{run}");
    assert!(run.stderr.contains("new is live (was nothing)"), "{run}");
    assert_eq!(
        fs::read_link(sb.root.join("current")).unwrap(),
        Path::new("releases/new")
    );
    // retention.keep = 2: the two newest sealed ones stay, `new` among them.
    assert_eq!(sb.release_ids(), ["new", "old3"], "{run}");

    // The JSON document holds the three steps.
    let run = sb.relman(&[
        "deploy",
        "--source",
        s(&src),
        "--id",
        "next",
        "--no-reload",
        "--no-probe",
        "--json",
    ]);
    run.ok();
    let report = run.json();
    assert_eq!(report["build"]["id"], "next");
    assert_eq!(report["activate"]["result"], "ok");
    assert_eq!(report["prune"]["deleted"][0], "old3", "{report}");

    // A failed build changes nothing live: exit 1, `current` untouched, nothing pruned.
    write_file(&src.join("FAIL"), "");
    let before = sb.release_ids();
    let run = sb.relman(&[
        "deploy",
        "--source",
        s(&src),
        "--id",
        "broken",
        "--no-reload",
        "--no-probe",
    ]);
    run.expect_code(1);
    run.expect_error_line();
    assert_eq!(
        fs::read_link(sb.root.join("current")).unwrap(),
        Path::new("releases/next")
    );
    let after = sb.release_ids();
    assert!(
        before.iter().all(|id| after.contains(id)),
        "nothing pruned: {before:?} -> {after:?}"
    );
}

#[test]
fn init_for_an_app_writes_its_config_and_ecosystem_file_and_never_overwrites_them() {
    use crate::support::assert_run_snapshot;
    let sb = Sandbox::new();
    let src = sb.path("web");
    write_file(
        &src.join("package.json"),
        r#"{"name":"web","scripts":{"build":"next build"},"dependencies":{"next":"16.4.3","react":"19.2.0"}}"#,
    );
    write_file(&src.join("pnpm-lock.yaml"), "lockfileVersion: '9.0'\n");
    assert_run_snapshot!(sb, sb.relman(&["init", "--app", "web", "--port", "3000", "--source", s(&src)]), @"
    exit code: 0
    --- stdout ---
    [TMP]/root
    --- stderr ---
    for a Next.js app (`next build`, served by a draining `next-server.js`), installed with `pnpm install --frozen-lockfile`
    created `[TMP]/root`
    created `[TMP]/root/.relman`
    created `[TMP]/root/releases`
    created `[TMP]/root/shared`
    created `[TMP]/root/relman.toml`
    created `[TMP]/root/ecosystem.config.js`
    created `[TMP]/root/next-server.js`
    next: relman --root [TMP]/root deploy
    ");
    let config = read_file(&sb.root.join("relman.toml"));
    // The Server Actions key is random: its value is shown as [KEY].
    let set: Vec<String> = config
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
        .map(
            |l| match l.split_once("NEXT_SERVER_ACTIONS_ENCRYPTION_KEY = \"") {
                Some((head, rest)) => {
                    let key = rest.split('"').next().unwrap();
                    assert_eq!(key.len(), 44, "32 bytes in base64: {l}");
                    format!(
                        "{head}NEXT_SERVER_ACTIONS_ENCRYPTION_KEY = \"[KEY]{}",
                        &rest[key.len()..]
                    )
                }
                None => l.to_owned(),
            },
        )
        .collect();
    let set = set
        .join("\n")
        .replace(&sb.base().display().to_string(), "[TMP]");
    insta::assert_snapshot!(set, @r#"
    path = "[TMP]/web" # default for `relman build --source`
    install = "pnpm install --frozen-lockfile" # empty: skip
    command = "pnpm run build"     # empty: skip
    expect = [".next/BUILD_ID"]    # paths that must exist after the build
    env = { NEXT_SERVER_ACTIONS_ENCRYPTION_KEY = "[KEY]" } # extra environment for both commands
    app = "web"                    # the PM2 app name; empty: no reload
    command = "node [TMP]/root/next-server.js" # e.g. "node_modules/.bin/next start -p {port}"; empty: no preflight
    url = "http://127.0.0.1:{port}/" # e.g. "http://127.0.0.1:{port}/api/health"
    url = "http://127.0.0.1:3000/" # e.g. "http://127.0.0.1:3000/api/health"; empty: no probe
    "#);
    let ecosystem = read_file(&sb.root.join("ecosystem.config.js"));
    // The key is in both files, which are then the owner's alone.
    let key_line = config
        .lines()
        .find(|l| l.contains("NEXT_SERVER_ACTIONS_ENCRYPTION_KEY"))
        .unwrap();
    let key = key_line.split('"').nth(1).unwrap();
    assert!(
        ecosystem.contains(&format!("NEXT_SERVER_ACTIONS_ENCRYPTION_KEY: \"{key}\"")),
        "{ecosystem}"
    );
    for file in ["relman.toml", "ecosystem.config.js"] {
        assert_eq!(mode_of(&sb.root.join(file)) & 0o777, 0o600, "{file}");
    }
    assert_eq!(mode_of(&sb.root.join("next-server.js")) & 0o777, 0o644);
    assert!(
        ecosystem.contains(&format!("cwd: \"{}\",", sb.root.join("current").display())),
        "{ecosystem}"
    );
    // The config is valid: list reads it.
    assert_ne!(sb.relman(&["list"]).code, 2);

    // A second run, even for another app, changes nothing and says so.
    // (The lock file holds the last holder's description.)
    let before = snapshot_tree(&sb.root).without(&[".relman/lock"]);
    let run = sb.relman(&["init", "--app", "shop", "--port", "4000"]);
    run.ok();
    assert!(run.stderr.contains("kept"), "{run}");
    before.assert_same(
        &snapshot_tree(&sb.root).without(&[".relman/lock"]),
        &"a second init",
    );

    // Bad input: one line, exit 2, nothing created.
    let other = Sandbox::new();
    for (args, says) in [
        (vec!["--app", "web", "--port", "0"], "invalid value '0'"),
        (vec!["--port", "3000"], "--app"),
        (vec!["--app", "42", "--port", "3000"], "invalid app name"),
        (
            vec!["--app", "web", "--port", "3000", "--source", "/nonexistent"],
            "is not a directory",
        ),
        (
            vec!["--app", "web", "--port", "3000", "--source", s(&sb.root)],
            "package.json` does not exist",
        ),
    ] {
        let mut all = vec!["init"];
        all.extend(args);
        let run = other.relman(&all);
        run.expect_code(2);
        assert!(run.stderr.contains(says), "{all:?}: {run}");
        assert!(!other.root.exists(), "{all:?} created the root");
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_itself() {
    let sb = Sandbox::new();
    for (shell, marker) in [
        ("bash", "complete -F _relman"),
        ("zsh", "#compdef relman"),
        ("fish", "complete -c relman"),
    ] {
        let run = sb.relman(&["completions", shell]);
        run.ok();
        assert!(run.stdout.contains(marker), "{shell}: {run}");
        assert!(run.stdout.contains("deploy"), "{shell} knows every command");
    }
    let run = sb.relman(&["man"]);
    run.ok();
    assert!(run.stdout.starts_with(".ie"), "roff: {run}");
    assert!(run.stdout.contains("relman"));
    let run = sb.relman(&["completions", "tcsh"]);
    run.expect_code(2);
    assert!(run.stderr.contains("possible values"), "{run}");
    assert!(!sb.root.exists(), "nothing created");
}

#[test]
fn a_next_build_starts_from_the_newest_releases_build_cache_when_lockfile_and_next_match() {
    // A stand-in for Next.js: the install writes `node_modules/next/package.json` with the
    // version in the source's NEXT file; the build counts its runs in `.next/cache/turbopack`
    // and writes an image cache as a running app would.
    let install = r#"mkdir -p node_modules/next && printf '{"version":"%s"}' "$(cat NEXT)" > node_modules/next/package.json"#;
    let command = r#"mkdir -p .next/cache/turbopack .next/cache/images build && n=$(cat .next/cache/turbopack/runs 2>/dev/null || echo 0) && echo $((n + 1)) > .next/cache/turbopack/runs && echo x > .next/cache/images/$RELMAN_RELEASE && echo "$RELMAN_RELEASE" > build/BUILD_ID"#;
    let sb = Sandbox::with_config(&config(install, command, ""));
    let src = sb.path("src");
    write_file(&src.join("package-lock.json"), "{}\n");
    write_file(&src.join("NEXT"), "16.4.3");
    let runs = |id: &str| read_file(&sb.release_dir(id).join(".next/cache/turbopack/runs"));
    let images = |id: &str| {
        let mut names: Vec<String> = fs::read_dir(sb.release_dir(id).join(".next/cache/images"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    build_ok(&sb, &src, "a");
    assert_eq!(runs("a"), "1\n", "the first build is cold");
    let run = build_ok(&sb, &src, "b");
    assert!(run.stderr.contains("build cache from a"), "{run}");
    assert_eq!(runs("b"), "2\n", "the second starts from a's cache");
    assert_eq!(
        images("b"),
        ["b"],
        "the running app's caches are not carried"
    );
    let seal: Value = serde_json::from_str(&read_file(
        &sb.release_dir("b").join(".relman/release.json"),
    ))
    .unwrap();
    assert_eq!(seal["warm_cache_from"], "a");
    // The release the cache came from is unchanged, and still verifies.
    assert_eq!(runs("a"), "1\n");
    sb.relman(&["verify", "a"]).ok();

    // Another Next.js version under the same lockfile (installed afresh, not reused): cold.
    sb.write_config(&config(install, command, "reuse_node_modules = false"));
    write_file(&src.join("NEXT"), "16.5.0");
    let run = sb.relman(&["build", "--source", s(&src), "--id", "c", "--json"]);
    run.ok();
    assert_eq!(run.json()["warm_cache_from"], Value::Null, "{run}");
    assert_eq!(runs("c"), "1\n");
    sb.write_config(&config(install, command, ""));
    // Another lockfile: cold.
    write_file(&src.join("package-lock.json"), "{\"changed\":1}\n");
    build_ok(&sb, &src, "d");
    assert_eq!(runs("d"), "1\n");
    // --no-reuse: cold.
    build_ok(&sb, &src, "e");
    assert_eq!(runs("e"), "2\n");
    let run = sb.relman(&["build", "--source", s(&src), "--id", "f", "--no-reuse"]);
    run.ok();
    assert_eq!(runs("f"), "1\n", "{run}");
}

/// A build wrote nothing into `outside`, a directory out of its release it was given a
/// symlink to.
fn assert_nothing_in(outside: &Path) {
    assert_eq!(
        fs::read_dir(outside).unwrap().count(),
        0,
        "nothing written outside the release"
    );
}

#[test]
fn a_build_adds_the_static_files_of_the_releases_before_it_and_never_replaces_its_own() {
    // A stand-in for `next build`: a chunk named after the release, a shared file every build
    // writes, and the deployment id it was given.
    let command = r#"mkdir -p .next/static/chunks build && echo "$RELMAN_RELEASE" > ".next/static/chunks/$RELMAN_RELEASE.js" && echo "$RELMAN_RELEASE" > .next/static/shared.js && echo "$NEXT_DEPLOYMENT_ID" > build/dpl && if [ -e LINK ]; then rm -rf .next/static/chunks && ln -s "$(cat LINK)" .next/static/chunks; fi && echo "$RELMAN_RELEASE" > build/BUILD_ID"#;
    let sb = Sandbox::with_config(&config("", command, "static_from = 1"));
    let src = sb.path("src");
    write_file(&src.join("index.js"), "\n");
    let read = |id: &str, path: &str| read_file(&sb.release_dir(id).join(path));
    for id in ["a", "b", "c"] {
        build_ok(&sb, &src, id);
        assert_eq!(
            read(id, "build/dpl"),
            format!("{id}\n"),
            "NEXT_DEPLOYMENT_ID"
        );
    }
    // b got a's chunk; c got b's (and with it a's, which b carries) but none replaced its own.
    assert_eq!(read("b", ".next/static/chunks/a.js"), "a\n");
    assert_eq!(read("c", ".next/static/chunks/b.js"), "b\n");
    assert_eq!(read("c", ".next/static/chunks/a.js"), "a\n");
    assert_eq!(read("c", ".next/static/shared.js"), "c\n");
    // The added files are part of the release: it verifies.
    sb.relman(&["verify", "c"]).ok();

    // static_from = 0: nothing is added.
    sb.write_config(&config("", command, "static_from = 0"));
    build_ok(&sb, &src, "d");
    assert!(
        !sb.release_dir("d")
            .join(".next/static/chunks/c.js")
            .exists()
    );

    // A build that made `chunks` a symlink out of its release: nothing is written through it.
    sb.write_config(&config("", command, "static_from = 2"));
    let outside = sb.path("outside");
    fs::create_dir_all(&outside).unwrap();
    write_file(&src.join("LINK"), s(&outside));
    build_ok(&sb, &src, "e");
    assert_nothing_in(&outside);

    // A bound on the key.
    sb.write_config(&config("", command, "static_from = 51"));
    let run = sb.relman(&["build", "--source", s(&src), "--id", "f"]);
    run.expect_code(2);
    assert!(run.stderr.contains("build.static_from"), "{run}");
}

#[test]
fn a_standalone_build_serves_its_static_files_and_public_through_links_to_its_own() {
    // A stand-in for `next build` with `output: 'standalone'`: a chunk named after the release,
    // the standalone server and its `.next`, and (when the source says) what the build itself
    // did to `.next/standalone`: copied `.next/static` there, or made its `.next` a symlink.
    let command = r#"mkdir -p .next/static/chunks .next/standalone build && echo "$RELMAN_RELEASE" > ".next/static/chunks/$RELMAN_RELEASE.js" && echo "// server" > .next/standalone/server.js && if [ -e LINK ]; then ln -s "$(cat LINK)" .next/standalone/.next; else mkdir .next/standalone/.next; fi && if [ -e COPY ]; then cp -r .next/static .next/standalone/.next/; fi && echo "$RELMAN_RELEASE" > build/BUILD_ID"#;
    let sb = Sandbox::with_config(&config("", command, ""));
    let src = sb.path("src");
    write_file(&src.join("public/robots.txt"), "robots\n");
    let dir = |id: &str| sb.release_dir(id);
    build_ok(&sb, &src, "a");
    build_ok(&sb, &src, "b");
    // Links inside the release to its own files: served as they are, stored once.
    let link = |id: &str, path: &str| fs::read_link(dir(id).join(path)).unwrap();
    assert_eq!(
        link("b", ".next/standalone/public"),
        Path::new("../../public")
    );
    assert_eq!(
        link("b", ".next/standalone/.next/static"),
        Path::new("../../../.next/static")
    );
    assert_eq!(
        read_file(&dir("b").join(".next/standalone/public/robots.txt")),
        "robots\n"
    );
    // Through the link, the older release's chunk that b's build added (skew protection).
    assert_eq!(
        read_file(&dir("b").join(".next/standalone/.next/static/chunks/a.js")),
        "a\n"
    );
    let run = sb.relman(&["build", "--source", s(&src), "--id", "c", "--json"]);
    run.ok();
    assert!(run.json()["durations_ms"]["standalone"].is_u64(), "{run}");
    sb.relman(&["verify", "c"]).ok();

    // A build that copied `.next/static` itself: its copy is kept and given what it lacks.
    write_file(&src.join("COPY"), "");
    build_ok(&sb, &src, "d");
    let copied = dir("d").join(".next/standalone/.next/static");
    assert!(!copied.is_symlink());
    assert_eq!(read_file(&copied.join("chunks/d.js")), "d\n");
    assert_eq!(read_file(&copied.join("chunks/c.js")), "c\n");
    fs::remove_file(src.join("COPY")).unwrap();

    // A build that made `.next/standalone/.next` a symlink out of its release: nothing is
    // written through it.
    let outside = sb.path("outside");
    fs::create_dir_all(&outside).unwrap();
    write_file(&src.join("LINK"), s(&outside));
    build_ok(&sb, &src, "e");
    assert_nothing_in(&outside);
    // Not a standalone build: no such step.
    sb.write_config(&config("", "mkdir -p build && echo f > build/BUILD_ID", ""));
    let run = sb.relman(&["build", "--source", s(&src), "--id", "f", "--json"]);
    run.ok();
    assert_eq!(
        run.json()["durations_ms"]["standalone"],
        Value::Null,
        "{run}"
    );
}

#[test]
fn an_app_dir_that_is_not_in_the_source_is_refused_before_anything_changes() {
    use crate::support::snapshot_tree;
    let sb = Sandbox::new();
    let src = sb.path("shop");
    write_file(&src.join("package.json"), r#"{"private":true}"#);
    write_file(
        &src.join("apps/web/package.json"),
        r#"{"dependencies":{"next":"16.4.3"}}"#,
    );
    let outside = sb.path("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("apps/api")).unwrap();
    // init: not a directory of the source, a symlink, or not relative: exit 2, no root.
    for bad in ["apps/admin", "apps/api", "../shop", "/srv"] {
        let run = sb.relman(&[
            "init",
            "--app",
            "shop",
            "--port",
            "3000",
            "--source",
            s(&src),
            "--app-dir",
            bad,
        ]);
        run.expect_code(2);
        assert!(run.stderr.contains("--app-dir"), "{bad}: {run}");
        assert_eq!(run.stderr.lines().count(), 1, "{bad}: {run}");
        assert!(!sb.root.exists(), "{bad}: nothing created");
    }
    // build: `source.app_dir` missing from the source: exit 2, no release claimed.
    sb.relman(&["init"]).ok();
    for bad in ["apps/admin", "apps/api"] {
        sb.write_config(&format!(
            "[source]\napp_dir = \"{bad}\"\n[build]\ninstall = \"\"\ncommand = \"\"\nexpect = []\n"
        ));
        let before = snapshot_tree(&sb.root);
        let run = sb.relman(&["build", "--source", s(&src)]);
        run.expect_code(2);
        assert!(run.stderr.contains("source.app_dir"), "{bad}: {run}");
        assert_eq!(snapshot_tree(&sb.root), before, "{bad}: nothing changed");
    }
    // Where it is: the build's `expect` is the app's.
    sb.write_config(
        "[source]\napp_dir = \"apps/web\"\n[build]\ninstall = \"\"\ncommand = \"cd apps/web && mkdir -p .next && echo x > .next/BUILD_ID\"\nexpect = [\".next/BUILD_ID\"]\n",
    );
    sb.relman(&["build", "--source", s(&src), "--id", "a"]).ok();
}

#[test]
fn list_and_status_read_the_history_only_as_far_back_as_the_releases_on_disk() {
    let sb = Sandbox::with_config(&config("", "mkdir -p build && echo x > build/BUILD_ID", ""));
    let src = sb.path("src");
    write_file(&src.join("index.js"), "\n");
    for id in ["a", "b", "c"] {
        build_ok(&sb, &src, id);
    }
    for id in ["a", "b", "c"] {
        sb.relman(&["activate", id, "--no-reload", "--no-probe"])
            .ok();
    }
    sb.relman(&["rollback", "--no-reload", "--no-probe"]).ok();
    let history = sb.root.join(".relman/history.jsonl");
    let recent = read_file(&history);
    let list = sb.relman(&["list", "--json"]);
    let status = sb.relman(&["status", "--json"]);
    // A year of older entries about releases pruned long ago, one of them malformed.
    let mut old = String::new();
    for i in 0..5000 {
        old.push_str(&format!(
            "{{\"at\":\"2025-01-01T00:{:02}:{:02}Z\",\"action\":\"rollback\",\"from\":\"c\",\"to\":\"old{i}\",\"result\":\"ok\",\"reason\":null,\"durations_ms\":{{}}}}\n",
            i / 60 % 60,
            i % 60
        ));
        if i == 10 {
            old.push_str("{not json\n");
        }
    }
    fs::write(&history, format!("{old}{recent}")).unwrap();
    // The same answers (the old `rollback` entries away from `c` concern another `c`, pruned
    // long before this one was built), and the bad line is not in what they read.
    assert_eq!(sb.relman(&["list", "--json"]).json(), list.json());
    assert_eq!(sb.relman(&["status", "--json"]).json(), status.json());
    // `history` reads it all and names the bad line.
    let run = sb.relman(&["history"]);
    run.expect_code(1);
    assert!(run.stderr.contains("line 12"), "{run}");
}
