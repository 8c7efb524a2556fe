//! promdrop-exporter: serves the Prometheus metrics that short-lived jobs hand off as files.
//!
//! Jobs write `<job>.prom` files atomically into a shared directory (with promdrop-writer,
//! Go's `WriteToTextfile`, Python's `write_to_textfile` or a shell `mv`). The exporter watches
//! the directories, parses each file once per change, merges the files into one exposition,
//! tracks how old each file is, and serves bytes prepared in advance, so a scrape costs a
//! memory copy instead of a re-parse of every file.
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//! watch (notify + rescan timer) ─▶ discovery (list, symlink policy, identity)
//!   ─▶ snapshot (read with a size limit, parse)  ─▶ staleness (state, next transition)
//!   ─▶ exposition (merge, meta metrics, render, gzip) ─▶ http (hands out prepared bytes)
//! ```
//!
//! [`engine`] is the task that drives the stages; [`run`] wires everything together and is
//! what the `promdrop-exporter` binary calls.
//!
//! # Building a configuration
//!
//! ```
//! use promdrop_exporter::{Config, TimestampPolicy};
//!
//! let config = Config::from_args([
//!     "promdrop-exporter",
//!     "--textfile.directory=/var/lib/promdrop",
//!     "--textfile.directory=/run/jobs",
//!     "--timestamps=strip",
//!     "--source-label=source_file",
//! ])?;
//! assert_eq!(config.directories.len(), 2);
//! assert_eq!(config.timestamps, TimestampPolicy::Strip);
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```
//!
//! # Rendering files without a server
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use promdrop_exporter::exposition::{render_classic_body, Counters, ExpositionOptions};
//! use promdrop_textfile::discovery::FileIdentity;
//! use promdrop_textfile::snapshot::{parse_bytes, ReadOptions};
//! use promdrop_textfile::staleness::{FileState, FileView, Policy, Timing};
//! use promdrop_exporter::TimestampPolicy;
//!
//! let read = ReadOptions { max_bytes: 1 << 20, max_series: 1000, timestamps: TimestampPolicy::Reject };
//! let identity = FileIdentity { dev: 1, ino: 7, size: 40, mtime_ns: 0 };
//! let snapshot = parse_bytes(
//!     "/var/lib/promdrop/backup.prom".into(),
//!     identity,
//!     Bytes::from("# TYPE backup_ok gauge\nbackup_ok 1\n"),
//!     &read,
//! );
//! let timing = Timing::of(&snapshot, &Policy::default());
//! let view = FileView { snapshot: Arc::new(snapshot), timing, state: FileState::Fresh };
//! let body = render_classic_body(&[view], &ExpositionOptions::default(), &mut Counters::default());
//! assert!(body.starts_with("# TYPE backup_ok gauge\nbackup_ok 1\n"));
//! assert!(body.contains("promdrop_file_error{file=\"/var/lib/promdrop/backup.prom\"} 0\n"));
//! ```
#![deny(missing_docs)]

pub mod adopt;
pub mod config;
pub mod engine;
mod error;
pub mod exposition;
pub mod gzip;
pub mod http;
pub mod logging;
pub mod meta;
pub mod names;
pub mod pending;
pub mod process;
pub mod routes;
pub mod status;
pub mod transport;
pub mod watch;
pub mod watchdog;

use std::sync::Arc;

pub use config::{Config, LogFormat, LogLevel};
pub use error::Error;
pub use promdrop_textfile::TimestampPolicy;

/// Runs the exporter with `config` until SIGTERM or SIGINT: loads `--web.config.file`, binds
/// the listener, starts the watcher and the engine, serves HTTP (or HTTPS), and shuts down
/// gracefully.
///
/// The bound address is logged as `msg=listening address=HOST:PORT` (useful with port 0).
pub async fn run(config: Config) -> Result<(), Error> {
    config.validate()?;
    let web = transport::WebTransport::load(config.web_config_file.as_deref())?;
    let settings = engine::Settings::from_config(&config);
    let listener = http::bind(&config.listen_address).await?;
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.listen_address.clone());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        directories = ?settings.directories,
        events = config.watch_events,
        rescan_interval = ?config.rescan_interval,
        "starting promdrop-exporter"
    );
    tracing::info!(address = %address, "listening");

    let mut shared = exposition::Shared::new(&config.telemetry_path);
    shared.scrape_metrics.push(transport::render_metrics);
    let shared = Arc::new(shared);
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let watcher = tokio::spawn(watch::run(
        settings.directories.clone(),
        config.watch_events,
        config.tenancy,
        config.rescan_interval,
        watch::EventSender::new(events_tx, Arc::clone(&shared.pending)),
    ));
    let watchdog = Arc::new(watchdog::Watchdog::new(config.watchdog_timeout));
    let engine = engine::Engine::new(settings, Arc::clone(&shared))
        .with_watchdog(Arc::clone(&watchdog))
        .run(events_rx, stop_rx.clone());
    let mut engine = start_engine(engine)?;
    let reloaders = web.spawn_reloading(config.web_config_reload_interval);
    let state = routes::State {
        shared,
        telemetry_path: config.telemetry_path.clone(),
        watchdog,
    };
    let server = tokio::spawn(http::serve(
        listener,
        web,
        state,
        http::Limits {
            max_connections: config.max_connections,
            max_requests: config.max_requests,
            write_timeout: config.write_timeout,
        },
        stop_rx,
    ));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    watcher.abort();
    reloaders.iter().for_each(|task| task.abort());
    let _ = server.await;
    // An engine stuck in a blocking call (the watchdog's case) must not keep the process
    // alive: give it a moment, then leave it (the binary shuts the runtime down with a
    // timeout, so a blocked thread does not hold the exit either).
    if tokio::time::timeout(http::SHUTDOWN_GRACE, &mut engine)
        .await
        .is_err()
    {
        tracing::warn!("the engine did not stop in time; exiting without it");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the engine on a thread of its own, with a runtime of its own (timers and channels
/// only): its blocking work (stat, read, publication) runs there, without a handoff to the
/// blocking pool, and without holding up the workers that serve scrapes. The receiver
/// resolves when the engine has stopped.
fn start_engine(
    engine: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<()>, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Engine)?;
    let (stopped, on_stop) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("promdrop-engine".into())
        .spawn(move || {
            runtime.block_on(engine);
            let _ = stopped.send(());
        })
        .map_err(Error::Engine)?;
    Ok(on_stop)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
