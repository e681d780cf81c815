//! `relman pack ID`: a sealed release that verifies, written as one stream (see the module
//! above for its format). Nothing in the deploy root is written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::{
    Counting, END_ENTRY, End, FORMAT, FORMAT_ENTRY, Format, Hashing, LEVEL, MANIFEST_ENTRY,
    META_ENTRY, SEAL_ENTRY, TREE_PREFIX, UNLISTED_ENTRY, UNLISTED_META_ENTRY,
};
use crate::error::{Error, IoContext, Result};
use crate::id::ReleaseId;
use crate::manifest::{self, Manifest, Meta};
use crate::record::{
    MANIFEST_LIMIT, MANIFEST_META_FILE, META_DIR, RECORD_LIMIT, SEAL_FILE, read_meta_file,
};
use crate::root::DeployRoot;

/// Where `pack` writes the stream.
pub enum PackOutput<'a> {
    /// A writer the caller owns (stdout).
    Writer(&'a mut dyn Write),
    /// A file, which appears only once the whole stream is written.
    File(&'a Utf8Path),
}

/// What `pack` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    /// The release.
    pub id: ReleaseId,
    /// Regular files in the stream.
    pub files: u64,
    /// Symlinks in the stream.
    pub links: u64,
    /// Bytes of the stream, compressed.
    pub bytes: u64,
    /// Bytes of the files' contents, before compression.
    pub content_bytes: u64,
    /// The file written, with `--output`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Utf8PathBuf>,
}

/// Writes sealed release `id` as one stream. Only a sealed release whose manifest verifies
/// is packed; a file that changes while it is read ends the stream before its end marker
/// (a receiver refuses it) and fails.
pub fn pack(
    root: &DeployRoot,
    id: &ReleaseId,
    output: PackOutput<'_>,
    cancel: &AtomicBool,
) -> Result<PackReport> {
    root.require_initialised()?;
    if let PackOutput::File(path) = &output {
        check_output(root, path)?;
    }
    let release = crate::store::sealed_release(root, id)?;
    let report = manifest::verify(root, Some(id))?;
    if !report.ok {
        return Err(Error::Refused(format!(
            "release {id} does not match its manifest ({} changed, {} missing, {} added; see `relman verify {id}`): only an intact release is packed, build a new one",
            report.diff.changed.len(),
            report.diff.missing.len(),
            report.diff.added.len(),
        )));
    }
    let config = root.config()?;
    let (exclude, runtime) =
        manifest::sealed_rules(root, &config, &release.dir, release.seal.as_ref())?;
    let read = |name: &str, limit: u64| -> Result<Option<Vec<u8>>> {
        let path = release.dir.join(META_DIR).join(name);
        read_meta_file(&release.dir, name, limit)
            .map_err(|why| why.into_error(&path, "build a new release"))
    };
    let missing = |name: &str| Error::Malformed {
        path: release.dir.join(META_DIR).join(name),
        message: "it is missing: build a new release".into(),
    };
    let seal = read(SEAL_FILE, RECORD_LIMIT)?.ok_or_else(|| missing(SEAL_FILE))?;
    let manifest_text = manifest::read_manifest(&release.dir)?;
    let manifest = Manifest::parse(&manifest_text, &manifest::manifest_path(&release.dir))?;
    let meta = read(MANIFEST_META_FILE, MANIFEST_LIMIT)?;
    let sidecar = match &meta {
        Some(bytes) => Some(Meta::parse(
            std::str::from_utf8(bytes).map_err(|_| Error::Malformed {
                path: manifest::meta_path(&release.dir),
                message: "it is not UTF-8: build a new release".into(),
            })?,
            &manifest::meta_path(&release.dir),
        )?),
        None => None,
    };

    let packer = Packer {
        dir: &release.dir,
        manifest: &manifest,
        sidecar: sidecar.as_ref(),
        exclude: &exclude,
        runtime: &runtime,
        cancel,
    };
    let head = Head {
        format: serde_json::to_vec(&Format {
            format: FORMAT,
            id: id.clone(),
            meta: meta.is_some(),
        })
        .expect("a format always serialises"),
        seal,
        manifest: manifest_text.into_bytes(),
        meta,
    };
    match output {
        PackOutput::Writer(out) => {
            let (end, bytes) = packer.write(&head, out)?;
            Ok(report_of(id, end, bytes, None))
        }
        PackOutput::File(path) => {
            let mut file = crate::fs::NewFile::create(path)?;
            let (end, bytes) = packer.write(&head, file.file())?;
            file.commit()?;
            Ok(report_of(id, end, bytes, Some(path.to_owned())))
        }
    }
}

