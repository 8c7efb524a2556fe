//! The one rule that the writer, `promdrop write`, `promdrop run` and `promdrop check` share:
//! **what is written with success is served in full by an exporter with default flags.**
//!
//! Two things in valid exposition text break that rule:
//!
//! - **A sample timestamp** (`name 1 1764259200000`, as `/federate` writes them). An exporter
//!   with default flags (`--timestamps=reject`, as node_exporter's textfile collector does)
//!   refuses the whole file, the job's outcome metrics included.
//! - **A series twice** (same name and label set) in one input. Classic text does not forbid
//!   it, but an exporter serves one of the two (and counts a `duplicate_series` conflict), and
//!   Prometheus keeps only one sample per series per scrape.
//!
//! [`find`] lists them, in input order; [`locate`] finds the line and column of one in the
//! input text, for `stdin:LINE:COL` messages; [`make_servable`] removes them (timestamps
//! stripped, later duplicates dropped: Prometheus keeps the first sample of a series in a
//! scrape). What each tool does with them:
//!
//! | tool | on a timestamp or a duplicate |
//! |---|---|
//! | `Handoff` (this crate) | [`make_servable`], and one report to `on_error` |
//! | `promdrop write` | refuses the input: exit 1, `stdin:LINE:COL: ...`, nothing written |
//! | `promdrop run` | [`make_servable`] on each scrape, one warning: the outcome is never lost |
//! | `promdrop check` | `FILE:LINE:COL: ...` and exit 1: a default exporter would not serve it in full |
//!
//! Nothing here does I/O.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use promdrop_textformat::{
    Format, HashedMap, MetricFamily, Sample, describe_series, parse, series_hash,
};

/// Something in an exposition that an exporter with default flags would not serve as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unservable {
    /// A sample carries a client-side timestamp: a default exporter refuses the whole file.
    Timestamp {
        /// The series, as `name{label="value",...}`.
        series: String,
        /// Which sample line of the input it is (0-based, counting sample lines only).
        index: usize,
    },
    /// A series appears a second time: a default exporter serves only one of the two.
    DuplicateSeries {
        /// The series, as `name{label="value",...}`.
        series: String,
        /// Which sample line of the input it is (0-based, counting sample lines only): the
        /// second occurrence.
        index: usize,
    },
}

impl Unservable {
    /// The series concerned.
    pub fn series(&self) -> &str {
        match self {
            Unservable::Timestamp { series, .. } | Unservable::DuplicateSeries { series, .. } => {
                series
            }
        }
    }

    /// Which sample of the input (0-based, in input order) it is.
    pub fn index(&self) -> usize {
        match self {
            Unservable::Timestamp { index, .. } | Unservable::DuplicateSeries { index, .. } => {
                *index
            }
        }
    }
}

impl fmt::Display for Unservable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unservable::Timestamp { series, .. } => write!(
                f,
                "sample {series} carries a timestamp: an exporter with default flags \
                 (--timestamps=reject, as node_exporter) refuses the whole file"
            ),
            Unservable::DuplicateSeries { series, .. } => write!(
                f,
                "series {series} appears more than once: an exporter serves only one of them"
            ),
        }
    }
}

/// Every timestamp and every repeated series in `families`, in input order (families in
/// order, samples in order within each).
pub fn find(families: &[MetricFamily<'_>]) -> Vec<Unservable> {
    let mut found = Vec::new();
    let mut seen = SeriesSet::default();
    let mut index = 0;
    for family in families {
        for sample in &family.samples {
            if sample.timestamp.is_some() {
                found.push(Unservable::Timestamp {
                    series: describe_series(sample),
                    index,
                });
            }
            if !seen.insert(sample) {
                found.push(Unservable::DuplicateSeries {
                    series: describe_series(sample),
                    index,
                });
            }
            index += 1;
        }
    }
    found
}

/// Strips every sample timestamp and drops every repeated series but its first sample, so
/// that a default exporter serves `families` in full. Returns what it changed, as [`find`]
/// would have listed it.
pub fn make_servable(families: &mut [MetricFamily<'_>]) -> Vec<Unservable> {
    let found = find(families);
    if found.is_empty() {
        return found;
    }
    // Owned copies of the kept series: the samples are changed in place while they are kept.
    let mut seen: HashMap<u64, Vec<OwnedSeries>> = HashMap::new();
    for family in families.iter_mut() {
        family.samples.retain_mut(|sample| {
            sample.timestamp = None;
            let same = seen.entry(series_hash(sample)).or_default();
            if same
                .iter()
                .any(|(name, labels)| is_series(sample, name, labels))
            {
                return false;
            }
            same.push((
                sample.name.to_string(),
                sample
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
            ));
            true
        });
    }
    found
}

/// A series' name and labels, owned.
type OwnedSeries = (String, Vec<(String, String)>);

/// The series seen so far, by [`series_hash`]: one hash lookup a sample, and a comparison of
/// names and labels only when hashes match (so a collision never merges two series). It
/// replaced a key string built and sorted for every sample, which made `promdrop check` 60%
/// slower on 100k series.
#[derive(Default)]
struct SeriesSet<'s, 'a> {
    first: HashedMap<&'s Sample<'a>>,
    more: HashedMap<Vec<&'s Sample<'a>>>,
}

impl<'s, 'a> SeriesSet<'s, 'a> {
    /// Adds `sample`'s series; false if it was there (same name and labels, in any order).
    fn insert(&mut self, sample: &'s Sample<'a>) -> bool {
        let hash = series_hash(sample);
        match self.first.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(sample);
                true
            }
            Entry::Occupied(first) => {
                let more = self.more.entry(hash).or_default();
                if same_series(first.get(), sample) || more.iter().any(|s| same_series(s, sample)) {
                    return false;
                }
                more.push(sample);
                true
            }
        }
    }
}

