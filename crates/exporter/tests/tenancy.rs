//! Tenancy and identity from the path, on the real binary and real directories: one namespace's
//! files cannot replace, drop or change another's series or families; per-namespace caps; and
//! deletion of files whose writer ran under another UID.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Exporter, Metrics, arg, dir_arg, unix_now, write_atomic};

const WAIT: Duration = Duration::from_secs(10);

fn tenancy_args(dir: &Path) -> Vec<String> {
    vec![
        dir_arg(dir),
        "--textfile.tenancy".to_string(),
        "--textfile.job-name-from-path".to_string(),
        arg("rescan-interval", "300ms"),
    ]
}

/// Every data series served with `namespace=ns`, as `name{labels} value` lines.
fn series_of(m: &Metrics, ns: &str) -> BTreeMap<String, f64> {
    m.samples
        .iter()
        .filter(|((_, labels), _)| labels.get("namespace").map(String::as_str) == Some(ns))
        .map(|((name, labels), v)| (format!("{name}{labels:?}"), *v))
        .collect()
}

/// The victim's file, as promdrop-writer writes it.
fn victim_file(now: f64, bytes: u32) -> String {
    format!(
        "# promdrop: written_at={:.3}\n\
         # HELP backup_bytes Bytes backed up.\n# TYPE backup_bytes gauge\n\
         backup_bytes{{target=\"db\",job_name=\"backup\"}} {bytes}\n\
         # HELP promdrop_job_success Whether the last run succeeded.\n# TYPE promdrop_job_success gauge\n\
         promdrop_job_success{{job_name=\"backup\"}} 1\n",
        now - 5.0
    )
}

