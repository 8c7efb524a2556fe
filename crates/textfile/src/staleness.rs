//! Per-file staleness: the state a file is in at a given time, when it next changes, and
//! deleting an expired file under the writer's lock.
//!
//! A file's age is the time since the writer's header `written_at` when the file has one (and
//! it is not later than the modification time plus
//! [`WRITTEN_AT_SKEW`](crate::snapshot::WRITTEN_AT_SKEW)), else since its modification time. Past `stale_after` it is *stale* (samples still served,
//! `promdrop_file_stale` 1); past `expire_after` it is *expired* (samples withheld, meta
//! metrics remain); past `delete_after` it is deleted. The header's `stale_after` and
//! `expire_after` override the flags for its file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::discovery::FileIdentity;
use crate::error::Error;
use std::sync::Arc;

use crate::snapshot::FileSnapshot;

/// The durations from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// `--stale-after`.
    pub stale_after: Option<Duration>,
    /// `--expire-after`.
    pub expire_after: Option<Duration>,
    /// `--delete-after`.
    pub delete_after: Option<Duration>,
}

/// A file's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileState {
    /// Younger than its stale-after.
    Fresh,
    /// Older than its stale-after: served, and marked.
    Stale,
    /// Older than its expire-after: not served.
    Expired,
}

impl FileState {
    /// The name used in metric labels and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Fresh => "fresh",
            FileState::Stale => "stale",
            FileState::Expired => "expired",
        }
    }
}

/// When one file changes state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Seconds since the Unix epoch that the age is counted from.
    pub reference: f64,
    /// Effective stale-after.
    pub stale_after: Option<Duration>,
    /// Effective expire-after.
    pub expire_after: Option<Duration>,
    /// Effective delete-after.
    pub delete_after: Option<Duration>,
}

fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Timing {
    /// The timing of `snapshot` under `policy`, with the writer's header overriding.
    pub fn of(snapshot: &FileSnapshot, policy: &Policy) -> Timing {
        let header = snapshot.header.unwrap_or_default();
        Timing {
            reference: snapshot.reference_time(),
            stale_after: header.stale_after.or(policy.stale_after),
            expire_after: header.expire_after.or(policy.expire_after),
            delete_after: policy.delete_after,
        }
    }

    /// The file's age at `now`, in seconds (negative when written in the future).
    pub fn age(&self, now: SystemTime) -> f64 {
        unix_seconds(now) - self.reference
    }

    fn past(&self, limit: Option<Duration>, now: SystemTime) -> bool {
        limit.is_some_and(|l| self.age(now) >= l.as_secs_f64())
    }

    /// The state at `now`.
    pub fn state(&self, now: SystemTime) -> FileState {
        if self.past(self.expire_after, now) {
            FileState::Expired
        } else if self.past(self.stale_after, now) {
            FileState::Stale
        } else {
            FileState::Fresh
        }
    }

    /// Whether the file is to be deleted at `now`.
    pub fn delete_due(&self, now: SystemTime) -> bool {
        self.past(self.delete_after, now)
    }

    /// The Unix time (seconds) at which `limit` is reached, if set.
    pub fn at(&self, limit: Option<Duration>) -> Option<f64> {
        limit.map(|l| self.reference + l.as_secs_f64())
    }

    /// The next time after `now` at which the state changes or the file is due for deletion,
    /// as an [`Instant`] (for timers).
    pub fn next_change(&self, now: SystemTime, now_instant: Instant) -> Option<Instant> {
        let now_secs = unix_seconds(now);
        [self.stale_after, self.expire_after, self.delete_after]
            .into_iter()
            .filter_map(|limit| self.at(limit))
            .filter(|at| *at > now_secs)
            .map(|at| at - now_secs)
            .min_by(f64::total_cmp)
            .map(|wait| {
                // A few milliseconds late rather than early, so the state has changed on wake.
                now_instant + Duration::from_secs_f64(wait.min(1e9)) + Duration::from_millis(2)
            })
    }
}

/// The lock file guarding `target`, by the writer's convention (`.<name>.lock` beside it).
pub fn lock_path(target: &Path) -> PathBuf {
    promdrop_writer::lock_path(target)
}

/// What happened to a file due for deletion.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    /// It was removed.
    Removed,
    /// The name now holds another file (a job wrote again): left alone.
    Replaced,
    /// It was already gone.
    Gone,
    /// A writer held the lock for the whole wait: try again later.
    Busy,
}

