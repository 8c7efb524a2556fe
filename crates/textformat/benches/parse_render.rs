//! Parse and render throughput on a 7 MB exposition of 100k series, the size PEERS.md measures
//! the peers on (1,000 families of 100 series, as 1,000 node_exporter textfiles would hold).
//!
//! Run: `cargo bench -p promdrop-textformat --bench parse_render`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promdrop_textformat::{Format, Source, merge, parse, render_classic, render_openmetrics};

/// 1,000 families x 100 series, about 70 bytes a line, like batch-job textfiles: a HELP and
/// TYPE per family, three labels per series, integer and fractional values.
fn exposition(families: usize, series: usize) -> String {
    let mut out = String::with_capacity(families * series * 72);
    for f in 0..families {
        let name = format!("batch_job_{f:04}_records_processed");
        out.push_str(&format!("# HELP {name} Records processed by step {f}.\n"));
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for s in 0..series {
            let value = (f * 7919 + s * 104_729) % 1_000_003;
            out.push_str(&format!(
                "{name}{{instance=\"node-{s:03}\",job=\"etl\",shard=\"{}\"}} {}.{}\n",
                s % 16,
                value,
                s % 10
            ));
        }
    }
    out
}

fn benches(c: &mut Criterion) {
    let text = exposition(1000, 100);
    let bytes = text.as_bytes();
    let mut group = c.benchmark_group("100k_series");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(30);

    // Dropping the result is not parsing: `iter_with_large_drop` leaves it out of the time.
    group.bench_function("parse_classic", |b| {
        b.iter_with_large_drop(|| parse(black_box(bytes), Format::Classic))
    });

    let parsed = match parse(bytes, Format::Classic) {
        Ok(parsed) => parsed,
        Err(e) => panic!("benchmark input does not parse: {e}"),
    };
    group.bench_function("render_classic", |b| {
        b.iter(|| render_classic(black_box(&parsed.families)).len())
    });

    // Values without source tokens exercise the float formatter.
    let mut untokened = parsed.families.clone();
    for family in &mut untokened {
        for sample in &mut family.samples {
            sample.value.token = None;
        }
    }
    group.bench_function("render_classic_formatting_floats", |b| {
        b.iter(|| render_classic(black_box(&untokened)).len())
    });

    let om = render_openmetrics(&parsed.families);
    group.bench_function("parse_openmetrics", |b| {
        b.iter_with_large_drop(|| parse(black_box(om.as_bytes()), Format::OpenMetrics))
    });
    group.bench_function("render_openmetrics", |b| {
        b.iter(|| render_openmetrics(black_box(&parsed.families)).len())
    });

    // The exporter's merge of 1,000 sources of 100 series each.
    let files: Vec<String> = (0..1000)
        .map(|f| exposition(1, 100).replace("batch_job_0000", &format!("batch_job_{f:04}")))
        .collect();
    let parsed_files: Vec<_> = files
        .iter()
        .filter_map(|t| parse(t.as_bytes(), Format::Classic).ok())
        .collect();
    group.bench_function("merge_1000_sources_and_render", |b| {
        b.iter(|| {
            let sources: Vec<Source<'_>> = parsed_files
                .iter()
                .map(|e| Source::new(&e.families))
                .collect();
            let merged = merge(black_box(&sources));
            render_classic(&merged.families).len()
        })
    });
    group.finish();
}

criterion_group!(parse_render, benches);
criterion_main!(parse_render);
