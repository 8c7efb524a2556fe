//! hostile files: a generated corpus of files no job should write (random bytes, a huge line,
//! thousands of labels, invalid UTF-8, NUL bytes, a million tiny series, a 100 MB file,
//! symlink loops, a symlink escaping the directory, a FIFO, a directory named `x.prom`, a
//! file with mode 000, ...) next to valid files, then a phase where hostile entries keep
//! changing (atomic and torn writes, names swapped between a regular file, a FIFO, a
//! directory and symlinks) while a canary file is updated.
//!
//! The exporter must stay up (`/-/healthy`), keep its RSS under a bound, keep serving every
//! valid file, report each hostile regular file (`promdrop_file_error 1`) or ignore it as
//! OPERATIONS.md documents (FIFOs, directories, dangling links and loops: not listed; a link
//! escaping the directory: refused, on the status page), keep following changes (the canary),
//! and answer every request within its timeout.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use promdrop_textfile::discovery::label_value;
use promdrop_textformat::{Format, ParseLimits, parse, parse_with_limits};

use crate::harness::{Client, Exporter};
use crate::{Errors, Report, Rng, mib};
use promdrop_test_support::metrics::{Series, samples};

/// The exporter's default `--file.max-bytes` (16 MiB) and `--file.max-series` (100,000).
const MAX_BYTES: usize = 16 << 20;
const MAX_SERIES: usize = 100_000;
/// Every request's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The hostile scenario's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed.
    pub seed: u64,
    /// How long the changing phase lasts.
    pub duration: Duration,
    /// Size of the oversized file, in MiB.
    pub big_mib: usize,
    /// Series in the file of tiny series.
    pub tiny_series: usize,
    /// Labels on the one sample of the deep-labels file.
    pub deep_labels: usize,
    /// The RSS bound, in MiB.
    pub rss_bound_mib: u64,
}

impl Config {
    /// The corpus.
    pub fn full(seed: u64, duration: Duration) -> Config {
        Config {
            seed,
            duration,
            big_mib: 100,
            tiny_series: 1_000_000,
            deep_labels: 5000,
            rss_bound_mib: 256,
        }
    }
}

/// What the exporter must do with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Served: `promdrop_file_error 0`, every sample in `/metrics`.
    Served,
    /// Reported: `promdrop_file_error 1`, no sample served.
    Error,
    /// Not a served file: no meta metric at all.
    Ignored,
    /// A symlink escaping the directory: no meta metric, listed as refused on the status page.
    Refused,
}

struct Entry {
    name: OsString,
    expect: Expect,
    what: &'static str,
}

/// The verdict the exporter's documented rules give for `bytes` as a regular file.
fn verdict(bytes: &[u8]) -> Expect {
    if bytes.len() > MAX_BYTES {
        return Expect::Error;
    }
    let limits = ParseLimits {
        max_bytes: MAX_BYTES,
        max_series: MAX_SERIES,
        ..ParseLimits::default()
    };
    match parse_with_limits(bytes, Format::Auto, &limits) {
        Ok(e)
            if e.families
                .iter()
                .flat_map(|f| &f.samples)
                .all(|s| s.timestamp.is_none()) =>
        {
            Expect::Served
        }
        _ => Expect::Error,
    }
}

fn valid_text(k: usize) -> String {
    let mut text = String::from("# HELP torture_valid A valid file next to hostile ones.\n");
    text.push_str("# TYPE torture_valid gauge\n");
    for i in 0..10 {
        text.push_str(&format!("torture_valid{{v=\"{k}\",i=\"{i}\"}} {i}\n"));
    }
    text
}

fn labels_text(count: usize, prefix: &str) -> String {
    let mut text = format!("# TYPE torture_{prefix} gauge\ntorture_{prefix}{{");
    for i in 0..count {
        text.push_str(&format!("l{i}=\"v{i}\","));
    }
    text.push_str("} 1\n");
    text
}

fn mkfifo(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o644) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("mkfifo {}", path.display()));
    }
    Ok(())
}

