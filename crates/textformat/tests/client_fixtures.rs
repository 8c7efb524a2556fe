//! Fixtures written by the real Prometheus client libraries (`tests/fixtures/clients` at the
//! workspace root; see its README for what wrote each file and how to regenerate them).
//!
//! For every fixture (`*.prom` read as classic, `*.txt` as OpenMetrics):
//! - it parses, and [`Format::Auto`] picks the same format and gives the same families;
//! - a few known samples have the values and labels the generator gave them (escaped label
//!   values decode to what the library was handed);
//! - rendering in the same format and parsing again gives equal families;
//! - `promtool check metrics` (Debian package `prometheus`) parses `render_classic` of it:
//!   lint findings (exit code 3) are accepted, a parse error (exit code 1) is not;
//! - Python's OpenMetrics parser (`prometheus_client`) parses `render_openmetrics` of it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use promdrop_textformat::{
    Exposition, Format, MetricFamily, MetricType, Sample, Timestamp, parse, render_classic,
    render_openmetrics,
};

/// The label value every generator writes for `fixture_label_escapes{kind="tricky"}`.
const TRICKY_VALUE: &str = "say \"hi\"\\ C:\\jobs\\ line one\nline two ü 日本 🚀";
/// The help text of `fixture_label_escapes`, where the library escapes help correctly.
const ESCAPED_HELP: &str = "Help with a backslash \\, a \"quote\" and a newline\nin it.";

/// Every fixture the generators write. The test fails when one is missing, or when the folder
/// holds a fixture this list does not name, so none is skipped silently.
const EXPECTED_FIXTURES: &[&str] = &[
    "python-generate-latest-no-created.prom",
    "python-generate-latest.prom",
    "python-openmetrics-no-created.txt",
    "python-openmetrics.txt",
    "python-write-to-textfile.prom",
    "rust-prometheus-client-classic.prom",
    "rust-prometheus-client-openmetrics.txt",
    "rust-prometheus-text.prom",
];

/// Files in the folder that are not fixtures.
const NOT_FIXTURES: &[&str] = &["README.md", "regenerate.sh", "gen_python.py", "gen-rust"];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clients")
}

struct Fixture {
    name: String,
    format: Format,
    bytes: Vec<u8>,
}

impl Fixture {
    fn parse(&self) -> Exposition<'_> {
        parse(&self.bytes, self.format).unwrap_or_else(|e| {
            let line = String::from_utf8_lossy(&self.bytes)
                .lines()
                .nth(e.line().saturating_sub(1))
                .unwrap_or("")
                .to_string();
            panic!(
                "{} does not parse as {}: {e}\n  line {}: {line:?}",
                self.name,
                self.format,
                e.line()
            )
        })
    }
}

/// The fixtures, sorted by name, each with the format its extension says.
fn fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the fixtures in {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 file name")
        })
        .collect();
    names.sort();
    let mut fixtures = Vec::new();
    for name in names {
        let format = if name.ends_with(".prom") {
            Format::Classic
        } else if name.ends_with(".txt") {
            Format::OpenMetrics
        } else {
            assert!(
                NOT_FIXTURES.contains(&name.as_str()),
                "unexpected file {name} in {}: fixtures end in .prom (classic) or .txt (OpenMetrics)",
                dir.display()
            );
            continue;
        };
        assert!(
            EXPECTED_FIXTURES.contains(&name.as_str()),
            "{name} is not in EXPECTED_FIXTURES: add it there and give it known samples"
        );
        let bytes = std::fs::read(dir.join(&name)).expect("fixture file");
        fixtures.push(Fixture {
            name,
            format,
            bytes,
        });
    }
    let found: Vec<&str> = fixtures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        found,
        EXPECTED_FIXTURES,
        "fixtures missing in {}: run tests/fixtures/clients/regenerate.sh",
        dir.display()
    );
    fixtures
}

