//! Renderers: families back to classic text (as Go's `expfmt` writes it) or OpenMetrics.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::lex::{is_valid_label_name, is_valid_metric_name};
use crate::number::format_go_float;
use crate::{Label, MetricFamily, MetricType, Sample, Timestamp, Value};

/// Rewrites the `le` labels of histogram buckets and the `quantile` labels of summaries as Go's
/// client writes them (`1.0` becomes `1`, `1e-04` becomes `0.0001`, `+inf` becomes `+Inf`),
/// leaving values that do not parse as numbers alone.
///
/// node_exporter re-encodes every textfile through the Go client, so the bucket of a Python
/// job's `le="1.0"` reaches Prometheus as `le="1"`; Prometheus 2 treats the two spellings as
/// different series. Serving them the way node_exporter does keeps the series of jobs that
/// move from its textfile collector to promdrop.
///
/// ```
/// use promdrop_textformat::{canonicalize_bounds, parse, render_classic, Format};
///
/// let text = b"# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+inf\"} 2\nh_sum 3\nh_count 2\n";
/// let mut families = parse(text, Format::Classic)?.families;
/// canonicalize_bounds(&mut families);
/// assert!(render_classic(&families).contains("h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"));
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
///
/// A classic histogram series (label set) with a `_count` but no `le="+Inf"` bucket gets one,
/// valued with the `_count`, after its last bucket, as node_exporter serves it (client_golang
/// always writes the `+Inf` bucket from the count): `histogram_quantile` then gives the same
/// answer from either exporter (without the bucket, Prometheus returns NaN). A series without
/// a `_count` is left as it is.
///
/// ```
/// use promdrop_textformat::{canonicalize_bounds, parse, render_classic, Format};
///
/// let text = b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\nh_count 2\n";
/// let mut families = parse(text, Format::Classic)?.families;
/// canonicalize_bounds(&mut families);
/// assert!(render_classic(&families).contains("h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\n"));
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
pub fn canonicalize_bounds(families: &mut [MetricFamily<'_>]) {
    for family in families.iter_mut() {
        if family.metric_type == MetricType::Histogram {
            add_inf_buckets(family);
        }
    }
    for family in families {
        let bound = match family.metric_type {
            MetricType::Histogram | MetricType::GaugeHistogram => "le",
            MetricType::Summary => "quantile",
            _ => continue,
        };
        for label in family
            .samples
            .iter_mut()
            .flat_map(|s| s.labels.iter_mut())
            .filter(|l| l.name == bound)
        {
            let Some(number) = crate::number::parse_number(&label.value) else {
                continue;
            };
            let mut canonical = String::new();
            format_go_float(number, &mut canonical);
            if canonical != label.value {
                label.value = canonical.into();
            }
        }
    }
}

/// The labels of `sample` other than `le`, sorted: its histogram series.
fn series_key<'s>(sample: &'s Sample<'_>) -> Vec<(&'s str, &'s str)> {
    let mut key: Vec<(&str, &str)> = sample
        .labels
        .iter()
        .filter(|l| l.name != "le")
        .map(|l| (l.name.as_ref(), l.value.as_ref()))
        .collect();
    key.sort_unstable();
    key
}

