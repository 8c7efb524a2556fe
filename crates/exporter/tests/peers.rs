//! The output checked by other tools: `promtool check metrics` parses the classic body,
//! Python prometheus_client's OpenMetrics parser the OpenMetrics one, and for every file the
//! real node_exporter 1.5 accepts, the samples served equal node_exporter's.
//!
//! These tests need promtool (Debian package `prometheus`), python3 with prometheus_client
//! (`tests/requirements.txt`) and `/usr/bin/prometheus-node-exporter` (Debian package
//! `prometheus-node-exporter`); each fails, and does not skip, when its tool is missing.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{Metrics, dir_arg, write_atomic};
use promdrop_test_support::peers::NodeExporter;
use promdrop_test_support::peers::promtool_check_metrics;
use promdrop_test_support::process::try_run_with_stdin;
use promdrop_textformat::{Format, parse};

const WAIT: Duration = Duration::from_secs(10);
const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory holding a bit of everything: the bundled examples (written as the writer, Go,
/// Python and a shell job write them), shared families, a duplicate and a type conflict.
fn mixed_directory() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(workspace().join("examples/textfiles")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    write_atomic(
        tmp.path(),
        "z_conflicts.prom",
        "# HELP promdrop_job_success Whether the job's last run succeeded (1) or not (0).\n\
         # TYPE promdrop_job_success gauge\npromdrop_job_success{job_name=\"backup\"} 0\n\
         promdrop_job_success{job_name=\"z\"} 1\n\
         # TYPE report_generation_seconds counter\nreport_generation_seconds 3\n\
         # HELP z_histogram_seconds A histogram.\n# TYPE z_histogram_seconds histogram\n\
         z_histogram_seconds_bucket{le=\"0.5\"} 1\nz_histogram_seconds_bucket{le=\"+Inf\"} 2\n\
         z_histogram_seconds_sum 1.5\nz_histogram_seconds_count 2\n\
         # HELP z_summary_seconds A summary.\n# TYPE z_summary_seconds summary\n\
         z_summary_seconds{quantile=\"0.5\"} 0.1\nz_summary_seconds_sum 1\nz_summary_seconds_count 3\n\
         z_label_escapes{v=\"a\\\"b\\\\c\\nd\"} 1\n",
    );
    std::fs::write(tmp.path().join("broken.prom"), "broken{ 1\n").unwrap();
    tmp
}

fn run_with_stdin(program: &str, args: &[&str], input: &[u8], missing: &str) -> (i32, String) {
    try_run_with_stdin(program, args, input).unwrap_or_else(|e| panic!("{program}: {e}: {missing}"))
}

#[test]
fn promtool_check_metrics_accepts_the_classic_body() {
    let dir = mixed_directory();
    let exporter = common::start(&[dir_arg(dir.path()), "--compat.node-exporter".into()]);
    let body = exporter.metrics();
    assert!(body.contains("z_histogram_seconds_bucket"), "{body}");
    // Findings on our own metrics are bugs; the examples' own (say a counter without _total)
    // are the files' business.
    let findings = promtool_check_metrics(&body)
        .unwrap_or_else(|e| panic!("promtool check metrics refuses the body ({e})\n{body}"));
    for line in &findings {
        assert!(
            !(line.starts_with("promdrop_")
                || line.starts_with("process_")
                || line.starts_with("node_textfile")),
            "promtool lints our own metric: {line}"
        );
    }
}

#[test]
fn python_openmetrics_parser_accepts_the_openmetrics_body() {
    let dir = mixed_directory();
    let exporter = common::start(&[dir_arg(dir.path()), "--compat.node-exporter".into()]);
    let response = exporter.get("/metrics", &[("Accept", OPENMETRICS_ACCEPT)]);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let body = response.text();
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        n = 0\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   n += len(family.samples)\n\
        print(n)\n";
    let (code, output) = run_with_stdin(
        "python3",
        &["-c", script],
        body.as_bytes(),
        "python3 is needed",
    );
    assert!(
        !output.contains("No module named"),
        "Python's prometheus_client is not installed: pip install -r tests/requirements.txt\n{output}"
    );
    assert_eq!(
        code, 0,
        "the OpenMetrics parser refused the body: {output}\n{body}"
    );
    let samples: usize = output.trim().parse().unwrap_or(0);
    assert!(samples > 30, "only {samples} samples parsed: {output}");
}

// ---------------------------------------------------------------------------------------------
// Side by side with node_exporter.

/// Cases where node_exporter re-encodes a histogram or summary through client_golang's
/// protobuf model, so that its `_bucket`, `_sum` and `_count` samples are not the file's: it
/// adds a zero `_sum`/`_count` the file does not have, drops a `_sum` written before the TYPE
/// line, or truncates a fractional `_count`. promdrop-exporter serves what the file says (and
/// adds a missing `+Inf` bucket from the `_count` as node_exporter does). For these, only the
/// other samples are compared.
const NODE_REENCODES: &[&str] = &[
    "histogram_samples_before_type",
    "summary_bucket_is_another_family",
    "summary_count_not_an_integer",
    "type_uppercase",
];

/// Samples by series, without either exporter's own metrics, normalised as node_exporter's
/// encoding does: empty-valued labels dropped, `le` and `quantile` values written as Go
/// formats the float (`1.0` is `1`), `-0` equal to `0` and `NaN` to `NaN`.
fn data_samples(body: &str, skip_histogram_parts: bool) -> BTreeMap<String, String> {
    let exposition = parse(body.as_bytes(), Format::Classic)
        .unwrap_or_else(|e| panic!("cannot parse an exporter's output: {e}\n{body}"));
    let own = |name: &str| {
        ["node_", "go_", "process_", "promhttp_"]
            .iter()
            .any(|p| name.starts_with(p))
            || promdrop_exporter::names::RESERVED_FAMILIES.contains(&name)
    };
    let mut out = BTreeMap::new();
    for family in &exposition.families {
        for s in &family.samples {
            if own(&s.name) {
                continue;
            }
            if skip_histogram_parts
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|x| s.name.ends_with(x))
            {
                continue;
            }
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|l| !l.value.is_empty())
                .map(|l| {
                    let mut value = l.value.to_string();
                    if (l.name == "le" || l.name == "quantile")
                        && let Ok(v) = value.parse::<f64>()
                    {
                        value.clear();
                        promdrop_textformat::format_go_float(v, &mut value);
                    }
                    (l.name.to_string(), value)
                })
                .collect();
            labels.sort();
            let key = format!("{}{:?}", s.name, labels);
            let v = s.value.number;
            let value = if v.is_nan() {
                "NaN".to_string()
            } else if v == 0.0 {
                "0".to_string()
            } else {
                format!("{:?}", v)
            };
            out.insert(key, value);
        }
    }
    out
}

