//! Parses a file once, then renders it repeatedly and reports throughput, for profiling the
//! renderers (`valgrind --tool=callgrind` counts their instructions; the parse is done once).
//!
//! `cargo run --release -p promdrop-textformat --example render_file -- FILE [ITERATIONS] [classic|openmetrics]`

use std::time::Instant;

use promdrop_textformat::{Format, parse, render_classic_into, render_openmetrics_into};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: render_file FILE [ITERATIONS] [classic|openmetrics]");
        std::process::exit(2);
    };
    let iterations: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    let openmetrics = args.next().as_deref() == Some("openmetrics");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("render_file: cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    let families = match parse(&bytes, Format::Auto) {
        Ok(exposition) => exposition.families,
        Err(e) => {
            eprintln!("render_file: {path}:{e}");
            std::process::exit(1);
        }
    };
    let mut out = String::with_capacity(bytes.len() * 2);
    let start = Instant::now();
    for _ in 0..iterations {
        out.clear();
        if openmetrics {
            render_openmetrics_into(&families, &mut out);
        } else {
            render_classic_into(&families, &mut out);
        }
    }
    let elapsed = start.elapsed().as_secs_f64() / iterations as f64;
    println!(
        "{} bytes rendered: {:.2} ms a render, {:.0} MB/s (wall clock)",
        out.len(),
        elapsed * 1000.0,
        out.len() as f64 / elapsed / 1e6
    );
}
