//! Files' series of the exporter's own families, served in the exporter's own family blocks.
//!
//! A job wrapped by `promdrop run` serves its own `process_*` families (node_exporter, the
//! descheduler, any Go or Python client), and the file it leaves holds them with its
//! `job_name`. The exporter serves families of those names itself, and an exposition must hold
//! one HELP/TYPE block per family (promtool and Prometheus refuse a second one). So the
//! merge of the files' data leaves the families the exporter serves ([`names::served_families`])
//! out, and this module takes them instead: each file's family is judged by [`names::claim`]
//! (another type: dropped, a `reserved` conflict) and its series by [`names::fits`] (a series
//! with the label names of the exporter's own would collide with them: dropped, a `reserved`
//! conflict); the rest are merged across files (a series in two files: the newer file's, a
//! `duplicate_series` conflict) and rendered as sample lines, which
//! [`crate::meta::MetaWriter::own`] writes right under the exporter's own HELP and TYPE.
//!
//! Only files that have such a family are parsed again here. The exporter builds this per
//! chunk of files, when the chunk changes ([`Adopted::build`]), and joins the chunks' parts for
//! a publication ([`Adopted::join`]): the same lines as one build over every file, as long as
//! no series is in two chunks (else the caller builds over every file, which is exact).

use std::collections::HashMap;
use std::sync::Arc;

use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::prepared::{Origin, PrepareOptions, Prepared, apply_options};
use promdrop_textfile::snapshot::FileSnapshot;
use promdrop_textformat::{
    Conflict, FamilyView, MetricFamily, Source, canonicalize_bounds, describe_series, merge, parse,
    render_classic_into, render_openmetrics_into, series_hash,
};

use crate::names::{self, Claim, OwnConfig};

/// The sample lines of one own family taken from files, in both formats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lines {
    /// Classic sample lines.
    pub classic: String,
    /// OpenMetrics sample lines.
    pub openmetrics: String,
    /// Where the classic lines of a split-off block (`<family>_created`, which the classic
    /// renderer writes after the family's other samples) start in `classic`.
    split: usize,
}

/// The files' series of the exporter's own families, by family (classic name).
#[derive(Debug, Default)]
pub struct Adopted {
    families: HashMap<&'static str, Lines>,
    /// The conflicts found: `reserved` (a family of another type, a series that would
    /// collide) and `duplicate_series`.
    pub conflicts: Vec<ConflictRecord>,
    /// How many of `conflicts` come first as `reserved` ones (the rest are duplicates).
    reserved: usize,
    /// The hashes of the series served ([`series_hash`]), to tell whether parts can be joined.
    hashes: Vec<u64>,
}

impl Adopted {
    /// The files' sample lines of the own family `name` (classic name), if any.
    pub fn lines(&self, name: &str) -> Option<&Lines> {
        self.families.get(name)
    }

