//! relman's own files (the history, the lock note, a release's seal, claim and manifest) and
//! the config: opened without following a symlink (the config may be one, to a regular file)
//! and without blocking on a FIFO, accepted only as regular files, and read bounded.
//!
//! Anyone who can write into a deploy root could otherwise point one of them at `/dev/zero`,
//! a FIFO or `/etc/shadow`, and relman (often run as root) would hang, read until memory runs
//! out, show another file's contents, or truncate it.

use crate::fs::flag;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use camino::Utf8Path;

use crate::error::{IoContext, Result};

/// Why one of relman's own files could not be opened or read.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// It is not a regular file: a symlink, a FIFO, a device, a socket, a directory.
    NotRegular(&'static str),
    /// It is larger than relman ever writes it.
    TooLarge {
        /// Its size in bytes.
        len: u64,
        /// The most relman reads.
        limit: u64,
    },
    /// A directory on its way is a symlink (or not a directory).
    Redirected,
    /// The operating system refused (`NotFound` among others).
    Io(io::Error),
}

impl Unreadable {
    /// What is wrong, for a message that names the file itself.
    pub(crate) fn describe(&self) -> String {
        match self {
            Unreadable::NotRegular(kind) => format!("it is {kind}, not a regular file"),
            Unreadable::TooLarge { len, limit } => format!(
                "it is {len} bytes, more than the {} relman reads",
                size(*limit)
            ),
            Unreadable::Redirected => {
                "it is reached through a symlink, not inside the release itself".to_owned()
            }
            Unreadable::Io(err) => format!("failed to read it: {err}"),
        }
    }

    /// The error for `path`: an I/O failure as such, anything else as a malformed file with
    /// `hint` (what to do) after what is wrong.
    pub(crate) fn into_error(self, path: &Utf8Path, hint: &str) -> crate::Error {
        match self {
            Unreadable::Io(err) => crate::Error::io("failed to read", path, err),
            other => crate::Error::Malformed {
                path: path.to_owned(),
                message: format!("{}: {hint}", other.describe()),
            },
        }
    }
}

/// `512 MiB` for a whole number of MiB, else bytes.
fn size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether a symlink in the last component is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Refused: relman's own state, which only relman writes.
    Refuse,
    /// Followed, to a regular file: a file the operator writes and may keep elsewhere.
    Follow,
}

/// Opens without blocking on a FIFO (and without following a symlink unless `links` says),
/// then refuses anything that is not a regular file.
///
/// `O_NONBLOCK` only matters for the open itself (a FIFO would block until a writer came);
/// on a regular file it changes nothing.
fn open_checked(
    path: &Utf8Path,
    options: &mut OpenOptions,
    links: Links,
) -> Result<File, Unreadable> {
    let flags = match links {
        Links::Refuse => flag(rustix::fs::OFlags::NOFOLLOW) | flag(rustix::fs::OFlags::NONBLOCK),
        Links::Follow => flag(rustix::fs::OFlags::NONBLOCK),
    };
    let file = options.custom_flags(flags).open(path).map_err(|err| {
        if err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            Unreadable::NotRegular("a symlink")
        } else {
            Unreadable::Io(err)
        }
    })?;
    let kind = file.metadata().map_err(Unreadable::Io)?.file_type();
    if !kind.is_file() {
        return Err(Unreadable::NotRegular(file_kind(&kind)));
    }
    Ok(file)
}

/// Opens a file relman owns (to write or lock it) as [`open_checked`] does.
pub(crate) fn open_own_file(path: &Utf8Path, options: &mut OpenOptions) -> Result<File> {
    open_checked(path, options, Links::Refuse).map_err(|why| match why {
        Unreadable::Io(err) => crate::Error::io("failed to open", path, err),
        other => other.into_error(
            path,
            "relman only reads and writes its own files as regular files; move it away",
        ),
    })
}

