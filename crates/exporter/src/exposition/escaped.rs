//! The data part for a scraper that cannot take UTF-8 names: the same publication
//! ([`DataPart::assemble`]) run over the chunks of files with their names escaped.
//!
//! A file whose names are all legacy ones is the same under `underscores` and `values`, so its
//! snapshot (and prepared form) is shared with the default publication. Only a file with a
//! name that changes is parsed again, escaped ([`escape_names`]), rendered in its own format
//! and prepared as a file of its own. `dots` also doubles the `_` of legacy names (as
//! prometheus_client does), so under `dots` most files change. A chunk none of whose files
//! changes is the published chunk itself; a chunk's escaped form is kept with the chunk (and a
//! file's with its snapshot), so a change escapes the changed chunk's changed files only.
//! When no chunk changes, the variant is the published data part itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::prepared::Prepared;
use promdrop_textfile::snapshot::{Content, FileSnapshot};
use promdrop_textformat::{
    EscapingScheme, Format, Label, MetricFamily, escape_names, parse, render_classic,
    render_openmetrics,
};

use super::{DataPart, ExpositionOptions};
use crate::meta::MetaWriter;
use crate::names;

/// Whether escaping `families` under `scheme` changes a name.
fn changes(families: &[MetricFamily<'_>], scheme: EscapingScheme) -> bool {
    let metric = |name: &str| scheme.escape_metric_name(name) != name;
    let labels = |labels: &[Label<'_>]| {
        labels
            .iter()
            .any(|l| scheme.escape_label_name(&l.name) != l.name)
    };
    families.iter().any(|family| {
        metric(&family.name)
            || family.samples.iter().any(|s| {
                metric(&s.name)
                    || labels(&s.labels)
                    || s.exemplar.as_ref().is_some_and(|e| labels(&e.labels))
            })
    })
}

/// `file` as a scraper asking for `scheme` gets it, and whether it changed: the same snapshot
/// when no name changes, else a snapshot of its escaped text, prepared with `options`. `None`
/// for a file that is not served.
fn escaped_file(
    file: &Arc<FileSnapshot>,
    scheme: EscapingScheme,
    options: &ExpositionOptions,
) -> Option<(Arc<FileSnapshot>, bool)> {
    let content = file.content.as_ref().ok()?;
    // Known when the file was read: no need to look at its text (decompressed) again.
    if scheme != EscapingScheme::Dots && content.prepared.legacy_names_only() {
        return Some((Arc::clone(file), false));
    }
    let bytes = content.bytes();
    // It parsed when it was read; the same bytes parse the same way.
    let mut families = parse(&bytes, content.format).ok()?.families;
    if !changes(&families, scheme) {
        return Some((Arc::clone(file), false));
    }
    escape_names(&mut families, scheme);
    let dropped = drop_repeated_labels(&mut families);
    if dropped > 0 {
        tracing::warn!(
            file = %file.path.display(),
            escaping = %scheme,
            series = dropped,
            "label names that are the same once escaped: those series are left out of this \
             escaping's exposition"
        );
        if let Some(counter) = slot(scheme) {
            counter.fetch_add(dropped, Ordering::Relaxed);
        }
    }
    let text = Bytes::from(match content.format {
        Format::OpenMetrics => render_openmetrics(&families),
        _ => render_classic(&families),
    });
    // Prepared from the escaped families, not by parsing the escaped text: escaping can make
    // a label name that the parser refuses (`-x.y` is `__x_y` under underscores, as
    // prometheus_client writes it too). Only the full merge (a series in two files) parses
    // files again; it then leaves such a file out, with a warning.
    if parse(&text, content.format).is_err() {
        tracing::warn!(
            file = %file.path.display(),
            escaping = %scheme,
            "escaped names that the parser refuses (a label name starting with __): the file \
             is left out of this escaping's exposition when a series repeats across files"
        );
    }
    let series = families.iter().map(|f| f.samples.len()).sum();
    let origin = file.origin();
    let prepare = options.prepare_options();
    let prepared = Prepared::build(families, &text, &origin, &prepare);
    let escaped = FileSnapshot {
        path: file.path.clone(),
        identity: file.identity,
        content: Ok(Content::new(
            &text,
            Arc::new(prepared),
            content.format,
            series,
            content.header,
        )),
        header: file.header,
    };
    Some((Arc::new(escaped), true))
}

/// One file's escaped form, kept while the snapshot it was made from lives: the snapshot, the
/// options it was prepared with, and the escaped snapshot (`None`: the same as the original,
/// or not served).
struct Cached {
    original: Weak<FileSnapshot>,
    options: ExpositionOptions,
    escaped: Option<(Arc<FileSnapshot>, bool)>,
}

/// Escaped forms by snapshot (its address while it lives) and scheme, so that a change in one
/// file escapes that file only: the engine keeps an unchanged file's snapshot from one
/// publication to the next. Entries whose snapshot is gone are dropped when the map has
/// doubled since the last sweep.
struct Cache {
    map: HashMap<(usize, EscapingScheme), Cached>,
    sweep_at: usize,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// `file` escaped under `scheme` ([`escaped_file`]), from [`CACHE`] when the same snapshot was
/// escaped before with the same options.
pub(super) fn escape_file(
    file: &Arc<FileSnapshot>,
    scheme: EscapingScheme,
    options: &ExpositionOptions,
) -> Option<(Arc<FileSnapshot>, bool)> {
    let key = (Arc::as_ptr(file) as usize, scheme);
    let hit = |c: &Cached| {
        c.options == *options && c.original.upgrade().is_some_and(|o| Arc::ptr_eq(&o, file))
    };
    {
        let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.as_ref().and_then(|c| c.map.get(&key))
            && hit(c)
        {
            return c.escaped.clone();
        }
    }
    let escaped = escaped_file(file, scheme, options);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(|| Cache {
        map: HashMap::new(),
        sweep_at: 64,
    });
    cache.map.insert(
        key,
        Cached {
            original: Arc::downgrade(file),
            options: options.clone(),
            escaped: escaped.clone(),
        },
    );
    if cache.map.len() >= cache.sweep_at {
        cache.map.retain(|_, c| c.original.strong_count() > 0);
        cache.sweep_at = (cache.map.len() * 2).max(64);
    }
    escaped
}

/// Whether every chunk of `data` escapes as itself under `scheme` (the variant is `data`
/// itself). The chunks seen to do so are kept by index in the carry, so only a chunk not
/// seen there before is looked at: a comparison of addresses per chunk, where looking at
/// each chunk was a cache miss each (at 10,000 files, most of the first request after a
/// change).
fn escape_as_themselves(data: &DataPart, scheme: EscapingScheme, slot: usize) -> bool {
    let mut seen = data.carry.unescaped[slot]
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if seen.len() != data.chunks.len() {
        *seen = vec![None; data.chunks.len()];
    }
    for (chunk, seen) in data.chunks.iter().zip(seen.iter_mut()) {
        if seen
            .as_ref()
            .is_some_and(|s| std::ptr::eq(s.as_ptr(), Arc::as_ptr(chunk)))
        {
            continue;
        }
        if !Arc::ptr_eq(&chunk.escaped(scheme, &data.options), chunk) {
            *seen = None;
            return false;
        }
        // Weak: the address stays taken while it is kept, what is there does not (a scheme
        // no scraper asks for any more would otherwise keep the chunks it was last made of).
        *seen = Some(Arc::downgrade(chunk));
    }
    true
}

/// The index of `scheme`'s variant among the escaped ones (`underscores`, `dots`, `values`);
/// `None` for `allow-utf-8`, which is the published part itself.
pub(super) fn slot_index(scheme: EscapingScheme) -> Option<usize> {
    match scheme {
        EscapingScheme::AllowUtf8 => None,
        EscapingScheme::Underscores => Some(0),
        EscapingScheme::Dots => Some(1),
        EscapingScheme::Values => Some(2),
    }
}

/// The data part of `data`'s chunks with their names escaped under `scheme`, or `None` when
/// no name changes (the variant is `data` itself). Costs the chunks not escaped before, and the
/// assembly of the variant (its series index follows the escaped chunks from one variant to
/// the next, through the publications' [`super::Carry`]). Blocking.
pub(super) fn build(data: &DataPart, scheme: EscapingScheme) -> Option<DataPart> {
    let slot = slot_index(scheme)?;
    if escape_as_themselves(data, scheme, slot) {
        return None;
    }
    let chunks: Vec<Arc<super::DataChunk>> = data
        .chunks
        .iter()
        .map(|c| c.escaped(scheme, &data.options))
        .collect();
    if chunks
        .iter()
        .zip(&data.chunks)
        .all(|(a, b)| Arc::ptr_eq(a, b))
    {
        return None;
    }
    let repeats = data.carry.escaped[slot]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .follow(&chunks);
    Some(DataPart::assemble_variant(
        chunks,
        data.options.clone(),
        repeats,
        Arc::clone(&data.carry),
        slot + 1,
    ))
}

/// Conflicts found only in escaped variants (and series left out for a label name twice), by
/// scheme (`underscores`, `dots`, `values`).
static ESCAPING_CONFLICTS: [AtomicU64; 3] =
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Removes the samples with a label name twice (two names the same once escaped: `a.b` and
/// `a_b` under `underscores`), which no parser reads; returns how many.
fn drop_repeated_labels(families: &mut [MetricFamily<'_>]) -> u64 {
    let mut dropped = 0;
    for family in families {
        family.samples.retain(|sample| {
            let labels = &sample.labels;
            let repeated = labels
                .iter()
                .enumerate()
                .any(|(i, l)| labels[..i].iter().any(|m| m.name == l.name));
            dropped += u64::from(repeated);
            !repeated
        });
    }
    dropped
}

/// The counter of `scheme` (none for `allow-utf-8`).
fn slot(scheme: EscapingScheme) -> Option<&'static AtomicU64> {
    let index = EscapingScheme::ALL.iter().position(|s| *s == scheme)?;
    ESCAPING_CONFLICTS.get(index.checked_sub(1)?)
}

/// Counts the conflicts `variant` has beyond those of `data` (kind by kind): names that collide
/// once escaped.
pub(super) fn record_conflicts(data: &DataPart, variant: &DataPart, scheme: EscapingScheme) {
    let Some(counter) = slot(scheme) else {
        return;
    };
    let count = |conflicts: &[ConflictRecord]| {
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        for c in conflicts {
            *by_kind.entry(c.kind).or_default() += 1;
        }
        by_kind
    };
    let before = count(&data.conflicts);
    let new: u64 = count(&variant.conflicts)
        .into_iter()
        .map(|(kind, n)| n.saturating_sub(before.get(kind).copied().unwrap_or(0)))
        .sum();
    if new > 0 {
        tracing::warn!(
            escaping = %scheme,
            conflicts = new,
            "names collide once escaped for a scraper that cannot take UTF-8 names"
        );
        counter.fetch_add(new, Ordering::Relaxed);
    }
}

/// Writes `promdrop_escaping_conflicts_total` (a scrape-time hook of [`super::Shared`]).
pub fn write_metrics(w: &mut MetaWriter) {
    w.own(&names::PROMDROP_ESCAPING_CONFLICTS_TOTAL);
    for (scheme, counter) in EscapingScheme::ALL[1..].iter().zip(&ESCAPING_CONFLICTS) {
        w.sample(
            &[("escaping", scheme.as_str())],
            counter.load(Ordering::Relaxed) as f64,
        );
    }
}