fn report_of(id: &ReleaseId, end: End, bytes: u64, output: Option<Utf8PathBuf>) -> PackReport {
    PackReport {
        id: id.clone(),
        files: end.files,
        links: end.links,
        bytes,
        content_bytes: end.content_bytes,
        output,
    }
}

/// Refuses an output file inside `releases/` (it would write into a release, the live one
/// or a sealed one) or a directory.
fn check_output(root: &DeployRoot, path: &Utf8Path) -> Result<()> {
    let parent = match path.parent() {
        Some(dir) if !dir.as_str().is_empty() => dir,
        _ => Utf8Path::new("."),
    };
    let canonical = std::fs::canonicalize(parent)
        .map_err(|err| {
            Error::Usage(format!(
                "cannot write `{path}`: its directory `{parent}`: {err}; pass `--output` a file in an existing directory"
            ))
        })
        .and_then(crate::fs::utf8)?;
    let releases = std::fs::canonicalize(root.releases_dir())
        .ok()
        .and_then(|p| crate::fs::utf8(p).ok())
        .unwrap_or_else(|| root.releases_dir());
    if canonical.starts_with(&releases) {
        return Err(Error::Usage(format!(
            "`{path}` is inside `{releases}`: relman never writes into a release; pass `--output` a path outside it"
        )));
    }
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "`{path}` is a directory: pass `--output` a file name"
        )));
    }
    Ok(())
}

/// What comes before the tree.
struct Head {
    format: Vec<u8>,
    seal: Vec<u8>,
    manifest: Vec<u8>,
    meta: Option<Vec<u8>>,
}

struct Packer<'a> {
    dir: &'a Utf8Path,
    manifest: &'a Manifest,
    sidecar: Option<&'a Meta>,
    exclude: &'a [String],
    runtime: &'a manifest::RuntimeFiles,
    cancel: &'a AtomicBool,
}

