//! The SHA-256 manifest of a release: computed in parallel, written in `sha256sum` format,
//! compared against the tree to find what changed.
//!
//! The manifest covers regular files. Symlinks are neither followed nor hashed (shared paths
//! are symlinks whose targets are meant to change), and `.relman/` plus the configured
//! excludes are left out.
//!
//! Some files are the app's own to rewrite: a Next.js server fills `.next/server/route-cache`
//! on the first request to a static page and regenerates ISR pages in place. Those are still
//! hashed when the build leaves them, but `verify` reports their differences apart
//! ([`RuntimeFiles`]): a release that has served traffic must still verify, else a rollback
//! (the emergency path) to it would be refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::id::ReleaseId;
use crate::record::{MANIFEST_FILE, META_DIR, SEAL_FILE};
use crate::root::DeployRoot;

/// A manifest: relative path → SHA-256, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The entries.
    pub files: BTreeMap<String, [u8; 32]>,
    /// Total bytes hashed.
    pub bytes: u64,
}

/// Walks `dir` in order, calling `found` with the relative path of every regular file that
/// belongs in its manifest; stops early when `found` returns `false`.
fn walk(dir: &Utf8Path, exclude: &[String], mut found: impl FnMut(String) -> bool) -> Result<()> {
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| {
            let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            !(relative == std::path::Path::new(META_DIR)
                || exclude.iter().any(|e| relative.starts_with(e)))
        });
    for entry in walker {
        let entry = entry.map_err(|err| crate::fs::copy::walk_error(dir, err))?;
        // The type comes from the directory entry itself: no `stat` per file on this thread.
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let relative = relative
            .to_str()
            .ok_or_else(|| Error::NonUtf8Path(entry.path().display().to_string()))?
            .to_owned();
        if !found(relative) {
            break;
        }
    }
    Ok(())
}

/// Hashes every manifest file of `dir` on all cores.
///
/// The walk feeds the hashing threads as it goes, so hashing starts with the first file
/// instead of after a full listing of the tree.
pub fn compute(dir: &Utf8Path, exclude: &[String]) -> Result<Manifest> {
    let (sender, receiver) = mpsc::sync_channel::<String>(4096);
    let receiver = Mutex::new(receiver);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16));
    let (walked, hashed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buffer = vec![0u8; 256 * 1024];
                    let mut done = Vec::new();
                    loop {
                        let next = receiver.lock().expect("the queue lock").recv();
                        let Ok(relative) = next else { break };
                        match hash_file(&dir.join(&relative), &mut buffer) {
                            Ok((digest, len)) => done.push((relative, digest, len)),
                            Err(err) => {
                                failure.lock().expect("the failure lock").get_or_insert(err);
                                failed.store(true, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        let walked = walk(dir, exclude, |relative| {
            !failed.load(Ordering::Relaxed) && sender.send(relative).is_ok()
        });
        drop(sender);
        let hashed: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("a hash worker panicked"))
            .collect();
        (walked, hashed)
    });
    if let Some(err) = failure.into_inner().expect("the failure lock") {
        return Err(err);
    }
    walked?;
    let mut manifest = Manifest::default();
    for (relative, digest, len) in hashed {
        manifest.bytes += len;
        manifest.files.insert(relative, digest);
    }
    Ok(manifest)
}

fn hash_file(path: &Utf8Path, buffer: &mut [u8]) -> Result<([u8; 32], u64)> {
    let mut file = File::open(path).at("failed to open", path)?;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Error::io("failed to read", path, err)),
        };
        hasher.update(&buffer[..read]);
        len += read as u64;
    }
    Ok((hasher.finalize().into(), len))
}

