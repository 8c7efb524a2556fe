//! The write primitive: lock, temporary file, fsync, rename, fsync the directory.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;
use crate::source::{Source, collect_classic};

/// Length of the random part of a temporary file's name.
const RANDOM_LEN: usize = 12;

/// How a file is written. The defaults suit a job file on a shared volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// The mode of the written file (default `0o644`, readable by an exporter running as
    /// another user). It is set on the open file, so the umask does not apply.
    pub mode: u32,
    /// How long to wait for the lock when another writer or the exporter holds it (default
    /// 10 s). Past it the write fails with [`Error::LockTimeout`] and nothing is written.
    pub lock_timeout: Duration,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mode: 0o644,
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// The lock file that guards `target`: a hidden sibling named `.<file name>.lock`, so
/// `/var/lib/promdrop/descheduler.prom` is guarded by `/var/lib/promdrop/.descheduler.prom.lock`.
///
/// Every writer takes an exclusive `flock(2)` on it (through [`std::fs::File::lock`]) for the
/// whole of a write, and the exporter takes the same lock before it deletes an expired
/// target, so that it never deletes a file that a job has just replaced. The lock file is
/// created on first use and left in place afterwards (it is empty, hidden and does not end
/// in `.prom`, so nothing serves it); removing it while nobody holds it is harmless.
///
/// ```
/// use std::path::Path;
/// assert_eq!(
///     promdrop_writer::lock_path(Path::new("/var/lib/promdrop/descheduler.prom")),
///     Path::new("/var/lib/promdrop/.descheduler.prom.lock"),
/// );
/// ```
pub fn lock_path(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or_else(|| OsStr::new(""));
    let mut lock_name = std::ffi::OsString::from(".");
    lock_name.push(name);
    lock_name.push(".lock");
    target.with_file_name(lock_name)
}

/// The prefix of the temporary files written next to `target`: `.<file name>.`, followed by
/// 12 random alphanumeric characters and `.tmp`. Hidden, and never ending in `.prom`.
fn temp_prefix(target_name: &OsStr) -> std::ffi::OsString {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(target_name);
    prefix.push(".");
    prefix
}

/// The directory of `target` (`.` for a bare file name) and its file name.
fn split_target(target: &Path) -> Result<(&Path, &OsStr), Error> {
    let name = target.file_name().ok_or_else(|| Error::InvalidTarget {
        path: target.to_path_buf(),
        reason: "the path has no file name",
    })?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// An exclusive lock on a target's [`lock_path`], held until dropped.
///
/// Writers hold it while they write; the exporter holds it while it deletes an expired file.
/// Use [`TargetLock::replace`] to write while holding it.
#[derive(Debug)]
pub struct TargetLock {
    file: File,
    lock_path: PathBuf,
    target: PathBuf,
}

impl TargetLock {
    /// Takes the lock that guards `target`, creating the lock file if needed, waiting at most
    /// `timeout` for another holder to release it (polling with [`File::try_lock`]).
    ///
    /// When the lock file exists but cannot be opened for writing (it belongs to another
    /// user), it is opened read-only: `flock` does not need write access.
    pub fn acquire(target: &Path, timeout: Duration) -> Result<TargetLock, Error> {
        split_target(target)?;
        let lock_path = lock_path(target);
        let lock_err = |source| Error::Lock {
            path: lock_path.clone(),
            source,
        };
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lock_path)
        {
            Ok(file) => file,
            Err(first) => match File::open(&lock_path) {
                Ok(file) => file,
                Err(_) => return Err(missing_dir(target).unwrap_or_else(|| lock_err(first))),
            },
        };
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(Error::LockTimeout {
                            path: lock_path,
                            waited,
                        });
                    }
                    thread::sleep(pause.min(timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(TryLockError::Error(e)) => return Err(lock_err(e)),
            }
        }
        Ok(TargetLock {
            file,
            lock_path,
            target: target.to_path_buf(),
        })
    }

    /// The target this lock guards.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Replaces the target with `bytes`: a hidden temporary file in the same directory,
    /// created with `O_EXCL` under a random name, written, fsynced and given `mode`, is
    /// renamed over the target, and the directory is fsynced.
    ///
    /// On any error the temporary file is removed and the target is left as it was (except
    /// for [`Error::SyncDir`], which says the new version is in place but not yet durable).
    /// Temporary files left behind by writers of this target that were killed mid-write are
    /// removed first: holding the lock proves that nobody is still writing them.
    pub fn replace(&self, bytes: &[u8], mode: u32) -> Result<(), Error> {
        let target = self.target.as_path();
        let (dir, name) = split_target(target)?;
        let prefix = temp_prefix(name);
        remove_stale_temps(dir, &prefix);

        let mut temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .rand_bytes(RANDOM_LEN)
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|source| Error::CreateTemp {
                dir: dir.to_path_buf(),
                target: target.to_path_buf(),
                source,
            })?;
        // From here on, dropping `temp` on an error path removes the temporary file.
        let write_err = |step, temp: &tempfile::NamedTempFile, source| Error::WriteTemp {
            target: target.to_path_buf(),
            temp: temp.path().to_path_buf(),
            step,
            source,
        };
        if let Err(e) = temp.as_file_mut().write_all(bytes) {
            return Err(write_err("write", &temp, e));
        }
        if let Err(e) = temp.as_file().set_permissions(Permissions::from_mode(mode)) {
            return Err(write_err("set the mode of", &temp, e));
        }
        if let Err(e) = temp.as_file().sync_all() {
            return Err(write_err("fsync", &temp, e));
        }
        if let Err(e) = temp.persist(target) {
            // `e.file` is dropped here, which removes the temporary file.
            return Err(Error::Rename {
                target: target.to_path_buf(),
                source: e.error,
            });
        }
        sync_dir(dir).map_err(|source| Error::SyncDir {
            dir: dir.to_path_buf(),
            target: target.to_path_buf(),
            source,
        })
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes it explicit.
        let _ = self.file.unlock();
    }
}

