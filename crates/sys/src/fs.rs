//! The filesystem-wide calls: flushing a whole filesystem, and its free space.

use std::fs::File;
use std::io;
use std::path::Path;

/// Flushes every dirty page of the filesystem holding `file` (`syncfs(2)`): one call instead
/// of an `fsync` per file of a release.
pub fn sync_filesystem(file: &File) -> io::Result<()> {
    rustix::fs::syncfs(file).map_err(io::Error::from)
}

/// Bytes available to an unprivileged user on the filesystem holding `path` (`statvfs(3)`).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_and_measures_a_real_filesystem() {
        let here = std::env::temp_dir();
        sync_filesystem(&File::open(&here).unwrap()).unwrap();
        assert!(free_bytes(&here).unwrap() > 0);
        assert!(free_bytes(Path::new("/nonexistent/relman")).is_err());
    }
}
