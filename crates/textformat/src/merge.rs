//! Merging the families of several sources (files) into one exposition.
//!
//! The result groups each family's samples under one HELP/TYPE block, whatever the order the
//! sources had them in, and reports every disagreement between sources as a [`Conflict`] value:
//! the caller decides what to log, count or show. The rules are the ones a scrape target needs
//! to stay valid and lose as little as possible:
//!
//! - TYPE: the first source (in the order given) to declare a family fixes its type; a later
//!   source's family of another type is left out whole ([`Conflict::TypeMismatch`]).
//! - Names: a family whose names, as either format writes them, clash with a family of
//!   another name from an earlier source (the OpenMetrics counter `bar` and a classic
//!   `# TYPE bar_total counter`, the info `foo` and a gauge `foo_info`: see
//!   [`family_names`](crate::family_names)) is left out whole as well
//!   ([`Conflict::NameClash`], a type conflict too). The first family keeps the names.
//! - Buckets: a histogram's bucket bounds (`le`) and a summary's quantiles must be the same in
//!   every source that has any ([`family_bounds`](crate::family_bounds)) among the sources of
//!   one [scope](Source::scope) (sources whose series carry a label of their own, as a
//!   namespace, never mix in one series, so they may differ); the first source
//!   with some fixes them, and a later source's family with others is left out whole
//!   ([`Conflict::BoundsMismatch`]) rather than mixed into one family.
//! - HELP: the first HELP text wins; a different one later is reported
//!   ([`Conflict::HelpMismatch`]) but its samples are kept. A source without HELP is no conflict.
//! - Series: a series (name, label set and timestamp) is served once. When two sources have it,
//!   the one with the higher [`Source::precedence`] wins, the later one on a tie (give file
//!   modification times to serve the newer file); within one source the first is kept.
//!   Either way a [`Conflict::DuplicateSeries`] is reported.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::clash::{NameTable, family_bounds, family_names};
use crate::hash::{HashedMap, series_hash};
use crate::render::FamilyView;
use crate::{MetricFamily, MetricType, Sample};

/// One input to [`merge`]: a source's families and how much its samples count when a series is
/// present in several sources.
#[derive(Debug, Clone, Copy)]
pub struct Source<'m> {
    /// The families, as parsed.
    pub families: &'m [MetricFamily<'m>],
    /// Higher wins a duplicate series (for instance the file's modification time).
    pub precedence: i128,
    /// The sources whose series can never meet (each carries a label of its own, as a
    /// namespace label does) have different scopes: bucket bounds and quantiles are compared
    /// only between sources of one scope ([`Conflict::BoundsMismatch`]). Empty by default.
    pub scope: &'m str,
}

impl<'m> Source<'m> {
    /// A source with precedence 0.
    pub fn new(families: &'m [MetricFamily<'m>]) -> Self {
        Source {
            families,
            precedence: 0,
            scope: "",
        }
    }

    /// Sets the scope (builder style): see [`Source::scope`].
    pub fn with_scope(mut self, scope: &'m str) -> Self {
        self.scope = scope;
        self
    }

    /// Sets the precedence (builder style).
    pub fn with_precedence(mut self, precedence: i128) -> Self {
        self.precedence = precedence;
        self
    }
}

