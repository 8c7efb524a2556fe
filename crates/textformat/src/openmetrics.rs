//! OpenMetrics 1.0 text, as the specification has it and its conformance suite checks it:
//! single spaces, no blank lines, `# EOF` last, metadata before a family's samples, families
//! and metric points contiguous, type-specific suffixes, values and labels.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use crate::lex::{self, Escapes, Line};
use crate::number::{parse_number, parse_om_realnumber};
use crate::{
    Error, Exemplar, Label, Lines, MetricFamily, MetricType, ParseLimits, Sample, Timestamp, Value,
};

/// The longest an exemplar's label set may be, in characters of names and values together.
const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// The sample-name suffixes a family of each type has.
fn suffixes(metric_type: MetricType) -> &'static [&'static str] {
    match metric_type {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
        MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
        MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        MetricType::Summary => &["", "_count", "_sum", "_created"],
        MetricType::Info => &["_info"],
    }
}

/// The family being read and what has been seen of it.
struct Current<'a> {
    index: usize,
    name: Cow<'a, str>,
    type_seen: bool,
    help_seen: bool,
    unit_seen: bool,
    /// The line of the family's first line, for errors found when it ends.
    /// Metric points (label sets less `le`, `quantile` or the stateset label) seen so far.
    seen_groups: HashSet<u64>,
    /// The metric point of the previous sample, and its timestamp.
    group: Option<(u64, Option<f64>)>,
    /// Where the samples of the current metric point and timestamp begin.
    group_start: usize,
}

struct Parser<'a, 'l> {
    limits: &'l ParseLimits,
    families: Vec<MetricFamily<'a>>,
    /// Line numbers of each family's samples' lines, for errors found when a family ends.
    sample_lines: Vec<usize>,
    current: Option<Current<'a>>,
    /// Every sample name some family can own; a new family may not take one.
    claimed: HashSet<Cow<'a, str>>,
    series: usize,
}

pub(crate) fn parse<'a>(
    input: &'a [u8],
    limits: &ParseLimits,
) -> Result<Vec<MetricFamily<'a>>, Error> {
    let mut parser = Parser {
        limits,
        families: Vec::new(),
        sample_lines: Vec::new(),
        current: None,
        claimed: HashSet::new(),
        series: 0,
    };
    let mut lines = Lines::new(input);
    let mut eof = false;
    while let Some(line) = lines.next_line(limits)? {
        if eof {
            return Err(line.unexpected(0, "nothing after \"# EOF\""));
        }
        if line.text == b"# EOF" {
            eof = true;
            continue;
        }
        parser.line(line)?;
    }
    let rest = lines.rest();
    if eof {
        if !rest.text.is_empty() {
            return Err(rest.unexpected(0, "nothing after \"# EOF\""));
        }
    } else if rest.text != b"# EOF" {
        return Err(rest.unexpected(
            rest.text.len(),
            "\"# EOF\" as the last line (OpenMetrics input must end with it)",
        ));
    }
    parser.finish_family()?;
    Ok(parser.families)
}

