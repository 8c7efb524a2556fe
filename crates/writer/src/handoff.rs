//! The job-level API: [`Handoff`], its builder and its guard.

use std::cell::Cell;
use std::fmt;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::atomic::{TargetLock, WriteOptions};
use crate::compose::{self, Reason};
use crate::source::{Source, SourceError, TextSource};

/// The directory used when neither [`HandoffBuilder::dir`] nor `PROMDROP_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/promdrop";

/// The environment variable that names the directory when [`HandoffBuilder::dir`] is not used.
pub const DIR_ENV: &str = "PROMDROP_DIR";

/// The environment variable Kubernetes sets in the pods of an indexed Job.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The environment variable a pod gets its namespace in through the Downward API
/// (`fieldRef: metadata.namespace`). When set, every sample also gets `namespace="<value>"`
/// (a grouping label like `job_name`): the exporter's tenancy serves it with the same value.
pub const POD_NAMESPACE_ENV: &str = "POD_NAMESPACE";

/// How the job ended, as the application tells [`HandoffGuard::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job did its work: `promdrop_job_success 1`, `reason="success"`.
    Success,
    /// The job failed: `promdrop_job_success 0`, `reason="error"`, and the last success
    /// timestamp is carried forward from the previous file.
    Failure,
}

impl<T, E> From<&Result<T, E>> for Outcome {
    /// `Ok` is [`Outcome::Success`], `Err` is [`Outcome::Failure`].
    fn from(result: &Result<T, E>) -> Self {
        Outcome::from(result.is_ok())
    }
}

impl From<bool> for Outcome {
    /// `true` is [`Outcome::Success`].
    fn from(success: bool) -> Self {
        if success {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// How a job's process ended, when a wrapper runs the job as a child process (as
/// `promdrop run` does) and hands the outcome over with [`HandoffGuard::finish_process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessExit {
    /// The process exited by itself with this code: 0 is success (`reason="success"`), any
    /// other code a failure (`reason="error"`).
    Code(i32),
    /// The process was killed by this signal (`reason="signal"`).
    Signal(i32),
}

impl ProcessExit {
    /// The status a shell reports for the process: the exit code, or 128 + the signal
    /// (143 for SIGTERM), which is also what `promdrop_job_exit_code` says.
    pub fn shell_status(self) -> i32 {
        match self {
            ProcessExit::Code(code) => code,
            ProcessExit::Signal(signal) => 128 + signal,
        }
    }

    /// The signal that killed the process, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            ProcessExit::Code(_) => None,
            ProcessExit::Signal(signal) => Some(signal),
        }
    }

    fn reason(self) -> Reason {
        match self {
            ProcessExit::Code(0) => Reason::Success,
            ProcessExit::Code(_) => Reason::Error,
            ProcessExit::Signal(signal) => Reason::Signal(signal),
        }
    }
}

type ErrorCallback = Arc<dyn Fn(&Error) + Send + Sync>;
#[cfg(feature = "signals")]
type SignalCallback = Arc<dyn Fn(i32) + Send + Sync>;

/// Hands a job's metrics to the exporter through `<dir>/<job>.prom`. Start with
/// [`Handoff::builder`].
#[derive(Debug)]
pub struct Handoff;

impl Handoff {
    /// A builder for the handoff of the job called `job` (its Kubernetes Job or CronJob name:
    /// the file is named after it, and it is the default `job_name` label).
    pub fn builder(job: impl Into<String>) -> HandoffBuilder {
        HandoffBuilder {
            job: job.into(),
            dir: None,
            completion_index: None,
            sources: Vec::new(),
            label_ops: Vec::new(),
            options: WriteOptions::default(),
            flush_every: Duration::from_secs(60),
            stale_after: None,
            expire_after: None,
            outcome_metrics: true,
            snapshot_at_start: true,
            panic_hook: true,
            #[cfg(feature = "signals")]
            signals: true,
            #[cfg(feature = "signals")]
            on_signal: None,
            #[cfg(feature = "signals")]
            graceful: None,
            on_error: Arc::new(|e: &Error| eprintln!("promdrop-writer: {e}")),
            #[cfg(feature = "opentelemetry")]
            exporters: Vec::new(),
            #[cfg(feature = "opentelemetry")]
            meter_provider: None,
        }
    }
}

enum LabelOp {
    Set(String, String),
    Remove(String),
    Clear,
}

