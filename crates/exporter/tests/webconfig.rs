//! End-to-end tests of the web configuration (`--web.config.file`): a small hyper server on
//! 127.0.0.1 that uses `webconfig` for its connections and requests, driven by the real `curl`
//! with certificates made at test time (rcgen) and bcrypt hashes (bcrypt).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::pki::{leaf, new_ca, write_test_pki};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use promdrop_webconfig::{
    self as webconfig, ClientAuthType, ReloadOutcome, WebConfigError, WebConfigHandle,
};
use rcgen::ExtendedKeyUsagePurpose;

const CURL: &str = "/usr/bin/curl";

/// bcrypt's lowest cost keeps the tests fast; the code path is the same at any cost.
const COST: u32 = 4;

// ---------------------------------------------------------------------------------------------
// Certificates.
// ---------------------------------------------------------------------------------------------

/// A temporary folder with a server CA and certificate, a client certificate from the same CA
/// and one from another CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        write_test_pki(dir.path());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the web config file (relative names resolve against this folder).
    fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.path("web.yml");
        // Write then rename, as an operator's tooling would.
        let tmp = self.path("web.yml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, COST).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A server that uses the module as the exporter will.
// ---------------------------------------------------------------------------------------------

struct TestServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn respond(
    handle: Arc<WebConfigHandle>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = match handle.authorize(req.headers()).await {
        Ok(()) => Response::new(Full::new(Bytes::from_static(b"ok\n"))),
        Err(e) => {
            let mut r = Response::new(Full::new(Bytes::from(format!("{e}\n"))));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(webconfig::WWW_AUTHENTICATE),
            );
            r
        }
    };
    for (name, value) in handle.current().response_headers() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(response)
}

