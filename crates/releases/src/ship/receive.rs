//! `relman receive`: a stream from `relman pack` into `releases/ID`, claimed, written,
//! checked and sealed the way a build is; refused whole, with its directory removed, when
//! anything in it does not hold.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::{
    Counting, END_ENTRY, End, FORMAT, FORMAT_ENTRY, Format, Hashing, MANIFEST_ENTRY, META_ENTRY,
    SEAL_ENTRY, TREE_PREFIX, UNLISTED_ENTRY, UNLISTED_META_ENTRY,
};
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::id::ReleaseId;
use crate::manifest::{self, Manifest, Meta, RuntimeFiles};
use crate::platform::{self, Built, Host};
use crate::record::{LOG_FILE, MANIFEST_LIMIT, META_DIR, RECORD_LIMIT, Seal};
use crate::root::DeployRoot;
use crate::store::{self, State};

/// The buffer the stream is read into, and the one each file is written from.
const BUFFER: usize = 256 * 1024;

/// Where `receive` reads the stream from.
pub enum ReceiveInput<'a> {
    /// A reader the caller owns (stdin).
    Reader(&'a mut dyn Read),
    /// A file written by `relman pack --output`.
    File(&'a Utf8Path),
}

/// What `receive` did.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiveReport {
    /// The release.
    pub id: ReleaseId,
    /// Always `sealed`.
    pub state: State,
    /// `false` when the same release was already sealed here: nothing was written.
    pub received: bool,
    /// Regular files written.
    pub files: u64,
    /// Symlinks written.
    pub links: u64,
    /// Bytes of the stream read, compressed.
    pub bytes: u64,
    /// Bytes of the files written.
    pub content_bytes: u64,
    /// What may stop it from running here without stopping it from being received (a
    /// different Node.js version when `node_modules` holds no native code, say).
    pub warnings: Vec<String>,
    /// The release directory.
    pub dir: Utf8PathBuf,
}

/// Reads a stream from `relman pack` into `releases/ID` and seals it. Receiving a release
/// that is already sealed here with the same manifest changes nothing. `cancel` is polled
/// between entries; `on_wait` hears who holds the root lock before this process waits.
pub fn receive(
    root: &DeployRoot,
    input: ReceiveInput<'_>,
    cancel: &AtomicBool,
    on_wait: &mut dyn FnMut(&str),
) -> Result<ReceiveReport> {
    root.require_initialised()?;
    let config = root.config()?;
    crate::build::check_shared(root, &config)?;
    match input {
        ReceiveInput::Reader(reader) => receive_from(root, &config, reader, cancel, on_wait),
        ReceiveInput::File(path) => {
            let mut file = File::open(path).map_err(|err| {
                Error::Usage(format!(
                    "cannot read `{path}`: {err}; pass `--input` a file written by `relman pack --output`"
                ))
            })?;
            receive_from(root, &config, &mut file, cancel, on_wait)
        }
    }
}

/// Why a stream is refused, and so what to do about it.
enum Refusal {
    /// Cut short: send it again.
    Truncated(String),
    /// Not what `pack` writes, or changed on the way: pack and send it again.
    Broken(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Truncated(why) => write!(
                f,
                "stream refused, nothing sealed: {why} (cut short in transit?); send it again from `relman pack`"
            ),
            Refusal::Broken(why) => write!(
                f,
                "stream refused, nothing sealed: {why}; pack the release again and send it from `relman pack` unchanged"
            ),
        }
    }
}

fn truncated(why: impl Into<String>) -> Error {
    Error::Refused(Refusal::Truncated(why.into()).to_string())
}

fn broken(why: impl Into<String>) -> Error {
    Error::Refused(Refusal::Broken(why.into()).to_string())
}

/// A failure to read the stream.
fn read_error(err: io::Error) -> Error {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => truncated("it ends in the middle of an entry"),
        _ => broken(format!("it cannot be read ({err})")),
    }
}