/// Writes the corpus into `dir`; returns its entries.
fn corpus(dir: &Path, config: &Config, rng: &mut Rng) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut file = |name: &[u8], bytes: &[u8], what: &'static str| -> Result<Expect> {
        let name = OsStr::from_bytes(name).to_os_string();
        std::fs::write(dir.join(&name), bytes)
            .with_context(|| format!("writing {}", name.to_string_lossy()))?;
        let expect = verdict(bytes);
        entries.push(Entry { name, expect, what });
        Ok(expect)
    };
    for k in 0..8 {
        file(
            format!("valid-{k}.prom").as_bytes(),
            valid_text(k).as_bytes(),
            "valid",
        )?;
    }
    file(b"empty.prom", b"", "empty (valid)")?;
    file(
        b"labels-400.prom",
        labels_text(400, "wide").as_bytes(),
        "400 labels (valid)",
    )?;
    file(
        b"random-bytes.prom",
        &rng.bytes(256 << 10),
        "256 KiB of random bytes",
    )?;
    let mut printable: Vec<u8> = rng.bytes(64 << 10).iter().map(|b| b' ' + b % 95).collect();
    printable.push(b'\n');
    file(
        b"random-text.prom",
        &printable,
        "64 KiB of random printable text",
    )?;
    let mut huge = b"torture_huge{l=\"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 4 << 20));
    huge.extend_from_slice(b"\"} 1\n");
    file(b"huge-line.prom", &huge, "a 4 MiB line")?;
    file(
        b"deep-labels.prom",
        labels_text(config.deep_labels, "deep").as_bytes(),
        "thousands of labels on one sample",
    )?;
    file(
        b"invalid-utf8.prom",
        b"torture_bad{l=\"\xff\xfe\xc3\"} 1\n",
        "invalid UTF-8",
    )?;
    file(
        b"nul-bytes.prom",
        b"torture_nul 1\n\0\0\0torture_nul2 1\n",
        "NUL bytes",
    )?;
    file(b"no-newline.prom", b"torture_cut 1", "no final newline")?;
    file(
        b"timestamp.prom",
        b"torture_ts 1 1700000000000\n",
        "a client-side timestamp",
    )?;
    let mut tiny = Vec::with_capacity(config.tiny_series * 16);
    for i in 0..config.tiny_series {
        tiny.extend_from_slice(format!("a{{b=\"{i:06}\"}} 1\n").as_bytes());
    }
    file(b"million-series.prom", &tiny, "a million tiny series")?;
    drop(tiny);
    let line = b"torture_big{l=\"0123456789012345678901234567890123456789\"} 1\n";
    let mut big = Vec::with_capacity(config.big_mib << 20);
    while big.len() < config.big_mib << 20 {
        big.extend_from_slice(line);
    }
    file(b"big.prom", &big, "a 100 MB file")?;
    drop(big);
    file(
        b"bad-name-\xff\xfe.prom",
        valid_text(100).as_bytes(),
        "a name that is not UTF-8",
    )?;

    // Not regular files.
    let mut special = |name: &str, expect: Expect, what: &'static str| {
        entries.push(Entry {
            name: name.into(),
            expect,
            what,
        })
    };
    symlink("loop-b.prom", dir.join("loop-a.prom"))?;
    symlink("loop-a.prom", dir.join("loop-b.prom"))?;
    special("loop-a.prom", Expect::Ignored, "a symlink loop");
    special("loop-b.prom", Expect::Ignored, "a symlink loop");
    symlink("self.prom", dir.join("self.prom"))?;
    special("self.prom", Expect::Ignored, "a symlink to itself");
    symlink("/etc/passwd", dir.join("escape.prom"))?;
    special(
        "escape.prom",
        Expect::Refused,
        "a symlink escaping the directory",
    );
    symlink("../", dir.join("parent.prom"))?;
    special(
        "parent.prom",
        Expect::Refused,
        "a symlink to the parent directory",
    );
    symlink("/nonexistent/x.prom", dir.join("dangling.prom"))?;
    special("dangling.prom", Expect::Ignored, "a dangling symlink");
    mkfifo(&dir.join("fifo.prom"))?;
    special("fifo.prom", Expect::Ignored, "a FIFO");
    symlink("fifo.prom", dir.join("fifo-link.prom"))?;
    special("fifo-link.prom", Expect::Ignored, "a symlink to a FIFO");
    std::fs::create_dir(dir.join("x.prom"))?;
    std::fs::write(dir.join("x.prom/inner.prom"), valid_text(200))?;
    special("x.prom", Expect::Ignored, "a directory named x.prom");
    symlink("x.prom", dir.join("dir-link.prom"))?;
    special("dir-link.prom", Expect::Ignored, "a symlink to a directory");

    // Mode 000: root reads it anyway (CAP_DAC_OVERRIDE); anyone else cannot.
    let path = dir.join("mode000.prom");
    std::fs::write(&path, valid_text(300))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000))?;
    let readable = std::fs::read(&path).is_ok();
    special(
        "mode000.prom",
        if readable {
            Expect::Served
        } else {
            Expect::Error
        },
        if readable {
            "mode 000 (readable: running as root)"
        } else {
            "mode 000 (unreadable)"
        },
    );
    Ok(entries)
}