/// Configures a [`Handoff`]; [`install`](HandoffBuilder::install) starts it.
#[must_use = "a builder does nothing until install() is called"]
pub struct HandoffBuilder {
    job: String,
    dir: Option<PathBuf>,
    completion_index: Option<Option<u32>>,
    sources: Vec<Box<dyn Source>>,
    label_ops: Vec<LabelOp>,
    options: WriteOptions,
    flush_every: Duration,
    stale_after: Option<Duration>,
    expire_after: Option<Duration>,
    outcome_metrics: bool,
    snapshot_at_start: bool,
    panic_hook: bool,
    #[cfg(feature = "signals")]
    signals: bool,
    #[cfg(feature = "signals")]
    on_signal: Option<SignalCallback>,
    /// `Some(deadline)`: a signal is only recorded; the final write waits for the job.
    #[cfg(feature = "signals")]
    graceful: Option<Duration>,
    on_error: ErrorCallback,
    #[cfg(feature = "opentelemetry")]
    exporters: Vec<crate::otel::FileExporter>,
    #[cfg(feature = "opentelemetry")]
    meter_provider: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl fmt::Debug for HandoffBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffBuilder")
            .field("job", &self.job)
            .field("dir", &self.dir)
            .field("sources", &self.sources.len())
            .field("options", &self.options)
            .field("flush_every", &self.flush_every)
            .field("stale_after", &self.stale_after)
            .field("expire_after", &self.expire_after)
            .finish_non_exhaustive()
    }
}

impl HandoffBuilder {
    /// The directory to write to. Without it: `$PROMDROP_DIR` when set and not empty, else
    /// [`DEFAULT_DIR`] (`/var/lib/promdrop`). The directory is not created: it is the mount
    /// point of the shared volume.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The completion index of an indexed Job, which makes the file `<job>-<index>.prom` and
    /// adds a `completion_index` label. By default it is read from `JOB_COMPLETION_INDEX`;
    /// `None` here means "not indexed" whatever the environment says.
    pub fn completion_index(mut self, index: Option<u32>) -> Self {
        self.completion_index = Some(index);
        self
    }

    /// Adds a source of metrics. Several sources are merged (a family that two sources
    /// declare with different types is kept from the first only).
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// Adds a closure that returns exposition text (classic or OpenMetrics) as a source.
    pub fn text_source<F>(self, produce: F) -> Self
    where
        F: Fn() -> Result<String, SourceError> + Send + Sync + 'static,
    {
        self.source(TextSource::new(produce))
    }

    /// Adds a [`prometheus::Registry`] as a source (the registry is a shared handle: metrics
    /// registered after this call are written too).
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn registry(self, registry: &prometheus::Registry) -> Self {
        self.source(registry.clone())
    }

    /// Adds a [`prometheus_client`] registry as a source.
    #[cfg(feature = "prometheus-client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus-client")))]
    pub fn prometheus_client(self, registry: Arc<prometheus_client::registry::Registry>) -> Self {
        self.source(crate::PrometheusClientSource::new(registry))
    }

