//! The end-to-end harness: promdrop's real binaries, a real Prometheus and a real
//! node_exporter, on loopback ports and temporary directories.
//!
//! Generic pieces any test package of the workspace can use (the torture suite does):
//!
//! - [`binaries`] builds `promdrop-exporter`, `promdrop` and the writer's `batch_job` example
//!   once per test binary (Cargo only hands a package its own binaries) and returns their paths.
//! - [`Process`] runs a child with its output captured and stops it by PID when dropped
//!   (SIGTERM, then SIGKILL after [`GRACE`]).
//! - [`free_port`], [`http::get`] (HTTP/1.1 over `std::net::TcpStream`, chunked and gzip
//!   bodies), [`poll`] (retry until a deadline, then fail with the last reason).
//! - [`Exporter`], [`Prometheus`], [`NodeExporter`]: the three servers, each started on
//!   127.0.0.1 and waited for until it answers.
//! - [`RecordingProxy`]: a pass-through HTTP proxy that records each request and response
//!   head, to see what Prometheus asked for and what it was given.
//! - [`samples::SampleSet`]: an exposition reduced to its samples, for comparing two servers.
//!
//! A missing tool fails the test that needs it with the package to install: these tests never
//! skip.
//!
//! ```no_run
//! use promdrop_e2e::{Exporter, Prometheus, ScrapeTarget};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let exporter = Exporter::start(&[format!("--textfile.directory={}", dir.path().display())]);
//! let prometheus = Prometheus::start(&[ScrapeTarget::new("promdrop", &exporter.address)]);
//! let up = prometheus.wait_for_query("the exporter is up", "up == 1", Duration::from_secs(30), |r| {
//!     !r.is_empty()
//! });
//! assert_eq!(up[0].value, 1.0);
//! ```
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a stopped process gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// How long a server gets to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Debian's Prometheus (package `prometheus`, 2.42 on bookworm).
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Debian's node_exporter (package `prometheus-node-exporter`, 1.5 on bookworm).
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// The `Accept` header Prometheus 2.42 sends with every scrape (OpenMetrics preferred).
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Building the binaries.

/// Paths of the workspace binaries the end-to-end tests run.
#[derive(Debug)]
pub struct Binaries {
    /// `promdrop-exporter`.
    pub exporter: PathBuf,
    /// `promdrop` (the CLI: check, write, run).
    pub promdrop: PathBuf,
    /// The writer's example job (`crates/writer/examples/batch_job.rs`).
    pub batch_job: PathBuf,
}

/// Builds the binaries once per test binary (debug profile, as `cargo test` builds) with
/// `$CARGO test --workspace --no-run`, which builds every binary and example with the features
/// `cargo test --workspace` resolves: under that command it finds everything built already,
/// where a `cargo build -p ...` would resolve other features and compile TLS and the exporter
/// again. Returns their paths under
/// `$CARGO_TARGET_DIR/debug` (default `<workspace>/target/debug`). Fails the test, with
/// Cargo's output, when a build fails.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(build_binaries)
}

fn build_binaries() -> Binaries {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let builds: [&[&str]; 1] = [&["test", "--workspace", "--no-run"]];
    for args in builds {
        let started = Instant::now();
        let output = Command::new(&cargo)
            .args(args)
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {cargo:?} {args:?}: {e}"));
        assert!(
            output.status.success(),
            "{cargo:?} {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!(
            "e2e: cargo {} took {:.1} s",
            args.join(" "),
            started.elapsed().as_secs_f64()
        );
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir), // an absolute path replaces the root
        None => root.join("target"),
    };
    let debug = target.join("debug");
    let binaries = Binaries {
        exporter: debug.join("promdrop-exporter"),
        promdrop: debug.join("promdrop"),
        batch_job: debug.join("examples").join("batch_job"),
    };
    for path in [&binaries.exporter, &binaries.promdrop, &binaries.batch_job] {
        assert!(
            path.is_file(),
            "{} is missing after the build",
            path.display()
        );
    }
    binaries
}

/// Fails the test, saying which Debian package provides it, when `path` is not a file.
pub fn require_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} not found: install the Debian package {package} (apt-get install -y {package}); \
         the end-to-end tests need it and do not skip"
    );
}

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
// Processes.

