//! Families of different names that cannot be served side by side, and histograms or
//! summaries of one name that cannot be merged: what [`merge`](crate::merge()) and the
//! exporter's own merge of prepared files both check.
//!
//! A family is written under more names than its own. The OpenMetrics counter `bar` has the
//! samples `bar_total` and `bar_created`, and the classic renderer writes it as the counter
//! `bar_total` and the gauge `bar_created`; the info `foo` has the samples `foo_info`; a
//! histogram `h` owns `h_bucket`, `h_sum` and `h_count`, which Prometheus's text parser files
//! under `h` whatever TYPE line names them. So two families of different names can still write
//! the same TYPE line twice or the same sample name under two types (the counter `bar` and a
//! classic `# TYPE bar_total counter`; the info `foo` and a gauge `foo_info`), which promtool
//! and Prometheus refuse. [`family_names`] lists every name a family holds, in either format;
//! a [`NameTable`] tells which family holds each, so that a family whose names clash with
//! another source's is left out as a type conflict would be.
//!
//! One pair is not a clash: the classic `x_created` gauge that OpenMetrics folds into its
//! counter, histogram or summary `x` (see [`om_folding`](crate::om_folding)), as long as `x`
//! has no `_created` samples of its own ([`NameUse`]).
//!
//! Histograms (and gauge histograms) of one name merged from sources with different bucket
//! bounds, or summaries with different quantiles, would give a family whose series do not
//! share a layout: `histogram_quantile` over them is wrong. [`family_bounds`] gives the set a
//! family uses, for the merge to compare.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::number::{format_go_float, parse_number};
use crate::render::{FamilyView, om_family_name, om_type};
use crate::{Label, MetricType};

/// How a family holds a name ([`family_names`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameUse {
    /// Written by the family: its name or its OpenMetrics name (on TYPE lines), a sample name
    /// it has, or one its type reserves (`_total`, `_bucket`, `_sum`, `_count`, `_info`, ...).
    Taken,
    /// The `_created` name of a counter, histogram or summary that has no `_created` sample: a
    /// classic `x_created` gauge may take it (OpenMetrics folds that gauge into `x`).
    CreatedSlot,
    /// The name of a gauge or untyped family `x_created`, which OpenMetrics folds into the
    /// counter, histogram or summary `x` when that has no `_created` samples.
    CreatedGauge,
}

impl NameUse {
    /// Whether two families holding one name, one this way and one `other`'s way, clash.
    /// Only the fold does not: a `_created` gauge in the slot of a family without `_created`
    /// samples.
    pub fn clashes_with(self, other: NameUse) -> bool {
        !matches!(
            (self, other),
            (NameUse::CreatedSlot, NameUse::CreatedGauge)
                | (NameUse::CreatedGauge, NameUse::CreatedSlot)
        )
    }
}

/// The sample suffixes a family's type reserves on its OpenMetrics name, `_created` aside. A
/// gauge histogram is written as a classic histogram, whose `_sum` and `_count` Prometheus's
/// text parser files under it, so it reserves those too.
fn type_suffixes(metric_type: MetricType) -> &'static [&'static str] {
    match metric_type {
        MetricType::Counter => &["_total"],
        MetricType::Histogram => &["_bucket", "_sum", "_count"],
        MetricType::Summary => &["_sum", "_count"],
        MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount", "_sum", "_count"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[],
    }
}

