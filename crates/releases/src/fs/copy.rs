//! Copying a source tree into a fresh release directory.
//!
//! Modes and modification times are kept (a setuid or setgid bit only while the copy keeps the
//! file's owner or group: the copy belongs to relman's user), symlinks are copied as symlinks
//! and never followed, and the files themselves are copied by a few threads with
//! `copy_file_range(2)` (through `std::io::copy`), which is what keeps this close to `cp -a`.
//! Holes stay holes: only a file's data extents are copied, so a sparse file costs no more
//! disk or time in the release than in the source.
//!
//! A tree can also be shared rather than copied ([`Place::Share`], for `node_modules`): each
//! file a copy-on-write clone where the file system has them, else, where allowed, a hard link
//! to a file nobody can write without root, else a copy. Either way no write through one tree
//! can reach the other without root: a clone is a file of its own, and a linked file has no
//! write bit.

use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fs::create_dir;

/// What to leave out of a copy.
#[derive(Debug, Default, Clone)]
pub(crate) struct Exclude {
    /// Entry names left out wherever they appear (e.g. `.git`, `node_modules`).
    pub(crate) names: Vec<String>,
    /// Paths relative to the source root left out with everything below them.
    pub(crate) paths: Vec<Utf8PathBuf>,
}

impl Exclude {
    /// Whether the copy leaves out `relative` (a path relative to the source root).
    pub(crate) fn skips(&self, relative: &Utf8Path) -> bool {
        relative
            .file_name()
            .is_some_and(|name| self.names.iter().any(|n| n == name))
            || self.paths.iter().any(|p| relative.starts_with(p))
    }
}

/// How the regular files of a tree get into the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Each file copied.
    Copy,
    /// Each file cloned where the file system can; else hard-linked when `links` and the
    /// source file has no write bit; else copied. Files below a directory named `.cache` (where
    /// packages write at run time, by the `find-cache-dir` convention) are always copied.
    Share {
        /// Whether hard links are allowed.
        links: bool,
    },
}

/// Totals of one copy.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CopyStats {
    /// Regular files placed, however.
    pub(crate) files: u64,
    /// Bytes of those files.
    pub(crate) bytes: u64,
    /// Of those files, how many are clones.
    pub(crate) cloned: u64,
    /// Of those files, how many are hard links.
    pub(crate) linked: u64,
}

/// How one file got into the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    Copied,
    Cloned,
    Linked,
}

/// Copies the tree at `source` into the existing, empty or partly filled directory `dest`.
pub(crate) fn copy_tree(
    source: &Utf8Path,
    dest: &Utf8Path,
    exclude: &Exclude,
) -> Result<CopyStats> {
    place_tree(source, dest, exclude, Place::Copy)
}

