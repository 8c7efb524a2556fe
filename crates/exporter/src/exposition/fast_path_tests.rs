//! The fast path (files' prepared text concatenated, promdrop_textfile::prepared) against the
//! full merge (promdrop_textformat::merge, [`super::render_data`]): the same bytes.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use promdrop_textformat::Format;

use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::discovery::FileIdentity;
use promdrop_textfile::prepared::{Prepared, SeriesIndex, render_openmetrics};
use promdrop_textfile::snapshot::{self, FileSnapshot, ReadOptions, parse_bytes};

use super::gzip_body::{GzipBody, KeptBlocks};
use super::{DataPart, ExpositionOptions, prepared_for, render_data};

/// Files that exercise every rendering rule: OpenMetrics types, folds, splits, units,
/// timestamps, exemplars, empty families, conflicts of every kind.
const POOL: &[(&str, &str)] = &[
    (
        "a.prom",
        "# HELP up Up.\n# TYPE up gauge\nup{job=\"a\"} 1\nup{job=\"b\"} 0\n# TYPE jobs_total counter\njobs_total{r=\"ok\"} 3\n",
    ),
    (
        "b.prom",
        "# TYPE up gauge\nup{job=\"c\"} 1\n# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{r=\"fail\"} 1\n",
    ),
    (
        "c.prom",
        "# HELP up Another text.\n# TYPE up counter\nup{job=\"d\"} 1\n# TYPE lat histogram\nlat_bucket{le=\"1\"} 1\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 3\nlat_count 2\n",
    ),
    (
        "d.prom",
        "# HELP etl_rows_total Rows.\n# TYPE etl_rows_total counter\netl_rows_total{t=\"o\"} 120.0\netl_rows_total{t=\"c\"} 3.0\n# HELP etl_rows_created Rows.\n# TYPE etl_rows_created gauge\netl_rows_created{t=\"o\"} 1.7e+09\netl_rows_created{t=\"c\"} 1.7e+09\n",
    ),
    (
        "e.prom",
        "# HELP requests Requests.\n# TYPE requests counter\nrequests_total{code=\"200\"} 5 # {trace=\"x\"} 1 1.5\nrequests_created{code=\"200\"} 1.7e+09\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# TYPE door stateset\ndoor{door=\"open\"} 1\ndoor{door=\"shut\"} 0\n# TYPE q gaugehistogram\nq_bucket{le=\"1\"} 1\nq_bucket{le=\"+Inf\"} 2\nq_gcount 2\nq_gsum 1\n# TYPE temp_celsius gauge\n# UNIT temp_celsius celsius\ntemp_celsius 21.5 1700000000.5\n# EOF\n",
    ),
    (
        "f.prom",
        "# TYPE c counter\nc 1\n# TYPE empty_total counter\n# TYPE empty_gauge gauge\n# TYPE promdrop_files gauge\npromdrop_files 3\n",
    ),
    (
        "g.prom",
        "# TYPE c counter\nc{x=\"2\"} 2\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\n# TYPE jobs_created gauge\njobs_created{r=\"fail\"} 1.6e+09\n# TYPE evicted counter\nevicted{n=\"1\"} 2\n",
    ),
    (
        "h.prom",
        "# promdrop: written_at=1700000100 stale_after=1m\n# TYPE up gauge\nup{job=\"h\"} 1 1700000000000\nmisc{a=\"b\",c=\"d\"} 7\n",
    ),
    (
        "i.prom",
        "# TYPE up gauge\nup{job=\"a\"} 5\n# TYPE evicted counter\n# TYPE c_created gauge\nc_created 1\n",
    ),
    // Jobs sharing family names, told apart by a label (as in bench/churn.py).
    (
        "k.prom",
        "# HELP batch_rows_total Rows.\n# TYPE batch_rows_total counter\nbatch_rows_total{job=\"k\",shard=\"0\"} 1\nbatch_rows_total{job=\"k\",shard=\"1\"} 2\n# HELP batch_depth Depth.\n# TYPE batch_depth gauge\nbatch_depth{job=\"k\"} 3\n# TYPE batch_seconds summary\nbatch_seconds{job=\"k\",quantile=\"0.5\"} 1\nbatch_seconds_sum{job=\"k\"} 2\nbatch_seconds_count{job=\"k\"} 3\n",
    ),
    (
        "l.prom",
        "# HELP batch_rows_total Rows.\n# TYPE batch_rows_total counter\nbatch_rows_total{job=\"l\",shard=\"0\"} 4\n# TYPE batch_depth gauge\nbatch_depth{job=\"l\"} 5\n# TYPE batch_seconds summary\nbatch_seconds{job=\"l\",quantile=\"0.5\"} 1\nbatch_seconds_sum{job=\"l\"} 2\nbatch_seconds_count{job=\"l\"} 3\n",
    ),
    (
        "m.prom",
        "# HELP batch_depth Other depth.\n# TYPE batch_depth gauge\nbatch_depth{job=\"m\"} 6\n# HELP batch_rows_total Rows.\n# TYPE batch_rows_total gauge\nbatch_rows_total{job=\"m\"} 7\n# TYPE up gauge\nup{job=\"m\"} 1\n",
    ),
    (
        "n.prom",
        "# TYPE batch_rows counter\n# HELP batch_rows Rows.\nbatch_rows_total{job=\"n\"} 8\nbatch_rows_created{job=\"n\"} 1.7e+09\n# TYPE batch_depth_items gauge\n# UNIT batch_depth_items items\nbatch_depth_items{job=\"n\"} 9\n# TYPE batch_depth gauge\nbatch_depth{job=\"n\"} 9\n# EOF\n",
    ),
    (
        "j.prom",
        "# TYPE requests counter\nrequests_total{code=\"500\"} 1\n# TYPE lat histogram\nlat_bucket{le=\"1\",x=\"j\"} 0\nlat_bucket{le=\"+Inf\",x=\"j\"} 0\nlat_sum{x=\"j\"} 0\nlat_count{x=\"j\"} 0\n# EOF\n",
    ),
    // Finding 8 (p to t; k, l and n above clash too: the classic counter batch_rows_total
    // and the OpenMetrics counter batch_rows).
    // Names that clash once rendered: a classic counter requests_total beside the
    // OpenMetrics counter requests (e, j); a gauge build_info beside the info build (e).
    (
        "p.prom",
        "# TYPE requests_total counter\nrequests_total{code=\"404\"} 2\n# TYPE build_info gauge\nbuild_info{v=\"2\"} 1\n",
    ),
    // Other buckets for lat (c, j: 1, +Inf; here 1.0 is 1), other quantiles for s (g), and a
    // summary without quantiles, which has no set to differ.
    (
        "q.prom",
        "# TYPE lat histogram\nlat_bucket{le=\"0.5\",x=\"q\"} 1\nlat_bucket{le=\"+Inf\",x=\"q\"} 1\nlat_sum{x=\"q\"} 1\nlat_count{x=\"q\"} 1\n# TYPE s summary\ns{quantile=\"0.9\",q=\"1\"} 1\ns_sum{q=\"1\"} 1\ns_count{q=\"1\"} 1\n# TYPE plain summary\nplain_sum 1\nplain_count 1\n",
    ),
    // ... and another HELP for up (a's), which no file above gives.
    (
        "r.prom",
        "# HELP up Up, said otherwise.\n# TYPE up gauge\nup{job=\"r\"} 1\n# TYPE lat histogram\nlat_bucket{le=\"1.0\",x=\"r\"} 1\nlat_bucket{le=\"+Inf\",x=\"r\"} 1\nlat_sum{x=\"r\"} 1\nlat_count{x=\"r\"} 1\n# TYPE plain summary\nplain{quantile=\"0.5\",r=\"1\"} 1\nplain_sum{r=\"1\"} 1\nplain_count{r=\"1\"} 1\n",
    ),
    // OpenMetrics: the counter jobs with _created samples (a's jobs_total, g's folded
    // jobs_created gauge), and a gauge lat_count inside the histogram lat's names.
    (
        "s.prom",
        "# TYPE jobs counter\njobs_total{r=\"om\"} 1\njobs_created{r=\"om\"} 1.5e+09\n# TYPE lat_count gauge\nlat_count{x=\"s\"} 3\n# TYPE door_total counter\ndoor_total_total 1\n# EOF\n",
    ),
    // The OpenMetrics name of a classic counter up_total is up (a gauge in a, b, h, i); the
    // gauge histogram q (e) holds q_count; a counter c (f, g: written as unknown) holds no
    // c_total.
    (
        "t.prom",
        "# TYPE up_total counter\nup_total 1\n# TYPE q_count gauge\nq_count{t=\"1\"} 1\n# TYPE c_total gauge\nc_total 4\n",
    ),
];

