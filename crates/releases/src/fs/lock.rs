//! Kernel file locks (`flock(2)` through `std::fs::File::lock`): the root lock that serialises
//! mutating commands, and the per-release build lock that marks a build in progress.
//!
//! A crashed process drops its locks with its file descriptors, so a lock can never go stale
//! the way a PID file does. Both locks are taken on a directory, never on a file inside it:
//! a lock belongs to an inode, and a file can be removed and made anew (a new inode, a free
//! lock) by anyone while its holder works, whereas the deploy root (or a release directory)
//! cannot be replaced under the relman working in it.
//!
//! The holder of the root lock writes who it is into `ROOT/.relman/lock`, a note that only
//! helps a waiting operator: the waiting process names that holder only when the recorded
//! pid is a live relman, since anything else may hold the lock.

use crate::fs::flag;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camino::Utf8Path;

use crate::error::{Error, IoContext, Result};
use crate::fs::own_files::open_own_file;

/// The held root lock; dropping it unlocks.
#[derive(Debug)]
pub struct RootLock {
    _root: File,
}

/// Opens a directory read-only, to lock it.
fn open_directory(path: &Utf8Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(flag(rustix::fs::OFlags::DIRECTORY))
        .open(path)
}

/// Takes the exclusive lock on the deploy root directory `root`, then writes `holder` into
/// the note at `note` (created if missing).
///
/// Tries first; if another process holds it, calls `on_wait` with a description of that
/// holder, then keeps trying until `wait` has passed or `cancel` is set.
pub(crate) fn lock_root(
    root: &Utf8Path,
    note: &Utf8Path,
    holder: &str,
    wait: Duration,
    cancel: &AtomicBool,
    on_wait: &mut dyn FnMut(&str),
) -> Result<RootLock> {
    let directory = open_directory(root).at("failed to open the deploy root", root)?;
    let started = Instant::now();
    let mut announced = false;
    let mut tries = 0u32;
    loop {
        match directory.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let other = Holder::read(note);
                if started.elapsed() >= wait {
                    return Err(Error::Locked {
                        holder: other.to_string(),
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                if cancel.load(Ordering::SeqCst) {
                    return Err(Error::LockWaitInterrupted {
                        holder: other.to_string(),
                    });
                }
                // A relman writes its note just after it takes the lock: on the very first
                // try, a note that names no live relman may be one not yet rewritten.
                if !announced && (tries > 0 || matches!(other, Holder::Relman(_))) {
                    on_wait(&other.to_string());
                    announced = true;
                }
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryLockError::Error(err)) => return Err(Error::io("failed to lock", root, err)),
        }
    }
    // Best effort: the lock is what matters, the note only helps a waiting operator. It is
    // never followed through a symlink (it is truncated) nor opened if it is not a file.
    if let Ok(mut file) = open_own_file(
        note,
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644),
    ) {
        let _ = file
            .set_len(0)
            .and_then(|()| file.write_all(holder.as_bytes()));
    }
    Ok(RootLock { _root: directory })
}

/// Who holds the root lock, as far as a waiting process can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder {
    /// The note names a pid that is a live relman: its whole description.
    Relman(String),
    /// The note names a relman that is gone (or whose pid is now another program's).
    Gone(u32),
    /// No note, or none that names a pid.
    Unknown,
}

/// The longest note read; relman writes one short line.
const NOTE_LIMIT: u64 = 4096;

impl Holder {
    fn read(note: &Utf8Path) -> Holder {
        let mut text = String::new();
        if let Ok(file) = open_own_file(note, OpenOptions::new().read(true)) {
            let _ = file.take(NOTE_LIMIT).read_to_string(&mut text);
        }
        Holder::from_note(&text, is_relman)
    }

    /// Reads a note (`pid N (PURPOSE, since TIME)`), asking `is_relman` about its pid.
    fn from_note(text: &str, is_relman: impl Fn(u32) -> bool) -> Holder {
        let text = text.trim();
        let pid = text
            .strip_prefix("pid ")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse::<u32>().ok());
        match pid {
            Some(pid) if is_relman(pid) => Holder::Relman(text.to_owned()),
            Some(pid) => Holder::Gone(pid),
            None => Holder::Unknown,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Relman(text) => f.write_str(text),
            Holder::Gone(pid) => write!(
                f,
                "another process (the last relman recorded there was pid {pid}, no longer running)"
            ),
            Holder::Unknown => f.write_str("another process (no relman is recorded as holding it)"),
        }
    }
}

/// Whether `pid` is a running relman: its `/proc/PID/cmdline` starts with a program named
/// `relman`.
fn is_relman(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(program))
        .file_name()
        .is_some_and(|name| name == "relman")
}

/// The lock a build holds on its own release for as long as it runs.
///
/// Taken on the release directory (the one holding `.relman/build.lock`), so that removing
/// the marker file cannot make a running build read as failed, and `prune` delete it.
#[derive(Debug)]
pub(crate) struct BuildLock {
    _release: File,
    _marker: File,
}

/// The release directory of a build lock marker, `releases/ID/.relman/build.lock`.
fn release_of(marker: &Utf8Path) -> &Utf8Path {
    marker
        .parent()
        .and_then(Utf8Path::parent)
        .unwrap_or(Utf8Path::new("."))
}

