//! The fast path (files' prepared text concatenated, promdrop_textfile::prepared) against the
//! full merge (promdrop_textformat::merge, [`super::render_data`]): the same bytes.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use promdrop_textformat::Format;

use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::discovery::FileIdentity;
use promdrop_textfile::prepared::{Prepared, SeriesIndex, render_openmetrics};
use promdrop_textfile::snapshot::{FileSnapshot, ReadOptions, parse_bytes};

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
    (
        "j.prom",
        "# TYPE requests counter\nrequests_total{code=\"500\"} 1\n# TYPE lat histogram\nlat_bucket{le=\"1\",x=\"j\"} 0\nlat_bucket{le=\"+Inf\",x=\"j\"} 0\nlat_sum{x=\"j\"} 0\nlat_count{x=\"j\"} 0\n# EOF\n",
    ),
    // Names that clash once rendered: a classic counter requests_total beside the
    // OpenMetrics counter requests (e, j); a gauge build_info beside the info build (e).
    (
        "k.prom",
        "# TYPE requests_total counter\nrequests_total{code=\"404\"} 2\n# TYPE build_info gauge\nbuild_info{v=\"2\"} 1\n",
    ),
    // Other buckets for lat (c, j: 1, +Inf; here 1.0 is 1), other quantiles for s (g), and a
    // summary without quantiles, which has no set to differ.
    (
        "l.prom",
        "# TYPE lat histogram\nlat_bucket{le=\"0.5\",x=\"l\"} 1\nlat_bucket{le=\"+Inf\",x=\"l\"} 1\nlat_sum{x=\"l\"} 1\nlat_count{x=\"l\"} 1\n# TYPE s summary\ns{quantile=\"0.9\",l=\"1\"} 1\ns_sum{l=\"1\"} 1\ns_count{l=\"1\"} 1\n# TYPE plain summary\nplain_sum 1\nplain_count 1\n",
    ),
    // ... and another HELP for up (a's), which no file above gives.
    (
        "m.prom",
        "# HELP up Up, said otherwise.\n# TYPE up gauge\nup{job=\"m\"} 1\n# TYPE lat histogram\nlat_bucket{le=\"1.0\",x=\"m\"} 1\nlat_bucket{le=\"+Inf\",x=\"m\"} 1\nlat_sum{x=\"m\"} 1\nlat_count{x=\"m\"} 1\n# TYPE plain summary\nplain{quantile=\"0.5\",m=\"1\"} 1\nplain_sum{m=\"1\"} 1\nplain_count{m=\"1\"} 1\n",
    ),
    // OpenMetrics: the counter jobs with _created samples (a's jobs_total, g's folded
    // jobs_created gauge), and a gauge lat_count inside the histogram lat's names.
    (
        "n.prom",
        "# TYPE jobs counter\njobs_total{r=\"om\"} 1\njobs_created{r=\"om\"} 1.5e+09\n# TYPE lat_count gauge\nlat_count{x=\"n\"} 3\n# TYPE door_total counter\ndoor_total_total 1\n# EOF\n",
    ),
    // The OpenMetrics name of a classic counter up_total is up (a gauge in a, b, h, i); the
    // gauge histogram q (e) holds q_count; a counter c (f, g: written as unknown) holds no
    // c_total.
    (
        "o.prom",
        "# TYPE up_total counter\nup_total 1\n# TYPE q_count gauge\nq_count{o=\"1\"} 1\n# TYPE c_total gauge\nc_total 4\n",
    ),
];

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
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut concatenated = [0usize; 2];
    // The conflicts seen: each kind, and type conflicts between families of different names.
    let mut kinds = std::collections::BTreeSet::new();
    for (timestamps, source_label) in [
        (TimestampPolicy::Keep, None),
        (TimestampPolicy::Strip, None),
        (TimestampPolicy::Keep, Some("src".to_string())),
    ] {
        let read = ReadOptions {
            max_bytes: 1 << 20,
            max_series: 1000,
            timestamps,
        };
        let options = ExpositionOptions {
            timestamps: Some(timestamps),
            source_label,
            ..ExpositionOptions::default()
        };
        let all: Vec<Arc<FileSnapshot>> = (0..POOL.len()).map(|i| snapshot(i, &read)).collect();
        let mut orders: Vec<Vec<usize>> = (0..POOL.len()).map(|i| vec![i]).collect();
        orders.push((0..POOL.len()).collect());
        for _ in 0..300 {
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
            let data = DataPart::build(files.clone(), options.clone());
            let mut expected = String::new();
            let conflicts = render_data(&files, &options, Format::Classic, &mut expected);
            assert_eq!(
                String::from_utf8_lossy(&data.classic.plain),
                expected,
                "classic, files {order:?}"
            );
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
    eprintln!("concatenated (classic, openmetrics): {concatenated:?}");
    assert!(concatenated[0] > 300, "{concatenated:?}");
    assert!(
        concatenated[1] > 100 && concatenated[1] < concatenated[0],
        "{concatenated:?}"
    );
}

#[test]
fn the_index_counts_what_changes() {
    let read = ReadOptions {
        max_bytes: 1 << 20,
        max_series: 1000,
        timestamps: TimestampPolicy::Keep,
    };
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
    index.update(&[]);
    assert!(index.is_empty());
}
