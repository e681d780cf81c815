//! The proof of one worker after its reload: a new process, `online`, running in the new
//! release, steady, and serving the app's port.
//!
//! PM2's word that a reload is done proves none of it. Its reload returns when the new worker
//! listens, but also when `listen_timeout` runs out without a listen, and then it stops the old
//! worker anyway; for a worker that was down it returns at the fork. So relman looks for
//! itself: PM2's list for the process and its restarts, `/proc/PID/cwd` for the release, and
//! the worker's own sockets for the listen (a connection on the app's port, which the cluster
//! primary only hands to workers that listen).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use relman_releases::ReleaseId;

use crate::host::{Clock, Endpoint, Processes};
use crate::pm2::{Instance, Pm2Control, Pm2State};

/// How often PM2's list is read while waiting for a worker.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// How long a new worker may stay outside every release before that counts as its real
/// directory (PM2 changes into `pm_cwd` within milliseconds of the fork).
pub(crate) const OUTSIDE_GRACE: Duration = Duration::from_secs(2);

/// How long after PM2's reload returned (or its `listen_timeout` passed, whichever is later) a
/// worker may take to show that it serves: the measurement's own slack, not the app's.
pub(crate) const LISTEN_GRACE: Duration = Duration::from_secs(3);

/// Restarts since the reload that make a crash loop.
const CRASH_LOOP_RESTARTS: u64 = 3;

/// The release a worker must be proven in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// `ROOT/releases/ID`, resolved like `/proc/PID/cwd` is.
    pub(crate) dir: &'a Path,
    /// `ROOT/releases`, resolved.
    pub(crate) releases: &'a Path,
}

/// What the proof watches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch<'a> {
    /// Where users reach the app; `None`: the listen cannot be seen.
    pub(crate) endpoint: Option<&'a Endpoint>,
    /// The bound of the whole proof (`pm2.timeout_secs`), from the start of the reload.
    pub(crate) timeout: Duration,
}

/// When the reload of this worker started and when PM2 said it was done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reloaded {
    pub(crate) started: Instant,
    pub(crate) returned: Instant,
}

/// A proven worker.
#[derive(Debug, Clone)]
pub(crate) struct Proven {
    pub(crate) pid: u32,
    /// Whether it was seen serving the app's port (`false` when no endpoint is known).
    pub(crate) serving: bool,
    /// PM2's list at the moment of the proof.
    pub(crate) instances: Vec<Instance>,
}

/// Why a worker could not be proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// PM2 did not answer, or refused.
    Pm2(String),
    /// The instance is gone from PM2's list.
    Disappeared,
    /// PM2 stopped trying: `errored`, `stopped` or exited for good.
    Down { state: Pm2State, restarts: u64 },
    /// It keeps crashing.
    CrashLoop { restarts: u64 },
    /// It runs in another release than the one it was reloaded into.
    OtherRelease { pid: u32, cwd: PathBuf },
    /// It runs outside every release.
    Outside { pid: u32, cwd: PathBuf },
    /// It runs in the release but does not serve the app's port.
    NeverServed {
        pid: u32,
        endpoint: String,
        listen_timeout: Duration,
    },
    /// None of the above was settled within `pm2.timeout_secs`.
    TimedOut {
        timeout: Duration,
        state: Pm2State,
        pid: u32,
        restarts: u64,
    },
}

impl Failure {
    /// The operator's sentence, naming the worker, the release and where to look.
    pub(crate) fn describe(&self, worker: &Instance, id: &ReleaseId) -> String {
        let pm_id = worker.pm_id;
        let app = &worker.name;
        let pm_cwd = worker.pm_cwd.as_deref().unwrap_or("?");
        match self {
            Failure::Pm2(message) => format!("worker {pm_id}: {message}"),
            Failure::Disappeared => {
                format!("worker {pm_id} disappeared from PM2 during the reload into {id}")
            }
            Failure::Down { state, restarts } => format!(
                "worker {pm_id} of {id} is {state} after the reload ({restarts} restarts): the new release does not stay up under PM2, see `pm2 logs {app}`"
            ),
            Failure::CrashLoop { restarts } => format!(
                "worker {pm_id} of {id} is crash-looping ({restarts} restarts since the reload), see `pm2 logs {app}`"
            ),
            Failure::OtherRelease { pid, cwd } | Failure::Outside { pid, cwd } => format!(
                "worker {pm_id} (pid {pid}) runs in `{}`, not in {id}: PM2 starts it in `{pm_cwd}`; start the app with cwd `current` (see `relman doctor`)",
                cwd.display()
            ),
            Failure::NeverServed {
                pid,
                endpoint,
                listen_timeout,
            } => format!(
                "worker {pm_id} (pid {pid}) of {id} runs but never served {endpoint} (PM2's listen_timeout is {} ms): the new release does not start listening under PM2, see `pm2 logs {app}`",
                listen_timeout.as_millis()
            ),
            Failure::TimedOut {
                timeout,
                state,
                pid,
                restarts,
            } => format!(
                "worker {pm_id} did not come up in {id} within `pm2.timeout_secs` ({} s); last seen: status {state}, pid {pid}, restarts {restarts}",
                timeout.as_secs()
            ),
        }
    }
}

