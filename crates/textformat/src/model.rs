//! The data model shared by the parsers, the renderers and [`merge`](crate::merge()).
//!
//! Strings are [`Cow`]s so that parsing can borrow from the input: a name, a label or a value
//! token is copied only when it had to be unescaped. [`MetricFamily::into_owned`] detaches a
//! parsed family from its input when it must outlive it.

use std::borrow::Cow;
use std::fmt;

/// Which text format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (and 1.0.0, which adds quoted UTF-8 names), as
    /// Prometheus's own `expfmt` text parser reads it.
    Classic,
    /// OpenMetrics 1.0.0 text, which ends with `# EOF`.
    OpenMetrics,
    /// OpenMetrics when the body's last line is `# EOF`, else classic.
    #[default]
    Auto,
}

impl Format {
    /// Resolves [`Format::Auto`] for `input`: OpenMetrics when its last line is `# EOF`
    /// (with or without a final newline), else classic. Other formats are returned unchanged.
    pub fn resolve(self, input: &[u8]) -> Format {
        match self {
            Format::Auto => {
                let body = input.strip_suffix(b"\n").unwrap_or(input);
                let last_line = match memchr::memrchr(b'\n', body) {
                    Some(i) => &body[i + 1..],
                    None => body,
                };
                if last_line == b"# EOF" {
                    Format::OpenMetrics
                } else {
                    Format::Classic
                }
            }
            other => other,
        }
    }

    /// The `Content-Type` a body rendered in this format is served with.
    /// [`Format::Auto`] is treated as classic.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic | Format::Auto => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Classic => "classic",
            Format::OpenMetrics => "openmetrics",
            Format::Auto => "auto",
        })
    }
}

/// The type of a metric family, as named by a `# TYPE` line.
///
/// The classic format knows `counter`, `gauge`, `histogram`, `summary` and `untyped`;
/// OpenMetrics adds `gaugehistogram`, `info` and `stateset` and calls `untyped` `unknown`.
/// Both spellings of the last map to [`MetricType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    /// A monotonic counter.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets (`_bucket` with `le`), `_sum` and `_count`.
    Histogram,
    /// An OpenMetrics histogram of current values (`_bucket`, `_gsum`, `_gcount`).
    GaugeHistogram,
    /// Quantiles (`quantile` label), `_sum` and `_count`.
    Summary,
    /// OpenMetrics info: a constant `1` carrying labels in `<name>_info`.
    Info,
    /// OpenMetrics stateset: one series per state, labelled with the family name, valued 0 or 1.
    StateSet,
    /// No type given: `untyped` in the classic format, `unknown` in OpenMetrics.
    #[default]
    Unknown,
}

impl MetricType {
    /// The name this type has in OpenMetrics `# TYPE` lines.
    pub fn openmetrics_name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// The name this type has in classic `# TYPE` lines. Types that the classic format lacks
    /// are rendered as the type a classic client would use for them (see
    /// [`render_classic`](crate::render_classic)).
    pub fn classic_name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge | MetricType::Info | MetricType::StateSet => "gauge",
            MetricType::Histogram | MetricType::GaugeHistogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Unknown => "untyped",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.openmetrics_name())
    }
}

/// One label: a name and a value, both unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label<'a> {
    /// The label name, such as `method`.
    pub name: Cow<'a, str>,
    /// The label value, unescaped (a `\n` escape is a real newline here).
    pub value: Cow<'a, str>,
}

impl<'a> Label<'a> {
    /// A label from anything that converts to a `Cow<str>`.
    pub fn new(name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Detaches the label from the input it borrows from.
    pub fn into_owned(self) -> Label<'static> {
        Label {
            name: Cow::Owned(self.name.into_owned()),
            value: Cow::Owned(self.value.into_owned()),
        }
    }
}

/// A sample value: the number, and the token it was parsed from when there was one.
///
/// Keeping the token lets a renderer write back exactly what was read, which is both exact and
/// faster than formatting the float again.
#[derive(Debug, Clone)]
pub struct Value<'a> {
    /// The value as a float.
    pub number: f64,
    /// The text the value was parsed from, if it came from text. Renderers write it back
    /// unchanged, so it must be a valid number in both formats (every token the parsers
    /// accept is).
    pub token: Option<Cow<'a, str>>,
}

impl Value<'_> {
    /// A value with no source token; renderers format the float.
    pub fn new(number: f64) -> Value<'static> {
        Value {
            number,
            token: None,
        }
    }

    /// Detaches the value from the input it borrows from.
    pub fn into_owned(self) -> Value<'static> {
        Value {
            number: self.number,
            token: self.token.map(|t| Cow::Owned(t.into_owned())),
        }
    }
}

/// Two values are equal when their numbers are, with `NaN` equal to `NaN` (so that parsed
/// families can be compared in tests); the source token does not matter.
impl PartialEq for Value<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.number.to_bits() == other.number.to_bits()
            || self.number == other.number
            || (self.number.is_nan() && other.number.is_nan())
    }
}

impl<'a> From<f64> for Value<'a> {
    fn from(number: f64) -> Self {
        Value {
            number,
            token: None,
        }
    }
}

/// A sample timestamp. The classic format writes integer milliseconds, OpenMetrics (possibly
/// fractional) seconds; each is kept as written so that nothing is rounded until a renderer
/// must convert between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timestamp {
    /// Milliseconds since the Unix epoch (classic format).
    Millis(i64),
    /// Seconds since the Unix epoch (OpenMetrics).
    Seconds(f64),
}

