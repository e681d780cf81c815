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
    /// What each hook that was set did (absent when none was).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<crate::hooks::Hook, crate::hooks::HookRun>,
    /// The host name of the machine that recorded it, so that histories gathered from a fleet
    /// say whose each line is (absent in entries written before relman recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Appends one entry with a single `write`, fsynced; a torn last line left by a crash is cut
/// off first (see [`crate::fs::append_line`]). Called under the root lock.
pub fn append(root: &DeployRoot, entry: &HistoryEntry) -> Result<()> {
    let line = serde_json::to_string(entry).expect("a history entry always serialises");
    let dir = root.state_dir();
    if !dir.is_dir() {
        crate::fs::create_dir_all(&dir)?;
    }
    check(root)?;
    crate::fs::append_line(&root.history_path(), &line)
}

/// What to do with a history relman will not read.
const UNREADABLE_HINT: &str =
    "archive it (move it away: relman starts a new one and reads only that)";

/// Fails, without reading it, unless the history is absent or a regular file (not a symlink)
/// within [`HISTORY_LIMIT`]: what [`read`] and [`append`] need. A command that appends at its
/// end (`activate`) asks first, so that it stops before it changes anything.
pub fn check(root: &DeployRoot) -> Result<()> {
    let path = root.history_path();
    crate::fs::own_files::check_own_file(&path, HISTORY_LIMIT)
        .map_err(|why| why.into_error(&path, UNREADABLE_HINT))
}

/// Makes sure the entries of an activation can be appended before it changes anything: the
/// history is a regular file relman can open for appending, and the disk space for the entries
/// is reserved (a full disk is found now, not after the release went live).
pub fn reserve(root: &DeployRoot) -> Result<()> {
    check(root)?;
    let dir = root.state_dir();
    if !dir.is_dir() {
        crate::fs::create_dir_all(&dir)?;
    }
    crate::fs::own_files::reserve_append(&root.history_path(), RESERVED_BYTES)
}

/// What [`reserve`] sets aside: an activation appends two entries, each at most a few KiB
/// (a reason quotes at most 40 lines of a preflight's output).
const RESERVED_BYTES: u64 = 256 * 1024;

/// The most relman reads of `history.jsonl`: about 250 000 entries.
pub const HISTORY_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads every entry, oldest first. A torn last line (a crash mid-append) is ignored; a bad
/// line anywhere else is an error naming it. The history is read only as a regular file,
/// never through a symlink, and at most [`HISTORY_LIMIT`] bytes.
pub fn read(root: &DeployRoot) -> Result<Vec<HistoryEntry>> {
    let path = root.history_path();
    let bytes = match crate::fs::own_files::read_own_file(&path, HISTORY_LIMIT) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(Vec::new()),
        Err(why) => {
            return Err(why.into_error(&path, UNREADABLE_HINT));
        }
    };
    let text = String::from_utf8(bytes).map_err(|err| Error::Malformed {
        path: path.clone(),
        message: format!(
            "it is not UTF-8 (byte {}); fix or delete the line holding it",
            err.utf8_error().valid_up_to()
        ),
    })?;
    parse_history(&text).map_err(|err| match err {
        Error::Malformed { message, .. } => Error::Malformed { path, message },
        other => other,
    })
}

/// The entries since `since` (all of them for `None`), oldest first, as [`read`] gives them,
/// but read from the end of the file: the cost follows what is asked for, not the history's
/// size. A bad line among them is the same error as [`read`]'s.
pub fn read_since(root: &DeployRoot, since: Option<DateTime<Utc>>) -> Result<Vec<HistoryEntry>> {
    let Some(since) = since else {
        return read(root);
    };
    let mut entries = Vec::new();
    for entry in newest_first(root)? {
        let entry = entry?;
        if entry.at < since {
            break;
        }
        entries.push(entry);
    }
    entries.reverse();
    Ok(entries)
}

