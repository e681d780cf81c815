//! `relman activate` and `relman rollback`: the gated go-live of one sealed release.
//!
//! The order is the contract's: lock, integrity, preflight, flip `current`, reload PM2 one
//! worker at a time proving each, probe; on any failure after the flip, flip back and reload
//! the workers already moved, proving them too. Each step is timed and reported, so the path
//! can be measured and interrupted at any point without `current` ever dangling.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use chrono::Utc;
use relman_releases::history::{self, Action, HistoryEntry, Outcome};
use relman_releases::{Config, DeployRoot, ReleaseId, failpoint, store};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pm2::{self, Instance, Pm2};
use crate::session::Session;

/// Which checks to run.
#[derive(Debug, Clone, Copy)]
pub struct Gates {
    /// Reload PM2 (`--no-reload` turns it off).
    pub reload: bool,
    /// Run the HTTP probe (`--no-probe` turns it off).
    pub probe: bool,
    /// Check the manifest first (`--skip-integrity` turns it off).
    pub integrity: bool,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            reload: true,
            probe: true,
            integrity: true,
        }
    }
}

/// What to make live.
#[derive(Debug, Clone)]
pub enum Goal {
    /// `relman activate ID`.
    Activate(ReleaseId),
    /// `relman rollback [--to ID]`.
    Rollback(Option<ReleaseId>),
}

/// Progress of an activation, for the operator.
#[derive(Debug)]
pub enum Event<'a> {
    /// Another relman holds the root lock.
    Waiting(&'a str),
    /// A step begins or ends.
    Step(String),
}

/// One worker's move.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    /// PM2's id.
    pub pm_id: u64,
    /// The pid before the reload.
    pub old_pid: u32,
    /// The proven new pid (0 if it never proved itself).
    pub new_pid: u32,
    /// The release it was moved to.
    pub release: ReleaseId,
    /// Milliseconds from reload to proof.
    pub ms: u64,
}

/// How an activation ended.
#[derive(Debug, Clone, Serialize)]
pub struct ActivateReport {
    /// `activate` or `rollback`.
    pub action: Action,
    /// What was live before.
    pub from: Option<ReleaseId>,
    /// The release asked for.
    pub to: ReleaseId,
    /// `ok`, `rejected` or `failed`.
    pub result: Outcome,
    /// Where it went back to after a failure.
    pub rolled_back_to: Option<ReleaseId>,
    /// Why it did not end well.
    pub reason: Option<String>,
    /// What `current` points to now.
    pub live: Option<ReleaseId>,
    /// Whether what is live proved itself; `false` means a person must look.
    pub healthy: bool,
    /// Milliseconds per step.
    pub durations_ms: BTreeMap<String, u64>,
    /// Every worker move, the way back included.
    pub workers: Vec<WorkerReport>,
}

impl ActivateReport {
    /// The contract's exit code: 0 live and proven, 3 refused or rolled back to a healthy
    /// release, 4 stuck.
    pub fn exit_code(&self) -> u8 {
        match (self.result, self.healthy) {
            (_, false) => 4,
            (Outcome::Ok, true) => 0,
            _ => 3,
        }
    }
}

