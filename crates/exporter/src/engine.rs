//! The engine: the one task that owns the state and moves data one way, from change events to
//! a new [`Published`](crate::exposition::Published). It runs on a thread of its own
//! ([`crate::run`] starts it there), where its blocking work runs in place (`blocking`).
//!
//! ```text
//! WatchEvent ─▶ gathered in a Batch ─▶ look at the names (or list the directory)
//!   ─▶ read+parse what changed (a few files in place, more in parallel on the blocking
//!   pool) ─▶ FileSnapshot ─▶ staleness states ─▶ chunks patched or built, merged
//!   ─▶ Published, swapped atomically ─▶ gzip on the first request that asks for it
//! ```
//!
//! Events are gathered for `--watch.max-delay` (5 s) after the first of a batch, and looked at
//! together: at ten changes a second, one wake-up, one read pass and one publication for fifty
//! changes instead of one each. A request does not wait for that: it rings
//! ([`crate::pending::PendingChanges`]) and the engine looks at the batch at once. Files
//! renamed into place or removed are complete; any other event (a file written in place may
//! be half written) also waits `--watch.debounce` after the first such event. While a batch
//! gathers, the event channel is not polled, so its events wake the engine once, not each.
//! Besides events and rescans, the engine wakes at the next staleness transition of any
//! file, so states change on time and not only when something is scraped.

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
use crate::exposition::{
    CHUNK_BITS, Carry, Counters, DataChunk, DataPart, ExpositionOptions, MetaChunk, MetaPart,
    Published, Shared, follow_chunks,
};
use crate::logging::Throttle;
use crate::status::{DirStatus, MAX_LISTED_CONFLICTS, StatusModel};
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
    /// How long to gather events that are not a rename into place before scanning.
    pub debounce: Duration,
    /// `--watch.max-delay`: how long events are gathered when no request asks for them.
    pub max_delay: Duration,
    /// The metrics path (for the status page).
    pub telemetry_path: String,
    /// `--max-total-bytes`.
    pub max_total_bytes: u64,
    /// `--max-total-series`.
    pub max_total_series: u64,
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
            max_delay: config.max_delay,
            telemetry_path: config.telemetry_path.clone(),
            max_total_bytes: config.max_total_bytes,
            max_total_series: config.max_total_series as u64,
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
    /// Whether a chunk ends after this file ([`crate::exposition::ends_chunk`]).
    ends_chunk: bool,
    /// Refused by the directory caps: the series it had (its bytes are in the identity).
    capped: Option<u64>,
    /// What the snapshot holds towards the directory caps ([`held`]): what the engine's
    /// running totals lose when the file goes or changes.
    held: (u64, u64),
    /// When it was read, as the engine's count of reads ([`Engine::reads`]): a listing that
    /// began before has nothing newer to say about it.
    read_seq: u64,
}

/// What a snapshot holds towards the directory caps: bytes and series (none when it failed).
fn held(snapshot: &FileSnapshot) -> (u64, u64) {
    match &snapshot.content {
        Ok(c) => (snapshot.identity.size, c.series as u64),
        Err(_) => (0, 0),
    }
}

/// Runs blocking `work` where the engine runs, catching a panic (as a task of the blocking pool
/// would: the engine goes on, logging that the work failed). The engine has a thread of its
/// own ([`crate::run`] starts it there), so blocking it costs no other task anything, and a change's
/// stat, read and publication cost no handoff to another thread: on a 2-core VM those
/// handoffs (two context switches each) were a sixth of the CPU a change cost.
fn blocking<T>(work: impl FnOnce() -> T) -> Result<T, Panicked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|_| Panicked)
}

/// A directory's listing, or why it could not be made (or that listing it panicked).
type Listed = Result<Result<discovery::Listing, Error>, Panicked>;

/// Lists directory `dir` (its namespaces' directories too, with tenancy).
fn list_dir(dir: &std::path::Path, tenancy: bool) -> Listed {
    blocking(|| {
        if tenancy {
            discovery::list_tenants(dir)
        } else {
            discovery::list(dir)
        }
    })
}

/// Directories being listed on the blocking pool while the engine goes on following events:
/// a listing stats every file (50 to 60 ms at 10,000 files), and a change that came meanwhile
/// would wait for it.
struct BackgroundListing {
    /// [`Engine::reads`] when it began: files read since are newer than what it says.
    since: u64,
    started: Instant,
    handle: tokio::task::JoinHandle<Vec<(usize, Listed)>>,
}

/// The directories' listings once `listing` is done (never, when there is none).
async fn listing_done(
    listing: &mut Option<BackgroundListing>,
) -> (u64, Result<Vec<(usize, Listed)>, tokio::task::JoinError>) {
    match listing {
        Some(listing) => {
            let listed = (&mut listing.handle).await;
            tracing::debug!(
                took_ms = listing.started.elapsed().as_secs_f64() * 1000.0,
                "listed in the background"
            );
            (listing.since, listed)
        }
        None => std::future::pending().await,
    }
}

/// Reads and prepares the file `found`: its name, the size it was listed with (what the read
/// counted towards the bytes being read), and the snapshot or why not.
fn read_found(
    found: discovery::Found,
    options: &ReadOptions,
    prepare: &promdrop_textfile::prepared::PrepareOptions,
) -> (OsString, u64, Result<FileSnapshot, Error>) {
    let result = snapshot::read_prepared(&found.path, found.identity, options, prepare);
    (found.name, found.identity.size, result)
}

/// Blocking work that panicked ([`blocking`]).
#[derive(Debug)]
struct Panicked;

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("panicked")
    }
}

/// A file's place in serving order: directory index, then name.
type Key = (usize, OsString);

/// A chunk of consecutive tracked files (see [`crate::exposition::CHUNK_BITS`]) as last
/// published: its files, their states and whether each is within its namespace's caps, the
/// merged form of the served ones, their meta lines.
struct EngineChunk {
    /// Its files as published (also the status's).
    views: Arc<[FileView]>,
    /// Whether each is within its namespace's caps.
    within: Vec<bool>,
    /// Its first and last files' keys.
    first: Key,
    last: Key,
    data: Arc<DataChunk>,
    meta: Arc<MetaChunk>,
}

/// What [`Engine::rechunk`] gives: the chunks, and the data chunks of those cut again, as
/// they were and as they are.
struct Rechunked {
    chunks: Vec<Arc<EngineChunk>>,
    before: Vec<Arc<DataChunk>>,
    after: Vec<Arc<DataChunk>>,
}

