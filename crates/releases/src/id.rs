//! Release IDs: validation and the timestamp scheme.

use std::fmt;

use crate::{Error, Result};

/// A validated release ID: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
///
/// Every ID relman touches goes through [`ReleaseId::parse`], whether it came from a flag, a
/// directory name or a history line, so no ID can name a path outside `releases/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseId(String);

impl ReleaseId {
    /// Checks `raw` against the ID pattern.
    pub fn parse(raw: &str) -> Result<Self> {
        let bytes = raw.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 64
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(ReleaseId(raw.to_owned()))
        } else {
            Err(Error::InvalidId(raw.escape_debug().to_string()))
        }
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Candidate IDs for a build started at `now`: `YYYYMMDDHHMMSS`, then `-1`, `-2`, ….
    pub(crate) fn candidates(
        now: chrono::DateTime<chrono::Utc>,
    ) -> impl Iterator<Item = ReleaseId> {
        let base = now.format("%Y%m%d%H%M%S").to_string();
        (0..).map(move |n| {
            if n == 0 {
                ReleaseId(base.clone())
            } else {
                ReleaseId(format!("{base}-{n}"))
            }
        })
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ReleaseId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ReleaseId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ReleaseId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_timestamps_and_names() {
        for id in [
            "20261127101500",
            "20261127101500-2",
            "v1.2.3",
            "a",
            "A_b-c.d",
        ] {
            assert_eq!(ReleaseId::parse(id).unwrap().as_str(), id);
        }
        assert!(ReleaseId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_paths_and_junk() {
        let long = "a".repeat(65);
        for id in [
            "", ".", "..", ".hidden", "a/b", "../x", "a b", "a\nb", "-x", "_x", "a\0", &long, "é",
        ] {
            let err = ReleaseId::parse(id).unwrap_err();
            assert!(err.is_usage(), "{id:?}");
        }
    }

    #[test]
    fn candidates_count_up_within_a_second() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:15:00.5Z")
            .unwrap()
            .to_utc();
        let ids: Vec<_> = ReleaseId::candidates(now).take(3).map(|i| i.0).collect();
        assert_eq!(
            ids,
            ["20261127101500", "20261127101500-1", "20261127101500-2"]
        );
    }
}
