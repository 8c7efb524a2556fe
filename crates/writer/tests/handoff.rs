//! The handoff in-process: every source, grouping labels, the one final write, the carried
//! last success, source failures. Real files in temporary directories; every file written is
//! checked with promdrop-textformat. Signals are off here (they belong to the test harness);
//! the process tests cover them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use promdrop_writer::{Error, Handoff, HandoffBuilder, Outcome, TextSource, write_registry};

fn builder(job: &str, dir: &std::path::Path) -> HandoffBuilder {
    Handoff::builder(job)
        .dir(dir)
        .signals(false)
        .completion_index(None)
}

fn evictions() -> (prometheus::Registry, prometheus::IntCounterVec) {
    let registry = prometheus::Registry::new();
    let evicted = prometheus::IntCounterVec::new(
        prometheus::Opts::new("descheduler_pods_evicted", "Pods evicted."),
        &["namespace", "job_name"],
    )
    .unwrap();
    registry.register(Box::new(evicted.clone())).unwrap();
    (registry, evicted)
}

#[test]
fn prometheus_registry_gets_grouping_labels_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, evicted) = evictions();
    evicted.with_label_values(&["web", ""]).inc();
    evicted.with_label_values(&["db", "own-value"]).inc_by(2);
    let guard = builder("descheduler", dir.path())
        .registry(&registry)
        .grouping_label("cluster", "eu-1")
        .install()
        .unwrap();
    assert_eq!(guard.path(), dir.path().join("descheduler.prom"));
    guard.finish(Outcome::Success).unwrap();

    let file = JobFile::read(&dir.path().join("descheduler.prom"));
    // A sample's own job_name is kept, once; the others get the grouping labels.
    assert!(
        file.text.contains(
            "descheduler_pods_evicted{job_name=\"own-value\",namespace=\"db\",cluster=\"eu-1\"} 2\n"
        ),
        "{}",
        file.text
    );
    // An empty label value is no label in Prometheus: the grouping label fills it.
    assert_eq!(
        file.value(
            "descheduler_pods_evicted",
            &[("namespace", "web"), ("job_name", "descheduler")]
        ),
        Some(1.0)
    );
    assert_eq!(
        file.value(
            "promdrop_job_success",
            &[("job_name", "descheduler"), ("cluster", "eu-1")]
        ),
        Some(1.0)
    );
}

#[test]
fn grouping_labels_can_be_renamed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let guard = builder("copy", dir.path())
        .completion_index(Some(4))
        .text_source(|| Ok("# TYPE rows counter\nrows 1\n".to_string()))
        .without_grouping_label("job_name")
        .grouping_label("job", "copy")
        .install()
        .unwrap();
    assert_eq!(
        guard.grouping_labels(),
        [
            ("completion_index".to_string(), "4".to_string()),
            ("job".to_string(), "copy".to_string())
        ]
    );
    guard.finish(Outcome::Success).unwrap();
    let file = JobFile::read(&dir.path().join("copy-4.prom"));
    assert!(
        file.text
            .contains("rows{completion_index=\"4\",job=\"copy\"} 1\n"),
        "{}",
        file.text
    );

    let guard = builder("bare", dir.path())
        .text_source(|| Ok("# TYPE rows counter\nrows 1\n".to_string()))
        .no_grouping_labels()
        .install()
        .unwrap();
    guard.finish(Outcome::Success).unwrap();
    let file = JobFile::read(&dir.path().join("bare.prom"));
    assert!(file.text.contains("\nrows 1\n"), "{}", file.text);
    assert!(
        file.text.contains("\npromdrop_job_success 1\n"),
        "{}",
        file.text
    );
}

#[test]
fn prometheus_client_registry_is_written_as_classic_text() {
    use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
    let dir = tempfile::tempdir().unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let evicted: Family<Vec<(String, String)>, Counter> = Family::default();
    registry.register("pods_evicted", "Pods evicted", evicted.clone());
    let duration = Histogram::new([0.1, 1.0]);
    registry.register("loop_duration_seconds", "Loop duration", duration.clone());
    evicted
        .get_or_create(&vec![("namespace".to_string(), "web".to_string())])
        .inc_by(3);
    duration.observe(0.5);

    let guard = builder("client", dir.path())
        .prometheus_client(Arc::new(registry))
        .install()
        .unwrap();
    guard.finish(Outcome::Success).unwrap();
    let file = JobFile::read(&dir.path().join("client.prom"));
    assert!(!file.text.contains("# EOF"), "{}", file.text);
    assert!(
        file.text.contains("# TYPE pods_evicted_total counter\n"),
        "{}",
        file.text
    );
    assert_eq!(
        file.value(
            "pods_evicted_total",
            &[("namespace", "web"), ("job_name", "client")]
        ),
        Some(3.0)
    );
    assert_eq!(
        file.value(
            "loop_duration_seconds_bucket",
            &[("le", "1.0"), ("job_name", "client")]
        )
        .or_else(|| file.value("loop_duration_seconds_bucket", &[("le", "1")])),
        Some(1.0)
    );
    assert_eq!(file.reason(), "success");
}

