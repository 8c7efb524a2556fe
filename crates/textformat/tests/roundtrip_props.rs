//! Property tests of the renderers and parsers together: families built from arbitrary valid
//! parts (names, unicode label values and help text with quotes, backslashes and newlines,
//! every class of float, timestamps, exemplars) render to text that parses back to the same
//! families, with every number bit for bit (NaN payloads aside), for both formats.
//!
//! Values are built with [`Value::new`], without a source token, so the renderers go through
//! [`format_go_float`]: the round trip checks the float formatter as well as the escaping.

use std::collections::HashSet;

use promdrop_textformat::{
    Exemplar, Format, Label, MetricFamily, MetricType, Sample, Timestamp, Value, format_go_float,
    parse, render_classic, render_openmetrics,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

type Labels = Vec<(String, String)>;

// ------------------------------------------------------------------------------------------
// Pieces shared by both formats.

/// A metric name, often ending in one of the suffixes the formats give meaning to.
/// Legacy names sometimes, UTF-8 names (written quoted) other times: dots, dashes, spaces,
/// braces, quotes, backslashes, newlines, non-ASCII, a leading digit.
fn metric_name() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        3 => "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        1 => "[a-zA-Z0-9_:.\\- é✓😀{}=,#\"\\\\\n]{1,12}",
    ];
    let suffix = select(vec![
        "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
    ]);
    prop_oneof![
        3 => name.clone(),
        1 => (name, suffix).prop_map(|(name, suffix)| format!("{name}{suffix}")),
    ]
}

/// A label name, legacy or UTF-8; not starting with `__`, which the classic parser refuses as
/// reserved.
fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z][a-zA-Z0-9_]{0,8}|_[a-zA-Z0-9][a-zA-Z0-9_]{0,7}",
        1 => "[a-zA-Z0-9.\\- é✓😀{}=,#\"\\\\\n][a-zA-Z0-9_:.\\- é✓😀{}=,#\"\\\\\n]{0,7}",
    ]
}

/// Characters that need escaping or that a parser could trip on.
const AWKWARD: &[char] = &[
    '"', '\\', '\n', '\r', '\t', ' ', 'n', '{', '}', ',', '=', '#', '\0', 'é', '€', '😀',
];

/// Arbitrary unicode text of up to `max` characters, control characters included.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..max).prop_map(String::from_iter),
        vec(select(AWKWARD), 0..max).prop_map(String::from_iter),
        "[a-z0-9 ]{0,10}",
    ]
}

/// Up to three labels with distinct names, none of them in `excluded`.
fn labels(excluded: &'static [&'static str]) -> impl Strategy<Value = Labels> {
    vec((label_name(), text(12)), 0..4).prop_map(move |pairs| {
        let mut out: Labels = Vec::new();
        for (name, value) in pairs {
            if !excluded.contains(&name.as_str()) && !out.iter().any(|(n, _)| *n == name) {
                out.push((name, value));
            }
        }
        out
    })
}

/// Any float: every class (normal, subnormal, zero of either sign, infinities, NaN), raw bit
/// patterns, small integers and known awkward values.
fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => any::<u64>().prop_map(f64::from_bits),
        1 => (-1000i32..1000).prop_map(f64::from),
        1 => select(vec![
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
            -5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e6,
            999_999.999_999_999_9,
            1e-4,
            9.999_999_999_999_999e-5,
            0.1,
            1e21,
            123_456.0,
        ]),
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    any_value().prop_map(|v| if v.is_finite() { v } else { 0.5 })
}

/// Not negative and not NaN (`-0` and `+Inf` included).
fn non_negative() -> impl Strategy<Value = f64> {
    any_value().prop_map(|v| {
        if v.is_nan() {
            1.0
        } else if v < 0.0 {
            -v
        } else {
            v
        }
    })
}

fn go_float(value: f64) -> String {
    let mut out = String::new();
    format_go_float(value, &mut out);
    out
}

fn to_labels(labels: &Labels) -> Vec<Label<'static>> {
    labels
        .iter()
        .map(|(n, v)| Label::new(n.clone(), v.clone()))
        .collect()
}

/// `labels` with `name="value"` inserted at `position` (clamped).
fn with_label(labels: &Labels, position: usize, name: &str, value: String) -> Labels {
    let mut out = labels.clone();
    out.insert(position.min(out.len()), (name.to_string(), value));
    out
}