/// The next entry, if any.
fn next<'a, R: Read>(entries: &mut tar::Entries<'a, R>) -> Result<Option<tar::Entry<'a, R>>> {
    entries.next().transpose().map_err(read_error)
}

/// An entry's path, as UTF-8 text without a trailing `/`.
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    let path = entry
        .path()
        .map_err(|err| broken(format!("an entry's path cannot be read ({err})")))?;
    let text = path
        .to_str()
        .ok_or_else(|| broken(format!("entry `{}` is not UTF-8", path.display())))?;
    Ok(text.trim_end_matches('/').to_owned())
}

/// Reads one of relman's own entries, which must be `name`, a regular file of at most `limit`
/// bytes.
fn read_own<R: Read>(entry: Option<tar::Entry<'_, R>>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let Some(mut entry) = entry else {
        return Err(truncated(format!("it ends before `{name}`")));
    };
    let path = entry_path(&entry)?;
    if path != name {
        return Err(broken(format!("found `{path}` where `{name}` belongs")));
    }
    let size = entry.size();
    if entry.header().entry_type() != tar::EntryType::Regular || size > limit {
        return Err(broken(format!("`{name}` is not a file relman writes")));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 != size {
        return Err(truncated(format!("it ends inside `{name}`")));
    }
    Ok(bytes)
}

/// The release as the head of the stream describes it.
struct Head {
    id: ReleaseId,
    seal: Seal,
    seal_bytes: Vec<u8>,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    meta: Option<(Meta, Vec<u8>)>,
}

fn read_head<R: Read>(entries: &mut tar::Entries<'_, R>) -> Result<Head> {
    let first = next(entries)?.ok_or_else(|| truncated("it is empty"))?;
    if entry_path(&first)? != FORMAT_ENTRY {
        return Err(broken("it is not a stream written by `relman pack`"));
    }
    let format = read_own(Some(first), FORMAT_ENTRY, RECORD_LIMIT)?;
    let format: Format = serde_json::from_slice(&format)
        .map_err(|err| broken(format!("`{FORMAT_ENTRY}` is malformed ({err})")))?;
    if format.format != FORMAT {
        return Err(Error::Refused(format!(
            "stream refused, nothing sealed: it is in stream format {}, and this relman reads format {FORMAT}: use the same relman version on both hosts",
            format.format
        )));
    }
    let seal_bytes = read_own(next(entries)?, SEAL_ENTRY, RECORD_LIMIT)?;
    let seal: Seal = serde_json::from_slice(&seal_bytes)
        .map_err(|err| broken(format!("its `release.json` is malformed ({err})")))?;
    if seal.id != format.id {
        return Err(broken(format!(
            "its `release.json` is release {}'s, not {}'s",
            seal.id, format.id
        )));
    }
    let manifest_bytes = read_own(next(entries)?, MANIFEST_ENTRY, MANIFEST_LIMIT)?;
    let manifest = std::str::from_utf8(&manifest_bytes)
        .map_err(|_| broken("its manifest is not UTF-8"))
        .and_then(|text| Manifest::parse(text, Utf8Path::new(MANIFEST_ENTRY)))
        .map_err(|err| broken(err.to_string()))?;
    let meta = if format.meta {
        let bytes = read_own(next(entries)?, META_ENTRY, MANIFEST_LIMIT)?;
        let meta = std::str::from_utf8(&bytes)
            .map_err(|_| broken("its manifest sidecar is not UTF-8"))
            .and_then(|text| Meta::parse(text, Utf8Path::new(META_ENTRY)))
            .map_err(|err| broken(err.to_string()))?;
        Some((meta, bytes))
    } else {
        None
    };
    Ok(Head {
        id: format.id,
        seal,
        seal_bytes,
        manifest,
        manifest_bytes,
        meta,
    })
}

/// The target `build` gives the link of shared path `path`: up to the deploy root, then
/// `shared/PATH`.
fn shared_target(path: &str) -> String {
    let depth = Utf8Path::new(path).components().count() + 1;
    format!("{}shared/{path}", "../".repeat(depth))
}

