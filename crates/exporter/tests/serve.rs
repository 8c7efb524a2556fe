//! The real binary on real directories and loopback sockets: every change to the files shows in
//! `/metrics` and the meta metrics, and no other file's samples are lost.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::{Metrics, arg, dir_arg, unix_now, write_atomic};

const WAIT: Duration = Duration::from_secs(10);

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// The sample every "other" file keeps serving through each step.
fn keeper_present(m: &Metrics) -> bool {
    m.get("keeper_up", &[("job", "keeper")]) == Some(1.0)
}

#[test]
fn files_added_replaced_truncated_invalid_valid_and_deleted() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_atomic(
        dir,
        "keeper.prom",
        "# TYPE keeper_up gauge\nkeeper_up{job=\"keeper\"} 1\n",
    );
    let exporter = common::start(&[dir_arg(dir), arg("rescan-interval", "5s")]);
    let a = dir.join("a.prom");

    let m = exporter.metrics();
    assert!(keeper_present(&Metrics::parse(&m)), "{m}");

    // Added.
    write_atomic(
        dir,
        "a.prom",
        "# HELP a_value A.\n# TYPE a_value gauge\na_value 1\n",
    );
    let m = exporter.wait_for("a.prom to appear", WAIT, |m| {
        m.get("a_value", &[]) == Some(1.0)
    });
    assert!(keeper_present(&m));
    assert_eq!(m.file("promdrop_file_series", &a), Some(1.0));
    assert_eq!(m.file("promdrop_file_error", &a), Some(0.0));
    assert!(m.file("promdrop_file_mtime_seconds", &a).unwrap() > unix_now() - 60.0);

    // Replaced by rename.
    write_atomic(
        dir,
        "a.prom",
        "# TYPE a_value gauge\na_value 2\na_value{x=\"y\"} 3\n",
    );
    let m = exporter.wait_for("a.prom replaced", WAIT, |m| {
        m.get("a_value", &[]) == Some(2.0)
    });
    assert_eq!(m.get("a_value", &[("x", "y")]), Some(3.0));
    assert_eq!(m.file("promdrop_file_series", &a), Some(2.0));
    assert!(keeper_present(&m));

    // Truncated (in place, as a careless writer would): an empty file is valid and empty.
    File::create(&a).unwrap();
    let m = exporter.wait_for("a.prom truncated", WAIT, |m| {
        m.get("a_value", &[]).is_none() && m.file("promdrop_file_series", &a) == Some(0.0)
    });
    assert_eq!(m.file("promdrop_file_error", &a), Some(0.0));
    assert_eq!(m.file("promdrop_file_bytes", &a), Some(0.0));
    assert!(keeper_present(&m));

    // Made invalid: reported, not served, the others still are.
    write_atomic(
        dir,
        "a.prom",
        "# TYPE a_value gauge\na_value{x=\"unterminated} 1\n",
    );
    let m = exporter.wait_for("a.prom failing", WAIT, |m| {
        m.file("promdrop_file_error", &a) == Some(1.0)
    });
    assert!(m.with_prefix("a_value").is_empty(), "{}", m.body);
    assert!(keeper_present(&m));
    assert_eq!(m.get("promdrop_files", &[("state", "error")]), Some(1.0));
    assert!(
        m.get("promdrop_reloads_total", &[("result", "failure")])
            .unwrap()
            >= 1.0
    );
    let status = exporter.get("/api/v1/files", &[]).text();
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    let entry = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == a.display().to_string())
        .expect("a.prom in /api/v1/files");
    assert!(
        entry["error"].as_str().unwrap().contains("a.prom:2:"),
        "the error names the file and line: {entry}"
    );
    let html = exporter.get("/", &[]).text();
    assert!(html.contains("a.prom:2:"), "{html}");
    assert!(exporter.log().contains("a.prom:2:"), "the reason is logged");

    // Valid again.
    write_atomic(dir, "a.prom", "# TYPE a_value gauge\na_value 4\n");
    let m = exporter.wait_for("a.prom valid again", WAIT, |m| {
        m.get("a_value", &[]) == Some(4.0)
    });
    assert_eq!(m.file("promdrop_file_error", &a), Some(0.0));
    assert_eq!(m.get("promdrop_files", &[("state", "error")]), Some(0.0));

    // Deleted: its samples and its meta metrics go.
    std::fs::remove_file(&a).unwrap();
    let m = exporter.wait_for("a.prom gone", WAIT, |m| {
        m.file("promdrop_file_series", &a).is_none()
    });
    assert!(m.with_prefix("a_value").is_empty());
    assert!(keeper_present(&m));
    assert_eq!(m.get("promdrop_files", &[("state", "fresh")]), Some(1.0));
}

