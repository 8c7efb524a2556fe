//! A tokio job with its own graceful shutdown, handing its metrics off with promdrop.
//!
//! ```text
//! cargo run -p promdrop-writer --example tokio_job -- --dir DIR [--drain SECS] [--deadline SECS]
//! ```
//!
//! It processes an item every 10 ms until SIGTERM or SIGINT, then drains for SECS (default
//! 2) processing the items in flight, and ends with `guard.finish_with`. The handoff is in
//! [`graceful_shutdown`](promdrop_writer::HandoffBuilder::graceful_shutdown) mode: the
//! signal is only recorded (and a snapshot written), so the final write comes after the
//! drain and counts what it did (`tokio_job_drained_total`), with `reason="signal"`. Had
//! the drain taken longer than the deadline (`--deadline`, 10 s by default), promdrop would
//! have written and exited with 143 itself. It exits with 143 after a signal, 0 otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use promdrop_writer::Handoff;
use promdrop_writer::prometheus::{IntCounter, Registry};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut drain, mut deadline) = (None, 2.0f64, 10.0f64);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--drain" => drain = args.next().ok_or("--drain SECS")?.parse()?,
            "--deadline" => deadline = args.next().ok_or("--deadline SECS")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let registry = Registry::new();
    let processed = IntCounter::new("tokio_job_processed_total", "Items processed.")?;
    let drained = IntCounter::new("tokio_job_drained_total", "Items processed while draining.")?;
    registry.register(Box::new(processed.clone()))?;
    registry.register(Box::new(drained.clone()))?;

    let mut builder = Handoff::builder("tokio-job")
        .registry(&registry)
        .graceful_shutdown(Duration::from_secs_f64(deadline));
    if let Some(dir) = dir {
        builder = builder.dir(dir);
    }
    let guard = builder.install()?;
    // The job's own handlers: tokio sees the signals as well as promdrop does.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    println!("started");
    std::io::stdout().flush()?;

    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tick.tick() => processed.inc(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // The graceful shutdown: finish the items in flight.
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(drain);
    while tokio::time::Instant::now() < until {
        tick.tick().await;
        drained.inc();
    }
    let signalled = guard.signal();
    let result: Result<(), std::io::Error> = Ok(());
    guard.finish_with(result)?;
    Ok(match signalled {
        Some(signal) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(255)),
        None => ExitCode::SUCCESS,
    })
}
