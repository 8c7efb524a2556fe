//! Golden files for OpenMetrics input, checked against Python prometheus_client's parser.
//!
//! Regenerate every expected.txt after a deliberate change, then review the diff:
//!
//!     UPDATE_GOLDEN=1 cargo test -p promdrop-textformat --test openmetrics_golden
//!
//! Each folder of `tests/fixtures/openmetrics/` (at the workspace root) is one case:
//! - `input.txt`: the input;
//! - `expected.txt`: what [`render_openmetrics`] writes of the parsed families, or the single
//!   line `error: LINE:COL: message` when the parser rejects the input;
//! - `parser_differs` (some cases): one line saying why the parser deliberately gives another
//!   verdict than prometheus_client 0.26's OpenMetrics parser.
//!
//! [`prometheus_client_agrees`] runs that parser (a real `python3` process) on every input:
//! where both accept, they must read the same samples (names, labels and values).

use std::path::{Path, PathBuf};
use std::process::Command;

use promdrop_textformat::{Format, MetricFamily, parse, render_openmetrics};

fn cases() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/openmetrics");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the cases in {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading the cases directory").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

fn name(case: &Path) -> String {
    case.file_name()
        .expect("a case has a name")
        .to_string_lossy()
        .into_owned()
}

fn input(case: &Path) -> Vec<u8> {
    std::fs::read(case.join("input.txt"))
        .unwrap_or_else(|e| panic!("{}: cannot read input.txt: {e}", name(case)))
}

fn outcome(input: &[u8]) -> String {
    match parse(input, Format::OpenMetrics) {
        Ok(exposition) => render_openmetrics(&exposition.families),
        Err(e) => format!("error: {e}\n"),
    }
}

#[test]
fn every_case_matches_its_golden_file() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let actual = outcome(&input(&case));
        let expected_path = case.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expected.txt");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}: output differs from expected.txt\n  expected: {expected:?}\n  actual:   {actual:?}",
                name(&case)
            ));
        }
        // A rendering parses again to what it was rendered from.
        if let Ok(exposition) = parse(&input(&case), Format::OpenMetrics) {
            let again = parse(actual.as_bytes(), Format::OpenMetrics)
                .unwrap_or_else(|e| panic!("{}: the rendering does not parse: {e}", name(&case)));
            assert_eq!(again.families, exposition.families, "{}", name(&case));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each sample as `name{label=value,...} value`, labels sorted, for comparing with Python.
fn samples(families: &[MetricFamily<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    for family in families {
        for sample in &family.samples {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|l| format!("{:?}={:?}", l.name, l.value))
                .collect();
            labels.sort();
            out.push(format!(
                "{:?}{{{}}} {}",
                sample.name,
                labels.join(","),
                sample.value.number
            ));
        }
    }
    out
}

/// Reads every case with prometheus_client's OpenMetrics parser, printing per case one JSON
/// line: `null` when it rejects the input, else its samples.
const PYTHON_READER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for path in sys.argv[1:]:
    try:
        text = open(path, encoding="utf-8").read()
        samples = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(text) for s in f.samples]
        print(json.dumps(samples))
    except Exception:
        print("null")
"#;

/// Runs `script` with `args` in python3, failing clearly when python3 or prometheus_client is
/// missing.
fn python(script: &str, args: &[String]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): it is needed to run prometheus_client; install python3 and pip install -r tests/requirements.txt"));
    assert!(
        output.status.success(),
        "python3 failed (is prometheus_client 0.26 installed? pip install -r tests/requirements.txt):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python3 prints UTF-8")
}

#[test]
fn prometheus_client_agrees() {
    let cases = cases();
    let paths: Vec<String> = cases
        .iter()
        .map(|c| c.join("input.txt").to_string_lossy().into_owned())
        .collect();
    let stdout = python(PYTHON_READER, &paths);
    let verdicts: Vec<&str> = stdout.lines().collect();
    assert_eq!(verdicts.len(), cases.len(), "python3 printed:\n{stdout}");
    let mut failures = Vec::new();
    for (case, python) in cases.iter().zip(verdicts) {
        let input = input(case);
        let ours = parse(&input, Format::OpenMetrics);
        let differs = case.join("parser_differs").exists();
        let theirs: serde_json::Value = serde_json::from_str(python).expect("JSON from python3");
        let agree = ours.is_ok() != theirs.is_null();
        if agree == differs {
            failures.push(format!(
                "{}: the parser {} and prometheus_client {}{}",
                name(case),
                if ours.is_ok() { "accepts" } else { "rejects" },
                if theirs.is_null() {
                    "rejects"
                } else {
                    "accepts"
                },
                if differs {
                    ", but parser_differs says they differ"
                } else {
                    ""
                }
            ));
            continue;
        }
        let (Ok(ours), Some(theirs)) = (ours, theirs.as_array()) else {
            continue;
        };
        let mut python_samples: Vec<String> = theirs
            .iter()
            .map(|s| {
                let mut labels: Vec<String> = s[1]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| format!("{k:?}={:?}", v.as_str().expect("a label value")))
                    .collect();
                labels.sort();
                format!(
                    "{:?}{{{}}} {}",
                    s[0].as_str().expect("a name"),
                    labels.join(","),
                    s[2].as_f64().expect("a value")
                )
            })
            .collect();
        let mut our_samples = samples(&ours.families);
        python_samples.sort();
        our_samples.sort();
        if python_samples != our_samples {
            failures.push(format!(
                "{}: samples differ\n  ours:   {our_samples:?}\n  python: {python_samples:?}",
                name(case)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