/// Adds the `+Inf` bucket, valued with the `_count`, to each series of the histogram `family`
/// that has a `_count` and no `+Inf` bucket (see [`canonicalize_bounds`]).
fn add_inf_buckets(family: &mut MetricFamily<'_>) {
    let bucket = format!("{}_bucket", family.name);
    let count = format!("{}_count", family.name);
    let is_inf = |s: &Sample<'_>| {
        s.labels
            .iter()
            .any(|l| l.name == "le" && crate::number::parse_number(&l.value) == Some(f64::INFINITY))
    };
    // The common case costs one pass without allocating: as many +Inf buckets as counts.
    let counts = family.samples.iter().filter(|s| s.name == count).count();
    let infs = family
        .samples
        .iter()
        .filter(|s| s.name == bucket && is_inf(s))
        .count();
    if counts == 0 || infs >= counts {
        return;
    }
    let mut with_inf: HashSet<Vec<(&str, &str)>> = HashSet::new();
    // Per series: the index after its last bucket (0), or else of its first sample (1); at one
    // index, the bucket that ends a series goes before the one that starts the next.
    let mut place: HashMap<Vec<(&str, &str)>, (usize, u8)> = HashMap::new();
    for (i, s) in family.samples.iter().enumerate() {
        let key = series_key(s);
        if s.name == bucket {
            if is_inf(s) {
                with_inf.insert(key.clone());
            }
            place.insert(key, (i + 1, 0));
        } else {
            place.entry(key).or_insert((i, 1));
        }
    }
    let mut added: Vec<((usize, u8), Sample<'static>)> = Vec::new();
    for s in family.samples.iter().filter(|s| s.name == count) {
        let key = series_key(s);
        if with_inf.contains(&key) {
            continue;
        }
        let mut labels: Vec<Label<'static>> = s
            .labels
            .iter()
            .map(|l| Label::new(l.name.to_string(), l.value.to_string()))
            .collect();
        labels.push(Label::new("le", "+Inf"));
        let at = place
            .get(&key)
            .copied()
            .unwrap_or((family.samples.len(), 1));
        added.push((
            at,
            Sample {
                name: bucket.clone().into(),
                labels,
                value: Value {
                    number: s.value.number,
                    token: s.value.token.as_ref().map(|t| t.to_string().into()),
                },
                timestamp: s.timestamp,
                exemplar: None,
            },
        ));
        with_inf.insert(key);
    }
    // Insert from the back so that earlier positions stay valid.
    added.sort_by_key(|(at, _)| *at);
    for ((at, _), sample) in added.into_iter().rev() {
        family.samples.insert(at, sample);
    }
}

/// Read access to a metric family, so that both parsed families ([`MetricFamily`]) and merged
/// ones ([`MergedFamily`](crate::MergedFamily)) can be rendered.
pub trait FamilyView {
    /// The family name.
    fn name(&self) -> &str;
    /// The HELP text, unescaped.
    fn help(&self) -> Option<&str>;
    /// The family's type.
    fn metric_type(&self) -> MetricType;
    /// The OpenMetrics unit.
    fn unit(&self) -> Option<&str>;
    /// The samples, in the order to write them.
    fn samples(&self) -> impl Iterator<Item = &Sample<'_>>;
}

impl FamilyView for MetricFamily<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }
    fn metric_type(&self) -> MetricType {
        self.metric_type
    }
    fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }
    fn samples(&self) -> impl Iterator<Item = &Sample<'_>> {
        self.samples.iter()
    }
}

/// Escapes a HELP text for either format: `\` as `\\` and a newline as `\n`.
pub fn escape_help(help: &str, out: &mut String) {
    escape(help, out, false);
}

/// Escapes a label value for either format: `\` as `\\`, `"` as `\"`, a newline as `\n`.
pub fn escape_label_value(value: &str, out: &mut String) {
    escape(value, out, true);
}

#[inline]
fn escape(text: &str, out: &mut String, quote: bool) {
    if !crate::lex::has_escapable(text.as_bytes(), quote) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes a metric name as the text formats want it: as it is when it is a legacy name
/// (`[a-zA-Z_:][a-zA-Z0-9_:]*`), else quoted and escaped as a label value is
/// (`"http.server.duration"`). A quoted metric name belongs inside the braces of a sample line
/// (`{"a.b",le="1"} 3`); in `# HELP`, `# TYPE` and `# UNIT` lines it stands where a name does.
///
/// ```
/// use promdrop_textformat::write_metric_name;
///
/// let mut out = String::new();
/// write_metric_name("http_requests_total", &mut out);
/// out.push(' ');
/// write_metric_name("http.server.duration", &mut out);
/// assert_eq!(out, "http_requests_total \"http.server.duration\"");
/// ```
#[inline]
pub fn write_metric_name(name: &str, out: &mut String) {
    if is_valid_metric_name(name) {
        out.push_str(name);
    } else {
        write_quoted(name, out);
    }
}

/// Writes a label name: as it is when it is a legacy name (`[a-zA-Z_][a-zA-Z0-9_]*`), else
/// quoted and escaped as a label value is (`"http.method"`).
#[inline(always)]
pub fn write_label_name(name: &str, out: &mut String) {
    if is_valid_label_name(name) {
        out.push_str(name);
    } else {
        write_quoted(name, out);
    }
}

#[cold]
fn write_quoted(text: &str, out: &mut String) {
    out.push('"');
    escape_label_value(text, out);
    out.push('"');
}

/// The names of the previous sample line that were found to be legacy ones, remembered by
/// identity: a name that is the very same `&str` as a remembered one (same address, same
/// length) is legacy too, which two comparisons decide. The parsers hand a name that repeats
/// the previous line's the same slice of the input (see `classic::Parser::sample`), so for
/// parsed families almost no name is checked byte by byte at render time; other names (built
/// by hand, owned, or merely equal) are checked as [`is_valid_metric_name`] and
/// [`is_valid_label_name`] do.
#[derive(Default)]
struct LegacyNames<'s> {
    metric: Option<&'s str>,
    /// Label names by position.
    labels: [Option<&'s str>; 8],
}

/// Whether `a` and `b` are the same slice: the same bytes at the same address. Such names are
/// equal, and stay equal while the families are borrowed for rendering.
#[inline(always)]
fn same_slice(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.as_ptr() == b.as_ptr() && a.len() == b.len())
}