/// The newest entry for which `found` gives something, read from the end of the file.
pub fn find_newest<T>(
    root: &DeployRoot,
    mut found: impl FnMut(&HistoryEntry) -> Option<T>,
) -> Result<Option<T>> {
    for entry in newest_first(root)? {
        if let Some(value) = found(&entry?) {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// Every entry, newest first, read backwards from the end of the file a block at a time.
fn newest_first(root: &DeployRoot) -> Result<NewestFirst<'_>> {
    let path = root.history_path();
    let opened = crate::fs::own_files::open_own_file_to_read(&path, HISTORY_LIMIT)
        .map_err(|why| why.into_error(&path, UNREADABLE_HINT))?;
    Ok(NewestFirst {
        root,
        file: opened,
        carry: Vec::new(),
        lines: Vec::new(),
        last: true,
    })
}

/// The iterator of [`newest_first`].
struct NewestFirst<'a> {
    root: &'a DeployRoot,
    /// The file and how much of it is still unread (the start up to that offset).
    file: Option<(std::fs::File, u64)>,
    /// The start of a line whose beginning is in the unread part.
    carry: Vec<u8>,
    /// Whole lines read and not yet given, in file order.
    lines: Vec<Vec<u8>>,
    /// Whether the next line given is the file's last (which may be torn).
    last: bool,
}

/// How much of the history is read at a time.
const BLOCK: u64 = 64 * 1024;

impl NewestFirst<'_> {
    /// Reads the block before the unread part; false at the start of the file.
    fn fill(&mut self) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let Some((file, unread)) = &mut self.file else {
            return Ok(false);
        };
        if *unread == 0 {
            if !self.carry.is_empty() {
                self.lines.push(std::mem::take(&mut self.carry));
            }
            self.file = None;
            return Ok(true);
        }
        let start = unread.saturating_sub(BLOCK);
        let mut block = vec![0; usize::try_from(*unread - start).expect("a block fits")];
        file.read_exact_at(&mut block, start)
            .map_err(|err| Error::io("failed to read", self.root.history_path(), err))?;
        *unread = start;
        block.extend_from_slice(&self.carry);
        let mut pieces: Vec<&[u8]> = block.split(|&b| b == b'\n').collect();
        // The first piece may continue in the block before.
        self.carry = pieces.remove(0).to_vec();
        self.lines.extend(pieces.into_iter().map(<[u8]>::to_vec));
        Ok(true)
    }

    /// The full read's error for a bad line: it names the line by its number.
    fn bad_line(&self) -> Error {
        match read(self.root) {
            Err(err) => err,
            Ok(_) => Error::Malformed {
                path: self.root.history_path(),
                message: "it changed while it was read; try again".into(),
            },
        }
    }
}

impl Iterator for NewestFirst<'_> {
    type Item = Result<HistoryEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while let Some(line) = self.lines.pop() {
                // The file's last piece: empty when the file ends with a newline, else a line
                // with none after it, torn by a crash mid-append when it does not parse.
                let torn_allowed = std::mem::replace(&mut self.last, false);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match std::str::from_utf8(&line)
                    .ok()
                    .and_then(|text| serde_json::from_str::<HistoryEntry>(text).ok())
                {
                    Some(entry) => return Some(Ok(entry)),
                    None if torn_allowed => continue,
                    None => return Some(Err(self.bad_line())),
                }
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(err) => return Some(Err(err)),
            }
        }
    }
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

/// Why a release is skipped as a rollback target.
///
/// A rollback is the emergency path: it must never bring back what someone (or relman itself)
/// just moved away from, nor what the preflight refused, until that release has proved itself
/// live again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Exclusion {
    /// `relman rollback` (or `rollback --to`) moved away from it.
    RolledBackFrom {
        /// When that rollback finished.
        #[serde(serialize_with = "crate::record::timestamp::serialize")]
        at: DateTime<Utc>,
    },
    /// It went live, failed its proof and was rolled back automatically.
    #[serde(rename = "failed")]
    FailedActivation {
        /// When that activation (or the way back from it) finished.
        #[serde(serialize_with = "crate::record::timestamp::serialize")]
        at: DateTime<Utc>,
    },
    /// The preflight stopped it before it went live.
    Rejected {
        /// When the preflight refused it.
        #[serde(serialize_with = "crate::record::timestamp::serialize")]
        at: DateTime<Utc>,
    },
}