/// A xorshift generator from `seed`: the tests' orders and choices, the same at every run.
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// The read limits of these tests (1 MiB, 1,000 series a file).
fn read_options(timestamps: TimestampPolicy) -> ReadOptions {
    ReadOptions {
        max_bytes: 1 << 20,
        max_series: 1000,
        timestamps,
    }
}

fn snapshot(i: usize, read: &ReadOptions) -> Arc<FileSnapshot> {
    let (name, text) = POOL[i];
    let identity = FileIdentity {
        dev: 1,
        ino: i as u64 + 1,
        size: text.len() as u64,
        mtime_ns: (1_700_000_000 + i as i128) * 1_000_000_000,
    };
    let s = parse_bytes(
        PathBuf::from("/d").join(name),
        identity,
        Bytes::from_static(text.as_bytes()),
        read,
    );
    assert!(s.content.is_ok(), "{name}: {:?}", s.content);
    Arc::new(s)
}

/// The concatenation of prepared text gives exactly what the full merge gives, for every
/// subset and order of the pool tried, in both formats and with every option.
#[test]
fn concatenating_prepared_text_equals_the_full_merge() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let mut concatenated = [0usize; 3];
    // The conflicts seen: each kind, and type conflicts between families of different names.
    let mut kinds = std::collections::BTreeSet::new();
    for (timestamps, source_label) in [
        (TimestampPolicy::Keep, None),
        (TimestampPolicy::Strip, None),
        (TimestampPolicy::Keep, Some("src".to_string())),
    ] {
        let read = read_options(timestamps);
        let options = ExpositionOptions {
            timestamps: Some(timestamps),
            source_label,
            ..ExpositionOptions::default()
        };
        let all: Vec<Arc<FileSnapshot>> = (0..POOL.len()).map(|i| snapshot(i, &read)).collect();
        let mut orders: Vec<Vec<usize>> = (0..POOL.len()).map(|i| vec![i]).collect();
        orders.push((0..POOL.len()).collect());
        for _ in 0..600 {
            let n = 2 + (next() % 5) as usize;
            orders.push(
                (0..n)
                    .map(|_| (next() % POOL.len() as u64) as usize)
                    .collect(),
            );
        }
        for order in &orders {
            let mut seen = std::collections::HashSet::new();
            let files: Vec<Arc<FileSnapshot>> = order
                .iter()
                .filter(|&&i| seen.insert(i))
                .map(|&i| Arc::clone(&all[i]))
                .collect();
            // Chunks of one file, of about two, and of the exporter's size.
            let bits = [0, 1, super::CHUNK_BITS][order.len() % 3];
            let data = DataPart::build_cut(
                files.clone(),
                options.clone(),
                &mut SeriesIndex::default(),
                bits,
            );
            let mut expected = String::new();
            let conflicts = render_data(&files, &options, Format::Classic, &mut expected);
            assert_eq!(data.classic_text(), expected, "classic, files {order:?}");
            assert_eq!(data.conflicts, conflicts, "conflicts, files {order:?}");
            for c in &conflicts {
                kinds.insert((c.kind, c.kept_family.is_some()));
            }
            // What is served parses again, as Prometheus's text parser would take it (a TYPE
            // or HELP line twice for a name, as clashing names gave, is refused).
            if let Err(e) = promdrop_textformat::parse(expected.as_bytes(), Format::Classic) {
                panic!("classic, files {order:?}: {e}\n{expected}");
            }
            let mut expected = String::new();
            render_data(&files, &options, Format::OpenMetrics, &mut expected);
            let body = format!("{expected}# EOF\n");
            if let Err(e) = promdrop_textformat::parse(body.as_bytes(), Format::OpenMetrics) {
                panic!("openmetrics, files {order:?}: {e}\n{body}");
            }
            assert_eq!(
                String::from_utf8_lossy(&data.render_openmetrics()),
                expected,
                "openmetrics, files {order:?}"
            );
            if data.is_concatenated() {
                concatenated[0] += 1;
                let plans: Vec<_> = data.chunks().iter().map(|c| c.plan()).collect();
                if promdrop_textfile::assembly::assemble_openmetrics(&plans).is_some() {
                    concatenated[2] += 1;
                }
                let mut om = Vec::new();
                let prepared: Vec<Arc<Prepared>> = files
                    .iter()
                    .filter_map(|f| prepared_for(f, &options.prepare_options()))
                    .collect();
                if render_openmetrics(&prepared, &mut om) {
                    concatenated[1] += 1;
                }
            }
        }
    }
    // Every kind of conflict was met (`reserved` is the adopted families', not the merge's).
    for kind in [
        ("type", false),
        ("type", true),
        ("buckets", false),
        ("help", false),
        ("duplicate_series", false),
    ] {
        assert!(kinds.contains(&kind), "{kind:?} never met: {kinds:?}");
    }
    // Most orders take the concatenation, and the fallback is exercised too.
    eprintln!("concatenated (classic, openmetrics, openmetrics by chunks): {concatenated:?}");
    assert!(concatenated[2] > 100, "{concatenated:?}");
    assert!(concatenated[0] > 300, "{concatenated:?}");
    assert!(
        concatenated[1] > 100 && concatenated[1] < concatenated[0],
        "{concatenated:?}"
    );
}