fn serve(handle: Arc<WebConfigHandle>) -> TestServer {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let handle = Arc::clone(&handle);
            tokio::spawn(async move {
                let Ok(stream) = handle.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req| respond(Arc::clone(&handle), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestServer {
        addr,
        runtime: Some(runtime),
    }
}

// ---------------------------------------------------------------------------------------------
// curl.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct CurlResult {
    /// curl's exit status: 0 when it got an HTTP answer, whatever its status.
    exit: i32,
    /// The HTTP status, 0 when there was none.
    status: u16,
    body: String,
    headers: String,
    #[expect(dead_code, reason = "shown by the Debug output of failed assertions")]
    stderr: String,
}

fn curl(args: &[&str]) -> CurlResult {
    assert!(
        Path::new(CURL).exists(),
        "these tests drive the real curl, expected at {CURL}: install it (apt-get install curl)"
    );
    let out_dir = tempfile::tempdir().unwrap();
    let body_path = out_dir.path().join("body");
    let headers_path = out_dir.path().join("headers");
    let output = Command::new(CURL)
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--output")
        .arg(&body_path)
        .arg("--dump-header")
        .arg(&headers_path)
        .args(["--write-out", "%{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {CURL}: {e}"));
    CurlResult {
        exit: output.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        body: std::fs::read_to_string(&body_path).unwrap_or_default(),
        headers: std::fs::read_to_string(&headers_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn https(server: &TestServer) -> String {
    format!("https://127.0.0.1:{}/metrics", server.addr.port())
}

fn path_arg(p: PathBuf) -> String {
    p.to_str().unwrap().to_string()
}

/// curl over TLS that trusts the test CA, with extra arguments.
fn curl_tls(pki: &Pki, server: &TestServer, extra: &[&str]) -> CurlResult {
    let ca = path_arg(pki.path("ca.crt"));
    let url = https(server);
    let mut args = vec!["--cacert", ca.as_str()];
    args.extend_from_slice(extra);
    args.push(url.as_str());
    curl(&args)
}

fn assert_status(result: &CurlResult, status: u16, what: &str) {
    assert!(
        result.exit == 0 && result.status == status,
        "{what}: expected HTTP {status}, got {result:#?}"
    );
}

/// The request must fail before any HTTP answer: a curl error and no status.
fn assert_refused(result: &CurlResult, what: &str) {
    assert!(
        result.exit != 0 && result.status == 0,
        "{what}: expected curl to fail without an HTTP answer, got {result:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_with_basic_auth() {
    let pki = Pki::new();
    let config = pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
         basic_auth_users:\n  prometheus: {}\n",
        bcrypt_hash("scrape-me")
    ));
    let handle = WebConfigHandle::load(&config).unwrap();
    assert!(handle.current().tls_enabled());
    assert!(handle.current().basic_auth_enabled());
    let server = serve(handle);

    let right = curl_tls(&pki, &server, &["--user", "prometheus:scrape-me"]);
    assert_status(&right, 200, "TLS, right credentials");
    assert_eq!(right.body, "ok\n");
    assert!(
        right
            .headers
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "configured header missing: {right:#?}"
    );
    // Again: now from the cache of verified credentials.
    assert_status(
        &curl_tls(&pki, &server, &["--user", "prometheus:scrape-me"]),
        200,
        "TLS, right credentials again",
    );

    let wrong = curl_tls(&pki, &server, &["--user", "prometheus:guess"]);
    assert_status(&wrong, 401, "wrong password");
    assert!(
        wrong
            .headers
            .contains("www-authenticate: Basic realm=\"promdrop\"")
            || wrong
                .headers
                .contains("WWW-Authenticate: Basic realm=\"promdrop\""),
        "401 without WWW-Authenticate: {wrong:#?}"
    );
    assert_status(
        &curl_tls(&pki, &server, &["--user", "nobody:scrape-me"]),
        401,
        "unknown user",
    );
    assert_status(&curl_tls(&pki, &server, &[]), 401, "no credentials");

    // The server certificate is valid for localhost as well.
    let ca = path_arg(pki.path("ca.crt"));
    let by_name = format!("https://localhost:{}/", server.addr.port());
    assert_status(
        &curl(&["--cacert", &ca, "--user", "prometheus:scrape-me", &by_name]),
        200,
        "TLS to localhost",
    );

    // Without the CA, curl does not trust the server.
    let untrusted = curl(&["--user", "prometheus:scrape-me", &https(&server)]);
    assert_refused(&untrusted, "TLS without trusting the CA");

    // Plain HTTP to the TLS port gets no metrics: a clear-text 400 that says why.
    let plain = curl(&[
        "--user",
        "prometheus:scrape-me",
        &format!("http://127.0.0.1:{}/metrics", server.addr.port()),
    ]);
    assert_status(&plain, 400, "plain HTTP to a TLS port");
    assert!(
        plain
            .body
            .contains("Client sent an HTTP request to an HTTPS server"),
        "{plain:#?}"
    );
}

#[test]
fn basic_auth_without_tls() {
    let pki = Pki::new();
    let config = pki.write_config(&format!(
        "basic_auth_users:\n  alice: {}\n",
        bcrypt_hash("wonderland")
    ));
    let handle = WebConfigHandle::load(&config).unwrap();
    assert!(!handle.current().tls_enabled());
    assert!(
        handle
            .current()
            .warnings()
            .iter()
            .any(|w| w.contains("clear text")),
        "{:?}",
        handle.current().warnings()
    );
    let server = serve(handle);
    let url = format!("http://127.0.0.1:{}/metrics", server.addr.port());
    assert_status(&curl(&["--user", "alice:wonderland", &url]), 200, "right");
    assert_status(&curl(&["--user", "alice:mirror", &url]), 401, "wrong");
    assert_status(&curl(&[&url]), 401, "none");
}

#[test]
fn mutual_tls_require_and_verify() {
    let pki = Pki::new();
    let config = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let handle = WebConfigHandle::load(&config).unwrap();
    assert_eq!(
        handle.current().client_auth(),
        Some(ClientAuthType::RequireAndVerifyClientCert)
    );
    assert!(handle.current().warnings().is_empty());
    let server = serve(handle);

    let (cert, key) = (
        path_arg(pki.path("client.crt")),
        path_arg(pki.path("client.key")),
    );
    let right = curl_tls(&pki, &server, &["--cert", &cert, "--key", &key]);
    assert_status(&right, 200, "client certificate from the client CA");
    // TLS 1.2 as well as 1.3.
    assert_status(
        &curl_tls(
            &pki,
            &server,
            &["--cert", &cert, "--key", &key, "--tls-max", "1.2"],
        ),
        200,
        "client certificate over TLS 1.2",
    );

    assert_refused(&curl_tls(&pki, &server, &[]), "no client certificate");

    let (other, other_key) = (
        path_arg(pki.path("other.crt")),
        path_arg(pki.path("other.key")),
    );
    assert_refused(
        &curl_tls(&pki, &server, &["--cert", &other, "--key", &other_key]),
        "client certificate from another CA",
    );
    assert_refused(
        &curl_tls(
            &pki,
            &server,
            &["--cert", &other, "--key", &other_key, "--tls-max", "1.2"],
        ),
        "client certificate from another CA over TLS 1.2",
    );
}

#[test]
fn optional_and_unverified_client_certificates() {
    let pki = Pki::new();
    let (cert, key) = (
        path_arg(pki.path("client.crt")),
        path_arg(pki.path("client.key")),
    );
    let (other, other_key) = (
        path_arg(pki.path("other.crt")),
        path_arg(pki.path("other.key")),
    );

    // VerifyClientCertIfGiven: none is fine, a good one is fine, a bad one is refused.
    let config = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n",
    );
    let handle = WebConfigHandle::load(&config).unwrap();
    assert!(!handle.current().warnings().is_empty());
    let server = serve(handle);
    assert_status(
        &curl_tls(&pki, &server, &[]),
        200,
        "IfGiven, no certificate",
    );
    assert_status(
        &curl_tls(&pki, &server, &["--cert", &cert, "--key", &key]),
        200,
        "IfGiven, good certificate",
    );
    assert_refused(
        &curl_tls(&pki, &server, &["--cert", &other, "--key", &other_key]),
        "IfGiven, certificate from another CA",
    );
    drop(server);

    // RequireAnyClientCert: any certificate, but one is needed.
    let config = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAnyClientCert\n",
    );
    let server = serve(WebConfigHandle::load(&config).unwrap());
    assert_refused(&curl_tls(&pki, &server, &[]), "RequireAny, no certificate");
    assert_status(
        &curl_tls(&pki, &server, &["--cert", &other, "--key", &other_key]),
        200,
        "RequireAny, unverified certificate",
    );
}

#[test]
fn min_version_tls13_refuses_tls12() {
    let pki = Pki::new();
    let config = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         min_version: TLS13\n",
    );
    let server = serve(WebConfigHandle::load(&config).unwrap());
    assert_refused(
        &curl_tls(&pki, &server, &["--tls-max", "1.2"]),
        "TLS 1.2 client against min_version TLS13",
    );
    assert_status(
        &curl_tls(&pki, &server, &["--tlsv1.3"]),
        200,
        "TLS 1.3 client",
    );
}

#[test]
fn cipher_suites_are_honoured_for_tls12() {
    let pki = Pki::new();
    // rcgen makes ECDSA P-256 keys: only ECDHE_ECDSA suites apply.
    let config = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  \
         curve_preferences: [CurveP256]\n",
    );
    let server = serve(WebConfigHandle::load(&config).unwrap());
    let ok = curl_tls(
        &pki,
        &server,
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ],
    );
    assert_status(&ok, 200, "the configured suite");
    assert_refused(
        &curl_tls(
            &pki,
            &server,
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ],
        ),
        "a suite the config leaves out",
    );
    assert_status(&curl_tls(&pki, &server, &[]), 200, "TLS 1.3 is unaffected");
}

