//! A PM2 session: one Node process holding one connection to the PM2 daemon for a whole
//! activation (`session.js`, through PM2's own programmatic API), so that listing and
//! reloading cost a round trip to the daemon each instead of a fresh start of PM2's command
//! line (about 150 ms of Node start-up per command on a small machine).
//!
//! The Rust side keeps every decision: the session only lists and reloads, one request at a
//! time. Every request carries an id and its reply carries it back; a reply to an earlier
//! request (one that timed out) is dropped, never taken for the answer to a later one. A request
//! that gets no reply in time ends the session: what the daemon does with it is unknown, so the
//! caller fails that step cleanly and goes on through PM2's command line.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pm2::{Instance, Pm2, parse_processes};

const SCRIPT: &str = include_str!("session.js");

/// How often a wait for a reply checks that the daemon still runs.
const PEER_CHECK: Duration = Duration::from_millis(250);

/// What relman asks the session.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request<'a> {
    List,
    Reload {
        pm_id: u64,
        env: std::collections::BTreeMap<&'a str, &'a str>,
    },
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: u64,
    #[serde(flatten)]
    request: &'a Request<'a>,
}

/// What the session answers: exactly one of these besides the id.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Body {
    Error { error: String },
    List { list: serde_json::Value },
    Reloaded { reloaded: u64 },
    Ready { ready: bool },
}

#[derive(Debug, Deserialize)]
struct Reply {
    id: Option<u64>,
    #[serde(flatten)]
    body: Body,
}

/// Where the replies come from: the helper's stdout, line by line (a trait so that the matching
/// of replies to requests is tested without Node).
pub(crate) trait Transport {
    /// Sends one line.
    fn send(&mut self, line: &str) -> std::io::Result<()>;
    /// The next line, waiting at most `timeout`.
    fn receive(&mut self, timeout: Duration) -> Result<String, RecvTimeoutError>;
    /// Why no reply can come any more (the daemon at the other end died), if so; asked while
    /// a reply is awaited.
    fn peer_gone(&self) -> Option<String> {
        None
    }
}

/// The helper process and its pipes.
struct Helper {
    requests: std::io::PipeWriter,
    replies: Receiver<String>,
    /// Shared with the thread that reads its stdout, so it is killed explicitly on drop: the
    /// reader thread, blocked in `read`, keeps its handle alive otherwise (and the helper, still
    /// waiting for a dead daemon, would outlive relman).
    process: Arc<duct::ReaderHandle>,
    /// The PM2 daemon it talks to, when its `pm2.pid` named a running process at the start.
    daemon: Option<u32>,
}

impl Transport for Helper {
    fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.requests.write_all(line.as_bytes())?;
        self.requests.write_all(b"\n")
    }

    fn receive(&mut self, timeout: Duration) -> Result<String, RecvTimeoutError> {
        self.replies.recv_timeout(timeout)
    }

    fn peer_gone(&self) -> Option<String> {
        let pid = self.daemon?;
        relman_sys::proc::info(pid)
            .is_none()
            .then(|| format!("the PM2 daemon (pid {pid}) died while relman waited for its answer"))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Kills and reaps the helper (its stdout closes, so the reader thread ends too).
        let _ = self.process.kill();
    }
}