/// A child process with its standard output and error captured, stopped by PID when dropped:
/// SIGTERM, then SIGKILL if it has not exited after [`GRACE`].
pub struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` (its stdin is /dev/null, stdout and stderr go to [`log`](Self::log)).
    /// `name` is used in messages.
    pub fn spawn(name: &str, mut command: Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped stderr"));
        for stream in [out, err] {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Process {
            name: name.to_string(),
            child,
            log,
            status: None,
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stdout and stderr so far (lines interleaved as read).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Polls the log until a line contains `needle`, and returns the rest of that line after
    /// it. Fails when the process exits first or after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.split_once(needle).map_or("", |x| x.1).to_string();
            }
            if let Some(status) = self.try_status() {
                // Let the reader threads catch up with what it wrote before exiting.
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "{} exited ({status}) before logging {needle:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {needle:?} within {timeout:?}; log:\n{log}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM, waits up to [`GRACE`], then SIGKILLs; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's PID, which is not reaped yet (try_wait said it
        // is running), so the PID cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "e2e: {} (pid {pid}) ignored SIGTERM for {GRACE:?}: SIGKILL",
            self.name
        );
        let _ = self.child.kill();
        let status = self.child.wait().expect("waiting for a killed child");
        self.status = Some(status);
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `program` to completion with `stdin` as its input; returns its exit code (-1 when
/// killed by a signal) and its stdout and stderr together. Fails the test when it cannot run.
pub fn run_with_stdin(program: &Path, args: &[&str], stdin: &[u8]) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin)
        .expect("writing to the child's stdin");
    drop(input);
    let output = child.wait_with_output().expect("waiting for the child");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Ports, polling.

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released). Another
/// process may take it before the caller binds it: servers started here retry with a new port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Calls `attempt` every 50 ms until it returns `Ok`, and returns that. After `timeout`, fails
/// the test with `what` and the last error, which should say what was seen instead.
pub fn poll<T>(what: &str, timeout: Duration, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() > timeout {
                    panic!("timed out after {timeout:?} waiting for {what}\n{last}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// A small HTTP/1.1 client over `std::net::TcpStream`, enough for loopback test servers.
pub mod http {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// How long a request may take.
    pub const TIMEOUT: Duration = Duration::from_secs(20);

    /// A response; the body is de-chunked but not decompressed (see [`Response::decoded`]).
    #[derive(Debug, Clone)]
    pub struct Response {
        /// The status code.
        pub status: u16,
        /// Header names and values in the order received.
        pub headers: Vec<(String, String)>,
        /// The body as sent (gzip stays gzip).
        pub body: Vec<u8>,
    }

    impl Response {
        /// The first header called `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            header(&self.headers, name)
        }

        /// The body, gunzipped when `Content-Encoding: gzip`.
        pub fn decoded(&self) -> std::io::Result<Vec<u8>> {
            if self
                .header("content-encoding")
                .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
            {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut out)?;
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

    /// `GET path` from `address` (`host:port`) with extra `headers`, `Connection: close`.
    pub fn get(address: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw)
    }

    /// Splits a raw message into its head (without the blank line) and the rest.
    pub fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        Some((&raw[..end], &raw[end + 4..]))
    }

    /// Parses header lines (after the start line) into names and values.
    pub fn parse_headers(head: &str) -> Vec<(String, String)> {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// Parses a whole response read until the server closed the connection.
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
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size not hex"))?;
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
}

// ---------------------------------------------------------------------------------------------
// promdrop-exporter.

/// A running `promdrop-exporter` on 127.0.0.1 (a port the kernel chose).
pub struct Exporter {
    /// The process (stopped when dropped).
    pub process: Process,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Exporter {
    /// Starts the exporter built by [`binaries`] with `args` plus
    /// `--web.listen-address=127.0.0.1:0`, reads the bound address from its log and waits until
    /// `/-/ready` answers 200.
    pub fn start(args: &[String]) -> Exporter {
        let mut command = Command::new(&binaries().exporter);
        command
            .args(args)
            .arg("--web.listen-address=127.0.0.1:0")
            .env_remove("PROMDROP_TEXTFILE_DIRECTORY");
        let mut process = Process::spawn("promdrop-exporter", command);
        let rest = process.wait_for_log("msg=listening address=", START_TIMEOUT);
        let address = rest.split_whitespace().next().unwrap_or("").to_string();
        let exporter = Exporter { process, address };
        poll(
            "promdrop-exporter to be ready",
            START_TIMEOUT,
            || match http::get(&exporter.address, "/-/ready", &[]) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("/-/ready: {}", r.status)),
                Err(e) => Err(format!("/-/ready: {e}; log:\n{}", exporter.process.log())),
            },
        );
        exporter
    }

    /// `GET path` with `headers`; fails the test on a connection error.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> http::Response {
        http::get(&self.address, path, headers).unwrap_or_else(|e| {
            panic!(
                "GET {path} from the exporter: {e}; log:\n{}",
                self.process.log()
            )
        })
    }

    /// `/metrics` in the classic text format.
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics", &[]);
        assert_eq!(response.status, 200, "{}", response.text());
        response.text()
    }
}

// ---------------------------------------------------------------------------------------------
// node_exporter.