    /// Adds an OpenTelemetry exporter as a source, and ties it to this handoff so that every
    /// export (`SdkMeterProvider::force_flush`, `shutdown`, the periodic reader) writes the
    /// file. See [`FileExporter`](crate::otel::FileExporter). Give the handoff the meter
    /// provider too ([`meter_provider`](Self::meter_provider)), so that every write has the
    /// current values.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn opentelemetry(mut self, exporter: &crate::otel::FileExporter) -> Self {
        self.exporters.push(exporter.clone());
        self.source(exporter.source())
    }

    /// The meter provider whose exporter is this handoff's
    /// [`FileExporter`](crate::otel::FileExporter) (a clone: `SdkMeterProvider` is a shared
    /// handle). Before every write (each snapshot, and the final write however the run ends:
    /// `finish`, a drop, a panic, SIGTERM or SIGINT, [`exit`](HandoffGuard::exit)) the handoff
    /// calls its `force_flush`, so that the file holds the values of that moment rather than
    /// the SDK's last periodic export (every 60 s by default). Without it, shut the provider
    /// down before `finish` yourself, and a signal or a panic writes the last export only.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn meter_provider(
        mut self,
        provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    ) -> Self {
        self.meter_provider = Some(provider);
        self
    }

    /// Sets a grouping label added to every sample written (replacing a grouping label of the
    /// same name, such as the default `job_name`). A sample that already has a label of that
    /// name keeps its own value, unless that value is empty (which Prometheus treats as no
    /// label): then the grouping label's value fills it.
    pub fn grouping_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.label_ops.push(LabelOp::Set(name.into(), value.into()));
        self
    }

    /// Removes a grouping label, such as the default `job_name` or `completion_index`.
    pub fn without_grouping_label(mut self, name: impl Into<String>) -> Self {
        self.label_ops.push(LabelOp::Remove(name.into()));
        self
    }

    /// Removes every grouping label set so far, the defaults included.
    pub fn no_grouping_labels(mut self) -> Self {
        self.label_ops.push(LabelOp::Clear);
        self
    }

    /// The mode of the written file (default `0o644`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.options.mode = mode;
        self
    }

    /// How long a write waits for the lock before it fails (default 10 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.options.lock_timeout = timeout;
        self
    }

    /// How often a snapshot (`promdrop_job_running 1`) is written while the job runs, so that
    /// a job killed with SIGKILL or by the OOM killer still leaves its last metrics. Default
    /// 60 s; [`Duration::ZERO`] turns periodic snapshots off.
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// Tells the exporter to mark the final file stale this long after it was written
    /// (`stale_after=` in the header). Snapshots written while the job runs say at most
    /// twice `flush_every`, so that a job that died without a final write goes stale soon.
    /// Without it, the exporter's default applies.
    pub fn stale_after(mut self, after: Duration) -> Self {
        self.stale_after = Some(after);
        self
    }

    /// Tells the exporter to stop serving the file's samples this long after it was written
    /// (`expire_after=` in the header). Without it, the exporter's default applies.
    pub fn expire_after(mut self, after: Duration) -> Self {
        self.expire_after = Some(after);
        self
    }

    /// Whether to write the outcome metrics (`promdrop_job_*`: start and end time, success,
    /// running, exit reason, last success) after the sources' metrics (default `true`).
    /// Without them the file holds the header and the sources' metrics with grouping labels
    /// only, and the previous file is not read: for a tool that writes metrics someone else
    /// produced, such as `promdrop write`, where there is no run to describe. Families named
    /// `promdrop_job_*` are left out of the sources' metrics either way.
    pub fn outcome_metrics(mut self, write: bool) -> Self {
        self.outcome_metrics = write;
        self
    }

    /// Whether [`install`](Self::install) writes a first snapshot at once (default `true`):
    /// `promdrop_job_running 1`, the start time, and the sources' metrics as they are then.
    /// A job killed before its first [`flush_every`](Self::flush_every) (an OOM kill at 2 s)
    /// then leaves a file that says it started and never finished, instead of the previous
    /// run's file saying that run succeeded. An error of that write goes to
    /// [`on_error`](Self::on_error) and does not fail `install`.
    pub fn snapshot_at_start(mut self, write: bool) -> Self {
        self.snapshot_at_start = write;
        self
    }

    /// Whether to install a panic hook that writes the final file (`reason="panic"`) before
    /// the previous hook runs (default `true`). The hook writes for panics of the thread that
    /// called [`install`](Self::install), and for any panic when the crate is built with
    /// `panic = "abort"` (the process is about to end then). It works with
    /// `panic = "abort"`, where no destructor would run.
    pub fn panic_hook(mut self, install: bool) -> Self {
        self.panic_hook = install;
        self
    }

    /// Whether to catch SIGTERM and SIGINT (default `true`): on either, the final file is
    /// written (`reason="signal"`) and the process exits with 128 + the signal number (143
    /// for SIGTERM, 130 for SIGINT), as a shell reports a process killed by it. For a job
    /// that handles the signal itself (a graceful shutdown), see
    /// [`graceful_shutdown`](Self::graceful_shutdown).
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    pub fn signals(mut self, catch: bool) -> Self {
        self.signals = catch;
        self
    }

    /// Hands control back to the application on SIGTERM or SIGINT instead of exiting: after
    /// the final write, `callback` is called with the signal number on the handoff's signal
    /// thread, and the process goes on. The application then stops in its own way; its later
    /// [`finish`](HandoffGuard::finish) writes nothing more (there is one final write per run)
    /// and [`HandoffGuard::signal`] tells which signal arrived.
    ///
    /// With [`graceful_shutdown`](Self::graceful_shutdown), the callback is called when the
    /// signal arrives, before any final write.
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    pub fn on_signal(mut self, callback: impl Fn(i32) + Send + Sync + 'static) -> Self {
        self.signals = true;
        self.on_signal = Some(Arc::new(callback));
        self
    }

    /// For a job that handles SIGTERM and SIGINT itself (a tokio job with its own graceful
    /// shutdown, a loop that checks a flag): the signal is only recorded, and the job goes on.
    /// At once a snapshot is written (`promdrop_job_running 1`, the metrics as they are at
    /// the signal); the final write is the job's own ([`finish`](HandoffGuard::finish),
    /// [`finish_with`](HandoffGuard::finish_with), the guard's drop or
    /// [`exit`](HandoffGuard::exit)) and says `reason="signal"` whatever outcome the job
    /// gives, so it holds what the drain did. If the job has not ended `deadline` after the
    /// signal, promdrop does the final write itself (`reason="signal"`) and exits with
    /// 128 + the signal. Set the deadline below the pod's `terminationGracePeriodSeconds`
    /// (30 s by default), after which the kubelet sends SIGKILL: then the final write
    /// happens in time. Catches the signals as [`signals`](Self::signals)`(true)` does;
    /// the application's own handler (`tokio::signal`, `signal-hook`) sees them too. In this
    /// mode promdrop never ends the process on a signal but at that deadline: later signals,
    /// before or after the final write, are the application's to handle.
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    pub fn graceful_shutdown(mut self, deadline: Duration) -> Self {
        self.signals = true;
        self.graceful = Some(deadline);
        self
    }

    /// Where errors of writes that have no caller to return to go: periodic snapshots and
    /// final writes from the guard's drop, the panic hook and the signal handler. The default
    /// prints one line to standard error.
    pub fn on_error(mut self, callback: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.on_error = Arc::new(callback);
        self
    }

    /// Checks the configuration and starts the handoff: the periodic flusher, the panic hook
    /// and the signal handler, then writes the first snapshot (see
    /// [`snapshot_at_start`](Self::snapshot_at_start)). A missing or read-only directory is
    /// reported to [`on_error`](Self::on_error) by that write (a missing one as
    /// [`Error::MissingDir`]), not returned here, so that a metrics problem does not stop the
    /// job.
    pub fn install(self) -> Result<HandoffGuard, Error> {
        let dir = match self.dir {
            Some(dir) => dir,
            None => match std::env::var_os(DIR_ENV) {
                Some(d) if !d.is_empty() => PathBuf::from(d),
                _ => PathBuf::from(DEFAULT_DIR),
            },
        };
        if let Err(reason) = check_job_name(&self.job) {
            return Err(Error::InvalidJobName {
                name: self.job,
                dir,
                reason,
            });
        }
        let index = match self.completion_index {
            Some(index) => index,
            None => match std::env::var(COMPLETION_INDEX_ENV) {
                Ok(v) if !v.is_empty() => match v.parse::<u32>() {
                    Ok(i) => Some(i),
                    Err(_) => return Err(Error::InvalidCompletionIndex { value: v, dir }),
                },
                _ => None,
            },
        };
        let file_name = match index {
            Some(i) => format!("{}-{i}.prom", self.job),
            None => format!("{}.prom", self.job),
        };
        let path = dir.join(file_name);

        let mut labels = vec![("job_name".to_string(), self.job.clone())];
        if let Some(i) = index {
            labels.push(("completion_index".to_string(), i.to_string()));
        }
        if let Ok(namespace) = std::env::var(POD_NAMESPACE_ENV)
            && !namespace.is_empty()
        {
            labels.push(("namespace".to_string(), namespace));
        }
        for op in self.label_ops {
            match op {
                LabelOp::Set(name, value) => {
                    if let Err(reason) = compose::check_label_name(&name) {
                        return Err(Error::InvalidLabel { name, path, reason });
                    }
                    match labels.iter_mut().find(|(n, _)| *n == name) {
                        Some(slot) => slot.1 = value,
                        None => labels.push((name, value)),
                    }
                }
                LabelOp::Remove(name) => labels.retain(|(n, _)| *n != name),
                LabelOp::Clear => labels.clear(),
            }
        }

        let inner = Arc::new(Inner {
            path,
            sources: self.sources,
            labels,
            options: self.options,
            flush_every: self.flush_every,
            stale_after: self.stale_after,
            expire_after: self.expire_after,
            outcome_metrics: self.outcome_metrics,
            process_exit: Mutex::new(None),
            start: unix_now(),
            final_claimed: AtomicBool::new(false),
            state: Mutex::new(State {
                final_written: false,
            }),
            final_done: Condvar::new(),
            stop: Mutex::new(false),
            stop_changed: Condvar::new(),
            on_error: self.on_error,
            job_thread: thread::current().id(),
            signal: AtomicI32::new(0),
            adjusted_reported: AtomicBool::new(false),
            #[cfg(feature = "opentelemetry")]
            meter_provider: self.meter_provider,
            #[cfg(feature = "opentelemetry")]
            flushing: AtomicBool::new(false),
        });

        let mut guard = HandoffGuard {
            inner: Arc::clone(&inner),
            flusher: None,
        };
        if !inner.flush_every.is_zero() {
            let flusher_inner = Arc::clone(&inner);
            let spawned = thread::Builder::new()
                .name("promdrop-flusher".to_string())
                .spawn(move || flusher_inner.run_flusher());
            match spawned {
                Ok(handle) => guard.flusher = Some(handle),
                Err(source) => {
                    guard.abandon();
                    return Err(Error::Install {
                        path: inner.path.clone(),
                        what: "periodic flusher thread",
                        source,
                    });
                }
            }
        }
        #[cfg(feature = "signals")]
        if self.signals
            && let Err(e) = start_signals(&inner, self.on_signal, self.graceful)
        {
            guard.abandon();
            return Err(e);
        }
        if self.panic_hook && !thread::panicking() {
            install_panic_hook(Arc::downgrade(&inner));
        }
        #[cfg(feature = "opentelemetry")]
        for exporter in &self.exporters {
            exporter.attach(Arc::downgrade(&inner));
        }
        if self.snapshot_at_start {
            // A metrics problem must not stop the job: an error is reported, and a source
            // that panics (the panic hook printed it) writes nothing.
            if let Ok(Err(e)) = panic::catch_unwind(AssertUnwindSafe(|| inner.snapshot())) {
                inner.report(&e);
            }
        }
        Ok(guard)
    }
}

