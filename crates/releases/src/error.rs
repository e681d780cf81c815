//! The one error type of the deploy root.

use std::io;

use camino::Utf8PathBuf;

/// Everything that can go wrong in the deploy root.
///
/// Variants that are the caller's mistake (a bad ID, a bad flag, a bad config) answer
/// [`Error::is_usage`] with `true`; the CLI maps those to exit code 2 and the rest to 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed on a path.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What relman was doing, e.g. "failed to read".
        action: &'static str,
        /// The path it was doing it to.
        path: Utf8PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A path is not valid UTF-8; relman only handles UTF-8 paths.
    #[error("path is not valid UTF-8: `{0}`")]
    NonUtf8Path(String),
    /// A release ID does not match the allowed pattern.
    #[error(
        "invalid release ID `{0}`: use 1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"
    )]
    InvalidId(String),
    /// `relman.toml` could not be parsed or holds a bad value.
    #[error("invalid config `{path}`: {message}")]
    Config {
        /// The config file.
        path: Utf8PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value given on the command line is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// The named release does not exist.
    #[error("release {id} does not exist in `{root}`: see `relman list`")]
    NoSuchRelease {
        /// The release ID.
        id: String,
        /// The releases directory.
        root: Utf8PathBuf,
    },
    /// The release exists but is not sealed.
    #[error("release {id} is not sealed ({state}): see `{log}`")]
    NotSealed {
        /// The release ID.
        id: String,
        /// Its state.
        state: String,
        /// Its build log.
        log: Utf8PathBuf,
    },
    /// An ID given with `--id` is taken.
    #[error("release {0} already exists: choose another `--id` or leave it out")]
    IdTaken(String),
    /// The root lock is held by another process and did not come free in time.
    #[error(
        "the deploy root is locked by {holder}; waited {waited_secs} s, try again when it is done"
    )]
    Locked {
        /// Who holds it: the relman recorded in `.relman/lock` while it runs, else
        /// "another process".
        holder: String,
        /// How long this process waited.
        waited_secs: u64,
    },
    /// The operator interrupted relman while it waited for the root lock.
    #[error("interrupted while waiting for the deploy root lock held by {holder}: nothing changed")]
    LockWaitInterrupted {
        /// Who holds it.
        holder: String,
    },
    /// A build step failed.
    #[error("{0}")]
    Build(String),
    /// A build failed after its release directory was made; it is left unsealed.
    #[error("build of release {id} failed: {message}; full log: `{log}`")]
    BuildFailed {
        /// The release that was being built.
        id: String,
        /// What failed.
        message: String,
        /// The build log.
        log: Utf8PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// The build was interrupted (Ctrl-C).
    #[error("build of release {0} was interrupted; it is left unsealed")]
    Interrupted(String),
    /// A manifest or seal file on disk is malformed.
    #[error("malformed `{path}`: {message}")]
    Malformed {
        /// The file.
        path: Utf8PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `pack` or `receive` refused a release or a stream; nothing was sealed or written.
    #[error("{0}")]
    Refused(String),
    /// An external command failed.
    #[error("{0}")]
    Command(String),
}

impl Error {
    /// Wraps an I/O error with what was done and to which path.
    pub fn io(action: &'static str, path: impl Into<Utf8PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether an I/O error says the operation is not supported there.
    pub(crate) fn is_unsupported(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::Unsupported)
    }

    /// Whether an I/O error is a rename across filesystems (`EXDEV`).
    pub(crate) fn is_cross_device(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::CrossesDevices)
    }

    /// Whether the caller's input was at fault (exit code 2) rather than the world (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::InvalidId(_) | Error::Config { .. } | Error::Usage(_) | Error::IdTaken(_)
        )
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds path context to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<Utf8PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<Utf8PathBuf>) -> Result<T> {
        self.map_err(|source| Error::io(action, path, source))
    }
}
