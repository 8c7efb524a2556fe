//! The end-to-end harness: promdrop's real binaries, a real Prometheus and a real
//! node_exporter, on loopback ports and temporary directories.
//!
//! The generic pieces (building the binaries, processes stopped by PID, the exporter launcher,
//! the HTTP client, sample sets) are in `promdrop-test-support`, which this crate re-exports;
//! here are the peers:
//!
//! - [`Prometheus`], [`NodeExporter`]: Debian's servers, each started on 127.0.0.1 and waited
//!   for until it answers.
//! - [`RecordingProxy`]: a pass-through HTTP proxy that records each request and response
//!   head, to see what Prometheus asked for and what it was given.
//!
//! A missing tool fails the test that needs it with the package to install: these tests never
//! skip.
//!
//! ```no_run
//! use promdrop_e2e::{Exporter, Prometheus, ScrapeTarget, binaries};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let exporter = Exporter::start(
//!     &binaries().exporter,
//!     &[format!("--textfile.directory={}", dir.path().display())],
//! );
//! let prometheus = Prometheus::start(&[ScrapeTarget::new("promdrop", &exporter.address)]);
//! let up = prometheus.wait_for_query("the exporter is up", "up == 1", Duration::from_secs(30), |r| {
//!     !r.is_empty()
//! });
//! assert_eq!(up[0].value, 1.0);
//! ```
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use promdrop_test_support::binaries::{binaries, workspace_root};
pub use promdrop_test_support::metrics::{self as samples};
pub use promdrop_test_support::process::{Process, free_port, poll, run_with_stdin};
pub use promdrop_test_support::{Exporter, http, raw, unix_now};

pub use promdrop_test_support::peers::{NODE_EXPORTER, NodeExporter, START_TIMEOUT, require_tool};

