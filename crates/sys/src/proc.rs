//! Reads of `/proc`: working directories, process identity, and the TCP sockets a process holds.
//!
//! Two questions of relman's need these. Does a PM2 worker serve the app's port (it holds a
//! socket whose local port is the app's: the listening socket itself, or a connection the
//! cluster primary handed it)? And who listens on the port relman probes (the PM2 daemon relman
//! drives, or another one)? Both are answered from `/proc/PID/fd` (the socket inodes a process
//! holds) and `/proc/PID/net/tcp{,6}` (the sockets of its network namespace).
//!
//! A process that vanished, or that belongs to another user while relman is not root, simply
//! has nothing readable: the functions say so with `None` or an empty answer, never a panic.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The resolved working directory of a running process (`/proc/PID/cwd`).
pub fn cwd(pid: u32) -> Option<PathBuf> {
    if pid == 0 {
        return None;
    }
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// This machine's host name (`/proc/sys/kernel/hostname`: the UTS namespace's, as `hostname`
/// prints it), or `None` when it cannot be read.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Whether `pid` is a live process: it exists and is neither a zombie nor dead (a process
/// killed but not yet reaped, as under an init that does not reap, is not live).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| state_and_group(&stat))
        .is_some_and(|(state, _)| !matches!(state, 'Z' | 'X' | 'x'))
}

/// The state of a TCP socket, as the kernel numbers it in `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// A listening socket (`0A`).
    Listen,
    /// A connected socket (`01`).
    Established,
    /// Any other state (closing, waiting); the kernel's number.
    Other(u8),
}

/// One line of `/proc/PID/net/tcp` or `tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// The local address and port.
    pub local: SocketAddr,
    /// The remote address and port (unspecified for a listener).
    pub remote: SocketAddr,
    /// Its state.
    pub state: TcpState,
    /// The socket's inode (0 for sockets no file descriptor holds, such as `TIME_WAIT`).
    pub inode: u64,
}

/// Every TCP socket (IPv4 and IPv6) of the network namespace of `pid`, or of relman's own
/// namespace when `pid` is `None`.
pub fn tcp_sockets(pid: Option<u32>) -> io::Result<Vec<TcpSocket>> {
    let base = match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/net")),
        None => PathBuf::from("/proc/self/net"),
    };
    let mut sockets = Vec::new();
    for file in ["tcp", "tcp6"] {
        let text = match std::fs::read_to_string(base.join(file)) {
            Ok(text) => text,
            // A kernel without IPv6 has no `tcp6`.
            Err(err) if err.kind() == io::ErrorKind::NotFound && file == "tcp6" => continue,
            Err(err) => return Err(err),
        };
        sockets.extend(text.lines().skip(1).filter_map(parse_tcp_line));
    }
    Ok(sockets)
}

/// Parses one line of `/proc/net/tcp{,6}`; the header and anything malformed give `None`.
fn parse_tcp_line(line: &str) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 {
        return None;
    }
    let state = u8::from_str_radix(fields[3], 16).ok()?;
    Some(TcpSocket {
        local: parse_address(fields[1])?,
        remote: parse_address(fields[2])?,
        state: match state {
            0x0A => TcpState::Listen,
            0x01 => TcpState::Established,
            other => TcpState::Other(other),
        },
        inode: fields[9].parse().ok()?,
    })
}

/// `0100007F:0BB8` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints each 32-bit
/// word of the address as a host-order number, so the word's native bytes are the address's
/// bytes in network order.
///
/// An IPv4 address mapped into IPv6 (`::ffff:127.0.0.1`, what a dual-stack listener on `::`
/// shows for an IPv4 client, as `next start` has) is given as the IPv4 address, so it compares
/// equal to the client's own view of the connection.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ipv6Addr::from(bytes).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The inodes of the sockets a process holds open (`/proc/PID/fd/* -> socket:[INODE]`).
/// Unreadable (gone, or another user's) is an error.
pub fn socket_inodes(pid: u32) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(entry) = entry else { continue };
        // A descriptor closed between the listing and the read is simply not there.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if let Some(inode) = socket_inode(&target) {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

