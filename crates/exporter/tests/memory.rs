//! Memory against the shipped limits (issue 14, finding 3): four files that each passed the
//! per-file limits once took the exporter to 331 MB, over its container's limit, and it was
//! OOM-killed at every start. Here the real binary runs with the shipped DaemonSet's own
//! arguments, read from deploy/overlays/daemonset-hostpath/daemonset.yaml, on a directory that
//! holds more than its caps allow, and its peak resident size (VmHWM) must stay under the
//! memory limit shipped beside those arguments, and under the sizing rule docs/OPERATIONS.md
//! gives (see [`sizing_rule`]).
//!
//! The binary is the debug build `cargo test` makes; its heap use is the release build's
//! (the difference is code size, a few MB, well inside the margins).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Exporter, Metrics, write_atomic};
use promdrop_test_support::binaries::workspace_root;
use promdrop_test_support::process::rss_peak_bytes;

const MIB: u64 = 1024 * 1024;

/// The shipped exporter container: its arguments and its memory limit in bytes.
struct Shipped {
    args: Vec<String>,
    memory_limit: u64,
}

/// The `exporter` container of the hostPath DaemonSet, as shipped.
fn shipped_daemonset() -> Shipped {
    let path = workspace_root().join("deploy/overlays/daemonset-hostpath/daemonset.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: serde_norway::Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let containers = doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: no containers", path.display()));
    let exporter = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("exporter"))
        .unwrap_or_else(|| panic!("{}: no container named exporter", path.display()));
    let args = exporter["args"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: the exporter has no args", path.display()))
        .iter()
        .map(|a| a.as_str().expect("an argument is a string").to_string())
        .collect();
    let limit = exporter["resources"]["limits"]["memory"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: the exporter has no memory limit", path.display()));
    Shipped {
        args,
        memory_limit: quantity_bytes(limit),
    }
}

/// A Kubernetes memory quantity with a binary suffix (`384Mi`), in bytes.
fn quantity_bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.trim_end_matches(char::is_alphabetic).len());
    let number: u64 = number
        .parse()
        .unwrap_or_else(|e| panic!("memory limit {quantity:?}: {e}"));
    let unit = match unit {
        "Ki" => 1024,
        "Mi" => MIB,
        "Gi" => 1024 * MIB,
        "" => 1,
        other => panic!("memory limit {quantity:?}: unit {other:?} not handled by this test"),
    };
    number * unit
}

/// The shipped arguments, with the directory and listen address this test uses instead.
fn shipped_args(shipped: &Shipped, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = shipped
        .args
        .iter()
        .filter(|a| {
            !a.starts_with("--textfile.directory=") && !a.starts_with("--web.listen-address=")
        })
        .cloned()
        .collect();
    args.push(format!("--textfile.directory={}", dir.display()));
    args
}

/// Writes `<dir>/<namespace>/<job>.prom` files: `files` of them spread over 8 namespaces,
/// each of `series` lines of `line_bytes` bytes (a shared family, as real jobs share names).
fn fill(dir: &Path, files: usize, series: usize, line_bytes: usize) -> Vec<PathBuf> {
    let mut written = Vec::new();
    for f in 0..files {
        let namespace = format!("team-{}", f % 8);
        let ns_dir = dir.join(&namespace);
        std::fs::create_dir_all(&ns_dir).unwrap();
        let mut text = String::with_capacity(series * line_bytes + 200);
        text.push_str("# HELP shared_bytes_processed Bytes a job step processed.\n");
        text.push_str("# TYPE shared_bytes_processed gauge\n");
        for s in 0..series {
            let start = text.len();
            text.push_str(&format!(
                "shared_bytes_processed{{file=\"{f}\",step=\"{s:07}\",path=\""
            ));
            // Pad the line to `line_bytes` with a path-like label value.
            let used = text.len() - start + "\"} 1234567.5\n".len();
            let pad = line_bytes.saturating_sub(used).max(1);
            text.extend(std::iter::repeat_n('p', pad));
            text.push_str("\"} 1234567.5\n");
        }
        let name = format!("job-{f:02}.prom");
        write_atomic(&ns_dir, &name, &text);
        written.push(ns_dir.join(name));
    }
    written
}

