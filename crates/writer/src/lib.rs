//! Hands a short-lived job's Prometheus metrics to Prometheus through a file on a shared volume.
//!
//! ```
//! use promdrop_writer::{Handoff, Outcome};
//! # fn deschedule(_: &prometheus::Registry) -> Result<(), String> { Ok(()) }
//! # let tmp = tempfile::tempdir()?; let dir = tmp.path();
//! let registry = prometheus::Registry::new(); // the job registers its metrics here
//! let guard = Handoff::builder("descheduler").dir(dir).registry(&registry).install()?;
//! let result = deschedule(&registry); // the job's work
//! guard.finish(Outcome::from(result.is_ok()))?; // one atomic write of <dir>/descheduler.prom
//! # assert!(std::fs::read_to_string(dir.join("descheduler.prom"))?.contains("promdrop_job_success{job_name=\"descheduler\"} 1\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
//!   `promdrop_job_exit_reason` (`success`, `error`, `panic` or `signal`: 1 for the one that
//!   applies, 0 for the others), and `promdrop_job_last_success_timestamp_seconds`, carried
//!   forward from the previous file by a run that did not succeed. Families whose names start
//!   with `promdrop_job_` are reserved: a source's families of that prefix are left out.
//! - The file is named after the job, never after the pod, so each run replaces the last:
//!   `<job>.prom`, or `<job>-<index>.prom` when `JOB_COMPLETION_INDEX` is set.
//!
//! # When it is written
//!
//! [`HandoffGuard::finish`], the guard's drop (a panic while dropping makes it
//! `reason="panic"`), a panic hook (which works with `panic = "abort"` too), SIGTERM and
//! SIGINT (feature `signals`: write, then exit with 128 + the signal, or hand control back
//! with `HandoffBuilder::on_signal`), and [`HandoffGuard::exit`] for jobs that call
//! `process::exit`. Exactly one of these does the final write; the others wait for it and
//! write nothing. While the job runs, a snapshot is written every
//! [`flush_every`](HandoffBuilder::flush_every) (60 s by default), so that a job killed with
//! SIGKILL or by the OOM killer leaves its last metrics, marked `promdrop_job_running 1`.
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
//!   `SdkMeterProvider::shutdown()` or `force_flush()` writes the file.
//! - Any closure that returns exposition text: [`HandoffBuilder::text_source`].
//!
//! Whatever the source, the file is classic text format 0.0.4, as node_exporter's textfile
//! collector and the promdrop exporter read it.
#![deny(missing_docs)]

mod atomic;
mod compose;
mod error;
mod handoff;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod source;

pub use atomic::{
    TargetLock, WriteOptions, lock_path, write_atomic, write_atomic_with, write_registry,
    write_registry_with,
};
pub use error::Error;
pub use handoff::{
    COMPLETION_INDEX_ENV, DEFAULT_DIR, DIR_ENV, Handoff, HandoffBuilder, HandoffGuard, Outcome,
    POD_NAMESPACE_ENV, ProcessExit,
};
#[cfg(feature = "prometheus-client")]
pub use source::PrometheusClientSource;
pub use source::{Collected, Source, SourceError, TextSource};