/// The files of finding 8 (names that clash once rendered, other buckets or quantiles) and
/// the files they clash with, by chunks of every size (so the two sides of a conflict are in
/// one chunk or in two), without and with tenancy (files in two namespaces): the chunked
/// publication gives the full merge's bytes and conflicts. With tenancy, buckets are compared
/// within a namespace only.
#[test]
fn finding_8_rules_by_chunks_equal_the_full_merge() {
    let corpus: Vec<usize> = ["c.prom", "e.prom", "g.prom", "j.prom", "k.prom", "n.prom"]
        .iter()
        .chain(&["p.prom", "q.prom", "r.prom", "s.prom", "t.prom", "a.prom"])
        .map(|name| POOL.iter().position(|(n, _)| n == name).unwrap_or(0))
        .collect();
    let mut next = xorshift(0x853c_49e6_748f_ea9b);
    let read = read_options(TimestampPolicy::Keep);
    // (same chunk, other chunks) for finding 8's conflicts; buckets conflicts by tenancy.
    let mut sides = [0usize; 2];
    let mut buckets = [0usize; 2];
    let mut by_parts = 0;
    for tenancy in [None, Some("namespace".to_string())] {
        let options = ExpositionOptions {
            tenancy_label: tenancy.clone(),
            ..ExpositionOptions::default()
        };
        // With tenancy, files alternate between two namespaces.
        let all: Vec<Arc<FileSnapshot>> = corpus
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let (name, text) = POOL[i];
                let dir = match (&tenancy, k % 2) {
                    (None, _) => PathBuf::from("/d"),
                    (Some(_), 0) => PathBuf::from("/d/team-a"),
                    (Some(_), _) => PathBuf::from("/d/team-b"),
                };
                let identity = FileIdentity {
                    dev: 1,
                    ino: i as u64 + 1,
                    size: text.len() as u64,
                    mtime_ns: (1_700_000_000 + i as i128) * 1_000_000_000,
                };
                let s = parse_bytes(
                    dir.join(name),
                    identity,
                    Bytes::from_static(text.as_bytes()),
                    &read,
                );
                assert!(s.content.is_ok(), "{name}: {:?}", s.content);
                Arc::new(s)
            })
            .collect();
        let mut orders: Vec<Vec<usize>> = vec![(0..all.len()).collect()];
        for _ in 0..300 {
            let n = 2 + (next() % 6) as usize;
            orders.push(
                (0..n)
                    .map(|_| (next() % all.len() as u64) as usize)
                    .collect(),
            );
        }
        for order in &orders {
            let mut seen = std::collections::HashSet::new();
            let files: Vec<Arc<FileSnapshot>> = order
                .iter()
                .filter(|&&i| seen.insert(i))
                .map(|&i| Arc::clone(&all[i]))
                .collect();
            let mut expected = String::new();
            let conflicts = render_data(&files, &options, Format::Classic, &mut expected);
            let mut expected_om = String::new();
            render_data(&files, &options, Format::OpenMetrics, &mut expected_om);
            for bits in [0, 1, super::CHUNK_BITS] {
                let data = DataPart::build_cut(
                    files.clone(),
                    options.clone(),
                    &mut SeriesIndex::default(),
                    bits,
                );
                let what = format!("files {order:?}, bits {bits}, tenancy {tenancy:?}");
                assert_eq!(data.classic_text(), expected, "classic, {what}");
                assert_eq!(data.conflicts, conflicts, "conflicts, {what}");
                assert_eq!(
                    String::from_utf8_lossy(&data.render_openmetrics()),
                    expected_om,
                    "openmetrics, {what}"
                );
                let chunk_of = |label: &str| {
                    data.chunks().iter().position(|c| {
                        c.files()
                            .iter()
                            .any(|f| snapshot::file_label(&f.path) == label)
                    })
                };
                let namespace = |label: &str| {
                    std::path::Path::new(label)
                        .parent()
                        .map(|p| p.to_path_buf())
                };
                let mut finding_8 = false;
                for c in &conflicts {
                    if c.kind != "buckets" && c.kept_family.is_none() {
                        continue;
                    }
                    finding_8 = true;
                    let kept = c.kept_file.as_deref().unwrap_or_default();
                    let same = chunk_of(kept) == chunk_of(&c.other_file);
                    sides[usize::from(!same)] += 1;
                    if c.kind == "buckets" {
                        buckets[usize::from(tenancy.is_some())] += 1;
                        if tenancy.is_some() {
                            assert_eq!(namespace(kept), namespace(&c.other_file), "{what}");
                        }
                    }
                }
                if finding_8 && data.is_concatenated() {
                    by_parts += 1;
                }
            }
        }
    }
    eprintln!(
        "finding 8 (same chunk, other chunks): {sides:?}, buckets {buckets:?}, merged by parts {by_parts}"
    );
    assert!(sides[0] > 20 && sides[1] > 20, "{sides:?}");
    assert!(buckets[0] > 20 && buckets[1] > 5, "{buckets:?}");
    assert!(by_parts > 50, "{by_parts}");
}

