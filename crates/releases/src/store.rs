//! Reading the releases of a deploy root: their states, their order, which one is current and
//! which one a rollback would go to.

use camino::Utf8PathBuf;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fs::lock::is_locked;
use crate::history::{self, HistoryEntry};
use crate::id::ReleaseId;
use crate::record::{self, LOCK_FILE, LOG_FILE, META_DIR, Seal};
use crate::root::DeployRoot;

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Fully built and sealed: it may go live.
    Sealed,
    /// Not sealed and no build holds its lock: it failed, crashed or was interrupted.
    Failed,
    /// A running build holds its lock.
    Building,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Sealed => "sealed",
            State::Failed => "failed",
            State::Building => "building",
        })
    }
}

/// One release directory.
#[derive(Debug, Clone)]
pub struct Release {
    /// Its ID (the directory name).
    pub id: ReleaseId,
    /// Its state.
    pub state: State,
    /// The seal's `created_at`, or the claim's for an unsealed release.
    pub created_at: Option<DateTime<Utc>>,
    /// The seal, when sealed.
    pub seal: Option<Seal>,
    /// Its directory.
    pub dir: Utf8PathBuf,
}

impl Release {
    /// The build log.
    pub fn log_path(&self) -> Utf8PathBuf {
        self.dir.join(META_DIR).join(LOG_FILE)
    }
}

/// Every release, newest first by `created_at`, ties broken by ID.
///
/// Directory entries whose names are not valid IDs are not releases and are left alone.
pub fn releases(root: &DeployRoot) -> Result<Vec<Release>> {
    let dir = root.releases_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io("failed to read", dir, err)),
    };
    let mut releases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::io("failed to read", dir.clone(), err))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(id) = ReleaseId::parse(&name) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        releases.push(load(root, id));
    }
    releases.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(releases)
}

/// Reads one release's state from disk.
fn load(root: &DeployRoot, id: ReleaseId) -> Release {
    let dir = root.release_dir(&id);
    let seal = record::read_seal(&dir, &id);
    let (state, created_at) = match &seal {
        Some(seal) => (State::Sealed, Some(seal.created_at)),
        None => {
            let building = is_locked(&dir.join(META_DIR).join(LOCK_FILE));
            let created_at = record::read_claim(&dir).map(|c| c.created_at);
            (
                if building {
                    State::Building
                } else {
                    State::Failed
                },
                created_at,
            )
        }
    };
    Release {
        id,
        state,
        created_at,
        seal,
        dir,
    }
}

/// One release by ID, or an error saying it does not exist.
pub fn release(root: &DeployRoot, id: &ReleaseId) -> Result<Release> {
    let dir = root.release_dir(id);
    if !dir.is_dir() {
        return Err(Error::NoSuchRelease {
            id: id.to_string(),
            root: root.releases_dir(),
        });
    }
    Ok(load(root, id.clone()))
}

/// One release that must be sealed.
pub fn sealed_release(root: &DeployRoot, id: &ReleaseId) -> Result<Release> {
    let release = release(root, id)?;
    if release.state != State::Sealed {
        return Err(Error::NotSealed {
            id: id.to_string(),
            state: match release.state {
                State::Building => "still building".into(),
                _ => "its build failed or was interrupted".into(),
            },
            log: release.log_path(),
        });
    }
    Ok(release)
}

/// The release a rollback goes to.
///
/// The release that was live before the current one per the history (skipping activations
/// that failed or were rejected, and releases that are gone or unsealed); without such
/// history, the newest sealed release older than the current one by `created_at`.
pub fn rollback_target(
    releases: &[Release],
    history: &[HistoryEntry],
    current: Option<&ReleaseId>,
) -> Option<ReleaseId> {
    let current = current?;
    let sealed = |id: &ReleaseId| {
        releases
            .iter()
            .any(|r| &r.id == id && r.state == State::Sealed)
    };
    let sequence = history::good_sequence(history);
    if sequence.last() == Some(&current)
        && let Some(id) = sequence
            .iter()
            .rev()
            .find(|id| **id != current && sealed(id))
    {
        return Some((*id).clone());
    }
    let current_created = releases.iter().find(|r| &r.id == current)?.created_at;
    releases
        .iter()
        .filter(|r| r.state == State::Sealed && &r.id != current)
        .find(|r| (r.created_at, &r.id) < (current_created, current))
        .map(|r| r.id.clone())
}

/// A snapshot for `list` and friends: the releases, current and rollback target.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Every release, newest first.
    pub releases: Vec<Release>,
    /// What `current` points to.
    pub current: Option<ReleaseId>,
    /// Where a rollback would go.
    pub rollback_target: Option<ReleaseId>,
}

/// Reads releases, `current`, history and the rollback target in one go.
pub fn overview(root: &DeployRoot) -> Result<Overview> {
    let releases = releases(root)?;
    let current = root.current()?;
    let history = history::read(root)?;
    let rollback_target = rollback_target(&releases, &history, current.as_ref());
    Ok(Overview {
        releases,
        current,
        rollback_target,
    })
}

/// One row of `relman list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    /// The release ID.
    pub id: ReleaseId,
    /// `sealed`, `failed` or `building`.
    pub state: State,
    /// Whether `current` points to it.
    pub current: bool,
    /// Whether a rollback would go to it.
    pub rollback_target: bool,
    /// When its build started.
    pub created_at: Option<DateTime<Utc>>,
    /// The source's git commit, if known.
    pub revision: Option<String>,
    /// Bytes of the release directory, when sealed.
    pub bytes: Option<u64>,
}

impl Overview {
    /// The rows of `relman list`.
    pub fn list(&self) -> Vec<ListEntry> {
        self.releases
            .iter()
            .map(|r| ListEntry {
                id: r.id.clone(),
                state: r.state,
                current: self.current.as_ref() == Some(&r.id),
                rollback_target: self.rollback_target.as_ref() == Some(&r.id),
                created_at: r.created_at,
                revision: r.seal.as_ref().and_then(|s| s.revision.clone()),
                bytes: r.seal.as_ref().map(|s| s.bytes),
            })
            .collect()
    }
}
