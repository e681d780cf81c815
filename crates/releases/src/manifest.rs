//! The SHA-256 manifest of a release: computed in parallel, written in `sha256sum` format,
//! compared against the tree to find what changed.
//!
//! The manifest covers regular files. Symlinks are neither followed nor hashed (the files a
//! shared path links to are meant to change), and `.relman/` plus the configured excludes
//! are left out. What `sha256sum` cannot carry, the files' modes and each symlink's target
//! (shared paths' links included), goes into a sidecar beside it, `.relman/manifest.meta`
//! ([`Meta`]), which `verify` compares too.
//!
//! Some files are the app's own to rewrite: a Next.js server fills `.next/server/route-cache`
//! on the first request to a static page and regenerates ISR pages in place. Those are still
//! hashed when the build leaves them, but `verify` reports their differences apart
//! ([`RuntimeFiles`]): a release that has served traffic must still verify, else a rollback
//! (the emergency path) to it would be refused.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::id::ReleaseId;
use crate::record::{
    MANIFEST_FILE, MANIFEST_LIMIT, MANIFEST_META_FILE, META_DIR, SEAL_FILE, read_meta_file,
};
use crate::root::DeployRoot;

/// A manifest: relative path → SHA-256, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The entries.
    pub files: BTreeMap<String, [u8; 32]>,
    /// Total bytes hashed.
    pub bytes: u64,
}

/// Every entry of `dir` below it, in order, symlinks not followed, leaving out `.relman/`
/// and the excludes (and what is below them).
fn entries<'a>(
    dir: &'a Utf8Path,
    exclude: &'a [String],
) -> impl Iterator<Item = walkdir::Result<walkdir::DirEntry>> + 'a {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(move |entry| {
            let relative = below(dir, entry.path());
            !(relative == Path::new(META_DIR) || exclude.iter().any(|e| relative.starts_with(e)))
        })
}

/// `path`, an entry of the walk of `dir`, relative to `dir`.
///
/// walkdir makes each entry's path by joining names onto `dir` as given, so that is the text
/// after `dir` and a separator: a byte comparison, where `Path::strip_prefix` parsed both paths
/// into components twice per file on the walking thread (3% of `verify`'s profile).
fn below<'p>(dir: &Utf8Path, path: &'p Path) -> &'p Path {
    match path
        .as_os_str()
        .as_bytes()
        .strip_prefix(dir.as_str().as_bytes())
    {
        Some(rest) => Path::new(OsStr::from_bytes(rest.strip_prefix(b"/").unwrap_or(rest))),
        None => path.strip_prefix(dir).unwrap_or(path),
    }
}

/// The path of an entry relative to `dir`, which must be UTF-8.
fn relative_path(dir: &Utf8Path, entry: &walkdir::DirEntry) -> Result<String> {
    let relative = below(dir, entry.path());
    relative
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::NonUtf8Path(entry.path().display().to_string()))
}

/// Walks `dir` in order, calling `found` with the relative path of every regular file that
/// belongs in its manifest (stopping early when it returns `false`) and reading the target of
/// every symlink into `links`.
fn walk(
    dir: &Utf8Path,
    exclude: &[String],
    links: &mut BTreeMap<String, String>,
    mut found: impl FnMut(String) -> bool,
) -> Result<()> {
    for entry in entries(dir, exclude) {
        let entry = entry.map_err(|err| crate::fs::copy::walk_error(dir, err))?;
        // The type comes from the directory entry itself: no `stat` per file on this thread.
        let kind = entry.file_type();
        if kind.is_file() {
            if !found(relative_path(dir, &entry)?) {
                break;
            }
        } else if kind.is_symlink() {
            let relative = relative_path(dir, &entry)?;
            let target = read_link(&dir.join(&relative))?;
            links.insert(relative, target);
        }
    }
    Ok(())
}

/// A symlink's target, as written.
fn read_link(path: &Utf8Path) -> Result<String> {
    let target = std::fs::read_link(path).at("failed to read symlink", path)?;
    target
        .into_os_string()
        .into_string()
        .map_err(|t| Error::NonUtf8Path(format!("{path} -> {}", t.display())))
}

/// How many paths the walk hands the hashing threads at a time. One hand-off per file cost a
/// lock round trip and a futex wake-up per file (52,000 futex calls for 20,000 files, more
/// system time than the hashing itself); a batch makes that one per 64 files, and is small
/// enough that the last batches still spread over the threads.
const BATCH: usize = 64;

