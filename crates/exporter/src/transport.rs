//! `--web.config.file`: the [`promdrop_webconfig`] handle plugged into the HTTP
//! server's [`Transport`] seam, its reloads (on change and on `SIGHUP`) and their metrics.
//!
//! - [`WebTransport::accept`](Transport::accept) does the TLS handshake when the file configures
//!   TLS (a client speaking plain HTTP to it gets `400 Bad Request` in clear text); a failed
//!   handshake closes the connection and is logged at debug by the server.
//! - [`WebTransport::authorize`](Transport::authorize) checks basic auth on every request, on
//!   every endpoint (`/metrics`, `/-/healthy`, `/-/ready`, `/`, `/api/v1/files`), as the Go
//!   exporter-toolkit does; a refusal is `401 Unauthorized` with
//!   `WWW-Authenticate: `[`WWW_AUTHENTICATE`].
//! - [`WebTransport::decorate`](Transport::decorate) adds `http_server_config.headers`.
//!
//! Without `--web.config.file` the handle is disabled: plain HTTP, no authentication, nothing
//! reloaded, no `promdrop_web_config_*` metrics.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderValue};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::http::{Refusal, Transport};
use crate::meta::MetaWriter;
use crate::names;
use promdrop_webconfig::{
    self as webconfig, AuthError, ReloadOutcome, WWW_AUTHENTICATE, WebConfigError, WebConfigHandle,
    WebStream,
};

/// The [`Transport`] of `--web.config.file`: TLS, mutual TLS, basic auth and response headers
/// as the current web configuration says.
#[derive(Debug, Clone)]
pub struct WebTransport {
    handle: Arc<WebConfigHandle>,
}

impl WebTransport {
    /// Wraps a handle.
    pub fn new(handle: Arc<WebConfigHandle>) -> WebTransport {
        WebTransport { handle }
    }

    /// Loads `--web.config.file` (or makes a disabled handle without one) and logs the
    /// configuration's warnings. A bad file is an error: the exporter does not start without
    /// the protection the file asks for.
    pub fn load(path: Option<&Path>) -> Result<WebTransport, Error> {
        let handle = match path {
            Some(path) => {
                let handle = WebConfigHandle::load(path).map_err(|e| load_error(path, &e))?;
                let config = handle.current();
                tracing::info!(
                    file = %path.display(),
                    tls = config.tls_enabled(),
                    client_auth = %config.client_auth().map_or("none", |c| c.as_str()),
                    basic_auth = config.basic_auth_enabled(),
                    "web config loaded"
                );
                log_warnings(&handle);
                METRICS.succeeded(false);
                METRICS.enabled.store(true, Ordering::Relaxed);
                handle
            }
            None => WebConfigHandle::disabled().map_err(|e| Error::WebConfig {
                path: "<no --web.config.file>".into(),
                message: e.to_string(),
            })?,
        };
        Ok(WebTransport { handle })
    }

    /// The shared handle.
    pub fn handle(&self) -> &Arc<WebConfigHandle> {
        &self.handle
    }

    /// With a configuration file, starts checking it for changes every `interval` and reloading
    /// it on `SIGHUP`; each reload is logged and counted. Returns the tasks to abort at
    /// shutdown (none without a file).
    pub fn spawn_reloading(&self, interval: Duration) -> Vec<JoinHandle<()>> {
        if self.handle.path().is_none() {
            return Vec::new();
        }
        let mut tasks = vec![webconfig::spawn_reloader(
            Arc::clone(&self.handle),
            interval,
            {
                let handle = Arc::clone(&self.handle);
                move |result| record_reload(&handle, "change", result)
            },
        )];
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                let handle = Arc::clone(&self.handle);
                tasks.push(tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        let h = Arc::clone(&handle);
                        let result = tokio::task::spawn_blocking(move || h.reload())
                            .await
                            .unwrap_or_else(|e| Err(WebConfigError::ReloadTask(e.to_string())));
                        record_reload(&handle, "SIGHUP", result);
                    }
                }));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; the web config is still reloaded when it changes");
            }
        }
        tasks
    }
}

