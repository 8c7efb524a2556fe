//! Helpers shared by the integration tests: the child binaries, reading job files back with
//! promdrop-textformat, and checking a directory for debris.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promdrop_test_support::Metrics;
use promdrop_textformat::{Format, WriterHeader, parse};

/// The `batch_job` example, built as a binary.
pub const BATCH_JOB: &str = env!("CARGO_BIN_EXE_promdrop-writer-batch-job");
/// The loop-writing test helper.
pub const TESTLOOP: &str = env!("CARGO_BIN_EXE_promdrop-writer-testloop");

/// A job file read back: it must parse as classic text and carry a promdrop header.
#[derive(Debug)]
pub struct JobFile {
    pub text: String,
    pub header: WriterHeader,
}

impl JobFile {
    /// Reads and checks `path`, panicking with the file's text when it is not valid.
    pub fn read(path: &Path) -> JobFile {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        JobFile::check(text, path)
    }

    pub fn check(text: String, path: &Path) -> JobFile {
        if let Err(e) = parse(text.as_bytes(), Format::Classic) {
            panic!(
                "{} is not valid classic text format: {e}\n{text}",
                path.display()
            );
        }
        let header = WriterHeader::find(text.as_bytes())
            .unwrap_or_else(|| panic!("{} has no promdrop header:\n{text}", path.display()));
        JobFile { text, header }
    }

    /// The value of the first sample called `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        Metrics::try_parse(&self.text).ok()?.find(name, labels)
    }

    /// The value of an outcome metric, which must be present.
    pub fn get(&self, name: &str) -> f64 {
        self.value(name, &[])
            .unwrap_or_else(|| panic!("no {name} in:\n{}", self.text))
    }

    /// The reason whose `promdrop_job_exit_reason` is 1, checking that exactly one is.
    pub fn reason(&self) -> String {
        let reasons: Vec<&str> = ["success", "error", "panic", "signal", "unfinished"]
            .into_iter()
            .filter(|r| self.value("promdrop_job_exit_reason", &[("reason", r)]) == Some(1.0))
            .collect();
        assert_eq!(
            reasons.len(),
            1,
            "exactly one exit reason must be 1:\n{}",
            self.text
        );
        reasons[0].to_string()
    }

    /// Every sample carries `job_name="<job>"`.
    pub fn assert_grouped(&self, job: &str) {
        let exposition = parse(self.text.as_bytes(), Format::Classic).unwrap();
        for sample in exposition.families.iter().flat_map(|f| f.samples.iter()) {
            assert_eq!(
                sample.label("job_name"),
                Some(job),
                "{} lacks job_name={job}",
                sample.name
            );
        }
    }
}

/// Checks that `dir` holds nothing a reader would serve but complete `.prom` files, and no
/// temporary file at all: only `*.prom` and the hidden `.*.prom.lock` files are allowed.
pub fn assert_no_debris(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let ok = (name.ends_with(".prom") && !name.starts_with('.'))
            || (name.starts_with('.') && name.ends_with(".prom.lock"));
        assert!(ok, "debris in {}: {name}", dir.display());
    }
}

/// Runs the batch job to completion with `args` (after `--dir DIR --job JOB`).
pub fn run_batch_job(dir: &Path, job: &str, args: &[&str]) -> std::process::Output {
    Command::new(BATCH_JOB)
        .arg("--dir")
        .arg(dir)
        .args(["--job", job])
        .args(args)
        .env_remove("JOB_COMPLETION_INDEX")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the batch_job binary runs")
}

/// Starts the batch job and waits until it prints `started` (its handlers are installed).
pub fn spawn_batch_job(binary: &Path, dir: &Path, job: &str, args: &[&str]) -> Child {
    let mut child = Command::new(binary)
        .arg("--dir")
        .arg(dir)
        .args(["--job", job])
        .args(args)
        .env_remove("JOB_COMPLETION_INDEX")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the batch_job binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started", "batch_job did not start");
    child
}

/// Sends `signal` to `child`.
pub fn kill(child: &Child, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{signal} {} failed", child.id());
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Whether the tests run as root (CI does; mounts and `chattr` need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it). Panics with a clear message
    /// when that is not possible: these tests need root, as CI runs them.
    pub fn mount(size: &str) -> Tmpfs {
        assert!(
            is_root(),
            "this test mounts a tmpfs and needs root (CI runs the tests as root); run it as root"
        );
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("mnt");
        fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("mount(8) must be installed for this test");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (this test needs the right to mount): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path,
            _parent: parent,
        }
    }

    /// Remounts the tmpfs read-only (EROFS for every write, root included).
    pub fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount,ro failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}
