//! The one place that maps errors to the exit codes of the contract.

use relman_releases::Error as ReleasesError;

/// Done.
pub(crate) const OK: u8 = 0;
/// Failed; nothing live changed.
pub(crate) const FAILED: u8 = 1;
/// Usage or configuration error; nothing changed.
pub(crate) const USAGE: u8 = 2;

/// Any error a command can end with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Releases(#[from] ReleasesError),
    #[error(transparent)]
    Activate(#[from] relman_activate::Error),
}

impl CliError {
    pub(crate) fn code(&self) -> u8 {
        let usage = match self {
            CliError::Releases(err) => err.is_usage(),
            CliError::Activate(err) => err.is_usage(),
        };
        if usage { USAGE } else { FAILED }
    }

    /// The end of the build log, for a failed build.
    pub(crate) fn log_tail(&self) -> Option<&str> {
        match self {
            CliError::Releases(ReleasesError::BuildFailed { tail, .. }) if !tail.is_empty() => {
                Some(tail)
            }
            _ => None,
        }
    }
}