/// A disagreement between sources found while merging. Sources are numbered by their position
/// in the slice given to [`merge`].
#[derive(Debug, Clone, PartialEq)]
pub enum Conflict {
    /// `source` declared `family` with another type than `kept_source` did, so `source`'s
    /// samples of that family were left out.
    TypeMismatch {
        /// The family name.
        family: String,
        /// The source whose family was left out.
        source: usize,
        /// Its type.
        source_type: MetricType,
        /// The source that fixed the type.
        kept_source: usize,
        /// The type that was kept.
        kept_type: MetricType,
    },
    /// `source`'s `family` holds a name that `kept_family` of `kept_source` holds in either
    /// format ([`family_names`](crate::family_names)), so `source`'s family was left out. A
    /// type conflict ([`Conflict::kind`] `type`): the two cannot be served side by side.
    NameClash {
        /// The family left out.
        family: String,
        /// The source whose family was left out.
        source: usize,
        /// The family that holds the name.
        kept_family: String,
        /// The source of that family.
        kept_source: usize,
        /// A name both hold.
        name: String,
    },
    /// `source` has the histogram or summary `family` with other bucket bounds (`le`) or
    /// quantiles than `kept_source` ([`family_bounds`](crate::family_bounds)), so `source`'s
    /// family was left out.
    BoundsMismatch {
        /// The family name.
        family: String,
        /// The source whose family was left out.
        source: usize,
        /// The source whose bounds are served.
        kept_source: usize,
    },
    /// `source` has another HELP text for `family` than `kept_source`; its samples were kept.
    HelpMismatch {
        /// The family name.
        family: String,
        /// The source with the other text.
        source: usize,
        /// The source whose text is served.
        kept_source: usize,
    },
    /// The same series came from `dropped_source` and `kept_source` (which may be the same
    /// source); only the sample from `kept_source` is served.
    DuplicateSeries {
        /// The family name.
        family: String,
        /// The series, as `name{label="value",...}`.
        series: String,
        /// The source whose sample is served.
        kept_source: usize,
        /// The source whose sample was left out.
        dropped_source: usize,
    },
}

impl Conflict {
    /// A short name for the kind of conflict, suitable as a metric label value:
    /// `type` (a [`Conflict::NameClash`] too), `buckets`, `help` or `duplicate_series`.
    pub fn kind(&self) -> &'static str {
        match self {
            Conflict::TypeMismatch { .. } | Conflict::NameClash { .. } => "type",
            Conflict::BoundsMismatch { .. } => "buckets",
            Conflict::HelpMismatch { .. } => "help",
            Conflict::DuplicateSeries { .. } => "duplicate_series",
        }
    }
}

/// A family in a [`MergedView`]: metadata from the source that first had it, samples from all.
#[derive(Debug, Clone)]
pub struct MergedFamily<'m> {
    /// The family name.
    pub name: &'m str,
    /// The first HELP text any source gave.
    pub help: Option<&'m str>,
    /// The type the first source declared.
    pub metric_type: MetricType,
    /// The first unit any source gave.
    pub unit: Option<&'m str>,
    /// The samples, source by source in the order given.
    pub samples: Vec<&'m Sample<'m>>,
    /// The source that fixed the type and, with it, the family's position.
    pub first_source: usize,
}

impl FamilyView for MergedFamily<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn help(&self) -> Option<&str> {
        self.help
    }
    fn metric_type(&self) -> MetricType {
        self.metric_type
    }
    fn unit(&self) -> Option<&str> {
        self.unit
    }
    fn samples(&self) -> impl Iterator<Item = &Sample<'_>> {
        self.samples.iter().copied()
    }
}

/// The result of [`merge`]: families ready to render, and the conflicts found.
#[derive(Debug, Clone, Default)]
pub struct MergedView<'m> {
    /// Families in order of first appearance.
    pub families: Vec<MergedFamily<'m>>,
    /// Every conflict, in the order found.
    pub conflicts: Vec<Conflict>,
}

fn same_series(a: &Sample<'_>, b: &Sample<'_>) -> bool {
    a.name == b.name
        && a.timestamp.map(|t| t.as_millis()) == b.timestamp.map(|t| t.as_millis())
        && a.labels.len() == b.labels.len()
        && a.labels.iter().all(|l| b.labels.contains(l))
}

/// A series as `name{label="value",...}`, for messages.
pub fn describe_series(sample: &Sample<'_>) -> String {
    let mut out = sample.name.to_string();
    if !sample.labels.is_empty() {
        out.push('{');
        for (i, label) in sample.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&label.name);
            out.push_str("=\"");
            crate::escape_label_value(&label.value, &mut out);
            out.push('"');
        }
        out.push('}');
    }
    out
}