/// The classic corpus cases node_exporter accepts (and does not crash on), plus our own.
fn accepted_cases() -> Vec<(String, Vec<u8>)> {
    let corpus = workspace().join("tests/fixtures/classic");
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            std::fs::read_to_string(p.join("node_exporter")).is_ok_and(|v| v.trim() == "accept")
        })
        // Where promdrop-textformat deliberately rejects what node_exporter accepts, each case
        // says why in `parser_differs` (see tests/fixtures/classic/README.md).
        .filter(|p| !p.join("parser_differs").exists())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p.join("input.prom")).unwrap())
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 50,
        "only {} accepted cases in {}",
        cases.len(),
        corpus.display()
    );
    cases
}

#[test]
fn every_file_node_exporter_accepts_is_served_with_the_same_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let node = NodeExporter::start(dir);
    let exporter = common::start(&[dir_arg(dir), "--rescan-interval=1s".into()]);

    let mut cases = accepted_cases();
    // Our own: the bundled examples, and job files as the writer writes them.
    for entry in std::fs::read_dir(workspace().join("examples/textfiles")).unwrap() {
        let path = entry.unwrap().path();
        cases.push((
            format!("examples_{}", path.file_stem().unwrap().to_string_lossy()),
            std::fs::read(&path).unwrap(),
        ));
    }
    cases.push((
        "own_writer_job".into(),
        b"# promdrop: written_at=1764259200.000 stale_after=1h\n# HELP promdrop_job_success Whether the job succeeded.\n# TYPE promdrop_job_success gauge\npromdrop_job_success{job_name=\"x\"} 1\n# HELP promdrop_job_duration_seconds Duration.\n# TYPE promdrop_job_duration_seconds gauge\npromdrop_job_duration_seconds{job_name=\"x\"} 12.25\n".to_vec(),
    ));
    cases.push((
        "own_empty_label_padding".into(),
        b"m{a=\"1\"} 1\nm{b=\"2\"} 2\nm 3\n".to_vec(),
    ));

    let mut compared = 0;
    let mut failures = Vec::new();
    let mut previous: Option<PathBuf> = None;
    for (name, input) in &cases {
        if let Some(p) = previous.take() {
            std::fs::remove_file(p).unwrap();
        }
        let file = format!("{name}.prom");
        let path = dir.join(&file);
        let tmp_path = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp_path, input).unwrap();
        std::fs::rename(&tmp_path, &path).unwrap();
        previous = Some(path.clone());
        // Wait until promdrop-exporter serves this file and only it.
        let ours = exporter.wait_for(&format!("{name} to be read"), WAIT, |m| {
            m.with_prefix("promdrop_file_bytes").len() == 1
                && m.file("promdrop_file_bytes", &path) == Some(input.len() as f64)
        });
        let theirs = node.metrics().unwrap();
        assert!(
            theirs.contains("node_textfile_scrape_error 0"),
            "{name}: node_exporter no longer accepts it:\n{theirs}"
        );
        if ours.file("promdrop_file_error", &path) != Some(0.0) {
            let status = exporter.get("/api/v1/files", &[]).text();
            failures.push(format!(
                "{name}: node_exporter accepts it, promdrop-exporter does not: {status}"
            ));
            continue;
        }
        let reencoded = NODE_REENCODES.contains(&name.as_str());
        let (a, b) = (
            data_samples(&ours.body, reencoded),
            data_samples(&theirs, reencoded),
        );
        if a != b {
            failures.push(format!(
                "{name}: samples differ\n  promdrop-exporter: {a:?}\n  node_exporter:     {b:?}"
            ));
        }
        compared += 1;
    }
    println!("compared {compared} files with node_exporter");
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = Metrics::parse; // keep the helper linked in this test binary
}
