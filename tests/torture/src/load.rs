//! load: many concurrent scrapers (keep-alive connections, half asking for gzip) for a while,
//! as files change a number of times a second. No request may fail, no response may hold a
//! torn or mixed-generation file, and memory must stay flat: the exporter's RSS is sampled
//! every second, and its growth past the warm-up must stay under a bound.
//!
//! Reports requests per second and p50/p99 latency (measured by the scrapers, which also
//! parse and check every body on the same cores, so the figures are conservative).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::check;
use crate::churn::{self, Generations};
use crate::{Errors, Report, Rng, mib, percentile};

/// The load scenario's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed.
    pub seed: u64,
    /// How long the scrapers run.
    pub duration: Duration,
    /// Concurrent scrapers.
    pub scrapers: usize,
    /// Files.
    pub files: usize,
    /// Most samples in a file (each version has half to all of them).
    pub max_series: usize,
    /// File changes a second.
    pub changes_per_sec: u64,
    /// The bound on RSS growth after the warm-up, MiB.
    pub rss_growth_mib: u64,
}

impl Config {
    /// The exporter issue's settings: 50 scrapers for 60 s, files changing 20 times a second.
    pub fn full(seed: u64, duration: Duration) -> Config {
        Config {
            seed,
            duration,
            scrapers: 50,
            files: 200,
            max_series: 50,
            changes_per_sec: 20,
            rss_growth_mib: 32,
        }
    }
}

