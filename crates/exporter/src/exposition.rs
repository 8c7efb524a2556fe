//! From file snapshots to the bytes a scrape gets: merge, meta metrics, render, gzip.
//!
//! A [`Published`] value holds everything `/metrics` serves, prepared once per change:
//!
//! - the *data* part, the merged samples of every served file, rendered in the classic format
//!   when published and in OpenMetrics on the first request that prefers it. Each file was
//!   parsed and prepared when it changed ([`prepared`]); merging concatenates the files'
//!   prepared lines under one HELP/TYPE block per family, in time proportional to the output.
//!   A duplicate series (or an OpenMetrics `_created` fold across files) takes the full merge
//!   of promdrop-textformat instead ([`render_data`]), which re-parses the files;
//! - the *meta* part, the `promdrop_*` metrics about the files, rendered in both formats when
//!   published (it changes with staleness transitions while the data part may not);
//! - both compressed as gzip segments (see [`crate::gzip`]) on a blocking thread after
//!   publishing, so the plain body is served at once and the compressed one soon after.
//!
//! Only process metrics are rendered for each scrape: they are small and change all the time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use promdrop_textformat::{
    Conflict, Format, MetricFamily, Source, merge, parse, render_classic_into,
    render_openmetrics_into,
};

use crate::gzip::{self, Deflated};
use crate::meta::MetaWriter;
use crate::names;
use crate::status::StatusModel;
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::assembly::{self, ChunkPlan, Piece, SLOTS};
use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::prepared::{self, PrepareOptions, Prepared, SeriesIndex, apply_options};
use promdrop_textfile::snapshot::{self, FileSnapshot};
use promdrop_textfile::staleness::{FileState, FileView};

/// How files are turned into the served samples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpositionOptions {
    /// `--timestamps`: `Strip` removes them here (`Reject` refused the file when it was read).
    pub timestamps: Option<TimestampPolicy>,
    /// `--source-label`.
    pub source_label: Option<String>,
    /// `--compat.node-exporter`.
    pub compat_node_exporter: bool,
}

impl ExpositionOptions {
    /// What these options change in a file's prepared form; the exporter's own metric names
    /// ([`crate::names`]) are reserved.
    pub fn prepare_options(&self) -> PrepareOptions {
        PrepareOptions {
            strip_timestamps: self.timestamps == Some(TimestampPolicy::Strip),
            source_label: self.source_label.as_deref().map(Box::from),
            reserved: &crate::names::RESERVED_FAMILIES,
        }
    }
}

/// `name{label="value",...}` for a sample, for messages.
pub use promdrop_textformat::describe_series;

/// One file parsed for merging: its families (reserved ones removed, timestamps stripped and
/// the source label added as configured) and the names of the reserved families it had.
type Parsed<'a> = Option<(Vec<MetricFamily<'a>>, Vec<Box<str>>)>;

/// The file's families with the options applied by the same code as its prepared form
/// ([`apply_options`]).
fn prepare_file<'a>(
    file: &'a FileSnapshot,
    options: &'a PrepareOptions,
    name: &'a str,
) -> Parsed<'a> {
    let content = file.content.as_ref().ok()?;
    // It parsed when it was read; the same bytes parse the same way.
    let mut families = parse(&content.bytes, content.format).ok()?.families;
    // `le` and `quantile` as node_exporter serves them, as in the prepared form.
    promdrop_textformat::canonicalize_bounds(&mut families);
    let reserved = apply_options(&mut families, options, name);
    Some((families, reserved))
}