impl<'s> LegacyNames<'s> {
    /// Whether `name` is a legacy metric name.
    #[inline(always)]
    fn metric(&mut self, name: &'s str) -> bool {
        if same_slice(self.metric, name) {
            return true;
        }
        let legacy = is_valid_metric_name(name);
        if legacy {
            self.metric = Some(name);
        }
        legacy
    }
}

/// Writes `name{labels}` for a sample named `name` + `suffix`, or `{"name",labels}` when that
/// name is not a legacy one.
#[inline(always)]
fn write_series<'s>(
    name: &'s str,
    suffix: &str,
    labels: &'s [Label<'_>],
    known: &mut LegacyNames<'s>,
    out: &mut String,
) {
    let legacy = if suffix.is_empty() {
        known.metric(name)
    } else {
        is_valid_metric_name(name) && crate::lex::all_name_chars(suffix.as_bytes(), true)
    };
    if legacy {
        out.push_str(name);
        out.push_str(suffix);
        if !labels.is_empty() {
            out.push('{');
            write_label_list(labels, known, out);
            out.push('}');
        }
        return;
    }
    write_quoted_series(name, suffix, labels, out);
}

/// `{"name",labels}`: the rare case of [`write_series`], kept out of its way.
#[cold]
#[inline(never)]
fn write_quoted_series(name: &str, suffix: &str, labels: &[Label<'_>], out: &mut String) {
    out.push_str("{\"");
    escape_label_value(name, out);
    escape_label_value(suffix, out);
    out.push('"');
    if !labels.is_empty() {
        out.push(',');
        write_label_list(labels, &mut LegacyNames::default(), out);
    }
    out.push('}');
}

#[inline]
fn write_labels(labels: &[Label<'_>], out: &mut String) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    write_label_list(labels, &mut LegacyNames::default(), out);
    out.push('}');
}

#[inline(always)]
fn write_label_list<'s>(labels: &'s [Label<'_>], known: &mut LegacyNames<'s>, out: &mut String) {
    if labels.len() > known.labels.len() {
        return write_many_labels(labels, out);
    }
    // Each label with the name remembered at its position, the first without a comma.
    let mut pairs = labels.iter().zip(known.labels.iter_mut());
    if let Some((label, slot)) = pairs.next() {
        write_label(label, slot, out);
    }
    for (label, slot) in pairs {
        out.push(',');
        write_label(label, slot, out);
    }
}

/// `name="value"`, the name quoted when it is not a legacy one; `slot` remembers the label
/// name at this position of the previous sample (see [`LegacyNames`]).
#[inline(always)]
fn write_label<'s>(label: &'s Label<'_>, slot: &mut Option<&'s str>, out: &mut String) {
    let name: &'s str = &label.name;
    if same_slice(*slot, name) || is_valid_label_name(name) {
        *slot = Some(name);
        out.push_str(name);
    } else {
        write_quoted(name, out);
    }
    out.push_str("=\"");
    escape_label_value(&label.value, out);
    out.push('"');
}

/// [`write_label_list`] for more labels than [`LegacyNames`] remembers: each name checked.
#[cold]
#[inline(never)]
fn write_many_labels(labels: &[Label<'_>], out: &mut String) {
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_label(label, &mut None, out);
    }
}

#[inline]
fn write_value(value: &Value<'_>, out: &mut String) {
    match &value.token {
        Some(token) => out.push_str(token),
        None => format_go_float(value.number, out),
    }
}

/// Renders families as the classic text format 0.0.4, as Go's `expfmt` writes it: a `# HELP`
/// line when there is help, a `# TYPE` line, then the samples in order; `+Inf`, `-Inf`, `NaN`
/// and Go's shortest float form; integer millisecond timestamps. Exemplars are dropped (the
/// format has none).
///
/// OpenMetrics families are written the way client libraries write them in the classic format:
/// a counter `x` as `x_total`, an info `x` as the gauge `x_info`, a stateset as a gauge, a gauge
/// histogram as a histogram of its buckets, and `_created`, `_gsum` and `_gcount` samples as
/// gauges of their own.
pub fn render_classic<F: FamilyView>(families: &[F]) -> String {
    let mut out = String::new();
    render_classic_into(families, &mut out);
    out
}

/// [`render_classic`] appending to `out`.
pub fn render_classic_into<F: FamilyView>(families: &[F], out: &mut String) {
    for family in families {
        render_classic_family(family, out);
    }
}

/// Appends a classic family header: `# HELP name text` (when there is help, escaped) and
/// `# TYPE name type`, each on its own line. A name that is not a legacy one is quoted
/// (`# TYPE "http.requests" counter`), as text format 1.0.0 has it.
pub fn write_classic_header(name: &str, help: Option<&str>, type_name: &str, out: &mut String) {
    if let Some(help) = help {
        out.push_str("# HELP ");
        write_metric_name(name, out);
        out.push(' ');
        escape_help(help, out);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    write_metric_name(name, out);
    out.push(' ');
    out.push_str(type_name);
    out.push('\n');
}

#[inline]
fn write_classic_sample<'s>(sample: &'s Sample<'_>, known: &mut LegacyNames<'s>, out: &mut String) {
    write_series(&sample.name, "", &sample.labels, known, out);
    out.push(' ');
    write_value(&sample.value, out);
    if let Some(ts) = sample.timestamp {
        let _ = write!(out, " {}", ts.as_millis());
    }
    out.push('\n');
}

fn render_classic_family<F: FamilyView>(family: &F, out: &mut String) {
    let mut known = LegacyNames::default();
    let name = family.name();
    let metric_type = family.metric_type();
    // Samples that classic clients write as gauges of their own.
    let split_suffixes: &[&str] = match metric_type {
        MetricType::Counter | MetricType::Histogram | MetricType::Summary => &["_created"],
        MetricType::GaugeHistogram => &["_gcount", "_gsum"],
        _ => &[],
    };
    let is_split = |sample: &Sample<'_>| {
        sample
            .name
            .strip_prefix(name)
            .is_some_and(|suffix| split_suffixes.contains(&suffix))
    };
    let main_name: String = match metric_type {
        MetricType::Counter | MetricType::Info => {
            // The name the samples carry: `x_total` or `x_info` for OpenMetrics families, the
            // family name itself for classic ones.
            family
                .samples()
                .find(|s| !is_split(s))
                .map(|s| s.name.to_string())
                .unwrap_or_else(|| name.to_string())
        }
        _ => name.to_string(),
    };
    let has_main = family.samples().any(|s| !is_split(s));
    if has_main || split_suffixes.is_empty() {
        write_classic_header(&main_name, family.help(), metric_type.classic_name(), out);
        for sample in family.samples().filter(|s| !is_split(s)) {
            write_classic_sample(sample, &mut known, out);
        }
    }
    for suffix in split_suffixes {
        let split_name = format!("{name}{suffix}");
        let mut samples = family.samples().filter(|s| s.name == split_name).peekable();
        if samples.peek().is_none() {
            continue;
        }
        write_classic_header(&split_name, family.help(), "gauge", out);
        for sample in samples {
            write_classic_sample(sample, &mut known, out);
        }
    }
}

