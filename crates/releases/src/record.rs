//! The files a build leaves in `releases/ID/.relman/`: the claim (`build.json`) written when the
//! ID is taken, and the seal (`release.json`) written last.
//!
//! The build commands run inside the release and can write anything there, a seal included, so
//! a seal alone proves nothing. relman removes the claim only once every step has succeeded and
//! the manifest is on disk, then writes the seal: a release is sealed when its seal is valid
//! and its claim is gone. A seal that appeared while the claim existed (a build command's) or
//! a claim gone without a seal (a crash between the two) reads as not sealed.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fs::own_files::{Unreadable, read_own_file};
use crate::id::ReleaseId;

/// Where a release's files came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Copied from a directory.
    Dir {
        /// The source directory.
        path: Utf8PathBuf,
    },
    /// Checked out from a git repository.
    Git {
        /// The repository URL.
        url: String,
        /// The ref asked for, if any.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

/// The seal: `releases/ID/.relman/release.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seal {
    /// The release ID; must equal the directory name.
    pub id: ReleaseId,
    /// When the build started; "newest" means the latest of these.
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// When the seal was written.
    #[serde(with = "timestamp")]
    pub sealed_at: DateTime<Utc>,
    /// Where the files came from.
    pub source: Source,
    /// The git commit, for git sources and directory sources that are git work trees.
    pub revision: Option<String>,
    /// SHA-256 of the lockfile, if there was one.
    pub lockfile_hash: Option<String>,
    /// `node --version` at build time.
    pub node_version: Option<String>,
    /// The build host's platform as Node.js names it (`process.platform`, e.g. `linux`);
    /// `None` in seals written before relman recorded it. `relman receive` compares it with
    /// its own host's when `node_modules` holds native code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The build host's architecture as Node.js names it (`process.arch`, e.g. `x64`); `None`
    /// in older seals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Whether `node_modules` was copied from an earlier release instead of installed.
    pub reused_node_modules: bool,
    /// The release whose `.next/cache` this build started from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_cache_from: Option<ReleaseId>,
    /// Milliseconds per build step.
    pub durations_ms: BTreeMap<String, u64>,
    /// The `manifest.exclude` the manifest was made with; `verify` uses it, so changing the
    /// config later does not make older releases look tampered with.
    #[serde(default)]
    pub manifest_exclude: Option<Vec<String>>,
    /// The `manifest.runtime` of the build: which files `verify` reports apart because the app
    /// writes them at run time. Kept for the same reason as `manifest_exclude`; `None` in seals
    /// written before the key existed, and then `verify` uses the config's.
    #[serde(default)]
    pub manifest_runtime: Option<Vec<String>>,
    /// Files in the manifest.
    pub files: u64,
    /// Bytes of the whole release directory, `node_modules` included.
    pub bytes: u64,
}

/// Written when a build claims its ID, so an unsealed release still has a creation time; while
/// it exists, no seal counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub(crate) id: ReleaseId,
    #[serde(with = "timestamp")]
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) pid: u32,
    /// [`CLAIM_VERSION`] for claims that relman removes before sealing; absent (0) in claims
    /// of earlier relman, which kept the claim beside the seal.
    #[serde(default)]
    pub(crate) version: u32,
}

/// The version of claims removed before the seal is written.
pub(crate) const CLAIM_VERSION: u32 = 2;

/// What a release's claim says about its seal.
#[derive(Debug, Clone)]
pub(crate) enum ClaimState {
    /// No claim: relman removed it to seal (the seal decides), or the release predates it.
    Gone,
    /// A claim of an earlier relman, which kept it after sealing: the seal decides, as it did.
    Legacy(Claim),
    /// A claim (unreadable: `None`): the build is running, failed or was interrupted, and no
    /// seal counts.
    Held(Option<Claim>),
}

impl ClaimState {
    /// Whether a valid seal beside this claim makes the release sealed.
    pub(crate) fn lets_seal_count(&self) -> bool {
        matches!(self, ClaimState::Gone | ClaimState::Legacy(_))
    }

    /// The claim's creation time, if it has a readable one.
    pub(crate) fn created_at(&self) -> Option<DateTime<Utc>> {
        match self {
            ClaimState::Legacy(claim) | ClaimState::Held(Some(claim)) => Some(claim.created_at),
            ClaimState::Gone | ClaimState::Held(None) => None,
        }
    }
}

