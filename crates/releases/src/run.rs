//! Running a build command: its own process group, output streamed to the caller and to the
//! build log, a deadline, and cancellation that kills the whole group.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use relman_sys::process::Group;

use crate::error::{Error, Result};

/// How a command ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It exited non-zero or was killed by a signal.
    Exit(String),
    /// It ran past the deadline and was killed.
    Timeout,
    /// Cancellation was requested and it was killed.
    Cancelled,
    /// It could not be started or watched.
    Error(Error),
}

/// Runs `command` to completion, sending each chunk of its merged stdout and stderr to
/// `output`, until it exits, `deadline` passes, or `cancel` is set.
pub(crate) fn run(
    mut command: Command,
    deadline: Instant,
    cancel: &AtomicBool,
    output: &mut dyn FnMut(&[u8]),
) -> Result<(), Failure> {
    let (reader, writer) = std::io::pipe()
        .map_err(|e| Failure::Error(Error::Command(format!("failed to create a pipe: {e}"))))?;
    let writer_err = writer
        .try_clone()
        .map_err(|e| Failure::Error(Error::Command(format!("failed to create a pipe: {e}"))))?;
    command
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err);
    let spawned = Group::spawn(&mut command).map_err(|e| {
        Failure::Error(Error::Command(format!(
            "failed to start `{}`: {e}",
            command.get_program().to_string_lossy()
        )))
    });
    // The parent's copies of the write end must be gone, or the reader never sees EOF.
    drop(command);
    let mut group = spawned?;

    let (sender, receiver) = mpsc::channel::<Vec<u8>>();
    let pump = std::thread::spawn(move || {
        let mut reader = reader;
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender.send(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut outcome = None;
    loop {
        while let Ok(chunk) = receiver.try_recv() {
            output(&chunk);
        }
        // Seen without reaping: the leader's pid, which names the group, stays taken until
        // the group is killed below.
        if group.leader_exited() {
            break;
        }
        if cancel.load(Ordering::SeqCst) {
            outcome = Some(Failure::Cancelled);
            break;
        }
        if Instant::now() >= deadline {
            outcome = Some(Failure::Timeout);
            break;
        }
        if let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(50)) {
            output(&chunk);
        }
    }
    // Whatever the shell left behind in its group goes too: a stray daemon would hold the
    // output pipe open and outlive the build.
    let status = group.kill(KILL_GRACE);
    for chunk in receiver.iter() {
        output(&chunk);
    }
    let _ = pump.join();
    if let Some(failure) = outcome {
        return Err(failure);
    }
    let status = status.map_err(|stray| {
        Failure::Error(Error::Command(format!(
            "processes {:?} of the build's process group {} outlived SIGKILL: stop them by hand",
            stray.pids, stray.pgid
        )))
    })?;
    if status.success() {
        Ok(())
    } else if let Some(code) = status.code() {
        Err(Failure::Exit(format!("exited with status {code}")))
    } else {
        Err(Failure::Exit(format!(
            "was killed by signal {}",
            status.signal().unwrap_or(0)
        )))
    }
}

/// How long SIGKILL gets to empty the build's group before its survivors are reported.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs a short command and returns its trimmed stdout, or `None` if it failed.
pub(crate) fn capture(
    program: &str,
    args: &[&str],
    dir: Option<&camino::Utf8Path>,
) -> Option<String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A writer that copies everything into the build log and keeps the last lines for the
/// failure message.
pub(crate) struct LogSink {
    file: std::fs::File,
    tail: Vec<u8>,
}

impl LogSink {
    pub(crate) fn new(file: std::fs::File) -> LogSink {
        LogSink {
            file,
            tail: Vec::new(),
        }
    }

    pub(crate) fn write(&mut self, chunk: &[u8]) {
        let _ = self.file.write_all(chunk);
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > 64 * 1024 {
            let cut = self.tail.len() - 32 * 1024;
            self.tail.drain(..cut);
        }
    }

    /// The last `lines` lines written.
    pub(crate) fn tail(&self, lines: usize) -> String {
        let text = String::from_utf8_lossy(&self.tail);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(crate) fn sync(&mut self) {
        let _ = self.file.sync_all();
    }
}
