//! `promdrop run` run as a real process around a real job: the metrics server of
//! `support/metrics_server.rs`, which serves its metrics over HTTPS with a self-signed
//! certificate (as the descheduler does on port 10258), counts ticks, then exits with a code
//! or waits for a signal. The job is this test binary started again (see [`metrics_server`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use promdrop_test_support::process::free_port;
use promdrop_textformat::{Format, parse};

#[path = "support/metrics_server.rs"]
mod server;

const PROMDROP: &str = env!("CARGO_BIN_EXE_promdrop");
/// The metrics server's arguments, separated by newlines, when this binary is the job.
const SERVER_ENV: &str = "PROMDROP_TEST_SERVER_ARGS";
/// How long anything may take on a loaded machine before a test gives up.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `promdrop run`, killed (with its process group) if the test ends early.
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Running {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Waits for the exit, with a deadline, and returns the status and stderr.
    fn wait(&mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                return (status, stderr);
            }
            assert!(
                start.elapsed() < DEADLINE,
                "promdrop run did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The job runs in promdrop run's process group: end both.
            // SAFETY: kill(2) with integers only.
            unsafe {
                libc::kill(-self.pid(), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Not a test: the job. When the tests start this binary again with [`SERVER_ENV`] set, this
/// "test" runs the metrics server and exits the process; otherwise it does nothing.
#[test]
fn metrics_server() {
    if let Ok(args) = std::env::var(SERVER_ENV) {
        let args: Vec<String> = args.lines().map(str::to_string).collect();
        server::main(&args);
    }
}

/// Starts `promdrop run ARGS -- <this binary as the metrics server> --listen 127.0.0.1:PORT
/// SERVER_ARGS` in a process group of its own (so that the test can end the job too).
fn start(dir: &Path, args: &[&str], port: u16, server_args: &[&str]) -> Running {
    use std::os::unix::process::CommandExt;
    let stderr = dir.join(format!("stderr-{port}.txt"));
    let listen = format!("127.0.0.1:{port}");
    let mut server = vec!["--listen", listen.as_str()];
    server.extend_from_slice(server_args);
    let this = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(PROMDROP)
        .arg("run")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .arg("--")
        .arg(this)
        .args([
            "metrics_server",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SERVER_ENV, server.join("\n"))
        .env_remove("PROMDROP_DIR")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("start promdrop run");
    Running { child, stderr }
}

fn url(port: u16) -> String {
    format!("https://127.0.0.1:{port}/metrics")
}

/// The value of the one sample called `name` (whose labels include `labels`) in `text`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let exposition = parse(text.as_bytes(), Format::Classic).expect("the job file parses");
    let mut found = exposition
        .families
        .iter()
        .flat_map(|f| f.samples.iter())
        .filter(|s| s.name == name && labels.iter().all(|(n, v)| s.label(n) == Some(*v)));
    let first = found.next().map(|s| s.value.number);
    assert!(found.next().is_none(), "{name} twice in {text}");
    first
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("job file")
}

/// Polls `path` until `ready` says yes, within the deadline.
fn wait_for_file(path: &Path, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && ready(&text)
        {
            return text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} never became ready: {:?}",
            path.display(),
            std::fs::read_to_string(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server counts 5 ticks in about 100 ms, then serves the final count this long before it
/// exits: many scrape intervals, so that a scrape of the final count lands even on a busy
/// machine.
const LINGER_MS: &str = "1500";

#[test]
fn exit_zero_with_scrape_ca_writes_the_last_scrape_and_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let ca = dir.path().join("server-cert.pem");
    let ca_arg = ca.to_str().expect("utf-8");
    let mut run = start(
        dir.path(),
        &[
            "--job",
            "ok",
            "--label",
            "team=infra",
            "--scrape",
            &url(port),
            // The job writes its self-signed certificate when it starts; promdrop run reads
            // it at the first scrape that finds it.
            "--scrape-ca",
            ca_arg,
            "--scrape-interval",
            "50ms",
            "--stale-after",
            "1h",
        ],
        port,
        &[
            "--cert-out",
            ca_arg,
            "--sleep",
            LINGER_MS,
            "--exit-code",
            "0",
        ],
    );
    let (status, stderr) = run.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // (A busy machine may delay the job's start past the quiet period, and a warning that
    // the certificate is not there yet is then fine.)
    assert!(!stderr.contains("no scrape of"), "{stderr}");
    let text = read(&dir.path().join("ok.prom"));
    assert!(
        text.starts_with("# promdrop: written_at=")
            && text
                .lines()
                .next()
                .is_some_and(|l| l.ends_with(" stale_after=1h")),
        "{text}"
    );
    let job = [("job_name", "ok"), ("team", "infra")];
    assert_eq!(
        value(
            &text,
            "promdrop_test_ticks_total",
            &[("server", "test"), job[0], job[1]]
        ),
        Some(5.0),
        "{text}"
    );
    // Label values with escapes survive the round trip.
    assert_eq!(
        value(
            &text,
            "promdrop_test_up",
            &[("path", "C:\\x"), ("note", "say \"hi\"")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "promdrop_job_success", &job), Some(1.0));
    assert_eq!(value(&text, "promdrop_job_running", &job), Some(0.0));
    assert_eq!(value(&text, "promdrop_job_exit_code", &job), Some(0.0));
    assert_eq!(value(&text, "promdrop_job_exit_signal", &job), Some(0.0));
    assert_eq!(
        value(&text, "promdrop_job_exit_reason", &[("reason", "success")]),
        Some(1.0)
    );
    let start = value(&text, "promdrop_job_start_timestamp_seconds", &job).expect("start");
    let end = value(&text, "promdrop_job_end_timestamp_seconds", &job).expect("end");
    assert!(end - start >= 1.5, "{start} {end}");
    assert_eq!(
        value(&text, "promdrop_job_last_success_timestamp_seconds", &job),
        Some(end)
    );
}

#[test]
fn exit_one_passes_through_and_carries_the_last_success_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A first run that succeeds (no scrape: outcome metrics only).
    let port = free_port();
    let (status, stderr) = start(dir.path(), &["--job", "etl"], port, &["--ticks", "0"]).wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let first = read(&dir.path().join("etl.prom"));
    assert!(!first.contains("promdrop_test_ticks_total"), "{first}");
    let succeeded_at =
        value(&first, "promdrop_job_last_success_timestamp_seconds", &[]).expect("a last success");

    // A second run that fails, serving OpenMetrics this time.
    let port = free_port();
    let (status, stderr) = start(
        dir.path(),
        &[
            "--job",
            "etl",
            "--scrape",
            &url(port),
            "--scrape-insecure-skip-verify",
            "--scrape-interval",
            "50ms",
        ],
        port,
        &["--openmetrics", "--sleep", LINGER_MS, "--exit-code", "1"],
    )
    .wait();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let text = read(&dir.path().join("etl.prom"));
    assert!(!text.contains("# EOF"), "written as classic text: {text}");
    assert_eq!(
        value(&text, "promdrop_test_ticks_total", &[("job_name", "etl")]),
        Some(5.0),
        "{text}"
    );
    assert_eq!(value(&text, "promdrop_job_success", &[]), Some(0.0));
    assert_eq!(value(&text, "promdrop_job_exit_code", &[]), Some(1.0));
    assert_eq!(value(&text, "promdrop_job_exit_signal", &[]), Some(0.0));
    assert_eq!(
        value(&text, "promdrop_job_exit_reason", &[("reason", "error")]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "promdrop_job_last_success_timestamp_seconds", &[]),
        Some(succeeded_at)
    );
}

#[test]
fn sigterm_is_forwarded_and_exit_is_143_after_a_snapshot_while_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut run = start(
        dir.path(),
        &[
            "--job",
            "desched",
            "--scrape",
            &url(port),
            "--scrape-insecure-skip-verify",
            "--scrape-interval",
            "50ms",
            "--flush-every",
            "100ms",
        ],
        port,
        &["--wait-for-signal"],
    );
    let path = dir.path().join("desched.prom");
    // A snapshot of the running job with the final count: what would survive a SIGKILL.
    let snapshot = wait_for_file(&path, |text| {
        text.contains("promdrop_test_ticks_total{server=\"test\",job_name=\"desched\"} 5\n")
    });
    assert_eq!(value(&snapshot, "promdrop_job_running", &[]), Some(1.0));
    assert_eq!(value(&snapshot, "promdrop_job_exit_code", &[]), None);
    // The snapshot says it goes stale soon: at most twice --flush-every.
    assert!(
        snapshot
            .lines()
            .next()
            .is_some_and(|l| l.contains(" stale_after=200ms")),
        "{snapshot}"
    );

    // SAFETY: kill(2) with integers only.
    assert_eq!(unsafe { libc::kill(run.pid(), libc::SIGTERM) }, 0);
    let (status, stderr) = run.wait();
    assert_eq!(status.code(), Some(143), "{stderr}");
    let text = read(&path);
    assert_eq!(
        value(&text, "promdrop_test_ticks_total", &[]),
        Some(5.0),
        "{text}"
    );
    assert_eq!(value(&text, "promdrop_job_running", &[]), Some(0.0));
    assert_eq!(value(&text, "promdrop_job_success", &[]), Some(0.0));
    assert_eq!(value(&text, "promdrop_job_exit_code", &[]), Some(143.0));
    assert_eq!(value(&text, "promdrop_job_exit_signal", &[]), Some(15.0));
    assert_eq!(
        value(&text, "promdrop_job_exit_reason", &[("reason", "signal")]),
        Some(1.0)
    );
}

#[test]
fn an_unverifiable_certificate_fails_the_scrape_and_writes_the_outcome_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (status, stderr) = start(
        dir.path(),
        &[
            "--job",
            "strict",
            "--scrape",
            &url(port),
            "--scrape-interval",
            "50ms",
        ],
        port,
        &["--sleep", "2500"],
    )
    .wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The self-signed certificate is not trusted by the default (Mozilla) roots.
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "promdrop run: warning: no scrape of {} succeeded",
            url(port)
        )),
        "{stderr}"
    );
    let text = read(&dir.path().join("strict.prom"));
    assert!(!text.contains("promdrop_test_"), "{text}");
    assert_eq!(value(&text, "promdrop_job_success", &[]), Some(1.0));
}