/// Deletes `path` if it is still the file `identity` describes, holding the writer's lock so
/// that a job renaming a fresh file into place is never undone. Blocking.
pub fn delete_under_lock(
    path: &Path,
    identity: &FileIdentity,
    wait: Duration,
) -> Result<Deleted, Error> {
    let delete_error = |source| Error::Delete {
        path: path.to_path_buf(),
        source,
    };
    // No symlink followed, no FIFO waited on, a regular file only: the directory is shared.
    let lock = promdrop_writer::open_lock_file(&lock_path(path)).map_err(delete_error)?;
    if !acquire(&lock, wait).map_err(delete_error)? {
        return Ok(Deleted::Busy);
    }
    let outcome = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Deleted::Gone),
        Err(e) => Err(delete_error(e)),
        Ok(m) if FileIdentity::of(&m) != *identity => Ok(Deleted::Replaced),
        Ok(_) => match std::fs::remove_file(path) {
            Ok(()) => Ok(Deleted::Removed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Deleted::Gone),
            Err(e) => Err(delete_error(e)),
        },
    };
    let _ = lock.unlock();
    outcome
}

fn acquire(lock: &File, wait: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// A file as the exposition sees it: its snapshot and its state now.
#[derive(Debug, Clone)]
pub struct FileView {
    /// The snapshot.
    pub snapshot: Arc<FileSnapshot>,
    /// Its timing.
    pub timing: Timing,
    /// Its state.
    pub state: FileState,
}

impl FileView {
    /// Whether its samples are served: it parsed and has not expired.
    pub fn served(&self) -> bool {
        self.snapshot.content.is_ok() && self.state != FileState::Expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promdrop_textformat::WriterHeader;

    fn snapshot(mtime: i128, header: Option<WriterHeader>) -> FileSnapshot {
        FileSnapshot {
            path: PathBuf::from("/d/a.prom"),
            identity: FileIdentity {
                dev: 1,
                ino: 1,
                size: 0,
                mtime_ns: mtime * 1_000_000_000,
            },
            content: Err(String::new()),
            header,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn states_follow_the_age_and_the_header_overrides_the_flags() {
        let policy = Policy {
            stale_after: Some(Duration::from_secs(10)),
            expire_after: Some(Duration::from_secs(20)),
            delete_after: Some(Duration::from_secs(30)),
        };
        let t = Timing::of(&snapshot(1000, None), &policy);
        assert_eq!(t.state(at(1009)), FileState::Fresh);
        assert_eq!(t.state(at(1010)), FileState::Stale);
        assert_eq!(t.state(at(1020)), FileState::Expired);
        assert!(!t.delete_due(at(1029)));
        assert!(t.delete_due(at(1030)));
        let now = Instant::now();
        let next = t.next_change(at(1005), now).unwrap();
        assert!(next >= now + Duration::from_secs(5) && next < now + Duration::from_secs(6));
        assert_eq!(t.next_change(at(1031), now), None);

        let header = WriterHeader {
            written_at: Some(2000.0),
            stale_after: Some(Duration::from_secs(100)),
            expire_after: None,
        };
        // Written (header) at 2000, renamed into place (mtime) at 1900: within the skew.
        let t = Timing::of(&snapshot(1900, Some(header)), &policy);
        assert_eq!(t.reference, 2000.0);
        assert_eq!(t.state(at(2019)), FileState::Fresh);
        assert_eq!(t.state(at(2020)), FileState::Expired); // the flag's expire-after
        assert_eq!(
            Timing::of(&snapshot(1000, None), &Policy::default()).state(at(u32::MAX as u64)),
            FileState::Fresh
        );
    }

    #[test]
    fn deletion_respects_the_lock_and_a_replacement() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.prom");
        std::fs::write(&path, "up 1\n").unwrap();
        let identity = FileIdentity::of(&std::fs::metadata(&path).unwrap());

        // A writer holds the lock: nothing is deleted.
        let held = File::create(lock_path(&path)).unwrap();
        held.lock().unwrap();
        assert_eq!(
            delete_under_lock(&path, &identity, Duration::from_millis(30)).unwrap(),
            Deleted::Busy
        );
        held.unlock().unwrap();
        assert!(path.exists());

        // The writer renamed a fresh file into place: left alone.
        std::fs::write(tmp.path().join("new"), "up 2\n").unwrap();
        std::fs::rename(tmp.path().join("new"), &path).unwrap();
        assert_eq!(
            delete_under_lock(&path, &identity, Duration::from_millis(30)).unwrap(),
            Deleted::Replaced
        );
        let identity = FileIdentity::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(
            delete_under_lock(&path, &identity, Duration::from_millis(30)).unwrap(),
            Deleted::Removed
        );
        assert!(!path.exists());
        assert_eq!(
            delete_under_lock(&path, &identity, Duration::from_millis(30)).unwrap(),
            Deleted::Gone
        );
    }
}
