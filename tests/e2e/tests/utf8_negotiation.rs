//! Issue 13's differential test: random files written by Python prometheus_client 0.26 with
//! UTF-8 metric and label names (`escaping=allow-utf-8`), served by the real promdrop-exporter
//! binary and fetched with each `Accept` variant (classic 0.0.4; classic 1.0.0 and OpenMetrics
//! 1.0.0 with each escaping scheme), give exactly the samples (names, labels, values) that
//! prometheus_client's own encoder writes for that variant of the same registry
//! (`generate_latest(registry, escaping=...)`, and the OpenMetrics encoder with
//! `allow-utf-8`; see the test for why escaped OpenMetrics is compared with the classic
//! encoder's names). `tests/e2e/python/utf8_variants.py` is prometheus_client's side; it builds the
//! registries of `crates/textformat/tests/python/utf8_names.py`. Both sides' texts are read
//! with promdrop's parser, which reads prometheus_client's allow-utf-8 output to the samples
//! prometheus_client's own parsers read (`crates/textformat/tests/utf8_names.rs`); its classic
//! parser refuses some escaped output (a label escaped to a name starting with `__`). Only
//! sample lines are compared (see `samples_of`).
//!
//! The test fails, and does not skip, when python3 or prometheus_client is missing.

#![allow(dead_code)] // the shared helpers' other parts serve the textformat tests

use std::time::Duration;

use promdrop_e2e::{Exporter, poll, require_python_prometheus_client, workspace_root};
use promdrop_textformat::{Format, parse};
use serde_json::Value as Json;

#[path = "../../../crates/textformat/tests/common/mod.rs"]
mod common;
use common::{our_samples, python3, same_samples};

/// The samples of `text`, the exporter's own families (`promdrop_*`, `process_*`) left out,
/// bucket bounds in Go's float form.
///
/// Escaping can make a label name starting with `__` (`-x` under `underscores`, `_x` under
/// `dots`), which both prometheus_client and the exporter write and which the classic parser
/// refuses as reserved: such names are read as `R__...` (on both sides alike, label values
/// included, so the comparison stays exact).
fn samples_of(text: &str, what: &str) -> Vec<(String, f64)> {
    let text = text.replace("{__", "{R__").replace(",__", ",R__");
    // Only the sample lines, read as untyped classic samples: prometheus_client's escaped
    // OpenMetrics output is not always valid OpenMetrics (escaping a family's name and its
    // samples' names apart can split a family), and samples are what is compared.
    let lines: String = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .flat_map(|l| [l, "\n"])
        .collect();
    let exposition =
        parse(lines.as_bytes(), Format::Classic).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    let mut families = exposition.families;
    // `le` and `quantile` as node_exporter serves them (`1.0` is `1`), as the exporter does
    // on purpose (docs/OPERATIONS.md, Merging), also where escaping under `dots` makes a bucket
    // a family of its own (`m_bucket` is `m__bucket`, of no histogram `m`).
    for sample in families.iter_mut().flat_map(|f| f.samples.iter_mut()) {
        for label in &mut sample.labels {
            if label.name == "le" || label.name == "quantile" {
                let value = match label.value.as_ref() {
                    "+Inf" | "+inf" | "Inf" | "inf" => f64::INFINITY,
                    v => v.parse::<f64>().unwrap_or(f64::NAN),
                };
                let mut go = String::new();
                promdrop_textformat::format_go_float(value, &mut go);
                label.value = go.into();
            }
        }
    }
    families.retain(|f| !f.name.starts_with("promdrop_") && !f.name.starts_with("process_"));
    our_samples(&families)
}

/// Accept headers and the prometheus_client variant each must give.
fn variants() -> Vec<(String, &'static str, &'static str)> {
    let mut out = vec![(
        "text/plain;version=0.0.4".to_string(),
        "classic",
        "underscores",
    )];
    for scheme in ["allow-utf-8", "underscores", "dots", "values"] {
        out.push((
            format!("text/plain;version=1.0.0;escaping={scheme}"),
            "classic",
            scheme,
        ));
        out.push((
            format!("application/openmetrics-text;version=1.0.0;escaping={scheme}"),
            "openmetrics",
            scheme,
        ));
    }
    out
}