/// Batches waiting for a hashing thread at most: the walk stays a little ahead of the hashing
/// without listing a whole large tree in memory.
const QUEUE: usize = 64;

/// The read buffer of each hashing thread: small enough to stay in the core's L2 cache
/// between the kernel's copy into it and the hashing. With 256 KiB, the copy out of the page
/// cache took as much CPU as the hashing (a quarter of the profile) and `verify` cost 1.4× the
/// CPU time of 64 KiB; 32 and 128 KiB measured a little worse than 64.
const BUFFER: usize = 64 * 1024;

/// What a hashing thread found about one file.
struct Hashed {
    relative: String,
    digest: [u8; 32],
    len: u64,
    mode: u32,
}

/// Hashes every manifest file of `dir` on all cores, and reads the sidecar ([`Meta`]) in the
/// same pass: each file's mode from the descriptor it is hashed through, each symlink's
/// target as the walk meets it. (A second walk with an `lstat` per file, on one thread after
/// the hashing, took a sixth of `verify`'s time.)
///
/// The walk feeds the hashing threads as it goes, so hashing starts with the first files
/// instead of after a full listing of the tree.
pub fn compute(dir: &Utf8Path, exclude: &[String]) -> Result<(Manifest, Meta)> {
    let (sender, receiver) = mpsc::sync_channel::<Vec<String>>(QUEUE);
    let receiver = Mutex::new(receiver);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16));
    let base = open_dir(dir)?;
    let mut meta = Meta::default();
    let (walked, hashed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| hash_worker(dir, &base, &receiver, &failure, &failed)))
            .collect();
        let mut batch = Vec::with_capacity(BATCH);
        let mut walked = walk(dir, exclude, &mut meta.links, |relative| {
            batch.push(relative);
            batch.len() < BATCH
                || !failed.load(Ordering::Relaxed)
                    && sender
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .is_ok()
        });
        if walked.is_ok() && !batch.is_empty() {
            // Every worker gone means one failed: its error is the one to report.
            walked = sender.send(batch).or(Ok(()));
        }
        drop(sender);
        let hashed: Vec<Hashed> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("a hash worker panicked"))
            .collect();
        (walked, hashed)
    });
    if let Some(err) = failure.into_inner().expect("the failure lock") {
        return Err(err);
    }
    walked?;
    Ok((into_manifest(hashed, &mut meta), meta))
}

/// The manifest of the hashed files, their modes added to `meta`. Sorted first, the maps are
/// built in one pass each instead of 20,000 searching inserts apiece.
fn into_manifest(mut hashed: Vec<Hashed>, meta: &mut Meta) -> Manifest {
    hashed.sort_unstable_by(|a, b| a.relative.cmp(&b.relative));
    meta.modes = hashed
        .iter()
        .map(|file| (file.relative.clone(), file.mode))
        .collect();
    Manifest {
        bytes: hashed.iter().map(|file| file.len).sum(),
        files: hashed
            .into_iter()
            .map(|file| (file.relative, file.digest))
            .collect(),
    }
}

/// `dir` opened once, for the hashing threads to open its files relative to it (`openat`): the
/// kernel then resolves only the path below it, not the whole path from `/` again per file.
fn open_dir(dir: &Utf8Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::open(dir.as_std_path(), flags, Mode::empty())
        .map_err(|err| Error::io("failed to open", dir, err.into()))
}

/// One hashing thread: takes batches of paths until the walk is done or a file fails (the
/// first failure is kept in `failure`).
fn hash_worker(
    dir: &Utf8Path,
    base: &OwnedFd,
    receiver: &Mutex<mpsc::Receiver<Vec<String>>>,
    failure: &Mutex<Option<Error>>,
    failed: &AtomicBool,
) -> Vec<Hashed> {
    let mut buffer = vec![0u8; BUFFER];
    let mut done = Vec::new();
    loop {
        let next = receiver.lock().expect("the queue lock").recv();
        let Ok(batch) = next else { break };
        for relative in batch {
            match hash_entry(dir, base, &relative, &mut buffer) {
                Ok((digest, len, mode)) => done.push(Hashed {
                    relative,
                    digest,
                    len,
                    mode,
                }),
                Err(err) => {
                    failure.lock().expect("the failure lock").get_or_insert(err);
                    failed.store(true, Ordering::Relaxed);
                    return done;
                }
            }
        }
    }
    done
}

