//! `promdrop run`: run a job as a child process, scrape its own metrics endpoint while it
//! runs, and when it ends write the last good scrape and the job's outcome to the job file
//! with promdrop-writer; exit with the child's status.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use promdrop_textformat::{Format, ParseLimits, parse_with_limits, render_classic};
use promdrop_writer::{ProcessExit, servable};

use crate::scrape_tls::{self, PinnedTlsConnector};
use crate::target::{TargetArgs, check_dir, describe_write_error, parse_duration_arg};

/// The default `--scrape-max-bytes`: 16 MiB.
const DEFAULT_MAX_BYTES: u64 = 16 << 20;

/// What the scraper asks for: the classic text format first, OpenMetrics accepted, UTF-8 names
/// as written (`escaping=allow-utf-8`, as Prometheus 3 asks) so that the job file keeps them;
/// a server that knows neither text 1.0.0 nor the escaping parameter answers 0.0.4.
const ACCEPT: &str = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.9,text/plain;version=0.0.4;q=0.8,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1";

/// How long after a failed scrape the child's exit may become known for the failure to be
/// put down to the exit (and not reported).
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(100);

/// How long the scraper gets to end once the child has exited.
const SCRAPER_GRACE: Duration = Duration::from_millis(500);

/// The signals forwarded to the child.
const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Arguments of `promdrop run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The child's own metrics endpoint, scraped while it runs (http:// or https://, such as
    /// https://127.0.0.1:10258/metrics for the descheduler). Without it only the outcome
    /// metrics are written.
    #[arg(long, value_name = "URL")]
    scrape: Option<String>,
    /// How often to scrape. The last scrape before the child exits is what the file holds:
    /// a shorter interval loses less.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration_arg)]
    scrape_interval: Duration,
    /// Give up on one scrape after this long. Default: 4 × --scrape-interval, at least 1s and
    /// at most 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    scrape_timeout: Option<Duration>,
    /// Do not verify the endpoint's TLS certificate (for a self-signed certificate, such as the
    /// descheduler's, on a loopback address).
    #[arg(long)]
    scrape_insecure_skip_verify: bool,
    /// Trust exactly the certificates in this PEM file (the default trusts the Mozilla
    /// roots): a server presenting one of them as its own certificate is trusted as it is,
    /// whether it is a CA, a leaf or a self-signed certificate made by `openssl req -x509`
    /// (its names and dates are not checked: the byte equality is); any other server
    /// certificate must chain to one of them and name the host. It is read at the first
    /// scrape that finds it, so a job may write its own self-signed certificate there when it
    /// starts.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "scrape_insecure_skip_verify"
    )]
    scrape_ca: Option<PathBuf>,
    /// Refuse a scraped body larger than this many bytes (the scrape fails; the previous good
    /// one is kept).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    scrape_max_bytes: u64,
    /// Write a snapshot (promdrop_job_running 1, the last good scrape) this often while the
    /// child runs, so that its metrics survive if promdrop run itself is killed with SIGKILL.
    /// 0 turns snapshots off.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_arg)]
    flush_every: Duration,
    /// The job's command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Runs `promdrop run` and returns its exit status: the child's (its exit code, or 128 + the
/// signal that killed it), or 2 when the child could not be started for a usage error.
pub fn run(args: &RunArgs) -> ExitCode {
    match run_job(args) {
        Ok(status) => ExitCode::from(u8::try_from(status.clamp(0, 255)).unwrap_or(255)),
        Err(line) => {
            eprintln!("promdrop run: {line}");
            ExitCode::from(2)
        }
    }
}

/// The last good scrape, as classic text, shared between the scraper and the handoff.
type LastGood = Arc<Mutex<Option<String>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Returns the status to exit with, or a usage error (before the child is started).
fn run_job(args: &RunArgs) -> Result<i32, String> {
    if args.scrape_interval.is_zero() {
        return Err("--scrape-interval must be longer than 0".to_string());
    }
    let scraper = match &args.scrape {
        Some(url) => Some(Scraper::new(url, args)?),
        None => None,
    };

    let last_good: LastGood = Arc::new(Mutex::new(None));
    let source = Arc::clone(&last_good);
    let guard = args
        .target
        .builder()
        .flush_every(args.flush_every)
        .on_error(|e| eprintln!("promdrop run: snapshot: {e}"))
        .text_source(move || Ok(lock(&source).clone().unwrap_or_default()))
        .install()
        .map_err(|e| e.to_string())?;
    let path = guard.path().to_path_buf();
    match check_dir(&path) {
        // The job matters more than its metrics: run it anyway.
        Err(line) => eprintln!(
            "promdrop run: warning: {line}; the job runs, but its metrics cannot be written"
        ),
        // A first snapshot (promdrop_job_running 1, the start time): if promdrop run itself
        // is killed (the pod's OOM kill) before the first --flush-every, the file says the
        // run started and never ended, not what the previous run said.
        Ok(()) => {
            if let Err(e) = guard.flush() {
                eprintln!(
                    "promdrop run: snapshot: {}",
                    describe_write_error(&path, &e)
                );
            }
        }
    }

    // Catch the signals before the child exists, so that none is lost in between.
    let child_state = Arc::new(Mutex::new(ChildState::NotStarted(Vec::new())));
    start_forwarding(&child_state).map_err(|e| format!("cannot catch signals: {e}"))?;

    let mut command = Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    let exit = match command.spawn() {
        Err(e) => {
            let name = args.command[0].to_string_lossy();
            eprintln!("promdrop run: cannot run {name}: {e}");
            // As a shell reports it: 127 for a command not found, 126 for one it cannot run.
            ProcessExit::Code(if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            })
        }
        Ok(mut child) => {
            let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
            let pending =
                match std::mem::replace(&mut *lock(&child_state), ChildState::Running(pid)) {
                    ChildState::NotStarted(pending) => pending,
                    _ => Vec::new(),
                };
            for signal in pending {
                forward(pid, signal);
            }
            let (stop, stopped) = mpsc::channel::<()>();
            let (done, scraper_done) = mpsc::channel::<()>();
            let scraping = scraper.map(|scraper| {
                let last_good = Arc::clone(&last_good);
                thread::Builder::new()
                    .name("promdrop-scraper".to_string())
                    .spawn(move || {
                        let mut scraper = scraper;
                        scraper.run(&last_good, &stopped);
                        drop(done);
                    })
            });
            let scraping = match scraping {
                Some(Ok(handle)) => Some(handle),
                Some(Err(e)) => {
                    eprintln!("promdrop run: warning: cannot start the scraper thread: {e}");
                    None
                }
                None => None,
            };
            // Wait without reaping, mark the child gone, then reap: a signal is never sent to
            // a process id that the kernel may have given to another process.
            if let Err(e) = wait_without_reaping(pid) {
                eprintln!("promdrop run: warning: waitid: {e}");
            }
            *lock(&child_state) = ChildState::Exited;
            let status = child.wait();
            drop(stop);
            if let Some(handle) = scraping {
                // A scrape in flight when the child exited normally fails at once (its
                // sockets are closed); one that hangs (a grandchild kept the port) is not
                // waited for beyond SCRAPER_GRACE: its result could only be older news.
                match scraper_done.recv_timeout(SCRAPER_GRACE) {
                    Err(RecvTimeoutError::Timeout) => eprintln!(
                        "promdrop run: warning: a scrape was still in flight {} ms after the job exited; writing the last good scrape",
                        SCRAPER_GRACE.as_millis()
                    ),
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                        let _ = handle.join();
                    }
                }
            }
            match status {
                Ok(status) => process_exit(status),
                Err(e) => {
                    eprintln!("promdrop run: cannot get the job's exit status: {e}");
                    ProcessExit::Code(1)
                }
            }
        }
    };

    if let Err(e) = guard.finish_process(exit) {
        eprintln!(
            "promdrop run: {}",
            check_dir(&path)
                .err()
                .unwrap_or_else(|| describe_write_error(&path, &e))
        );
    }
    Ok(exit.shell_status())
}

fn process_exit(status: ExitStatus) -> ProcessExit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessExit::Code(code),
        (None, Some(signal)) => ProcessExit::Signal(signal),
        // Neither an exit nor a signal cannot happen once a process has ended.
        (None, None) => ProcessExit::Code(1),
    }
}

/// Where the child is, for the signal forwarder.
enum ChildState {
    /// Signals that arrived before the child started, to forward once it has.
    NotStarted(Vec<i32>),
    Running(i32),
    /// Ended (and about to be reaped): nothing more is sent to its process id.
    Exited,
}

fn start_forwarding(state: &Arc<Mutex<ChildState>>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(FORWARDED)?;
    let state = Arc::clone(state);
    thread::Builder::new()
        .name("promdrop-signals".to_string())
        .spawn(move || {
            for signal in signals.forever() {
                match &mut *lock(&state) {
                    ChildState::NotStarted(pending) => pending.push(signal),
                    ChildState::Running(pid) => forward(*pid, signal),
                    ChildState::Exited => {}
                }
            }
        })?;
    Ok(())
}

fn forward(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        let e = io::Error::last_os_error();
        eprintln!("promdrop run: cannot forward signal {signal} to the job (pid {pid}): {e}");
    }
}

/// Waits until the child has ended, leaving it to be reaped by [`std::process::Child::wait`].
fn wait_without_reaping(pid: i32) -> io::Result<()> {
    let id = libc::id_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: siginfo_t is plain data, for which all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid(2) writes only into `info`, which outlives the call.
        let result =
            unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if result == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Scrapes the child's endpoint.
struct Scraper {
    url: String,
    /// Built at the first scrape that can read `--scrape-ca` (the job may write its own
    /// certificate when it starts), then kept.
    agent: Option<ureq::Agent>,
    ca: Option<PathBuf>,
    skip_verify: bool,
    timeout: Duration,
    interval: Duration,
    max_bytes: u64,
    /// Whether a scrape with timestamps or a repeated series was reported (once per run).
    adjusted_reported: bool,
}

impl Scraper {
    fn new(url: &str, args: &RunArgs) -> Result<Scraper, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--scrape {url:?}: expected an http:// or https:// URL"
            ));
        }
        let timeout = args.scrape_timeout.unwrap_or_else(|| {
            args.scrape_interval
                .saturating_mul(4)
                .clamp(Duration::from_secs(1), Duration::from_secs(10))
        });
        let mut scraper = Scraper {
            url: url.to_string(),
            agent: None,
            ca: args.scrape_ca.clone(),
            skip_verify: args.scrape_insecure_skip_verify,
            timeout,
            interval: args.scrape_interval,
            max_bytes: args.scrape_max_bytes,
            adjusted_reported: false,
        };
        // Without a CA file to wait for, a configuration problem shows now.
        if scraper.ca.is_none() {
            scraper.agent()?;
        }
        Ok(scraper)
    }

    /// The HTTP agent, built on first use.
    fn agent(&mut self) -> Result<&ureq::Agent, String> {
        if self.agent.is_none() {
            let tls = ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .disable_verification(self.skip_verify);
            let config = ureq::Agent::config_builder()
                .tls_config(tls.build())
                .timeout_global(Some(self.timeout))
                .http_status_as_error(false)
                // The endpoint is the child's own, usually on a loopback address: never
                // through the HTTP(S)_PROXY of the job's environment.
                .proxy(None)
                .user_agent(concat!("promdrop-run/", env!("CARGO_PKG_VERSION")))
                .build();
            let agent = match &self.ca {
                None => config.new_agent(),
                // --scrape-ca: the file's certificates, trusted exactly (scrape_tls).
                Some(ca) => {
                    use ureq::unversioned::transport::{Connector, TcpConnector};
                    let pinned = read_ca(ca)?
                        .iter()
                        .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                        .collect();
                    let connector = ()
                        .chain(TcpConnector::default())
                        .chain(PinnedTlsConnector::new(scrape_tls::client_config(pinned)?));
                    ureq::Agent::with_parts(
                        config,
                        connector,
                        ureq::unversioned::resolver::DefaultResolver::default(),
                    )
                }
            };
            self.agent = Some(agent);
        }
        self.agent
            .as_ref()
            .ok_or_else(|| "no HTTP agent".to_string())
    }

    /// Scrapes every interval until `stop` is dropped, keeping the last good scrape.
    fn run(&mut self, last_good: &LastGood, stop: &mpsc::Receiver<()>) {
        let started = Instant::now();
        // Failures before the first success are expected while the child starts listening:
        // say so only once it has had a while.
        let quiet_for = self.interval.saturating_mul(4).max(Duration::from_secs(2));
        let mut succeeded = false;
        let mut reported: Option<String> = None;
        let mut last_error: Option<String> = None;
        loop {
            let began = Instant::now();
            match self.scrape() {
                Ok(text) => {
                    *lock(last_good) = Some(text);
                    if reported.take().is_some() {
                        eprintln!("promdrop run: scraping {} works again", self.url);
                    }
                    succeeded = true;
                }
                Err(e) => {
                    // A scrape that fails because the child is exiting (a connection reset or
                    // refused) says nothing about the job: give the exit a moment to be known
                    // before the failure counts, so that the final warning names the last
                    // real cause.
                    match stop.recv_timeout(SHUTDOWN_MARGIN) {
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    let say = (succeeded || started.elapsed() >= quiet_for)
                        && reported.as_deref() != Some(e.as_str());
                    if say {
                        eprintln!(
                            "promdrop run: warning: scraping {} failed: {e}{}",
                            self.url,
                            if succeeded {
                                "; keeping the previous scrape"
                            } else {
                                ""
                            }
                        );
                        reported = Some(e.clone());
                    }
                    last_error = Some(e);
                }
            }
            match stop.recv_timeout(self.interval.saturating_sub(began.elapsed())) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !succeeded {
            eprintln!(
                "promdrop run: warning: no scrape of {} succeeded{}; writing the outcome metrics only",
                self.url,
                last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        }
    }

    /// One scrape: the body, validated and as classic text.
    fn scrape(&mut self) -> Result<String, String> {
        let url = self.url.clone();
        let response = self
            .agent()?
            .get(&url)
            .header("Accept", ACCEPT)
            .header("Accept-Encoding", "gzip")
            .call()
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP status {status}"));
        }
        let openmetrics = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/openmetrics-text")
            });
        // Decoded here rather than by ureq's gzip feature: that feature, unified across the
        // workspace, would make the test-support client decode bodies it must see as sent.
        let gzipped = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
        let body = response
            .into_body()
            .with_config()
            .limit(self.max_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => {
                    format!("the body is larger than --scrape-max-bytes ({limit} bytes)")
                }
                e => format!("reading the body: {e}"),
            })?;
        let body = if gzipped {
            use std::io::Read as _;
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(self.max_bytes.saturating_add(1))
                .read_to_end(&mut decoded)
                .map_err(|e| format!("decoding the gzip body: {e}"))?;
            if decoded.len() as u64 > self.max_bytes {
                return Err(format!(
                    "the body is larger than --scrape-max-bytes ({} bytes)",
                    self.max_bytes
                ));
            }
            decoded
        } else {
            body
        };
        let format = if openmetrics {
            Format::OpenMetrics
        } else {
            Format::Auto
        };
        let limits = ParseLimits {
            max_bytes: usize::try_from(self.max_bytes).unwrap_or(usize::MAX),
            ..ParseLimits::default()
        };
        let exposition = parse_with_limits(&body, format, &limits).map_err(|e| {
            format!(
                "invalid exposition text at line {}, column {}: {}",
                e.line(),
                e.column(),
                e.message()
            )
        })?;
        let mut families = exposition.families;
        let adjusted = servable::make_servable(&mut families);
        if let Some(problem) = adjusted.first()
            && !self.adjusted_reported
        {
            self.adjusted_reported = true;
            let more = match adjusted.len() - 1 {
                0 => String::new(),
                n => format!(" (and {n} more)"),
            };
            eprintln!(
                "promdrop run: warning: scraping {}: {problem}{more}; written without it, so that the exporter serves the file in full",
                self.url
            );
        }
        if exposition.format == Format::Classic && adjusted.is_empty() {
            drop(families);
            String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())
        } else {
            Ok(render_classic(&families))
        }
    }
}

/// The certificates of a PEM file, for `--scrape-ca`.
fn read_ca(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read --scrape-ca {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("--scrape-ca {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "--scrape-ca {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    Ok(certs)
}
