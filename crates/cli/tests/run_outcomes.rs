//! `promdrop run` around real jobs that end or serve in the ways issue 9 found mishandled: a
//! self-signed certificate made by the real `openssl req -x509` (CA:TRUE), a server that always
//! gzips, a server whose scrapes fail up to its exit, a grandchild that keeps the port and never
//! answers, a scrape with sample timestamps and a repeated series, a missing directory. The job
//! is `support/job_server.py` (Python's own http.server), run by python3.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use promdrop_test_support::Metrics;
use promdrop_test_support::process::free_port;
use promdrop_textformat::{Format, parse};

const PROMDROP: &str = env!("CARGO_BIN_EXE_promdrop");

fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/job_server.py")
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is needed for this test: install it (apt-get install {package})"
    );
}

/// Runs `promdrop run --dir DIR ARGS -- python3 job_server.py --port PORT SERVER_ARGS` to its
/// end.
fn run(dir: &Path, args: &[&str], port: u16, server_args: &[&str]) -> Output {
    require("python3", "python3");
    Command::new(PROMDROP)
        .arg("run")
        .arg("--dir")
        .arg(dir)
        .args(["--job", "job"])
        .args(args)
        .arg("--")
        .arg("python3")
        .arg(server_script())
        .arg("--port")
        .arg(port.to_string())
        .args(server_args)
        .env_remove("PROMDROP_DIR")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .output()
        .expect("run promdrop run")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value of the first sample called `name` whose labels include `labels`; the file must parse.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    Metrics::parse(text).find(name, labels)
}

fn job_file(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("job.prom")).expect("the job file")
}

/// `openssl req -x509`, as a user makes a self-signed certificate: CA:TRUE by default.
fn openssl_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    require("openssl", "openssl");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl req: {}", stderr(&out));
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl x509 runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CA:TRUE"),
        "expected the usual CA:TRUE self-signed certificate:\n{text}"
    );
    (cert, key)
}

