//! `relman pack` and `relman receive`: a sealed release as one stream, built once and sealed
//! again on every host that receives it.
//!
//! The stream is a tar archive compressed with zstd (frame checksum on), its entries in this
//! order:
//!
//! 1. `relman/format.json`: `{"format": 1, "id", "meta"}`, so a receiver knows first what it
//!    reads (and refuses a format it does not know);
//! 2. `relman/release.json`, `relman/manifest.sha256` and, when `meta` says so,
//!    `relman/manifest.meta`: the release's seal, manifest and sidecar as its build wrote them;
//! 3. `tree/PATH` for every directory, regular file and symlink of the release outside
//!    `.relman/`, each directory before what it holds; symlinks as symlinks, never followed
//!    (shared paths are links into the sender's `shared/`, whose contents never travel);
//! 4. `relman/unlisted.sha256`: the SHA-256 of every file the manifest does not vouch for
//!    (`node_modules` and the other excludes, files the app rewrote at run time), in
//!    `sha256sum` format, hashed by `pack` as it read them;
//! 5. `relman/unlisted.meta`: in the sidecar's format, the modes of those files and every
//!    symlink the sidecar does not list (the sidecar leaves out the excludes too: the
//!    `node_modules/.bin` links);
//! 6. `relman/end.json`: how many files, links and directories and how many bytes of content
//!    came before it. A stream cut anywhere, at an entry boundary too, lacks it.
//!
//! The receiver hashes every file as it writes it and refuses the release unless each file
//! and symlink matches the manifest and sidecar or the unlisted lists, everything listed
//! arrived, and the modes match; it writes nothing outside `releases/ID`, never through a
//! symlink, and seals only once all of that held.

mod pack;
mod receive;

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::ReleaseId;

pub use pack::{PackOutput, PackReport, pack};
pub use receive::{ReceiveInput, ReceiveReport, receive};

/// The stream format this relman writes and reads.
const FORMAT: u32 = 1;

/// The entries of the stream, in order.
const FORMAT_ENTRY: &str = "relman/format.json";
const SEAL_ENTRY: &str = "relman/release.json";
const MANIFEST_ENTRY: &str = "relman/manifest.sha256";
const META_ENTRY: &str = "relman/manifest.meta";
const TREE_PREFIX: &str = "tree/";
const UNLISTED_ENTRY: &str = "relman/unlisted.sha256";
const UNLISTED_META_ENTRY: &str = "relman/unlisted.meta";
const END_ENTRY: &str = "relman/end.json";

/// The zstd level `pack` compresses at: zstd's default, fast on both ends.
const LEVEL: i32 = 3;

/// `relman/format.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Format {
    /// [`FORMAT`].
    format: u32,
    /// The release.
    id: ReleaseId,
    /// Whether `relman/manifest.meta` follows the manifest.
    meta: bool,
}

/// `relman/end.json`: what came before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct End {
    /// Regular files under `tree/`.
    files: u64,
    /// Symlinks under `tree/`.
    links: u64,
    /// Directories under `tree/`.
    dirs: u64,
    /// Bytes of the regular files.
    content_bytes: u64,
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    fn finish(self) -> ([u8; 32], u64) {
        (self.hasher.finalize().into(), self.len)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.len += read as u64;
        Ok(read)
    }
}

/// Counts the bytes of the stream itself, compressed, on either side.
struct Counting<T> {
    inner: T,
    bytes: u64,
}

impl<T> Counting<T> {
    fn new(inner: T) -> Self {
        Counting { inner, bytes: 0 }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.bytes += read as u64;
        Ok(read)
    }
}

impl<R: io::BufRead> io::BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.bytes += amount as u64;
        self.inner.consume(amount);
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_sees_every_byte_read_and_counting_every_byte_passed() {
        let data = vec![7u8; 200_000];
        let mut reader = Hashing::new(Counting::new(data.as_slice()));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(reader.inner.bytes, 200_000);
        let (digest, len) = reader.finish();
        assert_eq!(len, 200_000);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&data)));

        let mut writer = Counting::new(Vec::new());
        writer.write_all(&data[..1000]).unwrap();
        assert_eq!(writer.bytes, 1000);
    }

    #[test]
    fn the_end_marker_round_trips_and_a_missing_count_is_malformed() {
        let end = End {
            files: 3,
            links: 1,
            dirs: 2,
            content_bytes: 99,
        };
        let text = serde_json::to_string(&end).unwrap();
        assert_eq!(text, r#"{"files":3,"links":1,"dirs":2,"content_bytes":99}"#);
        assert_eq!(serde_json::from_str::<End>(&text).unwrap(), end);
        // A marker missing a count is malformed, not zero.
        assert!(serde_json::from_str::<End>(r#"{"files":3,"links":1,"dirs":2}"#).is_err());
    }

    #[test]
    fn excludes_match_whole_components() {
        let exclude = vec!["node_modules".to_owned(), ".next/cache".to_owned()];
        assert!(crate::manifest::is_excluded(
            "node_modules/x/y.js",
            &exclude
        ));
        assert!(crate::manifest::is_excluded(
            ".next/cache/images/a",
            &exclude
        ));
        assert!(!crate::manifest::is_excluded(
            "node_modules_old/x",
            &exclude
        ));
        assert!(!crate::manifest::is_excluded(".next/cached", &exclude));
        assert!(!crate::manifest::is_excluded(
            "app/node_modules/x",
            &exclude
        ));
    }
}