/// SHA-256, length and permission bits of `relative`, a file of the manifest of `dir` (open as
/// `base`). The mode comes from the open descriptor (an `fstat`, no second path lookup), so it
/// is the hashed file's.
fn hash_entry(
    dir: &Utf8Path,
    base: &OwnedFd,
    relative: &str,
    buffer: &mut [u8],
) -> Result<([u8; 32], u64, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |action, err| Error::io(action, dir.join(relative), err);
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let mut file = rustix::fs::openat(base, relative, flags, Mode::empty())
        .map(File::from)
        .map_err(|err| fail("failed to open", err.into()))?;
    let stat = file.metadata().map_err(|err| fail("failed to stat", err))?;
    let (digest, len) =
        hash_read(&mut file, stat.len(), buffer).map_err(|err| fail("failed to read", err))?;
    Ok((digest, len, stat.permissions().mode() & 0o7777))
}

fn hash_file(path: &Utf8Path, buffer: &mut [u8]) -> Result<([u8; 32], u64)> {
    let mut file = File::open(path).at("failed to open", path)?;
    hash_read(&mut file, u64::MAX, buffer).at("failed to read", path)
}

/// SHA-256 and length of what is left to read of `file`, whose size was `size` when it was
/// opened (`u64::MAX` when unknown).
///
/// A short read that reaches `size` is the end of the file: most files of a release fit in one
/// buffer, and the usual read that returns 0 to confirm the end was a fifth of the system calls
/// of `verify`. A file that grows while it is read is read on to a read that returns 0.
fn hash_read(file: &mut File, size: u64, buffer: &mut [u8]) -> std::io::Result<([u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..read]);
        len += read as u64;
        if read < buffer.len() && len >= size {
            break;
        }
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
        // Collected, not inserted one by one: the lines come sorted, and a map built from a
        // sorted list skips the search per insert (last one wins either way).
        let entries = text.lines().enumerate().map(|(index, line)| {
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
            Ok((name, digest))
        });
        Ok(Manifest {
            files: entries.collect::<Result<_>>()?,
            bytes: 0,
        })
    }

    /// What differs between this (expected) manifest and `actual`.
    pub fn diff(&self, actual: &Manifest) -> Diff {
        let mut diff = Diff::default();
        merge(
            &self.files,
            &actual.files,
            |path, expected, actual| match (expected, actual) {
                (Some(_), None) => diff.missing.push(path.clone()),
                (None, Some(_)) => diff.added.push(path.clone()),
                (Some(expected), Some(actual)) if expected != actual => {
                    diff.changed.push(path.clone());
                }
                _ => {}
            },
        );
        diff
    }
}

/// Walks two maps keyed by path side by side, in order, calling `each` with every path of
/// either and its value in each. One comparison per step: a lookup of each path in the other
/// map cost a binary search apiece, 25 ms of `verify`'s serial time on 20,000 files.
fn merge<'a, A, B>(
    expected: &'a BTreeMap<String, A>,
    actual: &'a BTreeMap<String, B>,
    mut each: impl FnMut(&'a String, Option<&'a A>, Option<&'a B>),
) {
    let mut expected = expected.iter().peekable();
    let mut actual = actual.iter().peekable();
    loop {
        let order = match (expected.peek(), actual.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            std::cmp::Ordering::Less => {
                let (path, value) = expected.next().expect("peeked");
                each(path, Some(value), None);
            }
            std::cmp::Ordering::Greater => {
                let (path, value) = actual.next().expect("peeked");
                each(path, None, Some(value));
            }
            std::cmp::Ordering::Equal => {
                let (path, value) = expected.next().expect("peeked");
                let (_, other) = actual.next().expect("peeked");
                each(path, Some(value), Some(other));
            }
        }
    }
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

/// The value of one hex digit, either case. Digit by digit, where `u8::from_str_radix` on
/// each pair took a `+` sign (`+f`), which `sha256sum -c` refuses.
fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
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

/// What `sha256sum` cannot carry, kept beside the manifest in `.relman/manifest.meta`: the
/// permission bits of every file in the manifest (setuid, setgid and sticky included) and
/// every symlink of the release outside the excludes (shared paths included: they are
/// expected) with its target.
///
/// One line per entry, sorted by path within each kind: `MODE  PATH` (four octal digits),
/// then `link  PATH -> TARGET`. A line holding a backslash, a newline or a carriage return in
/// a path or target, or ` -> ` in a link's path, starts with `\` and escapes them like the
/// manifest does (`\\`, `\n`, `\r`), and `>` as `\>`, so that the first bare ` -> ` splits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Relative path of each file in the manifest → its permission bits (`0o7777` at most).
    pub modes: BTreeMap<String, u32>,
    /// Relative path of each symlink → its target, as written (never followed).
    pub links: BTreeMap<String, String>,
}