/// Debian's Prometheus (package `prometheus`, 2.42 on bookworm).
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The `Accept` header Prometheus 2.42 sends with every scrape (OpenMetrics preferred).
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Fails the test when `python3` or its `prometheus_client` module is missing.
pub fn require_python_prometheus_client() {
    let output = Command::new("python3")
        .args([
            "-c",
            "import prometheus_client; print(prometheus_client.__file__)",
        ])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed by this test and cannot run: {e}"));
    assert!(
        output.status.success(),
        "Python's prometheus_client is not installed: pip install -r tests/requirements.txt\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus.

/// One scrape job of a [`Prometheus`] configuration: a static target.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// The `job_name` (Prometheus puts it in the `job` label).
    pub job: String,
    /// `host:port`.
    pub address: String,
}

impl ScrapeTarget {
    /// A target scraped at `/metrics` over plain HTTP.
    pub fn new(job: &str, address: &str) -> ScrapeTarget {
        ScrapeTarget {
            job: job.to_string(),
            address: address.to_string(),
        }
    }
}

/// One series of a query result: every label (`__name__` included) and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    /// The labels, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl QuerySample {
    /// The sample as `name{labels} value`, labels sorted, without the labels in `without`
    /// (usually the target's `job` and `instance`): a stable form to compare with.
    pub fn line_without(&self, without: &[&str]) -> String {
        let name = self.labels.get("__name__").map_or("", String::as_str);
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(n, _)| *n != "__name__" && !without.contains(&n.as_str()))
            .map(|(n, v)| format!("{n}={v:?}"))
            .collect();
        let mut value = String::new();
        promdrop_textformat::format_go_float(self.value, &mut value);
        if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{}}} {value}", labels.join(","))
        }
    }

    /// The value of label `name`, or "".
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A running Prometheus server (Debian's 2.42) on 127.0.0.1 with its own temporary storage,
/// scraping the given targets every second.
pub struct Prometheus {
    /// The process (stopped when dropped).
    pub process: Process,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The configuration file and the TSDB.
    pub dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes a configuration with `scrape_interval: 1s`, `scrape_timeout: 1s` and one job per
    /// target, starts [`PROMETHEUS`] on a free port and waits until `/-/ready` answers 200.
    /// Fails the test when Prometheus is not installed.
    pub fn start(targets: &[ScrapeTarget]) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} not found: install the Debian package prometheus \
             (apt-get install -y prometheus); the end-to-end tests need it and do not skip"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for target in targets {
            config.push_str(&format!(
                "  - job_name: {:?}\n    static_configs:\n      - targets: [{:?}]\n",
                target.job, target.address
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, &config).expect("writing prometheus.yml");
        let mut last = String::new();
        for _ in 0..5 {
            let address = format!("127.0.0.1:{}", free_port());
            let data = dir
                .path()
                .join(format!("data-{}", address.replace([':', '.'], "_")));
            let mut command = Command::new(PROMETHEUS);
            command
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address={address}"))
                .arg("--log.level=warn")
                .current_dir(dir.path());
            let mut process = Process::spawn("prometheus", command);
            let deadline = Instant::now() + START_TIMEOUT;
            let mut exited = false;
            while Instant::now() < deadline {
                if http::get(&address, "/-/ready", &[]).is_ok_and(|r| r.status == 200) {
                    return Prometheus {
                        process,
                        address,
                        dir,
                    };
                }
                if process.try_status().is_some() {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = process.log();
            if !exited || !last.contains("address already in use") {
                break;
            }
        }
        panic!("Prometheus did not become ready; configuration:\n{config}\nlog:\n{last}");
    }

    fn api(&self, path_and_query: &str) -> Result<serde_json::Value, String> {
        let response = http::get(&self.address, path_and_query, &[])
            .map_err(|e| format!("GET {path_and_query}: {e}"))?;
        let text = response.text();
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("GET {path_and_query}: {e}: {text}"))?;
        if json["status"] != "success" {
            return Err(format!("GET {path_and_query}: {} {text}", response.status));
        }
        Ok(json["data"].clone())
    }

    /// An instant query evaluated now (`/api/v1/query`): the series of the resulting vector.
    pub fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        self.query_path(&format!(
            "/api/v1/query?query={}",
            http::encode_query_value(expr)
        ))
    }

    /// An instant query evaluated at `time` (Unix seconds).
    pub fn query_at(&self, expr: &str, time: f64) -> Result<Vec<QuerySample>, String> {
        self.query_path(&format!(
            "/api/v1/query?query={}&time={time:.3}",
            http::encode_query_value(expr)
        ))
    }

    fn query_path(&self, path: &str) -> Result<Vec<QuerySample>, String> {
        let data = self.api(path)?;
        if data["resultType"] != "vector" {
            return Err(format!("{path}: not a vector: {data}"));
        }
        let mut out = Vec::new();
        for series in data["result"].as_array().into_iter().flatten() {
            let labels = series["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, v)| (n.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let value = parse_prometheus_value(&series["value"][1])
                .ok_or_else(|| format!("{path}: bad value in {series}"))?;
            out.push(QuerySample { labels, value });
        }
        Ok(out)
    }

    /// A range query (`/api/v1/query_range`): for each series, its labels and its
    /// `(time, value)` points.
    #[allow(clippy::type_complexity)]
    pub fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<(BTreeMap<String, String>, Vec<(f64, f64)>)>, String> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            http::encode_query_value(expr)
        );
        let data = self.api(&path)?;
        let mut out = Vec::new();
        for series in data["result"].as_array().into_iter().flatten() {
            let labels = series["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, v)| (n.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let mut points = Vec::new();
            for point in series["values"].as_array().into_iter().flatten() {
                let t = point[0]
                    .as_f64()
                    .ok_or_else(|| format!("bad time {point}"))?;
                let v = parse_prometheus_value(&point[1]).ok_or_else(|| format!("bad {point}"))?;
                points.push((t, v));
            }
            out.push((labels, points));
        }
        Ok(out)
    }

    /// The `/api/v1/targets` data (`activeTargets`, each with `health`, `lastError`, ...).
    pub fn targets(&self) -> Result<serde_json::Value, String> {
        self.api("/api/v1/targets")
    }

    /// Runs the instant query `expr` until `check` accepts the result, and returns it. After
    /// `timeout`, fails the test with `what`, the last result and Prometheus's target status.
    pub fn wait_for_query(
        &self,
        what: &str,
        expr: &str,
        timeout: Duration,
        check: impl Fn(&[QuerySample]) -> bool,
    ) -> Vec<QuerySample> {
        poll(what, timeout, || match self.query(expr) {
            Ok(result) if check(&result) => Ok(result),
            Ok(result) => Err(format!(
                "Prometheus has for {expr}:\n{}\ntargets: {}",
                lines(&result, &[]).join("\n"),
                self.target_summary()
            )),
            Err(e) => Err(e),
        })
    }

    /// One line per active target: job, URL, health, last error.
    pub fn target_summary(&self) -> String {
        match self.targets() {
            Ok(data) => data["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    format!(
                        "{} {} health={} lastError={:?}",
                        t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => e,
        }
    }
}

/// The query results as sorted `name{labels} value` lines, without the labels in `without`.
pub fn lines(samples: &[QuerySample], without: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = samples.iter().map(|s| s.line_without(without)).collect();
    out.sort();
    out
}

fn parse_prometheus_value(value: &serde_json::Value) -> Option<f64> {
    match value.as_str()? {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        text => text.parse().ok(),
    }
}

// ---------------------------------------------------------------------------------------------
// A recording proxy.

/// One request and its response as they passed through a [`RecordingProxy`].
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request line (`GET /metrics HTTP/1.1`).
    pub request_line: String,
    /// The request's headers as the client sent them.
    pub request_headers: Vec<(String, String)>,
    /// The upstream's response as forwarded (body as sent: gzip stays gzip).
    pub response: http::Response,
}