/// Every name `family` holds in either format, each once: its name; its OpenMetrics name
/// ([`om_family_name`]: `x` for a classic counter `x_total`); the sample names its
/// OpenMetrics type reserves on that name (a counter `_total` and `_created`, an info `_info`,
/// a histogram `_bucket`, `_sum`, `_count` and `_created`, a summary `_sum`, `_count` and
/// `_created`, a gauge histogram `_bucket`, `_gsum`, `_gcount` and, as its classic rendering
/// is a histogram, `_sum` and `_count`); and the names of its samples (the names the classic
/// renderer puts on TYPE lines are among these). A classic counter whose samples lack
/// `_total` is written as `unknown` ([`om_type`]) and reserves no suffix.
///
/// ```
/// use promdrop_textformat::{family_names, parse, Format, NameUse};
///
/// let om = parse(b"# TYPE bar counter\nbar_total 1\n# EOF\n", Format::OpenMetrics)?;
/// let names: Vec<(String, NameUse)> = family_names(&om.families[0]);
/// assert!(names.contains(&("bar".to_string(), NameUse::Taken)));
/// assert!(names.contains(&("bar_total".to_string(), NameUse::Taken)));
/// // No `_created` sample: a classic `bar_created` gauge may be folded in.
/// assert!(names.contains(&("bar_created".to_string(), NameUse::CreatedSlot)));
/// // The classic `# TYPE bar_total counter` holds `bar_total` too: the two clash.
/// let classic = parse(b"# TYPE bar_total counter\nbar_total 2\n", Format::Classic)?;
/// assert!(family_names(&classic.families[0]).contains(&("bar_total".to_string(), NameUse::Taken)));
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
pub fn family_names<F: FamilyView>(family: &F) -> Vec<(String, NameUse)> {
    let name = family.name();
    let metric_type = family.metric_type();
    let mut out: Vec<(String, NameUse)> = Vec::with_capacity(8);
    let own_use = if matches!(metric_type, MetricType::Gauge | MetricType::Unknown)
        && name.ends_with("_created")
    {
        NameUse::CreatedGauge
    } else {
        NameUse::Taken
    };
    out.push((name.to_string(), own_use));
    let om_name = om_family_name(family);
    let om_metric_type = om_type(family);
    fn add(out: &mut Vec<(String, NameUse)>, held: &str, how: NameUse) {
        if !out.iter().any(|(n, _)| n == held) {
            out.push((held.to_string(), how));
        }
    }
    add(&mut out, om_name, NameUse::Taken);
    for suffix in type_suffixes(om_metric_type) {
        add(&mut out, &format!("{om_name}{suffix}"), NameUse::Taken);
    }
    if matches!(
        om_metric_type,
        MetricType::Counter | MetricType::Histogram | MetricType::Summary
    ) {
        let created = format!("{om_name}_created");
        let has_created = family.samples().any(|s| *s.name == *created);
        let how = if has_created {
            NameUse::Taken
        } else {
            NameUse::CreatedSlot
        };
        add(&mut out, &created, how);
    }
    // The sample names: all among the names above for what the parsers give, but a family
    // built by hand may hold others. Samples of one name usually follow each other, so most
    // cost one comparison with the previous one.
    let mut previous: Option<&str> = None;
    for sample in family.samples() {
        let sample_name: &str = &sample.name;
        if previous == Some(sample_name) {
            continue;
        }
        previous = Some(sample_name);
        add(&mut out, sample_name, own_use);
    }
    out
}

