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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
use crate::logging::Throttle;
use crate::status::{DirStatus, FileStatus, MAX_LISTED_CONFLICTS, StatusModel};
use crate::watch::WatchEvent;
use crate::watchdog::Watchdog;
use promdrop_textfile::Error;
use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::discovery::{self, FileIdentity};
use promdrop_textfile::prepared::SeriesIndex;
use promdrop_textfile::snapshot::{self, FileSnapshot, ReadOptions};
use promdrop_textfile::staleness::{self, Deleted, FileState, FileView, Policy, Timing};
use promdrop_textformat::MetricType;

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
    /// `--textfile.tenancy`: the directories hold one subdirectory per namespace, with
    /// these caps per namespace.
    pub tenancy: Option<TenantCaps>,
}

/// The per-namespace caps of `--textfile.tenant.max-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantCaps {
    /// Most files served per namespace.
    pub files: usize,
    /// Most series served per namespace.
    pub series: usize,
    /// Most bytes of files served per namespace.
    pub bytes: u64,
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
                tenancy_label: config.tenancy.then(|| config.tenancy_label.clone()),
                job_name_from_path: config.job_name_from_path,
                web_config: config.web_config_file.is_some(),
            },
            debounce: config.debounce,
            telemetry_path: config.telemetry_path.clone(),
            tenancy: config.tenancy.then_some(TenantCaps {
                files: config.tenant_max_files,
                series: config.tenant_max_series,
                bytes: config.tenant_max_bytes,
            }),
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
    /// With tenancy: the files over a namespace's cap, and why (not served).
    capped: BTreeMap<Key, String>,
    /// With tenancy: the publication count, and since which one each (family, namespace)
    /// has been declared with its TYPE (see [`Engine::withhold_cross_tenant_types`]).
    generation: u64,
    first_declared: HashMap<(String, String), (u64, MetricType)>,
    /// Beaten as the engine makes progress.
    watchdog: Arc<Watchdog>,
    /// Rate-limits the lines logged about each file.
    throttle: Throttle,
}

/// Files smaller than this together are read in parallel whatever their sizes (see
/// `scan_dir`).
const READ_BUDGET_FLOOR: u64 = 1 << 20;

/// How many files are read at once.
fn read_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16))
}

impl Engine {
    /// An engine publishing into `shared`.
    pub fn new(settings: Settings, shared: Arc<Shared>) -> Engine {
        let dirs = settings.directories.len();
        let prepare = Arc::new(settings.exposition.prepare_options());
        let tenancy_label = settings.exposition.tenancy_label.clone();
        Engine {
            settings,
            shared,
            files: BTreeMap::new(),
            dir_errors: vec![None; dirs],
            refused: BTreeMap::new(),
            counters: Counters {
                tenancy_label,
                ..Counters::default()
            },
            conflicts: HashSet::new(),
            data: None,
            index: SeriesIndex::default(),
            prepare,
            retry: BTreeSet::new(),
            capped: BTreeMap::new(),
            generation: 0,
            first_declared: HashMap::new(),
            watchdog: Arc::new(Watchdog::new(Duration::from_secs(60))),
            throttle: Throttle::default(),
        }
    }