/// `cannot load web config PATH: WHAT`, without the module's own `web config PATH: ` prefix.
fn load_error(path: &Path, error: &WebConfigError) -> Error {
    let message = error.to_string();
    let prefix = format!("web config {}: ", path.display());
    let message = message
        .strip_prefix(&prefix)
        .map(str::to_string)
        .unwrap_or(message);
    Error::WebConfig {
        path: path.to_path_buf(),
        message,
    }
}

fn log_warnings(handle: &WebConfigHandle) {
    for warning in handle.current().warnings() {
        tracing::warn!(warning = %warning, "web config");
    }
}

fn record_reload(
    handle: &WebConfigHandle,
    trigger: &'static str,
    result: Result<ReloadOutcome, WebConfigError>,
) {
    match result {
        Ok(ReloadOutcome::Reloaded) => {
            METRICS.succeeded(true);
            let config = handle.current();
            tracing::info!(
                trigger,
                tls = config.tls_enabled(),
                client_auth = %config.client_auth().map_or("none", |c| c.as_str()),
                basic_auth = config.basic_auth_enabled(),
                "web config reloaded"
            );
            log_warnings(handle);
        }
        Ok(ReloadOutcome::Unchanged) => {}
        Err(e) => {
            METRICS.failed();
            tracing::error!(trigger, error = %e, "web config reload failed; the previous configuration stays in use");
        }
    }
}

impl Transport for WebTransport {
    type Io = WebStream<TcpStream>;

    async fn accept(&self, stream: TcpStream, _peer: SocketAddr) -> std::io::Result<Self::Io> {
        self.handle
            .accept(stream)
            .await
            .map_err(std::io::Error::other)
    }

    async fn authorize(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<(), Refusal> {
        self.handle
            .authorize_from(headers, peer.ip())
            .await
            .map_err(|e| {
                tracing::debug!(reason = %e, peer = %peer, "request refused");
                match e {
                    AuthError::TooManyAttempts => Refusal {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        www_authenticate: None,
                    },
                    _ => Refusal {
                        status: StatusCode::UNAUTHORIZED,
                        www_authenticate: Some(HeaderValue::from_static(WWW_AUTHENTICATE)),
                    },
                }
            })
    }

    fn answers_in_clear(&self) -> bool {
        !self.handle.current().tls_enabled()
    }

    fn decorate(&self, headers: &mut HeaderMap) {
        for (name, value) in self.handle.current().response_headers() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Web config reload counts, for the whole process (there is one web config per process).
struct Metrics {
    /// Set once `--web.config.file` is loaded: only then are the metrics served.
    enabled: AtomicBool,
    success: AtomicU64,
    failure: AtomicU64,
    /// `f64` bits of the last successful load's time (Unix seconds).
    last_success: AtomicU64,
    last_ok: AtomicBool,
}

static METRICS: Metrics = Metrics {
    enabled: AtomicBool::new(false),
    success: AtomicU64::new(0),
    failure: AtomicU64::new(0),
    last_success: AtomicU64::new(0),
    last_ok: AtomicBool::new(false),
};

impl Metrics {
    /// A load succeeded: the first one at start (`reload` false, not counted) or a reload.
    fn succeeded(&self, reload: bool) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if reload {
            self.success.fetch_add(1, Ordering::Relaxed);
        }
        self.last_success.store(now.to_bits(), Ordering::Relaxed);
        self.last_ok.store(true, Ordering::Relaxed);
    }

    fn failed(&self) {
        self.failure.fetch_add(1, Ordering::Relaxed);
        self.last_ok.store(false, Ordering::Relaxed);
    }
}

/// Writes the `promdrop_web_config_*` metrics (with `--web.config.file` only); called for
/// each scrape with the process metrics.
pub fn render_metrics(w: &mut MetaWriter) {
    let m = &METRICS;
    if !m.enabled.load(Ordering::Relaxed) {
        return;
    }
    w.own(&names::PROMDROP_WEB_CONFIG_RELOADS_TOTAL);
    w.sample(
        &[("result", "success")],
        m.success.load(Ordering::Relaxed) as f64,
    );
    w.sample(
        &[("result", "failure")],
        m.failure.load(Ordering::Relaxed) as f64,
    );
    w.own(&names::PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL);
    w.sample(
        &[],
        if m.last_ok.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        },
    );
    w.own(&names::PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS);
    w.sample(&[], f64::from_bits(m.last_success.load(Ordering::Relaxed)));
}
