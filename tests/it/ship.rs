//! `relman pack` and `relman receive`: a release built on one deploy root, shipped as one
//! stream and sealed on another; and every stream that must be refused (truncated anywhere,
//! tampered, for another platform, escaping the release), leaving nothing sealed.
//!
//! The streams are taken apart and put back together here with the same `tar` and `zstd`
//! crates relman uses, so each test changes exactly one thing in an otherwise valid stream.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    self, Run, Sandbox, read_file, run_command, snapshot_tree, wait_for, write_file,
};

/// The build command: plain `sh`. Besides `build/BUILD_ID` it writes a `node_modules` with
/// `.bin` links (left out of the manifest and its sidecar, so only the stream's own lists vouch
/// for them), a path and a link target longer than a tar header holds, a read-only
/// file, and, when the source asks: a native addon (`NATIVE`), 4 MB of random bytes (`BIG`),
/// a symlink to the directory named in `LINK_OUT`, prerendered pages that a Next.js server
/// rewrites at run time (`PAGES`), or a failure (`FAIL`).
const BUILD_SCRIPT: &str = r#"if [ -e FAIL ]; then echo "failing on purpose" >&2; exit 3; fi
mkdir -p build node_modules/dep/lib
echo "$RELMAN_RELEASE" > build/BUILD_ID
echo 'module.exports = 42' > node_modules/dep/index.js
echo 'exports.x = 1' > node_modules/dep/lib/x.js
mkdir -p node_modules/.bin && ln -s ../dep/index.js node_modules/.bin/dep
deep=node_modules/@scope/a-package-with-a-rather-long-name/dist/esm/internal/utilities/of/many/levels
mkdir -p $deep && echo 'export default 1' > $deep/index-with-a-long-name-past-tar-s-hundred-bytes.js
ln -s ../$deep/index-with-a-long-name-past-tar-s-hundred-bytes.js node_modules/.bin/deep
echo frozen > build/frozen.txt && chmod 0444 build/frozen.txt
ln -s ../server.js build/entry.js
if [ -e NATIVE ]; then mkdir -p node_modules/x/build/Release && echo ELF > node_modules/x/build/Release/x.node; fi
if [ -e BIG ]; then head -c 4000000 /dev/urandom > build/big.bin; fi
if [ -e LINK_OUT ]; then ln -s "$(cat LINK_OUT)" build/out; fi
if [ -e PAGES ]; then mkdir -p .next/server/app && echo built > .next/server/app/index.html && echo built > .next/server/app/gone.html; fi"#;

/// A `relman.toml` with the shell build and `extra` after the `[build]` table.
fn config(extra: &str) -> String {
    format!(
        "[build]\ninstall = ''\ncommand = '''{BUILD_SCRIPT}'''\nexpect = [\"build/BUILD_ID\"]\n{extra}\n"
    )
}

/// Shared paths, with a `[shared]` table.
const SHARED: &str = "[shared]\npaths = [\".env.production\", \"public/uploads\"]";

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 test path")
}

/// A deploy root with `config` and its shared paths present, holding `label` in them.
fn root_with_shared(config: &str, label: &str) -> Sandbox {
    let sb = Sandbox::with_config(config);
    write_file(
        &sb.root.join("shared/.env.production"),
        format!("HOST={label}\n"),
    );
    write_file(&sb.root.join("shared/public/uploads/logo.png"), label);
    sb
}

/// A small app of its own (not the shared fixture, whose files other features add to), so
/// the counts below stay put: 4 files, and 5 more from the build.
fn source(sb: &Sandbox) -> PathBuf {
    let src = sb.path("src");
    write_file(
        &src.join("server.js"),
        "const http = require('http');\n// One line long enough to flip a byte and cut inside it.\nhttp.createServer((req, res) => res.end(process.env.RELMAN_RELEASE || 'dev')).listen(process.env.PORT || 3000);\n",
    );
    write_file(
        &src.join("package.json"),
        "{\"name\": \"shipped\", \"private\": true}\n",
    );
    write_file(
        &src.join("README.md"),
        "An app that is built once and shipped.\n",
    );
    write_file(&src.join("public/robots.txt"), "robots\n");
    src
}

