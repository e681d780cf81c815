//! `ROOT/.relman/history.jsonl`: one line per activate, rollback and auto-rollback.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::ReleaseId;
use crate::root::DeployRoot;

/// What kind of go-live an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `relman activate`.
    Activate,
    /// `relman rollback`.
    Rollback,
    /// The way back after a failed activation.
    AutoRollback,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Live and proven.
    Ok,
    /// Stopped by the preflight before going live.
    Rejected,
    /// Went live, failed its proof, rolled back.
    Failed,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it finished.
    #[serde(with = "crate::record::timestamp")]
    pub at: DateTime<Utc>,
    /// What was done.
    pub action: Action,
    /// What was live before.
    pub from: Option<ReleaseId>,
    /// What was made live.
    pub to: ReleaseId,
    /// How it ended.
    pub result: Outcome,
    /// Why it did not end well.
    pub reason: Option<String>,
    /// Milliseconds per step.
    pub durations_ms: BTreeMap<String, u64>,
}

/// Appends one entry with a single `write`, fsynced.
pub fn append(root: &DeployRoot, entry: &HistoryEntry) -> Result<()> {
    let line = serde_json::to_string(entry).expect("a history entry always serialises");
    let dir = root.state_dir();
    if !dir.is_dir() {
        crate::fs::create_dir_all(&dir)?;
    }
    crate::fs::append_line(&root.history_path(), &line)
}

/// Reads every entry, oldest first. A torn last line (a crash mid-append) is ignored; a bad
/// line anywhere else is an error naming it.
pub fn read(root: &DeployRoot) -> Result<Vec<HistoryEntry>> {
    let path = root.history_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io("failed to read", path, err)),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(entry) => entries.push(entry),
            Err(_) if index + 1 == lines.len() && !complete => break,
            Err(err) => {
                return Err(Error::Malformed {
                    path,
                    message: format!("line {}: {err}; fix or delete that line", index + 1),
                });
            }
        }
    }
    Ok(entries)
}

/// The releases that went live and proved themselves, oldest first, as the history tells it.
pub(crate) fn good_sequence(entries: &[HistoryEntry]) -> Vec<&ReleaseId> {
    let mut sequence: Vec<&ReleaseId> = Vec::new();
    for entry in entries.iter().filter(|e| e.result == Outcome::Ok) {
        if sequence.is_empty()
            && let Some(from) = &entry.from
        {
            sequence.push(from);
        }
        if sequence.last() != Some(&&entry.to) {
            sequence.push(&entry.to);
        }
    }
    sequence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: Action, from: Option<&str>, to: &str, result: Outcome) -> HistoryEntry {
        HistoryEntry {
            at: Utc::now(),
            action,
            from: from.map(|f| ReleaseId::parse(f).unwrap()),
            to: ReleaseId::parse(to).unwrap(),
            result,
            reason: None,
            durations_ms: BTreeMap::new(),
        }
    }

    fn root() -> (tempfile::TempDir, DeployRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = DeployRoot::open(camino::Utf8Path::from_path(dir.path()).unwrap()).unwrap();
        (dir, root)
    }

    #[test]
    fn round_trips_and_ignores_a_torn_last_line() {
        let (_guard, root) = root();
        let first = entry(Action::Activate, None, "a", Outcome::Ok);
        append(&root, &first).unwrap();
        append(&root, &entry(Action::Activate, Some("a"), "b", Outcome::Ok)).unwrap();
        let mut file = crate::fs::open_append(&root.history_path()).unwrap();
        std::io::Write::write_all(&mut file, b"{\"at\":\"2026-").unwrap();
        let entries = read(&root).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], first);
    }

    #[test]
    fn a_bad_middle_line_is_an_error() {
        let (_guard, root) = root();
        append(&root, &entry(Action::Activate, None, "a", Outcome::Ok)).unwrap();
        crate::fs::append_line(&root.history_path(), "not json").unwrap();
        append(&root, &entry(Action::Activate, Some("a"), "b", Outcome::Ok)).unwrap();
        let err = read(&root).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn good_sequence_skips_failed_activations() {
        let entries = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Activate, Some("b"), "c", Outcome::Failed),
            entry(Action::AutoRollback, Some("c"), "b", Outcome::Ok),
            entry(Action::Activate, Some("b"), "d", Outcome::Rejected),
        ];
        let ids: Vec<_> = good_sequence(&entries).iter().map(|i| i.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