/// Fsyncs a directory so that a rename in it is durable. File systems that cannot sync a
/// directory (`EINVAL`) are accepted as they are.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if e.raw_os_error() == Some(22) => Ok(()),
        other => other,
    }
}

/// Removes `<prefix><12 alphanumerics>.tmp` files in `dir`: debris of killed writers. Best
/// effort; errors are ignored (the next write tries again).
fn remove_stale_temps(dir: &Path, prefix: &OsStr) {
    let Some(prefix) = prefix.to_str() else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(middle) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
        else {
            continue;
        };
        if middle.len() == RANDOM_LEN && middle.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Atomically replaces the file at `path` with `bytes`, with the default [`WriteOptions`].
///
/// The protocol: take the exclusive lock on [`lock_path`]`(path)` (waiting at most 10 s),
/// write a hidden temporary file in the same directory (random name, `O_EXCL`, never ending
/// in `.prom`), fsync it, set its mode to 0644, rename it over `path`, fsync the directory.
/// A reader sees the previous complete file or the new complete file, never a part of one.
///
/// On any error (a missing directory, `EACCES`, `EROFS`, `ENOSPC`, a lock held too long) an
/// [`Error`] is returned, the temporary file is removed and the previous file is untouched.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("job.prom");
/// promdrop_writer::write_atomic(&path, b"# TYPE done gauge\ndone 1\n")?;
/// assert_eq!(std::fs::read(&path)?, b"# TYPE done gauge\ndone 1\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_atomic(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
    write_atomic_with(path, bytes, &WriteOptions::default())
}

/// [`write_atomic`] with explicit [`WriteOptions`].
pub fn write_atomic_with(
    path: impl AsRef<Path>,
    bytes: impl AsRef<[u8]>,
    options: &WriteOptions,
) -> Result<(), Error> {
    let lock = TargetLock::acquire(path.as_ref(), options.lock_timeout)?;
    lock.replace(bytes.as_ref(), options.mode)
}

/// Collects `source` and writes its metrics to `path` as classic text format, with
/// [`write_atomic`]'s protocol. The source is collected before anything is touched, so a
/// failing source writes nothing. Text in OpenMetrics is converted to the classic format;
/// text that does not parse is refused with [`Error::InvalidText`].
///
/// This is the bare primitive: no header, no grouping labels, no outcome metrics. A job
/// wants [`Handoff`](crate::Handoff).
///
/// ```
/// # #[cfg(feature = "prometheus")] {
/// let registry = prometheus::Registry::new();
/// let evicted = prometheus::IntCounter::new("pods_evicted", "Pods evicted.")?;
/// registry.register(Box::new(evicted.clone()))?;
/// evicted.inc();
///
/// let dir = tempfile::tempdir()?;
/// promdrop_writer::write_registry(&registry, dir.path().join("job.prom"))?;
/// let text = std::fs::read_to_string(dir.path().join("job.prom"))?;
/// assert!(text.contains("pods_evicted 1\n"));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_registry(
    source: &(impl Source + ?Sized),
    path: impl AsRef<Path>,
) -> Result<(), Error> {
    write_registry_with(source, path, &WriteOptions::default())
}

/// [`write_registry`] with explicit [`WriteOptions`].
pub fn write_registry_with(
    source: &(impl Source + ?Sized),
    path: impl AsRef<Path>,
    options: &WriteOptions,
) -> Result<(), Error> {
    let path = path.as_ref();
    let text = collect_classic(source, path)?;
    write_atomic_with(path, text.as_bytes(), options)
}

/// [`Error::MissingDir`] when the target's directory does not exist (the usual reason why the
/// lock file cannot be created: an unmounted volume), so that the error names the directory
/// rather than the lock file.
fn missing_dir(target: &Path) -> Option<Error> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Error::MissingDir {
            dir: dir.to_path_buf(),
            target: target.to_path_buf(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_temp_names_are_hidden_and_not_prom() {
        let target = Path::new("/x/job-3.prom");
        assert_eq!(lock_path(target), Path::new("/x/.job-3.prom.lock"));
        assert_eq!(temp_prefix(OsStr::new("job-3.prom")), ".job-3.prom.");
        assert_eq!(lock_path(Path::new("a.prom")), Path::new(".a.prom.lock"));
    }

    #[test]
    fn only_this_targets_temp_debris_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [
            ".a.prom.lock",
            "a.prom",
            ".a.prom.x.prom.abcdefghijkl.tmp",
            ".a.prom.short.tmp",
            ".b.prom.abcdefghijkl.tmp",
        ];
        for name in keep {
            fs::write(dir.path().join(name), "").unwrap();
        }
        fs::write(dir.path().join(".a.prom.abcdefghijkl.tmp"), "").unwrap();
        remove_stale_temps(dir.path(), OsStr::new(".a.prom."));
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected: Vec<_> = keep.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(left, expected);
    }
}
