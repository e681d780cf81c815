//! PM2, driven through its command line: `pm2 jlist` to see, `pm2 reload` to act.
//!
//! Nothing PM2 prints is trusted blindly: `jlist` output is parsed strictly, and a reload's
//! exit status proves nothing (it is 0 even when every new worker crashed), so callers read
//! the instances back and check them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One PM2 instance, as `pm2 jlist` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    /// PM2's id of this instance.
    pub pm_id: u64,
    /// The app name.
    pub name: String,
    /// The OS pid (0 when not running).
    pub pid: u32,
    /// `online`, `launching`, `errored`, `stopped`, …
    pub status: String,
    /// How many times PM2 restarted it.
    pub restarts: u64,
    /// The working directory PM2 starts it in (`pm_cwd`).
    pub pm_cwd: Option<String>,
    /// `cluster_mode` or `fork_mode`.
    pub exec_mode: String,
    /// PM2's `kill_timeout` in ms, if set.
    pub kill_timeout: Option<u64>,
}

#[derive(Deserialize)]
struct RawProcess {
    pm_id: u64,
    name: String,
    #[serde(default)]
    pid: Option<u32>,
    pm2_env: RawEnv,
}

#[derive(Deserialize)]
struct RawEnv {
    status: String,
    #[serde(default)]
    restart_time: Option<u64>,
    #[serde(default)]
    pm_cwd: Option<String>,
    #[serde(default)]
    exec_mode: Option<String>,
    #[serde(default)]
    kill_timeout: Option<u64>,
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
    let raw: Vec<RawProcess> = serde_json::from_str(text[start..].trim_end()).map_err(|err| {
        Error::Pm2(format!(
            "`pm2 jlist` printed JSON relman cannot read ({err}): {}",
            snippet(&text[start..])
        ))
    })?;
    Ok(raw
        .into_iter()
        .map(|p| Instance {
            pm_id: p.pm_id,
            name: p.name,
            pid: p.pid.unwrap_or(0),
            status: p.pm2_env.status,
            restarts: p.pm2_env.restart_time.unwrap_or(0),
            pm_cwd: p.pm2_env.pm_cwd,
            exec_mode: p.pm2_env.exec_mode.unwrap_or_default(),
            kill_timeout: p.pm2_env.kill_timeout,
        })
        .collect())
}

fn snippet(text: &str) -> String {
    let flat = text.trim().replace('\n', " ");
    match flat.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
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

/// How to run PM2.
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

    /// Reloads one instance with `env` added to PM2's environment (`--update-env`).
    pub fn reload_instance(&self, pm_id: u64, env: &[(&str, &str)]) -> Result<()> {
        self.run(&["reload", &pm_id.to_string(), "--update-env"], env)
            .map(drop)
    }

    /// Reloads through an ecosystem file, optionally only one app.
    pub fn reload_ecosystem(
        &self,
        ecosystem: &str,
        app: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<()> {
        let mut args = vec!["reload", ecosystem, "--update-env"];
        if let Some(app) = app {
            args.extend(["--only", app]);
        }
        self.run(&args, env).map(drop)
    }
}

/// Puts a PM2 command in its own process group: a Ctrl-C at the terminal reaches the whole
/// foreground group, and must reach relman (which decides what is safe), not kill a
/// `pm2 reload` half-way and make a healthy worker look failed.
pub(crate) fn own_group(command: &mut std::process::Command) -> std::io::Result<()> {
    std::os::unix::process::CommandExt::process_group(command, 0);
    Ok(())
}

/// The resolved working directory of a running process, from `/proc/PID/cwd`.
pub fn process_cwd(pid: u32) -> Option<PathBuf> {
    if pid == 0 {
        return None;
    }
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// How often instances are polled while waiting for a worker.
pub(crate) const POLL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[{"pid":4242,"name":"web","pm_id":0,"monit":{"memory":1,"cpu":0},"pm2_env":{"status":"online","restart_time":3,"pm_cwd":"/srv/web/current","exec_mode":"cluster_mode","kill_timeout":10000,"instances":2}},{"pid":0,"name":"web","pm_id":1,"pm2_env":{"status":"errored","restart_time":16,"pm_cwd":"/srv/web/current","exec_mode":"cluster_mode"}},{"pid":7,"name":"other","pm_id":2,"pm2_env":{"status":"online","exec_mode":"fork_mode"}}]"#;

    #[test]
    fn parses_jlist() {
        let list = parse_jlist(SAMPLE).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].pid, 4242);
        assert_eq!(list[0].pm_cwd.as_deref(), Some("/srv/web/current"));
        assert_eq!(list[0].kill_timeout, Some(10000));
        assert_eq!(list[1].status, "errored");
        assert_eq!(list[2].exec_mode, "fork_mode");
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
