//! Times the stages of one publication for a directory: read and parse every file, merge and
//! render classic, render OpenMetrics, gzip; and prints the resident memory after each. First
//! as the exporter publishes (files prepared once, merged by concatenation, one file changed),
//! then the full merge (every file parsed again) for comparison.
//!
//!     cargo run --release -p promdrop-exporter --example render_dir -- /tmp/bench1k

use std::sync::Arc;
use std::time::Instant;

use promdrop_exporter::exposition::{DataPart, ExpositionOptions, render_data};
use promdrop_exporter::process::resident_bytes;
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::discovery;
use promdrop_textfile::prepared::SeriesIndex;
use promdrop_textfile::snapshot::{self, ReadOptions};
use promdrop_textformat::Format;

fn rss() -> String {
    format!("{:.1} MB", resident_bytes().unwrap_or(0) as f64 / 1e6)
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: render_dir DIR");
    let options = ReadOptions {
        max_bytes: 16 << 20,
        max_series: 100_000,
        timestamps: TimestampPolicy::Reject,
    };
    let start = Instant::now();
    let listing = discovery::list(dir.as_ref()).expect("listing");
    let files: Vec<_> = listing
        .found
        .iter()
        .map(|f| Arc::new(snapshot::read(&f.path, f.identity, &options).expect("reading")))
        .collect();
    println!(
        "read+parse {} files: {:?}, rss {}",
        files.len(),
        start.elapsed(),
        rss()
    );
    incremental(&files, &options);
    stages(&files);
    stages(&files);
    for format in [Format::Classic, Format::OpenMetrics, Format::Classic] {
        let start = Instant::now();
        let mut out = String::new();
        let conflicts = render_data(&files, &ExpositionOptions::default(), format, &mut out);
        println!(
            "merge+render {format}: {:?}, {} bytes, {} conflicts, rss {}",
            start.elapsed(),
            out.len(),
            conflicts.len(),
            rss()
        );
        let start = Instant::now();
        let gz = promdrop_exporter::gzip::deflate(out.as_bytes(), true);
        println!(
            "gzip: {:?}, {} bytes, rss {}",
            start.elapsed(),
            gz.bytes.len(),
            rss()
        );
    }
}

/// Publishing as the engine does: the first build, then builds after one file changed.
fn incremental(files: &[Arc<snapshot::FileSnapshot>], options: &ReadOptions) {
    let mut index = SeriesIndex::default();
    let start = Instant::now();
    let data = DataPart::build_indexed(files.to_vec(), ExpositionOptions::default(), &mut index);
    println!(
        "first publication (concatenated: {}): {:?}, {} bytes, rss {}",
        data.is_concatenated(),
        start.elapsed(),
        data.classic().iter().map(|s| s.len()).sum::<usize>(),
        rss()
    );
    drop(data);
    let mut files = files.to_vec();
    let mut times = Vec::new();
    for round in 0..20 {
        let i = (round * 37) % files.len();
        let start = Instant::now();
        let f = &files[i];
        files[i] = Arc::new(snapshot::read(&f.path, f.identity, options).expect("reading"));
        let read = start.elapsed();
        let data = DataPart::build_indexed(files.clone(), ExpositionOptions::default(), &mut index);
        times.push((read, start.elapsed()));
        if round == 19 {
            let start = Instant::now();
            let om = data.render_openmetrics();
            println!(
                "openmetrics by concatenation: {:?}, {} bytes",
                start.elapsed(),
                om.len()
            );
        }
    }
    times.sort_by_key(|t| t.1);
    println!(
        "one file changed, read+prepare+publish: median {:?} (of which read+prepare {:?}), max {:?}, rss {}",
        times[10].1,
        times[10].0,
        times[19].1,
        rss()
    );
}

/// The stages of `render_data`, timed one by one with promdrop-textformat directly.
#[allow(dead_code)]
fn stages(files: &[Arc<snapshot::FileSnapshot>]) {
    use promdrop_textformat::{Source, merge, parse, render_classic_into};
    let texts: Vec<_> = files
        .iter()
        .filter_map(|f| f.content.as_ref().ok())
        .map(|c| (c.bytes(), c.format))
        .collect();
    let start = Instant::now();
    let parsed: Vec<_> = texts
        .iter()
        .map(|(bytes, format)| parse(bytes, *format).expect("parses"))
        .collect();
    let parse_time = start.elapsed();
    let start = Instant::now();
    let sources: Vec<_> = parsed.iter().map(|e| Source::new(&e.families)).collect();
    let merged = merge(&sources);
    let merge_time = start.elapsed();
    let start = Instant::now();
    let mut out = String::with_capacity(9 << 20);
    render_classic_into(&merged.families, &mut out);
    println!(
        "stages: parse {parse_time:?}, merge {merge_time:?}, render {:?}",
        start.elapsed()
    );
}
