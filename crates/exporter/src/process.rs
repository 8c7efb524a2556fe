//! Process metrics (`process_*`, as Prometheus client libraries name them), read from `/proc`
//! for each scrape. On systems without `/proc` only the start time is given.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::adopt::Adopted;
use crate::meta::MetaWriter;
use crate::names;

/// Clock ticks per second of `/proc/self/stat` times (USER_HZ, 100 on every Linux platform;
/// the Go client library assumes the same).
const USER_HZ: f64 = 100.0;

fn start_time() -> f64 {
    static START: OnceLock<f64> = OnceLock::new();
    *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// Records the process start time; call it early in `main`.
pub fn mark_start() {
    start_time();
}

struct Stat {
    cpu_seconds: f64,
    virtual_bytes: f64,
}

fn stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Fields from 3 (state) on: utime is 14, stime 15, vsize 23 (1-based in proc(5)).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let vsize: f64 = fields.get(20)?.parse().ok()?;
    Some(Stat {
        cpu_seconds: (utime + stime) / USER_HZ,
        virtual_bytes: vsize,
    })
}

/// Resident memory in bytes, from `/proc/self/status` (`VmRSS`).
pub fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

fn max_fds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_ascii_whitespace()
        .next()?;
    soft.parse().ok()
}

/// The process metrics, in the OpenMetrics or the classic format, followed by what each of
/// `more` writes (the `promdrop_web_config_*` metrics when `--web.config.file` is in use). The
/// files' series of these families (`adopted`) are written in the same blocks.
pub fn render(openmetrics: bool, more: &[fn(&mut MetaWriter)], adopted: &Arc<Adopted>) -> String {
    let mut w = MetaWriter::with_adopted(Arc::clone(adopted));
    // A family is written when the exporter has a value for it or a file has series of it.
    let own = |w: &mut MetaWriter, metric: &names::OwnMetric, value: Option<f64>| {
        if value.is_some() || w.has_adopted(metric) {
            w.own(metric);
        }
        if let Some(v) = value {
            w.sample(&[], v);
        }
    };
    let stat = stat();
    own(
        &mut w,
        &names::PROCESS_CPU_SECONDS_TOTAL,
        stat.as_ref().map(|s| s.cpu_seconds),
    );
    own(
        &mut w,
        &names::PROCESS_VIRTUAL_MEMORY_BYTES,
        stat.as_ref().map(|s| s.virtual_bytes),
    );
    own(
        &mut w,
        &names::PROCESS_RESIDENT_MEMORY_BYTES,
        resident_bytes().map(|n| n as f64),
    );
    // Less the one read_dir held while counting.
    own(
        &mut w,
        &names::PROCESS_OPEN_FDS,
        open_fds().map(|n| n.saturating_sub(1) as f64),
    );
    own(&mut w, &names::PROCESS_MAX_FDS, max_fds());
    own(
        &mut w,
        &names::PROCESS_START_TIME_SECONDS,
        Some(start_time()),
    );
    // The other process-wide state read at each scrape, from the parts that own it.
    for write in more {
        write(&mut w);
    }
    if openmetrics {
        w.openmetrics
    } else {
        w.classic
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_metrics_are_read_from_proc() {
        let classic = super::render(false, &[], &Default::default());
        assert!(
            classic.contains("\nprocess_cpu_seconds_total "),
            "{classic}"
        );
        assert!(
            classic.contains("\nprocess_resident_memory_bytes "),
            "{classic}"
        );
        assert!(classic.contains("\nprocess_max_fds "), "{classic}");
        let om = super::render(true, &[], &Default::default());
        assert!(om.contains("# TYPE process_cpu_seconds counter\n"), "{om}");
        assert!(super::resident_bytes().unwrap() > 1 << 20);
    }
}
