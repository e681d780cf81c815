//! The ways drawing a chart fails.

use std::path::PathBuf;

/// Why a chart was not drawn.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The TSV could not be read.
    #[error("failed to read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A row of the TSV is not `series<TAB>x<TAB>y` with numbers.
    #[error("`{path}` line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// Nothing to draw, or values a log axis cannot show.
    #[error("`{path}`: {reason}")]
    Data { path: PathBuf, reason: String },
    /// plotters failed to lay out or write the SVG.
    #[error("failed to draw `{path}`: {reason}")]
    Draw { path: PathBuf, reason: String },
}

pub(crate) type Result<T> = std::result::Result<T, Error>;