/// Makes a release live, or goes back.
///
/// `cancel` (an operator's Ctrl-C or SIGTERM) stops it cleanly while nothing has changed yet;
/// once `current` has flipped, the roll and its proof (or the way back) run to the end, since
/// stopping half-way would leave the app split across two releases.
pub fn activate(
    root: &DeployRoot,
    goal: &Goal,
    gates: Gates,
    cancel: &AtomicBool,
    events: &mut dyn FnMut(Event<'_>),
) -> Result<ActivateReport> {
    let started = Instant::now();
    root.require_initialised()?;
    let config = root.config()?;
    let action = match goal {
        Goal::Activate(_) => Action::Activate,
        Goal::Rollback(_) => Action::Rollback,
    };
    let label = match goal {
        Goal::Activate(id) => format!("relman activate {id}"),
        Goal::Rollback(_) => "relman rollback".to_owned(),
    };
    let _lock =
        root.lock_or_cancel(&label, cancel, &mut |holder| events(Event::Waiting(holder)))?;
    failpoint::hit("activate-after-lock");

    let to = match goal {
        Goal::Activate(id) | Goal::Rollback(Some(id)) => id.clone(),
        Goal::Rollback(None) => {
            let overview = store::overview(root)?;
            overview.rollback_target.ok_or_else(|| {
                Error::NoRollbackTarget(match overview.current {
                    Some(current) => format!(
                        "no rollback target: no sealed release older than {current} and none in the history; name one with `relman rollback --to ID`"
                    ),
                    None => "nothing is live yet, so there is nothing to roll back from: `relman activate ID` first".into(),
                })
            })?
        }
    };
    let release = store::sealed_release(root, &to)?;
    let mut run = Run {
        root,
        config: &config,
        events,
        durations: BTreeMap::new(),
        workers: Vec::new(),
    };

    if gates.integrity {
        run.step("integrity", |run| {
            let report = relman_releases::manifest::verify(run.root, Some(&to))?;
            if report.ok {
                Ok(())
            } else {
                Err(Error::Integrity {
                    id: to.to_string(),
                    summary: format!(
                        "{} changed, {} missing, {} added",
                        report.diff.changed.len(),
                        report.diff.missing.len(),
                        report.diff.added.len()
                    ),
                })
            }
        })?;
    }

    let from = root.current()?;
    let plan = if gates.reload { run.plan()? } else { None };

    let finish =
        |run: Run<'_>, result: Outcome, rolled_back_to, reason: Option<String>, live, healthy| {
            let mut durations = run.durations;
            durations.insert("total".into(), millis(started.elapsed()));
            ActivateReport {
                action,
                from: from.clone(),
                to: to.clone(),
                result,
                rolled_back_to,
                reason,
                live,
                healthy,
                durations_ms: durations,
                workers: run.workers,
            }
        };

    let interrupted = || {
        if cancel.load(Ordering::SeqCst) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    };
    interrupted()?;
    if !run.config.preflight.command.is_empty() {
        let dir = release.dir.clone();
        let preflight = run.step("preflight", |run| run.preflight(&to, &dir, cancel));
        interrupted()?;
        if let Err(why) = preflight {
            let report = finish(run, Outcome::Rejected, None, Some(why), from.clone(), true);
            record(root, &report, action)?;
            return Ok(report);
        }
    }

    failpoint::hit("activate-after-preflight");
    run.step("flip", |run| flip(run.root, &to))?;
    failpoint::hit("activate-after-flip");

    let failure = match &plan {
        Some(plan) => run
            .step("reload", |run| run.roll(plan, &to, plan.instances.clone()))
            .err(),
        None => None,
    };
    let failure = failure.or_else(|| {
        if gates.probe && !run.config.verify.url.is_empty() {
            run.step("probe", |run| run.probe(&to)).err()
        } else {
            None
        }
    });

    failpoint::hit("activate-after-roll");
    let Some(why) = failure else {
        let report = finish(run, Outcome::Ok, None, None, Some(to.clone()), true);
        record(root, &report, action)?;
        return Ok(report);
    };

    // The way back: the release that was live, through the same gates.
    let Some(previous) = from.clone().filter(|p| *p != to) else {
        let reason = format!(
            "{why}; there is no earlier release to go back to, so {to} stays live and unproven: fix it and activate again"
        );
        let report = finish(
            run,
            Outcome::Failed,
            None,
            Some(reason),
            Some(to.clone()),
            false,
        );
        record(root, &report, action)?;
        return Ok(report);
    };
    run.say(format!("{why}; rolling back to {previous}"));
    let back: Result<(), String> = run.step("rollback", |run| {
        flip(run.root, &previous).map_err(|e| e.to_string())?;
        failpoint::hit("activate-after-flip-back");
        if let Some(plan) = &plan {
            let touched: Vec<Instance> = plan
                .instances
                .iter()
                .filter(|i| run.workers.iter().any(|w| w.pm_id == i.pm_id) || plan.touched_all)
                .cloned()
                .collect();
            let back_plan = Plan {
                instances: touched,
                touched_all: plan.touched_all,
                ..plan.clone()
            };
            let snapshot = back_plan.list()?;
            run.roll(&back_plan, &previous, snapshot)?;
        }
        if gates.probe && !run.config.verify.url.is_empty() {
            run.probe(&previous)?;
        }
        Ok(())
    });
    let report = match back {
        Ok(()) => finish(
            run,
            Outcome::Failed,
            Some(previous.clone()),
            Some(why),
            Some(previous),
            true,
        ),
        Err(back_why) => {
            let reason = format!(
                "{why}; the way back to {previous} failed too: {back_why}; check `relman status` and `pm2 ls`"
            );
            finish(
                run,
                Outcome::Failed,
                None,
                Some(reason),
                Some(previous),
                false,
            )
        }
    };
    record(root, &report, action)?;
    Ok(report)
}