/// Waits until the instance `before` was reloaded into runs a new process that is `online`,
/// in the target release, steady, and serving the endpoint.
///
/// Steady: a worker that was online and restarted at most once (the reload itself) counts at
/// the first look; one that was down, or restarted since, must be seen with the same pid on two
/// looks in a row, so a crash loop cannot pass between two crashes.
pub(crate) fn prove(
    pm2: &mut dyn Pm2Control,
    host: &dyn Processes,
    clock: &dyn Clock,
    before: &Instance,
    reloaded: Reloaded,
    target: Target<'_>,
    watch: Watch<'_>,
) -> Result<Proven, Failure> {
    let deadline = reloaded.started + watch.timeout;
    // PM2 waits `listen_timeout` for the listen; a worker that was down is forked and left
    // to boot, so the same patience counts from the start of the reload.
    let listen_deadline = reloaded
        .returned
        .max(reloaded.started + before.listen_timeout())
        + LISTEN_GRACE;
    let mut seen_online: Option<u32> = None;
    let mut outside: Option<(u32, Instant)> = None;
    loop {
        let instances = pm2.list().map_err(|err| Failure::Pm2(err.to_string()))?;
        let Some(now) = instances.iter().find(|i| i.pm_id == before.pm_id) else {
            return Err(Failure::Disappeared);
        };
        if matches!(
            now.status,
            Pm2State::Errored | Pm2State::Stopped | Pm2State::OneLaunch
        ) {
            return Err(Failure::Down {
                state: now.status,
                restarts: now.restarts,
            });
        }
        let restarts = now.restarts.saturating_sub(before.restarts);
        if restarts >= CRASH_LOOP_RESTARTS {
            return Err(Failure::CrashLoop { restarts });
        }
        if now.status == Pm2State::Online && now.pid != 0 && now.pid != before.pid {
            match host.cwd(now.pid) {
                Some(cwd) if cwd.starts_with(target.dir) => {
                    let settled = before.status == Pm2State::Online && restarts <= 1;
                    let steady = settled || seen_online == Some(now.pid);
                    seen_online = Some(now.pid);
                    let serving = watch.endpoint.map(|e| host.serves(now.pid, e));
                    match serving {
                        Some(false) if clock.now() >= listen_deadline.min(deadline) => {
                            return Err(Failure::NeverServed {
                                pid: now.pid,
                                endpoint: watch.endpoint.map(|e| e.to_string()).unwrap_or_default(),
                                listen_timeout: before.listen_timeout(),
                            });
                        }
                        Some(false) => {}
                        serving if steady => {
                            let pid = now.pid;
                            return Ok(Proven {
                                pid,
                                serving: serving.is_some(),
                                instances,
                            });
                        }
                        _ => {}
                    }
                }
                Some(cwd) if cwd.starts_with(target.releases) => {
                    return Err(Failure::OtherRelease { pid: now.pid, cwd });
                }
                // Not in any release yet: a fresh fork still has the daemon's directory until
                // PM2's process container changes into `pm_cwd`, within milliseconds. A worker
                // that stays outside is started somewhere else entirely.
                Some(cwd) => {
                    seen_online = None;
                    match outside {
                        Some((pid, since))
                            if pid == now.pid && clock.now() - since >= OUTSIDE_GRACE =>
                        {
                            return Err(Failure::Outside { pid: now.pid, cwd });
                        }
                        Some((pid, _)) if pid == now.pid => {}
                        _ => outside = Some((now.pid, clock.now())),
                    }
                }
                None => seen_online = None,
            }
        } else {
            seen_online = None;
        }
        if clock.now() >= deadline {
            return Err(Failure::TimedOut {
                timeout: watch.timeout,
                state: now.status,
                pid: now.pid,
                restarts: now.restarts,
            });
        }
        clock.sleep(POLL);
    }
}

