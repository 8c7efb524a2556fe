//! crashes: writer processes (`promdrop-torture writer`) SIGKILLed at random points, and the
//! exporter SIGKILLed and restarted, during churn.
//!
//! - After each writer kill, every file of that writer is complete on disk, and at the
//!   generation the writer last acknowledged or the one after (the write in flight): nothing
//!   acknowledged is lost, nothing torn is left.
//! - After each exporter restart, its first `/metrics` holds every file, complete, at least at
//!   the generation acknowledged before the kill: nothing that was on disk is lost.
//! - Scrapers check every response as in churn while all this happens.
//! - At the end, the exporter (settled, then once more right after a last restart) serves
//!   exactly what a fresh parse of every file on disk gives.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::check;
use crate::churn::{self, ScrapeFigures};
use crate::harness::{Exporter, ProcessGuard, die_with_parent};
use crate::{Errors, Report, Rng};

/// The crashes scenario's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed.
    pub seed: u64,
    /// How long it runs.
    pub duration: Duration,
    /// The `promdrop-torture` binary (its `writer` subcommand is the writer process).
    pub torture_binary: PathBuf,
    /// Writer processes.
    pub writers: usize,
    /// Files.
    pub files: usize,
    /// Scraper threads.
    pub scrapers: usize,
    /// Most samples in a file.
    pub max_series: usize,
    /// A writer lives this long (ms, random in the range) before its SIGKILL.
    pub writer_life_ms: (u64, u64),
    /// The exporter lives this long (ms, random in the range) before its SIGKILL.
    pub exporter_life_ms: (u64, u64),
}

impl Config {
    /// The long settings.
    pub fn full(seed: u64, duration: Duration, torture_binary: PathBuf) -> Config {
        Config {
            seed,
            duration,
            torture_binary,
            writers: 16,
            files: 500,
            scrapers: 8,
            max_series: 20,
            writer_life_ms: (1, 300),
            exporter_life_ms: (300, 3000),
        }
    }
}

struct Writer {
    process: ProcessGuard,
    reader: Option<JoinHandle<()>>,
    kill_at: Instant,
}

fn spawn_writer(
    config: &Config,
    dir: &Path,
    index: usize,
    seed: u64,
    acked: &Arc<Vec<AtomicU64>>,
    life: Duration,
) -> Result<Writer> {
    let mut command = Command::new(&config.torture_binary);
    command
        .args(["writer", "--dir"])
        .arg(dir)
        .args([
            format!("--index={index}"),
            format!("--writers={}", config.writers),
            format!("--files={}", config.files),
            format!("--max-series={}", config.max_series),
            format!("--writer-seed={seed}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    die_with_parent(&mut command);
    let child = command
        .spawn()
        .with_context(|| format!("starting {} writer", config.torture_binary.display()))?;
    let mut process = ProcessGuard::new(child);
    let stdout = process.child_mut().stdout.take().expect("piped stdout");
    let acked = Arc::clone(acked);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split(' ');
            if let (Some(Ok(fid)), Some(Ok(generation))) = (
                parts.next().map(str::parse::<usize>),
                parts.next().map(str::parse::<u64>),
            ) && let Some(a) = acked.get(fid)
            {
                a.fetch_max(generation, Ordering::SeqCst);
            }
        }
    });
    Ok(Writer {
        process,
        reader: Some(reader),
        kill_at: Instant::now() + life,
    })
}

/// Kills writer `index` and checks its files on disk against what it acknowledged.
fn kill_and_check(
    writer: &mut Writer,
    config: &Config,
    dir: &Path,
    index: usize,
    acked: &[AtomicU64],
    errors: &Errors,
) -> u64 {
    if let Some(status) = writer.process.exited() {
        errors.add(format!("writer {index} exited by itself: {status}"));
    }
    writer.process.kill();
    if let Some(r) = writer.reader.take() {
        let _ = r.join();
    }
    let mut checked = 0;
    for fid in (index..config.files).step_by(config.writers) {
        let ack = acked[fid].load(Ordering::SeqCst);
        match check::read_version(dir, fid) {
            Ok(v) if v.generation == ack || v.generation == ack + 1 => {
                // The write in flight at the kill may have completed: the next writer of this
                // file continues from what is on disk, so that is the generation to count on.
                acked[fid].fetch_max(v.generation, Ordering::SeqCst);
                checked += 1;
            }
            Ok(v) => errors.add(format!(
                "after killing writer {index}: {} is at gen {} on disk, but gen {ack} was \
                 acknowledged",
                check::file_name(fid),
                v.generation
            )),
            Err(e) => errors.add(format!("after killing writer {index}: {e}")),
        }
    }
    checked
}