/// Starts the shipped configuration on `dir`, asks twice for every body a scraper can ask
/// for, and returns the exporter with its /metrics.
fn serve_everything(args: &[String]) -> (Exporter, Metrics) {
    let exporter = Exporter::launcher(Path::new(common::BINARY))
        .args(args)
        .ready_within(Duration::from_secs(300))
        .start();
    for accept in [
        "text/plain;version=0.0.4",
        "text/plain;version=1.0.0;escaping=allow-utf-8",
        "application/openmetrics-text;version=1.0.0",
    ] {
        for encoding in ["gzip", "identity"] {
            // Twice, as a scraper asks: a second request is what makes the server keep
            // anything it made for the first (the plain body of a directory of thousands of
            // files is then joined; these few files' bodies are not: JOIN_PARTS).
            for _ in 0..2 {
                let r = exporter.get(
                    "/metrics",
                    &[("Accept", accept), ("Accept-Encoding", encoding)],
                );
                assert_eq!(r.status, 200, "{accept} {encoding}: {}", r.text());
            }
        }
    }
    let metrics = Metrics::parse(&exporter.metrics());
    (exporter, metrics)
}

/// What the exporter serves: the bytes and series of the files served (no error), and the
/// largest file read.
struct Served {
    bytes: u64,
    series: u64,
    largest: u64,
}

fn served(metrics: &Metrics, files: &[PathBuf]) -> Served {
    let mut served = Served {
        bytes: 0,
        series: 0,
        largest: 0,
    };
    for path in files {
        let bytes = std::fs::metadata(path).unwrap().len();
        served.largest = served.largest.max(bytes);
        if metrics.file("promdrop_file_error", path) == Some(0.0) {
            served.bytes += bytes;
            served.series += metrics
                .file("promdrop_file_series", path)
                .unwrap_or_else(|| panic!("no promdrop_file_series for {}", path.display()))
                as u64;
        }
    }
    served
}

/// docs/OPERATIONS.md's sizing rule: 3 × the bytes served + 150 bytes a series served + 3 × the
/// largest file + 30 MiB.
fn sizing_rule(served: &Served) -> u64 {
    3 * served.bytes + 150 * served.series + 3 * served.largest + 30 * MIB
}

fn check(shape: &str, files: usize, series: usize, line_bytes: usize) {
    let shipped = shipped_daemonset();
    let dir = tempfile::tempdir().unwrap();
    let written = fill(dir.path(), files, series, line_bytes);
    let total: u64 = written
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let (exporter, metrics) = serve_everything(&shipped_args(&shipped, dir.path()));
    let peak = rss_peak_bytes(exporter.pid()).expect("VmHWM of the exporter");
    let resident = exporter.rss_bytes().expect("VmRSS of the exporter");
    let served = served(&metrics, &written);
    let rule = sizing_rule(&served);
    let report = format!(
        "{shape}: {files} files, {:.1} MB written, {:.1} MB and {} series served, largest \
         {:.1} MB: peak {:.1} MB, resident after {:.1} MB; shipped limit {:.1} MB, sizing rule \
         {:.1} MB",
        total as f64 / 1e6,
        served.bytes as f64 / 1e6,
        served.series,
        served.largest as f64 / 1e6,
        peak as f64 / 1e6,
        resident as f64 / 1e6,
        shipped.memory_limit as f64 / 1e6,
        rule as f64 / 1e6,
    );
    eprintln!("{report}");
    assert!(served.bytes > 0, "nothing served: {report}");
    assert!(
        served.bytes < total,
        "the directory was meant to hold more than the shipped caps allow, and all of it was \
         served: {report}"
    );
    assert!(
        peak <= shipped.memory_limit,
        "over the shipped memory limit: an OOM kill at every start: {report}"
    );
    assert!(
        peak <= rule,
        "over docs/OPERATIONS.md's sizing rule: {report}"
    );
}

/// Files as large as `--file.max-bytes` allows (16 MiB, long lines): more bytes than the
/// directory cap.
#[test]
fn files_at_the_byte_limits_stay_under_the_shipped_memory_limit() {
    check("long lines", 8, 95_000, 176);
}

/// Files with as many series as `--file.max-series` allows, in short lines: more series than
/// the directory cap (the cost of a series is more than its bytes).
#[test]
fn files_at_the_series_limits_stay_under_the_shipped_memory_limit() {
    check("short lines", 16, 99_000, 62);
}

/// Files that reach both directory caps at once (the bytes cap and the series cap), the most
/// the shipped configuration can hold.
#[test]
fn files_at_both_directory_caps_stay_under_the_shipped_memory_limit() {
    check("both caps", 14, 99_000, 86);
}
