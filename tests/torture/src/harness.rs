//! The harness: builds and runs the real `promdrop-exporter`, guards child processes, and
//! speaks just enough HTTP/1.1 (keep-alive, Content-Length, chunked, gzip) over loopback
//! with a deadline on every request.
//!
//! Every child process is killed (SIGKILL, by its PID) when its guard is dropped, and is
//! also started with `PR_SET_PDEATHSIG = SIGKILL`, so that nothing outlives a torture run
//! that panics or is killed itself.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Starts `command` so that it dies with the thread that started it (`PR_SET_PDEATHSIG`).
///
/// The signal comes when the *thread* that forked exits: start children from a thread that
/// lives as long as they should (a scenario's own thread).
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A child process, SIGKILLed by its PID and reaped when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Option<Child>,
}

impl ProcessGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> ProcessGuard {
        ProcessGuard { child: Some(child) }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child itself (to take its pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is there until killed")
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child not yet reaped (so not reused).
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory the binaries of the current profile are in: the running executable's
/// directory (`target/<profile>/` for a binary, `target/<profile>/deps/` for a test).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running executable")?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", exe.display()))?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The workspace's manifest.
fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml")
}

/// The `promdrop-exporter` binary of the same profile, built on first use with
/// `$CARGO build -p promdrop-exporter` (Cargo only gives `CARGO_BIN_EXE_*` for a package's
/// own binaries). `PROMDROP_TORTURE_EXPORTER=/path/to/promdrop-exporter` skips the build.
pub fn exporter_binary() -> Result<PathBuf> {
    static BINARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| build_exporter().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_exporter() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PROMDROP_TORTURE_EXPORTER") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("PROMDROP_TORTURE_EXPORTER={} is not a file", path.display());
        }
        return Ok(path);
    }
    let dir = profile_dir()?;
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("no profile directory in {}", dir.display()))?
        .to_string();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    match profile.as_str() {
        // Under `cargo test --workspace` this finds the exporter built already with the same
        // features; `build -p promdrop-exporter` would resolve others and compile it again.
        "debug" => {
            command.args(["test", "--workspace", "--no-run"]);
        }
        "release" => {
            command.args(["build", "--release"]);
        }
        other => {
            command.args(["build", "--profile", other]);
        }
    }
    command.arg("--manifest-path").arg(workspace_manifest());
    if profile != "debug" {
        command.args(["-p", "promdrop-exporter", "--bin", "promdrop-exporter"]);
    }
    eprintln!("torture: building promdrop-exporter ({profile}): {command:?}");
    let status = command.status().with_context(|| {
        format!(
            "running {} to build promdrop-exporter (set CARGO or PROMDROP_TORTURE_EXPORTER)",
            cargo.to_string_lossy()
        )
    })?;
    if !status.success() {
        bail!("building promdrop-exporter failed: {command:?} exited with {status}");
    }
    let binary = dir.join("promdrop-exporter");
    if !binary.is_file() {
        bail!(
            "built promdrop-exporter, but {} does not exist (a --target or CARGO_TARGET_DIR \
             mismatch? set PROMDROP_TORTURE_EXPORTER)",
            binary.display()
        );
    }
    Ok(binary)
}

/// How many log lines of the exporter are kept (the last ones).
const LOG_LINES: usize = 400;

