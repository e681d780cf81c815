//! Failpoints: named places where a test can make relman die as if by `kill -9`.
//!
//! `RELMAN_FAILPOINTS=activate-after-flip,build-after-copy relman …` sends the process SIGKILL
//! when it reaches one of the named points, so the fault-injection tests can prove that every
//! state a crash leaves behind is one relman reads correctly and recovers from. Unset, a
//! failpoint costs one comparison against an empty list read once.

use std::sync::OnceLock;

/// Every failpoint, in the order the code reaches them; the tests iterate over this list.
pub const ALL: &[&str] = &[
    "build-after-claim",
    "build-after-copy",
    "build-after-install",
    "build-after-build",
    "build-after-manifest",
    "build-after-unclaim",
    "build-after-seal",
    "activate-after-lock",
    "activate-after-preflight",
    "activate-after-flip",
    "activate-after-worker",
    "activate-after-roll",
    "activate-before-history",
    "activate-after-flip-back",
    "prune-after-trash",
];

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("RELMAN_FAILPOINTS")
            .map(|list| {
                list.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Dies on the spot, like `kill -9`, when `name` is armed.
pub fn hit(name: &'static str) {
    debug_assert!(ALL.contains(&name), "unknown failpoint {name}");
    if armed().iter().any(|armed| armed == name) {
        relman_sys::process::die();
    }
}
