//! PM2 as relman sees it: [`Instance`]s read from its process list, and the two things relman
//! asks of it (list, reload) behind [`Pm2Control`], implemented by the command line ([`Pm2`])
//! and by a session to the daemon (`session.rs`).
//!
//! Nothing PM2 says is trusted blindly: its list is parsed strictly, and a reload's success
//! proves nothing (it is reported even when every new worker crashed, or never listened and
//! PM2 gave up waiting at `listen_timeout`), so callers read the instances back and prove them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// PM2's status of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pm2State {
    /// Running (forked; not necessarily listening yet).
    #[serde(rename = "online")]
    Online,
    /// Being started.
    #[serde(rename = "launching")]
    Launching,
    /// Being stopped.
    #[serde(rename = "stopping")]
    Stopping,
    /// Stopped by an operator.
    #[serde(rename = "stopped")]
    Stopped,
    /// Given up on after too many crashes.
    #[serde(rename = "errored")]
    Errored,
    /// Crashed; PM2 restarts it after a delay.
    #[serde(rename = "waiting restart")]
    WaitingRestart,
    /// Ran once and exited (`autorestart: false`).
    #[serde(rename = "one-launch-status")]
    OneLaunch,
    /// A status this version of relman does not know.
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl Pm2State {
    /// PM2's own word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Pm2State::Online => "online",
            Pm2State::Launching => "launching",
            Pm2State::Stopping => "stopping",
            Pm2State::Stopped => "stopped",
            Pm2State::Errored => "errored",
            Pm2State::WaitingRestart => "waiting restart",
            Pm2State::OneLaunch => "one-launch-status",
            Pm2State::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Pm2State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How PM2 runs an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecMode {
    /// Node's cluster module: the daemon holds the port, a reload replaces workers one by one.
    #[serde(rename = "cluster_mode")]
    Cluster,
    /// One plain process: a reload is a restart.
    #[serde(rename = "fork_mode")]
    Fork,
    /// Anything else.
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl std::fmt::Display for ExecMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecMode::Cluster => "cluster_mode",
            ExecMode::Fork => "fork_mode",
            ExecMode::Unknown => "an unknown exec mode",
        })
    }
}

/// PM2's default `listen_timeout` in ms: how long a reload waits for a new worker to listen
/// (or send `ready`) before it stops the old one anyway.
pub const DEFAULT_LISTEN_TIMEOUT_MS: u64 = 3000;

/// One PM2 instance, as PM2's process list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// PM2's id of this instance.
    pub pm_id: u64,
    /// The app name.
    pub name: String,
    /// The OS pid (0 when not running).
    pub pid: u32,
    /// PM2's status.
    pub status: Pm2State,
    /// How many times PM2 restarted it.
    pub restarts: u64,
    /// The working directory PM2 starts it in (`pm_cwd`).
    pub pm_cwd: Option<String>,
    /// How PM2 runs it.
    pub exec_mode: ExecMode,
    /// PM2's `kill_timeout` in ms, if set.
    pub kill_timeout: Option<u64>,
    /// PM2's `listen_timeout` in ms, if set.
    pub listen_timeout: Option<u64>,
    /// Whether PM2 waits for a `ready` message instead of the listen.
    pub wait_ready: bool,
    /// The script PM2 runs (`pm_exec_path`).
    pub script: Option<String>,
    /// The Node.js version PM2 runs it with, without the `v`.
    pub node_version: Option<String>,
    /// Whether the app's environment sets `NEXT_SERVER_ACTIONS_ENCRYPTION_KEY`.
    pub actions_key: bool,
}

impl Instance {
    /// How long PM2 waits for a reloaded worker to listen.
    pub fn listen_timeout(&self) -> Duration {
        Duration::from_millis(self.listen_timeout.unwrap_or(DEFAULT_LISTEN_TIMEOUT_MS))
    }
}

#[derive(Deserialize)]
struct RawProcess {
    pm_id: serde_json::Value,
    name: String,
    #[serde(default)]
    pid: Option<u32>,
    pm2_env: RawEnv,
}

#[derive(Deserialize)]
struct RawEnv {
    status: Pm2State,
    #[serde(default)]
    restart_time: Option<u64>,
    #[serde(default)]
    pm_cwd: Option<String>,
    #[serde(default)]
    exec_mode: Option<ExecMode>,
    #[serde(default, deserialize_with = "lenient_number")]
    kill_timeout: Option<u64>,
    #[serde(default, deserialize_with = "lenient_number")]
    listen_timeout: Option<u64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    wait_ready: bool,
    #[serde(default)]
    pm_exec_path: Option<String>,
    #[serde(default)]
    node_version: Option<String>,
    #[serde(default, rename = "NEXT_SERVER_ACTIONS_ENCRYPTION_KEY")]
    actions_key: Option<serde_json::Value>,
}

