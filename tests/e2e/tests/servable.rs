//! What promdrop's tools write with success, a real promdrop-exporter with default flags serves
//! in full (issue 9): `promdrop write` refuses sample timestamps and a repeated series (so the
//! previous file stays served), and `promdrop run` around a `/federate`-like job strips them and
//! keeps the outcome metrics. Each file is then scraped from the real exporter binary.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use promdrop_e2e::{Exporter, binaries, poll, run_with_stdin, workspace_root};

/// Polls the exporter's `/metrics` until every line of `wanted` is in it.
fn wait_served(exporter: &Exporter, wanted: &[&str]) -> String {
    poll(
        "the exporter to serve the job file",
        Duration::from_secs(30),
        || {
            let body = exporter.metrics();
            match wanted.iter().find(|line| !body.contains(*line)) {
                None => Ok(body),
                Some(missing) => Err(format!("{missing} not served in:\n{body}")),
            }
        },
    )
}

fn write(dir: &Path, job: &str, input: &[u8]) -> (i32, String) {
    let dir = dir.to_str().expect("utf-8 path");
    run_with_stdin(
        &binaries().promdrop,
        &["write", "--dir", dir, "--job", job],
        input,
    )
}

#[test]
fn promdrop_write_refuses_what_the_exporter_would_not_serve_and_the_previous_file_stays_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = Exporter::start(
        &binaries().exporter,
        &[format!("--textfile.directory={}", dir.path().display())],
    );

    let (code, output) = write(
        dir.path(),
        "fed",
        b"# TYPE up gauge\nup{instance=\"a\"} 1\n",
    );
    assert_eq!(code, 0, "{output}");
    wait_served(&exporter, &["up{instance=\"a\",job_name=\"fed\"} 1\n"]);

    // A /federate scrape: timestamps. Refused, and the previous file is served as it was.
    let (code, output) = write(
        dir.path(),
        "fed",
        b"# TYPE up gauge\nup{instance=\"a\"} 0 1764259200000\nup{instance=\"b\"} 1 1764259200000\n",
    );
    assert_eq!(code, 1, "{output}");
    assert!(output.starts_with("stdin:2:20: "), "{output}");
    // A series twice: refused too.
    let (code, output) = write(
        dir.path(),
        "fed",
        b"# TYPE up gauge\nup{instance=\"a\"} 0\nup{instance=\"a\"} 2\n",
    );
    assert_eq!(code, 1, "{output}");
    assert!(output.starts_with("stdin:3:1: "), "{output}");

    let body = wait_served(&exporter, &["up{instance=\"a\",job_name=\"fed\"} 1\n"]);
    assert!(!body.contains("instance=\"b\""), "{body}");
    let file_errors: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("promdrop_file_error") && !l.ends_with(" 0"))
        .collect();
    assert!(file_errors.is_empty(), "{file_errors:?}\n{body}");
}

#[test]
fn promdrop_run_around_a_federate_job_writes_a_file_the_exporter_serves_in_full() {
    promdrop_e2e::require_tool("/usr/bin/python3", "python3");
    let dir = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let body = work.path().join("federate.txt");
    std::fs::write(
        &body,
        "# TYPE up gauge\nup{instance=\"a\"} 1 1764259200000\nup{instance=\"b\"} 0 1764259200000\nup{instance=\"a\"} 0 1764259200000\n",
    )
    .expect("body");
    let port = promdrop_e2e::free_port();
    let script = workspace_root().join("crates/cli/tests/support/job_server.py");
    let out = Command::new(&binaries().promdrop)
        .arg("run")
        .arg("--dir")
        .arg(dir.path())
        .args([
            "--job",
            "federated",
            "--scrape-interval",
            "100ms",
            "--scrape",
        ])
        .arg(format!("http://127.0.0.1:{port}/federate"))
        .arg("--")
        .arg("/usr/bin/python3")
        .arg(&script)
        .args(["--port", &port.to_string(), "--body-file"])
        .arg(&body)
        .env_remove("PROMDROP_DIR")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .output()
        .expect("promdrop run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("carries a timestamp"), "{stderr}");

    let exporter = Exporter::start(
        &binaries().exporter,
        &[format!("--textfile.directory={}", dir.path().display())],
    );
    wait_served(
        &exporter,
        &[
            "up{instance=\"a\",job_name=\"federated\"} 1\n",
            "up{instance=\"b\",job_name=\"federated\"} 0\n",
            "promdrop_job_success{job_name=\"federated\"} 1\n",
            "promdrop_job_exit_code{job_name=\"federated\"} 0\n",
        ],
    );
}
