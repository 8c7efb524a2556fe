//! Parity with node_exporter 1.5's textfile collector on the whole corpus of the repository:
//! every fixture of the textformat and exporter tests and every example file, one file at a
//! time in one directory served by both `/usr/bin/prometheus-node-exporter` and
//! `promdrop-exporter`.
//!
//! - Verdicts: node_exporter's live verdict (accept, reject, crash) equals the one recorded in
//!   `tests/fixtures/classic/<case>/node_exporter`, and promdrop-exporter refuses exactly what
//!   node_exporter refuses, except the cases that `parser_differs` documents (promdrop is
//!   stricter there, or reads the quoted UTF-8 names node_exporter 1.5 refuses) and the
//!   verdicts listed in [`KNOWN_DIFFERENCES`].
//! - Samples: for every file both accept, the samples are the same (name, labels without the
//!   empty ones, value with NaN equal to NaN), apart from each exporter's own metrics, except
//!   the differences listed, exactly, in [`KNOWN_DIFFERENCES`].
//!
//! crates/exporter/tests/peers.rs compares the classic cases node_exporter accepts and the
//! example files, skipping the histogram and summary samples of the cases node_exporter
//! re-encodes. This test covers the rest of the corpus (client-library output, the exporter's
//! golden inputs, rejected and crashing cases) and compares every sample, histogram parts
//! included, so that each re-encoding is written down below.
//!
//! Needs `/usr/bin/prometheus-node-exporter` (Debian package `prometheus-node-exporter`); fails,
//! and does not skip, without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use promdrop_e2e::samples::SampleSet;
use promdrop_e2e::{Exporter, NodeExporter, binaries, http, poll, workspace_root};
use promdrop_textformat::Format;

const WAIT: Duration = Duration::from_secs(10);

/// A difference between what node_exporter and promdrop-exporter serve for one file of the
/// corpus that both accept, or between their verdicts on it.
struct KnownDifference {
    /// The corpus file: `classic/<case>`, `clients/<file>`, `exporter/<case>/<file>` or
    /// `examples/<file>`.
    case: &'static str,
    /// Every difference, exactly as the test prints it: `node only: S`, `promdrop only: S`,
    /// `value: S <promdrop> vs <node>`, or `verdict: ...`.
    diff: &'static [&'static str],
    /// Another exact set of differences that may come instead, where node_exporter's own
    /// output varies from run to run.
    or_diff: Option<&'static [&'static str]>,
    /// Why.
    reason: &'static str,
}

