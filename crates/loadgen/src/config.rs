//! What a load run does: how many workers of each kind, against what, and for how long.

use std::net::SocketAddr;
use std::time::Duration;

/// The shape and the bounds of one load run.
///
/// Every run is bounded twice, by [`max_duration`](Self::max_duration) and by
/// [`max_requests`](Self::max_requests): workers stop on whichever comes first, or on
/// [`Load::stop`](crate::Load::stop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    /// Where the server listens, e.g. `127.0.0.1:3000`.
    pub addr: SocketAddr,
    /// Workers sending `GET /` over one reused keep-alive connection.
    pub keepalive_workers: usize,
    /// Workers opening a new connection (`Connection: close`) for every `GET /`.
    pub fresh_workers: usize,
    /// Workers sending `GET /slow?ms=slow_ms` over a reused keep-alive connection.
    pub slow_workers: usize,
    /// How long the server holds each slow request, in milliseconds.
    pub slow_ms: u64,
    /// Workers stop sending new requests once this much time has passed since the start.
    pub max_duration: Duration,
    /// Workers stop once this many requests have been sent in total (retries not counted).
    pub max_requests: u64,
    /// The budget of one request: connect, send and the whole response. Slow requests get
    /// `slow_ms` on top.
    pub request_timeout: Duration,
}

impl LoadConfig {
    /// A mixed load against `addr`: 4 keep-alive, 2 fresh and 1 slow worker (800 ms), for at
    /// most 30 s or 1,000,000 requests, 10 s per request.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            keepalive_workers: 4,
            fresh_workers: 2,
            slow_workers: 1,
            slow_ms: 800,
            max_duration: Duration::from_secs(30),
            max_requests: 1_000_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}
