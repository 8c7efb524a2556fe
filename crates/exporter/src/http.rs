//! The HTTP server (hyper 1.x, HTTP/1.1): accepts connections through a [`Transport`], checks
//! each request with it, and hands the request to [`routes::route`](crate::routes::route),
//! which answers with bytes another module prepared.
//!
//! Request heads are bounded in size and must arrive within [`HEADER_READ_TIMEOUT`] (which
//! also closes a keep-alive connection idle for that long); a response must be written within
//! [`Limits::write_timeout`] (a client that stops reading loses its connection); connections
//! are capped at [`Limits::max_connections`] and requests for the metrics in flight at
//! [`Limits::max_requests`], each answered `503 Service Unavailable` when over. Credentials are
//! checked first, before any other work.
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
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::parse_listen_address;
use crate::error::Error;
use crate::routes::{Chunks, State, Window, route, unauthorized};

/// How long a client has to send a request's head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head, in bytes (hyper's buffer, which bounds header size).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most request headers.
pub const MAX_HEADERS: usize = 64;
/// Default of `--web.max-connections`.
pub const MAX_CONNECTIONS: usize = 512;
/// Default of `--web.max-requests`.
pub const MAX_REQUESTS: usize = 40;
/// Default of `--web.write-timeout`.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most refusals (over `--web.max-connections`) being answered at once; beyond, a connection
/// is closed without an answer.
const MAX_REFUSALS: usize = 64;