fn socket_inode(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Whether `pid` holds a TCP socket whose local port is `port`: the listening socket itself
/// (a cluster worker that shares its primary's handle) or a connection on that port (one the
/// cluster primary accepted and handed to it). Either way, it serves that port.
///
/// The socket table is read before the descriptors: a connection that is answered and closed
/// in between (most real requests) is then missed, never misread, and one held open is seen.
pub fn holds_port(pid: u32, port: u16) -> io::Result<bool> {
    let on_port: HashSet<u64> = tcp_sockets(Some(pid))?
        .iter()
        .filter(|socket| socket.inode != 0 && socket.local.port() == port)
        .map(|socket| socket.inode)
        .collect();
    if on_port.is_empty() {
        return Ok(false);
    }
    Ok(!socket_inodes(pid)?.is_disjoint(&on_port))
}

/// The accepted ends of connections to `port` whose clients are `peers` (their local
/// addresses), in the network namespace of `pid`: inode → client address. A connection still
/// waiting in the listener's queue has no inode yet and is left out.
pub fn accepted_from(
    pid: u32,
    port: u16,
    peers: &[SocketAddr],
) -> io::Result<HashMap<u64, SocketAddr>> {
    Ok(tcp_sockets(Some(pid))?
        .iter()
        .filter(|socket| {
            socket.inode != 0 && socket.local.port() == port && peers.contains(&socket.remote)
        })
        .map(|socket| (socket.inode, socket.remote))
        .collect())
}

/// The listening sockets on `port` in relman's network namespace.
pub fn listeners(port: u16) -> io::Result<Vec<TcpSocket>> {
    Ok(tcp_sockets(None)?
        .into_iter()
        .filter(|socket| socket.state == TcpState::Listen && socket.local.port() == port)
        .collect())
}

/// The processes that hold any of `inodes`, as far as relman can see: processes of other
/// users are invisible unless relman runs as root.
pub fn holders(inodes: &HashSet<u64>) -> Vec<u32> {
    let Some(pids) = pids() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for pid in pids {
        if socket_inodes(pid).is_ok_and(|held| !held.is_disjoint(inodes)) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}

/// Who a process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub parent: u32,
    /// Its real user id.
    pub uid: u32,
    /// That user's name, from `/etc/passwd`, when it has one.
    pub user: Option<String>,
    /// Its command line, arguments joined by spaces (a process may rewrite it: PM2's daemon
    /// shows `PM2 vX.Y.Z: God Daemon (PM2_HOME)`).
    pub command: String,
}

/// Reads who a process is, or `None` when it is gone.
pub fn info(pid: u32) -> Option<ProcessInfo> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u32>().ok())
    };
    let parent = field("PPid:")?;
    let uid = field("Uid:")?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = raw
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned();
    Some(ProcessInfo {
        pid,
        parent,
        uid,
        user: user_name(uid),
        command,
    })
}

/// The paths a process holds open (`/proc/PID/fd/*` that name files, not sockets or pipes).
pub fn open_paths(pid: u32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter(|target| target.is_absolute())
        .collect()
}

/// One variable of a process's environment, as it was when it started.
pub fn environment_variable(pid: u32, name: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        let (key, value) = entry.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// Reads the state and process group from `/proc/PID/stat`. The command name is in
/// parentheses and may itself contain `)` and spaces, so fields are counted from the last `)`.
pub fn state_and_group(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// The live members of process group `pgid` (zombies do not count: they hold no port and run
/// no code), or `None` when `/proc` cannot be read.
pub fn group_members(pgid: u32) -> Option<Vec<u32>> {
    Some(
        pids()?
            .filter(|pid| live_group(*pid) == Some(pgid))
            .collect(),
    )
}

/// The live processes (pid and process group) whose environment, as they started, holds
/// `name=value`: how the processes a command left behind are found again by a later relman,
/// whatever their pids and groups became. Processes relman may not read are not seen.
pub fn marked(name: &str, value: &str) -> Vec<(u32, u32)> {
    let Some(pids) = pids() else {
        return Vec::new();
    };
    pids.filter(|pid| environment_variable(*pid, name).as_deref() == Some(value))
        .filter_map(|pid| Some((pid, live_group(pid)?)))
        .collect()
}

/// Every pid in `/proc`, or `None` when it cannot be read.
fn pids() -> Option<impl Iterator<Item = u32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(entries.flatten().filter_map(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
    }))
}