#[test]
fn temp_files_hidden_files_and_subdirectories_are_ignored() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_atomic(dir, "keeper.prom", "keeper_up{job=\"keeper\"} 1\n");
    for (name, content) in [
        ("x.prom.1234", "tmp_a 1\n"),
        (".x.prom.abc.tmp", "tmp_b 1\n"),
        (".hidden.prom", "tmp_c 1\n"),
        ("notes.txt", "tmp_d 1\n"),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    std::fs::create_dir(dir.join("sub.prom")).unwrap();
    std::fs::write(dir.join("sub.prom/inner.prom"), "tmp_e 1\n").unwrap();
    let exporter = common::start(&[dir_arg(dir)]);
    let m = Metrics::parse(&exporter.metrics());
    assert!(keeper_present(&m));
    assert!(m.with_prefix("tmp_").is_empty(), "{}", m.body);
    assert_eq!(m.with_prefix("promdrop_file_series").len(), 1, "{}", m.body);
}

#[test]
fn a_directory_removed_and_created_again_is_followed() {
    let tmp = tempdir();
    let dir = tmp.path().join("textfiles");
    std::fs::create_dir(&dir).unwrap();
    write_atomic(&dir, "a.prom", "a_value 1\n");
    let exporter = common::start(&[dir_arg(&dir), arg("rescan-interval", "300ms")]);
    exporter.wait_for("a.prom", WAIT, |m| m.get("a_value", &[]) == Some(1.0));

    std::fs::remove_dir_all(&dir).unwrap();
    exporter.wait_for("the directory's files to go", WAIT, |m| {
        m.get("a_value", &[]).is_none() && m.with_prefix("promdrop_file_series").is_empty()
    });
    // The file's removal and the directory's are two events, which can come in two
    // publications: the status says the directory cannot be listed soon after.
    let deadline = Instant::now() + WAIT;
    loop {
        let json = exporter.get("/api/v1/files", &[]).text();
        if json.contains("cannot list") {
            break;
        }
        assert!(Instant::now() < deadline, "{json}");
        std::thread::sleep(Duration::from_millis(20));
    }

    std::fs::create_dir(&dir).unwrap();
    write_atomic(&dir, "b.prom", "b_value 2\n");
    exporter.wait_for("b.prom in the new directory", WAIT, |m| {
        m.get("b_value", &[]) == Some(2.0)
    });
    // And events work on the new directory: a change shows well before the next rescan
    // would matter (the rescan also catches it, so only check that it shows).
    write_atomic(&dir, "b.prom", "b_value 3\n");
    exporter.wait_for("b.prom changed", WAIT, |m| {
        m.get("b_value", &[]) == Some(3.0)
    });
}

#[test]
fn symlinks_are_followed_only_inside_the_directory() {
    let tmp = tempdir();
    let dir = tmp.path().join("textfiles");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(tmp.path().join("secret.prom"), "secret_value 42\n").unwrap();
    symlink(tmp.path().join("secret.prom"), dir.join("escape.prom")).unwrap();
    // A ConfigMap mount: cm.prom -> ..data/cm.prom, ..data -> ..2025_01.
    std::fs::create_dir(dir.join("..2025_01")).unwrap();
    std::fs::write(dir.join("..2025_01/cm.prom"), "cm_value 1\n").unwrap();
    symlink("..2025_01", dir.join("..data")).unwrap();
    symlink("..data/cm.prom", dir.join("cm.prom")).unwrap();
    write_atomic(&dir, "keeper.prom", "keeper_up{job=\"keeper\"} 1\n");

    let exporter = common::start(&[dir_arg(&dir), arg("rescan-interval", "300ms")]);
    let m = Metrics::parse(&exporter.metrics());
    assert!(keeper_present(&m));
    assert_eq!(m.get("cm_value", &[]), Some(1.0));
    assert!(m.with_prefix("secret").is_empty(), "{}", m.body);
    assert!(
        m.file("promdrop_file_series", &dir.join("escape.prom"))
            .is_none()
    );
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(json.contains("outside"), "{json}");

    // The ConfigMap is updated the way the kubelet does it: a new data directory, and
    // `..data` switched by a rename.
    std::fs::create_dir(dir.join("..2025_02")).unwrap();
    std::fs::write(dir.join("..2025_02/cm.prom"), "cm_value 2\n").unwrap();
    symlink("..2025_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    exporter.wait_for("the ConfigMap update", WAIT, |m| {
        m.get("cm_value", &[]) == Some(2.0)
    });
}