/// Runs the scenario.
pub fn run(config: &Config) -> Result<Report> {
    crate::harness::exporter_binary()?;
    if !config.torture_binary.is_file() {
        anyhow::bail!(
            "the torture binary {} does not exist",
            config.torture_binary.display()
        );
    }
    let started = Instant::now();
    let errors = Errors::default();
    let tmp = crate::scratch_dir("torture-crashes-")?;
    let dir = tmp.path();
    println!(
        "crashes: seed {} duration {:?}: {} writer processes, {} files, {} scrapers in {}",
        config.seed,
        config.duration,
        config.writers,
        config.files,
        config.scrapers,
        dir.display()
    );
    let mut rng = Rng::derive(config.seed, 0);
    churn::seed_files(dir, config.files, config.max_series, &mut rng)?;
    let acked: Arc<Vec<AtomicU64>> =
        Arc::new((0..config.files).map(|_| AtomicU64::new(1)).collect());
    let exporter_args = [format!("--source-label={}", check::SOURCE_LABEL)];
    let ready_within = Duration::from_secs(60);
    let mut exporter = crate::harness::start_exporter(dir, &exporter_args, ready_within)?;
    let shared: Mutex<(u64, SocketAddr)> = Mutex::new((0, exporter.socket_addr()));
    let down = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let spec = churn::spec(config.files);
    let deadline = Instant::now() + config.duration;
    let max_scrapes = config.duration.as_secs().max(1) * 2000;

    let mut writer_kills = 0u64;
    let mut files_checked_after_kill = 0u64;
    let mut exporter_restarts = 0u64;
    let mut restart_times: Vec<Duration> = Vec::new();
    let mut writers_started = 0u64;

    let figures = std::thread::scope(|s| -> Result<ScrapeFigures> {
        let scrapers: Vec<_> = (0..config.scrapers)
            .map(|k| {
                let (errors, stop, spec, shared, down) = (&errors, &stop, &spec, &shared, &down);
                let mut rng = Rng::derive(config.seed, 5000 + k as u64);
                s.spawn(move || {
                    let current = || *shared.lock().unwrap_or_else(|e| e.into_inner());
                    churn::scrape_loop(
                        current,
                        |epoch| down.load(Ordering::SeqCst) || current().0 != epoch,
                        spec,
                        None,
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

        let result = (|| -> Result<()> {
            let mut writers = Vec::with_capacity(config.writers);
            for w in 0..config.writers {
                let life = rng.millis(config.writer_life_ms.0, config.writer_life_ms.1);
                writers.push(spawn_writer(config, dir, w, rng.next_u64(), &acked, life)?);
                writers_started += 1;
            }
            let mut exporter_kill_at =
                Instant::now() + rng.millis(config.exporter_life_ms.0, config.exporter_life_ms.1);
            while Instant::now() < deadline {
                let now = Instant::now();
                for (w, writer) in writers.iter_mut().enumerate() {
                    if writer.kill_at <= now {
                        files_checked_after_kill +=
                            kill_and_check(writer, config, dir, w, &acked, &errors);
                        writer_kills += 1;
                        let life = rng.millis(config.writer_life_ms.0, config.writer_life_ms.1);
                        *writer = spawn_writer(config, dir, w, rng.next_u64(), &acked, life)?;
                        writers_started += 1;
                    }
                }
                if exporter_kill_at <= now {
                    // What was acknowledged before the kill must be served after the restart.
                    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                    down.store(true, Ordering::SeqCst);
                    exporter.kill();
                    let t = Instant::now();
                    exporter = crate::harness::start_exporter(dir, &exporter_args, ready_within)?;
                    restart_times.push(t.elapsed());
                    exporter_restarts += 1;
                    check_after_restart(&exporter, &spec, &before, exporter_restarts, &errors);
                    {
                        let mut current = shared.lock().unwrap_or_else(|e| e.into_inner());
                        *current = (current.0 + 1, exporter.socket_addr());
                    }
                    down.store(false, Ordering::SeqCst);
                    exporter_kill_at = Instant::now()
                        + rng.millis(config.exporter_life_ms.0, config.exporter_life_ms.1);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            stop.store(true, Ordering::SeqCst);
            for (w, writer) in writers.iter_mut().enumerate() {
                files_checked_after_kill += kill_and_check(writer, config, dir, w, &acked, &errors);
                writer_kills += 1;
            }
            Ok(())
        })();
        stop.store(true, Ordering::SeqCst);
        let total = churn::join_scrapers(scrapers, &errors);
        result.map(|()| total)
    })?;
    let run_time = started.elapsed();

    // Writers are gone: the exporter must settle on exactly what is on disk, and a restarted
    // one must serve it from its first scan.
    let settled = churn::settle(
        &exporter,
        dir,
        config.files,
        Duration::from_secs(30),
        &errors,
    );
    exporter.kill();
    let exporter = crate::harness::start_exporter(dir, &exporter_args, ready_within)?;
    let after_restart = churn::settle(&exporter, dir, config.files, Duration::ZERO, &errors);
    let debris = churn::debris(dir);
    if errors.count() > 0 {
        eprintln!(
            "crashes: the exporter's last log lines:\n{}",
            exporter.log()
        );
    }
    drop(exporter);

    restart_times.sort();
    let mut report = Report::new("crashes", config.seed, started.elapsed(), &errors);
    report
        .figure(
            "writer processes / files / scrapers",
            format!(
                "{} / {} / {}",
                config.writers, config.files, config.scrapers
            ),
        )
        .figure("run time", format!("{:.1} s", run_time.as_secs_f64()))
        .figure(
            "writers started / SIGKILLed",
            format!("{writers_started} / {writer_kills}"),
        )
        .figure(
            "files checked on disk after a kill",
            files_checked_after_kill,
        )
        .figure(
            "writes acknowledged",
            acked
                .iter()
                .map(|a| a.load(Ordering::SeqCst) - 1)
                .sum::<u64>(),
        )
        .figure("exporter SIGKILLs + restarts", exporter_restarts)
        .figure(
            "exporter restart to ready (median / max)",
            format!(
                "{:.0} ms / {:.0} ms",
                crate::percentile(&restart_times, 50.0).as_secs_f64() * 1000.0,
                restart_times
                    .last()
                    .copied()
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0
            ),
        )
        .figure(
            "scrapes",
            format!("{} ({} gzip)", figures.scrapes, figures.gzipped),
        )
        .figure("samples checked", figures.samples)
        .figure("violations in responses", figures.violations)
        .figure("settled to disk in", churn::settled_text(settled))
        .figure(
            "restarted exporter equal to disk",
            if after_restart.is_some() {
                "yes, at its first scrape"
            } else {
                "no"
            },
        )
        .figure(
            "temp debris of killed writers (hidden, not served)",
            debris.len(),
        );
    if figures.scrapes == 0 {
        errors.add("no scrape succeeded");
    }
    if writer_kills == 0 || exporter_restarts == 0 {
        errors.add(format!(
            "nothing was killed ({writer_kills} writers, {exporter_restarts} exporters): run longer"
        ));
    }
    report.errors = errors.count();
    report.messages = errors.kept();
    Ok(report)
}

/// The first `/metrics` of a restarted exporter: every file present and complete, none older
/// than what was acknowledged before the kill.
fn check_after_restart(
    exporter: &Exporter,
    spec: &check::Spec,
    before: &[u64],
    restart: u64,
    errors: &Errors,
) {
    let mut client = exporter.client(Duration::from_secs(20));
    let context = format!("first scrape after restart {restart}");
    match client.get("/metrics", false) {
        Ok(r) if r.status == 200 => {
            let seen = check::check_body(&r.body, spec, &context, errors);
            for (fid, v) in seen.versions.iter().enumerate() {
                if let Some(v) = v
                    && v.generation < before[fid]
                {
                    errors.add(format!(
                        "{context}: {} served at gen {}, but gen {} was on disk before the kill",
                        check::file_name(fid),
                        v.generation,
                        before[fid]
                    ));
                }
            }
        }
        Ok(r) => errors.add(format!("{context}: /metrics answered {}", r.status)),
        Err(e) => errors.add(format!("{context}: GET /metrics: {e:#}")),
    }
}