impl Exclusion {
    /// When the entry that excluded the release was written.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Exclusion::RolledBackFrom { at }
            | Exclusion::FailedActivation { at }
            | Exclusion::Rejected { at } => *at,
        }
    }

    /// The machine name: `rolled-back-from`, `failed` or `rejected` (the JSON `reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Exclusion::RolledBackFrom { .. } => "rolled-back-from",
            Exclusion::FailedActivation { .. } => "failed",
            Exclusion::Rejected { .. } => "rejected",
        }
    }
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exclusion::RolledBackFrom { .. } => "rolled back from",
            Exclusion::FailedActivation { .. } => "failed activation",
            Exclusion::Rejected { .. } => "rejected",
        })
    }
}

/// The releases a rollback must not go to, as the history tells it (oldest entry first).
///
/// Excluded: the `from` of a `rollback` that ended `ok`; the `from` of an `auto-rollback` and
/// the `to` of any go-live that ended `failed`; the `to` of any go-live the preflight
/// `rejected`. A later entry that ended `ok` with the release as its `to` (an `activate`, a
/// `rollback --to`, or a way back that proved it) clears it: it has proved itself since.
pub fn exclusions(entries: &[HistoryEntry]) -> BTreeMap<ReleaseId, Exclusion> {
    let mut excluded = BTreeMap::new();
    for entry in entries {
        let at = entry.at;
        match (entry.action, entry.result) {
            (Action::Rollback, Outcome::Ok) => {
                if let Some(from) = &entry.from {
                    excluded.insert(from.clone(), Exclusion::RolledBackFrom { at });
                }
            }
            (Action::AutoRollback, _) => {
                if let Some(from) = &entry.from {
                    excluded.insert(from.clone(), Exclusion::FailedActivation { at });
                }
            }
            (Action::Activate | Action::Rollback, Outcome::Failed) => {
                excluded.insert(entry.to.clone(), Exclusion::FailedActivation { at });
            }
            (Action::Activate | Action::Rollback, Outcome::Rejected) => {
                excluded.insert(entry.to.clone(), Exclusion::Rejected { at });
            }
            (Action::Activate, Outcome::Ok) => {}
        }
        // After the exclusions, so that an entry going from a release to itself and ending
        // well leaves it eligible: it is live and proven.
        if entry.result == Outcome::Ok {
            excluded.remove(&entry.to);
        }
    }
    excluded
}

/// Parses the text of `history.jsonl`, oldest first: what [`read`] does once the file is
/// read. A torn last line (no newline after it, and not JSON) is ignored; a bad line anywhere
/// else is an error naming its line number (the path in it is `history.jsonl` alone).
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>> {
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
                // serde_json quotes the bad value as it is: a `\n` in it would split the
                // one-line error.
                let mut why = String::new();
                for c in err.to_string().chars() {
                    if c.is_control() {
                        why.extend(c.escape_debug());
                    } else {
                        why.push(c);
                    }
                }
                return Err(Error::Malformed {
                    path: HISTORY_FILE_NAME.into(),
                    message: format!("line {}: {why}; fix or delete that line", index + 1),
                });
            }
        }
    }
    Ok(entries)
}

