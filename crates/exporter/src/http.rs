//! The HTTP server (hyper 1.x, HTTP/1.1): accepts connections through a [`Transport`], checks
//! each request with it, and hands the request to [`routes::route`](crate::routes::route),
//! which answers with bytes another module prepared.
//!
//! Request heads are bounded in size and must arrive within [`HEADER_READ_TIMEOUT`];
//! connections are capped at [`MAX_CONNECTIONS`].
//!
//! # The transport seam
//!
//! Connections are accepted as TCP and then handed to a [`Transport`], which turns them into
//! the stream hyper serves ([`Transport::accept`], e.g. a TLS handshake) and may refuse a
//! request before it is routed ([`Transport::authorize`], e.g. basic auth). [`PlainTcp`] is
//! the plain transport; `--web.config.file` plugs in here as
//! [`WebTransport`](crate::transport::WebTransport).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::parse_listen_address;
use crate::error::Error;
use crate::exposition::Shared;
use crate::routes::{Chunks, State, route, unauthorized};

/// How long a client has to send a request's head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head, in bytes (hyper's buffer, which bounds header size).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most request headers.
pub const MAX_HEADERS: usize = 64;
/// Most connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a graceful shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a request was refused by a [`Transport`] before routing.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The status (401 or 403).
    pub status: StatusCode,
    /// A `WWW-Authenticate` challenge to send, if any.
    pub www_authenticate: Option<HeaderValue>,
}

/// How connections become streams, and which requests may pass: the seam where TLS, mTLS and
/// basic auth (`--web.config.file`) plug in.
pub trait Transport: Send + Sync + 'static {
    /// The stream served after [`accept`](Transport::accept).
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Turns an accepted TCP connection into the stream to serve (a TLS handshake, or
    /// nothing). An error closes the connection.
    fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = std::io::Result<Self::Io>> + Send;

    /// Checks a request's headers before anything else, on every path and method (basic
    /// auth); `Err` answers with the refusal. Asynchronous because a check may be slow (bcrypt
    /// runs off the serving threads). The default lets everything through.
    fn authorize(&self, headers: &HeaderMap) -> impl Future<Output = Result<(), Refusal>> + Send {
        let _ = headers;
        std::future::ready(Ok(()))
    }

    /// Adds headers to every response (the web configuration's `http_server_config.headers`,
    /// such as `Strict-Transport-Security`). The default adds none.
    fn decorate(&self, headers: &mut HeaderMap) {
        let _ = headers;
    }
}

/// Plain TCP, no authentication.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

impl Transport for PlainTcp {
    type Io = TcpStream;

    async fn accept(&self, stream: TcpStream, _peer: SocketAddr) -> std::io::Result<TcpStream> {
        Ok(stream)
    }
}

/// Binds `--web.listen-address`.
pub async fn bind(address: &str) -> Result<TcpListener, Error> {
    let candidates = parse_listen_address(address)?;
    let mut last = None;
    for candidate in &candidates {
        match TcpListener::bind(candidate.as_str()).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Listen {
        address: address.to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("no address to bind")),
    })
}

async fn handle<T: Transport>(
    req: Request<Incoming>,
    state: Arc<State>,
    transport: Arc<T>,
) -> Result<Response<Chunks>, Infallible> {
    // Authentication first, as the Go exporter-toolkit does: nothing is told to a client
    // without credentials, not even which methods exist.
    let mut response = match transport.authorize(req.headers()).await {
        Ok(()) => route(&req, &state).await,
        Err(refusal) => unauthorized(refusal.status, refusal.www_authenticate),
    };
    transport.decorate(response.headers_mut());
    Ok(response)
}

/// Serves on `listener` through `transport` until `shutdown` turns true, then lets requests
/// in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve<T: Transport>(
    listener: TcpListener,
    transport: T,
    shared: Arc<Shared>,
    telemetry_path: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let state = Arc::new(State {
        shared,
        telemetry_path,
    });
    let transport = Arc::new(transport);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let transport = Arc::clone(&transport);
        let state = Arc::clone(&state);
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let io = match tokio::time::timeout(HEADER_READ_TIMEOUT, transport.accept(stream, peer))
                .await
            {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "connection refused by the transport");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |req| {
                handle(req, Arc::clone(&state), Arc::clone(&transport))
            });
            let connection = builder.serve_connection(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace period");
    }
}
