//! Test harness: runs the real `promdrop-exporter` binary on a loopback port and talks HTTP
//! to it over plain TCP. Dropping an [`Exporter`] kills the process by its PID.
#![allow(dead_code)]

pub mod pki;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use promdrop_textformat::{Format, parse};

pub const BINARY: &str = env!("CARGO_BIN_EXE_promdrop-exporter");

/// A running exporter.
pub struct Exporter {
    child: Child,
    pub address: String,
    log: Arc<Mutex<String>>,
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Exporter {
    /// Starts the binary with `args` plus a loopback listen address and debug logs, and waits
    /// until it is ready.
    pub fn start(args: &[String]) -> Exporter {
        let exporter = Exporter::spawn(args);
        exporter.wait_ready();
        exporter
    }

    /// Starts the binary like [`Exporter::start`] but returns once it has logged its address,
    /// without asking `/-/ready` (for servers that plain HTTP cannot reach: TLS, basic auth).
    pub fn spawn(args: &[String]) -> Exporter {
        Exporter::spawn_via(&[], args)
    }

    /// Starts the binary under `wrapper` (a command that runs the one after it, such as
    /// `setpriv --reuid 65534 ...`), like [`Exporter::start`].
    pub fn start_via(wrapper: &[&str], args: &[String]) -> Exporter {
        let exporter = Exporter::spawn_via(wrapper, args);
        exporter.wait_ready();
        exporter
    }

    fn spawn_via(wrapper: &[&str], args: &[String]) -> Exporter {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BINARY);
                c
            }
            None => Command::new(BINARY),
        };
        let mut child = command
            .args(args)
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=debug")
            .env_remove("PROMDROP_TEXTFILE_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BINARY}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("msg=listening address=").nth(1) {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let address = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the exporter did not log its address; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Exporter {
            child,
            address,
            log,
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.try_get("/-/ready", &[]).is_ok_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the exporter was not ready within 20 s; log:\n{}",
            self.log()
        );
    }

    /// Sends a raw request and reads the whole answer.
    pub fn raw(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(request)?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out)?;
        Ok(out)
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let raw = self.raw(request.as_bytes())?;
        parse_response(&raw)
    }

    pub fn try_get(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        self.try_request("GET", path, headers)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.try_get(path, headers)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log()))
    }

    /// `/metrics` as classic text.
    pub fn metrics(&self) -> String {
        let r = self.get("/metrics", &[]);
        assert_eq!(r.status, 200);
        r.text()
    }

    /// Polls `/metrics` until `check` passes, or fails after `timeout` with `what`, the last
    /// body and the log.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let body = self.metrics();
            let metrics = Metrics::parse(&body);
            if check(&metrics) {
                return metrics;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- last /metrics ---\n{body}\n--- log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("incomplete HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// A sample: name and labels (sorted), value.
pub type Series = (String, BTreeMap<String, String>);

/// Parsed `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub body: String,
    pub samples: BTreeMap<Series, f64>,
}

impl Metrics {
    pub fn parse(body: &str) -> Metrics {
        let exposition = parse(body.as_bytes(), Format::Classic)
            .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"));
        let mut samples = BTreeMap::new();
        for family in &exposition.families {
            for s in &family.samples {
                let labels = s
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                samples.insert((s.name.to_string(), labels), s.value.number);
            }
        }
        Metrics {
            body: body.to_string(),
            samples,
        }
    }

    /// The value of `name{labels}`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The value of a per-file meta metric.
    pub fn file(&self, name: &str, path: &Path) -> Option<f64> {
        self.get(name, &[("file", &path.display().to_string())])
    }

    /// Every sample whose name starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(&Series, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n.starts_with(prefix))
            .map(|(k, v)| (k, *v))
            .collect()
    }
}

/// Writes `content` to `dir/name` atomically: a hidden temp file, then a rename.
pub fn write_atomic(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn arg(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

pub fn dir_arg(dir: &Path) -> String {
    format!("--textfile.directory={}", dir.display())
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