/// Every difference there is. The test fails when one is missing from this table, and when
/// one listed here no longer happens.
const KNOWN_DIFFERENCES: &[KnownDifference] = &[
    KnownDifference {
        case: "classic/histogram_samples_before_type",
        diff: &["promdrop only: h_sum 3"],
        or_diff: Some(&[
            "promdrop only: h_bucket{le=\"1\"} 1",
            "value: h_bucket{le=\"+Inf\"} 2 vs 0",
            "value: h_count 1 vs 0",
        ]),
        reason: "h_bucket and h_count come before `# TYPE h histogram`, so they are untyped \
                 families of their own and the histogram h holds only h_sum. node_exporter's \
                 registry then finds the histogram h colliding with the untyped h_count \
                 (\"collected histogram or summary named h collides with previously collected \
                 metric named h_count\", logged), with scrape_error still 0, and which one it \
                 keeps depends on Go's map order: it drops h whole, or it drops the untyped \
                 families and serves h re-encoded (zero counts). promdrop serves the file as \
                 parsed",
    },
    KnownDifference {
        case: "exporter/own_families_shared/c.prom",
        diff: &["node only: promdrop_reloads_created{job_name=\"om\",result=\"success\"} 1.7e+09"],
        or_diff: None,
        reason: "promdrop_reloads is one of promdrop-exporter's own counters: the file's series \
                 are served in its block, which has no _created samples, so the file's \
                 _created sample is dropped (counted as kind=\"reserved\"); node_exporter \
                 serves it as a family of its own",
    },
    KnownDifference {
        case: "exporter/info_vs_gauge_info/b.prom",
        diff: &["verdict: node_exporter Reject, promdrop Accept"],
        or_diff: None,
        reason: "an OpenMetrics file with an info family (`# TYPE foo info`): node_exporter 1.5 \
                 reads every file as the classic format, which has no type info, and refuses \
                 it; promdrop reads OpenMetrics",
    },
    KnownDifference {
        case: "exporter/reserved_name_openmetrics/a.prom",
        diff: &["verdict: node_exporter Reject, promdrop Accept"],
        or_diff: None,
        reason: "an OpenMetrics file with an info family: node_exporter 1.5's text parser \
                 refuses it (unknown metric type info); promdrop reads OpenMetrics \
                 (the info promdrop_build, served as promdrop_build_info, is one of the \
                 exporter's own families of another type: dropped, kind=\"reserved\")",
    },
    KnownDifference {
        case: "classic/summary_bucket_is_another_family",
        diff: &["node only: s_count 0", "node only: s_sum 0"],
        or_diff: None,
        reason: "node_exporter re-encodes a summary through client_golang, which always \
                 writes _sum and _count (0 when the file has none); promdrop serves the \
                 samples the file has",
    },
    KnownDifference {
        case: "classic/summary_count_not_an_integer",
        diff: &["value: s_count 1.5 vs 1"],
        or_diff: None,
        reason: "client_golang keeps a summary's count as an unsigned integer: node_exporter \
                 truncates 1.5 to 1; promdrop serves the value written",
    },
    KnownDifference {
        case: "classic/type_uppercase",
        diff: &["node only: c_sum 0"],
        or_diff: None,
        reason: "the histogram c has only c_count 0: client_golang's encoding adds a zero \
                 _sum (both add the +Inf bucket valued with the _count)",
    },
];

/// What an exporter does with one file alone in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Reject,
    Crash,
}

impl Verdict {
    fn recorded(text: &str) -> Verdict {
        match text.trim() {
            "accept" => Verdict::Accept,
            "reject" => Verdict::Reject,
            "crash" => Verdict::Crash,
            other => panic!("unknown recorded verdict {other:?}"),
        }
    }
}

/// One file of the corpus.
struct Case {
    id: String,
    bytes: Vec<u8>,
    /// node_exporter's verdict recorded next to a classic case.
    recorded: Option<Verdict>,
    /// Why the parser deliberately disagrees with node_exporter, for classic cases that say so.
    parser_differs: Option<String>,
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

fn is_prom(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "prom")
}

/// The corpus: every classic case, the client-library files, the exporter's golden inputs and
/// the example files.
fn corpus() -> Vec<Case> {
    let root = workspace_root();
    let mut cases = Vec::new();
    for dir in sorted_entries(&root.join("tests/fixtures/classic")) {
        let input = dir.join("input.prom");
        if !input.is_file() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let recorded = std::fs::read_to_string(dir.join("node_exporter"))
            .unwrap_or_else(|e| panic!("{}/node_exporter: {e}", dir.display()));
        cases.push(Case {
            id: format!("classic/{name}"),
            bytes: std::fs::read(&input).unwrap(),
            recorded: Some(Verdict::recorded(&recorded)),
            parser_differs: std::fs::read_to_string(dir.join("parser_differs")).ok(),
        });
    }
    let mut add = |id: String, path: &Path| {
        cases.push(Case {
            id,
            bytes: std::fs::read(path).unwrap(),
            recorded: None,
            parser_differs: None,
        });
    };
    for path in sorted_entries(&root.join("tests/fixtures/clients")) {
        if is_prom(&path) {
            add(
                format!("clients/{}", path.file_name().unwrap().to_string_lossy()),
                &path,
            );
        }
    }
    for case in sorted_entries(&root.join("tests/fixtures/exporter")) {
        if !case.join("input").is_dir() {
            continue;
        }
        for path in sorted_entries(&case.join("input")) {
            if is_prom(&path) {
                add(
                    format!(
                        "exporter/{}/{}",
                        case.file_name().unwrap().to_string_lossy(),
                        path.file_name().unwrap().to_string_lossy()
                    ),
                    &path,
                );
            }
        }
    }
    for path in sorted_entries(&root.join("examples/textfiles")) {
        if is_prom(&path) {
            add(
                format!("examples/{}", path.file_name().unwrap().to_string_lossy()),
                &path,
            );
        }
    }
    cases
}

