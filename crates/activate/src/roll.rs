//! `relman activate` and `relman rollback`: the gated go-live of one sealed release.
//!
//! The order is the contract's: lock, integrity, PM2's setup and the owner of the probed port,
//! preflight, flip `current`, reload PM2 one worker at a time proving each, probe; on any
//! failure after the flip, [`way_back`] flips back and reloads the workers already moved,
//! proving them too. Each step is timed and reported, so the path can be measured and
//! interrupted at any point without `current` ever dangling.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use chrono::Utc;
use relman_releases::history::{self, Action, HistoryEntry, Outcome as Recorded};
use relman_releases::hooks::{Hook, HookRun};
use relman_releases::{Config, DeployRoot, ReleaseId, failpoint, store};

use crate::daemon::{self, PortOwner};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::hooks::{Context, Hooks};
use crate::host::{Clock, Endpoint, Host, Processes, Response};
use crate::outcome::{ActivateReport, Outcome, WorkerReport};
use crate::pm2::{ExecMode, Instance, Pm2, Pm2Control, Pm2State};
use crate::proof::{self, Reloaded, Target, Watch};
use crate::session::Session;

/// The key of `durations_ms` that holds the slowest proven worker's time, in ms.
pub(crate) const SLOWEST_WORKER: &str = "slowest_worker";