#[test]
fn a_20_mb_file_and_a_binary_file_fail_alone() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_atomic(dir, "keeper.prom", "keeper_up{job=\"keeper\"} 1\n");
    // 20 MB of valid samples: over the default 16 MiB limit.
    let mut big = String::with_capacity(21 << 20);
    let mut i = 0u64;
    while big.len() < 20_000_000 {
        big.push_str(&format!(
            "big_value{{i=\"{i:012}\",pad=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}} {i}\n"
        ));
        i += 1;
    }
    std::fs::write(dir.join(".big.tmp"), &big).unwrap();
    std::fs::rename(dir.join(".big.tmp"), dir.join("big.prom")).unwrap();
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect();
    std::fs::write(dir.join("binary.prom"), &binary).unwrap();

    let exporter = common::start(&[dir_arg(dir)]);
    let m = Metrics::parse(&exporter.metrics());
    assert!(keeper_present(&m));
    assert!(m.with_prefix("big_value").is_empty());
    assert_eq!(
        m.file("promdrop_file_error", &dir.join("big.prom")),
        Some(1.0)
    );
    assert_eq!(
        m.file("promdrop_file_error", &dir.join("binary.prom")),
        Some(1.0)
    );
    assert_eq!(
        m.file("promdrop_file_bytes", &dir.join("big.prom")),
        Some(big.len() as f64)
    );
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(
        json.contains("larger than --file.max-bytes=16777216"),
        "{json}"
    );

    // With a larger limit the same file is served, whole.
    drop(exporter);
    let exporter = common::start(&[
        dir_arg(dir),
        arg("file.max-bytes", "32MiB"),
        arg("file.max-series", "1000000"),
    ]);
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(m.with_prefix("big_value").len() as u64, i);
    assert!(keeper_present(&m));
}

#[test]
fn duplicate_series_and_type_conflicts_across_files() {
    let tmp = tempdir();
    let dir = tmp.path();
    let now = unix_now();
    // Same series in two files: served once, from the newer (by the writer's header).
    write_atomic(
        dir,
        "a.prom",
        &format!(
            "# promdrop: written_at={:.3}\n# HELP shared Shared, from a.\n# TYPE shared gauge\nshared{{k=\"v\"}} 1\nshared{{k=\"a\"}} 10\n",
            now - 10.0
        ),
    );
    write_atomic(
        dir,
        "b.prom",
        &format!(
            "# promdrop: written_at={now:.3}\n# HELP shared Shared, from b.\n# TYPE shared gauge\nshared{{k=\"v\"}} 2\nshared{{k=\"b\"}} 20\n"
        ),
    );
    // `shared` as a counter in a third file: its family is dropped, the rest of it is served.
    write_atomic(
        dir,
        "c.prom",
        "# TYPE shared counter\nshared{k=\"c\"} 30\n# TYPE c_only gauge\nc_only 3\n",
    );
    let exporter = common::start(&[dir_arg(dir)]);
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(
        m.get("shared", &[("k", "v")]),
        Some(2.0),
        "the newer file wins"
    );
    assert_eq!(m.get("shared", &[("k", "a")]), Some(10.0));
    assert_eq!(m.get("shared", &[("k", "b")]), Some(20.0));
    assert_eq!(
        m.get("shared", &[("k", "c")]),
        None,
        "the conflicting type is dropped"
    );
    assert_eq!(
        m.get("c_only", &[]),
        Some(3.0),
        "the rest of c.prom is served"
    );
    assert_eq!(m.body.matches("# TYPE shared ").count(), 1, "{}", m.body);
    assert!(
        m.body.contains("# HELP shared Shared, from a.\n"),
        "the first HELP is kept"
    );
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "type")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "help")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "duplicate_series")]),
        Some(1.0)
    );
    assert_eq!(
        m.file("promdrop_file_error", &dir.join("c.prom")),
        Some(0.0)
    );
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(json.contains("\"kind\": \"type\""), "{json}");

    // Rewriting a.prom as the newest flips the duplicate; the same conflict is not counted
    // again, a new one is.
    write_atomic(
        dir,
        "a.prom",
        &format!(
            "# promdrop: written_at={:.3}\n# TYPE shared gauge\nshared{{k=\"v\"}} 5\n",
            now + 5.0
        ),
    );
    let m = exporter.wait_for("a.prom newest", WAIT, |m| {
        m.get("shared", &[("k", "v")]) == Some(5.0)
    });
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "type")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "duplicate_series")]),
        Some(2.0)
    );
}

#[test]
fn poll_mode_sees_changes_within_one_rescan_interval() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_atomic(dir, "keeper.prom", "keeper_up{job=\"keeper\"} 1\n");
    let exporter = common::start(&[
        dir_arg(dir),
        arg("watch.events", "false"),
        arg("rescan-interval", "500ms"),
    ]);
    for (step, value) in [(1, "1"), (2, "2")] {
        let start = Instant::now();
        write_atomic(dir, "p.prom", &format!("p_value {value}\n"));
        exporter.wait_for("the change in poll mode", Duration::from_secs(5), |m| {
            m.get("p_value", &[])
                .is_some_and(|v| v.to_string() == value)
        });
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(500 + 400),
            "step {step}: {took:?} is more than one rescan interval (plus slack)"
        );
    }
    std::fs::remove_file(dir.join("p.prom")).unwrap();
    exporter.wait_for("the deletion in poll mode", Duration::from_secs(2), |m| {
        m.get("p_value", &[]).is_none()
    });
    assert!(!exporter.log().contains("watching the directory"));
}