#[test]
fn the_wrong_ca_fails_verification_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A certificate of another server start: valid PEM, the wrong key.
    let other = dir.path().join("other.pem");
    let port = free_port();
    let other_arg = other.to_str().expect("utf-8");
    let (status, stderr) = start(
        dir.path(),
        &["--job", "first"],
        port,
        &["--ticks", "0", "--cert-out", other_arg],
    )
    .wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let port = free_port();
    let (status, stderr) = start(
        dir.path(),
        &[
            "--job",
            "wrongca",
            "--scrape",
            &url(port),
            "--scrape-ca",
            other_arg,
            "--scrape-interval",
            "50ms",
        ],
        port,
        &["--sleep", "2500", "--exit-code", "4"],
    )
    .wait();
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("no scrape of"), "{stderr}");
    let text = read(&dir.path().join("wrongca.prom"));
    assert!(!text.contains("promdrop_test_"), "{text}");
    assert_eq!(value(&text, "promdrop_job_exit_code", &[]), Some(4.0));
}

#[test]
fn without_scrape_only_the_outcome_is_written_and_missing_commands_exit_127() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(PROMDROP)
        .args(["run", "--dir"])
        .arg(dir.path())
        .args(["--job", "shell", "--", "sh", "-c", "exit 7"])
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .expect("run promdrop run");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read(&dir.path().join("shell.prom"));
    assert_eq!(
        value(&text, "promdrop_job_exit_code", &[("job_name", "shell")]),
        Some(7.0)
    );

    let out = Command::new(PROMDROP)
        .args(["run", "--dir"])
        .arg(dir.path())
        .args(["--job", "missing", "--", "/nonexistent/promdrop-job"])
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .expect("run promdrop run");
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("promdrop run: cannot run /nonexistent/promdrop-job: "),
        "{stderr}"
    );
    let text = read(&dir.path().join("missing.prom"));
    assert_eq!(value(&text, "promdrop_job_exit_code", &[]), Some(127.0));
    assert_eq!(value(&text, "promdrop_job_success", &[]), Some(0.0));
}

#[test]
fn usage_errors_exit_two_and_run_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for args in [
        // No command.
        vec!["--job", "x"],
        // Not an HTTP URL.
        vec![
            "--job",
            "x",
            "--scrape",
            "ftp://x/metrics",
            "--",
            "sh",
            "-c",
            &touch,
        ],
        // Both ways of trusting a certificate.
        vec![
            "--job",
            "x",
            "--scrape",
            "https://127.0.0.1:1/metrics",
            "--scrape-ca",
            "/x.pem",
            "--scrape-insecure-skip-verify",
            "--",
            "sh",
            "-c",
            &touch,
        ],
        // A job name that cannot be a file name.
        vec!["--job", "a/b", "--", "sh", "-c", &touch],
    ] {
        let out = Command::new(PROMDROP)
            .args(["run", "--dir"])
            .arg(dir.path())
            .args(&args)
            .output()
            .expect("run promdrop run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!marker.exists(), "{args:?} ran the command");
    }
}