#[test]
fn the_index_counts_what_changes() {
    let read = read_options(TimestampPolicy::Keep);
    let a = snapshot(0, &read);
    let i = snapshot(8, &read);
    let b = snapshot(1, &read);
    let prepared = |s: &Arc<FileSnapshot>| match &s.content {
        Ok(c) => Arc::clone(&c.prepared),
        Err(e) => panic!("{e}"),
    };
    let (pa, pi, pb) = (prepared(&a), prepared(&i), prepared(&b));
    let mut index = SeriesIndex::default();
    index.update(&[(&a.path, &pa), (&b.path, &pb)]);
    assert!(!index.has_repeats());
    // i.prom repeats up{job="a"}.
    index.update(&[(&a.path, &pa), (&b.path, &pb), (&i.path, &pi)]);
    assert!(index.has_repeats());
    index.update(&[(&b.path, &pb), (&i.path, &pi)]);
    assert!(!index.has_repeats());
    // a.prom's path now holding i.prom's series: a repeat again, then gone.
    index.update(&[(&a.path, &pi), (&i.path, &pi)]);
    assert!(index.has_repeats());
    index.update(&[(&a.path, &pa), (&i.path, &pb)]);
    assert!(!index.has_repeats());
    // up{job="a"} three times, then twice (still a repeat), then once.
    index.update(&[(&a.path, &pa), (&b.path, &pa), (&i.path, &pi)]);
    assert!(index.has_repeats());
    index.update(&[(&a.path, &pa), (&i.path, &pi)]);
    assert!(index.has_repeats());
    index.update(&[(&i.path, &pi)]);
    assert!(!index.has_repeats());
    index.update(&[]);
    assert!(index.is_empty());
}

