//! `relman status`: what is live, where a rollback would go, and what PM2 runs.

use relman_releases::history::{self, HistoryEntry};
use relman_releases::hooks::Journal;
use relman_releases::{DeployRoot, ReleaseId, store};
use serde::Serialize;

use crate::error::Result;
use crate::pm2::Pm2;

/// The state of a deploy root and its app.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This machine's host name, so that statuses gathered from a fleet say whose they are.
    pub host: Option<String>,
    /// What `current` points to.
    pub current: Option<ReleaseId>,
    /// The history entry that made `current` live (an `activate`, `rollback` or `auto-rollback`
    /// that ended `ok` with it), if the history has one.
    pub went_live: Option<HistoryEntry>,
    /// Where a rollback would go.
    pub rollback_target: Option<ReleaseId>,
    /// Releases a rollback skips, and why, oldest exclusion first.
    pub excluded: Vec<store::Excluded>,
    /// PM2's view, when `pm2.app` is set.
    pub pm2: Option<Pm2Status>,
    /// One GET of `verify.url`, unless it is empty or the caller asked for none.
    pub probe: Option<ProbeOutcome>,
    /// The verdict of `current`, the workers, the probe and an unfinished activation together.
    pub health: Health,
    /// The last history entry.
    pub last: Option<HistoryEntry>,
    /// An activation that ran hooks and never ended (relman was killed, or stopped on an
    /// error after a hook ran): what each hook did. The next activation of the same release
    /// goes on from it.
    pub unfinished: Option<Journal>,
}

/// PM2's view of the app.
#[derive(Debug, Clone, Serialize)]
pub struct Pm2Status {
    /// The app name.
    pub app: String,
    /// Its instances.
    pub instances: Vec<InstanceStatus>,
    /// Why PM2 could not be asked, if it could not.
    pub error: Option<String>,
}

/// One instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    /// PM2's id.
    pub pm_id: u64,
    /// The OS pid (0 when not running).
    pub pid: u32,
    /// PM2's status.
    pub status: String,
    /// The resolved working directory of the running process (`/proc/PID/cwd`).
    pub cwd: Option<String>,
    /// The release that directory belongs to.
    pub release: Option<String>,
    /// The directory PM2 starts it in.
    pub pm_cwd: Option<String>,
    /// PM2's restart count.
    pub restarts: u64,
}

/// Whether `relman status` asks the app itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusProbe {
    /// One GET of `verify.url` (when set), bounded by `verify.timeout_ms` and at most 5 s.
    Once,
    /// None (`--no-probe`): health from PM2's view alone.
    Skip,
}

/// How a host stands, for a person or a fleet's table.
///
/// Serialized as `{"state": "healthy"}`, or with `"problems": [...]` (`degraded`, `down`) or
/// `"reason"` (`unknown`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Health {
    /// A release is live, every worker is online in it, the probe (when there is one) passed,
    /// and no activation was left unfinished.
    Healthy,
    /// Serving, but not as a finished activation leaves it: a worker not online or running
    /// another release, PM2 not answering while the probe passes, an unfinished activation.
    Degraded {
        /// What is wrong, one phrase each.
        problems: Vec<String>,
    },
    /// Not serving: nothing live, no worker online, or the probe failed.
    Down {
        /// What is wrong, one phrase each, the reasons it is down first.
        problems: Vec<String>,
    },
    /// Nothing to judge by: neither `pm2.app` nor a probe, or PM2 not answering and no probe.
    Unknown {
        /// Why.
        reason: String,
    },
}

impl Health {
    /// `healthy`, `degraded`, `down` or `unknown`, as in the JSON.
    pub fn state(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded { .. } => "degraded",
            Health::Down { .. } => "down",
            Health::Unknown { .. } => "unknown",
        }
    }

    /// Why it is not healthy, one phrase each (empty when it is).
    pub fn problems(&self) -> Vec<&str> {
        match self {
            Health::Healthy => Vec::new(),
            Health::Degraded { problems } | Health::Down { problems } => {
                problems.iter().map(String::as_str).collect()
            }
            Health::Unknown { reason } => vec![reason],
        }
    }
}

