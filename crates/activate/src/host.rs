//! The host as the worker proof sees it: processes (where one runs, whether it serves the app's
//! port) and the clock. Both are traits so that the proof's decisions are unit-tested with
//! scripted fakes in milliseconds; the real implementations read `/proc` and open connections.

use std::collections::{HashMap, VecDeque};
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
    /// `GET target` (a path and query) answered by that very process: sent on a connection the
    /// cluster primary handed to it. `None` when no connection reached it.
    fn ask(&self, pid: u32, endpoint: &Endpoint, target: &str, timeout: Duration) -> Option<Reply>;
}

/// A whole HTTP response (its status and up to 1 MiB of it), or why there was none.
pub(crate) type Reply = Result<Response, Failure>;

/// A whole HTTP response, as one worker gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The raw response, head included.
    pub(crate) bytes: Vec<u8>,
}

impl Response {
    /// The answer of a page: its status, and whether it is Next.js's error document.
    pub(crate) fn answer(reply: &Reply) -> Answer {
        match reply {
            Ok(response) => Answer::of_response(response.status, &response.bytes),
            Err(failure) => NoAnswer(failure.clone()),
        }
    }
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
/// How long one look of the proof waits for a connection to be handed to the worker (the look
/// is repeated until the proof's own deadline). The cluster primary accepts and hands over
/// connections one at a time on its event loop; under heavy load a new connection can wait in
/// that queue for hundreds of milliseconds.
const POKE_WAIT: Duration = Duration::from_secs(1);
/// How long relman tries to reach one worker to ask it for a page.
const ASK_PATIENCE: Duration = Duration::from_secs(10);
/// A new round of connections this often while none reached the worker.
const POKE_ROUND: Duration = Duration::from_millis(250);
/// At most this many of relman's connections are open at once.
const MAX_POKES: usize = 16;
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
        held_connection(pid, endpoint, POKE_WAIT).is_some()
    }

    fn ask(&self, pid: u32, endpoint: &Endpoint, target: &str, timeout: Duration) -> Option<Reply> {
        let stream = held_connection(pid, endpoint, ASK_PATIENCE)?;
        Some(ask_on(stream, endpoint, target, timeout))
    }
}

/// A connection to the endpoint that the cluster primary handed to `pid`, or `None` after
/// `patience`.
///
/// A worker that listens gets connections: the primary hands each accepted connection to the
/// next free worker. Real traffic comes and goes too fast to be seen (a request is answered in
/// a millisecond), so relman opens connections of its own and keeps them open, sending
/// nothing, until the worker holds one (its inode is among the worker's descriptors). Under
/// load a busy worker is skipped while it is busy, so connections keep being opened, a few at
/// a time, the oldest closed once there are many.
fn held_connection(pid: u32, endpoint: &Endpoint, patience: Duration) -> Option<TcpStream> {
    let address = endpoint.addresses().into_iter().next()?;
    let deadline = Instant::now() + patience;
    let mut pokes: VecDeque<(TcpStream, SocketAddr)> = VecDeque::new();
    let mut accepted: HashMap<u64, SocketAddr> = HashMap::new();
    let mut next_round = Instant::now();
    loop {
        if Instant::now() >= next_round {
            while pokes.len() + POKES > MAX_POKES {
                pokes.pop_front();
            }
            for _ in 0..POKES {
                let Ok(stream) = TcpStream::connect_timeout(&address, POKE_WAIT) else {
                    break;
                };
                if let Ok(local) = stream.local_addr() {
                    pokes.push_back((stream, local));
                }
            }
            if pokes.is_empty() {
                return None;
            }
            next_round = Instant::now() + POKE_ROUND;
        }
        let peers: Vec<SocketAddr> = pokes.iter().map(|(_, local)| *local).collect();
        // The socket table can hold thousands of lines under load: it is read only while some
        // poke has not been accepted by the primary yet (it has no inode until then).
        if accepted.len() < peers.len() || accepted.values().any(|p| !peers.contains(p)) {
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

/// One `GET` on a connection, read to its end: which worker answers is fixed by the
/// connection, so a plain HTTP/1.1 request is all it takes.
fn ask_on(mut stream: TcpStream, endpoint: &Endpoint, target: &str, timeout: Duration) -> Reply {
    let failure = |error: std::io::Error| {
        Err(match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Failure::TimedOut {
                after_ms: timeout.as_millis(),
            },
            _ => Failure::Closed {
                detail: error.to_string(),
            },
        })
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {endpoint}\r\nUser-Agent: relman\r\nConnection: close\r\n\r\n"
    );
    if let Err(error) = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.write_all(request.as_bytes()))
    {
        return failure(error);
    }
    // `Connection: close`: the whole response is what comes before the end of the stream.
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buffer[..n]);
                if response.len() > MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return failure(error),
        }
    }
    let line_end = response
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(response.len());
    let line = String::from_utf8_lossy(&response[..line_end]);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(status) => Ok(Response {
            status,
            bytes: response,
        }),
        None if response.is_empty() => Err(Failure::Closed {
            detail: "the connection closed without a response".into(),
        }),
        None => Err(Failure::NotHttp {
            detail: line.chars().take(80).collect(),
        }),
    }
}

/// How much of a page is read to look for an error document.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

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
        let reply = Host
            .ask(
                std::process::id(),
                &endpoint,
                "/pricing",
                Duration::from_secs(2),
            )
            .unwrap();
        assert_eq!(reply.as_ref().unwrap().status, 503);
        assert_eq!(Response::answer(&reply), Answer::Status(503));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /pricing HTTP/1.1\r\n"),
            "{request}"
        );
    }
}