#[test]
fn every_fixture_parses_and_auto_picks_the_same_format() {
    for fixture in fixtures() {
        let exposition = fixture.parse();
        assert_eq!(exposition.format, fixture.format, "{}", fixture.name);
        assert!(
            exposition.sample_count() > 50,
            "{}: too few samples",
            fixture.name
        );
        let auto = parse(&fixture.bytes, Format::Auto)
            .unwrap_or_else(|e| panic!("{} does not parse with Format::Auto: {e}", fixture.name));
        assert_eq!(
            auto.format, fixture.format,
            "{}: Format::Auto picked another format",
            fixture.name
        );
        assert_eq!(
            auto.families, exposition.families,
            "{}: Format::Auto gave other families",
            fixture.name
        );
    }
}

#[test]
fn rendering_in_the_same_format_round_trips() {
    for fixture in fixtures() {
        let exposition = fixture.parse();
        let rendered = match fixture.format {
            Format::OpenMetrics => render_openmetrics(&exposition.families),
            _ => render_classic(&exposition.families),
        };
        let again = parse(rendered.as_bytes(), fixture.format).unwrap_or_else(|e| {
            panic!(
                "{}: the rendering does not parse again: {e}\n{rendered}",
                fixture.name
            )
        });
        assert_eq!(
            again.families, exposition.families,
            "{}: the round trip changed the families",
            fixture.name
        );
        // The text is the same too (values are written back as the tokens they were read
        // from), except that exemplar timestamps are kept as numbers: `1700000000.0` comes back
        // as `1700000000`.
        let original = String::from_utf8_lossy(&fixture.bytes);
        assert_eq!(
            rendered.lines().count(),
            original.lines().count(),
            "{}: the rendering has another number of lines",
            fixture.name
        );
        for (number, (ours, theirs)) in rendered.lines().zip(original.lines()).enumerate() {
            let exemplar_timestamp_respelled =
                ours.contains(" # {") && theirs.strip_suffix(".0") == Some(ours);
            assert!(
                ours == theirs || exemplar_timestamp_respelled,
                "{} line {}: the rendering differs from the fixture:\n  fixture:  {theirs}\n  rendered: {ours}",
                fixture.name,
                number + 1
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Known samples.

fn family<'f, 'a>(families: &'f [MetricFamily<'a>], name: &str) -> &'f MetricFamily<'a> {
    families.iter().find(|f| f.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = families.iter().map(|f| f.name.as_ref()).collect();
        panic!("no family {name:?}; the families are {names:?}")
    })
}

/// The one sample called `name` that has (at least) `labels`.
fn sample<'f, 'a>(
    families: &'f [MetricFamily<'a>],
    name: &str,
    labels: &[(&str, &str)],
) -> &'f Sample<'a> {
    let matches: Vec<&Sample<'a>> = families
        .iter()
        .flat_map(|f| f.samples.iter())
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "samples called {name:?} with labels {labels:?}: {matches:#?}"
    );
    matches[0]
}

