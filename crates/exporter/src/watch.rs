//! Change notification: notify (inotify) events on each directory, and a full rescan on a timer,
//! both turned into [`WatchEvent`]s on one channel.
//!
//! Events make a change visible to the next scrape (the engine gathers them for
//! `--watch.max-delay` unless a request asks: [`crate::pending`]); the rescan catches what
//! events miss (network file systems, an overflowing event queue, a directory deleted and
//! created again).
//! At each rescan tick the watches are checked: a directory that appeared, or was replaced
//! by a new one (another inode), is watched again.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::{UnboundedSender, error::SendError};

use crate::error::Error;
use crate::pending::PendingChanges;
use promdrop_textfile::discovery::{dir_identity, is_served_name};

/// What the engine is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Something changed in the directory with this index: list it again.
    Changed(usize),
    /// These entries (names) of the directory with this index were created or changed: look
    /// at them alone, in time independent of the directory's size, once the burst of events
    /// is over (a writer that writes in place may not be done yet).
    Names(usize, Vec<OsString>),
    /// These entries were renamed into place, moved away or removed: as [`WatchEvent::Names`],
    /// but each is already complete (an atomic write ends with its rename), so the engine
    /// looks at them without waiting for the rest of a burst.
    Placed(usize, Vec<OsString>),
    /// Time for a full rescan of every directory.
    Rescan,
}

/// The engine's end of the channel, counting each event it sends (so that a scrape can wait
/// for the events seen before it: [`PendingChanges`]).
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: UnboundedSender<WatchEvent>,
    pending: Arc<PendingChanges>,
}

impl EventSender {
    /// Sends on `tx`, counting in `pending`.
    pub fn new(tx: UnboundedSender<WatchEvent>, pending: Arc<PendingChanges>) -> EventSender {
        EventSender { tx, pending }
    }

    /// Counts and sends `event`; an error when the engine has stopped.
    pub fn send(&self, event: WatchEvent) -> Result<(), SendError<WatchEvent>> {
        self.pending.sent();
        self.tx.send(event)
    }
}

struct DirWatch {
    path: PathBuf,
    /// The directory's (device, inode) when the watch was set, and the watch.
    active: Option<((u64, u64), RecommendedWatcher)>,
    /// Whether the last failure was logged (log once per failure streak).
    failing: bool,
    /// With tenancy: the namespaces' subdirectories watched too (by the same watcher).
    tenants: std::collections::BTreeSet<PathBuf>,
}

/// The name an event's path is known by in directory `dir` (as the engine keys files): the
/// entry's name, or with tenancy `<namespace>/<file>` for an entry of a namespace's directory
/// (its events come through the same watcher). `None` for a path that is neither.
fn event_name(dir: &Path, path: &Path, tenancy: bool) -> Option<OsString> {
    let parent = path.parent()?;
    let name = path.file_name()?;
    if parent == dir {
        return Some(name.to_os_string());
    }
    if tenancy && parent.parent() == Some(dir) {
        let namespace = parent.file_name()?;
        if !promdrop_textfile::discovery::is_namespace_name(namespace) {
            return None;
        }
        let mut qualified = namespace.to_os_string();
        qualified.push("/");
        qualified.push(name);
        return Some(qualified);
    }
    None
}

