//! Every way a real job ends, and what the file says after it (issue 9): the crate's examples
//! (`fallible_job`, `otel_job`, `tokio_job`) and the `batch_job` binary run as real child
//! processes, are signalled or killed, and their job files are read back.
//!
//! The examples are built once per run of this test binary with `cargo build --examples`
//! (Cargo hands an integration test its package's binaries only), into the workspace's
//! target directory.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// The directory of the crate's examples, built once.
fn examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "-p", "promdrop-writer", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building the examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        };
        target.join("debug").join("examples")
    })
}

fn example(name: &str) -> Command {
    let mut command = Command::new(examples().join(name));
    command
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("PROMDROP_DIR")
        .env("RUST_BACKTRACE", "0");
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("the example runs")
}

/// Starts `command` and waits until it prints `line` on stdout.
fn spawn_until(mut command: Command, line: &str) -> Child {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read stdout");
    assert_eq!(first.trim(), line, "the example did not start");
    child
}

/// Waits for `child` to exit, within `limit`.
fn wait_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn main_returning_err_through_question_mark_is_unfinished_not_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let path = dir.path().join("fallible-job.prom");
    let input = inputs.path().join("input.txt");
    std::fs::write(&input, "a\nb\nc\n").unwrap();
    let run = |input: &Path| {
        let mut command = example("fallible_job");
        command
            .arg("--dir")
            .arg(dir.path())
            .arg("--input")
            .arg(input);
        output(command)
    };

    let out = run(&input);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "success");
    assert_eq!(file.get("fallible_job_lines_total"), 3.0);
    let succeeded_at = file.get("promdrop_job_last_success_timestamp_seconds");

    // The input is missing: `?` returns Err from main before finish.
    let out = run(&inputs.path().join("missing.txt"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "unfinished");
    assert_eq!(file.get("promdrop_job_success"), 0.0);
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    assert_eq!(
        file.get("promdrop_job_last_success_timestamp_seconds"),
        succeeded_at,
        "a failed run moved the last success"
    );

    // The work fails: finish_with records an error and main returns the job's own error.
    std::fs::write(&input, "a\nfail\n").unwrap();
    let out = run(&input);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input asked to fail"),
        "{out:?}"
    );
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "error");
    assert_eq!(file.get("fallible_job_lines_total"), 1.0);
    assert_eq!(
        file.get("promdrop_job_last_success_timestamp_seconds"),
        succeeded_at
    );
    assert_no_debris(dir.path());
}

#[test]
fn finish_with_keeps_the_jobs_exit_status_when_the_metrics_write_fails() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "a\n").unwrap();
    let missing = dir.path().join("not-mounted");
    let mut command = example("fallible_job");
    command
        .arg("--dir")
        .arg(&missing)
        .arg("--input")
        .arg(&input);
    let out = output(command);
    // The job succeeded: exit 0, whatever happened to its metrics, which stderr explains.
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "directory {} does not exist (is the volume mounted?)",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(".lock"), "{stderr}");
}

#[test]
fn an_opentelemetry_job_sigtermed_at_one_second_keeps_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otel-job.prom");
    let mut command = example("otel_job");
    command
        .arg("--dir")
        .arg(dir.path())
        .args(["--items", "1234", "--sleep", "30"]);
    let mut child = spawn_until(command, "counted");
    std::thread::sleep(Duration::from_secs(1));
    kill(&child, SIGTERM);
    let status = wait_within(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(143), "{status:?}");
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "signal");
    // The SDK's periodic reader (60 s) never exported: the handoff flushed the provider.
    assert_eq!(
        file.value("otel_job_items_total", &[("kind", "document")]),
        Some(1234.0),
        "{}",
        file.text
    );
    file.assert_grouped("otel-job");
}

#[test]
fn an_opentelemetry_job_that_panics_or_succeeds_keeps_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otel-job.prom");
    for (flags, code, reason) in [(&["--panic"][..], 101, "panic"), (&[][..], 0, "success")] {
        let mut command = example("otel_job");
        command
            .arg("--dir")
            .arg(dir.path())
            .args(["--items", "77"])
            .args(flags);
        let out = output(command);
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        let file = JobFile::read(&path);
        assert_eq!(file.reason(), reason);
        assert_eq!(file.value("otel_job_items_total", &[]), Some(77.0));
    }
}