/// [`prepare_file`] for every file, on up to one thread per core, results in file order.
fn parse_all<'a>(
    files: &'a [Arc<FileSnapshot>],
    options: &'a PrepareOptions,
    names: &'a [String],
) -> Vec<Parsed<'a>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let total: usize = files
        .iter()
        .filter_map(|f| f.content.as_ref().ok())
        .map(|c| c.bytes.len())
        .sum();
    if threads < 2 || total < (256 << 10) {
        return files
            .iter()
            .zip(names)
            .map(|(f, n)| prepare_file(f, options, n))
            .collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .zip(names.chunks(chunk))
            .map(|(files, names)| {
                scope.spawn(move || {
                    files
                        .iter()
                        .zip(names)
                        .map(|(f, n)| prepare_file(f, options, n))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(files.chunks(chunk))
            .flat_map(|(h, files)| {
                // A panic in one chunk leaves its files out, keeping the others in place.
                h.join().unwrap_or_else(|_| vec![None; files.len()])
            })
            .collect()
    })
}

/// Merges the files (in the order given) and renders the result in `format`, appending to
/// `out`; returns the conflicts. OpenMetrics output has no `# EOF` here (the caller ends the
/// body). Files that fail or have expired must not be passed.
///
/// This is the full merge: every file is parsed again and merged by
/// `promdrop_textformat::merge`. Publishing uses the files' prepared text instead
/// ([`DataPart::build`]) and comes here only for what that cannot do (a duplicate series).
pub fn render_data(
    files: &[Arc<FileSnapshot>],
    options: &ExpositionOptions,
    format: Format,
    out: &mut String,
) -> Vec<ConflictRecord> {
    // The label values of --source-label, borrowed by the samples below.
    let names: Vec<String> = files.iter().map(|f| snapshot::file_name(&f.path)).collect();
    // Parse on every core: parsing is most of the cost, and files are independent.
    let prepare = options.prepare_options();
    let prepared = parse_all(files, &prepare, &names);
    let mut conflicts = Vec::new();
    let mut parsed: Vec<(usize, Vec<MetricFamily<'_>>)> = Vec::with_capacity(files.len());
    for (index, result) in prepared.into_iter().enumerate() {
        let Some((families, reserved)) = result else {
            continue;
        };
        for family in reserved {
            conflicts.push(ConflictRecord {
                kind: "reserved",
                family: family.into(),
                series: None,
                kept_file: None,
                other_file: snapshot::file_label(&files[index].path),
            });
        }
        parsed.push((index, families));
    }
    let sources: Vec<Source<'_>> = parsed
        .iter()
        .map(|(index, families)| {
            let precedence = (files[*index].reference_time() * 1e9) as i128;
            Source::new(families).with_precedence(precedence)
        })
        .collect();
    let merged = merge(&sources);
    let path_of = |source: usize| snapshot::file_label(&files[parsed[source].0].path);
    for conflict in &merged.conflicts {
        conflicts.push(match conflict {
            Conflict::TypeMismatch {
                family,
                source,
                kept_source,
                ..
            }
            | Conflict::HelpMismatch {
                family,
                source,
                kept_source,
            } => ConflictRecord {
                kind: conflict.kind(),
                family: family.clone(),
                series: None,
                kept_file: Some(path_of(*kept_source)),
                other_file: path_of(*source),
            },
            Conflict::DuplicateSeries {
                family,
                series,
                kept_source,
                dropped_source,
            } => ConflictRecord {
                kind: conflict.kind(),
                family: family.clone(),
                series: Some(series.clone()),
                kept_file: Some(path_of(*kept_source)),
                other_file: path_of(*dropped_source),
            },
        });
    }
    match format {
        Format::OpenMetrics => {
            render_openmetrics_into(&merged.families, out);
            // Drop the "# EOF\n" the renderer ends with: the body goes on.
            if out.ends_with("# EOF\n") {
                out.truncate(out.len() - "# EOF\n".len());
            }
        }
        _ => render_classic_into(&merged.families, out),
    }
    conflicts
}

/// One prepared piece of a body: its text (one or several slices, sharing the files' prepared
/// text), and its gzip segment once compressed.
#[derive(Debug)]
pub struct Segment {
    /// The text, in order.
    pub parts: Vec<Bytes>,
    deflated: OnceLock<Deflated>,
}

impl Segment {
    /// A segment of `text`, not yet compressed.
    pub fn new(text: String) -> Segment {
        Segment::from_bytes(Bytes::from(text))
    }

    /// A segment of text already in bytes (UTF-8), not yet compressed.
    pub fn from_bytes(text: Bytes) -> Segment {
        Segment::from_parts(vec![text])
    }

    /// A segment of the concatenation of `parts`, not yet compressed.
    pub fn from_parts(parts: Vec<Bytes>) -> Segment {
        Segment {
            parts,
            deflated: OnceLock::new(),
        }
    }

    /// The length of the text.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }

    /// The text as one buffer (a copy unless it is one part).
    pub fn plain(&self) -> Bytes {
        match &self.parts[..] {
            [one] => one.clone(),
            parts => Bytes::from(parts.concat()),
        }
    }

    /// Compresses the segment (once; later calls return at once). Blocking.
    pub fn compress(&self) -> &Deflated {
        self.deflated.get_or_init(|| {
            let parts: Vec<&[u8]> = self.parts.iter().map(|b| &b[..]).collect();
            gzip::deflate_parts(&parts, false)
        })
    }

    /// The compressed segment, if ready.
    pub fn deflated(&self) -> Option<&Deflated> {
        self.deflated.get()
    }
}

/// The text of `segments` as one string (lossy), for tests and tools.
pub fn segments_text(segments: &[Arc<Segment>]) -> String {
    let mut out = Vec::new();
    for s in segments {
        for p in &s.parts {
            out.extend_from_slice(p);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the served files are cut into chunks: after a file whose path hashes to a value with
/// these low bits zero, so a chunk holds 2^CHUNK_BITS files on average and adding or removing
/// a file moves no other boundary.
pub const CHUNK_BITS: u32 = 4;

/// Whether a chunk ends after the file at `path` (see [`CHUNK_BITS`]).
pub fn ends_chunk(path: &std::path::Path, bits: u32) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    path.hash(&mut h);
    h.finish() & ((1u64 << bits) - 1) == 0
}

/// Family headers already made into segments, kept across publications so that a header is
/// compressed once.
#[derive(Debug, Default)]
pub struct HeaderCache {
    map: std::sync::Mutex<std::collections::HashMap<String, Arc<Segment>>>,
}

impl HeaderCache {
    /// The segment of `text`.
    pub fn get(&self, text: String) -> Arc<Segment> {
        let Ok(mut map) = self.map.lock() else {
            return Arc::new(Segment::new(text));
        };
        if let Some(s) = map.get(&text) {
            return Arc::clone(s);
        }
        let segment = Arc::new(Segment::new(text.clone()));
        map.insert(text, Arc::clone(&segment));
        segment
    }

    /// Forgets every header when it holds more than `keep` (headers no longer served go).
    pub fn trim(&self, keep: usize) {
        if let Ok(mut map) = self.map.lock()
            && map.len() > keep
        {
            map.clear();
        }
    }
}

/// One chunk of served files, prepared for merging: its plan and the segments of its groups'
/// lines (compressed on first use and kept while the chunk is unchanged).
#[derive(Debug)]
pub struct DataChunk {
    files: Vec<Arc<FileSnapshot>>,
    plan: ChunkPlan,
    segments: Vec<[Option<Arc<Segment>>; SLOTS]>,
}

impl DataChunk {
    /// Prepares the chunk of `files` (served, in order) for `wanted`.
    pub fn build(files: Vec<Arc<FileSnapshot>>, wanted: &PrepareOptions) -> DataChunk {
        let (files, prepared): (Vec<Arc<FileSnapshot>>, Vec<Arc<Prepared>>) = files
            .into_iter()
            .filter_map(|f| {
                let p = prepared_for(&f, wanted)?;
                Some((f, p))
            })
            .unzip();
        let paths = files
            .iter()
            .map(|f| snapshot::file_label(&f.path))
            .collect();
        let plan = ChunkPlan::build(prepared, paths);
        let segments = plan
            .groups
            .iter()
            .map(|g| {
                std::array::from_fn(|slot| {
                    (!g.lines[slot].is_empty())
                        .then(|| Arc::new(Segment::from_parts(g.lines[slot].clone())))
                })
            })
            .collect();
        DataChunk {
            files,
            plan,
            segments,
        }
    }

    /// The files' prepared forms, in order.
    pub fn prepared(&self) -> &[Arc<Prepared>] {
        self.plan.files()
    }

    /// The chunk's plan.
    pub fn plan(&self) -> &ChunkPlan {
        &self.plan
    }

    /// The files, in order.
    pub fn files(&self) -> &[Arc<FileSnapshot>] {
        &self.files
    }
}

/// The segments of `pieces` (from [`assembly`]) over `chunks`.
fn resolve(
    pieces: Vec<Piece>,
    chunks: &[Arc<DataChunk>],
    headers: &HeaderCache,
) -> Vec<Arc<Segment>> {
    pieces
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Text(text) => Some(headers.get(text)),
            Piece::Lines { chunk, group, slot } => {
                chunks.get(chunk)?.segments.get(group)?.get(slot)?.clone()
            }
        })
        .collect()
}

/// The merged samples of the served files.
#[derive(Debug)]
pub struct DataPart {
    /// The classic rendering, in segments.
    pub classic: Vec<Arc<Segment>>,
    openmetrics: tokio::sync::OnceCell<Arc<Vec<Arc<Segment>>>>,
    chunks: Vec<Arc<DataChunk>>,
    /// Whether the chunks' prepared text gave the body (else the full merge, which a
    /// duplicate series needs).
    concatenable: bool,
    options: ExpositionOptions,
    headers: Arc<HeaderCache>,
    /// The conflicts found merging them.
    pub conflicts: Vec<ConflictRecord>,
}

/// `file`'s prepared form for `wanted`: the one made when it was read, or (when the options
/// differ, as in tools that read files before knowing them) a new one.
fn prepared_for(file: &FileSnapshot, wanted: &PrepareOptions) -> Option<Arc<Prepared>> {
    let content = file.content.as_ref().ok()?;
    if content.prepared.options == *wanted {
        return Some(Arc::clone(&content.prepared));
    }
    // It parsed when it was read; the same bytes parse the same way.
    let exposition = parse(&content.bytes, content.format).ok()?;
    Some(Arc::new(Prepared::build(
        exposition.families,
        &content.bytes,
        &snapshot::file_name(&file.path),
        wanted,
    )))
}

/// Cuts `files` into chunks as [`ends_chunk`] says.
pub fn cut<T>(items: Vec<T>, path: impl Fn(&T) -> &std::path::Path, bits: u32) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    for item in items {
        let end = ends_chunk(path(&item), bits);
        current.push(item);
        if end {
            chunks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

impl DataPart {
    /// Merges and renders `files` (classic now, OpenMetrics on demand). Blocking.
    pub fn build(files: Vec<Arc<FileSnapshot>>, options: ExpositionOptions) -> DataPart {
        DataPart::build_indexed(files, options, &mut SeriesIndex::default())
    }

    /// [`DataPart::build`] with an index of series kept from the previous build (made to
    /// count exactly `files`).
    pub fn build_indexed(
        files: Vec<Arc<FileSnapshot>>,
        options: ExpositionOptions,
        index: &mut SeriesIndex,
    ) -> DataPart {
        DataPart::build_cut(files, options, index, CHUNK_BITS)
    }

    /// [`DataPart::build_indexed`] with chunks of 2^`bits` files on average.
    pub fn build_cut(
        files: Vec<Arc<FileSnapshot>>,
        options: ExpositionOptions,
        index: &mut SeriesIndex,
        bits: u32,
    ) -> DataPart {
        let wanted = options.prepare_options();
        let chunks: Vec<Arc<DataChunk>> = cut(files, |f| f.path.as_path(), bits)
            .into_iter()
            .map(|c| Arc::new(DataChunk::build(c, &wanted)))
            .collect();
        let members: Vec<(&std::path::Path, &Arc<Prepared>)> = chunks
            .iter()
            .flat_map(|c| c.files.iter().zip(c.prepared()))
            .map(|(f, p)| (f.path.as_path(), p))
            .collect();
        index.update(&members);
        drop(members);
        let repeats = index.has_repeats();
        DataPart::assemble(chunks, options, repeats, Arc::new(HeaderCache::default()))
    }

    /// Merges prepared chunks (in serving order); `repeats` says whether a series is in two
    /// places ([`SeriesIndex::has_repeats`]), which takes the full merge. Blocking.
    pub fn assemble(
        chunks: Vec<Arc<DataChunk>>,
        options: ExpositionOptions,
        repeats: bool,
        headers: Arc<HeaderCache>,
    ) -> DataPart {
        let assembled = if repeats {
            None
        } else {
            let plans: Vec<&ChunkPlan> = chunks.iter().map(|c| &c.plan).collect();
            assembly::assemble(&plans)
        };
        let concatenable = assembled.is_some();
        let (classic, conflicts) = match assembled {
            Some(a) => (resolve(a.classic, &chunks, &headers), a.conflicts),
            None => {
                let files: Vec<Arc<FileSnapshot>> = chunks
                    .iter()
                    .flat_map(|c| c.files.iter().cloned())
                    .collect();
                let capacity: usize = files
                    .iter()
                    .filter_map(|f| f.content.as_ref().ok())
                    .map(|c| c.bytes.len())
                    .sum();
                let mut text = String::with_capacity(capacity + capacity / 8);
                let conflicts = render_data(&files, &options, Format::Classic, &mut text);
                (vec![Arc::new(Segment::new(text))], conflicts)
            }
        };
        DataPart {
            classic,
            openmetrics: tokio::sync::OnceCell::new(),
            chunks,
            concatenable,
            options,
            headers,
            conflicts,
        }
    }

    /// The chunks it was built from.
    pub fn chunks(&self) -> &[Arc<DataChunk>] {
        &self.chunks
    }

    /// The files it was built from.
    pub fn files(&self) -> Vec<Arc<FileSnapshot>> {
        self.chunks
            .iter()
            .flat_map(|c| c.files.iter().cloned())
            .collect()
    }

    /// Whether it was built from the files' prepared text (else by the full merge, which a
    /// duplicate series needs).
    pub fn is_concatenated(&self) -> bool {
        self.concatenable
    }

    /// The classic text as one string (a copy), for tests and tools.
    pub fn classic_text(&self) -> String {
        segments_text(&self.classic)
    }

    /// Renders the OpenMetrics segments (without `# EOF`). Blocking.
    pub fn render_openmetrics_segments(&self) -> Vec<Arc<Segment>> {
        if self.concatenable {
            let plans: Vec<&ChunkPlan> = self.chunks.iter().map(|c| &c.plan).collect();
            if let Some(pieces) = assembly::assemble_openmetrics(&plans) {
                return resolve(pieces, &self.chunks, &self.headers);
            }
            let prepared: Vec<Arc<Prepared>> = self
                .chunks
                .iter()
                .flat_map(|c| c.prepared().iter().cloned())
                .collect();
            let mut out = Vec::with_capacity(1024);
            if prepared::render_openmetrics(&prepared, &mut out) {
                return vec![Arc::new(Segment::from_bytes(Bytes::from(out)))];
            }
        }
        let mut text = String::with_capacity(1024);
        render_data(&self.files(), &self.options, Format::OpenMetrics, &mut text);
        vec![Arc::new(Segment::new(text))]
    }

    /// Renders the OpenMetrics text (without `# EOF`). Blocking.
    pub fn render_openmetrics(&self) -> Bytes {
        Bytes::from(segments_text(&self.render_openmetrics_segments()))
    }

    /// The OpenMetrics rendering, made on first use on a blocking thread and kept.
    pub async fn openmetrics(self: &Arc<Self>) -> Arc<Vec<Arc<Segment>>> {
        let this = Arc::clone(self);
        self.openmetrics
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || Arc::new(this.render_openmetrics_segments()))
                    .await
                    .unwrap_or_default()
            })
            .await
            .clone()
    }
}

/// What the engine shares with the HTTP layer.
#[derive(Debug)]
pub struct Shared {
    /// The current exposition.
    pub published: ArcSwap<Published>,
    /// Set once the first full scan is published.
    pub ready: AtomicBool,
    /// Metrics rendered at each scrape after the process metrics, by the parts that own
    /// them (the web configuration's reloads); set by [`crate::run`]'s caller wiring.
    pub scrape_metrics: Vec<fn(&mut MetaWriter)>,
}

impl Shared {
    /// Shared state before the first scan: an empty exposition, not ready.
    pub fn new(telemetry_path: &str) -> Shared {
        Shared {
            published: ArcSwap::from_pointee(Published::empty(StatusModel {
                telemetry_path: telemetry_path.to_string(),
                ..StatusModel::default()
            })),
            ready: AtomicBool::new(false),
            scrape_metrics: Vec::new(),
        }
    }

    /// Whether the first full scan has been published.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Whether `accept` prefers OpenMetrics to the classic text format.
///
/// Each media range gets its `q` (default 1); OpenMetrics is chosen when its best `q` is above
/// zero and above that of `text/plain` (or `text/*`, `*/*`), as Prometheus asks with
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
pub fn prefers_openmetrics(accept: &str) -> bool {
    let mut om: f32 = 0.0;
    let mut plain: f32 = 0.0;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q: f32 = 1.0;
        let mut version: Option<String> = None;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        match media.as_str() {
            "application/openmetrics-text"
                if version
                    .as_deref()
                    .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
            {
                om = om.max(q)
            }
            "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
            _ => {}
        }
    }
    om > 0.0 && om > plain
}

/// Whether `accept_encoding` allows gzip.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim() == "q")
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
    })
}