/// Merges the families of `sources` into one view, by the rules at the top of this crate's
/// `merge.rs` (TYPE, names, buckets, HELP, duplicate series); each disagreement is a
/// [`Conflict`].
pub fn merge<'m>(sources: &[Source<'m>]) -> MergedView<'m> {
    let mut view = MergedView::default();
    let mut by_name: HashMap<&'m str, usize> = HashMap::new();
    // Per merged sample: the source it came from, for duplicate resolution.
    let mut origins: Vec<Vec<usize>> = Vec::new();
    // Series hash -> (family index, sample index) of the first sample kept with that hash;
    // further samples with the same hash (rare: a collision) in `collisions`.
    let mut series: HashedMap<(usize, usize)> = HashedMap::default();
    let mut collisions: HashedMap<Vec<(usize, usize)>> = HashedMap::default();
    // The names each merged family holds in either format, and per merged family the bucket
    // bounds or quantiles fixed for it (with the source that fixed them), for the name and
    // bucket rules.
    let mut names = NameTable::new();
    // (Per scope: see [`Source::scope`]; nearly always one.)
    let mut bounds: Vec<Vec<(&str, Vec<String>, usize)>> = Vec::new();

    for (source_index, source) in sources.iter().enumerate() {
        for family in source.families {
            let into = by_name.get(family.name.as_ref()).copied();
            if let Some(index) = into {
                let merged = &view.families[index];
                if merged.metric_type != family.metric_type {
                    view.conflicts.push(Conflict::TypeMismatch {
                        family: family.name.to_string(),
                        source: source_index,
                        source_type: family.metric_type,
                        kept_source: merged.first_source,
                        kept_type: merged.metric_type,
                    });
                    continue;
                }
            }
            let family_bounds = family_bounds(family);
            if let Some(index) = into
                && let Some((_, kept, kept_source)) = bounds[index]
                    .iter()
                    .find(|(scope, ..)| *scope == source.scope)
                && !family_bounds.is_empty()
                && *kept != family_bounds
            {
                view.conflicts.push(Conflict::BoundsMismatch {
                    family: family.name.to_string(),
                    source: source_index,
                    kept_source: *kept_source,
                });
                continue;
            }
            let held = family_names(family);
            let clash = names.clash(
                held.iter().map(|(name, how)| (name.as_str(), *how)),
                into,
                source_index,
            );
            if let Some((name, holder)) = clash {
                view.conflicts.push(Conflict::NameClash {
                    family: family.name.to_string(),
                    source: source_index,
                    kept_family: view.families[holder.family].name.to_string(),
                    kept_source: holder.source,
                    name: name.to_string(),
                });
                continue;
            }
            let family_index = match by_name.entry(family.name.as_ref()) {
                Entry::Vacant(slot) => {
                    slot.insert(view.families.len());
                    bounds.push(Vec::new());
                    view.families.push(MergedFamily {
                        name: family.name.as_ref(),
                        help: family.help.as_deref(),
                        metric_type: family.metric_type,
                        unit: family.unit.as_deref(),
                        samples: Vec::with_capacity(family.samples.len()),
                        first_source: source_index,
                    });
                    origins.push(Vec::with_capacity(family.samples.len()));
                    view.families.len() - 1
                }
                Entry::Occupied(slot) => {
                    let index = *slot.get();
                    let merged = &mut view.families[index];
                    match (merged.help, family.help.as_deref()) {
                        (None, Some(help)) => merged.help = Some(help),
                        (Some(kept), Some(other)) if kept != other => {
                            view.conflicts.push(Conflict::HelpMismatch {
                                family: family.name.to_string(),
                                source: source_index,
                                kept_source: merged.first_source,
                            });
                        }
                        _ => {}
                    }
                    if merged.unit.is_none() {
                        merged.unit = family.unit.as_deref();
                    }
                    index
                }
            };
            names.hold(
                held.into_iter().map(|(name, how)| (Cow::Owned(name), how)),
                family_index,
                source_index,
            );
            if !family_bounds.is_empty()
                && !bounds[family_index]
                    .iter()
                    .any(|(scope, ..)| *scope == source.scope)
            {
                bounds[family_index].push((source.scope, family_bounds, source_index));
            }
            for sample in &family.samples {
                let hash = series_hash(sample);
                let here = (family_index, view.families[family_index].samples.len());
                let existing = match series.entry(hash) {
                    Entry::Vacant(slot) => {
                        slot.insert(here);
                        None
                    }
                    Entry::Occupied(first) => {
                        let first = *first.get();
                        std::iter::once(first)
                            .chain(collisions.get(&hash).into_iter().flatten().copied())
                            .find(|&(f, s)| same_series(view.families[f].samples[s], sample))
                            .or_else(|| {
                                collisions.entry(hash).or_default().push(here);
                                None
                            })
                    }
                };
                match existing {
                    None => {
                        view.families[family_index].samples.push(sample);
                        origins[family_index].push(source_index);
                    }
                    Some((f, s)) => {
                        let kept_source = origins[f][s];
                        let replace = kept_source != source_index
                            && source.precedence >= sources[kept_source].precedence;
                        let (kept, dropped) = if replace {
                            view.families[f].samples[s] = sample;
                            origins[f][s] = source_index;
                            (source_index, kept_source)
                        } else {
                            (kept_source, source_index)
                        };
                        view.conflicts.push(Conflict::DuplicateSeries {
                            family: family.name.to_string(),
                            series: describe_series(sample),
                            kept_source: kept,
                            dropped_source: dropped,
                        });
                    }
                }
            }
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Exposition, Format, parse};

    /// Jobs sharing family names, told apart by labels that differ in a byte or two (as
    /// bench/churn.py writes them): no two series may hash alike, or every publication of
    /// such a directory takes the exporter's full merge.
    #[test]
    fn series_of_jobs_sharing_names_do_not_collide() {
        let mut text = String::new();
        for job in 0..2000 {
            for shard in 0..11 {
                text.push_str(&format!("m{{job=\"job_{job:05}\",shard=\"{shard}\"}} 1\n"));
            }
            text.push_str(&format!("g{{job=\"job_{job:05}\"}} 1\n"));
        }
        let parsed = parse(text.as_bytes(), Format::Classic).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for family in &parsed.families {
            for sample in &family.samples {
                n += 1;
                assert!(
                    seen.insert(series_hash(sample)),
                    "collision at {}",
                    describe_series(sample)
                );
            }
        }
        assert_eq!(n, 2000 * 12);
    }

    #[test]
    fn families_whose_names_clash_once_rendered_are_left_out_as_type_conflicts() {
        let om = parse(
            b"# TYPE bar counter\nbar_total 1\nbar_created 1\n# TYPE foo info\nfoo_info 1\n# EOF\n",
            Format::OpenMetrics,
        )
        .unwrap();
        let classic = parse(
            b"# TYPE bar_total counter\nbar_total{b=\"1\"} 2\n# TYPE foo_info gauge\nfoo_info{b=\"1\"} 1\n# TYPE ok gauge\nok 1\n",
            Format::Classic,
        )
        .unwrap();
        let merged = merge(&[Source::new(&om.families), Source::new(&classic.families)]);
        let names: Vec<&str> = merged.families.iter().map(|f| f.name).collect();
        assert_eq!(names, ["bar", "foo", "ok"]);
        assert_eq!(
            merged.conflicts,
            [
                Conflict::NameClash {
                    family: "bar_total".into(),
                    source: 1,
                    kept_family: "bar".into(),
                    kept_source: 0,
                    name: "bar_total".into(),
                },
                Conflict::NameClash {
                    family: "foo_info".into(),
                    source: 1,
                    kept_family: "foo".into(),
                    kept_source: 0,
                    name: "foo_info".into(),
                },
            ]
        );
        assert!(merged.conflicts.iter().all(|c| c.kind() == "type"));
        // The other way round, the classic families stay and the OpenMetrics ones go.
        let merged = merge(&[Source::new(&classic.families), Source::new(&om.families)]);
        let names: Vec<&str> = merged.families.iter().map(|f| f.name).collect();
        assert_eq!(names, ["bar_total", "foo_info", "ok"]);
        assert_eq!(merged.conflicts.len(), 2);
    }

    #[test]
    fn histograms_and_summaries_with_other_bounds_are_not_mixed() {
        let text = |bounds: &[&str], job: &str| {
            let mut t = String::from("# TYPE h histogram\n");
            for le in bounds {
                t.push_str(&format!("h_bucket{{job=\"{job}\",le=\"{le}\"}} 1\n"));
            }
            t.push_str(&format!("h_count{{job=\"{job}\"}} 1\n"));
            t
        };
        let a = text(&["1", "+Inf"], "a");
        let b = text(&["0.5", "+Inf"], "b");
        let c = text(&["1.0", "+Inf"], "c");
        let empty = "# TYPE h histogram\n".to_string();
        let parsed: Vec<Exposition<'_>> = [&empty, &a, &b, &c]
            .iter()
            .map(|t| parse(t.as_bytes(), Format::Classic).unwrap())
            .collect();
        let sources: Vec<Source<'_>> = parsed.iter().map(|e| Source::new(&e.families)).collect();
        let merged = merge(&sources);
        // The empty family fixes nothing; a's bounds are kept, c's are the same (1.0 is 1).
        let jobs: Vec<&str> = merged.families[0]
            .samples
            .iter()
            .filter_map(|s| s.label("job"))
            .collect();
        assert_eq!(jobs, ["a", "a", "a", "c", "c", "c"]);
        assert_eq!(
            merged.conflicts,
            [Conflict::BoundsMismatch {
                family: "h".into(),
                source: 2,
                kept_source: 1,
            }]
        );
        assert_eq!(merged.conflicts[0].kind(), "buckets");
        let s1 = parse(
            b"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_count 1\n",
            Format::Classic,
        )
        .unwrap();
        let s2 = parse(
            b"# TYPE s summary\ns{quantile=\"0.9\",x=\"2\"} 1\ns_count{x=\"2\"} 1\n",
            Format::Classic,
        )
        .unwrap();
        let merged = merge(&[Source::new(&s1.families), Source::new(&s2.families)]);
        assert_eq!(merged.families[0].samples.len(), 2);
        assert_eq!(merged.conflicts[0].kind(), "buckets");
        // Sources of other scopes (namespaces) may differ; within a scope they may not.
        let scoped = [
            Source::new(&parsed[1].families).with_scope("team-a"),
            Source::new(&parsed[2].families).with_scope("team-b"),
            Source::new(&parsed[3].families).with_scope("team-b"),
        ];
        let merged = merge(&scoped);
        assert_eq!(merged.families[0].samples.len(), 6);
        assert_eq!(
            merged.conflicts,
            [Conflict::BoundsMismatch {
                family: "h".into(),
                source: 2,
                kept_source: 1,
            }]
        );
    }

    #[test]
    fn a_series_is_the_same_whatever_its_label_order_and_collisions_are_resolved() {
        let a = parse(
            b"m{x=\"1\",y=\"2\"} 1\nm{x=\"2\",y=\"1\"} 2\n",
            Format::Classic,
        )
        .unwrap();
        let b = parse(b"m{y=\"2\",x=\"1\"} 3\nm 4\n", Format::Classic).unwrap();
        let merged = merge(&[Source::new(&a.families), Source::new(&b.families)]);
        let values: Vec<f64> = merged.families[0]
            .samples
            .iter()
            .map(|s| s.value.number)
            .collect();
        // The reordered series is a duplicate (served from the later source, on a tie).
        assert_eq!(values, [3.0, 2.0, 4.0]);
        assert_eq!(merged.conflicts.len(), 1);
        assert!(matches!(
            &merged.conflicts[0],
            Conflict::DuplicateSeries {
                kept_source: 1,
                dropped_source: 0,
                ..
            }
        ));
        // Label values swapped between names hash differently from the original pairs.
        assert_ne!(
            series_hash(&a.families[0].samples[0]),
            series_hash(&a.families[0].samples[1])
        );
    }
}
