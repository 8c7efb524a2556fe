//! Golden files for merging and conflicts: `tests/fixtures/exporter/<case>/input/*.prom` and
//! the exact classic body served for them in `expected.prom` (without the build info line,
//! which changes with every release, and process metrics, which are per scrape).
//!
//! Regenerate every expected.prom after a deliberate change, then review the diff:
//!
//!     UPDATE_GOLDEN=1 cargo test -p promdrop-exporter --test golden
//!
//! Files are merged in name order; the first file's modification time is 1700000000 and each
//! next file is one second newer, so a duplicate series is served from the later file unless
//! a writer header says otherwise. The `file` label is `input/<name>`. An optional `flags`
//! file holds command-line flags for the case (one per line), such as `--source-label=src`.
//!
//! Every body must be accepted by the real `promtool check metrics` (Debian package
//! `prometheus`), which reads it with Prometheus's own text parser: a TYPE or HELP line given
//! twice for one name, which merging files can produce, fails there. Its linter's findings
//! (exit code 3: a family without HELP, a counter without `_total`) are printed, not failures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use promdrop_exporter::Config;
use promdrop_exporter::engine::Settings;
use promdrop_exporter::exposition::{Counters, render_classic_body};
use promdrop_test_support::peers::promtool_check_metrics;
use promdrop_textfile::discovery::FileIdentity;
use promdrop_textfile::snapshot::parse_bytes;
use promdrop_textfile::staleness::{FileState, FileView, Timing};

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/exporter")
}

/// The body the exporter serves for one case's inputs.
fn render_case(case: &Path) -> String {
    let mut args = vec!["promdrop-exporter".to_string()];
    if let Ok(flags) = std::fs::read_to_string(case.join("flags")) {
        args.extend(
            flags
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    let config =
        Config::from_args(&args).unwrap_or_else(|e| panic!("{}: flags: {e}", case.display()));
    let settings = Settings::from_config(&config);
    let mut names: Vec<String> = std::fs::read_dir(case.join("input"))
        .unwrap_or_else(|e| panic!("{}/input: {e}", case.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prom"))
        .collect();
    names.sort();
    let views: Vec<FileView> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let bytes = std::fs::read(case.join("input").join(name)).unwrap();
            let identity = FileIdentity {
                dev: 1,
                ino: i as u64 + 1,
                size: bytes.len() as u64,
                mtime_ns: (1_700_000_000 + i as i128) * 1_000_000_000,
            };
            let snapshot = parse_bytes(
                PathBuf::from("input").join(name),
                identity,
                Bytes::from(bytes),
                &settings.read,
            );
            let timing = Timing::of(&snapshot, &settings.policy);
            FileView {
                snapshot: Arc::new(snapshot),
                timing,
                state: FileState::Fresh,
            }
        })
        .collect();
    let body = render_classic_body(&views, &settings.exposition, &mut Counters::default());
    body.lines()
        .filter(|l| !l.starts_with("promdrop_build_info{"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn every_case_matches_its_expected_exposition() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/fixtures/exporter")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "expected the golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let actual = render_case(case);
        // What is served must parse (and is classic text 0.0.4).
        if let Err(e) =
            promdrop_textformat::parse(actual.as_bytes(), promdrop_textformat::Format::Classic)
        {
            failures.push(format!(
                "{}: the output does not parse: {e}\n{actual}",
                case.display()
            ));
        }
        let expected_path = case.join("expected.prom");
        let expected = if update {
            std::fs::write(&expected_path, &actual).unwrap();
            Some(actual.clone())
        } else {
            match std::fs::read_to_string(&expected_path) {
                Ok(expected) => Some(expected),
                Err(e) => {
                    failures.push(format!(
                        "{}: {e} (regenerate with UPDATE_GOLDEN=1 cargo test -p promdrop-exporter --test golden)",
                        expected_path.display()
                    ));
                    None
                }
            }
        };
        let Some(expected) = expected else {
            continue;
        };
        if expected != actual {
            failures.push(format!(
                "{}: output differs from expected.prom\n--- expected ---\n{expected}--- actual ---\n{actual}",
                case.display()
            ));
        }
        // Prometheus's own text parser must take every expected.prom.
        match promtool_check_metrics(&expected) {
            Ok(findings) => {
                for finding in findings {
                    println!("{}: promtool lint: {finding}", case.display());
                }
            }
            Err(e) => failures.push(format!(
                "{}: promtool check metrics refuses expected.prom: {e}\n{expected}",
                case.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