/// The format and compression a request asks for with its `Accept` and `Accept-Encoding`
/// headers, as [`Published::body`] takes them.
pub fn negotiate(headers: &hyper::HeaderMap) -> (Format, bool) {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let format = if prefers_openmetrics(header(hyper::header::ACCEPT)) {
        Format::OpenMetrics
    } else {
        Format::Classic
    };
    (format, accepts_gzip(header(hyper::header::ACCEPT_ENCODING)))
}

/// Counters that live as long as the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Files read and parsed successfully.
    pub reloads_success: u64,
    /// Files read that failed.
    pub reloads_failure: u64,
    /// Conflicts by kind, each counted when it first appears.
    pub conflicts: BTreeMap<&'static str, u64>,
    /// The watched directories as their `directory` label shows them, and whether each is
    /// missing or cannot be listed now (`promdrop_directory_error`); set by the engine.
    pub directories: Vec<(String, bool)>,
}

/// The conflict kinds, for `promdrop_conflicts_total`'s zero values.
pub const CONFLICT_KINDS: [&str; 4] = ["type", "help", "duplicate_series", "reserved"];

/// How many meta families have one sample per file ([`per_file_metrics`]).
const PER_FILE: usize = 8;

/// The meta families with one sample per file, in body order (the last only with
/// `--compat.node-exporter`).
fn per_file_metrics() -> [&'static names::OwnMetric; PER_FILE] {
    [
        &names::PROMDROP_FILE_MTIME_SECONDS,
        &names::PROMDROP_FILE_REFERENCE_TIME_SECONDS,
        &names::PROMDROP_FILE_STALE,
        &names::PROMDROP_FILE_EXPIRED,
        &names::PROMDROP_FILE_ERROR,
        &names::PROMDROP_FILE_SERIES,
        &names::PROMDROP_FILE_BYTES,
        &names::NODE_TEXTFILE_MTIME_SECONDS,
    ]
}

