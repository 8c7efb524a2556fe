//! UTF-8 names against Python prometheus_client 0.26 (a real `python3` process running
//! `tests/python/utf8_names.py`; the tests fail, and do not skip, when it is missing):
//! - the escaping schemes give the names prometheus_client's `escape_metric_name` and
//!   `escape_label_name` give, on random names;
//! - random registries with UTF-8 metric and label names, written by prometheus_client's
//!   classic encoder (`generate_latest(escaping=allow-utf-8)`) and its OpenMetrics encoder,
//!   parse here to exactly the samples prometheus_client's own parsers read from them.

use std::path::PathBuf;

use promdrop_textformat::{EscapingScheme, Format, parse};
use proptest::collection::vec;
use proptest::sample::select;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::Value as Json;

mod common;
use common::{our_samples, python_samples, python3, same_samples};

/// Runs `tests/python/utf8_names.py ARGS...` with `stdin`; returns what it printed, as JSON.
fn python(args: &[&str], stdin: &[u8]) -> Json {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/utf8_names.py");
    let script = script.to_string_lossy();
    let mut all = vec![script.as_ref()];
    all.extend_from_slice(args);
    serde_json::from_str(&python3(&all, stdin)).expect("the script prints JSON")
}

/// Random names built from pieces that matter to the schemes: dots, dashes, colons, digits
/// (leading ones too), non-ASCII, runs of underscores, and names already holding `_dot_` or
/// starting with `U__`. No newline: prometheus_client's legacy-name check (a Python regular
/// expression ending in `$`) takes a name ending in one for a legacy name.
fn random_names(count: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "a", "Z", "_", "__", ".", "-", ":", "0", "9", "é", "ü", "✓", "😀", " ", "_dot_", "U__",
        "http", "\"", "\\", "x_", "\u{7f}", "\t", "ß",
    ];
    let mut names: Vec<String> = [
        "a",
        "_",
        ":",
        "0",
        "a.b",
        "a_b",
        "a_dot_b",
        "U__a",
        "1up",
        "__x",
        "a:b",
        "é",
        ".",
        "-",
        "http.server.request.duration",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // proptest's deterministic generator: the same names on every run.
    let mut runner = TestRunner::deterministic();
    let name = vec(select(PIECES), 1..=6).prop_map(|pieces| pieces.concat());
    while names.len() < count {
        names.push(
            name.new_tree(&mut runner)
                .expect("a name is always generated")
                .current(),
        );
    }
    names
}

#[test]
fn escaping_matches_prometheus_client_on_random_names() {
    let names = random_names(3000);
    let theirs = python(
        &["escape"],
        serde_json::to_string(&names).expect("JSON").as_bytes(),
    );
    let theirs = theirs.as_array().expect("a list");
    assert_eq!(theirs.len(), names.len());
    let mut failures = Vec::new();
    for (name, escaped) in names.iter().zip(theirs) {
        for scheme in EscapingScheme::ALL {
            let expected = &escaped[scheme.as_str()];
            let metric = scheme.escape_metric_name(name);
            let label = scheme.escape_label_name(name);
            // prometheus_client adds quotes for allow-utf-8 where a name needs them; here that is
            // the renderer's job, so its quotes (and escapes) are taken off first.
            let unquote = |s: &str| -> String {
                match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(inner) if scheme == EscapingScheme::AllowUtf8 => inner
                        .replace("\\\"", "\"")
                        .replace("\\n", "\n")
                        .replace("\\\\", "\\"),
                    _ => s.to_string(),
                }
            };
            let expected_metric = unquote(expected[0].as_str().expect("a string"));
            let expected_label = unquote(expected[1].as_str().expect("a string"));
            if metric != expected_metric || label != expected_label {
                failures.push(format!(
                    "{name:?} under {scheme}: metric {metric:?} vs {expected_metric:?}, label {label:?} vs {expected_label:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences from prometheus_client:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn prometheus_client_utf8_files_parse_to_its_own_samples() {
    for seed in 1..=12 {
        let seed_arg = seed.to_string();
        let written = python(&["registry", &seed_arg, "15"], b"");
        for (key, format) in [
            ("classic", Format::Classic),
            ("openmetrics", Format::OpenMetrics),
        ] {
            let text = written[key].as_str().expect("the exposition");
            let exposition = parse(text.as_bytes(), Format::Auto).unwrap_or_else(|e| {
                panic!("seed {seed}: prometheus_client's {key} text does not parse: {e}\n{text}")
            });
            assert_eq!(exposition.format, format, "seed {seed}: {key}");
            let ours = our_samples(&exposition.families);
            let theirs = python_samples(&written[format!("{key}_samples")]);
            assert!(
                same_samples(&ours, &theirs),
                "seed {seed}: {key} samples differ from prometheus_client's parser\nours:   {ours:?}\ntheirs: {theirs:?}\n{text}"
            );
        }
    }
}