impl Meta {
    /// Renders the sidecar's lines.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity((self.modes.len() + self.links.len()) * 60);
        for (path, mode) in &self.modes {
            if path.contains(['\\', '\n', '\r']) {
                out.push_str(&format!("\\{mode:04o}  {}\n", escape_meta(path)));
            } else {
                out.push_str(&format!("{mode:04o}  {path}\n"));
            }
        }
        for (path, target) in &self.links {
            let plain = !path.contains(LINK_ARROW)
                && !path.contains(['\\', '\n', '\r'])
                && !target.contains(['\\', '\n', '\r']);
            if plain {
                out.push_str(&format!("link  {path}{LINK_ARROW}{target}\n"));
            } else {
                out.push_str(&format!(
                    "\\link  {}{LINK_ARROW}{}\n",
                    escape_meta(path),
                    escape_meta(target)
                ));
            }
        }
        out
    }

    /// Parses what [`Meta::render`] wrote.
    pub fn parse(text: &str, path: &Utf8Path) -> Result<Meta> {
        let malformed = |line: usize, what: &str| Error::Malformed {
            path: path.to_owned(),
            message: format!("line {}: {what}; build a new release", line + 1),
        };
        let mut meta = Meta::default();
        for (index, line) in text.lines().enumerate() {
            let (escaped, line) = match line.strip_prefix('\\') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let field = |raw: &str| -> Result<String> {
                let value = if escaped {
                    unescape_meta(raw).ok_or_else(|| malformed(index, "bad escape"))?
                } else {
                    raw.to_owned()
                };
                if value.is_empty() || value.contains('\0') {
                    return Err(malformed(index, "empty path or target"));
                }
                Ok(value)
            };
            if let Some(rest) = line.strip_prefix("link  ") {
                let (name, target) = split_link(rest, escaped)
                    .ok_or_else(|| malformed(index, "expected `link  PATH -> TARGET`"))?;
                let name = field(name)?;
                if crate::config::check_relative(&name).is_err() {
                    return Err(malformed(
                        index,
                        "path must be relative and stay inside the release",
                    ));
                }
                meta.links.insert(name, field(target)?);
            } else {
                let (mode, name) = line.split_once("  ").ok_or_else(|| {
                    malformed(index, "expected `MODE  PATH` or `link  PATH -> TARGET`")
                })?;
                let mode = (mode.len() == 4)
                    .then(|| u32::from_str_radix(mode, 8).ok())
                    .flatten()
                    .ok_or_else(|| malformed(index, "bad mode: expected four octal digits"))?;
                let name = field(name)?;
                if crate::config::check_relative(&name).is_err() {
                    return Err(malformed(
                        index,
                        "path must be relative and stay inside the release",
                    ));
                }
                meta.modes.insert(name, mode);
            }
        }
        Ok(meta)
    }

    /// Adds what differs between this (expected) sidecar and `actual` to `diff`, with a
    /// note per path in `details`: a mode changed (`mode 0755 -> 4755`), a symlink added,
    /// removed or pointed elsewhere. A file's mode is compared only where it is a file in
    /// both; a file gone or new is the manifest's difference already.
    pub fn diff_into(
        &self,
        actual: &Meta,
        diff: &mut Diff,
        details: &mut BTreeMap<String, String>,
    ) {
        merge(&self.modes, &actual.modes, |path, mode, now| {
            if let (Some(mode), Some(now)) = (mode, now)
                && now != mode
            {
                diff.changed.push(path.clone());
                details.insert(path.clone(), format!("mode {mode:04o} -> {now:04o}"));
            }
        });
        for (path, target) in &self.links {
            match actual.links.get(path) {
                None => {
                    diff.missing.push(path.clone());
                    details.insert(path.clone(), format!("symlink -> {target}"));
                }
                Some(now) if now != target => {
                    diff.changed.push(path.clone());
                    details.insert(path.clone(), format!("symlink -> {target}, now -> {now}"));
                }
                Some(_) => {}
            }
        }
        for (path, target) in &actual.links {
            if !self.links.contains_key(path) {
                diff.added.push(path.clone());
                details.insert(path.clone(), format!("symlink -> {target}"));
            }
        }
        // A path both gone and new changed type (a symlink made a file, or the reverse): one
        // change.
        let retyped: Vec<String> = diff
            .missing
            .iter()
            .filter(|path| diff.added.contains(path))
            .cloned()
            .collect();
        for path in retyped {
            diff.missing.retain(|p| *p != path);
            diff.added.retain(|p| *p != path);
            let note = match (self.links.get(&path), actual.links.get(&path)) {
                (Some(was), None) => format!("symlink -> {was}, now a regular file"),
                (None, Some(now)) => format!("regular file, now symlink -> {now}"),
                _ => "changed type".to_owned(),
            };
            details.insert(path.clone(), note);
            diff.changed.push(path);
        }
        for paths in [&mut diff.changed, &mut diff.missing, &mut diff.added] {
            paths.sort();
            paths.dedup();
        }
    }
}

