//! Golden files for the classic text format, checked against node_exporter 1.5.
//!
//! Regenerate every expected.prom after a deliberate change, then review the diff:
//!
//!     UPDATE_GOLDEN=1 cargo test -p promdrop-textformat --test classic_golden
//!
//! Each folder of `tests/fixtures/classic/` (at the workspace root) is one case:
//! - `input.prom`: the input;
//! - `expected.prom`: what [`render_classic`] writes of the parsed families, or the single line
//!   `error: LINE:COL: message` when the parser rejects the input;
//! - `node_exporter`: the verdict of the real node_exporter 1.5 textfile collector on the input
//!   alone in its directory: `accept`, `reject`, or `crash` (it panics and exits), recorded by
//!   `tests/fixtures/classic/record_node_verdicts.sh`;
//! - `parser_differs` (some cases): one line saying why the parser deliberately gives the other
//!   verdict.
//!
//! [`every_case_matches_its_golden_file`] checks the parser against `expected.prom`, and its
//! verdict against node_exporter's: the same (a crash counts as a rejection), or the opposite
//! where `parser_differs` says so. [`node_exporter_still_gives_the_recorded_verdicts`] runs the
//! real node_exporter and checks the recorded verdicts against it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promdrop_textformat::{Format, parse, render_classic};

mod common;
use common::{case_dirs, case_name};

/// The files a case folder may hold.
const CASE_FILES: [&str; 4] = [
    "input.prom",
    "expected.prom",
    "node_exporter",
    "parser_differs",
];

/// Every case folder, sorted by name.
fn cases() -> Vec<PathBuf> {
    case_dirs("classic")
}

/// node_exporter's recorded verdict on a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    Reject,
    /// node_exporter panicked: the file is never served (and nothing else is).
    Crash,
}

impl Verdict {
    fn parse(text: &str) -> Option<Verdict> {
        match text.trim_end() {
            "accept" => Some(Verdict::Accept),
            "reject" => Some(Verdict::Reject),
            "crash" => Some(Verdict::Crash),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Crash => "crash",
        }
    }
}

fn recorded_verdict(case: &Path) -> Verdict {
    let path = case.join("node_exporter");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; record it with tests/fixtures/classic/record_node_verdicts.sh",
            path.display()
        )
    });
    Verdict::parse(&text).unwrap_or_else(|| {
        panic!(
            "{}: expected accept, reject or crash, found {text:?}",
            path.display()
        )
    })
}

/// What `expected.prom` holds for an input: the rendered families, or the error line.
fn golden_output(input: &[u8]) -> (bool, String) {
    match parse(input, Format::Classic) {
        Ok(exposition) => {
            let rendered = render_classic(&exposition.families);
            // What is rendered must parse back to the same families.
            let again = parse(rendered.as_bytes(), Format::Classic)
                .unwrap_or_else(|e| panic!("re-parsing the rendering failed: {e}\n{rendered}"));
            assert_eq!(
                again.families, exposition.families,
                "the round trip changed the families"
            );
            (true, rendered)
        }
        Err(e) => (false, format!("error: {e}\n")),
    }
}

/// A short view of a text for a failure message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 400;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..end], text.len())
}

