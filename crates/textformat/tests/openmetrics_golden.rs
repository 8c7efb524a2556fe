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

use std::path::Path;

use promdrop_textformat::{Format, parse, render_openmetrics};

mod common;
use common::{case_dirs, case_name as name, our_samples, python_samples, python3, same_samples};

fn cases() -> Vec<std::path::PathBuf> {
    case_dirs("openmetrics")
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

#[test]
fn prometheus_client_agrees() {
    let cases = cases();
    let paths: Vec<String> = cases
        .iter()
        .map(|c| c.join("input.txt").to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["-c", PYTHON_READER];
    args.extend(paths.iter().map(String::as_str));
    let stdout = python3(&args, b"");
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
        let Ok(ours) = ours else {
            continue;
        };
        if theirs.is_null() {
            continue;
        }
        let ours = our_samples(&ours.families);
        let theirs = python_samples(&theirs);
        if !same_samples(&ours, &theirs) {
            failures.push(format!(
                "{}: samples differ\n  ours:   {ours:?}\n  python: {theirs:?}",
                name(case)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