#[test]
fn opentelemetry_force_flush_and_shutdown_write_the_file() {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use promdrop_writer::otel::FileExporter;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otel.prom");
    let exporter = FileExporter::new();
    let guard = builder("otel", dir.path())
        .flush_every(Duration::ZERO)
        .opentelemetry(&exporter)
        .install()
        .unwrap();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter.clone())
        .build();
    let meter = provider.meter("job");
    let rows = meter.u64_counter("rows.copied").build();
    let lag = meter.f64_gauge("replication.lag").with_unit("s").build();
    let latency = meter
        .f64_histogram("query.duration")
        .with_unit("s")
        .with_boundaries(vec![0.1, 1.0])
        .build();
    rows.add(5, &[KeyValue::new("table.name", "users")]);
    lag.record(0.25, &[]);
    latency.record(0.5, &[]);
    latency.record(2.0, &[]);

    // The snapshot at install() came before any export.
    assert_eq!(JobFile::read(&path).value("rows_copied_total", &[]), None);
    provider.force_flush().unwrap();
    let file = JobFile::read(&path);
    assert_eq!(file.get("promdrop_job_running"), 1.0);
    assert_eq!(
        file.value(
            "rows_copied_total",
            &[("table_name", "users"), ("job_name", "otel")]
        ),
        Some(5.0)
    );
    assert_eq!(file.value("replication_lag_seconds", &[]), Some(0.25));
    assert_eq!(
        file.value("query_duration_seconds_bucket", &[("le", "0.1")]),
        Some(0.0)
    );
    assert_eq!(
        file.value("query_duration_seconds_bucket", &[("le", "1")]),
        Some(1.0)
    );
    assert_eq!(
        file.value("query_duration_seconds_bucket", &[("le", "+Inf")]),
        Some(2.0)
    );
    assert_eq!(file.value("query_duration_seconds_sum", &[]), Some(2.5));
    assert_eq!(file.value("query_duration_seconds_count", &[]), Some(2.0));

    rows.add(1, &[KeyValue::new("table.name", "users")]);
    provider.shutdown().unwrap();
    assert_eq!(
        JobFile::read(&path).value("rows_copied_total", &[]),
        Some(6.0)
    );

    guard.finish(Outcome::Success).unwrap();
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "success");
    assert_eq!(file.value("rows_copied_total", &[]), Some(6.0));
}

#[cfg(feature = "opentelemetry")]
#[test]
fn opentelemetry_names_can_be_kept_as_utf8_names() {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use promdrop_writer::otel::{FileExporter, Names};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otel.prom");
    let exporter = FileExporter::builder().names(Names::Keep).build();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter.clone())
        .build();
    let guard = builder("otel", dir.path())
        .grouping_label("deployment.environment", "prod")
        .opentelemetry(&exporter)
        .meter_provider(provider.clone())
        .install()
        .unwrap();
    let meter = provider.meter("job");
    let rows = meter.u64_counter("rows.copied").build();
    let latency = meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .with_boundaries(vec![1.0])
        .build();
    rows.add(5, &[KeyValue::new("table.name", "users")]);
    latency.record(0.5, &[KeyValue::new("http.request.method", "GET")]);
    guard.finish(Outcome::Success).unwrap();

    let file = JobFile::read(&path);
    assert!(
        file.text
            .contains("{\"rows.copied_total\",\"table.name\"=\"users\""),
        "{}",
        file.text
    );
    assert_eq!(
        file.value(
            "rows.copied_total",
            &[
                ("table.name", "users"),
                ("job_name", "otel"),
                ("deployment.environment", "prod")
            ]
        ),
        Some(5.0)
    );
    assert_eq!(
        file.value(
            "http.server.request.duration_seconds_bucket",
            &[("http.request.method", "GET"), ("le", "1")]
        ),
        Some(1.0)
    );
    assert_eq!(file.reason(), "success");
}