#[test]
fn a_hostile_namespace_tries_every_spoof_and_the_victims_series_are_served_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let victim = dir.join("victim");
    let hostile = dir.join("hostile");
    std::fs::create_dir(&victim).unwrap();
    std::fs::create_dir(&hostile).unwrap();
    let now = unix_now();
    write_atomic(&victim, "backup.prom", &victim_file(now, 100));
    let exporter = common::start(&tenancy_args(dir));
    let before = Metrics::parse(&exporter.metrics());
    let victims = series_of(&before, "victim");
    assert_eq!(
        before.get(
            "backup_bytes",
            &[
                ("target", "db"),
                ("job_name", "backup"),
                ("namespace", "victim")
            ]
        ),
        Some(100.0),
        "{}",
        before.body
    );
    assert_eq!(victims.len(), 2, "{victims:?}");
    // The file's age counts from the writer's written_at, which the dashboard reads.
    let reference = before
        .file(
            "promdrop_file_reference_time_seconds",
            &victim.join("backup.prom"),
        )
        .expect("promdrop_file_reference_time_seconds");
    assert!(
        (reference - (now - 5.0)).abs() < 0.01,
        "{reference} vs {now}"
    );

    // The hostile namespace, all at once:
    // - a file that sorts first and declares the victim's family with another TYPE;
    write_atomic(
        &hostile,
        "aaa.prom",
        "# TYPE backup_bytes counter\nbackup_bytes{target=\"db\"} 666\n# TYPE hostile_up gauge\nhostile_up 1\n",
    );
    // - the same job name, newer (to win "newer wins"), with the victim's labels spelled out,
    //   and a job it does not own;
    write_atomic(
        &hostile,
        "backup.prom",
        &format!(
            "# promdrop: written_at={:.3}\n# TYPE backup_bytes gauge\n\
             backup_bytes{{target=\"db\",job_name=\"backup\",namespace=\"victim\"}} 999\n\
             # TYPE promdrop_job_success gauge\n\
             promdrop_job_success{{job_name=\"backup\",namespace=\"victim\"}} 0\n\
             promdrop_job_success{{job_name=\"theirs\"}} 0\n",
            now + 3600.0
        ),
    );
    // - a file speaking for another job, with exported_ labels preset;
    write_atomic(
        &hostile,
        "theirs.prom",
        "# TYPE promdrop_job_success gauge\n\
         promdrop_job_success{job_name=\"backup\",exported_namespace=\"victim\",exported_job_name=\"backup\"} 0\n",
    );
    // - a link to the victim's file, and files in the shared root and in a nested directory.
    symlink("../victim/backup.prom", hostile.join("stolen.prom")).unwrap();
    write_atomic(dir, "root.prom", "backup_bytes{namespace=\"victim\"} 1\n");
    std::fs::create_dir(hostile.join("victim")).unwrap();
    write_atomic(&hostile.join("victim"), "backup.prom", "x 1\n");

    let m = exporter.wait_for("the hostile files", WAIT, |m| {
        m.get(
            "hostile_up",
            &[("namespace", "hostile"), ("job_name", "aaa")],
        ) == Some(1.0)
            && m.file("promdrop_file_series", &hostile.join("theirs.prom")) == Some(1.0)
    });
    assert_eq!(series_of(&m, "victim"), victims, "{}", m.body);
    assert_eq!(m.body.matches("# TYPE backup_bytes ").count(), 1);
    assert!(m.body.contains("# TYPE backup_bytes gauge\n"), "{}", m.body);
    // The hostile namespace's series are its own: namespace and job_name from the path, what
    // the file claimed kept as exported_*.
    assert_eq!(
        m.get(
            "backup_bytes",
            &[
                ("target", "db"),
                ("job_name", "backup"),
                ("namespace", "hostile"),
                ("exported_namespace", "victim"),
            ]
        ),
        Some(999.0),
        "{}",
        m.body
    );
    assert_eq!(
        m.get(
            "promdrop_job_success",
            &[
                ("job_name", "backup"),
                ("namespace", "hostile"),
                ("exported_namespace", "victim")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.get(
            "promdrop_job_success",
            &[
                ("job_name", "backup"),
                ("namespace", "hostile"),
                ("exported_job_name", "theirs")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.get(
            "promdrop_job_success",
            &[
                ("job_name", "theirs"),
                ("namespace", "hostile"),
                ("exported_job_name", "backup"),
                ("exported_exported_job_name", "backup"),
                ("exported_namespace", "victim"),
            ]
        ),
        Some(0.0),
        "{}",
        m.body
    );
    // The later TYPE is withheld from the hostile namespace (and counted), the rest served.
    assert_eq!(
        m.get(
            "backup_bytes",
            &[
                ("target", "db"),
                ("namespace", "hostile"),
                ("job_name", "aaa")
            ]
        ),
        None
    );
    assert_eq!(
        m.get("promdrop_current_conflicts", &[("kind", "type")]),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "promdrop_current_conflicts",
            &[("kind", "duplicate_series")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.file("promdrop_file_series", &hostile.join("stolen.prom")),
        None
    );
    assert_eq!(m.file("promdrop_file_series", &dir.join("root.prom")), None);
    // Refused entries are listed on the status page (written last: wait for them).
    let deadline = Instant::now() + WAIT;
    loop {
        let json = exporter.get("/api/v1/files", &[]).text();
        let missing: Vec<&str> = ["stolen.prom", "root.prom"]
            .into_iter()
            .filter(|r| !json.contains(r))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing:?} not reported: {json}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The victim writes again: still its family, its values.
    write_atomic(&victim, "backup.prom", &victim_file(unix_now(), 200));
    let m = exporter.wait_for("the victim's new value", WAIT, |m| {
        m.get(
            "backup_bytes",
            &[
                ("target", "db"),
                ("job_name", "backup"),
                ("namespace", "victim"),
            ],
        ) == Some(200.0)
    });
    assert_eq!(series_of(&m, "victim").len(), 2);
    assert!(m.body.contains("# TYPE backup_bytes gauge\n"));

    // OpenMetrics shows the same.
    let om = exporter
        .get(
            "/metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
        )
        .text();
    assert!(
        om.contains("backup_bytes{target=\"db\",job_name=\"backup\",namespace=\"victim\"} 200"),
        "{om}"
    );
    assert_eq!(om.matches("# TYPE backup_bytes ").count(), 1, "{om}");
}

#[test]
fn a_type_conflict_between_namespaces_at_start_up_is_withheld_from_both_until_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (ns, ty) in [("aaa", "counter"), ("zzz", "gauge")] {
        std::fs::create_dir(dir.join(ns)).unwrap();
        write_atomic(
            &dir.join(ns),
            "job.prom",
            &format!("# TYPE shared {ty}\nshared 1\n# TYPE {ns}_own gauge\n{ns}_own 2\n"),
        );
    }
    let exporter = common::start(&tenancy_args(dir));
    let m = Metrics::parse(&exporter.metrics());
    // Neither wins by sorting first: both withheld, both reported; the rest is served.
    assert!(!m.body.contains("shared"), "{}", m.body);
    assert_eq!(
        m.get("aaa_own", &[("namespace", "aaa"), ("job_name", "job")]),
        Some(2.0)
    );
    assert_eq!(
        m.get("zzz_own", &[("namespace", "zzz"), ("job_name", "job")]),
        Some(2.0)
    );
    assert_eq!(
        m.get("promdrop_current_conflicts", &[("kind", "type")]),
        Some(2.0)
    );
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "type")]),
        Some(2.0)
    );
    // One side gives way: the other's family is served again, the gauge falls to 0 (the
    // counter keeps its count).
    write_atomic(
        &dir.join("aaa"),
        "job.prom",
        "# TYPE aaa_own gauge\naaa_own 2\n",
    );
    let m = exporter.wait_for("the conflict resolved", WAIT, |m| {
        m.get("shared", &[("namespace", "zzz"), ("job_name", "job")]) == Some(1.0)
    });
    assert_eq!(
        m.get("promdrop_current_conflicts", &[("kind", "type")]),
        Some(0.0)
    );
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "type")]),
        Some(2.0)
    );
}