fn sample(
    name: String,
    labels: &Labels,
    value: f64,
    timestamp: Option<Timestamp>,
) -> Sample<'static> {
    Sample {
        name: name.into(),
        labels: to_labels(labels),
        value: Value::new(value),
        timestamp,
        exemplar: None,
    }
}

/// Keeps the first of the items whose label sets (in any order) are equal.
fn unique_label_sets<T>(items: Vec<T>, labels: impl Fn(&T) -> &Labels) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| {
            let mut key = labels(item).clone();
            key.sort();
            seen.insert(key)
        })
        .collect()
}

/// Sorted, distinct (by value, so not both `0` and `-0`) finite bucket bounds.
fn bounds(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values.dedup_by(|a, b| a == b);
    values
}

fn same_bits(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Every number in `got` is bit-identical to the one in `expected` (NaN payloads aside).
/// The families must already be equal, so that they line up.
fn assert_bits_equal(
    expected: &[MetricFamily<'_>],
    got: &[MetricFamily<'_>],
) -> Result<(), TestCaseError> {
    for (e, g) in expected.iter().zip(got) {
        for (es, gs) in e.samples.iter().zip(&g.samples) {
            prop_assert!(
                same_bits(es.value.number, gs.value.number),
                "{}: value {:?} came back as {:?} (bits {:#x} vs {:#x})",
                es.name,
                es.value.number,
                gs.value.number,
                es.value.number.to_bits(),
                gs.value.number.to_bits()
            );
            if let (Some(Timestamp::Seconds(a)), Some(Timestamp::Seconds(b))) =
                (es.timestamp, gs.timestamp)
            {
                prop_assert!(
                    same_bits(a, b),
                    "{}: timestamp {a:?} came back as {b:?}",
                    es.name
                );
            }
            if let (Some(ee), Some(ge)) = (&es.exemplar, &gs.exemplar) {
                prop_assert!(
                    same_bits(ee.value.number, ge.value.number),
                    "{}: exemplar value {:?} came back as {:?}",
                    es.name,
                    ee.value.number,
                    ge.value.number
                );
                if let (Some(a), Some(b)) = (ee.timestamp, ge.timestamp) {
                    prop_assert!(
                        same_bits(a, b),
                        "{}: exemplar timestamp {a:?} came back as {b:?}",
                        es.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// The sample names each family owns or may own must be distinct across families, or the
/// parser files samples under another family (classic) or refuses the clash (OpenMetrics).
fn names_are_disjoint(
    families: &[MetricFamily<'_>],
    owned: impl Fn(&MetricFamily<'_>) -> Vec<String>,
) -> bool {
    let mut seen = HashSet::new();
    families.iter().all(|family| {
        let names: HashSet<String> = owned(family).into_iter().collect();
        names.into_iter().all(|name| seen.insert(name))
    })
}

// ------------------------------------------------------------------------------------------
// The classic format: counter, gauge, untyped, histogram, summary.

/// Classic HELP text: not empty and not starting with a blank (the parser skips blanks after
/// the name, and ignores an empty HELP), not ending in `\r` (the format cannot escape it, and a
/// line ending in `\r\n` is refused).
fn classic_help() -> impl Strategy<Value = String> {
    text(30).prop_map(|help| {
        let help = help.trim_start_matches([' ', '\t']).trim_end_matches('\r');
        if help.is_empty() {
            "help".to_string()
        } else {
            help.to_string()
        }
    })
}

fn classic_family() -> impl Strategy<Value = MetricFamily<'static>> {
    let types = select(vec![
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Unknown,
        MetricType::Histogram,
        MetricType::Summary,
    ]);
    (metric_name(), option::of(classic_help()), types).prop_flat_map(|(name, help, metric_type)| {
        let samples = match metric_type {
            MetricType::Histogram => classic_histogram(name.clone()).boxed(),
            MetricType::Summary => classic_summary(name.clone()).boxed(),
            _ => {
                let name = name.clone();
                vec((labels(&[]), any_value(), option::of(any::<i64>())), 1..5)
                    .prop_map(move |points| {
                        points
                            .into_iter()
                            .map(|(l, v, ts)| {
                                sample(name.clone(), &l, v, ts.map(Timestamp::Millis))
                            })
                            .collect()
                    })
                    .boxed()
            }
        };
        samples.prop_map(move |samples| MetricFamily {
            name: name.clone().into(),
            help: help.clone().map(Into::into),
            metric_type,
            unit: None,
            samples,
        })
    })
}

fn classic_histogram(name: String) -> impl Strategy<Value = Vec<Sample<'static>>> {
    let point = (
        labels(&["le"]),
        vec(finite(), 0..4),
        vec(0u32..1000, 5),
        any_value(),
        any::<bool>(),
        option::of(any::<i64>()),
        0..4usize,
    );
    vec(point, 1..3).prop_map(move |points| {
        let mut samples = Vec::new();
        for (labels, bounds_in, increments, sum, with_sum_count, ts, le_at) in points {
            let ts = ts.map(Timestamp::Millis);
            let mut bounds = bounds(bounds_in);
            bounds.push(f64::INFINITY);
            let mut cumulative = 0.0;
            for (bound, increment) in bounds.iter().zip(&increments) {
                cumulative += f64::from(*increment);
                let l = with_label(&labels, le_at, "le", go_float(*bound));
                samples.push(sample(format!("{name}_bucket"), &l, cumulative, ts));
            }
            if with_sum_count {
                samples.push(sample(format!("{name}_sum"), &labels, sum, ts));
                samples.push(sample(format!("{name}_count"), &labels, cumulative, ts));
            }
        }
        samples
    })
}

fn quantile() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..=1.0f64,
        select(vec![0.0, -0.0, 0.5, 0.9, 0.99, 1.0, 5e-324])
    ]
}

fn classic_summary(name: String) -> impl Strategy<Value = Vec<Sample<'static>>> {
    let point = (
        labels(&["quantile"]),
        vec((quantile(), any_value()), 0..4),
        any_value(),
        any_value(),
        option::of(any::<i64>()),
        0..4usize,
    );
    vec(point, 1..3).prop_map(move |points| {
        let mut samples = Vec::new();
        for (labels, quantiles, sum, count, ts, q_at) in points {
            let ts = ts.map(Timestamp::Millis);
            for (q, value) in quantiles {
                let l = with_label(&labels, q_at, "quantile", go_float(q));
                samples.push(sample(name.clone(), &l, value, ts));
            }
            samples.push(sample(format!("{name}_sum"), &labels, sum, ts));
            samples.push(sample(format!("{name}_count"), &labels, count, ts));
        }
        samples
    })
}

fn classic_families() -> impl Strategy<Value = Vec<MetricFamily<'static>>> {
    vec(classic_family(), 1..5).prop_filter("family names clash", |families| {
        names_are_disjoint(families, |family| {
            let name = family.name.to_string();
            let mut names = vec![name.clone()];
            if matches!(
                family.metric_type,
                MetricType::Histogram | MetricType::Summary
            ) {
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
            names
        })
    })
}

// ------------------------------------------------------------------------------------------
// OpenMetrics: every type, with its rules.

/// The sample names a family of each type owns, as the OpenMetrics parser claims them.
fn om_suffixes(metric_type: MetricType) -> &'static [&'static str] {
    match metric_type {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
        MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        MetricType::Summary => &["_count", "_sum", "_created"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[],
    }
}

/// An exemplar: at most three short labels (well under the 128-character limit), any value,
/// maybe a timestamp.
fn exemplar() -> impl Strategy<Value = Exemplar<'static>> {
    (labels(&[]), any_value(), option::of(finite())).prop_map(|(labels, value, timestamp)| {
        Exemplar {
            labels: to_labels(&labels),
            value: Value::new(value),
            timestamp,
        }
    })
}

fn om_family() -> impl Strategy<Value = MetricFamily<'static>> {
    let types = select(vec![
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Unknown,
        MetricType::Histogram,
        MetricType::GaugeHistogram,
        MetricType::Summary,
        MetricType::Info,
        MetricType::StateSet,
    ]);
    (
        types,
        metric_name(),
        option::of("[a-z][a-z0-9_]{0,6}"),
        option::of(text(30)),
    )
        .prop_flat_map(|(metric_type, base, unit, help)| {
            let (name, unit) = match metric_type {
                // A stateset's name is also the label naming the state; info and stateset
                // have no unit.
                MetricType::StateSet => (base.replace(':', "_"), None),
                MetricType::Info => (base, None),
                _ => match unit {
                    Some(unit) => (format!("{base}_{unit}"), Some(unit)),
                    None => (base, None),
                },
            };
            let samples = match metric_type {
                MetricType::Counter => om_counter(name.clone()).boxed(),
                MetricType::Histogram | MetricType::GaugeHistogram => {
                    om_histogram(name.clone(), metric_type == MetricType::GaugeHistogram).boxed()
                }
                MetricType::Summary => om_summary(name.clone()).boxed(),
                MetricType::Info => om_info(name.clone()).boxed(),
                MetricType::StateSet => om_stateset(name.clone()).boxed(),
                _ => om_gauge(name.clone()).boxed(),
            };
            samples.prop_map(move |samples| MetricFamily {
                name: name.clone().into(),
                help: help.clone().map(Into::into),
                metric_type,
                unit: unit.clone().map(Into::into),
                samples,
            })
        })
}

fn seconds(ts: Option<f64>) -> Option<Timestamp> {
    ts.map(Timestamp::Seconds)
}

fn om_gauge(name: String) -> impl Strategy<Value = Vec<Sample<'static>>> {
    vec((labels(&[]), any_value(), option::of(finite())), 0..4).prop_map(move |points| {
        unique_label_sets(points, |p| &p.0)
            .into_iter()
            .map(|(l, v, ts)| sample(name.clone(), &l, v, seconds(ts)))
            .collect()
    })
}

fn om_counter(name: String) -> impl Strategy<Value = Vec<Sample<'static>>> {
    let point = (
        labels(&[]),
        non_negative(),
        option::of(any_value()),
        option::of(finite()),
        option::of(exemplar()),
    );
    vec(point, 0..4).prop_map(move |points| {
        let mut samples = Vec::new();
        for (l, total, created, ts, exemplar) in unique_label_sets(points, |p| &p.0) {
            let mut s = sample(format!("{name}_total"), &l, total, seconds(ts));
            s.exemplar = exemplar.map(Box::new);
            samples.push(s);
            if let Some(created) = created {
                samples.push(sample(format!("{name}_created"), &l, created, seconds(ts)));
            }
        }
        samples
    })
}

/// Histograms and gauge histograms: buckets in increasing `le` order ending with `+Inf`, with
/// cumulative counts; `_count` (`_gcount`) equal to the `+Inf` bucket, together with `_sum`
/// (`_gsum`) or not at all; no `_sum` with negative buckets, a negative `_gsum` only with them.
fn om_histogram(name: String, gauge: bool) -> impl Strategy<Value = Vec<Sample<'static>>> {
    let point = (
        labels(&["le"]),
        vec(finite(), 0..4),
        vec(non_negative(), 5),
        any_value(),
        any::<bool>(),
        option::of(any_value()),
        option::of(finite()),
        0..4usize,
        vec(option::of(exemplar()), 5),
    );
    vec(point, 0..3).prop_map(move |points| {
        let mut samples = Vec::new();
        for (labels, bounds_in, mut counts, sum, with_sum_count, created, ts, le_at, exemplars) in
            unique_label_sets(points, |p| &p.0)
        {
            let ts = seconds(ts);
            let mut bounds = bounds(bounds_in);
            bounds.push(f64::INFINITY);
            let negative_buckets = bounds[0] < 0.0;
            counts.truncate(bounds.len());
            counts.sort_by(f64::total_cmp);
            for ((bound, count), exemplar) in bounds.iter().zip(&counts).zip(exemplars) {
                let l = with_label(&labels, le_at, "le", go_float(*bound));
                let mut s = sample(format!("{name}_bucket"), &l, *count, ts);
                s.exemplar = exemplar.map(Box::new);
                samples.push(s);
            }
            let count = counts[counts.len() - 1];
            if gauge {
                if with_sum_count {
                    let gsum = match sum {
                        s if s.is_nan() => 0.0,
                        s if s < 0.0 && !negative_buckets => -s,
                        s => s,
                    };
                    samples.push(sample(format!("{name}_gcount"), &labels, count, ts));
                    samples.push(sample(format!("{name}_gsum"), &labels, gsum, ts));
                }
            } else {
                if with_sum_count && !negative_buckets {
                    let sum = if sum.is_nan() { 0.0 } else { sum.abs() };
                    samples.push(sample(format!("{name}_count"), &labels, count, ts));
                    samples.push(sample(format!("{name}_sum"), &labels, sum, ts));
                }
                if let Some(created) = created {
                    samples.push(sample(format!("{name}_created"), &labels, created, ts));
                }
            }
        }
        samples
    })
}

fn om_summary(name: String) -> impl Strategy<Value = Vec<Sample<'static>>> {
    // A quantile's value is not negative, but may be NaN.
    let quantile_value = any_value().prop_map(|v| if v < 0.0 { -v } else { v });
    let point = (
        labels(&["quantile"]),
        vec((quantile(), quantile_value), 0..4),
        option::of(non_negative()),
        option::of(non_negative()),
        option::of(any_value()),
        option::of(finite()),
        0..4usize,
    );
    vec(point, 0..3).prop_map(move |points| {
        let mut samples = Vec::new();
        for (labels, quantiles, sum, count, created, ts, q_at) in
            unique_label_sets(points, |p| &p.0)
        {
            let ts = seconds(ts);
            let mut seen = HashSet::new();
            for (q, value) in quantiles {
                let q = go_float(q);
                if seen.insert(q.clone()) {
                    let l = with_label(&labels, q_at, "quantile", q);
                    samples.push(sample(name.clone(), &l, value, ts));
                }
            }
            if let Some(count) = count {
                samples.push(sample(format!("{name}_count"), &labels, count, ts));
            }
            if let Some(sum) = sum {
                samples.push(sample(format!("{name}_sum"), &labels, sum, ts));
            }
            if let Some(created) = created {
                samples.push(sample(format!("{name}_created"), &labels, created, ts));
            }
        }
        samples
    })
}