#[test]
fn stale_then_expired_then_deleted_each_at_its_time() {
    let tmp = tempdir();
    let dir = tmp.path();
    // The keeper says it was written four minutes from now (within the five minutes of clock
    // skew a header may claim): it stays fresh throughout.
    write_atomic(
        dir,
        "keeper.prom",
        &format!(
            "# promdrop: written_at={:.3}\nkeeper_up{{job=\"keeper\"}} 1\n",
            unix_now() + 240.0
        ),
    );
    let exporter = common::start(&[
        dir_arg(dir),
        arg("stale-after", "1s"),
        arg("expire-after", "2s"),
        arg("delete-after", "3s"),
        arg("rescan-interval", "30s"),
    ]);
    let path = dir.join("job.prom");
    let written = unix_now();
    write_atomic(
        dir,
        "job.prom",
        &format!("# promdrop: written_at={written:.3}\njob_value 1\n"),
    );
    let m = exporter.wait_for("job.prom fresh", WAIT, |m| {
        m.get("job_value", &[]) == Some(1.0)
    });
    assert_eq!(m.file("promdrop_file_stale", &path), Some(0.0));

    let m = exporter.wait_for("stale", WAIT, |m| {
        m.file("promdrop_file_stale", &path) == Some(1.0)
    });
    let age = unix_now() - written;
    assert!((1.0..1.8).contains(&age), "stale at age {age}");
    assert_eq!(
        m.get("job_value", &[]),
        Some(1.0),
        "a stale file is still served"
    );
    assert_eq!(m.file("promdrop_file_expired", &path), Some(0.0));

    let m = exporter.wait_for("expired", WAIT, |m| {
        m.file("promdrop_file_expired", &path) == Some(1.0)
    });
    let age = unix_now() - written;
    assert!((2.0..2.8).contains(&age), "expired at age {age}");
    assert_eq!(
        m.get("job_value", &[]),
        None,
        "an expired file's samples are withheld"
    );
    assert_eq!(
        m.file("promdrop_file_series", &path),
        Some(1.0),
        "meta metrics remain"
    );
    assert_eq!(m.get("promdrop_files", &[("state", "expired")]), Some(1.0));

    // Deletion happens on time without any scrape: watch the disk, not /metrics.
    let deadline = Instant::now() + WAIT;
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "not deleted; log:\n{}",
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let age = unix_now() - written;
    assert!((3.0..3.8).contains(&age), "deleted at age {age}");
    let m = exporter.wait_for("gone from the meta metrics", WAIT, |m| {
        m.file("promdrop_file_series", &path).is_none()
    });
    assert!(keeper_present(&m), "the keeper is untouched");
    assert!(dir.join("keeper.prom").exists());
}

#[test]
fn the_writer_header_overrides_the_flags_for_its_file() {
    let tmp = tempdir();
    let dir = tmp.path();
    let now = unix_now();
    // Written 10 s ago: stale by the flag's 1 s, but its header gives it an hour.
    write_atomic(
        dir,
        "long.prom",
        &format!(
            "# promdrop: written_at={:.3} stale_after=1h\nlong_value 1\n",
            now - 10.0
        ),
    );
    // Fresh by the flag, but its header expires it after 1 s.
    write_atomic(
        dir,
        "short.prom",
        &format!("# promdrop: written_at={now:.3} expire_after=1s\nshort_value 1\n"),
    );
    // No header: the flags, counted from the mtime (an hour ago).
    write_atomic(dir, "old.prom", "old_value 1\n");
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(dir.join("old.prom"))
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let exporter = common::start(&[
        dir_arg(dir),
        arg("stale-after", "1s"),
        arg("expire-after", "30m"),
    ]);
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(
        m.file("promdrop_file_stale", &dir.join("long.prom")),
        Some(0.0)
    );
    assert_eq!(
        m.file("promdrop_file_expired", &dir.join("old.prom")),
        Some(1.0)
    );
    assert_eq!(m.get("old_value", &[]), None);
    exporter.wait_for("short.prom expired by its header", WAIT, |m| {
        m.file("promdrop_file_expired", &dir.join("short.prom")) == Some(1.0)
            && m.get("short_value", &[]).is_none()
    });
}