/// Opens a file relman owns to read it in parts, if it exists: a regular file, never through a
/// symlink, of at most `limit` bytes when opened. Returns it with its length.
pub(crate) fn open_own_file_to_read(
    path: &Utf8Path,
    limit: u64,
) -> Result<Option<(File, u64)>, Unreadable> {
    let file = match open_checked(path, OpenOptions::new().read(true), Links::Refuse) {
        Ok(file) => file,
        Err(Unreadable::Io(err)) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(why) => return Err(why),
    };
    let len = file.metadata().map_err(Unreadable::Io)?.len();
    if len > limit {
        return Err(Unreadable::TooLarge { len, limit });
    }
    Ok(Some((file, len)))
}

/// Checks, without reading it, that a file relman owns is a regular file (not a symlink) of
/// at most `limit` bytes, or absent.
pub(crate) fn check_own_file(path: &Utf8Path, limit: u64) -> Result<(), Unreadable> {
    open_own_file_to_read(path, limit).map(drop)
}

/// Reads a whole file relman owns, if it exists: a regular file, never followed through a
/// symlink, of at most `limit` bytes (checked before reading, and while reading in case it
/// grows).
pub(crate) fn read_own_file(path: &Utf8Path, limit: u64) -> Result<Option<Vec<u8>>, Unreadable> {
    read_regular_file(path, limit, Links::Refuse)
}