/// `/metrics` reduced to samples: (name, labels) -> value.
type Samples = BTreeMap<Series, f64>;

fn samples_of(body: &[u8]) -> Result<Samples, String> {
    samples(body, Format::Classic)
}

fn meta(samples: &Samples, name: &str, file: &Path) -> Option<f64> {
    // The label as the exporter writes it: bytes that are not UTF-8 escaped as `\xNN`.
    let labels = BTreeMap::from([("file".to_string(), label_value(file.as_os_str()))]);
    samples.get(&(name.to_string(), labels)).copied()
}

/// Checks every entry against one `/metrics` and the status JSON. Returns how many were
/// checked.
fn check_entries(
    dir: &Path,
    entries: &[Entry],
    samples: &Samples,
    status_json: &str,
    context: &str,
    errors: &Errors,
) -> u64 {
    let mut checked = 0;
    for entry in entries {
        let path = dir.join(&entry.name);
        let name = label_value(&entry.name);
        let error = meta(samples, "promdrop_file_error", &path);
        let problem = match entry.expect {
            Expect::Served => match error {
                Some(0.0) => missing_samples(&path, &name, samples),
                other => Some(format!("promdrop_file_error is {other:?}, expected 0")),
            },
            Expect::Error => match error {
                Some(1.0) => None,
                other => Some(format!("promdrop_file_error is {other:?}, expected 1")),
            },
            Expect::Ignored => error.map(|v| format!("listed (promdrop_file_error {v})")),
            Expect::Refused => match error {
                Some(v) => Some(format!("served as a file (promdrop_file_error {v})")),
                None if !status_json.contains(name.as_str()) => {
                    Some("not listed as refused in /api/v1/files".to_string())
                }
                None => None,
            },
        };
        match problem {
            None => checked += 1,
            Some(p) => errors.add(format!(
                "{context}: {name} ({}, expected {:?}): {p}",
                entry.what, entry.expect
            )),
        }
    }
    checked
}

/// For a served file: its samples (fresh parse) all in `/metrics`, with `src` = its name.
fn missing_samples(path: &Path, name: &str, samples: &Samples) -> Option<String> {
    // Mode 000 files are read as root; read errors here mean the test cannot check.
    let bytes = std::fs::read(path).ok()?;
    let exposition = parse(&bytes, Format::Auto).ok()?;
    for family in &exposition.families {
        for s in &family.samples {
            let mut labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            labels.insert("src".to_string(), name.to_string());
            match samples.get(&(s.name.to_string(), labels)) {
                Some(v) if *v == s.value.number => {}
                other => {
                    return Some(format!(
                        "sample {}{{...}} is {other:?} in /metrics, {} in the file",
                        s.name, s.value.number
                    ));
                }
            }
        }
    }
    None
}