/// The value of per-file meta family `k` ([`per_file_metrics`]) for `f`, if it has one.
fn per_file_value(k: usize, f: &FileView) -> Option<f64> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    match k {
        0 => Some(f.snapshot.identity.mtime_seconds()),
        1 => Some(f.timing.reference),
        2 => Some(flag(f.state != FileState::Fresh)),
        3 => Some(flag(f.state == FileState::Expired)),
        4 => Some(flag(f.snapshot.content.is_err())),
        5 => Some(f.snapshot.series() as f64),
        6 => Some(f.snapshot.identity.size as f64),
        _ => f
            .snapshot
            .content
            .is_ok()
            .then(|| (f.snapshot.identity.mtime_ns / 1_000_000_000) as f64),
    }
}

/// The sample lines of per-file meta family `k` for `files` (the same in both formats).
fn per_file_lines(k: usize, files: &[FileView]) -> String {
    let mut w = MetaWriter::default();
    w.own(per_file_metrics()[k]);
    w.classic.clear();
    w.openmetrics.clear();
    for f in files {
        if let Some(v) = per_file_value(k, f) {
            w.sample(&[("file", &snapshot::file_label(&f.snapshot.path))], v);
        }
    }
    w.classic
}

/// The headers of the per-file meta families, classic and OpenMetrics.
fn per_file_headers() -> &'static [(Arc<Segment>, Arc<Segment>); PER_FILE] {
    static HEADERS: OnceLock<[(Arc<Segment>, Arc<Segment>); PER_FILE]> = OnceLock::new();
    HEADERS.get_or_init(|| {
        per_file_metrics().map(|m| {
            let mut w = MetaWriter::default();
            w.own(m);
            (
                Arc::new(Segment::new(w.classic)),
                Arc::new(Segment::new(w.openmetrics)),
            )
        })
    })
}