/// The name [`parse_history`] gives in its errors, which know no deploy root.
const HISTORY_FILE_NAME: &str = "history.jsonl";

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
            hooks: BTreeMap::new(),
            host: None,
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

    /// Writes `text` as the history, as it is (the parent directory made).
    fn write_history(root: &DeployRoot, text: &str) {
        crate::fs::create_dir_all(&root.state_dir()).unwrap();
        std::fs::write(root.history_path(), text).unwrap();
    }

    fn line(entry: &HistoryEntry) -> String {
        serde_json::to_string(entry).unwrap() + "\n"
    }

    /// Entries a second apart, some with a reason long enough to cross the read's blocks.
    fn many(count: usize) -> Vec<HistoryEntry> {
        let start = Utc::now() - chrono::TimeDelta::days(1);
        (0..count)
            .map(|i| HistoryEntry {
                at: start + chrono::TimeDelta::seconds(i as i64),
                reason: (i % 7 == 3).then(|| "x".repeat(if i == 10 { 200_000 } else { 3_000 })),
                ..entry(Action::Activate, Some("a"), &format!("r{i}"), Outcome::Ok)
            })
            .collect()
    }

    #[test]
    fn read_from_the_end_gives_what_the_whole_read_gives() {
        let (_guard, root) = root();
        assert_eq!(read_since(&root, Some(Utc::now())).unwrap(), []);
        let entries = many(300);
        let text: String = entries.iter().map(line).collect();
        for (shape, text) in [
            ("as appended", text.clone()),
            ("a torn last line", format!("{text}{{\"at\":\"2026-")),
            ("no newline after the last", text.trim_end().to_owned()),
            (
                "blank lines",
                format!("\n{}\n\n", text.replace("}\n{", "}\n\n{")),
            ),
        ] {
            write_history(&root, &text);
            let whole = read(&root).unwrap();
            assert_eq!(whole, entries, "{shape}");
            assert_eq!(read_since(&root, None).unwrap(), whole, "{shape}");
            let oldest = entries[0].at;
            assert_eq!(read_since(&root, Some(oldest)).unwrap(), whole, "{shape}");
            let since = entries[250].at;
            assert_eq!(
                read_since(&root, Some(since)).unwrap(),
                whole[250..],
                "{shape}"
            );
            let newest = find_newest(&root, |e| Some(e.to.to_string())).unwrap();
            assert_eq!(newest.as_deref(), Some("r299"), "{shape}");
            let long = find_newest(&root, |e| {
                e.reason
                    .as_ref()
                    .filter(|r| r.len() > 100_000)
                    .map(|_| e.to.to_string())
            });
            assert_eq!(long.unwrap().as_deref(), Some("r10"), "{shape}");
        }
    }

    #[test]
    fn read_from_the_end_names_a_bad_line_as_the_whole_read_does() {
        let (_guard, root) = root();
        let entries = many(50);
        let mut lines: Vec<String> = entries.iter().map(line).collect();
        lines[45] = "{not json\n".into();
        write_history(&root, &lines.concat());
        let whole = read(&root).unwrap_err().to_string();
        assert!(whole.contains("line 46"), "{whole}");
        let since = read_since(&root, Some(entries[40].at))
            .unwrap_err()
            .to_string();
        assert_eq!(since, whole);
        // Older than what is asked for (the reading stops at the first older entry, line 47):
        // not read, so not an error.
        assert_eq!(
            read_since(&root, Some(entries[47].at)).unwrap(),
            entries[47..]
        );
        // A history relman must not read is refused as by the whole read.
        std::fs::remove_file(root.history_path()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.history_path()).unwrap();
        assert_eq!(
            read_since(&root, Some(Utc::now())).unwrap_err().to_string(),
            read(&root).unwrap_err().to_string()
        );
    }

    #[test]
    fn append_cuts_off_a_torn_last_line_first() {
        let (_guard, root) = root();
        append(&root, &entry(Action::Activate, None, "a", Outcome::Ok)).unwrap();
        let mut file = crate::fs::open_append(&root.history_path()).unwrap();
        std::io::Write::write_all(&mut file, b"{\"at\":\"2026-11-29T04:2").unwrap();
        let second = entry(Action::Activate, Some("a"), "b", Outcome::Ok);
        append(&root, &second).unwrap();
        let entries = read(&root).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1], second);
        // A file holding nothing but a fragment is cut to nothing.
        let path = root.history_path();
        std::fs::write(&path, "{\"at\"").unwrap();
        append(&root, &second).unwrap();
        assert_eq!(read(&root).unwrap(), [second]);
    }

    #[test]
    fn append_never_follows_a_symlink() {
        let (guard, root) = root();
        let outside = guard.path().join("outside");
        std::fs::write(&outside, "precious").unwrap();
        crate::fs::create_dir_all(&root.state_dir()).unwrap();
        std::os::unix::fs::symlink(&outside, root.history_path()).unwrap();
        let err = append(&root, &entry(Action::Activate, None, "a", Outcome::Ok)).unwrap_err();
        assert!(
            err.to_string().contains("a symlink, not a regular file"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
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

    fn excluded(entries: &[HistoryEntry]) -> Vec<(&'static str, String)> {
        exclusions(entries)
            .into_iter()
            .map(|(id, why)| (why.code(), id.to_string()))
            .collect()
    }

    #[test]
    fn a_manual_rollback_excludes_the_release_it_left() {
        let entries = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Ok),
        ];
        assert_eq!(excluded(&entries), [("rolled-back-from", "b".into())]);
        let at = entries[2].at;
        assert_eq!(
            exclusions(&entries)[&ReleaseId::parse("b").unwrap()],
            Exclusion::RolledBackFrom { at }
        );
    }

    #[test]
    fn a_rollback_that_did_not_go_live_excludes_nothing_it_left() {
        let entries = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Rejected),
        ];
        // `a` failed its preflight on the way back; `b` is still live and was never left.
        assert_eq!(excluded(&entries), [("rejected", "a".into())]);
    }

    #[test]
    fn a_failed_activation_and_its_auto_rollback_exclude_it() {
        let entries = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Failed),
            entry(Action::AutoRollback, Some("b"), "a", Outcome::Ok),
        ];
        assert_eq!(excluded(&entries), [("failed", "b".into())]);
        // The failed entry alone (a crash before the auto-rollback line) is enough.
        assert_eq!(excluded(&entries[..2]), [("failed", "b".into())]);
        // And so is the auto-rollback line alone.
        let auto = [entries[0].clone(), entries[2].clone()];
        assert_eq!(excluded(&auto), [("failed", "b".into())]);
    }

    #[test]
    fn a_rejected_activation_excludes_it() {
        let entries = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Rejected),
        ];
        assert_eq!(excluded(&entries), [("rejected", "b".into())]);
        let json = serde_json::to_value(exclusions(&entries)).unwrap();
        assert_eq!(json["b"]["reason"], "rejected");
        assert!(json["b"]["at"].as_str().unwrap().ends_with('Z'), "{json}");
    }

    #[test]
    fn going_live_again_clears_an_exclusion() {
        let mut entries = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "c", Outcome::Rejected),
            entry(Action::Activate, Some("a"), "d", Outcome::Failed),
            entry(Action::AutoRollback, Some("d"), "a", Outcome::Ok),
        ];
        assert_eq!(
            excluded(&entries),
            [
                ("rolled-back-from", "b".into()),
                ("rejected", "c".into()),
                ("failed", "d".into())
            ]
        );
        entries.push(entry(Action::Activate, Some("a"), "b", Outcome::Ok));
        entries.push(entry(Action::Activate, Some("b"), "c", Outcome::Ok));
        entries.push(entry(Action::Activate, Some("c"), "d", Outcome::Ok));
        assert_eq!(excluded(&entries), []);
        // A failure after the clearing counts again.
        entries.push(entry(Action::Activate, Some("d"), "b", Outcome::Rejected));
        assert_eq!(excluded(&entries), [("rejected", "b".into())]);
    }

    #[test]
    fn rollback_to_clears_the_release_it_names_and_excludes_the_one_it_left() {
        let entries = vec![
            entry(Action::Activate, None, "a", Outcome::Ok),
            entry(Action::Activate, Some("a"), "b", Outcome::Ok),
            entry(Action::Rollback, Some("b"), "a", Outcome::Ok),
            entry(Action::Rollback, Some("a"), "b", Outcome::Ok),
        ];
        assert_eq!(excluded(&entries), [("rolled-back-from", "a".into())]);
    }

    #[test]
    fn fuzz_history_a_bad_value_with_a_newline_is_still_a_one_line_error() {
        // Found by `fuzz/fuzz_targets/history.rs`: the unknown variant was quoted raw.
        let err = parse_history("{\"action\":\"\\n\"}\n").unwrap_err();
        let message = err.to_string();
        assert!(!message.contains('\n'), "{message:?}");
        assert!(
            message.contains("line 1: unknown variant `\\n`"),
            "{message}"
        );
    }
}