    /// Beats `watchdog` as the engine makes progress (else a watchdog of its own).
    pub fn with_watchdog(mut self, watchdog: Arc<Watchdog>) -> Engine {
        self.watchdog = watchdog;
        self
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
        // readdir need not return an entry renamed over while it runs (tmpfs skips it), and a
        // file the first listing skipped is not tracked, so nothing would read it until it
        // changes again: list once more (only what is new or changed is read).
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
        let mut heartbeat = tokio::time::interval(self.watchdog.interval());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.watchdog.beat();
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
                _ = heartbeat.tick() => continue,
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
            let tenancy = self.settings.tenancy.is_some();
            tokio::task::spawn_blocking(move || {
                if tenancy {
                    discovery::list_tenants(&dir)
                } else {
                    discovery::list(&dir)
                }
            })
            .await
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
                // Relative to the directory: with tenancy, two namespaces' entries may share
                // a file name.
                let name = r
                    .path
                    .strip_prefix(&dir)
                    .map_or_else(|_| r.path.clone().into_os_string(), |p| p.into());
                ((index, name), r.error.to_string())
            })
            .collect();
        for (key, message) in &refused_now {
            if self.refused.get(key) != Some(message) {
                if let Some(suppressed) = self.throttle.allow("refused", message) {
                    tracing::warn!(error = %message, suppressed, "refusing a file");
                }
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
                let file = promdrop_textfile::snapshot::file_label(&t.snapshot.path);
                if let Some(suppressed) = self.throttle.allow("removed", &file) {
                    tracing::info!(file, suppressed, "file removed");
                }
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
        // Reading a file takes a few times its size in memory for a moment (its bytes, the
        // parsed samples, the prepared text): files are read in parallel only as long as the
        // bytes being read add up to no more than the largest of them, so the peak is a small
        // multiple of the largest file, not of all of them.
        let budget = to_read
            .iter()
            .map(|f| f.identity.size)
            .max()
            .unwrap_or(0)
            .max(READ_BUDGET_FLOOR);
        let mut pending = to_read.into_iter().peekable();
        let mut reads: JoinSet<(OsString, u64, Result<FileSnapshot, Error>)> = JoinSet::new();
        let mut reading: u64 = 0;
        let limit = read_parallelism();
        loop {
            while reads.len() < limit {
                let Some(next) = pending.peek() else { break };
                if !reads.is_empty() && reading + next.identity.size > budget {
                    break;
                }
                let Some(found) = pending.next() else { break };
                let options = self.settings.read;
                let prepare = Arc::clone(&self.prepare);
                let size = found.identity.size;
                reading += size;
                reads.spawn_blocking(move || {
                    let result =
                        snapshot::read_prepared(&found.path, found.identity, &options, &prepare);
                    (found.name, size, result)
                });
            }
            let Some(joined) = reads.join_next().await else {
                break;
            };
            self.watchdog.beat();
            let Ok((name, size, result)) = joined else {
                // A read task that panicked: its bytes are counted until the scan ends.
                continue;
            };
            reading -= size;
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
        let file = promdrop_textfile::snapshot::file_label(&snapshot.path);
        match (&snapshot.content, previous.map(|p| &p.content)) {
            (Ok(content), prev) => {
                self.counters.reloads_success += 1;
                let series = content.series;
                if matches!(prev, Some(Err(_))) {
                    if let Some(suppressed) = self.throttle.allow("parses again", &file) {
                        tracing::info!(file, series, suppressed, "file parses again");
                    }
                } else if prev.is_none() {
                    if let Some(suppressed) = self.throttle.allow("new", &file) {
                        tracing::info!(file, series, suppressed, "new file");
                    }
                } else {
                    tracing::debug!(file, series, "file changed");
                }
            }
            (Err(message), prev) => {
                self.counters.reloads_failure += 1;
                if !matches!(prev, Some(Err(m)) if m == message)
                    && let Some(suppressed) = self.throttle.allow("not served", &file)
                {
                    tracing::warn!(error = %message, suppressed, "file not served");
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
                    self.counters.file_delete_errors += 1;
                    changed = true; // the counter is served
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
        if let Some(caps) = self.settings.tenancy {
            self.apply_tenant_caps(caps);
            self.withhold_cross_tenant_types().await;
        }
        let views = self.views();
        let served: Vec<Arc<FileSnapshot>> = self
            .files
            .iter()
            .zip(&views)
            .filter(|((key, _), v)| v.served() && !self.capped.contains_key(key))
            .map(|(_, v)| Arc::clone(&v.snapshot))
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
                self.data = Some((key, Arc::clone(&data)));
                data
            }
        };
        // The conflicts of the data part, and those between namespaces (families withheld
        // before merging, which the data part does not see).
        let mut conflicts = data.conflicts.clone();
        conflicts.extend(self.withheld_conflicts());
        self.count_conflicts(&conflicts);
        self.counters.directories = self
            .settings
            .directories
            .iter()
            .zip(&self.dir_errors)
            .map(|(d, e)| (promdrop_textfile::snapshot::file_label(d), e.is_some()))
            .collect();
        let meta = MetaPart::build(
            &views,
            &self.counters,
            self.settings.exposition.compat_node_exporter,
            &data.adopted,
        );
        let status = self.status_model(&views, &conflicts);
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
        self.counters.current_conflicts.clear();
        for c in &current {
            *self.counters.current_conflicts.entry(c.kind).or_default() += 1;
        }
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

    /// With tenancy: marks the files that would take their namespace over a cap (counted in
    /// serving order, files that are served only) as not served.
    fn apply_tenant_caps(&mut self, caps: TenantCaps) {
        #[derive(Default)]
        struct Used {
            files: usize,
            series: usize,
            bytes: u64,
        }
        let mut used: BTreeMap<(usize, String), Used> = BTreeMap::new();
        let mut capped = BTreeMap::new();
        for (key, tracked) in &self.files {
            let snapshot = &tracked.snapshot;
            if tracked.state == FileState::Expired || snapshot.content.is_err() {
                continue;
            }
            let tenant = snapshot.origin().tenant;
            let u = used.entry((key.0, tenant.clone())).or_default();
            let series = snapshot.series();
            let bytes = snapshot.identity.size;
            let over = if u.files + 1 > caps.files {
                Some(format!("--textfile.tenant.max-files={}", caps.files))
            } else if u.series + series > caps.series {
                Some(format!("--textfile.tenant.max-series={}", caps.series))
            } else if u.bytes + bytes > caps.bytes {
                Some(format!("--textfile.tenant.max-bytes={}", caps.bytes))
            } else {
                None
            };
            match over {
                Some(cap) => {
                    capped.insert(
                        key.clone(),
                        format!(
                            "{} would take namespace {tenant} over {cap} ({series} series, \
                             {bytes} bytes): not served",
                            snapshot.path.display()
                        ),
                    );
                }
                None => {
                    u.files += 1;
                    u.series += series;
                    u.bytes += bytes;
                }
            }
        }
        for (key, message) in &capped {
            if self.capped.get(key) != Some(message) {
                tracing::warn!(error = %message, "refusing a file");
            }
        }
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for key in capped.keys() {
            if let Some(t) = self.files.get(key) {
                *refused.entry(t.snapshot.origin().tenant).or_default() += 1;
            }
        }
        self.counters.tenant_files_refused = refused;
        self.capped = capped;
    }

    /// The files that declare families (parsed, within their namespace's caps; expired ones
    /// too, so that a family does not change hands while its file is only old), in serving
    /// order, with their namespaces.
    fn declaring_files(&self) -> Vec<(Key, String)> {
        self.files
            .iter()
            .filter(|(key, t)| t.snapshot.content.is_ok() && !self.capped.contains_key(*key))
            .map(|(key, t)| (key.clone(), t.snapshot.origin().tenant))
            .collect()
    }

    /// For each family, the TYPE each namespace gives it (the first of its files, in serving
    /// order, to declare it) and the files declaring it.
    fn family_types(&self) -> BTreeMap<String, (BTreeMap<String, MetricType>, Vec<Key>)> {
        let mut families: BTreeMap<String, (BTreeMap<String, MetricType>, Vec<Key>)> =
            BTreeMap::new();
        for (key, tenant) in self.declaring_files() {
            let Some(t) = self.files.get(&key) else {
                continue;
            };
            for (name, metric_type) in t.snapshot.declared() {
                let (types, files) = families.entry(name.to_string()).or_default();
                types.entry(tenant.clone()).or_insert(metric_type);
                files.push(key.clone());
            }
        }
        families
    }

    /// With tenancy: the rule for a family that two namespaces declare with different TYPEs
    /// (one exposition holds one TYPE per family). The family stays with the namespace that
    /// has declared it longest, with its TYPE, since this process started; it is withheld from
    /// the files of a namespace that declares it later with another TYPE. Namespaces first
    /// seen declaring it at the same time (in one scan: at start-up, both files already there)
    /// with different TYPEs all have it withheld, until one of them changes. So no namespace
    /// takes a family from another by coming first in name order, or by anything its file
    /// says about itself (times in it can be forged); and every withheld family is reported
    /// for its file (a `type` conflict, on the status page and in
    /// `promdrop_current_conflicts`). Within a namespace, the first file in serving order fixes
    /// the TYPE, as without tenancy. The files concerned are prepared again (the families
    /// left out) when what they withhold changes.
    async fn withhold_cross_tenant_types(&mut self) {
        self.generation += 1;
        let families = self.family_types();
        // Seniority: when each namespace started declaring each family with its TYPE.
        let mut seen: HashMap<(String, String), (u64, MetricType)> = HashMap::new();
        for (name, (types, _)) in &families {
            for (tenant, metric_type) in types {
                let id = (name.clone(), tenant.clone());
                let since = match self.first_declared.get(&id) {
                    Some((since, t)) if t == metric_type => *since,
                    _ => self.generation,
                };
                seen.insert(id, (since, *metric_type));
            }
        }
        self.first_declared = seen;
        let mut wanted: BTreeMap<Key, Vec<Box<str>>> = BTreeMap::new();
        for (name, (types, files)) in &families {
            let mut distinct: Vec<MetricType> = types.values().copied().collect();
            distinct.sort_by_key(|t| *t as u8);
            distinct.dedup();
            if distinct.len() < 2 {
                continue;
            }
            let since = |tenant: &String| {
                self.first_declared
                    .get(&(name.clone(), tenant.clone()))
                    .map_or(u64::MAX, |(s, _)| *s)
            };
            let eldest = types.keys().map(since).min().unwrap_or(u64::MAX);
            let mut owner_types: Vec<MetricType> = types
                .iter()
                .filter(|(tenant, _)| since(tenant) == eldest)
                .map(|(_, t)| *t)
                .collect();
            owner_types.sort_by_key(|t| *t as u8);
            owner_types.dedup();
            let kept = match owner_types[..] {
                [only] => Some(only),
                _ => None, // a tie between TYPEs: none keeps it
            };
            // Withheld from the files that give it another TYPE than the one kept.
            for key in files {
                let own = self.files.get(key).and_then(|t| {
                    t.snapshot
                        .declared()
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, ty)| *ty)
                });
                if kept.is_none() || own != kept {
                    wanted
                        .entry(key.clone())
                        .or_default()
                        .push(Box::from(name.as_str()));
                }
            }
        }
        let mut redo: Vec<(Key, Arc<FileSnapshot>, Vec<Box<str>>)> = Vec::new();
        for (key, tracked) in &self.files {
            let Ok(content) = &tracked.snapshot.content else {
                continue;
            };
            let mut have: Vec<Box<str>> = content
                .prepared
                .withheld
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            have.sort();
            let mut want = wanted.remove(key).unwrap_or_default();
            want.sort();
            want.dedup();
            if have != want {
                redo.push((key.clone(), Arc::clone(&tracked.snapshot), want));
            }
        }
        if redo.is_empty() {
            return;
        }
        let prepare = Arc::clone(&self.prepare);
        let done = tokio::task::spawn_blocking(move || {
            redo.into_iter()
                .filter_map(|(key, snapshot, want)| {
                    Some((key, snapshot.withholding(want, &prepare)?))
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(done) = done else {
            tracing::error!("preparing files again failed");
            return;
        };
        for (key, snapshot) in done {
            if let Some(t) = self.files.get_mut(&key) {
                // Only when the file was not read again meanwhile.
                if t.snapshot.identity == snapshot.identity {
                    t.snapshot = Arc::new(snapshot);
                }
            }
        }
        // Same files, same identities, other prepared forms: build the data part again.
        self.data = None;
    }

    /// The conflicts of the families withheld between namespaces: one per file and family,
    /// naming a file of another namespace that declares it with another TYPE.
    fn withheld_conflicts(&self) -> Vec<ConflictRecord> {
        if self.settings.tenancy.is_none() {
            return Vec::new();
        }
        let families = self.family_types();
        let mut out = Vec::new();
        for (key, tenant) in self.declaring_files() {
            let Some(t) = self.files.get(&key) else {
                continue;
            };
            let Ok(content) = &t.snapshot.content else {
                continue;
            };
            for (name, metric_type) in &content.prepared.withheld {
                let other = families.get(&**name).and_then(|(_, files)| {
                    files.iter().find_map(|k| {
                        let o = self.files.get(k)?;
                        let differs = o.snapshot.origin().tenant != tenant
                            && o.snapshot
                                .declared()
                                .iter()
                                .any(|(n, ty)| *n == &**name && ty != metric_type);
                        differs.then(|| snapshot::file_label(&o.snapshot.path))
                    })
                });
                out.push(ConflictRecord {
                    kind: "type",
                    family: name.to_string(),
                    series: None,
                    kept_file: other,
                    kept_family: None,
                    name: None,
                    other_file: snapshot::file_label(&t.snapshot.path),
                });
            }
        }
        out
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
                    path: promdrop_textfile::snapshot::file_label(d),
                    error: e.clone(),
                })
                .collect(),
            files: views.iter().map(FileStatus::of).collect(),
            refused: self
                .refused
                .values()
                .chain(self.capped.values())
                .cloned()
                .collect(),
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