#[test]
fn a_tokio_job_draining_after_sigterm_has_its_drain_in_the_final_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokio-job.prom");
    let mut command = example("tokio_job");
    command.arg("--dir").arg(dir.path()).args(["--drain", "2"]);
    let mut child = spawn_until(command, "started");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    kill(&child, SIGTERM);
    // At once: a snapshot that says the job still runs (what it had done at the signal).
    assert!(
        wait_for(Duration::from_secs(1), || std::fs::read_to_string(&path)
            .is_ok_and(|t| t.contains("tokio_job_processed_total{"))),
        "no snapshot at the signal"
    );
    let file = JobFile::read(&path);
    assert_eq!(file.get("promdrop_job_running"), 1.0, "{}", file.text);

    let status = wait_within(&mut child, Duration::from_secs(20));
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "the job was cut off after {:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(143), "{status:?}");
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "signal");
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    // One item every 10 ms for 2 s: about 200, on a loaded machine fewer.
    let drained = file.get("tokio_job_drained_total");
    assert!(drained >= 50.0, "the drain is not in the file: {drained}");
    assert_no_debris(dir.path());
}

#[test]
fn a_job_that_outlives_the_graceful_deadline_is_written_and_ended_by_promdrop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokio-job.prom");
    let mut command = example("tokio_job");
    command
        .arg("--dir")
        .arg(dir.path())
        .args(["--drain", "60", "--deadline", "1"]);
    let mut child = spawn_until(command, "started");
    let signalled = Instant::now();
    kill(&child, SIGTERM);
    let status = wait_within(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(143), "{status:?}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "signal");
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    assert!(file.get("tokio_job_drained_total") >= 1.0, "{}", file.text);
}

#[test]
fn sigkill_at_two_seconds_leaves_a_running_snapshot_not_the_last_runs_success() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.prom");
    // A previous run that succeeded.
    assert_eq!(run_batch_job(dir.path(), "job", &[]).status.code(), Some(0));
    let previous = JobFile::read(&path);
    assert_eq!(previous.reason(), "success");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    // This run is killed (as the OOM killer does) at 2 s, long before its first periodic
    // snapshot (60 s by default).
    let mut child = spawn_batch_job(Path::new(BATCH_JOB), dir.path(), "job", &["--sleep", "30"]);
    std::thread::sleep(Duration::from_secs(2));
    kill(&child, SIGKILL);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(SIGKILL));

    let file = JobFile::read(&path);
    assert_eq!(file.get("promdrop_job_running"), 1.0, "{}", file.text);
    assert_eq!(file.get("promdrop_job_success"), 0.0);
    assert_eq!(file.value("promdrop_job_exit_reason", &[]), None);
    assert!(file.get("promdrop_job_start_timestamp_seconds") >= before - 1.0);
}

#[test]
fn exit_records_the_exit_code_as_promdrop_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_batch_job(dir.path(), "job", &["--exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let file = JobFile::read(&dir.path().join("job.prom"));
    assert_eq!(file.reason(), "error");
    assert_eq!(file.get("promdrop_job_exit_code"), 3.0);
    assert_eq!(file.get("promdrop_job_exit_signal"), 0.0);
}

#[test]
fn a_text_source_with_timestamps_and_a_repeated_series_is_written_servable() {
    use promdrop_writer::{Handoff, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&reports);
    Handoff::builder("fed")
        .dir(dir.path())
        .signals(false)
        .completion_index(None)
        .on_error(move |e| seen.lock().unwrap().push(e.to_string()))
        .text_source(|| {
            Ok("# TYPE up gauge\nup{instance=\"a\"} 1 1700000000000\nup{instance=\"a\"} 0\nup{instance=\"b\"} 1\n".to_string())
        })
        .install()
        .unwrap()
        .finish(Outcome::Success)
        .unwrap();
    let file = JobFile::read(&dir.path().join("fed.prom"));
    let parsed =
        promdrop_textformat::parse(file.text.as_bytes(), promdrop_textformat::Format::Classic)
            .unwrap();
    assert!(promdrop_writer::servable::find(&parsed.families).is_empty());
    assert_eq!(file.value("up", &[("instance", "a")]), Some(1.0));
    assert_eq!(file.reason(), "success");
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "one report per run: {reports:?}");
    assert!(reports[0].contains("carries a timestamp"), "{reports:?}");
}
