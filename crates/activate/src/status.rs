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
    /// What `current` points to.
    pub current: Option<ReleaseId>,
    /// Where a rollback would go.
    pub rollback_target: Option<ReleaseId>,
    /// Releases a rollback skips, and why, oldest exclusion first.
    pub excluded: Vec<store::Excluded>,
    /// PM2's view, when `pm2.app` is set.
    pub pm2: Option<Pm2Status>,
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

/// Reads the state; changes nothing and takes no lock.
pub fn status(root: &DeployRoot) -> Result<Status> {
    root.require_initialised()?;
    let config = root.config()?;
    let overview = store::overview(root)?;
    let excluded = overview.exclusions();
    let last = history::find_newest(root, |entry| Some(entry.clone()))?;
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
    Ok(Status {
        current: overview.current,
        rollback_target: overview.rollback_target,
        excluded,
        pm2,
        last,
        unfinished,
    })
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
    let mut spec = match &current {
        Some(id) => crate::roll::probe_spec(&config, id),
        None => crate::roll::probe_spec(&config, &ReleaseId::parse("none").expect("a valid ID")),
    };
    if current.is_none() {
        spec.body_contains = None;
    }
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
