//! The engine's heartbeat: the engine beats while it makes progress (between events, after
//! each file read, on a timer while idle); `/-/healthy` fails once no beat has come for
//! `--watchdog.timeout`, so that Kubernetes restarts a process whose engine is stuck (a file
//! system that hangs in `readdir`, a blocking call that should not block) instead of serving
//! old values for ever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The last beat, and how long without one means stuck.
#[derive(Debug)]
pub struct Watchdog {
    start: Instant,
    /// Milliseconds from `start` to the last beat.
    last: AtomicU64,
    timeout: Duration,
}

impl Watchdog {
    /// A watchdog that calls the engine stuck after `timeout` without a beat; it counts as
    /// beaten now.
    pub fn new(timeout: Duration) -> Watchdog {
        Watchdog {
            start: Instant::now(),
            last: AtomicU64::new(0),
            timeout,
        }
    }

    /// How often the engine beats while it waits for events: a few times per timeout.
    pub fn interval(&self) -> Duration {
        (self.timeout / 4).max(Duration::from_millis(100))
    }

    /// Records progress.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn since_beat(&self) -> Duration {
        let now = self.start.elapsed();
        now.saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }

    /// `Some(time since the last beat)` when that is longer than the timeout.
    pub fn stalled(&self) -> Option<Duration> {
        let since = self.since_beat();
        (since > self.timeout).then_some(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_after_the_timeout_without_a_beat() {
        let w = Watchdog::new(Duration::from_millis(30));
        assert_eq!(w.stalled(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(w.stalled().is_some());
        w.beat();
        assert_eq!(w.stalled(), None);
    }
}
