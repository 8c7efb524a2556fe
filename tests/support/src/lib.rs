//! What promdrop's tests share, in one place: the exporter's, the CLI's, the end-to-end
//! (tests/e2e) and the torture (tests/torture) tests all use this crate rather than copies of
//! their own.
//!
//! - [`binaries`]: the workspace's binaries for packages that Cargo does not hand them to
//!   (`CARGO_BIN_EXE_*` only names a package's own), built once per test binary.
//! - [`process`]: a child process stopped by its PID when dropped, its output captured;
//!   running a program with bytes on its stdin; free ports; polling until a deadline.
//! - [`Exporter`]: the real `promdrop-exporter` on a loopback port the kernel chose (port 0,
//!   the address read from its `listening` log line), waited for until `/-/ready` answers.
//! - [`http`]: requests through [ureq](https://docs.rs/ureq), one-shot or on a kept-alive
//!   connection, the response's body as sent (gzip stays gzip until asked).
//! - [`raw`]: bytes on a socket, for the few tests that must send what no HTTP client would
//!   (an oversized head, a malformed request) or see the bytes on the wire (a recording proxy).
//! - [`metrics`]: `/metrics` as samples, parsed by `promdrop-textformat`.
//! - [`peers`]: Debian's node_exporter on a loopback port, to compare promdrop with.
//! - [`pki`]: a certificate authority and leaves made at run time, for the TLS tests.
//!
//! Nothing here skips: a missing tool or a server that does not start fails the test with what
//! was seen.
//!
//! ```no_run
//! use promdrop_test_support::{Exporter, binaries};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let exporter = Exporter::start(
//!     &binaries::binaries().exporter,
//!     &[format!("--textfile.directory={}", dir.path().display())],
//! );
//! let metrics = exporter.wait_for("the meta metrics", Duration::from_secs(10), |m| {
//!     m.get("promdrop_files", &[]).is_some()
//! });
//! assert_eq!(metrics.get("promdrop_files", &[]), Some(0.0));
//! ```
#![deny(missing_docs)]

pub mod binaries;
pub mod exporter;
pub mod http;
pub mod metrics;
pub mod peers;
pub mod pki;
pub mod process;
pub mod raw;

pub use exporter::Exporter;
pub use metrics::Metrics;
pub use process::{Process, poll};

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

/// Writes `content` to `dir/name` atomically: a hidden temporary file, then a rename (what
/// the exporter sees is the old file or the new one, never a half-written one).
pub fn write_atomic(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, dir.join(name))
        .unwrap_or_else(|e| panic!("renaming {} into place: {e}", tmp.display()));
}

/// Makes a FIFO (named pipe) at `path` with `mkfifo` (coreutils): what a hostile neighbour
/// plants where a regular file is expected.
pub fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("running mkfifo (coreutils): {e}"));
    assert!(status.success(), "mkfifo {} failed", path.display());
}
