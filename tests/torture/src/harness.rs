//! The harness: promdrop-test-support (tests/support) as the scenarios use it. The exporter
//! of the running profile on a loopback port, guarded child processes (SIGKILLed by PID when
//! dropped, and started with `PR_SET_PDEATHSIG = SIGKILL`, so that nothing outlives a torture
//! run that panics or is killed itself), a keep-alive HTTP client with a deadline on every
//! request, and what `/proc` says of a process.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

pub use promdrop_test_support::Exporter;
pub use promdrop_test_support::binaries::exporter as exporter_binary;
pub use promdrop_test_support::http::Client;
pub use promdrop_test_support::process::{
    ProcessGuard, die_with_parent, rss_bytes, rss_peak_bytes, thread_states,
};

/// How many log lines of the exporter are kept (the last ones).
const LOG_LINES: usize = 400;

/// Starts the exporter on `dir` with `extra` flags, listening on 127.0.0.1 (a free port chosen
/// by the kernel), dying with the calling thread, and waits until `/-/ready` answers 200 (at
/// most `ready_within`).
pub fn start_exporter(dir: &Path, extra: &[String], ready_within: Duration) -> Result<Exporter> {
    Exporter::launcher(&exporter_binary()?)
        .args(&[
            format!("--textfile.directory={}", dir.display()),
            "--log.level=info".to_string(),
        ])
        .args(extra)
        .ready_within(ready_within)
        .die_with_parent()
        .log_lines(LOG_LINES)
        .try_start()
}
