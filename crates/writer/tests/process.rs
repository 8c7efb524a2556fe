//! End to end: the `batch_job` example runs as a real child process, writes a real file, and
//! ends each way a job can end. Each test checks the exit code and what the file says.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const SIGABRT: i32 = 6;

#[test]
fn success_writes_one_complete_file_with_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let before = unix_now();
    let out = run_batch_job(
        dir.path(),
        "descheduler",
        &["--stale-after", "2h", "--expire-after", "1d"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let path = dir.path().join("descheduler.prom");
    let file = JobFile::read(&path);

    assert_eq!(file.get("promdrop_job_success"), 1.0);
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    assert_eq!(file.reason(), "success");
    let start = file.get("promdrop_job_start_timestamp_seconds");
    let end = file.get("promdrop_job_end_timestamp_seconds");
    assert!(before - 1.0 <= start && start <= end && end <= unix_now() + 1.0);
    assert_eq!(file.get("promdrop_job_last_success_timestamp_seconds"), end);
    // The job's own metrics, labelled with the job.
    assert_eq!(
        file.value(
            "descheduler_pods_evicted",
            &[("strategy", "RemoveDuplicates"), ("namespace", "web")]
        ),
        Some(1.0)
    );
    assert!(
        file.text
            .contains("# TYPE descheduler_loop_duration_seconds histogram\n")
    );
    assert!(file.text.contains("descheduler_build_info{"));
    file.assert_grouped("descheduler");
    // The header: when, and the staleness hints.
    assert_eq!(file.header.stale_after, Some(Duration::from_secs(7200)));
    assert_eq!(file.header.expire_after, Some(Duration::from_secs(86400)));
    let written_at = file.header.written_at.unwrap();
    assert!((written_at - end).abs() < 1.0, "{written_at} vs {end}");
    // Mode 0644 whatever the umask, and nothing else in the directory but the lock file.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_no_debris(dir.path());
    assert!(dir.path().join(".descheduler.prom.lock").exists());
}

#[test]
fn failure_exits_1_and_carries_the_last_success_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.prom");
    assert_eq!(run_batch_job(dir.path(), "job", &[]).status.code(), Some(0));
    let succeeded_at = JobFile::read(&path).get("promdrop_job_end_timestamp_seconds");

    std::thread::sleep(Duration::from_millis(20));
    let out = run_batch_job(dir.path(), "job", &["--fail"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let file = JobFile::read(&path);
    assert_eq!(file.get("promdrop_job_success"), 0.0);
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    assert_eq!(file.reason(), "error");
    assert!(file.get("promdrop_job_end_timestamp_seconds") > succeeded_at);
    assert_eq!(
        file.get("promdrop_job_last_success_timestamp_seconds"),
        succeeded_at
    );
    // Carried again by a second failure.
    assert_eq!(
        run_batch_job(dir.path(), "job", &["--fail"]).status.code(),
        Some(1)
    );
    assert_eq!(
        JobFile::read(&path).get("promdrop_job_last_success_timestamp_seconds"),
        succeeded_at
    );
    assert_no_debris(dir.path());
}

#[test]
fn a_first_failure_has_no_last_success() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        run_batch_job(dir.path(), "job", &["--fail"]).status.code(),
        Some(1)
    );
    let file = JobFile::read(&dir.path().join("job.prom"));
    assert_eq!(file.reason(), "error");
    assert_eq!(
        file.value("promdrop_job_last_success_timestamp_seconds", &[]),
        None
    );
}

#[test]
fn panic_with_unwind_exits_101_and_says_panic() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run_batch_job(dir.path(), "job", &[]).status.code(), Some(0));
    let out = run_batch_job(dir.path(), "job", &["--panic"]);
    assert_eq!(out.status.code(), Some(101), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--panic was given"));
    let file = JobFile::read(&dir.path().join("job.prom"));
    assert_eq!(file.reason(), "panic");
    assert_eq!(file.get("promdrop_job_success"), 0.0);
    assert!(
        file.value("promdrop_job_last_success_timestamp_seconds", &[])
            .is_some()
    );
    assert_no_debris(dir.path());
}

/// Builds the example binary with `panic = "abort"` (once, into a target directory of its
/// own that later runs reuse) and returns its path.
fn abort_build() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("panic-abort");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "promdrop-writer",
            "--bin",
            "promdrop-writer-batch-job",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_PROFILE_DEV_PANIC", "abort")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the example with panic=abort failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join("promdrop-writer-batch-job")
}