/// The meta families about all files together: the first after the per-file ones, the second
/// (compat) at the end.
fn render_meta_totals(
    files: &[FileView],
    counters: &Counters,
    compat_node: bool,
) -> [MetaWriter; 2] {
    let mut w = MetaWriter::default();
    if !counters.directories.is_empty() {
        w.own(&names::PROMDROP_DIRECTORY_ERROR);
        for (directory, error) in &counters.directories {
            w.sample(&[("directory", directory)], if *error { 1.0 } else { 0.0 });
        }
    }
    w.own(&names::PROMDROP_FILES);
    let mut states = [0u64; 4];
    for f in files {
        if f.snapshot.content.is_err() {
            states[3] += 1;
        } else {
            states[f.state as usize] += 1;
        }
    }
    for (state, n) in ["fresh", "stale", "expired", "error"].iter().zip(states) {
        w.sample(&[("state", state)], n as f64);
    }
    w.own(&names::PROMDROP_CONFLICTS_TOTAL);
    for kind in CONFLICT_KINDS {
        let n = counters.conflicts.get(kind).copied().unwrap_or(0);
        w.sample(&[("kind", kind)], n as f64);
    }
    w.own(&names::PROMDROP_RELOADS_TOTAL);
    w.sample(&[("result", "success")], counters.reloads_success as f64);
    w.sample(&[("result", "failure")], counters.reloads_failure as f64);
    w.own(&names::PROMDROP_BUILD_INFO);
    w.sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            (
                "revision",
                option_env!("PROMDROP_REVISION").unwrap_or("unknown"),
            ),
            (
                "rustversion",
                option_env!("PROMDROP_RUSTC_VERSION").unwrap_or("unknown"),
            ),
        ],
        1.0,
    );
    let mut end = MetaWriter::default();
    if compat_node {
        end.own(&names::NODE_TEXTFILE_SCRAPE_ERROR);
        // As node_exporter: 1 when a file or a directory cannot be read.
        let error = files.iter().any(|f| f.snapshot.content.is_err())
            || counters.directories.iter().any(|(_, e)| *e);
        end.sample(&[], if error { 1.0 } else { 0.0 });
    }
    [w, end]
}

