//! What `promdrop run` writes for a job that serves the exporter's own families, the exporter
//! serves: `promdrop run` wraps Debian's node_exporter (which serves seven `process_*`
//! families and, with its textfile collector, `node_textfile_scrape_error`), and
//! promdrop-exporter serves those series, with their `job_name`, in the same family blocks as
//! its own series of those names: one HELP/TYPE block per family, which Debian's promtool
//! accepts.
//!
//! Needs `/usr/bin/prometheus-node-exporter` (Debian package `prometheus-node-exporter`) and
//! `promtool` (Debian package `prometheus`); fails, and does not skip, without them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use promdrop_e2e::{
    Exporter, NODE_EXPORTER, Process, binaries, free_port, require_tool, run_with_stdin,
};
use promdrop_textformat::{Format, parse};

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `promdrop run --job node` around node_exporter for three seconds (then `timeout`
/// ends it) and returns the file it wrote.
fn run_node_exporter(dir: &Path, textfiles: &Path) -> String {
    require_tool(NODE_EXPORTER, "prometheus-node-exporter");
    let address = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(&binaries().promdrop);
    command
        .args(["run", "--dir"])
        .arg(dir)
        .args(["--job", "node", "--scrape"])
        .arg(format!("http://{address}/metrics"))
        .args([
            "--scrape-interval",
            "100ms",
            "--",
            "timeout",
            "-s",
            "TERM",
            "3",
        ])
        .arg(NODE_EXPORTER)
        .arg(format!("--web.listen-address={address}"))
        .arg("--collector.disable-defaults")
        .arg("--collector.textfile")
        .arg(format!(
            "--collector.textfile.directory={}",
            textfiles.display()
        ))
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("PROMDROP_DIR");
    let mut run = Process::spawn("promdrop run", command);
    let started = Instant::now();
    while run.try_status().is_none() {
        assert!(
            started.elapsed() < DEADLINE,
            "promdrop run did not end:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = std::fs::read_to_string(dir.join("node.prom"))
        .unwrap_or_else(|e| panic!("node.prom: {e}\n{}", run.log()));
    assert!(
        file.contains("process_cpu_seconds_total{job_name=\"node\"}"),
        "promdrop run did not get node_exporter's metrics:\n{file}\n--- log ---\n{}",
        run.log()
    );
    file
}

/// The `process_*` families of a classic text and their samples (name and labels).
fn process_series(text: &str) -> BTreeMap<String, Vec<String>> {
    let exposition = parse(text.as_bytes(), Format::Classic).expect("a classic text");
    let mut out = BTreeMap::new();
    for family in exposition.families {
        if family.name.starts_with("process_") {
            let series = family
                .samples
                .iter()
                .map(promdrop_textformat::describe_series)
                .collect();
            out.insert(family.name.to_string(), series);
        }
    }
    out
}

/// How many `# TYPE` lines each family has in `body`.
fn type_lines(body: &str) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or("");
            *out.entry(name).or_default() += 1;
        }
    }
    out
}

/// Runs Debian's promtool on `body`; fails unless it parses it (0: clean, 3: lint findings on
/// the files' metrics only).
fn promtool_accepts(body: &str) {
    let (code, output) = run_with_stdin(
        Path::new("promtool"),
        &["check", "metrics"],
        body.as_bytes(),
    );
    assert!(
        code == 0 || code == 3,
        "promtool check metrics exited {code}: {output}\n{body}"
    );
    for line in output.lines() {
        assert!(
            !(line.starts_with("process_") || line.starts_with("node_textfile")),
            "promtool lints a shared family: {line}\n{body}"
        );
    }
}

#[test]
fn a_wrapped_jobs_process_families_are_served_in_the_exporters_own_blocks() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("jobs");
    let textfiles = tmp.path().join("node-textfiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&textfiles).unwrap();
    let file = run_node_exporter(&dir, &textfiles);
    let written = process_series(&file);
    assert!(
        written.len() >= 7,
        "node_exporter served fewer process_* families than expected: {written:?}"
    );
    assert!(file.contains("node_textfile_scrape_error{job_name=\"node\"} 0"));

    for compat in [false, true] {
        let mut args = vec![format!("--textfile.directory={}", dir.display())];
        if compat {
            args.push("--compat.node-exporter".to_string());
        }
        let exporter = Exporter::launcher(&binaries().exporter).args(&args).start();
        let body = exporter.metrics();
        let served = process_series(&body);
        // Every series the job wrote is served, with its job_name, and the exporter's own too.
        for (family, series) in &written {
            let have = served.get(family).cloned().unwrap_or_default();
            for s in series {
                assert!(
                    have.contains(s),
                    "compat={compat}: {s} is not served\n{body}"
                );
            }
        }
        for own in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                served[own].iter().any(|s| s == own),
                "compat={compat}: the exporter's own {own} is missing\n{body}"
            );
        }
        assert!(
            body.contains("node_textfile_scrape_error{job_name=\"node\"} 0\n"),
            "compat={compat}\n{body}"
        );
        // One block per family: the files' series are in the exporter's own blocks.
        for (family, n) in type_lines(&body) {
            assert_eq!(n, 1, "compat={compat}: {family} has {n} TYPE lines\n{body}");
        }
        assert!(
            body.contains("promdrop_conflicts_total{kind=\"reserved\"} 0\n"),
            "compat={compat}: nothing here collides\n{body}"
        );
        promtool_accepts(&body);
        exporter.terminate();
    }
}
