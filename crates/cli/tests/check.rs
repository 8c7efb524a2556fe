//! `promdrop check` run as a real process on real files.

use std::process::{Command, Output};

use promdrop_test_support::process::run;

fn promdrop(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promdrop"));
    command.args(args);
    run(command, stdin.unwrap_or_default())
}

fn write(dir: &tempfile::TempDir, name: &str, contents: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write fixture");
    path.display().to_string()
}

#[test]
fn valid_files_exit_zero_and_print_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let classic = write(&dir, "a.prom", "# TYPE up gauge\nup{job=\"a\"} 1\n");
    let om = write(&dir, "b.txt", "# TYPE jobs counter\njobs_total 3\n# EOF\n");
    let out = promdrop(&["check", &classic, &om], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn an_invalid_file_exits_one_with_file_line_col() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(&dir, "good.prom", "up 1\n");
    let bad = write(&dir, "bad.prom", "up 1\nup{job=\"a\" 1\n");
    let out = promdrop(&["check", &good, &bad], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(
        stderr,
        format!("{bad}:2:12: expected ',' or '}}' after a label value, found '1'\n")
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    let out = promdrop(&["check", "-"], Some(b"up 1"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(
        stderr.starts_with("stdin:1:5: expected a newline"),
        "{stderr}"
    );
    let out = promdrop(&["check", "-"], Some(b"up 1\n"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn the_format_flag_forces_a_parser() {
    // Valid classic text is not OpenMetrics (no # EOF).
    let out = promdrop(&["check", "--format", "openmetrics", "-"], Some(b"up 1\n"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(stderr.contains("# EOF"), "{stderr}");
    let out = promdrop(&["check", "--format", "classic", "-"], Some(b"up 1\n"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_missing_file_is_an_io_error_exit_two() {
    let out = promdrop(&["check", "/nonexistent/promdrop/x.prom"], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(
        stderr.starts_with("promdrop check: cannot read /nonexistent/promdrop/x.prom:"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(promdrop(&["check"], None).status.code(), Some(2));
    assert_eq!(
        promdrop(&["check", "--format", "xml", "-"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn json_report_counts_families_and_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(
        &dir,
        "good.prom",
        "# TYPE a counter\na_total 1\nb{x=\"1\"} 2\nb{x=\"2\"} 3\n",
    );
    let bad = write(&dir, "bad.prom", "a 1\n# TYPE a gauge\n");
    let out = promdrop(&["check", "--json", &good, &bad], None);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["valid"], false);
    let files = report["files"].as_array().expect("files");
    assert_eq!(files[0]["valid"], true);
    assert_eq!(files[0]["format"], "classic");
    // `# TYPE a counter` declares a family without samples (the counter's samples would be
    // named `a`), and `a_total` is a family of its own, as in Prometheus's parser.
    assert_eq!(files[0]["families"], 2);
    assert_eq!(files[0]["series"], 3);
    assert_eq!(files[1]["valid"], false);
    assert_eq!(files[1]["errors"][0]["line"], 2);
    assert_eq!(files[1]["errors"][0]["column"], 3);
    assert!(
        files[1]["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("TYPE reported after samples")
    );
}

#[test]
fn what_a_default_exporter_would_not_serve_in_full_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let federated = write(
        &dir,
        "federate.prom",
        "# TYPE up gauge\nup{instance=\"a\"} 1 1764259200000\nup{instance=\"b\"} 1\nup{instance=\"b\"} 0\n",
    );
    let out = promdrop(&["check", &federated], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{federated}:2:20: sample up{{instance=\"a\"}} carries a timestamp"
        )),
        "{err}"
    );
    assert!(lines[0].contains("refuses the whole file"), "{err}");
    assert!(
        lines[1].starts_with(&format!(
            "{federated}:4:1: series up{{instance=\"b\"}} appears more than once"
        )),
        "{err}"
    );
}

#[test]
fn utf8_names_pass_and_bad_quoted_names_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let classic = write(
        &dir,
        "a.prom",
        "# TYPE \"a.b\" gauge\n{\"a.b\",\"c.d\"=\"1\"} 1\n",
    );
    let om = write(
        &dir,
        "b.txt",
        "# TYPE \"jobs.done\" counter\n{\"jobs.done_total\"} 3\n# EOF\n",
    );
    let out = promdrop(&["check", &classic, &om], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = write(&dir, "bad.prom", "{\"a.b} 1\n");
    let out = promdrop(&["check", &bad], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(stderr.starts_with(&format!("{bad}:1:")), "{stderr}");
}
