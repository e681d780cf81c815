//! Every change relman makes to a deploy root goes through this module.
//!
//! Writes that must survive a crash or a power cut are atomic and durable here: a temp file in
//! the same directory, written, `sync_all`ed, renamed over the target, then the directory
//! fsynced. `current` is only ever replaced by renaming a fresh symlink onto it. Clippy's
//! `disallowed-methods` (see `clippy.toml`) keeps the raw `std::fs` mutators out of other modules.
#![allow(clippy::disallowed_methods)]

pub(crate) mod copy;
pub(crate) mod lock;
pub(crate) mod own_files;
pub(crate) mod remove;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{IoContext, Result};

/// Creates `path` and its parents.
pub fn create_dir_all(path: &Utf8Path) -> Result<()> {
    fs::create_dir_all(path).at("failed to create directory", path)
}

/// Creates the directory `path`; fails if it exists.
pub(crate) fn create_dir(path: &Utf8Path) -> io::Result<()> {
    fs::create_dir(path)
}

/// Fsyncs a directory so that renames and creations inside it are durable.
pub fn sync_dir(path: &Utf8Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .at("failed to fsync directory", path)
}

/// Flushes every dirty page of the filesystem holding `path` (`syncfs(2)`).
pub(crate) fn sync_filesystem(path: &Utf8Path) -> Result<()> {
    let dir = File::open(path).at("failed to open", path)?;
    relman_sys::fs::sync_filesystem(&dir).at("failed to sync the filesystem of", path)
}

/// Writes `contents` to `path` atomically and durably.
pub fn atomic_write(path: &Utf8Path, contents: &[u8]) -> Result<()> {
    let dir = parent(path);
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .at("failed to create a temp file in", dir)?;
    // tempfile creates 0600; a seal or config must be readable like any other file.
    temp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .and_then(|()| temp.write_all(contents))
        .and_then(|()| temp.as_file().sync_all())
        .at("failed to write", temp.path().to_string_lossy().as_ref())?;
    temp.persist(path)
        .map_err(|err| err.error)
        .at("failed to rename a temp file onto", path)?;
    sync_dir(dir)
}

/// Writes a new file (mode 0644 before umask) that must not exist yet, durably.
pub(crate) fn create_new(path: &Utf8Path, contents: &[u8]) -> Result<()> {
    create_new_with_mode(path, contents, 0o644)
}

/// The same, with `mode` (before umask): 0600 for a file that holds a secret.
pub(crate) fn create_new_with_mode(path: &Utf8Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at("failed to create", path)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .at("failed to write", path)
}

/// Creates the regular file `path` for writing, mode 0600 until the caller sets its own; fails
/// if anything is there, a symlink included (never followed).
pub(crate) fn create_file(path: &Utf8Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(flag(
            rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        ))
        .open(path)
        .at("failed to create", path)
}

/// Gives a file written through [`create_file`] its permission bits and, if given, its
/// modification time, through its descriptor.
pub(crate) fn finish_file(
    file: &File,
    path: &Utf8Path,
    mode: u32,
    modified: Option<std::time::SystemTime>,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .at("failed to chmod", path)?;
    if let Some(modified) = modified {
        file.set_modified(modified)
            .at("failed to set the modification time of", path)?;
    }
    Ok(())
}

/// Sets the permission bits of `path`, a directory relman made (`chmod` follows a symlink:
/// callers pass only what they created themselves).
pub(crate) fn set_mode(path: &Utf8Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).at("failed to chmod", path)
}

/// A file written in full under a temp name beside `path`, then renamed onto it: `path` is
/// either as it was or the whole new file, never a part of it. Dropped without
/// [`NewFile::commit`], the temp file goes.
pub(crate) struct NewFile {
    temp: tempfile::NamedTempFile,
    path: Utf8PathBuf,
}

impl NewFile {
    /// Starts a new file for `path`.
    pub(crate) fn create(path: &Utf8Path) -> Result<NewFile> {
        let dir = parent(path);
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .at("failed to create a temp file in", dir)?;
        Ok(NewFile {
            temp,
            path: path.to_owned(),
        })
    }

    /// The file to write to.
    pub(crate) fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Makes it readable like any other file (0644), durable, and puts it at its path.
    pub(crate) fn commit(self) -> Result<()> {
        let NewFile { temp, path } = self;
        temp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .and_then(|()| temp.as_file().sync_all())
            .at("failed to write", temp.path().to_string_lossy().as_ref())?;
        temp.persist(&path)
            .map_err(|err| err.error)
            .at("failed to rename a temp file onto", &path)?;
        sync_dir(parent(&path))
    }
}

/// Opens `path` for appending, creating it.
pub fn open_append(path: &Utf8Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .at("failed to open", path)
}

/// Appends one whole line with a single `write` and fsyncs, so a crash leaves at most a torn
/// last line, which readers ignore; a torn last line already there is cut off first (see
/// [`own_files::append_whole_line`]). The file is never followed through a symlink.
pub(crate) fn append_line(path: &Utf8Path, line: &str) -> Result<()> {
    own_files::append_whole_line(path, line)
}

