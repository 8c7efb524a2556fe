//! Parses a file repeatedly and reports throughput, for profiling and for timing the parser
//! by CPU time on a busy machine (`perf stat -e task-clock`).
//!
//! `cargo run --release -p promdrop-textformat --example parse_file -- FILE [ITERATIONS] [classic|openmetrics|auto]`

use std::time::Instant;

use promdrop_textformat::{Format, parse};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: parse_file FILE [ITERATIONS] [classic|openmetrics|auto]");
        std::process::exit(2);
    };
    let iterations: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    let format = match args.next().as_deref() {
        Some("openmetrics") => Format::OpenMetrics,
        Some("auto") => Format::Auto,
        _ => Format::Classic,
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("parse_file: cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let mut samples = 0;
    for _ in 0..iterations {
        match parse(&bytes, format) {
            Ok(exposition) => samples = exposition.sample_count(),
            Err(e) => {
                eprintln!("parse_file: {path}:{e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64() / iterations as f64;
    println!(
        "{} bytes, {samples} samples: {:.2} ms a parse, {:.0} MB/s (wall clock)",
        bytes.len(),
        elapsed * 1000.0,
        bytes.len() as f64 / elapsed / 1e6
    );
}
