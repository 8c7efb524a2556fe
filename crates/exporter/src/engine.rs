//! The engine: the one task that owns the state and moves data one way, from change events to
//! a new [`Published`](crate::exposition::Published).
//!
//! ```text
//! WatchEvent ─▶ list the directory ─▶ read+parse what changed (blocking pool) ─▶ FileSnapshot
//!   ─▶ staleness states ─▶ merge + render (blocking) ─▶ Published, swapped atomically
//!   ─▶ gzip in the background
//! ```
//!
//! Bursts of events are gathered for `--watch.debounce` before a scan. Besides events and
//! rescans, the engine wakes at the next staleness transition of any file, so states change
//! on time and not only when something is scraped.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::exposition::{Counters, DataPart, ExpositionOptions, MetaPart, Published, Shared};
use crate::status::{DirStatus, FileStatus, MAX_LISTED_CONFLICTS, StatusModel};
use crate::watch::WatchEvent;
use promdrop_textfile::Error;
use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::discovery::{self, FileIdentity};
use promdrop_textfile::prepared::SeriesIndex;
use promdrop_textfile::snapshot::{self, FileSnapshot, ReadOptions};
use promdrop_textfile::staleness::{self, Deleted, FileState, FileView, Policy, Timing};

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The directories, in order (file order for merging follows it).
    pub directories: Vec<PathBuf>,
    /// How files are read.
    pub read: ReadOptions,
    /// The staleness flags.
    pub policy: Policy,
    /// How files are exposed.
    pub exposition: ExpositionOptions,
    /// How long to gather events before scanning.
    pub debounce: Duration,
    /// The metrics path (for the status page).
    pub telemetry_path: String,
}

impl Settings {
    /// The settings `config` gives.
    pub fn from_config(config: &Config) -> Settings {
        let mut directories: Vec<PathBuf> = Vec::new();
        for dir in &config.directories {
            if !directories.contains(dir) {
                directories.push(dir.clone());
            }
        }
        Settings {
            directories,
            read: ReadOptions {
                max_bytes: config.max_bytes,
                max_series: config.max_series,
                timestamps: config.timestamps,
            },
            policy: Policy {
                stale_after: config.stale_after.0,
                expire_after: config.expire_after.0,
                delete_after: config.delete_after.0,
            },
            exposition: ExpositionOptions {
                timestamps: Some(config.timestamps),
                source_label: config.source_label.clone(),
                compat_node_exporter: config.compat_node_exporter,
                web_config: config.web_config_file.is_some(),
            },
            debounce: config.debounce,
            telemetry_path: config.telemetry_path.clone(),
        }
    }
}

struct Tracked {
    snapshot: Arc<FileSnapshot>,
    timing: Timing,
    state: FileState,
    /// When a deletion found the lock busy: try again then.
    delete_retry: Option<Instant>,
}

/// A file's place in serving order: directory index, then name.
type Key = (usize, OsString);

/// What the data part was built from: the served files and their identities.
type DataKey = Vec<(PathBuf, FileIdentity)>;

/// The engine's state. Create it with [`Engine::new`] and drive it with [`Engine::run`].
pub struct Engine {
    settings: Settings,
    shared: Arc<Shared>,
    files: BTreeMap<Key, Tracked>,
    dir_errors: Vec<Option<String>>,
    refused: BTreeMap<Key, String>,
    counters: Counters,
    conflicts: HashSet<ConflictRecord>,
    data: Option<(DataKey, Arc<DataPart>)>,
    /// The series of the files the data part was built from, kept up to date file by file.
    index: SeriesIndex,
    /// How files are prepared for merging (from the exposition options).
    prepare: Arc<promdrop_textfile::prepared::PrepareOptions>,
    /// Directories to scan again soon (a file was replaced while being read).
    retry: BTreeSet<usize>,
}

/// How many files are read at once.
fn read_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16))
}

impl Engine {
    /// An engine publishing into `shared`.
    pub fn new(settings: Settings, shared: Arc<Shared>) -> Engine {
        let dirs = settings.directories.len();
        let prepare = Arc::new(settings.exposition.prepare_options());
        Engine {
            settings,
            shared,
            files: BTreeMap::new(),
            dir_errors: vec![None; dirs],
            refused: BTreeMap::new(),
            counters: Counters::default(),
            conflicts: HashSet::new(),
            data: None,
            index: SeriesIndex::default(),
            prepare,
            retry: BTreeSet::new(),
        }
    }

