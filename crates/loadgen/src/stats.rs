//! The counts a load run collects, shared by all its workers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// How many distinct failure descriptions are kept; later new ones are only counted.
const MAX_FAILURE_KINDS: usize = 50;

/// What a load run saw so far.
///
/// Every request ends in exactly one of `ok` and `failed`; `retried` counts the requests
/// among them that had to be sent a second time (see the crate docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Requests that got a complete 2xx response.
    pub ok: u64,
    /// Requests that got no complete response, or a non-2xx one.
    pub failed: u64,
    /// Requests sent again on a fresh connection because a reused keep-alive connection
    /// closed before any byte of the response arrived.
    pub retried: u64,
    /// The first distinct failure descriptions, in the order first seen, each as
    /// `COUNTx WORKER GET PATH: WHAT`, e.g. `3x fresh GET /: connect: connection refused`.
    pub failures: Vec<String>,
    /// Complete responses (any status) by their `x-release` header.
    pub by_release: BTreeMap<String, u64>,
    /// Milliseconds since the load started.
    pub elapsed_ms: u64,
}

impl Stats {
    /// Requests that finished, one way or the other.
    pub fn completed(&self) -> u64 {
        self.ok + self.failed
    }
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Recorder {
    ok: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    details: Mutex<Details>,
}

#[derive(Default)]
struct Details {
    failures: Vec<(String, u64)>,
    by_release: BTreeMap<String, u64>,
}

impl Recorder {
    pub(crate) fn ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, description: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut details = self.details();
        if let Some((_, count)) = details
            .failures
            .iter_mut()
            .find(|(known, _)| *known == description)
        {
            *count += 1;
        } else if details.failures.len() < MAX_FAILURE_KINDS {
            details.failures.push((description, 1));
        }
    }

    pub(crate) fn served_by(&self, release: &str) {
        let mut details = self.details();
        if let Some(count) = details.by_release.get_mut(release) {
            *count += 1;
        } else {
            details.by_release.insert(release.to_owned(), 1);
        }
    }

    pub(crate) fn stats(&self, elapsed_ms: u64) -> Stats {
        let details = self.details();
        Stats {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failures: details
                .failures
                .iter()
                .map(|(description, count)| format!("{count}x {description}"))
                .collect(),
            by_release: details.by_release.clone(),
            elapsed_ms,
        }
    }

    fn details(&self) -> std::sync::MutexGuard<'_, Details> {
        // A worker that panicked mid-update leaves counts that are still worth reading.
        self.details.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::Recorder;

    #[test]
    fn failures_are_grouped_in_first_seen_order_and_capped() {
        let recorder = Recorder::default();
        recorder.failed("b".to_owned());
        recorder.failed("a".to_owned());
        recorder.failed("b".to_owned());
        for kind in 0..100 {
            recorder.failed(format!("kind {kind}"));
        }
        let stats = recorder.stats(0);
        assert_eq!(stats.failed, 103);
        assert_eq!(stats.failures.len(), 50);
        assert_eq!(stats.failures[..3], ["2x b", "1x a", "1x kind 0"]);
    }
}
