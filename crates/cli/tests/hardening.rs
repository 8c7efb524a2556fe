//! Issue 14 ("Hardening"), the `promdrop` side: hostile files in a shared directory must not
//! hang or grow `promdrop check` and `promdrop write` (findings 2 and 9). Each command runs as
//! a real process with a deadline: a hang fails the test instead of stalling it.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `promdrop ARGS` with `stdin` (a file) as standard input, else none; fails the test if
/// it runs for more than 10 s (killing it). Returns (exit code, stderr).
fn promdrop_with(args: &[&str], stdin: Option<&Path>) -> (Option<i32>, String) {
    promdrop_as(&[], args, stdin)
}

/// [`promdrop_with`], run through `prefix` (such as `setpriv` to drop root).
fn promdrop_as(prefix: &[&str], args: &[&str], stdin: Option<&Path>) -> (Option<i32>, String) {
    let input = match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).expect("open the input")),
        None => Stdio::null(),
    };
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(env!("CARGO_BIN_EXE_promdrop"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_promdrop")),
    };
    let mut child = command
        .args(args)
        .env_remove("PROMDROP_DIR")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promdrop");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Read stderr as it comes, so that a long report cannot fill the pipe and stall the child.
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let err = reader.join().unwrap_or_default();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("promdrop {args:?} still running after 10 s (it hangs)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn promdrop(args: &[&str]) -> (Option<i32>, String) {
    promdrop_with(args, None)
}

#[test]
fn check_refuses_fifos_devices_and_files_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.prom");
    promdrop_test_support::mkfifo(&fifo);
    let zero = dir.path().join("zero.prom");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for path in [&fifo, &zero] {
        let (code, err) = promdrop(&["check", path.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{}: {err}", path.display());
        assert!(err.contains("not a regular file"), "{err}");
    }
    let big = dir.path().join("big.prom");
    let lines: String = (0..1000).map(|i| format!("up{{i=\"{i}\"}} 1\n")).collect();
    std::fs::write(&big, lines).unwrap();
    let (code, err) = promdrop(&["check", "--file.max-bytes=1KiB", big.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("larger than --file.max-bytes=1024"), "{err}");
    let (code, err) = promdrop(&["check", "--file.max-series=10", big.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("series"), "{err}");
    let (code, err) = promdrop(&["check", big.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn write_gives_up_on_a_fifo_or_a_symlink_at_the_lock_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // A FIFO at the lock path: before, `open` blocked for ever (past the lock timeout and
    // SIGTERM).
    promdrop_test_support::mkfifo(&dir.path().join(".fifo.prom.lock"));
    let input = dir.path().join("input.prom");
    std::fs::write(&input, "# TYPE x gauge\nx 1\n").unwrap();
    let (code, err) = promdrop_with(&["write", "--dir", d, "--job", "fifo"], Some(&input));
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    assert!(!dir.path().join("fifo.prom").exists());

    // As a user that cannot open the lock for writing (the FIFO belongs to root), the writer
    // used to fall back to a read-only open that waits for a writer for ever: the hang the
    // probe found. Run as `nobody` through setpriv when the test runs as root.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, err) = promdrop_as(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
            &["write", "--dir", d, "--job", "fifo"],
            Some(&input),
        );
        assert_ne!(code, Some(0), "{err}");
        assert!(err.contains("not a regular file"), "as nobody: {err}");
    }

    // A symlink at the lock path: before, its target was created.
    let target = dir.path().join("created-through-the-link");
    std::os::unix::fs::symlink(&target, dir.path().join(".link.prom.lock")).unwrap();
    let (code, err) = promdrop_with(&["write", "--dir", d, "--job", "link"], Some(&input));
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!target.exists(), "the lock's symlink was followed");
}