#[test]
fn deletion_waits_for_the_writers_lock() {
    let tmp = tempdir();
    let dir = tmp.path();
    let path = dir.join("job.prom");
    write_atomic(dir, "job.prom", "job_value 1\n");
    // A writer holds the lock (as promdrop-writer does during a write).
    let lock = File::create(promdrop_writer::lock_path(&path)).unwrap();
    lock.lock().unwrap();
    let exporter = common::start(&[dir_arg(dir), arg("delete-after", "500ms")]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(path.exists(), "deleted while the writer held the lock");
    // The writer renames a fresh file in and releases the lock: the fresh file is kept
    // (its age starts again).
    write_atomic(dir, "job.prom", "job_value 2\n");
    lock.unlock().unwrap();
    exporter.wait_for("the fresh file", WAIT, |m| {
        m.get("job_value", &[]) == Some(2.0)
    });
    // And it is deleted once old enough, with the lock free.
    let deadline = Instant::now() + WAIT;
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "not deleted; log:\n{}",
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn http_endpoints_methods_formats_and_limits() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_atomic(
        dir,
        "a.prom",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n",
    );
    let exporter = common::start(&[dir_arg(dir), "--compat.node-exporter".to_string()]);

    assert_eq!(exporter.get("/-/healthy", &[]).status, 200);
    assert_eq!(exporter.get("/-/ready", &[]).status, 200);
    assert_eq!(exporter.get("/nope", &[]).status, 404);
    let html = exporter.get("/", &[]);
    assert_eq!(html.status, 200);
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.text().contains("a.prom"));
    let json = exporter.get("/api/v1/files", &[]);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(json["ready"], true);
    assert_eq!(json["files"][0]["series"], 1);
    assert_eq!(json["files"][0]["state"], "fresh");
    assert!(json["files"][0]["age_seconds"].as_f64().unwrap() < 60.0);

    // Classic by default.
    let plain = exporter.get("/metrics", &[]);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
    );
    assert_eq!(plain.header("content-encoding"), None);
    let m = Metrics::parse(&plain.text());
    assert_eq!(m.get("a_total", &[("x", "1")]), Some(3.0));
    assert_eq!(m.get("node_textfile_scrape_error", &[]), Some(0.0));
    assert!(
        m.file("node_textfile_mtime_seconds", &dir.join("a.prom"))
            .is_some()
    );
    assert!(
        m.get(
            "promdrop_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", "unknown"),
                ("rustversion", "unknown")
            ]
        )
        .is_some()
    );
    assert!(m.get("process_resident_memory_bytes", &[]).unwrap() > 1e6);

    // OpenMetrics when the scraper prefers it, as Prometheus does.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = exporter.get("/metrics", &[("Accept", prometheus_accept)]);
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores")
    );
    let om_text = om.text();
    assert!(om_text.ends_with("# EOF\n"));
    assert!(
        om_text.contains("# TYPE a counter\na_total{x=\"1\"} 3\n"),
        "{om_text}"
    );

    // Gzip when accepted: the same text, compressed (process metrics aside).
    let deadline = Instant::now() + WAIT;
    let gz = loop {
        let r = exporter.get("/metrics", &[("Accept-Encoding", "gzip")]);
        if r.header("content-encoding") == Some("gzip") {
            break r;
        }
        assert!(Instant::now() < deadline, "gzip never served");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        gz.header("content-length"),
        Some(gz.body.len().to_string().as_str())
    );
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    let strip = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.contains("process_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&unzipped), strip(&plain.text()));
    let om_gz = exporter.get(
        "/metrics",
        &[("Accept", prometheus_accept), ("Accept-Encoding", "gzip")],
    );
    if om_gz.header("content-encoding") == Some("gzip") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&om_gz.body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.ends_with("# EOF\n"));
    }

    // HEAD: the same headers, no body.
    let head = exporter.try_request("HEAD", "/-/healthy", &[]).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("8"));
    assert!(head.body.is_empty());

    // Only GET and HEAD.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = exporter.try_request(method, "/metrics", &[]).unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }

    // Oversized request heads are refused.
    let huge = "x".repeat(64 * 1024);
    let raw = exporter
        .raw(format!("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\n\r\n").as_bytes())
        .unwrap_or_default();
    let refused = common::parse_response(&raw).map(|r| r.status).unwrap_or(0);
    assert!(
        refused == 431 || refused == 0,
        "status {refused} for a 64 KiB header"
    );

    // A client that sends nothing is not kept forever (hyper's header read timeout is 10 s;
    // only check that the server still answers others meanwhile).
    let _idle = std::net::TcpStream::connect(&exporter.address).unwrap();
    assert_eq!(exporter.get("/-/healthy", &[]).status, 200);
}

