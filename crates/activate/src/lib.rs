//! The go-live path of relman.
//!
//! [`activate()`] makes a sealed release live the way the contract orders it: integrity,
//! preflight, one `rename(2)` of `current`, a PM2 reload one worker at a time with each worker
//! proven to run the new release (`/proc/PID/cwd`), the HTTP probe, and an automatic way back
//! when any of that fails. [`status()`] and [`doctor()`] read the same state without changing
//! it. PM2 is driven through a session to its daemon, with its command line behind it
//! ([`pm2`]); its word that a reload is done is never trusted: every worker is proven from
//! PM2's list, `/proc` and its own sockets.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Tests set up their fixtures with plain `std::fs`; the rule is for production code.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod daemon;
mod deploy;
mod doctor;
mod driver;
mod error;
mod hooks;
mod host;
mod outcome;
pub mod pm2;
mod proof;
mod roll;
mod session;
mod status;

pub use deploy::{DeployEvent, DeployReport, PruneOutcome, deploy};
pub use doctor::{Check, Level, doctor};
pub use error::{Error, Result};
pub use outcome::{ActivateReport, Outcome, WorkerReport};
pub use roll::{Event, Gates, Goal, activate, probe_spec};
pub use status::{
    Health, InstanceStatus, Pm2Status, ProbeOutcome, Status, StatusProbe, assess, probe, status,
};