/// [`read_own_file`], choosing whether a symlink is followed (to a regular file).
pub(crate) fn read_regular_file(
    path: &Utf8Path,
    limit: u64,
    links: Links,
) -> Result<Option<Vec<u8>>, Unreadable> {
    let file = match open_checked(path, OpenOptions::new().read(true), links) {
        Ok(file) => file,
        Err(Unreadable::Io(err)) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(why) => return Err(why),
    };
    let len = file.metadata().map_err(Unreadable::Io)?.len();
    if len > limit {
        return Err(Unreadable::TooLarge { len, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable::Io)?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(Unreadable::TooLarge { len: read, limit });
    }
    Ok(Some(bytes))
}

fn file_kind(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symlink"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Appends one whole line with a single `write` and fsyncs, after cutting off a torn last
/// line, so a crash leaves at most a torn last line, which readers ignore and the next append
/// removes.
///
/// A line is only ever written whole, with its `\n`, by one `write`; bytes after the last
/// `\n` are what a crash left of one, never a whole entry. Appending after them would glue the
/// new line onto the fragment and make it a bad line in the middle of the file, so they are
/// truncated (and the truncation fsynced) first. Callers hold the root lock: nobody else is
/// appending. The file must be a regular file: it is never followed through a symlink, since
/// the repair truncates.
/// Opens `path` for appending (created if missing, as relman's own file: never through a
/// symlink) and reserves `bytes` of disk beyond its end without changing its size
/// (`fallocate(FALLOC_FL_KEEP_SIZE)`), so that appends of up to that much that follow cannot
/// fail for space. A filesystem without `fallocate` gets the open alone.
pub(crate) fn reserve_append(path: &Utf8Path, bytes: u64) -> Result<()> {
    let file = open_own_file(path, OpenOptions::new().append(true).create(true))?;
    let len = file.metadata().at("failed to inspect", path)?.len();
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::KEEP_SIZE, len, bytes) {
        Ok(()) => Ok(()),
        Err(err) if err == rustix::io::Errno::OPNOTSUPP || err == rustix::io::Errno::NOSYS => {
            Ok(())
        }
        Err(err) => Err(crate::Error::io(
            "failed to reserve space to append to",
            path,
            std::io::Error::from(err),
        )),
    }
}

pub(crate) fn append_whole_line(path: &Utf8Path, line: &str) -> Result<()> {
    /// The longest torn line cut off: far more than any line relman writes.
    const MAX_TORN_LINE: u64 = 1024 * 1024;
    use std::os::unix::fs::FileExt;
    let file = open_own_file(
        path,
        OpenOptions::new().read(true).append(true).create(true),
    )?;
    let len = file.metadata().at("failed to inspect", path)?.len();
    // Just after the last `\n` (0 when there is none), looked for in the last
    // `MAX_TORN_LINE` bytes only: a torn line is part of one line, and a longer run without
    // a `\n` is something else, which is not relman's to cut.
    let mut last = [0u8; 1];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1)
            .at("failed to read", path)?;
    }
    let whole = if len == 0 || last[0] == b'\n' {
        len
    } else {
        let start = len.saturating_sub(MAX_TORN_LINE);
        let mut tail = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut tail, start)
            .at("failed to read", path)?;
        match tail.iter().rposition(|b| *b == b'\n') {
            Some(at) => start + at as u64 + 1,
            None if start == 0 => 0,
            None => {
                return Err(crate::Error::Malformed {
                    path: path.to_owned(),
                    message: format!(
                        "it does not end with a whole line and its last line is over {}, longer than any relman writes: archive it (move it away; relman starts a new one)",
                        size(MAX_TORN_LINE)
                    ),
                });
            }
        }
    };
    if whole != len {
        file.set_len(whole)
            .and_then(|()| file.sync_all())
            .at("failed to cut the torn last line of", path)?;
    }
    let mut record = String::with_capacity(line.len() + 1);
    record.push_str(line);
    record.push('\n');
    let written = (&file)
        .write(record.as_bytes())
        .at("failed to append to", path)?;
    if written != record.len() {
        return Err(crate::Error::io(
            "short write to",
            path,
            io::Error::new(io::ErrorKind::WriteZero, "the line was not written whole"),
        ));
    }
    file.sync_all().at("failed to fsync", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_longer_than_one_read_is_cut_at_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = Utf8Path::from_path(dir.path()).unwrap().join("h.jsonl");
        let mut text = "{\"a\":1}\n".to_owned();
        text.push_str(&"x".repeat(200 * 1024));
        fs::write(&file, &text).unwrap();
        append_whole_line(&file, "{\"a\":2}").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn read_own_file_reads_regular_files_within_the_limit_only() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(dir.path()).unwrap();
        let file = base.join("f");
        assert!(matches!(read_own_file(&file, 4), Ok(None)));
        fs::write(&file, "abcd").unwrap();
        assert_eq!(read_own_file(&file, 4).unwrap().unwrap(), b"abcd");
        let err = read_own_file(&file, 3).unwrap_err();
        assert_eq!(
            err.describe(),
            "it is 4 bytes, more than the 3 bytes relman reads"
        );
        let link = base.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let err = read_own_file(&link, 4).unwrap_err();
        assert_eq!(err.describe(), "it is a symlink, not a regular file");
        let err = read_own_file(base, 4).unwrap_err();
        assert_eq!(err.describe(), "it is a directory, not a regular file");
        let err = read_own_file(Utf8Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(err.describe(), "it is a device, not a regular file");
        assert_eq!(
            Unreadable::TooLarge {
                len: 1,
                limit: 512 << 20
            }
            .describe(),
            "it is 1 bytes, more than the 512 MiB relman reads"
        );
    }

    #[test]
    fn a_line_without_a_newline_longer_than_any_relman_writes_is_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let file = Utf8Path::from_path(dir.path()).unwrap().join("h.jsonl");
        let text = "x".repeat(2 * 1024 * 1024);
        fs::write(&file, &text).unwrap();
        let err = append_whole_line(&file, "{}").unwrap_err();
        assert!(err.to_string().contains("archive it"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), text, "untouched");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let file = Utf8Path::from_path(dir.path()).unwrap().join("h.jsonl");
        let status = std::process::Command::new("mkfifo")
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success());
        let err = append_whole_line(&file, "{}").unwrap_err();
        assert!(
            err.to_string().contains("a FIFO, not a regular file"),
            "{err}"
        );
    }
}
