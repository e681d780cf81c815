//! Removing a release's tree in one pass that also counts what the removal frees.
//!
//! `remove_dir_all` plus a walk to measure first reads every directory twice and looks every
//! file up by its whole path; here each directory is read once, and each entry is inspected and
//! unlinked by its name relative to its directory's handle (`statat`, `unlinkat`), about what
//! `rm -rf` does.

use std::os::fd::OwnedFd;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{Error, Result};

/// Removes whatever is at `path` (a tree's symlinks are never followed; a missing path is
/// fine) and returns the bytes of the regular files it removed the last link to: a file that
/// another release still links to (a shared `node_modules`) frees nothing yet.
pub(crate) fn remove_counting(path: &Utf8Path) -> Result<u64> {
    let stat = match rustix::fs::lstat(path.as_std_path()) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(0),
        Err(errno) => return Err(Error::io("failed to inspect", path, errno.into())),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        crate::fs::remove_file(path)?;
        return Ok(freed(&stat));
    }
    let dir = open_dir(None, path.as_str(), path)?;
    let bytes = empty(&dir, path)?;
    std::fs::remove_dir(path).map_err(|err| Error::io("failed to remove", path, err))?;
    Ok(bytes)
}

/// What removing the tree at `dir` would free, as [`remove_counting`] counts it, for a dry
/// run: files no other path links to.
pub(crate) fn freed_by(dir: &Utf8Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|meta| meta.is_file() && std::os::unix::fs::MetadataExt::nlink(meta) == 1)
        .map(|meta| meta.len())
        .sum()
}

/// The bytes removing the last link to `stat`'s file frees.
fn freed(stat: &rustix::fs::Stat) -> u64 {
    let regular = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile;
    if regular && stat.st_nlink == 1 {
        u64::try_from(stat.st_size).unwrap_or(0)
    } else {
        0
    }
}

fn open_dir(parent: Option<&OwnedFd>, name: &str, path: &Utf8Path) -> Result<OwnedFd> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    match parent {
        Some(parent) => rustix::fs::openat(parent, name, flags, Mode::empty()),
        None => rustix::fs::open(path.as_std_path(), flags, Mode::empty()),
    }
    .map_err(|errno| Error::io("failed to open", path, errno.into()))
}

/// Removes everything in the directory `dir` (at `path`), depth first.
fn empty(dir: &OwnedFd, path: &Utf8Path) -> Result<u64> {
    // All names first: removing entries while the directory is being read may skip others.
    let mut entries = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)
        .map_err(|errno| Error::io("failed to read", path, errno.into()))?
    {
        let entry = entry.map_err(|errno| Error::io("failed to read", path, errno.into()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = String::from_utf8(name.to_vec()).map_err(|_| {
            Error::NonUtf8Path(format!("{path}/{}", entry.file_name().to_string_lossy()))
        })?;
        entries.push((name, entry.file_type()));
    }
    let mut bytes = 0;
    for (name, file_type) in entries {
        let child: Utf8PathBuf = path.join(&name);
        let file_type = match file_type {
            FileType::Unknown => None,
            known => Some(known),
        };
        if file_type == Some(FileType::Directory) {
            bytes += remove_dir(dir, &name, &child)?;
            continue;
        }
        let stat = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|errno| Error::io("failed to inspect", &child, errno.into()))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            bytes += remove_dir(dir, &name, &child)?;
            continue;
        }
        rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty())
            .map_err(|errno| Error::io("failed to remove", &child, errno.into()))?;
        bytes += freed(&stat);
    }
    Ok(bytes)
}

fn remove_dir(parent: &OwnedFd, name: &str, path: &Utf8Path) -> Result<u64> {
    let dir = open_dir(Some(parent), name, path)?;
    let bytes = empty(&dir, path)?;
    drop(dir);
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
        .map_err(|errno| Error::io("failed to remove", path, errno.into()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_and_counts_only_files_no_other_path_links_to() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let tree = root.join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/one"), "1234").unwrap();
        std::fs::write(tree.join("a/b/c/two"), "12").unwrap();
        std::fs::write(tree.join("a/b/shared"), "123456789").unwrap();
        std::fs::hard_link(tree.join("a/b/shared"), root.join("kept")).unwrap();
        std::os::unix::fs::symlink(root.join("kept"), tree.join("a/link")).unwrap();
        std::os::unix::fs::symlink(root, tree.join("a/b/dirlink")).unwrap();
        let readonly = tree.join("a/b/c/readonly");
        std::fs::write(&readonly, "xyz").unwrap();
        std::fs::set_permissions(
            &readonly,
            std::os::unix::fs::PermissionsExt::from_mode(0o444),
        )
        .unwrap();

        assert_eq!(
            remove_counting(&tree).unwrap(),
            4 + 2 + 3,
            "not the linked file"
        );
        assert!(!tree.exists());
        assert_eq!(
            std::fs::read_to_string(root.join("kept")).unwrap(),
            "123456789"
        );
        assert!(root.exists(), "a symlink to a directory is not followed");
        assert_eq!(remove_counting(&tree).unwrap(), 0, "a missing path is fine");
        assert_eq!(
            remove_counting(&root.join("kept")).unwrap(),
            9,
            "a lone file"
        );
    }
}
