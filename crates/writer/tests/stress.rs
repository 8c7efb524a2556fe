//! Crash consistency and concurrency, with real processes: `promdrop-writer-testloop` writes
//! a job file again and again (full protocol: lock, read the previous file, temp, fsync,
//! rename, fsync the directory) and prints each iteration once its write returned. Every
//! version is self-describing (`testloop_iteration{writer} K` and filler samples all valued
//! `K`), so a reader can tell a complete version from anything else.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use promdrop_textformat::{Format, parse};

/// Checks that `text` is one complete version written by the testloop with `series` filler
/// samples, and says which.
fn version(text: &str, series: usize) -> Result<(String, u64), String> {
    let exposition = parse(text.as_bytes(), Format::Classic).map_err(|e| format!("{e}"))?;
    promdrop_textformat::WriterHeader::find(text.as_bytes()).ok_or("no header")?;
    let samples = |name: &str| {
        exposition
            .families
            .iter()
            .filter(move |f| f.name == name)
            .flat_map(|f| f.samples.iter())
            .collect::<Vec<_>>()
    };
    let iteration = samples("testloop_iteration");
    let [head] = iteration.as_slice() else {
        return Err(format!("{} iteration samples", iteration.len()));
    };
    let writer = head.label("writer").ok_or("no writer label")?.to_string();
    let k = head.value.number;
    let filler = samples("testloop_filler");
    if filler.len() != series {
        return Err(format!("{} filler samples, not {series}", filler.len()));
    }
    if let Some(odd) = filler
        .iter()
        .find(|s| s.value.number != k || s.label("writer") != Some(writer.as_str()))
    {
        return Err(format!(
            "a mixed version: {odd:?} in iteration {k} of {writer}"
        ));
    }
    if samples("promdrop_job_running").len() != 1 {
        return Err("no outcome metrics".to_string());
    }
    Ok((writer, k as u64))
}

fn testloop(dir: &Path, job: &str, writer: &str, count: u64, series: usize) -> Child {
    Command::new(TESTLOOP)
        .arg(dir)
        .args([job, writer, &count.to_string(), &series.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the testloop helper starts")
}

/// The iterations a killed or finished child reported as written.
fn reported(child: &mut Child) -> Vec<u64> {
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out.lines().map(|l| l.parse().unwrap()).collect()
}

/// A small deterministic generator for kill delays (xorshift), seeded from the clock and
/// printed so that a failing run can be told apart.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_moments_leaves_the_previous_or_the_new_complete_version() {
    const RUNS: usize = 200;
    const SERIES: usize = 1000;
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.prom");
    let mut previous: Option<Vec<u8>> = None;
    let mut kills_before_first_write = 0;
    let started = Instant::now();
    for run in 0..RUNS {
        let writer = format!("run{run}");
        let mut child = testloop(dir.path(), "crash", &writer, 1_000_000, SERIES);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut lines = String::new();
        // One run in ten is killed at once, most likely before its first write; the others
        // after their first write, anywhere in the next two or three writes (a write takes
        // about 15 ms here, most of it in fsync).
        let delay = if rng.next().is_multiple_of(10) {
            Duration::ZERO
        } else {
            stdout.read_line(&mut lines).unwrap();
            Duration::from_micros(rng.next() % 40_000)
        };
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        stdout.read_to_string(&mut lines).unwrap();
        let last: u64 = lines.lines().last().map_or(0, |l| l.parse().unwrap());
        let context = format!("seed {seed}, run {run}, delay {delay:?}, last reported {last}");

        let current = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("{context}: {e}"),
        };
        let same_as_before = current == previous;
        match &current {
            None => assert!(
                previous.is_none() && last == 0,
                "{context}: the file disappeared"
            ),
            Some(bytes) if !same_as_before => {
                let text = String::from_utf8(bytes.clone()).unwrap();
                let (w, k) = version(&text, SERIES)
                    .unwrap_or_else(|e| panic!("{context}: not a complete version: {e}"));
                assert_eq!(w, writer, "{context}: a version of another run");
                assert!(
                    k == last || k == last + 1,
                    "{context}: iteration {k} is neither the last written nor the next"
                );
            }
            Some(_) => {
                // Unchanged: only allowed when this run had not completed a write.
                assert_eq!(last, 0, "{context}: a completed write is missing");
                kills_before_first_write += 1;
            }
        }
        // Nothing but the job file and hidden names: a reader serves only complete versions.
        for entry in fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name == "crash.prom" || name.starts_with(".crash.prom."),
                "{context}: {name}"
            );
        }
        previous = current;
    }
    eprintln!(
        "{RUNS} kills in {:?} (seed {seed}); {kills_before_first_write} before a first write",
        started.elapsed()
    );
    assert!(
        kills_before_first_write < RUNS / 4,
        "{kills_before_first_write} of {RUNS} kills came before any write"
    );
    // A clean run removes the temporary files the kills left behind.
    let mut child = testloop(dir.path(), "crash", "clean", 1, SERIES);
    assert!(child.wait().unwrap().success());
    assert_no_debris(dir.path());
    assert_eq!(JobFile::read(&path).reason(), "success");
}

#[test]
fn two_processes_writing_the_same_file_1000_times_each() {
    const COUNT: u64 = 1000;
    const SERIES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.prom");
    let mut a = testloop(dir.path(), "shared", "a", COUNT, SERIES);
    let mut b = testloop(dir.path(), "shared", "b", COUNT, SERIES);

    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut reads = 0u64;
    let started = Instant::now();
    let running = |c: &mut Child| c.try_wait().unwrap().is_none();
    while running(&mut a) || running(&mut b) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "writers too slow"
        );
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        reads += 1;
        let (writer, k) = version(&text, SERIES)
            .unwrap_or_else(|e| panic!("read {reads}: not a complete version: {e}\n{text}"));
        let before = seen.insert(writer.clone(), k).unwrap_or(0);
        assert!(
            k >= before,
            "read {reads}: {writer}'s iteration went back from {before} to {k}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    for (name, child) in [("a", &mut a), ("b", &mut b)] {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(status.success(), "writer {name}: {status:?} {stderr}");
        // Every one of its writes returned successfully, in order.
        assert_eq!(
            reported(child),
            (1..=COUNT).collect::<Vec<_>>(),
            "writer {name}"
        );
    }
    // The file is the final write of whichever finished last: complete, iteration COUNT.
    let text = fs::read_to_string(&path).unwrap();
    let (writer, k) = version(&text, SERIES).unwrap();
    assert_eq!(k, COUNT, "{writer}");
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "success");
    assert_no_debris(dir.path());
    assert!(
        reads > 100,
        "only {reads} reads happened between the writes"
    );
    eprintln!(
        "2 x {COUNT} writes in {:?}, {reads} reads in between, versions seen: {seen:?}",
        started.elapsed()
    );
}