#[test]
fn source_label_and_timestamp_policies() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_atomic(dir, "a.prom", "a_value{job=\"x\"} 1\n");
    write_atomic(dir, "ts.prom", "ts_value 1 1700000000000\n");

    let exporter = common::start(&[dir_arg(dir), arg("source-label", "source_file")]);
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(
        m.get("a_value", &[("job", "x"), ("source_file", "a.prom")]),
        Some(1.0)
    );
    // Rejected by default, as node_exporter does.
    assert_eq!(
        m.file("promdrop_file_error", &dir.join("ts.prom")),
        Some(1.0)
    );
    assert!(m.with_prefix("ts_value").is_empty());
    drop(exporter);

    let exporter = common::start(&[dir_arg(dir), arg("timestamps", "strip")]);
    let body = exporter.metrics();
    assert!(body.contains("\nts_value 1\n"), "{body}");
    drop(exporter);

    let exporter = common::start(&[dir_arg(dir), arg("timestamps", "keep")]);
    let body = exporter.metrics();
    assert!(body.contains("\nts_value 1 1700000000000\n"), "{body}");
}

#[test]
fn sigterm_shuts_down_gracefully_and_bad_flags_fail_readably() {
    let tmp = tempdir();
    let exporter = common::start(&[dir_arg(tmp.path())]);
    let status = exporter.terminate();
    assert!(status.success(), "exit status {status:?}");

    let out = std::process::Command::new(common::BINARY)
        .args(["--web.listen-address=nonsense", "--textfile.directory=/tmp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--web.listen-address"), "{stderr}");

    // A port already taken: one readable line naming the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(common::BINARY)
        .args([
            format!("--web.listen-address={address}"),
            dir_arg(tmp.path()),
            "--log.format=json".into(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("promdrop-exporter: ") && last.contains(&address),
        "{stderr}"
    );
    // JSON logs are JSON.
    let first = stderr.lines().next().unwrap_or("");
    let parsed: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(parsed["level"], "ERROR");
}

/// `--max-total-bytes` and `--max-total-series`: files are admitted in serving order (by
/// name here); one that does not fit is reported (promdrop_file_error, the status API) and
/// not served, and is served again once it fits.
#[test]
fn the_directory_caps_refuse_files_in_serving_order() {
    let tmp = tempdir();
    let dir = tmp.path();
    let file = |job: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("capped_value{{job=\"{job}\",i=\"{i:04}\"}} {i}\n"))
            .collect()
    };
    let (a, b, c) = (file("a", 10), file("b", 10), file("c", 10));
    write_atomic(dir, "a.prom", &a);
    write_atomic(dir, "b.prom", &b);
    write_atomic(dir, "c.prom", &c);
    // Room for a and b (by bytes), not for c.
    let cap = a.len() + b.len() + c.len() / 2;
    let exporter = common::start(&[dir_arg(dir), arg("max-total-bytes", cap)]);
    let m = Metrics::parse(&exporter.metrics());
    let served = |m: &Metrics, job: &str| {
        m.with_prefix("capped_value")
            .iter()
            .filter(|((_, labels), _)| labels.get("job").map(String::as_str) == Some(job))
            .count()
    };
    assert_eq!(
        (served(&m, "a"), served(&m, "b"), served(&m, "c")),
        (10, 10, 0)
    );
    assert_eq!(
        m.file("promdrop_file_error", &dir.join("c.prom")),
        Some(1.0)
    );
    assert_eq!(
        m.file("promdrop_file_error", &dir.join("a.prom")),
        Some(0.0)
    );
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(json.contains("--max-total-bytes="), "{json}");
    // a.prom goes: c.prom fits and is served.
    std::fs::remove_file(dir.join("a.prom")).unwrap();
    let m = exporter.wait_for("c.prom served", Duration::from_secs(10), |m| {
        m.file("promdrop_file_error", &dir.join("c.prom")) == Some(0.0)
    });
    assert_eq!((served(&m, "b"), served(&m, "c")), (10, 10));
    drop(exporter);

    // By series: 25 fit, so a and b (20) are served and c is not.
    write_atomic(dir, "a.prom", &a);
    let exporter = common::start(&[dir_arg(dir), arg("max-total-series", 25)]);
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(
        (served(&m, "a"), served(&m, "b"), served(&m, "c")),
        (10, 10, 0)
    );
    assert_eq!(
        m.file("promdrop_file_error", &dir.join("c.prom")),
        Some(1.0)
    );
}

