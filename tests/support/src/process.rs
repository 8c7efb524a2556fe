//! Child processes stopped by their PID, programs run with bytes on their stdin, free ports,
//! polling until a deadline, and what `/proc` says of a process.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long [`Process::stop`] waits between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// How many lines of a [`Process`]'s output are kept unless told otherwise (the last ones).
pub const LOG_LINES: usize = 100_000;

/// Makes `command`'s child die with the thread that starts it (`PR_SET_PDEATHSIG = SIGKILL`),
/// so that nothing outlives a test run that panics or is killed itself.
///
/// The signal comes when the *thread* that forked exits: start children from a thread that
/// lives as long as they should.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with integers only. Callers send it to their own child, not reaped yet,
    // so the PID cannot have been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A child process, SIGKILLed by its PID and reaped when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Option<Child>,
    status: Option<ExitStatus>,
}

impl ProcessGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> ProcessGuard {
        ProcessGuard {
            child: Some(child),
            status: None,
        }
    }

    /// The process ID (0 once killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child itself (to take its pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is there until killed")
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() {
                signal(child.id(), libc::SIGKILL);
            }
            if let Ok(status) = child.wait() {
                self.status.get_or_insert(status);
            }
        }
    }

    /// The exit status if it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
        }
        self.status
    }

    /// Sends SIGTERM and waits up to `grace` for the exit; then SIGKILLs. Returns the exit
    /// status and whether it took the SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> (ExitStatus, bool) {
        if let Some(status) = self.exited() {
            return (status, false);
        }
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return (status, false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        (self.status.expect("reaped after SIGKILL"), true)
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process with its standard output and error captured line by line (the last
/// [`LOG_LINES`] kept), SIGKILLed by its PID when dropped.
pub struct Process {
    name: String,
    guard: ProcessGuard,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Starts `command` (its stdin is /dev/null, stdout and stderr go to [`log`](Self::log)).
    /// `name` is used in messages. Fails the test when it cannot start.
    pub fn spawn(name: &str, command: Command) -> Process {
        Process::try_spawn(name, command, LOG_LINES).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts `command` like [`spawn`](Self::spawn), keeping the last `log_lines` lines of its
    /// output.
    pub fn try_spawn(
        name: &str,
        mut command: Command,
        log_lines: usize,
    ) -> anyhow::Result<Process> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name} ({command:?}): {e}"))?;
        let mut guard = ProcessGuard::new(child);
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let out: Box<dyn Read + Send> = Box::new(guard.child_mut().stdout.take().expect("piped"));
        let err: Box<dyn Read + Send> = Box::new(guard.child_mut().stderr.take().expect("piped"));
        for stream in [out, err] {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if log.len() >= log_lines.max(1) {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        Ok(Process {
            name: name.to_string(),
            guard,
            log,
        })
    }

    /// The name given to [`spawn`](Self::spawn).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// What the process wrote to stdout and stderr so far (lines interleaved as read).
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().map(|l| format!("{l}\n")).collect()
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.guard.exited()
    }

    /// Polls the log until a line contains `needle`, and returns the rest of that line after
    /// it. An error when the process exits first or after `timeout`.
    pub fn try_wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return Ok(line.split_once(needle).map_or("", |x| x.1).to_string());
            }
            if let Some(status) = self.try_status() {
                // Let the reader threads catch up with what it wrote before exiting.
                std::thread::sleep(Duration::from_millis(50));
                anyhow::bail!(
                    "{} exited ({status}) before logging {needle:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} did not log {needle:?} within {timeout:?}; log:\n{log}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`try_wait_for_log`](Self::try_wait_for_log), failing the test on an error.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        self.try_wait_for_log(needle, timeout)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Sends SIGTERM, waits up to [`GRACE`], then SIGKILLs; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let (status, killed) = self.guard.terminate(GRACE);
        if killed {
            eprintln!(
                "test support: {} ignored SIGTERM for {GRACE:?}: SIGKILLed",
                self.name
            );
        }
        status
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// The guard, for what only it offers (SIGTERM with another grace period).
    pub fn guard_mut(&mut self) -> &mut ProcessGuard {
        &mut self.guard
    }
}

/// Runs `command` to completion with `stdin` as its input (written from another thread, so
/// that a child answering before it has read everything cannot deadlock; a child that stops
/// reading early is no error) and returns its output; an error when it cannot start (kind
/// `NotFound` when the program is not installed).
pub fn try_run(mut command: Command, stdin: &[u8]) -> std::io::Result<Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The process may refuse the input before reading all of it: a broken pipe is fine.
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output();
    let _ = writer.join();
    output
}

/// [`try_run`], failing the test when the program cannot run.
pub fn run(command: Command, stdin: &[u8]) -> Output {
    let described = format!("{command:?}");
    try_run(command, stdin).unwrap_or_else(|e| panic!("running {described}: {e}"))
}

/// Runs `program` with `args` and `stdin` as its input; returns its exit code (-1 when killed
/// by a signal) and its stdout and stderr together, or why it could not run.
pub fn try_run_with_stdin(
    program: impl AsRef<OsStr>,
    args: &[&str],
    stdin: &[u8],
) -> std::io::Result<(i32, String)> {
    let mut command = Command::new(program);
    command.args(args);
    let output = try_run(command, stdin)?;
    Ok((
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// [`try_run_with_stdin`], failing the test when the program cannot run.
pub fn run_with_stdin(program: &Path, args: &[&str], stdin: &[u8]) -> (i32, String) {
    try_run_with_stdin(program, args, stdin)
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
/// Another process may take it before the caller binds it: callers retry with a new one.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Calls `attempt` every 50 ms until it returns `Ok`, and returns that. After `timeout`, fails
/// the test with `what` and the last error, which should say what was seen instead.
pub fn poll<T>(what: &str, timeout: Duration, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() > timeout {
                    panic!("timed out after {timeout:?} waiting for {what}\n{last}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What each thread of `pid` is blocked in (`/proc/PID/task/*/wchan`), for diagnosing a hang:
/// `name:wchan` pairs, counted.
pub fn thread_states(pid: u32) -> String {
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let read = |f: &str| {
                std::fs::read_to_string(task.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            *states
                .entry(format!("{}:{}", read("comm"), read("wchan")))
                .or_default() += 1;
        }
    }
    states
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// VmRSS of `pid` (its resident size now), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmRSS:")
}

/// VmHWM of `pid` (its peak resident size so far), in bytes.
pub fn rss_peak_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmHWM:")
}

fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
