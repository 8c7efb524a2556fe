//! `promdrop write` run as a real process on real directories.

use std::path::Path;
use std::process::{Command, Output};

use promdrop_test_support::process::run;
use promdrop_textformat::{Format, parse};

fn promdrop_write(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promdrop"));
    command
        .arg("write")
        .args(args)
        .env_remove("PROMDROP_DIR")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("POD_NAMESPACE");
    for (name, value) in env {
        command.env(name, value);
    }
    // The process may refuse the input before reading all of it: `run` ignores a broken pipe.
    run(command, stdin)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn valid_input_is_written_with_grouping_labels_and_a_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let input = b"# HELP rows_copied_total Rows copied.\n# TYPE rows_copied_total counter\nrows_copied_total{table=\"users\"} 42\nrows_copied_total{table=\"orders\",job_name=\"own\"} 7\n# TYPE last_run_seconds gauge\nlast_run_seconds 12.5\n";
    let out = promdrop_write(
        &[
            "--dir",
            d,
            "--job",
            "db-copy",
            "--label",
            "team=data",
            "--stale-after",
            "1h",
            "--expire-after",
            "1d",
        ],
        &[],
        input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("db-copy.prom")).expect("job file");
    let header = text.lines().next().expect("a first line");
    assert!(header.starts_with("# promdrop: written_at="), "{text}");
    assert!(
        header.ends_with(" stale_after=1h expire_after=1d"),
        "{text}"
    );
    let body = text.split_once('\n').expect("header line").1;
    assert_eq!(
        body,
        "# HELP rows_copied_total Rows copied.\n# TYPE rows_copied_total counter\nrows_copied_total{table=\"users\",job_name=\"db-copy\",team=\"data\"} 42\nrows_copied_total{table=\"orders\",job_name=\"own\",team=\"data\"} 7\n# TYPE last_run_seconds gauge\nlast_run_seconds{job_name=\"db-copy\",team=\"data\"} 12.5\n"
    );
    // The file parses as the exporter reads it, and holds no outcome metrics.
    let exposition = parse(text.as_bytes(), Format::Classic).expect("the file parses");
    assert_eq!(exposition.sample_count(), 3);
    assert!(!text.contains("promdrop_job_"), "{text}");
    // Only the file and the hidden lock file: no temporary file left behind.
    assert_eq!(entries(dir.path()), [".db-copy.prom.lock", "db-copy.prom"]);
}

#[test]
fn openmetrics_input_is_written_as_classic_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let input =
        b"# TYPE jobs counter\n# HELP jobs Jobs done.\njobs_total 3\njobs_created 1.7e9\n# EOF\n";
    let out = promdrop_write(&["--dir", d, "--job", "om"], &[], input);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("om.prom")).expect("job file");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(text.contains("jobs_total{job_name=\"om\"} 3\n"), "{text}");
    parse(text.as_bytes(), Format::Classic).expect("classic text");
}

#[test]
fn the_completion_index_and_promdrop_dir_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let out = promdrop_write(
        &["--job", "shard"],
        &[("PROMDROP_DIR", d), ("JOB_COMPLETION_INDEX", "3")],
        b"done 1\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("shard-3.prom")).expect("job file");
    assert!(
        text.ends_with("done{job_name=\"shard\",completion_index=\"3\"} 1\n"),
        "{text}"
    );
}

#[test]
fn the_namespace_comes_from_the_downward_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let out = promdrop_write(
        &["--job", "report"],
        &[("PROMDROP_DIR", d), ("POD_NAMESPACE", "team-a")],
        b"rows 1\nevicted{namespace=\"web\"} 2\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("report.prom")).expect("job file");
    // Written into the directory as mounted (deploy/ mounts the namespace's own subdirectory);
    // a sample's own namespace label is kept.
    assert!(
        text.contains("rows{job_name=\"report\",namespace=\"team-a\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("evicted{namespace=\"web\",job_name=\"report\"} 2\n"),
        "{text}"
    );
}

#[test]
fn invalid_input_exits_one_and_leaves_the_previous_file_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let out = promdrop_write(&["--dir", d, "--job", "etl"], &[], b"rows 1\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let target = dir.path().join("etl.prom");
    let before = std::fs::read(&target).expect("first version");

    let out = promdrop_write(
        &["--dir", d, "--job", "etl"],
        &[],
        b"rows 2\nrows{job=\"a\" 1\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "stdin:2:14: expected ',' or '}' after a label value, found '1'\n"
    );
    assert_eq!(std::fs::read(&target).expect("still there"), before);

    // A missing final newline, invalid UTF-8: refused the same way.
    let out = promdrop_write(&["--dir", d, "--job", "etl"], &[], b"rows 2");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("stdin:1:7: "), "{}", stderr(&out));
    let out = promdrop_write(&["--dir", d, "--job", "etl"], &[], b"# HELP x \xff\nx 1\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("stdin:1:"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).expect("still there"), before);
    assert_eq!(entries(dir.path()), [".etl.prom.lock", "etl.prom"]);
}

#[test]
fn input_larger_than_max_bytes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let input: String = (0..100).map(|i| format!("x{{i=\"{i:03}\"}} 1\n")).collect();
    let size = input.len().to_string();
    let one_less = (input.len() - 1).to_string();
    let out = promdrop_write(
        &["--dir", d, "--job", "big", "--max-bytes", &one_less],
        &[],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "stdin: the input is larger than --max-bytes ({one_less} bytes); nothing was written\n"
        )
    );
    assert!(!dir.path().join("big.prom").exists());
    let out = promdrop_write(
        &["--dir", d, "--job", "big", "--max-bytes", &size],
        &[],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_missing_directory_exits_two_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("not-mounted");
    let m = missing.to_str().expect("utf-8 path");
    let out = promdrop_write(&["--dir", m, "--job", "etl"], &[], b"rows 1\n");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "promdrop write: cannot write {m}/etl.prom: directory {m} does not exist (is the volume mounted?)"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!missing.exists());
}