/// Renders families as OpenMetrics 1.0 text, ending with `# EOF`.
///
/// Classic families are given OpenMetrics names: a counter family `x_total` whose samples are
/// named `x_total` is written as the family `x` with samples `x_total`; a counter whose
/// samples lack the `_total` suffix is written as `unknown` under its own name rather than
/// renamed (series keep their names in both formats); `untyped` becomes `unknown`; classic
/// `x_created` gauges are folded into their counter, histogram or summary `x`. Timestamps are
/// written in seconds.
///
/// ```
/// use promdrop_textformat::{parse, render_openmetrics, Format};
///
/// let classic = b"# TYPE jobs_total counter\njobs_total 3\n# TYPE evicted counter\nevicted 2\n";
/// let families = parse(classic, Format::Classic)?.families;
/// assert_eq!(
///     render_openmetrics(&families),
///     "# TYPE jobs counter\njobs_total 3\n# TYPE evicted unknown\nevicted 2\n# EOF\n"
/// );
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
pub fn render_openmetrics<F: FamilyView>(families: &[F]) -> String {
    let mut out = String::new();
    render_openmetrics_into(families, &mut out);
    out
}

/// [`render_openmetrics`] appending to `out`.
pub fn render_openmetrics_into<F: FamilyView>(families: &[F], out: &mut String) {
    // Classic clients write the `_created` series of a counter, histogram or summary `x` as a
    // gauge family of its own, `x_created`. In OpenMetrics those samples belong to `x`, and a
    // family `x_created` next to `x` would clash with it, so such gauges are folded into their
    // owner, each after the metric point it dates.
    let OpenMetricsPlan {
        names: om_names,
        created_of,
        folded,
    } = om_folding(families);
    for (i, family) in families.iter().enumerate() {
        if !folded[i] {
            let created = created_of[i].map(|c| &families[c]);
            render_openmetrics_family(family, om_names[i], created, out);
        }
    }
    out.push_str("# EOF\n");
}