/// Checks that a job name makes a usable file name: what Kubernetes allows in a Job name
/// (letters, digits, `-`, `.`) and `_`, not hidden, at most 200 bytes.
fn check_job_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 200 {
        return Err("it is longer than 200 bytes");
    }
    if name.starts_with('.') {
        return Err("it starts with '.', which would make the file hidden from the exporter");
    }
    if name.starts_with('-') {
        return Err("it starts with '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(
            "only letters, digits, '-', '_' and '.' are allowed (no '/', spaces or control characters)",
        );
    }
    Ok(())
}

fn unix_now() -> f64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    (secs * 1000.0).round() / 1000.0
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// Set while this thread writes the job file, so that a panic inside a source does not
    /// make the panic hook wait for the write it interrupted.
    static IN_WRITE: Cell<bool> = const { Cell::new(false) };
}

struct InWrite;

impl InWrite {
    fn enter() -> InWrite {
        IN_WRITE.with(|w| w.set(true));
        InWrite
    }
}

impl Drop for InWrite {
    fn drop(&mut self) {
        IN_WRITE.with(|w| w.set(false));
    }
}

struct State {
    final_written: bool,
}

/// What the guard, the flusher, the panic hook, the signal thread and OpenTelemetry exporters
/// share.
pub(crate) struct Inner {
    path: PathBuf,
    sources: Vec<Box<dyn Source>>,
    labels: Vec<(String, String)>,
    options: WriteOptions,
    flush_every: Duration,
    stale_after: Option<Duration>,
    expire_after: Option<Duration>,
    outcome_metrics: bool,
    /// Set by [`HandoffGuard::finish_process`] just before its final write.
    process_exit: Mutex<Option<ProcessExit>>,
    start: f64,
    /// Set by whoever does the final write, before it takes `state`.
    final_claimed: AtomicBool,
    /// Held for every write, so that writes never overlap and a snapshot cannot overwrite the
    /// final file.
    state: Mutex<State>,
    final_done: Condvar,
    stop: Mutex<bool>,
    stop_changed: Condvar,
    on_error: ErrorCallback,
    job_thread: ThreadId,
    /// The first SIGTERM or SIGINT caught, 0 before any.
    signal: AtomicI32,
    /// Whether an [`Error::Adjusted`] was reported already (once per run).
    adjusted_reported: AtomicBool,
    #[cfg(feature = "opentelemetry")]
    meter_provider: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    /// Set while [`Inner::flush_meters`] runs: the exports it causes only store their text,
    /// for the write that follows, instead of each writing a snapshot.
    #[cfg(feature = "opentelemetry")]
    flushing: AtomicBool,
}