#[test]
fn every_case_matches_its_golden_file() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = cases();
    let (mut accepted, mut rejected, mut agreed, mut differ_as_documented) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case_name(case);
        for entry in std::fs::read_dir(case).expect("reading a case folder") {
            let file = entry.expect("reading a case folder").file_name();
            let file = file.to_string_lossy();
            if !CASE_FILES.contains(&file.as_ref()) {
                failures.push(format!(
                    "{name}: unexpected file {file:?} (a case holds {CASE_FILES:?})"
                ));
            }
        }
        let input = std::fs::read(case.join("input.prom"))
            .unwrap_or_else(|e| panic!("{name}/input.prom: {e}"));
        let (ok, actual) = golden_output(&input);
        if ok {
            accepted += 1;
        } else {
            rejected += 1;
        }

        let expected_path = case.join("expected.prom");
        if update {
            std::fs::write(&expected_path, &actual)
                .unwrap_or_else(|e| panic!("writing {}: {e}", expected_path.display()));
        } else {
            match std::fs::read(&expected_path) {
                Ok(expected) if expected == actual.as_bytes() => {}
                Ok(expected) => failures.push(format!(
                    "{name}: output differs from expected.prom\n  expected: {}\n  actual:   {}",
                    excerpt(&String::from_utf8_lossy(&expected)),
                    excerpt(&actual)
                )),
                Err(e) => failures.push(format!("{name}: cannot read expected.prom: {e}")),
            }
        }

        let node = recorded_verdict(case);
        let node_accepts = node == Verdict::Accept;
        let differs_path = case.join("parser_differs");
        if differs_path.exists() {
            let why = std::fs::read_to_string(&differs_path).expect("reading parser_differs");
            if why.trim().is_empty() || why.trim_end().contains('\n') {
                failures.push(format!(
                    "{name}: parser_differs must hold one line saying why"
                ));
            }
            if ok == node_accepts {
                failures.push(format!(
                    "{name}: parser_differs says the parser disagrees with node_exporter ({}), but both {}",
                    node.as_str(),
                    if ok { "accept" } else { "reject" }
                ));
            } else {
                differ_as_documented += 1;
            }
        } else if ok == node_accepts {
            agreed += 1;
        } else {
            failures.push(format!(
                "{name}: node_exporter's verdict is {} but the parser {}",
                node.as_str(),
                if ok {
                    "accepts".to_string()
                } else {
                    format!("rejects ({})", actual.trim_end())
                }
            ));
        }
    }
    println!(
        "classic golden: {} cases, {accepted} accepted, {rejected} rejected, node_exporter agrees on {agreed}, differs as documented on {differ_as_documented}",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} classic cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(agreed + differ_as_documented, cases.len());
}

// ---------------------------------------------------------------------------------------------
// The live check against the real node_exporter.

/// Where the Debian package prometheus-node-exporter installs node_exporter.
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

fn find_node_exporter() -> PathBuf {
    let installed = PathBuf::from(NODE_EXPORTER);
    if installed.is_file() {
        return installed;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("prometheus-node-exporter");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "node_exporter not found at {NODE_EXPORTER} nor as prometheus-node-exporter on PATH: \
         install the Debian package prometheus-node-exporter (1.5.0), \
         e.g. `apt-get install -y prometheus-node-exporter`; this test checks the recorded \
         node_exporter verdicts against the real binary and does not skip"
    );
}