fn watch_dir(
    index: usize,
    path: &Path,
    tenancy: bool,
    tx: &EventSender,
) -> Result<RecommendedWatcher, Error> {
    let tx = tx.clone();
    let dir = path.to_path_buf();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            // Our own reads show up as access events: not a change.
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
            Ok(e) if e.need_rescan() => {
                let _ = tx.send(WatchEvent::Rescan);
            }
            // Files of the directory itself (with tenancy, of its namespaces' directories):
            // only they need a look. With tenancy, the directory's own entries are the
            // namespaces' directories, which a listing looks at.
            Ok(e)
                if matches!(
                    e.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) && !e.paths.is_empty()
                    && e.paths.iter().all(|p| {
                        event_name(&dir, p, tenancy).is_some()
                            && (!tenancy || p.parent() != Some(dir.as_path()))
                    }) =>
            {
                // Names never served (a writer's hidden temporary file) change nothing: no
                // wake-up for them.
                let names: Vec<OsString> = e
                    .paths
                    .iter()
                    .filter(|p| p.file_name().is_some_and(is_served_name))
                    .filter_map(|p| event_name(&dir, p, tenancy))
                    .collect();
                if !names.is_empty() {
                    let placed = matches!(
                        e.kind,
                        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_)
                    );
                    let _ = tx.send(if placed {
                        WatchEvent::Placed(index, names)
                    } else {
                        WatchEvent::Names(index, names)
                    });
                }
            }
            // Any other event, and errors (such as a queue overflow), mean "look again".
            _ => {
                let _ = tx.send(WatchEvent::Changed(index));
            }
        })
        .map_err(|source| Error::Watch {
            dir: path.to_path_buf(),
            source,
        })?;
    watcher
        .watch(path, RecursiveMode::NonRecursive)
        .map_err(|source| Error::Watch {
            dir: path.to_path_buf(),
            source,
        })?;
    Ok(watcher)
}

impl DirWatch {
    /// Sets the watch when there is none or the directory was replaced.
    fn refresh(&mut self, index: usize, tenancy: bool, tx: &EventSender) {
        let Some(identity) = dir_identity(&self.path) else {
            // Gone: drop the watch; the next tick sets it again if it comes back.
            self.active = None;
            return;
        };
        if matches!(&self.active, Some((watched, _)) if *watched == identity) {
            return;
        }
        match watch_dir(index, &self.path, tenancy, tx) {
            Ok(watcher) => {
                if self.failing || self.active.is_some() {
                    tracing::info!(dir = %self.path.display(), "watching the directory again");
                }
                self.active = Some((identity, watcher));
                self.tenants.clear();
                self.failing = false;
                // Whatever happened while unwatched is seen by a scan now.
                let _ = tx.send(WatchEvent::Changed(index));
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(error = %e, "cannot watch a directory");
                }
                self.failing = true;
                self.active = None;
            }
        }
    }
}

impl DirWatch {
    /// With tenancy: watches the namespaces' subdirectories not watched yet (one level, each
    /// alone: a namespace cannot make the exporter watch a tree of its own).
    fn refresh_tenants(&mut self) {
        let Some((_, watcher)) = &mut self.active else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        let mut present = std::collections::BTreeSet::new();
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !promdrop_textfile::discovery::is_namespace_name(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            if !self.tenants.contains(&path) {
                match watcher.watch(&path, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.tenants.insert(path.clone());
                    }
                    Err(e) => {
                        tracing::debug!(dir = %path.display(), error = %e, "cannot watch a namespace's directory")
                    }
                }
            }
            present.insert(path);
        }
        // A namespace's directory removed: its watch went with it.
        self.tenants.retain(|p| present.contains(p));
    }
}

/// Watches `dirs` (when `events` is true) and ticks a rescan every `rescan_interval`, sending
/// what it sees on `tx`, until the receiver is dropped. Spawn it on the runtime.
/// With `tenancy`, each directory's namespace subdirectories are watched as well, from the
/// rescan tick after they appear (the rescan sees their files until then).
pub async fn run(
    dirs: Vec<PathBuf>,
    events: bool,
    tenancy: bool,
    rescan_interval: Duration,
    tx: EventSender,
) {
    let mut watches: Vec<DirWatch> = dirs
        .into_iter()
        .map(|path| DirWatch {
            path,
            active: None,
            failing: false,
            tenants: Default::default(),
        })
        .collect();
    let refresh = |watches: &mut Vec<DirWatch>| {
        if events {
            for (index, w) in watches.iter_mut().enumerate() {
                w.refresh(index, tenancy, &tx);
                if tenancy {
                    w.refresh_tenants();
                }
            }
        }
    };
    refresh(&mut watches);
    let start = tokio::time::Instant::now() + rescan_interval;
    let mut ticker = tokio::time::interval_at(start, rescan_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        refresh(&mut watches);
        if tx.send(WatchEvent::Rescan).is_err() {
            return; // the engine stopped
        }
    }
}