impl Inner {
    /// Writes the file. The caller holds `state`.
    fn write(&self, reason: Option<Reason>) -> Result<(), Error> {
        let _in_write = InWrite::enter();
        // The time of the snapshot (`written_at`, and the end of a final write) is when the
        // sources are collected.
        let now = unix_now();
        let stale_after = match reason {
            Some(_) => self.stale_after,
            None if self.flush_every.is_zero() => self.stale_after,
            None => {
                let twice = self.flush_every.saturating_mul(2);
                Some(self.stale_after.map_or(twice, |s| s.min(twice)))
            }
        };
        let mut text = compose::header(now, stale_after, self.expire_after);
        // Collect first: a failing source writes nothing, and the lock is held briefly.
        let adjusted = compose::body(&self.sources, &self.labels, &self.path, &mut text)?;
        if let Some(problem) = adjusted.first()
            && !self.adjusted_reported.swap(true, Ordering::SeqCst)
        {
            let more = match adjusted.len() - 1 {
                0 => String::new(),
                n => format!(" (and {n} more)"),
            };
            self.report(&Error::Adjusted {
                path: self.path.clone(),
                problem: problem.clone(),
                more,
            });
        }
        let lock = TargetLock::acquire(&self.path, self.options.lock_timeout)?;
        let last_success = if reason == Some(Reason::Success) || !self.outcome_metrics {
            None
        } else {
            fs::read(&self.path)
                .ok()
                .and_then(|previous| compose::last_success_in(&previous))
        };
        if self.outcome_metrics {
            let exit = match reason {
                Some(_) => *self::lock(&self.process_exit),
                None => None,
            };
            compose::outcome(
                &compose::Outcome {
                    reason,
                    start: self.start,
                    now,
                    last_success,
                    exit,
                },
                &self.labels,
                &mut text,
            );
        }
        lock.replace(text.as_bytes(), self.options.mode)
    }

