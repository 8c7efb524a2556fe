//! End to end through a real Prometheus 2.42: jobs written by every path promdrop supports (the
//! Rust writer, `promdrop write` from a shell, Python's `write_to_textfile`) reach Prometheus's
//! query API with their values and labels, over the OpenMetrics+gzip scrape Prometheus
//! negotiates; and stale and expired files leave Prometheus while the meta metrics say why.
//!
//! Needs `/usr/bin/prometheus` (Debian package `prometheus`) and python3 with prometheus_client
//! (`pip install -r tests/requirements.txt`); fails, and does not skip, without them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use promdrop_e2e::{
    Exporter, PROMETHEUS_ACCEPT, Prometheus, QuerySample, RecordingProxy, ScrapeTarget, binaries,
    http, lines, poll, require_python_prometheus_client, run_with_stdin, unix_now,
};
use promdrop_textformat::{Format, parse};

/// How long Prometheus may take to show what a job wrote.
const DEADLINE: Duration = Duration::from_secs(30);

/// Prometheus's own labels on every scraped series, left out when comparing.
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn dir_arg(dir: &Path) -> String {
    format!("--textfile.directory={}", dir.display())
}

/// Runs the writer's example job; returns its exit code.
fn batch_job(dir: &Path, job: &str, extra: &[&str]) -> i32 {
    let output = Command::new(&binaries().batch_job)
        .args(["--dir", &dir.display().to_string(), "--job", job])
        .args(extra)
        .output()
        .expect("running batch_job");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("started"),
        "batch_job {job}: {output:?}"
    );
    output.status.code().unwrap_or(-1)
}

/// Waits until the instant query `expr` returns exactly `expected` (as sorted
/// `name{labels} value` lines, without `job` and `instance`), and returns the samples.
fn wait_for_exactly(
    prometheus: &Prometheus,
    what: &str,
    expr: &str,
    expected: &[&str],
) -> Vec<QuerySample> {
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    poll(what, DEADLINE, || {
        let result = prometheus.query(expr)?;
        let got = lines(&result, TARGET_LABELS);
        if got == expected {
            Ok(result)
        } else {
            let got_set: BTreeSet<&String> = got.iter().collect();
            let want_set: BTreeSet<&String> = expected.iter().collect();
            Err(format!(
                "query: {expr}\nPrometheus has:\n  {}\nmissing:\n  {}\nunexpected:\n  {}\ntargets: {}",
                got.join("\n  "),
                want_set
                    .difference(&got_set)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  "),
                got_set
                    .difference(&want_set)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  "),
                prometheus.target_summary()
            ))
        }
    })
}

const PYTHON_JOB: &str = r#"
import sys
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile
registry = CollectorRegistry()
rows = Gauge("etl_rows_processed", "Rows processed by the last run.", ["table"], registry=registry)
rows.labels("orders").set(1234)
rows.labels("customers").set(56.5)
runs = Counter("etl_batches", "Batches processed.", registry=registry)
runs.inc(3)
latency = Histogram("etl_batch_seconds", "Batch duration.", buckets=[0.5, 2.0], registry=registry)
latency.observe(0.25)
latency.observe(1.0)
latency.observe(7.0)
write_to_textfile(sys.argv[1], registry)
"#;