#[test]
fn scrape_ca_trusts_an_openssl_req_x509_certificate_as_curl_does() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(certs.path());
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/metrics");

    // curl --cacert accepts it (checked while a server runs).
    require("curl", "curl");
    let mut server = Command::new("python3")
        .arg(server_script())
        .args(["--port", &port.to_string(), "--serve-for", "20"])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .spawn()
        .expect("start the server");
    let mut curl_ok = false;
    let start = Instant::now();
    while !curl_ok && start.elapsed() < Duration::from_secs(20) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&cert)
            .arg(&url)
            .output()
            .expect("curl runs");
        curl_ok = out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("job_server_items_total");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(curl_ok, "curl --cacert did not accept the certificate");

    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/metrics");
    let out = run(
        dir.path(),
        &["--scrape", &url, "--scrape-ca", cert.to_str().unwrap()],
        port,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = job_file(dir.path());
    assert_eq!(
        value(&text, "job_server_items_total", &[("kind", "x")]),
        Some(42.0),
        "stderr: {}\n{text}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("CaUsedAsEndEntity"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_server_that_always_gzips_is_asked_for_gzip_and_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("accept.log");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = run(
        dir.path(),
        &["--scrape", &url, "--scrape-interval", "100ms"],
        port,
        &["--gzip", "--accept-log", log.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = job_file(dir.path());
    assert_eq!(
        value(&text, "job_server_items_total", &[("kind", "x")]),
        Some(42.0),
        "stderr: {}\n{text}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("UTF-8"), "{}", stderr(&out));
    let accepted = std::fs::read_to_string(&log).expect("the server logged requests");
    assert!(
        accepted.lines().next().is_some_and(|l| l.contains("gzip")),
        "Accept-Encoding: {accepted:?}"
    );
}

#[test]
fn utf8_names_in_a_scrape_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("utf8.txt");
    std::fs::write(
        &body,
        "# TYPE \"http.server.active_requests\" gauge\n{\"http.server.active_requests\",\"http.request.method\"=\"GET\"} 4\n",
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = run(
        dir.path(),
        &["--scrape", &url, "--scrape-interval", "100ms"],
        port,
        &["--body-file", body.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = job_file(dir.path());
    assert!(
        text.contains("# TYPE \"http.server.active_requests\" gauge\n{\"http.server.active_requests\",\"http.request.method\"=\"GET\""),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "http.server.active_requests",
            &[("http.request.method", "GET")]
        ),
        Some(4.0),
        "{text}"
    );
}

#[test]
fn the_final_warning_names_the_last_real_failure_not_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    // Every scrape gets a 500 after 200 ms, one is always in flight, and the job exits in
    // the middle of one: that scrape fails with a cut connection.
    let out = run(
        dir.path(),
        &["--scrape", &url, "--scrape-interval", "50ms"],
        port,
        &["--status", "500", "--delay", "0.2", "--serve-for", "2"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err
        .lines()
        .find(|l| l.contains("no scrape of"))
        .unwrap_or_else(|| panic!("no final warning: {err}"));
    assert!(last.contains("HTTP status 500"), "{err}");
    for shutdown in ["reset", "refused", "closed", "EOF", "eof", "io:"] {
        assert!(!last.contains(shutdown), "{err}");
    }
}

#[test]
fn an_in_flight_scrape_is_not_waited_for_once_the_job_has_exited() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("server.pid");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    // The job (sh) starts a server that keeps the port and never answers, and exits after
    // 1 s; the scrape in flight would wait for its 10 s timeout. (The server's output goes to
    // /dev/null, so that reading promdrop run's stderr to its end does not wait for it.)
    let script = format!(
        "python3 '{}' --port {port} --hang --serve-for 30 --pid-file '{}' </dev/null >/dev/null 2>&1 & sleep 1",
        server_script().display(),
        pid_file.display()
    );
    let started = Instant::now();
    let out = Command::new(PROMDROP)
        .arg("run")
        .arg("--dir")
        .arg(dir.path())
        .args(["--job", "job", "--scrape", &url, "--scrape-timeout", "10s"])
        .args(["--", "sh", "-c", &script])
        .env_remove("PROMDROP_DIR")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run promdrop run");
    let took = started.elapsed();
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        took < Duration::from_secs(5),
        "promdrop run waited {took:?} for a scrape after the job exited"
    );
    let text = job_file(dir.path());
    assert_eq!(value(&text, "promdrop_job_success", &[]), Some(1.0));
}

#[test]
fn timestamps_and_a_repeated_series_in_a_scrape_are_stripped_and_the_outcome_kept() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("federate.txt");
    std::fs::write(
        &body,
        "# TYPE up gauge\nup{instance=\"a\"} 1 1764259200000\nup{instance=\"b\"} 0 1764259200000\nup{instance=\"a\"} 0 1764259200000\n",
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/federate");
    let out = run(
        dir.path(),
        &["--scrape", &url, "--scrape-interval", "100ms"],
        port,
        &["--body-file", body.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("carries a timestamp").count(),
        1,
        "one warning: {err}"
    );
    let text = job_file(dir.path());
    let parsed = parse(text.as_bytes(), Format::Classic).expect("parses");
    assert!(
        promdrop_writer::servable::find(&parsed.families).is_empty(),
        "{text}"
    );
    assert_eq!(
        value(&text, "up", &[("instance", "a")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "up", &[("instance", "b")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(value(&text, "promdrop_job_success", &[]), Some(1.0));
}

#[test]
fn a_missing_directory_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-mounted");
    let port = free_port();
    let out = run(
        &missing,
        &[],
        port,
        &["--serve-for", "0.1", "--exit-code", "3"],
    );
    // The job ran and its status passes through.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "directory {} does not exist (is the volume mounted?)",
            missing.display()
        )),
        "{err}"
    );
    assert!(!err.contains(".lock"), "{err}");
    assert!(!missing.exists());
}

#[test]
fn promdrop_run_sigkilled_at_two_seconds_leaves_a_running_snapshot() {
    use std::os::unix::process::CommandExt;
    require("python3", "python3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.prom");
    // A previous run that succeeded.
    let port = free_port();
    let out = run(dir.path(), &[], port, &["--serve-for", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(job_file(dir.path()).contains("promdrop_job_success{job_name=\"job\"} 1\n"));

    // This run (the pod) is OOM-killed at 2 s, long before --flush-every (30 s).
    let port = free_port();
    let mut child = Command::new(PROMDROP)
        .arg("run")
        .arg("--dir")
        .arg(dir.path())
        .args(["--job", "job", "--"])
        .arg("python3")
        .arg(server_script())
        .args(["--port", &port.to_string(), "--serve-for", "30"])
        .env_remove("PROMDROP_DIR")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start promdrop run");
    std::thread::sleep(Duration::from_secs(2));
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&path).expect("the job file");
    assert_eq!(
        value(&text, "promdrop_job_running", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "promdrop_job_success", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "promdrop_job_exit_reason", &[]),
        None,
        "{text}"
    );
}