impl Timestamp {
    /// The timestamp in milliseconds, rounded to the nearest and saturated to `i64`.
    pub fn as_millis(self) -> i64 {
        match self {
            Timestamp::Millis(ms) => ms,
            // `as` saturates, and NaN cannot occur: the parsers reject non-finite timestamps.
            Timestamp::Seconds(s) => (s * 1000.0).round() as i64,
        }
    }

    /// The timestamp in seconds.
    pub fn as_seconds(self) -> f64 {
        match self {
            Timestamp::Millis(ms) => ms as f64 / 1000.0,
            Timestamp::Seconds(s) => s,
        }
    }
}

/// An OpenMetrics exemplar attached to a sample: `# {labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    /// The exemplar's labels (at most 128 characters of names and values together).
    pub labels: Vec<Label<'a>>,
    /// The exemplar's value.
    pub value: Value<'a>,
    /// The exemplar's timestamp, in seconds.
    pub timestamp: Option<f64>,
}

impl Exemplar<'_> {
    /// Detaches the exemplar from the input it borrows from.
    pub fn into_owned(self) -> Exemplar<'static> {
        Exemplar {
            labels: self.labels.into_iter().map(Label::into_owned).collect(),
            value: self.value.into_owned(),
            timestamp: self.timestamp,
        }
    }
}

/// One sample line: a series (name and labels) with a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The sample's full name, suffix included (`http_requests_total`, `latency_bucket`).
    pub name: Cow<'a, str>,
    /// The labels, in the order they were written.
    pub labels: Vec<Label<'a>>,
    /// The value.
    pub value: Value<'a>,
    /// The client-side timestamp, if the sample carries one.
    pub timestamp: Option<Timestamp>,
    /// The exemplar, if any (OpenMetrics only; boxed because it is rare).
    pub exemplar: Option<Box<Exemplar<'a>>>,
}

impl<'a> Sample<'a> {
    /// A sample with no labels, timestamp or exemplar.
    pub fn new(name: impl Into<Cow<'a, str>>, value: impl Into<Value<'a>>) -> Self {
        Sample {
            name: name.into(),
            labels: Vec::new(),
            value: value.into(),
            timestamp: None,
            exemplar: None,
        }
    }

    /// Adds a label (builder style).
    pub fn with_label(
        mut self,
        name: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
    ) -> Self {
        self.labels.push(Label::new(name, value));
        self
    }

    /// The value of the label called `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_ref())
    }

    /// Detaches the sample from the input it borrows from.
    pub fn into_owned(self) -> Sample<'static> {
        Sample {
            name: Cow::Owned(self.name.into_owned()),
            labels: self.labels.into_iter().map(Label::into_owned).collect(),
            value: self.value.into_owned(),
            timestamp: self.timestamp,
            exemplar: self.exemplar.map(|e| Box::new((*e).into_owned())),
        }
    }
}

/// A metric family: the metadata of one metric and its samples.
///
/// In OpenMetrics the family name has no type suffix (a counter `requests` has samples
/// `requests_total`); in the classic format it is the name the `# TYPE` line (or the first
/// sample) used, so a classic counter family is usually called `requests_total`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricFamily<'a> {
    /// The family name.
    pub name: Cow<'a, str>,
    /// The `# HELP` text, unescaped, if there was one.
    pub help: Option<Cow<'a, str>>,
    /// The `# TYPE`, or [`MetricType::Unknown`] when there was none.
    pub metric_type: MetricType,
    /// The OpenMetrics `# UNIT`, if there was one.
    pub unit: Option<Cow<'a, str>>,
    /// The samples, in input order.
    pub samples: Vec<Sample<'a>>,
}

impl<'a> MetricFamily<'a> {
    /// An empty family of the given name and type.
    pub fn new(name: impl Into<Cow<'a, str>>, metric_type: MetricType) -> Self {
        MetricFamily {
            name: name.into(),
            help: None,
            metric_type,
            unit: None,
            samples: Vec::new(),
        }
    }

    /// Sets the help text (builder style).
    pub fn with_help(mut self, help: impl Into<Cow<'a, str>>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a sample (builder style).
    pub fn with_sample(mut self, sample: Sample<'a>) -> Self {
        self.samples.push(sample);
        self
    }

    /// Detaches the family from the input it borrows from.
    pub fn into_owned(self) -> MetricFamily<'static> {
        MetricFamily {
            name: Cow::Owned(self.name.into_owned()),
            help: self.help.map(|h| Cow::Owned(h.into_owned())),
            metric_type: self.metric_type,
            unit: self.unit.map(|u| Cow::Owned(u.into_owned())),
            samples: self.samples.into_iter().map(Sample::into_owned).collect(),
        }
    }
}

/// The result of [`parse`](crate::parse()): the format that was read and the families in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition<'a> {
    /// The format the input was parsed as ([`Format::Auto`] is resolved).
    pub format: Format,
    /// The metric families, in order of first appearance.
    pub families: Vec<MetricFamily<'a>>,
}

impl Exposition<'_> {
    /// The number of samples over all families.
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    /// Detaches the exposition from the input it borrows from.
    pub fn into_owned(self) -> Exposition<'static> {
        Exposition {
            format: self.format,
            families: self
                .families
                .into_iter()
                .map(MetricFamily::into_owned)
                .collect(),
        }
    }
}