/// The engine cuts again only the chunks of the files that changed (`Engine::rechunk`): files
/// added before the first and after the last, a run of files removed, several files of one
/// chunk rewritten at once, the first file removed, every file rewritten. After each step
/// `/metrics` serves exactly the files there, at their last values. (Debug builds, as tests
/// run the binary, also check at every publication that the chunks kept equal what cutting
/// every file gives, and stop publishing if not.)
#[test]
fn chunks_follow_files_added_removed_and_rewritten_anywhere_in_serving_order() {
    use std::collections::BTreeMap;
    let tmp = tempdir();
    let dir = tmp.path();
    let text = |job: &str, value: u64| {
        format!(
            "# HELP chunked_value A value.\n# TYPE chunked_value gauge\nchunked_value{{job=\"{job}\"}} {value}\n"
        )
    };
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let put = |expected: &mut BTreeMap<String, u64>, job: &str, value: u64| {
        write_atomic(dir, &format!("{job}.prom"), &text(job, value));
        expected.insert(job.to_string(), value);
    };
    for i in 0..60 {
        put(&mut expected, &format!("f{i:03}"), 1);
    }
    let exporter = common::start(&[dir_arg(dir)]);
    let served = |m: &Metrics| -> BTreeMap<String, u64> {
        m.with_prefix("chunked_value")
            .iter()
            .filter_map(|((_, labels), v)| Some((labels.get("job")?.clone(), *v as u64)))
            .collect()
    };
    let check = |step: &str, expected: &BTreeMap<String, u64>| {
        exporter.wait_for(step, Duration::from_secs(10), |m| served(m) == *expected);
    };
    check("the first publication", &expected);
    put(&mut expected, "a000", 7);
    check("a file before the first", &expected);
    // A last file that ends its chunk by its path's hash: the next file after it starts a
    // chunk of its own (the cut must go past the old end to reach it).
    let ends = |job: &str| {
        promdrop_exporter::exposition::ends_chunk(
            &dir.join(format!("{job}.prom")),
            promdrop_exporter::exposition::CHUNK_BITS,
        )
    };
    let ender = (0..10_000)
        .map(|n| format!("y{n:04}"))
        .find(|job| ends(job))
        .expect("a name whose path ends a chunk");
    put(&mut expected, &ender, 5);
    check("a last file that ends its chunk", &expected);
    put(&mut expected, "z999", 8);
    check("a file after the last", &expected);
    for i in 10..31 {
        let job = format!("f{i:03}");
        std::fs::remove_file(dir.join(format!("{job}.prom"))).unwrap();
        expected.remove(&job);
    }
    check("a run of files removed", &expected);
    for i in 40..45 {
        put(&mut expected, &format!("f{i:03}"), 2);
    }
    check("five neighbours rewritten at once", &expected);
    std::fs::remove_file(dir.join("a000.prom")).unwrap();
    expected.remove("a000");
    check("the first file removed", &expected);
    let jobs: Vec<String> = expected.keys().cloned().collect();
    for job in &jobs {
        put(&mut expected, job, 3);
    }
    put(&mut expected, "f020", 4);
    check("every file rewritten, and a removed one back", &expected);
}

#[test]
fn a_listing_that_ran_while_files_changed_reads_no_file_twice_and_drops_none() {
    // Directories are listed in the background while the changes events name go on being
    // read. A listing made before a file was rewritten says nothing new of it: it must not
    // read the file again (nor drop it). A rescan every 10 ms over 1,000 files keeps a listing
    // running nearly all the time.
    const FILES: usize = 1000;
    const REWRITES: usize = 150;
    let tmp = tempdir();
    let dir = tmp.path();
    let name = |i: usize| format!("f{i:04}.prom");
    for i in 0..FILES {
        write_atomic(dir, &name(i), &format!("listed_value{{i=\"{i}\"}} 0\n"));
    }
    let exporter = common::start(&[dir_arg(dir), arg("rescan-interval", "10ms")]);
    let reloads = |m: &Metrics| m.get("promdrop_reloads_total", &[("result", "success")]);
    let served = |m: &Metrics| m.with_prefix("listed_value").len();
    let m = exporter.wait_for("every file", WAIT, |m| served(m) == FILES);
    let before = reloads(&m).expect("promdrop_reloads_total");
    for n in 1..=REWRITES {
        let i = (n * 7) % FILES;
        write_atomic(dir, &name(i), &format!("listed_value{{i=\"{i}\"}} {n}\n"));
        std::thread::sleep(Duration::from_millis(10));
        if n % 50 == 0 {
            let m = Metrics::parse(&exporter.metrics());
            assert_eq!(served(&m), FILES, "a file went missing after {n} rewrites");
        }
    }
    let last = (REWRITES * 7) % FILES;
    let last = last.to_string();
    let m = exporter.wait_for("the last rewrite", WAIT, |m| {
        m.get("listed_value", &[("i", &last)]) == Some(REWRITES as f64)
    });
    assert_eq!(served(&m), FILES);
    // One read a rewrite at most (two rewrites of a file close together can be one read).
    let after = reloads(&m).expect("promdrop_reloads_total");
    assert!(
        after - before <= REWRITES as f64,
        "{} reads for {REWRITES} rewrites",
        after - before
    );
}