#[test]
fn one_namespace_cannot_starve_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("noisy")).unwrap();
    std::fs::create_dir(dir.join("quiet")).unwrap();
    for i in 0..3 {
        write_atomic(&dir.join("noisy"), &format!("j{i}.prom"), "a 1\nb 1\n");
    }
    write_atomic(&dir.join("noisy"), "k.prom", "c 1\n");
    write_atomic(&dir.join("quiet"), "j.prom", "a 1\nb 1\n");
    let mut args = tenancy_args(dir);
    args.push(arg("textfile.tenant.max-files", 3));
    args.push(arg("textfile.tenant.max-series", 5));
    args.push(arg("textfile.tenant.max-bytes", "1KiB"));
    let exporter = common::start(&args);
    let m = Metrics::parse(&exporter.metrics());
    // noisy: j0, j1 (4 series); j2 would make 6 series; k fits (5 series, 3 files).
    for (job, served) in [("j0", true), ("j1", true), ("j2", false), ("k", true)] {
        let name = if job == "k" { "c" } else { "a" };
        assert_eq!(
            m.get(name, &[("namespace", "noisy"), ("job_name", job)])
                .is_some(),
            served,
            "{job}: {}",
            m.body
        );
    }
    assert_eq!(
        m.get("a", &[("namespace", "quiet"), ("job_name", "j")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("promdrop_tenant_files_refused", &[("namespace", "noisy")]),
        Some(1.0)
    );
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(json.contains("--textfile.tenant.max-series=5"), "{json}");

    // A fourth file goes over max-files; a big one over max-bytes.
    write_atomic(&dir.join("noisy"), "l.prom", "d 1\n");
    write_atomic(&dir.join("quiet"), "big.prom", &"# padding\n".repeat(120));
    let m = exporter.wait_for("the new files", WAIT, |m| {
        m.get("promdrop_tenant_files_refused", &[("namespace", "noisy")]) == Some(2.0)
            && m.get("promdrop_tenant_files_refused", &[("namespace", "quiet")]) == Some(1.0)
    });
    assert_eq!(
        m.get("a", &[("namespace", "quiet"), ("job_name", "j")]),
        Some(1.0)
    );
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(json.contains("--textfile.tenant.max-files=3"), "{json}");
    assert!(json.contains("--textfile.tenant.max-bytes=1024"), "{json}");
}

#[test]
fn job_name_from_path_without_tenancy_and_indexed_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_atomic(
        dir,
        "shard-2.prom",
        "promdrop_job_success{job_name=\"shard\",completion_index=\"2\"} 1\n",
    );
    write_atomic(
        dir,
        "job-7.prom",
        "promdrop_job_success{job_name=\"other\"} 1\n",
    );
    let exporter = common::start(&[dir_arg(dir), "--textfile.job-name-from-path".into()]);
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(
        m.get(
            "promdrop_job_success",
            &[("job_name", "shard"), ("completion_index", "2")]
        ),
        Some(1.0),
        "{}",
        m.body
    );
    assert_eq!(
        m.get(
            "promdrop_job_success",
            &[("job_name", "job-7"), ("exported_job_name", "other")]
        ),
        Some(1.0),
        "{}",
        m.body
    );
    assert!(!m.body.contains("namespace="), "{}", m.body);
}

