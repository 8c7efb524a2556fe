//! The torture scenarios with short, CI-sized settings: each must find zero errors.
//!
//! They run one at a time (they share the machine's two cores and the exporter's RSS is
//! measured). `PROMDROP_TORTURE_SEED=N` replays a seed; otherwise the seed comes from the
//! clock and is printed. The long settings: `cargo run --release -p promdrop-torture -- all
//! --duration 300` (tests/torture/README.md).

use std::sync::Mutex;
use std::time::Duration;

use promdrop_torture::{Report, churn, crashes, diskfull, hostile, load, time_seed};

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn seed() -> u64 {
    let seed = std::env::var("PROMDROP_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(time_seed);
    println!("seed {seed} (replay with PROMDROP_TORTURE_SEED={seed})");
    seed
}

fn assert_passed(report: anyhow::Result<Report>) {
    let report = report.unwrap_or_else(|e| panic!("the scenario could not run: {e:#}"));
    print!("{}", report.render());
    assert!(
        report.passed(),
        "{} found {} errors (seed {}):\n{}",
        report.scenario,
        report.errors,
        report.seed,
        report.render()
    );
}

#[test]
fn churn() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = churn::Config::full(seed(), Duration::from_secs(6));
    assert_passed(churn::run(&config));
}

#[test]
fn crashes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = crashes::Config {
        writers: 8,
        files: 200,
        scrapers: 4,
        exporter_life_ms: (300, 2000),
        ..crashes::Config::full(
            seed(),
            Duration::from_secs(8),
            env!("CARGO_BIN_EXE_promdrop-torture").into(),
        )
    };
    assert_passed(crashes::run(&config));
}

#[test]
fn hostile() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = hostile::Config::full(seed(), Duration::from_secs(5));
    assert_passed(hostile::run(&config));
}

/// Mounts a tmpfs: needs root, as CI has. Without it the test fails, saying so; it never
/// skips.
#[test]
fn disk_full() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = diskfull::Config::full(seed(), Duration::from_secs(4));
    assert_passed(diskfull::run(&config));
}

#[test]
fn load() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = load::Config::full(seed(), Duration::from_secs(10));
    assert_passed(load::run(&config));
}
