//! `/metrics` as samples, parsed by `promdrop-textformat`.

use std::collections::BTreeMap;
use std::path::Path;

use promdrop_textformat::{Format, parse};

/// A series: the sample name and its labels.
pub type Series = (String, BTreeMap<String, String>);

/// Every sample of `body` parsed as `format`, by series (a series given twice keeps its last
/// value).
pub fn samples(body: &[u8], format: Format) -> Result<BTreeMap<Series, f64>, String> {
    let exposition = parse(body, format).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for family in &exposition.families {
        for s in &family.samples {
            let labels = s
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            out.insert((s.name.to_string(), labels), s.value.number);
        }
    }
    Ok(out)
}

/// A classic `/metrics` body and its samples.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The body as served.
    pub body: String,
    /// Its samples, by series.
    pub samples: BTreeMap<Series, f64>,
}

impl Metrics {
    /// Parses a classic body, or says why it does not parse.
    pub fn try_parse(body: &str) -> Result<Metrics, String> {
        Ok(Metrics {
            samples: samples(body.as_bytes(), Format::Classic)?,
            body: body.to_string(),
        })
    }

    /// Parses a classic body; fails the test, with the body, when it does not parse.
    pub fn parse(body: &str) -> Metrics {
        Metrics::try_parse(body).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"))
    }

    /// The value of `name{labels}` (exactly those labels).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The value of the first series called `name` whose labels include all of `labels` (others
    /// may be there too), in series order.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| *v)
    }

    /// The value of a per-file meta metric, `name{file="<path>"}`.
    pub fn file(&self, name: &str, path: &Path) -> Option<f64> {
        self.get(name, &[("file", &path.to_string_lossy())])
    }

    /// Every sample whose name starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(&Series, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n.starts_with(prefix))
            .map(|(k, v)| (k, *v))
            .collect()
    }
}

/// Expositions reduced to samples, to compare what two servers serve: empty-valued labels
/// dropped (Prometheus treats `a=""` as no label `a`), values compared with `NaN == NaN`.
#[derive(Debug, Clone, Default)]
pub struct SampleSet(pub BTreeMap<Series, f64>);

/// Whether two values are the same sample value: equal numbers, or both NaN.
pub fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

impl SampleSet {
    /// Parses `body` as `format` and keeps the samples whose name `keep` accepts.
    pub fn parse(
        body: &[u8],
        format: Format,
        keep: impl Fn(&str) -> bool,
    ) -> Result<SampleSet, String> {
        Ok(SampleSet(
            samples(body, format)?
                .into_iter()
                .filter(|((name, _), _)| keep(name))
                .map(|((name, mut labels), value)| {
                    labels.retain(|_, v| !v.is_empty());
                    ((name, labels), value)
                })
                .collect(),
        ))
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The differences from `self` (left) to `other` (right), one line each:
    /// `<left_name> only: S`, `<right_name> only: S`, or `value: S <left> vs <right>`,
    /// where S is `name{labels}` as [`line`] writes it. Sorted; empty when equal.
    pub fn diff(&self, other: &SampleSet, left_name: &str, right_name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (series, a) in &self.0 {
            match other.0.get(series) {
                None => out.push(format!("{left_name} only: {}", line(series, *a))),
                Some(b) if !same_value(*a, *b) => out.push(format!(
                    "value: {} {} vs {}",
                    line(series, *a).rsplit_once(' ').map_or("", |x| x.0),
                    go_float(*a),
                    go_float(*b)
                )),
                Some(_) => {}
            }
        }
        for (series, b) in &other.0 {
            if !self.0.contains_key(series) {
                out.push(format!("{right_name} only: {}", line(series, *b)));
            }
        }
        out.sort();
        out
    }
}

/// `name{a="x",b="y"} value`, the labels sorted, the value as Go formats it.
pub fn line(series: &Series, value: f64) -> String {
    let (name, labels) = series;
    let labels: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    if labels.is_empty() {
        format!("{name} {}", go_float(value))
    } else {
        format!("{name}{{{}}} {}", labels.join(","), go_float(value))
    }
}

/// `value` as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (`1`, `0.25`, `+Inf`,
/// `NaN`).
pub fn go_float(value: f64) -> String {
    let mut out = String::new();
    promdrop_textformat::format_go_float(value, &mut out);
    out
}
