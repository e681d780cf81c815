//! `relman prune`: delete old releases, never a protected one.
//!
//! Protected: the current release, the rollback target, any release still building, and any
//! release that a running process (a PM2 worker, the daemon) has as its working directory.
//! A release is deleted by renaming it out of `releases/` first, so a crash mid-delete leaves
//! no half-deleted release behind, only trash that the next prune empties.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::ReleaseId;
use crate::root::DeployRoot;
use crate::store::{self, State};

/// What `relman prune` did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Deleted releases, newest first.
    pub deleted: Vec<ReleaseId>,
    /// Releases left in place, newest first.
    pub kept: Vec<ReleaseId>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Why each protected release was kept.
    pub protected: Vec<Protected>,
    /// How many of the newest sealed releases were kept (`--keep`, else `retention.keep`).
    pub keep: usize,
}

/// A release prune may not delete, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Protected {
    /// The release.
    pub id: ReleaseId,
    /// Why.
    pub reason: &'static str,
}

/// Deletes all but the `keep` newest sealed releases (default: `retention.keep`) and the
/// protected ones; failed builds beyond those go too.
pub fn prune(
    root: &DeployRoot,
    keep: Option<usize>,
    dry_run: bool,
    on_wait: &mut dyn FnMut(&str),
) -> Result<PruneReport> {
    if keep == Some(0) {
        return Err(Error::Usage(
            "`--keep` must be at least 1: the current release is always kept".into(),
        ));
    }
    root.require_initialised()?;
    let config = root.config()?;
    let keep = keep.unwrap_or(config.retention.keep);
    let _lock = if dry_run {
        None
    } else {
        Some(root.lock("relman prune", on_wait)?)
    };
    if !dry_run {
        empty_trash(root)?;
    }

    let overview = store::overview(root)?;
    let in_use = releases_in_use(root);
    let mut protected = Vec::new();
    for release in &overview.releases {
        let reason = if overview.current.as_ref() == Some(&release.id) {
            Some("current")
        } else if overview.rollback_target.as_ref() == Some(&release.id) {
            Some("rollback target")
        } else if release.state == State::Building {
            Some("building")
        } else if in_use.contains(release.id.as_str()) {
            Some("in use by a running process")
        } else {
            None
        };
        if let Some(reason) = reason {
            protected.push(Protected {
                id: release.id.clone(),
                reason,
            });
        }
    }

    let mut sealed_kept = 0;
    let mut report = PruneReport {
        deleted: Vec::new(),
        kept: Vec::new(),
        bytes_freed: 0,
        dry_run,
        protected: protected.clone(),
        keep,
    };
    let mut doomed = Vec::new();
    for release in &overview.releases {
        let is_protected = protected.iter().any(|p| p.id == release.id);
        let newest_sealed = release.state == State::Sealed && sealed_kept < keep;
        if newest_sealed {
            sealed_kept += 1;
        }
        if is_protected || newest_sealed {
            report.kept.push(release.id.clone());
            continue;
        }
        doomed.push(release);
    }
    report.bytes_freed = if dry_run {
        doomed
            .iter()
            .map(|r| crate::fs::remove::freed_by(&r.dir))
            .sum()
    } else {
        let ids: Vec<ReleaseId> = doomed.iter().map(|r| r.id.clone()).collect();
        delete(root, &ids)?
    };
    report.deleted = doomed.into_iter().map(|r| r.id.clone()).collect();
    Ok(report)
}

/// Moves the releases out of `releases/` (one atomic rename each), makes the moves durable
/// with one fsync of `releases/` and one of the trash for all of them (not two per release:
/// those were most of a prune of many small releases), then removes them. A crash before
/// that fsync leaves each release either in place, whole, or in the trash, which the next
/// prune empties; nothing is removed before it. When `releases/` is a symlink to another
/// filesystem, the rename cannot cross it: such a release is removed where it is (a crash
/// half-way leaves a release that reads `failed`, which a later prune removes).
///
/// Returns the bytes freed, counted while removing (`fs::remove`): a file that a kept release
/// still links to (a shared `node_modules`) frees nothing. The releases are removed on as many
/// threads as cores (at least two, `crate::parallel`).
fn delete(root: &DeployRoot, ids: &[ReleaseId]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let trash = root.trash_dir();
    crate::fs::create_dir_all(&trash)?;
    let mut moved = Vec::new();
    let mut in_place = Vec::new();
    for id in ids {
        let target = trash.join(format!("{id}.{:08x}", crate::fs::random_u32()));
        match crate::fs::rename_unsynced(&root.release_dir(id), &target) {
            Ok(()) => moved.push(target),
            Err(err) if err.is_cross_device() => in_place.push(root.release_dir(id)),
            Err(err) => {
                sync_moves(root, &moved)?;
                return Err(err);
            }
        }
    }
    sync_moves(root, &moved)?;
    crate::failpoint::hit("prune-after-trash");
    moved.append(&mut in_place);
    let bytes = crate::parallel::map(
        &moved,
        || (),
        |dir, ()| crate::fs::remove::remove_counting(dir),
    )?;
    Ok(bytes.iter().sum())
}

fn sync_moves(root: &DeployRoot, moved: &[camino::Utf8PathBuf]) -> Result<()> {
    if moved.is_empty() {
        return Ok(());
    }
    crate::fs::sync_dir(&root.releases_dir())?;
    crate::fs::sync_dir(&root.trash_dir())
}

fn empty_trash(root: &DeployRoot) -> Result<()> {
    let trash = root.trash_dir();
    let Ok(entries) = std::fs::read_dir(&trash) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if let Ok(path) = crate::fs::utf8(entry.path()) {
            crate::fs::remove_any(&path)?;
        }
    }
    Ok(())
}

/// Names of release directories that some process has as its working directory.
fn releases_in_use(root: &DeployRoot) -> BTreeSet<String> {
    // The kernel gives `/proc/PID/cwd` resolved; `releases/` itself may be a symlink (moved to
    // another disk and linked back), so compare with its resolved path.
    let releases = std::fs::canonicalize(root.releases_dir())
        .unwrap_or_else(|_| root.releases_dir().into_std_path_buf());
    let mut in_use = BTreeSet::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return in_use;
    };
    for process in processes.flatten() {
        let name = process.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(process.path().join("cwd")) else {
            continue;
        };
        if let Ok(rest) = cwd.strip_prefix(&releases)
            && let Some(first) = rest.components().next()
        {
            in_use.insert(first.as_os_str().to_string_lossy().into_owned());
        }
    }
    in_use
}