/// The sending side: a root with shared paths and release `id` built from [`source`], with
/// the given marker files in the source (`NATIVE`, `BIG`, ...).
fn sender(id: &str, markers: &[(&str, &str)]) -> Sandbox {
    let sb = root_with_shared(&config(SHARED), "sender");
    let src = source(&sb);
    for (name, contents) in markers {
        write_file(&src.join(name), contents);
    }
    sb.relman(&["build", "--source", s(&src), "--id", id]).ok();
    sb
}

/// `relman pack ID --output FILE` on `sb`, which must succeed; returns the file.
#[track_caller]
fn pack(sb: &Sandbox, id: &str) -> PathBuf {
    let file = sb.path(&format!("{id}.tar.zst"));
    sb.relman(&["pack", id, "--output", s(&file)]).ok();
    file
}

/// `relman receive` on `sb` with `stream` on its stdin.
fn receive(sb: &Sandbox, stream: &Path, args: &[&str]) -> Run {
    let mut command = sb.command(&[&["receive"], args].concat());
    command.stdin(fs::File::open(stream).expect("open the stream"));
    run_command(command)
}

/// `relman receive` with `bytes` as the stream.
fn receive_bytes(sb: &Sandbox, bytes: &[u8], args: &[&str]) -> Run {
    let file = sb.path("streams/edited.tar.zst");
    write_file(&file, bytes);
    receive(sb, &file, args)
}

/// `(id, state)` of every release of `sb`.
fn states(sb: &Sandbox) -> Vec<(String, String)> {
    let run = sb.relman(&["list", "--json"]);
    run.ok();
    crate::support::release_states(&run.json())
}

/// The decompressed tar of a stream file.
fn tar_of(stream: &Path) -> Vec<u8> {
    zstd::decode_all(fs::File::open(stream).unwrap()).expect("a zstd stream")
}

fn compress(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}

/// Every entry of a tar: its path, where its header starts and where its data starts.
fn entries(tar: &[u8]) -> Vec<(String, u64, u64)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.path().unwrap().to_str().unwrap().to_owned(),
                entry.raw_header_position(),
                entry.raw_file_position(),
            )
        })
        .collect()
}

/// The offset of the data of entry `name`.
#[track_caller]
fn data_offset(tar: &[u8], name: &str) -> usize {
    let (_, _, data) = entries(tar)
        .into_iter()
        .find(|(path, _, _)| path == name)
        .unwrap_or_else(|| panic!("no entry {name}"));
    usize::try_from(data).unwrap()
}

/// The offset of the header of entry `name`: a cut there is at an entry boundary.
#[track_caller]
fn header_offset(tar: &[u8], name: &str) -> usize {
    let (_, header, _) = entries(tar)
        .into_iter()
        .find(|(path, _, _)| path == name)
        .unwrap_or_else(|| panic!("no entry {name}"));
    usize::try_from(header).unwrap()
}

/// The stream rebuilt entry by entry: `edit` may change an entry's header and data (the
/// header's size follows the data), and `insert` adds raw entries just before the one it is
/// asked about.
fn rebuild(
    stream: &Path,
    edit: impl FnMut(&str, &mut tar::Header, &mut Vec<u8>),
    insert: impl FnMut(&str) -> Vec<(tar::Header, Vec<u8>)>,
) -> Vec<u8> {
    rewrite(stream, edit, insert, |_| true)
}

/// [`rebuild`], leaving out the entries `keep` says no to.
fn rewrite(
    stream: &Path,
    mut edit: impl FnMut(&str, &mut tar::Header, &mut Vec<u8>),
    mut insert: impl FnMut(&str) -> Vec<(tar::Header, Vec<u8>)>,
    mut keep: impl FnMut(&str) -> bool,
) -> Vec<u8> {
    let tar = tar_of(stream);
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut out = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_str().unwrap().to_owned();
        for (header, data) in insert(&path) {
            out.append(&header, data.as_slice()).unwrap();
        }
        if !keep(&path) {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let mut header = entry.header().clone();
        // The header holds at most 100 bytes of a path or a link's target; longer ones came
        // in tar's GNU extension, and the builder's own calls write them so again.
        let in_header = |header: &tar::Header| header.link_name().unwrap().map(|l| l.into_owned());
        let before = in_header(&header);
        let full_target = entry.link_name().unwrap().map(|t| t.into_owned());
        edit(&path, &mut header, &mut data);
        header.set_size(data.len() as u64);
        let after = in_header(&header);
        let target = if after == before { full_target } else { after };
        match target {
            Some(target) => out.append_link(&mut header, &path, target).unwrap(),
            None => out
                .append_data(&mut header, &path, data.as_slice())
                .unwrap(),
        }
    }
    compress(&out.into_inner().unwrap())
}