/// Puts the tree at `source` into the existing, empty or partly filled directory `dest`, its
/// files as `place` says.
///
/// The walk only lists. Then all cores make the directories, shallowest first so that each
/// exists before anything below it, and then place the files one by one (a few large files do
/// not hold up a pre-assigned share): making a directory or a link is kernel work as much as
/// copying is.
pub(crate) fn place_tree(
    source: &Utf8Path,
    dest: &Utf8Path,
    exclude: &Exclude,
    place: Place,
) -> Result<CopyStats> {
    let mut dirs = Vec::new();
    let mut entries = Vec::new();
    // The files that may be hard-linked, by directory (the index in `linked` of each target
    // directory): linked through directory handles, each file is one name to look up, not a
    // whole path.
    let mut linked: Vec<LinkGroup> = Vec::new();
    let mut groups: std::collections::HashMap<Utf8PathBuf, usize> = Default::default();
    let walker = walkdir::WalkDir::new(source)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| {
            let relative = entry.path().strip_prefix(source).unwrap_or(entry.path());
            Utf8Path::from_path(relative).is_none_or(|r| !exclude.skips(r))
        });
    for entry in walker {
        let entry = entry.map_err(|err| walk_error(source, err))?;
        let path = crate::fs::utf8(entry.path().to_path_buf())?;
        let relative = path.strip_prefix(source).unwrap_or(&path).to_owned();
        let target = dest.join(&relative);
        let file_type = entry.file_type();
        if file_type.is_dir() {
            let meta = entry.metadata().map_err(|err| walk_error(source, err))?;
            dirs.push((entry.depth(), target, meta));
        } else if file_type.is_symlink() {
            entries.push(Entry::Symlink { path, target });
        } else if file_type.is_file() {
            let place = match place {
                Place::Share { .. } if relative.components().any(|c| c.as_str() == ".cache") => {
                    Place::Copy
                }
                place => place,
            };
            match (place, path.parent(), target.parent(), path.file_name()) {
                (Place::Share { links: true }, Some(from), Some(to), Some(name)) => {
                    let next = linked.len();
                    let group = *groups.entry(to.to_owned()).or_insert(next);
                    if group == next {
                        linked.push(LinkGroup {
                            source: from.to_owned(),
                            target: to.to_owned(),
                            names: Vec::new(),
                        });
                    }
                    linked[group].names.push(name.to_owned());
                }
                _ => entries.push(Entry::File {
                    path,
                    target,
                    place,
                }),
            }
        }
        // Sockets, FIFOs and devices have no place in a release and are left out.
    }

    let deepest = dirs.iter().map(|(depth, ..)| *depth).max().unwrap_or(0);
    for depth in 1..=deepest {
        let level: Vec<&Utf8PathBuf> = dirs
            .iter()
            .filter(|(d, ..)| *d == depth)
            .map(|(_, target, _)| target)
            .collect();
        crate::parallel::map(
            &level,
            || (),
            |target, ()| fs::create_dir(target).at("failed to create directory", target),
        )?;
    }
    // Cleared by the first file the file system refuses to clone: it will refuse them all.
    let clones = AtomicBool::new(true);
    let placed = crate::parallel::map(&entries, || (), |entry, ()| entry.place(&clones))?;
    let mut stats = CopyStats::default();
    for placed in placed.into_iter().flatten() {
        stats.count(placed);
    }
    for group in crate::parallel::map(&linked, || (), |group, ()| group.place(&clones))? {
        for placed in group {
            stats.count(placed);
        }
    }

    // Directory modes and times go last: adding entries changes a directory's mtime, and a
    // read-only directory could not have been filled.
    for (_, dir, meta) in dirs.iter().rev() {
        let handle = File::open(dir).at("failed to open", dir)?;
        handle
            .set_permissions(meta.permissions())
            .at("failed to set the mode of", dir)?;
        if let Ok(modified) = meta.modified() {
            let _ = handle.set_times(FileTimes::new().set_modified(modified));
        }
    }
    Ok(stats)
}

/// A file or a symlink of a tree being placed.
enum Entry {
    File {
        path: Utf8PathBuf,
        target: Utf8PathBuf,
        place: Place,
    },
    Symlink {
        path: Utf8PathBuf,
        target: Utf8PathBuf,
    },
}

impl Entry {
    /// Puts it in place; for a file, its size and how.
    fn place(&self, clones: &AtomicBool) -> Result<Option<(u64, Placed)>> {
        match self {
            Entry::Symlink { path, target } => {
                let link = fs::read_link(path).at("failed to read symlink", path)?;
                std::os::unix::fs::symlink(&link, target).at("failed to create symlink", target)?;
                Ok(None)
            }
            Entry::File {
                path,
                target,
                place: Place::Copy,
            } => Ok(Some((copy_file(path, target)?, Placed::Copied))),
            // Files that may be linked go through `LinkGroup`: a clone, else a copy.
            Entry::File {
                path,
                target,
                place: Place::Share { .. },
            } => Ok(Some(match try_clone(path, target, clones)? {
                Some(bytes) => (bytes, Placed::Cloned),
                None => (copy_file(path, target)?, Placed::Copied),
            })),
        }
    }
}

/// The files of one directory that may be hard-linked (`Place::Share { links: true }`).
struct LinkGroup {
    source: Utf8PathBuf,
    target: Utf8PathBuf,
    names: Vec<String>,
}