#[test]
fn openmetrics_text_is_converted_and_invalid_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let guard = builder("om", dir.path())
        .text_source(|| {
            Ok("# TYPE jobs counter\njobs_total 3\njobs_created 1.7e9\n# EOF\n".to_string())
        })
        .install()
        .unwrap();
    guard.finish(Outcome::Success).unwrap();
    let path = dir.path().join("om.prom");
    let file = JobFile::read(&path);
    assert!(
        file.text
            .contains("# TYPE jobs_total counter\njobs_total{job_name=\"om\"} 3\n")
    );
    let before = fs::read(&path).unwrap();

    let guard = builder("om", dir.path())
        .text_source(|| Ok("jobs_total{oops 3\n".to_string()))
        .on_error(|_| {})
        .install()
        .unwrap();
    let err = guard.finish(Outcome::Success).unwrap_err();
    assert!(matches!(err, Error::InvalidText { .. }), "{err:?}");
    assert!(err.to_string().contains("om.prom"), "{err}");
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "invalid text must write nothing"
    );
    assert_no_debris(dir.path());
}

#[test]
fn a_failing_source_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let guard = builder("broken", dir.path())
        .text_source(|| Err("the database is gone".into()))
        .install()
        .unwrap();
    let err = guard.finish(Outcome::Failure).unwrap_err();
    assert!(matches!(err, Error::Source { .. }), "{err:?}");
    assert!(err.to_string().contains("the database is gone"), "{err}");
    assert!(!dir.path().join("broken.prom").exists());
}

#[test]
fn several_sources_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, evicted) = evictions();
    evicted.with_label_values(&["web", ""]).inc();
    let guard = builder("merged", dir.path())
        .registry(&registry)
        .text_source(|| Ok("# TYPE rows gauge\nrows 7\n".to_string()))
        .install()
        .unwrap();
    guard.finish(Outcome::Success).unwrap();
    let file = JobFile::read(&dir.path().join("merged.prom"));
    assert_eq!(file.value("rows", &[("job_name", "merged")]), Some(7.0));
    assert_eq!(
        file.value("descheduler_pods_evicted", &[("namespace", "web")]),
        Some(1.0)
    );
}

#[test]
fn dropping_the_guard_is_unfinished_and_panicking_is_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropped.prom");
    builder("dropped", dir.path())
        .install()
        .unwrap()
        .finish(Outcome::Success)
        .unwrap();
    let succeeded_at = JobFile::read(&path).get("promdrop_job_end_timestamp_seconds");
    {
        let _guard = builder("dropped", dir.path()).install().unwrap();
    }
    // Only an explicit success is a success: the last success stays the earlier run's.
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "unfinished");
    assert_eq!(file.get("promdrop_job_success"), 0.0);
    assert_eq!(
        file.get("promdrop_job_last_success_timestamp_seconds"),
        succeeded_at
    );

    let dir_path = dir.path().to_path_buf();
    let result = std::thread::spawn(move || {
        let _guard = builder("dropped", &dir_path).install().unwrap();
        panic!("the job failed badly");
    })
    .join();
    assert!(result.is_err());
    let file = JobFile::read(&path);
    assert_eq!(file.reason(), "panic");
    assert_eq!(
        file.get("promdrop_job_last_success_timestamp_seconds"),
        succeeded_at
    );
}

#[test]
fn finish_with_records_the_result_and_returns_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.prom");
    let ok: Result<u32, String> = builder("fw", dir.path())
        .install()
        .unwrap()
        .finish_with(Ok(7));
    assert_eq!(ok, Ok(7));
    assert_eq!(JobFile::read(&path).reason(), "success");
    let err: Result<u32, String> = builder("fw", dir.path())
        .install()
        .unwrap()
        .finish_with(Err("no".to_string()));
    assert_eq!(err, Err("no".to_string()));
    assert_eq!(JobFile::read(&path).reason(), "error");
    assert_eq!(Outcome::from(&Ok::<(), ()>(())), Outcome::Success);
    assert_eq!(Outcome::from(&Err::<(), ()>(())), Outcome::Failure);
    // A failed metrics write does not change the job's result.
    let missing = dir.path().join("not-mounted");
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    let ok: Result<(), ()> = builder("fw", &missing)
        .on_error(move |e| seen.lock().unwrap().push(e.to_string()))
        .install()
        .unwrap()
        .finish_with(Ok(()));
    assert_eq!(ok, Ok(()));
    let errors = errors.lock().unwrap();
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|e| e.contains("does not exist (is the volume mounted?)")),
        "{errors:?}"
    );
}

