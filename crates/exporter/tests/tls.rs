//! `--web.config.file` end to end: the real `promdrop-exporter` binary serving a textfile
//! directory over TLS, mutual TLS and basic auth, driven by the real `curl`, with certificates
//! made at test time (rcgen) and bcrypt hashes; reloads on change and on SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::write_test_pki;
use common::{Exporter, Metrics, arg, dir_arg, write_atomic};
use promdrop_test_support::poll;

const CURL: &str = "/usr/bin/curl";

/// bcrypt's lowest cost keeps the tests fast; the code path is the same at any cost.
const COST: u32 = 4;

const SAMPLE: &str = "promdrop_tls_test_sample 42";

// ---------------------------------------------------------------------------------------------
// Certificates and files.
// ---------------------------------------------------------------------------------------------

/// A temporary folder with a CA, a server certificate for 127.0.0.1, a client certificate of
/// the same CA and one of another CA, the web config, and a textfile directory with one file.
struct Setup {
    pki: tempfile::TempDir,
    textfiles: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        assert!(
            Path::new(CURL).exists(),
            "{CURL} is missing: these tests drive the exporter with the real curl (apt-get install curl)"
        );
        let pki = tempfile::tempdir().unwrap();
        write_test_pki(pki.path());
        let textfiles = tempfile::tempdir().unwrap();
        write_atomic(
            textfiles.path(),
            "job.prom",
            &format!("# TYPE promdrop_tls_test_sample gauge\n{SAMPLE}\n"),
        );
        Setup { pki, textfiles }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.pki.path().join(name)
    }

    fn config_path(&self) -> PathBuf {
        self.path("web.yml")
    }

    /// Writes the web config (write then rename, as tooling does).
    fn write_config(&self, yaml: &str) {
        let tmp = self.path("web.yml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Starts the exporter on this directory with this web config and `extra` flags.
    fn start(&self, extra: &[String]) -> Exporter {
        let mut args = vec![
            dir_arg(self.textfiles.path()),
            arg("web.config.file", self.config_path().display()),
        ];
        args.extend_from_slice(extra);
        common::spawn(&args)
    }

    fn ca(&self) -> String {
        self.path("ca.crt").display().to_string()
    }
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, COST).unwrap()
}

/// A web config with TLS and one basic auth user.
fn tls_with_user(user: &str, password: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
         basic_auth_users:\n  {user}: {}\n",
        bcrypt_hash(password)
    )
}

// ---------------------------------------------------------------------------------------------
// curl.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Curl {
    /// The HTTP status; 0 when there was no HTTP answer (failed handshake, closed connection).
    status: u16,
    /// curl's exit code.
    exit: i32,
    head: String,
    body: String,
    /// curl's error message; read through `Debug` in failure messages.
    #[allow(dead_code)]
    stderr: String,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// Runs curl on `url` with `args`; never follows redirects, gives up after 10 s.
