//! churn: many writer threads rewrite many files with `promdrop_writer::write_atomic` while
//! scraper threads read `/metrics` (plain and gzip) and check every response: no file mixes
//! two generations, none is partial or absent, none comes from another file, and none goes
//! back in time for a given scraper. Once the writers stop, the exporter must serve exactly
//! what a fresh parse of every file on disk gives.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::check::{self, Spec, Version};
use crate::harness::{Client, Exporter};
use crate::{Errors, Report, Rng};

/// The churn scenario's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed.
    pub seed: u64,
    /// How long writers and scrapers run.
    pub duration: Duration,
    /// Writer threads.
    pub writers: usize,
    /// Files (each owned by one writer thread).
    pub files: usize,
    /// Scraper threads.
    pub scrapers: usize,
    /// Most samples in a file (each version has 1..=this many).
    pub max_series: usize,
}

impl Config {
    /// The settings: 100 writers, 1,000 files, 20 scrapers.
    pub fn full(seed: u64, duration: Duration) -> Config {
        Config {
            seed,
            duration,
            writers: 100,
            files: 1000,
            scrapers: 20,
            max_series: 20,
        }
    }
}

/// The spec every response is checked against.
pub fn spec(files: usize) -> Spec {
    Spec {
        files,
        require_all: true,
        source_label: Some(check::SOURCE_LABEL),
    }
}

/// Per-file generations shared between writers and checkers.
pub struct Generations {
    /// The generation being written (set before `write_atomic` is called).
    pub started: Vec<AtomicU64>,
}

impl Generations {
    /// Files `0..files`, all at generation `first`.
    pub fn new(files: usize, first: u64) -> Generations {
        Generations {
            started: (0..files).map(|_| AtomicU64::new(first)).collect(),
        }
    }
}

/// Writes generation 1 of files `0..files`.
pub fn seed_files(dir: &Path, files: usize, max_series: usize, rng: &mut Rng) -> Result<()> {
    for fid in 0..files {
        let n = rng.range(1, max_series as u64) as usize;
        promdrop_writer::write_atomic(
            dir.join(check::file_name(fid)),
            check::file_text(fid, 1, n, 0),
        )
        .with_context(|| format!("writing {}", check::file_name(fid)))?;
    }
    Ok(())
}

/// What one scraper thread counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScrapeFigures {
    /// Responses checked.
    pub scrapes: u64,
    /// Of which gzip-compressed.
    pub gzipped: u64,
    /// Torture samples checked.
    pub samples: u64,
    /// Violations found.
    pub violations: u64,
    /// Files seen at a newer generation than in this scraper's previous response.
    pub updates_seen: u64,
    /// Request failures (connection, timeout, status).
    pub failures: u64,
}

impl std::ops::AddAssign for ScrapeFigures {
    fn add_assign(&mut self, o: ScrapeFigures) {
        self.scrapes += o.scrapes;
        self.gzipped += o.gzipped;
        self.samples += o.samples;
        self.violations += o.violations;
        self.updates_seen += o.updates_seen;
        self.failures += o.failures;
    }
}

/// Joins scraper threads and adds up their figures; a thread that panicked is an error.
pub fn join_scrapers<'scope>(
    scrapers: Vec<std::thread::ScopedJoinHandle<'scope, ScrapeFigures>>,
    errors: &Errors,
) -> ScrapeFigures {
    let mut total = ScrapeFigures::default();
    for h in scrapers {
        match h.join() {
            Ok(f) => total += f,
            Err(_) => errors.add("a scraper thread panicked"),
        }
    }
    total
}