/// A raw header whose name is written as given, unchecked (`tar` refuses to write `..`).
fn raw_header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let field = &mut header.as_old_mut().name;
    field[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_cksum();
    header
}

/// Asserts a refused receive: exit `code`, one `error:` line mentioning each of `mentions`,
/// nothing sealed, no release directory left, and the receiver's tree unchanged outside
/// `.relman/lock`.
#[track_caller]
fn assert_refused(sb: &Sandbox, stream: &[u8], code: i32, mentions: &[&str]) -> String {
    let before = snapshot_tree(&sb.root);
    let run = receive_bytes(sb, stream, &[]);
    run.expect_code(code);
    let message = run.expect_error_line().to_owned();
    for mention in mentions {
        assert!(
            message.contains(mention),
            "should mention {mention:?}\n{run}"
        );
    }
    assert!(
        states(sb).iter().all(|(_, state)| state != "sealed"),
        "nothing sealed\n{run}"
    );
    assert_eq!(sb.release_ids(), Vec::<String>::new(), "{run}");
    // A receive that got as far as claiming its ID made and removed its directory: the
    // times of `releases/` and `.relman/` may change, nothing else.
    let ignored = [".relman/lock"];
    before.without(&ignored).without_times().assert_same(
        &snapshot_tree(&sb.root).without(&ignored).without_times(),
        &run,
    );
    message
}

