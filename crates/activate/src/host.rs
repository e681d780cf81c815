//! The host as the worker proof sees it: processes (where one runs, whether it serves the app's
//! port) and the clock. Both are traits so that the proof's decisions are unit-tested with
//! scripted fakes in milliseconds; the real implementations read `/proc` and open connections.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use relman_verify::Answer::{self, NoAnswer};
use relman_verify::Failure;

/// Where the app serves users: the host and port of `verify.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Endpoint {
    /// The host and port of a plain `http://` URL (port 80 when it names none).
    pub(crate) fn of_url(url: &str) -> Option<Endpoint> {
        let uri: ureq::http::Uri = url.parse().ok()?;
        Some(Endpoint {
            host: uri.host()?.trim_matches(['[', ']']).to_owned(),
            port: uri.port_u16().unwrap_or(80),
        })
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the proof asks about processes.
pub(crate) trait Processes {
    /// The resolved working directory of a process.
    fn cwd(&self, pid: u32) -> Option<PathBuf>;
    /// Whether the process serves the endpoint's port: it holds the listening socket, or a
    /// connection the cluster primary accepted on that port and handed to it.
    fn serves(&self, pid: u32, endpoint: &Endpoint) -> bool;
    /// `GET route` answered by that very process: sent on a connection the cluster primary
    /// handed to it. `None` when no connection reached it.
    fn ask(&self, pid: u32, endpoint: &Endpoint, route: &str, timeout: Duration) -> Option<Answer>;
}

/// The clock the proof waits on.
pub(crate) trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration);
}

/// This machine.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Host;

/// Connections opened per look at a worker that holds nothing on the port yet: more than the
/// workers of most clusters, so that one reaches the worker even when the others are free first.
const POKES: usize = 4;
/// How long a look waits for one of its connections to be handed to the worker. The cluster
/// primary accepts and hands over connections one at a time on its event loop; under heavy
/// load a new connection can wait in that queue for hundreds of milliseconds.
const POKE_WAIT: Duration = Duration::from_secs(1);
/// How often the worker's sockets are read during that wait.
const POKE_POLL: Duration = Duration::from_millis(10);

impl Processes for Host {
    fn cwd(&self, pid: u32) -> Option<PathBuf> {
        relman_sys::proc::cwd(pid)
    }

    fn serves(&self, pid: u32, endpoint: &Endpoint) -> bool {
        if relman_sys::proc::holds_port(pid, endpoint.port).unwrap_or(false) {
            return true;
        }
        held_connection(pid, endpoint).is_some()
    }

    fn ask(&self, pid: u32, endpoint: &Endpoint, route: &str, timeout: Duration) -> Option<Answer> {
        let stream = held_connection(pid, endpoint)?;
        Some(ask_on(stream, endpoint, route, timeout))
    }
}

/// A connection to the endpoint that the cluster primary handed to `pid`.
///
/// A worker that listens gets connections: the primary hands each accepted connection to the
/// next free worker. Real traffic comes and goes too fast to be seen (a request is answered in
/// a millisecond), so relman opens connections of its own and keeps them open, sending
/// nothing, until the worker holds one (its inode is among the worker's descriptors) or the
/// wait is over. The others are closed unused.
fn held_connection(pid: u32, endpoint: &Endpoint) -> Option<TcpStream> {
    let address = endpoint.addresses().into_iter().next()?;
    let pokes: Vec<(TcpStream, SocketAddr)> = (0..POKES)
        .filter_map(|_| {
            let stream = TcpStream::connect_timeout(&address, POKE_WAIT).ok()?;
            let local = stream.local_addr().ok()?;
            Some((stream, local))
        })
        .collect();
    if pokes.is_empty() {
        return None;
    }
    let peers: Vec<SocketAddr> = pokes.iter().map(|(_, local)| *local).collect();
    // The socket table can hold thousands of lines under load: it is read only until the
    // primary has accepted every poke (each then has an inode); from then on only the
    // worker's descriptors are read.
    let mut accepted: HashMap<u64, SocketAddr> = HashMap::new();
    let deadline = Instant::now() + POKE_WAIT;
    loop {
        if accepted.len() < peers.len() {
            accepted =
                relman_sys::proc::accepted_from(pid, endpoint.port, &peers).unwrap_or_default();
        }
        let held = relman_sys::proc::socket_inodes(pid).unwrap_or_default();
        if let Some(peer) = accepted
            .iter()
            .find_map(|(inode, peer)| held.contains(inode).then_some(*peer))
        {
            return pokes
                .into_iter()
                .find_map(|(stream, local)| (local == peer).then_some(stream));
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POKE_POLL);
    }
}

/// One `GET` on a connection, read up to the status line: which worker answers is fixed by
/// the connection, so a plain HTTP/1.1 request is all it takes.
fn ask_on(mut stream: TcpStream, endpoint: &Endpoint, route: &str, timeout: Duration) -> Answer {
    let failure = |error: std::io::Error| {
        NoAnswer(match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Failure::TimedOut {
                after_ms: timeout.as_millis(),
            },
            _ => Failure::Closed {
                detail: error.to_string(),
            },
        })
    };
    let request = format!(
        "GET {route} HTTP/1.1\r\nHost: {endpoint}\r\nUser-Agent: relman\r\nConnection: close\r\n\r\n"
    );
    if let Err(error) = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.write_all(request.as_bytes()))
    {
        return failure(error);
    }
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        match stream.read(&mut buffer) {
            Ok(0) => {
                return NoAnswer(Failure::Closed {
                    detail: "the connection closed before a status line".into(),
                });
            }
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return failure(error),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(status) => Answer::Status(status),
        None => NoAnswer(Failure::NotHttp {
            detail: line
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect(),
        }),
    }
}

impl Clock for Host {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn endpoints_come_from_urls() {
        let e = Endpoint::of_url("http://127.0.0.1:3000/api/health").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 3000));
        assert_eq!(Endpoint::of_url("http://localhost/").unwrap().port, 80);
        let v6 = Endpoint::of_url("http://[::1]:8080/h").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:8080");
        assert!(Endpoint::of_url("not a url").is_none());
    }

    #[test]
    fn a_process_that_accepts_on_the_port_serves_it() {
        // This test process listens and accepts: what a worker does with the connections the
        // primary hands it.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(Host.serves(std::process::id(), &endpoint));
        // Another process (pid 1) holds nothing on it.
        assert!(!Host.serves(1, &endpoint));
        drop(listener);
        assert!(!Host.serves(1, &endpoint), "refused: nobody serves it");
    }

    #[test]
    fn a_page_is_asked_of_the_process_that_holds_the_connection() {
        // This process plays the worker: it accepts, reads the request, answers 503.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = stream.read(&mut request).unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            request
        });
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let answer = Host.ask(
            std::process::id(),
            &endpoint,
            "/pricing",
            Duration::from_secs(2),
        );
        assert_eq!(answer, Some(Answer::Status(503)));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /pricing HTTP/1.1\r\n"),
            "{request}"
        );
    }
}
