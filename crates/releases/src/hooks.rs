//! What the hooks around going live (`[hooks]`) did, and the journal of the activation that
//! runs them.
//!
//! A finished activation records its hooks in its history entry. While it runs, the same
//! record is kept in `ROOT/.relman/activation.json`, rewritten (atomically, durably) as each
//! hook starts and ends. When relman is killed mid-activation, that journal stays: the next
//! command reports it, and the next activation of the same release carries over every hook
//! that finished successfully instead of running it a second time (a migration, a chat
//! message). Each activation's hook output is kept in its own directory under
//! `ROOT/.relman/hooks/`, named after it, beside the history entry that points to it.

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::HooksConfig;
use crate::error::Result;
use crate::history::Action;
use crate::id::ReleaseId;
use crate::root::DeployRoot;

/// One of the hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// After the preflight, before `current` moves.
    BeforeFlip,
    /// Once the release is live and proven.
    AfterLive,
    /// After a rollback proved the release it went back to.
    AfterRollback,
}

impl Hook {
    /// Every hook, in the order an activation may run them.
    pub const ALL: [Hook; 3] = [Hook::BeforeFlip, Hook::AfterLive, Hook::AfterRollback];

    /// The config key's name: `before_flip`, `after_live`, `after_rollback`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::BeforeFlip => "before_flip",
            Hook::AfterLive => "after_live",
            Hook::AfterRollback => "after_rollback",
        }
    }

    /// Its command in the config (empty: not set).
    pub fn command(self, config: &HooksConfig) -> &str {
        match self {
            Hook::BeforeFlip => &config.before_flip,
            Hook::AfterLive => &config.after_live,
            Hook::AfterRollback => &config.after_rollback,
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one hook did in one activation. `log` is the path of its output, relative to the
/// deploy root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum HookRun {
    /// Started and not seen to end: in the journal of an activation that runs, or of one
    /// relman was killed during.
    Running {
        /// When it started.
        #[serde(with = "crate::record::timestamp")]
        started_at: DateTime<Utc>,
        /// Its output.
        log: String,
    },
    /// Exited 0.
    Ok {
        /// How long it ran.
        ms: u64,
        /// Its output.
        log: String,
    },
    /// Exited non-zero, was killed at its timeout, or was interrupted.
    Failed {
        /// How long it ran (as far as relman saw).
        ms: u64,
        /// Its output.
        log: String,
        /// How it ended.
        reason: String,
    },
    /// Finished successfully in an earlier, interrupted try of this same activation, so not
    /// run again.
    Earlier {
        /// The output of that run.
        log: String,
    },
    /// Not run: `--no-hooks`.
    Skipped,
}

impl HookRun {
    /// Its output's path, relative to the root, when it ran.
    pub fn log(&self) -> Option<&str> {
        match self {
            HookRun::Running { log, .. }
            | HookRun::Ok { log, .. }
            | HookRun::Failed { log, .. }
            | HookRun::Earlier { log } => Some(log),
            HookRun::Skipped => None,
        }
    }

    /// Whether it finished successfully, now or in an earlier try.
    pub fn succeeded(&self) -> bool {
        matches!(self, HookRun::Ok { .. } | HookRun::Earlier { .. })
    }

    /// One line for people: `ok (312 ms)`, `failed: exited with status 1`.
    pub fn describe(&self) -> String {
        match self {
            HookRun::Running { started_at, .. } => format!(
                "started at {} and never seen to end",
                started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            HookRun::Ok { ms, .. } => format!("ok ({ms} ms)"),
            HookRun::Failed { reason, .. } => format!("failed: {reason}"),
            HookRun::Earlier { .. } => {
                "ran successfully in an interrupted earlier try, not run again".into()
            }
            HookRun::Skipped => "skipped (--no-hooks)".into(),
        }
    }
}

/// The journal of an activation that runs hooks: `ROOT/.relman/activation.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// What the activation does.
    pub action: Action,
    /// What was live when it started.
    pub from: Option<ReleaseId>,
    /// The release it makes live.
    pub to: ReleaseId,
    /// When it started.
    #[serde(with = "crate::record::timestamp")]
    pub started_at: DateTime<Utc>,
    /// Its directory of hook output, relative to the root: `.relman/hooks/NAME`.
    pub dir: String,
    /// What each hook did so far.
    pub hooks: BTreeMap<Hook, HookRun>,
}

/// The most relman reads of the journal.
const JOURNAL_LIMIT: u64 = 1024 * 1024;

/// How many activations' hook output is kept.
const KEEP_LOGS: usize = 50;

impl Journal {
    /// A new journal for an activation starting now; its directory is named after the time
    /// and the release, so that it sorts by time and is never another activation's.
    pub fn new(action: Action, from: Option<ReleaseId>, to: ReleaseId) -> Journal {
        let started_at = Utc::now();
        let dir = format!(
            ".relman/hooks/{}-{to}",
            started_at.format("%Y%m%dT%H%M%S%.3fZ")
        );
        Journal {
            action,
            from,
            to,
            started_at,
            dir,
            hooks: BTreeMap::new(),
        }
    }

    /// `ROOT/.relman/activation.json`.
    pub fn path(root: &DeployRoot) -> Utf8PathBuf {
        root.state_dir().join("activation.json")
    }

    /// The journal left by an activation that has not ended, if any.
    pub fn read(root: &DeployRoot) -> Result<Option<Journal>> {
        let path = Journal::path(root);
        let bytes = match crate::fs::own_files::read_own_file(&path, JOURNAL_LIMIT) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(why) => return Err(why.into_error(&path, JOURNAL_HINT)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| crate::Error::Malformed {
                path,
                message: format!("{err}: {JOURNAL_HINT}"),
            })
    }

    /// The journal of an activation that never ended, if any: one the history does not hold
    /// (relman may stop between appending the entry and removing the journal).
    pub fn unfinished(root: &DeployRoot) -> Result<Option<Journal>> {
        let Some(journal) = Journal::read(root)? else {
            return Ok(None);
        };
        let recorded = crate::history::find_newest(root, |entry| {
            Some(
                entry
                    .hooks
                    .values()
                    .filter_map(HookRun::log)
                    .any(|log| log.starts_with(&journal.dir)),
            )
        })?
        .unwrap_or(false);
        Ok((!recorded).then_some(journal))
    }

    /// Writes it, atomically and durably; the first write also makes its log directory and
    /// drops the output of all but the newest activations.
    pub fn write(&self, root: &DeployRoot) -> Result<()> {
        let dir = root.path().join(&self.dir);
        if !dir.is_dir() {
            crate::fs::create_dir_all(&dir)?;
            drop_old_logs(root);
        }
        let text = serde_json::to_vec_pretty(self).expect("a journal always serialises");
        crate::fs::atomic_write(&Journal::path(root), &text)
    }

    /// Removes the journal once the activation is recorded in the history.
    pub fn remove(root: &DeployRoot) -> Result<()> {
        let path = Journal::path(root);
        if std::fs::symlink_metadata(&path).is_err() {
            // Nothing to remove: no fsync on the way of an activation without hooks.
            return Ok(());
        }
        crate::fs::remove_file(&path)?;
        crate::fs::sync_dir(&root.state_dir())
    }

    /// The path of `hook`'s output, relative to the root.
    pub fn log(&self, hook: Hook) -> String {
        format!("{}/{hook}.log", self.dir)
    }

    /// Where the shell running `hook` writes its exit status, relative to the root: how an
    /// activation that was killed learns, afterwards, how the hook it left running ended.
    pub fn status_file(&self, hook: Hook) -> String {
        format!("{}/{hook}.status", self.dir)
    }
}

/// What to do with a journal relman will not read.
const JOURNAL_HINT: &str = "it is the record of an interrupted activation: read it, then remove it (the next activation runs every hook again)";

/// Removes the hook output of all but the newest [`KEEP_LOGS`] activations; best effort (an
/// old log left behind costs a little disk, nothing else).
fn drop_old_logs(root: &DeployRoot) {
    let logs = root.state_dir().join("hooks");
    let Ok(entries) = std::fs::read_dir(&logs) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    if names.len() <= KEEP_LOGS {
        return;
    }
    names.sort();
    for name in &names[..names.len() - KEEP_LOGS] {
        let _ = crate::fs::remove_any(&logs.join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_back_as_written_with_its_result_as_the_tag() {
        let run = HookRun::Failed {
            ms: 12,
            log: ".relman/hooks/x/before_flip.log".into(),
            reason: "exited with status 1".into(),
        };
        let text = serde_json::to_string(&run).unwrap();
        assert_eq!(
            text,
            r#"{"result":"failed","ms":12,"log":".relman/hooks/x/before_flip.log","reason":"exited with status 1"}"#
        );
        assert_eq!(serde_json::from_str::<HookRun>(&text).unwrap(), run);
        let map = BTreeMap::from([(Hook::AfterLive, HookRun::Skipped)]);
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"after_live":{"result":"skipped"}}"#
        );
    }

    #[test]
    fn a_journal_s_directory_sorts_by_time_and_names_the_release() {
        let journal = Journal::new(Action::Activate, None, ReleaseId::parse("r2").unwrap());
        assert!(
            journal.dir.starts_with(".relman/hooks/20"),
            "{}",
            journal.dir
        );
        assert!(journal.dir.ends_with("Z-r2"), "{}", journal.dir);
        assert_eq!(
            journal.log(Hook::BeforeFlip),
            format!("{}/before_flip.log", journal.dir)
        );
    }
}