/// A running node_exporter with only its textfile collector, on 127.0.0.1.
pub struct NodeExporter {
    /// The process (stopped when dropped).
    pub process: Process,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl NodeExporter {
    /// Starts [`NODE_EXPORTER`] serving `dir` (`--collector.disable-defaults
    /// --collector.textfile`), and waits until `/metrics` answers. Fails the test when it is
    /// not installed.
    pub fn start(dir: &Path) -> NodeExporter {
        require_tool(NODE_EXPORTER, "prometheus-node-exporter");
        let mut last = String::new();
        for _ in 0..5 {
            let address = format!("127.0.0.1:{}", free_port());
            let mut command = Command::new(NODE_EXPORTER);
            command
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!("--collector.textfile.directory={}", dir.display()))
                .arg(format!("--web.listen-address={address}"));
            let mut node = NodeExporter {
                process: Process::spawn("node_exporter", command),
                address,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if node.metrics().is_ok() {
                    return node;
                }
                if node.process.try_status().is_some() {
                    break; // most likely the port was taken: another one
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last = node.process.log();
        }
        panic!("node_exporter did not start; last log:\n{last}");
    }

    /// `/metrics` (classic text), or why not.
    pub fn metrics(&self) -> std::io::Result<String> {
        let response = http::get(&self.address, "/metrics", &[])?;
        if response.status != 200 {
            return Err(std::io::Error::other(format!(
                "status {}: {}",
                response.status,
                response.text()
            )));
        }
        Ok(response.text())
    }
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
    client.set_read_timeout(Some(http::TIMEOUT)).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while http::split_head(&raw).is_none() {
        let n = client.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > 64 << 10 {
            return None;
        }
    }
    let (head, _) = http::split_head(&raw)?;
    let head = String::from_utf8_lossy(head).into_owned();
    let request_line = head.split("\r\n").next().unwrap_or("").to_string();
    let request_headers = http::parse_headers(&head);
    let mut forwarded = format!("{request_line}\r\n");
    for (name, value) in &request_headers {
        if !name.eq_ignore_ascii_case("connection") {
            forwarded.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).ok()?;
    server.set_read_timeout(Some(http::TIMEOUT)).ok()?;
    server.write_all(forwarded.as_bytes()).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    client.write_all(&answer).ok()?;
    let _ = client.flush();
    let response = http::parse_response(&answer).ok()?;
    Some(Exchange {
        request_line,
        request_headers,
        response,
    })
}

// ---------------------------------------------------------------------------------------------
// Sample sets.

/// Expositions reduced to their samples, to compare what two servers serve.
pub mod samples {
    use std::collections::BTreeMap;

    use promdrop_textformat::{Format, parse};

    /// A series: the sample name and its labels, sorted, empty-valued labels removed
    /// (Prometheus treats `a=""` as no label `a`).
    pub type Series = (String, Vec<(String, String)>);

    /// Samples by series. Values compare with `NaN == NaN` and `-0 == 0`.
    #[derive(Debug, Clone, Default)]
    pub struct SampleSet(pub BTreeMap<Series, f64>);

    /// Whether two values are the same sample value: equal numbers, or both NaN.
    pub fn same_value(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    impl SampleSet {
        /// Parses `body` as `format` and keeps the samples whose name `keep` accepts.
        pub fn parse(
            body: &[u8],
            format: Format,
            keep: impl Fn(&str) -> bool,
        ) -> Result<SampleSet, String> {
            let exposition = parse(body, format).map_err(|e| e.to_string())?;
            let mut out = BTreeMap::new();
            for family in &exposition.families {
                for sample in &family.samples {
                    if !keep(&sample.name) {
                        continue;
                    }
                    let mut labels: Vec<(String, String)> = sample
                        .labels
                        .iter()
                        .filter(|l| !l.value.is_empty())
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect();
                    labels.sort();
                    out.insert((sample.name.to_string(), labels), sample.value.number);
                }
            }
            Ok(SampleSet(out))
        }

        /// How many samples.
        pub fn len(&self) -> usize {
            self.0.len()
        }

        /// Whether there are none.
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }

        /// The differences from `self` (left) to `other` (right), one line each:
        /// `<left_name> only: S`, `<right_name> only: S`, or `value: S <left> vs <right>`,
        /// where S is `name{labels}` as [`line`] writes it. Sorted; empty when equal.
        pub fn diff(&self, other: &SampleSet, left_name: &str, right_name: &str) -> Vec<String> {
            let mut out = Vec::new();
            for (series, a) in &self.0 {
                match other.0.get(series) {
                    None => out.push(format!("{left_name} only: {}", line(series, *a))),
                    Some(b) if !same_value(*a, *b) => out.push(format!(
                        "value: {} {} vs {}",
                        line(series, *a).rsplit_once(' ').map_or("", |x| x.0),
                        go_float(*a),
                        go_float(*b)
                    )),
                    Some(_) => {}
                }
            }
            for (series, b) in &other.0 {
                if !self.0.contains_key(series) {
                    out.push(format!("{right_name} only: {}", line(series, *b)));
                }
            }
            out.sort();
            out
        }
    }

    /// `name{a="x",b="y"} value`, the value as Go formats it (`1`, `0.25`, `+Inf`, `NaN`).
    pub fn line(series: &Series, value: f64) -> String {
        let (name, labels) = series;
        let labels: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        if labels.is_empty() {
            format!("{name} {}", go_float(value))
        } else {
            format!("{name}{{{}}} {}", labels.join(","), go_float(value))
        }
    }

    /// `value` as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it.
    pub fn go_float(value: f64) -> String {
        let mut out = String::new();
        promdrop_textformat::format_go_float(value, &mut out);
        out
    }
}