/// A number PM2 may hold as a string when it came from its command line (`--listen-timeout`).
fn lenient_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s == "true",
        _ => false,
    })
}

/// Turns PM2's process list (as JSON) into instances. Entries whose `pm_id` is not a number
/// are the outgoing workers of a reload in progress (`_old_3`): they are no instance of the
/// app and are left out.
pub(crate) fn parse_processes(value: serde_json::Value) -> Result<Vec<Instance>, String> {
    let raw: Vec<RawProcess> = serde_json::from_value(value).map_err(|err| err.to_string())?;
    Ok(raw
        .into_iter()
        .filter_map(|p| {
            let pm_id = p.pm_id.as_u64()?;
            Some(Instance {
                pm_id,
                name: p.name,
                pid: p.pid.unwrap_or(0),
                status: p.pm2_env.status,
                restarts: p.pm2_env.restart_time.unwrap_or(0),
                pm_cwd: p.pm2_env.pm_cwd,
                exec_mode: p.pm2_env.exec_mode.unwrap_or(ExecMode::Unknown),
                kill_timeout: p.pm2_env.kill_timeout,
                listen_timeout: p.pm2_env.listen_timeout,
                wait_ready: p.pm2_env.wait_ready,
                script: p.pm2_env.pm_exec_path,
                node_version: p.pm2_env.node_version,
                actions_key: p
                    .pm2_env
                    .actions_key
                    .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())),
            })
        })
        .collect())
}

/// Parses `pm2 jlist` output. PM2 can print notices before the JSON, so parsing starts at the
/// first line that opens an array.
pub fn parse_jlist(text: &str) -> Result<Vec<Instance>> {
    let start = text
        .match_indices('[')
        .map(|(i, _)| i)
        .find(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
        .ok_or_else(|| {
            Error::Pm2(format!(
                "`pm2 jlist` printed no JSON list: {}",
                snippet(text)
            ))
        })?;
    let value: serde_json::Value =
        serde_json::from_str(text[start..].trim_end()).map_err(|err| {
            Error::Pm2(format!(
                "`pm2 jlist` printed JSON relman cannot read ({err}): {}",
                snippet(&text[start..])
            ))
        })?;
    parse_processes(value).map_err(|err| {
        Error::Pm2(format!(
            "`pm2 jlist` printed JSON relman cannot read ({err}): {}",
            snippet(&text[start..])
        ))
    })
}

pub(crate) fn snippet(text: &str) -> String {
    let flat = without_colours(text.trim()).replace('\n', " ");
    match flat.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// PM2's command line colours its messages; in relman's one-line errors the escapes are noise.
fn without_colours(text: &str) -> String {
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // A CSI sequence ends with a byte in `@`..=`~`.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            clean.push(c);
        }
    }
    clean
}

/// What relman asks of PM2 during a roll. The command line and the session both answer it;
/// the worker proof is written against it, and unit-tested with a scripted fake.
pub(crate) trait Pm2Control {
    /// Every process PM2 manages.
    fn list(&mut self) -> Result<Vec<Instance>>;
    /// `pm2 reload PM_ID --update-env` with `env` added to a clean environment. Returns when
    /// PM2 says the reload is done, which proves nothing about the new worker.
    fn reload(&mut self, pm_id: u64, env: &[(&str, &str)]) -> Result<()>;
    /// `pm2 reload ECOSYSTEM --only APP --update-env`: every instance at once.
    fn reload_ecosystem(&mut self, ecosystem: &str, app: &str, env: &[(&str, &str)]) -> Result<()>;
    /// `pm2 start ECOSYSTEM --only APP --update-env`: the app's first start (PM2 launches its
    /// daemon when none runs).
    fn start_ecosystem(&mut self, ecosystem: &str, app: &str, env: &[(&str, &str)]) -> Result<()>;
}

/// The variables a reload passes on from relman's environment: what PM2 and Node need to run,
/// nothing an app could mistake for its own configuration.
const PASSED_TO_PM2: [&str; 6] = ["PATH", "HOME", "PM2_HOME", "USER", "LANG", "TZ"];

/// relman's environment cut down to [`PASSED_TO_PM2`].
pub(crate) fn clean_env() -> HashMap<OsString, OsString> {
    std::env::vars_os()
        .filter(|(key, _)| key.to_str().is_some_and(|k| PASSED_TO_PM2.contains(&k)))
        .collect()
}

/// PM2's command line.
#[derive(Debug, Clone)]
pub struct Pm2 {
    bin: String,
}

impl Pm2 {
    /// PM2 through the executable `bin` (a name on `PATH` or a path).
    pub fn new(bin: &str) -> Pm2 {
        Pm2 {
            bin: bin.to_owned(),
        }
    }