/// The engine's state. Create it with [`Engine::new`] and drive it with [`Engine::run`].
pub struct Engine {
    settings: Settings,
    shared: Arc<Shared>,
    files: BTreeMap<Key, Tracked>,
    /// The sum of the files' `held`, kept as files come, go and change (the caps are
    /// checked at every read: a walk of every file per change would cost the directory).
    held_total: (u64, u64),
    /// Whether a file may be refused by the directory caps (cleared by a walk that finds
    /// none): without one, and under the caps, [`Engine::apply_caps`] has nothing to do.
    any_capped: bool,
    /// The files that came, went, or changed (snapshot or state) since the last publication:
    /// only their chunks are cut and built again ([`Engine::rechunk`]).
    dirty: BTreeSet<Key>,
    /// Whether every chunk is to be cut again (a directory's files all went).
    all_dirty: bool,
    dir_errors: Vec<Option<String>>,
    refused: BTreeMap<Key, String>,
    counters: Counters,
    conflicts: HashSet<ConflictRecord>,
    data: Option<Arc<DataPart>>,
    /// The series of the files the data part was built from, kept up to date chunk by chunk.
    index: SeriesIndex,
    /// The served files cut into chunks, as last published.
    chunks: Vec<Arc<EngineChunk>>,
    /// What a publication's data part hands the next (family headers, compressed once).
    carry: Arc<Carry>,
    /// The conflicts of the last publication: the data part's and, with tenancy, those
    /// between namespaces.
    current: Vec<ConflictRecord>,
    /// How files are prepared for merging (from the exposition options).
    prepare: Arc<promdrop_textfile::prepared::PrepareOptions>,
    /// Directories to scan again soon (a file was replaced while being read).
    retry: BTreeSet<usize>,
    /// Directories to list in the background next ([`BackgroundListing`]).
    to_list: BTreeSet<usize>,
    /// The listing running, if any.
    listing: Option<BackgroundListing>,
    /// How many files were read and installed so far (see [`Tracked::read_seq`]).
    reads: u64,
    /// With tenancy: the files over a namespace's cap, and why (not served).
    tenant_capped: BTreeMap<Key, String>,
    /// With tenancy: the publication count, and since which one each (family, namespace)
    /// has been declared with its TYPE (see [`Engine::withhold_cross_tenant_types`]).
    generation: u64,
    first_declared: HashMap<(String, String), (u64, MetricType)>,
    /// The earliest state change or deletion retry of any file, as last walked (`None`: walk
    /// again). Kept up to date when a file is read; files that go only make it early, which
    /// costs a wake-up that walks again.
    wake: Option<Option<Instant>>,
    /// Beaten as the engine makes progress.
    watchdog: Arc<Watchdog>,
    /// Rate-limits the lines logged about each file.
    throttle: Throttle,
    /// How many watch events were received so far (see [`crate::pending::PendingChanges`]).
    received: u64,
}

/// Files smaller than this together are read in parallel whatever their sizes (see
/// `scan_dir`).
const READ_BUDGET_FLOOR: u64 = 1 << 20;

/// Up to this many files, of up to [`INLINE_READ_BYTES`] together, are read in place, one
/// after the other, rather than in parallel on the blocking pool.
const INLINE_READS: usize = 64;
/// See [`INLINE_READS`]: about a millisecond or two of parsing.
const INLINE_READ_BYTES: u64 = 256 << 10;