/// Runs `command` with `sh -c` as `uid`.
fn sh_as(uid: u32, command: &str) -> std::process::Child {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "sh",
            "-c",
            command,
        ])
        .spawn()
        .unwrap_or_else(|e| panic!("setpriv (util-linux) is needed for this test: {e}"))
}

/// Starts the exporter as UID 65534 (nobody), through a script that runs it under setpriv
/// (`exec` all the way: the PID the harness kills is the exporter's).
fn start_as_nobody(scripts: &Path, args: &[String]) -> Exporter {
    let wrapper = scripts.join("exporter-as-nobody");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh
exec setpriv --reuid=65534 --regid=65534 --clear-groups '{}' \"$@\"
",
            common::BINARY
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    Exporter::launcher(&wrapper)
        .args(args)
        .args(&["--log.level=debug"])
        .start()
}

#[test]
fn deletion_takes_the_lock_of_a_writer_of_another_uid_and_counts_failures() {
    assert!(
        nix_is_root(),
        "this test runs writers and the exporter under other UIDs: run it as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("textfiles");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("job.prom");
    // A writer running as UID 1000 leaves its lock file (0644, its own) and holds the lock
    // while the exporter, as UID 65534, finds the file due for deletion.
    let mut writer = sh_as(
        1000,
        &format!(
            "cd '{}' && umask 022 && printf 'job_value 1\\n' > .job.prom.t && mv .job.prom.t job.prom \
             && : > .job.prom.lock && flock .job.prom.lock sleep 2",
            dir.display()
        ),
    );
    let deadline = Instant::now() + WAIT;
    while !path.exists() || !dir.join(".job.prom.lock").exists() {
        assert!(Instant::now() < deadline, "the writer did not write");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200)); // flock taken
    let scripts = tempfile::tempdir().unwrap();
    let exporter = start_as_nobody(
        scripts.path(),
        &[dir_arg(&dir), arg("delete-after", "300ms")],
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(path.exists(), "deleted while the writer held the lock");
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(
        m.get("promdrop_file_delete_errors_total", &[]),
        Some(0.0),
        "the lock file of another UID must be opened read-only: {}",
        exporter.log()
    );
    assert!(writer.wait().unwrap().success());
    let deadline = Instant::now() + WAIT;
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "not deleted after the lock was released; log:\n{}",
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(exporter);

    // A sticky directory: UID 65534 may not remove UID 1000's file. The failure is counted.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut writer = sh_as(
        1000,
        &format!(
            "cd '{}' && printf 'job_value 2\\n' > .job.prom.t && mv .job.prom.t job.prom",
            dir.display()
        ),
    );
    assert!(writer.wait().unwrap().success());
    let exporter = start_as_nobody(
        scripts.path(),
        &[dir_arg(&dir), arg("delete-after", "300ms")],
    );
    let m = exporter.wait_for("a failed deletion", WAIT, |m| {
        m.get("promdrop_file_delete_errors_total", &[]) == Some(1.0)
    });
    assert_eq!(m.get("job_value", &[]), Some(2.0));
    assert!(path.exists());
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn a_namespaces_directory_is_watched_without_waiting_for_a_rescan() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("team-a")).unwrap();
    let exporter = common::start(&[
        dir_arg(dir),
        "--textfile.tenancy".to_string(),
        arg("rescan-interval", "1h"),
    ]);
    // inotify on the namespace's directory: seen long before the next rescan.
    write_atomic(&dir.join("team-a"), "job.prom", "seen 1\n");
    exporter.wait_for("a change inside team-a/", WAIT, |m| {
        m.get("seen", &[("namespace", "team-a")]) == Some(1.0)
    });
}