/// How the OpenMetrics renderer writes a list of families (see [`om_folding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMetricsPlan<'f> {
    /// Per family, its OpenMetrics name ([`om_family_name`]).
    pub names: Vec<&'f str>,
    /// Per family, the classic `x_created` gauge family folded into it, if any.
    pub created_of: Vec<Option<usize>>,
    /// Per family, whether it is folded into another (and so not written on its own).
    pub folded: Vec<bool>,
}

/// Which families [`render_openmetrics_into`] folds into which: classic clients write the
/// `_created` series of a counter, histogram or summary `x` as a gauge family of its own,
/// `x_created`; in OpenMetrics those samples belong to `x` (a family `x_created` next to `x`
/// would clash with it), so such a gauge is folded into its owner, unless the owner already
/// has `_created` samples or another family was folded into it first. Code that writes
/// OpenMetrics from pieces rendered in advance uses this plan to stay byte for byte with the
/// renderer.
///
/// ```
/// use promdrop_textformat::{om_folding, parse, Format};
///
/// let classic = b"# TYPE jobs_total counter\njobs_total 3\n# TYPE jobs_created gauge\njobs_created 1.7e9\n";
/// let families = parse(classic, Format::Classic)?.families;
/// let plan = om_folding(&families);
/// assert_eq!(plan.names, ["jobs", "jobs_created"]);
/// assert_eq!(plan.created_of, [Some(1), None]);
/// assert_eq!(plan.folded, [false, true]);
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
pub fn om_folding<F: FamilyView>(families: &[F]) -> OpenMetricsPlan<'_> {
    let om_names: Vec<&str> = families.iter().map(om_family_name).collect();
    let owners: HashMap<&str, usize> = families
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            matches!(
                om_type(*f),
                MetricType::Counter | MetricType::Histogram | MetricType::Summary
            )
        })
        .map(|(i, _)| (om_names[i], i))
        .collect();
    let mut created_of: Vec<Option<usize>> = vec![None; families.len()];
    let mut folded = vec![false; families.len()];
    for (i, family) in families.iter().enumerate() {
        if !matches!(
            family.metric_type(),
            MetricType::Gauge | MetricType::Unknown
        ) {
            continue;
        }
        let Some(&owner) = family
            .name()
            .strip_suffix("_created")
            .and_then(|base| owners.get(base))
        else {
            continue;
        };
        let owner_name = om_names[owner];
        let owner_has_created = families[owner]
            .samples()
            .any(|s| s.name.strip_prefix(owner_name) == Some("_created"));
        if created_of[owner].is_none() && !owner_has_created {
            created_of[owner] = Some(i);
            folded[i] = true;
        }
    }
    OpenMetricsPlan {
        names: om_names,
        created_of,
        folded,
    }
}