#[test]
fn a_packed_release_is_received_sealed_verified_and_linked_to_this_host_s_shared_paths() {
    use crate::support::assert_run_snapshot;
    let from = sender("r1", &[]);
    let stream = pack(&from, "r1");
    let to = root_with_shared(&config(SHARED), "receiver");

    let run = receive(&to, &stream, &[]);
    assert_run_snapshot!(to, run, @"
    exit code: 0
    --- stdout ---
    r1
    --- stderr ---
    received and sealed release r1: 9 files, [SIZE]
    ");
    assert_eq!(states(&to), [("r1".into(), "sealed".into())]);
    to.relman(&["verify", "r1"]).ok();

    let sent = from.release_dir("r1");
    let got = to.release_dir("r1");
    // The same manifest and sidecar, byte for byte, and the same seal.
    for file in [
        ".relman/manifest.sha256",
        ".relman/manifest.meta",
        ".relman/release.json",
    ] {
        assert_eq!(
            read_file(&sent.join(file)),
            read_file(&got.join(file)),
            "{file}"
        );
    }
    // The whole tree as sent, modes, symlinks and mtimes of files included; `.relman/` holds
    // the receiver's own build.log instead of the sender's.
    let tree = |dir: &Path| snapshot_tree(dir).without(&[".relman"]).without_times();
    tree(&sent).assert_same(&tree(&got), &"the received tree");
    // Files keep their build's modification time (to the second, as tar keeps it), so a
    // static file has the same `Last-Modified` on every host.
    let mtime = |path: &Path| {
        fs::metadata(path)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    assert_eq!(
        mtime(&sent.join("server.js")),
        mtime(&got.join("server.js"))
    );
    assert_eq!(support::mode_of(&got.join("build/frozen.txt")), 0o444);
    assert_eq!(
        read_file(&got.join("node_modules/dep/index.js")),
        "module.exports = 42\n"
    );
    // Shared paths are this host's: links into its own shared/, never the sender's contents.
    assert_eq!(read_file(&got.join(".env.production")), "HOST=receiver\n");
    assert_eq!(read_file(&got.join("public/uploads/logo.png")), "receiver");
    assert_eq!(
        fs::read_link(got.join("public/uploads")).unwrap(),
        Path::new("../../../shared/public/uploads")
    );
    assert!(
        !tar_of(&stream)
            .windows(b"HOST=sender".len())
            .any(|w| w == b"HOST=sender"),
        "the sender's shared/ never travels"
    );
    // The received release goes live like a built one.
    to.relman(&["activate", "r1", "--no-reload", "--no-probe"])
        .ok();
}

#[test]
fn pack_to_stdout_pipes_into_receive_and_both_speak_json() {
    let from = sender("r1", &[]);
    let to = root_with_shared(&config(SHARED), "receiver");
    // `relman pack r1 | relman receive --json`, as a shell would run it.
    let mut packer = from.command(&["pack", "r1"]);
    packer.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut packer = packer.spawn().unwrap();
    let mut receiver = to.command(&["receive", "--json"]);
    receiver.stdin(packer.stdout.take().unwrap());
    let run = run_command(receiver);
    assert!(packer.wait().unwrap().success());
    run.ok();
    let report = run.json();
    assert_eq!(report["id"], "r1", "{run}");
    assert_eq!(report["state"], "sealed", "{run}");
    assert_eq!(report["received"], true, "{run}");
    assert_eq!(report["files"], 9, "{run}");
    assert!(report["bytes"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(report["warnings"], Value::Array(vec![]), "{run}");

    let file = from.path("r1.tar.zst");
    let run = from.relman(&["pack", "r1", "--output", s(&file), "--json"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["id"], "r1", "{run}");
    assert_eq!(report["files"], 9, "{run}");
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        fs::metadata(&file).unwrap().len(),
        "{run}"
    );
    // `--json` with the stream on stdout is a usage error.
    let run = from.relman(&["pack", "r1", "--json"]);
    run.expect_code(2);
    assert_eq!(run.json()["code"], 2, "{run}");
}

#[test]
fn receiving_the_same_release_twice_is_a_no_op_and_a_different_one_is_refused() {
    use crate::support::assert_run_snapshot;
    let from = sender("r1", &[]);
    let stream = pack(&from, "r1");
    let to = root_with_shared(&config(SHARED), "receiver");
    receive(&to, &stream, &[]).ok();
    let before = snapshot_tree(&to.root);
    let run = receive(&to, &stream, &[]);
    assert_run_snapshot!(to, run, @"
    exit code: 0
    --- stdout ---
    r1
    --- stderr ---
    release r1 is already sealed here with the same manifest: nothing to do
    ");
    let run = receive(&to, &stream, &["--json"]);
    run.ok();
    assert_eq!(run.json()["received"], false, "{run}");
    let ignored = [".relman/lock"];
    before.without(&ignored).assert_same(
        &snapshot_tree(&to.root).without(&ignored),
        &"a second receive",
    );

    // Another build under the same ID is another release.
    let other = root_with_shared(&config(SHARED), "receiver");
    let src = other.fixture_source("src");
    write_file(&src.join("other.txt"), "another build\n");
    other
        .relman(&["build", "--source", s(&src), "--id", "r1"])
        .ok();
    let before = snapshot_tree(&other.root);
    let run = receive(&other, &stream, &[]);
    run.expect_code(1);
    assert!(
        run.expect_error_line()
            .contains("release r1 already exists here with a different manifest"),
        "{run}"
    );
    before
        .without(&ignored)
        .assert_same(&snapshot_tree(&other.root).without(&ignored), &run);

    // Something else under that name in `releases/`: refused, left as it is.
    let odd = root_with_shared(&config(SHARED), "receiver");
    write_file(&odd.release_dir("r1"), "not a release\n");
    let run = receive(&odd, &stream, &[]);
    run.expect_code(1);
    assert!(
        run.expect_error_line()
            .contains("exists and is not a release directory"),
        "{run}"
    );
    assert_eq!(read_file(&odd.release_dir("r1")), "not a release\n");
}

#[test]
fn a_truncated_stream_is_refused_wherever_it_is_cut() {
    let from = sender("r1", &[]);
    let stream = pack(&from, "r1");
    let to = root_with_shared(&config(SHARED), "receiver");
    let compressed = fs::read(&stream).unwrap();
    // Cut in the compressed bytes: the zstd frame is incomplete.
    for cut in [
        0,
        10,
        compressed.len() / 3,
        compressed.len() / 2,
        compressed.len() - 4,
    ] {
        assert_refused(
            &to,
            &compressed[..cut],
            1,
            &["stream refused, nothing sealed"],
        );
    }
    // Cut in the tar exactly at entry boundaries, then compressed whole: every zstd frame and
    // every tar entry is complete, and only the end marker tells the stream is short.
    let tar = tar_of(&stream);
    for name in [
        "relman/release.json",
        "tree/build",
        "tree/server.js",
        "relman/unlisted.sha256",
        "relman/end.json",
    ] {
        let cut = header_offset(&tar, name);
        let message = assert_refused(&to, &compress(&tar[..cut]), 1, &["nothing sealed"]);
        assert!(
            message.contains("cut short in transit"),
            "{name}: {message}"
        );
    }
    // In the middle of a file's data.
    let cut = data_offset(&tar, "tree/server.js") + 100;
    assert_refused(&to, &compress(&tar[..cut]), 1, &["cut short in transit"]);
    // Nothing at all: most often a `relman pack` that failed at the other end of the pipe.
    assert_refused(
        &to,
        b"",
        1,
        &["it is empty; if `relman pack` ran at the other end of a pipe, see its error"],
    );
    // Not a stream at all.
    assert_refused(&to, b"hello", 1, &["stream refused"]);
    assert_refused(&to, &compress(b"hello"), 1, &["stream refused"]);
}

#[test]
fn a_tampered_stream_is_refused() {
    use crate::support::assert_run_snapshot;
    let from = sender("r1", &[]);
    let stream = pack(&from, "r1");
    let to = root_with_shared(&config(SHARED), "receiver");
    let tar = tar_of(&stream);

    // One byte flipped in a file of the manifest, in the uncompressed tar.
    let mut edited = tar.clone();
    edited[data_offset(&tar, "tree/server.js") + 10] ^= 0x20;
    let edited = compress(&edited);
    assert_refused(
        &to,
        &edited,
        1,
        &["`server.js` does not match the release's manifest"],
    );
    assert_run_snapshot!(to, receive_bytes(&to, &edited, &[]), @"
    exit code: 1
    --- stdout ---
    --- stderr ---
    error: stream refused, nothing sealed: `server.js` does not match the release's manifest (changed or corrupted on the way); pack the release again and send it from `relman pack` unchanged
    ");

    // One byte flipped in node_modules, which only the stream's second list vouches for.
    let mut edited = tar.clone();
    edited[data_offset(&tar, "tree/node_modules/dep/index.js") + 3] ^= 0x01;
    assert_refused(
        &to,
        &compress(&edited),
        1,
        &["`node_modules/dep/index.js` does not match its hash in the stream"],
    );

    // A symlink of node_modules pointed elsewhere, and a file's mode changed: the sidecar
    // leaves node_modules out, the stream's own list does not.
    let retargeted = rebuild(
        &stream,
        |path, header, _| {
            if path == "tree/node_modules/.bin/dep" {
                header.set_link_name("/etc/passwd").unwrap();
            }
        },
        |_| vec![],
    );
    assert_refused(
        &to,
        &retargeted,
        1,
        &["symlink `node_modules/.bin/dep` is in neither the release's sidecar nor the list"],
    );
    let executable = rebuild(
        &stream,
        |path, header, _| {
            if path == "tree/node_modules/dep/index.js" {
                header.set_mode(0o755);
            }
        },
        |_| vec![],
    );
    assert_refused(
        &to,
        &executable,
        1,
        &["`node_modules/dep/index.js` does not have the mode listed in the stream"],
    );

    // A file that no list names, and a listed file that never comes.
    let extra = rebuild(
        &stream,
        |_, _, _| {},
        |path| {
            if path == "tree/server.js" {
                vec![(
                    raw_header("tree/added.js", tar::EntryType::Regular, 3),
                    b"x=1".to_vec(),
                )]
            } else {
                vec![]
            }
        },
    );
    assert_refused(
        &to,
        &extra,
        1,
        &["`added.js` is in neither the manifest nor the list"],
    );
    let removed = rewrite(
        &stream,
        |_, _, _| {},
        |_| vec![],
        |path| path != "tree/node_modules/dep/lib/x.js",
    );
    assert_refused(
        &to,
        &removed,
        1,
        &["`node_modules/dep/lib/x.js` is listed in the stream but never came in it"],
    );

    // A corrupted compressed byte: zstd's checksum or the hashes catch it.
    let mut compressed = fs::read(&stream).unwrap();
    let middle = compressed.len() / 2;
    compressed[middle] ^= 0xff;
    assert_refused(&to, &compressed, 1, &["stream refused"]);
}

#[test]
fn native_code_built_for_another_arch_is_refused_and_without_it_a_warning() {
    let from = sender("r1", &[("NATIVE", "")]);
    let seal: Value = serde_json::from_str(&read_file(
        &from.release_dir("r1").join(".relman/release.json"),
    ))
    .unwrap();
    // The build recorded Node's names for this host.
    let host = std::process::Command::new("node")
        .args(["-p", "process.platform + ' ' + process.arch"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8(out.stdout).unwrap().trim().to_owned());
    let recorded = format!(
        "{} {}",
        seal["platform"].as_str().unwrap(),
        seal["arch"].as_str().unwrap()
    );
    if let Some(host) = host {
        assert_eq!(recorded, host);
    }
    let other_arch = if seal["arch"] == "arm64" {
        "x64"
    } else {
        "arm64"
    };
    let stream = pack(&from, "r1");
    let to = root_with_shared(&config(SHARED), "receiver");
    let foreign = rebuild(
        &stream,
        |path, _, data| {
            if path == "relman/release.json" {
                let mut seal: Value = serde_json::from_slice(data).unwrap();
                seal["arch"] = other_arch.into();
                *data = serde_json::to_vec_pretty(&seal).unwrap();
            }
        },
        |_| vec![],
    );
    let message = assert_refused(
        &to,
        &foreign,
        1,
        &[
            "release r1 cannot run on this host",
            "native code (`node_modules/x/build/Release`)",
            &format!("arch {other_arch} (built) vs"),
            "build the release on a host with the same platform, arch and Node.js major version",
        ],
    );
    assert!(!message.contains('\n'));

    // The same stream from the real host is received.
    receive(&to, &stream, &[]).ok();

    // Without native code, another arch is only a warning.
    let from = sender("r2", &[]);
    let stream = pack(&from, "r2");
    let foreign = rebuild(
        &stream,
        |path, _, data| {
            if path == "relman/release.json" {
                let mut seal: Value = serde_json::from_slice(data).unwrap();
                seal["arch"] = other_arch.into();
                *data = serde_json::to_vec_pretty(&seal).unwrap();
            }
        },
        |_| vec![],
    );
    let run = receive_bytes(&to, &foreign, &["--json"]);
    run.ok();
    let warnings = run.json()["warnings"].clone();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("node_modules holds no native code, so it should run"),
        "{run}"
    );
    assert!(
        run.stderr.starts_with("warning: built on another host"),
        "{run}"
    );
}

#[test]
fn an_entry_escaping_the_release_is_refused_and_nothing_is_written_outside() {
    let outside = tempfile::tempdir().unwrap();
    let outside_path = fs::canonicalize(outside.path()).unwrap();
    let from = sender("r1", &[("LINK_OUT", s(&outside_path))]);
    let stream = pack(&from, "r1");
    let to = root_with_shared(&config(SHARED), "receiver");
    let base_before = snapshot_tree(&to.base())
        .without(&["root", "streams"])
        .without_times();

    let with = |name: &str, kind: tar::EntryType, data: &[u8]| {
        let data = data.to_vec();
        let name = name.to_owned();
        rebuild(
            &stream,
            |_, _, _| {},
            move |path| {
                if path == "tree/server.js" {
                    vec![(raw_header(&name, kind, data.len() as u64), data.clone())]
                } else {
                    vec![]
                }
            },
        )
    };
    for (name, why) in [
        ("tree/../evil", "is not a relative path inside the release"),
        (
            "tree/../../evil",
            "is not a relative path inside the release",
        ),
        (
            "tree/a/../../evil",
            "is not a relative path inside the release",
        ),
        (
            "tree//tmp/evil",
            "is not a relative path inside the release",
        ),
        ("/tmp/evil", "is not part of a release"),
        ("../evil", "is not part of a release"),
        ("tree/build/out/evil", "would go through a symlink"),
        ("tree/build/entry.js/evil", "would go through a symlink"),
        (
            "tree/.relman/release.json",
            "would write relman's own files",
        ),
    ] {
        assert_refused(
            &to,
            &with(name, tar::EntryType::Regular, b"evil"),
            1,
            &[why],
        );
    }
    for kind in [
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        assert_refused(
            &to,
            &with("tree/dev", kind, b""),
            1,
            &["a release holds only files, directories and symlinks"],
        );
    }
    assert_refused(
        &to,
        &with("tree/hard", tar::EntryType::Link, b""),
        1,
        &["is a hard link"],
    );
    // Nothing written outside the receiver's root, nor in the directory the release links to.
    assert_eq!(fs::read_dir(&outside_path).unwrap().count(), 0);
    base_before.assert_same(
        &snapshot_tree(&to.base())
            .without(&["root", "streams"])
            .without_times(),
        &"the receiver's sandbox outside its root",
    );
    assert!(!Path::new("/tmp/evil").exists());

    // The stream as packed is fine, and its link out stays a link, not followed.
    receive(&to, &stream, &[]).ok();
    assert_eq!(
        fs::read_link(to.release_dir("r1").join("build/out")).unwrap(),
        outside_path
    );
}

#[test]
fn only_a_sealed_release_that_verifies_is_packed() {
    let from = sender("r1", &[]);
    let src = from.fixture_source("failing");
    write_file(&src.join("FAIL"), "");
    from.relman(&["build", "--source", s(&src), "--id", "broken"])
        .expect_code(1);
    for (id, code, mention) in [
        ("nope", 1, "release nope does not exist"),
        ("broken", 1, "release broken is not sealed"),
        ("../x", 2, "invalid release ID"),
    ] {
        let file = from.path("out.tar.zst");
        let run = from.relman(&["pack", id, "--output", s(&file)]);
        run.expect_code(code);
        assert!(run.expect_one_line_error().contains(mention), "{run}");
        assert!(!file.exists(), "{run}");
    }
    // Never into a release.
    let run = from.relman(&[
        "pack",
        "r1",
        "--output",
        s(&from.release_dir("broken").join("x.tar.zst")),
    ]);
    run.expect_code(2);
    assert!(
        run.expect_one_line_error()
            .contains("relman never writes into a release")
    );
    // A sealed release that no longer matches its manifest.
    write_file(&from.release_dir("r1").join("server.js"), "changed\n");
    let file = from.path("out.tar.zst");
    let run = from.relman(&["pack", "r1", "--output", s(&file)]);
    run.expect_code(1);
    assert!(
        run.expect_one_line_error()
            .contains("release r1 does not match its manifest (1 changed"),
        "{run}"
    );
    assert!(!file.exists());
}

#[test]
fn a_shared_path_missing_on_the_receiver_is_a_usage_error_before_anything_is_created() {
    let from = sender("r1", &[]);
    let stream = pack(&from, "r1");
    // The receiver's config lists them but `shared/` lacks one.
    let to = Sandbox::with_config(&config(SHARED));
    write_file(&to.root.join("shared/.env.production"), "HOST=receiver\n");
    assert_refused(
        &to,
        &fs::read(&stream).unwrap(),
        2,
        &["shared path `public/uploads` is missing"],
    );
    // The receiver's config does not list them, and the release links to them anyway.
    let to = Sandbox::with_config(&config(""));
    assert_refused(
        &to,
        &fs::read(&stream).unwrap(),
        2,
        &["shared path `.env.production` is missing on this host"],
    );
}

/// Kills a receive when it is dropped.
struct Receiving(Child);

impl Drop for Receiving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_receive_in_progress_reads_building_and_killed_it_reads_failed() {
    let from = sender("big", &[("BIG", "")]);
    let stream = fs::read(pack(&from, "big")).unwrap();
    let to = root_with_shared(&config(SHARED), "receiver");
    let mut command = to.command(&["receive"]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = Receiving(command.spawn().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(&stream[..stream.len() / 2]).unwrap();
    stdin.flush().unwrap();
    wait_for(
        "the receive to claim its ID",
        Duration::from_secs(20),
        || (states(&to) == [("big".into(), "building".into())]).then_some(()),
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(stdin);
    assert_eq!(states(&to), [("big".to_owned(), "failed".to_owned())]);
    // Refused while it is there, with what to do; `prune` clears it.
    let run = receive_bytes(&to, &stream, &[]);
    run.expect_code(1);
    assert!(
        run.expect_error_line()
            .contains("release big already exists here unsealed"),
        "{run}"
    );
    to.relman(&["prune"]).ok();
    receive_bytes(&to, &stream, &[]).ok();
    assert_eq!(states(&to), [("big".to_owned(), "sealed".to_owned())]);
}

#[test]
fn neither_end_of_the_stream_is_a_terminal() {
    // util-linux's `script` gives the command a terminal.
    let script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !script {
        support::skipped_note("ship::neither_end_of_the_stream_is_a_terminal: `script` not found");
        return;
    }
    let from = sender("r1", &[]);
    let relman = support::relman_bin().to_str().unwrap().to_owned();
    let root = s(&from.root).to_owned();
    for (command, says) in [
        (
            format!("{relman} pack r1 --root {root}"),
            "error: stdout is a terminal: pipe the stream",
        ),
        (
            format!("{relman} receive --root {root}"),
            "error: stdin is a terminal: pipe a stream from `relman pack`",
        ),
    ] {
        let out = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("RELMAN_ROOT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{command}: {text}");
        assert!(text.contains(says), "{command}: {text}");
    }
}

#[test]
fn files_the_app_rewrote_at_run_time_travel_as_they_are_now() {
    let from = sender("r1", &[("PAGES", "")]);
    let release = from.release_dir("r1");
    // What a Next.js server does to a live release: regenerates a page, drops one, fills the
    // route cache. `verify` does not count these; neither do pack and receive.
    write_file(
        &release.join(".next/server/app/index.html"),
        "regenerated\n",
    );
    fs::remove_file(release.join(".next/server/app/gone.html")).unwrap();
    write_file(&release.join(".next/server/route-cache/a.json"), "{}\n");
    from.relman(&["verify", "r1"]).ok();
    let stream = pack(&from, "r1");
    let to = root_with_shared(&config(SHARED), "receiver");
    receive(&to, &stream, &[]).ok();
    let got = to.release_dir("r1");
    assert_eq!(
        read_file(&got.join(".next/server/app/index.html")),
        "regenerated\n"
    );
    assert!(!got.join(".next/server/app/gone.html").exists());
    assert_eq!(
        read_file(&got.join(".next/server/route-cache/a.json")),
        "{}\n"
    );
    let run = to.relman(&["verify", "r1", "--json"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["ok"], true, "{run}");
    assert_eq!(
        report["runtime"]["changed"][0], ".next/server/app/index.html",
        "{run}"
    );
    assert_eq!(
        report["runtime"]["missing"][0], ".next/server/app/gone.html",
        "{run}"
    );

    // Outside the run-time class the same change is a tampered stream.
    let tar = tar_of(&stream);
    let mut edited = tar.clone();
    edited[data_offset(&tar, "tree/build/BUILD_ID")] ^= 0x01;
    let fresh = root_with_shared(&config(SHARED), "receiver");
    assert_refused(
        &fresh,
        &compress(&edited),
        1,
        &["`build/BUILD_ID` does not match the release's manifest"],
    );
}

/// A stream with any one bit changed anywhere in its tar (header, name, mode, size, checksum,
/// data, padding, the stream's own lists and end record) is refused with exit 1 or 2 and
/// nothing sealed, or, where tar itself ignores the byte (padding, owner names), received as
/// exactly the release that was sent. Never half-accepted, never a panic. 200 positions spread
/// over the whole tar by a fixed sequence, plus every eighth byte of the first entry's header
/// (each of its fields at least once).
#[test]
fn a_stream_with_any_one_bit_changed_is_refused_or_received_identical() {
    let from = sender("r1", &[]);
    let stream = pack(&from, "r1");
    let tar = tar_of(&stream);
    let sent = snapshot_tree(&from.release_dir("r1"))
        .without(&[".relman"])
        .without_times();
    let mut positions: Vec<usize> = (0..512).step_by(8).collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..200 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        positions.push(usize::try_from(state >> 33).unwrap() % tar.len());
    }
    let mut receiver = root_with_shared(&config(SHARED), "receiver");
    let (mut refused, mut identical) = (0, 0);
    for (n, position) in positions.into_iter().enumerate() {
        let mut edited = tar.clone();
        edited[position] ^= 1 << (n % 8);
        let run = receive_bytes(&receiver, &compress(&edited), &[]);
        match run.code {
            1 | 2 => {
                run.expect_error_line();
                assert_eq!(
                    receiver.release_ids(),
                    Vec::<String>::new(),
                    "byte {position}: refused, and left a release behind\n{run}"
                );
                refused += 1;
            }
            0 => {
                receiver.relman(&["verify", "r1"]).ok();
                let got = snapshot_tree(&receiver.release_dir("r1"))
                    .without(&[".relman"])
                    .without_times();
                sent.assert_same(&got, &format!("byte {position} changed, received"));
                identical += 1;
                // The next edit goes to a root that has never seen r1.
                receiver = root_with_shared(&config(SHARED), "receiver");
            }
            _ => panic!("byte {position}: neither refused nor received\n{run}"),
        }
    }
    eprintln!("{refused} refused, {identical} received identical");
    assert!(refused > 100, "{refused} refused, {identical} identical");
}