/// Whether two samples are one series: the same name and the same labels, in any order.
fn same_series(a: &Sample<'_>, b: &Sample<'_>) -> bool {
    a.name == b.name
        && a.labels.len() == b.labels.len()
        && a.labels.iter().all(|l| {
            b.labels
                .iter()
                .any(|m| m.name == l.name && m.value == l.value)
        })
}

/// Whether `sample` is the series `name{labels}`, labels in any order.
fn is_series(sample: &Sample<'_>, name: &str, labels: &[(String, String)]) -> bool {
    *sample.name == *name
        && sample.labels.len() == labels.len()
        && sample.labels.iter().all(|l| {
            labels
                .iter()
                .any(|(n, v)| *l.name == **n && *l.value == **v)
        })
}

/// The 1-based line and column of `problem` in `input`, the text it was found in: the
/// line of its sample, and the column of the timestamp (or 1 for a repeated series).
/// `None` when the sample line cannot be found (an input that is not valid text).
pub fn locate(input: &[u8], problem: &Unservable) -> Option<(usize, usize)> {
    let mut index = 0;
    for (number, line) in input.split(|&b| b == b'\n').enumerate() {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        if index == problem.index() {
            let column = match problem {
                Unservable::DuplicateSeries { .. } => 1,
                Unservable::Timestamp { .. } => timestamp_column(line).unwrap_or(1),
            };
            return Some((number + 1, column));
        }
        index += 1;
    }
    None
}

/// The column of a sample line's timestamp: the start of its last field, once an
/// OpenMetrics exemplar (` # {...}`) is cut off. Checked by parsing the line alone.
fn timestamp_column(line: &[u8]) -> Option<usize> {
    let mut alone = line.to_vec();
    alone.push(b'\n');
    let parsed = parse(&alone, Format::Classic).ok()?;
    let sample = parsed.families.first()?.samples.first()?;
    sample.timestamp?;
    let end = line.trim_ascii_end().len();
    let start = line[..end]
        .iter()
        .rposition(|b| b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    Some(start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families(text: &str) -> Vec<MetricFamily<'_>> {
        parse(text.as_bytes(), Format::Classic).unwrap().families
    }

    #[test]
    fn timestamps_and_duplicates_are_found_located_and_removed() {
        let text = "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 2 1700000000000\n\n# TYPE b counter\nb_total{y=\"1\",z=\"2\"} 3\nb_total{z=\"2\",y=\"1\"} 4\n";
        let mut parsed = families(text);
        let found = find(&parsed);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(locate(text.as_bytes(), &found[0]), Some((3, 12)));
        assert_eq!(locate(text.as_bytes(), &found[1]), Some((7, 1)));
        assert!(found[0].to_string().contains("a{x=\"2\"}"), "{}", found[0]);
        assert!(matches!(found[1], Unservable::DuplicateSeries { .. }));

        assert_eq!(make_servable(&mut parsed), found);
        assert!(find(&parsed).is_empty());
        let values: Vec<f64> = parsed
            .iter()
            .flat_map(|f| f.samples.iter())
            .map(|s| s.value.number)
            .collect();
        // The first sample of the repeated series is kept, as Prometheus keeps it.
        assert_eq!(values, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn clean_input_has_nothing_to_report() {
        let parsed = families("a 1\nb{x=\"1\"} 2\nb{x=\"2\"} 2\n");
        assert!(find(&parsed).is_empty());
    }
}