    /// Whether no file gave a series to an own family.
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// Takes the own families' series out of `files` (served, in merge order, with their
    /// prepared forms made with `options`), for an exporter running with `config`.
    pub fn build(
        files: &[Arc<FileSnapshot>],
        prepared: &[Arc<Prepared>],
        options: &PrepareOptions,
        config: OwnConfig,
    ) -> Adopted {
        let mut adopted = Adopted::default();
        // Timestamps and the source label as for the file's other families; nothing reserved.
        let apply = PrepareOptions {
            reserved: &[],
            ..options.clone()
        };
        let origins: Vec<Origin> = files.iter().map(|f| f.origin()).collect();
        // The bytes of the files that have such families (decompressed, borrowed below).
        let texts: Vec<Option<(bytes::Bytes, promdrop_textformat::Format)>> = files
            .iter()
            .zip(prepared)
            .map(|(file, prepared)| {
                let content = file.content.as_ref().ok()?;
                (!prepared.reserved.is_empty()).then(|| (content.bytes(), content.format))
            })
            .collect();
        let mut taken: Vec<(usize, Vec<MetricFamily<'_>>)> = Vec::new();
        for (index, (file, text)) in files.iter().zip(&texts).enumerate() {
            let Some((bytes, format)) = text else {
                continue;
            };
            // It parsed when it was read; the same bytes parse the same way.
            let Ok(exposition) = parse(bytes, *format) else {
                continue;
            };
            let mut families = exposition.families;
            families.retain(|f| options.is_reserved(f));
            canonicalize_bounds(&mut families);
            apply_options(&mut families, &apply, &origins[index]);
            let path = file.path.display().to_string();
            let mut kept = Vec::new();
            for mut family in families {
                let own = match names::claim(&family.name, family.metric_type, config) {
                    Claim::Own(own) => own,
                    Claim::OtherType(own) => {
                        adopted.reserved(own.name, None, &path);
                        continue;
                    }
                    // Not reserved in this configuration: the merge kept it.
                    Claim::Foreign => continue,
                };
                let mut refused = None;
                family.samples.retain(|s| {
                    let fits = names::fits(own, s);
                    if !fits && refused.is_none() {
                        refused = Some(describe_series(s));
                    }
                    fits
                });
                if refused.is_some() {
                    adopted.reserved(own.name, refused, &path);
                }
                if family.samples.is_empty() {
                    continue;
                }
                // One name for a family however the file spelled it (an OpenMetrics counter
                // has no `_total`), and the exporter's HELP.
                family.name = own.name.into();
                family.help = None;
                family.unit = None;
                kept.push(family);
            }
            if !kept.is_empty() {
                taken.push((index, kept));
            }
        }
        adopted.reserved = adopted.conflicts.len();
        if taken.is_empty() {
            return adopted;
        }
        let sources: Vec<Source<'_>> = taken
            .iter()
            .map(|(index, families)| {
                Source::new(families).with_precedence(files[*index].merge_precedence())
            })
            .collect();
        let merged = merge(&sources);
        let path_of = |source: usize| files[taken[source].0].path.display().to_string();
        for conflict in &merged.conflicts {
            // Types are the exporter's (checked above) and HELP is the exporter's: only a
            // series in two files is a conflict here.
            if let Conflict::DuplicateSeries {
                family,
                series,
                kept_source,
                dropped_source,
            } = conflict
            {
                adopted.conflicts.push(ConflictRecord {
                    kind: conflict.kind(),
                    family: family.clone(),
                    series: Some(series.clone()),
                    kept_file: Some(path_of(*kept_source)),
                    kept_family: None,
                    name: None,
                    other_file: path_of(*dropped_source),
                });
            }
        }
        for family in &merged.families {
            let Some(own) = names::OWN_METRICS.iter().find(|m| m.name == family.name) else {
                continue;
            };
            adopted.hashes.extend(family.samples().map(series_hash));
            let one = std::slice::from_ref(family);
            let mut classic = String::new();
            render_classic_into(one, &mut classic);
            let mut openmetrics = String::new();
            render_openmetrics_into(one, &mut openmetrics);
            let (classic, split) = classic_sample_lines(&classic, own.name);
            adopted.families.insert(
                own.name,
                Lines {
                    classic,
                    openmetrics: sample_lines(&openmetrics),
                    split,
                },
            );
        }
        adopted
    }

    /// The parts built for consecutive chunks of the served files ([`Adopted::build`] over
    /// each), in serving order, joined into what one build over all their files gives; `None`
    /// when a series is in two parts (a duplicate across chunks, or a hash collision), which
    /// only a build over all the files resolves. Costs the parts' lines, no parsing.
    pub fn join(parts: &[&Adopted]) -> Option<Adopted> {
        let parts: Vec<&Adopted> = parts
            .iter()
            .copied()
            .filter(|p| !p.families.is_empty() || !p.conflicts.is_empty())
            .collect();
        let mut seen =
            std::collections::HashSet::with_capacity(parts.iter().map(|p| p.hashes.len()).sum());
        for part in &parts {
            for h in &part.hashes {
                if !seen.insert(*h) {
                    return None;
                }
            }
        }
        let mut joined = Adopted::default();
        // The reserved conflicts of every file first, then the duplicates, as one build finds
        // them (a duplicate is then within one part).
        for part in &parts {
            joined
                .conflicts
                .extend(part.conflicts[..part.reserved].iter().cloned());
        }
        joined.reserved = joined.conflicts.len();
        for part in &parts {
            joined
                .conflicts
                .extend(part.conflicts[part.reserved..].iter().cloned());
        }
        // Per family: the classic main lines of every part, then their split-off lines.
        let mut split: HashMap<&'static str, String> = HashMap::new();
        for part in &parts {
            joined.hashes.extend_from_slice(&part.hashes);
            for (name, lines) in &part.families {
                let j = joined.families.entry(name).or_default();
                j.classic.push_str(&lines.classic[..lines.split]);
                j.openmetrics.push_str(&lines.openmetrics);
                split
                    .entry(name)
                    .or_default()
                    .push_str(&lines.classic[lines.split..]);
            }
        }
        for (name, lines) in joined.families.iter_mut() {
            lines.split = lines.classic.len();
            if let Some(rest) = split.get(name) {
                lines.classic.push_str(rest);
            }
        }
        Some(joined)
    }

    fn reserved(&mut self, family: &str, series: Option<String>, file: &str) {
        self.conflicts.push(ConflictRecord {
            kind: "reserved",
            family: family.to_string(),
            series,
            kept_file: None,
            kept_family: None,
            name: None,
            other_file: file.to_string(),
        });
    }
}

/// The sample lines of rendered text (no `#` lines).
fn sample_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !l.starts_with('#'))
        .collect()
}

/// The sample lines of one family rendered in the classic format (no `#` lines), and where
/// the lines of its split-off `<name>_created` block start among them.
fn classic_sample_lines(text: &str, name: &str) -> (String, usize) {
    let created = format!("# TYPE {name}_created ");
    let mut out = String::with_capacity(text.len());
    let mut split = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with(&created) {
            split.get_or_insert(out.len());
        } else if !line.starts_with('#') {
            out.push_str(line);
        }
    }
    let split = split.unwrap_or(out.len());
    (out, split)
}
