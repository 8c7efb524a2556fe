//! The classic Prometheus text format (0.0.4), read as Prometheus's own text parser (`expfmt`,
//! the one node_exporter's textfile collector uses) reads it, with its quirks kept where files
//! in the wild depend on them (blank lines, free comments, tabs and runs of spaces, trailing
//! commas in label sets, families whose samples are not adjacent, blanks after the last
//! newline) and its silent drops turned into errors (a histogram bucket without `le`, a bare
//! histogram sample, a summary sample without `quantile`, a second `le` or `quantile` label).
//!
//! The golden files in `tests/fixtures/classic` (at the workspace root) hold node_exporter
//! 1.5's verdict on every case next to this parser's. Where they differ on purpose:
//! - the parser also rejects what node_exporter reads wrongly or drops in silence: the cases
//!   above, a metric name run into its value (`a1.5` is `a1` valued `.5` to node_exporter), a
//!   `\r` before any `\n` (node_exporter keeps it in comments and HELP text), HELP text that is
//!   not UTF-8 (Prometheus would fail the whole scrape on it), and inputs over [`ParseLimits`];
//! - it accepts client timestamps, which node_exporter's textfile collector (not its parser)
//!   refuses; promdrop's exporter refuses them by default;
//! - it rejects what crashes node_exporter 1.5: a label name starting with `__` and a sample of
//!   a `gauge_histogram` family (a `# TYPE x gauge_histogram` line alone is accepted, as there).
//! - it reads the quoted UTF-8 names of text format 1.0.0 (Prometheus 3, and node_exporter since
//!   its pull request #3729), which node_exporter 1.5 rejects: `{"http.server.duration",
//!   "http.method"="GET"} 1`, a quoted label name after a legacy metric name
//!   (`a{"b.c"="d"} 1`), and quoted names in HELP and TYPE lines (`# TYPE "a.b" counter`). A
//!   quoted metric name stands first in the braces of a line that starts with `{`; escapes in
//!   it are those of a label value. As in Prometheus's parser, a second name, a quoted name
//!   after a label, an empty name and an unterminated quote are errors; a quoted name outside
//!   the braces (`"a.b" 1`, which Go's `expfmt` takes) is refused: the format puts a quoted
//!   metric name inside the braces, and that is the only form promdrop writes.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::lex::{self, Escapes, Line};
use crate::number::{parse_go_int, parse_number};
use crate::{Error, Label, Lines, MetricFamily, MetricType, ParseLimits, Sample, Timestamp, Value};

/// What the parser knows of a family beyond the family itself.
#[derive(Default, Clone, Copy)]
struct FamilyState {
    /// A `# TYPE` line was read, or a sample was (after which TYPE is too late).
    type_fixed: bool,
}

/// Whether `a` and `b` are the same slice of the input (the fast path of `a == b` for names
/// that [`Parser::sample`] handed out again).
#[inline(always)]
fn same_slice(a: &str, b: &str) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// How a sample name relates to the family it was filed under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The family's own name.
    Plain,
    /// `_bucket` of a histogram.
    Bucket,
    /// `_sum` or `_count` of a histogram or summary.
    SumOrCount,
}

struct Parser<'a, 'l> {
    limits: &'l ParseLimits,
    families: Vec<MetricFamily<'a>>,
    states: Vec<FamilyState>,
    /// Seeded per parser (names come from the input), and not SipHash: looked up once a line.
    by_name: HashMap<Cow<'a, str>, usize, foldhash::fast::RandomState>,
    series: usize,
    /// The family of the previous sample line and its name: most lines continue it. The flag
    /// says the name was written unquoted, so that the next line may be matched against it
    /// byte for byte.
    last: Option<(Cow<'a, str>, usize, Role, bool)>,
    /// The unquoted label names of previous sample lines, by position: most lines repeat them.
    /// A name read again is given the slice it was first read as, which lets the renderers
    /// recognise a legacy name they have seen by its address (see `render::LegacyNames`).
    last_labels: [&'a str; 8],
    /// Where a sample's labels are gathered before they are moved into it.
    label_buffer: Vec<Label<'a>>,
}

pub(crate) fn parse<'a>(
    input: &'a [u8],
    limits: &ParseLimits,
) -> Result<Vec<MetricFamily<'a>>, Error> {
    let mut parser = Parser {
        limits,
        families: Vec::new(),
        states: Vec::new(),
        by_name: HashMap::default(),
        series: 0,
        last: None,
        last_labels: [""; 8],
        label_buffer: Vec::new(),
    };
    let mut lines = Lines::new(input);
    while let Some(line) = lines.next_line(limits)? {
        parser.line(line)?;
    }
    let rest = lines.rest();
    // Blanks after the last newline are a blank line to the text parser, which ends at the end
    // of the input there without complaint.
    if rest.text.iter().any(|b| *b != b' ' && *b != b'\t') {
        return Err(rest.unexpected(
            rest.text.len(),
            "a newline at the end of the input (the last line is incomplete)",
        ));
    }
    // Families that only had HELP or TYPE lines carry no data; the text parser drops them too.
    let mut families = parser.families;
    families.retain(|f| !f.samples.is_empty());
    Ok(families)
}