/// The name a family has in OpenMetrics. A classic counter family is named as its samples
/// are, `x_total`: in OpenMetrics that is the family `x`. An OpenMetrics family's samples carry
/// a suffix, so its name is kept even when it ends in `_total` (the counter `x_total`, whose
/// samples are `x_total_total`).
pub fn om_family_name<F: FamilyView>(family: &F) -> &str {
    let name = family.name();
    match family.metric_type() {
        MetricType::Counter if family.samples().any(|s| s.name == name) => {
            name.strip_suffix("_total").unwrap_or(name)
        }
        _ => name,
    }
}

/// The type a family is written with in OpenMetrics. A classic counter whose samples do not
/// end in `_total` (`descheduler_pods_evicted`) would have to be renamed, since OpenMetrics
/// counter samples must end in `_total`; renaming breaks every query and dashboard on the
/// name the job chose (and that node_exporter, which answers in the classic format, keeps).
/// Such a family is written as `unknown` instead, under its own name: PromQL does not care
/// about the type, and the series keep their names whichever format the scraper asks for.
pub fn om_type<F: FamilyView>(family: &F) -> MetricType {
    let metric_type = family.metric_type();
    if metric_type == MetricType::Counter
        && family
            .samples()
            .any(|s| *s.name == *family.name() && !s.name.ends_with("_total"))
    {
        MetricType::Unknown
    } else {
        metric_type
    }
}

