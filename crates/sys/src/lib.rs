//! What relman asks the operating system directly, in one place.
//!
//! - [`proc`]: reads of `/proc`: a process's working directory, its identity (user, parent,
//!   command line), the TCP sockets it holds, who listens on a port.
//!
//! Everything here only reads; nothing decides. The callers (the worker proof, the daemon
//! check, `prune`) own the decisions and are tested against fakes of these reads.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod proc;