/// A node_exporter serving only the textfile collector on one directory. Dropping it kills the
/// process by PID (also when a test panics) and removes its working directory.
struct NodeExporter {
    binary: PathBuf,
    /// Holds `textfiles/`, the directory node_exporter reads, and `node_exporter.log`.
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl NodeExporter {
    fn start(binary: PathBuf) -> NodeExporter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "promdrop-classic-golden-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut node = NodeExporter {
            binary,
            dir,
            child: None,
            port: 0,
        };
        node.spawn();
        node
    }

    /// The directory node_exporter reads.
    fn textfiles(&self) -> PathBuf {
        self.dir.join("textfiles")
    }

    /// The end of node_exporter's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("node_exporter.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Starts node_exporter on a free port and waits until it answers. A port taken by someone
    /// else between our probe and node_exporter's bind costs a retry.
    fn spawn(&mut self) {
        const ATTEMPTS: usize = 3;
        std::fs::create_dir_all(self.textfiles()).expect("creating the textfile directory");
        for attempt in 1..=ATTEMPTS {
            // A free port: bind port 0, note what the system chose, release it for node_exporter.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("binding 127.0.0.1:0 to find a free port")
                .port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("node_exporter.log"))
                .expect("opening node_exporter.log");
            let child = Command::new(&self.binary)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!(
                    "--collector.textfile.directory={}",
                    self.textfiles().display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
            self.child = Some(child);
            self.port = port;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if self.get_metrics().is_ok() {
                    return;
                }
                if self.exited() {
                    self.child = None;
                    assert!(
                        attempt < ATTEMPTS,
                        "node_exporter exited right after starting, {ATTEMPTS} times; its log:\n{}",
                        self.log_tail()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node_exporter did not answer on 127.0.0.1:{port} within 10 s; its log:\n{}",
                    self.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// `GET /metrics` over a plain TCP connection; the body on a 200 answer.
    fn get_metrics(&self) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let header_end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("incomplete HTTP response"))?;
        if !response.starts_with(b"HTTP/1.0 200") && !response.starts_with(b"HTTP/1.1 200") {
            return Err(std::io::Error::other(format!(
                "HTTP status line {:?}",
                String::from_utf8_lossy(response.split(|b| *b == b'\r').next().unwrap_or(&[]))
            )));
        }
        Ok(response.split_off(header_end + 4))
    }

    /// node_exporter's verdict on `input` alone in its directory.
    fn verdict(&mut self, name: &str, input: &[u8]) -> Verdict {
        for entry in std::fs::read_dir(self.textfiles()).expect("listing the textfile directory") {
            let path = entry.expect("listing the textfile directory").path();
            std::fs::remove_file(&path)
                .unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
        }
        std::fs::write(self.textfiles().join("case.prom"), input).expect("writing case.prom");
        match self.get_metrics() {
            Ok(body) => {
                let error_line = body
                    .split(|b| *b == b'\n')
                    .find(|line| line.starts_with(b"node_textfile_scrape_error "))
                    .unwrap_or_else(|| {
                        panic!("{name}: no node_textfile_scrape_error in the scrape")
                    });
                match error_line {
                    b"node_textfile_scrape_error 0" => Verdict::Accept,
                    b"node_textfile_scrape_error 1" => Verdict::Reject,
                    other => panic!(
                        "{name}: unexpected line {:?}",
                        String::from_utf8_lossy(other)
                    ),
                }
            }
            Err(e) => {
                // No answer: node_exporter panicked on the file. Make sure, then restart it.
                let deadline = Instant::now() + Duration::from_secs(5);
                while !self.exited() {
                    assert!(
                        Instant::now() < deadline,
                        "{name}: node_exporter did not answer ({e}) but is still running; its log:\n{}",
                        self.log_tail()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                self.child = None;
                std::fs::remove_file(self.textfiles().join("case.prom"))
                    .expect("removing case.prom");
                self.spawn();
                Verdict::Crash
            }
        }
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn node_exporter_still_gives_the_recorded_verdicts() {
    let binary = find_node_exporter();
    let cases = cases();
    let mut node = NodeExporter::start(binary);
    let mut counts = [0usize; 3];
    let mut mismatches = Vec::new();
    for case in &cases {
        let name = case_name(case);
        let input = std::fs::read(case.join("input.prom"))
            .unwrap_or_else(|e| panic!("{name}/input.prom: {e}"));
        let recorded = recorded_verdict(case);
        let live = node.verdict(&name, &input);
        counts[live as usize] += 1;
        if live != recorded {
            mismatches.push(format!(
                "{name}: node_exporter now says {}, recorded {}",
                live.as_str(),
                recorded.as_str()
            ));
        }
    }
    let mut summary = String::new();
    let _ = write!(
        summary,
        "node_exporter live: {} cases, {} accepted, {} rejected, {} crashed, agrees with the recorded verdict on {}",
        cases.len(),
        counts[Verdict::Accept as usize],
        counts[Verdict::Reject as usize],
        counts[Verdict::Crash as usize],
        cases.len() - mismatches.len()
    );
    println!("{summary}");
    assert!(
        mismatches.is_empty(),
        "{summary}; re-record with tests/fixtures/classic/record_node_verdicts.sh after checking why:\n{}",
        mismatches.join("\n")
    );
}