    /// Asks the meter provider, if there is one, to export now, so that the write that
    /// follows has the current values. An error (such as a provider already shut down,
    /// whose shutdown exported the last values) leaves the last export as it is.
    fn flush_meters(&self) {
        #[cfg(feature = "opentelemetry")]
        if let Some(provider) = &self.meter_provider {
            self.flushing.store(true, Ordering::SeqCst);
            let _ = provider.force_flush();
            self.flushing.store(false, Ordering::SeqCst);
        }
    }

    /// Whether an export now comes from [`Inner::flush_meters`] (and need not write).
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn is_flushing(&self) -> bool {
        self.flushing.load(Ordering::SeqCst)
    }

    /// Writes a snapshot of the running job, unless the final write has begun.
    pub(crate) fn snapshot(&self) -> Result<bool, Error> {
        if self.final_claimed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.flush_meters();
        let state = lock(&self.state);
        if state.final_written || self.final_claimed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.write(None)?;
        drop(state);
        Ok(true)
    }

    /// Whether the final write has begun.
    pub(crate) fn is_final(&self) -> bool {
        self.final_claimed.load(Ordering::SeqCst)
    }

    /// Does the run's one final write, or waits for the one already begun. Returns whether
    /// this call wrote.
    fn finalize(&self, reason: Reason) -> Result<bool, Error> {
        if self.final_claimed.swap(true, Ordering::SeqCst) {
            self.wait_final();
            return Ok(false);
        }
        self.request_stop();
        self.flush_meters();
        let mut state = lock(&self.state);
        // A source that panics must not leave the others waiting for a write that never ends.
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.write(Some(reason))));
        state.final_written = true;
        drop(state);
        self.final_done.notify_all();
        match result {
            Ok(result) => result.map(|()| true),
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// Waits (bounded) until the final write that another thread began is done.
    fn wait_final(&self) {
        self.wait_final_for(self.options.lock_timeout + Duration::from_secs(30));
    }

    /// Waits at most `limit` for the final write to be done; returns whether it is.
    fn wait_final_for(&self, limit: Duration) -> bool {
        let start = Instant::now();
        let mut state = lock(&self.state);
        while !state.final_written {
            let Some(left) = limit.checked_sub(start.elapsed()) else {
                return false;
            };
            state = match self.final_done.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// The signal recorded by [`HandoffBuilder::graceful_shutdown`], if one came.
    fn recorded_signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    fn request_stop(&self) {
        *lock(&self.stop) = true;
        self.stop_changed.notify_all();
    }

    fn run_flusher(&self) {
        let mut stopped = lock(&self.stop);
        loop {
            stopped = match self
                .stop_changed
                .wait_timeout_while(stopped, self.flush_every, |s| !*s)
            {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if *stopped {
                return;
            }
            drop(stopped);
            if let Err(e) = self.snapshot() {
                (self.on_error)(&e);
            }
            stopped = lock(&self.stop);
        }
    }

    pub(crate) fn report(&self, error: &Error) {
        (self.on_error)(error);
    }
}

fn install_panic_hook(inner: Weak<Inner>) {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if let Some(inner) = inner.upgrade() {
            let in_write = IN_WRITE.with(Cell::get);
            let ours = cfg!(panic = "abort") || thread::current().id() == inner.job_thread;
            if ours
                && !in_write
                && let Err(e) = inner.finalize(Reason::Panic)
            {
                inner.report(&e);
            }
        }
        previous(info);
    }));
}