impl LinkGroup {
    /// Each file a clone while the file system makes them; else a hard link made through the
    /// two directories' handles when the source file has no write bit; else a copy.
    fn place(&self, clones: &AtomicBool) -> Result<Vec<(u64, Placed)>> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let open = |dir: &Utf8Path| {
            rustix::fs::open(
                dir.as_std_path(),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|err| Error::io("failed to open", dir, err.into()))
        };
        let (from_dir, to_dir) = (open(&self.source)?, open(&self.target)?);
        let mut placed = Vec::with_capacity(self.names.len());
        for name in &self.names {
            let (from, to) = (self.source.join(name), self.target.join(name));
            if let Some(bytes) = try_clone(&from, &to, clones)? {
                placed.push((bytes, Placed::Cloned));
                continue;
            }
            let stat = rustix::fs::statat(&from_dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|err| Error::io("failed to inspect", &from, err.into()))?;
            // A file with a write bit could be written through the link by its owner (a
            // release sealed before links, or by a build that could not link): copied.
            if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                && stat.st_mode & 0o222 == 0
            {
                rustix::fs::linkat(
                    &from_dir,
                    name.as_str(),
                    &to_dir,
                    name.as_str(),
                    AtFlags::empty(),
                )
                .map_err(|err| Error::io("failed to link", &to, err.into()))?;
                placed.push((u64::try_from(stat.st_size).unwrap_or(0), Placed::Linked));
            } else {
                placed.push((copy_file(&from, &to)?, Placed::Copied));
            }
        }
        Ok(placed)
    }
}

impl CopyStats {
    fn count(&mut self, (bytes, placed): (u64, Placed)) {
        self.files += 1;
        self.bytes += bytes;
        match placed {
            Placed::Copied => {}
            Placed::Cloned => self.cloned += 1,
            Placed::Linked => self.linked += 1,
        }
    }
}

/// Copies into `dest` every regular file under `source` that `dest` lacks at the same relative
/// path, never replacing anything and never writing through a symlink: a directory on the way
/// that is a symlink in `dest` (a build could have made one) skips what lies below it.
pub(crate) fn add_missing(source: &Utf8Path, dest: &Utf8Path) -> Result<CopyStats> {
    let mut files = Vec::new();
    let mut walk = walkdir::WalkDir::new(source)
        .follow_links(false)
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|err| walk_error(source, err))?;
        let from = Utf8Path::from_path(entry.path())
            .ok_or_else(|| Error::NonUtf8Path(entry.path().display().to_string()))?;
        let relative = from.strip_prefix(source).expect("walked below the source");
        let to = dest.join(relative);
        let existing = fs::symlink_metadata(&to);
        if entry.file_type().is_dir() {
            match existing {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => walk.skip_current_dir(),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    create_dir(&to).at("failed to create directory", &to)?;
                }
                Err(err) => return Err(Error::io("failed to inspect", to, err)),
            }
        } else if entry.file_type().is_file() && existing.is_err() {
            files.push((from.to_owned(), to));
        }
    }
    place_files(&files)
}

fn place_files(files: &[(Utf8PathBuf, Utf8PathBuf)]) -> Result<CopyStats> {
    let sizes = crate::parallel::map(files, || (), |(from, to), ()| copy_file(from, to))?;
    let mut stats = CopyStats::default();
    for bytes in sizes {
        stats.count((bytes, Placed::Copied));
    }
    Ok(stats)
}

