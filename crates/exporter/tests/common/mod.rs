//! The exporter's tests run this package's binary through promdrop-test-support (tests/support):
//! the launcher with debug logs, and the rest as it is there.
#![allow(dead_code, unused_imports)]

use std::path::Path;

pub use promdrop_test_support::raw::parse_response;
pub use promdrop_test_support::{Exporter, Metrics, pki, unix_now, write_atomic};

pub const BINARY: &str = env!("CARGO_BIN_EXE_promdrop-exporter");

/// Starts the binary with `args`, a loopback listen address and debug logs, and waits until
/// it is ready.
pub fn start(args: &[String]) -> Exporter {
    Exporter::launcher(Path::new(BINARY))
        .args(args)
        .args(&["--log.level=debug"])
        .start()
}

/// Starts the binary like [`start`] but returns once it has logged its address, without asking
/// `/-/ready` (for servers that plain HTTP cannot reach: TLS, basic auth).
pub fn spawn(args: &[String]) -> Exporter {
    Exporter::launcher(Path::new(BINARY))
        .args(args)
        .args(&["--log.level=debug"])
        .spawn()
}

pub fn arg(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

pub fn dir_arg(dir: &Path) -> String {
    format!("--textfile.directory={}", dir.display())
}
