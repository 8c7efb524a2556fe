//! The HTTP server (hyper 1.x, HTTP/1.1): routes a request to bytes another module prepared.
//!
//! | path | answer |
//! |---|---|
//! | `--web.telemetry-path` (`/metrics`) | the prepared exposition: classic or OpenMetrics by `Accept`, gzip by `Accept-Encoding` |
//! | `/-/healthy` | 200 while the process runs |
//! | `/-/ready` | 200 once the first full scan is published, 503 before |
//! | `/` | the status page (HTML) |
//! | `/api/v1/files` | the status as JSON |
//!
//! Only GET and HEAD are answered (405 otherwise). Request heads are bounded in size and must
//! arrive within [`HEADER_READ_TIMEOUT`]; connections are capped at [`MAX_CONNECTIONS`].
//!
//! # The transport seam
//!
//! Connections are accepted as TCP and then handed to a [`Transport`], which turns them into
//! the stream hyper serves ([`Transport::accept`], e.g. a TLS handshake) and may refuse a
//! request before it is routed ([`Transport::authorize`], e.g. basic auth). [`PlainTcp`] is
//! the plain transport; `--web.config.file` plugs in here as
//! [`WebTransport`](crate::transport::WebTransport).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use promdrop_textformat::Format;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::parse_listen_address;
use crate::error::Error;
use crate::exposition::Shared;
use crate::status;

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

/// A body made of prepared chunks, sent without copying.
#[derive(Debug, Default)]
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    /// A body of `chunks`.
    pub fn new(chunks: Vec<Bytes>) -> Chunks {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Chunks {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            remaining,
        }
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

struct Context_ {
    shared: Arc<Shared>,
    telemetry_path: String,
}

/// Whether `accept` prefers OpenMetrics to the classic text format.
///
/// Each media range gets its `q` (default 1); OpenMetrics is chosen when its best `q` is above
/// zero and above that of `text/plain` (or `text/*`, `*/*`), as Prometheus asks with
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
pub fn prefers_openmetrics(accept: &str) -> bool {
    let mut om: f32 = 0.0;
    let mut plain: f32 = 0.0;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q: f32 = 1.0;
        let mut version: Option<String> = None;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        match media.as_str() {
            "application/openmetrics-text"
                if version
                    .as_deref()
                    .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
            {
                om = om.max(q)
            }
            "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
            _ => {}
        }
    }
    om > 0.0 && om > plain
}

/// Whether `accept_encoding` allows gzip.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim() == "q")
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
    })
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Chunks> {
    let body = body.into();
    let mut response = Response::new(Chunks::new(vec![body]));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn route(req: &Request<Incoming>, ctx: &Context_) -> Response<Chunks> {
    let path = req.uri().path();
    if path == ctx.telemetry_path {
        let headers = req.headers();
        let format = if prefers_openmetrics(header_str(headers, header::ACCEPT)) {
            Format::OpenMetrics
        } else {
            Format::Classic
        };
        let gzip = accepts_gzip(header_str(headers, header::ACCEPT_ENCODING));
        let published = ctx.shared.published.load_full();
        let body = published
            .body(format, gzip, &ctx.shared.scrape_metrics)
            .await;
        let mut response = Response::new(Chunks::new(body.chunks));
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(body.content_type),
        );
        h.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Accept-Encoding"),
        );
        if body.gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        return response;
    }
    match path {
        "/-/healthy" => text_response(StatusCode::OK, TEXT, "Healthy\n"),
        "/-/ready" => {
            if ctx.shared.is_ready() {
                text_response(StatusCode::OK, TEXT, "Ready\n")
            } else {
                text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "Not ready: first scan running\n",
                )
            }
        }
        "/" => {
            let published = ctx.shared.published.load();
            let html = status::render_html(&published.status, SystemTime::now());
            text_response(StatusCode::OK, "text/html; charset=utf-8", html)
        }
        "/api/v1/files" => {
            let published = ctx.shared.published.load();
            let mut model = (*published.status).clone();
            model.ready = ctx.shared.is_ready();
            let json = status::render_json(&model, SystemTime::now());
            text_response(StatusCode::OK, "application/json", json)
        }
        _ => text_response(StatusCode::NOT_FOUND, TEXT, "Not found\n"),
    }
}

async fn handle<T: Transport>(
    req: Request<Incoming>,
    ctx: Arc<Context_>,
    transport: Arc<T>,
) -> Result<Response<Chunks>, Infallible> {
    let mut response = answer(req, &ctx, &*transport).await;
    transport.decorate(response.headers_mut());
    Ok(response)
}

async fn answer<T: Transport>(
    req: Request<Incoming>,
    ctx: &Context_,
    transport: &T,
) -> Response<Chunks> {
    // Authentication first, as the Go exporter-toolkit does: nothing is told to a client
    // without credentials, not even which methods exist.
    if let Err(refusal) = transport.authorize(req.headers()).await {
        let mut r = text_response(refusal.status, TEXT, "Unauthorized\n");
        if let Some(challenge) = refusal.www_authenticate {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        return r;
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "Only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut response = route(&req, ctx).await;
    if head {
        let len = hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        *response.body_mut() = Chunks::default();
    }
    response
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
    let ctx = Arc::new(Context_ {
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
        let ctx = Arc::clone(&ctx);
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
                handle(req, Arc::clone(&ctx), Arc::clone(&transport))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_scrapers_headers() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(prefers_openmetrics(prometheus));
        assert!(!prefers_openmetrics(
            "text/plain;version=0.0.4;q=1,*/*;q=0.1"
        ));
        assert!(!prefers_openmetrics(""));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics(
            "application/openmetrics-text;version=2.0.0"
        ));
        assert!(prefers_openmetrics("application/openmetrics-text"));
        assert!(!prefers_openmetrics(
            "application/openmetrics-text;q=0.5,text/plain"
        ));
        assert!(accepts_gzip("gzip, deflate"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip(""));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":9466").unwrap(),
            ["[::]:9466", "0.0.0.0:9466"]
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:0").unwrap(),
            ["127.0.0.1:0"]
        );
        assert!(parse_listen_address("9466").is_err());
        assert!(parse_listen_address(":http").is_err());
    }
}