/// Renders the meta metrics about `files` (every tracked file, in order).
pub fn render_meta(files: &[FileView], counters: &Counters, compat_node: bool) -> MetaWriter {
    let part = MetaPart::build(files, counters, compat_node);
    let mut w = MetaWriter::default();
    w.classic = segments_text(&part.classic);
    w.openmetrics = segments_text(&part.openmetrics);
    w
}

/// The per-file meta lines of one chunk of files.
#[derive(Debug)]
pub struct MetaChunk {
    lines: [Arc<Segment>; PER_FILE],
}

impl MetaChunk {
    /// The lines of `files` (one chunk, every tracked file, in order).
    pub fn build(files: &[FileView], compat_node: bool) -> MetaChunk {
        MetaChunk {
            lines: std::array::from_fn(|k| {
                let text = if k < PER_FILE - 1 || compat_node {
                    per_file_lines(k, files)
                } else {
                    String::new()
                };
                Arc::new(Segment::new(text))
            }),
        }
    }
}

/// The exporter's own metrics, rendered in both formats, in segments.
#[derive(Debug)]
pub struct MetaPart {
    /// Classic.
    pub classic: Vec<Arc<Segment>>,
    /// OpenMetrics.
    pub openmetrics: Vec<Arc<Segment>>,
}

