//! Hands a short-lived job's Prometheus metrics to Prometheus through a file on a shared volume.
//!
//! ```
//! use promdrop_writer::{Handoff, prometheus::Registry};
//! # fn deschedule(_: &Registry) -> Result<(), std::io::Error> { Ok(()) }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?; let dir = tmp.path();
//! let registry = Registry::new(); // the job registers its metrics here
//! let guard = Handoff::builder("descheduler").dir(dir).registry(&registry).install()?;
//! // One atomic write of <dir>/descheduler.prom with the outcome of the job's result; the job's
//! // own result is returned, so a failed metrics write never changes the exit status.
//! guard.finish_with(deschedule(&registry))?;
//! # assert!(std::fs::read_to_string(dir.join("descheduler.prom"))?.contains("promdrop_job_success{job_name=\"descheduler\"} 1\n"));
//! # Ok(())
//! # }
//! ```
//!
//! The safe patterns, in short (the crate's README has the whole table of endings):
//!
//! - Only an explicit success is a success: [`HandoffGuard::finish_with`] or
//!   [`HandoffGuard::finish`]. A guard dropped without an outcome (`main` returning `Err`
//!   through `?`) writes `reason="unfinished"` and keeps the last success time.
//! - A job with its own SIGTERM handling (tokio) uses
//!   `HandoffBuilder::graceful_shutdown(deadline)`: the final write comes after its drain.
//! - An OpenTelemetry job gives the handoff its meter provider
//!   (`HandoffBuilder::meter_provider`), flushed before every write.
//! - [`install`](HandoffBuilder::install) writes a `promdrop_job_running 1` snapshot at once,
//!   so that a job killed early never leaves the previous run's success behind.
//!
//! Supported versions of the crates the API takes, re-exported so that a job uses the same
//! ones: `promdrop_writer::prometheus` 0.14 (feature `prometheus`, default),
//! `promdrop_writer::prometheus_client` 0.26 (feature `prometheus-client`),
//! `promdrop_writer::opentelemetry` and `promdrop_writer::opentelemetry_sdk` 0.33 (feature
//! `opentelemetry`). A job on other versions hands its text over with
//! [`HandoffBuilder::text_source`] (its own crate's text encoder in a closure).
//!
//! A Kubernetes CronJob that runs for seconds is gone before Prometheus scrapes it. With
//! promdrop the job writes its metrics to `<dir>/<job>.prom` on a hostPath or PVC, and a
//! DaemonSet exporter serves the directory, as node_exporter's textfile collector does. This
//! crate is the job's side.
//!
//! # What the job file holds
//!
//! ```text
//! # promdrop: written_at=1764259200.125 stale_after=1h expire_after=1d
//! # HELP descheduler_pods_evicted Number of evicted pods.
//! # TYPE descheduler_pods_evicted counter
//! descheduler_pods_evicted{namespace="web",result="success",job_name="descheduler"} 3
//! ...
//! promdrop_job_start_timestamp_seconds{job_name="descheduler"} 1764259195.5
//! promdrop_job_end_timestamp_seconds{job_name="descheduler"} 1764259200.125
//! promdrop_job_success{job_name="descheduler"} 1
//! promdrop_job_running{job_name="descheduler"} 0
//! promdrop_job_exit_reason{reason="success",job_name="descheduler"} 1
//! promdrop_job_exit_reason{reason="error",job_name="descheduler"} 0
//! ...
//! promdrop_job_last_success_timestamp_seconds{job_name="descheduler"} 1764259200.125
//! ```
//!
//! - The header comment ([`WriterHeader`](promdrop_textformat::WriterHeader)) tells the
//!   exporter when the file was written and when to call it stale or expired. Comments are
//!   legal in the classic format; node_exporter ignores them.
//! - Every sample carries the grouping labels: `job_name="<job>"` (as kube-state-metrics
//!   names it), plus `completion_index` in an indexed Job and `namespace` when the pod's
//!   namespace is in `POD_NAMESPACE` (the Downward API; the exporter's `--textfile.tenancy`
//!   serves the namespace's subdirectory with the same value). A sample's own label of the same
//!   name is kept as it is, never duplicated (an empty one, which Prometheus treats as absent,
//!   is filled in).
//! - The outcome metrics: start and end time, `promdrop_job_success` (1/0),
//!   `promdrop_job_running` (1 in snapshots written while the job runs, 0 in the final write),
//!   `promdrop_job_exit_reason` (`success`, `error`, `panic`, `signal` or `unfinished`: 1 for
//!   the one that applies, 0 for the others), `promdrop_job_exit_code` and
//!   `promdrop_job_exit_signal` after [`HandoffGuard::exit`], and `promdrop_job_last_success_timestamp_seconds`, carried
//!   forward from the previous file by a run that did not succeed. Families whose names start
//!   with `promdrop_job_` are reserved: a source's families of that prefix are left out.
//! - The file is named after the job, never after the pod, so each run replaces the last:
//!   `<job>.prom`, or `<job>-<index>.prom` when `JOB_COMPLETION_INDEX` is set.
//!
//! # When it is written
//!
//! A snapshot at [`install`](HandoffBuilder::install) (`promdrop_job_running 1`), one every
//! [`flush_every`](HandoffBuilder::flush_every) (60 s by default) while the job runs, so that
//! a job killed with SIGKILL or by the OOM killer leaves its last metrics, and one final write:
//! [`HandoffGuard::finish`] or [`HandoffGuard::finish_with`], the guard's drop
//! (`reason="unfinished"`, or `"panic"` while panicking), a panic hook (which works with
//! `panic = "abort"` too), SIGTERM and SIGINT (feature `signals`: write, then exit with 128 +
//! the signal, or hand control back with `HandoffBuilder::on_signal`, or, with
//! `HandoffBuilder::graceful_shutdown`, only record the signal and let the job's own ending
//! write after its drain), and [`HandoffGuard::exit`] for jobs that call `process::exit`.
//! Exactly one of these does the final write; the others wait for it and write nothing.
//! Snapshots and the final write are serialized: a snapshot never overwrites the final file.
//!
//! # How it is written
//!
//! [`write_atomic`] is the primitive, and every write goes through it: an exclusive lock on
//! the hidden sibling [`lock_path`] (`.<job>.prom.lock`, through [`std::fs::File::lock`]),
//! a hidden temporary file `.<job>.prom.<random>.tmp` created with `O_EXCL` in the same
//! directory, write, fsync, mode 0644, rename over the target, fsync of the directory. A
//! reader sees the old file or the new one, never a part; two writers never interleave; on
//! any error the temporary file is removed and the old file is left as it was. The exporter
//! takes the same lock before it deletes an expired file. The empty lock file stays in the
//! directory; it is hidden and does not end in `.prom`, so nothing serves it.
//!
//! # Sources
//!
//! - `prometheus::Registry` (feature `prometheus`, on by default):
//!   `HandoffBuilder::registry`. Grouping labels are added to the gathered families, and
//!   the crate's own text encoder writes them: no parsing.
//! - `prometheus_client` registries (feature `prometheus-client`):
//!   `HandoffBuilder::prometheus_client`. Its OpenMetrics text is converted to the classic
//!   format with promdrop-textformat.
//! - OpenTelemetry (feature `opentelemetry`): `otel::FileExporter`, so that
//!   `SdkMeterProvider::shutdown()` or `force_flush()` writes the file, and
//!   `HandoffBuilder::meter_provider`, so that every write flushes the provider first.
//! - Any closure that returns exposition text: [`HandoffBuilder::text_source`].
//!
//! Whatever the source, the file is classic text format 0.0.4, as node_exporter's textfile
//! collector and the promdrop exporter read it, and an exporter with default flags serves it
//! in full: sample timestamps are stripped and a repeated series is kept once ([`servable`]).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod atomic;
mod compose;
mod error;
mod handoff;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel;
pub mod servable;
mod source;