    /// `$PM2_HOME`, else `~/.pm2`.
    pub fn home() -> PathBuf {
        std::env::var_os("PM2_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pm2")))
            .unwrap_or_else(|| PathBuf::from(".pm2"))
    }

    /// The pid of the daemon of [`Pm2::home`], from its `pm2.pid`, if that process runs.
    pub fn daemon_pid() -> Option<u32> {
        let text = std::fs::read_to_string(Pm2::home().join("pm2.pid")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        relman_sys::proc::info(pid).map(|_| pid)
    }

    /// Checks the daemon is up without starting one (any `pm2` command would start a fresh,
    /// empty daemon, which then reports the app as unknown).
    pub fn check_daemon(&self) -> Result<()> {
        let socket = Pm2::home().join("rpc.sock");
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(_) => Ok(()),
            Err(err) => Err(Error::Pm2(format!(
                "the PM2 daemon is not running (no answer on `{}`: {err}); start the app with `pm2 start`, or set PM2_HOME to the daemon's home",
                socket.display()
            ))),
        }
    }

    /// Runs a PM2 command that changes apps. `--update-env` hands the caller's whole
    /// environment to the app, overriding its ecosystem `env`, so such commands get only what
    /// PM2 itself needs plus `env`: an operator's exported `PORT` must not move the app.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        let mut clean = clean_env();
        for (key, value) in env {
            clean.insert((*key).into(), (*value).into());
        }
        let expression = duct::cmd(&self.bin, args)
            .full_env(clean)
            .before_spawn(own_group)
            .stdin_null()
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked();
        let output = expression
            .run()
            .map_err(|err| self.spawn_error(args, &err))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(text)
        } else {
            Err(Error::Pm2(format!(
                "`{} {}` failed ({}): {}",
                self.bin,
                args.join(" "),
                output.status,
                snippet(&text)
            )))
        }
    }

    /// PM2's version, read from the `package.json` beside its executable. Running
    /// `pm2 --version` would start a daemon when none runs, which a check must never do.
    pub fn version(&self) -> Result<String> {
        let dir = self.package_dir()?;
        let text =
            std::fs::read_to_string(dir.join("package.json")).map_err(|_| self.not_found())?;
        let package: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| self.not_found())?;
        package["version"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.not_found())
    }

    /// The directory of the `pm2` npm package that `bin` belongs to.
    pub(crate) fn package_dir(&self) -> Result<PathBuf> {
        let bin = if self.bin.contains('/') {
            PathBuf::from(&self.bin)
        } else {
            std::env::var_os("PATH")
                .and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|dir| dir.join(&self.bin))
                        .find(|candidate| candidate.is_file())
                })
                .ok_or_else(|| self.not_found())?
        };
        let real = std::fs::canonicalize(&bin).map_err(|_| self.not_found())?;
        real.ancestors()
            .skip(1)
            .take(4)
            .find(|dir| {
                std::fs::read_to_string(dir.join("package.json"))
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .is_some_and(|package| package["name"] == "pm2")
            })
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                Error::Pm2(format!(
                    "`{}` is not PM2 (no pm2 package.json beside `{}`)",
                    self.bin,
                    real.display()
                ))
            })
    }

    fn spawn_error(&self, args: &[&str], err: &std::io::Error) -> Error {
        if err.kind() == std::io::ErrorKind::NotFound {
            self.not_found()
        } else {
            Error::Pm2(format!(
                "failed to run `{} {}`: {err}",
                self.bin,
                args.join(" ")
            ))
        }
    }

    fn not_found(&self) -> Error {
        Error::Pm2(format!(
            "PM2 not found (`pm2.bin` = \"{}\"): install it (`npm install -g pm2`) or set `pm2.bin` in relman.toml",
            self.bin
        ))
    }

    /// Every process PM2 manages.
    pub fn list(&self) -> Result<Vec<Instance>> {
        // jlist writes JSON on stdout only; stderr is kept apart so notices cannot corrupt it.
        let output = duct::cmd(&self.bin, ["jlist"])
            .before_spawn(own_group)
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|err| self.spawn_error(&["jlist"], &err))?;
        if !output.status.success() {
            return Err(Error::Pm2(format!(
                "`{} jlist` failed ({}): {}",
                self.bin,
                output.status,
                snippet(&String::from_utf8_lossy(&output.stderr))
            )));
        }
        parse_jlist(&String::from_utf8_lossy(&output.stdout))
    }

    /// The instances of one app, in `jlist` order.
    pub fn instances(&self, app: &str) -> Result<Vec<Instance>> {
        Ok(self.list()?.into_iter().filter(|i| i.name == app).collect())
    }
}

impl Pm2Control for Pm2 {
    fn list(&mut self) -> Result<Vec<Instance>> {
        Pm2::list(self)
    }

