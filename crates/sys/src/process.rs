//! Processes relman starts and stops: each command runs in a process group of its own, so one
//! signal reaches everything it started, and relman stops that whole group by one policy.
//!
//! - [`in_own_group`]: what every spawn goes through (a Ctrl-C at the terminal reaches the
//!   foreground group; relman decides what is safe to stop, not the terminal).
//! - [`Group`]: a started command's group. [`Group::stop`] is the gentle policy (SIGTERM, a
//!   grace, SIGKILL, reap), [`Group::kill`] the hard one (SIGKILL, reap); dropping a group
//!   stops it, so no return path and no panic leaves a stray process behind.
//! - [`signal_group`], [`signal_process`], [`die`]: the signals relman sends.
//!
//! The system calls go through `rustix`'s safe wrappers; there is no `unsafe` here.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitIdOptions};

/// The signals relman sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP.
    Hangup,
    /// SIGINT.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGKILL.
    Kill,
}

impl Signal {
    fn raw(self) -> rustix::process::Signal {
        match self {
            Signal::Hangup => rustix::process::Signal::HUP,
            Signal::Interrupt => rustix::process::Signal::INT,
            Signal::Terminate => rustix::process::Signal::TERM,
            Signal::Kill => rustix::process::Signal::KILL,
        }
    }
}

fn pid(raw: u32) -> io::Result<Pid> {
    i32::try_from(raw)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no pid {raw}")))
}

/// Makes `command` the leader of a new process group named after its pid.
pub fn in_own_group(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// Sends `signal` to every process of the group `pgid`.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process_group(pid(pgid)?, signal.raw()).map_err(io::Error::from)
}

/// Sends `signal` to one process.
pub fn signal_process(process: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process(pid(process)?, signal.raw()).map_err(io::Error::from)
}

/// Dies on the spot, like `kill -9`: nothing after it runs (the failpoints of the tests).
pub fn die() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::Kill.raw());
    // SIGKILL to oneself is delivered before the call returns; if it somehow was not, leave
    // without running anything else either.
    std::process::abort()
}

/// The effective user and group ids of this process.
pub fn effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// Processes of a group that outlived SIGKILL, or that relman could not wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// The group.
    pub pgid: u32,
    /// Its live members (the leader included when it never exited).
    pub pids: Vec<u32>,
}

/// A started command, leader of its own group.
#[derive(Debug)]
pub struct Group {
    child: Child,
    pgid: u32,
    status: Option<ExitStatus>,
}

impl Group {
    /// Starts `command` as the leader of a new group.
    pub fn spawn(command: &mut Command) -> io::Result<Group> {
        let child = in_own_group(command).spawn()?;
        Ok(Group::new(child))
    }

    /// Takes charge of a child that was started with [`in_own_group`].
    pub fn new(child: Child) -> Group {
        let pgid = child.id();
        Group {
            child,
            pgid,
            status: None,
        }
    }

    /// The group id (the leader's pid).
    pub fn id(&self) -> u32 {
        self.pgid
    }