fn group_hash(labels: &[Label<'_>], excluded: Option<&str>, whole_family: bool) -> u64 {
    if whole_family {
        return 0;
    }
    // Order-independent without sorting (and so without allocating): the same label set
    // written in another order is the same point. Each label is hashed alone and the hashes
    // are summed; the count is mixed in last.
    let mut sum: u64 = 0;
    let mut count: u64 = 0;
    for label in labels {
        if Some(label.name.as_ref()) == excluded {
            continue;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (label.name.as_ref(), label.value.as_ref()).hash(&mut hasher);
        sum = sum.wrapping_add(hasher.finish());
        count += 1;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (sum, count).hash(&mut hasher);
    hasher.finish()
}

fn same_series(a: &Sample<'_>, b: &Sample<'_>) -> bool {
    a.name == b.name
        && a.labels.len() == b.labels.len()
        && a.labels.iter().all(|l| b.labels.contains(l))
}

/// A bound (`le`, `quantile`) must be a number whose infinities are spelled `+Inf`/`-Inf`.
fn parse_bound(value: &str) -> Option<f64> {
    let number = parse_number(value)?;
    if number.is_nan() || (number.is_infinite() && value != "+Inf" && value != "-Inf") {
        return None;
    }
    Some(number)
}

impl<'a> Parser<'a, '_> {
    fn line(&mut self, line: Line<'a>) -> Result<(), Error> {
        // OpenMetrics text is UTF-8 throughout: check each line once.
        let line = line.validated()?;
        match line.text.first() {
            None => Err(line.unexpected(
                0,
                "a sample or metadata line (OpenMetrics has no blank lines)",
            )),
            Some(b'#') => self.metadata(line),
            Some(_) => self.sample(line),
        }
    }

    /// Starts a new family named `name`, ending the current one.
    // A `&Cow` rather than a `&str`: cloning it keeps a name borrowed from the input borrowed.
    #[allow(clippy::ptr_arg)]
    fn start_family(
        &mut self,
        line: &Line<'a>,
        pos: usize,
        name: &Cow<'a, str>,
    ) -> Result<(), Error> {
        self.finish_family()?;
        if self.claimed.contains(name) {
            return Err(line.invalid(
                pos,
                format!("metric family {name:?} clashes with an earlier family: a family's lines must be contiguous and its names unique"),
            ));
        }
        self.claimed.insert(name.clone());
        let index = self.families.len();
        self.families
            .push(MetricFamily::new(name.clone(), MetricType::Unknown));
        self.current = Some(Current {
            index,
            name: name.clone(),
            type_seen: false,
            help_seen: false,
            unit_seen: false,
            seen_groups: HashSet::new(),
            group: None,
            group_start: 0,
        });
        self.sample_lines.clear();
        Ok(())
    }

    /// Checks that end with a family: the structure of its histograms.
    fn finish_family(&mut self) -> Result<(), Error> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        let family = &self.families[current.index];
        if matches!(
            family.metric_type,
            MetricType::Histogram | MetricType::GaugeHistogram
        ) {
            check_histograms(family, &self.sample_lines)?;
        }
        Ok(())
    }

    fn metadata(&mut self, line: Line<'a>) -> Result<(), Error> {
        let text = line.text;
        let Some(rest) = text.strip_prefix(b"# ") else {
            return Err(line.unexpected(1, "' ' after '#' (OpenMetrics comments are \"# HELP\", \"# TYPE\", \"# UNIT\" or \"# EOF\")"));
        };
        let keyword_end = 2 + memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let keyword = &text[2..keyword_end];
        if !matches!(keyword, b"HELP" | b"TYPE" | b"UNIT") {
            return Err(line.unexpected_token(
                2,
                keyword_end,
                "HELP, TYPE, UNIT or EOF after '# '",
            ));
        }
        let name_start = keyword_end + 1;
        let (name, name_end) = if text.get(name_start) == Some(&b'"') {
            // A UTF-8 name, quoted: `# TYPE "http.requests" counter`.
            lex::scan_quoted_name(&line, name_start, Escapes::Lenient)?
        } else {
            let name_end = lex::scan_metric_name(text, name_start.min(text.len()));
            if name_start >= text.len() || name_end == name_start {
                return Err(line.unexpected(name_start.min(text.len()), "a metric name"));
            }
            (Cow::Borrowed(line.str(name_start, name_end)?), name_end)
        };
        if text.get(name_end) != Some(&b' ') {
            return Err(line.unexpected(name_end, "' ' after the metric name"));
        }
        let value_start = name_end + 1;

        let same_family = self.current.as_ref().is_some_and(|c| c.name == name);
        if !same_family {
            self.start_family(&line, name_start, &name)?;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(()); // start_family always sets it
        };
        let family = &mut self.families[current.index];
        if !family.samples.is_empty() {
            return Err(line.invalid(
                2,
                format!("metadata for {name:?} after its samples: HELP, TYPE and UNIT come first"),
            ));
        }
        match keyword {
            b"HELP" => {
                if current.help_seen {
                    return Err(line.invalid(2, format!("second HELP line for {name:?}")));
                }
                current.help_seen = true;
                family.help = Some(lex::unescape_help(&line, value_start, false)?);
            }
            b"UNIT" => {
                if current.unit_seen {
                    return Err(line.invalid(2, format!("second UNIT line for {name:?}")));
                }
                current.unit_seen = true;
                let unit = line.str(value_start, text.len())?;
                if !unit.is_empty() {
                    if !unit.bytes().all(lex::is_metric_name_char) {
                        return Err(line.unexpected_token(
                            value_start,
                            text.len(),
                            "a unit made of [a-zA-Z0-9_:]",
                        ));
                    }
                    if !name
                        .strip_suffix(unit)
                        .is_some_and(|base| base.ends_with('_'))
                    {
                        return Err(line.invalid(
                            value_start,
                            format!("metric family {name:?} must end in \"_{unit}\" to have unit {unit:?}"),
                        ));
                    }
                    if matches!(family.metric_type, MetricType::Info | MetricType::StateSet) {
                        return Err(line.invalid(
                            value_start,
                            format!("a {} cannot have a unit", family.metric_type),
                        ));
                    }
                    family.unit = Some(Cow::Borrowed(unit));
                }
            }
            _ => {
                if current.type_seen {
                    return Err(line.invalid(2, format!("second TYPE line for {name:?}")));
                }
                current.type_seen = true;
                let metric_type = match &text[value_start..] {
                    b"counter" => MetricType::Counter,
                    b"gauge" => MetricType::Gauge,
                    b"histogram" => MetricType::Histogram,
                    b"gaugehistogram" => MetricType::GaugeHistogram,
                    b"summary" => MetricType::Summary,
                    b"info" => MetricType::Info,
                    b"stateset" => MetricType::StateSet,
                    b"unknown" => MetricType::Unknown,
                    _ => {
                        return Err(line.unexpected_token(
                            value_start,
                            text.len(),
                            "a type: counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown",
                        ));
                    }
                };
                if family.unit.is_some()
                    && matches!(metric_type, MetricType::Info | MetricType::StateSet)
                {
                    return Err(
                        line.invalid(value_start, format!("a {metric_type} cannot have a unit"))
                    );
                }
                family.metric_type = metric_type;
                for suffix in suffixes(metric_type) {
                    if suffix.is_empty() {
                        continue;
                    }
                    let owned = format!("{name}{suffix}");
                    if self.claimed.contains(owned.as_str()) {
                        return Err(line.invalid(
                            value_start,
                            format!("{metric_type} {name:?} would own samples named {owned:?}, which an earlier family has"),
                        ));
                    }
                    self.claimed.insert(Cow::Owned(owned));
                }
            }
        }
        Ok(())
    }

    /// Reads `{name="value",...}` at `pos` (which holds `{`, or the `,` after a metric name
    /// quoted in the braces); returns the labels and the offset past `}`. `metric` is the
    /// metric name quoted in the braces, if there was one.
    fn labels(
        &self,
        line: &Line<'a>,
        mut pos: usize,
        metric: Option<&str>,
    ) -> Result<(Vec<Label<'a>>, usize), Error> {
        let text = line.text;
        let mut labels: Vec<Label<'a>> = Vec::new();
        pos += 1;
        if text.get(pos) == Some(&b'}') && metric.is_none() {
            return Ok((labels, pos + 1));
        }
        loop {
            let (name, name_end) = if text.get(pos) == Some(&b'"') {
                let (name, name_end) = lex::scan_quoted_name(line, pos, Escapes::Lenient)?;
                if let Some(metric) = metric
                    && matches!(text.get(name_end), Some(b',' | b'}'))
                {
                    return Err(line.invalid(
                        pos,
                        format!("a second metric name {name:?} for metric {metric:?}: a label name must be followed by '='"),
                    ));
                }
                (name, name_end)
            } else {
                let name_end = lex::scan_label_name(text, pos);
                if name_end == pos {
                    return Err(line.unexpected(pos, "a label name"));
                }
                (Cow::Borrowed(line.str(pos, name_end)?), name_end)
            };
            if labels.iter().any(|l| l.name == name) {
                return Err(line.invalid(pos, format!("duplicate label name {name:?}")));
            }
            if labels.len() >= self.limits.max_labels_per_sample {
                return Err(line.limit(
                    pos,
                    "number of labels on a sample",
                    self.limits.max_labels_per_sample,
                ));
            }
            if text.get(name_end) != Some(&b'=') {
                return Err(line.unexpected(name_end, "'=' after a label name"));
            }
            if text.get(name_end + 1) != Some(&b'"') {
                return Err(line.unexpected(name_end + 1, "'\"' opening the label value"));
            }
            let (value, after) = lex::scan_quoted(line, name_end + 1, Escapes::Lenient)?;
            if value.len() > self.limits.max_label_value_length {
                return Err(line.limit(
                    name_end + 1,
                    "label value length in bytes",
                    self.limits.max_label_value_length,
                ));
            }
            labels.push(Label { name, value });
            match text.get(after) {
                Some(b',') => pos = after + 1,
                Some(b'}') => return Ok((labels, after + 1)),
                _ => return Err(line.unexpected(after, "',' or '}' after a label value")),
            }
        }
    }

    fn sample(&mut self, line: Line<'a>) -> Result<(), Error> {
        let text = line.text;
        let (name, labels, mut pos) = if text[0] == b'{' {
            // `{"name",labels...}`: a UTF-8 metric name, quoted, leads the braces.
            if text.get(1) != Some(&b'"') {
                return Err(line.unexpected(
                    1,
                    "a quoted metric name after '{' (a sample line that starts with '{' names its metric first in the braces)",
                ));
            }
            let (name, after) = lex::scan_quoted_name(&line, 1, Escapes::Lenient)?;
            match text.get(after) {
                Some(b'}') => (name, Vec::new(), after + 1),
                Some(b',') => {
                    let (labels, pos) = self.labels(&line, after, Some(&name))?;
                    (name, labels, pos)
                }
                Some(b'=') => {
                    return Err(line.invalid(
                        1,
                        format!(
                            "label {name:?} before the metric name: a sample line that starts with '{{' names its metric first, as in {{\"metric\",{name:?}=\"value\"}}"
                        ),
                    ));
                }
                _ => return Err(line.unexpected(after, "',' or '}' after the quoted metric name")),
            }
        } else {
            let name_end = lex::scan_metric_name(text, 0);
            if name_end == 0 {
                if text[0] == b'"' {
                    return Err(line.unexpected(
                        0,
                        "a metric name (a quoted name goes inside the braces: {\"name\",label=\"value\"})",
                    ));
                }
                return Err(line.unexpected(0, "a metric name or '#'"));
            }
            let name = Cow::Borrowed(line.str(0, name_end)?);
            let (labels, pos) = if text.get(name_end) == Some(&b'{') {
                self.labels(&line, name_end, None)?
            } else {
                (Vec::new(), name_end)
            };
            (name, labels, pos)
        };
        if text.get(pos) != Some(&b' ') {
            return Err(line.unexpected(pos, "a single ' ' before the value"));
        }
        pos += 1;
        let value_end = pos + memchr::memchr(b' ', &text[pos..]).unwrap_or(text.len() - pos);
        let value_token = line.str(pos, value_end)?;
        let Some(number) = parse_number(value_token) else {
            return Err(line.unexpected_token(pos, value_end, "a number as sample value"));
        };
        pos = value_end;
        let mut timestamp = None;
        let mut exemplar = None;
        if pos < text.len() && !text[pos..].starts_with(b" # ") {
            let ts_start = pos + 1;
            let ts_end =
                ts_start + memchr::memchr(b' ', &text[ts_start..]).unwrap_or(text.len() - ts_start);
            let ts_token = line.str(ts_start, ts_end)?;
            let Some(seconds) = parse_om_realnumber(ts_token) else {
                return Err(line.unexpected_token(
                    ts_start,
                    ts_end,
                    "a timestamp in seconds (a real number) or \" # \" and an exemplar",
                ));
            };
            timestamp = Some(seconds);
            pos = ts_end;
        }
        if pos < text.len() {
            if !text[pos..].starts_with(b" # ") {
                return Err(line.unexpected(pos, "the end of the line or \" # \" and an exemplar"));
            }
            let (parsed, end) = self.exemplar(&line, pos + 3)?;
            exemplar = Some(Box::new(parsed));
            pos = end;
        }
        debug_assert_eq!(pos, text.len());

        // File the sample under the current family, or start a new one.
        let belongs = self.current.as_ref().is_some_and(|c| {
            let family_type = self.families[c.index].metric_type;
            name.strip_prefix(c.name.as_ref())
                .is_some_and(|suffix| suffixes(family_type).contains(&suffix))
        });
        if !belongs {
            self.start_family(&line, 0, &name)?;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(()); // start_family always sets it
        };
        let family = &mut self.families[current.index];
        let suffix_start = current.name.len();
        let metric_type = family.metric_type;
        let sample = Sample {
            name,
            labels,
            value: Value {
                number,
                token: Some(Cow::Borrowed(value_token)),
            },
            timestamp: timestamp.map(Timestamp::Seconds),
            exemplar,
        };
        let suffix = &sample.name[suffix_start..];
        check_sample(&line, &current.name, metric_type, suffix, &sample)?;

        // Metric points must be contiguous, and within one, timestamps must not go back.
        let excluded = match (metric_type, suffix) {
            (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => Some("le"),
            (MetricType::Summary, "") => Some("quantile"),
            (MetricType::StateSet, _) => Some(current.name.as_ref()),
            _ => None,
        };
        let group = group_hash(&sample.labels, excluded, metric_type == MetricType::Info);
        match current.group {
            Some((previous, previous_ts)) if previous == group => {
                if previous_ts.is_some() != timestamp.is_some() {
                    return Err(line.invalid(
                        0,
                        "some samples of this metric point have timestamps and some do not",
                    ));
                }
                if let (Some(previous_ts), Some(ts)) = (previous_ts, timestamp)
                    && ts < previous_ts
                    && metric_type != MetricType::Info
                {
                    return Err(line.invalid(0, "timestamp goes backwards within a metric point"));
                }
                if previous_ts != timestamp {
                    current.group_start = family.samples.len();
                } else if timestamp.is_none()
                    && family.samples[current.group_start..]
                        .iter()
                        .any(|s| same_series(s, &sample))
                {
                    return Err(line.invalid(
                        0,
                        format!(
                            "duplicate sample for series {:?} with these labels",
                            sample.name
                        ),
                    ));
                }
            }
            _ => {
                if !current.seen_groups.insert(group) {
                    return Err(line.invalid(
                        0,
                        format!(
                            "samples of one metric point of {:?} are not contiguous",
                            current.name
                        ),
                    ));
                }
                current.group_start = family.samples.len();
            }
        }
        current.group = Some((group, timestamp));

        if self.series >= self.limits.max_series {
            return Err(line.limit(0, "number of series", self.limits.max_series));
        }
        self.series += 1;
        family.samples.push(sample);
        self.sample_lines.push(line.number);
        Ok(())
    }

    /// Reads an exemplar's `{labels} value [timestamp]` starting at `pos`.
    fn exemplar(&self, line: &Line<'a>, pos: usize) -> Result<(Exemplar<'a>, usize), Error> {
        let text = line.text;
        if text.get(pos) != Some(&b'{') {
            return Err(line.unexpected(pos, "'{' opening the exemplar's labels"));
        }
        let (labels, mut pos) = self.labels(line, pos, None)?;
        let chars: usize = labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if chars > MAX_EXEMPLAR_LABEL_CHARS {
            return Err(line.invalid(
                pos,
                format!("exemplar labels are {chars} characters long; at most {MAX_EXEMPLAR_LABEL_CHARS} are allowed"),
            ));
        }
        if text.get(pos) != Some(&b' ') {
            return Err(line.unexpected(pos, "' ' before the exemplar value"));
        }
        pos += 1;
        let value_end = pos + memchr::memchr(b' ', &text[pos..]).unwrap_or(text.len() - pos);
        let value_token = line.str(pos, value_end)?;
        let Some(number) = parse_number(value_token) else {
            return Err(line.unexpected_token(pos, value_end, "a number as exemplar value"));
        };
        let mut timestamp = None;
        pos = value_end;
        if pos < text.len() {
            let ts_start = pos + 1;
            let ts_token = line.str(ts_start, text.len())?;
            let Some(seconds) = parse_om_realnumber(ts_token) else {
                return Err(line.unexpected_token(
                    ts_start,
                    text.len(),
                    "an exemplar timestamp (a real number) at the end of the line",
                ));
            };
            timestamp = Some(seconds);
            pos = text.len();
        }
        Ok((
            Exemplar {
                labels,
                value: Value {
                    number,
                    token: Some(Cow::Borrowed(value_token)),
                },
                timestamp,
            },
            pos,
        ))
    }
}

/// The rules a single sample must meet for its family's type.
fn check_sample(
    line: &Line<'_>,
    family: &str,
    metric_type: MetricType,
    suffix: &str,
    sample: &Sample<'_>,
) -> Result<(), Error> {
    let value = sample.value.number;
    let counter_like = |what: &str| -> Result<(), Error> {
        if value.is_nan() || value < 0.0 {
            return Err(line.invalid(
                0,
                format!(
                    "{what} must be a non-negative number, not {}",
                    sample.value.token.as_deref().unwrap_or("NaN")
                ),
            ));
        }
        Ok(())
    };
    let exemplar_allowed = matches!(
        (metric_type, suffix),
        (MetricType::Counter, "_total")
            | (
                MetricType::Histogram | MetricType::GaugeHistogram,
                "_bucket"
            )
    );
    if sample.exemplar.is_some() && !exemplar_allowed {
        return Err(line.invalid(
            0,
            "exemplars are only allowed on counter _total and histogram _bucket samples",
        ));
    }
    match (metric_type, suffix) {
        (MetricType::Counter, "_total") => counter_like("a counter's value")?,
        (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => {
            match sample.label("le") {
                None => {
                    return Err(line.invalid(
                        0,
                        format!("histogram bucket of {family:?} has no \"le\" label"),
                    ));
                }
                Some(le) if parse_bound(le).is_none() => {
                    return Err(line.invalid(0, format!("invalid \"le\" label {le:?}: expected a number, with infinity written +Inf")));
                }
                Some(_) => {}
            }
            counter_like("a bucket's count")?;
        }
        (MetricType::Histogram, "_count" | "_sum") | (MetricType::Summary, "_count" | "_sum") => {
            counter_like(&format!("{suffix} of {family:?}"))?;
        }
        (MetricType::GaugeHistogram, "_gcount") => counter_like("_gcount")?,
        (MetricType::GaugeHistogram, "_gsum") if value.is_nan() => {
            return Err(line.invalid(0, "_gsum must be a number, not NaN"));
        }
        (MetricType::Summary, "") => {
            match sample.label("quantile").map(|q| (q, parse_bound(q))) {
                Some((_, Some(q))) if (0.0..=1.0).contains(&q) => {}
                Some((q, _)) => {
                    return Err(line.invalid(
                        0,
                        format!("invalid \"quantile\" label {q:?}: expected a number from 0 to 1"),
                    ));
                }
                None => {
                    return Err(line.invalid(
                        0,
                        format!("summary sample of {family:?} has no \"quantile\" label"),
                    ));
                }
            }
            if value < 0.0 {
                return Err(line.invalid(0, "a quantile's value must not be negative"));
            }
        }
        (MetricType::Info, _) if value != 1.0 => {
            return Err(line.invalid(0, "an info sample's value must be 1"));
        }
        (MetricType::StateSet, _) => {
            if sample.label(family).is_none() {
                return Err(line.invalid(
                    0,
                    format!("stateset sample has no {family:?} label naming its state"),
                ));
            }
            if value != 0.0 && value != 1.0 {
                return Err(line.invalid(0, "a stateset sample's value must be 0 or 1"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Histogram structure, per metric point and timestamp: buckets in increasing `le` order with
/// non-decreasing counts, ending with `+Inf`; `_count` equal to the `+Inf` bucket; `_sum` and
/// `_count` together; no `_sum` when buckets are negative; a negative `_gsum` only then.
fn check_histograms(family: &MetricFamily<'_>, lines: &[usize]) -> Result<(), Error> {
    let name = family.name.as_ref();
    let is_gauge = family.metric_type == MetricType::GaugeHistogram;
    let mut i = 0;
    while i < family.samples.len() {
        // One metric point: consecutive samples with the same labels (less `le`) and timestamp.
        let key = |s: &Sample<'_>| group_hash(&s.labels, Some("le"), false);
        let first = &family.samples[i];
        let group_key = key(first);
        let mut j = i;
        while j < family.samples.len()
            && key(&family.samples[j]) == group_key
            && family.samples[j].timestamp == first.timestamp
        {
            j += 1;
        }
        let last_line = lines.get(j - 1).copied().unwrap_or(0);
        let fail = |message: String| Error::Invalid {
            line: last_line,
            column: 1,
            message,
        };
        let mut last_bound: Option<f64> = None;
        let mut last_count = 0.0;
        let mut count = None;
        let mut has_sum = false;
        let mut negative_sum = false;
        let mut negative_buckets = false;
        for sample in &family.samples[i..j] {
            let suffix = &sample.name[name.len()..];
            match suffix {
                "_bucket" => {
                    let bound = sample.label("le").and_then(parse_bound).unwrap_or(f64::NAN);
                    if bound < 0.0 {
                        negative_buckets = true;
                    }
                    if last_bound.is_some_and(|b| bound <= b) {
                        return Err(fail(format!(
                            "buckets of histogram {name:?} are not in increasing \"le\" order"
                        )));
                    }
                    if sample.value.number < last_count {
                        return Err(fail(format!(
                            "bucket counts of histogram {name:?} decrease: buckets are cumulative"
                        )));
                    }
                    last_bound = Some(bound);
                    last_count = sample.value.number;
                }
                "_count" | "_gcount" => count = Some(sample.value.number),
                "_sum" | "_gsum" => {
                    has_sum = true;
                    negative_sum = sample.value.number < 0.0;
                }
                _ => {}
            }
        }
        if last_bound != Some(f64::INFINITY) {
            return Err(fail(format!("histogram {name:?} has no +Inf bucket")));
        }
        if count.is_some_and(|c| c != last_count) {
            return Err(fail(format!(
                "_count of histogram {name:?} differs from its +Inf bucket"
            )));
        }
        if has_sum != count.is_some() {
            let (sum, count) = if is_gauge {
                ("_gsum", "_gcount")
            } else {
                ("_sum", "_count")
            };
            return Err(fail(format!(
                "histogram {name:?} must have both {sum} and {count}, or neither"
            )));
        }
        if !is_gauge && negative_buckets && has_sum {
            return Err(fail(format!(
                "histogram {name:?} has negative buckets, so it cannot have a _sum"
            )));
        }
        if is_gauge && negative_sum && !negative_buckets {
            return Err(fail(format!(
                "gauge histogram {name:?} has a negative _gsum but no negative buckets"
            )));
        }
        i = j;
    }
    Ok(())
}
