//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// What went wrong with a file or a directory, with its path. Every message is a sentence an
/// operator can act on; the exporter's status page and `promdrop inspect` show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is larger than `--file.max-bytes`; it was not read past the limit.
    #[error("{path} is larger than --file.max-bytes={limit} bytes ({size} bytes)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size when it was checked (at least `limit + 1`).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// limit such as `--file.max-series`).
    #[error("{path}:{source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: promdrop_textformat::Error,
    },
    /// A file carries client-side timestamps and `--timestamps=reject` is in force.
    #[error(
        "{path}: sample {series} carries a client-side timestamp; with --timestamps=reject \
         (the default, as in node_exporter) such files are not served: drop the timestamps \
         or run with --timestamps=strip or keep"
    )]
    Timestamp {
        /// The file.
        path: PathBuf,
        /// The first sample with a timestamp, as `name{labels}`.
        series: String,
    },
    /// Serving a file would take the directory past `--max-total-bytes` or
    /// `--max-total-series`: files are admitted in serving order and this one did not fit.
    #[error(
        "{path} is not served: with it the served files would hold {total} {what}, over \
         --max-total-{what}={limit} (files are admitted in serving order; this one does not fit)"
    )]
    OverTotal {
        /// The file.
        path: PathBuf,
        /// `bytes` or `series`.
        what: &'static str,
        /// The total with this file.
        total: u64,
        /// The cap.
        limit: u64,
    },
    /// A symlink in a watched directory points outside it.
    #[error("{path} is a symlink to {target}, outside {dir}: not served")]
    SymlinkEscape {
        /// The symlink.
        path: PathBuf,
        /// Where it resolves to.
        target: PathBuf,
        /// The directory it was found in.
        dir: PathBuf,
    },
    /// scan.
    #[error("{path} was replaced while it was being read; reading it again")]
    Replaced {
        /// The file.
        path: PathBuf,
    },
    /// An entry of a directory served with `--textfile.tenancy` that is not a namespace's
    /// directory.
    #[error("{path}: {reason}; not served")]
    Tenancy {
        /// The entry.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A watched directory could not be listed.
    #[error("cannot list {dir}: {source}")]
    ListDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An expired file could not be deleted.
    #[error("cannot delete {path}: {source}")]
    Delete {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}
