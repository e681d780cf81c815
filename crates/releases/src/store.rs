//! Reading the releases of a deploy root: their states, their order, which one is current and
//! which one a rollback would go to.
//!
//! A release is sealed when its seal is valid and its claim is gone (see [`crate::record`]):
//! the build commands run inside the release and may write a seal of their own, which never
//! counts while the claim is there. Anything else is building (a build holds its lock) or
//! failed.

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fs::lock::is_locked;
use crate::history::{self, Exclusion, HistoryEntry};
use crate::id::ReleaseId;
use crate::record::{self, LOCK_FILE, LOG_FILE, META_DIR, Seal};
use crate::root::DeployRoot;

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Fully built and sealed by relman (a valid seal, and the claim gone): it may go live.
    Sealed,
    /// Not sealed and no build holds its lock: it failed, crashed or was interrupted.
    Failed,
    /// Not sealed, and a running build holds its lock.
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
    let claim = record::read_claim(&dir, &id);
    // A seal beside a held claim is not relman's (or not finished): it is no seal.
    let seal = record::read_seal(&dir, &id).filter(|_| claim.lets_seal_count());
    let (state, created_at) = match &seal {
        Some(seal) => (State::Sealed, Some(seal.created_at)),
        None => {
            let building = is_locked(&dir.join(META_DIR).join(LOCK_FILE));
            (
                if building {
                    State::Building
                } else {
                    State::Failed
                },
                claim.created_at(),
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
/// history, the newest sealed release older than the current one by `created_at`. On both
/// paths, a release in [`history::exclusions`] is never the target: rolling back must not
/// bring back what was just rolled back from.
pub fn rollback_target(
    releases: &[Release],
    history: &[HistoryEntry],
    current: Option<&ReleaseId>,
) -> Option<ReleaseId> {
    let current = current?;
    let excluded = history::exclusions(history);
    let eligible = |id: &ReleaseId| {
        id != current
            && !excluded.contains_key(id)
            && releases
                .iter()
                .any(|r| &r.id == id && r.state == State::Sealed)
    };
    let sequence = history::good_sequence(history);
    if sequence.last() == Some(&current)
        && let Some(id) = sequence.iter().rev().find(|id| eligible(id))
    {
        return Some((*id).clone());
    }
    let current_created = releases.iter().find(|r| &r.id == current)?.created_at;
    releases
        .iter()
        .filter(|r| eligible(&r.id))
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
    /// Releases on disk that a rollback skips, and why.
    pub excluded: BTreeMap<ReleaseId, Exclusion>,
}

/// Reads releases, `current`, history and the rollback target in one go.
pub fn overview(root: &DeployRoot) -> Result<Overview> {
    let releases = releases(root)?;
    let current = root.current()?;
    // Only what happened since the oldest release on disk was created can concern a release on
    // disk (a day of slack for a clock that stepped back): the older history is not read.
    let since = releases
        .iter()
        .map(|r| r.created_at)
        .collect::<Option<Vec<_>>>()
        .and_then(|times| times.into_iter().min())
        .map(|oldest| oldest - chrono::TimeDelta::days(1));
    let history = if releases.is_empty() {
        Vec::new()
    } else {
        history::read_since(root, since)?
    };
    let rollback_target = rollback_target(&releases, &history, current.as_ref());
    // Pruned releases may still be named in the history; only the ones on disk matter here.
    let mut excluded = history::exclusions(&history);
    excluded.retain(|id, _| releases.iter().any(|r| &r.id == id));
    Ok(Overview {
        releases,
        current,
        rollback_target,
        excluded,
    })
}

/// One release a rollback skips, for `relman status --json`: `{"id", "reason", "at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excluded {
    /// The release.
    pub id: ReleaseId,
    /// Why, and since when.
    #[serde(flatten)]
    pub exclusion: Exclusion,
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
    /// Whether a rollback skips it (any exclusion).
    pub rolled_back: bool,
    /// Why a rollback skips it: `rolled-back-from`, `failed` or `rejected`.
    #[serde(serialize_with = "exclusion_code")]
    pub exclusion: Option<Exclusion>,
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
                rolled_back: self.excluded.contains_key(&r.id),
                exclusion: self.excluded.get(&r.id).copied(),
                created_at: r.created_at,
                revision: r.seal.as_ref().and_then(|s| s.revision.clone()),
                bytes: r.seal.as_ref().map(|s| s.bytes),
            })
            .collect()
    }

    /// The releases a rollback skips, oldest exclusion first.
    pub fn exclusions(&self) -> Vec<Excluded> {
        let mut excluded: Vec<Excluded> = self
            .excluded
            .iter()
            .map(|(id, exclusion)| Excluded {
                id: id.clone(),
                exclusion: *exclusion,
            })
            .collect();
        excluded.sort_by_key(|e| (e.exclusion.at(), e.id.clone()));
        excluded
    }

    /// The skipped releases in words, e.g. `20260102 (rolled back from), 20260101 (failed
    /// activation)`, newest exclusion first; `None` when nothing is skipped. For the message
    /// that says there is no rollback target.
    pub fn exclusions_summary(&self) -> Option<String> {
        let excluded = self.exclusions();
        (!excluded.is_empty()).then(|| {
            excluded
                .iter()
                .rev()
                .map(|e| format!("{} ({})", e.id, e.exclusion))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

fn exclusion_code<S: serde::Serializer>(
    exclusion: &Option<Exclusion>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match exclusion {
        Some(exclusion) => serializer.serialize_str(exclusion.code()),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Action, Outcome};

    fn id(text: &str) -> ReleaseId {
        ReleaseId::parse(text).unwrap()
    }

    /// Sealed releases created in the order given (the first is the oldest).
    fn sealed(ids: &[&str]) -> Vec<Release> {
        let start = Utc::now();
        let mut releases: Vec<Release> = ids
            .iter()
            .enumerate()
            .map(|(i, name)| Release {
                id: id(name),
                state: State::Sealed,
                created_at: Some(start + chrono::Duration::seconds(i as i64)),
                seal: None,
                dir: Utf8PathBuf::from("releases").join(name),
            })
            .collect();
        releases.reverse();
        releases
    }

    fn entry(action: Action, from: Option<&str>, to: &str, result: Outcome) -> HistoryEntry {
        HistoryEntry {
            at: Utc::now(),
            action,
            from: from.map(id),
            to: id(to),
            result,
            reason: None,
            durations_ms: std::collections::BTreeMap::new(),
            hooks: std::collections::BTreeMap::new(),
            host: None,
        }
    }

    fn target(releases: &[Release], history: &[HistoryEntry], current: &str) -> Option<String> {
        rollback_target(releases, history, Some(&id(current))).map(|id| id.to_string())
    }

    #[test]
    fn a_second_rollback_never_brings_back_the_release_rolled_back_from() {
        let history = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Ok),
        ];
        assert_eq!(target(&sealed(&["a", "b"]), &history, "a"), None);
        // An older sealed release that nothing excludes is where the fallback goes.
        assert_eq!(
            target(&sealed(&["old", "a", "b"]), &history, "a").as_deref(),
            Some("old")
        );
    }

    #[test]
    fn the_fallback_skips_a_failed_activation_older_than_current() {
        // `b` was built before `a` but activated after it, failed and was rolled back: the
        // history path has nothing before `a`, and the fallback by `created_at` must not
        // pick `b`.
        let releases = sealed(&["b", "a"]);
        let history = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Failed),
            entry(Action::AutoRollback, Some("b"), "a", Outcome::Ok),
        ];
        assert_eq!(target(&releases, &history[..1], "a").as_deref(), Some("b"));
        assert_eq!(target(&releases, &history, "a"), None);
    }

    #[test]
    fn a_rejected_release_is_never_the_target() {
        let releases = sealed(&["old", "b", "a"]);
        let history = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Rejected),
        ];
        assert_eq!(target(&releases, &history, "a").as_deref(), Some("old"));
    }

    #[test]
    fn an_auto_rollback_leaves_the_release_before_as_target() {
        let releases = sealed(&["a", "b", "c"]);
        let history = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Activate, Some("b"), "c", Outcome::Failed),
            entry(Action::AutoRollback, Some("c"), "b", Outcome::Ok),
        ];
        assert_eq!(target(&releases, &history, "b").as_deref(), Some("a"));
        // Rolling back to `a` by hand then leaves nothing: `b` was left, `c` failed.
        let mut history = history;
        history.push(entry(Action::Rollback, Some("b"), "a", Outcome::Ok));
        assert_eq!(target(&releases, &history, "a"), None);
    }

    #[test]
    fn a_release_activated_again_is_eligible_again() {
        let releases = sealed(&["a", "b", "c"]);
        let mut history = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "c", Outcome::Ok),
        ];
        // Per the history `a` was live before `c`; `b` is skipped either way.
        assert_eq!(target(&releases, &history, "c").as_deref(), Some("a"));
        history.push(entry(Action::Activate, Some("c"), "b", Outcome::Ok));
        history.push(entry(Action::Activate, Some("b"), "c", Outcome::Ok));
        assert_eq!(target(&releases, &history, "c").as_deref(), Some("b"));
    }

    #[test]
    fn rollback_to_makes_the_named_release_eligible_again() {
        let releases = sealed(&["a", "b", "c"]);
        let mut history = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Ok),
            entry(Action::Rollback, Some("a"), "b", Outcome::Ok),
        ];
        // `a` was rolled back from in its turn.
        assert_eq!(target(&releases, &history, "b"), None);
        history.push(entry(Action::Activate, Some("b"), "c", Outcome::Ok));
        assert_eq!(target(&releases, &history, "c").as_deref(), Some("b"));
    }

    #[test]
    fn the_overview_lists_exclusions_in_rows_and_words() {
        let releases = sealed(&["a", "b", "c"]);
        let mut history = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "c", Outcome::Rejected),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Ok),
        ];
        // Distinct times, so the order by exclusion time is the order of the entries.
        let start = Utc::now();
        for (i, entry) in history.iter_mut().enumerate() {
            entry.at = start + chrono::Duration::seconds(i as i64);
        }
        let overview = Overview {
            rollback_target: rollback_target(&releases, &history, Some(&id("a"))),
            excluded: history::exclusions(&history),
            current: Some(id("a")),
            releases,
        };
        let rows = serde_json::to_value(overview.list()).unwrap();
        let flags: Vec<_> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].clone(),
                    r["rolled_back"].clone(),
                    r["exclusion"].clone(),
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                ("c".into(), true.into(), "rejected".into()),
                ("b".into(), true.into(), "rolled-back-from".into()),
                ("a".into(), false.into(), serde_json::Value::Null),
            ]
        );
        let excluded = serde_json::to_value(overview.exclusions()).unwrap();
        assert_eq!(excluded[0]["id"], "c");
        assert_eq!(excluded[0]["reason"], "rejected");
        assert_eq!(excluded[1]["id"], "b");
        assert_eq!(excluded[1]["reason"], "rolled-back-from");
        assert!(excluded[1]["at"].is_string(), "{excluded}");
        assert_eq!(
            overview.exclusions_summary().as_deref(),
            Some("b (rolled back from), c (rejected)")
        );
    }
}