#[test]
fn reload_swaps_users_and_keeps_the_old_config_on_error() {
    let pki = Pki::new();
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let config = pki.write_config(&format!(
        "{tls}basic_auth_users:\n  alice: {}\n",
        bcrypt_hash("first")
    ));
    let handle = WebConfigHandle::load(&config).unwrap();
    let server = serve(Arc::clone(&handle));
    assert_status(
        &curl_tls(&pki, &server, &["--user", "alice:first"]),
        200,
        "alice before",
    );
    assert_eq!(
        handle.reload_if_changed().unwrap(),
        ReloadOutcome::Unchanged
    );

    // Another user.
    pki.write_config(&format!(
        "{tls}basic_auth_users:\n  bob: {}\n",
        bcrypt_hash("second")
    ));
    assert_eq!(handle.reload_if_changed().unwrap(), ReloadOutcome::Reloaded);
    assert_status(
        &curl_tls(&pki, &server, &["--user", "alice:first"]),
        401,
        "alice after her removal",
    );
    assert_status(
        &curl_tls(&pki, &server, &["--user", "bob:second"]),
        200,
        "bob after the reload",
    );

    // A broken file: reported once, and the previous configuration stays in use.
    pki.write_config(&format!("{tls}basic_auth_users:\n  carol: not-a-hash\n"));
    let error = handle.reload_if_changed().unwrap_err();
    assert!(
        matches!(error, WebConfigError::Invalid { .. }) && error.to_string().contains("carol"),
        "{error}"
    );
    assert_eq!(
        handle.reload_if_changed().unwrap(),
        ReloadOutcome::Unchanged
    );
    assert!(handle.reload().is_err(), "a forced reload reports it again");
    assert_status(
        &curl_tls(&pki, &server, &["--user", "bob:second"]),
        200,
        "bob while the file is broken",
    );
    pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_fil: server.key\n");
    assert!(handle.reload_if_changed().is_err());
    assert_status(
        &curl_tls(&pki, &server, &["--user", "bob:second"]),
        200,
        "bob while the file has an unknown key",
    );
}

