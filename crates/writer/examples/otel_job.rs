//! An OpenTelemetry job handing its metrics off with promdrop: the safe pattern.
//!
//! ```text
//! cargo run -p promdrop-writer --example otel_job --features opentelemetry -- \
//!     --dir DIR [--items N] [--sleep SECS] [--panic]
//! ```
//!
//! It counts N items (default 100) with an OpenTelemetry counter, prints `counted`, sleeps
//! SECS, and ends: success, or a panic with `--panic`. The handoff knows the meter provider
//! (`HandoffBuilder::meter_provider`), so whatever the ending (success, `?`, panic, SIGTERM
//! during the sleep), the file holds `otel_job_items_total N`, although the SDK's periodic
//! reader would export only after 60 s.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use promdrop_writer::opentelemetry::KeyValue;
use promdrop_writer::opentelemetry::metrics::MeterProvider as _;
use promdrop_writer::opentelemetry_sdk::metrics::SdkMeterProvider;
use promdrop_writer::{Handoff, otel::FileExporter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut items, mut sleep, mut panic) = (None, 100u64, 0.0f64, false);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--items" => items = args.next().ok_or("--items N")?.parse()?,
            "--sleep" => sleep = args.next().ok_or("--sleep SECS")?.parse()?,
            "--panic" => panic = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    // One exporter, shared by the provider (which exports to it) and the handoff (which
    // writes what it exported); the provider, so that each write flushes it first.
    let exporter = FileExporter::new();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter.clone())
        .build();
    let mut builder = Handoff::builder("otel-job")
        .opentelemetry(&exporter)
        .meter_provider(provider.clone());
    if let Some(dir) = dir {
        builder = builder.dir(dir);
    }
    let guard = builder.install()?;

    let counter = provider
        .meter("otel-job")
        .u64_counter("otel_job_items")
        .build();
    for _ in 0..items {
        counter.add(1, &[KeyValue::new("kind", "document")]);
    }
    println!("counted");
    std::io::stdout().flush()?;
    std::thread::sleep(Duration::from_secs_f64(sleep));
    if panic {
        panic!("otel_job: --panic was given");
    }
    let result: Result<(), std::io::Error> = Ok(());
    guard.finish_with(result)?;
    // After the final write: shutting the provider down writes nothing more.
    provider.shutdown()?;
    Ok(())
}