/// Points `current` at a release with one `rename(2)`.
fn flip(root: &DeployRoot, id: &ReleaseId) -> Result<()> {
    let target = Utf8PathBuf::from("releases").join(id.as_str());
    relman_releases::fs::replace_symlink(&root.current_link(), &target)?;
    Ok(())
}

/// Appends the history entries of a finished activation.
fn record(root: &DeployRoot, report: &ActivateReport, action: Action) -> Result<()> {
    failpoint::hit("activate-before-history");
    let now = Utc::now();
    history::append(
        root,
        &HistoryEntry {
            at: now,
            action,
            from: report.from.clone(),
            to: report.to.clone(),
            result: report.result,
            reason: report.reason.clone(),
            durations_ms: report.durations_ms.clone(),
        },
    )?;
    if report.result == Outcome::Failed
        && let Some(from) = report.from.clone().filter(|f| *f != report.to)
    {
        history::append(
            root,
            &HistoryEntry {
                at: Utc::now(),
                action: Action::AutoRollback,
                from: Some(report.to.clone()),
                to: from,
                result: if report.healthy {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                },
                reason: report.reason.clone(),
                durations_ms: report
                    .durations_ms
                    .get("rollback")
                    .map(|ms| BTreeMap::from([("rollback".to_owned(), *ms)]))
                    .unwrap_or_default(),
            },
        )?;
    }
    Ok(())
}

/// The PM2 side of an activation, checked before anything changes.
#[derive(Debug, Clone)]
struct Plan {
    pm2: Pm2,
    /// One connection to the daemon for the whole activation, when PM2's package can be
    /// found; else every step runs PM2's command line.
    session: Option<Arc<Mutex<Session>>>,
    app: String,
    ecosystem: Option<String>,
    instances: Vec<Instance>,
    /// An ecosystem reload moves every instance at once.
    touched_all: bool,
    timeout: Duration,
}

impl Plan {
    fn list(&self) -> Result<Vec<Instance>, String> {
        match &self.session {
            Some(session) => session.lock().expect("the session lock").list(self.timeout),
            None => self.pm2.list(),
        }
        .map_err(|e| e.to_string())
    }

    fn reload(&self, pm_id: u64, env: &[(&str, &str)]) -> Result<(), String> {
        match &self.session {
            Some(session) => {
                session
                    .lock()
                    .expect("the session lock")
                    .reload(pm_id, env, self.timeout)
            }
            None => self.pm2.reload_instance(pm_id, env),
        }
        .map_err(|e| e.to_string())
    }
}

struct Run<'a> {
    root: &'a DeployRoot,
    config: &'a Config,
    events: &'a mut dyn FnMut(Event<'_>),
    durations: BTreeMap<String, u64>,
    workers: Vec<WorkerReport>,
}

