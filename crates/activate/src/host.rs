//! The host as the worker proof sees it: processes (where one runs, whether it serves the app's
//! port) and the clock. Both are traits so that the proof's decisions are unit-tested with
//! scripted fakes in milliseconds; the real implementations read `/proc` and open connections.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
}

/// The clock the proof waits on.
pub(crate) trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration);
}

/// This machine.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Host;

/// Connections opened per look at a worker that holds nothing on the port yet.
const POKES: usize = 3;
/// How long a poke waits to be handed to a worker (the primary accepts it and passes the
/// socket over IPC, which takes about a millisecond on an idle machine).
const POKE_WAIT: Duration = Duration::from_millis(100);

impl Processes for Host {
    fn cwd(&self, pid: u32) -> Option<PathBuf> {
        relman_sys::proc::cwd(pid)
    }

    fn serves(&self, pid: u32, endpoint: &Endpoint) -> bool {
        let holds = || relman_sys::proc::holds_port(pid, endpoint.port).unwrap_or(false);
        if holds() {
            return true;
        }
        // A worker that listens gets connections: the cluster primary hands each accepted
        // connection to the next free worker in turn. With no traffic, relman makes some.
        let Some(address) = endpoint.addresses().into_iter().next() else {
            return false;
        };
        for _ in 0..POKES {
            let Ok(stream) = TcpStream::connect_timeout(&address, POKE_WAIT) else {
                return false;
            };
            let deadline = Instant::now() + POKE_WAIT;
            while Instant::now() < deadline {
                if holds() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(stream);
        }
        holds()
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
}
