//! relman's integration tests: one binary, one harness.
//!
//! Every module runs the real `relman` binary. [`support`] is the harness they share: temp
//! deploy roots, running the binary with a scrubbed environment and capturing its exit code,
//! stdout and stderr, snapshots of output (insta, temp paths filtered) and of whole trees, and
//! the Node.js/PM2 gates (a loud skip without them, a failure under `CI=true`).
//!
//! - [`cli`]: every command on temp roots, bad input, the invariants that need no PM2;
//! - [`activate`]: activate and rollback without PM2 (a test app per release), kills at every
//!   failpoint;
//! - [`build_git`], [`build_signals`]: `build --git`, and a build interrupted by signals;
//! - [`ship`]: `pack` and `receive` between two roots, and the streams they must refuse;
//! - [`durability`]: the order of fsync and rename, read from `strace`;
//! - [`e2e`]: real PM2, real Node, real Next.js apps and real load, random kills;
//! - [`fleet`]: the Ansible role of `contrib/ansible/` on three hosts (network namespaces with
//!   their own sshd and PM2) behind nginx, under load;
//! - [`transcript`]: the docs' console transcripts, replayed and held to what they show.
#![forbid(unsafe_code)]

mod activate;
mod build_git;
mod build_signals;
mod cli;
mod durability;
mod e2e;
mod fleet;
mod ship;
mod support;
mod transcript;
