//! What relman asks the operating system directly, in one place.
//!
//! - [`proc`]: reads of `/proc`: a process's working directory, its identity (user, parent,
//!   command line), the TCP sockets it holds, who listens on a port, a group's members.
//! - [`process`]: the processes relman starts and stops: process groups, the stop and kill
//!   policies, signals.
//! - [`fs`]: the two filesystem-wide calls, `syncfs(2)` and `statvfs(3)`.
//!
//! This is the one place that talks to the kernel beyond `std`; the system calls `std` lacks go
//! through `rustix`'s safe wrappers, so there is no `unsafe` here or anywhere else in relman.
//! Nothing here decides: the callers (the worker proof, the daemon check, the preflight, the
//! build runner, `prune`, `doctor`) own the decisions and are tested against fakes of these.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Tests set up their fixtures with plain `std::fs`; the rule is for production code.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod fs;
pub mod proc;
pub mod process;
