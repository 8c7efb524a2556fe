//! Name escaping for scrapers that cannot take UTF-8 names.
//!
//! Prometheus 3 reads any UTF-8 metric or label name, written quoted (`{"http.server.duration"}`).
//! A scraper says in its `Accept` header which names it can take, with an `escaping` parameter
//! (`text/plain;version=1.0.0;escaping=underscores`); an older one says nothing and gets the
//! default, [`EscapingScheme::Underscores`]. The schemes are those of Prometheus's
//! `model.EscapeName` and Python prometheus_client's `escape_metric_name`/`escape_label_name`:
//!
//! | scheme | legacy name | `a.b_c` | `héllo` | `1up` |
//! |---|---|---|---|---|
//! | `allow-utf-8` | as is | `a.b_c` (quoted when written) | `héllo` | `1up` |
//! | `underscores` | as is | `a_b_c` | `h_llo` | `_up` |
//! | `dots` | `_` doubled | `a_dot_b__c` | `h__llo` | `__up` |
//! | `values` | as is | `U__a_2e_b__c` | `U__h_e9_llo` | `U___31_up` |
//!
//! A legacy metric name is `[a-zA-Z_:][a-zA-Z0-9_:]*` ([`is_valid_metric_name`]); a legacy
//! label name is `[a-zA-Z_][a-zA-Z0-9_]*` and, for escaping, does not start with `__`
//! ([`is_legacy_label_name`]).
//!
//! Label names are escaped as prometheus_client escapes them: a `:` in a label name is not a
//! legacy character, and a name starting with `__` is escaped under `values`. Go's
//! `model.EscapeMetricFamily` checks label names against the metric-name rules instead, so a
//! label `a:b` or `__x` (which no parser here accepts on a sample anyway) is kept there.
//!
//! ```
//! use promdrop_textformat::EscapingScheme;
//!
//! let scheme: EscapingScheme = "dots".parse().unwrap();
//! assert_eq!(scheme.escape_metric_name("http.server.duration"), "http_dot_server_dot_duration");
//! assert_eq!(EscapingScheme::Values.escape_label_name("http.method"), "U__http_2e_method");
//! // What a scraper gets that does not name a scheme:
//! assert_eq!(EscapingScheme::default(), EscapingScheme::Underscores);
//! assert_eq!(EscapingScheme::Underscores.to_string(), "underscores");
//! ```
//!
//! To serve families to such a scraper, escape their names with [`escape_names`] and render
//! them as usual: every name is then a legacy one and is written unquoted. Names that collide
//! once escaped (`a.b` and `a_b` under `underscores`) are the caller's to detect, for instance
//! by merging the escaped families with [`merge`](crate::merge()).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::lex::is_valid_metric_name;
use crate::{Label, MetricFamily};

/// How metric and label names that are not legacy names are written (the `escaping` parameter
/// of an `Accept` or `Content-Type` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EscapingScheme {
    /// `allow-utf-8`: names are kept as they are, quoted where needed.
    AllowUtf8,
    /// `underscores`: every character a legacy name cannot hold becomes `_`. The default for a
    /// scraper that does not ask for a scheme, as in Prometheus and its client libraries.
    #[default]
    Underscores,
    /// `dots`: `.` becomes `_dot_`, `_` becomes `__`, and any other character a legacy name
    /// cannot hold becomes `__`. Applied to legacy names too (their `_` are doubled).
    Dots,
    /// `values`: a name that is not a legacy name becomes `U__` followed by the name with `_`
    /// doubled and every other character a legacy name cannot hold written as `_<hex code
    /// point>_`. Reversible.
    Values,
}

impl EscapingScheme {
    /// Every scheme, in the order above.
    pub const ALL: [EscapingScheme; 4] = [
        EscapingScheme::AllowUtf8,
        EscapingScheme::Underscores,
        EscapingScheme::Dots,
        EscapingScheme::Values,
    ];

    /// The scheme's name as an `escaping` parameter has it (`allow-utf-8`, `underscores`,
    /// `dots`, `values`).
    pub fn as_str(self) -> &'static str {
        match self {
            EscapingScheme::AllowUtf8 => "allow-utf-8",
            EscapingScheme::Underscores => "underscores",
            EscapingScheme::Dots => "dots",
            EscapingScheme::Values => "values",
        }
    }

    /// The scheme named by an `escaping` parameter's value, or `None` for an unknown one
    /// (Prometheus's negotiation then falls back to the default scheme).
    pub fn from_param(value: &str) -> Option<EscapingScheme> {
        EscapingScheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == value)
    }

    /// `name` as a metric name under this scheme; borrowed when it is unchanged.
    pub fn escape_metric_name(self, name: &str) -> Cow<'_, str> {
        escape(name, self, is_valid_metric_name(name), true)
    }

    /// `name` as a label name under this scheme; borrowed when it is unchanged.
    pub fn escape_label_name(self, name: &str) -> Cow<'_, str> {
        escape(name, self, is_legacy_label_name(name), false)
    }
}