#[test]
fn spawn_reloader_picks_up_changes_and_rotated_certificates() {
    let pki = Pki::new();
    let config = pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  alice: {}\n",
        bcrypt_hash("first")
    ));
    let handle = WebConfigHandle::load(&config).unwrap();
    let server = serve(Arc::clone(&handle));
    let (tx, rx) = mpsc::channel();
    // spawn_reloader needs a runtime: the server's.
    let reloader = {
        let _runtime = server.runtime.as_ref().unwrap().enter();
        webconfig::spawn_reloader(Arc::clone(&handle), Duration::from_millis(100), move |r| {
            let _ = tx.send(r.map_err(|e| e.to_string()));
        })
    };

    // A new user through the file.
    pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  bob: {}\n",
        bcrypt_hash("second")
    ));
    let outcome = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(outcome, Ok(ReloadOutcome::Reloaded));
    assert_status(
        &curl_tls(&pki, &server, &["--user", "bob:second"]),
        200,
        "bob after the automatic reload",
    );

    // A failure is reported once.
    pki.write_config(&format!(
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n\
         basic_auth_users:\n  bob: {}\n",
        bcrypt_hash("second")
    ));
    let outcome = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        outcome.as_ref().is_err_and(|e| e.contains("missing.crt")),
        "{outcome:?}"
    );
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    // The missing file appears: the same configuration now loads.
    std::fs::copy(pki.path("server.crt"), pki.path("missing.crt")).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Ok(ReloadOutcome::Reloaded)
    );
    assert!(handle.current().basic_auth_enabled());
    // Dropping basic auth is refused (issue 14: a reload never turns a protection off).
    pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let outcome = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.contains("turns basic auth off")),
        "{outcome:?}"
    );
    assert!(handle.current().basic_auth_enabled());
    pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  bob: {}\n",
        bcrypt_hash("second")
    ));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Ok(ReloadOutcome::Reloaded)
    );

    // Certificate rotation: same config file, new certificate and key from a new CA.
    let new_ca = new_ca("rotated CA");
    let (cert, key) = leaf(&new_ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(pki.path("server.key.new"), key).unwrap();
    std::fs::write(pki.path("server.crt.new"), cert).unwrap();
    std::fs::write(pki.path("new-ca.crt"), &new_ca.pem).unwrap();
    std::fs::rename(pki.path("server.key.new"), pki.path("server.key")).unwrap();
    std::fs::rename(pki.path("server.crt.new"), pki.path("server.crt")).unwrap();
    // The reloader may see the key before the certificate (a mismatch, reported), then both.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap();
        if outcome == Ok(ReloadOutcome::Reloaded) {
            break;
        }
    }
    let new_ca_path = path_arg(pki.path("new-ca.crt"));
    assert_status(
        &curl(&[
            "--cacert",
            &new_ca_path,
            "--user",
            "bob:second",
            &https(&server),
        ]),
        200,
        "the rotated certificate",
    );
    assert_refused(
        &curl_tls(&pki, &server, &["--user", "bob:second"]),
        "the old CA after rotation",
    );
    reloader.abort();
}

#[test]
fn handshake_timeout_and_plain_listener() {
    let pki = Pki::new();
    let config =
        pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let handle = WebConfigHandle::builder()
        .path(&config)
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A client that connects and says nothing.
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let error = handle.accept(tcp).await.unwrap_err();
        assert!(
            matches!(error, WebConfigError::HandshakeTimeout(_)),
            "{error}"
        );

        // Without a config file: plain streams, no authentication.
        let plain = WebConfigHandle::disabled().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = plain.accept(tcp).await.unwrap();
        assert!(!stream.is_tls());
        assert_eq!(plain.authorize(&hyper::HeaderMap::new()).await, Ok(()));
    });
}
