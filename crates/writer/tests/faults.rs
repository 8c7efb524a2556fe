//! Faults: a read-only file system, no permission, a missing directory, a full file system, a
//! lock held by another process. Each must give an error value, leave the previous file
//! byte-identical and no temporary file, and let the job exit with its own exit code.
//!
//! Root bypasses permission bits (it can write into a 0555 directory), so "read-only" is a
//! tmpfs remounted read-only (EROFS even for root) and "no permission" runs the job as
//! `nobody` through `setpriv`. The tmpfs tests need root, as CI runs them.

mod common;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use promdrop_writer::{Error, TargetLock, WriteOptions, write_atomic, write_atomic_with};

const PREVIOUS: &[u8] = b"# promdrop: written_at=1.000\n# TYPE previous gauge\nprevious 1\n";

/// Writes the previous version of `job.prom` in `dir`, with the real protocol.
fn previous(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("job.prom");
    write_atomic(&path, PREVIOUS).unwrap();
    path
}

fn assert_previous_intact(path: &Path) {
    assert_eq!(
        fs::read(path).unwrap(),
        PREVIOUS,
        "the previous file changed"
    );
}

/// Runs the example job into `dir` and checks it exits with its own code (0, or 1 with
/// `--fail`) and says on stderr why the metrics were not handed off.
fn job_still_exits(dir: &Path, extra: &[&str], expect_in_stderr: &str) {
    for (flags, code) in [(&[][..], 0), (&["--fail"][..], 1)] {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend_from_slice(flags);
        let out = run_batch_job(dir, "job", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(
            stderr.contains("metrics not handed off") && stderr.contains(expect_in_stderr),
            "stderr does not explain the failure: {stderr}"
        );
    }
}

fn io_kind(e: &Error) -> Option<ErrorKind> {
    match e {
        Error::Lock { source, .. }
        | Error::CreateTemp { source, .. }
        | Error::WriteTemp { source, .. }
        | Error::Rename { source, .. } => Some(source.kind()),
        _ => None,
    }
}

#[test]
fn read_only_file_system_gives_erofs_and_keeps_the_previous_file() {
    let fs = Tmpfs::mount("1m");
    let path = previous(&fs.path);
    fs.remount_read_only();

    let err = write_atomic(&path, b"new 1\n").unwrap_err();
    assert!(matches!(err, Error::CreateTemp { .. }), "{err:?}");
    assert_eq!(
        io_kind(&err),
        Some(ErrorKind::ReadOnlyFilesystem),
        "EROFS expected: {err}"
    );
    assert!(
        err.to_string().contains(&fs.path.display().to_string()),
        "{err}"
    );
    assert_previous_intact(&path);

    job_still_exits(&fs.path, &[], "Read-only file system");
    assert_previous_intact(&path);
    assert_no_debris(&fs.path);
}

#[test]
fn no_permission_gives_eacces_and_keeps_the_previous_file() {
    assert!(
        is_root(),
        "this test drops to the user nobody with setpriv and needs root"
    );
    let dir = tempfile::tempdir().unwrap();
    // Readable and searchable by everyone, writable by root only.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let path = previous(dir.path());
    // A copy of the job binary that `nobody` can run, wherever the build directory is.
    let bin_dir = tempfile::tempdir().unwrap();
    fs::set_permissions(bin_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = bin_dir.path().join("batch_job");
    fs::copy(BATCH_JOB, &binary).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .arg("--dir")
        .arg(dir.path())
        .args(["--job", "job", "--fail"])
        .output()
        .expect("setpriv (util-linux) must be installed for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("metrics not handed off"), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
    assert_previous_intact(&path);
    assert_no_debris(dir.path());
}

#[test]
fn missing_directory_is_an_error_and_creates_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("not-mounted");
    let err = write_atomic(dir.join("job.prom"), b"x 1\n").unwrap_err();
    assert!(matches!(err, Error::MissingDir { .. }), "{err:?}");
    // The directory, and what is likely wrong, not the lock file's ENOENT.
    assert!(
        err.to_string().starts_with(&format!(
            "directory {} does not exist (is the volume mounted?)",
            dir.display()
        )),
        "{err}"
    );
    assert!(!err.to_string().contains(".lock"), "{err}");

    job_still_exits(&dir, &[], "does not exist (is the volume mounted?)");
    assert!(!dir.exists(), "the writer must not create the directory");
}

#[test]
fn full_file_system_gives_enospc_removes_the_temp_file_and_keeps_the_previous_file() {
    let fs = Tmpfs::mount("64k");
    let path = previous(&fs.path);
    // Far more than 64 KiB: the write of the temporary file fails part-way.
    let big = "x 1\n".repeat(64 * 1024);
    let err = write_atomic(&path, big.as_bytes()).unwrap_err();
    match &err {
        Error::WriteTemp { step, temp, .. } => {
            assert_eq!(*step, "write");
            assert!(!temp.exists(), "the temporary file was left behind");
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    assert_eq!(
        io_kind(&err),
        Some(ErrorKind::StorageFull),
        "ENOSPC expected: {err}"
    );
    assert_previous_intact(&path);
    assert_no_debris(&fs.path);

    // A whole job whose file does not fit: it exits with its own code all the same.
    job_still_exits(&fs.path, &["--series", "3000"], "No space left on device");
    // The small snapshot written at install() fitted; the final write did not: the file
    // says the run started and never ended, not what the previous run said.
    let file = JobFile::read(&path);
    assert_eq!(file.get("promdrop_job_running"), 1.0);
    assert_eq!(file.value("promdrop_job_exit_reason", &[]), None);
    assert_no_debris(&fs.path);

    // And once there is room (a small job), the next write succeeds.
    assert_eq!(run_batch_job(&fs.path, "job", &[]).status.code(), Some(0));
    assert_eq!(JobFile::read(&path).reason(), "success");
}

#[test]
fn a_lock_held_by_another_process_times_out_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = previous(dir.path());
    let lock = promdrop_writer::lock_path(&path);
    // flock(1) takes the same flock(2) lock as std::fs::File::lock, in another process, and
    // holds it until `cat` sees the end of its input.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("flock (util-linux) must be installed for this test");
    assert!(
        wait_for(Duration::from_secs(10), || matches!(
            TargetLock::acquire(&path, Duration::ZERO),
            Err(Error::LockTimeout { .. })
        )),
        "flock(1) never took the lock"
    );

    let options = WriteOptions {
        lock_timeout: Duration::from_millis(300),
        ..WriteOptions::default()
    };
    let started = Instant::now();
    let err = write_atomic_with(&path, b"new 1\n", &options).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(err.to_string().contains(".job.prom.lock"), "{err}");
    assert_previous_intact(&path);

    job_still_exits(dir.path(), &["--lock-timeout", "0.3"], "still locked");
    assert_previous_intact(&path);
    assert_no_debris(dir.path());

    // Released: the next write goes through.
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    write_atomic_with(&path, b"new 1\n", &options).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new 1\n");
}