/// Info: `<name>_info` samples valued 1. The whole family is one metric point, so its samples
/// have distinct label sets and either all have the same timestamp or none has one.
fn om_info(name: String) -> impl Strategy<Value = Vec<Sample<'static>>> {
    (vec(labels(&[]), 0..4), option::of(finite())).prop_map(move |(label_sets, ts)| {
        unique_label_sets(label_sets, |l| l)
            .into_iter()
            .map(|l| sample(format!("{name}_info"), &l, 1.0, seconds(ts)))
            .collect()
    })
}

/// Stateset: per metric point, one sample per state, labelled with the family name, valued 0
/// or 1.
fn om_stateset(name: String) -> impl Strategy<Value = Vec<Sample<'static>>> {
    let point = (
        labels(&[]),
        vec((text(8), select(vec![0.0, 1.0, -0.0])), 1..4),
        option::of(finite()),
        0..4usize,
    );
    vec(point, 0..3).prop_map(move |points| {
        let points: Vec<_> = points
            .into_iter()
            .map(|(mut labels, states, ts, at)| {
                labels.retain(|(n, _)| *n != name);
                (labels, states, ts, at)
            })
            .collect();
        let mut samples = Vec::new();
        for (labels, states, ts, at) in unique_label_sets(points, |p| &p.0) {
            let mut seen = HashSet::new();
            for (state, value) in states {
                if seen.insert(state.clone()) {
                    let l = with_label(&labels, at, &name, state);
                    samples.push(sample(name.clone(), &l, value, seconds(ts)));
                }
            }
        }
        samples
    })
}

