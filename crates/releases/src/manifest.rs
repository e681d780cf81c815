//! The SHA-256 manifest of a release: computed in parallel, written in `sha256sum` format,
//! compared against the tree to find what changed.
//!
//! The manifest covers regular files. Symlinks are neither followed nor hashed (shared paths
//! are symlinks whose targets are meant to change), and `.relman/` plus the configured
//! excludes are left out.

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
use crate::record::{MANIFEST_FILE, META_DIR};
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
    if text.len() != 64 {
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
}

/// The result of `relman verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The release checked.
    pub id: ReleaseId,
    /// Whether it matches its manifest.
    pub ok: bool,
    /// The differences.
    #[serde(flatten)]
    pub diff: Diff,
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
    let exclude = release
        .seal
        .as_ref()
        .and_then(|seal| seal.manifest_exclude.as_ref())
        .unwrap_or(&config.manifest.exclude);
    let actual = compute(&release.dir, exclude)?;
    let diff = expected.diff(&actual);
    Ok(VerifyReport {
        id,
        ok: diff.is_clean(),
        files: actual.files.len(),
        bytes: actual.bytes,
        diff,
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
}
