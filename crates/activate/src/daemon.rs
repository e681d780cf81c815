//! Who serves the port relman probes: the PM2 daemon relman drives, or someone else.
//!
//! The multi-daemon trap: the app users reach runs under one PM2 daemon (another user's, or
//! another `PM2_HOME`), while the daemon relman talks to also has an app of that name. relman
//! would reload workers nobody reaches, and a health route that does not name the release would
//! still pass: a "successful" deploy that changed nothing users see. In cluster mode the daemon
//! itself holds the app's listening socket (the cluster primary), so the owner of the listener
//! tells which daemon serves users.

use std::collections::HashSet;

use relman_sys::proc::{self, ProcessInfo};

/// Who holds the listening socket of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortOwner {
    /// Nothing listens on it.
    Nobody,
    /// The daemon relman drives, or one of its workers.
    Ours,
    /// Another process, as far as relman can see it.
    Other(ProcessInfo),
    /// A listener whose owner relman cannot see (another user's process, relman not root).
    Unseen,
}

/// Who holds the listener of `port`: `ours` are the pids of the daemon relman drives and of
/// its workers.
pub(crate) fn port_owner(port: u16, ours: &[u32]) -> PortOwner {
    let Ok(listeners) = proc::listeners(port) else {
        return PortOwner::Unseen;
    };
    let inodes: HashSet<u64> = listeners.iter().map(|s| s.inode).collect();
    if inodes.is_empty() {
        return PortOwner::Nobody;
    }
    if ours
        .iter()
        .any(|pid| proc::socket_inodes(*pid).is_ok_and(|held| !held.is_disjoint(&inodes)))
    {
        return PortOwner::Ours;
    }
    match proc::holders(&inodes)
        .first()
        .and_then(|pid| proc::info(*pid))
    {
        Some(info) => PortOwner::Other(info),
        None => PortOwner::Unseen,
    }
}

/// How the other owner reads in a message: its pid, user, and for a PM2 daemon its home.
pub(crate) fn describe(owner: &ProcessInfo) -> String {
    let user = owner
        .user
        .clone()
        .unwrap_or_else(|| format!("uid {}", owner.uid));
    match pm2_home(owner) {
        Some(home) => format!(
            "another PM2 daemon (pid {}, user {user}, PM2_HOME `{home}`)",
            owner.pid
        ),
        None => format!("pid {} (`{}`, user {user})", owner.pid, owner.command),
    }
}

/// The `PM2_HOME` of a PM2 daemon, or `None` for any other process. The daemon's title says
/// `PM2 v7.0.4: God Daemon (/home/web/.pm2)`, but the kernel cuts a title to the length of the
/// original command line, so the home is read from the log file the daemon holds open
/// (`PM2_HOME/pm2.log`), then its environment, before the title.
pub(crate) fn pm2_home(owner: &ProcessInfo) -> Option<String> {
    if !owner.command.contains("God Daemon") {
        return None;
    }
    let from_log = proc::open_paths(owner.pid).into_iter().find_map(|path| {
        (path.file_name()? == "pm2.log").then(|| path.parent().map(|p| p.display().to_string()))?
    });
    from_log
        .or_else(|| proc::environment_variable(owner.pid, "PM2_HOME"))
        .or_else(|| home_in_title(&owner.command).map(str::to_owned))
}

/// The home in a whole daemon title.
fn home_in_title(command: &str) -> Option<&str> {
    let rest = command.split_once("God Daemon (")?.1;
    rest.rfind(')').map(|end| &rest[..end])
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn reads_the_home_from_a_whole_daemon_title() {
        assert_eq!(
            home_in_title("PM2 v7.0.4: God Daemon (/home/web/.pm2)"),
            Some("/home/web/.pm2")
        );
        assert_eq!(home_in_title("PM2 v7.0.4: God Daemon (/home/web/.p"), None);
        assert_eq!(home_in_title("node server.js"), None);
    }

    #[test]
    fn names_the_owner_of_a_port() {
        // Port 1 is privileged and unused here (a port freed by this test could be taken
        // again at once by a test running beside it).
        assert_eq!(port_owner(1, &[]), PortOwner::Nobody);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        assert_eq!(port_owner(port, &[me]), PortOwner::Ours);
        match port_owner(port, &[1]) {
            PortOwner::Other(info) => {
                assert_eq!(info.pid, me);
                assert!(describe(&info).contains(&format!("pid {me}")));
            }
            other => panic!("expected this process as the other owner, got {other:?}"),
        }
    }
}