/// A pass-through HTTP proxy on 127.0.0.1 in front of one upstream, recording each exchange.
///
/// One request per connection: the request is forwarded with `Connection: close`, the whole
/// response is read, recorded and passed back unchanged (the upstream's `Connection: close`
/// tells the client to reconnect). Enough for scrapes, which are single GETs.
pub struct RecordingProxy {
    /// `127.0.0.1:PORT` to point the client at.
    pub address: String,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingProxy {
    /// Starts a proxy to `upstream` (`host:port`); it keeps the last 64 exchanges.
    pub fn start(upstream: &str) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let address = listener
            .local_addr()
            .expect("the proxy's address")
            .to_string();
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let exchanges = Arc::clone(&exchanges);
            let stop = Arc::clone(&stop);
            let upstream = upstream.to_string();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let exchanges = Arc::clone(&exchanges);
                    let upstream = upstream.clone();
                    std::thread::spawn(move || {
                        if let Some(exchange) = proxy_one(client, &upstream) {
                            let mut all = exchanges.lock().unwrap_or_else(|p| p.into_inner());
                            if all.len() == 64 {
                                all.remove(0);
                            }
                            all.push(exchange);
                        }
                    });
                }
            });
        }
        RecordingProxy {
            address,
            exchanges,
            stop,
        }
    }

    /// The exchanges recorded so far, oldest first.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.address);
    }
}

fn proxy_one(mut client: TcpStream, upstream: &str) -> Option<Exchange> {
    client.set_read_timeout(Some(raw::TIMEOUT)).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while raw::split_head(&raw).is_none() {
        let n = client.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > 64 << 10 {
            return None;
        }
    }
    let (head, _) = raw::split_head(&raw)?;
    let head = String::from_utf8_lossy(head).into_owned();
    let request_line = head.split("\r\n").next().unwrap_or("").to_string();
    let request_headers = raw::parse_headers(&head);
    let mut forwarded = format!("{request_line}\r\n");
    for (name, value) in &request_headers {
        if !name.eq_ignore_ascii_case("connection") {
            forwarded.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).ok()?;
    server.set_read_timeout(Some(raw::TIMEOUT)).ok()?;
    server.write_all(forwarded.as_bytes()).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    client.write_all(&answer).ok()?;
    let _ = client.flush();
    let response = raw::parse_response(&answer).ok()?;
    Some(Exchange {
        request_line,
        request_headers,
        response,
    })
}
