//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// What went wrong, with the path, address or flag it concerns. Every message is a sentence an
/// operator can act on; the status page and the log show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory could not be watched for change events (it is still rescanned).
    #[error("cannot watch {dir} for changes (rescans continue): {source}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: notify::Error,
    },
    /// The listen address is not `host:port` or `:port`.
    #[error("invalid --web.listen-address {address:?}: expected host:port or :port")]
    ListenAddress {
        /// What was given.
        address: String,
    },
    /// The server could not listen on the address.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// `--web.config.file` could not be loaded at start.
    #[error("cannot load web config {path}: {message}")]
    WebConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong in it, and where.
        message: String,
    },
    /// A flag's value is not acceptable.
    #[error("invalid {flag} {value:?}: {reason}")]
    Flag {
        /// The flag, with its dashes.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The engine's thread or its runtime could not be started.
    #[error("cannot start the engine's thread: {0}")]
    Engine(io::Error),

    /// A file or a directory: reading, listing, parsing or deleting it.
    #[error(transparent)]
    File(#[from] promdrop_textfile::Error),
}