impl MetaPart {
    /// Prepares the meta part (one chunk).
    pub fn build(files: &[FileView], counters: &Counters, compat_node: bool) -> MetaPart {
        let chunk = Arc::new(MetaChunk::build(files, compat_node));
        MetaPart::from_chunks(&[chunk], files, counters, compat_node)
    }

    /// Prepares the meta part from the per-file lines of `chunks` (in order) and the totals
    /// of `files` (every tracked file).
    pub fn from_chunks(
        chunks: &[Arc<MetaChunk>],
        files: &[FileView],
        counters: &Counters,
        compat_node: bool,
    ) -> MetaPart {
        let headers = per_file_headers();
        let [totals, end] = render_meta_totals(files, counters, compat_node);
        let mut classic = Vec::with_capacity(chunks.len() * 7 + 16);
        let mut openmetrics = Vec::with_capacity(chunks.len() * 7 + 16);
        let family = |k: usize, classic: &mut Vec<Arc<Segment>>, om: &mut Vec<Arc<Segment>>| {
            classic.push(Arc::clone(&headers[k].0));
            om.push(Arc::clone(&headers[k].1));
            for c in chunks {
                if !c.lines[k].is_empty() {
                    classic.push(Arc::clone(&c.lines[k]));
                    om.push(Arc::clone(&c.lines[k]));
                }
            }
        };
        for k in 0..PER_FILE - 1 {
            family(k, &mut classic, &mut openmetrics);
        }
        classic.push(Arc::new(Segment::new(totals.classic)));
        openmetrics.push(Arc::new(Segment::new(totals.openmetrics)));
        if compat_node {
            family(PER_FILE - 1, &mut classic, &mut openmetrics);
            classic.push(Arc::new(Segment::new(end.classic)));
            openmetrics.push(Arc::new(Segment::new(end.openmetrics)));
        }
        MetaPart {
            classic,
            openmetrics,
        }
    }
}

/// Everything the HTTP layer serves, prepared; swapped whole when something changes.
#[derive(Debug)]
pub struct Published {
    /// The files' merged samples.
    pub data: Arc<DataPart>,
    /// The exporter's metrics about them.
    pub meta: MetaPart,
    /// What the status page and `/api/v1/files` show, but the files ([`Published::status`]
    /// adds them on first request).
    status: Arc<StatusModel>,
    /// Every tracked file, for the status.
    views: Vec<FileView>,
    status_full: OnceLock<Arc<StatusModel>>,
    /// The gzip stream of data and meta, by format (classic, OpenMetrics), joined on first
    /// request.
    gzipped: [tokio::sync::OnceCell<Arc<gzip::Joined>>; 2],
}

/// A response body: its content type, whether it is gzip-encoded, and its chunks.
#[derive(Debug)]
pub struct Body {
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// Whether the chunks are gzip-compressed.
    pub gzip: bool,
    /// The body, in order.
    pub chunks: Vec<Bytes>,
}

impl Body {
    /// The total length.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Published {
    /// A publication of these parts; `status` without its files, which are `views`.
    pub fn new(
        data: Arc<DataPart>,
        meta: MetaPart,
        status: Arc<StatusModel>,
        views: Vec<FileView>,
    ) -> Published {
        Published {
            data,
            meta,
            status,
            views,
            status_full: OnceLock::new(),
            gzipped: Default::default(),
        }
    }

    /// What the status page and `/api/v1/files` show (the files' rows made on first request).
    pub fn status(&self) -> Arc<StatusModel> {
        Arc::clone(self.status_full.get_or_init(|| {
            if self.views.is_empty() {
                return Arc::clone(&self.status);
            }
            let mut model = (*self.status).clone();
            model.files = self
                .views
                .iter()
                .map(crate::status::FileStatus::of)
                .collect();
            Arc::new(model)
        }))
    }

    /// An empty exposition, served before the first scan finishes.
    pub fn empty(status: StatusModel) -> Published {
        Published::new(
            Arc::new(DataPart::build(Vec::new(), ExpositionOptions::default())),
            MetaPart::build(&[], &Counters::default(), false),
            Arc::new(status),
            Vec::new(),
        )
    }

