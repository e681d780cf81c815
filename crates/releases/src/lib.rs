//! The deploy root of relman.
//!
//! A deploy root holds one directory per release under `releases/`, the `current` symlink to
//! the live one, persistent `shared/` paths, and relman's own state in `.relman/` (the root
//! lock and the activation history). This crate owns all of it except the `current` flip's
//! orchestration, which lives in `relman-activate`:
//!
//! - [`ReleaseId`]: the only way an ID enters the program, validated.
//! - [`Config`]: `relman.toml`, strict, every key defaulted.
//! - [`build()`]: a new release, filled, built and sealed in a fresh directory.
//! - [`store`]: release states (`sealed`, `failed`, `building`), order, rollback target.
//! - [`manifest`]: the SHA-256 manifest and `verify`.
//! - [`prune()`]: deletes what nothing protects.
//! - [`pack()`] and [`receive()`]: a sealed release as one stream, and back into a release
//!   sealed on another host.
//! - [`history`](mod@history): `history.jsonl`.
//! - [`hooks`]: what the hooks around going live did, and the journal of a running activation.
//! - [`fs`]: every filesystem mutation, atomic and durable, and the kernel locks.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Tests set up their fixtures with plain `std::fs`; the rule is for production code.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod build;
pub mod config;
mod error;
pub mod failpoint;
pub mod fs;
pub mod history;
pub mod hooks;
mod id;
pub mod manifest;
mod parallel;
mod platform;
mod prune;
mod record;
mod root;
mod run;
mod scaffold;
mod ship;
pub mod store;

pub use build::{BuildEvent, BuildReport, BuildRequest, SourceSpec, build};
pub use config::Config;
pub use error::{Error, Result};
pub use fs::lock::RootLock;
pub use id::ReleaseId;
pub use prune::{Protected, PruneReport, prune};
pub use record::{Seal, Source};
pub use root::{DeployRoot, ECOSYSTEM_FILE, InitReport};
pub use scaffold::{
    ACTIONS_KEY_ENV, AppKind, AppName, AppSpec, Detected, NEXT_SERVER_FILE, PackageManager,
};
pub use ship::{PackOutput, PackReport, ReceiveInput, ReceiveReport, pack, receive};
pub use store::{Release, State};
