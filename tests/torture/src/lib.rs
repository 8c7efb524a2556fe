//! promdrop's torture suite: the real `promdrop-exporter` and `promdrop_writer::write_atomic`
//! under churn, crashes, hostile files, a full disk and load. Every scenario is seeded,
//! bounded in time, prints its figures and returns a [`Report`] whose error count must be 0.
//!
//! See `tests/torture/README.md`.

pub mod check;
pub mod churn;
pub mod crashes;
pub mod diskfull;
pub mod harness;
pub mod hostile;
pub mod load;
pub mod writer;

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A small, fast, seedable generator (xorshift64*, seeded through splitmix64). Plenty for
/// picking files, sizes and pauses; not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// A generator for the `stream`th user of `seed` (a thread, a writer).
    pub fn derive(seed: u64, stream: u64) -> Rng {
        Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A duration in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A scratch directory for a scenario: under `$PROMDROP_TORTURE_TMPDIR` when set, else
/// `/dev/shm` (a tmpfs: writes are not slowed down by the disk's fsync, so the exporter sees
/// many more changes) when it exists, else the system's temporary directory.
pub fn scratch_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let base = match std::env::var_os("PROMDROP_TORTURE_TMPDIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None if std::path::Path::new("/dev/shm").is_dir() => "/dev/shm".into(),
        None => std::env::temp_dir(),
    };
    tempfile::Builder::new().prefix(prefix).tempdir_in(base)
}

/// A seed from the clock, for runs given no `--seed`.
pub fn time_seed() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs().wrapping_mul(1_000_003) ^ u64::from(now.subsec_nanos())
}

/// How many error messages are kept (all are counted).
const KEPT_ERRORS: usize = 40;

/// Errors found by a scenario, from any thread: all counted, the first few kept.
#[derive(Debug, Default)]
pub struct Errors {
    count: AtomicU64,
    kept: Mutex<Vec<String>>,
}

impl Errors {
    /// Records one error.
    pub fn add(&self, message: impl Into<String>) {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        if n < KEPT_ERRORS as u64 {
            let message = message.into();
            eprintln!("torture: ERROR: {message}");
            self.kept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(message);
        }
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The first ones.
    pub fn kept(&self) -> Vec<String> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What a scenario reports: its figures and the errors it found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario.
    pub scenario: &'static str,
    /// The seed it ran with.
    pub seed: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// Named figures, in order.
    pub figures: Vec<(String, String)>,
    /// Errors found (must be 0).
    pub errors: u64,
    /// The first error messages.
    pub messages: Vec<String>,
}

impl Report {
    /// A report of `scenario` with the errors in `errors`.
    pub fn new(scenario: &'static str, seed: u64, elapsed: Duration, errors: &Errors) -> Report {
        Report {
            scenario,
            seed,
            elapsed,
            figures: Vec::new(),
            errors: errors.count(),
            messages: errors.kept(),
        }
    }

    /// Adds a figure.
    pub fn figure(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Report {
        self.figures.push((name.to_string(), value.to_string()));
        self
    }

    /// Whether it found no error.
    pub fn passed(&self) -> bool {
        self.errors == 0
    }

    /// The report as text, one figure a line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== {} (seed {}) {} in {:.1} s",
            self.scenario,
            self.seed,
            if self.passed() { "PASSED" } else { "FAILED" },
            self.elapsed.as_secs_f64()
        );
        let width = self.figures.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, value) in &self.figures {
            let _ = writeln!(out, "   {name:<width$}  {value}");
        }
        let _ = writeln!(out, "   {:<width$}  {}", "errors", self.errors);
        for m in &self.messages {
            let _ = writeln!(out, "   ! {m}");
        }
        if self.errors > self.messages.len() as u64 {
            let _ = writeln!(
                out,
                "   ! ... and {} more",
                self.errors - self.messages.len() as u64
            );
        }
        out
    }
}

/// Percentile `p` (0..=100) of sorted `values`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