    /// Scans everything, publishes, marks ready, then follows `events` until `shutdown`
    /// turns true or the event channel closes.
    pub async fn run(
        mut self,
        mut events: UnboundedReceiver<WatchEvent>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let all: BTreeSet<usize> = (0..self.settings.directories.len()).collect();
        self.scan(&all).await;
        // Files renamed over (or deleted) between the listing and their reading are not
        // tracked yet: read them again before the first publication, so that ready means
        // every file there at start is served (a restart under churn would otherwise hide
        // them for a scrape or more). A few rounds at most: each only reads what is missing.
        for _ in 0..10 {
            if self.retry.is_empty() {
                break;
            }
            let dirs = std::mem::take(&mut self.retry);
            self.scan(&dirs).await;
        }
        self.update_states().await;
        self.publish().await;
        self.shared.ready.store(true, Ordering::Release);
        tracing::info!(files = self.files.len(), "first scan done, ready");
        loop {
            let wake = self.next_wakeup();
            let mut dirty = BTreeSet::new();
            let add = |event: WatchEvent, dirty: &mut BTreeSet<usize>| match event {
                WatchEvent::Changed(i) => {
                    dirty.insert(i);
                }
                WatchEvent::Rescan => dirty.extend(all.iter().copied()),
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                event = events.recv() => {
                    let Some(event) = event else { return };
                    add(event, &mut dirty);
                    let deadline = Instant::now() + self.settings.debounce;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(deadline) => break,
                            event = events.recv() => match event {
                                Some(event) => add(event, &mut dirty),
                                None => break,
                            },
                        }
                    }
                }
                _ = sleep_until(wake) => {}
            }
            dirty.extend(std::mem::take(&mut self.retry));
            let scan_started = Instant::now();
            let mut changed = self.scan(&dirty).await;
            tracing::debug!(
                directories = dirty.len(),
                changed,
                took_ms = scan_started.elapsed().as_secs_f64() * 1000.0,
                "scanned"
            );
            changed |= self.update_states().await;
            if changed {
                self.publish().await;
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let now = SystemTime::now();
        let now_instant = Instant::now();
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if !self.retry.is_empty() {
            consider(now_instant + Duration::from_millis(50));
        }
        for tracked in self.files.values() {
            if let Some(t) = tracked.timing.next_change(now, now_instant.into_std()) {
                consider(Instant::from_std(t));
            }
            if let Some(t) = tracked.delete_retry {
                consider(t);
            }
        }
        next
    }

    /// Lists the directories in `dirs` and reads what changed. Returns whether anything did.
    async fn scan(&mut self, dirs: &BTreeSet<usize>) -> bool {
        let mut changed = false;
        for &index in dirs {
            changed |= self.scan_dir(index).await;
        }
        changed
    }