/// The bucket bounds (`le`) a histogram or gauge histogram uses, or the quantiles a summary
/// does, over all its series: each once, in Go's float form (`1.0` is `1`, as
/// [`canonicalize_bounds`](crate::canonicalize_bounds) writes it), sorted. Empty for other
/// types, and for a family with no such label.
///
/// ```
/// use promdrop_textformat::{family_bounds, parse, Format};
///
/// let text = b"# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n";
/// let families = parse(text, Format::Classic)?.families;
/// assert_eq!(family_bounds(&families[0]), ["+Inf", "1"]);
/// # Ok::<(), promdrop_textformat::Error>(())
/// ```
pub fn family_bounds<F: FamilyView>(family: &F) -> Vec<String> {
    let label = match family.metric_type() {
        MetricType::Histogram | MetricType::GaugeHistogram => "le",
        MetricType::Summary => "quantile",
        _ => return Vec::new(),
    };
    let mut values: Vec<&str> = family
        .samples()
        .flat_map(|s| s.labels.iter())
        .filter(|l: &&Label<'_>| l.name == label)
        .map(|l| l.value.as_ref())
        .collect();
    values.sort_unstable();
    values.dedup();
    let mut out: Vec<String> = values
        .into_iter()
        .map(|v| match parse_number(v) {
            Some(number) => {
                let mut canonical = String::new();
                format_go_float(number, &mut canonical);
                canonical
            }
            None => v.to_string(),
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A family that holds a name in a [`NameTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The family, numbered by the caller (a merged family's index).
    pub family: usize,
    /// The source (file) whose family first held the name for it.
    pub source: usize,
    /// How the family holds it.
    pub how: NameUse,
}

/// The families that hold one name: nearly always one, kept without allocating.
#[derive(Debug)]
struct Holders {
    first: Holder,
    more: Vec<Holder>,
}

impl Holders {
    fn iter(&self) -> impl Iterator<Item = &Holder> {
        std::iter::once(&self.first).chain(&self.more)
    }
}

/// A hasher for names: [`fx_hash`](crate::hash::fx_hash) over the bytes. The table is built
/// once per publication over every family of every file, so SipHash's cost showed; its
/// resistance to chosen collisions buys nothing here (a collision costs a comparison).
#[derive(Debug, Default, Clone, Copy)]
struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = crate::hash::fx_hash(bytes, self.0);
    }
}

/// The names held by the families merged so far ([`family_names`]), and by which. A merge
/// asks [`NameTable::clash`] before it takes a source's family, and [`NameTable::hold`]s the
/// family's names once it is taken.
#[derive(Debug, Default)]
pub struct NameTable<'n> {
    names: HashMap<Cow<'n, str>, Holders, std::hash::BuildHasherDefault<NameHasher>>,
}

impl<'n> NameTable<'n> {
    /// An empty table.
    pub fn new() -> Self {
        NameTable::default()
    }

    /// An empty table with room for `names` names.
    pub fn with_capacity(names: usize) -> Self {
        NameTable {
            names: HashMap::with_capacity_and_hasher(names, Default::default()),
        }
    }

    /// The first of `names` that a family of another source holds in a way that clashes
    /// ([`NameUse::clashes_with`]), with that family, if any. `into` is the family the caller
    /// merges this one into (the family of the same name, when there is one), which holds its
    /// names without clashing; a family of the same source is no clash either (the rule is
    /// about families from different sources).
    pub fn clash<'a>(
        &self,
        names: impl IntoIterator<Item = (&'a str, NameUse)>,
        into: Option<usize>,
        source: usize,
    ) -> Option<(&'a str, Holder)> {
        names.into_iter().find_map(|(name, how)| {
            let holder = self.names.get(name)?.iter().copied().find(|h| {
                Some(h.family) != into && h.source != source && h.how.clashes_with(how)
            })?;
            Some((name, holder))
        })
    }

    /// Records that `family`, from `source`, holds `names`. A name it already holds keeps its
    /// first source and becomes [`NameUse::Taken`] when it is taken now (a part with
    /// `_created` samples merged into a family without).
    pub fn hold(
        &mut self,
        names: impl IntoIterator<Item = (Cow<'n, str>, NameUse)>,
        family: usize,
        source: usize,
    ) {
        for (name, how) in names {
            let holder = Holder {
                family,
                source,
                how,
            };
            let holders = match self.names.entry(name) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Holders {
                        first: holder,
                        more: Vec::new(),
                    });
                    continue;
                }
                std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
            };
            let held = std::iter::once(&mut holders.first)
                .chain(holders.more.iter_mut())
                .find(|h| h.family == family);
            match held {
                Some(held) => {
                    if how == NameUse::Taken {
                        held.how = NameUse::Taken;
                    }
                }
                None => holders.more.push(holder),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, parse};

    fn names(text: &str, format: Format) -> Vec<(String, NameUse)> {
        let families = parse(text.as_bytes(), format).unwrap().families;
        family_names(&families[0])
    }

    fn borrowed(v: &[(String, NameUse)]) -> Vec<(&str, NameUse)> {
        v.iter().map(|(n, h)| (n.as_str(), *h)).collect()
    }

    fn clash(a: (&str, Format), b: (&str, Format)) -> bool {
        let a = names(a.0, a.1);
        let b = names(b.0, b.1);
        let mut table = NameTable::new();
        table.hold(a.into_iter().map(|(n, h)| (Cow::Owned(n), h)), 0, 0);
        table
            .clash(b.iter().map(|(n, h)| (n.as_str(), *h)), None, 1)
            .is_some()
    }

    const OM: Format = Format::OpenMetrics;
    const CLASSIC: Format = Format::Classic;

    #[test]
    fn names_that_render_alike_clash_and_the_created_fold_does_not() {
        let cases = [
            // The issue's cases.
            (
                (
                    "# TYPE bar counter\nbar_total 1\nbar_created 1\n# EOF\n",
                    OM,
                ),
                ("# TYPE bar_total counter\nbar_total 2\n", CLASSIC),
                true,
            ),
            (
                ("# TYPE foo info\nfoo_info{v=\"1\"} 1\n# EOF\n", OM),
                ("# TYPE foo_info gauge\nfoo_info 1\n", CLASSIC),
                true,
            ),
            // An OpenMetrics family name on a TYPE line twice.
            (
                ("# TYPE x_total counter\nx_total 1\n", CLASSIC),
                ("# TYPE x gauge\nx 1\n", CLASSIC),
                true,
            ),
            // Prometheus's text parser files h_sum under the histogram h.
            (
                ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\n", CLASSIC),
                ("# TYPE h_sum gauge\nh_sum 1\n", CLASSIC),
                true,
            ),
            (
                (
                    "# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\n# EOF\n",
                    OM,
                ),
                ("# TYPE g_count gauge\ng_count 1\n", CLASSIC),
                true,
            ),
            // The fold: a _created gauge beside a counter without _created samples.
            (
                ("# TYPE jobs_total counter\njobs_total 3\n", CLASSIC),
                ("# TYPE jobs_created gauge\njobs_created 1\n", CLASSIC),
                false,
            ),
            (
                ("# TYPE jobs counter\njobs_total 3\n# EOF\n", OM),
                ("# TYPE jobs_created gauge\njobs_created 1\n", CLASSIC),
                false,
            ),
            // ... but not beside one that has them.
            (
                (
                    "# TYPE jobs counter\njobs_total 3\njobs_created 1\n# EOF\n",
                    OM,
                ),
                ("# TYPE jobs_created gauge\njobs_created 1\n", CLASSIC),
                true,
            ),
            // A classic counter without _total is written as unknown: it reserves nothing.
            (
                ("# TYPE c counter\nc 1\n", CLASSIC),
                ("# TYPE c_total gauge\nc_total 1\n", CLASSIC),
                false,
            ),
            // Unrelated names.
            (
                ("# TYPE a gauge\na 1\n", CLASSIC),
                ("# TYPE a_b gauge\na_b 1\n", CLASSIC),
                false,
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(clash(a, b), want, "{a:?} / {b:?}");
            assert_eq!(clash(b, a), want, "{b:?} / {a:?}");
        }
    }

    #[test]
    fn the_same_family_and_the_same_source_are_no_clash() {
        let a = names("# TYPE bar counter\nbar_total 1\n# EOF\n", OM);
        let mut table = NameTable::new();
        table.hold(a.iter().map(|(n, h)| (Cow::Borrowed(n.as_str()), *h)), 0, 0);
        let b = names("# TYPE bar_total counter\nbar_total 2\n", CLASSIC);
        let b = || b.iter().map(|(n, h)| (n.as_str(), *h));
        assert_eq!(table.clash(b(), Some(0), 1), None);
        assert_eq!(table.clash(b(), None, 0), None);
        assert_eq!(
            table.clash(b(), None, 1),
            Some((
                "bar_total",
                Holder {
                    family: 0,
                    source: 0,
                    how: NameUse::Taken
                }
            ))
        );
    }

    #[test]
    fn a_slot_taken_later_clashes_with_the_gauge_folded_into_it() {
        let counter = names("# TYPE jobs counter\njobs_total 3\n# EOF\n", OM);
        let with_created = names(
            "# TYPE jobs counter\njobs_total 3\njobs_created 1\n# EOF\n",
            OM,
        );
        let gauge = names("# TYPE jobs_created gauge\njobs_created 1\n", CLASSIC);
        let mut table = NameTable::new();
        table.hold(
            counter.iter().map(|(n, h)| (Cow::Borrowed(n.as_str()), *h)),
            0,
            0,
        );
        assert_eq!(table.clash(borrowed(&gauge), None, 1), None);
        table.hold(
            gauge.iter().map(|(n, h)| (Cow::Borrowed(n.as_str()), *h)),
            1,
            1,
        );
        // Another file's part of `jobs`, with _created samples: the folded gauge is in the way.
        let holder = table.clash(borrowed(&with_created), Some(0), 2);
        assert_eq!(
            holder,
            Some((
                "jobs_created",
                Holder {
                    family: 1,
                    source: 1,
                    how: NameUse::CreatedGauge
                }
            ))
        );
    }

    #[test]
    fn bounds_are_compared_in_go_float_form() {
        let a = parse(
            b"# TYPE h histogram\nh_bucket{le=\"1.0\",x=\"a\"} 1\nh_bucket{le=\"+Inf\",x=\"a\"} 1\nh_bucket{le=\"1\",x=\"b\"} 1\n",
            CLASSIC,
        )
        .unwrap();
        assert_eq!(family_bounds(&a.families[0]), ["+Inf", "1"]);
        let s = parse(
            b"# TYPE s summary\ns{quantile=\"0.99\"} 1\ns{quantile=\"0.5\"} 1\ns_count 1\n",
            CLASSIC,
        )
        .unwrap();
        assert_eq!(family_bounds(&s.families[0]), ["0.5", "0.99"]);
        let g = parse(b"# TYPE g gauge\ng{le=\"1\"} 1\n", CLASSIC).unwrap();
        assert!(family_bounds(&g.families[0]).is_empty());
    }
}