#[cfg(feature = "signals")]
fn start_signals(
    inner: &Arc<Inner>,
    on_signal: Option<SignalCallback>,
    graceful: Option<Duration>,
) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let install_err = |source| Error::Install {
        path: inner.path.clone(),
        what: "SIGTERM/SIGINT handler",
        source,
    };
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(install_err)?;
    let inner = Arc::clone(inner);
    let path = inner.path.clone();
    thread::Builder::new()
        .name("promdrop-signals".to_string())
        .spawn(move || {
            for signal in signals.forever() {
                let first = inner
                    .signal
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if let Some(deadline) = graceful {
                    // The job handles the signal: promdrop records it and exits only at the
                    // deadline of the first one, if the job's own final write has not come.
                    if let Some(callback) = &on_signal {
                        callback(signal);
                    }
                    if !first || inner.is_final() {
                        continue;
                    }
                    // What the job had done when the signal came, in case the drain is cut
                    // short by SIGKILL; the job's own final write comes later.
                    if let Err(e) = inner.snapshot() {
                        inner.report(&e);
                    }
                    if inner.wait_final_for(deadline) {
                        continue;
                    }
                    if let Err(e) = inner.finalize(Reason::Signal(signal)) {
                        inner.report(&e);
                    }
                    std::process::exit(128 + signal);
                }
                if let Err(e) = inner.finalize(Reason::Signal(signal)) {
                    inner.report(&e);
                }
                match &on_signal {
                    None => std::process::exit(128 + signal),
                    Some(callback) => callback(signal),
                }
            }
        })
        .map_err(|source| Error::Install {
            path,
            what: "signal thread",
            source,
        })?;
    Ok(())
}

/// The running handoff. Ends with exactly one final write: [`finish`](Self::finish),
/// [`finish_with`](Self::finish_with), [`exit`](Self::exit), a drop, a panic or a signal,
/// whichever comes first.
///
/// Only an explicit success is a success. Dropping the guard without an outcome (a `main`
/// that returns `Err` through `?`, or forgets `finish`) writes `promdrop_job_success 0`
/// with `reason="unfinished"` (`reason="panic"` when the thread is panicking), and the last
/// success time stays that of the last run that succeeded.
#[must_use = "dropping the guard does the final write at once"]
pub struct HandoffGuard {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

impl fmt::Debug for HandoffGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffGuard")
            .field("path", &self.inner.path)
            .field("final_written", &self.inner.is_final())
            .finish_non_exhaustive()
    }
}

impl HandoffGuard {
    /// The job file: `<dir>/<job>.prom` or `<dir>/<job>-<index>.prom`.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The grouping labels added to every sample.
    pub fn grouping_labels(&self) -> &[(String, String)] {
        &self.inner.labels
    }

    /// Writes a snapshot now (`promdrop_job_running 1`), as the periodic flusher does.
    /// Does nothing once the final write has begun.
    pub fn flush(&self) -> Result<(), Error> {
        self.inner.snapshot().map(|_| ())
    }

