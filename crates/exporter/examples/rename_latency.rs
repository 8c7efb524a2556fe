//! How long a file renamed into a served directory takes to show in `/metrics`: the latency a
//! job's hand-off has as Prometheus sees it.
//!
//!     cargo run --release -p promdrop-exporter --example rename_latency -- \
//!         --url http://127.0.0.1:9466/metrics --dir /tmp/bench1k [--renames 200] [--classic]
//!
//! Each round takes one `*.prom` file of the directory (round-robin), writes its original
//! content plus a line `bench_rename_generation{file="<name>"} <generation>` to a temporary
//! file, renames it over the original, and polls `/metrics` (gzip, with Prometheus's `Accept`
//! header, so OpenMetrics; `--classic` asks for the text format 0.0.4) until the line is there.
//! Two latencies per round, from just before the rename:
//!
//! - *sent*: when the first poll that saw the line was sent (a scrape started then sees it);
//! - *seen*: when that poll's body was received and decompressed.
//!
//! The gap between them is one poll (transfer and gzip decoding of the whole body), the
//! resolution of the measurement. Prints p50, p90, p99 and max of both, in milliseconds; with
//! `--json`, one JSON line instead. The original contents are restored at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const CLASSIC_ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

type Failure = Box<dyn std::error::Error>;

struct Args {
    host: String,
    path: String,
    dir: PathBuf,
    renames: usize,
    accept: &'static str,
    timeout: Duration,
    json: bool,
}

fn usage() -> Failure {
    "usage: rename_latency --url http://HOST:PORT/metrics --dir DIR [--renames N] [--classic] [--timeout-ms MS] [--json]".into()
}

fn parse_args() -> Result<Args, Failure> {
    let mut url = None;
    let mut dir = None;
    let mut renames = 200;
    let mut accept = PROMETHEUS_ACCEPT;
    let mut timeout = Duration::from_secs(10);
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next(),
            "--dir" => dir = args.next().map(PathBuf::from),
            "--renames" => renames = args.next().ok_or_else(usage)?.parse()?,
            "--timeout-ms" => {
                timeout = Duration::from_millis(args.next().ok_or_else(usage)?.parse()?)
            }
            "--classic" => accept = CLASSIC_ACCEPT,
            "--json" => json = true,
            _ => return Err(usage()),
        }
    }
    let url = url.ok_or_else(usage)?;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/metrics".to_string()),
    };
    Ok(Args {
        host,
        path,
        dir: dir.ok_or_else(usage)?,
        renames,
        accept,
        timeout,
        json,
    })
}

/// A keep-alive HTTP/1.1 connection that GETs one path with gzip.
struct Client {
    host: String,
    request: Vec<u8>,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(host: &str, path: &str, accept: &str) -> Client {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nAccept-Encoding: gzip\r\nUser-Agent: rename_latency\r\n\r\n"
        );
        Client {
            host: host.to_string(),
            request: request.into_bytes(),
            conn: None,
        }
    }

    /// The decoded body of one GET.
    fn get(&mut self) -> Result<Vec<u8>, Failure> {
        match self.try_get() {
            Ok(body) => Ok(body),
            Err(_) => {
                // The server may have closed an idle connection: once more on a new one.
                self.conn = None;
                self.try_get()
            }
        }
    }

    fn try_get(&mut self) -> Result<Vec<u8>, Failure> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.host)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(BufReader::with_capacity(1 << 16, stream));
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        conn.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            return Err(format!("unexpected status line {line:?}").into());
        }
        let mut length: Option<usize> = None;
        let mut gzip = false;
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').ok_or("bad header")?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse()?),
                "content-encoding" => gzip = value.trim().eq_ignore_ascii_case("gzip"),
                "transfer-encoding" => return Err("chunked bodies are not supported".into()),
                _ => {}
            }
        }
        let length = length.ok_or("no Content-Length")?;
        let mut raw = vec![0u8; length];
        conn.read_exact(&mut raw)?;
        if !gzip {
            return Ok(raw);
        }
        let mut body = Vec::with_capacity(raw.len() * 8);
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut body)?;
        Ok(body)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rename_with(dir: &Path, name: &str, content: &[u8]) -> Result<(), Failure> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args = parse_args()?;
    let mut names: Vec<String> = std::fs::read_dir(&args.dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prom") && !n.starts_with('.'))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no .prom files in {}", args.dir.display()).into());
    }
    let used: Vec<&String> = names
        .iter()
        .step_by((names.len() / args.renames.max(1)).max(1))
        .collect();
    let originals: Vec<Vec<u8>> = used
        .iter()
        .map(|n| std::fs::read(args.dir.join(n)))
        .collect::<Result<_, _>>()?;
    let mut client = Client::new(&args.host, &args.path, args.accept);
    client.get()?;
    let base = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() % 1_000_000 * 1000;
    let mut sent = Vec::with_capacity(args.renames);
    let mut seen = Vec::with_capacity(args.renames);
    let mut polls = 0usize;
    let mut failed = None;
    for round in 0..args.renames {
        let index = round % used.len();
        let name = used[index];
        let stem = name.trim_end_matches(".prom");
        let generation = base + round as u64;
        let line = format!("bench_rename_generation{{file=\"{stem}\"}} {generation}\n");
        let mut content = originals[index].clone();
        content.extend_from_slice(line.as_bytes());
        let start = Instant::now();
        rename_with(&args.dir, name, &content)?;
        loop {
            let poll_sent = start.elapsed();
            let body = client.get()?;
            polls += 1;
            if memchr_find(&body, line.as_bytes()) {
                sent.push(poll_sent.as_secs_f64() * 1000.0);
                seen.push(start.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if start.elapsed() > args.timeout {
                failed = Some(format!(
                    "round {round}: {stem} not visible after {:?}",
                    args.timeout
                ));
                break;
            }
        }
        if failed.is_some() {
            break;
        }
        // Let the gzip body of this change be prepared before the next one, as between jobs.
        std::thread::sleep(Duration::from_millis(20));
    }
    for (name, original) in used.iter().zip(&originals) {
        rename_with(&args.dir, name, original)?;
    }
    if let Some(message) = failed {
        return Err(message.into());
    }
    let mut s = sent.clone();
    let mut r = seen.clone();
    s.sort_by(f64::total_cmp);
    r.sort_by(f64::total_cmp);
    if args.json {
        println!(
            "{{\"renames\":{},\"polls\":{},\"sent_p50_ms\":{:.1},\"sent_p99_ms\":{:.1},\"seen_p50_ms\":{:.1},\"seen_p99_ms\":{:.1},\"seen_max_ms\":{:.1}}}",
            s.len(),
            polls,
            percentile(&s, 50.0),
            percentile(&s, 99.0),
            percentile(&r, 50.0),
            percentile(&r, 99.0),
            percentile(&r, 100.0)
        );
    } else {
        println!("{} renames, {} polls", s.len(), polls);
        for (label, v) in [("sent", &s), ("seen", &r)] {
            println!(
                "{label}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                percentile(v, 50.0),
                percentile(v, 90.0),
                percentile(v, 99.0),
                percentile(v, 100.0)
            );
        }
    }
    Ok(())
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    // The bodies are ASCII; std's substring search is fast on &str.
    match (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        (Ok(h), Ok(n)) => h.contains(n),
        _ => haystack.windows(needle.len()).any(|w| w == needle),
    }
}