/// A running `promdrop-exporter` on a loopback port.
pub struct Exporter {
    process: ProcessGuard,
    /// `127.0.0.1:PORT`.
    pub address: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Exporter {
    /// Starts the exporter on `dir` with `extra` flags, listening on 127.0.0.1 (a free port
    /// chosen by the kernel), and waits until `/-/ready` answers 200 (at most `ready_within`).
    pub fn start(dir: &Path, extra: &[String], ready_within: Duration) -> Result<Exporter> {
        let binary = exporter_binary()?;
        let mut command = Command::new(&binary);
        command
            .arg(format!("--textfile.directory={}", dir.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=info")
            .args(extra)
            .env_remove("PROMDROP_TEXTFILE_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut process = ProcessGuard::new(child);
        let stderr = process.child_mut().stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("msg=listening address=").nth(1) {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        let started = Instant::now();
        let address = match rx.recv_timeout(ready_within) {
            Ok(a) => a,
            Err(_) => bail!(
                "the exporter did not log its address within {ready_within:?}; log:\n{}",
                tail(&log)
            ),
        };
        let address: SocketAddr = address
            .trim_matches('"')
            .parse()
            .with_context(|| format!("the exporter logged address {address:?}"))?;
        let exporter = Exporter {
            process,
            address,
            log,
        };
        let deadline = started + ready_within;
        loop {
            let mut client = Client::new(exporter.address, Duration::from_secs(5));
            if client.get("/-/ready", false).is_ok_and(|r| r.status == 200) {
                return Ok(exporter);
            }
            if Instant::now() > deadline {
                bail!(
                    "the exporter was not ready within {ready_within:?}; log:\n{}",
                    exporter.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The last lines of its log.
    pub fn log(&self) -> String {
        tail(&self.log)
    }

    /// A client for it.
    pub fn client(&self, timeout: Duration) -> Client {
        Client::new(self.address, timeout)
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exited()
    }

    /// Its resident memory in bytes (VmRSS in /proc/PID/status).
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.iter().map(|l| format!("{l}\n")).collect()
}

/// What each thread of `pid` is blocked in (`/proc/PID/task/*/wchan`), for diagnosing a hang:
/// `name:wchan` pairs, counted.
pub fn thread_states(pid: u32) -> String {
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let read = |f: &str| {
                std::fs::read_to_string(task.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            *states
                .entry(format!("{}:{}", read("comm"), read("wchan")))
                .or_default() += 1;
        }
    }
    states
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// VmRSS of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmRSS:")
}

/// VmHWM of `pid` (its peak resident size so far), in bytes.
pub fn rss_peak_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmHWM:")
}

fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// An HTTP response, its body decoded from gzip when it was sent compressed.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (decompressed).
    pub body: Vec<u8>,
    /// Whether it came gzip-compressed.
    pub gzipped: bool,
}

impl Response {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The largest body accepted.
const MAX_BODY: usize = 512 << 20;

/// A keep-alive HTTP/1.1 client for one loopback address. Every request has a deadline
/// (`timeout` for the whole exchange); a failed connection is dropped and the next request
/// opens a new one.
pub struct Client {
    address: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub connections: u64,
}

impl Client {
    /// A client for `address` with `timeout` per request.
    pub fn new(address: SocketAddr, timeout: Duration) -> Client {
        Client {
            address,
            timeout,
            conn: None,
            connections: 0,
        }
    }

    /// GET `path`, asking for gzip when `gzip`.
    pub fn get(&mut self, path: &str, gzip: bool) -> Result<Response> {
        let deadline = Instant::now() + self.timeout;
        let reused = self.conn.is_some();
        match self.exchange(path, gzip, deadline) {
            Ok(r) => Ok(r),
            // A kept-alive connection the server closed in between: once more, on a new one.
            Err(e) if reused && is_closed(&e) => {
                self.conn = None;
                self.exchange(path, gzip, deadline)
            }
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self, path: &str, gzip: bool, deadline: Instant) -> Result<Response> {
        let result = self.exchange_inner(path, gzip, deadline);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange_inner(&mut self, path: &str, gzip: bool, deadline: Instant) -> Result<Response> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.address, remaining(deadline)?)
                .with_context(|| format!("connecting to {}", self.address))?;
            stream.set_nodelay(true)?;
            self.connections += 1;
            self.conn = Some(BufReader::with_capacity(64 << 10, stream));
        }
        let conn = self.conn.as_mut().expect("connected");
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        if gzip {
            request.push_str("Accept-Encoding: gzip\r\n");
        }
        request.push_str("\r\n");
        conn.get_ref()
            .set_write_timeout(Some(remaining(deadline)?))?;
        conn.get_mut()
            .write_all(request.as_bytes())
            .context("sending the request")?;

        // The head.
        let mut status_line = String::new();
        read_line(conn, &mut status_line, deadline)?;
        if status_line.is_empty() {
            return Err(anyhow!(Closed));
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            read_line(conn, &mut line, deadline)?;
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            if headers.len() > 100 {
                bail!("more than 100 response headers");
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = Vec::new();
        if let Some(length) = find("content-length") {
            let length: usize = length
                .parse()
                .with_context(|| format!("bad Content-Length {length:?}"))?;
            if length > MAX_BODY {
                bail!("Content-Length {length} is over {MAX_BODY}");
            }
            body.resize(length, 0);
            read_exact(conn, &mut body, deadline)?;
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut line = String::new();
                read_line(conn, &mut line, deadline)?;
                let size = usize::from_str_radix(
                    line.trim_end_matches(['\r', '\n'])
                        .split(';')
                        .next()
                        .unwrap_or(""),
                    16,
                )
                .with_context(|| format!("bad chunk size line {line:?}"))?;
                if body.len() + size > MAX_BODY {
                    bail!("body over {MAX_BODY}");
                }
                let start = body.len();
                body.resize(start + size, 0);
                read_exact(conn, &mut body[start..], deadline)?;
                let mut crlf = String::new();
                read_line(conn, &mut crlf, deadline)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            // Until the connection closes.
            let mut buf = [0u8; 64 << 10];
            loop {
                conn.get_ref()
                    .set_read_timeout(Some(remaining(deadline)?))?;
                let n = conn.read(&mut buf).context("reading the body")?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&buf[..n]);
                if body.len() > MAX_BODY {
                    bail!("body over {MAX_BODY}");
                }
            }
            self.conn = None;
        }
        if close {
            self.conn = None;
        }
        let gzipped = find("content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        if gzipped {
            let mut plain = Vec::with_capacity(body.len() * 8);
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut plain)
                .context("decoding the gzip body")?;
            body = plain;
        }
        Ok(Response {
            status,
            headers,
            body,
            gzipped,
        })
    }
}

#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection was closed before a response")
    }
}

impl std::error::Error for Closed {}

fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<Closed>().is_some()
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            })
    })
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("request timed out");
    }
    Ok(left)
}

fn read_line(conn: &mut BufReader<TcpStream>, line: &mut String, deadline: Instant) -> Result<()> {
    conn.get_ref()
        .set_read_timeout(Some(remaining(deadline)?))?;
    let mut limited = conn.by_ref().take(64 << 10);
    limited
        .read_line(line)
        .context("reading the response head")?;
    Ok(())
}

fn read_exact(conn: &mut BufReader<TcpStream>, buf: &mut [u8], deadline: Instant) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        conn.get_ref()
            .set_read_timeout(Some(remaining(deadline)?))?;
        let n = conn.read(&mut buf[done..]).context("reading the body")?;
        if n == 0 {
            bail!(
                "the connection closed after {done} of {} body bytes",
                buf.len()
            );
        }
        done += n;
    }
    Ok(())
}
