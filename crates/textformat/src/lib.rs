//! A strict, fast parser and renderer for the Prometheus text exposition format ("classic":
//! 0.0.4, and 1.0.0's quoted UTF-8 names) and OpenMetrics 1.0 (with the same quoted names).
//!
//! This crate is the one place where promdrop reads and writes the exposition format: the
//! exporter parses every handed-off file with it, `promdrop check` validates with it, and the
//! writer reads the previous file with it. It does no I/O: it takes bytes and gives back
//! families, or takes families and gives back text.
//!
//! - [`parse`] reads bytes in a [`Format`] ([`Format::Auto`] picks OpenMetrics when the last
//!   line is `# EOF`). Classic input is read as Prometheus's own text parser reads it (the one
//!   node_exporter's textfile collector uses); OpenMetrics input as the specification and its
//!   conformance suite say. Errors carry line and column. [`parse_with_limits`] bounds what a
//!   hostile input can cost.
//! - [`render_classic`] and [`render_openmetrics`] write families back out. A value read from
//!   text is written back as the token it was read from, so a round trip is exact.
//! - [`merge`] combines the families of several sources into one exposition and reports the
//!   conflicts between them for the caller to act on.
//! - Names: both formats take any UTF-8 metric or label name, quoted where it is not a legacy
//!   name (`{"http.server.duration","http.method"="GET"} 1`, Prometheus 3's syntax), and both
//!   renderers quote exactly those ([`write_metric_name`], [`is_valid_metric_name`]).
//!   [`EscapingScheme`] and [`escape_names`] rewrite names for a scraper that cannot take
//!   UTF-8 names, as Prometheus's `escaping` negotiation asks.
//! - [`WriterHeader`] reads and writes the `# promdrop:` comment with which promdrop-writer
//!   tells the exporter when a file was written and how long it stays fresh.
//!
//! # Parse, inspect, render
//!
//! ```
//! use promdrop_textformat::{parse, render_classic, Format, MetricType};
//!
//! let text = b"# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{result=\"ok\"} 3\n";
//! let exposition = parse(text, Format::Auto)?;
//! assert_eq!(exposition.format, Format::Classic);
//!
//! let family = &exposition.families[0];
//! assert_eq!(family.metric_type, MetricType::Counter);
//! assert_eq!(family.samples[0].label("result"), Some("ok"));
//! assert_eq!(family.samples[0].value.number, 3.0);
//!
//! // Rendering what was parsed gives the same text back.
//! assert_eq!(render_classic(&exposition.families).as_bytes(), text);
//! # Ok::<(), promdrop_textformat::Error>(())
//! ```
//!
//! # UTF-8 names
//!
//! ```
//! use promdrop_textformat::{escape_names, parse, render_classic, EscapingScheme, Format};
//!
//! let text = "# TYPE \"http.requests\" counter\n{\"http.requests\",\"http.method\"=\"GET\"} 3\n";
//! let mut families = parse(text.as_bytes(), Format::Classic)?.families;
//! assert_eq!(families[0].name, "http.requests");
//! assert_eq!(families[0].samples[0].label("http.method"), Some("GET"));
//! // Written back quoted, as read.
//! assert_eq!(render_classic(&families), text);
//! // For a scraper that cannot take UTF-8 names (`escaping=underscores`, the default):
//! escape_names(&mut families, EscapingScheme::Underscores);
//! assert_eq!(
//!     render_classic(&families),
//!     "# TYPE http_requests counter\nhttp_requests{http_method=\"GET\"} 3\n"
//! );
//! # Ok::<(), promdrop_textformat::Error>(())
//! ```
//!
//! # Errors say where and what
//!
//! ```
//! use promdrop_textformat::{parse, Format};
//!
//! let err = parse(b"up{job=\"a\" 1\n", Format::Classic).unwrap_err();
//! assert_eq!((err.line(), err.column()), (1, 12));
//! assert_eq!(err.to_string(), "1:12: expected ',' or '}' after a label value, found '1'");
//! ```
//!
//! # OpenMetrics, and converting between formats
//!
//! ```
//! use promdrop_textformat::{parse, render_classic, render_openmetrics, Format};
//!
//! let om = b"# TYPE jobs counter\njobs_total 3\njobs_created 1.7e9\n# EOF\n";
//! let exposition = parse(om, Format::Auto)?;
//! assert_eq!(exposition.format, Format::OpenMetrics);
//! assert_eq!(exposition.families[0].name, "jobs");
//! assert_eq!(render_openmetrics(&exposition.families).as_bytes(), om);
//!
//! // The classic format has no `_created`: it becomes a gauge of its own, as client
//! // libraries write it.
//! let classic = render_classic(&exposition.families);
//! assert!(classic.starts_with("# TYPE jobs_total counter\njobs_total 3\n"));
//! assert!(classic.contains("# TYPE jobs_created gauge\njobs_created 1.7e9\n"));
//! # Ok::<(), promdrop_textformat::Error>(())
//! ```
//!
//! # Merging sources
//!
//! ```
//! use promdrop_textformat::{merge, parse, render_classic, Conflict, Format, Source};
//!
//! let a = parse(b"# TYPE up gauge\nup{job=\"a\"} 1\n", Format::Classic)?;
//! let b = parse(b"# TYPE up counter\nup{job=\"b\"} 1\n", Format::Classic)?;
//! let merged = merge(&[Source::new(&a.families), Source::new(&b.families)]);
//! // The second source declares another type for `up`, so its family is dropped and reported.
//! assert_eq!(render_classic(&merged.families), "# TYPE up gauge\nup{job=\"a\"} 1\n");
//! assert!(matches!(merged.conflicts[0], Conflict::TypeMismatch { source: 1, .. }));
//! # Ok::<(), promdrop_textformat::Error>(())
//! ```
#![deny(missing_docs)]