#[test]
fn a_read_only_directory_exits_two_and_keeps_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let out = promdrop_write(&["--dir", d, "--job", "ro"], &[], b"rows 1\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let target = dir.path().join("ro.prom");
    let before = std::fs::read(&target).expect("first version");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    // Root ignores directory permissions: then there is nothing to test here.
    let probe = dir.path().join("probe");
    if std::fs::write(&probe, "").is_ok() {
        let _ = std::fs::remove_file(&probe);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod back");
        eprintln!("skipped: this user can write to a read-only directory (root)");
        return;
    }
    let out = promdrop_write(&["--dir", d, "--job", "ro"], &[], b"rows 2\n");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod back");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("promdrop write: cannot write {d}/ro.prom: ")),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).expect("still there"), before);
}

#[test]
fn usage_errors_exit_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    // No --job.
    assert_eq!(
        promdrop_write(&["--dir", d], &[], b"").status.code(),
        Some(2)
    );
    // A label without '='.
    assert_eq!(
        promdrop_write(&["--dir", d, "--job", "x", "--label", "team"], &[], b"")
            .status
            .code(),
        Some(2)
    );
    // A bad duration (clap's own message), a job name that is not a file name, a reserved
    // label name (one line each).
    let out = promdrop_write(
        &["--dir", d, "--job", "x", "--stale-after", "soon"],
        &[],
        b"x 1\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a Prometheus duration"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["--dir", d, "--job", "../x"][..],
        &["--dir", d, "--job", "x", "--label", "le=1"][..],
    ] {
        let out = promdrop_write(args, &[], b"x 1\n");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    let out = promdrop_write(&["--dir", d, "--job", "../x"], &[], b"x 1\n");
    assert!(
        stderr(&out).starts_with("promdrop write: job name \"../x\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[test]
fn timestamps_and_a_repeated_series_are_refused_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let path = dir.path().join("fed.prom");
    let out = promdrop_write(&["--dir", d, "--job", "fed"], &[], b"ok 1\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let previous = std::fs::read(&path).expect("job file");

    let out = promdrop_write(
        &["--dir", d, "--job", "fed"],
        &[],
        b"# TYPE up gauge\nup{instance=\"a\"} 1\nup{instance=\"b\"} 1 1764259200000\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("stdin:3:20: sample up{instance=\"b\"} carries a timestamp"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = promdrop_write(
        &["--dir", d, "--job", "fed"],
        &[],
        b"up{instance=\"a\"} 1\nup{instance=\"a\"} 2\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("stdin:2:1: series up{instance=\"a\"} appears more than once"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&path).expect("job file"), previous);
    assert_eq!(entries(dir.path()), [".fed.prom.lock", "fed.prom"]);
}

#[test]
fn utf8_names_are_accepted_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let input = "# TYPE \"http.server.requests_total\" counter\n{\"http.server.requests_total\",\"http.method\"=\"GET\"} 3\n# TYPE legacy gauge\nlegacy{\"région\"=\"eu\"} 1\n";
    let out = promdrop_write(
        &[
            "--dir",
            d,
            "--job",
            "utf8",
            "--label",
            "deployment.environment=prod",
        ],
        &[],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("utf8.prom")).expect("job file");
    let body = text.split_once('\n').expect("header line").1;
    assert_eq!(
        body,
        "# TYPE \"http.server.requests_total\" counter\n{\"http.server.requests_total\",\"http.method\"=\"GET\",job_name=\"utf8\",\"deployment.environment\"=\"prod\"} 3\n# TYPE legacy gauge\nlegacy{\"région\"=\"eu\",job_name=\"utf8\",\"deployment.environment\"=\"prod\"} 1\n"
    );
    parse(text.as_bytes(), Format::Classic).expect("the file parses");
    // An empty label name is still refused.
    let out = promdrop_write(
        &["--dir", d, "--job", "utf8", "--label", "=x"],
        &[],
        input.as_bytes(),
    );
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
}
