//! Inputs the fuzz targets in `fuzz/` found to break a property, minimised. Each test checks
//! what the target checks: an input that parses renders, in the format it was read as, to text
//! that parses again to the same families and renders to the same text.

use promdrop_textformat::{Format, MetricFamily, parse, render_classic, render_openmetrics};

fn render(families: &[MetricFamily<'_>], format: Format) -> String {
    match format {
        Format::OpenMetrics => render_openmetrics(families),
        _ => render_classic(families),
    }
}

/// The fuzz targets' round trip; returns the rendering.
fn round_trip(input: &[u8], format: Format) -> String {
    let exposition = parse(input, format).expect("the reproducer parses");
    let rendered = render(&exposition.families, exposition.format);
    let again = parse(rendered.as_bytes(), exposition.format)
        .unwrap_or_else(|e| panic!("the rendering does not parse: {e}\n{rendered}"));
    assert_eq!(again.families, exposition.families, "rendered:\n{rendered}");
    assert_eq!(render(&again.families, exposition.format), rendered);
    // Rendering in the other format must not panic.
    let _ = render(&exposition.families, Format::Classic);
    let _ = render(&exposition.families, Format::OpenMetrics);
    rendered
}

/// An OpenMetrics counter family whose own name ends in `_total` was renamed by
/// `render_openmetrics` (the `_total` stripped as for a classic counter family), so it came
/// back as another family. parse_auto, minimised from
/// crash-203bc4df6f8973586697936807465a5ac0ea1bc2.
#[test]
fn openmetrics_counter_family_named_total_keeps_its_name() {
    let input = b"# TYPE aa8_total counter\n# EOF\n";
    assert_eq!(
        round_trip(input, Format::Auto),
        "# TYPE aa8_total counter\n# EOF\n"
    );
    assert_eq!(
        round_trip(input, Format::OpenMetrics),
        "# TYPE aa8_total counter\n# EOF\n"
    );

    // With samples, which carry the suffix on top of the family name.
    let input = b"# HELP x_total Help.\n# TYPE x_total counter\nx_total_total 1\nx_total_created 2\n# EOF\n";
    assert_eq!(
        round_trip(input, Format::OpenMetrics),
        std::str::from_utf8(input).unwrap()
    );

    // A classic counter family named as its samples still becomes the OpenMetrics family `x`.
    let classic = parse(b"# TYPE x_total counter\nx_total 1\n", Format::Classic).unwrap();
    assert_eq!(
        render_openmetrics(&classic.families),
        "# TYPE x counter\nx_total 1\n# EOF\n"
    );
}

/// A classic histogram or summary typed after one of its sample names had been read as a
/// metric of its own (`# HELP foo`, then `foo_sum`, then `# TYPE foo histogram`) parsed, but
/// its rendering did not: `foo` comes first, so the rendered `# TYPE foo_sum untyped` line
/// names the histogram `foo`, which already has its TYPE. Such input is now refused at the
/// TYPE line. parse_classic, crash-244e4933dc4c29a085160c5679c8f0e920c90e02, minimised.
#[test]
fn classic_type_after_a_sample_name_of_the_family_is_refused() {
    let histogram = b"# HELP foo h\nfoo_sum 1\n# TYPE foo histogram\nfoo_bucket{le=\"+Inf\"} 1\n";
    let err = parse(histogram, Format::Classic).unwrap_err();
    assert_eq!((err.line(), err.column()), (3, 3));
    assert_eq!(
        err.message(),
        "TYPE histogram for metric name \"foo\" after \"foo_sum\" was read as a metric of its own: the TYPE line must come first"
    );

    let summary = b"# HELP foo h\nfoo_count 1\n# TYPE foo summary\nfoo{quantile=\"0.5\"} 1\n";
    let err = parse(summary, Format::Classic).unwrap_err();
    assert_eq!(err.line(), 3);
    assert!(err.message().contains("\"foo_count\""), "{err}");
    // `_bucket` is no sample name of a summary: no ambiguity, and the round trip holds.
    round_trip(
        b"# HELP foo h\nfoo_bucket 1\n# TYPE foo summary\nfoo{quantile=\"0.5\"} 1\n",
        Format::Classic,
    );

    // The metric `foo_sum` read before the family `foo` exists renders first, so it is not
    // ambiguous: it still parses, and round-trips.
    let rendered = round_trip(
        b"# TYPE foo_sum counter\nfoo_sum 1\n# TYPE foo histogram\nfoo_bucket{le=\"+Inf\"} 1\nfoo_count 1\n",
        Format::Classic,
    );
    assert!(rendered.starts_with("# TYPE foo_sum counter\nfoo_sum 1\n# TYPE foo histogram\n"));

    // The input the fuzzer found.
    let found: &[u8] = b"#10.+Inf0\nfol{type=\"unpin\"} 32662.0\n# HELP foo histogram Testing h7.0\nfoo_sum 324789.3\nfoo_created 1.520430000123e+09\n#\",leistogram buckets\n# TYPE foo histogram\nfoo_bucket{le=\"0.0\"} 0.0\n";
    assert_eq!(parse(found, Format::Classic).unwrap_err().line(), 7);
}