#[cfg(test)]
pub(crate) mod fakes {
    //! Scripted stand-ins for PM2, the host and the clock.

    use std::cell::{Cell, RefCell};
    use std::collections::{HashMap, VecDeque};

    use super::*;
    use crate::error::{Error, Result};
    use crate::pm2::ExecMode;

    /// An instance of app `web`.
    pub(crate) fn instance(pm_id: u64, pid: u32, status: Pm2State, restarts: u64) -> Instance {
        Instance {
            pm_id,
            name: "web".into(),
            pid,
            status,
            restarts,
            pm_cwd: Some("/srv/web/current".into()),
            exec_mode: ExecMode::Cluster,
            kill_timeout: Some(10_000),
            listen_timeout: None,
            wait_ready: false,
            script: Some("/srv/web/current/server.js".into()),
            node_version: Some("20.20.2".into()),
            actions_key: false,
        }
    }

    /// PM2 answering from a script: each `list` takes the next answer (the last one repeats);
    /// reloads are recorded and answered from their own script (default: ok).
    #[derive(Default)]
    pub(crate) struct FakePm2 {
        pub(crate) lists: VecDeque<Result<Vec<Instance>, String>>,
        pub(crate) reload_answers: VecDeque<Result<(), String>>,
        pub(crate) reloads: Vec<(u64, Vec<(String, String)>)>,
        pub(crate) lists_read: usize,
    }

    impl FakePm2 {
        pub(crate) fn listing(lists: Vec<Vec<Instance>>) -> FakePm2 {
            FakePm2 {
                lists: lists.into_iter().map(Ok).collect(),
                ..FakePm2::default()
            }
        }
    }

    impl Pm2Control for FakePm2 {
        fn list(&mut self) -> Result<Vec<Instance>> {
            self.lists_read += 1;
            let next = if self.lists.len() > 1 {
                self.lists.pop_front()
            } else {
                self.lists.front().cloned()
            };
            next.expect("a scripted list").map_err(Error::Pm2)
        }

        fn reload(&mut self, pm_id: u64, env: &[(&str, &str)]) -> Result<()> {
            self.reloads.push((
                pm_id,
                env.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ));
            self.reload_answers
                .pop_front()
                .unwrap_or(Ok(()))
                .map_err(Error::Pm2)
        }

        fn reload_ecosystem(
            &mut self,
            _ecosystem: &str,
            _app: &str,
            _env: &[(&str, &str)],
        ) -> Result<()> {
            Ok(())
        }

        fn start_ecosystem(
            &mut self,
            _ecosystem: &str,
            _app: &str,
            _env: &[(&str, &str)],
        ) -> Result<()> {
            Ok(())
        }
    }

    /// Processes by pid: where each runs, and which serve the port (from the n-th look on).
    #[derive(Default)]
    pub(crate) struct FakeHost {
        pub(crate) cwds: RefCell<HashMap<u32, VecDeque<PathBuf>>>,
        pub(crate) serving: RefCell<HashMap<u32, usize>>,
        pub(crate) looks: RefCell<HashMap<u32, usize>>,
    }

    impl FakeHost {
        /// `pid` runs in `cwd`: each call adds the directory of one more look (the last one
        /// stays).
        pub(crate) fn runs(&self, pid: u32, cwd: &str) {
            self.cwds
                .borrow_mut()
                .entry(pid)
                .or_default()
                .push_back(PathBuf::from(cwd));
        }

        /// `pid` serves from its `look`-th look on (1: at once).
        pub(crate) fn serves_from(&self, pid: u32, look: usize) {
            self.serving.borrow_mut().insert(pid, look);
        }
    }

    impl Processes for FakeHost {
        fn cwd(&self, pid: u32) -> Option<PathBuf> {
            let mut cwds = self.cwds.borrow_mut();
            let looks = cwds.get_mut(&pid)?;
            if looks.len() > 1 {
                looks.pop_front()
            } else {
                looks.front().cloned()
            }
        }

        fn serves(&self, pid: u32, _endpoint: &Endpoint) -> bool {
            let mut looks = self.looks.borrow_mut();
            let look = looks.entry(pid).or_default();
            *look += 1;
            self.serving
                .borrow()
                .get(&pid)
                .is_some_and(|from| *look >= *from)
        }