impl Run<'_> {
    fn say(&mut self, message: String) {
        (self.events)(Event::Step(message));
    }

    fn step<T, E>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let value = f(self);
        let ms = millis(started.elapsed());
        *self.durations.entry(name.to_owned()).or_default() += ms;
        value
    }

    /// Reads PM2's view and refuses a setup relman cannot roll safely.
    fn plan(&mut self) -> Result<Option<Plan>> {
        let pm2_config = &self.config.pm2;
        if pm2_config.app.is_empty() {
            if !pm2_config.ecosystem.is_empty() {
                return Err(Error::App(
                    "`pm2.ecosystem` is set but `pm2.app` is empty: set `pm2.app` so relman can prove each instance".into(),
                ));
            }
            return Ok(None);
        }
        let pm2 = Pm2::new(&pm2_config.bin);
        pm2.check_daemon()?;
        let timeout = Duration::from_secs(pm2_config.timeout_secs);
        let session = match Session::start(&pm2, timeout) {
            Ok(session) => Some(Arc::new(Mutex::new(session))),
            Err(err) => {
                self.say(format!("{err}; using PM2's command line for every step"));
                None
            }
        };
        let instances: Vec<Instance> = match &session {
            Some(session) => session.lock().expect("the session lock").list(timeout)?,
            None => pm2.list()?,
        }
        .into_iter()
        .filter(|i| i.name == pm2_config.app)
        .collect();
        if instances.is_empty() {
            return Err(Error::App(format!(
                "PM2 has no app named \"{}\" (PM2_HOME `{}`): start it with `pm2 start` and cwd `{}`, or fix `pm2.app`",
                pm2_config.app,
                Pm2::home().display(),
                self.root.current_link()
            )));
        }
        if let Some(fork) = instances.iter().find(|i| i.exec_mode != "cluster_mode") {
            return Err(Error::App(format!(
                "app \"{}\" runs in {} (instance {}): a reload there is a restart that drops requests; start it with `exec_mode: \"cluster\"` and `instances: 2` or more",
                pm2_config.app, fork.exec_mode, fork.pm_id
            )));
        }
        self.say(format!(
            "PM2 app \"{}\": {} instance{}",
            pm2_config.app,
            instances.len(),
            if instances.len() == 1 { "" } else { "s" }
        ));
        Ok(Some(Plan {
            pm2,
            session,
            app: pm2_config.app.clone(),
            ecosystem: (!pm2_config.ecosystem.is_empty()).then(|| pm2_config.ecosystem.clone()),
            instances,
            touched_all: !pm2_config.ecosystem.is_empty(),
            timeout: Duration::from_secs(pm2_config.timeout_secs),
        }))
    }

    fn preflight(
        &mut self,
        id: &ReleaseId,
        dir: &camino::Utf8Path,
        cancel: &AtomicBool,
    ) -> Result<(), String> {
        let preflight = &self.config.preflight;
        let verify = &self.config.verify;
        let spec = relman_verify::PreflightSpec {
            command: preflight.command.clone(),
            url: preflight.url.clone(),
            port_env: preflight.port_env.clone(),
            dir: dir.as_std_path().to_owned(),
            env: vec![("RELMAN_RELEASE".into(), id.to_string())],
            timeout: Duration::from_secs(preflight.timeout_secs),
            status: verify.status,
            body_contains: body_contains(self.config, id),
            try_timeout: Duration::from_millis(verify.timeout_ms),
            interval: Duration::from_millis(200),
            // Once it answers, the probe's own patience: `attempts` tries `interval_ms` apart.
            answered_grace: Duration::from_millis(
                verify
                    .interval_ms
                    .saturating_mul(u64::from(verify.attempts)),
            ),
        };
        self.say(format!("preflight: `{}`", preflight.command));
        relman_verify::preflight_cancellable(&spec, cancel)
            .map(|report| {
                self.say(format!(
                    "preflight passed on port {} in {} ms",
                    report.port,
                    report.elapsed.as_millis()
                ))
            })
            .map_err(|err| format!("preflight failed: {err}"))
    }

    fn probe(&mut self, id: &ReleaseId) -> Result<(), String> {
        let spec = probe_spec(self.config, id);
        relman_verify::probe(&spec)
            .map(|report| {
                self.say(format!(
                    "probe passed: {} answered {} after {} attempt(s)",
                    spec.url, report.status, report.attempts
                ))
            })
            .map_err(|err| format!("probe failed: {err}"))
    }

    /// Moves the plan's instances to `id`, proving each before the next. `snapshot` is PM2's
    /// latest view of them; each proof refreshes it, so a roll costs one `jlist` per worker.
    fn roll(&mut self, plan: &Plan, id: &ReleaseId, snapshot: Vec<Instance>) -> Result<(), String> {
        let release_dir = self.root.release_dir(id).into_std_path_buf();
        let env = [("RELMAN_RELEASE", id.as_str())];
        if let Some(ecosystem) = &plan.ecosystem {
            let started = Instant::now();
            self.say(format!("reloading through `{ecosystem}`"));
            plan.pm2
                .reload_ecosystem(ecosystem, Some(&plan.app), &env)
                .map_err(|e| e.to_string())?;
            for instance in &plan.instances {
                let before = find(&snapshot, instance);
                let (new_pid, _) = prove(plan, &before, &release_dir, id)?;
                self.workers.push(WorkerReport {
                    pm_id: instance.pm_id,
                    old_pid: before.pid,
                    new_pid,
                    release: id.clone(),
                    ms: millis(started.elapsed()),
                });
            }
            return Ok(());
        }
        let mut snapshot = snapshot;
        for instance in &plan.instances {
            let started = Instant::now();
            let before = find(&snapshot, instance);
            self.say(format!(
                "worker {} (pid {}): reloading into {id}",
                before.pm_id, before.pid
            ));
            let proven = plan
                .reload(before.pm_id, &env)
                .and_then(|()| prove(plan, &before, &release_dir, id));
            self.workers.push(WorkerReport {
                pm_id: before.pm_id,
                old_pid: before.pid,
                new_pid: proven.as_ref().map_or(0, |(pid, _)| *pid),
                release: id.clone(),
                ms: millis(started.elapsed()),
            });
            let (new_pid, latest) = proven?;
            snapshot = latest;
            failpoint::hit("activate-after-worker");
            self.say(format!(
                "worker {} (pid {new_pid}) runs {id} ({} ms)",
                before.pm_id,
                millis(started.elapsed())
            ));
        }
        Ok(())
    }
}

