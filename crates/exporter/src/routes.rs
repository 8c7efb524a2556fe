//! What each endpoint answers, callable in-process: [`route`] takes a request and the
//! [`State`] and gives the response, with no socket, as axum's `app()` + `oneshot` do. The
//! server ([`crate::http`]) authorizes the request through its transport first.
//!
//! | path | answer |
//! |---|---|
//! | `--web.telemetry-path` (`/metrics`) | the prepared exposition: classic or OpenMetrics by `Accept`, gzip by `Accept-Encoding` ([`crate::exposition::negotiate`]) |
//! | `/-/healthy` | 200 while the engine makes progress; 503 once it has made none for `--watchdog.timeout` (stuck: restart it) |
//! | `/-/ready` | 200 once the first full scan is published, 503 before (a missing directory does not make it 503: see `promdrop_directory_error`) |
//! | `/` | the status page (HTML) |
//! | `/api/v1/files` | the status as JSON |
//!
//! Only GET and HEAD are answered (405 otherwise). The exposition and the status first have
//! every complete change seen before the request published ([`crate::pending`]).

use std::convert::Infallible;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::exposition::{Segment, Shared, negotiate};
use crate::pending::CATCH_UP_LIMIT;
use crate::status;
use crate::watchdog::Watchdog;

/// What routing reads: the published exposition and the telemetry path.
#[derive(Debug)]
pub struct State {
    /// What the engine publishes.
    pub shared: Arc<Shared>,
    /// `--web.telemetry-path`.
    pub telemetry_path: String,
    /// The engine's heartbeat (`/-/healthy` fails when it stops).
    pub watchdog: Arc<Watchdog>,
}

/// A response body: a list of prepared segments. Each frame is a [`Window`] over up to
/// [`Chunks::FRAME`] bytes of the segments' parts, which the server writes with `writev`
/// straight from the parts (hyper queues a vectored `Buf` as it is): a part held as text is
/// not copied, and a part held compressed (a file's lines) is decompressed into the frame
/// that sends it, so a body is never whole in memory.
#[derive(Debug)]
pub struct Chunks {
    segments: Arc<[Arc<Segment>]>,
    /// The first part not yet handed out as a frame.
    at: Position,
    remaining: u64,
}

impl Default for Chunks {
    fn default() -> Chunks {
        Chunks::new(Vec::new())
    }
}

impl Chunks {
    /// About how many bytes a frame covers (a frame ends at the first part boundary past it).
    pub const FRAME: usize = 256 << 10;

    /// A body of `segments`, in order.
    pub fn new(segments: Vec<Arc<Segment>>) -> Chunks {
        let remaining = segments.iter().map(|s| s.len() as u64).sum();
        Chunks {
            segments: segments.into(),
            at: Position::default(),
            remaining,
        }
    }

    /// A body of `bytes`, in order.
    pub fn from_bytes(bytes: Vec<Bytes>) -> Chunks {
        Chunks::new(vec![Arc::new(Segment::from_parts(bytes))])
    }
}