/// The example job (success and `--fail`), `promdrop write` fed by a pipe and a Python job
/// all end up in Prometheus with the values and labels they wrote, job outcome metrics
/// included; and the scrape that brought them was OpenMetrics, gzipped.
#[test]
fn every_kind_of_job_reaches_prometheus_with_its_values_and_labels() {
    require_python_prometheus_client();
    binaries(); // built before the clock starts: the figures are the test's own
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exporter = Exporter::start(&binaries().exporter, &[dir_arg(dir)]);
    let proxy = RecordingProxy::start(&exporter.address);
    let prometheus = Prometheus::start(&[
        ScrapeTarget::new("promdrop", &exporter.address),
        ScrapeTarget::new("promdrop-recorded", &proxy.address),
    ]);
    prometheus.wait_for_query("both targets up", "up == 1", DEADLINE, |r| r.len() == 2);

    // The jobs, as a cluster would run them.
    let t_jobs = unix_now();
    assert_eq!(batch_job(dir, "descheduler", &[]), 0);
    assert_eq!(batch_job(dir, "descheduler-failing", &["--fail"]), 1);
    let (code, output) = run_with_stdin(
        &binaries().promdrop,
        &[
            "write",
            "--dir",
            &dir.display().to_string(),
            "--job",
            "db-backup",
            "--label",
            "tier=nightly",
        ],
        b"# HELP backup_bytes Size of the last backup.\n# TYPE backup_bytes gauge\n\
          backup_bytes 7300000000\n\
          # TYPE backup_files_total counter\nbackup_files_total{kind=\"table\"} 12\n\
          backup_files_total{kind=\"index\"} 3\n",
    );
    assert_eq!(code, 0, "promdrop write: {output}");
    let etl = dir.join("etl.prom");
    let (code, output) = run_with_stdin(
        Path::new("python3"),
        &["-c", PYTHON_JOB, &etl.display().to_string()],
        b"",
    );
    assert_eq!(code, 0, "the Python job: {output}");
    let t_written = unix_now();

    // The job outcome metrics of the Rust job and its failing twin.
    let outcome = wait_for_exactly(
        &prometheus,
        "the job outcome metrics",
        r#"{job="promdrop", __name__=~"promdrop_job_(success|running|exit_reason)"}"#,
        &[
            r#"promdrop_job_success{job_name="descheduler"} 1"#,
            r#"promdrop_job_success{job_name="descheduler-failing"} 0"#,
            r#"promdrop_job_running{job_name="descheduler"} 0"#,
            r#"promdrop_job_running{job_name="descheduler-failing"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler",reason="success"} 1"#,
            r#"promdrop_job_exit_reason{job_name="descheduler",reason="error"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler",reason="panic"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler",reason="signal"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler",reason="unfinished"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler-failing",reason="success"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler-failing",reason="error"} 1"#,
            r#"promdrop_job_exit_reason{job_name="descheduler-failing",reason="panic"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler-failing",reason="signal"} 0"#,
            r#"promdrop_job_exit_reason{job_name="descheduler-failing",reason="unfinished"} 0"#,
        ],
    );
    let visible_after = unix_now() - t_written;
    assert_eq!(outcome.len(), 14);

    // Timestamps: written by this run, and a last success only for the job that succeeded.
    let stamps = prometheus
        .query(r#"{job="promdrop", __name__=~"promdrop_job_.*_timestamp_seconds"}"#)
        .unwrap();
    let mut seen = Vec::new();
    for s in &stamps {
        assert!(
            s.value >= t_jobs - 1.0 && s.value <= t_written + 1.0,
            "{} is not the time of this run ({t_jobs}..{t_written})",
            s.line_without(TARGET_LABELS)
        );
        seen.push(format!("{} {}", s.label("__name__"), s.label("job_name")));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "promdrop_job_end_timestamp_seconds descheduler",
            "promdrop_job_end_timestamp_seconds descheduler-failing",
            "promdrop_job_last_success_timestamp_seconds descheduler",
            "promdrop_job_start_timestamp_seconds descheduler",
            "promdrop_job_start_timestamp_seconds descheduler-failing",
        ]
    );

    // The Rust job's own metrics, from both runs (a failing job still hands off its metrics).
    //
    // The file has the counter `descheduler_pods_evicted` (the descheduler's name, without
    // `_total`). Prometheus negotiates OpenMetrics, where a counter's samples must end in
    // `_total`; rather than rename the series, the exporter serves that family as `unknown`
    // under its own name, so Prometheus stores `descheduler_pods_evicted`, as under
    // node_exporter (which answers in the classic format). Pinned here so that a change of
    // this behaviour is a deliberate one.
    let mut evicted = Vec::new();
    for job in ["descheduler", "descheduler-failing"] {
        for (namespace, node, result, strategy) in [
            ("web", "node-a", "success", "RemoveDuplicates"),
            ("web", "node-b", "success", "LowNodeUtilization"),
            ("batch", "node-b", "success", "LowNodeUtilization"),
            (
                "kube-system",
                "node-c",
                "error",
                "RemovePodsViolatingNodeAffinity",
            ),
        ] {
            evicted.push(format!(
                "descheduler_pods_evicted{{job_name=\"{job}\",namespace=\"{namespace}\",node=\"{node}\",result=\"{result}\",strategy=\"{strategy}\"}} 1"
            ));
        }
        evicted.push(format!(
            "descheduler_build_info{{build_date=\"2025-11-27\",compiler=\"rustc\",git_version=\"0.1.0\",job_name=\"{job}\",os_arch=\"{}\"}} 1",
            std::env::consts::ARCH
        ));
        evicted.push(format!(
            "descheduler_loop_duration_seconds_bucket{{job_name=\"{job}\",le=\"+Inf\",type=\"descheduling\"}} 1"
        ));
        evicted.push(format!(
            "descheduler_loop_duration_seconds_count{{job_name=\"{job}\",type=\"descheduling\"}} 1"
        ));
    }
    let evicted: Vec<&str> = evicted.iter().map(String::as_str).collect();
    wait_for_exactly(
        &prometheus,
        "the Rust job's metrics",
        r#"{job="promdrop", __name__=~"descheduler_(pods_evicted|build_info|loop_duration_seconds_count)|descheduler_loop_duration_seconds_bucket", le=~"|\\+Inf"}"#,
        &evicted,
    );
    let buckets = prometheus
        .query(r#"count by (job_name) (descheduler_loop_duration_seconds_bucket{job="promdrop"})"#)
        .unwrap();
    let renamed = prometheus
        .query(r#"descheduler_pods_evicted_total{job="promdrop"}"#)
        .unwrap();
    assert!(
        renamed.is_empty(),
        "the counter is stored under its own name only: {renamed:?}"
    );
    assert_eq!(
        lines(&buckets, &[]),
        [
            r#"{job_name="descheduler"} 8"#,
            r#"{job_name="descheduler-failing"} 8"#
        ],
        "7 buckets and +Inf for each run"
    );

    // The shell job's text, with its grouping labels, and the Python job's registry.
    wait_for_exactly(
        &prometheus,
        "the shell job's and the Python job's metrics",
        r#"{job="promdrop", __name__=~"backup_.*|etl_.*", __name__!~".*_created"}"#,
        &[
            r#"backup_bytes{job_name="db-backup",tier="nightly"} 7.3e+09"#,
            r#"backup_files_total{job_name="db-backup",kind="table",tier="nightly"} 12"#,
            r#"backup_files_total{job_name="db-backup",kind="index",tier="nightly"} 3"#,
            r#"etl_rows_processed{table="orders"} 1234"#,
            r#"etl_rows_processed{table="customers"} 56.5"#,
            r#"etl_batches_total 3"#,
            r#"etl_batch_seconds_bucket{le="0.5"} 1"#,
            // Python writes le="2.0"; it is served as node_exporter serves it, le="2".
            r#"etl_batch_seconds_bucket{le="2"} 2"#,
            r#"etl_batch_seconds_bucket{le="+Inf"} 3"#,
            r#"etl_batch_seconds_count 3"#,
            r#"etl_batch_seconds_sum 8.25"#,
        ],
    );
    // prometheus_client adds `_created` series; whatever the scrape format, a value near now.
    let created = prometheus
        .query(r#"{job="promdrop", __name__=~"etl_.*_created"}"#)
        .unwrap();
    for s in &created {
        assert!(
            (s.value - t_jobs).abs() < 120.0,
            "{}",
            s.line_without(TARGET_LABELS)
        );
    }

    // The exporter's own view: four files, all fresh, none failing.
    let d = dir.display().to_string();
    let mut meta = vec![
        r#"promdrop_files{state="fresh"} 4"#.to_string(),
        r#"promdrop_files{state="stale"} 0"#.to_string(),
        r#"promdrop_files{state="expired"} 0"#.to_string(),
        r#"promdrop_files{state="error"} 0"#.to_string(),
    ];
    for name in ["descheduler", "descheduler-failing", "db-backup", "etl"] {
        for m in [
            "promdrop_file_error",
            "promdrop_file_stale",
            "promdrop_file_expired",
        ] {
            meta.push(format!("{m}{{file=\"{d}/{name}.prom\"}} 0"));
        }
    }
    let meta: Vec<&str> = meta.iter().map(String::as_str).collect();
    wait_for_exactly(
        &prometheus,
        "the exporter's meta metrics",
        r#"{job="promdrop", __name__=~"promdrop_files|promdrop_file_(error|stale|expired)"}"#,
        &meta,
    );

    // The scrape itself: both targets healthy, with no error.
    let targets = prometheus.targets().unwrap();
    let active = targets["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{targets}");
    for target in active {
        assert_eq!(target["health"], "up", "{target}");
        assert_eq!(target["lastError"], "", "{target}");
    }

    // What Prometheus asked for and what it got, as recorded between the two. The first
    // OpenMetrics request after a change is answered uncompressed while the gzip body is
    // prepared (docs/OPERATIONS.md): wait for a scrape of the jobs' data that was gzipped.
    let is_scrape = |e: &promdrop_e2e::Exchange| e.request_line.starts_with("GET /metrics ");
    let (scrape, exchanges) = poll(
        "a gzipped OpenMetrics scrape of the jobs' data through the proxy",
        DEADLINE,
        || {
            let exchanges = proxy.exchanges();
            exchanges
                .iter()
                .rev()
                .find(|e| {
                    is_scrape(e)
                        && e.response.header("content-encoding") == Some("gzip")
                        && e.response.decoded().is_ok_and(|body| {
                            // The last job's data: a scrape after all four wrote.
                            String::from_utf8_lossy(&body).contains("table=\"orders\"")
                        })
                })
                .cloned()
                .map(|e| (e, exchanges.clone()))
                .ok_or_else(|| {
                    format!(
                        "recorded: {:#?}",
                        exchanges
                            .iter()
                            .map(|e| (
                                &e.request_line,
                                e.response.header("content-type"),
                                e.response.header("content-encoding"),
                                e.response.body.len()
                            ))
                            .collect::<Vec<_>>()
                    )
                })
        },
    );
    let scrapes: Vec<&promdrop_e2e::Exchange> = exchanges.iter().filter(|e| is_scrape(e)).collect();
    for e in &scrapes {
        assert!(
            e.response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/openmetrics-text; version=1.0.0")),
            "every scrape was answered with OpenMetrics: {:?}",
            e.response.headers
        );
    }
    let gzipped = scrapes
        .iter()
        .filter(|e| e.response.header("content-encoding") == Some("gzip"))
        .count();
    let accept = http::header(&scrape.request_headers, "accept").unwrap_or("");
    let accept_encoding = http::header(&scrape.request_headers, "accept-encoding").unwrap_or("");
    let user_agent = http::header(&scrape.request_headers, "user-agent").unwrap_or("");
    assert_eq!(accept, PROMETHEUS_ACCEPT, "Prometheus's Accept header");
    assert!(accept_encoding.contains("gzip"), "{accept_encoding}");
    assert!(user_agent.starts_with("Prometheus/2."), "{user_agent}");
    let content_type = scrape.response.header("content-type").unwrap_or("");
    let content_encoding = scrape.response.header("content-encoding").unwrap_or("");
    assert_eq!(scrape.response.status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "the exporter answered Prometheus with {content_type:?}"
    );
    assert_eq!(
        content_encoding, "gzip",
        "the exporter did not gzip for Prometheus"
    );
    let body = scrape.response.decoded().expect("a valid gzip body");
    assert!(body.ends_with(b"# EOF\n"), "OpenMetrics ends with # EOF");
    let exposition = parse(&body, Format::OpenMetrics).unwrap_or_else(|e| {
        panic!(
            "the body Prometheus got is not OpenMetrics: {e}\n{}",
            String::from_utf8_lossy(&body)
        )
    });
    assert!(
        exposition
            .families
            .iter()
            .any(|f| f.name == "descheduler_pods_evicted"),
        "the scrape carried the job's metrics: {:?}",
        exposition
            .families
            .iter()
            .map(|f| f.name.as_ref())
            .collect::<Vec<&str>>()
    );
    println!(
        "{} scrapes recorded through the proxy, all OpenMetrics, {gzipped} gzipped",
        scrapes.len()
    );
    println!(
        "Prometheus scraped through the proxy: {} {user_agent}\n  Accept: {accept}\n  Accept-Encoding: {accept_encoding}\n  -> {} Content-Type: {content_type}, Content-Encoding: {content_encoding}, {} bytes gzip, {} bytes OpenMetrics, {} samples",
        scrape.request_line,
        scrape.response.status,
        scrape.response.body.len(),
        body.len(),
        exposition.sample_count()
    );

    // The same negotiation asked of the exporter directly, with Prometheus's exact headers.
    // The gzip body of a publication is compressed in the background, so a request right after
    // one (a job file just rewritten) is answered plain: ask until the gzip one is ready.
    let direct = poll("the gzip body", DEADLINE, || {
        let r = exporter.get(
            "/metrics",
            &[("Accept", PROMETHEUS_ACCEPT), ("Accept-Encoding", "gzip")],
        );
        if r.status == 200 && r.header("content-encoding") == Some("gzip") {
            Ok(r)
        } else {
            Err(format!(
                "status {}, content-encoding {:?}",
                r.status,
                r.header("content-encoding")
            ))
        }
    });
    assert_eq!(direct.status, 200);
    let direct_type = direct.header("content-type").unwrap_or("");
    let direct_encoding = direct.header("content-encoding").unwrap_or("");
    assert_eq!(
        direct_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
        "Content-Type for Prometheus's Accept"
    );
    assert_eq!(direct_encoding, "gzip");
    let plain = direct.decoded().expect("gzip");
    parse(&plain, Format::OpenMetrics).expect("an OpenMetrics body");
    println!(
        "direct GET /metrics with Prometheus's headers: Content-Type: {direct_type}, Content-Encoding: {direct_encoding}, {} -> {} bytes",
        direct.body.len(),
        plain.len()
    );
    // And without those headers, the classic format, uncompressed.
    let classic = exporter.get("/metrics", &[]);
    assert!(
        classic
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        classic.headers
    );
    assert_eq!(classic.header("content-encoding"), None);

    let scraped = prometheus
        .query(r#"scrape_samples_scraped{job="promdrop"}"#)
        .unwrap();
    println!(
        "4 jobs (Rust ok, Rust --fail, promdrop write, Python) visible in Prometheus {visible_after:.2} s after the last one wrote; {} samples a scrape; test took {:.1} s",
        scraped.first().map_or(0.0, |s| s.value),
        started.elapsed().as_secs_f64()
    );
}

/// `promdrop_file_stale`, `promdrop_file_expired` and the count of the job's series at one
/// evaluation time (absent when the query returns nothing).
type State = (Option<f64>, Option<f64>, Option<f64>);

/// With `--stale-after 3s --expire-after 6s`, a job file goes fresh, then stale (still served),
/// then expired: its series leave Prometheus (an instant query finds nothing, thanks to the
/// staleness marker Prometheus writes when a series disappears from a scrape) while
/// `promdrop_file_stale` and `promdrop_file_expired` say why. A file whose writer header says
/// `stale_after=1h expire_after=2h` is unaffected.
#[test]
fn stale_then_expired_files_leave_prometheus_and_the_meta_metrics_say_why() {
    binaries();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exporter = Exporter::start(
        &binaries().exporter,
        &[
            dir_arg(dir),
            "--stale-after=3s".into(),
            "--expire-after=6s".into(),
        ],
    );
    let prometheus = Prometheus::start(&[ScrapeTarget::new("promdrop", &exporter.address)]);
    prometheus.wait_for_query("the exporter up", "up == 1", DEADLINE, |r| r.len() == 1);

    let (code, output) = run_with_stdin(
        &binaries().promdrop,
        &[
            "write",
            "--dir",
            &dir.display().to_string(),
            "--job",
            "keeper",
            "--stale-after",
            "1h",
            "--expire-after",
            "2h",
        ],
        b"# TYPE keeper_up gauge\nkeeper_up 1\n",
    );
    assert_eq!(code, 0, "{output}");
    let t0 = unix_now();
    assert_eq!(batch_job(dir, "nightly", &[]), 0);
    let nightly = format!("{}/nightly.prom", dir.display());
    let keeper = format!("{}/keeper.prom", dir.display());

    // Expired: the job's series are gone from an instant query, the meta metrics say why.
    let series = r#"{job="promdrop", job_name="nightly"}"#;
    let expired_expr = format!(r#"promdrop_file_expired{{job="promdrop", file="{nightly}"}} == 1"#);
    poll("nightly.prom to expire in Prometheus", DEADLINE, || {
        let expired = prometheus.query(&expired_expr)?;
        let left = prometheus.query(series)?;
        if expired.len() == 1 && left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "expired: {:?}\nthe job's series still there:\n{}",
                lines(&expired, &[]),
                lines(&left, TARGET_LABELS).join("\n")
            ))
        }
    });
    let now_meta = prometheus
        .query(r#"{job="promdrop", __name__=~"promdrop_files|promdrop_file_(stale|expired)"}"#)
        .unwrap();
    let mut expected = vec![
        format!(r#"promdrop_file_expired{{file="{keeper}"}} 0"#),
        format!(r#"promdrop_file_expired{{file="{nightly}"}} 1"#),
        format!(r#"promdrop_file_stale{{file="{keeper}"}} 0"#),
        format!(r#"promdrop_file_stale{{file="{nightly}"}} 1"#),
        r#"promdrop_files{state="error"} 0"#.to_string(),
        r#"promdrop_files{state="expired"} 1"#.to_string(),
        r#"promdrop_files{state="fresh"} 1"#.to_string(),
        r#"promdrop_files{state="stale"} 0"#.to_string(),
    ];
    expected.sort();
    assert_eq!(lines(&now_meta, TARGET_LABELS), expected);
    let keeper_up = prometheus.query(r#"keeper_up{job="promdrop"}"#).unwrap();
    assert_eq!(
        lines(&keeper_up, TARGET_LABELS),
        [r#"keeper_up{job_name="keeper"} 1"#],
        "the file with a 1h header is still served"
    );

    // The whole story, second by second: fresh with its samples, stale with its samples,
    // expired without them; never expired before stale, never samples once expired.
    // The range query's last step may precede the scrape that saw the expiry: query again
    // until the story ends expired.
    let step = 0.5;
    let stale_expr = format!(r#"promdrop_file_stale{{job="promdrop", file="{nightly}"}}"#);
    let expired_expr = format!(r#"promdrop_file_expired{{job="promdrop", file="{nightly}"}}"#);
    let count_expr = r#"count(descheduler_pods_evicted{job="promdrop", job_name="nightly"})"#;
    let timeline = poll("the range query to show the expiry", DEADLINE, || {
        let end = unix_now();
        let range = |expr: &str| -> Result<Vec<(f64, f64)>, String> {
            let result = prometheus.query_range(expr, t0 - 2.0, end, step)?;
            if result.len() > 1 {
                return Err(format!("{expr}: more than one series: {result:?}"));
            }
            Ok(result.into_iter().next().map(|r| r.1).unwrap_or_default())
        };
        let (stale, expired, evicted) = (
            range(&stale_expr)?,
            range(&expired_expr)?,
            range(count_expr)?,
        );
        // Every evaluation time any of the three has a point at, in milliseconds.
        let ms = |t: f64| (t * 1000.0).round() as i64;
        let times: BTreeSet<i64> = [&stale, &expired, &evicted]
            .iter()
            .flat_map(|points| points.iter().map(|(t, _)| ms(*t)))
            .collect();
        let at = |points: &[(f64, f64)], t: i64| points.iter().find(|p| ms(p.0) == t).map(|p| p.1);
        let mut timeline: Vec<(f64, State)> = Vec::new();
        for t in times {
            let state = (at(&stale, t), at(&expired, t), at(&evicted, t));
            if timeline.last().map(|(_, s)| *s) != Some(state) {
                timeline.push((t as f64 / 1000.0, state));
            }
        }
        match timeline.last() {
            Some((_, (_, Some(e), _))) if *e == 1.0 => Ok(timeline),
            _ => Err(format!("the timeline so far: {timeline:?}")),
        }
    });
    let story: Vec<String> = timeline
        .iter()
        .map(|(t, (s, e, n))| format!("t0{:+.1}s stale={s:?} expired={e:?} series={n:?}", t - t0))
        .collect();
    println!("nightly.prom in Prometheus:\n  {}", story.join("\n  "));
    let states: Vec<State> = timeline.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        states,
        [
            (Some(0.0), Some(0.0), Some(4.0)),
            (Some(1.0), Some(0.0), Some(4.0)),
            (Some(1.0), Some(1.0), None),
        ],
        "fresh, then stale with samples, then expired without: {story:#?}"
    );
    let stale_at = timeline[1].0 - t0;
    let expired_at = timeline[2].0 - t0;
    assert!(
        stale_at > 2.0 && expired_at > 5.0,
        "stale after 3 s, expired after 6 s: {story:#?}"
    );
    println!(
        "stale seen at t0+{stale_at:.1}s, expired (series gone) at t0+{expired_at:.1}s; test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