/// A clone of `from` at `to` while the file system makes them; `None` (and `clones` cleared,
/// nothing left at `to`) once it refuses, for the caller to link or copy instead.
fn try_clone(from: &Utf8Path, to: &Utf8Path, clones: &AtomicBool) -> Result<Option<u64>> {
    if !clones.load(Ordering::Relaxed) {
        return Ok(None);
    }
    match fill_file(from, to, Data::Clone) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.is_unsupported() => {
            clones.store(false, Ordering::Relaxed);
            crate::fs::remove_file(to)?;
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// How a new file gets its data.
#[derive(Debug, Clone, Copy)]
enum Data {
    /// Copied, holes kept.
    Copy,
    /// A copy-on-write clone of the source's extents (`FICLONE`). A file system that cannot
    /// clone fails it with [`io::ErrorKind::Unsupported`].
    Clone,
}

/// Makes `dest` share `source`'s data extents.
fn clone_data(source: &File, dest: &File) -> io::Result<()> {
    use rustix::io::Errno;
    rustix::fs::ioctl_ficlone(dest, source).map_err(|errno| match errno {
        // Not this file system, not across two, not this kind of file: a copy will do.
        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::NOSYS => {
            io::Error::new(io::ErrorKind::Unsupported, errno)
        }
        errno => errno.into(),
    })
}

/// Copies one regular file, keeping its mode (less a setuid or setgid bit that would change
/// whom it names) and times.
fn copy_file(from: &Utf8Path, to: &Utf8Path) -> Result<u64> {
    fill_file(from, to, Data::Copy)
}

/// Creates `to` with `from`'s data (as `data` says), mode and times.
fn fill_file(from: &Utf8Path, to: &Utf8Path, data: Data) -> Result<u64> {
    let mut source = File::open(from).at("failed to open", from)?;
    let meta = source.metadata().at("failed to inspect", from)?;
    let mut mode = meta.permissions().mode() & 0o7777;
    // Writable while it is filled, and never setuid or setgid before it is whole.
    let mut dest = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode((mode & 0o777) | 0o200)
        .open(to)
        .at("failed to create", to)?;
    let bytes = match data {
        Data::Copy => copy_data(&mut source, &mut dest, meta.len()).at("failed to copy to", to)?,
        Data::Clone => {
            clone_data(&source, &dest).at("failed to clone to", to)?;
            meta.len()
        }
    };
    if mode & SETID_BITS != 0 {
        let copy = dest.metadata().at("failed to inspect", to)?;
        mode = setid_kept(mode, &meta, &copy);
    }
    dest.set_permissions(fs::Permissions::from_mode(mode))
        .at("failed to set the mode of", to)?;
    let mut times = FileTimes::new();
    if let Ok(modified) = meta.modified() {
        times = times.set_modified(modified);
    }
    if let Ok(accessed) = meta.accessed() {
        times = times.set_accessed(accessed);
    }
    dest.set_times(times).at("failed to set the times of", to)?;
    Ok(bytes)
}

/// Copies the `len` bytes of `source` into the empty `dest`, holes kept: only the data extents
/// are copied (`SEEK_DATA`/`SEEK_HOLE`), each with `copy_file_range(2)` through `io::copy`, and
/// the length is set last. A file system without `SEEK_DATA` gets a plain copy.
fn copy_data(source: &mut File, dest: &mut File, len: u64) -> io::Result<u64> {
    use std::io::{Read, Seek};
    let mut offset = 0;
    while offset < len {
        let start = match rustix::fs::seek(&*source, rustix::fs::SeekFrom::Data(offset)) {
            Ok(start) => start,
            // No data from `offset` to the end: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) if offset == 0 => return plain_copy(source, dest),
            Err(err) => return Err(err.into()),
        };
        let end = rustix::fs::seek(&*source, rustix::fs::SeekFrom::Hole(start))?.min(len);
        if start >= end {
            break;
        }
        source.seek(io::SeekFrom::Start(start))?;
        dest.seek(io::SeekFrom::Start(start))?;
        io::copy(&mut Read::by_ref(source).take(end - start), dest)?;
        offset = end;
    }
    dest.set_len(len)?;
    Ok(len)
}

/// Every byte, holes written out as zeros.
fn plain_copy(source: &mut File, dest: &mut File) -> io::Result<u64> {
    use std::io::Seek;
    source.seek(io::SeekFrom::Start(0))?;
    dest.seek(io::SeekFrom::Start(0))?;
    io::copy(source, dest)
}

const SETUID: u32 = 0o4000;
const SETGID: u32 = 0o2000;
const SETID_BITS: u32 = SETUID | SETGID;

/// `mode` less the setuid bit when the copy's owner is not the source's, and less the setgid
/// bit when its group is not: the copy belongs to relman's user (as root, a `nobody` file
/// 4755 would otherwise become a setuid-root program).
fn setid_kept(mode: u32, source: &fs::Metadata, copy: &fs::Metadata) -> u32 {
    let mut mode = mode;
    if source.uid() != copy.uid() {
        mode &= !SETUID;
    }
    if source.gid() != copy.gid() {
        mode &= !SETGID;
    }
    mode
}

/// Takes the write bits off every regular file below `dir` outside directories named `.cache`
/// (see [`Place::Share`]), on all cores; returns how many files it changed.
pub(crate) fn remove_write_bits(dir: &Utf8Path) -> Result<u64> {
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| !(entry.file_type().is_dir() && entry.file_name() == ".cache"));
    for entry in walker {
        let entry = entry.map_err(|err| walk_error(dir, err))?;
        if entry.file_type().is_file() {
            files.push(crate::fs::utf8(entry.into_path())?);
        }
    }
    let changed = crate::parallel::map(
        &files,
        || (),
        |path, ()| {
            let mode = fs::symlink_metadata(path)
                .at("failed to inspect", path)?
                .permissions()
                .mode();
            if mode & 0o222 == 0 {
                return Ok(false);
            }
            fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o222))
                .at("failed to set the mode of", path)?;
            Ok(true)
        },
    )?;
    Ok(changed.into_iter().filter(|&changed| changed).count() as u64)
}