impl hyper::body::Body for Chunks {
    type Data = Window;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Window>, Infallible>>> {
        let mut at = self.at;
        let mut parts = Vec::new();
        let mut len = 0;
        while len < Chunks::FRAME && at.segment < self.segments.len() {
            if let Some(part) = self.segments[at.segment].part(at.part) {
                len += part.len();
                if !part.is_empty() {
                    parts.push(part);
                }
            }
            at = at.next(&self.segments);
        }
        self.at = at;
        if len == 0 {
            return Poll::Ready(None);
        }
        self.remaining = self.remaining.saturating_sub(len as u64);
        Poll::Ready(Some(Ok(Frame::data(Window::new(parts)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A part of a list of segments: the segment and the part within it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    segment: usize,
    part: usize,
}

impl Position {
    fn next(self, segments: &[Arc<Segment>]) -> Position {
        let parts = segments.get(self.segment).map_or(0, |s| s.part_count());
        if self.part + 1 < parts {
            Position {
                segment: self.segment,
                part: self.part + 1,
            }
        } else {
            Position {
                segment: self.segment + 1,
                part: 0,
            }
        }
    }
}

/// One frame of a [`Chunks`] body: its parts, none empty, sent as they are.
#[derive(Debug)]
pub struct Window {
    parts: Vec<Bytes>,
    /// The part being sent.
    index: usize,
    /// Bytes of that part already consumed.
    offset: usize,
    remaining: usize,
}

impl Window {
    fn new(parts: Vec<Bytes>) -> Window {
        let remaining = parts.iter().map(Bytes::len).sum();
        Window {
            parts,
            index: 0,
            offset: 0,
            remaining,
        }
    }
}

impl Buf for Window {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts
            .get(self.index)
            .map_or(&[][..], |part| &part[self.offset..])
    }

    fn advance(&mut self, mut cnt: usize) {
        cnt = cnt.min(self.remaining);
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(part) = self.parts.get(self.index) else {
                return;
            };
            let left = part.len() - self.offset;
            if cnt < left {
                self.offset += cnt;
                return;
            }
            cnt -= left;
            self.index += 1;
            self.offset = 0;
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut offset = self.offset;
        for part in self.parts.iter().skip(self.index) {
            if n == dst.len() {
                break;
            }
            dst[n] = IoSlice::new(&part[offset..]);
            n += 1;
            offset = 0;
        }
        n
    }
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Chunks> {
    let body = body.into();
    let mut response = Response::new(Chunks::from_bytes(vec![body]));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Waits (at most [`CATCH_UP_LIMIT`]) until every complete change seen before the request is
/// published: the engine gathers changes for `--watch.max-delay`, a request does not wait
/// for that. Not before the first scan is published (the engine does not answer then).
async fn catch_up(state: &State) {
    if state.shared.is_ready() {
        state.shared.pending.catch_up(CATCH_UP_LIMIT).await;
    }
}

async fn dispatch<B>(req: &Request<B>, state: &State) -> Response<Chunks> {
    let path = req.uri().path();
    if path == state.telemetry_path {
        catch_up(state).await;
        let negotiated = negotiate(req.headers());
        let published = state.shared.published.load_full();
        let body = published
            .negotiated_body(&negotiated, &state.shared.scrape_metrics)
            .await;
        let mut response = Response::new(Chunks::new(body.segments));
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
        "/-/healthy" => match state.watchdog.stalled() {
            None => text_response(StatusCode::OK, TEXT, "Healthy\n"),
            Some(since) => text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!(
                    "Unhealthy: the engine has made no progress for {:.0} s (--watchdog.timeout)\n",
                    since.as_secs_f64()
                ),
            ),
        },
        "/-/ready" => {
            if state.shared.is_ready() {
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
            catch_up(state).await;
            let published = state.shared.published.load();
            let html = status::render_html(&published.status(), SystemTime::now());
            text_response(StatusCode::OK, "text/html; charset=utf-8", html)
        }
        "/api/v1/files" => {
            catch_up(state).await;
            let published = state.shared.published.load();
            let mut model = (*published.status()).clone();
            model.ready = state.shared.is_ready();
            let json = status::render_json(&model, SystemTime::now());
            text_response(StatusCode::OK, "application/json", json)
        }
        _ => text_response(StatusCode::NOT_FOUND, TEXT, "Not found\n"),
    }
}

/// The answer to a request refused before routing (`401` with its challenge, or `403`).
pub fn unauthorized(status: StatusCode, challenge: Option<HeaderValue>) -> Response<Chunks> {
    let mut r = text_response(status, TEXT, "Unauthorized\n");
    if let Some(challenge) = challenge {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    }
    r
}

/// Answers `req` from `state`: GET and HEAD on the endpoints above, `405` for other methods,
/// `404` for other paths. A HEAD answer has the GET answer's headers and `Content-Length`, and
/// no body.
pub async fn route<B>(req: &Request<B>, state: &State) -> Response<Chunks> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "Only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut response = dispatch(req, state).await;
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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use promdrop_textformat::MetricType;

    use super::*;
    use crate::meta::MetaWriter;

    fn state() -> State {
        State {
            shared: Arc::new(Shared::new("/metrics")),
            telemetry_path: "/metrics".to_string(),
            watchdog: Arc::new(Watchdog::new(std::time::Duration::from_secs(60))),
        }
    }

    fn request(method: Method, path: &str, headers: &[(header::HeaderName, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(name, *value);
        }
        builder.body(()).unwrap()
    }

    async fn text(response: Response<Chunks>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn content_type(response: &Response<Chunks>) -> &str {
        response.headers()[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[tokio::test]
    async fn a_body_of_many_pieces_is_sent_whole_however_the_writer_reads_it() {
        // Pieces of every size from none to a few KiB, segments of no parts among them, as a
        // body of a segment per chunk and family is.
        let mut expected = Vec::new();
        let mut segments = Vec::new();
        for i in 0..900usize {
            let parts: Vec<Bytes> = (0..i % 4)
                .map(|k| {
                    let len = (i * 7919 + k * 104_729) % 3000 * usize::from(k != 1);
                    let text: Vec<u8> = (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect();
                    expected.extend_from_slice(&text);
                    Bytes::from(text)
                })
                .collect();
            segments.push(Arc::new(Segment::from_parts(parts)));
        }
        let mut body = Chunks::new(segments);
        assert_eq!(
            hyper::body::Body::size_hint(&body).exact(),
            Some(expected.len() as u64)
        );
        let mut sent = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let mut window = frame.unwrap().into_data().unwrap();
            frames += 1;
            assert!(window.remaining() < Chunks::FRAME + 3000);
            // As a writer does: a few slices at a time, of which it writes only part.
            let mut round = 0;
            while window.has_remaining() {
                let mut slices = [IoSlice::new(&[]); 5];
                let n = window.chunks_vectored(&mut slices);
                assert!(n > 0);
                let gathered: Vec<u8> =
                    slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
                assert!(gathered.starts_with(window.chunk()));
                let take = gathered.len().min(1 + round * 997 % 5000);
                sent.extend_from_slice(&gathered[..take]);
                window.advance(take);
                round += 1;
            }
        }
        assert!(frames > 1, "{frames} frames");
        assert!(hyper::body::Body::is_end_stream(&body));
        assert_eq!(sent.len(), expected.len());
        assert!(sent == expected, "the body sent differs from its pieces");
    }

    #[tokio::test]
    async fn ready_turns_200_once_the_first_scan_is_published() {
        let state = state();
        let before = route(&request(Method::GET, "/-/ready", &[]), &state).await;
        assert_eq!(before.status(), StatusCode::SERVICE_UNAVAILABLE);
        state
            .shared
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        let after = route(&request(Method::GET, "/-/ready", &[]), &state).await;
        assert_eq!(after.status(), StatusCode::OK);
        assert_eq!(text(after).await, "Ready\n");
    }

    #[tokio::test]
    async fn metrics_are_negotiated_by_accept() {
        let state = state();
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let om = route(
            &request(Method::GET, "/metrics", &[(header::ACCEPT, prometheus)]),
            &state,
        )
        .await;
        assert_eq!(om.status(), StatusCode::OK);
        assert!(content_type(&om).starts_with("application/openmetrics-text; version=1.0.0"));
        assert_eq!(om.headers()[header::VARY], "Accept, Accept-Encoding");
        assert!(text(om).await.ends_with("# EOF\n"));

        let classic = route(&request(Method::GET, "/metrics", &[]), &state).await;
        assert!(content_type(&classic).starts_with("text/plain; version=0.0.4"));
        assert!(classic.headers().get(header::CONTENT_ENCODING).is_none());
        assert!(!text(classic).await.contains("# EOF"));
    }

    #[tokio::test]
    async fn scrape_metrics_hooks_are_written_at_each_scrape() {
        fn hook(w: &mut MetaWriter) {
            w.family("test_hook_value", "A hook's metric.", MetricType::Gauge);
            w.sample(&[], 7.0);
        }
        let mut shared = Shared::new("/metrics");
        shared.scrape_metrics.push(hook);
        let state = State {
            shared: Arc::new(shared),
            telemetry_path: "/metrics".to_string(),
            watchdog: Arc::new(Watchdog::new(std::time::Duration::from_secs(60))),
        };
        let body = text(route(&request(Method::GET, "/metrics", &[]), &state).await).await;
        assert!(
            body.contains("# TYPE test_hook_value gauge\ntest_hook_value 7\n"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn only_get_and_head_are_answered() {
        let state = state();
        let post = route(&request(Method::POST, "/metrics", &[]), &state).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");

        let head = route(&request(Method::HEAD, "/-/healthy", &[]), &state).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "8"); // "Healthy\n"
        assert_eq!(text(head).await, "");

        let missing = route(&request(Method::GET, "/nope", &[]), &state).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn status_page_and_json() {
        let state = state();
        let page = route(&request(Method::GET, "/", &[]), &state).await;
        assert_eq!(content_type(&page), "text/html; charset=utf-8");
        let json = route(&request(Method::GET, "/api/v1/files", &[]), &state).await;
        assert_eq!(content_type(&json), "application/json");
        let value: serde_json::Value = serde_json::from_str(&text(json).await).unwrap();
        assert_eq!(value["ready"], false);
    }

    #[tokio::test]
    async fn a_refusal_carries_its_challenge() {
        let challenge = HeaderValue::from_static("Basic realm=\"promdrop\"");
        let r = unauthorized(StatusCode::UNAUTHORIZED, Some(challenge.clone()));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], challenge);
        assert_eq!(text(r).await, "Unauthorized\n");
    }
}