#[test]
fn panic_with_abort_still_writes_the_final_file() {
    let binary = abort_build();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&binary)
        .arg("--dir")
        .arg(dir.path())
        .args(["--job", "job", "--panic"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    // An abort: killed by SIGABRT, no destructor ran; only the panic hook could write.
    assert_eq!(out.status.signal(), Some(SIGABRT), "{out:?}");
    let file = JobFile::read(&dir.path().join("job.prom"));
    assert_eq!(file.reason(), "panic");
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    assert_no_debris(dir.path());
}

fn signal_test(signal: i32, expected_code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = spawn_batch_job(
        std::path::Path::new(BATCH_JOB),
        dir.path(),
        "job",
        &["--sleep", "30"],
    );
    kill(&child, signal);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(expected_code), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the signal did not end the sleep"
    );
    let file = JobFile::read(&dir.path().join("job.prom"));
    assert_eq!(file.reason(), "signal");
    assert_eq!(file.get("promdrop_job_success"), 0.0);
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    assert_no_debris(dir.path());
}

#[test]
fn sigterm_during_sleep_writes_and_exits_143() {
    signal_test(SIGTERM, 143);
}

#[test]
fn sigint_during_sleep_writes_and_exits_130() {
    signal_test(SIGINT, 130);
}

#[test]
fn sigkill_after_a_periodic_flush_leaves_the_running_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.prom");
    let mut child = spawn_batch_job(
        std::path::Path::new(BATCH_JOB),
        dir.path(),
        "job",
        &["--sleep", "30", "--flush-every", "0.1"],
    );
    assert!(
        wait_for(Duration::from_secs(10), || path.exists()),
        "no periodic snapshot within 10 s"
    );
    // Let a few more snapshots happen, then kill at an arbitrary point.
    std::thread::sleep(Duration::from_millis(250));
    kill(&child, SIGKILL);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(SIGKILL));

    let file = JobFile::read(&path);
    assert_eq!(file.get("promdrop_job_running"), 1.0);
    assert_eq!(file.get("promdrop_job_success"), 0.0);
    assert_eq!(file.value("promdrop_job_end_timestamp_seconds", &[]), None);
    assert_eq!(file.value("promdrop_job_exit_reason", &[]), None);
    assert_eq!(
        file.value("descheduler_pods_evicted", &[("node", "node-a")]),
        Some(1.0)
    );
    // A snapshot goes stale after two flush intervals, so a dead job shows soon.
    assert_eq!(file.header.stale_after, Some(Duration::from_millis(200)));
    file.assert_grouped("job");

    // The kill may have hit a write: at most a hidden temporary file is left, which nothing
    // serves, and the next run of the job removes it.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name == "job.prom" || name.starts_with(".job.prom."),
            "unexpected file {name}"
        );
    }
    assert_eq!(run_batch_job(dir.path(), "job", &[]).status.code(), Some(0));
    assert_no_debris(dir.path());
}

#[test]
fn exit_keeps_the_exit_code_and_writes_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.prom");
    let out = run_batch_job(dir.path(), "job", &["--exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(JobFile::read(&path).reason(), "error");
    let out = run_batch_job(dir.path(), "job", &["--exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "success");
    assert_eq!(file.get("promdrop_job_success"), 1.0);
}

#[test]
fn indexed_jobs_and_promdrop_dir_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BATCH_JOB)
        .args(["--job", "shard"])
        .env("PROMDROP_DIR", dir.path())
        .env("JOB_COMPLETION_INDEX", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let file = JobFile::read(&dir.path().join("shard-2.prom"));
    assert_eq!(
        file.value(
            "promdrop_job_success",
            &[("job_name", "shard"), ("completion_index", "2")]
        ),
        Some(1.0)
    );
    assert!(!dir.path().join("shard.prom").exists());
    assert_no_debris(dir.path());
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn on_signal_hands_control_back_after_the_final_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(TESTLOOP)
        .arg(dir.path())
        .args(["job", "w", "1000000", "10"])
        .env("PROMDROP_TESTLOOP_ON_SIGNAL", "return")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "1");
    kill(&child, SIGTERM);
    // Drain stdout before waiting: the child prints a line per write and would block on a
    // full pipe (never reaching its signal check) if nobody read it.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    // The application got control back, finished its own way and exited 0.
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(rest.contains("signal 15 Some(15)"), "{rest}");
    // The signal did the one final write; the later finish(Success) wrote nothing.
    let file = JobFile::read(&dir.path().join("job.prom"));
    assert_eq!(file.reason(), "signal");
    assert_eq!(file.get("promdrop_job_running"), 0.0);
    assert_no_debris(dir.path());
}