/// SHA-256 of one file as lowercase hex.
pub(crate) fn hash_hex(path: &Utf8Path) -> Result<String> {
    let mut buffer = vec![0u8; 64 * 1024];
    hash_file(path, &mut buffer).map(|(digest, _)| hex(&digest))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Renders `sha256sum` lines: `HEX  PATH`, with GNU's backslash escaping for paths that
    /// hold a newline or a backslash.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.files.len() * 100);
        for (path, digest) in &self.files {
            if path.contains(['\\', '\n', '\r']) {
                let escaped = path
                    .replace('\\', "\\\\")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r");
                out.push('\\');
                out.push_str(&hex(digest));
                out.push_str("  ");
                out.push_str(&escaped);
            } else {
                out.push_str(&hex(digest));
                out.push_str("  ");
                out.push_str(path);
            }
            out.push('\n');
        }
        out
    }

    /// Parses what [`Manifest::render`] wrote.
    pub fn parse(text: &str, path: &Utf8Path) -> Result<Manifest> {
        let malformed = |line: usize, what: &str| Error::Malformed {
            path: path.to_owned(),
            message: format!("line {line}: {what}"),
        };
        let mut manifest = Manifest::default();
        for (index, line) in text.lines().enumerate() {
            let (escaped, line) = match line.strip_prefix('\\') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (digest, name) = line
                .split_once("  ")
                .ok_or_else(|| malformed(index + 1, "expected `HEX  PATH`"))?;
            let digest = parse_hex(digest).ok_or_else(|| malformed(index + 1, "bad SHA-256"))?;
            let name = if escaped {
                unescape(name).ok_or_else(|| malformed(index + 1, "bad escape"))?
            } else {
                name.to_owned()
            };
            if crate::config::check_relative(&name).is_err() {
                return Err(malformed(
                    index + 1,
                    "path must be relative and stay inside the release",
                ));
            }
            manifest.files.insert(name, digest);
        }
        Ok(manifest)
    }

    /// What differs between this (expected) manifest and `actual`.
    pub fn diff(&self, actual: &Manifest) -> Diff {
        let mut diff = Diff::default();
        for (path, digest) in &self.files {
            match actual.files.get(path) {
                None => diff.missing.push(path.clone()),
                Some(other) if other != digest => diff.changed.push(path.clone()),
                Some(_) => {}
            }
        }
        diff.added = actual
            .files
            .keys()
            .filter(|p| !self.files.contains_key(*p))
            .cloned()
            .collect();
        diff
    }
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    // `from_str_radix` alone would take a `+` sign in a pair (`+f`), which `sha256sum -c`
    // refuses.
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Files that differ from the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// In both, with different contents.
    pub changed: Vec<String>,
    /// In the manifest, not on disk.
    pub missing: Vec<String>,
    /// On disk, not in the manifest.
    pub added: Vec<String>,
}

impl Diff {
    /// Whether nothing differs.
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.added.is_empty()
    }

    /// How many files differ.
    pub fn len(&self) -> usize {
        self.changed.len() + self.missing.len() + self.added.len()
    }

    /// Whether nothing differs (the same as [`Diff::is_clean`]).
    pub fn is_empty(&self) -> bool {
        self.is_clean()
    }

    /// Every differing path, added first, then changed, then missing.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.added
            .iter()
            .chain(&self.changed)
            .chain(&self.missing)
            .map(String::as_str)
    }

    /// Splits into the differences outside the run-time class and those inside it.
    pub fn partition(self, runtime: &RuntimeFiles) -> (Diff, Diff) {
        let split = |paths: Vec<String>| -> (Vec<String>, Vec<String>) {
            paths.into_iter().partition(|p| !runtime.contains(p))
        };
        let (changed, runtime_changed) = split(self.changed);
        let (missing, runtime_missing) = split(self.missing);
        let (added, runtime_added) = split(self.added);
        (
            Diff {
                changed,
                missing,
                added,
            },
            Diff {
                changed: runtime_changed,
                missing: runtime_missing,
                added: runtime_added,
            },
        )
    }
}

/// The run-time class of a release: files the app itself may write, change or delete while it
/// serves (`manifest.runtime`).
///
/// An entry without glob metacharacters is a path and everything below it (compared by whole
/// components, like `manifest.exclude`); an entry with them is a glob matched against the whole
/// relative path, `*` staying within one directory and `**` crossing them.
#[derive(Debug, Clone)]
pub struct RuntimeFiles {
    prefixes: Vec<Utf8PathBuf>,
    globs: globset::GlobSet,
}

/// What makes an entry a glob rather than a path.
const GLOB_META: [char; 6] = ['*', '?', '[', ']', '{', '}'];

impl RuntimeFiles {
    /// Compiles the entries; the error names the bad entry and why (the caller adds the key).
    pub fn new(entries: &[String]) -> std::result::Result<RuntimeFiles, String> {
        let mut prefixes = Vec::new();
        let mut globs = globset::GlobSetBuilder::new();
        for entry in entries {
            crate::config::check_relative(entry)
                .map_err(|why| format!("entry \"{entry}\" {why}"))?;
            if entry.contains(GLOB_META) {
                let glob = globset::GlobBuilder::new(entry)
                    .literal_separator(true)
                    .build()
                    .map_err(|err| {
                        format!("entry \"{entry}\" is not a valid glob: {}", err.kind())
                    })?;
                globs.add(glob);
            } else {
                prefixes.push(Utf8PathBuf::from(entry));
            }
        }
        let globs = globs
            .build()
            .map_err(|err| format!("could not be compiled: {err}"))?;
        Ok(RuntimeFiles { prefixes, globs })
    }