/// The shared paths the release links to (its sidecar's links that `build` made into
/// `shared/`) must exist on this host too: checked before anything is created.
fn check_linked_shared(root: &DeployRoot, meta: Option<&Meta>) -> Result<()> {
    let Some(meta) = meta else { return Ok(()) };
    for (path, target) in &meta.links {
        if *target != shared_target(path) {
            continue;
        }
        let shared = root.shared_dir().join(path);
        if std::fs::symlink_metadata(&shared).is_err() {
            return Err(Error::Usage(format!(
                "shared path `{path}` is missing on this host: create `{shared}` (the release links to it) and list `{path}` in `shared.paths`"
            )));
        }
    }
    Ok(())
}

fn receive_from(
    root: &DeployRoot,
    config: &Config,
    input: &mut dyn Read,
    cancel: &AtomicBool,
    on_wait: &mut dyn FnMut(&str),
) -> Result<ReceiveReport> {
    let mut counting = Counting::new(io::BufReader::with_capacity(BUFFER, input));
    // Nothing at all is most often a `relman pack` that failed at the other end of a pipe.
    if counting.inner.fill_buf().map_err(read_error)?.is_empty() {
        return Err(Error::Refused(
            "stream refused, nothing sealed: it is empty; if `relman pack` ran at the other end of a pipe, see its error".into(),
        ));
    }
    let decoder = zstd::Decoder::with_buffer(&mut counting).map_err(read_error)?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(read_error)?;
    let head = read_head(&mut entries)?;
    let id = head.id.clone();
    let dir = root.release_dir(&id);
    check_linked_shared(root, head.meta.as_ref().map(|(meta, _)| meta))?;

    if std::fs::symlink_metadata(&dir).is_ok() {
        existing(root, &id, &head.manifest_bytes)?;
        // The same release is sealed here: read the rest so the sender's pipe ends cleanly.
        drop(archive);
        io::copy(&mut counting, &mut io::sink()).map_err(read_error)?;
        return Ok(ReceiveReport {
            id,
            state: State::Sealed,
            received: false,
            files: 0,
            links: 0,
            bytes: counting.bytes,
            content_bytes: 0,
            warnings: Vec::new(),
            dir,
        });
    }

    let (exclude, runtime) = manifest::sealed_rules(root, config, &dir, Some(&head.seal))?;
    let host = Host::detect_with_node();
    let (_, _lock) = crate::build::claim(
        root,
        "relman receive",
        Some(&id),
        head.seal.created_at,
        cancel,
        on_wait,
    )
    .map_err(|err| match err {
        Error::IdTaken(_) => Error::Refused(format!(
            "release {id} appeared here while the stream was read (another build or receive): nothing changed, see `relman list`"
        )),
        other => other,
    })?;
    let mut log = crate::fs::open_append(&dir.join(META_DIR).join(LOG_FILE))?;
    let _ = writeln!(log, "relman: receiving release {id} from a stream");

    let mut receiver = Receiver {
        dir: &dir,
        head: &head,
        exclude: &exclude,
        runtime: &runtime,
        host: &host,
        cancel,
        dirs: HashSet::from([String::new()]),
        seen: HashSet::new(),
        files: BTreeMap::new(),
        links: BTreeMap::new(),
        unlisted_links: BTreeMap::new(),
        dir_modes: Vec::new(),
        end: End::default(),
        native: None,
        warnings: Vec::new(),
        buffer: vec![0; BUFFER],
    };
    let mut result = receiver.tree_and_trailer(&mut entries);
    if result.is_ok() {
        // The rest of the zstd frame, its checksum included.
        let mut decoder = archive.into_inner();
        result = io::copy(&mut decoder, &mut io::sink())
            .map_err(read_error)
            .and_then(|_| receiver.finish(config));
    }
    match result {
        Ok(()) => {
            let _ = writeln!(log, "relman: received and sealed release {id}");
            Ok(ReceiveReport {
                id,
                state: State::Sealed,
                received: true,
                files: receiver.end.files,
                links: receiver.end.links,
                bytes: counting.bytes,
                content_bytes: receiver.end.content_bytes,
                warnings: receiver.warnings,
                dir,
            })
        }
        Err(err) => {
            // Nothing of it is sealed and nothing else refers to it: it goes, so the same
            // release can simply be sent again. (Killed, it stays unsealed, reads `failed`,
            // and `prune` removes it.)
            let _ = writeln!(log, "relman: {err}");
            drop(log);
            let _ = crate::fs::remove_any(&dir);
            Err(err)
        }
    }
}

