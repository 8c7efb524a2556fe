//! HTTP requests to the servers under test, through ureq.
//!
//! The agents send only the headers a test gives (no default `Accept`, `User-Agent` or
//! `Accept-Encoding`), follow no redirect, use no proxy from the environment, and return every
//! status as a response rather than an error. Bodies come as sent: ureq is built without its
//! gzip feature, so a gzip body stays gzip until [`Response::decoded`] is asked for it.

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ureq::config::AutoHeaderValue;
use ureq::http as h;

/// How long a one-shot request ([`get`], [`request`]) may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The largest body read.
pub const MAX_BODY: u64 = 512 << 20;

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as sent (gzip stays gzip: see [`decoded`](Self::decoded)).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the body came gzip-compressed (`Content-Encoding: gzip`).
    pub fn gzipped(&self) -> bool {
        self.header("content-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
    }

    /// The body, gunzipped when it came gzip-compressed.
    pub fn decoded(&self) -> std::io::Result<Vec<u8>> {
        if self.gzipped() {
            let mut out = Vec::with_capacity(self.body.len() * 8);
            flate2::read::GzDecoder::new(&self.body[..])
                .take(MAX_BODY + 1)
                .read_to_end(&mut out)?;
            Ok(out)
        } else {
            Ok(self.body.clone())
        }
    }

    /// The decoded body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        match self.decoded() {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(e) => format!("<undecodable body: {e}>"),
        }
    }
}

/// The first header called `name` (case-insensitive) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An agent: kept-alive connections when `keep_alive`, a new connection a request otherwise;
/// `timeout` for each whole request.
fn agent(keep_alive: bool, timeout: Duration) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .timeout_global(Some(timeout));
    if !keep_alive {
        config = config
            .max_idle_connections(0)
            .max_idle_connections_per_host(0);
    }
    config.build().new_agent()
}

/// The agent of the one-shot requests.
fn one_shot() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| agent(false, TIMEOUT))
}

/// Sends `method path` to `address` (`host:port`) with `headers` and no body, on `agent`.
fn send(
    agent: &ureq::Agent,
    method: &str,
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, ureq::Error> {
    let mut request = h::Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).map_err(ureq::Error::from)?;
    let response = agent.run(request)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .into_with_config()
        .limit(MAX_BODY)
        .read_to_vec()?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn io_error(e: ureq::Error) -> std::io::Error {
    match e {
        ureq::Error::Io(e) => e,
        other => std::io::Error::other(other),
    }
}

/// `method path` from `address` (`host:port`) with `headers`, on a new connection.
pub fn request(
    method: &str,
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    send(one_shot(), method, address, path, headers).map_err(io_error)
}

/// `GET path` from `address` (`host:port`) with `headers`, on a new connection.
pub fn get(address: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    request("GET", address, path, headers)
}

/// A client for one address that keeps its connection alive between requests, with a
/// deadline on each whole request.
pub struct Client {
    address: String,
    timeout: Duration,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `address` (`host:port`) with `timeout` per request.
    pub fn new(address: impl std::fmt::Display, timeout: Duration) -> Client {
        Client {
            address: address.to_string(),
            timeout,
            agent: agent(true, timeout),
        }
    }

    /// `GET path`, asking for gzip when `gzip`.
    ///
    /// A kept-alive connection that the server closed as the request went out is tried once
    /// more on a new connection, within the same deadline.
    pub fn get(&mut self, path: &str, gzip: bool) -> anyhow::Result<Response> {
        let headers: &[(&str, &str)] = if gzip {
            &[("Accept-Encoding", "gzip")]
        } else {
            &[]
        };
        let started = Instant::now();
        match send(&self.agent, "GET", &self.address, path, headers) {
            Ok(r) => Ok(r),
            Err(e) if is_closed(&e) && started.elapsed() < self.timeout => {
                send(&self.agent, "GET", &self.address, path, headers)
                    .map_err(|e| anyhow::anyhow!("GET {path} from {}: {e}", self.address))
            }
            Err(e) => Err(anyhow::anyhow!("GET {path} from {}: {e}", self.address)),
        }
    }
}

/// Whether `e` says the connection was closed under the request.
fn is_closed(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Percent-encodes `text` for a URL query value.
pub fn encode_query_value(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
