//! The peers the tests compare promdrop with: Debian's node_exporter and promtool.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::http;
use crate::process::{Process, free_port, run};

/// How long a server gets to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Debian's node_exporter (package `prometheus-node-exporter`, 1.5 on bookworm).
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// Fails the test, saying which Debian package provides it, when `path` is not a file.
pub fn require_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} not found: install the Debian package {package} (apt-get install -y {package}); \
         the tests that run it need it and do not skip"
    );
}

/// Debian's promtool (package `prometheus`).
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// `promtool check metrics` on `body`, which reads it with Prometheus's own text parser (a TYPE
/// or HELP line given twice for one name fails there): `Ok` with its linter's findings when it
/// parsed (exit code 3: a family without HELP, a counter without `_total`), `Err` with its
/// exit code and output when it did not. Fails the test when promtool is not installed.
pub fn promtool_check_metrics(body: &str) -> Result<Vec<String>, String> {
    require_tool(PROMTOOL, "prometheus");
    let mut command = Command::new(PROMTOOL);
    command.args(["check", "metrics"]);
    let output = run(command, body.as_bytes());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    // Exit code 1 with "error while linting: text format parsing error ..." is a refusal.
    let parse_error = stderr.contains("error while linting") || stderr.contains("parsing error");
    match output.status.code() {
        Some(0 | 3) if !parse_error => Ok(stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()),
        code => Err(format!("exit code {code:?}\n{stderr}")),
    }
}

/// A running node_exporter with only its textfile collector, on 127.0.0.1.
pub struct NodeExporter {
    /// The process (stopped when dropped).
    pub process: Process,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl NodeExporter {
    /// Starts [`NODE_EXPORTER`] serving `dir` (`--collector.disable-defaults
    /// --collector.textfile`), and waits until `/metrics` answers. Fails the test when it is
    /// not installed.
    pub fn start(dir: &Path) -> NodeExporter {
        require_tool(NODE_EXPORTER, "prometheus-node-exporter");
        let mut last = String::new();
        for _ in 0..5 {
            let address = format!("127.0.0.1:{}", free_port());
            let mut command = Command::new(NODE_EXPORTER);
            command
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!("--collector.textfile.directory={}", dir.display()))
                .arg(format!("--web.listen-address={address}"));
            let mut node = NodeExporter {
                process: Process::spawn("node_exporter", command),
                address,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if node.metrics().is_ok() {
                    return node;
                }
                if node.process.try_status().is_some() {
                    break; // most likely the port was taken: another one
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = node.process.log();
        }
        panic!("node_exporter did not start; last log:\n{last}");
    }

    /// `/metrics` (classic text), or why not.
    pub fn metrics(&self) -> std::io::Result<String> {
        let response = http::get(&self.address, "/metrics", &[])?;
        if response.status != 200 {
            return Err(std::io::Error::other(format!(
                "status {}: {}",
                response.status,
                response.text()
            )));
        }
        Ok(response.text())
    }
}