/// A release with this ID exists here: fine (a no-op) only when it is sealed with the same
/// manifest.
fn existing(root: &DeployRoot, id: &ReleaseId, manifest_bytes: &[u8]) -> Result<()> {
    let dir = root.release_dir(id);
    if !std::fs::symlink_metadata(&dir).is_ok_and(|meta| meta.is_dir()) {
        return Err(Error::Refused(format!(
            "`{dir}` exists and is not a release directory: move it out of `releases/`, then receive again"
        )));
    }
    let release = store::release(root, id)?;
    match release.state {
        State::Sealed => {
            let here = manifest::read_manifest(&release.dir)?;
            if here.as_bytes() == manifest_bytes {
                Ok(())
            } else {
                Err(Error::Refused(format!(
                    "release {id} already exists here with a different manifest (another build under the same ID): nothing changed; build the release under a new ID, or remove this one with `relman prune` if nothing needs it"
                )))
            }
        }
        State::Failed => Err(Error::Refused(format!(
            "release {id} already exists here unsealed (a failed build or an interrupted receive): remove it with `relman prune`, then receive again"
        ))),
        State::Building => Err(Error::Refused(format!(
            "release {id} is being built or received here right now: wait for it to finish, then see `relman list`"
        ))),
    }
}

struct Receiver<'a> {
    dir: &'a Utf8Path,
    head: &'a Head,
    exclude: &'a [String],
    runtime: &'a RuntimeFiles,
    host: &'a Host,
    cancel: &'a AtomicBool,
    /// Directories written (relative; `""` is the release itself): the only parents an entry
    /// may have, so nothing is ever written through a symlink or outside the release.
    dirs: HashSet<String>,
    /// Every path written.
    seen: HashSet<String>,
    /// Regular files written: SHA-256 and permission bits.
    files: BTreeMap<String, ([u8; 32], u32)>,
    /// Symlinks written, and their targets.
    links: BTreeMap<String, String>,
    /// The symlinks the stream lists apart from the sidecar (below the excludes).
    unlisted_links: BTreeMap<String, String>,
    /// Directories and the modes they get once everything is written.
    dir_modes: Vec<(String, u32)>,
    end: End,
    /// The first native file or directory met in `node_modules`.
    native: Option<String>,
    warnings: Vec<String>,
    buffer: Vec<u8>,
}