pub use atomic::{
    TargetLock, WriteOptions, lock_path, open_lock_file, write_atomic, write_atomic_with,
    write_registry, write_registry_with,
};
pub use error::Error;
pub use handoff::{
    COMPLETION_INDEX_ENV, DEFAULT_DIR, DIR_ENV, Handoff, HandoffBuilder, HandoffGuard, Outcome,
    POD_NAMESPACE_ENV, ProcessExit,
};
#[cfg(feature = "prometheus-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus-client")))]
pub use source::PrometheusClientSource;

/// The `prometheus` crate (0.14) this crate's [`HandoffBuilder::registry`] takes: use it
/// through this path (`promdrop_writer::prometheus::Registry`) and there is one version of it
/// in the build. For another version, see [`HandoffBuilder::text_source`].
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use prometheus;

/// The `prometheus-client` crate (0.26) that [`HandoffBuilder::prometheus_client`] takes.
#[cfg(feature = "prometheus-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus-client")))]
pub use prometheus_client;

/// The `opentelemetry` API crate (0.33) that goes with [`opentelemetry_sdk`].
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use opentelemetry;

/// The `opentelemetry_sdk` crate (0.33) whose `SdkMeterProvider` and `PushMetricExporter`
/// [`otel::FileExporter`] and [`HandoffBuilder::meter_provider`] work with.
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use opentelemetry_sdk;
pub use source::{Collected, Source, SourceError, TextSource};