/// A walkdir error as an I/O error on the path it was at.
pub(crate) fn walk_error(root: &Utf8Path, err: walkdir::Error) -> Error {
    let path = err
        .path()
        .and_then(Utf8Path::from_path)
        .map_or_else(|| root.to_owned(), Utf8Path::to_owned);
    Error::io(
        "failed to read",
        path,
        err.into_io_error()
            .unwrap_or_else(|| io::Error::other("filesystem loop")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::symlink;

    const MIB: u64 = 1024 * 1024;

    fn read_at(path: &Utf8Path, offset: u64, len: usize) -> Vec<u8> {
        let mut file = File::open(path).unwrap();
        file.seek(SeekFrom::Start(offset)).unwrap();
        let mut buffer = vec![0u8; len];
        file.read_exact(&mut buffer).unwrap();
        buffer
    }

    #[test]
    fn a_shared_tree_links_only_read_only_files_and_copies_caches() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let source = root.join("src");
        fs::create_dir_all(source.join("pkg/.cache")).unwrap();
        for name in ["pkg/index.js", "pkg/writable.js", "pkg/.cache/entry"] {
            fs::write(source.join(name), name).unwrap();
        }
        assert_eq!(
            remove_write_bits(&source).unwrap(),
            2,
            "not the .cache file"
        );
        fs::set_permissions(
            source.join("pkg/writable.js"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        let inode = |path: Utf8PathBuf| fs::metadata(path).unwrap().ino();
        let linked =
            |dest: &Utf8Path, name: &str| inode(source.join(name)) == inode(dest.join(name));
        let shared = root.join("shared");
        fs::create_dir(&shared).unwrap();
        let stats = place_tree(
            &source,
            &shared,
            &Exclude::default(),
            Place::Share { links: true },
        )
        .unwrap();
        assert_eq!(stats.files, 3);
        if stats.cloned == 0 {
            // No clones here: the read-only file is linked, the rest copied.
            assert_eq!(stats.linked, 1);
            assert!(linked(&shared, "pkg/index.js"));
        }
        assert!(
            !linked(&shared, "pkg/writable.js"),
            "a file with a write bit is copied"
        );
        assert!(
            !linked(&shared, "pkg/.cache/entry"),
            "a cache file is copied"
        );
        assert_eq!(
            fs::read_to_string(shared.join("pkg/.cache/entry")).unwrap(),
            "pkg/.cache/entry"
        );

        let unlinked = root.join("unlinked");
        fs::create_dir(&unlinked).unwrap();
        let stats = place_tree(
            &source,
            &unlinked,
            &Exclude::default(),
            Place::Share { links: false },
        )
        .unwrap();
        assert_eq!(stats.linked, 0);
        assert!(
            !linked(&unlinked, "pkg/index.js"),
            "no links unless allowed"
        );
    }

    #[test]
    fn sparse_files_keep_their_holes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let source = root.join("src");
        fs::create_dir(&source).unwrap();
        let big = source.join("big.img");
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
        {
            let mut file = File::create(&big).unwrap();
            file.set_len(1024 * MIB).unwrap();
            file.seek(SeekFrom::Start(512 * MIB)).unwrap();
            file.write_all(&data).unwrap();
        }
        let allocated = |path: &Utf8Path| fs::metadata(path).unwrap().blocks() * 512;
        assert!(allocated(&big) < MIB, "the test file system keeps holes");

        let dest = root.join("dest");
        fs::create_dir(&dest).unwrap();
        let started = std::time::Instant::now();
        let stats = copy_tree(&source, &dest, &Exclude::default()).unwrap();
        let elapsed = started.elapsed();
        let copy = dest.join("big.img");
        let _ = writeln!(
            io::stderr(),
            "copied a 1 GiB sparse file in {elapsed:?}, {} bytes allocated",
            allocated(&copy)
        );
        assert_eq!(stats.bytes, 1024 * MIB);
        assert_eq!(fs::metadata(&copy).unwrap().len(), 1024 * MIB);
        assert_eq!(read_at(&copy, 512 * MIB, 4096), data);
        for hole in [
            0,
            MIB,
            256 * MIB,
            512 * MIB - 4096,
            512 * MIB + 4096,
            1024 * MIB - 4096,
        ] {
            assert!(
                read_at(&copy, hole, 4096).iter().all(|b| *b == 0),
                "zeros at {hole}"
            );
        }
        assert!(
            allocated(&copy) < MIB,
            "the copy keeps the holes: {} bytes allocated",
            allocated(&copy)
        );
    }

    #[test]
    fn keeps_modes_links_and_skips_excluded() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let source = root.join("src");
        fs::create_dir_all(source.join("bin")).unwrap();
        fs::create_dir_all(source.join("node_modules/x")).unwrap();
        fs::create_dir_all(source.join("deep/node_modules")).unwrap();
        fs::create_dir_all(source.join("cache/tmp")).unwrap();
        fs::write(source.join("bin/run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(source.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(source.join("secret"), "x").unwrap();
        fs::set_permissions(source.join("secret"), fs::Permissions::from_mode(0o400)).unwrap();
        fs::write(source.join("cache/tmp/f"), "x").unwrap();
        fs::write(root.join("outside"), "outside").unwrap();
        symlink("../outside", source.join("escape")).unwrap();
        symlink("/nonexistent/target", source.join("dangling")).unwrap();

        let dest = root.join("dest");
        fs::create_dir(&dest).unwrap();
        let exclude = Exclude {
            names: vec!["node_modules".into()],
            paths: vec!["cache/tmp".into()],
        };
        let stats = copy_tree(&source, &dest, &exclude).unwrap();
        assert_eq!(stats.files, 2);

        let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/run"), 0o755);
        assert_eq!(mode("secret"), 0o400);
        assert_eq!(
            fs::read_link(dest.join("escape")).unwrap().to_str(),
            Some("../outside")
        );
        assert!(fs::symlink_metadata(dest.join("dangling")).is_ok());
        assert!(!dest.join("node_modules").exists());
        assert!(!dest.join("deep/node_modules").exists());
        assert!(dest.join("cache").is_dir() && !dest.join("cache/tmp").exists());
        assert_eq!(
            fs::metadata(source.join("bin/run"))
                .unwrap()
                .modified()
                .unwrap(),
            fs::metadata(dest.join("bin/run"))
                .unwrap()
                .modified()
                .unwrap()
        );
    }
}