/// The instance's entry in `snapshot`, or the planned one if PM2 no longer lists it.
fn find(snapshot: &[Instance], instance: &Instance) -> Instance {
    snapshot
        .iter()
        .find(|i| i.pm_id == instance.pm_id)
        .unwrap_or(instance)
        .clone()
}

/// Waits until an instance runs a new process, `online`, whose working directory is inside
/// the release. Returns the new pid and PM2's view at that moment.
///
/// `pm2 reload` returns only once the new worker listens (or `listen_timeout` passed), so a
/// worker that crashes at boot shows up right away as `errored`, or as more restarts than the
/// reload's own one. A worker that restarted since the reload must be seen with the same pid
/// on two polls in a row before it counts.
fn prove(
    plan: &Plan,
    before: &Instance,
    release_dir: &Path,
    id: &ReleaseId,
) -> Result<(u32, Vec<Instance>), String> {
    let deadline = Instant::now() + plan.timeout;
    let mut seen_online: Option<u32> = None;
    let mut outside: Option<(u32, Instant)> = None;
    loop {
        let instances = plan.list()?;
        let Some(now) = instances.iter().find(|i| i.pm_id == before.pm_id) else {
            return Err(format!(
                "worker {} disappeared from PM2 during the reload",
                before.pm_id
            ));
        };
        if matches!(now.status.as_str(), "errored" | "stopped") {
            return Err(format!(
                "worker {} of {id} is {} after the reload ({} restarts): the new release does not stay up under PM2, see `pm2 logs {}`",
                now.pm_id, now.status, now.restarts, plan.app
            ));
        }
        let restarts = now.restarts.saturating_sub(before.restarts);
        if restarts >= 3 {
            return Err(format!(
                "worker {} of {id} is crash-looping ({restarts} restarts since the reload), see `pm2 logs {}`",
                now.pm_id, plan.app
            ));
        }
        if now.status == "online" && now.pid != 0 && now.pid != before.pid {
            let releases = release_dir.parent().unwrap_or(release_dir);
            match pm2::process_cwd(now.pid) {
                Some(cwd) if cwd.starts_with(release_dir) => {
                    // `pm2 reload` of an online worker returns once the new one listens, so
                    // one look is proof; a worker that was down is only forked when it
                    // returns, and one that restarted since may be crash-looping: both must
                    // be seen twice, same pid, a poll apart.
                    let settled = before.status == "online" && restarts <= 1;
                    if settled || seen_online == Some(now.pid) {
                        let pid = now.pid;
                        return Ok((pid, instances));
                    }
                    seen_online = Some(now.pid);
                }
                Some(cwd) if cwd.starts_with(releases) => {
                    return Err(elsewhere(now, &cwd, id));
                }
                // Not in any release yet: a fresh fork still has the daemon's directory until
                // PM2's process container changes into `pm_cwd`, within milliseconds. A worker
                // that stays outside is started somewhere else entirely.
                Some(cwd) => {
                    seen_online = None;
                    match outside {
                        Some((pid, since))
                            if pid == now.pid && since.elapsed() >= OUTSIDE_GRACE =>
                        {
                            return Err(elsewhere(now, &cwd, id));
                        }
                        Some((pid, _)) if pid == now.pid => {}
                        _ => outside = Some((now.pid, Instant::now())),
                    }
                }
                None => seen_online = None,
            }
        } else {
            seen_online = None;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "worker {} did not come up in {id} within `pm2.timeout_secs` ({} s); last seen: status {}, pid {}, restarts {}",
                before.pm_id,
                plan.timeout.as_secs(),
                now.status,
                now.pid,
                now.restarts
            ));
        }
        std::thread::sleep(pm2::POLL);
    }
}