/// How many files are read at once: the CPUs available when first asked. Asked once, as
/// `available_parallelism` reads the cgroup's files each time (6% of the exporter's CPU when
/// it was asked at each change).
fn read_parallelism() -> usize {
    static PARALLELISM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PARALLELISM
        .get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16)))
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
            held_total: (0, 0),
            any_capped: false,
            dirty: BTreeSet::new(),
            all_dirty: true,
            dir_errors: vec![None; dirs],
            refused: BTreeMap::new(),
            counters: Counters {
                tenancy_label,
                ..Counters::default()
            },
            conflicts: HashSet::new(),
            data: None,
            index: SeriesIndex::default(),
            chunks: Vec::new(),
            carry: Arc::new(Carry::default()),
            current: Vec::new(),
            prepare,
            retry: BTreeSet::new(),
            to_list: BTreeSet::new(),
            listing: None,
            reads: 0,
            tenant_capped: BTreeMap::new(),
            generation: 0,
            first_declared: HashMap::new(),
            wake: None,
            watchdog: Arc::new(Watchdog::new(Duration::from_secs(60))),
            throttle: Throttle::default(),
            received: 0,
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
        // A file renamed over while both listings read the directory can be missing from
        // both (under churn, several are), and its rename is an event that names it: look at
        // what the events queued meanwhile name (and list what they ask to list) before the
        // first publication.
        let mut start = Gathered::default();
        while let Ok(event) = events.try_recv() {
            self.received += 1;
            start.add(event, &all);
        }
        self.scan(&start.dirty).await;
        for (index, names) in start.names {
            self.scan_names(index, names).await;
        }
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
        self.apply_caps().await;
        self.publish().await;
        self.shared.pending.published(self.received);
        self.shared.ready.store(true, Ordering::Release);
        tracing::info!(files = self.files.len(), "first scan done, ready");
        let mut heartbeat = tokio::time::interval(self.watchdog.interval());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Batch::default();
        loop {
            self.beat();
            let wake = self.next_wakeup();
            let due = batch.due(&self.settings);
            let mut changed = false;
            // While a batch gathers, the channel is not polled: the events of a batch wake
            // the engine once (at its end, or when a request asks), not one each.
            tokio::select! {
                _ = shutdown.changed() => return,
                event = events.recv(), if batch.is_empty() => {
                    let Some(event) = event else { return };
                    self.received += 1;
                    batch.add(event, &all, Instant::now());
                }
                // (Heard even when the batch was asked for already: a request that came after
                // it may wait for a rename still in the channel.)
                _ = self.shared.pending.demanded(), if !batch.is_empty() => {
                    batch.demanded = true;
                }
                _ = sleep_until(due) => {}
                (since, listed) = listing_done(&mut self.listing) => {
                    self.listing = None;
                    match listed {
                        Ok(listed) => {
                            for (index, listed) in listed {
                                changed |= self.apply_listing(index, listed, Some(since)).await;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "listing task failed"),
                    }
                }
                // A file's state changes: what was renamed into place meanwhile is read
                // first, so no state is given to a snapshot already replaced.
                _ = sleep_until(wake) => batch.demanded |= !batch.is_empty(),
                _ = heartbeat.tick() => continue,
            }
            // What came meanwhile joins the batch; then what is due is looked at: on a
            // request, everything but what waits for its debounce.
            let now = Instant::now();
            loop {
                match events.try_recv() {
                    Ok(event) => {
                        self.received += 1;
                        batch.add(event, &all, now);
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            let Gathered { dirty, names } = batch.take_due(&self.settings, now);
            // Directories are listed in the background (a listing stats every file), so that
            // the changes events name go on being read meanwhile.
            self.to_list.extend(dirty);
            self.to_list.extend(std::mem::take(&mut self.retry));
            self.start_listing();
            let names_started = Instant::now();
            // Names are looked at even in a directory being listed: a listing can miss an
            // entry renamed over while it ran, and the event naming it is then the only one.
            // (One stat a name.)
            let named = names.len();
            for (index, names) in names {
                changed |= self.scan_names(index, names).await;
            }
            if named > 0 {
                tracing::debug!(
                    directories = named,
                    changed,
                    took_ms = names_started.elapsed().as_secs_f64() * 1000.0,
                    "looked at the names events gave"
                );
            }
            changed |= self.update_states().await;
            changed |= self.apply_caps().await;
            if changed {
                self.publish().await;
            }
            // Every event received is now published, or waits for its debounce only (a
            // request does not wait for a file that may be half written).
            if batch.waits_for_debounce_only() {
                self.shared.pending.published(self.received);
            }
        }
    }

    /// The next instant a file's state changes or a deletion is retried (and soon, when a
    /// directory is to be scanned again). Walks every file only when the last walk's answer
    /// may be stale ([`Engine::wake`]); a change to one file updates it in place.
    fn next_wakeup(&mut self) -> Option<Instant> {
        let files = match self.wake {
            Some(known) => known,
            None => {
                let now = SystemTime::now();
                let now_instant = Instant::now();
                let mut next: Option<Instant> = None;
                for tracked in self.files.values() {
                    for t in tracked
                        .timing
                        .next_change(now, now_instant.into_std())
                        .map(Instant::from_std)
                        .into_iter()
                        .chain(tracked.delete_retry)
                    {
                        next = Some(next.map_or(t, |n| n.min(t)));
                    }
                }
                self.wake = Some(next);
                next
            }
        };
        if self.retry.is_empty() {
            return files;
        }
        let soon = Instant::now() + Duration::from_millis(50);
        Some(files.map_or(soon, |t| t.min(soon)))
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
        let listed = list_dir(&dir, self.settings.tenancy.is_some());
        self.apply_listing(index, listed, None).await
    }

    /// Beats the watchdog, unless a background listing has run for longer than a beat's
    /// interval: a listing stuck in the file system (a hung NFS server) makes the process
    /// unhealthy, as the engine stuck in it did when it listed in place.
    fn beat(&self) {
        if self
            .listing
            .as_ref()
            .is_none_or(|l| l.started.elapsed() < self.watchdog.interval())
        {
            self.watchdog.beat();
        }
    }

    /// Starts listing the directories [`Engine::to_list`] names in the background, unless a
    /// listing runs.
    fn start_listing(&mut self) {
        if self.listing.is_some() || self.to_list.is_empty() {
            return;
        }
        let dirs: Vec<(usize, PathBuf)> = std::mem::take(&mut self.to_list)
            .into_iter()
            .filter_map(|i| Some((i, self.settings.directories.get(i)?.clone())))
            .collect();
        let tenancy = self.settings.tenancy.is_some();
        let handle = tokio::task::spawn_blocking(move || {
            dirs.into_iter()
                .map(|(i, dir)| (i, list_dir(&dir, tenancy)))
                .collect()
        });
        self.listing = Some(BackgroundListing {
            since: self.reads,
            started: Instant::now(),
            handle,
        });
    }

    /// Takes in the listing `listed` of directory `index`: drops the files gone, reads those
    /// new or changed. A listing that began when [`Engine::reads`] was `since` says nothing of
    /// the files read after (an event named them): they are left as they are.
    async fn apply_listing(&mut self, index: usize, listed: Listed, since: Option<u64>) -> bool {
        let Some(dir) = self.settings.directories.get(index).cloned() else {
            return false;
        };
        let listing = match listed {
            Ok(Ok(listing)) => listing,
            Ok(Err(e)) => return self.dir_failed(index, &e),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "listing task failed");
                return false;
            }
        };
        let listed_before = |t: &Tracked| since.is_none_or(|s| t.read_seq <= s);
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
            .filter(|(k, t)| !present.contains(&k.1) && listed_before(t))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if std::fs::symlink_metadata(dir.join(&key.1)).is_ok_and(|m| m.is_file()) {
                self.retry.insert(index);
                continue;
            }
            if let Some(t) = self.untrack(&key) {
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
                    .is_none_or(|t| t.snapshot.identity != f.identity && listed_before(t))
            })
            .collect();
        changed |= self.read_files(index, &dir, to_read).await;
        changed
    }

    /// Looks at the entries `names` of directory `index` alone (what a change event named),
    /// as a listing would see them: costs the names, not the directory.
    async fn scan_names(&mut self, index: usize, names: BTreeSet<OsString>) -> bool {
        let Some(dir) = self.settings.directories.get(index).cloned() else {
            return false;
        };
        if self.dir_errors[index].is_some() {
            // The directory could not be listed: only a listing tells it is back.
            return self.scan_dir(index).await;
        }
        let looked = {
            let dir = dir.clone();
            let tenancy = self.settings.tenancy.is_some();
            blocking(move || {
                names
                    .into_iter()
                    .map(|name| {
                        // With tenancy a name is `<namespace>/<file>`, looked at as
                        // `list_tenants` would list it.
                        let entry = if tenancy {
                            discovery::look_up_tenant(&dir, &name)
                        } else {
                            Some(discovery::look_up(&dir, &name))
                        };
                        (name, entry)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let Ok(looked) = looked else {
            return false;
        };
        let mut changed = false;
        let mut to_read = Vec::new();
        for (name, entry) in looked {
            let key = (index, name);
            let entry = match entry {
                Some(Ok(entry)) => entry,
                // Something odd (permissions, a namespace's directory that is not a plain
                // directory): a listing decides.
                _ => return changed | self.scan_dir(index).await,
            };
            let refused = match &entry {
                discovery::Entry::Refused(r) => Some(r.error.to_string()),
                _ => None,
            };
            match (self.refused.get(&key), refused) {
                (old, Some(message)) if old != Some(&message) => {
                    if let Some(suppressed) = self.throttle.allow("refused", &message) {
                        tracing::warn!(error = %message, suppressed, "refusing a file");
                    }
                    self.refused.insert(key.clone(), message);
                    changed = true;
                }
                (Some(_), None) => {
                    self.refused.remove(&key);
                    changed = true;
                }
                _ => {}
            }
            match entry {
                discovery::Entry::Found(found) => {
                    if self
                        .files
                        .get(&key)
                        .is_none_or(|t| t.snapshot.identity != found.identity)
                    {
                        to_read.push(found);
                    }
                }
                discovery::Entry::Refused(_) | discovery::Entry::Absent => {
                    if let Some(t) = self.untrack(&key) {
                        let file = promdrop_textfile::snapshot::file_label(&t.snapshot.path);
                        if let Some(suppressed) = self.throttle.allow("removed", &file) {
                            tracing::info!(file, suppressed, "file removed");
                        }
                        changed = true;
                    }
                }
            }
        }
        changed |= self.read_files(index, &dir, to_read).await;
        changed
    }

    /// Reads `to_read` (files of directory `index`), a few at a time, on the blocking pool,
    /// and installs what they hold. A file replaced while it was read is looked up again by
    /// name and read again (a few rounds; a listing could skip it while it is renamed over),
    /// then left to a listing. Returns whether anything changed.
    async fn read_files(
        &mut self,
        index: usize,
        dir: &std::path::Path,
        to_read: Vec<discovery::Found>,
    ) -> bool {
        let (mut changed, mut replaced) = self.read_batch(index, dir, to_read).await;
        for _ in 0..3 {
            if replaced.is_empty() {
                break;
            }
            let Some(found) = self.look_up_found(dir, replaced).await else {
                // Something else than a served file under a name: a listing decides.
                self.retry.insert(index);
                return changed;
            };
            let (c, r) = self.read_batch(index, dir, found).await;
            changed |= c;
            replaced = r;
        }
        if !replaced.is_empty() {
            self.retry.insert(index);
        }
        changed
    }

    /// The entries `names` of directory `dir` as files to read, or `None` when one of them is
    /// not a served file now (absent, refused, or only a listing can tell).
    async fn look_up_found(
        &self,
        dir: &std::path::Path,
        names: Vec<OsString>,
    ) -> Option<Vec<discovery::Found>> {
        let dir = dir.to_path_buf();
        let tenancy = self.settings.tenancy.is_some();
        let looked = blocking(move || {
            names
                .into_iter()
                .map(|name| {
                    let entry = if tenancy {
                        discovery::look_up_tenant(&dir, &name)?
                    } else {
                        discovery::look_up(&dir, &name)
                    };
                    match entry {
                        Ok(discovery::Entry::Found(found)) => Some(found),
                        _ => None,
                    }
                })
                .collect::<Option<Vec<_>>>()
        });
        looked.ok().flatten()
    }

    /// One round of [`Engine::read_files`]: returns whether anything changed and the names of
    /// the files replaced while they were read.
    async fn read_batch(
        &mut self,
        index: usize,
        dir: &std::path::Path,
        to_read: Vec<discovery::Found>,
    ) -> (bool, Vec<OsString>) {
        let mut changed = false;
        let mut replaced = Vec::new();
        let mut totals = if to_read.is_empty() {
            (0, 0)
        } else {
            self.totals()
        };
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
        let total_size: u64 = to_read.iter().map(|f| f.identity.size).sum();
        let mut pending = to_read.into_iter().peekable();
        let mut reads: JoinSet<(OsString, u64, Result<FileSnapshot, Error>)> = JoinSet::new();
        let mut reading: u64 = 0;
        let limit = read_parallelism();
        // A few changed files (a batch of changes, most of the time) are read where the
        // engine runs, one after the other: a task of the blocking pool costs two thread
        // switches a file, more than reading a small file. More are read in parallel.
        let inline =
            pending.len() == 1 || pending.len() <= INLINE_READS && total_size <= INLINE_READ_BYTES;
        loop {
            let joined = if inline {
                let Some(found) = pending.next() else { break };
                reading += found.identity.size;
                blocking(|| read_found(found, &self.settings.read, &self.prepare)).ok()
            } else {
                while reads.len() < limit {
                    let Some(next) = pending.peek() else { break };
                    if !reads.is_empty() && reading + next.identity.size > budget {
                        break;
                    }
                    let Some(found) = pending.next() else { break };
                    reading += found.identity.size;
                    let (options, prepare) = (self.settings.read, Arc::clone(&self.prepare));
                    reads.spawn_blocking(move || read_found(found, &options, &prepare));
                }
                let Some(joined) = reads.join_next().await else {
                    break;
                };
                joined.ok()
            };
            self.beat();
            let Some((name, size, result)) = joined else {
                // A read that panicked: its bytes are counted until the scan ends.
                continue;
            };
            reading -= size;
            let key = (index, name);
            match result {
                Ok(snapshot) => {
                    // The directory caps, checked as files arrive so that memory stays bounded
                    // while reading; `apply_caps` then decides in serving order.
                    let old = self.files.get(&key).map_or((0, 0), |t| t.held);
                    let (size, series) = held(&snapshot);
                    let over = self.over_total(
                        totals.0.saturating_sub(old.0) + size,
                        totals.1.saturating_sub(old.1) + series,
                        &snapshot.path,
                    );
                    match over {
                        None => {
                            totals = (
                                totals.0.saturating_sub(old.0) + size,
                                totals.1.saturating_sub(old.1) + series,
                            );
                            self.install(key, snapshot);
                        }
                        Some(e) => {
                            let failed =
                                FileSnapshot::failed(snapshot.path.clone(), snapshot.identity, &e);
                            self.install(key.clone(), failed);
                            if let Some(t) = self.files.get_mut(&key) {
                                t.capped = Some(series);
                                self.any_capped = true;
                            }
                            totals = (
                                totals.0.saturating_sub(old.0),
                                totals.1.saturating_sub(old.1),
                            );
                        }
                    }
                    changed = true;
                }
                Err(Error::Replaced { .. }) => {
                    replaced.push(key.1);
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
        (changed, replaced)
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
        self.all_dirty = true;
        self.held_total = self.held_by_files();
        self.refused.retain(|k, _| k.0 != index);
        changed || before != self.files.len()
    }

    /// What the served files hold: bytes and series.
    fn totals(&self) -> (u64, u64) {
        debug_assert_eq!(
            self.held_total,
            self.held_by_files(),
            "the running totals drifted from the files'"
        );
        self.held_total
    }

    /// What the files hold, summed over every file (the running totals are this).
    fn held_by_files(&self) -> (u64, u64) {
        self.files
            .values()
            .fold((0, 0), |(b, s), t| (b + t.held.0, s + t.held.1))
    }

    /// Moves the running totals from a file holding `old` to it holding `new`.
    fn adjust_held(&mut self, old: (u64, u64), new: (u64, u64)) {
        self.held_total = (
            self.held_total.0 - old.0 + new.0,
            self.held_total.1 - old.1 + new.1,
        );
    }

    /// Stops tracking the file at `key`.
    fn untrack(&mut self, key: &Key) -> Option<Tracked> {
        let t = self.files.remove(key)?;
        self.dirty.insert(key.clone());
        self.adjust_held(t.held, (0, 0));
        Some(t)
    }

    /// Sets what the file at `key` holds towards the caps.
    fn set_held(&mut self, key: &Key, held: (u64, u64)) {
        if let Some(t) = self.files.get_mut(key) {
            let old = std::mem::replace(&mut t.held, held);
            self.adjust_held(old, held);
        }
    }

    /// The error for a file that would take the directory to `bytes` and `series`, if over
    /// a cap.
    fn over_total(&self, bytes: u64, series: u64, path: &std::path::Path) -> Option<Error> {
        let (what, total, limit) = if bytes > self.settings.max_total_bytes {
            ("bytes", bytes, self.settings.max_total_bytes)
        } else if series > self.settings.max_total_series {
            ("series", series, self.settings.max_total_series)
        } else {
            return None;
        };
        Some(Error::OverTotal {
            path: path.to_path_buf(),
            what,
            total,
            limit,
        })
    }

    /// Enforces `--max-total-bytes` and `--max-total-series` in serving order: a file that
    /// does not fit is not served (reported as failed); a file refused before is read again
    /// when it fits. Returns whether anything changed.
    async fn apply_caps(&mut self) -> bool {
        let (bytes, series) = self.totals();
        if !self.any_capped
            && bytes <= self.settings.max_total_bytes
            && series <= self.settings.max_total_series
        {
            // No file is refused, and none would be: nothing to walk.
            return false;
        }
        let changed = self.apply_caps_in_order().await;
        self.any_capped = self.files.values().any(|t| t.capped.is_some());
        changed
    }

    /// [`Engine::apply_caps`], walking every file.
    async fn apply_caps_in_order(&mut self) -> bool {
        let mut changed = false;
        for _round in 0..2 {
            let (mut bytes, mut series) = (0u64, 0u64);
            let mut reread: Vec<(usize, discovery::Found)> = Vec::new();
            let mut refuse: Vec<(Key, Error, u64)> = Vec::new();
            for (key, t) in &self.files {
                let size = t.snapshot.identity.size;
                if let Some(s) = t.capped {
                    if self
                        .over_total(bytes + size, series + s, &t.snapshot.path)
                        .is_none()
                    {
                        bytes += size;
                        series += s;
                        reread.push((
                            key.0,
                            discovery::Found {
                                name: key.1.clone(),
                                path: t.snapshot.path.clone(),
                                identity: t.snapshot.identity,
                            },
                        ));
                    }
                    continue;
                }
                let (size, s) = t.held;
                match self.over_total(bytes + size, series + s, &t.snapshot.path) {
                    None => {
                        bytes += size;
                        series += s;
                    }
                    Some(e) => refuse.push((key.clone(), e, s)),
                }
            }
            for (key, error, s) in refuse {
                let message = error.to_string();
                if let Some(suppressed) = self.throttle.allow("capped", &message) {
                    tracing::warn!(error = %message, suppressed, "a file does not fit the directory's caps");
                }
                self.dirty.insert(key.clone());
                if let Some(t) = self.files.get_mut(&key) {
                    t.snapshot = Arc::new(FileSnapshot::failed(
                        t.snapshot.path.clone(),
                        t.snapshot.identity,
                        &error,
                    ));
                    t.capped = Some(s);
                    self.any_capped = true;
                    changed = true;
                }
                self.set_held(&key, (0, 0));
            }
            if reread.is_empty() {
                break;
            }
            for (index, found) in reread {
                let dir = found
                    .path
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_default();
                // Forget the refusal first so that the read installs it.
                if let Some(t) = self.files.get_mut(&(index, found.name.clone())) {
                    t.capped = None;
                }
                changed |= self.read_files(index, &dir, vec![found]).await;
            }
        }
        changed
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
        let ends_chunk = crate::exposition::ends_chunk(&snapshot.path, CHUNK_BITS);
        if let Some(known) = &mut self.wake
            && let Some(t) = timing.next_change(SystemTime::now(), std::time::Instant::now())
        {
            let t = Instant::from_std(t);
            *known = Some(known.map_or(t, |k| k.min(t)));
        }
        let now = held(&snapshot);
        self.dirty.insert(key.clone());
        self.reads += 1;
        let old = self.files.insert(
            key,
            Tracked {
                read_seq: self.reads,
                held: now,
                snapshot: Arc::new(snapshot),
                timing,
                state,
                delete_retry: None,
                ends_chunk,
                capped: None,
            },
        );
        self.adjust_held(old.map_or((0, 0), |t| t.held), now);
    }

    /// Recomputes every file's state and deletes the files due. Returns whether anything
    /// changed.
    async fn update_states(&mut self) -> bool {
        // Nothing can be due before the earliest instant the last walk found.
        if let Some(known) = self.wake
            && known.is_none_or(|t| t > Instant::now())
        {
            return false;
        }
        self.wake = None;
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
                self.dirty.insert(key.clone());
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
            let outcome = blocking(move || {
                staleness::delete_under_lock(&p, &identity, Duration::from_millis(200))
            });
            match outcome {
                Ok(Ok(Deleted::Removed)) => {
                    tracing::info!(file = %path.display(), "deleted a file past its delete-after");
                    self.untrack(&key);
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

    /// The tracked files cut into chunks (see [`crate::exposition::CHUNK_BITS`]) as they are
    /// now: the last publication's chunks, but those holding a file that came, went or
    /// changed since ([`Engine::dirty`]), which are cut again from the files and built again
    /// (each reusing what it can of the chunk it replaces). So a change costs its chunk and a
    /// search among the chunks, not a walk of every file. With tenancy (whose caps decide per
    /// publication which files are served), after a directory failed, and at the first
    /// publication, every file is walked.
    ///
    /// Returns the chunks, and the data chunks of the ones cut again: before and after.
    fn rechunk(&mut self, compat: bool) -> Rechunked {
        let previous = std::mem::take(&mut self.chunks);
        let dirty = std::mem::take(&mut self.dirty);
        let everything = std::mem::take(&mut self.all_dirty)
            || previous.is_empty()
            || self.settings.tenancy.is_some()
            || !self.tenant_capped.is_empty();
        let mut out: Vec<Arc<EngineChunk>> = Vec::with_capacity(previous.len() + 1);
        let data = |chunks: &[Arc<EngineChunk>]| -> Vec<Arc<DataChunk>> {
            chunks.iter().map(|c| Arc::clone(&c.data)).collect()
        };
        if everything {
            self.cut_from(
                None,
                &previous,
                &mut std::iter::empty().peekable(),
                &mut out,
                compat,
            );
            return Rechunked {
                before: data(&previous),
                after: data(&out),
                chunks: out,
            };
        }
        let (mut before, mut after) = (Vec::new(), Vec::new());
        // Old chunks before `next_old` are copied or replaced already.
        let mut next_old = 0;
        let mut keys = dirty.iter().peekable();
        while let Some(&key) = keys.peek() {
            // The chunk that held it, or would: the first ending at or after it.
            let i = previous
                .partition_point(|c| c.last < *key)
                .min(previous.len() - 1);
            if i < next_old {
                keys.next();
                continue;
            }
            out.extend(previous[next_old..i].iter().cloned());
            // A file new before the chunk's first starts the chunk.
            let from = key.clone().min(previous[i].first.clone());
            let built = out.len();
            let until = key.clone();
            next_old = self.cut_from(Some((from, until)), &previous, &mut keys, &mut out, compat);
            before.extend(data(&previous[i..next_old.max(i)]));
            after.extend(data(&out[built..]));
        }
        out.extend(previous[next_old..].iter().cloned());
        #[cfg(debug_assertions)]
        self.check_chunks(&out);
        Rechunked {
            chunks: out,
            before,
            after,
        }
    }

    /// Cuts the files from `from` (all when `None`) into chunks, built into `out`, until a
    /// chunk ends where one of `previous` ended, past the dirty `keys` (each taken as passed)
    /// and past `from`'s second key (the dirty key the cut is for: a file new after the last
    /// chunk, which ended on a file of its own, is past that chunk's end): returns the index
    /// of the first of `previous` after it (`previous.len()` when the files ran out).
    fn cut_from<'k>(
        &self,
        from: Option<(Key, Key)>,
        previous: &[Arc<EngineChunk>],
        keys: &mut std::iter::Peekable<impl Iterator<Item = &'k Key>>,
        out: &mut Vec<Arc<EngineChunk>>,
        compat: bool,
    ) -> usize {
        let whole = from.is_none();
        let (range, until) = match from {
            Some((from, until)) => (self.files.range(from..), Some(until)),
            None => (self.files.range::<Key, _>(..), None),
        };
        let mut part: Vec<(&Key, &Tracked)> = Vec::new();
        let mut files = range.peekable();
        while let Some((key, tracked)) = files.next() {
            part.push((key, tracked));
            if !tracked.ends_chunk && files.peek().is_some() {
                continue;
            }
            let last = key.clone();
            out.push(self.chunk_of(&std::mem::take(&mut part), previous, compat));
            while keys.next_if(|k| **k <= last).is_some() {}
            if whole || until.as_ref().is_some_and(|u| last < *u) {
                continue;
            }
            // Where the old chunks are cut the same way again, the rest is as it was.
            let j = previous.partition_point(|c| c.last < last);
            if previous.get(j).is_some_and(|c| c.last == last) {
                return j + 1;
            }
        }
        previous.len()
    }

    /// The chunk of `part` (consecutive files, a chunk's end last): the old one with the same
    /// files as they were (a state may have changed without its file), or a new one reusing
    /// the old one's data when its served files are the same.
    fn chunk_of(
        &self,
        part: &[(&Key, &Tracked)],
        previous: &[Arc<EngineChunk>],
        compat: bool,
    ) -> Arc<EngineChunk> {
        let views: Vec<FileView> = part
            .iter()
            .map(|(_, t)| FileView {
                snapshot: Arc::clone(&t.snapshot),
                timing: t.timing,
                state: t.state,
            })
            .collect();
        // Whether each file is within its namespace's caps (always without tenancy).
        let within: Vec<bool> = part
            .iter()
            .map(|(k, _)| !self.tenant_capped.contains_key(*k))
            .collect();
        let (first, last) = match (part.first(), part.last()) {
            (Some(f), Some(l)) => (f.0.clone(), l.0.clone()),
            _ => Default::default(),
        };
        let candidate = previous
            .binary_search_by(|c| c.first.cmp(&first))
            .ok()
            .and_then(|i| previous.get(i));
        if let Some(c) = candidate
            && c.views.len() == views.len()
            && c.within == within
            && c.views
                .iter()
                .zip(&views)
                .all(|(a, b)| Arc::ptr_eq(&a.snapshot, &b.snapshot) && a.state == b.state)
        {
            return Arc::clone(c);
        }
        let served: Vec<Arc<FileSnapshot>> = views
            .iter()
            .zip(&within)
            .filter(|(v, w)| v.served() && **w)
            .map(|(v, _)| Arc::clone(&v.snapshot))
            .collect();
        let data = match candidate {
            Some(c)
                if c.data.files().len() == served.len()
                    && c.data
                        .files()
                        .iter()
                        .zip(&served)
                        .all(|(a, b)| Arc::ptr_eq(a, b)) =>
            {
                Arc::clone(&c.data)
            }
            // Files rewritten with new values: the old chunk's plan with their lines.
            _ => match candidate.and_then(|c| c.data.patched(&served, &self.prepare)) {
                Some(patched) => Arc::new(patched),
                None => Arc::new(DataChunk::build_prepared(
                    served,
                    &self.prepare,
                    self.settings.exposition.own_config(),
                )),
            },
        };
        let meta = Arc::new(MetaChunk::build_reusing(
            &views,
            compat,
            candidate.map(|c| &*c.meta),
        ));
        Arc::new(EngineChunk {
            views: views.into(),
            within,
            first,
            last,
            data,
            meta,
        })
    }

    /// That `chunks` are what cutting every file gives (debug builds: every test checks that
    /// no change escaped [`Engine::dirty`]).
    #[cfg(debug_assertions)]
    fn check_chunks(&self, chunks: &[Arc<EngineChunk>]) {
        let expected: Vec<Vec<(*const FileSnapshot, FileState)>> = crate::exposition::cut(
            self.files.values().collect(),
            |t| t.snapshot.path.as_path(),
            CHUNK_BITS,
        )
        .into_iter()
        .map(|chunk| {
            chunk
                .into_iter()
                .map(|t| (Arc::as_ptr(&t.snapshot), t.state))
                .collect()
        })
        .collect();
        let got: Vec<Vec<(*const FileSnapshot, FileState)>> = chunks
            .iter()
            .map(|c| {
                c.views
                    .iter()
                    .map(|v| (Arc::as_ptr(&v.snapshot), v.state))
                    .collect()
            })
            .collect();
        assert!(got == expected, "the chunks kept drifted from the files");
    }

    /// Rebuilds what is served and swaps it in. Costs the chunks that changed (see
    /// [`crate::exposition`] and [`Engine::rechunk`]), plus a pointer comparison per chunk;
    /// with tenancy, also the per-namespace caps and the cross-namespace TYPE rule, which look
    /// at every file's families.
    async fn publish(&mut self) {
        let started = Instant::now();
        if let Some(caps) = self.settings.tenancy {
            self.apply_tenant_caps(caps);
            self.withhold_cross_tenant_types().await;
        }
        let compat = self.settings.exposition.compat_node_exporter;
        let Rechunked {
            chunks,
            before,
            after,
        } = self.rechunk(compat);
        // The series index follows the files that came and went: those of the chunks cut
        // again (a rebuilt chunk keeps most of its files: only the prepared forms that differ
        // are counted again).
        follow_chunks(&mut self.index, &before, &after);
        drop((before, after));
        let data_chunks: Vec<Arc<DataChunk>> = chunks.iter().map(|c| Arc::clone(&c.data)).collect();
        #[cfg(debug_assertions)]
        {
            // Debug builds (every test): the index followed chunk by chunk counts what one
            // made over every file counts.
            assert_eq!(
                crate::exposition::series_index_of(&data_chunks).has_repeats(),
                self.index.has_repeats(),
                "the series index drifted from the files"
            );
        }
        let reuse = self.data.as_ref().filter(|d| {
            d.chunks().len() == data_chunks.len()
                && d.chunks()
                    .iter()
                    .zip(&data_chunks)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        });
        let (data, rebuilt) = match reuse {
            Some(d) => (Arc::clone(d), false),
            None => {
                let options = self.settings.exposition.clone();
                let repeats = self.index.has_repeats();
                let carry = Arc::clone(&self.carry);
                let built =
                    blocking(move || DataPart::assemble(data_chunks, options, repeats, carry));
                let data = match built {
                    Ok(d) => Arc::new(d),
                    Err(e) => {
                        tracing::error!(error = %e, "rendering task failed");
                        self.chunks = chunks;
                        return;
                    }
                };
                self.carry.headers.trim(4 * data.classic_pieces() + 4096);
                self.data = Some(Arc::clone(&data));
                (data, true)
            }
        };
        // The conflicts of the data part, and those between namespaces (families withheld
        // before merging, which the data part does not see).
        if rebuilt || self.settings.tenancy.is_some() {
            let mut conflicts = data.conflicts.clone();
            conflicts.extend(self.withheld_conflicts());
            self.count_conflicts(&conflicts);
            self.current = conflicts;
        }
        self.counters.directories = self
            .settings
            .directories
            .iter()
            .zip(&self.dir_errors)
            .map(|(d, e)| (promdrop_textfile::snapshot::file_label(d), e.is_some()))
            .collect();
        let meta_chunks: Vec<Arc<MetaChunk>> = chunks.iter().map(|c| Arc::clone(&c.meta)).collect();
        let meta = MetaPart::from_chunks(meta_chunks, &self.counters, compat, &data.adopted);
        let published_files = self.files.len();
        let views = chunks.iter().map(|c| Arc::clone(&c.views)).collect();
        self.chunks = chunks;
        let status = self.status_model(&self.current);
        let published = Arc::new(Published::new(data, meta, Arc::new(status), views));
        self.shared.published.store(Arc::clone(&published));
        tracing::debug!(
            files = published_files,
            chunks = self.chunks.len(),
            concatenated = published.data.is_concatenated(),
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            "published"
        );
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
            if self.tenant_capped.get(key) != Some(message) {
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
        self.tenant_capped = capped;
    }

    /// The files that declare families (parsed, within their namespace's caps; expired ones
    /// too, so that a family does not change hands while its file is only old), in serving
    /// order, with their namespaces.
    fn declaring_files(&self) -> Vec<(Key, String)> {
        self.files
            .iter()
            .filter(|(key, t)| t.snapshot.content.is_ok() && !self.tenant_capped.contains_key(*key))
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
    /// the TYPE, as without tenancy. Families of different names whose names clash once
    /// rendered (an OpenMetrics counter `bar` in one namespace, a classic counter `bar_total`
    /// in another: two TYPE blocks for one name) follow the same rule by seniority: the
    /// family of the namespace that declared its family later is withheld, a tie withholds
    /// both. (Bucket bounds need no rule here: every series carries its namespace label, so
    /// two namespaces' histograms never share a series; the merge compares bounds within a
    /// namespace.) The files concerned are prepared again (the families left out) when what
    /// they withhold changes.
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
        // Families of different names whose names clash once rendered (an OpenMetrics counter
        // `bar` and a classic `bar_total`), in two namespaces: the same rule, by seniority,
        // so that no namespace knocks out another's family by sorting first. The family of
        // the namespace that declared it later is withheld; a tie withholds both.
        let clashes = self.cross_tenant_clashes();
        let since = |family: &str, tenant: &str| {
            self.first_declared
                .get(&(family.to_string(), tenant.to_string()))
                .map_or(u64::MAX, |(s, _)| *s)
        };
        let mut yielding: BTreeSet<(&str, &str)> = BTreeSet::new();
        for clash in &clashes {
            let [a, b] = &clash.sides;
            let (sa, sb) = (since(&a.family, &a.tenant), since(&b.family, &b.tenant));
            if sa >= sb {
                yielding.insert((&a.tenant, &a.family));
            }
            if sb >= sa {
                yielding.insert((&b.tenant, &b.family));
            }
        }
        for (tenant, family) in &yielding {
            let Some((_, files)) = families.get(*family) else {
                continue;
            };
            for key in files {
                if self
                    .files
                    .get(key)
                    .is_some_and(|t| t.snapshot.origin().tenant == *tenant)
                {
                    wanted
                        .entry(key.clone())
                        .or_default()
                        .push(Box::from(*family));
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
        let done = blocking(move || {
            redo.into_iter()
                .filter_map(|(key, snapshot, want)| {
                    Some((key, snapshot.withholding(want, &prepare)?))
                })
                .collect::<Vec<_>>()
        });
        let Ok(done) = done else {
            tracing::error!("preparing files again failed");
            return;
        };
        for (key, snapshot) in done {
            if let Some(t) = self.files.get_mut(&key) {
                // Only when the file was not read again meanwhile.
                if t.snapshot.identity == snapshot.identity {
                    self.dirty.insert(key.clone());
                    let now = held(&snapshot);
                    t.snapshot = Arc::new(snapshot);
                    self.set_held(&key, now);
                }
            }
        }
        // Same files, same identities, other prepared forms: new snapshots, so their chunks
        // are built again at this publication.
    }

    /// With tenancy: the pairs of families, of different names and namespaces, whose names
    /// clash once rendered (textformat `family_names`, `NameUse::clashes_with`), each with a
    /// file that declares each side and a name both hold. Looks at every file's families'
    /// names, as the TYPE rule looks at their types (one holder kept per namespace, family and
    /// use of a name, so a name many files share costs its namespaces, not its files).
    fn cross_tenant_clashes(&self) -> Vec<TenantClash> {
        type Holder<'a> = (String, &'a str, promdrop_textformat::NameUse, Key);
        let mut held: HashMap<&str, Vec<Holder<'_>>> = HashMap::new();
        for (key, tenant) in self.declaring_files() {
            let Some(t) = self.files.get(&key) else {
                continue;
            };
            for (family, names) in t.snapshot.declared_names() {
                for (name, how) in names {
                    let holders = held.entry(&**name).or_default();
                    if !holders
                        .iter()
                        .any(|(t, f, h, _)| *t == tenant && *f == family && h == how)
                    {
                        holders.push((tenant.clone(), family, *how, key.clone()));
                    }
                }
            }
        }
        let mut seen: BTreeSet<[(String, String); 2]> = BTreeSet::new();
        let mut out = Vec::new();
        let mut names: Vec<(&&str, &Vec<Holder<'_>>)> = held.iter().collect();
        names.sort_by_key(|(name, _)| **name);
        for (name, holders) in names {
            for (i, a) in holders.iter().enumerate() {
                for b in &holders[i + 1..] {
                    if a.0 == b.0 || a.1 == b.1 || !a.2.clashes_with(b.2) {
                        continue;
                    }
                    let mut pair = [
                        (a.0.clone(), a.1.to_string()),
                        (b.0.clone(), b.1.to_string()),
                    ];
                    pair.sort();
                    if !seen.insert(pair) {
                        continue;
                    }
                    let side = |h: &Holder<'_>| ClashSide {
                        tenant: h.0.clone(),
                        family: h.1.to_string(),
                        file: h.3.clone(),
                    };
                    out.push(TenantClash {
                        sides: [side(a), side(b)],
                        name: name.to_string(),
                    });
                }
            }
        }
        out
    }

    /// The conflicts of the families withheld between namespaces: one per file and family,
    /// naming a file of another namespace that declares it with another TYPE, or one whose
    /// family's names clash with it (with that family and a name both hold).
    fn withheld_conflicts(&self) -> Vec<ConflictRecord> {
        if self.settings.tenancy.is_none() {
            return Vec::new();
        }
        let families = self.family_types();
        let clashes = self.cross_tenant_clashes();
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
                // Else a family of another namespace whose names clash with it.
                let clash = other.is_none().then(|| {
                    clashes.iter().find_map(|c| {
                        let [a, b] = &c.sides;
                        let (_, theirs) = [(a, b), (b, a)]
                            .into_iter()
                            .find(|(ours, _)| ours.tenant == tenant && *ours.family == **name)?;
                        let file = self.files.get(&theirs.file)?;
                        Some((
                            snapshot::file_label(&file.snapshot.path),
                            theirs.family.clone(),
                            c.name.clone(),
                        ))
                    })
                });
                let (kept_file, kept_family, clash_name) = match clash.flatten() {
                    Some((file, family, held)) => (Some(file), Some(family), Some(held)),
                    None => (other, None, None),
                };
                out.push(ConflictRecord {
                    kind: "type",
                    family: name.to_string(),
                    series: None,
                    kept_file,
                    kept_family,
                    name: clash_name,
                    other_file: snapshot::file_label(&t.snapshot.path),
                });
            }
        }
        out
    }

    /// The status, but its files (made from the views on request).
    fn status_model(&self, conflicts: &[ConflictRecord]) -> StatusModel {
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
            files: Vec::new(),
            refused: self
                .refused
                .values()
                .chain(self.tenant_capped.values())
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

/// One side of a [`TenantClash`]: a namespace's family, and a file declaring it.
#[derive(Debug, Clone)]
struct ClashSide {
    tenant: String,
    family: String,
    file: Key,
}

/// Two families of different names, in two namespaces, whose names clash once rendered.
#[derive(Debug, Clone)]
struct TenantClash {
    sides: [ClashSide; 2],
    /// A name both hold.
    name: String,
}

/// Events gathered: the directories to list and the names to look at.
#[derive(Debug, Default)]
struct Gathered {
    dirty: BTreeSet<usize>,
    names: BTreeMap<usize, BTreeSet<OsString>>,
}

impl Gathered {
    /// Adds what `event` asks for (`all`: every directory, for a rescan).
    fn add(&mut self, event: WatchEvent, all: &BTreeSet<usize>) {
        match event {
            WatchEvent::Changed(i) => {
                self.dirty.insert(i);
            }
            WatchEvent::Names(i, list) | WatchEvent::Placed(i, list) => {
                self.names.entry(i).or_default().extend(list);
            }
            WatchEvent::Rescan => self.dirty.extend(all.iter().copied()),
        }
    }

    fn is_empty(&self) -> bool {
        self.dirty.is_empty() && self.names.is_empty()
    }

    fn append(&mut self, other: Gathered) {
        self.dirty.extend(other.dirty);
        for (index, names) in other.names {
            self.names.entry(index).or_default().extend(names);
        }
    }
}

/// The events gathered and not yet looked at. Files renamed into place (or removed) are
/// complete ([`WatchEvent::Placed`]); anything else may be a file still being written, and
/// waits for `--watch.debounce` after the first such event. Both wait for
/// `--watch.max-delay` after the batch's first event, unless a request asks for them
/// ([`crate::pending::PendingChanges::catch_up`]): then the complete ones are looked at at
/// once, and the rest at the end of their debounce.
#[derive(Debug, Default)]
struct Batch {
    /// When the batch's first event came.
    since: Option<Instant>,
    placed: Gathered,
    unsettled: Gathered,
    /// When the first event of `unsettled` came.
    unsettled_since: Option<Instant>,
    /// Whether a request waits for the batch.
    demanded: bool,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.since.is_none()
    }

    fn add(&mut self, event: WatchEvent, all: &BTreeSet<usize>, now: Instant) {
        self.since.get_or_insert(now);
        if matches!(event, WatchEvent::Placed(..)) {
            self.placed.add(event, all);
        } else {
            self.unsettled_since.get_or_insert(now);
            self.unsettled.add(event, all);
        }
    }

    /// Whether nothing is left but what waits for the end of its debounce: no complete file,
    /// and the rest asked for (so not gathered on for the max delay).
    fn waits_for_debounce_only(&self) -> bool {
        self.placed.is_empty() && (self.unsettled.is_empty() || self.demanded)
    }

    /// When each part is due: (the complete files, the rest).
    fn due_parts(&self, settings: &Settings) -> (Option<Instant>, Option<Instant>) {
        let Some(since) = self.since else {
            return (None, None);
        };
        let gathered = since + settings.max_delay;
        let placed =
            (!self.placed.is_empty()).then_some(if self.demanded { since } else { gathered });
        let unsettled = self.unsettled_since.map(|first| {
            let settled = first + settings.debounce;
            if self.demanded {
                settled
            } else {
                settled.max(gathered)
            }
        });
        (placed, unsettled)
    }

    /// When the next part is due.
    fn due(&self, settings: &Settings) -> Option<Instant> {
        match self.due_parts(settings) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes what is due at `now`; the rest stays.
    fn take_due(&mut self, settings: &Settings, now: Instant) -> Gathered {
        let (placed, unsettled) = self.due_parts(settings);
        let mut due = Gathered::default();
        if placed.is_some_and(|t| t <= now) {
            due = std::mem::take(&mut self.placed);
        }
        if unsettled.is_some_and(|t| t <= now) {
            due.append(std::mem::take(&mut self.unsettled));
            self.unsettled_since = None;
        }
        // The request that asked is answered by this look; what still waits for its
        // debounce is looked at when the debounce ends (asked for: it is not gathered on).
        if self.unsettled.is_empty() {
            self.demanded = false;
        }
        if self.placed.is_empty() {
            // (Only the rest can be left: when it is due, so are the complete files.)
            self.since = self.unsettled_since;
        }
        due
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_delay: &str, debounce: &str) -> Settings {
        let config = Config::from_args([
            "promdrop-exporter".to_string(),
            "--textfile.directory=/nonexistent".to_string(),
            format!("--watch.max-delay={max_delay}"),
            format!("--watch.debounce={debounce}"),
        ])
        .unwrap();
        Settings::from_config(&config)
    }

    fn placed(name: &str) -> WatchEvent {
        WatchEvent::Placed(0, vec![name.into()])
    }

    fn written(name: &str) -> WatchEvent {
        WatchEvent::Names(0, vec![name.into()])
    }

    fn names(gathered: &Gathered) -> Vec<String> {
        let mut all: Vec<String> = gathered
            .names
            .values()
            .flatten()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }

    /// The settings of `max_delay` and `debounce`, one directory, the time the batch began,
    /// and a batch that holds `a.prom` renamed into place at that time.
    fn renamed_at_start(
        max_delay: &str,
        debounce: &str,
    ) -> (Settings, BTreeSet<usize>, Instant, Batch) {
        let all = BTreeSet::from([0]);
        let t0 = Instant::now();
        let mut batch = Batch::default();
        batch.add(placed("a.prom"), &all, t0);
        (settings(max_delay, debounce), all, t0, batch)
    }

    #[test]
    fn a_batch_waits_for_the_max_delay_unless_asked_and_a_write_in_place_for_its_debounce() {
        let (settings, all, t0, mut batch) = renamed_at_start("1s", "100ms");
        batch.add(written("b.prom"), &all, t0 + Duration::from_millis(10));
        // Nobody asks: both wait for the max delay from the first event.
        assert_eq!(batch.due(&settings), Some(t0 + Duration::from_secs(1)));
        assert!(
            batch
                .take_due(&settings, t0 + Duration::from_millis(500))
                .is_empty()
        );
        assert!(!batch.waits_for_debounce_only());
        // A request: the renamed file at once; the one written in place at its debounce's end,
        // and then without waiting for the max delay.
        batch.demanded = true;
        let at = t0 + Duration::from_millis(20);
        assert_eq!(names(&batch.take_due(&settings, at)), ["a.prom"]);
        assert_eq!(batch.due(&settings), Some(t0 + Duration::from_millis(110)));
        assert!(batch.waits_for_debounce_only());
        assert!(batch.take_due(&settings, at).is_empty());
        let end = t0 + Duration::from_millis(110);
        assert_eq!(names(&batch.take_due(&settings, end)), ["b.prom"]);
        assert!(batch.is_empty() && !batch.demanded);
        assert_eq!(batch.due(&settings), None);
        // A rescan is a listing of every directory, waiting as a write in place does.
        batch.add(WatchEvent::Rescan, &all, end);
        assert!(!batch.waits_for_debounce_only());
        let due = batch.take_due(&settings, end + Duration::from_secs(1));
        assert_eq!(due.dirty, all);
    }

    #[test]
    fn with_no_max_delay_a_rename_is_looked_at_as_it_comes() {
        let (settings, all, t0, mut batch) = renamed_at_start("0s", "10ms");
        assert_eq!(names(&batch.take_due(&settings, t0)), ["a.prom"]);
        batch.add(written("b.prom"), &all, t0);
        assert!(batch.take_due(&settings, t0).is_empty());
        let end = t0 + Duration::from_millis(10);
        assert_eq!(names(&batch.take_due(&settings, end)), ["b.prom"]);
    }
}
