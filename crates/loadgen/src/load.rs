//! A running load: the worker threads, their shared bounds, and how each kind of worker
//! sends its requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::LoadConfig;
use crate::http::{Connection, RequestError, Response};
use crate::stats::{Recorder, Stats};

/// Keeps a worker from spinning on a two-core machine; still hundreds of requests a second.
const PAUSE_BETWEEN_REQUESTS: Duration = Duration::from_millis(3);
/// How far in the future "no time limit" lies.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A load in progress. Dropping it stops the workers and waits for them, like
/// [`stop`](Self::stop) without the stats.
pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts every worker of `config` at once.
    pub fn start(config: LoadConfig) -> Load {
        let started = Instant::now();
        let kinds = [
            (WorkerKind::KeepAlive, config.keepalive_workers),
            (WorkerKind::Fresh, config.fresh_workers),
            (WorkerKind::Slow, config.slow_workers),
        ];
        let shared = Arc::new(Shared {
            host: config.addr.to_string(),
            slow_path: format!("/slow?ms={}", config.slow_ms),
            deadline: started
                .checked_add(config.max_duration)
                .unwrap_or_else(|| started + FOREVER),
            started,
            config,
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            recorder: Recorder::default(),
        });
        let mut workers = Vec::new();
        for (kind, count) in kinds {
            for index in 0..count {
                let shared = Arc::clone(&shared);
                let worker = thread::Builder::new()
                    .name(format!("loadgen-{}-{index}", kind.name()))
                    .spawn(move || run_worker(kind, &shared))
                    .expect("the OS refused to start a load worker thread");
                workers.push(worker);
            }
        }
        Load { shared, workers }
    }

    /// The counts so far; the load goes on.
    pub fn snapshot(&self) -> Stats {
        self.shared.stats()
    }

    /// Whether every worker has stopped on its own, at `max_duration` or `max_requests`.
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(JoinHandle::is_finished)
    }

    /// Stops the workers, waits for their requests in flight to end, and returns the counts.
    pub fn stop(mut self) -> Stats {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join();
        self.shared.stats()
    }

    /// Waits until the workers stop on their own, at `max_duration` or `max_requests`.
    pub fn wait(mut self) -> Stats {
        self.join();
        self.shared.stats()
    }

    fn join(&mut self) {
        for worker in self.workers.drain(..) {
            if let Err(panic) = worker.join() {
                // A worker only panics on a bug here; hiding it would hide lost requests.
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

struct Shared {
    config: LoadConfig,
    host: String,
    slow_path: String,
    started: Instant,
    deadline: Instant,
    stop: AtomicBool,
    sent: AtomicU64,
    recorder: Recorder,
}

impl Shared {
    /// Takes one request from the budget, or says the load is over.
    fn next_request(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && Instant::now() < self.deadline
            && self.sent.fetch_add(1, Ordering::Relaxed) < self.config.max_requests
    }

    fn stats(&self) -> Stats {
        let elapsed = self.started.elapsed().as_millis();
        self.recorder
            .stats(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

#[derive(Debug, Clone, Copy)]
enum WorkerKind {
    KeepAlive,
    Fresh,
    Slow,
}

impl WorkerKind {
    fn name(self) -> &'static str {
        match self {
            Self::KeepAlive => "keepalive",
            Self::Fresh => "fresh",
            Self::Slow => "slow",
        }
    }

    fn path(self, shared: &Shared) -> &str {
        match self {
            Self::KeepAlive | Self::Fresh => "/",
            Self::Slow => &shared.slow_path,
        }
    }

    fn request_budget(self, config: &LoadConfig) -> Duration {
        match self {
            Self::KeepAlive | Self::Fresh => config.request_timeout,
            Self::Slow => config.request_timeout + Duration::from_millis(config.slow_ms),
        }
    }
}

/// What became of one request.
struct Outcome {
    result: Result<Response, RequestError>,
    retried: bool,
}

fn run_worker(kind: WorkerKind, shared: &Shared) {
    let mut connection = None;
    while shared.next_request() {
        let outcome = match kind {
            WorkerKind::Fresh => send_fresh(kind, shared),
            WorkerKind::KeepAlive | WorkerKind::Slow => {
                send_keepalive(kind, shared, &mut connection)
            }
        };
        record(kind, shared, outcome);
        thread::sleep(PAUSE_BETWEEN_REQUESTS);
    }
}

fn send_fresh(kind: WorkerKind, shared: &Shared) -> Outcome {
    let deadline = Instant::now() + kind.request_budget(&shared.config);
    let result = Connection::open(shared.config.addr, deadline)
        .and_then(|mut connection| connection.get(&shared.host, kind.path(shared), true, deadline));
    Outcome {
        result,
        retried: false,
    }
}

fn send_keepalive(kind: WorkerKind, shared: &Shared, slot: &mut Option<Connection>) -> Outcome {
    let budget = kind.request_budget(&shared.config);
    let path = kind.path(shared);
    let deadline = Instant::now() + budget;
    let first = attempt(shared.config.addr, &shared.host, path, slot, deadline);
    match first {
        Err((error, true)) if error.closed_before_response() => {
            let deadline = Instant::now() + budget;
            let result = attempt(shared.config.addr, &shared.host, path, slot, deadline)
                .map_err(|(error, _)| error);
            Outcome {
                result,
                retried: true,
            }
        }
        first => Outcome {
            result: first.map_err(|(error, _)| error),
            retried: false,
        },
    }
}

/// Sends one request over the connection in `slot`, opening one if there is none, and
/// leaves the connection there only if it may carry another request. An error comes with
/// whether the connection had been reused.
fn attempt(
    addr: SocketAddr,
    host: &str,
    path: &str,
    slot: &mut Option<Connection>,
    deadline: Instant,
) -> Result<Response, (RequestError, bool)> {
    let mut connection = match slot.take() {
        Some(connection) => connection,
        None => Connection::open(addr, deadline).map_err(|error| (error, false))?,
    };
    let reused = connection.is_reused();
    let response = connection
        .get(host, path, false, deadline)
        .map_err(|error| (error, reused))?;
    if response.keep_alive {
        *slot = Some(connection);
    }
    Ok(response)
}

fn record(kind: WorkerKind, shared: &Shared, outcome: Outcome) {
    let recorder = &shared.recorder;
    if outcome.retried {
        recorder.retried();
    }
    let request = format!(
        "{}{} GET {}",
        kind.name(),
        if outcome.retried { " (retried)" } else { "" },
        kind.path(shared)
    );
    match outcome.result {
        Ok(response) => {
            if let Some(release) = &response.release {
                recorder.served_by(release);
            }
            if (200..300).contains(&response.status) {
                recorder.ok();
            } else {
                recorder.failed(format!("{request}: status {}", response.status));
            }
        }
        Err(error) => recorder.failed(format!("{request}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::Load;
    use crate::config::LoadConfig;
    use crate::test_server::{Answer, serve};

    fn config(addr: std::net::SocketAddr, requests: u64) -> LoadConfig {
        LoadConfig {
            keepalive_workers: 2,
            fresh_workers: 1,
            slow_workers: 1,
            slow_ms: 20,
            max_duration: Duration::from_secs(20),
            max_requests: requests,
            request_timeout: Duration::from_secs(5),
            ..LoadConfig::new(addr)
        }
    }

    #[test]
    fn healthy_server_gets_every_request_through() {
        let addr = serve(|_, _| Answer::Ok {
            release: "r1",
            close: false,
        });
        let stats = Load::start(config(addr, 60)).wait();
        assert_eq!(
            (stats.ok, stats.failed, stats.retried),
            (60, 0, 0),
            "{stats:?}"
        );
        assert_eq!(stats.by_release.get("r1"), Some(&60));
        assert!(stats.failures.is_empty());
    }

    #[test]
    fn error_status_is_a_failure() {
        let addr = serve(|_, _| Answer::Status(500));
        let stats = Load::start(config(addr, 20)).wait();
        assert_eq!((stats.ok, stats.failed), (0, 20), "{stats:?}");
        assert!(
            stats
                .failures
                .iter()
                .all(|failure| failure.ends_with("status 500")),
            "{stats:?}"
        );
    }

    #[test]
    fn connection_close_answers_reconnect_without_failing() {
        let addr = serve(|_, _| Answer::Ok {
            release: "r1",
            close: true,
        });
        let stats = Load::start(config(addr, 40)).wait();
        assert_eq!(
            (stats.ok, stats.failed, stats.retried),
            (40, 0, 0),
            "{stats:?}"
        );
    }

    #[test]
    fn reused_connection_closed_before_responding_is_retried_not_failed() {
        // Every connection answers its first request and drops the second one unanswered.
        let addr = serve(|request_on_connection, _| {
            if request_on_connection == 0 {
                Answer::Ok {
                    release: "r1",
                    close: false,
                }
            } else {
                Answer::Drop
            }
        });
        let stats = Load::start(LoadConfig {
            fresh_workers: 0,
            ..config(addr, 40)
        })
        .wait();
        assert_eq!((stats.ok, stats.failed), (40, 0), "{stats:?}");
        assert!(stats.retried >= 30, "{stats:?}");
    }

    #[test]
    fn fresh_connection_closed_before_responding_is_a_failure() {
        let addr = serve(|_, _| Answer::Drop);
        let load = LoadConfig {
            keepalive_workers: 1,
            fresh_workers: 1,
            slow_workers: 0,
            ..config(addr, 10)
        };
        let stats = Load::start(load).wait();
        assert_eq!((stats.ok, stats.failed), (0, 10), "{stats:?}");
        assert!(stats.retried == 0, "{stats:?}");
    }

    #[test]
    fn failed_retry_is_a_failure() {
        // The first connection answers once; every later request is dropped.
        let addr = serve(|request_on_connection, connection| {
            if connection == 0 && request_on_connection == 0 {
                Answer::Ok {
                    release: "r1",
                    close: false,
                }
            } else {
                Answer::Drop
            }
        });
        let load = LoadConfig {
            keepalive_workers: 1,
            fresh_workers: 0,
            slow_workers: 0,
            ..config(addr, 2)
        };
        let stats = Load::start(load).wait();
        assert_eq!(
            (stats.ok, stats.failed, stats.retried),
            (1, 1, 1),
            "{stats:?}"
        );
        assert!(
            stats.failures[0].starts_with("1x keepalive (retried) GET /: "),
            "{stats:?}"
        );
    }

    #[test]
    fn refused_connection_is_a_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let stats = Load::start(config(addr, 12)).wait();
        assert_eq!(
            (stats.ok, stats.failed, stats.retried),
            (0, 12, 0),
            "{stats:?}"
        );
        assert!(
            stats
                .failures
                .iter()
                .all(|failure| failure.ends_with("connect: connection refused")),
            "{stats:?}"
        );
    }

    #[test]
    fn silent_server_times_out() {
        let addr = serve(|_, _| Answer::Hang);
        let load = LoadConfig {
            keepalive_workers: 1,
            fresh_workers: 0,
            slow_workers: 0,
            request_timeout: Duration::from_millis(200),
            ..config(addr, 2)
        };
        let stats = Load::start(load).wait();
        assert_eq!((stats.ok, stats.failed), (0, 2), "{stats:?}");
        assert_eq!(
            stats.failures,
            ["2x keepalive GET /: timed out waiting for the response"]
        );
    }

    #[test]
    fn stop_ends_an_unbounded_run_and_duration_ends_it_alone() {
        let addr = serve(|_, _| Answer::Ok {
            release: "r1",
            close: false,
        });
        let load = Load::start(config(addr, u64::MAX));
        std::thread::sleep(Duration::from_millis(200));
        assert!(load.snapshot().ok > 0);
        let stats = load.stop();
        assert!(stats.ok > 0 && stats.failed == 0, "{stats:?}");

        let short = LoadConfig {
            max_duration: Duration::from_millis(300),
            ..config(addr, u64::MAX)
        };
        let stats = Load::start(short).wait();
        assert!(stats.ok > 0 && stats.failed == 0, "{stats:?}");
        assert!(stats.elapsed_ms < 2_000, "{stats:?}");
    }
}