#[inline]
fn skip_blanks(text: &[u8], mut pos: usize) -> usize {
    while pos < text.len() && (text[pos] == b' ' || text[pos] == b'\t') {
        pos += 1;
    }
    pos
}

#[inline]
fn token_end(text: &[u8], mut pos: usize) -> usize {
    while pos < text.len() && text[pos] != b' ' && text[pos] != b'\t' {
        pos += 1;
    }
    pos
}

impl<'a> Parser<'a, '_> {
    fn line(&mut self, line: Line<'a>) -> Result<(), Error> {
        let text = line.text;
        if text.last() == Some(&b'\r') {
            return Err(line.unexpected(text.len() - 1, "'\\n' alone at the end of the line"));
        }
        let pos = skip_blanks(text, 0);
        match text.get(pos) {
            None => Ok(()),
            Some(b'#') => self.comment(line, pos + 1),
            Some(_) => self.sample(line, pos),
        }
    }

    // A `&Cow` rather than a `&str`: cloning it keeps a name borrowed from the input borrowed.
    #[allow(clippy::ptr_arg)]
    fn family_index(&mut self, name: &Cow<'a, str>) -> usize {
        if let Some(&index) = self.by_name.get(name.as_ref()) {
            return index;
        }
        let index = self.families.len();
        self.families
            .push(MetricFamily::new(name.clone(), MetricType::Unknown));
        self.states.push(FamilyState::default());
        self.by_name.insert(name.clone(), index);
        index
    }

    /// A line starting with `#`: HELP, TYPE, or a comment to ignore.
    fn comment(&mut self, line: Line<'a>, after_hash: usize) -> Result<(), Error> {
        let text = line.text;
        let keyword_start = skip_blanks(text, after_hash);
        let keyword_end = token_end(text, keyword_start);
        let keyword = &text[keyword_start..keyword_end];
        let is_help = keyword == b"HELP";
        if !is_help && keyword != b"TYPE" {
            // A free comment: its bytes are not looked at.
            return Ok(());
        }
        let name_start = skip_blanks(text, keyword_end);
        if name_start == text.len() {
            return Ok(()); // "# HELP" alone, or followed by blanks: the text parser ignores it.
        }
        let (name, name_end) = if text[name_start] == b'"' {
            // A UTF-8 name, quoted (text format 1.0.0): `# TYPE "http.requests" counter`.
            let line = line.validated()?;
            lex::scan_quoted_name(&line, name_start, Escapes::Strict)?
        } else {
            let name_end = lex::scan_metric_name(text, name_start);
            // Valid ASCII by construction.
            (Cow::Borrowed(line.str(name_start, name_end)?), name_end)
        };
        if name_end == text.len() && name_end > name_start {
            return Ok(()); // "# HELP name" with nothing after it: ignored, as by the text parser.
        }
        if name_end == name_start || !matches!(text.get(name_end), Some(b' ' | b'\t') | None) {
            return Err(line.unexpected(
                name_end,
                "a metric name followed by a space in the HELP or TYPE line",
            ));
        }
        // The name is filed as a sample name is: `x_count` names the summary `x` if there is one.
        let (index, _) = self.resolve_uncached(&name);
        let rest_start = skip_blanks(text, name_end);
        if rest_start == text.len() {
            return Ok(()); // "# TYPE name " with nothing after it: ignored too.
        }
        let family_name = &self.families[index].name;
        let named_as = if *family_name == name {
            String::new()
        } else {
            format!(" (named by its sample name {name:?})")
        };
        if is_help {
            if self.families[index].help.is_some() {
                return Err(line.invalid(
                    keyword_start,
                    format!("second HELP line for metric name {family_name:?}{named_as}"),
                ));
            }
            let help = lex::unescape_help(&line, rest_start, true)?;
            self.families[index].help = Some(help);
            return Ok(());
        }
        if self.states[index].type_fixed {
            return Err(line.invalid(
                keyword_start,
                format!(
                    "second TYPE line for metric name {family_name:?}{named_as}, or TYPE reported after samples"
                ),
            ));
        }
        // The type is the rest of the line, trailing blanks included, case-insensitive.
        let type_text = &text[rest_start..];
        let metric_type = match type_text.to_ascii_lowercase().as_slice() {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"summary" => MetricType::Summary,
            b"untyped" => MetricType::Unknown,
            // Known to the text parser (it is in the protobuf enum), though no classic sample can
            // belong to it: see `sample`.
            b"gauge_histogram" => MetricType::GaugeHistogram,
            _ => {
                return Err(line.invalid(
                    rest_start,
                    format!(
                        "unknown metric type {:?}: expected counter, gauge, histogram, summary or untyped",
                        String::from_utf8_lossy(type_text)
                    ),
                ));
            }
        };
        // A histogram or summary typed after one of its sample names was read as a metric of
        // its own (`# HELP x`, `x_sum 1`, `# TYPE x summary`) could not be written back: `x`
        // comes first, so the TYPE line of `x_sum` would then name `x`. The text parser takes
        // it; it is refused here so that whatever parses renders to text that parses again.
        let sample_suffixes: &[&str] = match metric_type {
            MetricType::Histogram => &["_bucket", "_count", "_sum"],
            MetricType::Summary => &["_count", "_sum"],
            _ => &[],
        };
        for suffix in sample_suffixes {
            let sample_name = format!("{family_name}{suffix}");
            if self
                .by_name
                .get(sample_name.as_str())
                .is_some_and(|&other| other > index)
            {
                return Err(line.invalid(
                    keyword_start,
                    format!(
                        "TYPE {metric_type} for metric name {family_name:?} after {sample_name:?} was read as a metric of its own: the TYPE line must come first"
                    ),
                ));
            }
        }
        self.families[index].metric_type = metric_type;
        self.states[index].type_fixed = true;
        self.last = None;
        Ok(())
    }

    /// Files a sample name under its family, as the text parser does: an existing family of
    /// that exact name first, then the summary or histogram it is a `_sum`, `_count` or
    /// `_bucket` of, else a new untyped family.
    // A `&Cow` rather than a `&str`: cloning it keeps a name borrowed from the input borrowed.
    #[allow(clippy::ptr_arg)]
    fn resolve(&mut self, name: &Cow<'a, str>, unquoted: bool) -> (usize, Role) {
        if let Some((last_name, index, role, _)) = &self.last
            && (same_slice(last_name, name) || last_name == name)
        {
            return (*index, *role);
        }
        let resolved = self.resolve_uncached(name);
        self.last = Some((name.clone(), resolved.0, resolved.1, unquoted));
        resolved
    }

    // A `&Cow` rather than a `&str`: cloning it keeps a name borrowed from the input borrowed.
    #[allow(clippy::ptr_arg)]
    fn resolve_uncached(&mut self, name: &Cow<'a, str>) -> (usize, Role) {
        if let Some(&index) = self.by_name.get(name.as_ref()) {
            return (index, Role::Plain);
        }
        for (suffix, role) in [
            ("_count", Role::SumOrCount),
            ("_sum", Role::SumOrCount),
            ("_bucket", Role::Bucket),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(&index) = self.by_name.get(base)
            {
                let base_type = self.families[index].metric_type;
                let fits = base_type == MetricType::Histogram
                    || (base_type == MetricType::Summary && role == Role::SumOrCount);
                if fits && !base.is_empty() {
                    return (index, role);
                }
            }
        }
        (self.family_index(name), Role::Plain)
    }

    fn sample(&mut self, line: Line<'a>, start: usize) -> Result<(), Error> {
        // Every piece of a sample line must be UTF-8: check the line once.
        let line = line.validated()?;
        let text = line.text;
        // `{"name", labels...}` (text format 1.0.0): the metric name, quoted, leads the braces.
        let in_braces = text[start] == b'{';
        let (name, name_end) = if in_braces {
            let open = skip_blanks(text, start + 1);
            if text.get(open) != Some(&b'"') {
                return Err(line.unexpected(
                    open,
                    "a quoted metric name after '{' (a sample line that starts with '{' names its metric first in the braces)",
                ));
            }
            let (name, after) = lex::scan_quoted_name(&line, open, Escapes::Strict)?;
            let after = skip_blanks(text, after);
            match text.get(after) {
                Some(b',' | b'}') => {}
                Some(b'=') => {
                    return Err(line.invalid(
                        open,
                        format!(
                            "label {name:?} before the metric name: a sample line that starts with '{{' names its metric first, as in {{\"metric\", {name:?}=\"value\"}}"
                        ),
                    ));
                }
                _ => {
                    return Err(line.unexpected(after, "',' or '}' after the quoted metric name"));
                }
            }
            (name, after)
        } else {
            // Most lines continue the previous line's metric: try its name before scanning, and
            // hand the sample that same name (the same slice, see `last_labels`).
            if let Some((last_name, _, _, true)) = &self.last
                && text[start..].starts_with(last_name.as_bytes())
                && !text
                    .get(start + last_name.len())
                    .is_some_and(|b| lex::is_metric_name_char(*b))
            {
                (last_name.clone(), start + last_name.len())
            } else {
                let name_end = lex::scan_metric_name(text, start);
                if name_end == start {
                    if text[start] == b'"' {
                        return Err(line.unexpected(
                        start,
                        "a metric name (a quoted name goes inside the braces: {\"name\", label=\"value\"})",
                    ));
                    }
                    return Err(line.unexpected(start, "a metric name, a comment or a blank line"));
                }
                (Cow::Borrowed(line.str(start, name_end)?), name_end)
            }
        };
        let (index, role) = self.resolve(&name, !in_braces);
        let metric_type = self.families[index].metric_type;
        if metric_type == MetricType::GaugeHistogram {
            // node_exporter 1.5 panics on such a sample; Prometheus refuses the type.
            return Err(line.invalid(
                start,
                format!(
                    "sample {name:?} of a gauge_histogram family: the classic text format has no \
                     gauge histograms (declare it a histogram or a gauge)"
                ),
            ));
        }

        let mut pos = skip_blanks(text, name_end);
        // Labels are gathered in a reused buffer and copied out at their exact count: one
        // allocation a sample, no larger than it needs to be.
        let mut labels = std::mem::take(&mut self.label_buffer);
        labels.clear();
        let mut le_seen = false;
        let mut quantile_seen = false;
        // In the braces form `pos` stands on the ',' or '}' after the name, which the loop reads
        // as it reads the one after a label value.
        let has_labels = in_braces || text.get(pos) == Some(&b'{');
        if in_braces && text.get(pos) == Some(&b'}') {
            pos = skip_blanks(text, pos + 1);
        } else if has_labels {
            pos += 1;
            loop {
                pos = skip_blanks(text, pos);
                if text.get(pos) == Some(&b'}') {
                    pos += 1;
                    break;
                }
                let (label_name, label_end) = if text.get(pos) == Some(&b'"') {
                    lex::scan_quoted_name(&line, pos, Escapes::Strict)?
                } else if let Some(known) = self.last_labels.get(labels.len())
                    && lex::label_name_at(text, pos, known)
                {
                    (Cow::Borrowed(*known), pos + known.len())
                } else {
                    let label_end = lex::scan_label_name(text, pos);
                    if label_end == pos {
                        return Err(line.unexpected(pos, "a label name or '}'"));
                    }
                    let label_name = line.str(pos, label_end)?;
                    if let Some(known) = self.last_labels.get_mut(labels.len()) {
                        *known = label_name;
                    }
                    (Cow::Borrowed(label_name), label_end)
                };
                let label_start = pos;
                pos = skip_blanks(text, label_end);
                if text.get(pos) != Some(&b'=') {
                    if in_braces && matches!(text.get(pos), Some(b',' | b'}')) {
                        return Err(line.invalid(
                            label_start,
                            format!("a second metric name {label_name:?} for metric {name:?}: a label name must be followed by '='"),
                        ));
                    }
                    return Err(line.unexpected(pos, "'=' after a label name"));
                }
                if label_name.starts_with("__") {
                    let message = if label_name == "__name__" {
                        "label name \"__name__\" is reserved".to_string()
                    } else {
                        format!(
                            "label name {label_name:?} starts with \"__\", which is reserved for \
                             Prometheus's internal use"
                        )
                    };
                    return Err(line.invalid(label_start, message));
                }
                if labels.iter().any(|l| l.name == label_name) {
                    return Err(line.invalid(
                        label_start,
                        format!("duplicate label name {label_name:?} for metric {name:?}"),
                    ));
                }
                if labels.len() >= self.limits.max_labels_per_sample {
                    return Err(line.limit(
                        label_start,
                        "number of labels on a sample",
                        self.limits.max_labels_per_sample,
                    ));
                }
                pos = skip_blanks(text, pos + 1);
                if text.get(pos) != Some(&b'"') {
                    return Err(line.unexpected(pos, "'\"' opening the label value"));
                }
                let value_start = pos;
                let (value, after) = lex::scan_quoted(&line, pos, Escapes::Strict)?;
                if value.len() > self.limits.max_label_value_length {
                    return Err(line.limit(
                        value_start,
                        "label value length in bytes",
                        self.limits.max_label_value_length,
                    ));
                }
                let is_bound = match (metric_type, label_name.as_ref()) {
                    (MetricType::Histogram, "le") => {
                        le_seen = true;
                        true
                    }
                    (MetricType::Summary, "quantile") => {
                        quantile_seen = true;
                        true
                    }
                    _ => false,
                };
                if is_bound && parse_number(&value).is_none() {
                    return Err(line.invalid(
                        value_start,
                        format!(
                            "expected a float as value for the {label_name:?} label, got {value:?}"
                        ),
                    ));
                }
                labels.push(Label {
                    name: label_name,
                    value,
                });
                pos = skip_blanks(text, after);
                match text.get(pos) {
                    Some(b',') => pos += 1,
                    Some(b'}') => {
                        pos += 1;
                        break;
                    }
                    _ => return Err(line.unexpected(pos, "',' or '}' after a label value")),
                }
            }
            pos = skip_blanks(text, pos);
        } else if !in_braces && pos == name_end && pos < text.len() {
            // The name must be followed by a blank or a label set.
            return Err(line.unexpected(pos, "a space or '{' after the metric name"));
        }

        match (metric_type, role) {
            (MetricType::Histogram, Role::Bucket) if !le_seen => {
                return Err(line.invalid(
                    start,
                    format!("histogram bucket {name:?} has no \"le\" label"),
                ));
            }
            (MetricType::Histogram, Role::Plain) => {
                return Err(line.invalid(
                    start,
                    format!("histogram {name:?} has a sample without a suffix: its samples are {name}_bucket, {name}_sum and {name}_count"),
                ));
            }
            (MetricType::Summary, Role::Plain) if !quantile_seen => {
                return Err(line.invalid(
                    start,
                    format!("summary sample {name:?} has no \"quantile\" label"),
                ));
            }
            _ => {}
        }

        let value_end = token_end(text, pos);
        if value_end == pos {
            return Err(line.unexpected(pos, "a sample value"));
        }
        let value_token = line.str(pos, value_end)?;
        let Some(number) = parse_number(value_token) else {
            return Err(line.unexpected_token(pos, value_end, "a float as sample value"));
        };
        let mut timestamp = None;
        if value_end < text.len() {
            let ts_start = skip_blanks(text, value_end);
            let ts_end = token_end(text, ts_start);
            if ts_start == text.len() {
                return Err(line.unexpected(
                    value_end,
                    "a timestamp or the end of the line after the value (no trailing blanks)",
                ));
            }
            let ts_token = line.str(ts_start, ts_end)?;
            let Some(ms) = parse_go_int(ts_token) else {
                return Err(line.unexpected_token(
                    ts_start,
                    ts_end,
                    "an integer timestamp in milliseconds",
                ));
            };
            if ts_end < text.len() {
                return Err(line.unexpected(ts_end, "the end of the line after the timestamp"));
            }
            timestamp = Some(Timestamp::Millis(ms));
        }

        if self.series >= self.limits.max_series {
            return Err(line.limit(start, "number of series", self.limits.max_series));
        }
        self.series += 1;
        self.states[index].type_fixed = true;
        // Moved out at their exact count, so a sample holds no spare capacity and the buffer
        // keeps its own for the next line (`mem::take` would give the sample the buffer).
        #[allow(clippy::drain_collect)]
        let labels_of_sample: Vec<Label<'a>> = labels.drain(..).collect();
        self.families[index].samples.push(Sample {
            name,
            labels: labels_of_sample,
            value: Value {
                number,
                token: Some(Cow::Borrowed(value_token)),
            },
            timestamp,
            exemplar: None,
        });
        self.label_buffer = labels;
        Ok(())
    }
}
