//! UTF-8 names against Python prometheus_client 0.26 (a real `python3` process running
//! `tests/python/utf8_names.py`; the tests fail, and do not skip, when it is missing):
//! - the escaping schemes give the names prometheus_client's `escape_metric_name` and
//!   `escape_label_name` give, on random names;
//! - random registries with UTF-8 metric and label names, written by prometheus_client's
//!   classic encoder (`generate_latest(escaping=allow-utf-8)`) and its OpenMetrics encoder,
//!   parse here to exactly the samples prometheus_client's own parsers read from them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use promdrop_textformat::{EscapingScheme, Format, MetricFamily, parse};
use serde_json::Value as Json;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/utf8_names.py")
}

/// Runs the script with `args` and `stdin`, and returns what it printed as JSON.
fn python(args: &[&str], stdin: &[u8]) -> Json {
    let mut child = Command::new("python3")
        .arg(script())
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
        "python3 {} {args:?} failed (is prometheus_client 0.26 installed? pip install -r tests/requirements.txt):\n{}",
        script().display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// A small deterministic generator, so that a failing name can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
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
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
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
    while names.len() < count {
        let pieces = 1 + rng.below(6);
        names.push(
            (0..pieces)
                .map(|_| PIECES[rng.below(PIECES.len())])
                .collect(),
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

/// A sample as `"name"{"label"="value",...}` with sorted labels, and its value.
fn ours(families: &[MetricFamily<'_>]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for family in families {
        for sample in &family.samples {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|l| format!("{:?}={:?}", l.name, l.value))
                .collect();
            labels.sort();
            out.push((
                format!("{:?}{{{}}}", sample.name, labels.join(",")),
                sample.value.number,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn theirs(samples: &Json) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = samples
        .as_array()
        .expect("a list of samples")
        .iter()
        .map(|s| {
            let mut labels: Vec<String> = s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| format!("{k:?}={:?}", v.as_str().expect("a label value")))
                .collect();
            labels.sort();
            let name = s[0].as_str().expect("a name");
            (
                format!("{name:?}{{{}}}", labels.join(",")),
                s[2].as_f64().expect("a value"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn same_samples(ours: &[(String, f64)], theirs: &[(String, f64)]) -> bool {
    ours.len() == theirs.len()
        && ours.iter().zip(theirs).all(|(a, b)| {
            a.0 == b.0 && (a.1 == b.1 || (a.1 - b.1).abs() <= 1e-12 * a.1.abs().max(1.0))
        })
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
            let ours = ours(&exposition.families);
            let theirs = theirs(&written[format!("{key}_samples")]);
            assert!(
                same_samples(&ours, &theirs),
                "seed {seed}: {key} samples differ from prometheus_client's parser\nours:   {ours:?}\ntheirs: {theirs:?}\n{text}"
            );
        }
    }
}
