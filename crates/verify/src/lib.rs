//! Proof that a release serves: the HTTP health probe and the preflight of relman.
//!
//! - [`probe`] asks the live app for its health URL, retried, each try bounded in time
//!   (SPEC activate step 6); [`check_once`] is one such try, for `relman doctor` too.
//! - [`preflight`] starts a release on a free loopback port in its own process group, waits
//!   until its URL passes the same checks, and always stops the whole group (SPEC activate
//!   step 2), so a release that cannot serve never goes live.
//! - [`validate_url`] is the URL check to run when the config is loaded.
//! - The pages users visit are asked too, and compared with the live release: a route that
//!   answers below 500 on the live release must not answer 500 or more, or nothing, on the new
//!   one. [`check_routes`] asks, [`regressions`] compares against a [`Baseline`], the
//!   preflight checks its [`RouteChecks`] on the release under test, and [`probe_routes`]
//!   checks them again after the roll. [`discover_routes`] finds a Next.js build's static
//!   pages when the operator lists none.
//!
//! Only plain `http://` on loopback is spoken: no TLS, no proxy, no redirects followed, no
//! connection reuse. Bodies are read up to 1 MiB and compared as lossy UTF-8. Placeholders
//! (`{release}`) are the caller's to substitute; the preflight replaces `{port}` itself.
//! Nothing here prints: results and errors carry everything worth showing.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Tests set up their fixtures with plain `std::fs`; the rule is for production code.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod error;
mod preflight;
mod probe;
mod regression;
mod routes;

pub use error::{Error, Failure};
pub use preflight::{PreflightReport, PreflightSpec, preflight, preflight_cancellable};
pub use probe::{ProbeReport, ProbeSpec, check_once, probe, validate_url};
pub use regression::{
    AlreadyFailing, Answer, Baseline, Origin, Regression, RouteChecks, RouteProbeSpec,
    already_failing, check_routes, probe_routes, regressions,
};
pub use routes::discover_routes;