    /// The leader's exit status, once it was reaped by [`Group::stop`] or [`Group::kill`].
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Whether the leader has exited, without reaping it: while its zombie stands, its pid,
    /// and with it the group id, cannot be reused, so signalling the group stays safe.
    pub fn leader_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let Ok(leader) = pid(self.pgid) else {
            return true;
        };
        match rustix::process::waitid(
            rustix::process::WaitId::Pid(leader),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        ) {
            Ok(found) => found.is_some(),
            // ECHILD: already reaped, so certainly gone.
            Err(err) => err == rustix::io::Errno::CHILD,
        }
    }

    /// SIGTERM to the group, up to `term_grace` for it to finish, SIGKILL, up to `kill_grace`,
    /// then reap the leader. Idempotent; returns the leader's exit status, or the processes
    /// that survived.
    pub fn stop(
        &mut self,
        term_grace: Duration,
        kill_grace: Duration,
    ) -> Result<ExitStatus, Stray> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        // ESRCH (nobody left) is the expected outcome of a clean exit.
        let _ = signal_group(self.pgid, Signal::Terminate);
        if !self.wait_until_empty(term_grace) {
            let _ = signal_group(self.pgid, Signal::Kill);
            self.wait_until_empty(kill_grace);
        }
        self.reap()
    }

    /// SIGKILL to the whole group at once, then reap the leader (up to `grace` for the kernel
    /// to carry it out).
    pub fn kill(&mut self, grace: Duration) -> Result<ExitStatus, Stray> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let _ = signal_group(self.pgid, Signal::Kill);
        self.wait_until_empty(grace);
        self.reap()
    }

    fn reap(&mut self) -> Result<ExitStatus, Stray> {
        let survivors = self.live_members();
        if !self.leader_exited() {
            // Waiting for a leader that outlived SIGKILL (stuck in the kernel) could block
            // for ever; say so instead.
            let mut pids = survivors.unwrap_or_default();
            if !pids.contains(&self.pgid) {
                pids.push(self.pgid);
            }
            return Err(Stray {
                pgid: self.pgid,
                pids,
            });
        }
        let status = self.child.wait().map_err(|_| Stray {
            pgid: self.pgid,
            pids: vec![self.pgid],
        })?;
        self.status = Some(status);
        match survivors {
            Some(pids) if !pids.is_empty() => Err(Stray {
                pgid: self.pgid,
                pids,
            }),
            _ => Ok(status),
        }
    }

    fn wait_until_empty(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            // The leader is asked through `waitid` too: its main thread shows as a zombie in
            // `/proc` while its other threads (node has several) are still exiting, and only
            // `waitid` says when the whole process is gone. Without /proc only it is watched.
            let empty =
                self.leader_exited() && self.live_members().is_none_or(|pids| pids.is_empty());
            if empty {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pids of the group that are alive (zombies do not count: they hold no port and
    /// run no code), or `None` when `/proc` cannot be read.
    pub fn live_members(&self) -> Option<Vec<u32>> {
        crate::proc::group_members(self.pgid)
    }
}

/// How long a group dropped without an explicit stop gets after SIGTERM, then after SIGKILL.
const DROP_GRACE: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(2));

impl Drop for Group {
    fn drop(&mut self) {
        // Errors cannot be returned from here; an explicit `stop` or `kill` reports them.
        let _ = self.stop(DROP_GRACE.0, DROP_GRACE.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => matches!(
                crate::proc::state_and_group(&stat),
                Some(('Z' | 'X', _)) | None
            ),
            Err(_) => true,
        }
    }

    #[test]
    fn dropping_a_group_stops_every_member_and_reaps_the_leader() {
        let dir = std::env::temp_dir().join(format!("relman-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("sleeper.pid");
        let group = Group::spawn(
            Command::new("sh")
                .arg("-c")
                .arg(format!("sleep 60 & echo $! > {}; wait", pid_file.display())),
        )
        .unwrap();
        let leader = group.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&pid_file).map_or(true, |text| !text.ends_with('\n')) {
            assert!(
                Instant::now() < deadline,
                "the shell never started its child"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let sleeper: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!is_gone(sleeper));
        assert!(!group.leader_exited());
        drop(group);
        assert!(is_gone(sleeper), "the group's child survived the drop");
        assert!(
            !std::path::Path::new(&format!("/proc/{leader}")).exists(),
            "the leader was not reaped"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kill_is_immediate_and_reports_the_status() {
        let mut group = Group::spawn(Command::new("sleep").arg("60")).unwrap();
        let started = Instant::now();
        let status = group.kill(Duration::from_secs(2)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(group.leader_exited());
    }

    #[test]
    fn a_leader_that_exited_is_seen_without_being_reaped() {
        let group = Group::spawn(&mut Command::new("true")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group.leader_exited() {
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(5));
        }
        // Still a zombie: the pid is not free for reuse until the group is dropped.
        assert!(std::path::Path::new(&format!("/proc/{}", group.id())).exists());
    }

    #[test]
    fn signals_reach_processes() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        signal_process(child.id(), Signal::Terminate).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        assert!(signal_process(0, Signal::Kill).is_err(), "pid 0 is refused");
    }
}
