//! What the write protocol costs on top of encoding, for a `prometheus::Registry` of 10,000
//! series (the shape of the example job's `--series 10000`):
//!
//! - `encode`: gather and encode with the prometheus crate's text encoder, the floor;
//! - `encode_write_fsync`: that, plus one plain `File::create` + `write_all` + `sync_all`
//!   (what a careful hand-written writer would do, without atomicity);
//! - `write_registry`: the full protocol (lock, O_EXCL temporary file, write, fsync, chmod,
//!   rename, fsync of the directory);
//! - `handoff_flush`: a `Handoff` snapshot: grouping labels, header, outcome metrics, and the
//!   previous file read back under the lock for the last-success timestamp.
//!
//! The goal is `write_registry` ≤ 1.2 × `encode_write_fsync`. Files go to a temporary
//! directory under `$TMPDIR` (default `/tmp`): run it on the file system you care about.
//! `bench/writer.sh` runs it and prints the ratio.

use std::fs::File;
use std::io::Write;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use promdrop_writer::{Handoff, write_registry};
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// A registry of `series` counter series shaped like the descheduler's evictions.
fn registry(series: usize) -> Registry {
    let registry = Registry::new();
    let evicted = IntCounterVec::new(
        Opts::new("descheduler_pods_evicted", "Number of evicted pods."),
        &["result", "strategy", "namespace", "node"],
    )
    .unwrap();
    registry.register(Box::new(evicted.clone())).unwrap();
    for i in 0..series {
        evicted
            .with_label_values(&[
                "success",
                "HighNodeUtilization",
                &format!("namespace-{i}"),
                &format!("node-{}", i % 100),
            ])
            .inc_by(i as u64 % 7 + 1);
    }
    registry
}

fn bench(c: &mut Criterion) {
    let registry = registry(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("write_10k_series");
    group.sample_size(40);
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1 << 20);
            TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            out
        })
    });

    let plain = dir.path().join("plain.prom");
    group.bench_function("encode_write_fsync", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1 << 20);
            TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            let mut file = File::create(&plain).unwrap();
            file.write_all(&out).unwrap();
            file.sync_all().unwrap();
        })
    });

    let atomic = dir.path().join("atomic.prom");
    group.bench_function("write_registry", |b| {
        b.iter(|| write_registry(&registry, &atomic).unwrap())
    });

    let guard = Handoff::builder("bench")
        .dir(dir.path())
        .registry(&registry)
        .flush_every(Duration::ZERO)
        .signals(false)
        .panic_hook(false)
        .completion_index(None)
        .install()
        .unwrap();
    group.bench_function("handoff_flush", |b| b.iter(|| guard.flush().unwrap()));
    group.finish();
    guard.finish(promdrop_writer::Outcome::Success).unwrap();
}

/// The protocol's overhead measured interleaved: one `encode_write_fsync` and one
/// `write_registry` per round, alternating which goes first, so that load that comes and goes
/// on a shared machine weighs on both alike. Prints the medians and their ratio.
fn interleaved() {
    let registry = registry(10_000);
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.prom");
    let atomic = dir.path().join("atomic.prom");
    let baseline = || {
        let start = std::time::Instant::now();
        let mut out = Vec::with_capacity(1 << 20);
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let mut file = File::create(&plain).unwrap();
        file.write_all(&out).unwrap();
        file.sync_all().unwrap();
        start.elapsed()
    };
    let protocol = || {
        let start = std::time::Instant::now();
        write_registry(&registry, &atomic).unwrap();
        start.elapsed()
    };
    let (mut base, mut full) = (Vec::new(), Vec::new());
    for round in 0..200 {
        if round % 2 == 0 {
            base.push(baseline());
            full.push(protocol());
        } else {
            full.push(protocol());
            base.push(baseline());
        }
    }
    base.sort();
    full.sort();
    let (b, f) = (base[base.len() / 2], full[full.len() / 2]);
    println!(
        "interleaved, 200 rounds, median: encode_write_fsync {:.2} ms, write_registry {:.2} ms, ratio {:.3}",
        b.as_secs_f64() * 1000.0,
        f.as_secs_f64() * 1000.0,
        f.as_secs_f64() / b.as_secs_f64()
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        interleaved();
    }
}