/// Finding 8 with tenancy: bucket bounds are compared within a namespace only (every series
/// carries its namespace, so two namespaces' histograms never share a series), and a family
/// whose names clash once rendered with another namespace's family (an OpenMetrics counter
/// `bar`, a classic counter `bar_total`) follows the cross-namespace TYPE rule: the namespace
/// that declared its family first keeps it, whatever the names' order.
#[test]
fn buckets_differ_only_within_a_namespace_and_a_name_clash_goes_by_seniority() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let histogram = |le: &str, job: &str| {
        format!(
            "# TYPE h histogram\nh_bucket{{le=\"{le}\",j=\"{job}\"}} 1\n\
             h_bucket{{le=\"+Inf\",j=\"{job}\"}} 2\nh_sum{{j=\"{job}\"}} 3\nh_count{{j=\"{job}\"}} 2\n"
        )
    };
    for ns in ["aaa", "zzz"] {
        std::fs::create_dir(dir.join(ns)).unwrap();
    }
    write_atomic(&dir.join("aaa"), "a.prom", &histogram("0.25", "a"));
    write_atomic(
        &dir.join("zzz"),
        "job.prom",
        &format!(
            "{}# TYPE bar_total counter\nbar_total 1\n",
            histogram("1", "z")
        ),
    );
    write_atomic(&dir.join("zzz"), "other.prom", &histogram("0.5", "o"));
    let exporter = common::start(&tenancy_args(dir));
    let m = Metrics::parse(&exporter.metrics());
    // Other namespaces' buckets are served side by side; within zzz the later file's are not.
    let bucket = |m: &Metrics, ns: &str, job: &str, le: &str| {
        m.get(
            "h_bucket",
            &[
                ("le", le),
                ("j", job),
                ("namespace", ns),
                ("job_name", if ns == "aaa" { "a" } else { job_file(job) }),
            ],
        )
    };
    fn job_file(job: &str) -> &'static str {
        if job == "z" { "job" } else { "other" }
    }
    assert_eq!(bucket(&m, "aaa", "a", "0.25"), Some(1.0), "{}", m.body);
    assert_eq!(bucket(&m, "zzz", "z", "1"), Some(1.0), "{}", m.body);
    assert_eq!(bucket(&m, "zzz", "o", "0.5"), None, "{}", m.body);
    assert_eq!(
        m.get("promdrop_current_conflicts", &[("kind", "buckets")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("promdrop_current_conflicts", &[("kind", "type")]),
        Some(0.0)
    );

    // aaa (first in name order) now declares the OpenMetrics counter bar, whose names clash
    // with zzz's classic bar_total: zzz declared first and keeps it.
    write_atomic(
        &dir.join("aaa"),
        "new.prom",
        "# TYPE bar counter\nbar_total 5\n# EOF\n",
    );
    let m = exporter.wait_for("the clash counted", WAIT, |m| {
        m.get("promdrop_current_conflicts", &[("kind", "type")]) == Some(1.0)
    });
    assert_eq!(
        m.get("bar_total", &[("namespace", "zzz"), ("job_name", "job")]),
        Some(1.0),
        "{}",
        m.body
    );
    assert_eq!(
        m.get("bar_total", &[("namespace", "aaa"), ("job_name", "new")]),
        None,
        "{}",
        m.body
    );
    assert_eq!(m.body.matches("# TYPE bar_total ").count(), 1, "{}", m.body);
    assert_eq!(
        m.get("promdrop_current_conflicts", &[("kind", "buckets")]),
        Some(1.0)
    );
    let om = exporter
        .get(
            "/metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
        )
        .text();
    assert_eq!(om.matches("# TYPE bar counter").count(), 1, "{om}");
    assert!(!om.contains("namespace=\"aaa\",job_name=\"new\""), "{om}");
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(
        json.contains("new.prom") && json.contains("\"kept_family\": \"bar_total\""),
        "{json}"
    );
}