        fn ask(
            &self,
            pid: u32,
            endpoint: &Endpoint,
            _route: &str,
            _timeout: Duration,
        ) -> Option<crate::host::Reply> {
            self.serves(pid, endpoint).then(|| {
                Ok(crate::host::Response {
                    status: 200,
                    bytes: b"HTTP/1.1 200 OK\r\n\r\nok".to_vec(),
                })
            })
        }
    }

    /// A clock that only moves when slept on.
    pub(crate) struct FakeClock {
        pub(crate) now: Cell<Instant>,
    }

    impl FakeClock {
        pub(crate) fn new() -> FakeClock {
            FakeClock {
                now: Cell::new(Instant::now()),
            }
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.now.get()
        }

        fn sleep(&self, duration: Duration) {
            self.now.set(self.now.get() + duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fakes::*;
    use super::*;

    const RELEASE: &str = "/srv/web/releases/b";
    const RELEASES: &str = "/srv/web/releases";

    struct Case {
        pm2: FakePm2,
        host: FakeHost,
        clock: FakeClock,
        before: Instance,
        endpoint: Option<Endpoint>,
    }

    impl Case {
        fn new(lists: Vec<Vec<Instance>>) -> Case {
            Case {
                pm2: FakePm2::listing(lists),
                host: FakeHost::default(),
                clock: FakeClock::new(),
                before: instance(0, 100, Pm2State::Online, 0),
                endpoint: Some(Endpoint {
                    host: "127.0.0.1".into(),
                    port: 3000,
                }),
            }
        }

        /// Runs the proof as if PM2's reload took `reload_took`; returns the outcome and the
        /// time it took on the fake clock.
        fn prove(&mut self, reload_took: Duration) -> (Result<Proven, Failure>, Duration) {
            let started = self.clock.now();
            self.clock.sleep(reload_took);
            let reloaded = Reloaded {
                started,
                returned: self.clock.now(),
            };
            let result = prove(
                &mut self.pm2,
                &self.host,
                &self.clock,
                &self.before,
                reloaded,
                Target {
                    dir: Path::new(RELEASE),
                    releases: Path::new(RELEASES),
                },
                Watch {
                    endpoint: self.endpoint.as_ref(),
                    timeout: Duration::from_secs(60),
                },
            );
            (result, self.clock.now() - started)
        }
    }

    #[test]
    fn a_new_worker_in_the_release_that_serves_is_proven_at_the_first_look() {
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 1)]]);
        case.host.runs(101, RELEASE);
        case.host.serves_from(101, 1);
        let (result, _) = case.prove(Duration::from_millis(300));
        let proven = result.unwrap();
        assert_eq!((proven.pid, proven.serving), (101, true));
        assert_eq!(case.pm2.lists_read, 1);
    }

    #[test]
    fn a_worker_that_never_listens_fails_after_listen_timeout_not_pm2_timeout() {
        // PM2 gave up waiting at listen_timeout (3 s), stopped the old worker and returned.
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 1)]]);
        case.host.runs(101, RELEASE);
        let (result, took) = case.prove(Duration::from_millis(3000));
        assert_eq!(
            result.unwrap_err(),
            Failure::NeverServed {
                pid: 101,
                endpoint: "127.0.0.1:3000".into(),
                listen_timeout: Duration::from_millis(3000),
            }
        );
        assert!(
            took >= Duration::from_millis(3000) + LISTEN_GRACE,
            "{took:?}"
        );
        assert!(
            took < Duration::from_millis(3000) + LISTEN_GRACE + POLL * 2,
            "{took:?}"
        );
    }

    #[test]
    fn a_worker_that_was_down_may_take_its_listen_timeout_to_serve() {
        // A worker that was errored: PM2 forks it and returns at once; it boots for 2 s.
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 5)]]);
        case.before = instance(0, 0, Pm2State::Errored, 4);
        case.host.runs(101, RELEASE);
        case.host.serves_from(101, 10);
        let (result, took) = case.prove(Duration::from_millis(20));
        assert_eq!(result.unwrap().pid, 101);
        assert!(took >= POLL * 9, "{took:?}");
    }

    #[test]
    fn a_worker_that_was_down_must_be_seen_twice() {
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 5)]]);
        case.before = instance(0, 0, Pm2State::Errored, 4);
        case.host.runs(101, RELEASE);
        case.host.serves_from(101, 1);
        let (result, _) = case.prove(Duration::ZERO);
        assert_eq!(result.unwrap().pid, 101);
        assert_eq!(case.pm2.lists_read, 2);
    }

    #[test]
    fn a_crash_loop_is_caught_between_two_crashes() {
        // Each look sees another pid: never the same twice, restarts climbing.
        let mut case = Case::new(vec![
            vec![instance(0, 101, Pm2State::Online, 2)],
            vec![instance(0, 102, Pm2State::Online, 3)],
        ]);
        for pid in [101, 102] {
            case.host.runs(pid, RELEASE);
            case.host.serves_from(pid, 1);
        }
        case.before = instance(0, 100, Pm2State::Online, 0);
        let (result, _) = case.prove(Duration::ZERO);
        assert_eq!(result.unwrap_err(), Failure::CrashLoop { restarts: 3 });
    }

    #[test]
    fn errored_and_stopped_workers_fail_at_once() {
        for state in [Pm2State::Errored, Pm2State::Stopped] {
            let mut case = Case::new(vec![vec![instance(0, 0, state, 16)]]);
            let (result, took) = case.prove(Duration::ZERO);
            assert_eq!(
                result.unwrap_err(),
                Failure::Down {
                    state,
                    restarts: 16
                }
            );
            assert_eq!(took, Duration::ZERO);
        }
    }

    #[test]
    fn a_worker_in_another_release_fails_at_once() {
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 1)]]);
        case.host.runs(101, "/srv/web/releases/a");
        let (result, _) = case.prove(Duration::ZERO);
        assert!(matches!(
            result,
            Err(Failure::OtherRelease { pid: 101, .. })
        ));
    }

    #[test]
    fn a_worker_outside_every_release_fails_after_a_grace() {
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 1)]]);
        case.host.runs(101, "/home/someone/app");
        let (result, took) = case.prove(Duration::ZERO);
        assert!(matches!(result, Err(Failure::Outside { pid: 101, .. })));
        assert!(
            took >= OUTSIDE_GRACE && took < OUTSIDE_GRACE + POLL * 2,
            "{took:?}"
        );
    }

    #[test]
    fn a_fresh_fork_outside_the_release_for_a_moment_is_fine() {
        // The first look sees the daemon's directory, the next one the release.
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 1)]]);
        case.host.runs(101, "/root/.pm2");
        case.host.runs(101, RELEASE);
        case.host.serves_from(101, 1);
        let (result, _) = case.prove(Duration::ZERO);
        assert_eq!(result.unwrap().pid, 101);
    }

    #[test]
    fn a_missing_reply_or_a_vanished_instance_fails_the_worker() {
        let mut case = Case::new(vec![]);
        case.pm2.lists = [Err("PM2 did not answer within 60 s".to_owned())].into();
        let (result, _) = case.prove(Duration::ZERO);
        assert!(matches!(result, Err(Failure::Pm2(m)) if m.contains("did not answer")));

        let mut case = Case::new(vec![vec![instance(1, 200, Pm2State::Online, 0)]]);
        let (result, _) = case.prove(Duration::ZERO);
        assert_eq!(result.unwrap_err(), Failure::Disappeared);
    }

    #[test]
    fn a_worker_stuck_launching_times_out_at_pm2_timeout() {
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Launching, 1)]]);
        let (result, took) = case.prove(Duration::ZERO);
        assert!(matches!(
            result,
            Err(Failure::TimedOut {
                state: Pm2State::Launching,
                ..
            })
        ));
        assert!(took >= Duration::from_secs(60), "{took:?}");
    }

    #[test]
    fn without_an_endpoint_a_steady_worker_is_proven_without_the_listen() {
        let mut case = Case::new(vec![vec![instance(0, 101, Pm2State::Online, 1)]]);
        case.endpoint = None;
        case.host.runs(101, RELEASE);
        let (result, _) = case.prove(Duration::ZERO);
        let proven = result.unwrap();
        assert_eq!((proven.pid, proven.serving), (101, false));
    }

    #[test]
    fn failures_are_described_for_the_operator() {
        let worker = instance(0, 101, Pm2State::Online, 1);
        let id = ReleaseId::parse("b").unwrap();
        let text = Failure::NeverServed {
            pid: 101,
            endpoint: "127.0.0.1:3000".into(),
            listen_timeout: Duration::from_secs(3),
        }
        .describe(&worker, &id);
        assert!(text.contains("never served 127.0.0.1:3000"), "{text}");
        assert!(text.contains("pm2 logs web"), "{text}");
        let text = Failure::Down {
            state: Pm2State::Errored,
            restarts: 17,
        }
        .describe(&worker, &id);
        assert!(
            text.contains("is errored after the reload (17 restarts)"),
            "{text}"
        );
    }
}
