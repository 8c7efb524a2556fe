//! The work of one change, for counting instructions: loads N files of 100 series sharing
//! family names (as bench/churn.py writes them), publishes them as the engine does (chunks,
//! data and meta parts, the OpenMetrics gzip body), then applies K changes, each one file
//! rewritten: parse and prepare it, rebuild its chunk, assemble, compress what changed, join
//! by blocks.
//!
//!     cargo build --release -p promdrop-exporter --example one_change
//!     valgrind --tool=callgrind --callgrind-out-file=/tmp/cg0 target/release/examples/one_change 1000 0
//!     valgrind --tool=callgrind --callgrind-out-file=/tmp/cg1 target/release/examples/one_change 1000 20
//!
//! (instructions with 20 changes - instructions with 0) / 20 is the cost of one change
//! (bench/churn.sh prints it at 1k and 10k files when valgrind is installed).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use promdrop_exporter::exposition::gzip_body::KeptBlocks;
use promdrop_exporter::exposition::{
    CHUNK_BITS, Carry, Counters, DataChunk, DataPart, ExpositionOptions, MetaChunk, MetaPart,
    ends_chunk, gzip_stream,
};
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::discovery::FileIdentity;
use promdrop_textfile::prepared::PrepareOptions;
use promdrop_textfile::prepared::SeriesIndex;
use promdrop_textfile::snapshot::{ReadOptions, parse_bytes_prepared};
use promdrop_textfile::staleness::{FileView, Policy, Timing};

const FAMILIES: [(&str, &str); 9] = [
    ("batch_job_rows_processed_total", "counter"),
    ("batch_job_rows_failed_total", "counter"),
    ("batch_job_bytes_read_total", "counter"),
    ("batch_job_bytes_written_total", "counter"),
    ("batch_job_step_duration_seconds", "gauge"),
    ("batch_job_queue_depth", "gauge"),
    ("batch_job_retries_total", "counter"),
    ("batch_job_cache_hits_total", "counter"),
    ("batch_job_memory_peak_bytes", "gauge"),
];

fn text(i: usize, generation: u64) -> String {
    let job = format!("job_{i:05}");
    let mut out = format!(
        "# HELP churn_generation Generation of this file's last write.\n# TYPE churn_generation gauge\nchurn_generation{{job=\"{job}\"}} {generation}\n"
    );
    for (f, (name, kind)) in FAMILIES.iter().enumerate() {
        out.push_str(&format!("# HELP {name} A metric.\n# TYPE {name} {kind}\n"));
        for s in 0..11 {
            let v = generation * 1000 + (f * 11 + s) as u64;
            out.push_str(&format!("{name}{{job=\"{job}\",shard=\"{s}\"}} {v}\n"));
        }
    }
    out
}

fn view(i: usize, generation: u64, read: &ReadOptions, prepare: &PrepareOptions) -> FileView {
    let body = text(i, generation);
    let identity = FileIdentity {
        dev: 1,
        ino: i as u64 + 1,
        size: body.len() as u64,
        mtime_ns: 1_700_000_000_000_000_000 + generation as i128,
    };
    let path = PathBuf::from(format!("/var/lib/promdrop/job_{i:05}.prom"));
    // Prepared for the exporter's options, as the engine reads files.
    let snapshot = parse_bytes_prepared(path, identity, Bytes::from(body), read, prepare);
    let timing = Timing::of(&snapshot, &Policy::default());
    FileView {
        snapshot: Arc::new(snapshot),
        timing,
        state: promdrop_textfile::staleness::FileState::Fresh,
    }
}

/// One publication: chunks not in `cache` are built, then the OpenMetrics gzip body joined.
fn publish(
    views: &[FileView],
    cache: &mut Vec<(Vec<usize>, Arc<DataChunk>, Arc<MetaChunk>)>,
    index: &mut SeriesIndex,
    carry: &Arc<Carry>,
    kept: &KeptBlocks,
) -> usize {
    let options = ExpositionOptions {
        timestamps: Some(TimestampPolicy::Reject),
        ..ExpositionOptions::default()
    };
    let mut next = Vec::with_capacity(cache.len());
    // The previous chunks by their files (the engine keys them by the first file).
    let mut old: std::collections::HashMap<Vec<usize>, _> =
        cache.drain(..).map(|c| (c.0.clone(), c)).collect();
    let mut start = 0;
    for i in 0..views.len() {
        if !ends_chunk(&views[i].snapshot.path, CHUNK_BITS) && i + 1 != views.len() {
            continue;
        }
        let part = &views[start..=i];
        let key: Vec<usize> = part
            .iter()
            .map(|v| Arc::as_ptr(&v.snapshot) as usize)
            .collect();
        start = i + 1;
        match old.remove(&key) {
            Some(kept) => next.push(kept),
            None => {
                let served = part.iter().map(|v| Arc::clone(&v.snapshot)).collect();
                let data = Arc::new(DataChunk::build(served, &options));
                for p in data.prepared() {
                    index.add(p);
                }
                next.push((key, data, Arc::new(MetaChunk::build(part, false))));
            }
        }
    }
    for (_, (_, data, _)) in old.drain() {
        for p in data.prepared() {
            index.remove(p);
        }
    }
    *cache = next;
    let data = DataPart::assemble(
        cache.iter().map(|c| Arc::clone(&c.1)).collect(),
        options,
        index.has_repeats(),
        Arc::clone(carry),
    );
    assert!(data.is_concatenated(), "no duplicate series here");
    let meta_chunks: Vec<Arc<MetaChunk>> = cache.iter().map(|c| Arc::clone(&c.2)).collect();
    let meta = MetaPart::from_chunks(meta_chunks, &Counters::default(), false, &data.adopted);
    let body = gzip_stream(&data, &meta, true, kept);
    body.finish(b"# EOF\n").iter().map(|s| s.len()).sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let k: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let read = ReadOptions {
        max_bytes: 1 << 20,
        max_series: 1000,
        timestamps: TimestampPolicy::Reject,
    };
    let options = ExpositionOptions {
        timestamps: Some(TimestampPolicy::Reject),
        ..ExpositionOptions::default()
    };
    let prepare = options.prepare_options();
    let mut views: Vec<FileView> = (0..n).map(|i| view(i, 1, &read, &prepare)).collect();
    let mut cache = Vec::new();
    let mut index = SeriesIndex::default();
    let carry = Arc::new(Carry::default());
    let kept = KeptBlocks::default();
    let first = publish(&views, &mut cache, &mut index, &carry, &kept);
    println!("{n} files: first publication, gzip body {first} bytes");
    for change in 0..k {
        let i = (change * 7919 + 13) % n;
        views[i] = view(i, 2 + change as u64, &read, &prepare);
        publish(&views, &mut cache, &mut index, &carry, &kept);
    }
    println!("{k} changes applied");
}
