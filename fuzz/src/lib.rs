//! What the fuzz targets check, shared between them.
//!
//! Parsing runs with tight [`ParseLimits`] so that an input which makes the parser hang or
//! allocate out of proportion shows up as a timeout or an out-of-memory report.

use promdrop_textformat::{
    Conflict, Format, MetricFamily, ParseLimits, Source, merge, parse, parse_with_limits,
    render_classic, render_openmetrics,
};

/// Tight bounds: 1 MiB of input, 64 KiB lines, 128 labels, 64 KiB label values, 100k series.
pub const LIMITS: ParseLimits = ParseLimits {
    max_bytes: 1 << 20,
    max_line_length: 64 << 10,
    max_labels_per_sample: 128,
    max_label_value_length: 64 << 10,
    max_series: 100_000,
};

fn render(families: &[MetricFamily<'_>], format: Format) -> String {
    match format {
        Format::OpenMetrics => render_openmetrics(families),
        _ => render_classic(families),
    }
}

/// Parses `data` as `format`; when it parses, the rendering in the format that was read must
/// parse again to equal families (and render to the same text), and rendering in the other
/// format must not panic.
pub fn check_roundtrip(data: &[u8], format: Format) {
    let Ok(exposition) = parse_with_limits(data, format, &LIMITS) else {
        return;
    };
    let parsed = exposition.format;
    assert_ne!(parsed, Format::Auto, "parse must resolve Format::Auto");
    if format != Format::Auto {
        assert_eq!(parsed, format, "parse changed an explicit format");
    }

    let rendered = render(&exposition.families, parsed);
    // Rendering can be longer than the input (escapes, suffixes): re-parse without the tight
    // limits, which are for hostile input, not for our own output.
    let again = parse(rendered.as_bytes(), parsed).unwrap_or_else(|e| {
        panic!(
            "rendering of parsed {parsed} input does not parse again: {e}\ninput: {:?}\nrendered: {rendered:?}",
            String::from_utf8_lossy(data)
        )
    });
    assert_eq!(
        again.families,
        exposition.families,
        "round trip changed the families\ninput: {:?}\nrendered: {rendered:?}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(
        render(&again.families, parsed),
        rendered,
        "rendering is not stable across a round trip"
    );
    assert_eq!(
        Format::Auto.resolve(rendered.as_bytes()),
        parsed,
        "Format::Auto does not recognise the rendering"
    );

    // The other format: must not panic. Whether it parses depends on what the source allowed
    // (a classic counter may be negative, OpenMetrics' may not), so only parse it.
    let other = match parsed {
        Format::OpenMetrics => Format::Classic,
        _ => Format::OpenMetrics,
    };
    let converted = render(&exposition.families, other);
    let _ = parse(converted.as_bytes(), other);
}

/// Splits `data` on NUL bytes into up to three sources, parses each as classic text, merges
/// the ones that parse and renders the result in both formats. Every input sample must be
/// served, reported as a duplicate, or be in a family dropped for a type conflict.
pub fn check_merge(data: &[u8]) {
    let parts: Vec<&[u8]> = data.splitn(3, |b| *b == 0).collect();
    let expositions: Vec<_> = parts
        .iter()
        .filter_map(|part| {
            let exposition = parse_with_limits(part, Format::Classic, &LIMITS).ok()?;
            Some((part.len(), exposition))
        })
        .collect();
    let sources: Vec<Source<'_>> = expositions
        .iter()
        // Vary the precedences so that both ways of settling a duplicate are taken.
        .map(|(len, e)| Source::new(&e.families).with_precedence((len % 3) as i128))
        .collect();
    let merged = merge(&sources);

    let total: usize = expositions.iter().map(|(_, e)| e.sample_count()).sum();
    let served: usize = merged.families.iter().map(|f| f.samples.len()).sum();
    let mut duplicates = 0;
    let mut dropped_by_type = 0;
    for conflict in &merged.conflicts {
        match conflict {
            Conflict::DuplicateSeries { .. } => duplicates += 1,
            Conflict::TypeMismatch { family, source, .. } => {
                dropped_by_type += sources[*source]
                    .families
                    .iter()
                    .filter(|f| f.name == family.as_str())
                    .map(|f| f.samples.len())
                    .sum::<usize>();
            }
            Conflict::HelpMismatch { .. } => {}
        }
    }
    assert_eq!(
        served + duplicates + dropped_by_type,
        total,
        "merge lost or invented samples: {served} served, {duplicates} duplicates, {dropped_by_type} dropped for their type, of {total}"
    );

    let classic = render_classic(&merged.families);
    let _ = parse(classic.as_bytes(), Format::Classic);
    let openmetrics = render_openmetrics(&merged.families);
    let _ = parse(openmetrics.as_bytes(), Format::OpenMetrics);
}
