//! Kernel file locks (`flock(2)` through `std::fs::File::lock`): the root lock that serialises
//! mutating commands, and the per-release build lock that marks a build in progress.
//!
//! A crashed process drops its locks with its file descriptors, so a lock can never go stale
//! the way a PID file does. The holder writes who it is into the root lock file so that a
//! waiting process can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camino::Utf8Path;

use crate::error::{Error, IoContext, Result};

/// The held root lock; dropping it unlocks.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

/// Takes the exclusive lock on `path`, writing `holder` into it.
///
/// Tries first; if another process holds it, calls `on_wait` with that holder's description,
/// then keeps trying until `wait` has passed or `cancel` is set.
pub(crate) fn lock_root(
    path: &Utf8Path,
    holder: &str,
    wait: Duration,
    cancel: &AtomicBool,
    on_wait: &mut dyn FnMut(&str),
) -> Result<RootLock> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at("failed to open lock file", path)?;
    let started = Instant::now();
    let mut announced = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let other = read_holder(&mut file);
                if started.elapsed() >= wait {
                    return Err(Error::Locked {
                        holder: other,
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                if cancel.load(Ordering::SeqCst) {
                    return Err(Error::LockWaitInterrupted { holder: other });
                }
                if !announced {
                    on_wait(&other);
                    announced = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryLockError::Error(err)) => return Err(Error::io("failed to lock", path, err)),
        }
    }
    // Best effort: the lock is what matters, the text only helps a waiting operator.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(holder.as_bytes()));
    Ok(RootLock { _file: file })
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another relman process".to_owned()
    } else {
        text.to_owned()
    }
}

/// The lock a build holds on its own release for as long as it runs.
#[derive(Debug)]
pub(crate) struct BuildLock {
    _file: File,
}

impl BuildLock {
    /// Creates and locks the build lock file of a release being claimed.
    pub(crate) fn acquire(path: &Utf8Path) -> Result<BuildLock> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .at("failed to create build lock", path)?;
        file.try_lock().map_err(|err| match err {
            TryLockError::WouldBlock => {
                Error::Build(format!("`{path}` is locked by another build"))
            }
            TryLockError::Error(err) => Error::io("failed to lock", path, err),
        })?;
        Ok(BuildLock { _file: file })
    }
}

/// Whether a live process holds the build lock at `path`.
pub(crate) fn is_locked(path: &Utf8Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;

    #[test]
    fn second_root_lock_names_the_holder_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("lock")).unwrap();
        let held = lock_root(
            &path,
            "pid 1: relman activate x",
            Duration::ZERO,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let mut seen = String::new();
        let err = lock_root(
            &path,
            "pid 2",
            Duration::from_millis(250),
            &AtomicBool::new(false),
            &mut |h| seen = h.to_owned(),
        )
        .unwrap_err();
        assert_eq!(seen, "pid 1: relman activate x");
        assert!(
            err.to_string()
                .contains("locked by pid 1: relman activate x"),
            "{err}"
        );
        let cancelled = AtomicBool::new(true);
        let err = lock_root(
            &path,
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
            &path,
            "pid 2",
            Duration::ZERO,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
    }

    #[test]
    fn build_lock_is_visible_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("build.lock")).unwrap();
        assert!(!is_locked(&path));
        let lock = BuildLock::acquire(&path).unwrap();
        assert!(is_locked(&path));
        drop(lock);
        assert!(!is_locked(&path));
    }
}