/// Files with series of the exporter's own families: fitting ones, ones that would pass for
/// the exporter's own, another TYPE, an info served as `x_info`, duplicates across files.
const OWN_POOL: &[(&str, &str)] = &[
    (
        "a.prom",
        "# TYPE process_max_fds gauge\nprocess_max_fds{job_name=\"a\"} 1024\n# TYPE promdrop_files gauge\npromdrop_files{job_name=\"a\",state=\"fresh\"} 3\n# TYPE up gauge\nup{job_name=\"a\"} 1\n",
    ),
    (
        "b.prom",
        "# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total{job_name=\"b\"} 2\nprocess_cpu_seconds_created{job_name=\"b\"} 1.7e+09\n# TYPE promdrop_build info\npromdrop_build_info{version=\"x\"} 1\n# TYPE promdrop_reloads counter\npromdrop_reloads_total{job_name=\"b\",result=\"success\"} 2\n# EOF\n",
    ),
    (
        "c.prom",
        "# TYPE process_max_fds gauge\nprocess_max_fds 5\nprocess_max_fds{job_name=\"a\"} 2048\n# TYPE promdrop_files counter\npromdrop_files_total 1\n",
    ),
    ("d.prom", "# TYPE up gauge\nup{job_name=\"d\"} 1\n"),
    (
        "e.prom",
        "# TYPE promdrop_files gauge\npromdrop_files{state=\"fresh\"} 99\npromdrop_files{job_name=\"e\",state=\"fresh\"} 4\n# TYPE promdrop_file_series gauge\npromdrop_file_series{file=\"x\"} 1000\npromdrop_file_series{file=\"x\",job_name=\"e\"} 7\n",
    ),
    (
        "f.prom",
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total{job_name=\"f\"} 3\n# TYPE process_open_fds gauge\nprocess_open_fds{job_name=\"f\"} 9\n",
    ),
    (
        "g.prom",
        "# TYPE process_open_fds gauge\nprocess_open_fds{job_name=\"g\"} 10\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total{job_name=\"f\"} 4\n",
    ),
];

/// The files' series of the exporter's own families, taken per chunk and joined, are what one
/// build over every file gives (lines and conflicts), whatever the chunks.
#[test]
fn own_families_taken_by_chunks_equal_one_build() {
    use crate::adopt::Adopted;
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let read = read_options(TimestampPolicy::Keep);
    let options = ExpositionOptions::default();
    let wanted = options.prepare_options();
    let all: Vec<Arc<FileSnapshot>> = OWN_POOL
        .iter()
        .enumerate()
        .map(|(i, (name, text))| {
            let identity = FileIdentity {
                dev: 1,
                ino: i as u64 + 1,
                size: text.len() as u64,
                mtime_ns: (1_700_000_000 + i as i128) * 1_000_000_000,
            };
            let s = parse_bytes(
                PathBuf::from("/o").join(name),
                identity,
                Bytes::from_static(text.as_bytes()),
                &read,
            );
            assert!(s.content.is_ok(), "{name}: {:?}", s.content);
            Arc::new(s)
        })
        .collect();
    let mut orders: Vec<Vec<usize>> = (0..OWN_POOL.len()).map(|i| vec![i]).collect();
    orders.push((0..OWN_POOL.len()).collect());
    for _ in 0..300 {
        let n = 2 + (next() % 5) as usize;
        orders.push(
            (0..n)
                .map(|_| (next() % OWN_POOL.len() as u64) as usize)
                .collect(),
        );
    }
    let (mut joined, mut rebuilt) = (0, 0);
    for order in &orders {
        let mut seen = std::collections::HashSet::new();
        let files: Vec<Arc<FileSnapshot>> = order
            .iter()
            .filter(|&&i| seen.insert(i))
            .map(|&i| Arc::clone(&all[i]))
            .collect();
        let prepared: Vec<Arc<Prepared>> = files
            .iter()
            .filter_map(|f| prepared_for(f, &wanted))
            .collect();
        let one = Adopted::build(&files, &prepared, &wanted, options.own_config());
        for bits in [0, 1, super::CHUNK_BITS] {
            let data = DataPart::build_cut(
                files.clone(),
                options.clone(),
                &mut SeriesIndex::default(),
                bits,
            );
            for own in crate::names::OWN_METRICS {
                let got = data.adopted.lines(own.name);
                let want = one.lines(own.name);
                assert_eq!(
                    got.map(|l| (&l.classic, &l.openmetrics)),
                    want.map(|l| (&l.classic, &l.openmetrics)),
                    "{}, files {order:?}, bits {bits}",
                    own.name
                );
            }
            assert_eq!(
                data.adopted.conflicts, one.conflicts,
                "files {order:?}, bits {bits}"
            );
            let parts: Vec<&Adopted> = data.chunks().iter().map(|c| &*c.adopted).collect();
            match Adopted::join(&parts) {
                Some(_) if data.chunks().len() > 1 => joined += 1,
                Some(_) => {}
                None => rebuilt += 1,
            }
        }
    }
    // Most chunkings join the parts; a series in two chunks takes the one build.
    assert!(
        joined > 100 && rebuilt > 10,
        "joined {joined}, rebuilt {rebuilt}"
    );
}

/// A job's file as bench/churn.py writes them (families shared by every job, told apart by
/// `job`), at `generation` (every value changes with it), in one of a few shapes: 0 plain,
/// 1 another HELP, 2 another TYPE for a family, 3 a family fewer, 4 a family of its own,
/// 5 other bucket bounds.
fn job_text(job: usize, generation: u64, shape: u64) -> String {
    let help = if shape == 1 {
        "Rows, said otherwise."
    } else {
        "Rows."
    };
    let mut out = format!("# HELP batch_rows_total {help}\n# TYPE batch_rows_total counter\n");
    for s in 0..3 {
        let v = generation * 10 + s;
        out.push_str(&format!(
            "batch_rows_total{{job=\"j{job}\",shard=\"{s}\"}} {v}\n"
        ));
    }
    let depth = if shape == 2 { "counter" } else { "gauge" };
    out.push_str(&format!(
        "# TYPE batch_depth {depth}\nbatch_depth{{job=\"j{job}\"}} {generation}\n"
    ));
    if shape != 3 {
        let le = if shape == 5 { "0.5" } else { "1" };
        out.push_str(&format!(
            "# TYPE batch_seconds histogram\nbatch_seconds_bucket{{job=\"j{job}\",le=\"{le}\"}} {generation}\nbatch_seconds_bucket{{job=\"j{job}\",le=\"+Inf\"}} {generation}\nbatch_seconds_sum{{job=\"j{job}\"}} 1.5\nbatch_seconds_count{{job=\"j{job}\"}} {generation}\n"
        ));
    }
    if shape == 4 {
        out.push_str(&format!("# TYPE own_{job} gauge\nown_{job} 1\n"));
    }
    out
}

/// The merges kept from one publication to the next (`Carry`: the chunks' shapes compared,
/// not merged again) give what the full merge gives at every step, while files are rewritten
/// with new values (the merge kept), change shape (HELP, TYPE, families, buckets: merged
/// again), or are replaced by the pool's files (conflicts of every kind, duplicate series).
#[test]
fn merges_kept_between_publications_equal_the_full_merge() {
    use super::{Carry, DataChunk};
    use std::sync::atomic::Ordering;
    let mut next = xorshift(0xda94_2042_e4dd_58b5);
    let read = read_options(TimestampPolicy::Keep);
    const CHUNKS: usize = 4;
    const PER_CHUNK: usize = 3;
    // What a position holds: a job's file (shape, generation), or a pool file.
    #[derive(Clone, Copy)]
    enum Held {
        Job(u64, u64),
        Pool(usize),
    }
    let file = |position: usize, held: Held| {
        let text = match held {
            Held::Job(shape, generation) => job_text(position, generation, shape),
            Held::Pool(i) => POOL[i].1.to_string(),
        };
        let identity = FileIdentity {
            dev: 1,
            ino: position as u64 + 1,
            size: text.len() as u64,
            mtime_ns: 1_700_000_000_000_000_000,
        };
        let s = parse_bytes(
            PathBuf::from(format!("/d/p{position:02}.prom")),
            identity,
            Bytes::from(text),
            &read,
        );
        assert!(s.content.is_ok(), "{:?}", s.content);
        Arc::new(s)
    };
    let mut reshaped = 0;
    for options in [
        ExpositionOptions::default(),
        ExpositionOptions {
            source_label: Some("src".to_string()),
            ..ExpositionOptions::default()
        },
    ] {
        let carry = Arc::new(Carry::default());
        let mut held: Vec<Held> = (0..CHUNKS * PER_CHUNK)
            .map(|_| Held::Job(next() % 7, 1))
            .collect();
        let mut files: Vec<Arc<FileSnapshot>> =
            held.iter().enumerate().map(|(p, &h)| file(p, h)).collect();
        let build = |files: &[Arc<FileSnapshot>], c: usize| {
            Arc::new(DataChunk::build(
                files[c * PER_CHUNK..(c + 1) * PER_CHUNK].to_vec(),
                &options,
            ))
        };
        let mut chunks: Vec<Arc<DataChunk>> = (0..CHUNKS).map(|c| build(&files, c)).collect();
        // The gzip streams, made by blocks from one publication to the next as the server
        // makes them, must read as the full merge too.
        let kept = [KeptBlocks::default(), KeptBlocks::default()];
        let gunzipped = |data: &DataPart, openmetrics: bool| {
            let mut items = Vec::new();
            data.gzip_items(openmetrics, &mut items);
            let body = GzipBody::build(&items, &kept[usize::from(openmetrics)]);
            let bytes: Vec<u8> = body
                .finish(b"")
                .iter()
                .flat_map(|s| s.parts().flat_map(|p| p.to_vec()).collect::<Vec<u8>>())
                .collect();
            String::from_utf8_lossy(&super::tests::gunzip(&bytes)).into_owned()
        };
        for step in 0..400 {
            if step > 0 {
                let position = (next() % files.len() as u64) as usize;
                held[position] = match (next() % 10, held[position]) {
                    (0..=5, Held::Job(shape, generation)) => Held::Job(shape, generation + 1),
                    (6 | 7, Held::Job(_, generation)) => Held::Job(next() % 7, generation + 1),
                    (8, _) => Held::Pool((next() % POOL.len() as u64) as usize),
                    (_, Held::Job(_, generation)) => Held::Job(0, generation + 1),
                    (_, Held::Pool(_)) => Held::Job(0, 1),
                };
                files[position] = file(position, held[position]);
                chunks[position / PER_CHUNK] = build(&files, position / PER_CHUNK);
            }
            let repeats = super::series_index_of(&chunks).has_repeats();
            let kept_before = carry.merges_kept.load(Ordering::Relaxed);
            let data =
                DataPart::assemble(chunks.clone(), options.clone(), repeats, Arc::clone(&carry));
            let mut expected = String::new();
            let conflicts = render_data(&files, &options, Format::Classic, &mut expected);
            assert_eq!(data.classic_text(), expected, "classic, step {step}");
            assert_eq!(
                gunzipped(&data, false),
                expected,
                "classic gzip, step {step}"
            );
            // Then those of the exporter's own families (two copies of the pool's f.prom),
            // which `own_families_taken_by_chunks_equal_one_build` checks.
            let conflicts = [conflicts, data.adopted.conflicts.clone()].concat();
            assert_eq!(data.conflicts, conflicts, "conflicts, step {step}");
            let mut expected_om = String::new();
            render_data(&files, &options, Format::OpenMetrics, &mut expected_om);
            assert_eq!(
                String::from_utf8_lossy(&data.render_openmetrics()),
                expected_om,
                "openmetrics, step {step}"
            );
            assert_eq!(
                gunzipped(&data, true),
                expected_om,
                "openmetrics gzip, step {step}"
            );
            if carry.merges_kept.load(Ordering::Relaxed) == kept_before && step > 0 && !repeats {
                reshaped += 1;
            }
        }
        // Most steps rewrite values only: their merges were kept.
        let kept = carry.merges_kept.load(Ordering::Relaxed);
        assert!(kept > 250, "merges kept: {kept}");
    }
    // And the others were merged again, and still equal the full merge.
    assert!(reshaped > 40, "merged again: {reshaped}");
}
