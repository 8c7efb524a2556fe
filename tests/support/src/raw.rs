//! Bytes on a socket, for the few tests that need them: a request no HTTP client would send
//! (an oversized head, a malformed line) and a proxy that must pass the bytes it sees. Every
//! other request goes through [`crate::http`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::http::{Response, header};

/// How long [`send`] waits for the server.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Writes `request` as it is to `address` (`host:port`) and reads until the server closes the
/// connection (at most [`TIMEOUT`] between reads).
pub fn send(address: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(request)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// Splits a raw message into its head (without the blank line) and the rest.
pub fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&raw[..end], &raw[end + 4..]))
}

/// Parses the header lines of a head (after its start line) into names and values, as sent.
pub fn parse_headers(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Parses a whole response read until the server closed the connection; a chunked body is
/// de-chunked, a gzip body stays gzip. Header names keep the case they were sent in.
pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let (head, rest) =
        split_head(raw).ok_or_else(|| std::io::Error::other("incomplete HTTP response"))?;
    let head = String::from_utf8_lossy(head);
    let status_line = head.split("\r\n").next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers = parse_headers(&head);
    let body = if header(&headers, "transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::other(format!("bad chunked body: {what}"));
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("no chunk size line"))?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size not hex"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err(bad("chunk cut short"));
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