/// Each exporter's own metrics, left out of the comparison: node_exporter's (`node_*`, Go
/// runtime, process, promhttp) and promdrop-exporter's (its table of own metrics,
/// crates/exporter/own-metrics.txt). The job outcome metrics that files carry
/// (`promdrop_job_*`) are compared.
fn is_own_metric(name: &str) -> bool {
    const PREFIXES: &[&str] = &["node_", "go_", "process_", "promhttp_"];
    const OWN: &str = include_str!("../../../crates/exporter/own-metrics.txt");
    PREFIXES.iter().any(|p| name.starts_with(p))
        || OWN
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .any(|own| own == name)
}

/// The value of `name{file="<path>"}` in a classic body.
fn file_metric(body: &str, name: &str, path: &Path) -> Option<f64> {
    let prefix = format!("{name}{{file={:?}}} ", path.display().to_string());
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[test]
fn node_exporter_and_promdrop_serve_the_same_samples_for_the_whole_corpus() {
    binaries();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut node = NodeExporter::start(dir);
    let exporter = Exporter::start(
        &binaries().exporter,
        &[
            format!("--textfile.directory={}", dir.display()),
            "--rescan-interval=1s".into(),
        ],
    );

    let cases = corpus();
    let known: BTreeMap<&str, &KnownDifference> =
        KNOWN_DIFFERENCES.iter().map(|k| (k.case, k)).collect();
    assert_eq!(known.len(), KNOWN_DIFFERENCES.len(), "a case listed twice");
    let ids: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    for k in KNOWN_DIFFERENCES {
        assert!(
            ids.contains(k.case),
            "KNOWN_DIFFERENCES lists {}, which is not in the corpus",
            k.case
        );
    }

    let mut failures = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut compared_samples = 0;
    let mut node_restarts = 0;
    for (index, case) in cases.iter().enumerate() {
        let file = format!("{index:03}-{}.prom", case.id.replace('/', "__"));
        let path = dir.join(&file);
        let tmp_path = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp_path, &case.bytes).unwrap();
        std::fs::rename(&tmp_path, &path).unwrap();

        // promdrop-exporter's verdict, once it serves this file and only this one.
        let ours = poll(
            &format!("{}: promdrop-exporter to read it", case.id),
            WAIT,
            || {
                let body = exporter.metrics();
                let bytes = file_metric(&body, "promdrop_file_bytes", &path);
                let files = body
                    .lines()
                    .filter(|l| l.starts_with("promdrop_file_bytes{"))
                    .count();
                if bytes == Some(case.bytes.len() as f64) && files == 1 {
                    Ok(body)
                } else {
                    Err(format!("/metrics:\n{body}"))
                }
            },
        );
        let ours_verdict = match file_metric(&ours, "promdrop_file_error", &path) {
            Some(0.0) => Verdict::Accept,
            Some(1.0) => Verdict::Reject,
            other => panic!("{}: promdrop_file_error is {other:?}:\n{ours}", case.id),
        };

        // node_exporter's, unless it is known to crash on this file.
        let mut theirs = String::new();
        let node_verdict = if case.recorded == Some(Verdict::Crash) {
            Verdict::Crash
        } else {
            match node.metrics() {
                Ok(body) if body.contains("\nnode_textfile_scrape_error 0\n") => {
                    theirs = body;
                    Verdict::Accept
                }
                Ok(body) if body.contains("\nnode_textfile_scrape_error 1\n") => Verdict::Reject,
                Ok(body) => panic!("{}: no node_textfile_scrape_error:\n{body}", case.id),
                Err(e) => {
                    assert!(
                        node.process.try_status().is_some(),
                        "{}: node_exporter fails without exiting: {e}",
                        case.id
                    );
                    node_restarts += 1;
                    std::fs::remove_file(&path).unwrap();
                    node = NodeExporter::start(dir);
                    Verdict::Crash
                }
            }
        };
        if let Some(recorded) = case.recorded
            && recorded != node_verdict
        {
            failures.push(format!(
                "{}: node_exporter's verdict is {node_verdict:?}, {recorded:?} recorded",
                case.id
            ));
        }
        *counts
            .entry(match (node_verdict, ours_verdict) {
                (Verdict::Accept, Verdict::Accept) => "both accept",
                (Verdict::Accept, _) => "node accepts, promdrop rejects",
                (_, Verdict::Accept) => "node rejects or crashes, promdrop accepts",
                (Verdict::Reject, _) => "both reject",
                (Verdict::Crash, _) => "node crashes, promdrop rejects",
            })
            .or_default() += 1;

        // What differs, as the table writes it.
        let mut diff = Vec::new();
        let node_rejects = node_verdict != Verdict::Accept;
        let ours_rejects = ours_verdict != Verdict::Accept;
        // `parser_differs` documents a deliberate difference in verdict, either way: promdrop
        // stricter, or reading what node_exporter 1.5 cannot (quoted UTF-8 names). (The
        // exporter may still refuse such a file for another reason: client timestamps.)
        let documented = case.parser_differs.is_some();
        if node_rejects != ours_rejects && !documented {
            diff.push(format!(
                "verdict: node_exporter {node_verdict:?}, promdrop {ours_verdict:?}"
            ));
        }
        if documented && !node_rejects && !ours_rejects {
            failures.push(format!(
                "{}: parser_differs says promdrop refuses it, but promdrop-exporter serves it",
                case.id
            ));
        }
        if !node_rejects && !ours_rejects {
            let response = http::get(&node.address, "/metrics", &[]).unwrap();
            assert!(
                response
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
                "node_exporter serves the classic format"
            );
            let a = SampleSet::parse(ours.as_bytes(), Format::Classic, |n| !is_own_metric(n))
                .unwrap_or_else(|e| panic!("{}: promdrop's body: {e}\n{ours}", case.id));
            let b = SampleSet::parse(theirs.as_bytes(), Format::Classic, |n| !is_own_metric(n))
                .unwrap_or_else(|e| panic!("{}: node_exporter's body: {e}\n{theirs}", case.id));
            compared_samples += a.len().max(b.len());
            diff.extend(a.diff(&b, "promdrop", "node"));
        }
        let expected: Vec<String> = known
            .get(case.id.as_str())
            .map(|k| k.diff.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let alternative: Option<Vec<String>> = known
            .get(case.id.as_str())
            .and_then(|k| k.or_diff)
            .map(|d| d.iter().map(|s| s.to_string()).collect());
        let as_documented = diff == expected || alternative.as_ref() == Some(&diff);
        if let Some(k) = known.get(case.id.as_str())
            && as_documented
        {
            println!(
                "documented: {}: {}\n  {}",
                k.case,
                diff.join("; "),
                k.reason
            );
        }
        if !as_documented {
            failures.push(format!(
                "{}: the differences are not the documented ones\n  found:\n    {}\n  documented:\n    {}",
                case.id,
                diff.join("\n    "),
                expected.join("\n    ")
            ));
        }
        if path.exists() {
            std::fs::remove_file(&path).unwrap();
        }
    }

    println!(
        "{} files compared with node_exporter 1.5 in {:.1} s: {counts:?}; {compared_samples} samples compared; {} documented differences; node_exporter restarted {node_restarts} times",
        cases.len(),
        started.elapsed().as_secs_f64(),
        KNOWN_DIFFERENCES.len()
    );
    for source in ["classic/", "clients/", "exporter/", "examples/"] {
        assert!(
            cases.iter().filter(|c| c.id.starts_with(source)).count() >= 3,
            "too few {source} files in the corpus"
        );
    }
    assert!(
        counts.get("both accept").copied().unwrap_or(0) >= 60,
        "too few files compared sample by sample: {counts:?}"
    );
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