impl fmt::Display for EscapingScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `escaping` parameter value that names no scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown escaping scheme {0:?}: expected allow-utf-8, underscores, dots or values")]
pub struct UnknownEscapingScheme(pub String);

impl FromStr for EscapingScheme {
    type Err = UnknownEscapingScheme;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        EscapingScheme::from_param(value).ok_or_else(|| UnknownEscapingScheme(value.to_string()))
    }
}

/// Whether `name` is a legacy label name for escaping: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting
/// with `__` (as prometheus_client has it; a reserved name is escaped under `values`).
pub fn is_legacy_label_name(name: &str) -> bool {
    crate::lex::is_valid_label_name(name) && !name.starts_with("__")
}

/// Whether `c`, at character index `index`, may stand in a legacy name.
fn legacy_char(c: char, index: usize, metric: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (c.is_ascii_digit() && index > 0) || (metric && c == ':')
}

fn escape(name: &str, scheme: EscapingScheme, legacy: bool, metric: bool) -> Cow<'_, str> {
    if name.is_empty() {
        return Cow::Borrowed(name);
    }
    match scheme {
        EscapingScheme::AllowUtf8 => Cow::Borrowed(name),
        EscapingScheme::Underscores | EscapingScheme::Values if legacy => Cow::Borrowed(name),
        EscapingScheme::Underscores => Cow::Owned(
            name.chars()
                .enumerate()
                .map(|(i, c)| if legacy_char(c, i, metric) { c } else { '_' })
                .collect(),
        ),
        EscapingScheme::Dots => {
            let mut out = String::with_capacity(name.len() + 8);
            for (i, c) in name.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    '.' => out.push_str("_dot_"),
                    c if legacy_char(c, i, metric) => out.push(c),
                    _ => out.push_str("__"),
                }
            }
            Cow::Owned(out)
        }
        EscapingScheme::Values => {
            let mut out = String::with_capacity(name.len() + 16);
            out.push_str("U__");
            for (i, c) in name.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    c if legacy_char(c, i, metric) => out.push(c),
                    // A Rust string holds no surrogates, the one case where Prometheus writes
                    // `_FFFD_`.
                    c => {
                        use std::fmt::Write as _;
                        let _ = write!(out, "_{:x}_", c as u32);
                    }
                }
            }
            Cow::Owned(out)
        }
    }
}

