//! The crate's one error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while handing off metrics. Every variant names the path it
/// concerns and what failed, so that its message alone tells an operator what to fix.
///
/// A failed write never leaves a temporary file behind and never touches the previous file:
/// the target is either the old complete version or the new complete version.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The target path cannot be written to as a file: it has no file name, or it is a
    /// directory.
    #[error("{path}: not a usable target file: {reason}")]
    InvalidTarget {
        /// The target.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The job name cannot be used in a file name.
    #[error("job name {name:?} cannot be used for a file in {dir}: {reason}")]
    InvalidJobName {
        /// The job name given.
        name: String,
        /// The directory the file would be written to.
        dir: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// `JOB_COMPLETION_INDEX` is set but is not a non-negative integer.
    #[error(
        "JOB_COMPLETION_INDEX={value:?} is not a non-negative integer (the job file would be in {dir})"
    )]
    InvalidCompletionIndex {
        /// The variable's value.
        value: String,
        /// The directory the file would be written to.
        dir: PathBuf,
    },
    /// A grouping label name is not usable.
    #[error("grouping label {name:?} for {path}: {reason}")]
    InvalidLabel {
        /// The label name given.
        name: String,
        /// The job file the label was meant for.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The target's directory does not exist: usually the shared volume is not mounted, or
    /// the directory is misspelt. Nothing was written.
    #[error("directory {dir} does not exist (is the volume mounted?); {target} was not written")]
    MissingDir {
        /// The directory.
        dir: PathBuf,
        /// The target file.
        target: PathBuf,
    },
    /// The lock file could not be created or opened, or locking it failed.
    #[error("{path}: cannot take the writer lock: {source}")]
    Lock {
        /// The lock file (see [`lock_path`](crate::lock_path)).
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another process held the lock for longer than the configured wait.
    #[error(
        "{path}: still locked by another writer or the exporter after waiting {waited:?}; nothing was written"
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long this writer waited.
        waited: Duration,
    },
    /// The temporary file could not be created in the target's directory (a missing directory,
    /// a read-only file system, no permission, no inodes left).
    #[error("{dir}: cannot create a temporary file next to {target}: {source}")]
    CreateTemp {
        /// The directory.
        dir: PathBuf,
        /// The target file.
        target: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing, syncing or setting the mode of the temporary file failed (a full file system,
    /// a quota, an I/O error). The temporary file was removed; the target is untouched.
    #[error("{target}: cannot {step} the new version (temporary file {temp}): {source}")]
    WriteTemp {
        /// The target file.
        target: PathBuf,
        /// The temporary file (already removed).
        temp: PathBuf,
        /// What failed: `write`, `fsync` or `set the mode of`.
        step: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// Renaming the temporary file over the target failed. The temporary file was removed; the
    /// target is untouched.
    #[error("{target}: cannot rename the new version into place: {source}")]
    Rename {
        /// The target file.
        target: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The new version is in place but syncing its directory failed, so the rename may not
    /// survive a crash of the machine.
    #[error("{dir}: the new {target} is in place but syncing the directory failed: {source}")]
    SyncDir {
        /// The directory.
        dir: PathBuf,
        /// The target file.
        target: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A metrics source failed to produce its metrics. Nothing was written.
    #[error("{path}: the metrics source failed: {message}")]
    Source {
        /// The file that was to be written.
        path: PathBuf,
        /// The source's error.
        message: String,
    },
    /// A metrics source produced text that is neither valid classic text format nor valid
    /// OpenMetrics. Nothing was written.
    #[error("{path}: the metrics source produced invalid exposition text: {source}")]
    InvalidText {
        /// The file that was to be written.
        path: PathBuf,
        /// Where and why the text failed to parse.
        source: promdrop_textformat::Error,
    },
    /// Not an error of the write, which succeeded: a source's text had sample timestamps or
    /// a repeated series, which an exporter with default flags would not serve in full, so
    /// the file was written without them (see [`servable`](crate::servable)). Reported to
    /// `on_error` once per run.
    #[error(
        "{path}: {problem}; written without it{more} so that the exporter serves the file in full"
    )]
    Adjusted {
        /// The file written.
        path: PathBuf,
        /// The first thing left out.
        problem: crate::servable::Unservable,
        /// `""`, or how many more were left out, as `" (and 3 more)"`.
        more: String,
    },
    /// A background part of the handoff (the periodic flusher, the signal handler, the panic
    /// hook) could not be started.
    #[error("{path}: cannot start the {what}: {source}")]
    Install {
        /// The job file.
        path: PathBuf,
        /// What could not be started.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
}