/// Which checks to run.
#[derive(Debug, Clone, Copy)]
pub struct Gates {
    /// Reload PM2 (`--no-reload` turns it off).
    pub reload: bool,
    /// Run the HTTP probe (`--no-probe` turns it off).
    pub probe: bool,
    /// Check the manifest first (`--skip-integrity` turns it off).
    pub integrity: bool,
    /// Run the `[hooks]` (`--no-hooks` turns them off).
    pub hooks: bool,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            reload: true,
            probe: true,
            integrity: true,
            hooks: true,
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
    /// Output of a hook, as it runs.
    Output(&'a [u8]),
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
    // The entry is appended at the very end: a history relman will not read stops the
    // activation now, before anything changed, not after the release went live (its space is
    // reserved just before the flip, once everything else passed).
    history::check(root)?;

    let to = match goal {
        Goal::Activate(id) | Goal::Rollback(Some(id)) => id.clone(),
        Goal::Rollback(None) => {
            let overview = store::overview(root)?;
            let skipped = overview
                .exclusions_summary()
                .map(|list| format!(" (skipped, never a rollback target unless named: {list})"))
                .unwrap_or_default();
            overview.rollback_target.ok_or_else(|| {
                Error::NoRollbackTarget(match overview.current {
                    Some(current) => format!(
                        "no rollback target: no earlier sealed release than {current} that may go live again{skipped}; name one with `relman rollback --to ID`"
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
        warnings: Vec::new(),
        host: &Host,
        clock: &Host,
        routes: relman_verify::RouteChecks::none(),
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
    if from.as_ref() == Some(&to) {
        run.say(format!(
            "{to} is already live: going through every step again (any worker not running it is moved into it)"
        ));
    }
    let mut roller = if gates.reload {
        run.plan(from.is_none())?
    } else {
        None
    };
    let endpoint = endpoint(&config);

    let interrupted = || {
        if cancel.load(Ordering::SeqCst) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    };
    interrupted()?;
    let Ok(()) = run.step("routes", |run| {
        run.routes(&run.config.app_in(&release.dir), from.is_some());
        Ok::<(), std::convert::Infallible>(())
    });
    interrupted()?;
    let end = |run: Run<'_>, outcome: Outcome, hooks: BTreeMap<Hook, HookRun>| {
        let mut durations = run.durations;
        durations.insert("total".into(), millis(started.elapsed()));
        // How long the slowest proven worker took from its reload (or start) to its proof:
        // what `doctor` holds `listen_timeout` against.
        if let Some(slowest) = run
            .workers
            .iter()
            .filter(|w| w.new_pid != 0 && w.release == to)
            .map(|w| w.ms)
            .max()
        {
            durations.insert(SLOWEST_WORKER.into(), slowest);
        }
        ActivateReport {
            action,
            from: from.clone(),
            to: to.clone(),
            outcome,
            durations_ms: durations,
            workers: run.workers,
            warnings: run.warnings,
            hooks,
            history_error: None,
        }
    };

    if !run.config.preflight.command.is_empty() {
        let dir = run.config.app_in(&release.dir);
        let preflight = run.step("preflight", |run| run.preflight(&to, &dir, cancel));
        interrupted()?;
        if let Err(reason) = preflight {
            return Ok(recorded(
                root,
                end(run, Outcome::Rejected { reason }, BTreeMap::new()),
            ));
        }
    }

    let app_dir = run.config.app_in(&release.dir);
    let (mut hooks, abandoned) = Hooks::begin(
        root,
        &config.hooks,
        action,
        from.clone(),
        &to,
        gates.hooks,
        &mut |message| (run.events)(Event::Step(message)),
    )?;
    for warning in abandoned {
        run.warn(warning);
    }
    let previous = hooks.previous().cloned();
    let before_flip = run.hook(
        &mut hooks,
        Hook::BeforeFlip,
        &Context {
            release: &to,
            previous: previous.as_ref(),
            action,
            dir: app_dir.clone(),
        },
        cancel,
    );
    if cancel.load(Ordering::SeqCst) {
        // Nothing changed: the next activation runs the hook again, as after any failure.
        hooks.finish()?;
        return Err(Error::Interrupted);
    }
    if let Err(reason) = before_flip {
        let runs = hooks.runs().clone();
        return Ok(finished(
            root,
            end(run, Outcome::Rejected { reason }, runs),
            hooks,
        ));
    }

    failpoint::hit("activate-after-preflight");
    // Not writable, or no space for the entries: stop while nothing changed.
    history::reserve(root)?;
    run.step("flip", |run| flip(run.root, &to))?;
    failpoint::hit("activate-after-flip");

    let failure = match roller.as_mut() {
        Some(roller) => match roller.how.clone() {
            How::FirstStart(file) => run.step("start", |run| run.start(roller, &to, &file)).err(),
            How::EachWorker | How::Ecosystem(_) => {
                let all = roller.instances.clone();
                run.step("reload", |run| {
                    run.roll(roller, &to, &all, Direction::Forward)
                })
                .err()
            }
        },
        None => None,
    };
    let failure = failure.or_else(|| {
        if gates.probe && endpoint.is_some() {
            run.step("probe", |run| run.probe(&to)).err()
        } else {
            None
        }
    });

    failpoint::hit("activate-after-roll");
    let Some(why) = failure else {
        let after = match action {
            Action::Rollback => Hook::AfterRollback,
            Action::Activate | Action::AutoRollback => Hook::AfterLive,
        };
        let context = Context {
            release: &to,
            previous: previous.as_ref(),
            action,
            dir: app_dir,
        };
        if let Err(reason) = run.hook(&mut hooks, after, &context, cancel) {
            run.warn(format!(
                "{}: {to} is live and proven all the same (a failing {after} hook never undoes a good activation)",
                first_line(&reason)
            ));
        }
        let runs = hooks.runs().clone();
        return Ok(finished(root, end(run, Outcome::Live, runs), hooks));
    };

    let Some(previous) = from.clone().filter(|p| *p != to) else {
        let reason = format!(
            "{why}; there is no earlier release to go back to, so {to} stays live and unproven: fix it and activate again"
        );
        let runs = hooks.runs().clone();
        let report = end(
            run,
            Outcome::Stuck {
                reason,
                live: to.clone(),
            },
            runs,
        );
        return Ok(finished(root, report, hooks));
    };
    run.say(format!("{why}; rolling back to {previous}"));
    let back = run.step("rollback", |run| {
        way_back(run, roller.as_mut(), &to, &previous, gates.probe)
    });
    let outcome = match back {
        Ok(()) => {
            let context = Context {
                release: &previous,
                previous: Some(&to),
                action: Action::AutoRollback,
                dir: run.config.app_in(&root.release_dir(&previous)),
            };
            if let Err(reason) = run.hook(&mut hooks, Hook::AfterRollback, &context, cancel) {
                run.warn(format!(
                    "{}: {previous} is live and proven all the same",
                    first_line(&reason)
                ));
            }
            Outcome::RolledBack {
                reason: why,
                to: previous,
            }
        }
        Err(back_why) => Outcome::Stuck {
            reason: format!(
                "{why}; the way back to {previous} failed too: {back_why}; check `relman status` and `pm2 ls`"
            ),
            live: previous,
        },
    };
    let runs = hooks.runs().clone();
    Ok(finished(root, end(run, outcome, runs), hooks))
}

/// [`recorded`], then the hooks' journal goes: the history holds what they did. A journal
/// that cannot be removed is reported the next time, and recognised as recorded.
fn finished(root: &DeployRoot, report: ActivateReport, hooks: Hooks<'_>) -> ActivateReport {
    let mut report = recorded(root, report);
    if report.history_error.is_none()
        && let Err(err) = hooks.finish()
    {
        report.warnings.push(format!(
            "the record of this activation's hooks could not be removed ({err}); the next command reports it as unfinished"
        ));
    }
    report
}

/// A hook's failure in one line, for a warning: its output was shown as it ran.
fn first_line(reason: &str) -> &str {
    let line = reason.lines().next().unwrap_or(reason);
    line.strip_suffix("; its last output:").unwrap_or(line)
}

/// Appends the report's history entries; a failure to do so is carried by the report (the
/// space was reserved before anything changed, so this is the rare case of a disk that failed
/// meanwhile): past the flip it makes the exit code 4, since the record of what is live is
/// now wrong, and the message says what is live.
fn recorded(root: &DeployRoot, mut report: ActivateReport) -> ActivateReport {
    if let Err(err) = record(root, &report) {
        report.history_error = Some(err.to_string());
    }
    report
}

/// The way back after a failure past the flip: `current` back to `previous`, the workers that
/// were moved (the failed one included) reloaded into it and proven, the probe again.
fn way_back(
    run: &mut Run<'_>,
    roller: Option<&mut Roller>,
    failed: &ReleaseId,
    previous: &ReleaseId,
    probe: bool,
) -> Result<(), String> {
    flip(run.root, previous).map_err(|e| e.to_string())?;
    failpoint::hit("activate-after-flip-back");
    if let Some(roller) = roller {
        let list = roller.driver.list().map_err(|e| e.to_string())?;
        if list.iter().any(|i| i.name == roller.app) {
            let moved: Vec<Instance> = roller
                .instances
                .iter()
                .filter(|i| {
                    matches!(roller.how, How::Ecosystem(_))
                        || run
                            .workers
                            .iter()
                            .any(|w| w.pm_id == i.pm_id && w.release == *failed)
                })
                .cloned()
                .collect();
            run.roll(roller, previous, &moved, Direction::Back)?;
        } else {
            // PM2 runs the app no more: its daemon died (the next `pm2` command started a
            // fresh one that knows nothing of it), or someone deleted it. The way back is then
            // a first start, from the ecosystem file, in the release going live again.
            let app = roller.app.clone();
            let Some(file) = run.ecosystem_file() else {
                return Err(format!(
                    "PM2 no longer runs \"{app}\" (its daemon died, or the app was deleted) and there is no ecosystem file to start it from: start it in {previous} with `pm2 start` and cwd `{}`",
                    run.root.current_link()
                ));
            };
            run.warn(format!(
                "PM2 no longer runs \"{app}\" (its daemon died, or the app was deleted): starting it again in {previous} from `{file}`"
            ));
            run.start(roller, previous, &file)?;
        }
    }
    if probe && endpoint(run.config).is_some() {
        run.probe(previous)?;
    }
    Ok(())
}

/// Points `current` at a release with one `rename(2)`.
fn flip(root: &DeployRoot, id: &ReleaseId) -> Result<()> {
    let target = Utf8PathBuf::from("releases").join(id.as_str());
    relman_releases::fs::replace_symlink(&root.current_link(), &target)?;
    Ok(())
}

/// Appends the history entries of a finished activation.
fn record(root: &DeployRoot, report: &ActivateReport) -> Result<()> {
    failpoint::hit("activate-before-history");
    // The `after_rollback` of an automatic rollback belongs to its own entry.
    let automatic = matches!(report.outcome, Outcome::RolledBack { .. });
    let host = relman_sys::proc::hostname();
    history::append(
        root,
        &HistoryEntry {
            at: Utc::now(),
            action: report.action,
            from: report.from.clone(),
            to: report.to.clone(),
            result: report.result(),
            reason: report.reason().map(str::to_owned),
            durations_ms: report.durations_ms.clone(),
            hooks: report
                .hooks
                .iter()
                .filter(|(hook, _)| !(automatic && **hook == Hook::AfterRollback))
                .map(|(hook, run)| (*hook, run.clone()))
                .collect(),
            host: host.clone(),
        },
    )?;
    let back = match &report.outcome {
        Outcome::RolledBack { to, .. } => Some((to, Recorded::Ok)),
        Outcome::Stuck { live, .. } if *live != report.to => Some((live, Recorded::Failed)),
        _ => None,
    };
    if let Some((back_to, result)) = back {
        history::append(
            root,
            &HistoryEntry {
                at: Utc::now(),
                action: Action::AutoRollback,
                from: Some(report.to.clone()),
                to: back_to.clone(),
                result,
                reason: report.reason().map(str::to_owned),
                durations_ms: report
                    .durations_ms
                    .get("rollback")
                    .map(|ms| BTreeMap::from([("rollback".to_owned(), *ms)]))
                    .unwrap_or_default(),
                hooks: report
                    .hooks
                    .get(&Hook::AfterRollback)
                    .filter(|_| automatic)
                    .map(|run| BTreeMap::from([(Hook::AfterRollback, run.clone())]))
                    .unwrap_or_default(),
                host,
            },
        )?;
    }
    Ok(())
}

/// Where users reach the app, from `verify.url`.
fn endpoint(config: &Config) -> Option<Endpoint> {
    (!config.verify.url.is_empty())
        .then(|| Endpoint::of_url(&config.verify.url))
        .flatten()
}

/// Which way a roll goes. Going forward, each moved worker is asked for the checked pages
/// before the next one follows; going back, the workers not yet moved back still run the
/// failed release, so only the probe at the end judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Back,
}

/// How the app's workers are moved into a release.
#[derive(Debug, Clone, PartialEq, Eq)]
enum How {
    /// `pm2 reload PM_ID`, one worker at a time, each proven before the next.
    EachWorker,
    /// `pm2 reload FILE --only APP` (`pm2.ecosystem`), every worker at once, proven after.
    Ecosystem(String),
    /// Nothing is live and PM2 has no such app: `pm2 start FILE --only APP`, then every
    /// instance proven.
    FirstStart(String),
}

/// The PM2 side of an activation, checked before anything changes.
struct Roller {
    driver: Box<dyn Pm2Control>,
    app: String,
    how: How,
    /// The app's instances, in PM2's order (none before a first start).
    instances: Vec<Instance>,
    endpoint: Option<Endpoint>,
    timeout: Duration,
}

struct Run<'a> {
    root: &'a DeployRoot,
    config: &'a Config,
    events: &'a mut dyn FnMut(Event<'_>),
    durations: BTreeMap<String, u64>,
    workers: Vec<WorkerReport>,
    warnings: Vec<String>,
    host: &'a dyn Processes,
    clock: &'a dyn Clock,
    /// The pages checked before the flip and after the roll, with the live release's answers.
    routes: relman_verify::RouteChecks,
}

impl Run<'_> {
    fn say(&mut self, message: String) {
        (self.events)(Event::Step(message));
    }

    fn warn(&mut self, message: String) {
        self.say(format!("warning: {message}"));
        self.warnings.push(message);
    }

    /// Runs one hook, timed as its own step when it is set, its output passed on as it comes.
    fn hook(
        &mut self,
        hooks: &mut Hooks<'_>,
        hook: Hook,
        context: &Context<'_>,
        cancel: &AtomicBool,
    ) -> Result<(), String> {
        if !hooks.will_run(hook) {
            // Records it as skipped when hooks are off.
            return hooks.run(hook, context, cancel, &mut |_| {});
        }
        self.say(format!("running the {hook} hook in `{}`", context.dir));
        self.step(hook.name(), |run| {
            let events = &mut run.events;
            hooks.run(hook, context, cancel, &mut |bytes| {
                events(Event::Output(bytes))
            })
        })
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

    /// The ecosystem file a first start uses: `pm2.ecosystem` (relative to the root), else
    /// `ROOT/ecosystem.config.js` when it exists.
    fn ecosystem_file(&self) -> Option<String> {
        let configured = &self.config.pm2.ecosystem;
        let file = if configured.is_empty() {
            self.root.ecosystem_file()
        } else {
            self.root.path().join(configured)
        };
        file.is_file().then(|| file.into_string())
    }

    /// Reads PM2's view and refuses a setup relman cannot roll safely. `first` (nothing is
    /// live yet) allows starting the app from its ecosystem file when PM2 does not run it.
    fn plan(&mut self, first: bool) -> Result<Option<Roller>> {
        let pm2_config = &self.config.pm2;
        if pm2_config.app.is_empty() {
            if !pm2_config.ecosystem.is_empty() {
                return Err(Error::App(
                    "`pm2.ecosystem` is set but `pm2.app` is empty: set `pm2.app` so relman can prove each instance".into(),
                ));
            }
            return Ok(None);
        }
        let cli = Pm2::new(&pm2_config.bin);
        let timeout = Duration::from_secs(pm2_config.timeout_secs);
        let first_start = if first { self.ecosystem_file() } else { None };
        if let Err(err) = cli.check_daemon() {
            // No daemon: `pm2 start` launches one; anything else needs it running.
            return match first_start {
                Some(file) => self
                    .first_start(Driver::new(cli, None), file, timeout)
                    .map(Some),
                None => Err(err),
            };
        }
        let session = match Session::start(&cli, timeout) {
            Ok(session) => Some(session),
            Err(err) => {
                self.say(format!("{err}; using PM2's command line for every step"));
                None
            }
        };
        let mut driver = Driver::new(cli, session);
        let instances: Vec<Instance> = driver
            .list()?
            .into_iter()
            .filter(|i| i.name == pm2_config.app)
            .collect();
        if instances.is_empty() {
            if let Some(file) = first_start {
                return self.first_start(driver, file, timeout).map(Some);
            }
            let how = if first {
                format!(
                    "write its ecosystem file with `relman init --app {} --port PORT` (relman then starts it at the first activation), or start it with `pm2 start` and cwd `{}`",
                    pm2_config.app,
                    self.root.current_link()
                )
            } else {
                format!(
                    "start it with `pm2 start` and cwd `{}`",
                    self.root.current_link()
                )
            };
            return Err(Error::App(format!(
                "PM2 has no app named \"{}\" (PM2_HOME `{}`): {how}, or fix `pm2.app`",
                pm2_config.app,
                Pm2::home().display(),
            )));
        }
        if let Some(fork) = instances.iter().find(|i| i.exec_mode != ExecMode::Cluster) {
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
        let endpoint = endpoint(self.config);
        match &endpoint {
            Some(endpoint) => self.check_port_owner(endpoint, &pm2_config.app, &instances)?,
            None => self.warn(
                "`verify.url` is not set: relman cannot see whether each new worker listens, only that it runs; set it to the app's own health URL".into(),
            ),
        }
        Ok(Some(Roller {
            driver: Box::new(driver),
            app: pm2_config.app.clone(),
            how: if pm2_config.ecosystem.is_empty() {
                How::EachWorker
            } else {
                How::Ecosystem(pm2_config.ecosystem.clone())
            },
            instances,
            endpoint,
            timeout,
        }))
    }

    /// The plan of a first start: nothing may already serve the app's port.
    fn first_start(&mut self, driver: Driver, file: String, timeout: Duration) -> Result<Roller> {
        let app = self.config.pm2.app.clone();
        self.say(format!(
            "PM2 has no app \"{app}\" and nothing is live: it will be started from `{file}`"
        ));
        let endpoint = endpoint(self.config);
        match &endpoint {
            Some(endpoint) => self.check_port_owner(endpoint, &app, &[])?,
            None => self.warn(
                "`verify.url` is not set: relman cannot see whether each new worker listens, only that it runs; set it to the app's own health URL".into(),
            ),
        }
        Ok(Roller {
            driver: Box::new(driver),
            app,
            how: How::FirstStart(file),
            instances: Vec::new(),
            endpoint,
            timeout,
        })
    }

    /// Refuses when the probed port is served by anyone but the daemon relman drives: its
    /// reloads would then change nothing users see.
    fn check_port_owner(
        &mut self,
        endpoint: &Endpoint,
        app: &str,
        instances: &[Instance],
    ) -> Result<()> {
        let daemon = Pm2::daemon_pid();
        let mut ours: Vec<u32> = instances
            .iter()
            .map(|i| i.pid)
            .filter(|p| *p != 0)
            .collect();
        ours.extend(daemon);
        let drives = format!(
            "the PM2 daemon relman drives (pid {}, PM2_HOME `{}`)",
            daemon.map_or("?".to_owned(), |pid| pid.to_string()),
            Pm2::home().display()
        );
        match daemon::port_owner(endpoint.port, &ours) {
            PortOwner::Ours => Ok(()),
            PortOwner::Nobody => {
                if instances.iter().any(|i| i.status == Pm2State::Online) {
                    self.warn(format!(
                        "nothing listens on {endpoint} (`verify.url`) although PM2 runs \"{app}\": if the app listens on another port, fix `verify.url`"
                    ));
                }
                Ok(())
            }
            PortOwner::Other(owner) => Err(Error::App(format!(
                "{endpoint} (`verify.url`) is served by {}, not by {drives}: reloading \"{app}\" here would change nothing users see; run relman as that daemon's user and with its PM2_HOME (see `relman doctor`)",
                daemon::describe(&owner)
            ))),
            PortOwner::Unseen => Err(Error::App(format!(
                "{endpoint} (`verify.url`) is served by a process relman cannot see (another user's), not by {drives}: run relman as the user whose PM2 daemon serves the app, and with its PM2_HOME"
            ))),
        }
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
            routes: self.routes.clone(),
        };
        self.say(format!("preflight: `{}`", preflight.command));
        let report = relman_verify::preflight_cancellable(&spec, cancel)
            .map_err(|err| format!("preflight failed: {err}"))?;
        let routes = if self.routes.is_empty() {
            String::new()
        } else {
            format!(" and {} route(s)", self.routes.paths.len())
        };
        self.say(format!(
            "preflight passed on port {}{routes} in {} ms",
            report.port,
            report.elapsed.as_millis()
        ));
        for failing in relman_verify::already_failing(&self.routes.baseline, &report.routes) {
            self.warn(format!(
                "route `{}` answers {} on the new release, as on the live release ({}): not counted against it",
                failing.route, failing.new, failing.live
            ));
        }
        Ok(())
    }

    /// Chooses the pages to check (`verify.routes`, else a Next.js build's static pages) and
    /// asks the live release for each, the baseline a new release is compared with.
    fn routes(&mut self, release_dir: &camino::Utf8Path, something_live: bool) {
        let paths = match &self.config.verify.routes {
            Some(paths) => paths.clone(),
            None => match relman_verify::discover_routes(
                release_dir.as_std_path(),
                relman_releases::config::MAX_ROUTES,
            ) {
                Ok(paths) => paths,
                Err(err) => {
                    self.warn(format!("no pages checked: {err}"));
                    Vec::new()
                }
            },
        };
        if paths.is_empty() {
            return;
        }
        let origin = self.origin();
        let baseline = match (&origin, something_live) {
            (Some(origin), true) => relman_verify::Baseline::Live(relman_verify::check_routes(
                origin,
                &paths,
                Duration::from_millis(self.config.verify.timeout_ms),
            )),
            _ => relman_verify::Baseline::NothingLive,
        };
        self.say(format!("pages checked: {}", paths.join(" ")));
        self.routes = relman_verify::RouteChecks { paths, baseline };
    }

    /// The live app's origin, from `verify.url`.
    fn origin(&self) -> Option<relman_verify::Origin> {
        let url = &self.config.verify.url;
        (!url.is_empty())
            .then(|| relman_verify::Origin::of(url).ok())
            .flatten()
    }

    /// The health URL, then every checked page, on the live port.
    fn probe(&mut self, id: &ReleaseId) -> Result<(), String> {
        let spec = probe_spec(self.config, Some(id));
        let report = relman_verify::probe(&spec).map_err(|err| format!("probe failed: {err}"))?;
        self.say(format!(
            "probe passed: {} answered {} after {} attempt(s)",
            spec.url, report.status, report.attempts
        ));
        let Some(origin) = self.origin().filter(|_| !self.routes.is_empty()) else {
            return Ok(());
        };
        let routes = relman_verify::RouteProbeSpec {
            origin,
            routes: self.routes.clone(),
            attempts: spec.attempts,
            interval: spec.interval,
            timeout: spec.timeout,
        };
        relman_verify::probe_routes(&routes).map_err(|err| format!("probe failed: {err}"))?;
        self.say(format!(
            "pages answered below 500 as before: {}",
            self.routes.paths.join(" ")
        ));
        Ok(())
    }

    /// Moves `which` (instances of the roller, in its order) to `id`, proving each before the
    /// next; an ecosystem reload moves them all at once and proves them after.
    fn roll(
        &mut self,
        roller: &mut Roller,
        id: &ReleaseId,
        which: &[Instance],
        direction: Direction,
    ) -> Result<(), String> {
        let release_dir = resolved(self.root.release_dir(id).into_std_path_buf());
        let releases = resolved(self.root.releases_dir().into_std_path_buf());
        let target = Target {
            dir: &release_dir,
            releases: &releases,
        };
        let watch = Watch {
            endpoint: roller.endpoint.as_ref(),
            timeout: roller.timeout,
        };
        let env = [("RELMAN_RELEASE", id.as_str())];
        let mut snapshot = roller.driver.list().map_err(|e| e.to_string())?;
        if let How::Ecosystem(ecosystem) = roller.how.clone() {
            self.say(format!("reloading through `{ecosystem}`"));
            let started = self.clock.now();
            roller
                .driver
                .reload_ecosystem(&ecosystem, &roller.app, &env)
                .map_err(|e| e.to_string())?;
            let reloaded = Reloaded {
                started,
                returned: self.clock.now(),
            };
            for instance in which {
                let before = latest(&snapshot, instance);
                self.prove_started(roller, &before, id, reloaded, target)?;
            }
            return Ok(());
        }
        for instance in which {
            let before = latest(&snapshot, instance);
            let was = match before.pid {
                0 => format!("{}, no process", before.status),
                pid => format!("pid {pid}"),
            };
            self.say(format!(
                "worker {} ({was}): reloading into {id}",
                before.pm_id
            ));
            let started = self.clock.now();
            let reload = roller.driver.reload(before.pm_id, &env);
            let reloaded = Reloaded {
                started,
                returned: self.clock.now(),
            };
            let proven = match reload {
                Ok(()) => proof::prove(
                    roller.driver.as_mut(),
                    self.host,
                    self.clock,
                    &before,
                    reloaded,
                    target,
                    watch,
                )
                .map_err(|f| f.describe(&before, id)),
                Err(err) => Err(format!("worker {}: {err}", before.pm_id)),
            };
            self.record_worker(&before, id, proven.as_ref().ok(), started);
            let proven = proven?;
            failpoint::hit("activate-after-worker");
            self.say(proven_line(&before, &proven, id, roller, started));
            if direction == Direction::Forward
                && let Some(endpoint) = &roller.endpoint
            {
                self.check_worker(&before, proven.pid, id, endpoint)?;
            }
            snapshot = proven.instances;
        }
        Ok(())
    }

    /// Proves one worker that PM2 moved or started (`reloaded` says when), records it in the
    /// report and says so: the shared tail of an ecosystem reload and a first start.
    fn prove_started(
        &mut self,
        roller: &mut Roller,
        before: &Instance,
        id: &ReleaseId,
        reloaded: Reloaded,
        target: Target<'_>,
    ) -> Result<proof::Proven, String> {
        let watch = Watch {
            endpoint: roller.endpoint.as_ref(),
            timeout: roller.timeout,
        };
        let proven = proof::prove(
            roller.driver.as_mut(),
            self.host,
            self.clock,
            before,
            reloaded,
            target,
            watch,
        );
        self.record_worker(before, id, proven.as_ref().ok(), reloaded.started);
        let proven = proven.map_err(|f| f.describe(before, id))?;
        self.say(proven_line(before, &proven, id, roller, reloaded.started));
        Ok(proven)
    }

    /// Starts the app from its ecosystem file and proves every instance it runs, as a roll
    /// proves each reloaded worker (each is also asked for the health URL and the pages).
    fn start(&mut self, roller: &mut Roller, id: &ReleaseId, file: &str) -> Result<(), String> {
        let release_dir = resolved(self.root.release_dir(id).into_std_path_buf());
        let releases = resolved(self.root.releases_dir().into_std_path_buf());
        let target = Target {
            dir: &release_dir,
            releases: &releases,
        };
        let app = roller.app.clone();
        self.say(format!("starting \"{app}\" from `{file}` in {id}"));
        let started = self.clock.now();
        roller
            .driver
            .start_ecosystem(file, &app, &[("RELMAN_RELEASE", id.as_str())])
            .map_err(|e| e.to_string())?;
        let reloaded = Reloaded {
            started,
            returned: self.clock.now(),
        };
        let instances: Vec<Instance> = roller
            .driver
            .list()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|i| i.name == app)
            .collect();
        if instances.is_empty() {
            return Err(format!(
                "`pm2 start {file} --only {app}` started nothing named \"{app}\": name the app \"{app}\" in the ecosystem file, or fix `pm2.app`"
            ));
        }
        if let Some(fork) = instances.iter().find(|i| i.exec_mode != ExecMode::Cluster) {
            self.warn(format!(
                "app \"{app}\" runs in {} (instance {}): its reloads will be restarts that drop requests; set `exec_mode: \"cluster\"` and `instances: 2` in `{file}`, then `pm2 delete {app}` and activate again",
                fork.exec_mode, fork.pm_id
            ));
        }
        roller.instances = instances.clone();
        for instance in &instances {
            // A worker that did not exist before: nothing to compare its pid and restarts with.
            let before = Instance {
                pid: 0,
                status: Pm2State::Stopped,
                restarts: 0,
                ..instance.clone()
            };
            let proven = self.prove_started(roller, &before, id, reloaded, target)?;
            if let Some(endpoint) = &roller.endpoint {
                self.check_worker(&before, proven.pid, id, endpoint)?;
            }
        }
        self.say(format!(
            "PM2 now runs \"{app}\": to bring it back after a reboot, run `pm2 save` (and `pm2 startup` once per host)"
        ));
        Ok(())
    }

    /// Asks the new worker itself, on a connection the cluster primary handed to it, for the
    /// health URL (with the probe's checks and patience) and every checked page (held to the
    /// live release's answers), before the next worker follows it: a release that serves but
    /// fails is caught with one worker on it, even on an app without a preflight.
    fn check_worker(
        &mut self,
        worker: &Instance,
        pid: u32,
        id: &ReleaseId,
        endpoint: &Endpoint,
    ) -> Result<(), String> {
        let verify = &self.config.verify;
        let timeout = Duration::from_millis(verify.timeout_ms);
        let unreachable = |target: &str| {
            format!(
                "worker {} (pid {pid}) of {id} took no connection on {endpoint} to be asked for `{target}`",
                worker.pm_id
            )
        };
        let health = health_target(&verify.url);
        let needle = body_contains(self.config, id);
        // The probe's patience, `attempts` tries `interval_ms` apart, bounds the whole check by
        // time too: a worker that hangs costs that, not `attempts` × `timeout_ms`.
        let attempts = verify.attempts.max(1);
        let deadline = self.clock.now()
            + Duration::from_millis(verify.interval_ms.saturating_mul(u64::from(attempts)));
        let mut last = String::new();
        let mut made = 0;
        for attempt in 1..=attempts {
            made = attempt;
            let reply = self
                .host
                .ask(pid, endpoint, &health, timeout)
                .ok_or_else(|| unreachable(&health))?;
            last = match &reply {
                Ok(response) if response.status != verify.status => {
                    format!("status {}, expected {}", response.status, verify.status)
                }
                Ok(response) => match &needle {
                    Some(needle)
                        if !String::from_utf8_lossy(&response.bytes).contains(needle.as_str()) =>
                    {
                        format!("body does not contain {needle:?}")
                    }
                    _ => String::new(),
                },
                Err(failure) => failure.to_string(),
            };
            if last.is_empty() || self.clock.now() >= deadline {
                break;
            }
            if attempt < attempts {
                self.clock.sleep(Duration::from_millis(verify.interval_ms));
            }
        }
        if !last.is_empty() {
            return Err(format!(
                "worker {} (pid {pid}) of {id} failed its health check `{health}` after {made} attempt(s), last: {last}",
                worker.pm_id
            ));
        }
        let mut answers = Vec::new();
        for route in &self.routes.paths {
            let reply = self
                .host
                .ask(pid, endpoint, route, timeout)
                .ok_or_else(|| unreachable(route))?;
            answers.push((route.clone(), Response::answer(&reply)));
        }
        match relman_verify::regressions(&self.routes.baseline, &answers).first() {
            None => Ok(()),
            Some(regression) => Err(format!(
                "worker {} (pid {pid}) of {id} answered {} for page `{}`{}",
                worker.pm_id,
                regression.new,
                regression.route,
                regression
                    .live
                    .map(|status| format!(" (the previous release answered {status})"))
                    .unwrap_or_default()
            )),
        }
    }

    fn record_worker(
        &mut self,
        before: &Instance,
        id: &ReleaseId,
        proven: Option<&proof::Proven>,
        started: Instant,
    ) {
        self.workers.push(WorkerReport {
            pm_id: before.pm_id,
            old_pid: before.pid,
            new_pid: proven.map_or(0, |p| p.pid),
            release: id.clone(),
            serving: proven.is_some_and(|p| p.serving),
            ms: millis(self.clock.now().saturating_duration_since(started)),
        });
    }
}

fn proven_line(
    before: &Instance,
    proven: &proof::Proven,
    id: &ReleaseId,
    roller: &Roller,
    started: Instant,
) -> String {
    let serving = match (&roller.endpoint, proven.serving) {
        (Some(endpoint), true) => format!(" and serves {endpoint}"),
        _ => String::new(),
    };
    format!(
        "worker {} (pid {}) runs {id}{serving} ({} ms)",
        before.pm_id,
        proven.pid,
        millis(started.elapsed())
    )
}

/// The instance's latest entry in `snapshot`, or the planned one if PM2 no longer lists it.
fn latest(snapshot: &[Instance], instance: &Instance) -> Instance {
    snapshot
        .iter()
        .find(|i| i.pm_id == instance.pm_id)
        .unwrap_or(instance)
        .clone()
}

/// A path resolved the way `/proc/PID/cwd` shows it (through any symlinked parent).
fn resolved(path: PathBuf) -> PathBuf {
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// The probe as the config describes it, `{release}` filled in with `live`; with nothing live
/// (`None`) the body is not checked, there being no release for it to name.
pub fn probe_spec(config: &Config, live: Option<&ReleaseId>) -> relman_verify::ProbeSpec {
    let verify = &config.verify;
    relman_verify::ProbeSpec {
        url: verify.url.clone(),
        status: verify.status,
        body_contains: live.and_then(|id| body_contains(config, id)),
        attempts: verify.attempts,
        interval: Duration::from_millis(verify.interval_ms),
        timeout: Duration::from_millis(verify.timeout_ms),
    }
}

/// The path and query of the health URL, what is asked of each worker.
fn health_target(url: &str) -> String {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|uri| uri.path_and_query().map(|p| p.as_str().to_owned()))
        .filter(|target| !target.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

fn body_contains(config: &Config, id: &ReleaseId) -> Option<String> {
    let text = &config.verify.body_contains;
    (!text.is_empty()).then(|| text.replace("{release}", id.as_str()))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! The roll and the way back against a fake cluster: PM2, the workers' directories and
    //! their sockets modelled together, on a clock that only moves when slept on.

    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::path::Path;
    use std::rc::Rc;

    use super::*;
    use crate::proof::fakes::{FakeClock, instance};

    struct Cluster {
        instances: Vec<Instance>,
        cwd: HashMap<u32, PathBuf>,
        next_pid: u32,
        /// Releases whose workers run but never listen.
        silent: HashSet<String>,
        /// Every reload: (pm_id, release).
        reloads: Vec<(u64, String)>,
        /// (release, route) pairs that answer 500.
        broken_pages: HashSet<(String, String)>,
        /// Releases whose workers kill the PM2 daemon as they boot: PM2 forgets every app.
        kill_daemon: HashSet<String>,
        releases: PathBuf,
    }

    impl Cluster {
        /// A new process, its working directory in `release`; its pid.
        fn spawn(&mut self, release: &str) -> u32 {
            self.next_pid += 1;
            let pid = self.next_pid;
            let dir = self.releases.join(release);
            self.cwd.insert(pid, dir);
            pid
        }
    }

    /// The release a reload or start is for, from the environment relman gives it.
    fn release_of(env: &[(&str, &str)]) -> String {
        env.iter()
            .find(|(k, _)| *k == "RELMAN_RELEASE")
            .map(|(_, v)| (*v).to_owned())
            .expect("RELMAN_RELEASE")
    }

    struct ClusterPm2(Rc<RefCell<Cluster>>);
    struct ClusterHost(Rc<RefCell<Cluster>>);

    impl Pm2Control for ClusterPm2 {
        fn list(&mut self) -> Result<Vec<Instance>> {
            Ok(self.0.borrow().instances.clone())
        }

        fn reload(&mut self, pm_id: u64, env: &[(&str, &str)]) -> Result<()> {
            let mut cluster = self.0.borrow_mut();
            let release = release_of(env);
            if cluster.kill_daemon.contains(&release) {
                cluster.instances.clear();
                return Err(crate::Error::Pm2(
                    "the PM2 daemon (pid 1) died while relman waited for its answer".into(),
                ));
            }
            let pid = cluster.spawn(&release);
            cluster.reloads.push((pm_id, release));
            let worker = cluster
                .instances
                .iter_mut()
                .find(|i| i.pm_id == pm_id)
                .expect("a known pm_id");
            worker.pid = pid;
            worker.restarts += 1;
            worker.status = Pm2State::Online;
            Ok(())
        }

        fn reload_ecosystem(&mut self, _: &str, _: &str, _: &[(&str, &str)]) -> Result<()> {
            unreachable!("not used here")
        }

        fn start_ecosystem(&mut self, _: &str, _: &str, env: &[(&str, &str)]) -> Result<()> {
            let mut cluster = self.0.borrow_mut();
            let release = release_of(env);
            for pm_id in 0..2 {
                let pid = cluster.spawn(&release);
                cluster
                    .instances
                    .push(instance(pm_id, pid, Pm2State::Online, 0));
            }
            Ok(())
        }
    }

    impl Processes for ClusterHost {
        fn cwd(&self, pid: u32) -> Option<PathBuf> {
            self.0.borrow().cwd.get(&pid).cloned()
        }

        fn serves(&self, pid: u32, _: &Endpoint) -> bool {
            let cluster = self.0.borrow();
            let release = cluster.cwd.get(&pid).and_then(|d| d.file_name());
            release.is_some_and(|r| !cluster.silent.contains(r.to_str().unwrap()))
        }

        fn ask(
            &self,
            pid: u32,
            endpoint: &Endpoint,
            route: &str,
            _: Duration,
        ) -> Option<crate::host::Reply> {
            if !self.serves(pid, endpoint) {
                return None;
            }
            let cluster = self.0.borrow();
            let release = cluster.cwd[&pid]
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let broken = cluster.broken_pages.contains(&(release, route.to_owned()));
            let status = if broken { 500 } else { 200 };
            Some(Ok(Response {
                status,
                bytes: format!("HTTP/1.1 {status} X\r\n\r\n").into_bytes(),
            }))
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        root: DeployRoot,
        cluster: Rc<RefCell<Cluster>>,
        clock: FakeClock,
    }

    /// A root with releases `a` and `b`, `a` live on two workers.
    fn fixture(silent: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8Path::from_path(dir.path()).unwrap();
        for id in ["a", "b"] {
            std::fs::create_dir_all(path.join("releases").join(id)).unwrap();
        }
        let root = DeployRoot::open(path).unwrap();
        flip(&root, &ReleaseId::parse("a").unwrap()).unwrap();
        let releases = resolved(root.releases_dir().into_std_path_buf());
        let mut cwd = HashMap::new();
        cwd.insert(10, releases.join("a"));
        cwd.insert(11, releases.join("a"));
        let cluster = Cluster {
            instances: vec![
                instance(0, 10, Pm2State::Online, 0),
                instance(1, 11, Pm2State::Online, 0),
            ],
            cwd,
            next_pid: 100,
            silent: silent.iter().map(|s| (*s).to_owned()).collect(),
            reloads: Vec::new(),
            broken_pages: HashSet::new(),
            kill_daemon: HashSet::new(),
            releases,
        };
        Fixture {
            _dir: dir,
            root,
            cluster: Rc::new(RefCell::new(cluster)),
            clock: FakeClock::new(),
        }
    }

    impl Fixture {
        /// Rolls `a` → `to` the way `activate` does, going back on a failure.
        fn activate(&self, to: &str) -> Result<(), String> {
            self.activate_checking(to, &[])
        }

        /// The same, with `routes` checked (the live release answers 200 for each).
        fn activate_checking(&self, to: &str, routes: &[&str]) -> Result<(), String> {
            let config = Config::default();
            let host = ClusterHost(Rc::clone(&self.cluster));
            let mut events = |_: Event<'_>| {};
            let mut run = Run {
                root: &self.root,
                config: &config,
                events: &mut events,
                durations: BTreeMap::new(),
                workers: Vec::new(),
                warnings: Vec::new(),
                host: &host,
                clock: &self.clock,
                routes: relman_verify::RouteChecks {
                    paths: routes.iter().map(|r| (*r).to_owned()).collect(),
                    baseline: relman_verify::Baseline::Live(
                        routes
                            .iter()
                            .map(|r| ((*r).to_owned(), relman_verify::Answer::Status(200)))
                            .collect(),
                    ),
                },
            };
            let mut roller = Roller {
                driver: Box::new(ClusterPm2(Rc::clone(&self.cluster))),
                app: "web".into(),
                how: How::EachWorker,
                instances: self.cluster.borrow().instances.clone(),
                endpoint: Some(Endpoint {
                    host: "127.0.0.1".into(),
                    port: 3000,
                }),
                timeout: Duration::from_secs(60),
            };
            let to = ReleaseId::parse(to).unwrap();
            let a = ReleaseId::parse("a").unwrap();
            flip(&self.root, &to).unwrap();
            let all = roller.instances.clone();
            match run.roll(&mut roller, &to, &all, Direction::Forward) {
                Ok(()) => Ok(()),
                Err(why) => {
                    way_back(&mut run, Some(&mut roller), &to, &a, false)
                        .map_err(|back| format!("{why}; back: {back}"))?;
                    Err(why)
                }
            }
        }

        fn reloads(&self) -> Vec<(u64, String)> {
            self.cluster.borrow().reloads.clone()
        }

        fn releases_of_workers(&self) -> Vec<String> {
            let cluster = self.cluster.borrow();
            cluster
                .instances
                .iter()
                .map(|i| {
                    let dir = &cluster.cwd[&i.pid];
                    dir.file_name().unwrap().to_string_lossy().into_owned()
                })
                .collect()
        }

        fn current(&self) -> PathBuf {
            std::fs::read_link(self.root.current_link()).unwrap()
        }
    }

    fn pairs(list: &[(u64, &str)]) -> Vec<(u64, String)> {
        list.iter().map(|(id, r)| (*id, (*r).to_owned())).collect()
    }

    #[test]
    fn a_healthy_release_moves_every_worker_in_order() {
        let fixture = fixture(&[]);
        fixture.activate("b").unwrap();
        assert_eq!(fixture.reloads(), pairs(&[(0, "b"), (1, "b")]));
        assert_eq!(fixture.releases_of_workers(), ["b", "b"]);
        assert_eq!(fixture.current(), Path::new("releases/b"));
    }

    #[test]
    fn a_first_worker_that_never_listens_never_takes_the_others_down() {
        let fixture = fixture(&["b"]);
        let why = fixture.activate("b").unwrap_err();
        assert!(
            why.contains("worker 0") && why.contains("never served"),
            "{why}"
        );
        // Worker 1 was never touched; worker 0 went to b and straight back to a.
        assert_eq!(fixture.reloads(), pairs(&[(0, "b"), (0, "a")]));
        assert_eq!(fixture.releases_of_workers(), ["a", "a"]);
        assert_eq!(fixture.cluster.borrow().instances[1].pid, 11);
        assert_eq!(fixture.current(), Path::new("releases/a"));
    }

    #[test]
    fn a_broken_page_is_caught_on_the_first_worker_and_never_blamed_on_the_way_back() {
        let fixture = fixture(&[]);
        fixture
            .cluster
            .borrow_mut()
            .broken_pages
            .insert(("b".into(), "/pricing".into()));
        let why = fixture
            .activate_checking("b", &["/", "/pricing"])
            .unwrap_err();
        assert!(
            why.contains("worker 0") && why.contains("answered 500 for page `/pricing`"),
            "{why}"
        );
        assert_eq!(fixture.reloads(), pairs(&[(0, "b"), (0, "a")]));
        assert_eq!(fixture.releases_of_workers(), ["a", "a"]);
    }

    #[test]
    fn a_release_failing_its_health_check_is_caught_on_the_first_worker() {
        // Health is `/` in the fake (no `verify.url`): it answers 500 on `b`.
        let fixture = fixture(&[]);
        fixture
            .cluster
            .borrow_mut()
            .broken_pages
            .insert(("b".into(), "/".into()));
        let why = fixture.activate("b").unwrap_err();
        assert!(
            why.contains("worker 0") && why.contains("failed its health check `/`"),
            "{why}"
        );
        assert!(why.contains("last: status 500, expected 200"), "{why}");
        assert_eq!(fixture.reloads(), pairs(&[(0, "b"), (0, "a")]));
    }

    #[test]
    fn a_way_back_that_cannot_be_proven_is_reported() {
        let fixture = fixture(&["a", "b"]);
        let why = fixture.activate("b").unwrap_err();
        assert!(why.contains("back: worker 0"), "{why}");
    }

    #[test]
    fn a_daemon_killed_mid_roll_is_started_again_in_the_release_going_back() {
        let fixture = fixture(&[]);
        fixture.cluster.borrow_mut().kill_daemon.insert("b".into());
        std::fs::write(fixture.root.ecosystem_file(), "module.exports = {}").unwrap();
        let why = fixture.activate("b").unwrap_err();
        assert!(why.contains("daemon (pid 1) died"), "{why}");
        // Started again from the ecosystem file, both workers in `a` and proven.
        assert_eq!(fixture.releases_of_workers(), ["a", "a"]);
        assert_eq!(fixture.current(), Path::new("releases/a"));
    }

    #[test]
    fn a_daemon_killed_mid_roll_without_an_ecosystem_file_is_a_failed_way_back() {
        let fixture = fixture(&[]);
        fixture.cluster.borrow_mut().kill_daemon.insert("b".into());
        let why = fixture.activate("b").unwrap_err();
        assert!(
            why.contains("back: PM2 no longer runs \"web\" (its daemon died, or the app was deleted) and there is no ecosystem file to start it from: start it in a with `pm2 start`"),
            "{why}"
        );
    }
}