mod clash;
mod classic;
mod error;
mod escaping;
mod hash;
mod header;
mod lex;
mod merge;
mod model;
mod number;
mod openmetrics;
mod render;

pub use clash::{Holder, NameTable, NameUse, family_bounds, family_names};
pub use error::Error;
pub use escaping::{
    EscapingScheme, UnknownEscapingScheme, escape_names, is_legacy_label_name, legacy_names_only,
};
pub use hash::{HashedMap, HashedSet, PassThrough, series_hash};
pub use header::{HEADER_PREFIX, WriterHeader, format_duration, parse_duration};
pub use lex::{is_valid_label_name, is_valid_metric_name};
pub use merge::{Conflict, MergedFamily, MergedView, Source, describe_series, merge};
pub use model::{
    Exemplar, Exposition, Format, Label, MetricFamily, MetricType, Sample, Timestamp, Value,
};
pub use number::format_go_float;
pub use render::{
    FamilyView, OpenMetricsPlan, canonicalize_bounds, escape_help, escape_label_value,
    om_family_name, om_folding, om_type, render_classic, render_classic_into, render_openmetrics,
    render_openmetrics_into, write_classic_header, write_label_name, write_metric_name,
};

/// Bounds on what one input may cost. Each is checked as the input is read, so a hostile input
/// is refused with [`Error::LimitExceeded`] before it can exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest input, in bytes.
    pub max_bytes: usize,
    /// Longest line, in bytes (without its newline).
    pub max_line_length: usize,
    /// Most labels on one sample.
    pub max_labels_per_sample: usize,
    /// Longest label value, in bytes after unescaping.
    pub max_label_value_length: usize,
    /// Most samples (series lines) in one input.
    pub max_series: usize,
}

impl Default for ParseLimits {
    /// Generous bounds for trusted input: 256 MiB, 1 MiB lines, 512 labels, 256 KiB label
    /// values, 10 million samples. Services that read untrusted files set tighter ones.
    fn default() -> Self {
        ParseLimits {
            max_bytes: 256 << 20,
            max_line_length: 1 << 20,
            max_labels_per_sample: 512,
            max_label_value_length: 256 << 10,
            max_series: 10_000_000,
        }
    }
}

/// Parses `input` in `format` with the default [`ParseLimits`].
///
/// Parsing borrows names, label values and value tokens from `input` wherever no unescaping is
/// needed; call [`Exposition::into_owned`] to keep the result past `input`'s lifetime.
pub fn parse(input: &[u8], format: Format) -> Result<Exposition<'_>, Error> {
    parse_with_limits(input, format, &ParseLimits::default())
}

/// Parses `input` in `format`, refusing it when it exceeds `limits`.
pub fn parse_with_limits<'a>(
    input: &'a [u8],
    format: Format,
    limits: &ParseLimits,
) -> Result<Exposition<'a>, Error> {
    if input.len() > limits.max_bytes {
        return Err(Error::LimitExceeded {
            line: 1,
            column: 1,
            what: "input size in bytes",
            limit: limits.max_bytes,
        });
    }
    match format.resolve(input) {
        Format::OpenMetrics => Ok(Exposition {
            format: Format::OpenMetrics,
            families: openmetrics::parse(input, limits)?,
        }),
        _ => Ok(Exposition {
            format: Format::Classic,
            families: classic::parse(input, limits)?,
        }),
    }
}

/// Splits `input` into lines for the parsers, enforcing the line-length limit. The final
/// element is what follows the last `\n` (empty when the input ends with a newline).
pub(crate) struct Lines<'a> {
    input: &'a [u8],
    /// The whole input as text when it is all UTF-8 (the usual case): checked once here, where
    /// a long run of ASCII validates fastest, so that lines need no check of their own.
    text: Option<&'a str>,
    pos: usize,
    number: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Lines {
            input,
            text: std::str::from_utf8(input).ok(),
            pos: 0,
            number: 0,
        }
    }

    /// The next complete line (terminated by `\n`), or `None` at the last, unterminated piece,
    /// which [`Lines::rest`] then returns.
    #[inline]
    pub(crate) fn next_line(
        &mut self,
        limits: &ParseLimits,
    ) -> Result<Option<lex::Line<'a>>, Error> {
        let rest = &self.input[self.pos..];
        match memchr::memchr(b'\n', rest) {
            Some(len) => {
                self.number += 1;
                let mut line = lex::Line::new(&rest[..len], self.number);
                // A slice of valid UTF-8 between newlines is valid UTF-8.
                line.utf8 = self.text.and_then(|t| t.get(self.pos..self.pos + len));
                if len > limits.max_line_length {
                    return Err(line.limit(
                        limits.max_line_length,
                        "line length in bytes",
                        limits.max_line_length,
                    ));
                }
                self.pos += len + 1;
                Ok(Some(line))
            }
            None => Ok(None),
        }
    }

    /// What follows the last newline, as a line numbered after the last complete one.
    pub(crate) fn rest(&self) -> lex::Line<'a> {
        lex::Line::new(&self.input[self.pos..], self.number + 1)
    }
}
