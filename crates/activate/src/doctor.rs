//! `relman doctor`: is this host ready for zero-downtime deploys? Each check says OK, WARN or
//! FAIL, and how to fix it.

use relman_releases::{DeployRoot, store};
use serde::Serialize;

use crate::pm2::Pm2;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but not as well as it should.
    Warn,
    /// Deploys will drop requests or fail.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it came out.
    pub level: Level,
    /// What was found.
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

/// The hooks that are set, and an activation that ran hooks and never ended.
fn hooks(
    root: &DeployRoot,
    config: &relman_releases::Config,
    push: &mut dyn FnMut(&'static str, Level, String, Option<String>),
) {
    use relman_releases::hooks::{Hook, Journal};
    let set: Vec<String> = Hook::ALL
        .iter()
        .filter(|hook| !hook.command(&config.hooks).is_empty())
        .map(|hook| format!("{hook} `{}`", hook.command(&config.hooks)))
        .collect();
    if set.is_empty() {
        push("hooks", Level::Ok, "no hooks set".into(), None);
    } else {
        push(
            "hooks",
            Level::Ok,
            format!(
                "{} (timeout {} s each)",
                set.join(", "),
                config.hooks.timeout_secs
            ),
            None,
        );
    }
    match Journal::unfinished(root) {
        Ok(Some(journal)) if !root.is_busy() => push(
            "unfinished activation",
            Level::Warn,
            format!(
                "the activation of {} started {} ran hooks and never ended",
                journal.to,
                journal
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Some(format!(
                "`relman status` shows what each hook did; `relman activate {}` goes on from it",
                journal.to
            )),
        ),
        Ok(_) => {}
        Err(err) => push("unfinished activation", Level::Fail, err.to_string(), None),
    }
}

/// PM2's default `kill_timeout`, which is too short for slow requests to finish.
const PM2_DEFAULT_KILL_TIMEOUT_MS: u64 = 1600;
/// A kill timeout shorter than this risks cutting in-flight requests.
const MIN_KILL_TIMEOUT_MS: u64 = 5000;

/// Runs every check; changes nothing.
pub fn doctor(root: &DeployRoot) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |name, level, message: String, fix: Option<String>| {
        checks.push(Check {
            name,
            level,
            message,
            fix,
        });
    };
    let config = match root.require_initialised().and_then(|()| root.config()) {
        Ok(config) => {
            push("config", Level::Ok, "relman.toml is valid".into(), None);
            config
        }
        Err(err) => {
            push(
                "config",
                Level::Fail,
                err.to_string(),
                Some("fix relman.toml (see docs/reference.md, section 2)".into()),
            );
            return checks;
        }
    };

    let current = match root.current() {
        Ok(Some(id)) => match store::sealed_release(root, &id) {
            Ok(_) => {
                push(
                    "current",
                    Level::Ok,
                    format!("`current` points to sealed release {id}"),
                    None,
                );
                Some(id)
            }
            Err(err) => {
                push(
                    "current",
                    Level::Fail,
                    err.to_string(),
                    Some("activate a sealed release: `relman activate ID`".to_string()),
                );
                None
            }
        },
        Ok(None) => {
            push(
                "current",
                Level::Warn,
                "nothing is live yet".into(),
                Some("`relman build`, then `relman activate ID`".into()),
            );
            None
        }
        Err(err) => {
            push(
                "current",
                Level::Fail,
                err.to_string(),
                Some("move it away and `relman activate ID`".into()),
            );
            None
        }
    };

    hooks(root, &config, &mut push);

    let app = &config.pm2.app;
    let pm2 = Pm2::new(&config.pm2.bin);
    match pm2.version() {
        Ok(version) => push(
            "pm2",
            Level::Ok,
            format!("PM2 {version} (`{}`)", config.pm2.bin),
            None,
        ),
        Err(err) => push(
            "pm2",
            if app.is_empty() {
                Level::Warn
            } else {
                Level::Fail
            },
            err.to_string(),
            Some("`npm install -g pm2`, or set `pm2.bin` to its path".into()),
        ),
    }

    if app.is_empty() {
        push(
            "app",
            Level::Warn,
            "`pm2.app` is empty: activate flips `current` but reloads nothing".into(),
            Some("set `pm2.app` in relman.toml to the PM2 app name".into()),
        );
    } else {
        match pm2.check_daemon().and_then(|()| pm2.instances(app)) {
            Err(err) => push("app", Level::Fail, err.to_string(), None),
            Ok(instances) if instances.is_empty() => push(
                "app",
                Level::Fail,
                format!("PM2 has no app named \"{app}\""),
                Some(format!(
                    "start it: `pm2 start ecosystem.config.js` with cwd `{}`",
                    root.current_link()
                )),
            ),
            Ok(instances) => {
                push("app", Level::Ok, format!("PM2 runs \"{app}\""), None);
                let cluster = instances
                    .iter()
                    .all(|i| i.exec_mode == crate::pm2::ExecMode::Cluster);
                if cluster && instances.len() >= 2 {
                    push(
                        "cluster",
                        Level::Ok,
                        format!("cluster mode, {} instances", instances.len()),
                        None,
                    );
                } else {
                    push(
                        "cluster",
                        Level::Fail,
                        format!(
                            "{} instance(s), exec mode {}: a reload is then a restart and drops requests",
                            instances.len(),
                            instances
                                .first()
                                .map_or("?".to_owned(), |i| i.exec_mode.to_string())
                        ),
                        Some("set `exec_mode: \"cluster\"` and `instances: 2` (or more) in the ecosystem file, then `pm2 delete` and `pm2 start` it".into()),
                    );
                }
                let link = match config.source.app_dir.as_str() {
                    "" => root.current_link(),
                    app_dir => root.current_link().join(app_dir),
                };
                let wrong: Vec<String> = instances
                    .iter()
                    .filter(|i| !is_current_link(root, &config.source.app_dir, i.pm_cwd.as_deref()))
                    .map(|i| format!("{} (`{}`)", i.pm_id, i.pm_cwd.as_deref().unwrap_or("?")))
                    .collect();
                if wrong.is_empty() {
                    push(
                        "cwd",
                        Level::Ok,
                        format!("every instance starts in `{link}`"),
                        None,
                    );
                } else {
                    push(
                        "cwd",
                        Level::Fail,
                        format!(
                            "instances not started in `{link}`: {}; a reload keeps them on their old release",
                            wrong.join(", ")
                        ),
                        Some(format!(
                            "set `cwd: \"{link}\"` in the ecosystem file, then `pm2 delete` and `pm2 start` it"
                        )),
                    );
                }
                let kill_timeout = instances
                    .iter()
                    .map(|i| i.kill_timeout.unwrap_or(PM2_DEFAULT_KILL_TIMEOUT_MS))
                    .min()
                    .unwrap_or(PM2_DEFAULT_KILL_TIMEOUT_MS);
                if kill_timeout >= MIN_KILL_TIMEOUT_MS {
                    push(
                        "kill_timeout",
                        Level::Ok,
                        format!("kill_timeout {kill_timeout} ms"),
                        None,
                    );
                } else {
                    push(
                        "kill_timeout",
                        Level::Warn,
                        format!("kill_timeout {kill_timeout} ms: PM2 SIGKILLs a draining worker after that, cutting slow requests"),
                        Some("set `kill_timeout: 10000` (longer than your slowest request) and shut down gracefully on SIGINT (docs/guide.md)".into()),
                    );
                }
                if let Some(endpoint) = crate::host::Endpoint::of_url(&config.verify.url) {
                    port_check(&mut push, &endpoint, &instances);
                }
                listen_check(&mut push, root, &instances);
                if let Some(id) = &current {
                    next_checks(&mut push, root, &config, id, &instances);
                }
            }
        }
    }

    if config.verify.url.is_empty() {
        push(
            "health",
            Level::Warn,
            "`verify.url` is empty: activations are not probed".into(),
            Some("set `verify.url`, e.g. \"http://127.0.0.1:3000/api/health\"".into()),
        );
    } else {
        let spec = crate::status::one_try_spec(&config, current.as_ref());
        match relman_verify::check_once(&spec) {
            Ok(status) => push(
                "health",
                Level::Ok,
                format!("{} answered {status}", spec.url),
                None,
            ),
            Err(failure) => push(
                "health",
                Level::Fail,
                format!("{}: {failure}", spec.url),
                Some("start the app, or fix `verify.url`".into()),
            ),
        }
    }

    let needed = store::releases(root)
        .ok()
        .and_then(|rs| {
            rs.iter()
                .filter_map(|r| r.seal.as_ref().map(|s| s.bytes))
                .max()
        })
        .unwrap_or(0);
    match free_bytes(root.path().as_str()) {
        Some(free) if free > needed.saturating_mul(2).max(100 << 20) => {
            push("disk", Level::Ok, format!("{} MiB free", free >> 20), None)
        }
        Some(free) => push(
            "disk",
            if free > needed {
                Level::Warn
            } else {
                Level::Fail
            },
            format!(
                "{} MiB free; the largest release is {} MiB",
                free >> 20,
                needed >> 20
            ),
            Some("`relman prune` or free some space before the next build".into()),
        ),
        None => push(
            "disk",
            Level::Warn,
            "could not read free space".into(),
            None,
        ),
    }
    checks
}

/// `listen_timeout` against the slowest worker of the last good activation: PM2 stops waiting
/// for a new worker at `listen_timeout`, and relman's proof gives up 3 s later.
fn listen_check(
    push: &mut dyn FnMut(&'static str, Level, String, Option<String>),
    root: &DeployRoot,
    instances: &[crate::pm2::Instance],
) {
    let Some(listen) = instances
        .iter()
        .map(crate::pm2::Instance::listen_timeout)
        .min()
    else {
        return;
    };
    let listen_ms = u64::try_from(listen.as_millis()).unwrap_or(u64::MAX);
    let slowest = relman_releases::history::find_newest(root, |e| {
        (e.result == relman_releases::history::Outcome::Ok)
            .then(|| e.durations_ms.get(crate::roll::SLOWEST_WORKER).copied())
            .flatten()
            .map(|ms| (e.to.clone(), ms))
    })
    .ok()
    .flatten();
    let (level, message, fix) = judge_listen_timeout(
        listen_ms,
        slowest.as_ref().map(|(id, ms)| (id.as_str(), *ms)),
    );
    push("listen_timeout", level, message, fix);
}

/// The verdict of [`listen_check`]: WARN when the slowest worker took 80% of `listen_timeout`
/// or more, so a somewhat slower boot (a cold disk, a busy host) would be cut off.
fn judge_listen_timeout(
    listen_ms: u64,
    slowest: Option<(&str, u64)>,
) -> (Level, String, Option<String>) {
    match slowest {
        None => (
            Level::Ok,
            format!("listen_timeout {listen_ms} ms (no activation measured yet)"),
            None,
        ),
        Some((id, ms)) if ms.saturating_mul(5) < listen_ms.saturating_mul(4) => (
            Level::Ok,
            format!(
                "listen_timeout {listen_ms} ms; the slowest worker of the last activation ({id}) served after {ms} ms"
            ),
            None,
        ),
        Some((id, ms)) => (
            Level::Warn,
            format!(
                "listen_timeout {listen_ms} ms, but the slowest worker of the last activation ({id}) took {ms} ms to serve: a slower boot would be given up on"
            ),
            Some(format!(
                "set `listen_timeout` to at least {} in the ecosystem file, then `pm2 delete` and `pm2 start` it",
                ms.saturating_mul(2).div_ceil(1000) * 1000
            )),
        ),
    }
}

/// For a Next.js release: which server PM2 runs, the Node.js it runs under against the one
/// the release was built with, and the Server Actions key.
fn next_checks(
    push: &mut dyn FnMut(&'static str, Level, String, Option<String>),
    root: &DeployRoot,
    config: &relman_releases::Config,
    id: &relman_releases::ReleaseId,
    instances: &[crate::pm2::Instance],
) {
    let dir = config.app_in(&root.release_dir(id));
    if !dir.join(".next/BUILD_ID").is_file() {
        return;
    }
    let first = instances.first();
    let script = first.and_then(|i| i.script.as_deref()).unwrap_or("?");
    let fix_server = Some(format!(
        "serve it with a draining server: `relman init --app NAME --port PORT` writes `next-server.js` (in a scratch root if this one is set up: copy the file beside `{}`), set `script` to it in the ecosystem file, then `pm2 delete` and `pm2 start` it",
        root.path().join("ecosystem.config.js")
    ));
    if script.ends_with("next/dist/bin/next") {
        push(
            "server",
            Level::Warn,
            "PM2 runs `next start`: on a reload its old workers keep their keep-alive sockets until PM2 SIGKILLs them at kill_timeout, and requests hang (docs/benchmarks.md)".into(),
            fix_server,
        );
    } else if script.ends_with(relman_releases::NEXT_SERVER_FILE) {
        let standalone = dir.join(".next/standalone").is_dir();
        let serves_standalone = std::fs::read_to_string(script)
            .is_ok_and(|text| text.contains("required-server-files.json"));
        if standalone && !serves_standalone {
            push(
                "server",
                Level::Warn,
                format!(
                    "{id} is an `output: 'standalone'` build, but `{script}` predates relman's standalone support: it serves the release's own `node_modules`, not the standalone server's"
                ),
                Some(format!(
                    "take the `{}` a current `relman init` writes (in a scratch root), then `pm2 reload`",
                    relman_releases::NEXT_SERVER_FILE
                )),
            );
        } else {
            let what = if standalone {
                " (the release's `output: 'standalone'` server)"
            } else {
                ""
            };
            push(
                "server",
                Level::Ok,
                format!("PM2 runs `{script}`{what}, which drains on a reload"),
                None,
            );
        }
    } else if script.contains(".next/standalone") {
        push(
            "server",
            Level::Warn,
            format!(
                "PM2 runs the standalone server `{script}`: how it drains under PM2's cluster mode is not measured by relman"
            ),
            fix_server,
        );
    } else {
        push(
            "server",
            Level::Ok,
            format!(
                "PM2 runs the custom server `{script}` (make sure it drains: docs/guide.md, section 3)"
            ),
            None,
        );
    }

    let built = store::sealed_release(root, id)
        .ok()
        .and_then(|r| r.seal.and_then(|s| s.node_version));
    let running = first.and_then(|i| i.node_version.clone());
    match (built, running) {
        (Some(built), Some(running)) if built.trim_start_matches('v') == running => push(
            "node",
            Level::Ok,
            format!("{id} was built with Node.js {built} and runs under it"),
            None,
        ),
        (Some(built), Some(running)) => push(
            "node",
            Level::Warn,
            format!("{id} was built with Node.js {built} but PM2 runs it under v{running}: native modules and Next.js's build output may not match"),
            Some("run relman and PM2 with the same `node` (PM2 uses the one it was started with: `pm2 update` after changing it), then build again".into()),
        ),
        _ => {}
    }

    // The deployment id the build gave Next.js, from its routes manifest.
    let deployment_id = std::fs::read(dir.join(".next/routes-manifest.json"))
        .ok()
        .filter(|bytes| bytes.len() < 16 << 20)
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|manifest| manifest["deploymentId"].as_str().map(str::to_owned))
        .filter(|id| !id.is_empty());
    match deployment_id {
        Some(deployment) if deployment == id.as_str() => push(
            "deployment_id",
            Level::Ok,
            format!("{id} was built with its ID as Next.js's deployment id: tabs of older releases reload on their next navigation"),
            None,
        ),
        Some(deployment) => push(
            "deployment_id",
            Level::Ok,
            format!("{id} was built with the deployment id \"{deployment}\" (from next.config): give each build its own, or tabs of older releases mix two releases"),
            None,
        ),
        None => push(
            "deployment_id",
            Level::Warn,
            format!("{id} was built without a Next.js deployment id: a tab opened on an older release navigates into this one without reloading, mixing the two"),
            Some("build it again with this relman (it sets NEXT_DEPLOYMENT_ID to the release ID), or set `deploymentId` in next.config".into()),
        ),
    }

    if instances.iter().all(|i| i.actions_key) {
        push(
            "actions_key",
            Level::Ok,
            format!("{} is set for the app", relman_releases::ACTIONS_KEY_ENV),
            None,
        );
    } else {
        push(
            "actions_key",
            Level::Warn,
            format!("{} is not set for the app: every build makes its own key, so a Server Action posted from a page of an earlier release (an open tab, or the other worker during a roll) fails", relman_releases::ACTIONS_KEY_ENV),
            Some("generate one (`openssl rand -base64 32`), set it in `build.env` in relman.toml and in the ecosystem file's `env`, then `pm2 delete` and `pm2 start` the app (`relman init --app` does this for a new root)".into()),
        );
    }
}

/// Who serves the probed port: the daemon relman drives, or another one (the multi-daemon
/// trap: reloads that change nothing users see).
fn port_check(
    push: &mut impl FnMut(&'static str, Level, String, Option<String>),
    endpoint: &crate::host::Endpoint,
    instances: &[crate::pm2::Instance],
) {
    let daemon = Pm2::daemon_pid();
    let mut ours: Vec<u32> = instances
        .iter()
        .map(|i| i.pid)
        .filter(|p| *p != 0)
        .collect();
    ours.extend(daemon);
    let home = Pm2::home();
    match crate::daemon::port_owner(endpoint.port, &ours) {
        crate::daemon::PortOwner::Ours => push(
            "port",
            Level::Ok,
            format!(
                "{endpoint} is served by the PM2 daemon relman drives (PM2_HOME `{}`)",
                home.display()
            ),
            None,
        ),
        crate::daemon::PortOwner::Nobody => push(
            "port",
            Level::Warn,
            format!("nothing listens on {endpoint} (`verify.url`)"),
            Some("start the app, or point `verify.url` at the port it listens on".into()),
        ),
        crate::daemon::PortOwner::Other(owner) => push(
            "port",
            Level::Fail,
            format!(
                "{endpoint} is served by {}, not by the PM2 daemon relman drives (PM2_HOME `{}`): its reloads would change nothing users see",
                crate::daemon::describe(&owner),
                home.display()
            ),
            Some(match crate::daemon::pm2_home(&owner) {
                Some(other) => format!(
                    "run relman as {} with `PM2_HOME={other}`, or stop that daemon's app",
                    owner
                        .user
                        .clone()
                        .unwrap_or_else(|| format!("uid {}", owner.uid))
                ),
                None => "stop that process, or point `verify.url` at the app's own port".into(),
            }),
        ),
        crate::daemon::PortOwner::Unseen => push(
            "port",
            Level::Fail,
            format!(
                "{endpoint} is served by a process relman cannot see (another user's), not by the PM2 daemon relman drives (PM2_HOME `{}`)",
                home.display()
            ),
            Some("run relman as the user whose PM2 daemon serves the app".into()),
        ),
    }
}

/// Whether PM2's stored cwd is `ROOT/current` itself (not a resolved release path), with the
/// app's directory in its workspace (`source.app_dir`) below it when there is one.
fn is_current_link(root: &DeployRoot, app_dir: &str, pm_cwd: Option<&str>) -> bool {
    let Some(pm_cwd) = pm_cwd else { return false };
    let app = std::path::Path::new(app_dir.trim_end_matches('/'));
    let cwd = std::path::Path::new(pm_cwd.trim_end_matches('/'));
    if !cwd.ends_with(app) {
        return false;
    }
    let Some(path) = cwd.ancestors().nth(app.components().count()) else {
        return false;
    };
    path.file_name().is_some_and(|n| n == "current")
        && path
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_some_and(|p| p == root.path().as_std_path())
}

fn free_bytes(path: &str) -> Option<u64> {
    relman_sys::fs::free_bytes(std::path::Path::new(path)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_timeout_is_held_against_the_slowest_worker() {
        let (level, message, fix) = judge_listen_timeout(10_000, None);
        assert_eq!(level, Level::Ok, "{message}");
        assert!(fix.is_none());
        let (level, message, _) = judge_listen_timeout(10_000, Some(("a", 3_000)));
        assert_eq!(level, Level::Ok, "{message}");
        assert!(message.contains("3000 ms"), "{message}");
        let (level, message, _) = judge_listen_timeout(3_000, Some(("a", 2_300)));
        assert_eq!(level, Level::Ok, "{message}");
        let (level, message, fix) = judge_listen_timeout(3_000, Some(("b", 2_400)));
        assert_eq!(level, Level::Warn, "{message}");
        assert!(message.contains("(b) took 2400 ms"), "{message}");
        assert!(fix.unwrap().contains("at least 5000"));
    }

    #[test]
    fn the_cwd_pm2_keeps_must_be_current_or_the_app_below_it() {
        let temp = tempfile::tempdir().unwrap();
        let path = camino::Utf8Path::from_path(temp.path()).unwrap();
        let root = DeployRoot::open(path).unwrap();
        let current = root.current_link();
        let app = format!("{current}/apps/web");
        assert!(is_current_link(&root, "", Some(current.as_str())));
        assert!(is_current_link(&root, "", Some(&format!("{current}/"))));
        assert!(!is_current_link(&root, "", Some(&app)));
        assert!(is_current_link(&root, "apps/web", Some(&app)));
        assert!(is_current_link(
            &root,
            "apps/web/",
            Some(&format!("{app}/"))
        ));
        assert!(!is_current_link(&root, "apps/web", Some(current.as_str())));
        assert!(!is_current_link(
            &root,
            "apps/web",
            Some(&format!("{current}/apps/api"))
        ));
        let release = format!("{path}/releases/20261129120000/apps/web");
        assert!(!is_current_link(&root, "apps/web", Some(&release)));
        assert!(!is_current_link(&root, "", None));
    }
}