/// Judges the state read by [`status`]; no I/O.
pub fn assess(
    current: Option<&ReleaseId>,
    pm2: Option<&Pm2Status>,
    probe: Option<&ProbeOutcome>,
    unfinished: Option<&Journal>,
) -> Health {
    let mut down = Vec::new();
    let mut degraded = Vec::new();
    let Some(current) = current else {
        return Health::Down {
            problems: vec!["nothing is live: `current` is absent".into()],
        };
    };
    let mut pm2_answered = false;
    if let Some(pm2) = pm2 {
        if let Some(error) = &pm2.error {
            degraded.push(format!("PM2 could not be asked: {error}"));
        } else if pm2.instances.is_empty() {
            down.push(format!("PM2 runs no instance of `{}`", pm2.app));
            pm2_answered = true;
        } else {
            pm2_answered = true;
            let online = pm2.instances.iter().filter(|i| i.status == "online");
            if online.clone().count() == 0 {
                down.push(format!("no worker of `{}` is online", pm2.app));
            }
            for instance in &pm2.instances {
                if instance.status != "online" {
                    degraded.push(format!("worker {} is {}", instance.pm_id, instance.status));
                }
            }
            for instance in online {
                match instance.release.as_deref() {
                    Some(release) if release == current.as_str() => {}
                    Some(release) => degraded.push(format!(
                        "worker {} runs {release}, not {current}",
                        instance.pm_id
                    )),
                    None => degraded.push(format!(
                        "worker {} runs outside the releases (cwd {})",
                        instance.pm_id,
                        instance.cwd.as_deref().unwrap_or("unknown")
                    )),
                }
            }
        }
    }
    if let Some(probe) = probe
        && !probe.ok
    {
        down.push(format!("probe: {}", probe.message));
    }
    if let Some(journal) = unfinished {
        degraded.push(format!(
            "an activation of {} never ended (see `unfinished`)",
            journal.to
        ));
    }
    if !down.is_empty() {
        down.extend(degraded);
        return Health::Down { problems: down };
    }
    if probe.is_none() && !pm2_answered {
        let nothing = match pm2 {
            None => "no `pm2.app` and no probe to judge by",
            Some(_) => "no probe to judge by",
        };
        degraded.push(nothing.to_owned());
        return Health::Unknown {
            reason: degraded.join("; "),
        };
    }
    if degraded.is_empty() {
        Health::Healthy
    } else {
        Health::Degraded { problems: degraded }
    }
}

/// Reads the state; changes nothing and takes no lock.
pub fn status(root: &DeployRoot, probe: StatusProbe) -> Result<Status> {
    root.require_initialised()?;
    let config = root.config()?;
    let overview = store::overview(root)?;
    let excluded = overview.exclusions();
    // One backward read of the history: the newest entry, and the newest that made `current`
    // live (usually that same entry, or one of the few before it).
    // With nothing live, the newest entry is all there is to read.
    let mut last = None;
    let went_live = history::find_newest(root, |entry| {
        if last.is_none() {
            last = Some(entry.clone());
        }
        match &overview.current {
            None => Some(None),
            Some(current) => (entry.result == history::Outcome::Ok && &entry.to == current)
                .then(|| Some(entry.clone())),
        }
    })?
    .flatten();
    // `/proc/PID/cwd` is resolved; so must the releases directory be (it may be a symlink).
    let releases = std::fs::canonicalize(root.releases_dir())
        .unwrap_or_else(|_| root.releases_dir().into_std_path_buf());
    let pm2 = (!config.pm2.app.is_empty()).then(|| {
        let app = config.pm2.app.clone();
        let pm2 = Pm2::new(&config.pm2.bin);
        match pm2.check_daemon().and_then(|()| pm2.instances(&app)) {
            Ok(instances) => Pm2Status {
                instances: instances
                    .into_iter()
                    .map(|i| {
                        let cwd = relman_sys::proc::cwd(i.pid);
                        let release = cwd
                            .as_ref()
                            .and_then(|c| c.strip_prefix(&releases).ok())
                            .and_then(|rest| rest.components().next())
                            .map(|c| c.as_os_str().to_string_lossy().into_owned());
                        InstanceStatus {
                            pm_id: i.pm_id,
                            pid: i.pid,
                            status: i.status.to_string(),
                            cwd: cwd.map(|c| c.display().to_string()),
                            release,
                            pm_cwd: i.pm_cwd,
                            restarts: i.restarts,
                        }
                    })
                    .collect(),
                app,
                error: None,
            },
            Err(err) => Pm2Status {
                app,
                instances: Vec::new(),
                error: Some(err.to_string()),
            },
        }
    });
    // While a command holds the lock, its journal is that of an activation under way.
    let unfinished = match Journal::unfinished(root)? {
        Some(journal) if !root.is_busy() => Some(journal),
        _ => None,
    };
    let probe = (probe == StatusProbe::Once && !config.verify.url.is_empty())
        .then(|| probe_once(&config, overview.current.as_ref()));
    let health = assess(
        overview.current.as_ref(),
        pm2.as_ref(),
        probe.as_ref(),
        unfinished.as_ref(),
    );
    Ok(Status {
        host: relman_sys::proc::hostname(),
        current: overview.current,
        went_live,
        rollback_target: overview.rollback_target,
        excluded,
        pm2,
        probe,
        health,
        last,
        unfinished,
    })
}