impl BuildLock {
    /// Creates the marker `releases/ID/.relman/build.lock` of a release being claimed and
    /// locks the release directory, and the marker too for a reader from an earlier relman,
    /// which asked only the marker.
    pub(crate) fn acquire(marker: &Utf8Path) -> Result<BuildLock> {
        let marker_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .at("failed to create build lock", marker)?;
        let release = release_of(marker);
        let release_dir = open_directory(release).at("failed to open", release)?;
        // The directory was just made by this process under the root lock: no other build
        // can hold it, only a reader asking whether it is locked, for an instant.
        let started = Instant::now();
        for file in [&release_dir, &marker_file] {
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) if started.elapsed() < Duration::from_secs(2) => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(TryLockError::WouldBlock) => {
                        return Err(Error::Build(format!(
                            "`{release}` is locked by another build"
                        )));
                    }
                    Err(TryLockError::Error(err)) => {
                        return Err(Error::io("failed to lock", release, err));
                    }
                }
            }
        }
        Ok(BuildLock {
            _release: release_dir,
            _marker: marker_file,
        })
    }
}

/// Whether a process holds the root lock of `root`, asked with a shared lock that is let go
/// at once.
pub(crate) fn root_is_locked(root: &Utf8Path) -> bool {
    open_directory(root).is_ok_and(|dir| match dir.try_lock_shared() {
        Ok(()) => {
            let _ = dir.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    })
}

/// Whether a live process holds the build lock of the release whose marker is `marker`.
///
/// Asked with a shared lock, so that readers never stand in each other's way. The marker
/// itself is asked too, for a build by a relman that locked only it.
pub(crate) fn is_locked(marker: &Utf8Path) -> bool {
    let held = |file: File| match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    };
    open_directory(release_of(marker)).is_ok_and(held)
        || OpenOptions::new()
            .read(true)
            .custom_flags(flag(rustix::fs::OFlags::NOFOLLOW) | flag(rustix::fs::OFlags::NONBLOCK))
            .open(marker)
            .is_ok_and(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;

    fn temp_root() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        (dir, path)
    }

    #[test]
    fn second_root_lock_waits_names_the_holder_and_times_out() {
        let (_guard, root) = temp_root();
        let note = root.join("lock");
        let held = lock_root(
            &root,
            &note,
            "pid 1 (relman activate x, since then)",
            Duration::ZERO,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&note).unwrap(),
            "pid 1 (relman activate x, since then)"
        );
        let mut seen = String::new();
        let err = lock_root(
            &root,
            &note,
            "pid 2",
            Duration::from_millis(350),
            &AtomicBool::new(false),
            &mut |h| seen = h.to_owned(),
        )
        .unwrap_err();
        // Pid 1 is alive but it is not a relman: the note is only the last recorded holder.
        let other = "another process (the last relman recorded there was pid 1, no longer running)";
        assert_eq!(seen, other);
        assert!(
            err.to_string().contains(&format!("locked by {other}")),
            "{err}"
        );
        let cancelled = AtomicBool::new(true);
        let err = lock_root(
            &root,
            &note,
            "pid 3",
            Duration::from_secs(60),
            &cancelled,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("interrupted while waiting"),
            "{err}"
        );
        drop(held);
        lock_root(
            &root,
            &note,
            "pid 2 (relman prune, since now)",
            Duration::ZERO,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&note).unwrap(),
            "pid 2 (relman prune, since now)"
        );
    }

    #[test]
    fn the_lock_is_the_directory_s_not_the_note_s() {
        let (_guard, root) = temp_root();
        let note = root.join("lock");
        let held = lock_root(
            &root,
            &note,
            "pid 1 (relman build, since then)",
            Duration::ZERO,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        std::fs::remove_file(&note).unwrap();
        let err = lock_root(
            &root,
            &note,
            "pid 2",
            Duration::from_millis(150),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("locked by another process (no relman is recorded as holding it)"),
            "{err}"
        );
        assert!(!note.exists(), "a waiting process writes nothing");
        drop(held);
        // A lock taken some other way on the directory counts just the same.
        let other = File::open(&root).unwrap();
        other.lock().unwrap();
        assert!(
            lock_root(
                &root,
                &note,
                "pid 2",
                Duration::ZERO,
                &AtomicBool::new(false),
                &mut |_| {}
            )
            .is_err()
        );
    }

    #[test]
    fn a_note_names_its_holder_only_while_it_is_a_live_relman() {
        let note = "pid 4242 (relman activate r2, since 2026-11-29T04:20:00Z)\n";
        assert_eq!(
            Holder::from_note(note, |pid| pid == 4242).to_string(),
            note.trim()
        );
        assert_eq!(
            Holder::from_note(note, |_| false).to_string(),
            "another process (the last relman recorded there was pid 4242, no longer running)"
        );
        for junk in ["", "pid", "pid x (relman)", "4242", "hello"] {
            assert_eq!(
                Holder::from_note(junk, |_| true),
                Holder::Unknown,
                "{junk:?}"
            );
        }
        assert!(
            !is_relman(std::process::id()),
            "a test binary is not relman"
        );
        assert!(!is_relman(u32::MAX));
    }

    #[test]
    fn build_lock_is_visible_until_dropped_even_without_its_marker() {
        let (_guard, root) = temp_root();
        let meta = root.join("releases/r1/.relman");
        std::fs::create_dir_all(&meta).unwrap();
        let marker = meta.join("build.lock");
        assert!(!is_locked(&marker));
        let lock = BuildLock::acquire(&marker).unwrap();
        assert!(is_locked(&marker));
        std::fs::remove_file(&marker).unwrap();
        assert!(
            is_locked(&marker),
            "the release directory is what is locked"
        );
        drop(lock);
        assert!(!is_locked(&marker));
    }
}