/// What separates a link's path from its target in the sidecar.
const LINK_ARROW: &str = " -> ";

fn escape_meta(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '>' => out.push_str("\\>"),
            c => out.push(c),
        }
    }
    out
}

fn unescape_meta(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                '>' => out.push('>'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Splits `PATH -> TARGET` (still escaped when `escaped`) at the first bare ` -> `: in an
/// escaped line every `>` of a path is written `\>`, so the first unescaped one is the arrow.
fn split_link(text: &str, escaped: bool) -> Option<(&str, &str)> {
    if !escaped {
        return text.split_once(LINK_ARROW);
    }
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b' ' if text[at..].starts_with(LINK_ARROW) => {
                return Some((&text[..at], &text[at + LINK_ARROW.len()..]));
            }
            _ => at += 1,
        }
    }
    None
}

/// Writes the sidecar of a release being sealed: what `sha256sum` cannot carry about its
/// manifest's files and every symlink (see [`Meta`], read by [`compute`]). Called from the build's manifest
/// step, after the manifest and before the seal.
pub(crate) fn write_meta(dir: &Utf8Path, meta: &Meta) -> Result<()> {
    crate::fs::atomic_write(&meta_path(dir), meta.render().as_bytes())
}

/// The sidecar of a release directory.
pub(crate) fn meta_path(release_dir: &Utf8Path) -> Utf8PathBuf {
    release_dir.join(META_DIR).join(MANIFEST_META_FILE)
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
    /// What more there is to say about a differing path: `mode 0755 -> 4755`, or the symlink
    /// and its target (from `.relman/manifest.meta`; absent when nothing to say).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Files checked.
    pub files: usize,
    /// Bytes hashed.
    pub bytes: u64,
    /// The whole release's size as sealed (what `relman list` shows; `node_modules` and the
    /// other excluded paths included), when the seal records it.
    pub release_bytes: Option<u64>,
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
    let text = read_manifest(&release.dir)?;
    // A release sealed before the sidecar existed is verified on contents alone.
    let sidecar = read_sidecar(&release.dir)?;
    let seal = release.seal.as_ref();
    let (exclude, runtime) = sealed_rules(root, &config, &release.dir, seal)?;
    // What the build wrote is parsed while the tree is hashed: 20,000 lines of manifest and
    // sidecar took 60 ms on one core, before and after the hashing, the other core idle.
    let (expected, actual) = std::thread::scope(|scope| {
        let expected = scope.spawn(|| parse_expected(&release.dir, &text, sidecar.as_deref()));
        let actual = compute(&release.dir, &exclude);
        (
            expected.join().expect("the manifest parser panicked"),
            actual,
        )
    });
    let (expected, expected_meta) = expected?;
    let (actual, actual_meta) = actual?;
    let mut diff = expected.diff(&actual);
    let mut details = BTreeMap::new();
    if let Some(expected_meta) = expected_meta {
        expected_meta.diff_into(&actual_meta, &mut diff, &mut details);
    }
    let (diff, runtime) = diff.partition(&runtime);
    Ok(VerifyReport {
        id,
        ok: diff.is_clean(),
        files: actual.files.len(),
        bytes: actual.bytes,
        release_bytes: seal.map(|seal| seal.bytes),
        diff,
        runtime,
        details,
    })
}

