//! promdrop-textfile: the `*.prom` files of a textfile directory as the exporter serves them,
//! without a server.
//!
//! - [`discovery`] lists a directory (the symlink policy, each file's identity);
//! - [`snapshot`] reads a file with a size limit, parses it once, applies the
//!   [`TimestampPolicy`] and keeps it in its [`prepared`] form (ready to be merged by
//!   concatenation);
//! - [`staleness`] says whether a file is fresh, stale or expired, and when that changes;
//! - [`packed`] holds text compressed in blocks that decompress on their own (a file's
//!   prepared text);
//! - [`flags`] parses the flags that every binary reading these files shares.
//!
//! It does no networking and runs no async runtime: `promdrop-exporter` drives it from its
//! engine and `promdrop inspect` from the command line.
//!
//! ```
//! use bytes::Bytes;
//! use promdrop_textfile::discovery::FileIdentity;
//! use promdrop_textfile::snapshot::{parse_bytes, ReadOptions};
//! use promdrop_textfile::staleness::{FileState, Policy, Timing};
//! use promdrop_textfile::TimestampPolicy;
//!
//! let read = ReadOptions { max_bytes: 1 << 20, max_series: 1000, timestamps: TimestampPolicy::Reject };
//! let identity = FileIdentity { dev: 1, ino: 7, size: 40, mtime_ns: 0 };
//! let snapshot = parse_bytes(
//!     "/var/lib/promdrop/backup.prom".into(),
//!     identity,
//!     Bytes::from("# TYPE backup_ok gauge\nbackup_ok 1\n"),
//!     &read,
//! );
//! assert_eq!(snapshot.series(), 1);
//! let timing = Timing::of(&snapshot, &Policy::default());
//! assert_eq!(timing.state(std::time::SystemTime::UNIX_EPOCH), FileState::Fresh);
//! ```
#![deny(missing_docs)]

pub mod assembly;
pub mod conflict;
pub mod discovery;
mod error;
pub mod flags;
mod hash_shards;
mod intern;
pub mod packed;
pub mod prepared;
pub mod snapshot;
pub mod staleness;

pub use error::Error;
pub use snapshot::TimestampPolicy;