/// A running session; dropping it closes the connection and stops the helper.
pub(crate) struct Session {
    transport: Option<Box<dyn Transport + Send>>,
    next_id: u64,
    timeout: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("open", &self.transport.is_some())
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl Session {
    /// Starts the helper with the same clean environment as PM2's command line; `timeout`
    /// bounds every reply.
    pub(crate) fn start(pm2: &Pm2, timeout: Duration) -> Result<Session> {
        let package = pm2.package_dir()?;
        let (reader, requests) = std::io::pipe()
            .map_err(|err| Error::Pm2(format!("failed to create a pipe for PM2: {err}")))?;
        let process = duct::cmd(
            "node",
            [
                std::ffi::OsStr::new("-e"),
                std::ffi::OsStr::new(SCRIPT),
                package.as_os_str(),
            ],
        )
        .full_env(crate::pm2::clean_env())
        .before_spawn(crate::pm2::own_group)
        .stdin_file(reader)
        .stderr_null()
        .reader()
        .map_err(|err| Error::Pm2(format!("failed to start node for the PM2 session: {err}")))?;
        let process = Arc::new(process);
        let (sender, replies) = mpsc::channel();
        let source = Arc::clone(&process);
        std::thread::spawn(move || {
            for line in BufReader::new(&*source).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let helper = Helper {
            requests,
            replies,
            process,
            daemon: Pm2::daemon_pid(),
        };
        Session::over(Box::new(helper), timeout)
    }

    /// A session over any transport: waits for its greeting.
    pub(crate) fn over(transport: Box<dyn Transport + Send>, timeout: Duration) -> Result<Session> {
        let mut session = Session {
            transport: Some(transport),
            next_id: 1,
            timeout,
        };
        match session.await_reply(0)? {
            Body::Ready { ready: true } => Ok(session),
            Body::Error { error } => Err(Error::Pm2(error)),
            other => Err(Error::Pm2(format!(
                "the PM2 session greeted with {other:?}"
            ))),
        }
    }

    /// Whether the session still runs.
    pub(crate) fn is_open(&self) -> bool {
        self.transport.is_some()
    }

    /// Waits for the reply with `id`, dropping replies to earlier requests. A timeout or a
    /// vanished helper ends the session.
    fn await_reply(&mut self, id: u64) -> Result<Body> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some(transport) = self.transport.as_mut() else {
                return Err(Error::Pm2("the PM2 session has ended".into()));
            };
            let left = deadline.saturating_duration_since(Instant::now());
            // In slices, so that a daemon that died is noticed at once, not at the deadline.
            let line = match transport.receive(left.min(PEER_CHECK)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(why) = transport.peer_gone() {
                        self.transport = None;
                        return Err(Error::Pm2(format!("{why}; the session to it is closed")));
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.transport = None;
                    return Err(Error::Pm2(format!(
                        "PM2 did not answer within {} s; the session to its daemon is closed",
                        self.timeout.as_secs()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.transport = None;
                    return Err(Error::Pm2("the PM2 session ended unexpectedly".into()));
                }
            };
            let reply: Reply = match serde_json::from_str(&line) {
                Ok(reply) => reply,
                Err(err) => {
                    self.transport = None;
                    return Err(Error::Pm2(format!(
                        "the PM2 session said something relman cannot read ({err}): {}",
                        crate::pm2::snippet(&line)
                    )));
                }
            };
            match reply.id {
                Some(got) if got == id => return Ok(reply.body),
                // A late reply to a request that already timed out: not this one's answer.
                Some(got) if got < id => continue,
                other => {
                    self.transport = None;
                    return Err(Error::Pm2(format!(
                        "the PM2 session answered request {other:?} while relman waited for {id}"
                    )));
                }
            }
        }
    }

    fn request(&mut self, request: &Request<'_>) -> Result<Body> {
        let id = self.next_id;
        self.next_id += 1;
        let line =
            serde_json::to_string(&Envelope { id, request }).expect("a request always serialises");
        let Some(transport) = self.transport.as_mut() else {
            return Err(Error::Pm2("the PM2 session has ended".into()));
        };
        if let Err(err) = transport.send(&line) {
            self.transport = None;
            return Err(Error::Pm2(format!("the PM2 session is gone: {err}")));
        }
        self.await_reply(id)
    }

    /// Every process PM2 manages, as `pm2 jlist` would show them.
    pub(crate) fn list(&mut self) -> Result<Vec<Instance>> {
        match self.request(&Request::List)? {
            Body::List { list } => parse_processes(list).map_err(|err| {
                Error::Pm2(format!(
                    "PM2's process list is not what relman expects: {err}"
                ))
            }),
            Body::Error { error } => Err(Error::Pm2(format!(
                "PM2 could not list its processes: {error}"
            ))),
            other => Err(self.unexpected("list", &other)),
        }
    }

    /// `pm2 reload PM_ID --update-env` with `env` added to the session's clean environment.
    pub(crate) fn reload(&mut self, pm_id: u64, env: &[(&str, &str)]) -> Result<()> {
        let request = Request::Reload {
            pm_id,
            env: env.iter().copied().collect(),
        };
        match self.request(&request)? {
            Body::Reloaded { reloaded } if reloaded == pm_id => Ok(()),
            Body::Error { error } => Err(Error::Pm2(format!(
                "PM2 could not reload worker {pm_id}: {error}"
            ))),
            other => Err(self.unexpected("reload", &other)),
        }
    }

    fn unexpected(&mut self, op: &str, body: &Body) -> Error {
        self.transport = None;
        Error::Pm2(format!(
            "the PM2 session answered a {op} request with {body:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Replies scripted per request: the sent lines are recorded, and each `receive` pops the
    /// next scripted line (or times out when none is left).
    struct Scripted {
        sent: Arc<Mutex<Vec<String>>>,
        replies: VecDeque<String>,
        gone: bool,
    }

    impl Transport for Scripted {
        fn send(&mut self, line: &str) -> std::io::Result<()> {
            self.sent.lock().unwrap().push(line.to_owned());
            Ok(())
        }

        fn receive(&mut self, timeout: Duration) -> Result<String, RecvTimeoutError> {
            self.replies.pop_front().ok_or_else(|| {
                std::thread::sleep(timeout);
                RecvTimeoutError::Timeout
            })
        }

        fn peer_gone(&self) -> Option<String> {
            self.gone.then(|| "the PM2 daemon (pid 42) died".to_owned())
        }
    }

    fn open(replies: &[&str]) -> (Session, Arc<Mutex<Vec<String>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut lines: VecDeque<String> = replies.iter().map(|s| (*s).to_owned()).collect();
        lines.push_front(r#"{"id":0,"ready":true}"#.to_owned());
        let transport = Scripted {
            sent: Arc::clone(&sent),
            replies: lines,
            gone: false,
        };
        let session = Session::over(Box::new(transport), Duration::from_millis(50)).unwrap();
        (session, sent)
    }

    const LIST: &str = r#"{"id":1,"list":[{"pm_id":0,"name":"web","pid":10,"pm2_env":{"status":"online","exec_mode":"cluster_mode"}}]}"#;

    #[test]
    fn requests_carry_ids_and_replies_are_typed() {
        let (mut session, sent) = open(&[LIST, r#"{"id":2,"reloaded":0}"#]);
        assert_eq!(session.list().unwrap()[0].pid, 10);
        session.reload(0, &[("RELMAN_RELEASE", "b")]).unwrap();
        let sent = sent.lock().unwrap();
        assert_eq!(sent[0], r#"{"id":1,"op":"list"}"#);
        assert_eq!(
            sent[1],
            r#"{"id":2,"op":"reload","pm_id":0,"env":{"RELMAN_RELEASE":"b"}}"#
        );
    }

    #[test]
    fn a_late_reply_is_never_the_answer_to_the_next_request() {
        // The reload times out; its late "reloaded" must not answer anything later. The
        // session is closed by the timeout, so the next request fails instead of reading it.
        let (mut session, _) = open(&[]);
        let err = session.reload(0, &[]).unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert!(!session.is_open());
        let err = session.list().unwrap_err();
        assert!(err.to_string().contains("ended"), "{err}");
    }

    #[test]
    fn replies_to_earlier_requests_are_skipped() {
        // A reply with an older id arriving first (a request answered twice, or after its
        // timeout in a transport that kept the session) is dropped.
        let (mut session, _) = open(&[r#"{"id":0,"reloaded":3}"#, LIST]);
        assert_eq!(session.list().unwrap().len(), 1);
    }

    #[test]
    fn a_reply_for_the_wrong_request_or_of_the_wrong_kind_ends_the_session() {
        let (mut session, _) = open(&[r#"{"id":1,"reloaded":0}"#]);
        let err = session.list().unwrap_err();
        assert!(err.to_string().contains("list request"), "{err}");
        assert!(!session.is_open());

        let (mut session, _) = open(&[r#"{"id":7,"list":[]}"#]);
        let err = session.list().unwrap_err();
        assert!(err.to_string().contains("waited for 1"), "{err}");

        let (mut session, _) = open(&[r#"{"id":1,"reloaded":5}"#]);
        assert!(
            session.reload(0, &[]).is_err(),
            "a reload of another worker"
        );

        let (mut session, _) = open(&["not json"]);
        assert!(
            session
                .list()
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }

    #[test]
    fn pm2_errors_are_reported_and_keep_the_session() {
        let (mut session, _) = open(&[r#"{"id":1,"error":"Reload already in progress"}"#, LIST]);
        let err = session.reload(0, &[]).unwrap_err();
        assert!(err.to_string().contains("already in progress"), "{err}");
        assert!(session.is_open());
        // id 2's reply: LIST carries id 1, an earlier one, so it is skipped and the scripted
        // transport then times out.
        assert!(session.list().is_err());
    }

    #[test]
    fn a_failed_greeting_is_an_error() {
        let transport = Scripted {
            sent: Arc::default(),
            replies: VecDeque::from([
                r#"{"id":0,"error":"cannot connect to the PM2 daemon"}"#.to_owned()
            ]),
            gone: false,
        };
        let err = Session::over(Box::new(transport), Duration::from_millis(10)).unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }

    #[test]
    fn a_daemon_that_died_ends_the_wait_at_once_not_at_the_deadline() {
        let transport = Scripted {
            sent: Arc::default(),
            replies: VecDeque::from([r#"{"id":0,"ready":true}"#.to_owned()]),
            gone: true,
        };
        let mut session = Session::over(Box::new(transport), Duration::from_secs(60)).unwrap();
        let started = Instant::now();
        let err = session.reload(0, &[]).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert_eq!(
            err.to_string(),
            "the PM2 daemon (pid 42) died; the session to it is closed"
        );
        assert!(!session.is_open());
    }
}