/// Scrapes `/metrics` until `stop` or `deadline` (and at most `max_scrapes` times), checking
/// each response; with `generations`, also that no file is served at a generation not yet
/// written. Failures are errors unless `tolerate_failure` says otherwise (the exporter being
/// restarted on purpose).
#[allow(clippy::too_many_arguments)]
pub fn scrape_loop(
    address: impl Fn() -> (u64, std::net::SocketAddr),
    tolerate_failure: impl Fn(u64) -> bool,
    spec: &Spec,
    generations: Option<&Generations>,
    rng: &mut Rng,
    stop: &AtomicBool,
    deadline: Instant,
    max_scrapes: u64,
    name: &str,
    errors: &Errors,
    mut latency: Option<&mut Vec<Duration>>,
) -> ScrapeFigures {
    let mut figures = ScrapeFigures::default();
    let mut last: Vec<Option<Version>> = vec![None; spec.files];
    let (mut epoch, mut addr) = address();
    let mut client = Client::new(addr, Duration::from_secs(20));
    while !stop.load(Ordering::Relaxed)
        && Instant::now() < deadline
        && figures.scrapes < max_scrapes
    {
        let (e, a) = address();
        if e != epoch {
            // The exporter was restarted: a new process, a new history.
            epoch = e;
            addr = a;
            client = Client::new(addr, Duration::from_secs(20));
            last = vec![None; spec.files];
        }
        let gzip = rng.chance(0.5);
        let started = Instant::now();
        let response = client.get("/metrics", gzip);
        let took = started.elapsed();
        let response = match response {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                figures.failures += 1;
                errors.add(format!("{name}: /metrics answered {}", r.status));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                if tolerate_failure(epoch) {
                    std::thread::sleep(Duration::from_millis(5));
                } else {
                    figures.failures += 1;
                    errors.add(format!("{name}: GET /metrics: {e:#}"));
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        let body = match response.decoded() {
            Ok(body) => body,
            Err(e) => {
                figures.failures += 1;
                errors.add(format!("{name}: decoding the gzip body of /metrics: {e}"));
                continue;
            }
        };
        if let Some(l) = latency.as_deref_mut() {
            l.push(took);
        }
        figures.scrapes += 1;
        figures.gzipped += u64::from(response.gzipped());
        let context = format!(
            "{name} scrape {} ({})",
            figures.scrapes,
            if response.gzipped() { "gzip" } else { "plain" }
        );
        let seen = check::check_body(&body, spec, &context, errors);
        figures.samples += seen.samples;
        figures.violations += seen.violations;
        for (fid, version) in seen.versions.iter().enumerate() {
            let Some(v) = version else { continue };
            if let Some(previous) = last[fid] {
                if v.generation < previous.generation {
                    figures.violations += 1;
                    errors.add(format!(
                        "{context}: {} went back from gen {} to gen {}",
                        check::file_name(fid),
                        previous.generation,
                        v.generation
                    ));
                } else if v.generation > previous.generation {
                    figures.updates_seen += 1;
                }
            }
            if let Some(g) = generations {
                let started = g.started[fid].load(Ordering::SeqCst);
                if v.generation > started {
                    figures.violations += 1;
                    errors.add(format!(
                        "{context}: {} served at gen {} but only gen {started} was started",
                        check::file_name(fid),
                        v.generation
                    ));
                }
            }
            last[fid] = Some(*v);
        }
    }
    figures
}

/// Waits (at most `within`; one attempt at least) until the exporter serves, for every file,
/// exactly the version a fresh parse of the file on disk gives. Returns how long it took, or
/// `None` (and an error) when it did not happen.
pub fn settle(
    exporter: &Exporter,
    dir: &Path,
    files: usize,
    within: Duration,
    errors: &Errors,
) -> Option<Duration> {
    let started = Instant::now();
    let mut disk = Vec::with_capacity(files);
    for fid in 0..files {
        match check::read_version(dir, fid) {
            Ok(v) => disk.push(Some(v)),
            Err(e) => {
                errors.add(format!("fresh parse of the file on disk: {e}"));
                disk.push(None);
            }
        }
    }
    let spec = spec(files);
    let mut client = exporter.client(Duration::from_secs(20));
    let mut last_difference;
    loop {
        match client.get("/metrics", false) {
            Ok(r) if r.status == 200 => {
                let seen = check::check_body(&r.body, &spec, "settling", errors);
                let differing: Vec<String> = (0..files)
                    .filter(|&fid| disk[fid].is_some() && seen.versions[fid] != disk[fid])
                    .map(|fid| {
                        format!(
                            "{}: served {:?}, on disk {:?}",
                            check::file_name(fid),
                            seen.versions[fid],
                            disk[fid]
                        )
                    })
                    .collect();
                if differing.is_empty() {
                    return Some(started.elapsed());
                }
                last_difference = format!(
                    "{} files differ, e.g. {}",
                    differing.len(),
                    differing.into_iter().take(3).collect::<Vec<_>>().join("; ")
                );
            }
            Ok(r) => last_difference = format!("/metrics answered {}", r.status),
            Err(e) => last_difference = format!("GET /metrics: {e:#}"),
        }
        if started.elapsed() >= within {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    errors.add(format!(
        "the exporter did not serve what is on disk within {within:?}: {last_difference}"
    ));
    None
}

/// A settling time for a report.
pub fn settled_text(settled: Option<Duration>) -> String {
    settled.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// Entries of `dir` other than torture files and their lock files: temporary debris.
pub fn debris(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![format!("cannot list {}", dir.display())];
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let file = n.starts_with('f') && n.ends_with(".prom");
            let lock = n.starts_with(".f") && n.ends_with(".prom.lock");
            !(file || lock)
        })
        .collect()
}

/// Runs the scenario.
pub fn run(config: &Config) -> Result<Report> {
    crate::harness::exporter_binary()?;
    let started = Instant::now();
    let errors = Errors::default();
    let tmp = crate::scratch_dir("torture-churn-")?;
    let dir = tmp.path();
    println!(
        "churn: seed {} duration {:?}: {} writers, {} files, {} scrapers in {}",
        config.seed,
        config.duration,
        config.writers,
        config.files,
        config.scrapers,
        dir.display()
    );
    let mut rng = Rng::derive(config.seed, 0);
    seed_files(dir, config.files, config.max_series, &mut rng)?;
    let mut exporter = crate::harness::start_exporter(
        dir,
        &[format!("--source-label={}", check::SOURCE_LABEL)],
        Duration::from_secs(60),
    )?;
    let rss_start = exporter.rss_bytes().unwrap_or(0);
    let generations = Generations::new(config.files, 1);
    let stop = AtomicBool::new(false);
    let phase = Instant::now();
    let deadline = Instant::now() + config.duration;
    let written = AtomicU64::new(0);
    let spec = spec(config.files);
    let address = exporter.socket_addr();
    let max_scrapes = config.duration.as_secs().max(1) * 2000;

    let figures = std::thread::scope(|s| {
        for w in 0..config.writers {
            let (generations, written, errors, stop) = (&generations, &written, &errors, &stop);
            let mut rng = Rng::derive(config.seed, 1000 + w as u64);
            let owned: Vec<usize> = (w..config.files).step_by(config.writers).collect();
            if owned.is_empty() {
                continue;
            }
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let fid = owned[rng.below(owned.len() as u64) as usize];
                    let generation = generations.started[fid].load(Ordering::SeqCst) + 1;
                    let n = rng.range(1, config.max_series as u64) as usize;
                    generations.started[fid].store(generation, Ordering::SeqCst);
                    let text = check::file_text(fid, generation, n, 0);
                    match promdrop_writer::write_atomic(dir.join(check::file_name(fid)), text) {
                        Ok(()) => {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.add(format!("writer {w}: write_atomic: {e}")),
                    }
                }
            });
        }
        let scrapers: Vec<_> = (0..config.scrapers)
            .map(|k| {
                let (generations, errors, stop, spec) = (&generations, &errors, &stop, &spec);
                let mut rng = Rng::derive(config.seed, 5000 + k as u64);
                s.spawn(move || {
                    scrape_loop(
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
                        None,
                    )
                })
            })
            .collect();
        let total = join_scrapers(scrapers, &errors);
        stop.store(true, Ordering::Relaxed);
        total
    });
    let run_time = phase.elapsed();
    let written = written.load(Ordering::Relaxed);

    let settled = settle(
        &exporter,
        dir,
        config.files,
        Duration::from_secs(30),
        &errors,
    );
    let debris = debris(dir);
    if !debris.is_empty() {
        errors.add(format!(
            "{} temporary files left behind, e.g. {:?}",
            debris.len(),
            &debris[..debris.len().min(5)]
        ));
    }
    if let Some(status) = exporter.exited() {
        errors.add(format!(
            "the exporter exited: {status}; log:\n{}",
            exporter.log()
        ));
    }
    let rss_end = exporter.rss_bytes().unwrap_or(0);
    if errors.count() > 0 {
        eprintln!("churn: the exporter's last log lines:\n{}", exporter.log());
    }
    exporter.kill();

    let mut report = Report::new("churn", config.seed, started.elapsed(), &errors);
    let secs = config.duration.as_secs_f64();
    report
        .figure(
            "writers / files / scrapers",
            format!(
                "{} / {} / {}",
                config.writers, config.files, config.scrapers
            ),
        )
        .figure("run time", format!("{:.1} s", run_time.as_secs_f64()))
        .figure(
            "files written",
            format!("{written} ({:.0}/s)", written as f64 / secs),
        )
        .figure(
            "scrapes",
            format!(
                "{} ({} gzip, {:.1}/s)",
                figures.scrapes,
                figures.gzipped,
                figures.scrapes as f64 / secs
            ),
        )
        .figure("samples checked", figures.samples)
        .figure("file updates seen by scrapers", figures.updates_seen)
        .figure("request failures", figures.failures)
        .figure("violations", figures.violations)
        .figure("settled to disk in", settled_text(settled))
        .figure("temp debris", debris.len())
        .figure(
            "exporter RSS start/end",
            format!("{} / {}", crate::mib(rss_start), crate::mib(rss_end)),
        );
    if figures.scrapes == 0 {
        errors.add("no scrape succeeded");
    }
    if written == 0 {
        errors.add("no file was written");
    }
    report.errors = errors.count();
    report.messages = errors.kept();
    Ok(report)
}