    /// The `/metrics` body in `format`, gzip-compressed when `gzip` is allowed. Process
    /// metrics are added now; everything else was prepared before, and is compressed on the
    /// first gzip request (only the segments that changed since the last publication).
    pub async fn body(
        &self,
        format: Format,
        gzip: bool,
        scrape_metrics: &[fn(&mut MetaWriter)],
    ) -> Body {
        let openmetrics = format == Format::OpenMetrics;
        let data = if openmetrics {
            self.data.openmetrics().await
        } else {
            Arc::new(self.data.classic.clone())
        };
        let meta = if openmetrics {
            &self.meta.openmetrics
        } else {
            &self.meta.classic
        };
        let mut tail = crate::process::render(openmetrics, scrape_metrics);
        if openmetrics {
            tail.push_str("# EOF\n");
        }
        let content_type = format.content_type();
        if gzip {
            let segments: Vec<Arc<Segment>> = data.iter().chain(meta.iter()).cloned().collect();
            let joined = self.gzipped[usize::from(openmetrics)]
                .get_or_init(|| async move {
                    let joined = tokio::task::spawn_blocking(move || {
                        let deflated: Vec<&Deflated> =
                            segments.iter().map(|s| s.compress()).collect();
                        Arc::new(gzip::Joined::new(&deflated))
                    })
                    .await;
                    crate::process::release_free_memory();
                    joined.unwrap_or_else(|_| Arc::new(gzip::Joined::new(&[])))
                })
                .await;
            return Body {
                content_type,
                gzip: true,
                chunks: joined.finish(tail.as_bytes()),
            };
        }
        let mut chunks: Vec<Bytes> = data
            .iter()
            .chain(meta.iter())
            .flat_map(|s| s.parts.iter().cloned())
            .collect();
        chunks.push(Bytes::from(tail));
        Body {
            content_type,
            gzip: false,
            chunks,
        }
    }
}

/// Renders `files` with their states as the classic body a scrape gets, without process
/// metrics: the data part then the meta part. For tests and tools; the server prepares the
/// same text in parts.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use promdrop_exporter::exposition::{render_classic_body, Counters, ExpositionOptions};
/// use promdrop_textfile::discovery::FileIdentity;
/// use promdrop_textfile::snapshot::{parse_bytes, ReadOptions};
/// use promdrop_textfile::staleness::{FileView, Policy, Timing};
/// use promdrop_textfile::TimestampPolicy;
///
/// let options = ReadOptions { max_bytes: 1 << 20, max_series: 1000, timestamps: TimestampPolicy::Reject };
/// let identity = FileIdentity { dev: 1, ino: 1, size: 0, mtime_ns: 0 };
/// let a = parse_bytes("/d/a.prom".into(), identity, Bytes::from("# TYPE up gauge\nup{job=\"a\"} 1\n"), &options);
/// let b = parse_bytes("/d/b.prom".into(), identity, Bytes::from("# TYPE up gauge\nup{job=\"b\"} 0\n"), &options);
/// let views: Vec<FileView> = [a, b]
///     .into_iter()
///     .map(|s| {
///         let timing = Timing::of(&s, &Policy::default());
///         FileView { snapshot: Arc::new(s), timing, state: timing.state(std::time::SystemTime::now()) }
///     })
///     .collect();
/// let body = render_classic_body(&views, &ExpositionOptions::default(), &mut Counters::default());
/// assert!(body.starts_with("# TYPE up gauge\nup{job=\"a\"} 1\nup{job=\"b\"} 0\n"));
/// assert!(body.contains("promdrop_file_series{file=\"/d/b.prom\"} 1\n"));
/// ```
pub fn render_classic_body(
    files: &[FileView],
    options: &ExpositionOptions,
    counters: &mut Counters,
) -> String {
    let served: Vec<Arc<FileSnapshot>> = files
        .iter()
        .filter(|f| f.served())
        .map(|f| Arc::clone(&f.snapshot))
        .collect();
    let data = DataPart::build(served, options.clone());
    let mut out = data.classic_text();
    let conflicts = data.conflicts;
    for c in &conflicts {
        *counters.conflicts.entry(c.kind).or_default() += 1;
    }
    for f in files {
        if f.snapshot.content.is_ok() {
            counters.reloads_success += 1;
        } else {
            counters.reloads_failure += 1;
        }
    }
    let meta = render_meta(files, counters, options.compat_node_exporter);
    out.push_str(&meta.classic);
    out
}

#[cfg(test)]
mod fast_path_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_scrapers_headers() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(prefers_openmetrics(prometheus));
        assert!(!prefers_openmetrics(
            "text/plain;version=0.0.4;q=1,*/*;q=0.1"
        ));
        assert!(!prefers_openmetrics(""));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics(
            "application/openmetrics-text;version=2.0.0"
        ));
        assert!(prefers_openmetrics("application/openmetrics-text"));
        assert!(!prefers_openmetrics(
            "application/openmetrics-text;q=0.5,text/plain"
        ));
        assert!(accepts_gzip("gzip, deflate"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip(""));
    }
}