    async fn scan_dir(&mut self, index: usize) -> bool {
        let Some(dir) = self.settings.directories.get(index).cloned() else {
            return false;
        };
        let listed = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || discovery::list(&dir)).await
        };
        let listing = match listed {
            Ok(Ok(listing)) => listing,
            Ok(Err(e)) => return self.dir_failed(index, &e),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "listing task failed");
                return false;
            }
        };
        let mut changed = false;
        if self.dir_errors[index].take().is_some() {
            tracing::info!(dir = %dir.display(), "directory can be listed again");
            changed = true;
        }

        // Refused entries (escaping symlinks): log each once.
        let refused_now: BTreeMap<Key, String> = listing
            .refused
            .iter()
            .map(|r| {
                let name = r.path.file_name().unwrap_or_default().to_os_string();
                ((index, name), r.error.to_string())
            })
            .collect();
        for (key, message) in &refused_now {
            if self.refused.get(key) != Some(message) {
                tracing::warn!(error = %message, "refusing a file");
                changed = true;
            }
        }
        let before = self.refused.len();
        self.refused.retain(|k, _| k.0 != index);
        changed |= before - self.refused.len() != refused_now.len();
        self.refused.extend(refused_now);

        // Files gone. A regular file missing from the listing may only have been renamed over
        // while the directory was read (readdir need not return an entry replaced meanwhile;
        // tmpfs does skip it): such a file is kept, and the directory listed again soon.
        let present: HashSet<&OsString> = listing.found.iter().map(|f| &f.name).collect();
        let gone: Vec<Key> = self
            .files
            .range((index, OsString::new())..)
            .take_while(|(k, _)| k.0 == index)
            .filter(|(k, _)| !present.contains(&k.1))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if std::fs::symlink_metadata(dir.join(&key.1)).is_ok_and(|m| m.is_file()) {
                self.retry.insert(index);
                continue;
            }
            if let Some(t) = self.files.remove(&key) {
                tracing::info!(file = %t.snapshot.path.display(), "file removed");
                changed = true;
            }
        }

        // Files new or changed: read them, a few at a time, on the blocking pool.
        let to_read: Vec<discovery::Found> = listing
            .found
            .into_iter()
            .filter(|f| {
                self.files
                    .get(&(index, f.name.clone()))
                    .is_none_or(|t| t.snapshot.identity != f.identity)
            })
            .collect();
        let mut pending = to_read.into_iter();
        let mut reads: JoinSet<(OsString, Result<FileSnapshot, Error>)> = JoinSet::new();
        let limit = read_parallelism();
        loop {
            while reads.len() < limit {
                let Some(found) = pending.next() else { break };
                let options = self.settings.read;
                let prepare = Arc::clone(&self.prepare);
                reads.spawn_blocking(move || {
                    let result =
                        snapshot::read_prepared(&found.path, found.identity, &options, &prepare);
                    (found.name, result)
                });
            }
            let Some(joined) = reads.join_next().await else {
                break;
            };
            let Ok((name, result)) = joined else { continue };
            let key = (index, name);
            match result {
                Ok(snapshot) => {
                    self.install(key, snapshot);
                    changed = true;
                }
                Err(Error::Replaced { .. }) => {
                    self.retry.insert(index);
                }
                Err(Error::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    // Deleted between listing and opening: the next scan drops it.
                    self.retry.insert(index);
                }
                Err(e) => {
                    let path = dir.join(&key.1);
                    let identity = self.files.get(&key).map_or(
                        FileIdentity {
                            dev: 0,
                            ino: 0,
                            size: 0,
                            mtime_ns: 0,
                        },
                        |t| t.snapshot.identity,
                    );
                    self.install(key, FileSnapshot::failed(path, identity, &e));
                    changed = true;
                }
            }
        }
        changed
    }

    fn dir_failed(&mut self, index: usize, error: &Error) -> bool {
        let message = error.to_string();
        let mut changed = false;
        if self.dir_errors[index].as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, "cannot list a directory; its files are not served");
            self.dir_errors[index] = Some(message);
            changed = true;
        }
        let before = self.files.len();
        self.files.retain(|k, _| k.0 != index);
        self.refused.retain(|k, _| k.0 != index);
        changed || before != self.files.len()
    }

    fn install(&mut self, key: Key, snapshot: FileSnapshot) {
        let previous = self.files.get(&key).map(|t| &t.snapshot);
        match (&snapshot.content, previous.map(|p| &p.content)) {
            (Ok(content), prev) => {
                self.counters.reloads_success += 1;
                if matches!(prev, Some(Err(_))) {
                    tracing::info!(file = %snapshot.path.display(), series = content.series, "file parses again");
                } else if prev.is_none() {
                    tracing::info!(file = %snapshot.path.display(), series = content.series, "new file");
                } else {
                    tracing::debug!(file = %snapshot.path.display(), series = content.series, "file changed");
                }
            }
            (Err(message), prev) => {
                self.counters.reloads_failure += 1;
                if !matches!(prev, Some(Err(m)) if m == message) {
                    tracing::warn!(error = %message, "file not served");
                }
            }
        }
        let timing = Timing::of(&snapshot, &self.settings.policy);
        let state = timing.state(SystemTime::now());
        self.files.insert(
            key,
            Tracked {
                snapshot: Arc::new(snapshot),
                timing,
                state,
                delete_retry: None,
            },
        );
    }

    /// Recomputes every file's state and deletes the files due. Returns whether anything
    /// changed.
    async fn update_states(&mut self) -> bool {
        let now = SystemTime::now();
        let mut changed = false;
        let mut due: Vec<(Key, PathBuf, FileIdentity)> = Vec::new();
        for (key, tracked) in self.files.iter_mut() {
            let state = tracked.timing.state(now);
            if state != tracked.state {
                tracing::info!(
                    file = %tracked.snapshot.path.display(),
                    from = tracked.state.as_str(),
                    to = state.as_str(),
                    age_seconds = (tracked.timing.age(now) * 1000.0).round() / 1000.0,
                    "file state changed"
                );
                tracked.state = state;
                changed = true;
            }
            if tracked.timing.delete_due(now)
                && tracked.delete_retry.is_none_or(|t| t <= Instant::now())
            {
                due.push((
                    key.clone(),
                    tracked.snapshot.path.clone(),
                    tracked.snapshot.identity,
                ));
            }
        }
        let mut rescan = BTreeSet::new();
        for (key, path, identity) in due {
            let p = path.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                staleness::delete_under_lock(&p, &identity, Duration::from_millis(200))
            })
            .await;
            match outcome {
                Ok(Ok(Deleted::Removed)) => {
                    tracing::info!(file = %path.display(), "deleted a file past its delete-after");
                    self.files.remove(&key);
                    changed = true;
                }
                Ok(Ok(Deleted::Gone | Deleted::Replaced)) => {
                    rescan.insert(key.0);
                }
                Ok(Ok(Deleted::Busy)) => {
                    tracing::debug!(file = %path.display(), "a writer holds the lock; deleting later");
                    if let Some(t) = self.files.get_mut(&key) {
                        t.delete_retry = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot delete an expired file; retrying later");
                    if let Some(t) = self.files.get_mut(&key) {
                        t.delete_retry = Some(Instant::now() + Duration::from_secs(30));
                    }
                }
                Err(e) => tracing::error!(error = %e, "deletion task failed"),
            }
        }
        if !rescan.is_empty() {
            changed |= self.scan(&rescan).await;
        }
        changed
    }

    fn views(&self) -> Vec<FileView> {
        self.files
            .values()
            .map(|t| FileView {
                snapshot: Arc::clone(&t.snapshot),
                timing: t.timing,
                state: t.state,
            })
            .collect()
    }

    /// Rebuilds what is served and swaps it in.
    async fn publish(&mut self) {
        let started = Instant::now();
        let views = self.views();
        let served: Vec<Arc<FileSnapshot>> = views
            .iter()
            .filter(|v| v.served())
            .map(|v| Arc::clone(&v.snapshot))
            .collect();
        let key: DataKey = served
            .iter()
            .map(|s| (s.path.clone(), s.identity))
            .collect();
        let data = match &self.data {
            Some((k, data)) if *k == key => Arc::clone(data),
            _ => {
                let options = self.settings.exposition.clone();
                let mut index = std::mem::take(&mut self.index);
                let built = tokio::task::spawn_blocking(move || {
                    let data = DataPart::build_indexed(served, options, &mut index);
                    (data, index)
                })
                .await;
                let data = match built {
                    Ok((d, index)) => {
                        self.index = index;
                        Arc::new(d)
                    }
                    Err(e) => {
                        // The index went with the task: the next build counts from scratch.
                        tracing::error!(error = %e, "rendering task failed");
                        return;
                    }
                };
                self.count_conflicts(&data.conflicts);
                self.data = Some((key, Arc::clone(&data)));
                data
            }
        };
        let meta = MetaPart::build(
            &views,
            &self.counters,
            self.settings.exposition.compat_node_exporter,
            &data.adopted,
        );
        let status = self.status_model(&views, &data.conflicts);
        let published = Arc::new(Published {
            data,
            meta,
            status: Arc::new(status),
        });
        self.shared.published.store(Arc::clone(&published));
        tracing::debug!(
            files = views.len(),
            bytes = published.data.classic.plain.len(),
            concatenated = published.data.is_concatenated(),
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            "published"
        );
        // The plain body is served from now on; the gzip one as soon as it is ready.
        tokio::task::spawn_blocking(move || {
            published.compress();
            crate::process::release_free_memory();
        });
    }

    fn count_conflicts(&mut self, conflicts: &[ConflictRecord]) {
        let current: HashSet<ConflictRecord> = conflicts.iter().cloned().collect();
        let mut new: Vec<&ConflictRecord> = current
            .iter()
            .filter(|c| !self.conflicts.contains(*c))
            .collect();
        new.sort();
        const LOGGED: usize = 10;
        for c in &new {
            *self.counters.conflicts.entry(c.kind).or_default() += 1;
        }
        for c in new.iter().take(LOGGED) {
            tracing::warn!(kind = c.kind, conflict = %c, "conflict between files");
        }
        if new.len() > LOGGED {
            tracing::warn!(
                more = new.len() - LOGGED,
                "more new conflicts between files (see /api/v1/files)"
            );
        }
        self.conflicts = current;
    }

    fn status_model(&self, views: &[FileView], conflicts: &[ConflictRecord]) -> StatusModel {
        StatusModel {
            ready: true,
            directories: self
                .settings
                .directories
                .iter()
                .zip(&self.dir_errors)
                .map(|(d, e)| DirStatus {
                    path: d.display().to_string(),
                    error: e.clone(),
                })
                .collect(),
            files: views.iter().map(FileStatus::of).collect(),
            refused: self.refused.values().cloned().collect(),
            conflicts: conflicts
                .iter()
                .take(MAX_LISTED_CONFLICTS)
                .cloned()
                .collect(),
            conflict_count: conflicts.len(),
            telemetry_path: self.settings.telemetry_path.clone(),
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