fn value(families: &[MetricFamily<'_>], name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(families, name, labels).value.number
}

/// What every generator writes, with the spellings that differ between libraries.
struct Common {
    /// The eviction counter's sample name.
    evicted: &'static str,
    /// The eviction counter's `result` label value.
    success: &'static str,
    /// The help of `fixture_label_escapes`.
    escapes_help: &'static str,
    /// The `le` of the loop duration histogram's 300 s bucket.
    le_300: &'static str,
}

fn check_common(families: &[MetricFamily<'_>], c: &Common) {
    // Label values with quotes, backslashes, newlines and UTF-8 decode to what the library
    // was given.
    for (kind, expected, index) in [
        ("tricky", TRICKY_VALUE, 0.0),
        ("quote", "\"", 1.0),
        ("backslash", "\\", 2.0),
        ("newline", "\n", 3.0),
        ("utf8", "ünïcödé ✓ 日本語", 4.0),
        ("empty", "", 5.0),
    ] {
        let s = sample(families, "fixture_label_escapes", &[("kind", kind)]);
        assert_eq!(
            s.label("value"),
            Some(expected),
            "label value of kind {kind}"
        );
        assert_eq!(s.value.number, index, "value of kind {kind}");
    }
    let escapes = family(families, "fixture_label_escapes");
    assert_eq!(escapes.help.as_deref(), Some(c.escapes_help));
    assert_eq!(escapes.metric_type, MetricType::Gauge);

    // Floats.
    let edge = |case: &str| value(families, "fixture_edge_values", &[("case", case)]);
    assert_eq!(edge("tiny"), 1e-7);
    assert_eq!(edge("huge"), 1.5e9);
    assert_eq!(edge("very_huge"), f64::MAX);
    assert!(edge("nan").is_nan());
    assert_eq!(edge("pos_inf"), f64::INFINITY);
    assert_eq!(edge("neg_inf"), f64::NEG_INFINITY);
    assert_eq!(edge("neg_zero"), 0.0);
    assert!(edge("neg_zero").is_sign_negative(), "-0 keeps its sign");
    assert_eq!(edge("negative"), -42.5);

    // The descheduler's eviction counter, with an escaped quote and UTF-8 in its labels.
    let evicted = sample(
        families,
        c.evicted,
        &[("namespace", "team-ü"), ("node", "node-\"c\"")],
    );
    assert_eq!(evicted.value.number, 2.0);
    assert_eq!(evicted.label("result"), Some(c.success));
    assert_eq!(evicted.label("strategy"), Some("RemoveDuplicates"));
    assert_eq!(
        value(families, c.evicted, &[("namespace", "kube-system")]),
        12.0
    );

    // The loop duration histogram with custom buckets.
    let loop_family = family(families, "descheduler_loop_duration_seconds");
    assert_eq!(loop_family.metric_type, MetricType::Histogram);
    let bucket = "descheduler_loop_duration_seconds_bucket";
    let default = ("profile", "default");
    assert_eq!(value(families, bucket, &[default, ("le", "+Inf")]), 6.0);
    assert_eq!(value(families, bucket, &[default, ("le", c.le_300)]), 5.0);
    assert_eq!(value(families, bucket, &[default, ("le", "0.5")]), 2.0);
    assert_eq!(
        value(
            families,
            "descheduler_loop_duration_seconds_sum",
            &[default]
        ),
        448.154
    );
    assert_eq!(
        value(
            families,
            "descheduler_loop_duration_seconds_count",
            &[default]
        ),
        6.0
    );

    // Tiny buckets.
    let tiny = "fixture_tiny_duration_seconds";
    assert_eq!(family(families, tiny).metric_type, MetricType::Histogram);
    assert_eq!(value(families, &format!("{tiny}_sum"), &[]), 0.00020005);
    let first_bucket = family(families, tiny)
        .samples
        .iter()
        .find(|s| s.name.ends_with("_bucket"))
        .expect("a bucket");
    let le: f64 = first_bucket
        .label("le")
        .expect("le")
        .parse()
        .expect("le is a number");
    assert_eq!(le, 1e-7);
}

#[test]
fn known_samples_have_the_values_and_labels_the_libraries_were_given() {
    let mut checked = 0;
    for fixture in fixtures() {
        let exposition = fixture.parse();
        let families = &exposition.families[..];
        let name = fixture.name.as_str();
        match name {
            "rust-prometheus-text.prom" => {
                check_common(
                    families,
                    &Common {
                        evicted: "descheduler_pods_evicted",
                        success: "success",
                        escapes_help: ESCAPED_HELP,
                        le_300: "300",
                    },
                );
                // f64::to_string spellings.
                assert_eq!(
                    sample(families, "fixture_edge_values", &[("case", "pos_inf")])
                        .value
                        .token
                        .as_deref(),
                    Some("inf")
                );
                // A summary from a custom collector, with quantiles, NaN and a timestamp.
                let summary = family(families, "descheduler_api_request_duration_seconds");
                assert_eq!(summary.metric_type, MetricType::Summary);
                let q = sample(
                    families,
                    "descheduler_api_request_duration_seconds",
                    &[("verb", "list"), ("quantile", "0.99")],
                );
                assert!(q.value.number.is_nan());
                assert_eq!(q.timestamp, Some(Timestamp::Millis(1_700_000_000_123)));
                let build = sample(families, "descheduler_build_info", &[]);
                assert_eq!(build.label("version"), Some("v0.31.0"));
                assert_eq!(build.value.number, 1.0);
                assert_eq!(
                    family(families, "descheduler_pods_evicted").metric_type,
                    MetricType::Counter
                );
            }
            "rust-prometheus-client-classic.prom" => {
                check_common(
                    families,
                    &Common {
                        evicted: "descheduler_pods_evicted_total",
                        success: "Success",
                        escapes_help: ESCAPED_HELP,
                        le_300: "300",
                    },
                );
                // Exemplars are dropped in the classic format.
                let requested = sample(families, "descheduler_evictions_requested_total", &[]);
                assert_eq!(requested.value.number, 5.0);
                assert!(requested.exemplar.is_none());
                assert_eq!(
                    value(
                        families,
                        "descheduler_strategy_duration_seconds_bucket",
                        &[("strategy", "LowNodeUtilization"), ("le", "5.12")]
                    ),
                    2.0
                );
                let build = sample(families, "descheduler_build_info", &[]);
                assert_eq!(build.label("rustc"), Some("1.95.0"));
                assert_eq!(
                    family(families, "descheduler_build_info").metric_type,
                    MetricType::Gauge
                );
            }
            "rust-prometheus-client-openmetrics.txt" => {
                check_common(
                    families,
                    &Common {
                        evicted: "descheduler_pods_evicted_total",
                        success: "Success",
                        escapes_help: "Label values that need escaping, and UTF-8.",
                        le_300: "300.0",
                    },
                );
                let evicted = family(families, "descheduler_pods_evicted");
                assert_eq!(evicted.metric_type, MetricType::Counter);
                let build = family(families, "descheduler_build");
                assert_eq!(build.metric_type, MetricType::Info);
                assert_eq!(build.samples[0].name, "descheduler_build_info");
                assert_eq!(build.samples[0].label("git_sha"), Some("0123abcd"));
                let loop_family = family(families, "descheduler_loop_duration_seconds");
                assert_eq!(loop_family.unit.as_deref(), Some("seconds"));
                // Exemplars, with the fixed timestamps the generator gave them.
                let inf = sample(
                    families,
                    "descheduler_loop_duration_seconds_bucket",
                    &[("le", "+Inf")],
                );
                let exemplar = inf
                    .exemplar
                    .as_ref()
                    .expect("the +Inf bucket has an exemplar");
                assert_eq!(exemplar.labels[0].value, "4bf92f3577b34da6a3ce929d0e0e4736");
                assert_eq!(exemplar.value.number, 400.0);
                assert_eq!(exemplar.timestamp, Some(1_700_000_000.0));
                let requested = sample(families, "descheduler_evictions_requested_total", &[]);
                let exemplar = requested
                    .exemplar
                    .as_ref()
                    .expect("the counter has an exemplar");
                assert_eq!(exemplar.labels[0].name, "trace_id");
                assert_eq!(exemplar.timestamp, Some(1_700_000_001.0));
                assert_eq!(
                    family(families, "descheduler_api_response_bytes")
                        .unit
                        .as_deref(),
                    Some("bytes")
                );
            }
            "python-generate-latest.prom"
            | "python-write-to-textfile.prom"
            | "python-generate-latest-no-created.prom" => {
                check_common(
                    families,
                    &Common {
                        evicted: "descheduler_pods_evicted_total",
                        success: "success",
                        escapes_help: ESCAPED_HELP,
                        le_300: "300.0",
                    },
                );
                let created = families.iter().any(|f| f.name.ends_with("_created"));
                if name.contains("no-created") {
                    assert!(!created, "{name} has _created series");
                } else {
                    // `_created` is a gauge of its own in the classic format, at the fixed time.
                    let created = family(families, "descheduler_pods_evicted_created");
                    assert_eq!(created.metric_type, MetricType::Gauge);
                    assert_eq!(
                        value(
                            families,
                            "descheduler_pods_evicted_created",
                            &[("node", "node-b")]
                        ),
                        1.7e9
                    );
                }
                // Sample timestamps, in milliseconds.
                let upstream = sample(
                    families,
                    "descheduler_upstream_events_total",
                    &[("source", "kube-apiserver")],
                );
                assert_eq!(
                    upstream.timestamp,
                    Some(Timestamp::Millis(1_700_000_000_500))
                );
                assert_eq!(upstream.value.number, 1234.0);
                assert_eq!(
                    value(
                        families,
                        "descheduler_upstream_events_total",
                        &[("source", "scheduler")]
                    ),
                    5e-7
                );
                // OpenMetrics-only types as classic clients write them.
                assert_eq!(
                    family(families, "descheduler_phase").metric_type,
                    MetricType::Gauge
                );
                assert_eq!(
                    value(
                        families,
                        "descheduler_phase",
                        &[("descheduler_phase", "done")]
                    ),
                    1.0
                );
                assert_eq!(
                    family(families, "descheduler_legacy_score").metric_type,
                    MetricType::Unknown
                );
                assert_eq!(
                    family(families, "descheduler_pending_pods_age_seconds").metric_type,
                    MetricType::Histogram
                );
                assert_eq!(
                    value(families, "descheduler_pending_pods_age_seconds_gsum", &[]),
                    400.5
                );
            }
            "python-openmetrics.txt" | "python-openmetrics-no-created.txt" => {
                check_common(
                    families,
                    &Common {
                        evicted: "descheduler_pods_evicted_total",
                        success: "success",
                        escapes_help: ESCAPED_HELP,
                        le_300: "300.0",
                    },
                );
                let has_created = families
                    .iter()
                    .flat_map(|f| f.samples.iter())
                    .any(|s| s.name.ends_with("_created"));
                assert_eq!(
                    has_created,
                    !name.contains("no-created"),
                    "{name}: _created series"
                );
                if has_created {
                    assert_eq!(
                        value(families, "descheduler_loops_created", &[]),
                        1_700_000_000.0
                    );
                }
                let upstream = sample(
                    families,
                    "descheduler_upstream_events_total",
                    &[("source", "kube-apiserver")],
                );
                assert_eq!(
                    upstream.timestamp,
                    Some(Timestamp::Seconds(1_700_000_000.5))
                );
                assert_eq!(
                    family(families, "descheduler_phase").metric_type,
                    MetricType::StateSet
                );
                assert_eq!(
                    family(families, "descheduler_build").metric_type,
                    MetricType::Info
                );
                assert_eq!(
                    family(families, "descheduler_legacy_score").metric_type,
                    MetricType::Unknown
                );
                let queue = family(families, "descheduler_pending_pods_age_seconds");
                assert_eq!(queue.metric_type, MetricType::GaugeHistogram);
                assert_eq!(
                    value(families, "descheduler_pending_pods_age_seconds_gsum", &[]),
                    400.5
                );
                let response = sample(families, "descheduler_api_response_bytes_total", &[]);
                let exemplar = response
                    .exemplar
                    .as_ref()
                    .expect("the counter has an exemplar");
                assert_eq!(exemplar.labels[0].value, "0af7651916cd43dd8448eb211c80319c");
                assert_eq!(exemplar.value.number, 1.5e9);
                assert_eq!(exemplar.timestamp, Some(1_700_000_000.0));
                assert_eq!(
                    family(families, "descheduler_api_response_bytes")
                        .unit
                        .as_deref(),
                    Some("bytes")
                );
            }
            other => panic!("no known samples for {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, EXPECTED_FIXTURES.len());
}

// ---------------------------------------------------------------------------------------------
// Other parsers.

/// Runs `program args` with `input` on stdin; `None` when the program cannot be started.
fn run(program: &str, args: &[&str], input: &[u8]) -> Option<std::process::Output> {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot start {program}: {e}"),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Write from another thread, so that a program that answers before reading everything
    // cannot deadlock the test.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for the program");
    writer.join().expect("stdin writer");
    Some(output)
}

const PROMTOOL: &str = "promtool";

#[test]
fn promtool_parses_the_classic_rendering_of_every_fixture() {
    // `promtool check metrics` exits 0 when the input is clean, 3 when it parsed but the
    // linter has findings (such as a counter without `_total` or a metric without HELP), and 1
    // when it could not parse the input ("error while linting: text format parsing error ...").
    let mut failures = Vec::new();
    for fixture in fixtures() {
        let exposition = fixture.parse();
        let classic = render_classic(&exposition.families);
        if let Err(e) = parse(classic.as_bytes(), Format::Classic) {
            failures.push(format!(
                "{}: our parser rejects its classic rendering: {e}",
                fixture.name
            ));
        }
        let output =
            run(PROMTOOL, &["check", "metrics"], classic.as_bytes()).unwrap_or_else(|| {
                panic!(
                    "promtool is not installed: install the Debian package prometheus \
                 (apt-get install prometheus), which provides /usr/bin/promtool"
                )
            });
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code();
        let parse_error =
            stderr.contains("error while linting") || stderr.contains("parsing error");
        match code {
            Some(0) | Some(3) if !parse_error => {
                for finding in stderr.lines().filter(|l| !l.trim().is_empty()) {
                    println!("{}: promtool lint: {finding}", fixture.name);
                }
            }
            _ => failures.push(format!(
                "{}: promtool check metrics exited with {code:?}:\n{stderr}\n--- input ---\n{classic}",
                fixture.name
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const PYTHON_OPENMETRICS_PARSER: &str = "\
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
print(len(families), 'families,', sum(len(f.samples) for f in families), 'samples')
";

#[test]
fn python_openmetrics_parser_parses_the_openmetrics_rendering_of_every_fixture() {
    let probe = run("python3", &["-c", "import prometheus_client"], b"").unwrap_or_else(|| {
        panic!(
            "python3 is not installed: it is needed to run prometheus_client's OpenMetrics parser"
        )
    });
    assert!(
        probe.status.success(),
        "python3 cannot import prometheus_client: pip install -r tests/requirements.txt\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let mut failures = Vec::new();
    for fixture in fixtures() {
        let exposition = fixture.parse();
        let openmetrics = render_openmetrics(&exposition.families);
        let ours = parse(openmetrics.as_bytes(), Format::OpenMetrics);
        let output = run(
            "python3",
            &["-c", PYTHON_OPENMETRICS_PARSER],
            openmetrics.as_bytes(),
        )
        .expect("python3 ran a moment ago");
        if let Err(e) = &ours {
            failures.push(format!(
                "{}: our parser rejects its OpenMetrics rendering: {e}\n{openmetrics}",
                fixture.name
            ));
        }
        if output.status.success() {
            println!(
                "{}: prometheus_client parsed {}",
                fixture.name,
                String::from_utf8_lossy(&output.stdout).trim()
            );
        } else {
            failures.push(format!(
                "{}: prometheus_client's OpenMetrics parser failed:\n{}\n--- input ---\n{openmetrics}",
                fixture.name,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The classic format has no `_created` samples, so the Python client writes them as gauges of
/// their own (`x_created` beside the counter `x_total`). In OpenMetrics they belong to the
/// counter family `x`, and a separate family `x_created` would clash with it (conformance case
/// `bad_clashing_names_2`): `render_openmetrics` folds them into their owner.
#[test]
fn classic_created_gauges_are_folded_into_their_family_in_openmetrics() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name == "python-generate-latest.prom")
        .expect("the python-generate-latest.prom fixture");
    let exposition = fixture.parse();
    let classic = render_classic(&exposition.families);
    assert!(classic.contains("# TYPE descheduler_pods_evicted_created gauge\n"));
    let openmetrics = render_openmetrics(&exposition.families);
    assert!(
        !openmetrics.contains("# TYPE descheduler_pods_evicted_created"),
        "{openmetrics}"
    );
    let reparsed = parse(openmetrics.as_bytes(), Format::OpenMetrics)
        .unwrap_or_else(|e| panic!("the OpenMetrics rendering does not parse: {e}\n{openmetrics}"));
    let counter = reparsed
        .families
        .iter()
        .find(|f| f.name == "descheduler_pods_evicted")
        .expect("the counter family");
    let created = counter
        .samples
        .iter()
        .filter(|s| s.name == "descheduler_pods_evicted_created")
        .count();
    let totals = counter
        .samples
        .iter()
        .filter(|s| s.name == "descheduler_pods_evicted_total")
        .count();
    assert!(totals > 0);
    assert_eq!(created, totals, "one _created per series:\n{openmetrics}");
}
