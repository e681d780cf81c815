//! relman's own files (the history, the lock note, a release's seal, claim and manifest):
//! opened without following a symlink and without blocking on a FIFO, accepted only as
//! regular files, and read bounded.
//!
//! Anyone who can write into a deploy root could otherwise point one of them at `/dev/zero`,
//! a FIFO or `/etc/shadow`, and relman (often run as root) would hang, read until memory runs
//! out, show another file's contents, or truncate it.

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

/// Opens without following a symlink and without blocking on a FIFO, then refuses anything
/// that is not a regular file.
///
/// `O_NONBLOCK` only matters for the open itself (a FIFO would block until a writer came);
/// on a regular file it changes nothing.
fn open_checked(path: &Utf8Path, options: &mut OpenOptions) -> Result<File, Unreadable> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
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
    open_checked(path, options).map_err(|why| match why {
        Unreadable::Io(err) => crate::Error::io("failed to open", path, err),
        other => other.into_error(
            path,
            "relman only reads and writes its own files as regular files; move it away",
        ),
    })
}

/// Reads a whole file relman owns, if it exists: a regular file, never followed through a
/// symlink, of at most `limit` bytes (checked before reading, and while reading in case it
/// grows).
pub(crate) fn read_own_file(path: &Utf8Path, limit: u64) -> Result<Option<Vec<u8>>, Unreadable> {
    let file = match open_checked(path, OpenOptions::new().read(true)) {
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
pub(crate) fn append_whole_line(path: &Utf8Path, line: &str) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let file = open_own_file(
        path,
        OpenOptions::new().read(true).append(true).create(true),
    )?;
    let len = file.metadata().at("failed to inspect", path)?.len();
    // Walk back from the end to just after the last `\n` (0 when there is none).
    let mut whole = 0;
    let mut end = len;
    let mut buffer = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)
            .at("failed to read", path)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            whole = start + at as u64 + 1;
            break;
        }
        end = start;
    }
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
