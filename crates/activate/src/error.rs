//! The errors of the go-live path that stop it before anything changed.

/// Why an activation, rollback or status could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A deploy-root error (bad ID, missing release, lock, config…).
    #[error(transparent)]
    Releases(#[from] relman_releases::Error),
    /// PM2 is missing, its daemon is down, or its answer is unusable.
    #[error("{0}")]
    Pm2(String),
    /// The app is not in a state relman can roll safely.
    #[error("{0}")]
    App(String),
    /// The release does not match its manifest.
    #[error(
        "release {id} does not match its manifest ({summary}): run `relman verify {id}` to see the files, rebuild it, or pass `--skip-integrity`"
    )]
    Integrity {
        /// The release.
        id: String,
        /// How many files differ.
        summary: String,
    },
    /// The operator interrupted relman before anything changed.
    #[error("interrupted before going live: nothing changed")]
    Interrupted,
    /// There is nothing to roll back to.
    #[error("{0}")]
    NoRollbackTarget(String),
}

impl Error {
    /// Whether the caller's input was at fault (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Releases(err) if err.is_usage())
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