/// The probe of `verify.url` for one quick look (`status`, `doctor`): one try, bounded by
/// `verify.timeout_ms` and at most 5 s, the body checked only when something is live.
pub(crate) fn one_try_spec(
    config: &relman_releases::Config,
    current: Option<&ReleaseId>,
) -> relman_verify::ProbeSpec {
    let spec = crate::roll::probe_spec(config, current);
    relman_verify::ProbeSpec {
        attempts: 1,
        timeout: spec.timeout.min(std::time::Duration::from_secs(5)),
        ..spec
    }
}

fn probe_once(config: &relman_releases::Config, current: Option<&ReleaseId>) -> ProbeOutcome {
    let spec = one_try_spec(config, current);
    match relman_verify::check_once(&spec) {
        Ok(status) => ProbeOutcome {
            ok: true,
            message: format!("{} answered {status}", spec.url),
            url: spec.url,
            status: Some(status),
            attempts: 1,
        },
        Err(failure) => ProbeOutcome {
            ok: false,
            message: format!("{}: {failure}", spec.url),
            url: spec.url,
            status: None,
            attempts: 1,
        },
    }
}

/// The outcome of `relman probe`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    /// Whether the probe passed.
    pub ok: bool,
    /// The URL probed.
    pub url: String,
    /// The status of the last answer, if any.
    pub status: Option<u16>,
    /// Tries made.
    pub attempts: u32,
    /// What happened, in words.
    pub message: String,
}