/// Gets `path`; an error message when it fails or does not answer 200.
fn get_ok(client: &mut Client, path: &str, gzip: bool) -> Result<Vec<u8>, String> {
    match client.get(path, gzip) {
        Ok(r) if r.status == 200 => r
            .decoded()
            .map_err(|e| format!("GET {path}: decoding the gzip body: {e}")),
        Ok(r) => Err(format!("GET {path}: {}", r.status)),
        Err(e) => Err(format!("GET {path}: {e:#}")),
    }
}

/// One full check of the exporter against the corpus.
fn full_check(
    exporter: &Exporter,
    dir: &Path,
    entries: &[Entry],
    context: &str,
    errors: &Errors,
) -> u64 {
    let mut client = exporter.client(REQUEST_TIMEOUT);
    if let Err(e) = get_ok(&mut client, "/-/healthy", false) {
        errors.add(format!("{context}: {e}"));
    }
    let status = get_ok(&mut client, "/api/v1/files", false)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| {
            errors.add(format!("{context}: {e}"));
            String::new()
        });
    match get_ok(&mut client, "/metrics", true).and_then(|b| samples_of(&b)) {
        Ok(samples) => check_entries(dir, entries, &samples, &status, context, errors),
        Err(e) => {
            errors.add(format!("{context}: /metrics: {e}"));
            0
        }
    }
}

/// One hostile change to the `mutant-*` and `swap-*` entries.
fn mutate(dir: &Path, rng: &mut Rng, config: &Config) -> Result<()> {
    let k = rng.below(3);
    match rng.below(6) {
        0..=2 => {
            let path = dir.join(format!("mutant-{k}.prom"));
            let bytes: Vec<u8> = match rng.below(6) {
                0 => {
                    let len = rng.range(0, 200_000) as usize;
                    rng.bytes(len)
                }
                1 => valid_text(1000 + k as usize).into_bytes(),
                2 => {
                    labels_text(rng.range(1, config.deep_labels as u64) as usize, "m").into_bytes()
                }
                3 => b"torture_nul 1\n\0\n".to_vec(),
                4 => {
                    let mut v = b"torture_m{l=\"".to_vec();
                    let len = rng.range(1, 3 << 20) as usize;
                    v.extend(std::iter::repeat_n(b'x', len));
                    v.extend_from_slice(b"\"} 1\n");
                    v
                }
                _ => b"torture_m{l=\"\xc3\x28\"} 1\n".to_vec(),
            };
            if rng.chance(0.5) {
                promdrop_writer::write_atomic(&path, &bytes)?;
            } else {
                // A torn, in-place write: the exporter may read any prefix of it.
                let _ = std::fs::remove_dir(&path);
                let _ = std::fs::remove_file(&path);
                std::fs::write(&path, &bytes)?;
            }
        }
        _ => {
            // Swap a name between a regular file, a FIFO, a directory and symlinks.
            let path = dir.join(format!("swap-{k}.prom"));
            let stage = dir.join(format!(".stage-{k}"));
            let _ = std::fs::remove_dir_all(&stage);
            let _ = std::fs::remove_file(&stage);
            match rng.below(5) {
                0 => std::fs::write(&stage, valid_text(2000 + k as usize))?,
                1 => mkfifo(&stage)?,
                2 => std::fs::create_dir(&stage)?,
                3 => symlink(format!("swap-{k}.prom"), &stage)?,
                _ => symlink("/etc/hostname", &stage)?,
            }
            if std::fs::rename(&stage, &path).is_err() {
                // A directory cannot replace a file nor the reverse: remove, then rename.
                let _ = std::fs::remove_dir_all(&path);
                let _ = std::fs::remove_file(&path);
                std::fs::rename(&stage, &path)?;
            }
        }
    }
    Ok(())
}