/// A key for a label set that does not depend on label order, leaving out `excluded`.
fn point_key(labels: &[Label<'_>], excluded: Option<&str>) -> Vec<(String, String)> {
    let mut key: Vec<(String, String)> = labels
        .iter()
        .filter(|l| Some(l.name.as_ref()) != excluded)
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    key.sort_unstable();
    key
}

fn write_om_timestamp(ts: Timestamp, out: &mut String) {
    match ts {
        Timestamp::Seconds(s) => {
            let _ = write!(out, "{s}");
        }
        Timestamp::Millis(ms) => {
            let sign = if ms < 0 { "-" } else { "" };
            let abs = ms.unsigned_abs();
            let (secs, millis) = (abs / 1000, abs % 1000);
            if millis == 0 {
                let _ = write!(out, "{sign}{secs}");
            } else {
                let _ = write!(out, "{sign}{secs}.{millis:03}");
            }
        }
    }
}

fn render_openmetrics_family<F: FamilyView>(
    family: &F,
    om_name: &str,
    created: Option<&F>,
    out: &mut String,
) {
    let mut known = LegacyNames::default();
    let metric_type = om_type(family);
    if let Some(help) = family.help() {
        out.push_str("# HELP ");
        write_metric_name(om_name, out);
        out.push(' ');
        // OpenMetrics escapes `"` in HELP too (its ABNF's `escaped-string`); classic does not.
        escape_label_value(help, out);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    write_metric_name(om_name, out);
    out.push(' ');
    out.push_str(metric_type.openmetrics_name());
    out.push('\n');
    if let Some(unit) = family.unit().filter(|u| !u.is_empty()) {
        out.push_str("# UNIT ");
        write_metric_name(om_name, out);
        out.push(' ');
        out.push_str(unit);
        out.push('\n');
    }
    // The folded `_created` samples by metric point, and the label each point leaves out.
    let excluded = match metric_type {
        MetricType::Histogram => Some("le"),
        MetricType::Summary => Some("quantile"),
        _ => None,
    };
    let created: HashMap<Vec<(String, String)>, &Sample<'_>> = created
        .map(|c| {
            c.samples()
                .map(|s| (point_key(&s.labels, None), s))
                .collect()
        })
        .unwrap_or_default();
    let mut samples = family.samples().peekable();
    while let Some(sample) = samples.next() {
        write_om_sample(sample, None, "", &mut known, out);
        if created.is_empty() {
            continue;
        }
        let key = point_key(&sample.labels, excluded);
        let point_ends = samples
            .peek()
            .is_none_or(|next| point_key(&next.labels, excluded) != key);
        if point_ends && let Some(created_sample) = created.get(&key) {
            write_om_sample(created_sample, Some(om_name), "_created", &mut known, out);
        }
    }
}

/// Writes one sample line, named `name` + `suffix` when a name is given, else as it is named
/// plus `suffix`.
fn write_om_sample<'s>(
    sample: &'s Sample<'_>,
    name: Option<&'s str>,
    suffix: &str,
    known: &mut LegacyNames<'s>,
    out: &mut String,
) {
    write_series(
        name.unwrap_or(&sample.name),
        suffix,
        &sample.labels,
        known,
        out,
    );
    out.push(' ');
    write_value(&sample.value, out);
    if let Some(ts) = sample.timestamp {
        out.push(' ');
        write_om_timestamp(ts, out);
    }
    if let Some(exemplar) = &sample.exemplar {
        out.push_str(" # ");
        if exemplar.labels.is_empty() {
            out.push_str("{}");
        } else {
            write_labels(&exemplar.labels, out);
        }
        out.push(' ');
        write_value(&exemplar.value, out);
        if let Some(ts) = exemplar.timestamp {
            let _ = write!(out, " {ts}");
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use crate::{Format, canonicalize_bounds, parse, render_classic};

    /// Input histogram text and what it renders as after `canonicalize_bounds`.
    const INF_BUCKET_CASES: &[(&str, &str)] = &[
        // Has its +Inf bucket (spelled as Python writes it): unchanged but for the spelling.
        (
            "h_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+inf\"} 2\nh_count 2\n",
            "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n",
        ),
        // Two series, one without: its bucket goes after its own last bucket.
        (
            "h_bucket{a=\"x\",le=\"1\"} 1\nh_bucket{a=\"y\",le=\"1\"} 4\nh_bucket{a=\"y\",le=\"+Inf\"} 5\nh_count{a=\"x\"} 3\nh_count{a=\"y\"} 5\n",
            "h_bucket{a=\"x\",le=\"1\"} 1\nh_bucket{a=\"x\",le=\"+Inf\"} 3\nh_bucket{a=\"y\",le=\"1\"} 4\nh_bucket{a=\"y\",le=\"+Inf\"} 5\nh_count{a=\"x\"} 3\nh_count{a=\"y\"} 5\n",
        ),
        // Only a _count: the bucket before it, as node_exporter serves it.
        (
            "h_sum 0\nh_count 0\n",
            "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n",
        ),
        // No _count: left as written.
        (
            "h_bucket{le=\"1\"} 1\nh_sum 1\n",
            "h_bucket{le=\"1\"} 1\nh_sum 1\n",
        ),
        // Labels in another order than the count's still name the same series.
        (
            "h_bucket{le=\"1\",b=\"2\",a=\"1\"} 1\nh_count{a=\"1\",b=\"2\"} 2\n",
            "h_bucket{le=\"1\",b=\"2\",a=\"1\"} 1\nh_bucket{a=\"1\",b=\"2\",le=\"+Inf\"} 2\nh_count{a=\"1\",b=\"2\"} 2\n",
        ),
    ];

    #[test]
    fn a_histogram_series_with_a_count_gets_its_inf_bucket() {
        for (input, want) in INF_BUCKET_CASES {
            let text = format!("# TYPE h histogram\n{input}");
            let mut families = parse(text.as_bytes(), Format::Classic).unwrap().families;
            canonicalize_bounds(&mut families);
            assert_eq!(
                render_classic(&families),
                format!("# TYPE h histogram\n{want}"),
                "{input}"
            );
        }
    }

    #[test]
    fn other_types_get_no_inf_bucket() {
        let text = "# TYPE s summary\ns_count 2\n# TYPE u untyped\nu_count 1\n";
        let mut families = parse(text.as_bytes(), Format::Classic).unwrap().families;
        let before = families.clone();
        canonicalize_bounds(&mut families);
        assert_eq!(families, before);
    }
}