fn om_families() -> impl Strategy<Value = Vec<MetricFamily<'static>>> {
    vec(om_family(), 0..5).prop_filter("family names clash", |families| {
        names_are_disjoint(families, |family| {
            let name = family.name.to_string();
            let mut names = vec![name.clone()];
            names.extend(
                om_suffixes(family.metric_type)
                    .iter()
                    .map(|s| format!("{name}{s}")),
            );
            names
        })
    })
}

// ------------------------------------------------------------------------------------------
// The properties.

proptest! {
    /// Classic families render to text that parses back to the same families, numbers bit for
    /// bit, and renders again to the same text.
    #[test]
    fn classic_render_then_parse_gives_the_same_families(families in classic_families()) {
        let rendered = render_classic(&families);
        let parsed = parse(rendered.as_bytes(), Format::Classic)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{rendered}")))?;
        prop_assert_eq!(parsed.format, Format::Classic);
        prop_assert_eq!(&parsed.families, &families, "rendered:\n{}", rendered);
        assert_bits_equal(&families, &parsed.families)?;
        prop_assert_eq!(render_classic(&parsed.families), rendered.clone());
        // Auto-detection reads it as classic too.
        prop_assert_eq!(parse(rendered.as_bytes(), Format::Auto).map(|e| e.format), Ok(Format::Classic));
    }

    /// OpenMetrics families that follow the format's rules render to text that parses back to
    /// the same families, numbers (values, timestamps, exemplars) bit for bit.
    #[test]
    fn openmetrics_render_then_parse_gives_the_same_families(families in om_families()) {
        let rendered = render_openmetrics(&families);
        let parsed = parse(rendered.as_bytes(), Format::OpenMetrics)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{rendered}")))?;
        prop_assert_eq!(&parsed.families, &families, "rendered:\n{}", rendered);
        assert_bits_equal(&families, &parsed.families)?;
        prop_assert_eq!(render_openmetrics(&parsed.families), rendered.clone());
        prop_assert_eq!(parse(rendered.as_bytes(), Format::Auto).map(|e| e.format), Ok(Format::OpenMetrics));
        // Converting to classic must not panic.
        let _ = render_classic(&families);
    }

    /// `format_go_float` writes every f64 so that both parsers read back the same bits (any NaN
    /// for NaN), in Go's shortest `%g` layout: an exponent exactly when the magnitude is below
    /// 1e-4 or at least 1e6, with a sign and at least two digits.
    #[test]
    fn go_float_parses_back_to_the_same_bits(
        value in prop_oneof![any::<u64>().prop_map(f64::from_bits), any_value()]
    ) {
        let text = go_float(value);
        let classic = format!("a {text}\n");
        let parsed = parse(classic.as_bytes(), Format::Classic)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        let back = parsed.families[0].samples[0].value.number;
        prop_assert!(same_bits(value, back), "{value:?} written as {text:?} read back as {back:?}");

        let om = format!("# TYPE a gauge\na {text}\n# EOF\n");
        let parsed = parse(om.as_bytes(), Format::OpenMetrics)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        let back = parsed.families[0].samples[0].value.number;
        prop_assert!(same_bits(value, back), "{value:?} written as {text:?} read back as {back:?} (OpenMetrics)");

        if value.is_finite() {
            prop_assert_eq!(text.starts_with('-'), value.is_sign_negative(), "sign of {:?}", text);
            let magnitude = value.abs();
            let expect_exponent = magnitude != 0.0 && !(1e-4..1e6).contains(&magnitude);
            match text.split_once('e') {
                Some((mantissa, exponent)) => {
                    prop_assert!(expect_exponent, "{value:?} written with an exponent: {text:?}");
                    let digits = exponent.strip_prefix(['+', '-']).unwrap_or("");
                    prop_assert!(
                        digits.len() >= 2 && digits.bytes().all(|b| b.is_ascii_digit()),
                        "exponent of {text:?}"
                    );
                    let mantissa = mantissa.trim_start_matches('-');
                    prop_assert!(
                        mantissa.len() == 1 || mantissa.as_bytes()[1] == b'.',
                        "one digit before the point in {text:?}"
                    );
                }
                None => prop_assert!(!expect_exponent, "{value:?} written without an exponent: {text:?}"),
            }
            // At most 17 significant digits: the shortest form that round-trips.
            let significant = text
                .split('e')
                .next()
                .unwrap_or("")
                .bytes()
                .filter(u8::is_ascii_digit)
                .skip_while(|b| *b == b'0')
                .count();
            prop_assert!(significant <= 17, "{text:?} has {significant} significant digits");
        } else {
            let expected = if value.is_nan() { "NaN" } else if value > 0.0 { "+Inf" } else { "-Inf" };
            prop_assert_eq!(text.as_str(), expected);
        }
    }
}

/// A fixed example of the awkward cases the generators aim at (escapes, an empty value, a
/// negative zero), in both formats, so that a plain failure shows without shrinking.
#[test]
fn awkward_example_round_trips_in_both_formats() {
    let family = MetricFamily::new("q", MetricType::Gauge)
        .with_help("a \"help\"\\ with\nnewline")
        .with_sample(
            Sample::new("q", Value::new(-0.0))
                .with_label("v", "quote \" backslash \\ newline \n cr \r nul \0 é")
                .with_label("w", ""),
        );
    for format in [Format::Classic, Format::OpenMetrics] {
        let families = std::slice::from_ref(&family);
        let rendered = match format {
            Format::OpenMetrics => render_openmetrics(families),
            _ => render_classic(families),
        };
        let parsed = parse(rendered.as_bytes(), format).expect("parses");
        assert_eq!(parsed.families, vec![family.clone()]);
        assert_eq!(
            parsed.families[0].samples[0].value.number.to_bits(),
            (-0.0f64).to_bits()
        );
    }
}
