//! A PM2 session: one Node process holding one connection to the PM2 daemon for a whole
//! activation (`session.js`, through PM2's own programmatic API), so that listing and
//! reloading cost a round trip to the daemon each instead of a fresh start of PM2's command
//! line (about 150 ms of Node start-up per command on a small machine).
//!
//! The Rust side keeps every decision: the session only lists and reloads, one request at a
//! time, and each reply is bounded by a timeout.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::pm2::{Instance, Pm2, parse_jlist};

const SCRIPT: &str = include_str!("session.js");

/// A running session; dropping it closes the connection and stops the helper.
#[derive(Debug)]
pub(crate) struct Session {
    requests: std::io::PipeWriter,
    replies: Receiver<String>,
    _helper: Arc<duct::ReaderHandle>,
}

impl Session {
    /// Starts the helper with the same clean environment as PM2's command line.
    pub(crate) fn start(pm2: &Pm2, timeout: Duration) -> Result<Session> {
        let package = pm2.package_dir()?;
        let (reader, requests) = std::io::pipe()
            .map_err(|err| Error::Pm2(format!("failed to create a pipe for PM2: {err}")))?;
        let helper = duct::cmd(
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
        let helper = Arc::new(helper);
        let (sender, replies) = mpsc::channel();
        let source = Arc::clone(&helper);
        std::thread::spawn(move || {
            for line in BufReader::new(&*source).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Session {
            requests,
            replies,
            _helper: helper,
        };
        let hello = session.receive(timeout)?;
        let hello: serde_json::Value = serde_json::from_str(&hello)
            .map_err(|_| Error::Pm2(format!("the PM2 session said `{hello}`")))?;
        match hello.get("error").and_then(|e| e.as_str()) {
            Some(error) => Err(Error::Pm2(error.to_owned())),
            None => Ok(session),
        }
    }

    fn receive(&mut self, timeout: Duration) -> Result<String> {
        self.replies.recv_timeout(timeout).map_err(|err| match err {
            RecvTimeoutError::Timeout => {
                Error::Pm2(format!("PM2 did not answer within {} s", timeout.as_secs()))
            }
            RecvTimeoutError::Disconnected => {
                Error::Pm2("the PM2 session ended unexpectedly".into())
            }
        })
    }

    fn request(&mut self, request: &serde_json::Value, timeout: Duration) -> Result<String> {
        let mut line = request.to_string();
        line.push('\n');
        self.requests
            .write_all(line.as_bytes())
            .map_err(|err| Error::Pm2(format!("the PM2 session is gone: {err}")))?;
        self.receive(timeout)
    }

    /// Every process PM2 manages, as `pm2 jlist` would show them.
    pub(crate) fn list(&mut self, timeout: Duration) -> Result<Vec<Instance>> {
        let reply = self.request(&serde_json::json!({ "op": "list" }), timeout)?;
        if let Some(error) = error_of(&reply) {
            return Err(Error::Pm2(format!(
                "PM2 could not list its processes: {error}"
            )));
        }
        parse_jlist(&reply)
    }

    /// `pm2 reload PM_ID --update-env` with `env` added to the session's clean environment.
    pub(crate) fn reload(
        &mut self,
        pm_id: u64,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<()> {
        let env: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let reply = self.request(
            &serde_json::json!({ "op": "reload", "id": pm_id.to_string(), "env": env }),
            timeout,
        )?;
        match error_of(&reply) {
            Some(error) => Err(Error::Pm2(format!(
                "PM2 could not reload worker {pm_id}: {error}"
            ))),
            None => Ok(()),
        }
    }
}

fn error_of(reply: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(reply).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}