/// The process group of a live process; `None` for a zombie (it holds no port and runs no
/// code) or a process that vanished between listing and reading.
fn live_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    match state_and_group(&stat)? {
        ('Z' | 'X', _) => None,
        (_, group) => Some(group),
    }
}

/// The name of a user id, from `/etc/passwd`.
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_zombie_is_not_alive() {
        assert!(is_alive(std::process::id()));
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 0"])
            .spawn()
            .unwrap();
        let pid = child.id();
        // Exited, not yet reaped: a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while is_alive(pid) {
            assert!(std::time::Instant::now() < deadline, "{pid} never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn parses_ipv4_and_ipv6_lines() {
        let v4 = "   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        let socket = parse_tcp_line(v4).unwrap();
        assert_eq!(socket.local, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(socket.state, TcpState::Listen);
        assert_eq!(socket.inode, 123456);
        let v6 = "   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 20 4 30 10 -1";
        let socket = parse_tcp_line(v6).unwrap();
        assert_eq!(socket.local, "[::1]:8080".parse().unwrap());
        assert_eq!(socket.remote.port(), 0xD2F0);
        assert_eq!(socket.state, TcpState::Established);
        // A dual-stack listener's connection from 127.0.0.1:54000, as `tcp6` shows it.
        let mapped = "   2: 0000000000000000FFFF00000100007F:0BB8 0000000000000000FFFF00000100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 888 1 0000000000000000 20 4 30 10 -1";
        let socket = parse_tcp_line(mapped).unwrap();
        assert_eq!(socket.local, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(socket.remote, "127.0.0.1:54000".parse().unwrap());
        assert!(parse_tcp_line("  sl  local_address rem_address   st").is_none());
        assert!(parse_tcp_line("0: zz:0BB8 00000000:0000 0A a b c d e 1").is_none());
    }

    #[test]
    fn sees_its_own_listener_and_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        let found = listeners(port).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let inodes: HashSet<u64> = found.iter().map(|s| s.inode).collect();
        assert_eq!(holders(&inodes), [me]);
        assert!(holds_port(me, port).unwrap());
        drop(listener);
        // The port itself may be taken again at once by a test running beside this one; the
        // socket that was dropped must be gone. Not at once, though: a test beside this one
        // that spawns a process forks a copy of every descriptor, this listener included,
        // which lives until that child's `exec` closes it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while listeners(port)
            .unwrap()
            .iter()
            .any(|s| inodes.contains(&s.inode))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped listener stayed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }

        // A connected socket on the port counts too: what a cluster worker holds.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        drop(listener);
        assert!(holds_port(me, port).unwrap());
        let accepted = accepted_from(me, port, &[_client.local_addr().unwrap()]).unwrap();
        assert_eq!(accepted.len(), 1);
        let inode = accepted.keys().next().unwrap();
        assert!(socket_inodes(me).unwrap().contains(inode));
        // Another process holds nothing on it (a port freed here could be taken again at once
        // by a test running beside this one, so the check is of another process instead).
        assert!(!holds_port(1, port).unwrap_or(false));
    }

    #[test]
    fn stat_is_parsed_past_odd_command_names() {
        let stat = "1234 (we) ird (name)) S 1 4321 4321 0 -1";
        assert_eq!(state_and_group(stat), Some(('S', 4321)));
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn reads_its_own_identity() {
        let me = info(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.command.is_empty());
        assert!(cwd(std::process::id()).is_some());
        assert!(cwd(0).is_none());
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let path = std::env::var("PATH").unwrap();
        assert_eq!(environment_variable(std::process::id(), "PATH"), Some(path));
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(!open_paths(std::process::id()).is_empty());
        drop(file);
    }
}