    fn reload(&mut self, pm_id: u64, env: &[(&str, &str)]) -> Result<()> {
        self.run(&["reload", &pm_id.to_string(), "--update-env"], env)
            .map(drop)
    }

    fn reload_ecosystem(&mut self, ecosystem: &str, app: &str, env: &[(&str, &str)]) -> Result<()> {
        self.run(&["reload", ecosystem, "--update-env", "--only", app], env)
            .map(drop)
    }

    fn start_ecosystem(&mut self, ecosystem: &str, app: &str, env: &[(&str, &str)]) -> Result<()> {
        self.run(&["start", ecosystem, "--only", app, "--update-env"], env)
            .map(drop)
    }
}

/// Puts a PM2 command in its own process group: a Ctrl-C at the terminal reaches the whole
/// foreground group, and must reach relman (which decides what is safe), not kill a
/// `pm2 reload` half-way and make a healthy worker look failed.
pub(crate) fn own_group(command: &mut std::process::Command) -> std::io::Result<()> {
    relman_sys::process::in_own_group(command);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[{"pid":4242,"name":"web","pm_id":0,"monit":{"memory":1,"cpu":0},"pm2_env":{"status":"online","restart_time":3,"pm_cwd":"/srv/web/current","exec_mode":"cluster_mode","kill_timeout":10000,"listen_timeout":"8000","instances":2}},{"pid":0,"name":"web","pm_id":1,"pm2_env":{"status":"errored","restart_time":16,"pm_cwd":"/srv/web/current","exec_mode":"cluster_mode","wait_ready":true}},{"pid":7,"name":"other","pm_id":2,"pm2_env":{"status":"waiting restart","exec_mode":"fork_mode"}},{"pid":8,"name":"web","pm_id":"_old_0","pm2_env":{"status":"online","exec_mode":"cluster_mode"}}]"#;

    #[test]
    fn parses_jlist() {
        let list = parse_jlist(SAMPLE).unwrap();
        assert_eq!(list.len(), 3, "the outgoing `_old_0` worker is no instance");
        assert_eq!(list[0].pid, 4242);
        assert_eq!(list[0].pm_cwd.as_deref(), Some("/srv/web/current"));
        assert_eq!(list[0].kill_timeout, Some(10000));
        assert_eq!(list[0].listen_timeout(), Duration::from_millis(8000));
        assert!(!list[0].wait_ready);
        assert_eq!(list[1].status, Pm2State::Errored);
        assert_eq!(list[1].listen_timeout(), Duration::from_millis(3000));
        assert!(list[1].wait_ready);
        assert_eq!(list[2].exec_mode, ExecMode::Fork);
        assert_eq!(list[2].status, Pm2State::WaitingRestart);
    }

    #[test]
    fn unknown_states_and_modes_are_kept_apart() {
        let text = r#"[{"pid":1,"name":"a","pm_id":0,"pm2_env":{"status":"hibernating","exec_mode":"wasm"}}]"#;
        let list = parse_jlist(text).unwrap();
        assert_eq!(list[0].status, Pm2State::Unknown);
        assert_eq!(list[0].exec_mode, ExecMode::Unknown);
    }

    #[test]
    fn skips_notices_before_the_json() {
        let text = format!(">>>> In-memory PM2 is out-of-date, do:\n>>>> $ pm2 update\n{SAMPLE}\n");
        assert_eq!(parse_jlist(&text).unwrap().len(), 3);
        assert_eq!(parse_jlist("[]\n").unwrap().len(), 0);
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "not json", "[{\"pm_id\":\"x\"}]", "{\"a\":1}", "[1,2"] {
            let err = parse_jlist(text).unwrap_err();
            assert!(err.to_string().contains("jlist"), "{text}: {err}");
        }
    }

    #[test]
    fn colours_are_left_out_of_messages() {
        assert_eq!(
            snippet("\u{1b}[31m[PM2][ERROR] \u{1b}[39mFile x not found"),
            "[PM2][ERROR] File x not found"
        );
    }

    #[test]
    fn missing_binary_is_named() {
        let err = Pm2::new("/nonexistent/pm2").list().unwrap_err();
        assert!(err.to_string().contains("PM2 not found"), "{err}");
    }

    #[test]
    fn failing_binary_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("pm2");
        std::fs::write(&fake, "#!/bin/sh\necho '{\"not\": \"a list\"}'\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = Pm2::new(fake.to_str().unwrap()).list().unwrap_err();
        assert!(err.to_string().contains("no JSON list"), "{err}");

        std::fs::write(&fake, "#!/bin/sh\necho boom >&2\nexit 3\n").unwrap();
        let err = Pm2::new(fake.to_str().unwrap()).list().unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