/// Runs the scenario.
pub fn run(config: &Config) -> Result<Report> {
    crate::harness::exporter_binary()?;
    let started = Instant::now();
    let errors = Errors::default();
    let tmp = crate::scratch_dir("torture-load-")?;
    let dir = tmp.path();
    println!(
        "load: seed {} duration {:?}: {} scrapers, {} files of up to {} series, {} changes/s in {}",
        config.seed,
        config.duration,
        config.scrapers,
        config.files,
        config.max_series,
        config.changes_per_sec,
        dir.display()
    );
    let mut rng = Rng::derive(config.seed, 0);
    churn::seed_files(dir, config.files, config.max_series, &mut rng)?;
    let mut exporter = crate::harness::start_exporter(
        dir,
        &[
            format!("--source-label={}", check::SOURCE_LABEL),
            // As many requests in flight as there are scrapers, as an operator serving this
            // many would set it: above the default 40 of `--web.max-requests`, 50 scrapers
            // that all wait on a slow answer (a loaded CI host) are rightly answered 503.
            format!("--web.max-requests={}", config.scrapers.max(40)),
        ],
        Duration::from_secs(60),
    )?;
    let pid = exporter.pid();
    let generations = Generations::new(config.files, 1);
    let stop = AtomicBool::new(false);
    let spec = churn::spec(config.files);
    let address = exporter.socket_addr();
    let changes = AtomicU64::new(0);
    let rss: Mutex<Vec<(Duration, u64)>> = Mutex::new(Vec::new());
    let latencies: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
    let phase = Instant::now();
    let deadline = phase + config.duration;
    let max_scrapes = config.duration.as_secs().max(1) * 10_000;

    let figures = std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(r) = crate::harness::rss_bytes(pid) {
                    rss.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((phase.elapsed(), r));
                }
                next += Duration::from_secs(1);
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        s.spawn(|| {
            let mut rng = Rng::derive(config.seed, 1);
            let period = Duration::from_secs(1) / config.changes_per_sec.max(1) as u32;
            let mut next = Instant::now();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let fid = rng.below(config.files as u64) as usize;
                let generation = generations.started[fid].load(Ordering::SeqCst) + 1;
                generations.started[fid].store(generation, Ordering::SeqCst);
                let n = rng.range(config.max_series as u64 / 2, config.max_series as u64) as usize;
                match promdrop_writer::write_atomic(
                    dir.join(check::file_name(fid)),
                    check::file_text(fid, generation, n.max(1), 0),
                ) {
                    Ok(()) => {
                        changes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.add(format!("write_atomic: {e}")),
                }
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        let scrapers: Vec<_> = (0..config.scrapers)
            .map(|k| {
                let (errors, stop, spec, generations, latencies) =
                    (&errors, &stop, &spec, &generations, &latencies);
                let mut rng = Rng::derive(config.seed, 5000 + k as u64);
                s.spawn(move || {
                    let mut mine = Vec::with_capacity(4096);
                    let figures = churn::scrape_loop(
                        || (0, address),
                        |_| false,
                        spec,
                        Some(generations),
                        &mut rng,
                        stop,
                        deadline,
                        max_scrapes,
                        &format!("scraper {k}"),
                        errors,
                        Some(&mut mine),
                    );
                    latencies
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(mine);
                    figures
                })
            })
            .collect();
        let total = churn::join_scrapers(scrapers, &errors);
        stop.store(true, Ordering::Relaxed);
        total
    });
    let elapsed = phase.elapsed();
    let settled = churn::settle(
        &exporter,
        dir,
        config.files,
        Duration::from_secs(20),
        &errors,
    );
    if let Some(status) = exporter.exited() {
        errors.add(format!("the exporter exited: {status}"));
    }
    let peak = crate::harness::rss_peak_bytes(pid).unwrap_or(0);
    if errors.count() > 0 {
        eprintln!("load: the exporter's last log lines:\n{}", exporter.log());
    }
    exporter.kill();

    // Memory: flat after the warm-up (the first fifth of the run, at least 2 s).
    let rss = rss.into_inner().unwrap_or_else(|e| e.into_inner());
    let warmup = (config.duration / 5).max(Duration::from_secs(2));
    let start = rss.first().map_or(0, |r| r.1);
    let end = rss.last().map_or(0, |r| r.1);
    let max = rss.iter().map(|r| r.1).max().unwrap_or(0);
    let after_warmup: Vec<u64> = rss.iter().filter(|r| r.0 >= warmup).map(|r| r.1).collect();
    let base = after_warmup.first().copied().unwrap_or(start);
    let growth = after_warmup
        .iter()
        .max()
        .copied()
        .unwrap_or(base)
        .saturating_sub(base);
    if after_warmup.len() < 2 {
        errors.add(format!(
            "too few RSS samples after the warm-up of {warmup:?} to judge memory: run longer"
        ));
    } else if growth > config.rss_growth_mib << 20 {
        errors.add(format!(
            "the exporter's RSS grew by {} after the warm-up (from {}), over the bound of {} MiB",
            mib(growth),
            mib(base),
            config.rss_growth_mib
        ));
    }
    let mut latencies = latencies.into_inner().unwrap_or_else(|e| e.into_inner());
    latencies.sort();
    if figures.scrapes == 0 {
        errors.add("no scrape succeeded");
    }
    let secs = elapsed.as_secs_f64();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut report = Report::new("load", config.seed, started.elapsed(), &errors);
    report
        .figure(
            "scrapers / files / changes per second",
            format!(
                "{} / {} of {}..{} series / {}",
                config.scrapers,
                config.files,
                config.max_series / 2,
                config.max_series,
                config.changes_per_sec
            ),
        )
        .figure("run time", format!("{secs:.1} s"))
        .figure(
            "file changes",
            format!(
                "{} ({:.1}/s)",
                changes.load(Ordering::Relaxed),
                changes.load(Ordering::Relaxed) as f64 / secs
            ),
        )
        .figure(
            "requests",
            format!(
                "{} ({:.0}/s, {} gzip), failures {}",
                figures.scrapes,
                figures.scrapes as f64 / secs,
                figures.gzipped,
                figures.failures
            ),
        )
        .figure(
            "latency p50 / p99 / max",
            format!(
                "{} / {} / {}",
                ms(percentile(&latencies, 50.0)),
                ms(percentile(&latencies, 99.0)),
                ms(latencies.last().copied().unwrap_or_default())
            ),
        )
        .figure("samples checked", figures.samples)
        .figure("file updates seen by scrapers", figures.updates_seen)
        .figure("violations", figures.violations)
        .figure(
            "exporter RSS start / max / end",
            format!("{} / {} / {}", mib(start), mib(max), mib(end)),
        )
        .figure(
            "RSS growth after warm-up",
            format!(
                "{} (warm-up {:.0} s, bound {} MiB; peak VmHWM {})",
                mib(growth),
                warmup.as_secs_f64(),
                config.rss_growth_mib,
                mib(peak)
            ),
        )
        .figure("settled to disk in", churn::settled_text(settled));
    report.errors = errors.count();
    report.messages = errors.kept();
    Ok(report)
}
