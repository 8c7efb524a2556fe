//! Helpers shared by the golden-file and Python differential tests: case folders, running
//! `python3`, and samples in a form that compares with what prometheus_client reads.

#![allow(dead_code)] // each test binary uses its own part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use promdrop_textformat::MetricFamily;
use serde_json::Value as Json;

/// The case folders of `tests/fixtures/<kind>` (at the workspace root), sorted by name.
pub fn case_dirs(kind: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(kind);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the {kind} cases in {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading the cases directory").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

/// The name of a case folder.
pub fn case_name(case: &Path) -> String {
    case.file_name()
        .expect("a case folder has a name")
        .to_string_lossy()
        .into_owned()
}

/// Runs `python3 ARGS...` with `stdin` and returns its standard output, failing with a clear
/// message when python3 or prometheus_client is missing.
pub fn python3(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): it is needed to run prometheus_client; install python3 and pip install -r tests/requirements.txt")
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write to python3");
    let output = child.wait_with_output().expect("python3 runs");
    assert!(
        output.status.success(),
        "python3 failed (is prometheus_client 0.26 installed? pip install -r tests/requirements.txt):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python3 prints UTF-8")
}

/// `"name"{"label"="value",...}` with the labels sorted.
fn series_key<'s>(name: &str, labels: impl Iterator<Item = (&'s str, &'s str)>) -> String {
    let mut labels: Vec<String> = labels.map(|(k, v)| format!("{k:?}={v:?}")).collect();
    labels.sort();
    format!("{name:?}{{{}}}", labels.join(","))
}

/// Every sample of `families` as its series key and value, sorted.
pub fn our_samples(families: &[MetricFamily<'_>]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = families
        .iter()
        .flat_map(|f| f.samples.iter())
        .map(|s| {
            let labels = s.labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref()));
            (series_key(&s.name, labels), s.value.number)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The samples prometheus_client read, printed by Python as `[[name, {labels}, value], ...]`,
/// in the form of [`our_samples`].
pub fn python_samples(samples: &Json) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = samples
        .as_array()
        .expect("a list of samples")
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().expect("a label value")));
            let name = s[0].as_str().expect("a name");
            (series_key(name, labels), s[2].as_f64().expect("a value"))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Whether two sample lists hold the same series with the same values (to the last bits a
/// JSON round trip of a float may cost).
pub fn same_samples(ours: &[(String, f64)], theirs: &[(String, f64)]) -> bool {
    ours.len() == theirs.len()
        && ours.iter().zip(theirs).all(|(a, b)| {
            a.0 == b.0 && (a.1 == b.1 || (a.1 - b.1).abs() <= 1e-12 * a.1.abs().max(1.0))
        })
}
