//! A small HTTP/1.1 load generator that counts every dropped request.
//!
//! relman's end-to-end tests and benchmark scripts use it to prove that a deploy is never
//! seen by users: [`Load::start`] runs worker threads against a loopback address while the
//! test flips `current` and reloads PM2, and [`Load::stop`] returns the [`Stats`]. A test
//! asserts `stats.failed == 0`.
//!
//! Three kinds of workers model the traffic a reload must survive:
//!
//! - keep-alive workers send `GET /` over one reused connection and reconnect whenever the
//!   server answers `Connection: close`;
//! - fresh workers open a new connection for every `GET /` and send `Connection: close`;
//! - slow workers send `GET /slow?ms=N` over a reused connection, so that a request is always
//!   in flight when a worker is told to shut down.
//!
//! A request fails on a connect error, a connection closed or reset mid-response, a timeout,
//! a malformed response or a non-2xx status. Like every real HTTP client, a request sent on a
//! *reused* keep-alive connection that the server closed before a single response byte
//! arrived is sent once more on a fresh connection: the server cannot tell such a request
//! from one that never arrived, which is the race every keep-alive close has. It counts in
//! [`Stats::retried`], and as a failure only if the retry fails too.
//!
//! Threads and `std::net::TcpStream` only, no async runtime: the load is a few thousand
//! requests a second at most, and a test must be able to read every line of it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Tests set up their fixtures with plain `std::fs`; the rule is for production code.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod config;
mod http;
mod load;
mod stats;
#[cfg(test)]
mod test_server;

pub use config::LoadConfig;
pub use load::Load;
pub use stats::Stats;