/// What a release's manifest leaves out (`manifest.exclude`) and which of its files the app
/// rewrites at run time (`manifest.runtime`), as the release was sealed with them: the seal's
/// wins over today's config, and seals older than the keys fall back to the config.
pub(crate) fn sealed_rules(
    root: &DeployRoot,
    config: &crate::Config,
    release_dir: &Utf8Path,
    seal: Option<&crate::Seal>,
) -> Result<(Vec<String>, RuntimeFiles)> {
    let exclude = seal
        .and_then(|seal| seal.manifest_exclude.clone())
        .unwrap_or_else(|| config.manifest_exclude());
    let runtime = match seal.and_then(|seal| seal.manifest_runtime.as_ref()) {
        Some(entries) => RuntimeFiles::new(entries).map_err(|why| Error::Malformed {
            path: release_dir.join(META_DIR).join(SEAL_FILE),
            message: format!("`manifest_runtime` {why}"),
        })?,
        None => RuntimeFiles::new(&config.manifest_runtime()).map_err(|why| Error::Config {
            path: root.path().join(crate::config::CONFIG_FILE),
            message: format!("`manifest.runtime` {why}"),
        })?,
    };
    Ok((exclude, runtime))
}

/// Whether `path` (relative to the release) is below one of the manifest's excludes,
/// compared by whole components as the manifest's walk does.
pub(crate) fn is_excluded(path: &str, exclude: &[String]) -> bool {
    exclude
        .iter()
        .any(|entry| Path::new(path).starts_with(entry))
}

/// The text of a sealed release's manifest.
pub(crate) fn read_manifest(release_dir: &Utf8Path) -> Result<String> {
    let path = manifest_path(release_dir);
    let bytes = read_meta_file(release_dir, MANIFEST_FILE, MANIFEST_LIMIT)
        .map_err(|why| {
            why.into_error(
                &path,
                "relman reads a manifest only as the regular file its build wrote; build a new release",
            )
        })?
        .ok_or_else(|| Error::Malformed {
            path: path.clone(),
            message: "it is missing: the release cannot be verified; build a new release".into(),
        })?;
    String::from_utf8(bytes).map_err(|_| Error::Malformed {
        path,
        message: "it is not UTF-8: relman writes paths as UTF-8; build a new release".into(),
    })
}

/// The text of a sealed release's sidecar, if its build wrote one.
fn read_sidecar(release_dir: &Utf8Path) -> Result<Option<String>> {
    let path = meta_path(release_dir);
    let bytes = read_meta_file(release_dir, MANIFEST_META_FILE, MANIFEST_LIMIT).map_err(|why| {
        why.into_error(
            &path,
            "relman reads it only as the regular file its build wrote; build a new release",
        )
    })?;
    bytes
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| Error::Malformed {
                path,
                message: "it is not UTF-8: relman writes paths as UTF-8; build a new release"
                    .into(),
            })
        })
        .transpose()
}