#[test]
fn a_file_renamed_into_place_is_served_without_waiting_for_the_debounce() {
    // A rename ends an atomic write: the file is complete, so it is looked at at once. A file
    // written in place may be half written: its events are still gathered for the debounce.
    let tmp = tempdir();
    let dir = tmp.path();
    let debounce = Duration::from_secs(4);
    let exporter = common::start(&[
        dir_arg(dir),
        arg("watch.debounce", "4s"),
        arg("rescan-interval", "1h"),
    ]);
    // The watch's first event (a look at the whole directory, for what happened before it was
    // set) waits for the debounce: past it before measuring.
    write_atomic(dir, "first.prom", "# TYPE first_up gauge\nfirst_up 1\n");
    exporter.wait_for("the first file", WAIT, |m| {
        m.get("first_up", &[]) == Some(1.0)
    });

    let written = Instant::now();
    write_atomic(
        dir,
        "renamed.prom",
        "# TYPE renamed_up gauge\nrenamed_up 1\n",
    );
    exporter.wait_for("the renamed file", WAIT, |m| {
        m.get("renamed_up", &[]) == Some(1.0)
    });
    let took = written.elapsed();
    assert!(
        took < debounce,
        "a file renamed into place took {took:?}, the debounce is {debounce:?}"
    );

    let written = Instant::now();
    std::fs::write(
        dir.join("in_place.prom"),
        "# TYPE in_place_up gauge\nin_place_up 1\n",
    )
    .unwrap();
    let early = exporter.metrics();
    // Only meaningful if this scrape came well within the debounce (a slow machine may not).
    if written.elapsed() < debounce / 2 {
        assert!(
            !early.contains("in_place_up"),
            "a file written in place was served before the debounce ended:\n{early}"
        );
    }
    exporter.wait_for("the file written in place", WAIT, |m| {
        m.get("in_place_up", &[]) == Some(1.0)
    });
}

#[test]
fn a_scrape_serves_every_change_made_before_it_whatever_the_max_delay() {
    // Changes are gathered for --watch.max-delay (here a minute) when nothing asks for them;
    // a scrape asks, and gets every complete change made before it, in one publication.
    let tmp = tempdir();
    let dir = tmp.path();
    let exporter = common::start(&[
        dir_arg(dir),
        arg("watch.max-delay", "1m"),
        arg("rescan-interval", "1h"),
    ]);
    for round in 1..=5 {
        for job in 0..4 {
            write_atomic(
                dir,
                &format!("job_{job}.prom"),
                &format!("# TYPE churn_round gauge\nchurn_round{{job=\"j{job}\"}} {round}\n"),
            );
        }
        // The last rename's event is read by the watcher within milliseconds; a scrape
        // that comes after it must show all four files at this round, in a few.
        let asked = Instant::now();
        exporter.wait_for("this round's four files", Duration::from_secs(5), |m| {
            (0..4).all(|job| {
                m.get("churn_round", &[("job", &format!("j{job}"))]) == Some(round as f64)
            })
        });
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "round {round}: the changes were served after {took:?}; the max delay is a minute"
        );
    }
    // A file written in place (it may be half written) waits for its debounce, but does not
    // hold the scrape: the scrape answers at once with the rest.
    drop(exporter);
    let exporter = common::start(&[
        dir_arg(dir),
        arg("watch.max-delay", "1m"),
        arg("watch.debounce", "4s"),
        arg("rescan-interval", "1h"),
    ]);
    exporter.wait_for("the files at start", WAIT, |m| {
        m.get("churn_round", &[("job", "j0")]) == Some(5.0)
    });
    std::fs::write(
        dir.join("in_place.prom"),
        "# TYPE in_place_up gauge\nin_place_up 1\n",
    )
    .unwrap();
    // A scrape while it waits: the engine now looks at the batch at the debounce's end, and
    // must still hear the scrapes that come after a rename.
    std::thread::sleep(Duration::from_millis(100));
    assert!(!exporter.metrics().contains("in_place_up"));
    write_atomic(
        dir,
        "job_0.prom",
        "# TYPE churn_round gauge\nchurn_round{job=\"j0\"} 6\n",
    );
    let asked = Instant::now();
    exporter.wait_for("the renamed file beside one written in place", WAIT, |m| {
        m.get("churn_round", &[("job", "j0")]) == Some(6.0)
    });
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "a rename waited {:?} behind a file written in place",
        asked.elapsed()
    );
    exporter.wait_for("the file written in place, after its debounce", WAIT, |m| {
        m.get("in_place_up", &[]) == Some(1.0)
    });
}
