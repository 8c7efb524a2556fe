//! disk full: the files live on a small tmpfs mounted by the scenario (`size=256k`), which is
//! filled up so that `write_atomic` fails with ENOSPC part-way through writing new versions.
//!
//! After every failed write the previous file is byte-identical, no temporary file is left
//! in the directory, and the exporter keeps serving the last good versions (checked against
//! a fresh parse of the disk); scrapers check every response meanwhile. Once space is freed,
//! writes succeed again and are served.
//!
//! Mounting needs root (CI runs as root): when the mount fails the scenario fails, saying so.

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::check;
use crate::churn::{self, Generations, ScrapeFigures};
use crate::{Errors, Report, Rng};

/// The disk-full scenario's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed.
    pub seed: u64,
    /// How long it runs.
    pub duration: Duration,
    /// Size of the tmpfs, KiB.
    pub tmpfs_kib: u64,
    /// Files.
    pub files: usize,
}

impl Config {
    /// The settings: a 256 KiB tmpfs.
    pub fn full(seed: u64, duration: Duration) -> Config {
        Config {
            seed,
            duration,
            tmpfs_kib: 256,
            files: 6,
        }
    }
}

/// A tmpfs mounted for the scenario, unmounted (lazily) when dropped.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(path: &Path, kib: u64) -> Result<Mount> {
        let target = CString::new(path.as_os_str().as_bytes())?;
        let options = CString::new(format!("size={kib}k,mode=0755"))?;
        // SAFETY: valid NUL-terminated strings; mount(2) reads them only.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            bail!(
                "cannot mount a {kib} KiB tmpfs at {} (mount -t tmpfs -o size={kib}k): {error} \
                 (euid {euid}); the disk-full scenario needs root, as CI has",
                path.display()
            );
        }
        Ok(Mount {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.path.as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Whether a writer error is ENOSPC, and whether it came while writing (mid-write) rather
/// than creating the temporary file.
fn enospc(error: &promdrop_writer::Error) -> Option<bool> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut is_enospc = false;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(libc::ENOSPC)
        {
            is_enospc = true;
        }
        source = e.source();
    }
    is_enospc.then_some(matches!(error, promdrop_writer::Error::WriteTemp { .. }))
}

/// Fills the file system of `dir` with `filler`, then frees `free` bytes of it.
fn fill(filler: &Path, free: u64) -> Result<u64> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler)
        .context("opening the filler")?;
    let chunk = [0x55u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).context("filling the disk"),
        }
    }
    let len = file.metadata()?.len();
    file.set_len(len.saturating_sub(free))?;
    Ok(len)
}