/// The server's limits (`--web.max-connections`, `--web.max-requests`, `--web.write-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections served at once; one more is answered `503` and closed.
    pub max_connections: usize,
    /// Most requests for the metrics in flight (until their response is written); one more is
    /// answered `503`. 0: no limit.
    pub max_requests: usize,
    /// How long writing one response may take; a connection that takes longer is closed.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_requests: MAX_REQUESTS,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}
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

    /// Checks a request's headers (from `peer`) before anything else, on every path and
    /// method (basic auth); `Err` answers with the refusal. Asynchronous because a check may be
    /// slow (bcrypt runs off the serving threads). The default lets everything through.
    fn authorize(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<(), Refusal>> + Send {
        let _ = (headers, peer);
        std::future::ready(Ok(()))
    }

    /// Whether a connection refused before it is served can be answered in clear text (a
    /// `503` over plain HTTP); a TLS listener closes it instead. The default: yes.
    fn answers_in_clear(&self) -> bool {
        true
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

/// A response body holding a `--web.max-requests` permit until it is written (or dropped).
#[derive(Debug)]
pub struct Held {
    body: Chunks,
    _permit: Option<OwnedSemaphorePermit>,
}

impl hyper::body::Body for Held {
    type Data = Window;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Window>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What each connection's requests share.
struct Served<T> {
    state: Arc<State>,
    transport: Arc<T>,
    /// `--web.max-requests` (none for 0).
    requests: Option<Arc<Semaphore>>,
}

async fn handle<T: Transport>(
    req: Request<Incoming>,
    served: Arc<Served<T>>,
    peer: SocketAddr,
) -> Result<Response<Held>, Infallible> {
    // Authentication first, as the Go exporter-toolkit does: nothing is told to a client
    // without credentials, not even which methods exist, and no other work is done for it.
    let mut permit = None;
    let mut response = match served.transport.authorize(req.headers(), peer).await {
        Err(refusal) => unauthorized(refusal.status, refusal.www_authenticate),
        Ok(()) => {
            let limited = req.uri().path() == served.state.telemetry_path;
            match served.requests.as_ref().filter(|_| limited) {
                Some(requests) => match Arc::clone(requests).try_acquire_owned() {
                    Ok(p) => {
                        permit = Some(p);
                        route(&req, &served.state).await
                    }
                    Err(_) => {
                        tracing::debug!(peer = %peer, "too many requests in flight; answered 503");
                        unavailable("Too many requests in flight (--web.max-requests)\n")
                    }
                },
                None => route(&req, &served.state).await,
            }
        }
    };
    served.transport.decorate(response.headers_mut());
    Ok(response.map(|body| Held {
        body,
        _permit: permit,
    }))
}

/// A `503` answer in clear text, with `Retry-After`.
fn unavailable(message: &'static str) -> Response<Chunks> {
    let mut r = Response::new(Chunks::from_bytes(vec![Bytes::from_static(
        message.as_bytes(),
    )]));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// What a connection over `--web.max-connections` is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\n\
Content-Length: 49\r\n\r\nToo many connections (--web.max-connections); retry\n";

/// Answers a connection over the limit: `503` in clear text (never waiting on the client),
/// then a short wait for its request so that closing does not reset the answer away.
async fn refuse(stream: TcpStream) {
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let _ = std_stream.shutdown(std::net::Shutdown::Write);
    let Ok(stream) = TcpStream::from_std(std_stream) else {
        return;
    };
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while stream.readable().await.is_ok() {
            match stream.try_read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    })
    .await;
}

/// Serves on `listener` through `transport` within `limits` until `shutdown` turns true,
/// then lets requests in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve<T: Transport>(
    listener: TcpListener,
    transport: T,
    state: State,
    limits: Limits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let served = Arc::new(Served {
        state: Arc::new(state),
        transport: Arc::new(transport),
        requests: (limits.max_requests > 0).then(|| Arc::new(Semaphore::new(limits.max_requests))),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    loop {
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
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            LIMITED.connections.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %peer, "too many connections; refused");
            if served.transport.answers_in_clear()
                && let Ok(slot) = Arc::clone(&refusals).try_acquire_owned()
            {
                tokio::spawn(async move {
                    let _slot = slot;
                    refuse(stream).await;
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let served = Arc::clone(&served);
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let write_timeout = limits.write_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let io = match tokio::time::timeout(
                HEADER_READ_TIMEOUT,
                served.transport.accept(stream, peer),
            )
            .await
            {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "connection refused by the transport");
                    return;
                }
                Err(_) => return,
            };
            let io = WriteDeadline::new(io, write_timeout);
            let service =
                hyper::service::service_fn(move |req| handle(req, Arc::clone(&served), peer));
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

/// How often the limits turned something away, for the process's own metrics.
struct Limited {
    connections: AtomicU64,
}

static LIMITED: Limited = Limited {
    connections: AtomicU64::new(0),
};

/// The number of connections refused over `--web.max-connections` since the start.
pub fn refused_connections() -> u64 {
    LIMITED.connections.load(Ordering::Relaxed)
}

/// A stream whose writes must complete in time: from the first write of a response until the
/// flush that completes it, at most `timeout` may pass, else the write fails with `TimedOut`
/// and hyper closes the connection. A client that sends requests and never reads the answers
/// thus holds its connection for `timeout` at most.
struct WriteDeadline<IO> {
    io: IO,
    timeout: Duration,
    /// When the write in progress began (`None` between responses).
    started: Option<tokio::time::Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<IO> WriteDeadline<IO> {
    fn new(io: IO, timeout: Duration) -> WriteDeadline<IO> {
        WriteDeadline {
            io,
            timeout,
            started: None,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Notes the start of a write; to call before each write or flush.
    fn begin(&mut self) {
        if self.started.is_none() {
            self.started = Some(tokio::time::Instant::now());
        }
    }

    /// Turns a pending write into a `TimedOut` error once the deadline has passed, and else
    /// arms the timer so that the task wakes at the deadline.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let deadline = self.started.unwrap_or_else(tokio::time::Instant::now) + self.timeout;
        if tokio::time::Instant::now() >= deadline {
            return Poll::Ready(Err(timed_out()));
        }
        self.timer.as_mut().reset(deadline);
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the client did not read the response within --web.write-timeout",
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.begin();
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            done => done,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.begin();
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.begin();
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            Poll::Ready(Ok(())) => {
                self.started = None;
                Poll::Ready(Ok(()))
            }
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.begin();
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Pending => self.pending(cx),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_are_the_flags_defaults() {
        let config = crate::config::Config::from_args(["promdrop-exporter"]).unwrap();
        assert_eq!(
            Limits {
                max_connections: config.max_connections,
                max_requests: config.max_requests,
                write_timeout: config.write_timeout,
            },
            Limits::default()
        );
    }
}