/// The manifest and sidecar (if any) a release was sealed with, parsed.
fn parse_expected(
    release_dir: &Utf8Path,
    manifest: &str,
    sidecar: Option<&str>,
) -> Result<(Manifest, Option<Meta>)> {
    let expected = Manifest::parse(manifest, &manifest_path(release_dir))?;
    let meta = sidecar
        .map(|text| Meta::parse(text, &meta_path(release_dir)))
        .transpose()?;
    Ok((expected, meta))
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
        let (manifest, meta) = compute(root, &["a/node_modules".into()]).unwrap();
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
        // The sidecar comes from the same pass: a mode per hashed file, every link.
        assert!(meta.modes.keys().eq(manifest.files.keys()));
        assert_eq!(meta.links, [("link".into(), "a/x.txt".into())].into());
    }

    #[test]
    fn below_is_the_path_after_the_walked_directory() {
        for (dir, path) in [
            ("/r/releases/a", "/r/releases/a/x/y.js"),
            ("/r/releases/a/", "/r/releases/a/x/y.js"),
            ("rel", "rel/x/y.js"),
            ("", "x/y.js"),
        ] {
            assert_eq!(
                below(Utf8Path::new(dir), Path::new(path)),
                Path::new("x/y.js"),
                "{dir}"
            );
        }
        // Not below `dir` as written: the component-wise comparison decides.
        assert_eq!(
            below(Utf8Path::new("./rel"), Path::new("rel/x")),
            Path::new("rel/x")
        );
    }

    #[test]
    fn hash_read_reads_to_the_end_whatever_size_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let expected: [u8; 32] = Sha256::digest(&data).into();
        let mut buffer = vec![0u8; 4096];
        // The size at open, one smaller (the file grew since), none known, and 0.
        for size in [100_000, 99_999, u64::MAX, 0] {
            let mut file = File::open(&path).unwrap();
            let (digest, len) = hash_read(&mut file, size, &mut buffer).unwrap();
            assert_eq!((digest, len), (expected, 100_000), "size {size}");
        }
    }

    #[test]
    fn meta_round_trips_odd_names_and_links() {
        let meta = Meta {
            modes: [
                ("a/x.txt".into(), 0o644),
                ("bin/run".into(), 0o4755),
                ("odd\\name\n".into(), 0o1777),
                ("has -> arrow".into(), 0o600),
            ]
            .into(),
            links: [
                ("main.js".into(), "server.js".into()),
                ("uploads".into(), "../../shared/uploads".into()),
                ("a -> b".into(), "c -> d".into()),
                ("plain".into(), "target -> with arrow".into()),
                ("x>y".into(), "back\\slash>".into()),
            ]
            .into(),
        };
        let text = meta.render();
        assert!(text.contains("4755  bin/run\n"), "{text}");
        assert!(text.contains("0644  a/x.txt\n"), "{text}");
        assert!(text.contains("link  main.js -> server.js\n"), "{text}");
        assert!(
            text.contains("link  plain -> target -> with arrow\n"),
            "{text}"
        );
        assert!(text.contains("\\link  a -\\> b -> c -\\> d\n"), "{text}");
        assert_eq!(text.lines().count(), 9, "one line per entry: {text}");
        assert_eq!(Meta::parse(&text, Utf8Path::new("m")).unwrap(), meta);
        for bad in [
            "644  a\n",
            "0999  a\n",
            "0644  ../a\n",
            "link  a\n",
            "link  /abs -> x\n",
            "\\0644  a\\q\n",
            "0644 a\n",
        ] {
            assert!(Meta::parse(bad, Utf8Path::new("m")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn meta_diff_notes_modes_and_links_and_merges_a_type_change() {
        let expected = Meta {
            modes: [("a".into(), 0o644), ("b".into(), 0o755)].into(),
            links: [
                ("l".into(), "a".into()),
                ("m".into(), "b".into()),
                ("n".into(), "a".into()),
            ]
            .into(),
        };
        let actual = Meta {
            // `b` is gone (the manifest says so), `n` is a file now.
            modes: [("a".into(), 0o4644), ("n".into(), 0o644)].into(),
            links: [
                ("l".into(), "/etc".into()),
                ("new".into(), "/etc/shadow".into()),
            ]
            .into(),
        };
        // What the manifest's own diff says: `b` missing, `n` added.
        let mut diff = Diff {
            changed: vec![],
            missing: vec!["b".into()],
            added: vec!["n".into()],
        };
        let mut details = BTreeMap::new();
        expected.diff_into(&actual, &mut diff, &mut details);
        assert_eq!(diff.changed, ["a", "l", "n"]);
        assert_eq!(diff.missing, ["b", "m"]);
        assert_eq!(diff.added, ["new"]);
        assert_eq!(details["a"], "mode 0644 -> 4644");
        assert_eq!(details["l"], "symlink -> a, now -> /etc");
        assert_eq!(details["m"], "symlink -> b");
        assert_eq!(details["n"], "symlink -> a, now a regular file");
        assert_eq!(details["new"], "symlink -> /etc/shadow");
        assert!(!details.contains_key("b"));
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
        let (root, _) = DeployRoot::init(&base.join("root"), None, &mut |_| {}).unwrap();
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

        // A mode changed on a file the app writes at run time is set apart as well.
        let built = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(release.join(".next/server/app/index.html"))
                .unwrap()
                .permissions(),
        ) & 0o7777;
        assert_ne!(built, 0o666);
        std::fs::set_permissions(
            release.join(".next/server/app/index.html"),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        let report = verify_r1(&root);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.runtime.changed, [".next/server/app/index.html"]);
        assert_eq!(
            report.details[".next/server/app/index.html"],
            format!("mode {built:04o} -> 0666")
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
