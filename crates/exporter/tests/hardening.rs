//! Issue 14 ("Hardening"): each finding of the adversarial probe, reproduced against the real
//! `promdrop-exporter` binary. Every test here failed before its defence (see
//! docs/SECURITY.md, which names the test that covers each threat).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Exporter, Metrics, arg, dir_arg, write_atomic};
use promdrop_test_support::peers::promtool_check_metrics;

/// A metrics file of about `series` lines (~40 bytes each).
fn big_file(dir: &Path, name: &str, series: usize) {
    let mut text = String::from("# TYPE hardening_big gauge\n");
    for i in 0..series {
        text.push_str(&format!("hardening_big{{i=\"{i:08}\"}} {i}\n"));
    }
    write_atomic(dir, name, &text);
}

/// One scrape of `/metrics` on a new connection, within `timeout`: the status and the body
/// length, or the error.
fn scrape(address: &str, timeout: Duration) -> Result<(u16, usize), String> {
    let addr: SocketAddr = address.parse().map_err(|e| format!("{e}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let r = common::parse_response(&raw).map_err(|e| e.to_string())?;
    Ok((r.status, r.body.len()))
}

// ---------------------------------------------------------------------------------------------
// Finding 1: clients that send requests and never read.
// ---------------------------------------------------------------------------------------------

const NETNS_ENV: &str = "PROMDROP_TEST_IN_PRIVATE_NETNS";

/// 520+ connections send `GET /metrics` (several, pipelined) and never read; a real scrape
/// must still succeed within a bound. Runs in a private network namespace (`unshare -n`, as
/// root) with small TCP buffers, so the kernel memory it takes stays small and nothing leaves
/// the machine's own loopback: the test re-runs itself there.
#[test]
fn clients_that_never_read_cannot_lock_out_a_scrape() {
    if std::env::var_os(NETNS_ENV).is_none() {
        let exe = std::env::current_exe().unwrap();
        let script = format!(
            "ip link set lo up && \
             sysctl -q -w net.ipv4.tcp_rmem='4096 8192 16384' net.ipv4.tcp_wmem='4096 8192 16384' && \
             exec {} clients_that_never_read_cannot_lock_out_a_scrape --exact --nocapture --test-threads=1",
            exe.display()
        );
        let out = Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .env(NETNS_ENV, "1")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs `unshare -n` (util-linux) and root: cannot run unshare: {e}"
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the test failed in its private network namespace (it needs root and `unshare -n`, \
             `ip`, `sysctl`):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // ~1 MB of metrics: far more than the socket buffers hold.
    big_file(dir.path(), "big.prom", 25_000);
    let exporter = common::start(&[dir_arg(dir.path()), arg("web.write-timeout", "3s")]);
    let (status, len) = scrape(&exporter.address, Duration::from_secs(10)).unwrap();
    assert_eq!(status, 200);
    assert!(len > 800_000, "{len}");

    let addr: SocketAddr = exporter.address.parse().unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4);
    let mut attackers = Vec::new();
    for _ in 0..560 {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            continue;
        };
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.write_all(&request);
        attackers.push(s);
    }
    assert!(
        attackers.len() >= 520,
        "only {} connections",
        attackers.len()
    );

    // The attackers stay connected and never read; the scrape must get through.
    let started = Instant::now();
    let bound = Duration::from_secs(25);
    let mut attempts = Vec::new();
    loop {
        let result = scrape(&exporter.address, Duration::from_secs(5));
        let ok = matches!(result, Ok((200, len)) if len > 800_000);
        attempts.push(format!(
            "{:.1}s {result:?}",
            started.elapsed().as_secs_f64()
        ));
        if ok {
            break;
        }
        assert!(
            started.elapsed() < bound,
            "no complete scrape within {bound:?} while {} clients do not read: {attempts:#?}\n--- log ---\n{}",
            attackers.len(),
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Connections over the cap were told why.
    let refused = attempts.iter().any(|a| a.contains("503"));
    eprintln!("scrape attempts: {attempts:#?} (a 503 seen: {refused})");
    drop(attackers);
}

// ---------------------------------------------------------------------------------------------
// Findings 1 and 5: limits and a flood of wrong passwords.
// ---------------------------------------------------------------------------------------------

/// Over `--web.max-connections` a client gets a clear 503, not a hang.
#[test]
fn over_the_connection_limit_a_client_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "a.prom", "a 1\n");
    let exporter = common::start(&[dir_arg(dir.path()), arg("web.max-connections", 2)]);
    let addr: SocketAddr = exporter.address.parse().unwrap();
    // Two idle connections take both slots (until the header timeout).
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // The server takes the held connections off its accept queue when it gets to them (late
    // on a loaded machine), so ask until they are counted; well before the 10 s header
    // timeout frees them again. A held connection that came while the readiness checks'
    // connections still had their slots was refused itself (answered and closed): it is
    // opened again.
    let deadline = Instant::now() + Duration::from_secs(8);
    let r = loop {
        for h in held.iter_mut() {
            if was_answered(h) {
                *h = TcpStream::connect(addr).unwrap();
            }
        }
        let r = exporter.get("/metrics", &[]);
        if r.status == 503 || Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("--web.max-connections"), "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while exporter.get("/metrics", &[]).status != 200 {
        assert!(Instant::now() < deadline, "the slots were not given back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server wrote to (or closed) `stream`, which never sent a request: a refusal.
fn was_answered(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let answered = !matches!(
        stream.peek(&mut [0u8; 1]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    answered
}

const COST: u32 = 8;

/// Sends `request` on `s` and reads until the server closes (tokio without its io-util).
async fn exchange(s: &tokio::net::TcpStream, request: &[u8]) -> Vec<u8> {
    let mut sent = 0;
    while sent < request.len() {
        if s.writable().await.is_err() {
            return Vec::new();
        }
        match s.try_write(&request[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Vec::new(),
        }
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while s.readable().await.is_ok() {
        match s.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    raw
}

/// 200 connections from another address try wrong passwords for the real user as fast as they
/// can; the first right login must get in quickly (before: 11.9 s, past a scrape timeout).
#[test]
fn a_flood_of_wrong_passwords_does_not_lock_out_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "a.prom", "flood_ok 1\n");
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash("right", COST).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
    let exporter = common::spawn(&[dir_arg(dir.path()), arg("web.config.file", web.display())]);
    let address = exporter.address.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counts = std::sync::Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<u16, u64>::new(),
    ));
    let addr: SocketAddr = address.parse().unwrap();
    for _ in 0..200 {
        let stop = std::sync::Arc::clone(&stop);
        let counts = std::sync::Arc::clone(&counts);
        runtime.spawn(async move {
            // wrong: "prometheus:wrong"
            let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\nAuthorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\nConnection: close\r\n\r\n";
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                let Ok(s) = socket.connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let raw = exchange(&s, request).await;
                if let Ok(r) = common::parse_response(&raw) {
                    *counts.lock().unwrap().entry(r.status).or_default() += 1;
                }
            }
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let r = exporter
        .try_get(
            "/metrics",
            &[("Authorization", "Basic cHJvbWV0aGV1czpyaWdodA==")],
        )
        .unwrap();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let counts = counts.lock().unwrap().clone();
    drop(runtime);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        took < Duration::from_secs(3),
        "the right password took {took:?} during the flood ({counts:?})"
    );
    // The flood was answered (401 when checked, 429 when its address had checks queued).
    assert!(counts.get(&401).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(counts.get(&429).copied().unwrap_or(0) > 0, "{counts:?}");
    // Once verified, the right credentials skip bcrypt.
    let started = Instant::now();
    for _ in 0..20 {
        let r = exporter
            .try_get(
                "/metrics",
                &[("Authorization", "Basic cHJvbWV0aGV1czpyaWdodA==")],
            )
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let m = Metrics::parse(&r.text());
    assert!(
        m.get(
            "promdrop_web_config_reloads_total",
            &[("result", "failure")]
        )
        .is_some()
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 2: a FIFO or a symlink at a lock path.
// ---------------------------------------------------------------------------------------------

fn set_mtime(path: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

/// With `--delete-after`, a FIFO at `.<file>.prom.lock` froze the exporter in `open()` (never
/// ready, changes ignored, deaf to SIGTERM) and a symlink there was followed (its target
/// created). Now both are refused: the exporter starts, keeps following changes, leaves the
/// file (it cannot lock it) and stops on SIGTERM.
#[test]
fn a_fifo_or_a_symlink_at_a_lock_path_freezes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    for name in ["fifo.prom", "link.prom"] {
        write_atomic(dir.path(), name, "# TYPE old gauge\nold 1\n");
        set_mtime(&dir.path().join(name), Duration::from_secs(7200));
    }
    // Different series so that the two files do not conflict.
    write_atomic(dir.path(), "link.prom", "# TYPE old2 gauge\nold2 1\n");
    set_mtime(&dir.path().join("link.prom"), Duration::from_secs(7200));
    promdrop_test_support::mkfifo(&dir.path().join(".fifo.prom.lock"));
    let target = outside.path().join("created-through-the-link");
    std::os::unix::fs::symlink(&target, dir.path().join(".link.prom.lock")).unwrap();

    let exporter = common::start(&[
        dir_arg(dir.path()),
        arg("delete-after", "1h"),
        arg("stale-after", "off"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(exporter.log().contains("not a regular file")
        && exporter.log().contains("symbolic link"))
    {
        assert!(
            Instant::now() < deadline,
            "no refusal logged\n{}",
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dir.path().join("fifo.prom").exists());
    assert!(dir.path().join("link.prom").exists());
    assert!(!target.exists(), "the lock's symlink was followed");
    // The engine still follows changes.
    write_atomic(
        dir.path(),
        "new.prom",
        "# TYPE fresh_one gauge\nfresh_one 1\n",
    );
    exporter.wait_for("the new file", Duration::from_secs(10), |m| {
        m.get("fresh_one", &[]) == Some(1.0)
    });
    let r = exporter.get("/-/healthy", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let status = exporter.terminate();
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------------------------
// Finding 6: a missing or unreadable directory.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_directory_is_an_error_metrics_and_the_status_page_show() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    write_atomic(&good, "a.prom", "a 1\n");
    let missing = dir.path().join("missing");
    let exporter = common::start(&[
        dir_arg(&good),
        dir_arg(&missing),
        "--compat.node-exporter".to_string(),
        arg("rescan-interval", "200ms"),
    ]);
    let missing_label = missing.display().to_string();
    let good_label = good.display().to_string();
    let m = exporter.wait_for("the directory error", Duration::from_secs(10), |m| {
        m.get("promdrop_directory_error", &[("directory", &missing_label)]) == Some(1.0)
    });
    assert_eq!(
        m.get("promdrop_directory_error", &[("directory", &good_label)]),
        Some(0.0)
    );
    assert_eq!(m.get("node_textfile_scrape_error", &[]), Some(1.0));
    assert_eq!(m.get("a", &[]), Some(1.0));
    let page = exporter.get("/", &[]).text();
    assert!(
        page.contains(&missing_label) && page.contains("class=\"error\""),
        "{page}"
    );
    // Ready means the first scan is done, not that every directory is there.
    assert_eq!(exporter.get("/-/ready", &[]).status, 200);

    // The directory appears: the error clears.
    std::fs::create_dir(&missing).unwrap();
    let m = exporter.wait_for("the error to clear", Duration::from_secs(10), |m| {
        m.get("promdrop_directory_error", &[("directory", &missing_label)]) == Some(0.0)
    });
    assert_eq!(m.get("node_textfile_scrape_error", &[]), Some(0.0));
}

// ---------------------------------------------------------------------------------------------
// Finding 7: a `written_at` in the future.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_written_at_in_the_future_does_not_make_a_file_immortal() {
    let dir = tempfile::tempdir().unwrap();
    // 30 days old, claiming to be written in 2100: before, fresh for ever and the winner of
    // every duplicate series.
    write_atomic(
        dir.path(),
        "liar.prom",
        "# promdrop: written_at=4102444800\n# TYPE promdrop_job_success gauge\npromdrop_job_success{job_name=\"victim\"} 1\n",
    );
    set_mtime(
        &dir.path().join("liar.prom"),
        Duration::from_secs(30 * 86_400),
    );
    write_atomic(
        dir.path(),
        "victim.prom",
        "# TYPE promdrop_job_success gauge\npromdrop_job_success{job_name=\"victim\"} 0\n",
    );
    let exporter = common::start(&[dir_arg(dir.path()), arg("stale-after", "1d")]);
    let liar = dir.path().join("liar.prom");
    let m = Metrics::parse(&exporter.metrics());
    assert_eq!(
        m.file("promdrop_file_stale", &liar),
        Some(1.0),
        "{}",
        m.body
    );
    let mtime = m.file("promdrop_file_mtime_seconds", &liar).unwrap();
    assert_eq!(
        m.file("promdrop_file_reference_time_seconds", &liar),
        Some(mtime),
        "{}",
        m.body
    );
    // The duplicate series is served from the file that is really newer.
    assert_eq!(
        m.get("promdrop_job_success", &[("job_name", "victim")]),
        Some(0.0),
        "{}",
        m.body
    );
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(json.contains("\"written_at_distrusted\": true"), "{json}");
    assert!(exporter.get("/", &[]).text().contains("not trusted"));
}

// ---------------------------------------------------------------------------------------------
// Finding 8: type clashes across formats, and histograms with other buckets.
// ---------------------------------------------------------------------------------------------

/// `promtool check metrics` on `body`: fails the test when promtool is missing or cannot parse
/// the body (its linter's findings, exit code 3, are not failures).
fn promtool_accepts(body: &str) {
    if let Err(e) = promtool_check_metrics(body) {
        panic!("promtool check metrics refuses the body ({e})\n--- body ---\n{body}");
    }
}

/// The OpenMetrics body, which must parse.
fn openmetrics_body(exporter: &Exporter) -> String {
    let om = exporter
        .get(
            "/metrics",
            &[("Accept", "application/openmetrics-text;version=1.0.0")],
        )
        .text();
    promdrop_textformat::parse(om.as_bytes(), promdrop_textformat::Format::OpenMetrics)
        .unwrap_or_else(|e| panic!("{e}\n{om}"));
    om
}

/// One file in OpenMetrics, one classic, from two jobs: the counter `bar` (samples
/// `bar_total`, `bar_created`) beside a classic `# TYPE bar_total counter`, the info `foo`
/// beside a gauge `foo_info`, and the histogram `lat` with other buckets. Before, all of it
/// was merged: two TYPE blocks for `bar_total` and for `foo_info` (promtool and Prometheus
/// refuse the whole scrape), one histogram mixing both bucket layouts, and no conflict
/// counted. Now the first file keeps each, the other's family is left out and counted.
#[test]
fn type_clashes_across_formats_and_other_buckets_are_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(
        dir.path(),
        "a.prom",
        "# HELP bar Bars.\n# TYPE bar counter\nbar_total{job=\"a\"} 3\nbar_created{job=\"a\"} 1.7e+09\n\
         # HELP foo Foo.\n# TYPE foo info\nfoo_info{version=\"1\"} 1\n\
         # HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{job=\"a\",le=\"1.0\"} 1\nlat_bucket{job=\"a\",le=\"+Inf\"} 2\nlat_sum{job=\"a\"} 2\nlat_count{job=\"a\"} 2\n# EOF\n",
    );
    write_atomic(
        dir.path(),
        "b.prom",
        "# HELP bar_total Bars.\n# TYPE bar_total counter\nbar_total{job=\"b\"} 5\n\
         # HELP foo_info Foo.\n# TYPE foo_info gauge\nfoo_info{version=\"2\"} 1\n\
         # HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{job=\"b\",le=\"0.5\"} 1\nlat_bucket{job=\"b\",le=\"+Inf\"} 1\nlat_sum{job=\"b\"} 1\nlat_count{job=\"b\"} 1\n\
         # HELP kept Served: the file's other families are not affected.\n# TYPE kept gauge\nkept 1\n",
    );
    let exporter = common::start(&[dir_arg(dir.path())]);
    let body = exporter.metrics();
    promtool_accepts(&body);
    let m = Metrics::parse(&body);
    // bar_total and foo_info from b.prom: two type conflicts; lat from b.prom: one of buckets.
    for name in ["promdrop_conflicts_total", "promdrop_current_conflicts"] {
        assert_eq!(
            m.get(name, &[("kind", "type")]),
            Some(2.0),
            "{name}\n{body}"
        );
        assert_eq!(
            m.get(name, &[("kind", "buckets")]),
            Some(1.0),
            "{name}\n{body}"
        );
    }
    assert_eq!(m.get("bar_total", &[("job", "a")]), Some(3.0), "{body}");
    assert_eq!(m.get("bar_total", &[("job", "b")]), None, "{body}");
    assert_eq!(m.get("foo_info", &[("version", "1")]), Some(1.0), "{body}");
    assert_eq!(m.get("foo_info", &[("version", "2")]), None, "{body}");
    assert_eq!(m.get("lat_bucket", &[("job", "a"), ("le", "1")]), Some(1.0));
    assert_eq!(m.get("lat_count", &[("job", "b")]), None, "{body}");
    assert_eq!(m.get("kept", &[]), Some(1.0), "{body}");
    assert_eq!(body.matches("# TYPE bar_total ").count(), 1, "{body}");
    assert_eq!(body.matches("# TYPE foo_info ").count(), 1, "{body}");
    // OpenMetrics too: one family each, and it parses.
    let om = openmetrics_body(&exporter);
    assert_eq!(om.matches("# TYPE bar ").count(), 1, "{om}");
    assert!(!om.contains("job=\"b\""), "{om}");
    // Named on the status page and in the API.
    let page = exporter.get("/", &[]).text();
    assert!(
        page.contains("family bar_total in ")
            && page.contains("would both be written as bar_total"),
        "{page}"
    );
    assert!(page.contains("other buckets (le) or quantiles"), "{page}");
    let json = exporter.get("/api/v1/files", &[]).text();
    assert!(json.contains("\"kind\": \"buckets\""), "{json}");
    assert!(json.contains("\"kept_family\": \"foo\""), "{json}");
}

/// An OpenMetrics file declaring `# TYPE promdrop_build info` (written `promdrop_build_info`)
/// and a counter `process_cpu_seconds` (written `process_cpu_seconds_total`): before, the
/// reserved-name check looked at the declared names only, so each added a second family of an
/// exporter metric. Now names are checked as they are written: both are reserved conflicts,
/// the exporter's own families stay single, and the file's other families are served.
#[test]
fn reserved_names_are_checked_after_the_openmetrics_suffixes() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(
        dir.path(),
        "a.prom",
        "# TYPE promdrop_build info
promdrop_build_info{version=\"fake\"} 1
\
         # TYPE process_cpu_seconds counter
process_cpu_seconds_total 1e+06
\
         # TYPE ok gauge
ok 1
# EOF
",
    );
    let exporter = common::start(&[dir_arg(dir.path())]);
    let body = exporter.metrics();
    promtool_accepts(&body);
    let m = Metrics::parse(&body);
    assert_eq!(
        m.get("promdrop_conflicts_total", &[("kind", "reserved")]),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        body.matches("# TYPE promdrop_build_info ").count(),
        1,
        "{body}"
    );
    assert_eq!(
        body.matches("# TYPE process_cpu_seconds_total ").count(),
        1,
        "{body}"
    );
    assert!(!body.contains("version=\"fake\""), "{body}");
    assert!(
        m.get("process_cpu_seconds_total", &[])
            .is_some_and(|v| v < 1e6),
        "the exporter's own CPU time, not the file's: {body}"
    );
    assert_eq!(m.get("ok", &[]), Some(1.0), "{body}");
    let om = openmetrics_body(&exporter);
    assert_eq!(om.matches("# TYPE promdrop_build_info ").count(), 1, "{om}");
    assert!(!om.contains("# TYPE promdrop_build info"), "{om}");
}

// ---------------------------------------------------------------------------------------------
// Finding 9: file names that are not UTF-8, and repeated log lines.
// ---------------------------------------------------------------------------------------------

#[test]
fn names_with_different_invalid_utf8_get_different_labels() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    for (byte, metric) in [(0xfe_u8, "x_fe"), (0xff, "x_ff")] {
        let mut name = b"bad".to_vec();
        name.push(byte);
        name.extend_from_slice(b".prom");
        std::fs::write(
            dir.path().join(std::ffi::OsStr::from_bytes(&name)),
            format!("{metric} 1\n"),
        )
        .unwrap();
    }
    let exporter = common::start(&[dir_arg(dir.path()), arg("source-label", "source")]);
    let m = Metrics::parse(&exporter.metrics());
    let d = dir.path().display();
    assert_eq!(
        m.get(
            "promdrop_file_error",
            &[("file", &format!("{d}/bad\\xfe.prom"))]
        ),
        Some(0.0),
        "{}",
        m.body
    );
    assert_eq!(
        m.get(
            "promdrop_file_error",
            &[("file", &format!("{d}/bad\\xff.prom"))]
        ),
        Some(0.0),
        "{}",
        m.body
    );
    assert_eq!(
        m.get("x_fe", &[("source", "bad\\xfe.prom")]),
        Some(1.0),
        "{}",
        m.body
    );
}

/// A job that flips a symlink between a file inside the directory and one outside, as fast as
/// it can: before, thousands of warnings a second.
#[test]
fn a_symlink_flipper_does_not_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "inside.txt", "x 1\n");
    write_atomic(outside.path(), "secret.prom", "secret 1\n");
    let exporter = common::start(&[dir_arg(dir.path())]);
    let link = dir.path().join("flip.prom");
    let tmp = dir.path().join(".flip.tmp");
    let started = Instant::now();
    let mut flips = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let target = if flips % 2 == 0 {
            outside.path().join("secret.prom")
        } else {
            dir.path().join("inside.txt")
        };
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        flips += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = exporter.log();
    let warnings = log.matches("refusing a file").count();
    let news = log.matches("new file").count();
    assert!(flips > 100, "only {flips} flips");
    assert!(
        warnings <= 2 && news <= 2,
        "{warnings} refusals and {news} new-file lines for {flips} flips in 3 s"
    );
}
