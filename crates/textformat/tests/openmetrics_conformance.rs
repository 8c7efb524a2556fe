//! The OpenMetrics parser conformance suite: every case's verdict must match `shouldParse`.
//!
//! The cases are a copy of the OpenMetrics project's `tests/testdata/parsers` (Apache-2.0, see
//! `tests/conformance/openmetrics/README.md`).

use std::path::PathBuf;

use promdrop_textformat::{Format, parse, render_openmetrics};

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/openmetrics/parsers")
}

#[test]
fn every_conformance_verdict_agrees() {
    let dir = cases_dir();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read conformance cases in {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    let (mut agreed, mut should_parse, mut should_fail) = (0, 0, 0);
    let mut disagreements = Vec::new();
    for case in &entries {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("test.json")).expect("test.json"))
                .expect("test.json is JSON");
        let expected = spec["shouldParse"]
            .as_bool()
            .expect("shouldParse is a bool");
        let input = std::fs::read(case.join(spec["file"].as_str().unwrap_or("metrics")))
            .expect("metrics file");
        let result = parse(&input, Format::OpenMetrics);
        if expected {
            should_parse += 1;
        } else {
            should_fail += 1;
        }
        match (&result, expected) {
            (Ok(_), true) | (Err(_), false) => agreed += 1,
            (Ok(_), false) => disagreements.push(format!("{name}: accepted, should be rejected")),
            (Err(e), true) => disagreements.push(format!("{name}: rejected ({e}), should parse")),
        }
        // What parses must render back to text that parses to the same families.
        if let Ok(exposition) = result {
            let rendered = render_openmetrics(&exposition.families);
            let again = parse(rendered.as_bytes(), Format::OpenMetrics).unwrap_or_else(|e| {
                panic!("{name}: re-parsing the rendering failed: {e}\n{rendered}")
            });
            assert_eq!(
                again.families, exposition.families,
                "{name}: round trip changed the families"
            );
        }
    }
    println!(
        "OpenMetrics conformance: {agreed} of {} verdicts agree ({should_parse} must parse, {should_fail} must be rejected)",
        entries.len()
    );
    assert!(
        disagreements.is_empty(),
        "disagreements:\n{}",
        disagreements.join("\n")
    );
    assert_eq!(entries.len(), 211, "the suite has 211 cases");
}
