//! The data part for a scraper that cannot take UTF-8 names: the same publication
//! ([`DataPart::build`]) run over the files with their names escaped.
//!
//! A file whose names are all legacy ones is the same under `underscores` and `values`, so its
//! snapshot (and prepared form) is shared with the default publication. Only a file with a
//! name that changes is parsed again, escaped ([`escape_names`]), rendered in its own format
//! and prepared as a file of its own. `dots` also doubles the `_` of legacy names (as
//! prometheus_client does), so under `dots` most files change. When no file changes, the
//! variant is the published data part itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::snapshot::{FileSnapshot, ReadOptions, parse_bytes_prepared};
use promdrop_textformat::{
    EscapingScheme, Format, Label, MetricFamily, escape_names, parse, render_classic,
    render_openmetrics,
};

use super::DataPart;
use crate::meta::MetaWriter;
use crate::names;

/// Whether `bytes` may hold a quoted name: a `"` whose previous non-blank character is `{` or
/// `,`, or one on a `# HELP`, `# TYPE` or `# UNIT` line right after the keyword. A label
/// value holding such text gives a false positive (the file is then parsed to be sure); a
/// quoted name is never missed.
pub fn may_have_quoted_names(bytes: &[u8]) -> bool {
    let mut line_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' => line_start = i + 1,
            b'"' => {
                let before = bytes[line_start..i]
                    .iter()
                    .rev()
                    .find(|c| !matches!(c, b' ' | b'\t'));
                if matches!(before, Some(b'{' | b',')) {
                    return true;
                }
                let line = &bytes[line_start..i];
                if line.starts_with(b"#") {
                    let words: Vec<&[u8]> = line[1..]
                        .split(|c| *c == b' ' || *c == b'\t')
                        .filter(|w| !w.is_empty())
                        .collect();
                    if words.len() == 1 && matches!(words[0], b"HELP" | b"TYPE" | b"UNIT") {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

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

/// `file` as a scraper asking for `scheme` gets it: the same snapshot when no name changes,
/// else a snapshot of its escaped text, prepared as `data` prepares files. `None` for a file
/// that cannot be served (it is left out, as the default publication leaves it out).
fn escaped_file(
    file: &Arc<FileSnapshot>,
    scheme: EscapingScheme,
    data: &DataPart,
) -> Option<(Arc<FileSnapshot>, bool)> {
    let content = file.content.as_ref().ok()?;
    if scheme != EscapingScheme::Dots && !may_have_quoted_names(&content.bytes) {
        return Some((Arc::clone(file), false));
    }
    // It parsed when it was read; the same bytes parse the same way.
    let mut families = parse(&content.bytes, content.format).ok()?.families;
    if !changes(&families, scheme) {
        return Some((Arc::clone(file), false));
    }
    escape_names(&mut families, scheme);
    let text = match content.format {
        Format::OpenMetrics => render_openmetrics(&families),
        _ => render_classic(&families),
    };
    drop(families);
    // Limits and the timestamp policy were applied when the file was read.
    let read = ReadOptions {
        max_bytes: u64::MAX,
        max_series: usize::MAX,
        timestamps: TimestampPolicy::Keep,
    };
    let mut escaped = parse_bytes_prepared(
        file.path.clone(),
        file.identity,
        Bytes::from(text),
        &read,
        &data.options.prepare_options(),
    );
    escaped.header = file.header;
    if let Ok(c) = &mut escaped.content {
        c.header = content.header;
    }
    escaped.content.is_ok().then(|| (Arc::new(escaped), true))
}

/// The data part of `data`'s files with their names escaped under `scheme`, or `None` when no
/// name changes (the variant is `data` itself). Blocking.
pub(super) fn build(data: &DataPart, scheme: EscapingScheme) -> Option<DataPart> {
    if scheme == EscapingScheme::AllowUtf8 {
        return None;
    }
    let mut changed = false;
    let files: Vec<Arc<FileSnapshot>> = data
        .files()
        .iter()
        .filter_map(|f| {
            let (file, c) = escaped_file(f, scheme, data)?;
            changed |= c;
            Some(file)
        })
        .collect();
    changed.then(|| DataPart::build(files, data.options.clone()))
}

/// Conflicts found only in escaped variants, by scheme (`underscores`, `dots`, `values`).
static ESCAPING_CONFLICTS: [AtomicU64; 3] =
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Counts the conflicts `variant` has beyond those of `data` (kind by kind): names that collide
/// once escaped.
pub(super) fn record_conflicts(data: &DataPart, variant: &DataPart, scheme: EscapingScheme) {
    let Some(slot) = EscapingScheme::ALL.iter().position(|s| *s == scheme) else {
        return;
    };
    let Some(counter) = slot.checked_sub(1).and_then(|i| ESCAPING_CONFLICTS.get(i)) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_are_never_missed() {
        for text in [
            "{\"a.b\"} 1\n",
            "x{ \"a.b\"=\"1\"} 1\n",
            "x{a=\"1\",\"b.c\"=\"2\"} 1\n",
            "x{a=\"1\", \"b.c\"=\"2\"} 1\n",
            "# TYPE \"a.b\" gauge\n",
            "# HELP  \"a.b\" help\n",
            "# UNIT \"a.b\" seconds\n",
        ] {
            assert!(may_have_quoted_names(text.as_bytes()), "{text}");
        }
        for text in [
            "a{b=\"c\"} 1\n",
            "# HELP a say \"hi\"\na{b=\"\\\"\"} 1\n",
            "a_b 1\n",
        ] {
            assert!(!may_have_quoted_names(text.as_bytes()), "{text}");
        }
    }
}
