//! The real `promdrop-exporter` on a loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::{self, Response};
use crate::metrics::Metrics;
use crate::process::{LOG_LINES, Process, die_with_parent};
use crate::raw;

/// How long a starting exporter gets to log its address and answer `/-/ready` with 200,
/// unless told otherwise.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// The log line that gives the bound address: `msg=listening address=127.0.0.1:PORT`.
const LISTENING: &str = "msg=listening address=";

/// How to start an exporter: [`Exporter::launcher`].
#[derive(Debug, Clone)]
pub struct Launcher {
    binary: PathBuf,
    args: Vec<String>,
    ready_within: Duration,
    die_with_parent: bool,
    log_lines: usize,
}

impl Launcher {
    /// Adds flags (after the binary; the launcher adds `--web.listen-address=127.0.0.1:0`).
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Launcher {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// How long it gets to log its address and become ready ([`READY_WITHIN`]).
    pub fn ready_within(mut self, timeout: Duration) -> Launcher {
        self.ready_within = timeout;
        self
    }

    /// Makes it die with the thread that starts it (see [`die_with_parent`]).
    pub fn die_with_parent(mut self) -> Launcher {
        self.die_with_parent = true;
        self
    }

    /// Keeps only the last `lines` lines of its log ([`LOG_LINES`]).
    pub fn log_lines(mut self, lines: usize) -> Launcher {
        self.log_lines = lines;
        self
    }

    /// Starts it and returns once it has logged the address it listens on, without asking
    /// `/-/ready` (for servers that plain HTTP cannot reach: TLS, basic auth).
    pub fn try_spawn(&self) -> Result<Exporter> {
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .arg("--web.listen-address=127.0.0.1:0")
            .env_remove("PROMDROP_TEXTFILE_DIRECTORY");
        if self.die_with_parent {
            die_with_parent(&mut command);
        }
        let mut process = Process::try_spawn("promdrop-exporter", command, self.log_lines)?;
        let rest = process.try_wait_for_log(LISTENING, self.ready_within)?;
        let address = rest
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches('"')
            .to_string();
        let socket_addr = address
            .parse()
            .with_context(|| format!("the exporter logged the address {address:?}"))?;
        Ok(Exporter {
            process,
            address,
            socket_addr,
        })
    }

    /// Starts it and waits until `/-/ready` answers 200.
    pub fn try_start(&self) -> Result<Exporter> {
        let started = Instant::now();
        let exporter = self.try_spawn()?;
        let deadline = started + self.ready_within;
        loop {
            let last = match exporter.try_get("/-/ready", &[]) {
                Ok(r) if r.status == 200 => return Ok(exporter),
                Ok(r) => format!("/-/ready: {}", r.status),
                Err(e) => format!("/-/ready: {e}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "the exporter was not ready within {:?} ({last}); log:\n{}",
                    self.ready_within,
                    exporter.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`try_start`](Self::try_start), failing the test on an error.
    pub fn start(&self) -> Exporter {
        self.try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`try_spawn`](Self::try_spawn), failing the test on an error.
    pub fn spawn(&self) -> Exporter {
        self.try_spawn().unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// A running `promdrop-exporter` on 127.0.0.1 (a port the kernel chose), its log captured,
/// SIGKILLed by its PID when dropped.
pub struct Exporter {
    /// The process.
    pub process: Process,
    /// `127.0.0.1:PORT`.
    pub address: String,
    socket_addr: SocketAddr,
}

impl Exporter {
    /// How to start `binary`: add flags and options, then `start`.
    pub fn launcher(binary: &Path) -> Launcher {
        Launcher {
            binary: binary.to_path_buf(),
            args: Vec::new(),
            ready_within: READY_WITHIN,
            die_with_parent: false,
            log_lines: LOG_LINES,
        }
    }

    /// Starts `binary` with `args` plus `--web.listen-address=127.0.0.1:0`, reads the bound
    /// address from its log and waits until `/-/ready` answers 200. Fails the test when it
    /// does not.
    pub fn start<S: AsRef<str>>(binary: &Path, args: &[S]) -> Exporter {
        Exporter::launcher(binary).args(args).start()
    }

    /// The address as a socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.socket_addr
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its resident memory in bytes (VmRSS in /proc/PID/status).
    pub fn rss_bytes(&self) -> Option<u64> {
        crate::process::rss_bytes(self.pid())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `method path` with `headers`, on a new connection.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        http::request(method, &self.address, path, headers)
    }

    /// `GET path` with `headers`, on a new connection.
    pub fn try_get(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        self.try_request("GET", path, headers)
    }

    /// `GET path` with `headers`; fails the test, with the log, when no response comes.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.try_get(path, headers)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log()))
    }

    /// Writes `request` as it is and reads the whole answer (see [`raw`]).
    pub fn raw(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        raw::send(&self.address, request)
    }

    /// A client that keeps its connection alive, with `timeout` per request.
    pub fn client(&self, timeout: Duration) -> http::Client {
        http::Client::new(&self.address, timeout)
    }

    /// `/metrics` as classic text; fails the test unless it answers 200.
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics", &[]);
        assert_eq!(response.status, 200, "{}", response.text());
        response.text()
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

    /// Sends SIGTERM and waits for the exit status; fails the test when it has not exited
    /// within 10 s.
    pub fn terminate(mut self) -> ExitStatus {
        let (status, killed) = self.process.guard_mut().terminate(Duration::from_secs(10));
        assert!(
            !killed,
            "no exit within 10 s of SIGTERM; log:\n{}",
            self.log()
        );
        status
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_status()
    }
}