    /// The signal (SIGTERM or SIGINT) that came, when the application gets control back
    /// after one: with `HandoffBuilder::graceful_shutdown` or `HandoffBuilder::on_signal`
    /// (feature `signals`).
    pub fn signal(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Does the final write with `outcome`, stops the background threads and returns the
    /// write's result. When a signal or a panic already did the final write, writes nothing
    /// and returns `Ok(())`.
    pub fn finish(mut self, outcome: Outcome) -> Result<(), Error> {
        let reason = match outcome {
            Outcome::Success => Reason::Success,
            Outcome::Failure => Reason::Error,
        };
        self.end(reason)
    }

    /// Does the final write with the outcome of `result` (`Ok` is success, `Err` a failure)
    /// and returns `result` unchanged, so that the job's own result, not the handoff's, is
    /// what `main` returns:
    ///
    /// ```
    /// # use promdrop_writer::Handoff;
    /// # fn run_job() -> Result<(), std::io::Error> { Ok(()) }
    /// # let tmp = tempfile::tempdir()?;
    /// let guard = Handoff::builder("backup").dir(tmp.path()).install()?;
    /// guard.finish_with(run_job())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// An error of the write goes to [`on_error`](HandoffBuilder::on_error) (by default one
    /// line on standard error): a metrics problem never changes the job's result.
    pub fn finish_with<T, E>(mut self, result: Result<T, E>) -> Result<T, E> {
        let reason = match Outcome::from(&result) {
            Outcome::Success => Reason::Success,
            Outcome::Failure => Reason::Error,
        };
        if let Err(e) = self.end(reason) {
            self.inner.report(&e);
        }
        result
    }

    /// For wrappers that run the job as a child process (`promdrop run`): does the final
    /// write for a child that ended as `exit` says, then stops the background threads, as
    /// [`finish`](Self::finish) does. `reason` is `success` for exit code 0, `error` for any
    /// other code and `signal` for a child killed by a signal; the file also gets
    /// `promdrop_job_exit_code` (the status a shell reports: the code, or 128 + the signal)
    /// and `promdrop_job_exit_signal` (the signal, 0 when the child exited by itself).
    /// When a signal or a panic already did the final write, writes nothing and returns
    /// `Ok(())`.
    pub fn finish_process(mut self, exit: ProcessExit) -> Result<(), Error> {
        *lock(&self.inner.process_exit) = Some(exit);
        self.end(exit.reason())
    }

    /// For jobs that end with [`std::process::exit`]: does the final write (`reason="success"`
    /// for code 0, `"error"` otherwise, with `promdrop_job_exit_code` and
    /// `promdrop_job_exit_signal 0` as `promdrop run` writes them), then exits with `code`.
    /// A write error is reported to the [`on_error`](HandoffBuilder::on_error) callback; the
    /// exit code is kept.
    pub fn exit(mut self, code: i32) -> ! {
        *lock(&self.inner.process_exit) = Some(ProcessExit::Code(code));
        let reason = if code == 0 {
            Reason::Success
        } else {
            Reason::Error
        };
        if let Err(e) = self.end(reason) {
            self.inner.report(&e);
        }
        std::process::exit(code)
    }

    /// Ends a guard whose installation failed, without writing anything.
    fn abandon(self) {
        self.inner.final_claimed.store(true, Ordering::SeqCst);
        lock(&self.inner.state).final_written = true;
        // The drop stops the background threads; the final write is already "done".
    }

    fn end(&mut self, reason: Reason) -> Result<(), Error> {
        // With `graceful_shutdown`, a signal that came is why the run ended, whatever the
        // job says (a panic during the drain says more, and is kept).
        let reason = match (reason, self.inner.recorded_signal()) {
            (Reason::Panic, _) | (_, None) => reason,
            (_, Some(signal)) => Reason::Signal(signal),
        };
        self.inner.request_stop();
        let result = self.inner.finalize(reason).map(|_| ());
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        // The signal thread stays: signal-hook cannot give a signal its default action back,
        // so after the final write it still turns SIGTERM and SIGINT into an exit with
        // 128 + the signal (or the application's callback, or nothing with
        // `graceful_shutdown`), writing nothing more.
        result
    }
}

impl Drop for HandoffGuard {
    fn drop(&mut self) {
        let reason = if thread::panicking() {
            Reason::Panic
        } else {
            Reason::Unfinished
        };
        if let Err(e) = self.end(reason) {
            self.inner.report(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_checked() {
        for good in ["descheduler", "db-backup.daily", "a_b", "x9"] {
            assert!(check_job_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "a\nb",
            "..",
            &"x".repeat(201),
        ] {
            assert!(check_job_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finish_process_and_no_outcome_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let text = || Ok("# TYPE x gauge\nx 1\n".to_string());
        let guard = Handoff::builder("wrapped")
            .dir(dir.path())
            .completion_index(None)
            .flush_every(Duration::ZERO)
            .panic_hook(false)
            .text_source(text);
        #[cfg(feature = "signals")]
        let guard = guard.signals(false);
        let guard = guard.install().unwrap();
        guard.finish_process(ProcessExit::Signal(15)).unwrap();
        let file = fs::read_to_string(dir.path().join("wrapped.prom")).unwrap();
        for line in [
            "x{job_name=\"wrapped\"} 1\n",
            "promdrop_job_exit_reason{reason=\"signal\",job_name=\"wrapped\"} 1\n",
            "promdrop_job_exit_code{job_name=\"wrapped\"} 143\n",
            "promdrop_job_exit_signal{job_name=\"wrapped\"} 15\n",
        ] {
            assert!(file.contains(line), "{line} in {file}");
        }

        let guard = Handoff::builder("plain")
            .dir(dir.path())
            .completion_index(None)
            .flush_every(Duration::ZERO)
            .panic_hook(false)
            .outcome_metrics(false)
            .text_source(text);
        #[cfg(feature = "signals")]
        let guard = guard.signals(false);
        guard.install().unwrap().finish(Outcome::Success).unwrap();
        let file = fs::read_to_string(dir.path().join("plain.prom")).unwrap();
        assert!(file.starts_with("# promdrop: written_at="), "{file}");
        assert!(
            file.ends_with("\n# TYPE x gauge\nx{job_name=\"plain\"} 1\n"),
            "{file}"
        );
    }

    #[test]
    fn install_refuses_bad_names_and_labels() {
        let err = Handoff::builder("../etc/passwd")
            .dir("/tmp")
            .install()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidJobName { .. }), "{err}");
        assert!(err.to_string().contains("../etc/passwd"), "{err}");
        let err = Handoff::builder("job")
            .dir("/tmp")
            .grouping_label("le", "1")
            .install()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidLabel { .. }), "{err}");
    }
}