/// Makes a relative symlink `link -> target`; `link` must not exist.
/// Whether `relative` is a directory below `base` reached through directories only, no symlink
/// on the way: a build or a source may have planted one pointing anywhere, and relman writes
/// nothing through it. An empty `relative` is `base` itself.
pub(crate) fn real_dir(base: &Utf8Path, relative: &str) -> bool {
    let mut path = base.to_owned();
    Utf8Path::new(relative).components().all(|component| {
        path.push(component);
        fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir())
    })
}

pub(crate) fn symlink(target: &Utf8Path, link: &Utf8Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).at("failed to create symlink", link)
}

/// Points `link` at `target` by renaming a fresh symlink onto it, then fsyncs the directory.
///
/// At every instant `link` is either the old symlink or the new one. An existing `link` that
/// is not a symlink is refused, because `rename(2)` would silently replace a file.
pub fn replace_symlink(link: &Utf8Path, target: &Utf8Path) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(link)
        && !meta.file_type().is_symlink()
    {
        return Err(crate::Error::Malformed {
                path: link.to_owned(),
                message: "it exists and is not a symlink: move it away, then retry (relman only replaces a symlink)".into(),
            });
    }
    let dir = parent(link);
    let name = link.file_name().unwrap_or("current");
    let temp = loop {
        let candidate = dir.join(format!(
            "{name}.tmp-{}-{:08x}",
            std::process::id(),
            random_u32()
        ));
        match std::os::unix::fs::symlink(target, &candidate) {
            Ok(()) => break candidate,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(crate::Error::io("failed to create symlink", candidate, err)),
        }
    };
    if let Err(err) = fs::rename(&temp, link) {
        let _ = fs::remove_file(&temp);
        return Err(crate::Error::io(
            "failed to rename a symlink onto",
            link,
            err,
        ));
    }
    sync_dir(dir)
}

/// Removes a file or a symlink (never what it points to); a missing one is fine.
pub(crate) fn remove_file(path: &Utf8Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(crate::Error::io("failed to remove", path, err))
        }
        _ => Ok(()),
    }
}

/// Removes whatever is at `path`: a file, a symlink (not its target) or a whole tree, whose
/// symlinks are never followed.
pub(crate) fn remove_any(path: &Utf8Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).at("failed to remove", path),
        Ok(_) => remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(crate::Error::io("failed to inspect", path, err)),
    }
}

/// Renames `from` to `to` without fsyncing either parent: for a batch of renames that the
/// caller makes durable afterwards with one `sync_dir` of each parent.
pub(crate) fn rename_unsynced(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    fs::rename(from, to).at("failed to move", from)
}

fn parent(path: &Utf8Path) -> &Utf8Path {
    match path.parent() {
        Some(dir) if !dir.as_str().is_empty() => dir,
        _ => Utf8Path::new("."),
    }
}

/// A cheap random number for unique temp names; not for anything secret.
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish() as u32
}

/// Converts a std path into a UTF-8 path, or says which path is not UTF-8.
pub(crate) fn utf8(path: std::path::PathBuf) -> Result<Utf8PathBuf> {
    Utf8PathBuf::from_path_buf(path).map_err(|p| crate::Error::NonUtf8Path(p.display().to_string()))
}

/// An `open(2)` flag for `OpenOptionsExt::custom_flags`, from rustix's constants.
pub(crate) fn flag(flag: rustix::fs::OFlags) -> i32 {
    i32::try_from(flag.bits()).expect("open flags fit an i32")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        (dir, path)
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let (_guard, dir) = temp_dir();
        let file = dir.join("x.json");
        atomic_write(&file, b"one").unwrap();
        atomic_write(&file, b"two").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&file).unwrap().permissions());
        assert_eq!(
            mode & 0o777,
            0o644,
            "readable by every user, like any release file"
        );
    }

    #[test]
    fn replace_symlink_swaps_and_refuses_non_links() {
        let (_guard, dir) = temp_dir();
        let link = dir.join("current");
        replace_symlink(&link, Utf8Path::new("releases/a")).unwrap();
        replace_symlink(&link, Utf8Path::new("releases/b")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap().to_str(), Some("releases/b"));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp link left");

        let plain = dir.join("plain");
        fs::create_dir(&plain).unwrap();
        let err = replace_symlink(&plain, Utf8Path::new("releases/a")).unwrap_err();
        assert!(err.to_string().contains("is not a symlink"), "{err}");
        assert!(fs::symlink_metadata(&plain).unwrap().is_dir());
    }

    #[test]
    fn append_line_appends_whole_lines() {
        let (_guard, dir) = temp_dir();
        let file = dir.join("h.jsonl");
        append_line(&file, "{\"a\":1}").unwrap();
        append_line(&file, "{\"a\":2}").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn remove_any_never_follows_symlinks() {
        let (_guard, dir) = temp_dir();
        let outside = dir.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let tree = dir.join("tree");
        fs::create_dir(&tree).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        remove_any(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
    }
}
