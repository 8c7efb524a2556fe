//! `promdrop inspect` run as a real process on real directories.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn promdrop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promdrop"))
        .args(args)
        .output()
        .expect("run promdrop")
}

fn write(dir: &Path, name: &str, contents: &str, age: Duration) {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write fixture");
    let mtime = SystemTime::now() - age;
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

fn rows(output: &Output) -> Vec<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    value.as_array().expect("an array of files").clone()
}

fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["file"].as_str().is_some_and(|f| f.ends_with(name)))
        .unwrap_or_else(|| panic!("no row for {name} in {rows:?}"))
}

#[test]
fn states_follow_the_exporter_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "fresh.prom", "up 1\n", Duration::ZERO);
    write(d, "stale.prom", "up 2\n", Duration::from_secs(7200));
    write(d, "expired.prom", "up 3\n", Duration::from_secs(90_000));
    write(d, "broken.prom", "up{ 1\n", Duration::ZERO);
    write(d, ".hidden.prom", "up 4\n", Duration::ZERO);
    write(d, "notes.txt", "not served\n", Duration::ZERO);
    // The writer's header overrides the flags: written an hour ago, stale after 10 minutes.
    let written_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        - 3600.0;
    write(
        d,
        "header.prom",
        &format!("# promdrop: written_at={written_at:.3} stale_after=10m\nup 5\nup2 6\n"),
        Duration::ZERO,
    );
    std::os::unix::fs::symlink("/etc/hostname", d.join("escape.prom")).expect("symlink");

    let dir_arg = d.to_str().expect("utf-8 path");
    let out = promdrop(&["inspect", "--json", "--expire-after", "24h", dir_arg]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&out);
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert_eq!(row(&rows, "/fresh.prom")["state"], "fresh");
    assert_eq!(row(&rows, "/fresh.prom")["series"], 1);
    assert_eq!(row(&rows, "/stale.prom")["state"], "stale");
    assert_eq!(row(&rows, "/expired.prom")["state"], "expired");
    let broken = row(&rows, "/broken.prom");
    assert_eq!(broken["state"], "invalid");
    assert!(
        broken["error"].as_str().expect("error").contains(":1:"),
        "{broken}"
    );
    let header = row(&rows, "/header.prom");
    assert_eq!(header["state"], "stale", "{header}");
    assert_eq!(header["series"], 2);
    let age = header["age_seconds"].as_f64().expect("age");
    assert!((3590.0..3700.0).contains(&age), "age {age}");
    assert_eq!(row(&rows, "/escape.prom")["state"], "invalid");
    assert!(!rows.iter().any(|r| {
        r["file"]
            .as_str()
            .is_some_and(|f| f.contains("hidden") || f.ends_with(".txt"))
    }));
}

#[test]
fn the_table_has_one_line_a_file_and_valid_directories_exit_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.prom", "a 1\n", Duration::ZERO);
    write(
        dir.path(),
        "b.prom",
        "b 1\nb2 2\n",
        Duration::from_secs(7200),
    );
    let out = promdrop(&["inspect", dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("FILE"), "{table}");
    assert!(
        lines[1].contains("/a.prom") && lines[1].contains("fresh"),
        "{table}"
    );
    assert!(
        lines[2].contains("/b.prom") && lines[2].contains("stale") && lines[2].contains(" 2 "),
        "{table}"
    );
    assert!(lines[2].contains("2h"), "age shown as a duration: {table}");
}

#[test]
fn the_tenancy_layout_is_listed_as_the_exporter_lists_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("team-a")).expect("mkdir");
    write(
        &dir.path().join("team-a"),
        "job.prom",
        "a 1\n",
        Duration::ZERO,
    );
    write(dir.path(), "top.prom", "a 1\n", Duration::ZERO);
    let d = dir.path().to_str().expect("utf-8 path");
    let out = promdrop(&["inspect", "--json", "--textfile.tenancy", d]);
    assert_eq!(out.status.code(), Some(1), "the top-level file is refused");
    let tenancy = rows(&out);
    assert_eq!(row(&tenancy, "team-a/job.prom")["state"], "fresh");
    assert_eq!(row(&tenancy, "/top.prom")["state"], "invalid");
    // Without the flag, the namespace's file is not seen.
    let rows_flat = rows(&promdrop(&["inspect", "--json", d]));
    assert_eq!(rows_flat.len(), 1, "{rows_flat:?}");
}

#[test]
fn a_missing_directory_exits_two() {
    let out = promdrop(&["inspect", "/nonexistent/promdrop"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(stderr.starts_with("promdrop inspect: "), "{stderr}");
    assert!(stderr.contains("/nonexistent/promdrop"), "{stderr}");
}

/// The limits parse as the exporter's flags do (promdrop_textfile::flags): sizes with units,
/// `0` refused by both binaries.
#[test]
fn limits_take_the_exporters_syntax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "big.prom", &"up 1\n".repeat(300), Duration::ZERO);
    let dir_arg = d.to_str().expect("utf-8 path");

    let out = promdrop(&["inspect", "--json", "--file.max-bytes", "1KiB", dir_arg]);
    assert_eq!(out.status.code(), Some(1), "a 1500-byte file over 1KiB");
    let rows = rows(&out);
    let big = row(&rows, "big.prom");
    assert_eq!(big["state"], "invalid");
    assert!(
        big["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than --file.max-bytes=1024")),
        "{big}"
    );

    let out = promdrop(&["inspect", "--json", "--file.max-bytes", "16MiB", dir_arg]);
    assert_eq!(out.status.code(), Some(0));

    for (flag, value) in [
        ("--file.max-bytes", "0"),
        ("--file.max-series", "0"),
        ("--file.max-bytes", "12XB"),
    ] {
        let out = promdrop(&["inspect", flag, value, dir_arg]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}