/// Runs the scenario.
pub fn run(config: &Config) -> Result<Report> {
    crate::harness::exporter_binary()?;
    let started = Instant::now();
    let errors = Errors::default();
    let tmp = crate::scratch_dir("torture-diskfull-")?;
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir)?;
    let mount = Mount::tmpfs(&dir, config.tmpfs_kib)?;
    println!(
        "disk-full: seed {} duration {:?}: {} files on a {} KiB tmpfs at {}",
        config.seed,
        config.duration,
        config.files,
        config.tmpfs_kib,
        dir.display()
    );
    let mut rng = Rng::derive(config.seed, 0);
    let page = 4096;
    let capacity = config.tmpfs_kib * 1024;
    // Sizes: small enough that every file and one temporary file fit together.
    let max_size = (capacity / (config.files as u64 + 2)).min(40 << 10);
    let text_of = |fid: usize, generation: u64, rng: &mut Rng| {
        let target = rng.range(1 << 10, max_size) as usize;
        // A sample line is about 100 bytes with a 40-character pad.
        let n = (target / 100).max(1);
        check::file_text(fid, generation, n, 40)
    };
    let mut expected: Vec<Vec<u8>> = Vec::with_capacity(config.files);
    for fid in 0..config.files {
        let text = text_of(fid, 1, &mut rng).into_bytes();
        promdrop_writer::write_atomic(dir.join(check::file_name(fid)), &text)
            .with_context(|| format!("writing {} on the empty tmpfs", check::file_name(fid)))?;
        expected.push(text);
    }
    let exporter_args = [format!("--source-label={}", check::SOURCE_LABEL)];
    let mut exporter =
        crate::harness::start_exporter(&dir, &exporter_args, Duration::from_secs(60))?;
    let generations = Generations::new(config.files, 1);
    let stop = AtomicBool::new(false);
    let spec = churn::spec(config.files);
    let deadline = Instant::now() + config.duration;
    let filler = dir.join("filler.bin");

    let mut rounds = 0u64;
    let mut attempts = 0u64;
    let mut succeeded = 0u64;
    let mut mid_write = 0u64;
    let mut at_create = 0u64;
    let mut identical_checks = 0u64;
    let mut settles: Vec<Duration> = Vec::new();
    let address = exporter.socket_addr();
    let figures = std::thread::scope(|s| -> Result<ScrapeFigures> {
        let scraper = {
            let (errors, stop, spec, generations) = (&errors, &stop, &spec, &generations);
            let mut rng = Rng::derive(config.seed, 5000);
            s.spawn(move || {
                churn::scrape_loop(
                    || (0, address),
                    |_| false,
                    spec,
                    Some(generations),
                    &mut rng,
                    stop,
                    deadline + Duration::from_secs(60),
                    1_000_000,
                    "scraper",
                    errors,
                    None,
                )
            })
        };
        let result = (|| -> Result<()> {
            while Instant::now() < deadline && rounds < 100_000 {
                rounds += 1;
                let free = rng.below(4) * page;
                fill(&filler, free)?;
                for _ in 0..rng.range(1, 4) {
                    let fid = rng.below(config.files as u64) as usize;
                    let generation = generations.started[fid].load(Ordering::SeqCst) + 1;
                    generations.started[fid].store(generation, Ordering::SeqCst);
                    let text = text_of(fid, generation, &mut rng).into_bytes();
                    let path = dir.join(check::file_name(fid));
                    attempts += 1;
                    match promdrop_writer::write_atomic(&path, &text) {
                        Ok(()) => {
                            succeeded += 1;
                            expected[fid] = text;
                        }
                        Err(e) => match enospc(&e) {
                            Some(true) => mid_write += 1,
                            Some(false) => at_create += 1,
                            None => errors.add(format!("write_atomic failed, not ENOSPC: {e}")),
                        },
                    }
                    match std::fs::read(&path) {
                        Ok(bytes) if bytes == expected[fid] => identical_checks += 1,
                        Ok(bytes) => errors.add(format!(
                            "{} changed after a write that failed ({} bytes, expected {})",
                            check::file_name(fid),
                            bytes.len(),
                            expected[fid].len()
                        )),
                        Err(e) => errors.add(format!("reading {}: {e}", path.display())),
                    }
                }
                let debris: Vec<String> = churn::debris(&dir)
                    .into_iter()
                    .filter(|n| n != "filler.bin")
                    .collect();
                if !debris.is_empty() {
                    errors.add(format!("temporary files left on the full disk: {debris:?}"));
                }
                // While the disk is still full, the exporter serves the last good versions.
                if let Some(t) = churn::settle(
                    &exporter,
                    &dir,
                    config.files,
                    Duration::from_secs(10),
                    &errors,
                ) {
                    settles.push(t);
                }
                std::fs::remove_file(&filler).context("removing the filler")?;
            }
            // Space again: every file can be written, and is served.
            for (fid, slot) in expected.iter_mut().enumerate() {
                let generation = generations.started[fid].load(Ordering::SeqCst) + 1;
                generations.started[fid].store(generation, Ordering::SeqCst);
                let text = text_of(fid, generation, &mut rng).into_bytes();
                attempts += 1;
                match promdrop_writer::write_atomic(dir.join(check::file_name(fid)), &text) {
                    Ok(()) => {
                        succeeded += 1;
                        *slot = text;
                    }
                    Err(e) => errors.add(format!("writing with free space again: {e}")),
                }
            }
            churn::settle(
                &exporter,
                &dir,
                config.files,
                Duration::from_secs(10),
                &errors,
            );
            Ok(())
        })();
        stop.store(true, Ordering::SeqCst);
        let figures = scraper.join().unwrap_or_else(|_| {
            errors.add("the scraper panicked");
            ScrapeFigures::default()
        });
        result.map(|()| figures)
    })?;
    if let Some(status) = exporter.exited() {
        errors.add(format!("the exporter exited: {status}"));
    }
    if errors.count() > 0 {
        eprintln!(
            "disk-full: the exporter's last log lines:\n{}",
            exporter.log()
        );
    }
    exporter.kill();
    drop(mount);
    if mid_write == 0 {
        errors.add("no write failed mid-write with ENOSPC: the scenario tested nothing");
    }
    settles.sort();
    let mut report = Report::new("disk-full", config.seed, started.elapsed(), &errors);
    report
        .figure(
            "tmpfs / files",
            format!(
                "{} KiB / {} files of 1 to {} KiB",
                config.tmpfs_kib,
                config.files,
                max_size >> 10
            ),
        )
        .figure("rounds (fill, write, check, free)", rounds)
        .figure("write attempts", attempts)
        .figure("succeeded", succeeded)
        .figure("ENOSPC mid-write (write/fsync)", mid_write)
        .figure("ENOSPC creating the temp file", at_create)
        .figure(
            "file on disk as expected after each write",
            identical_checks,
        )
        .figure(
            "exporter equal to disk after (median / max)",
            format!(
                "{:.0} ms / {:.0} ms",
                crate::percentile(&settles, 50.0).as_secs_f64() * 1000.0,
                settles.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
            ),
        )
        .figure(
            "scrapes",
            format!("{} ({} gzip)", figures.scrapes, figures.gzipped),
        )
        .figure("samples checked", figures.samples)
        .figure("violations in responses", figures.violations);
    report.errors = errors.count();
    report.messages = errors.kept();
    Ok(report)
}