/// Runs the scenario.
pub fn run(config: &Config) -> Result<Report> {
    crate::harness::exporter_binary()?;
    let started = Instant::now();
    let errors = Errors::default();
    let tmp = crate::scratch_dir("torture-hostile-")?;
    let dir = tmp.path().to_path_buf();
    println!(
        "hostile: seed {} duration {:?} in {}",
        config.seed,
        config.duration,
        dir.display()
    );
    let mut rng = Rng::derive(config.seed, 0);
    let entries = corpus(&dir, config, &mut rng)?;
    let corpus_time = started.elapsed();
    for k in 0..3 {
        mkfifo(&dir.join(format!("swap-{k}.prom")))?;
    }
    let canary = dir.join("canary.prom");
    let canary_text = |g: u64| format!("# TYPE torture_canary gauge\ntorture_canary {g}\n");
    promdrop_writer::write_atomic(&canary, canary_text(1))?;

    let exporter = crate::harness::start_exporter(
        &dir,
        &["--source-label=src".to_string()],
        Duration::from_secs(120),
    )?;
    let ready_time = started.elapsed() - corpus_time;
    let pid = exporter.pid();
    let rss_max = AtomicU64::new(exporter.rss_bytes().unwrap_or(0));
    let rss_start = rss_max.load(Ordering::Relaxed);
    let stop = AtomicBool::new(false);
    let checked_first = full_check(&exporter, &dir, &entries, "after the first scan", &errors);

    // The changing phase.
    let deadline = Instant::now() + config.duration;
    let canary_written: Mutex<Vec<Instant>> = Mutex::new(vec![Instant::now()]);
    let mutations = AtomicU64::new(0);
    let requests = AtomicU64::new(0);
    let max_lag_ms = AtomicU64::new(0);
    let address = exporter.socket_addr();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = crate::harness::rss_bytes(pid) {
                    rss_max.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        s.spawn(|| {
            let mut rng = Rng::derive(config.seed, 1);
            while Instant::now() < deadline {
                match mutate(&dir, &mut rng, config) {
                    Ok(()) => {
                        mutations.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.add(format!("mutating: {e:#}")),
                }
                std::thread::sleep(rng.millis(0, 5));
            }
        });
        s.spawn(|| {
            let mut g = 1;
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                g += 1;
                if let Err(e) = promdrop_writer::write_atomic(&canary, canary_text(g)) {
                    errors.add(format!("writing the canary: {e}"));
                }
                canary_written
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Instant::now());
            }
        });
        for k in 0..2u64 {
            let (errors, requests, canary_written, max_lag_ms, entries, dir) = (
                &errors,
                &requests,
                &canary_written,
                &max_lag_ms,
                &entries,
                &dir,
            );
            s.spawn(move || {
                let mut rng = Rng::derive(config.seed, 10 + k);
                let mut client = Client::new(address, REQUEST_TIMEOUT);
                let valid: Vec<&Entry> =
                    entries.iter().filter(|e| e.what == "valid").collect();
                while Instant::now() < deadline {
                    requests.fetch_add(2, Ordering::Relaxed);
                    if let Err(e) = get_ok(&mut client, "/-/healthy", false) {
                        errors.add(format!("checker {k}: {e}"));
                    }
                    let body = match get_ok(&mut client, "/metrics", rng.chance(0.5)) {
                        Ok(b) => b,
                        Err(e) => {
                            errors.add(format!("checker {k}: {e}"));
                            continue;
                        }
                    };
                    let samples = match samples_of(&body) {
                        Ok(s) => s,
                        Err(e) => {
                            errors.add(format!("checker {k}: /metrics does not parse: {e}"));
                            continue;
                        }
                    };
                    for entry in &valid {
                        let path = dir.join(&entry.name);
                        if let Some(p) = missing_samples(&path, &label_value(&entry.name), &samples) {
                            errors.add(format!(
                                "checker {k}: {} no longer served: {p}",
                                entry.name.to_string_lossy()
                            ));
                        }
                    }
                    // How far behind the canary is: the time since the first write it misses.
                    let key = ("torture_canary".to_string(), BTreeMap::from([("src".to_string(), "canary.prom".to_string())]));
                    let served = samples.get(&key).copied().unwrap_or(0.0) as usize;
                    let written = canary_written.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if served >= 1 && served < written.len() {
                        let lag = written[served].elapsed();
                        max_lag_ms.fetch_max(lag.as_millis() as u64, Ordering::Relaxed);
                        if lag > Duration::from_secs(5) {
                            errors.add(format!(
                                "checker {k}: the exporter stopped following changes: canary gen {served} served, gen {} written {:.1} s ago",
                                served + 1,
                                lag.as_secs_f64()
                            ));
                        }
                    } else if served == 0 {
                        errors.add(format!("checker {k}: the canary is not served"));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        // Wait for the phase, then stop the sampler.
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
    });

    // The end: everything settles, the static corpus is as after the first scan.
    for k in 0..3 {
        let path = dir.join(format!("swap-{k}.prom"));
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
    }
    let written = canary_written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    let mut client = exporter.client(REQUEST_TIMEOUT);
    let settle_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let served = get_ok(&mut client, "/metrics", false)
            .ok()
            .and_then(|b| samples_of(&b).ok())
            .and_then(|s| {
                s.get(&(
                    "torture_canary".to_string(),
                    BTreeMap::from([("src".to_string(), "canary.prom".to_string())]),
                ))
                .copied()
            });
        if served == Some(written as f64) {
            break;
        }
        if Instant::now() > settle_deadline {
            errors.add(format!(
                "the exporter did not catch up with the canary: serves {served:?}, gen {written} \
                 written; its threads: {}",
                crate::harness::thread_states(exporter.pid())
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let checked_last = full_check(&exporter, &dir, &entries, "at the end", &errors);
    let rss_end = exporter.rss_bytes().unwrap_or(0);
    rss_max.fetch_max(rss_end, Ordering::Relaxed);
    // The kernel's high-water mark also covers the first scan and peaks between samples.
    if let Some(peak) = crate::harness::rss_peak_bytes(exporter.pid()) {
        rss_max.fetch_max(peak, Ordering::Relaxed);
    }
    let rss_max = rss_max.load(Ordering::Relaxed);
    if rss_max > config.rss_bound_mib << 20 {
        errors.add(format!(
            "the exporter's RSS reached {}, over the bound of {} MiB",
            mib(rss_max),
            config.rss_bound_mib
        ));
    }
    let mut exporter = exporter;
    if let Some(status) = exporter.exited() {
        errors.add(format!("the exporter exited: {status}"));
    }
    if errors.count() > 0 {
        eprintln!(
            "hostile: the exporter's last log lines:\n{}",
            exporter.log()
        );
    }
    drop(exporter);
    // Let the temporary directory go even with the mode 000 file in it.
    let _ = std::fs::set_permissions(
        dir.join("mode000.prom"),
        std::fs::Permissions::from_mode(0o644),
    );

    let count = |e: Expect| entries.iter().filter(|x| x.expect == e).count();
    let mut report = Report::new("hostile", config.seed, started.elapsed(), &errors);
    report
        .figure(
            "corpus (served / reported / ignored / refused)",
            format!(
                "{} entries ({} / {} / {} / {})",
                entries.len(),
                count(Expect::Served),
                count(Expect::Error),
                count(Expect::Ignored),
                count(Expect::Refused)
            ),
        )
        .figure(
            "corpus written in",
            format!("{:.1} s", corpus_time.as_secs_f64()),
        )
        .figure(
            "exporter ready after",
            format!("{:.1} s", ready_time.as_secs_f64()),
        )
        .figure(
            "entries as expected (first scan / end)",
            format!("{checked_first} / {checked_last} of {}", entries.len()),
        )
        .figure(
            "hostile changes (mutations, swaps)",
            mutations.load(Ordering::Relaxed),
        )
        .figure("requests during changes", requests.load(Ordering::Relaxed))
        .figure(
            "canary writes / worst lag",
            format!("{written} / {} ms", max_lag_ms.load(Ordering::Relaxed)),
        )
        .figure(
            "exporter RSS after ready / peak (VmHWM) / end",
            format!(
                "{} / {} / {} (bound {} MiB)",
                mib(rss_start),
                mib(rss_max),
                mib(rss_end),
                config.rss_bound_mib
            ),
        );
    for e in &entries {
        report.figure(
            &format!("  {:<22}", e.name.to_string_lossy()),
            format!("{:?}: {}", e.expect, e.what),
        );
    }
    report.errors = errors.count();
    report.messages = errors.kept();
    Ok(report)
}
