//! Changes seen and not yet published, and the requests that wait for them.
//!
//! The engine gathers change events for up to `--watch.max-delay` before it reads the files
//! they name and publishes once for all of them: at ten rewrites a second, one wake-up and
//! one publication for many changes instead of one each. A scrape does not wait that long:
//! it asks for the changes seen before it ([`PendingChanges::catch_up`]), and the engine
//! publishes them at once. So a scrape serves every complete change made before it, as
//! node_exporter's textfile collector, which reads the files at each scrape, does.
//!
//! The watcher counts each event it sends ([`PendingChanges::sent`]); the engine counts
//! each it receives, and after the publication that covers them says how many
//! ([`PendingChanges::published`]). A request waits until the count published reaches the
//! count sent when it came.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// How long a request waits for the engine to publish the changes seen before it, at most:
/// past it (an engine busy with a long first read, or stuck), the last publication is served.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(1);

/// The count of change events sent and published, and the engine's doorbell.
#[derive(Debug)]
pub struct PendingChanges {
    /// Events the watcher sent.
    sent: AtomicU64,
    /// Events the last publication covers.
    published: watch::Sender<u64>,
    /// Rung by a request that waits: the engine publishes what it gathered now.
    demand: Notify,
}

impl Default for PendingChanges {
    fn default() -> PendingChanges {
        PendingChanges {
            sent: AtomicU64::new(0),
            published: watch::Sender::new(0),
            demand: Notify::new(),
        }
    }
}

impl PendingChanges {
    /// Counts an event the watcher sends; called before the send, so that a request which
    /// sees the count waits for the publication of that event.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::AcqRel);
    }

    /// The engine: every event up to its `received`-th is published (or waits only for its
    /// debounce: a file written in place may be half written).
    pub fn published(&self, received: u64) {
        self.published.send_if_modified(|published| {
            let moved = *published < received;
            *published = (*published).max(received);
            moved
        });
    }

    /// The engine: resolves when a request waits for what the engine has gathered.
    pub async fn demanded(&self) {
        self.demand.notified().await
    }

    /// A request: waits until the changes seen before it are published, at most `limit`.
    /// Returns whether they are (false: the last publication is older).
    pub async fn catch_up(&self, limit: Duration) -> bool {
        let target = self.sent.load(Ordering::Acquire);
        let mut published = self.published.subscribe();
        if *published.borrow() >= target {
            return true;
        }
        self.demand.notify_one();
        matches!(
            tokio::time::timeout(limit, published.wait_for(|&n| n >= target)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_request_waits_for_the_events_sent_before_it_and_rings_once() {
        let pending = Arc::new(PendingChanges::default());
        // Nothing sent: nothing to wait for, and no ring.
        assert!(pending.catch_up(Duration::from_secs(5)).await);
        pending.sent();
        pending.sent();
        let engine = {
            let pending = Arc::clone(&pending);
            tokio::spawn(async move {
                pending.demanded().await;
                pending.published(1);
                pending.published(2);
            })
        };
        assert!(pending.catch_up(Duration::from_secs(5)).await);
        engine.await.unwrap();
        // A count going back (a second engine's, say) does not undo what was published.
        pending.published(1);
        assert!(pending.catch_up(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn an_engine_that_does_not_answer_leaves_the_request_after_its_limit() {
        let pending = PendingChanges::default();
        pending.sent();
        let began = std::time::Instant::now();
        assert!(!pending.catch_up(Duration::from_millis(50)).await);
        assert!(began.elapsed() >= Duration::from_millis(50));
    }
}