fn curl(url: &str, args: &[&str]) -> Curl {
    let out = Command::new(CURL)
        .args(["-sS", "--max-time", "10", "-D", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("running {CURL}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or(("", rest));
    Curl {
        status: code.trim().parse().unwrap_or(0),
        exit: out.status.code().unwrap_or(-1),
        head: head.to_string(),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn https(exporter: &Exporter, path: &str) -> String {
    format!("https://{}{path}", exporter.address)
}

/// Polls until `check` passes on a curl answer, or fails with `what`, the last answer and
/// the log.
fn wait_until(
    exporter: &Exporter,
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> Curl,
    check: impl Fn(&Curl) -> bool,
) -> Curl {
    poll(what, timeout, || {
        let answer = attempt();
        if check(&answer) {
            Ok(answer)
        } else {
            Err(format!(
                "last answer: {answer:#?}\n--- log ---\n{}",
                exporter.log()
            ))
        }
    })
}

/// `/metrics` with basic auth, parsed.
fn metrics(exporter: &Exporter, ca: &str, user_password: &str) -> Metrics {
    let r = curl(
        &https(exporter, "/metrics"),
        &["--cacert", ca, "-u", user_password],
    );
    assert_eq!(r.status, 200, "{r:#?}\n--- log ---\n{}", exporter.log());
    Metrics::parse(&r.body)
}

fn reloads(m: &Metrics, result: &str) -> f64 {
    m.get("promdrop_web_config_reloads_total", &[("result", result)])
        .unwrap_or_else(|| panic!("no promdrop_web_config_reloads_total in\n{}", m.body))
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn https_with_basic_auth() {
    let setup = Setup::new();
    setup.write_config(&tls_with_user("prometheus", "s3cret"));
    let exporter = setup.start(&[]);
    let ca = setup.ca();
    let ok = ["--cacert", ca.as_str(), "-u", "prometheus:s3cret"];

    // Ready (the first scan is published) is behind auth too.
    wait_until(
        &exporter,
        "/-/ready to answer 200 with the right credentials",
        Duration::from_secs(20),
        || curl(&https(&exporter, "/-/ready"), &ok),
        |r| r.status == 200,
    );

    let r = curl(&https(&exporter, "/metrics"), &ok);
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.contains(&format!("\n{SAMPLE}\n")), "{}", r.body);
    // http_server_config.headers decorate every answer.
    assert_eq!(
        r.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{r:#?}"
    );
    let m = Metrics::parse(&r.body);
    assert_eq!(reloads(&m, "success"), 0.0);
    assert_eq!(reloads(&m, "failure"), 0.0);
    assert_eq!(
        m.get("promdrop_web_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let loaded_at = m
        .get(
            "promdrop_web_config_last_reload_success_timestamp_seconds",
            &[],
        )
        .unwrap();
    assert!(
        (common::unix_now() - loaded_at).abs() < 120.0,
        "{loaded_at}"
    );

    // OpenMetrics: the web config metrics come before # EOF.
    let r = curl(
        &https(&exporter, "/metrics"),
        &[
            &ok[..],
            &["-H", "Accept: application/openmetrics-text;version=1.0.0"],
        ]
        .concat(),
    );
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);
    assert!(
        r.body
            .contains("# TYPE promdrop_web_config_reloads counter\n"),
        "{}",
        r.body
    );

    // Gzip still decodes with the extra metrics.
    let r = curl(
        &https(&exporter, "/metrics"),
        &[&ok[..], &["--compressed"]].concat(),
    );
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.contains(&format!("\n{SAMPLE}\n")), "{r:#?}");

    for (what, creds) in [
        ("a wrong password", Some("prometheus:wrong")),
        ("an unknown user", Some("intruder:s3cret")),
        ("no credentials", None),
    ] {
        for path in ["/metrics", "/-/healthy", "/-/ready", "/", "/api/v1/files"] {
            let mut args = vec!["--cacert", ca.as_str()];
            if let Some(c) = creds {
                args.extend(["-u", c]);
            }
            let r = curl(&https(&exporter, path), &args);
            assert_eq!(r.status, 401, "{path} with {what}: {r:#?}");
            assert_eq!(
                r.header("WWW-Authenticate"),
                Some("Basic realm=\"promdrop\""),
                "{path} with {what}: {r:#?}"
            );
            assert!(!r.body.contains(SAMPLE), "{r:#?}");
        }
    }
    // Authentication comes before the method check.
    let r = curl(
        &https(&exporter, "/metrics"),
        &["--cacert", &ca, "-X", "POST"],
    );
    assert_eq!(r.status, 401, "{r:#?}");

    // Plain HTTP to the TLS port: 400 in clear text, no metrics.
    let r = curl(
        &format!("http://{}/metrics", exporter.address),
        &["-u", "prometheus:s3cret"],
    );
    assert_ne!(r.status, 200, "{r:#?}");
    assert_eq!(r.status, 400, "{r:#?}");
    assert!(!r.body.contains(SAMPLE), "{r:#?}");

    // HTTPS without trusting the CA: the handshake fails on curl's side.
    let r = curl(&https(&exporter, "/metrics"), &["-u", "prometheus:s3cret"]);
    assert_eq!(r.status, 0, "{r:#?}");
    assert_ne!(r.exit, 0, "{r:#?}");

    // The server keeps serving after all that.
    let r = curl(&https(&exporter, "/metrics"), &ok);
    assert_eq!(r.status, 200, "{r:#?}");
}

#[test]
fn mutual_tls() {
    let setup = Setup::new();
    setup.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let exporter = setup.start(&[]);
    let ca = setup.ca();
    let client_cert = setup.path("client.crt").display().to_string();
    let client_key = setup.path("client.key").display().to_string();
    let with_cert = [
        "--cacert",
        ca.as_str(),
        "--cert",
        client_cert.as_str(),
        "--key",
        client_key.as_str(),
    ];
    wait_until(
        &exporter,
        "/-/ready to answer 200 with the client certificate",
        Duration::from_secs(20),
        || curl(&https(&exporter, "/-/ready"), &with_cert),
        |r| r.status == 200,
    );
    let r = curl(&https(&exporter, "/metrics"), &with_cert);
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.contains(&format!("\n{SAMPLE}\n")), "{}", r.body);

    // Without a client certificate: the handshake fails, no HTTP answer at all.
    let r = curl(&https(&exporter, "/metrics"), &["--cacert", &ca]);
    assert_eq!(r.status, 0, "{r:#?}");
    assert_ne!(r.exit, 0, "{r:#?}");
    assert!(!r.body.contains(SAMPLE), "{r:#?}");

    // With a certificate of another CA: refused the same way.
    let other_cert = setup.path("other.crt").display().to_string();
    let other_key = setup.path("other.key").display().to_string();
    let r = curl(
        &https(&exporter, "/metrics"),
        &["--cacert", &ca, "--cert", &other_cert, "--key", &other_key],
    );
    assert_eq!(r.status, 0, "{r:#?}");
    assert_ne!(r.exit, 0, "{r:#?}");

    // The failed handshakes are logged at debug, and the server goes on.
    let r = curl(&https(&exporter, "/metrics"), &with_cert);
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(
        exporter
            .log()
            .contains("TLS handshake with the client failed"),
        "{}",
        exporter.log()
    );
}

/// An exporter with TLS and the user alice (password `alice-pw`), checking its web config
/// every 200 ms, once alice gets the metrics.
fn start_with_alice() -> (Setup, Exporter) {
    let setup = Setup::new();
    setup.write_config(&tls_with_user("alice", "alice-pw"));
    let exporter = setup.start(&[arg("web.config.reload-interval", "200ms")]);
    let ca = setup.ca();
    let alice = ["--cacert", ca.as_str(), "-u", "alice:alice-pw"];
    let url = https(&exporter, "/metrics");
    wait_until(
        &exporter,
        "alice to get in",
        Duration::from_secs(20),
        || curl(&url, &alice),
        |r| r.status == 200 && r.body.contains(SAMPLE),
    );
    (setup, exporter)
}

#[test]
fn reloads_on_change_and_on_sighup() {
    let (setup, exporter) = start_with_alice();
    let ca = setup.ca();
    let url = https(&exporter, "/metrics");
    let alice = ["--cacert", ca.as_str(), "-u", "alice:alice-pw"];
    let bob = ["--cacert", ca.as_str(), "-u", "bob:bob-pw"];
    assert_eq!(curl(&url, &bob).status, 401);

    // Another user: picked up within a few seconds, without a restart.
    setup.write_config(&tls_with_user("bob", "bob-pw"));
    wait_until(
        &exporter,
        "bob to get in after the rewrite",
        Duration::from_secs(10),
        || curl(&url, &bob),
        |r| r.status == 200,
    );
    let r = curl(&url, &alice);
    assert_eq!(r.status, 401, "{r:#?}");
    let m = metrics(&exporter, &ca, "bob:bob-pw");
    assert_eq!(reloads(&m, "success"), 1.0, "{}", m.body);
    assert_eq!(reloads(&m, "failure"), 0.0, "{}", m.body);
    assert!(exporter.log().contains("web config reloaded"));

    // A broken file: counted as a failure once, the previous configuration keeps serving.
    setup.write_config("tls_server_config:\n  cert_file: server.crt\n  key_fil: server.key\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = metrics(&exporter, &ca, "bob:bob-pw");
        if reloads(&m, "failure") >= 1.0 || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        reloads(&m, "failure"),
        1.0,
        "{}\n{}",
        m.body,
        exporter.log()
    );
    assert_eq!(reloads(&m, "success"), 1.0, "{}", m.body);
    assert_eq!(
        m.get("promdrop_web_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert!(
        exporter.log().contains("web config reload failed"),
        "{}",
        exporter.log()
    );
    // Not retried while the broken content stays the same.
    std::thread::sleep(Duration::from_millis(600));
    let m = metrics(&exporter, &ca, "bob:bob-pw");
    assert_eq!(reloads(&m, "failure"), 1.0, "{}", m.body);
    assert_eq!(curl(&url, &alice).status, 401);
    // Plain HTTP is still refused: TLS stays on.
    assert_ne!(
        curl(&format!("http://{}/metrics", exporter.address), &[]).status,
        200
    );

    // SIGHUP reloads now, changed or not: the broken file fails again.
    let hup = |exporter: &Exporter| {
        let status = Command::new("kill")
            .args(["-HUP", &exporter.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
    };
    hup(&exporter);
    wait_until(
        &exporter,
        "a second failure after SIGHUP",
        Duration::from_secs(10),
        || curl(&url, &bob),
        |r| {
            r.status == 200 && {
                let m = Metrics::parse(&r.body);
                reloads(&m, "failure") == 2.0
            }
        },
    );

    // A good file again, made effective by SIGHUP (the timer would pick it up too).
    let before = metrics(&exporter, &ca, "bob:bob-pw")
        .get(
            "promdrop_web_config_last_reload_success_timestamp_seconds",
            &[],
        )
        .unwrap();
    setup.write_config(&tls_with_user("carol", "carol-pw"));
    hup(&exporter);
    let carol = ["--cacert", ca.as_str(), "-u", "carol:carol-pw"];
    let r = wait_until(
        &exporter,
        "carol to get in",
        Duration::from_secs(10),
        || curl(&url, &carol),
        |r| r.status == 200,
    );
    assert_eq!(curl(&url, &bob).status, 401);
    // SIGHUP and the timer may both have loaded it.
    let m = Metrics::parse(&r.body);
    let successes = reloads(&m, "success");
    assert!((2.0..=3.0).contains(&successes), "{}", m.body);
    assert_eq!(
        m.get("promdrop_web_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let after = m
        .get(
            "promdrop_web_config_last_reload_success_timestamp_seconds",
            &[],
        )
        .unwrap();
    assert!(after > before, "{before} then {after}");
    // SIGHUP did not stop the exporter.
    assert!(exporter.terminate().success());
}

/// Finding 4 of issue 14: emptying the web config, or rewriting it without TLS or without
/// basic auth, must not turn protection off on a running server. Each is a failed reload; the
/// previous configuration keeps serving, and plain HTTP without credentials gets nothing.
#[test]
fn a_reload_that_removes_tls_or_auth_is_refused() {
    let (setup, exporter) = start_with_alice();
    let ca = setup.ca();
    let url = https(&exporter, "/metrics");
    let alice = ["--cacert", ca.as_str(), "-u", "alice:alice-pw"];
    let plain = format!("http://{}/metrics", exporter.address);
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let users = format!("basic_auth_users:\n  alice: {}\n", bcrypt_hash("alice-pw"));
    for (failures, yaml) in [
        (1.0, String::new()),
        (2.0, "# emptied by a template\n".to_string()),
        (3.0, "{}\n".to_string()),
        (4.0, users.clone()),
        (5.0, tls.to_string()),
    ] {
        setup.write_config(&yaml);
        let m = wait_until(
            &exporter,
            &format!("reload of {yaml:?} to fail"),
            Duration::from_secs(10),
            || curl(&url, &alice),
            |r| r.status == 200 && reloads(&Metrics::parse(&r.body), "failure") == failures,
        );
        let m = Metrics::parse(&m.body);
        assert_eq!(reloads(&m, "success"), 0.0, "{yaml:?}\n{}", m.body);
        assert_eq!(
            m.get("promdrop_web_config_last_reload_successful", &[]),
            Some(0.0)
        );
        let r = curl(&plain, &[]);
        assert_ne!(
            r.status, 200,
            "{yaml:?}: plain HTTP got the metrics: {r:#?}"
        );
        let r = curl(&url, &["--cacert", ca.as_str()]);
        assert_eq!(r.status, 401, "{yaml:?}: no credentials: {r:#?}");
    }
    let log = exporter.log();
    assert!(log.contains("is empty"), "{log}");
    assert!(log.contains("turns TLS off"), "{log}");
    assert!(log.contains("turns basic auth off"), "{log}");
}

#[test]
fn a_bad_web_config_stops_the_start_with_one_line() {
    let setup = Setup::new();
    let textfiles = dir_arg(setup.textfiles.path());
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n",
            "tls_server_config.key_file",
        ),
        (
            "basic_auth_users:\n  alice: not-a-hash\n",
            "not a bcrypt hash",
        ),
        ("nonsense: [\n", ""),
    ];
    for (yaml, expected) in cases {
        setup.write_config(yaml);
        let out = Command::new(common::BINARY)
            .args([
                textfiles.clone(),
                arg("web.config.file", setup.config_path().display()),
                "--web.listen-address=127.0.0.1:0".to_string(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{yaml}: {stderr}");
        let prefix = format!(
            "promdrop-exporter: cannot load web config {}: ",
            setup.config_path().display()
        );
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{stderr}"));
        assert!(line.contains(expected), "{line}");
        // Not "web config PATH:" twice.
        assert_eq!(line.matches("web config").count(), 1, "{line}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
    // A missing file.
    let missing = setup.path("nowhere.yml");
    let out = Command::new(common::BINARY)
        .args([
            textfiles,
            arg("web.config.file", missing.display()),
            "--web.listen-address=127.0.0.1:0".to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "promdrop-exporter: cannot load web config {}: cannot read the file: ",
            missing.display()
        )),
        "{stderr}"
    );
}
