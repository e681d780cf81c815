//! relman's own files in a deploy root (the history, the lock note): opened without following
//! a symlink and without blocking on a FIFO, accepted only as regular files.
//!
//! Anyone who can write into a deploy root could otherwise point one of them at `/dev/zero`,
//! a FIFO or `/etc/shadow`, and relman (often run as root) would hang, read until memory runs
//! out, show another file's contents, or truncate it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use camino::Utf8Path;

use crate::error::{IoContext, Result};

/// Opens a file relman owns without following a symlink and without blocking on a FIFO, and
/// refuses anything that is not a regular file (a device, a FIFO, a socket, a directory).
///
/// `O_NONBLOCK` only matters for the open itself (a FIFO would block until a writer came);
/// on a regular file it changes nothing.
pub(crate) fn open_own_file(path: &Utf8Path, options: &mut OpenOptions) -> Result<File> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
                not_regular(path, "a symlink")
            } else {
                crate::Error::io("failed to open", path, err)
            }
        })?;
    let kind = file.metadata().at("failed to inspect", path)?.file_type();
    if !kind.is_file() {
        return Err(not_regular(path, file_kind(&kind)));
    }
    Ok(file)
}

fn not_regular(path: &Utf8Path, kind: &str) -> crate::Error {
    crate::Error::Malformed {
        path: path.to_owned(),
        message: format!(
            "it is {kind}, not a regular file: relman only reads and writes its own files as regular files; move it away"
        ),
    }
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