#[test]
fn a_panic_in_another_thread_is_not_the_jobs_end() {
    let dir = tempfile::tempdir().unwrap();
    let guard = builder("worker", dir.path()).install().unwrap();
    let worker = std::thread::spawn(|| panic!("a worker's panic, handled by the job"));
    assert!(worker.join().is_err());
    assert_eq!(
        JobFile::read(&dir.path().join("worker.prom")).get("promdrop_job_running"),
        1.0,
        "the hook wrote for another thread"
    );
    guard.finish(Outcome::Success).unwrap();
    assert_eq!(
        JobFile::read(&dir.path().join("worker.prom")).reason(),
        "success"
    );
}

#[test]
fn snapshots_never_overwrite_the_final_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.prom");
    for round in 0..30 {
        let guard = builder("race", dir.path())
            .flush_every(Duration::from_millis(1))
            .text_source(|| Ok("# TYPE x gauge\nx 1\n".to_string()))
            .install()
            .unwrap();
        std::thread::sleep(Duration::from_millis(round % 5));
        let outcome = Outcome::from(round % 2 == 0);
        guard.finish(outcome).unwrap();
        let final_bytes = fs::read(&path).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            fs::read(&path).unwrap(),
            final_bytes,
            "round {round}: rewritten after the final write"
        );
        let file = JobFile::read(&path);
        assert_eq!(file.get("promdrop_job_running"), 0.0, "round {round}");
        assert_eq!(
            file.reason(),
            if round % 2 == 0 { "success" } else { "error" }
        );
    }
}

#[test]
fn periodic_snapshots_say_running_and_go_stale_soon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.prom");
    let guard = builder("long", dir.path())
        .flush_every(Duration::from_millis(20))
        .stale_after(Duration::from_secs(3600))
        .expire_after(Duration::from_secs(7 * 86400))
        .install()
        .unwrap();
    assert!(wait_for(Duration::from_secs(5), || path.exists()));
    let file = JobFile::read(&path);
    assert_eq!(file.get("promdrop_job_running"), 1.0);
    assert_eq!(file.header.stale_after, Some(Duration::from_millis(40)));
    assert_eq!(
        file.header.expire_after,
        Some(Duration::from_secs(7 * 86400))
    );
    guard.finish(Outcome::Success).unwrap();
    let file = JobFile::read(&path);
    assert_eq!(file.header.stale_after, Some(Duration::from_secs(3600)));
    assert_eq!(file.get("promdrop_job_running"), 0.0);
}

#[test]
fn the_mode_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    builder("private", dir.path())
        .mode(0o600)
        .install()
        .unwrap()
        .finish(Outcome::Success)
        .unwrap();
    let mode = fs::metadata(dir.path().join("private.prom"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn write_registry_writes_classic_text_from_any_source() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, evicted) = evictions();
    evicted.with_label_values(&["web", "x"]).inc();
    let path = dir.path().join("bare.prom");
    write_registry(&registry, &path).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    promdrop_textformat::parse(text.as_bytes(), promdrop_textformat::Format::Classic).unwrap();
    assert!(
        text.contains("descheduler_pods_evicted{job_name=\"x\",namespace=\"web\"} 1\n"),
        "{text}"
    );

    let om = TextSource::new(|| Ok("# TYPE up gauge\nup 1\n# EOF\n".to_string()));
    write_registry(&om, &path).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "# TYPE up gauge\nup 1\n"
    );
    assert_no_debris(dir.path());
}

#[test]
fn a_panicking_source_does_not_hang_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let guard = builder("buggy", dir.path())
        .text_source(|| panic!("a bug in the metrics source"))
        .install()
        .unwrap();
    let started = std::time::Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        guard.finish(Outcome::Success)
    }));
    assert!(result.is_err(), "the source's panic goes on to the caller");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The snapshot at install() met the same panic and wrote nothing either.
    assert!(!dir.path().join("buggy.prom").exists());
    assert_no_debris(dir.path());
}
