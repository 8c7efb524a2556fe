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