/// Why a worker running in another directory than the release's cannot be proven.
fn elsewhere(worker: &Instance, cwd: &Path, id: &ReleaseId) -> String {
    format!(
        "worker {} (pid {}) runs in `{}`, not in {id}: PM2 starts it in `{}`; start the app with cwd `current` (see `relman doctor`)",
        worker.pm_id,
        worker.pid,
        cwd.display(),
        worker.pm_cwd.as_deref().unwrap_or("?")
    )
}

/// How long a new worker may stay outside every release before that counts as its real
/// directory (PM2 changes into `pm_cwd` within milliseconds of the fork).
const OUTSIDE_GRACE: Duration = Duration::from_secs(2);

/// The probe as the config describes it, `{release}` filled in.
pub fn probe_spec(config: &Config, id: &ReleaseId) -> relman_verify::ProbeSpec {
    let verify = &config.verify;
    relman_verify::ProbeSpec {
        url: verify.url.clone(),
        status: verify.status,
        body_contains: body_contains(config, id),
        attempts: verify.attempts,
        interval: Duration::from_millis(verify.interval_ms),
        timeout: Duration::from_millis(verify.timeout_ms),
    }
}

fn body_contains(config: &Config, id: &ReleaseId) -> Option<String> {
    let text = &config.verify.body_contains;
    (!text.is_empty()).then(|| text.replace("{release}", id.as_str()))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