impl Receiver<'_> {
    /// Writes the tree, then reads the unlisted hashes and the end marker and checks them.
    fn tree_and_trailer<R: Read>(&mut self, entries: &mut tar::Entries<'_, R>) -> Result<()> {
        let unlisted = loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::Refused(format!(
                    "interrupted: release {} was not sealed and what was written of it is removed",
                    self.head.id
                )));
            }
            let entry = next(entries)?.ok_or_else(|| truncated("it ends before its end marker"))?;
            let path = entry_path(&entry)?;
            if path == UNLISTED_ENTRY {
                break read_own(Some(entry), UNLISTED_ENTRY, MANIFEST_LIMIT)?;
            }
            let Some(relative) = path.strip_prefix(TREE_PREFIX) else {
                return Err(broken(format!("entry `{path}` is not part of a release")));
            };
            let relative = relative.to_owned();
            self.entry(entry, &relative)?;
        };
        let unlisted = std::str::from_utf8(&unlisted)
            .map_err(|_| broken("its list of unlisted files is not UTF-8"))
            .and_then(|text| Manifest::parse(text, Utf8Path::new(UNLISTED_ENTRY)))
            .map_err(|err| broken(err.to_string()))?;
        let unlisted_meta = read_own(next(entries)?, UNLISTED_META_ENTRY, MANIFEST_LIMIT)?;
        let unlisted_meta = std::str::from_utf8(&unlisted_meta)
            .map_err(|_| broken("its list of unlisted modes and links is not UTF-8"))
            .and_then(|text| Meta::parse(text, Utf8Path::new(UNLISTED_META_ENTRY)))
            .map_err(|err| broken(err.to_string()))?;
        let end = read_own(next(entries)?, END_ENTRY, RECORD_LIMIT)?;
        let end: End = serde_json::from_slice(&end)
            .map_err(|err| broken(format!("its end marker is malformed ({err})")))?;
        if next(entries)?.is_some() {
            return Err(broken("entries follow its end marker"));
        }
        // The lists first, which name a file; the counts catch whatever else is off.
        self.check_lists(&unlisted, &unlisted_meta)?;
        self.unlisted_links = unlisted_meta.links;
        if end != self.end {
            return Err(broken(format!(
                "its end marker counts {} files, {} links, {} directories and {} bytes, but it held {} files, {} links, {} directories and {} bytes",
                end.files,
                end.links,
                end.dirs,
                end.content_bytes,
                self.end.files,
                self.end.links,
                self.end.dirs,
                self.end.content_bytes
            )));
        }
        Ok(())
    }

    /// Writes one entry of the tree at `relative`.
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>, relative: &str) -> Result<()> {
        if crate::config::check_relative(relative).is_err() {
            return Err(broken(format!(
                "entry `{relative}` is not a relative path inside the release"
            )));
        }
        if relative == META_DIR || relative.starts_with(".relman/") {
            return Err(broken(format!(
                "entry `{relative}` would write relman's own files of the release"
            )));
        }
        let parent = relative.rsplit_once('/').map_or("", |(parent, _)| parent);
        if !self.dirs.contains(parent) {
            return Err(broken(format!(
                "entry `{relative}` is not below a directory of the stream (it would go through a symlink, a file, or a directory not yet sent)"
            )));
        }
        if !self.seen.insert(relative.to_owned()) {
            return Err(broken(format!("entry `{relative}` comes twice")));
        }
        if self.native.is_none() && platform::is_native(relative) {
            self.native = Some(relative.to_owned());
            self.check_host()?;
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o777;
        let mtime = header.mtime().ok();
        let path = self.dir.join(relative);
        match header.entry_type() {
            tar::EntryType::Directory => {
                crate::fs::create_dir(&path).at("failed to create directory", &path)?;
                self.dirs.insert(relative.to_owned());
                self.dir_modes.push((relative.to_owned(), mode));
                self.end.dirs += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|err| broken(format!("symlink `{relative}` cannot be read ({err})")))?
                    .ok_or_else(|| broken(format!("symlink `{relative}` has no target")))?;
                let target = target
                    .to_str()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        broken(format!(
                            "symlink `{relative}` has an empty or non-UTF-8 target"
                        ))
                    })?
                    .to_owned();
                crate::fs::symlink(Utf8Path::new(&target), &path)?;
                self.links.insert(relative.to_owned(), target);
                self.end.links += 1;
            }
            tar::EntryType::Regular => {
                let size = entry.size();
                let digest = self.write_file(&mut entry, &path, size, mode, mtime)?;
                self.end.files += 1;
                self.end.content_bytes += size;
                self.check_file(relative, &digest)?;
                self.files.insert(relative.to_owned(), (digest, mode));
            }
            other => {
                return Err(broken(format!(
                    "entry `{relative}` is a {}: a release holds only files, directories and symlinks",
                    kind_name(other)
                )));
            }
        }
        Ok(())
    }

    /// Writes a regular file, hashing it on the way; the stream must hold all `size` bytes.
    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Utf8Path,
        size: u64,
        mode: u32,
        mtime: Option<u64>,
    ) -> Result<[u8; 32]> {
        let mut file = crate::fs::create_file(path)?;
        let mut reader = Hashing::new(entry);
        loop {
            let read = reader.read(&mut self.buffer).map_err(read_error)?;
            if read == 0 {
                break;
            }
            file.write_all(&self.buffer[..read])
                .at("failed to write", path)?;
        }
        let (digest, len) = reader.finish();
        if len != size {
            return Err(truncated(format!("it ends inside `{path}`")));
        }
        // The build's times, so a static file has the same `Last-Modified` on every host.
        let modified = mtime.map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        crate::fs::finish_file(&file, path, mode, modified)?;
        Ok(digest)
    }

    /// Checks a file as soon as it is written against what the head of the stream says: the
    /// manifest's hash, or (checked at the end, against the unlisted list) a path the
    /// manifest leaves out or the app rewrites at run time.
    fn check_file(&self, relative: &str, digest: &[u8; 32]) -> Result<()> {
        let runtime = self.runtime.contains(relative);
        match self.head.manifest.files.get(relative) {
            Some(expected) if expected == digest || runtime => Ok(()),
            Some(_) => Err(broken(format!(
                "`{relative}` does not match the release's manifest (changed or corrupted on the way)"
            ))),
            None if runtime || manifest::is_excluded(relative, self.exclude) => Ok(()),
            None => Err(broken(format!(
                "`{relative}` is in neither the manifest nor the list of unlisted files"
            ))),
        }
    }

    /// Every file written is vouched for by one of the stream's lists, and every file they
    /// list arrived.
    fn check_lists(&self, unlisted: &Manifest, unlisted_meta: &Meta) -> Result<()> {
        for (path, digest) in &unlisted.files {
            match self.files.get(path) {
                Some((written, _)) if written == digest => {}
                Some(_) => {
                    return Err(broken(format!(
                        "`{path}` does not match its hash in the stream (changed or corrupted on the way)"
                    )));
                }
                None => {
                    return Err(broken(format!(
                        "`{path}` is listed in the stream but never came in it"
                    )));
                }
            }
        }
        for (path, (digest, _)) in &self.files {
            let vouched = self.head.manifest.files.get(path) == Some(digest)
                || unlisted.files.get(path) == Some(digest);
            if !vouched {
                return Err(broken(format!(
                    "`{path}` is in neither the manifest nor the list of unlisted files"
                )));
            }
        }
        for path in self.head.manifest.files.keys() {
            if !self.files.contains_key(path) && !self.runtime.contains(path) {
                return Err(broken(format!(
                    "`{path}` is in the release's manifest but never came in the stream"
                )));
            }
        }
        // Modes of the unlisted files, and the symlinks: each one in the sidecar or in the
        // unlisted list, with its target, and everything listed arrived.
        for (path, mode) in &unlisted_meta.modes {
            match self.files.get(path) {
                Some((_, written)) if written == mode => {}
                Some(_) => {
                    return Err(broken(format!(
                        "`{path}` does not have the mode listed in the stream"
                    )));
                }
                None => {
                    return Err(broken(format!(
                        "`{path}` is listed in the stream but never came in it"
                    )));
                }
            }
        }
        for path in unlisted.files.keys() {
            if !unlisted_meta.modes.contains_key(path) {
                return Err(broken(format!("`{path}` has no mode in the stream's list")));
            }
        }
        let sidecar = self.head.meta.as_ref().map(|(meta, _)| meta);
        for (path, target) in &self.links {
            let vouched = sidecar.is_some_and(|meta| meta.links.get(path) == Some(target))
                || unlisted_meta.links.get(path) == Some(target);
            if !vouched {
                return Err(broken(format!(
                    "symlink `{path}` is in neither the release's sidecar nor the list of unlisted links, with this target"
                )));
            }
        }
        for path in unlisted_meta.links.keys() {
            if !self.links.contains_key(path) {
                return Err(broken(format!(
                    "symlink `{path}` is listed in the stream but never came in it"
                )));
            }
        }
        Ok(())
    }

    /// Whether this host can run the release's native code (called at the first native path),
    /// or, with none, what to warn about.
    fn check_host(&mut self) -> Result<()> {
        let seal = &self.head.seal;
        let built = Built {
            node_version: seal.node_version.as_deref(),
            platform: seal.platform.as_deref(),
            arch: seal.arch.as_deref(),
        };
        match platform::check(built, self.host, self.native.as_deref()) {
            Ok(warnings) => {
                self.warnings.extend(warnings);
                Ok(())
            }
            Err(mismatch) => Err(Error::Refused(format!(
                "release {} cannot run on this host: node_modules holds native code (`{}`) built for another one: {mismatch}; nothing was sealed: build the release on a host with the same platform, arch and Node.js major version",
                self.head.id,
                self.native.as_deref().unwrap_or_default()
            ))),
        }
    }

    /// Links this host's shared paths, checks the symlinks and modes against the sidecar,
    /// writes the manifest and seals.
    fn finish(&mut self, config: &Config) -> Result<()> {
        if self.native.is_none() {
            self.check_host()?;
        }
        for path in config.shared_paths() {
            crate::build::link_shared_path(self.dir, &path)?;
            // What the stream had there is gone, replaced by the link.
            let below = |p: &String| Utf8Path::new(p).starts_with(&path);
            self.files.retain(|p, _| !below(p));
            self.links.retain(|p, _| !below(p));
            self.dir_modes.retain(|(p, _)| !below(p));
            self.links
                .insert(path.to_string(), shared_target(path.as_str()));
        }
        self.check_sidecar()?;
        for path in self.head.manifest.files.keys() {
            if !self.files.contains_key(path) && !self.runtime.contains(path) {
                return Err(broken(format!(
                    "`{path}` of the release's manifest is a shared path on this host: make `shared.paths` in relman.toml the same as on the building host"
                )));
            }
        }

        crate::fs::create_new(
            &manifest::manifest_path(self.dir),
            &self.head.manifest_bytes,
        )?;
        if let Some((_, bytes)) = &self.head.meta {
            crate::fs::atomic_write(&manifest::meta_path(self.dir), bytes)?;
        }
        // Children before parents: a directory without write permission is set last.
        self.dir_modes.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        for (relative, mode) in &self.dir_modes {
            crate::fs::set_mode(&self.dir.join(relative), *mode)?;
        }
        crate::build::seal_release(self.dir, &self.head.seal_bytes)
    }

    /// The symlinks and the files' modes against the release's sidecar (when its build
    /// wrote one); files the app rewrites at run time aside.
    fn check_sidecar(&self) -> Result<()> {
        let Some((meta, _)) = &self.head.meta else {
            return Ok(());
        };
        let mut differ: Vec<&str> = Vec::new();
        for (path, target) in &meta.links {
            if self.links.get(path) != Some(target) && !self.runtime.contains(path) {
                differ.push(path);
            }
        }
        for path in self.links.keys() {
            if !meta.links.contains_key(path)
                && !self.unlisted_links.contains_key(path)
                && !self.runtime.contains(path)
            {
                differ.push(path);
            }
        }
        for (path, (_, mode)) in &self.files {
            if meta.modes.get(path).is_some_and(|m| m != mode) && !self.runtime.contains(path) {
                differ.push(path);
            }
        }
        match differ.first() {
            None => Ok(()),
            Some(first) => Err(broken(format!(
                "{} symlinks or file modes differ from the release's sidecar (first `{first}`; if it is a shared path, make `shared.paths` in relman.toml the same as on the building host)",
                differ.len()
            ))),
        }
    }
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "FIFO",
        _ => "special entry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_links_climb_to_the_deploy_root() {
        assert_eq!(shared_target(".env"), "../../shared/.env");
        assert_eq!(
            shared_target("public/uploads"),
            "../../../shared/public/uploads"
        );
    }
}