/// Whether every metric and label name of `families` (family, sample, sample and exemplar
/// label names) is a legacy one, so that no scheme but [`EscapingScheme::Dots`] changes any:
/// a file for which this holds is served as it is to a scraper that cannot take UTF-8 names.
///
/// ```
/// use promdrop_textformat::{legacy_names_only, parse, Format};
///
/// let legacy = parse(b"a_total{job=\"x\"} 1\n", Format::Classic)?.families;
/// assert!(legacy_names_only(&legacy));
/// let quoted = parse(b"{\"a.b\",job=\"x\"} 1\n", Format::Classic)?.families;
/// assert!(!legacy_names_only(&quoted));
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
pub fn legacy_names_only(families: &[MetricFamily<'_>]) -> bool {
    let labels = |labels: &[Label<'_>]| labels.iter().all(|l| is_legacy_label_name(&l.name));
    families.iter().all(|family| {
        is_valid_metric_name(&family.name)
            && family.samples.iter().all(|s| {
                is_valid_metric_name(&s.name)
                    && labels(&s.labels)
                    && s.exemplar.as_ref().is_none_or(|e| labels(&e.labels))
            })
    })
}

/// Rewrites every metric and label name of `families` under `scheme`: family names, sample
/// names and the label names of samples and exemplars. [`EscapingScheme::AllowUtf8`] changes
/// nothing.
///
/// Each sample name is escaped whole, as prometheus_client writes it (under `dots`, the sample
/// `a.b_total` of the counter `a.b` becomes `a_dot_b__total`). Go's client escapes the family
/// name and then appends the suffix (`a_dot_b_total`); the two agree under `underscores`, the
/// default.
///
/// ```
/// use promdrop_textformat::{escape_names, parse, render_classic, EscapingScheme, Format};
///
/// let text = b"# TYPE \"http.requests\" gauge\n{\"http.requests\",\"http.method\"=\"GET\"} 3\n";
/// let mut families = parse(text, Format::Classic)?.families;
/// escape_names(&mut families, EscapingScheme::Underscores);
/// assert_eq!(
///     render_classic(&families),
///     "# TYPE http_requests gauge\nhttp_requests{http_method=\"GET\"} 3\n"
/// );
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
pub fn escape_names(families: &mut [MetricFamily<'_>], scheme: EscapingScheme) {
    if scheme == EscapingScheme::AllowUtf8 {
        return;
    }
    fn metric<'a>(name: &mut Cow<'a, str>, scheme: EscapingScheme) {
        if let Cow::Owned(escaped) = scheme.escape_metric_name(name) {
            *name = Cow::Owned(escaped);
        }
    }
    fn labels(labels: &mut [Label<'_>], scheme: EscapingScheme) {
        for label in labels {
            if let Cow::Owned(escaped) = scheme.escape_label_name(&label.name) {
                label.name = Cow::Owned(escaped);
            }
        }
    }
    for family in families {
        metric(&mut family.name, scheme);
        for sample in &mut family.samples {
            metric(&mut sample.name, scheme);
            labels(&mut sample.labels, scheme);
            if let Some(exemplar) = &mut sample.exemplar {
                labels(&mut exemplar.labels, scheme);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_parse_and_print() {
        for scheme in EscapingScheme::ALL {
            assert_eq!(scheme.as_str().parse::<EscapingScheme>(), Ok(scheme));
            assert_eq!(scheme.to_string(), scheme.as_str());
        }
        assert_eq!(EscapingScheme::from_param("UTF-8"), None);
        assert_eq!(
            "no".parse::<EscapingScheme>().unwrap_err().to_string(),
            "unknown escaping scheme \"no\": expected allow-utf-8, underscores, dots or values"
        );
    }

    #[test]
    fn names_escape_as_prometheus_has_them() {
        use EscapingScheme::*;
        let cases = [
            ("a.b", Underscores, "a_b"),
            ("a.b", Dots, "a_dot_b"),
            ("a.b", Values, "U__a_2e_b"),
            ("a_b", Dots, "a__b"),
            ("a_b", Values, "a_b"),
            ("1up", Underscores, "_up"),
            ("1up", Values, "U___31_up"),
            ("héllo", Values, "U__h_e9_llo"),
            ("a:b", Underscores, "a:b"),
            ("", Values, ""),
            ("a.b", AllowUtf8, "a.b"),
        ];
        for (name, scheme, escaped) in cases {
            assert_eq!(scheme.escape_metric_name(name), escaped, "{name} {scheme}");
        }
        assert_eq!(Underscores.escape_label_name("a:b"), "a_b");
        assert_eq!(Values.escape_label_name("__x"), "U______x");
        assert_eq!(Underscores.escape_label_name("__x"), "__x");
    }

    #[test]
    fn a_name_that_is_not_a_legacy_one_is_never_missed() {
        fn families(text: &str, format: crate::Format) -> Vec<MetricFamily<'_>> {
            crate::parse(text.as_bytes(), format).unwrap().families
        }
        for text in [
            "{\"a.b\"} 1\n",
            "x{ \"a.b\"=\"1\"} 1\n",
            "x{a=\"1\",\"b.c\"=\"2\"} 1\n",
            "x{a=\"1\", \"b.c\"=\"2\"} 1\n",
            "# TYPE \"a.b\" gauge\n{\"a.b\"} 1\n",
            "# HELP  \"a.b\" help\n{\"a.b\"} 1\n",
        ] {
            assert!(
                !legacy_names_only(&families(text, crate::Format::Classic)),
                "{text}"
            );
        }
        let exemplar = "# TYPE a counter\na_total 1 # {\"b.c\"=\"x\"} 1\n# EOF\n";
        let unit = "# TYPE \"a.b_seconds\" gauge\n# UNIT \"a.b_seconds\" seconds\n{\"a.b_seconds\"} 1\n# EOF\n";
        for text in [exemplar, unit] {
            assert!(
                !legacy_names_only(&families(text, crate::Format::OpenMetrics)),
                "{text}"
            );
        }
        for text in [
            "a{b=\"c\"} 1\n",
            "# HELP a say \"hi\"\na{b=\"\\\"\"} 1\n",
            "a_b 1\n",
            // A family declared with no sample is not served: it has no name to escape.
            "# TYPE \"a.b\" gauge\n",
        ] {
            assert!(
                legacy_names_only(&families(text, crate::Format::Classic)),
                "{text}"
            );
        }
    }
}