    /// Whether a release-relative path is in the run-time class.
    pub fn contains(&self, path: &str) -> bool {
        let path = Utf8Path::new(path);
        self.prefixes.iter().any(|prefix| path.starts_with(prefix))
            || self.globs.is_match(path.as_std_path())
    }
}

/// The result of `relman verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The release checked.
    pub id: ReleaseId,
    /// Whether it matches its manifest, files written at run time aside.
    pub ok: bool,
    /// The differences that count: every one outside the run-time class.
    #[serde(flatten)]
    pub diff: Diff,
    /// Differences in files the app writes at run time (`manifest.runtime`): reported, never
    /// counted.
    pub runtime: Diff,
    /// Files checked.
    pub files: usize,
    /// Bytes hashed.
    pub bytes: u64,
}

/// Recomputes the manifest of a sealed release and compares. `id` defaults to `current`.
pub fn verify(root: &DeployRoot, id: Option<&ReleaseId>) -> Result<VerifyReport> {
    let id = match id {
        Some(id) => id.clone(),
        None => root.current()?.ok_or_else(|| {
            Error::Usage(
                "nothing is live yet (no `current`): name a release, `relman verify ID`".into(),
            )
        })?,
    };
    let release = crate::store::sealed_release(root, &id)?;
    let config = root.config()?;
    let manifest_path = release.dir.join(META_DIR).join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).at("failed to read", &manifest_path)?;
    let expected = Manifest::parse(&text, &manifest_path)?;
    let seal = release.seal.as_ref();
    let exclude = seal
        .and_then(|seal| seal.manifest_exclude.as_ref())
        .unwrap_or(&config.manifest.exclude);
    // Like the excludes, the run-time class the release was sealed with wins over today's
    // config; seals older than the key fall back to the config.
    let runtime = match seal.and_then(|seal| seal.manifest_runtime.as_ref()) {
        Some(entries) => RuntimeFiles::new(entries).map_err(|why| Error::Malformed {
            path: release.dir.join(META_DIR).join(SEAL_FILE),
            message: format!("`manifest_runtime` {why}"),
        })?,
        None => RuntimeFiles::new(&config.manifest.runtime).map_err(|why| Error::Config {
            path: root.path().join(crate::config::CONFIG_FILE),
            message: format!("`manifest.runtime` {why}"),
        })?,
    };
    let actual = compute(&release.dir, exclude)?;
    let (diff, runtime) = expected.diff(&actual).partition(&runtime);
    Ok(VerifyReport {
        id,
        ok: diff.is_clean(),
        files: actual.files.len(),
        bytes: actual.bytes,
        diff,
        runtime,
    })
}