/// Runs the configured HTTP probe against what is live, `{release}` standing for `current`.
pub fn probe(root: &DeployRoot) -> Result<ProbeOutcome> {
    root.require_initialised()?;
    let config = root.config()?;
    if config.verify.url.is_empty() {
        return Err(crate::Error::Releases(relman_releases::Error::Usage(
            "`verify.url` is not set in relman.toml: set it to the app's health URL, e.g. \"http://127.0.0.1:3000/api/health\"".into(),
        )));
    }
    let current = root.current()?;
    let spec = crate::roll::probe_spec(&config, current.as_ref());
    Ok(match relman_verify::probe(&spec) {
        Ok(report) => ProbeOutcome {
            ok: true,
            message: format!(
                "{} answered {} after {} attempt(s)",
                spec.url, report.status, report.attempts
            ),
            url: spec.url,
            status: Some(report.status),
            attempts: report.attempts,
        },
        Err(err) => ProbeOutcome {
            ok: false,
            message: err.to_string(),
            url: spec.url,
            status: None,
            attempts: spec.attempts,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ReleaseId {
        ReleaseId::parse(text).unwrap()
    }

    fn worker(pm_id: u64, status: &str, release: Option<&str>) -> InstanceStatus {
        InstanceStatus {
            pm_id,
            pid: if status == "online" {
                100 + pm_id as u32
            } else {
                0
            },
            status: status.into(),
            cwd: release.map(|r| format!("/srv/web/releases/{r}")),
            release: release.map(str::to_owned),
            pm_cwd: Some("/srv/web/current".into()),
            restarts: 0,
        }
    }

    fn pm2(instances: Vec<InstanceStatus>) -> Pm2Status {
        Pm2Status {
            app: "web".into(),
            instances,
            error: None,
        }
    }

    fn probe(ok: bool) -> ProbeOutcome {
        ProbeOutcome {
            ok,
            url: "http://127.0.0.1:3000/health".into(),
            status: ok.then_some(200),
            attempts: 1,
            message: if ok {
                "http://127.0.0.1:3000/health answered 200".into()
            } else {
                "http://127.0.0.1:3000/health: connection refused".into()
            },
        }
    }

    fn problems(health: &Health) -> String {
        format!("{}: {}", health.state(), health.problems().join(" | "))
    }

    #[test]
    fn every_worker_online_in_current_and_a_passing_probe_is_healthy() {
        let v2 = id("v2");
        let pm2 = pm2(vec![
            worker(0, "online", Some("v2")),
            worker(1, "online", Some("v2")),
        ]);
        assert_eq!(
            assess(Some(&v2), Some(&pm2), Some(&probe(true)), None),
            Health::Healthy
        );
        // PM2's view alone is enough to judge by, and so is the probe alone.
        assert_eq!(assess(Some(&v2), Some(&pm2), None, None), Health::Healthy);
        assert_eq!(
            assess(Some(&v2), None, Some(&probe(true)), None),
            Health::Healthy
        );
    }

    #[test]
    fn a_worker_off_or_in_another_release_is_degraded() {
        let v2 = id("v2");
        let pm2 = pm2(vec![
            worker(0, "online", Some("v1")),
            worker(1, "errored", None),
            worker(2, "online", None),
        ]);
        let health = assess(Some(&v2), Some(&pm2), Some(&probe(true)), None);
        assert_eq!(
            problems(&health),
            "degraded: worker 1 is errored | worker 0 runs v1, not v2 | \
             worker 2 runs outside the releases (cwd unknown)"
        );
    }

    #[test]
    fn nothing_live_no_worker_online_or_a_failing_probe_is_down() {
        let v2 = id("v2");
        assert_eq!(
            problems(&assess(None, None, None, None)),
            "down: nothing is live: `current` is absent"
        );
        let stopped = pm2(vec![
            worker(0, "stopped", None),
            worker(1, "online", Some("v2")),
        ]);
        assert_eq!(
            problems(&assess(
                Some(&v2),
                Some(&stopped),
                Some(&probe(false)),
                None
            )),
            "down: probe: http://127.0.0.1:3000/health: connection refused | worker 0 is stopped"
        );
        let all_stopped = pm2(vec![worker(0, "stopped", None)]);
        assert_eq!(
            problems(&assess(Some(&v2), Some(&all_stopped), None, None)),
            "down: no worker of `web` is online | worker 0 is stopped"
        );
        assert_eq!(
            problems(&assess(Some(&v2), Some(&pm2(Vec::new())), None, None)),
            "down: PM2 runs no instance of `web`"
        );
    }

    #[test]
    fn an_unfinished_activation_degrades_and_no_evidence_is_unknown() {
        let v2 = id("v2");
        let journal = Journal {
            action: relman_releases::history::Action::Activate,
            from: Some(id("v1")),
            to: id("v3"),
            started_at: chrono::Utc::now(),
            dir: ".relman/hooks/x".into(),
            hooks: Default::default(),
        };
        let online = pm2(vec![worker(0, "online", Some("v2"))]);
        assert_eq!(
            problems(&assess(Some(&v2), Some(&online), None, Some(&journal))),
            "degraded: an activation of v3 never ended (see `unfinished`)"
        );
        assert_eq!(
            problems(&assess(Some(&v2), None, None, None)),
            "unknown: no `pm2.app` and no probe to judge by"
        );
        let unanswered = Pm2Status {
            error: Some("the PM2 daemon is not running".into()),
            ..pm2(Vec::new())
        };
        assert_eq!(
            problems(&assess(Some(&v2), Some(&unanswered), None, None)),
            "unknown: PM2 could not be asked: the PM2 daemon is not running; no probe to judge by"
        );
        assert_eq!(
            problems(&assess(
                Some(&v2),
                Some(&unanswered),
                Some(&probe(true)),
                None
            )),
            "degraded: PM2 could not be asked: the PM2 daemon is not running"
        );
    }

    #[test]
    fn health_serialises_as_a_tagged_state() {
        assert_eq!(
            serde_json::to_string(&Health::Healthy).unwrap(),
            r#"{"state":"healthy"}"#
        );
        assert_eq!(
            serde_json::to_string(&Health::Down {
                problems: vec!["x".into()]
            })
            .unwrap(),
            r#"{"state":"down","problems":["x"]}"#
        );
    }
}