/// The names of the files inside `releases/ID/.relman/`.
pub(crate) const META_DIR: &str = ".relman";
pub(crate) const SEAL_FILE: &str = "release.json";
pub(crate) const MANIFEST_FILE: &str = "manifest.sha256";
pub(crate) const MANIFEST_META_FILE: &str = "manifest.meta";
pub(crate) const LOG_FILE: &str = "build.log";
pub(crate) const LOCK_FILE: &str = "build.lock";
pub(crate) const CLAIM_FILE: &str = "build.json";

/// The most relman reads of a release's manifest (a few million files).
pub(crate) const MANIFEST_LIMIT: u64 = 512 * 1024 * 1024;
/// The most relman reads of a release's seal or claim: it writes a few hundred bytes.
pub(crate) const RECORD_LIMIT: u64 = 1024 * 1024;

/// Reads `releases/ID/.relman/NAME`, one of relman's own files in a release, if it exists.
///
/// Anyone who can write into a release could make it a symlink (relman, often root, would
/// show its target), a FIFO (relman would hang) or a link to `/dev/zero`: it is read only as
/// a regular file, never through a symlink (neither itself nor `.relman`), at most `limit`
/// bytes.
pub(crate) fn read_meta_file(
    release_dir: &Utf8Path,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, Unreadable> {
    let meta = release_dir.join(META_DIR);
    match std::fs::symlink_metadata(&meta) {
        Ok(kind) if kind.is_dir() => {}
        Ok(_) => return Err(Unreadable::Redirected),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Unreadable::Io(err)),
    }
    read_own_file(&meta.join(name), limit)
}

/// Reads a seal; anything unreadable, truncated, inconsistent or not a regular file is
/// `None` (the release then reads as failed, never as sealed).
pub(crate) fn read_seal(release_dir: &Utf8Path, id: &ReleaseId) -> Option<Seal> {
    let text = read_meta_file(release_dir, SEAL_FILE, RECORD_LIMIT).ok()??;
    let seal: Seal = serde_json::from_slice(&text).ok()?;
    (seal.id == *id).then_some(seal)
}

/// Reads the claim of release `id`. Anything at its path that is not a readable legacy claim of
/// this ID counts as held, so that doubt never makes a release sealed. It is read like every
/// file of relman's own in a release: a regular file only, never through a symlink, bounded.
pub(crate) fn read_claim(release_dir: &Utf8Path, id: &ReleaseId) -> ClaimState {
    let text = match read_meta_file(release_dir, CLAIM_FILE, RECORD_LIMIT) {
        Ok(Some(text)) => text,
        Ok(None) => return ClaimState::Gone,
        Err(_) => return ClaimState::Held(None),
    };
    match serde_json::from_slice::<Claim>(&text) {
        Ok(claim) if claim.version < CLAIM_VERSION && claim.id == *id => ClaimState::Legacy(claim),
        Ok(claim) => ClaimState::Held(Some(claim)),
        Err(_) => ClaimState::Held(None),
    }
}

/// RFC 3339 UTC with all nine fractional digits, always: chrono's default drops the fraction
/// when it is zero, and the contract promises at least milliseconds.
pub(crate) mod timestamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        at: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Nanos, true))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.to_utc())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_written_before_platform_and_arch_were_recorded_still_reads() {
        let old = r#"{
            "id": "r1",
            "created_at": "2026-11-27T10:59:29.959261316Z",
            "sealed_at": "2026-11-27T10:59:31.000000000Z",
            "source": {"kind": "dir", "path": "/srv/src/web"},
            "revision": null,
            "lockfile_hash": null,
            "node_version": "v20.11.1",
            "reused_node_modules": false,
            "durations_ms": {},
            "files": 3,
            "bytes": 100
        }"#;
        let seal: Seal = serde_json::from_str(old).unwrap();
        assert_eq!(seal.platform, None);
        assert_eq!(seal.arch, None);
        // And a seal without them is written without them, as before.
        let text = serde_json::to_string(&seal).unwrap();
        assert!(
            !text.contains("platform") && !text.contains("arch"),
            "{text}"
        );
        let mut seal = seal;
        seal.platform = Some("linux".into());
        seal.arch = Some("x64".into());
        let text = serde_json::to_string(&seal).unwrap();
        assert!(
            text.contains(r#""platform":"linux","arch":"x64""#),
            "{text}"
        );
    }
}