/// The manifest file of a release directory.
pub(crate) fn manifest_path(release_dir: &Utf8Path) -> Utf8PathBuf {
    release_dir.join(META_DIR).join(MANIFEST_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_matches_sha256sum_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("a/node_modules")).unwrap();
        std::fs::create_dir_all(root.join(".relman")).unwrap();
        std::fs::write(root.join("a/x.txt"), "hello\n").unwrap();
        std::fs::write(root.join("odd\\name"), "x").unwrap();
        std::fs::write(root.join("a/node_modules/skip"), "x").unwrap();
        std::fs::write(root.join(".relman/skip"), "x").unwrap();
        std::os::unix::fs::symlink("a/x.txt", root.join("link")).unwrap();
        let manifest = compute(root, &["a/node_modules".into()]).unwrap();
        assert_eq!(manifest.files.len(), 2);
        let text = manifest.render();
        assert!(text.contains(
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a/x.txt\n"
        ));
        assert!(text.contains(
            "\\2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  odd\\\\name\n"
        ));
        assert_eq!(
            Manifest::parse(&text, Utf8Path::new("m")).unwrap().files,
            manifest.files
        );
    }

    #[test]
    fn diff_reports_changed_missing_added() {
        let digest = |b: u8| [b; 32];
        let expected = Manifest {
            files: [("a".into(), digest(1)), ("b".into(), digest(2))].into(),
            bytes: 0,
        };
        let actual = Manifest {
            files: [("a".into(), digest(9)), ("c".into(), digest(3))].into(),
            bytes: 0,
        };
        let diff = expected.diff(&actual);
        assert_eq!(diff.changed, ["a"]);
        assert_eq!(diff.missing, ["b"]);
        assert_eq!(diff.added, ["c"]);
    }

    #[test]
    fn parse_rejects_escaping_paths() {
        let line = format!("{}  ../etc/passwd\n", "0".repeat(64));
        assert!(Manifest::parse(&line, Utf8Path::new("m")).is_err());
        assert!(Manifest::parse("zz  a\n", Utf8Path::new("m")).is_err());
    }

    #[test]
    fn fuzz_manifest_a_digest_with_a_plus_sign_is_refused() {
        // Found by `fuzz/fuzz_targets/manifest.rs`: `+c` parsed as the byte 0x0c.
        let digest = "5891b5b522d5df086d0ff0b110fbd9d21bb4+c7163af34268a0d82e846f6be03";
        let err = Manifest::parse(&format!("{digest}  a\n"), Utf8Path::new("m")).unwrap_err();
        assert!(err.to_string().contains("bad SHA-256"), "{err}");
        let upper = "5891B5B522D5DF086D0FF0B110FBD9D21BB4FC7163AF34D08286A2E846F6BE03";
        assert!(Manifest::parse(&format!("{upper}  a\n"), Utf8Path::new("m")).is_ok());
    }

    fn runtime(entries: &[&str]) -> RuntimeFiles {
        RuntimeFiles::new(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_default_runtime_class_is_what_next_writes_while_it_serves() {
        let defaults = runtime(&crate::config::DEFAULT_RUNTIME);
        for path in [
            ".next/server/route-cache/APP_PAGE/1f3a/$/index.html",
            ".next/server/route-cache/APP_PAGE/1f3a/$/index.segments/_tree.segment.rsc",
            ".next/server/route-cache/APP_ROUTE/favicon.ico.body",
            ".next/server/app/index.html",
            ".next/server/app/blog/[slug]/first.rsc",
            ".next/server/app/blog/first.meta",
            ".next/server/app/feed.xml.body",
            ".next/server/pages/about.html",
            ".next/server/pages/about.json",
        ] {
            assert!(defaults.contains(path), "{path}");
        }
        for path in [
            ".next/server/chunks/123.js",
            ".next/server/app/page.js",
            ".next/server/app/index.html.js",
            ".next/server/route-cache-old/x",
            ".next/server/pages-manifest.json",
            ".next/BUILD_ID",
            "app/index.html",
            "package.json",
        ] {
            assert!(!defaults.contains(path), "{path}");
        }
    }

    #[test]
    fn a_single_star_stays_within_a_directory_and_a_path_covers_what_is_below() {
        let class = runtime(&["out/*.html", "logs"]);
        assert!(class.contains("out/index.html"));
        assert!(!class.contains("out/blog/index.html"));
        assert!(class.contains("logs"));
        assert!(class.contains("logs/app/today.log"));
        assert!(!class.contains("logs.txt"));
        assert!(!class.contains("other/logs/x"));
        assert!(!runtime(&[]).contains("anything"));
    }

    #[test]
    fn bad_runtime_entries_are_refused_with_the_entry_named() {
        for (entry, why) in [
            ("/abs/**", "relative"),
            ("a/../b/*.html", "`..`"),
            ("", "empty"),
            (".next/[abc", "not a valid glob"),
            (".next/{a,b", "not a valid glob"),
        ] {
            let err = RuntimeFiles::new(&[entry.to_owned()]).unwrap_err();
            assert!(
                err.contains(&format!("\"{entry}\"")) && err.contains(why),
                "{entry}: {err}"
            );
        }
    }

    #[test]
    fn partition_sets_the_runtime_differences_apart() {
        let diff = Diff {
            changed: vec![".next/server/app/index.html".into(), "server.js".into()],
            missing: vec![".next/server/pages/a.json".into()],
            added: vec![
                ".next/server/route-cache/x/$/index.html".into(),
                "new.js".into(),
            ],
        };
        let (real, runtime) = diff.partition(&runtime(&crate::config::DEFAULT_RUNTIME));
        assert_eq!(
            real,
            Diff {
                changed: vec!["server.js".into()],
                missing: vec![],
                added: vec!["new.js".into()],
            }
        );
        assert_eq!(runtime.changed, [".next/server/app/index.html"]);
        assert_eq!(runtime.missing, [".next/server/pages/a.json"]);
        assert_eq!(runtime.added, [".next/server/route-cache/x/$/index.html"]);
        assert_eq!(runtime.len(), 3);
    }

    /// `relman.toml` with a build that writes a small `.next` (an ISR page, a chunk), and
    /// `manifest` as the `[manifest]` table's body.
    fn write_config(root: &DeployRoot, manifest: &str) {
        let build = "mkdir -p .next/server/app .next/server/chunks && echo page > .next/server/app/index.html && echo chunk > .next/server/chunks/123.js";
        std::fs::write(
            root.path().join(crate::config::CONFIG_FILE),
            format!("[build]\ninstall = \"\"\ncommand = \"{build}\"\nexpect = []\n[manifest]\n{manifest}\n"),
        )
        .unwrap();
    }

    /// A deploy root whose `[manifest]` is `manifest`, and one sealed release `r1`.
    fn sealed_release(manifest: &str) -> (tempfile::TempDir, DeployRoot, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(dir.path()).unwrap();
        let (root, _) = DeployRoot::init(&base.join("root"), &mut |_| {}).unwrap();
        write_config(&root, manifest);
        std::fs::create_dir_all(base.join("src")).unwrap();
        std::fs::write(base.join("src/server.js"), "// app\n").unwrap();
        let request = crate::BuildRequest {
            source: Some(crate::SourceSpec::Dir(base.join("src"))),
            id: Some(ReleaseId::parse("r1").unwrap()),
            no_reuse: false,
        };
        let report = crate::build(&root, &request, &AtomicBool::new(false), &mut |_| {}).unwrap();
        (dir, root, report.dir)
    }

    fn verify_r1(root: &DeployRoot) -> VerifyReport {
        verify(root, Some(&ReleaseId::parse("r1").unwrap())).unwrap()
    }

    #[test]
    fn verify_reports_runtime_files_apart_and_counts_only_the_others() {
        let (_guard, root, release) = sealed_release("");
        let manifest = std::fs::read_to_string(manifest_path(&release)).unwrap();
        assert!(
            manifest.contains(".next/server/app/index.html"),
            "hashed at build time"
        );

        std::fs::create_dir_all(release.join(".next/server/route-cache/APP_PAGE/x/$")).unwrap();
        std::fs::write(
            release.join(".next/server/route-cache/APP_PAGE/x/$/index.html"),
            "c",
        )
        .unwrap();
        std::fs::write(release.join(".next/server/app/index.html"), "regenerated").unwrap();
        let report = verify_r1(&root);
        assert!(report.ok, "{report:?}");
        assert!(report.diff.is_clean(), "{report:?}");
        assert_eq!(report.runtime.changed, [".next/server/app/index.html"]);
        assert_eq!(
            report.runtime.added,
            [".next/server/route-cache/APP_PAGE/x/$/index.html"]
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["added"], serde_json::json!([]));
        assert_eq!(
            json["runtime"]["added"][0],
            ".next/server/route-cache/APP_PAGE/x/$/index.html"
        );

        std::fs::write(release.join(".next/server/chunks/123.js"), "tampered").unwrap();
        let report = verify_r1(&root);
        assert!(!report.ok);
        assert_eq!(report.diff.changed, [".next/server/chunks/123.js"]);
        assert_eq!(report.runtime.len(), 2);
    }

    #[test]
    fn the_seal_s_runtime_class_wins_and_an_older_seal_uses_the_config_s() {
        let (_guard, root, release) = sealed_release("runtime = [\".next/server/app\"]");
        std::fs::write(release.join(".next/server/app/index.html"), "regenerated").unwrap();
        write_config(&root, "runtime = []");
        assert!(
            verify_r1(&root).ok,
            "sealed with `.next/server/app` as run-time files"
        );

        // A seal from before `manifest_runtime`: today's config decides.
        let seal_path = release.join(META_DIR).join(SEAL_FILE);
        let mut seal: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&seal_path).unwrap()).unwrap();
        assert_eq!(
            seal["manifest_runtime"],
            serde_json::json!([".next/server/app"])
        );
        seal.as_object_mut().unwrap().remove("manifest_runtime");
        std::fs::write(&seal_path, serde_json::to_vec(&seal).unwrap()).unwrap();
        let report = verify_r1(&root);
        assert!(!report.ok, "the config lists no run-time files: {report:?}");
        assert_eq!(report.diff.changed, [".next/server/app/index.html"]);
        write_config(&root, "runtime = [\".next/server/app/*.html\"]");
        let report = verify_r1(&root);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.runtime.changed, [".next/server/app/index.html"]);
    }
}