#[test]
fn every_accept_variant_gives_prometheus_clients_samples_for_it() {
    require_python_prometheus_client();
    let exporter_binary = promdrop_test_support::binaries::exporter()
        .unwrap_or_else(|e| panic!("the exporter binary: {e:#}"));
    let script = workspace_root().join("tests/e2e/python/utf8_variants.py");
    let script = script.to_string_lossy();
    for seed in 1..=4 {
        let seed_arg = seed.to_string();
        let written: Json =
            serde_json::from_str(&python3(&[script.as_ref(), &seed_arg, "25"], b""))
                .expect("the script prints JSON");
        // The registry written by each encoder, each served by an exporter of its own (the two
        // files hold the same series).
        for key in ["classic", "openmetrics"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = written[format!("{key}_file")].as_str().expect("the file");
            std::fs::write(dir.path().join("registry.prom"), file).expect("write the file");
            let exporter = Exporter::start(
                &exporter_binary,
                &[format!("--textfile.directory={}", dir.path().display())],
            );
            poll("the file to be served", Duration::from_secs(30), || {
                let body = exporter.metrics();
                if body.contains("promdrop_files{state=\"fresh\"} 1") {
                    Ok(())
                } else {
                    Err(body)
                }
            });
            let mut checked = 0;
            for (accept, format, scheme) in variants() {
                if format != key {
                    continue;
                }
                let response = exporter.get("/metrics", &[("Accept", accept.as_str())]);
                assert_eq!(response.status, 200, "{accept}");
                let content_type = response.header("content-type").unwrap_or("");
                assert!(
                    content_type.ends_with(&format!("; escaping={scheme}")),
                    "seed {seed}, {accept}: Content-Type {content_type}"
                );
                let served = response.text();
                assert!(
                    !served
                        .contains("promdrop_escaping_conflicts_total{escaping=\"underscores\"} 1"),
                    "seed {seed}: names collided once escaped; the random names must not"
                );
                // prometheus_client 0.26's OpenMetrics encoder escapes sample names with the
                // label-name rules and no legacy check (`a:b` is `a_b`, and every name gets
                // `U__` under values, legacy ones too), unlike its classic encoder, its own
                // `escape_metric_name` and Go's expfmt; the exporter keeps legacy names as they
                // are in both formats (node_exporter parity). So an escaped OpenMetrics variant
                // is compared with the names prometheus_client's classic encoder gives with the
                // same escaping (its samples are the same series: the registry is the same).
                let oracle = if format == "openmetrics" && scheme != "allow-utf-8" {
                    "classic"
                } else {
                    format
                };
                let expected = written[oracle][scheme].as_str().expect("the variant");
                let ours = samples_of(&served, &format!("seed {seed}, served for {accept}"));
                let theirs = samples_of(
                    expected,
                    &format!("seed {seed}, prometheus_client {format} {scheme}"),
                );
                assert!(!theirs.is_empty());
                if !same_samples(&ours, &theirs) {
                    let only_ours: Vec<_> = ours.iter().filter(|s| !theirs.contains(s)).collect();
                    let only_theirs: Vec<_> = theirs.iter().filter(|s| !ours.contains(s)).collect();
                    panic!(
                        "seed {seed}, {key} file fetched with {accept}: samples differ from prometheus_client's {format} encoder with escaping={scheme}\nonly served: {only_ours:?}\nonly prometheus_client: {only_theirs:?}\nserved:\n{served}\nprometheus_client:\n{expected}"
                    );
                }
                checked += 1;
            }
            assert!(checked >= 4, "{key}: {checked} variants");
        }
    }
}

/// `--compat.node-exporter` behaves as node_exporter after its pull request #3729: a textfile
/// with UTF-8 names is read (no `node_textfile_scrape_error`), and served through promhttp's
/// negotiation: escaped for a scraper that does not ask for UTF-8 names (Prometheus 2's
/// `Accept`), as written for one that does.
#[test]
fn compat_node_exporter_reads_utf8_names_and_negotiates_them() {
    let exporter_binary = promdrop_test_support::binaries::exporter()
        .unwrap_or_else(|e| panic!("the exporter binary: {e:#}"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("otel.prom"),
        "# HELP \"http.server.active_requests\" Active requests.\n# TYPE \"http.server.active_requests\" gauge\n{\"http.server.active_requests\",\"http.request.method\"=\"GET\"} 4\n",
    )
    .expect("write the file");
    let exporter = Exporter::start(
        &exporter_binary,
        &[
            format!("--textfile.directory={}", dir.path().display()),
            "--compat.node-exporter".to_string(),
        ],
    );
    let prometheus_2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let escaped = poll("the file to be served", Duration::from_secs(30), || {
        let response = exporter.get("/metrics", &[("Accept", prometheus_2)]);
        let body = response.text();
        if body.contains("http_server_active_requests{http_request_method=\"GET\"} 4\n") {
            Ok(response)
        } else {
            Err(body)
        }
    });
    assert_eq!(
        escaped.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores")
    );
    let body = escaped.text();
    assert!(body.contains("node_textfile_scrape_error 0\n"), "{body}");
    assert!(!body.contains("http.server"), "{body}");
    let utf8 = exporter.get(
        "/metrics",
        &[("Accept", "text/plain;version=1.0.0;escaping=allow-utf-8")],
    );
    assert_eq!(
        utf8.header("content-type"),
        Some("text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8")
    );
    let body = utf8.text();
    assert!(
        body.contains(
            "# TYPE \"http.server.active_requests\" gauge\n{\"http.server.active_requests\",\"http.request.method\"=\"GET\"} 4\n"
        ),
        "{body}"
    );
    assert!(body.contains("node_textfile_scrape_error 0\n"), "{body}");
}