impl Packer<'_> {
    /// Writes the whole stream to `out`; returns what the end marker says and the bytes of
    /// the stream.
    fn write(&self, head: &Head, out: &mut dyn Write) -> Result<(End, u64)> {
        let fail = |err: io::Error| stream_error(err);
        let mut counting = Counting::new(out);
        let mut encoder = zstd::Encoder::new(&mut counting, LEVEL).map_err(fail)?;
        encoder.include_checksum(true).map_err(fail)?;
        // Compression on worker threads, while this one reads and hashes the files: pack is
        // otherwise single-threaded zstd.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        encoder
            .multithread(u32::try_from(workers).unwrap_or(1))
            .map_err(fail)?;
        let mut tar = tar::Builder::new(encoder);
        add_bytes(&mut tar, FORMAT_ENTRY, &head.format)?;
        add_bytes(&mut tar, SEAL_ENTRY, &head.seal)?;
        add_bytes(&mut tar, MANIFEST_ENTRY, &head.manifest)?;
        if let Some(meta) = &head.meta {
            add_bytes(&mut tar, META_ENTRY, meta)?;
        }
        let (end, unlisted, unlisted_meta) = self.tree(&mut tar)?;
        add_bytes(&mut tar, UNLISTED_ENTRY, unlisted.render().as_bytes())?;
        add_bytes(
            &mut tar,
            UNLISTED_META_ENTRY,
            unlisted_meta.render().as_bytes(),
        )?;
        let end_json = serde_json::to_vec(&end).expect("an end marker always serialises");
        add_bytes(&mut tar, END_ENTRY, &end_json)?;
        let encoder = tar.into_inner().map_err(fail)?;
        encoder.finish().map_err(fail)?;
        counting.flush().map_err(fail)?;
        Ok((end, counting.bytes))
    }

    /// Every entry of the release below it, `.relman/` aside, in order; returns the counts,
    /// the hashes of the files the manifest does not vouch for, and their modes with the
    /// symlinks the sidecar does not list.
    fn tree<W: Write>(&self, tar: &mut tar::Builder<W>) -> Result<(End, Manifest, Meta)> {
        let mut end = End::default();
        let mut unlisted = BTreeMap::new();
        let mut unlisted_meta = Meta::default();
        let walk = walkdir::WalkDir::new(self.dir)
            .follow_links(false)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| !(entry.depth() == 1 && entry.file_name() == META_DIR));
        for entry in walk {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::Refused(
                    "interrupted: the stream was cut before its end marker, so no receiver will seal it".into(),
                ));
            }
            let entry = entry.map_err(|err| crate::fs::copy::walk_error(self.dir, err))?;
            let path = crate::fs::utf8(entry.path().to_path_buf())?;
            let relative = path
                .strip_prefix(self.dir)
                .expect("walked below it")
                .as_str()
                .to_owned();
            let name = format!("{TREE_PREFIX}{relative}");
            let meta = entry
                .metadata()
                .map_err(|err| crate::fs::copy::walk_error(self.dir, err))?;
            let kind = meta.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_mode(meta.mode() & 0o7777);
            header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
            if kind.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &name, io::empty())
                    .map_err(stream_error)?;
                end.dirs += 1;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).at("failed to read symlink", &path)?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &name, &target)
                    .map_err(stream_error)?;
                end.links += 1;
                let target = crate::fs::utf8(target)?.into_string();
                if self
                    .sidecar
                    .is_none_or(|meta| meta.links.get(&relative) != Some(&target))
                {
                    unlisted_meta.links.insert(relative, target);
                }
            } else if kind.is_file() {
                let digest = self.add_file(tar, &path, &name, &mut header)?;
                let len = header.size().unwrap_or(0);
                end.files += 1;
                end.content_bytes += len;
                match self.manifest.files.get(&relative) {
                    Some(expected) if *expected == digest => {}
                    Some(_) if !self.runtime.contains(&relative) => {
                        return Err(Error::Refused(format!(
                            "`{path}` changed while it was packed: it no longer matches the manifest; nothing usable was written, pack again (and find what writes into a sealed release)"
                        )));
                    }
                    _ => {
                        if !self.runtime.contains(&relative)
                            && !manifest::is_excluded(&relative, self.exclude)
                        {
                            return Err(Error::Refused(format!(
                                "`{path}` appeared while the release was packed: it is in no manifest; pack again (and find what writes into a sealed release)"
                            )));
                        }
                        unlisted_meta
                            .modes
                            .insert(relative.clone(), meta.mode() & 0o7777);
                        unlisted.insert(relative, digest);
                    }
                }
            } else {
                return Err(Error::Refused(format!(
                    "`{path}` is not a regular file, directory or symlink: a release cannot ship it; remove it and build a new release"
                )));
            }
        }
        Ok((
            end,
            Manifest {
                files: unlisted,
                bytes: 0,
            },
            unlisted_meta,
        ))
    }

    /// Adds one regular file, hashed as it is read; exactly the size it had when opened.
    fn add_file<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        path: &Utf8Path,
        name: &str,
        header: &mut tar::Header,
    ) -> Result<[u8; 32]> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(crate::fs::flag(
                rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            ))
            .open(path)
            .at("failed to open", path)?;
        let len = File::metadata(&file).at("failed to stat", path)?.len();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(len);
        let mut reader = Hashing::new(file.take(len));
        tar.append_data(header, name, &mut reader)
            .map_err(stream_error)?;
        let (digest, read) = reader.finish();
        if read != len {
            return Err(Error::Refused(format!(
                "`{path}` shrank while it was packed ({len} bytes, then {read}): the stream is cut short and no receiver will seal it; pack again"
            )));
        }
        Ok(digest)
    }
}

/// Adds one of relman's own entries.
fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
        .map_err(stream_error)
}

/// A failure to write the stream; a closed pipe is the receiving end giving up.
fn stream_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Error::Refused(
            "the receiving end stopped reading the stream: see its own error message".into(),
        )
    } else {
        Error::Refused(format!("failed to write the stream: {err}"))
    }
}
