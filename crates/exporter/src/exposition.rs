//! From file snapshots to the bytes a scrape gets: merge, meta metrics, render, gzip.
//!
//! A [`Published`] value holds everything `/metrics` serves, prepared once per change:
//!
//! - the *data* part, the merged samples of every served file, merged in the classic format
//!   when published (the last publication's merge kept when the changed chunks merge as
//!   before: [`ChunkPlan::same_shape`]), its segments listed on the first request that needs
//!   them, and in OpenMetrics on the first request that prefers it. Each file was
//!   parsed and prepared when it changed ([`prepared`]); the files are cut into chunks
//!   ([`DataChunk`]), and merging lists the chunks' prepared lines under one HELP/TYPE block
//!   per family ([`assembly`]), so a change costs its chunk. A duplicate series (or an
//!   OpenMetrics `_created` fold across files) takes the full merge of promdrop-textformat
//!   instead ([`render_data`]), which re-parses the files. The files' series of the
//!   exporter's own families ([`Adopted`]) are taken apart, per chunk, for the exporter's own
//!   blocks; the variants with escaped names are made per chunk on first demand
//!   ([`DataPart::escaped`]);
//! - the *meta* part, the `promdrop_*` metrics about the files: its totals rendered in both
//!   formats when published (it changes with staleness transitions while the data part may
//!   not), its per-file lines by chunk ([`MetaChunk`]), listed on first request;
//! - both compressed as gzip segments (see [`crate::gzip`]) on the first gzip request of a
//!   publication: only the segments not compressed before (the changed chunks'), joined by
//!   blocks, and only the blocks holding a changed chunk's segment listed and joined again
//!   ([`gzip_body`]).
//!
//! Only process metrics are rendered for each scrape: they are small and change all the time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use bytes::Bytes;
use promdrop_textformat::{
    Conflict, EscapingScheme, Format, MetricFamily, Source, merge, parse, render_classic_into,
    render_openmetrics_into,
};

use crate::adopt::Adopted;
use crate::gzip::{self, Deflated};
use crate::meta::{MetaWriter, sample_name, write_sample};
use crate::names;
use crate::pending::PendingChanges;
use crate::status::StatusModel;
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::assembly::{self, ChunkPlan, GroupLines, Piece, SLOTS};
use promdrop_textfile::conflict::ConflictRecord;
use promdrop_textfile::packed::PackedText;
use promdrop_textfile::prepared::{
    self, Origin, PrepareOptions, Prepared, SeriesIndex, apply_options,
};
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
    /// `--textfile.tenancy-label`, when `--textfile.tenancy` is on.
    pub tenancy_label: Option<String>,
    /// `--textfile.job-name-from-path`.
    pub job_name_from_path: bool,
    /// `--web.config.file` is given (the exporter serves `promdrop_web_config_*`).
    pub web_config: bool,
}

impl ExpositionOptions {
    /// What these options change in a file's prepared form; the families the exporter serves
    /// itself with these options ([`crate::names::served_families`]) are left out of the merge,
    /// for [`Adopted`] to take.
    pub fn prepare_options(&self) -> PrepareOptions {
        PrepareOptions {
            strip_timestamps: self.timestamps == Some(TimestampPolicy::Strip),
            source_label: self.source_label.as_deref().map(Box::from),
            reserved: names::served_families(self.own_config()),
            tenancy_label: self.tenancy_label.as_deref().map(Box::from),
            job_name_from_path: self.job_name_from_path,
        }
    }

    /// Which of its own families the exporter serves with these options.
    pub fn own_config(&self) -> names::OwnConfig {
        names::OwnConfig {
            compat_node_exporter: self.compat_node_exporter,
            web_config: self.web_config,
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
    text: &'a Option<(Bytes, Format)>,
    options: &'a PrepareOptions,
    name: &'a Origin,
) -> Parsed<'a> {
    let (bytes, format) = text.as_ref()?;
    // It parsed when it was read; the same bytes parse the same way.
    let mut families = parse(bytes, *format).ok()?.families;
    // `le` and `quantile` as node_exporter serves them, as in the prepared form.
    promdrop_textformat::canonicalize_bounds(&mut families);
    let reserved = apply_options(&mut families, options, name);
    Some((families, reserved))
}

/// [`prepare_file`] for every file, on up to one thread per core, results in file order.
fn parse_all<'a>(
    files: &'a [Option<(Bytes, Format)>],
    options: &'a PrepareOptions,
    names: &'a [Origin],
) -> Vec<Parsed<'a>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let total: usize = files.iter().flatten().map(|(bytes, _)| bytes.len()).sum();
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
    // The label values of --source-label and tenancy, borrowed by the samples below.
    let names: Vec<Origin> = files.iter().map(|f| f.origin()).collect();
    // Parse on every core: parsing is most of the cost, and files are independent.
    let prepare = options.prepare_options();
    // The files' bytes, decompressed (the parsed families borrow them).
    let texts: Vec<Option<(Bytes, Format)>> = files
        .iter()
        .map(|f| f.content.as_ref().ok().map(|c| (c.bytes(), c.format)))
        .collect();
    let prepared = parse_all(&texts, &prepare, &names);
    let mut conflicts = Vec::new();
    let mut parsed: Vec<(usize, Vec<MetricFamily<'_>>)> = Vec::with_capacity(files.len());
    for (index, result) in prepared.into_iter().enumerate() {
        // The reserved families left out are judged by `Adopted::build`.
        let Some((families, _reserved)) = result else {
            continue;
        };
        parsed.push((index, families));
    }
    let sources: Vec<Source<'_>> = parsed
        .iter()
        .map(|(index, families)| {
            let source = Source::new(families).with_precedence(files[*index].merge_precedence());
            // With tenancy, bounds are compared within a namespace only (its label is on
            // every series: two namespaces' histograms never share a series).
            match prepare.tenancy_label {
                Some(_) => source.with_scope(&names[*index].tenant),
                None => source,
            }
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
            }
            | Conflict::BoundsMismatch {
                family,
                source,
                kept_source,
            } => ConflictRecord {
                kind: conflict.kind(),
                family: family.clone(),
                series: None,
                kept_file: Some(path_of(*kept_source)),
                kept_family: None,
                name: None,
                other_file: path_of(*source),
            },
            Conflict::NameClash {
                family,
                source,
                kept_family,
                kept_source,
                name,
            } => ConflictRecord {
                kind: conflict.kind(),
                family: family.clone(),
                series: None,
                kept_file: Some(path_of(*kept_source)),
                kept_family: Some(kept_family.clone()),
                name: Some(name.clone()),
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
                kept_family: None,
                name: None,
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

/// One prepared piece of a body: its text (bytes of its own, a chunk's group's lines in its
/// files' packed text, or packed text of its own), and its gzip segment once compressed.
#[derive(Debug)]
pub struct Segment {
    text: SegmentText,
    /// The chunk it is part of (a number no other chunk has), or 0 for a family header:
    /// consecutive segments of one chunk are compressed together (a run: see
    /// [`gzip_body`]).
    owner: u64,
    deflated: OnceLock<Deflated>,
}

/// A segment's text, in parts.
#[derive(Debug)]
enum SegmentText {
    /// Bytes of its own (or shared with what made them).
    Parts(Arc<[Bytes]>),
    /// A chunk's group's lines, in its files' prepared text (a run of lines a file).
    Lines(GroupLines),
    /// Text of its own, held compressed (a chunk's per-file meta lines): one part.
    Packed(PackedText),
}

impl Segment {
    /// A segment of `text`, not yet compressed.
    pub fn new(text: String) -> Segment {
        Segment::of_text(text, next_owner())
    }

    /// A segment of `text` in the chunk numbered `owner`.
    fn of_text(mut text: String, owner: u64) -> Segment {
        // Kept until its chunk changes: without what the text's growth over-reserved.
        text.shrink_to_fit();
        Segment::owned(vec![Bytes::from(text)], owner)
    }

    /// A segment of text already in bytes (UTF-8), not yet compressed.
    pub fn from_bytes(text: Bytes) -> Segment {
        Segment::from_parts(vec![text])
    }

    /// A segment of the concatenation of `parts`, not yet compressed, compressed on its own
    /// (a chunk of its own).
    pub fn from_parts(parts: Vec<Bytes>) -> Segment {
        Segment::owned(parts, next_owner())
    }

    /// A family header's segment: compressed with the chunk before it (see `runs`).
    pub fn header(text: String) -> Segment {
        Segment::of_text(text, 0)
    }

    /// A segment of `parts` that is part of the chunk numbered `owner` ([`next_owner`]).
    pub fn owned(parts: impl Into<Arc<[Bytes]>>, owner: u64) -> Segment {
        Segment::of(SegmentText::Parts(parts.into()), owner)
    }

    /// A segment of `text`, held compressed ([`PackedText`]: decompressed when it is sent
    /// or compressed for gzip), compressed on its own for gzip (a chunk of its own).
    pub fn packed(text: &[u8]) -> Segment {
        Segment::of(SegmentText::Packed(PackedText::pack(text)), next_owner())
    }

    /// A segment of a chunk's group's `lines`, the chunk numbered `owner`.
    fn lines(lines: GroupLines, owner: u64) -> Segment {
        Segment::of(SegmentText::Lines(lines), owner)
    }

    fn of(text: SegmentText, owner: u64) -> Segment {
        Segment {
            text,
            owner,
            deflated: OnceLock::new(),
        }
    }

    /// How many parts the text is in.
    pub fn part_count(&self) -> usize {
        match &self.text {
            SegmentText::Parts(parts) => parts.len(),
            SegmentText::Lines(lines) => lines.count(),
            SegmentText::Packed(_) => 1,
        }
    }

    /// Part `i` of the text (a file's lines are decompressed: a copy).
    pub fn part(&self, i: usize) -> Option<Bytes> {
        match &self.text {
            SegmentText::Parts(parts) => parts.get(i).cloned(),
            SegmentText::Lines(lines) => lines.get(i),
            SegmentText::Packed(text) => (i == 0).then(|| text.to_bytes().unwrap_or_default()),
        }
    }

    /// The parts of the text, in order (as [`Segment::part`] gives them).
    pub fn parts(&self) -> impl Iterator<Item = Bytes> + '_ {
        (0..self.part_count()).filter_map(|i| self.part(i))
    }

    /// The length of the text.
    pub fn len(&self) -> usize {
        match &self.text {
            SegmentText::Parts(parts) => parts.iter().map(Bytes::len).sum(),
            SegmentText::Lines(lines) => lines.byte_len(),
            SegmentText::Packed(text) => text.len(),
        }
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text as one buffer (a copy unless it is one part).
    pub fn plain(&self) -> Bytes {
        match &self.text {
            SegmentText::Parts(parts) if parts.len() == 1 => parts[0].clone(),
            SegmentText::Lines(lines) if lines.count() == 1 => lines.get(0).unwrap_or_default(),
            SegmentText::Packed(text) => text.to_bytes().unwrap_or_default(),
            _ => {
                let mut text = Vec::with_capacity(self.len());
                for part in self.parts() {
                    text.extend_from_slice(&part);
                }
                Bytes::from(text)
            }
        }
    }

    /// Compresses the segment (once; later calls return at once). Blocking.
    pub fn compress(&self) -> &Deflated {
        self.deflated.get_or_init(|| {
            let parts: Vec<Bytes> = self.parts().collect();
            let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            gzip::deflate_parts(&parts, false)
        })
    }
}

/// A number for a new chunk's segments ([`Segment::owned`]): never 0, never given twice.
pub fn next_owner() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The text of `segments` as one string (lossy), for tests and tools.
pub fn segments_text(segments: &[Arc<Segment>]) -> String {
    String::from_utf8_lossy(&segments_bytes(segments)).into_owned()
}

/// The bytes of `segments`, joined into one buffer of their length.
fn segments_bytes(segments: &[Arc<Segment>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(segments.iter().map(|s| s.len()).sum());
    for part in segments.iter().flat_map(|s| s.parts()) {
        out.extend_from_slice(&part);
    }
    out
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
    map: Mutex<std::collections::HashMap<String, Arc<Segment>>>,
}

impl HeaderCache {
    /// The segment of `text`.
    pub fn get(&self, text: &str) -> Arc<Segment> {
        let Ok(mut map) = self.map.lock() else {
            return Arc::new(Segment::header(text.to_owned()));
        };
        if let Some(s) = map.get(text) {
            return Arc::clone(s);
        }
        let segment = Arc::new(Segment::header(text.to_owned()));
        map.insert(text.to_owned(), Arc::clone(&segment));
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

/// What one publication's data part hands the next, so that the next costs what changed: the
/// family headers made into segments, the joined series of the exporter's own families (by
/// the chunks' parts they were joined from), and, per escaping scheme, the series index of the
/// escaped chunks last assembled. The engine keeps one for its lifetime.
#[derive(Debug, Default)]
pub struct Carry {
    /// Family headers, compressed once.
    pub headers: HeaderCache,
    /// Per variant (the published part, then `underscores`, `dots`, `values`): the chunks'
    /// non-empty adopted parts last joined, and the joined result.
    adopted: [Mutex<Option<JoinedAdopted>>; 4],
    /// Per escaping scheme (`underscores`, `dots`, `values`): the escaped chunks last
    /// assembled and the index counting their series.
    escaped: [Mutex<ChunkIndex>; 3],
    /// Per escaping scheme, by chunk index: the chunk last seen there when it escaped as
    /// itself (no name of its files changes), so that a publication looks at the chunks that
    /// changed, not at every chunk ([`escaped::build`]).
    unescaped: [Mutex<Vec<Option<std::sync::Weak<DataChunk>>>>; 3],
    /// Per variant, as `adopted`: the classic merge of the chunks last assembled.
    classic: [KeptSlot<Option<assembly::Assembly>>; 4],
    /// Per variant, as `adopted`: the OpenMetrics merge of the chunks last assembled.
    openmetrics: [KeptSlot<Option<Vec<Piece>>>; 4],
    /// How many merges were kept rather than made again (tests read it).
    pub merges_kept: std::sync::atomic::AtomicUsize,
    /// Per gzip body (by `Published`'s index: format, then variant), the blocks of the last
    /// one made ([`gzip_body::GzipBody`]).
    gzip_blocks: [gzip_body::KeptBlocks; 8],
}

/// A merge of chunks, kept with the chunks it was made from.
type Kept<T> = (Vec<Arc<DataChunk>>, Arc<T>);

/// Where a [`Kept`] merge waits for the next publication.
type KeptSlot<T> = Mutex<Option<Kept<T>>>;

/// The merge of `chunks` that `slot` keeps, when the chunks it was made from merge as these
/// do ([`ChunkPlan::same_shape`]: files rewritten with new values, in the same families);
/// else `merge()`, kept. A change then costs a pointer comparison per chunk and the changed
/// chunks' shapes, not the merge of every chunk's families.
fn merge_kept<T>(
    slot: Option<&KeptSlot<T>>,
    counter: &std::sync::atomic::AtomicUsize,
    chunks: &[Arc<DataChunk>],
    merge: impl FnOnce() -> T,
) -> Arc<T> {
    let Some(slot) = slot else {
        return Arc::new(merge());
    };
    let mut kept = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let reused = kept.as_ref().and_then(|(last, merged)| {
        (last.len() == chunks.len()
            && last
                .iter()
                .zip(chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b) || a.plan.same_shape(&b.plan)))
        .then(|| Arc::clone(merged))
    });
    if reused.is_some() {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let merged = reused.unwrap_or_else(|| Arc::new(merge()));
    *kept = Some((chunks.to_vec(), Arc::clone(&merged)));
    merged
}

/// The adopted parts of chunks and what they joined into.
type JoinedAdopted = (Vec<Arc<Adopted>>, Arc<Adopted>);

/// A series index that follows a list of chunks from one assembly to the next.
#[derive(Debug, Default)]
pub struct ChunkIndex {
    chunks: Vec<Arc<DataChunk>>,
    index: SeriesIndex,
}

impl ChunkIndex {
    /// Makes the index count the files of `chunks` (see [`follow_chunks`]); returns whether a
    /// series is in two places.
    pub fn follow(&mut self, chunks: &[Arc<DataChunk>]) -> bool {
        follow_chunks(&mut self.index, &self.chunks, chunks);
        self.chunks = chunks.to_vec();
        self.index.has_repeats()
    }
}

/// An index counting the series of every file of `chunks` (tests and debug checks compare
/// the index followed chunk by chunk with it).
pub fn series_index_of(chunks: &[Arc<DataChunk>]) -> SeriesIndex {
    let mut index = SeriesIndex::default();
    count_chunks(&mut index, chunks);
    index
}

/// Makes `index` count exactly the files of `chunks` ([`SeriesIndex::update`]).
fn count_chunks(index: &mut SeriesIndex, chunks: &[Arc<DataChunk>]) {
    let members: Vec<(&std::path::Path, &Arc<Prepared>)> = chunks
        .iter()
        .flat_map(|c| c.files.iter().zip(c.prepared()))
        .map(|(f, p)| (f.path.as_path(), p))
        .collect();
    index.update(&members);
}

/// Updates `index`, which counts the files of `previous`, to count those of `next`: only the
/// chunks that came or went are looked at (by pointer), and of those only the prepared forms
/// that differ are counted again (a rebuilt chunk keeps most of its files).
pub fn follow_chunks<'a>(
    index: &mut SeriesIndex,
    previous: &'a [Arc<DataChunk>],
    next: &'a [Arc<DataChunk>],
) {
    use foldhash::{HashMap, HashMapExt, HashSet};
    let ptr = |c: &Arc<DataChunk>| Arc::as_ptr(c) as usize;
    let before: HashSet<usize> = previous.iter().map(ptr).collect();
    let after: HashSet<usize> = next.iter().map(ptr).collect();
    // Each chunk's files with their prepared forms, by the prepared form's address.
    let forms = |chunks: &'a [Arc<DataChunk>], skip: &HashSet<usize>| {
        let kept: Vec<&Arc<DataChunk>> =
            chunks.iter().filter(|c| !skip.contains(&ptr(c))).collect();
        // Sized first: growing the table rehashes everything in it (a change's largest cost
        // here).
        let mut forms: HashMap<usize, (&'a Arc<FileSnapshot>, &'a Arc<Prepared>)> =
            HashMap::with_capacity(kept.iter().map(|c| c.files.len()).sum());
        for c in kept {
            for (f, p) in c.files.iter().zip(c.prepared()) {
                forms.insert(Arc::as_ptr(p) as usize, (f, p));
            }
        }
        forms
    };
    let gone = forms(previous, &after);
    let came = forms(next, &before);
    // The old forms that went, by path. A file rewritten with new values has the same
    // series: its old and new forms leave the index as it is, and are not counted out and
    // in again (100 random probes each way).
    let mut went: HashMap<&std::path::Path, &Arc<Prepared>> = gone
        .iter()
        .filter(|(k, _)| !came.contains_key(k))
        .map(|(_, (f, p))| (f.path.as_path(), *p))
        .collect();
    let mut added = Vec::new();
    for (k, (f, p)) in &came {
        if gone.contains_key(k) {
            continue;
        }
        match went.get(f.path.as_path()) {
            Some(old) if old.series_digest() == p.series_digest() => {
                went.remove(f.path.as_path());
            }
            _ => added.push(*p),
        }
    }
    for p in went.values() {
        index.remove(p);
    }
    for p in added {
        index.add(p);
    }
}

/// One chunk of served files, prepared for merging: its plan, the segments of its groups'
/// lines (compressed on first use and kept while the chunk is unchanged), its files' series
/// of the exporter's own families, and its variants with escaped names (made on demand).
#[derive(Debug)]
pub struct DataChunk {
    files: Vec<Arc<FileSnapshot>>,
    plan: ChunkPlan,
    segments: Vec<[Option<Arc<Segment>>; SLOTS]>,
    adopted: Arc<Adopted>,
    /// The variants of the chunk with escaped names (`underscores`, `dots`, `values`); `None`
    /// when it is the chunk itself.
    escaped: [OnceLock<Option<Arc<DataChunk>>>; 3],
}

impl DataChunk {
    /// Prepares the chunk of `files` (served, in order) for `options`.
    pub fn build(files: Vec<Arc<FileSnapshot>>, options: &ExpositionOptions) -> DataChunk {
        DataChunk::build_prepared(files, &options.prepare_options(), options.own_config())
    }

    /// [`DataChunk::build`] with the prepare options already made from the exposition
    /// options, which serve the exporter's own families as `config` says.
    pub fn build_prepared(
        files: Vec<Arc<FileSnapshot>>,
        wanted: &PrepareOptions,
        config: names::OwnConfig,
    ) -> DataChunk {
        let (files, prepared): (Vec<Arc<FileSnapshot>>, Vec<Arc<Prepared>>) = files
            .into_iter()
            .filter_map(|f| {
                let p = prepared_for(&f, wanted)?;
                Some((f, p))
            })
            .unzip();
        // Only files that had families of the exporter's own are parsed again here.
        let adopted = if prepared.iter().any(|p| !p.reserved.is_empty()) {
            Arc::new(Adopted::build(&files, &prepared, wanted, config))
        } else {
            Arc::default()
        };
        let paths = files
            .iter()
            .map(|f| snapshot::file_label(&f.path))
            .collect();
        let plan = ChunkPlan::build(prepared, paths);
        DataChunk {
            files,
            segments: segments_of(&plan),
            plan,
            adopted,
            escaped: Default::default(),
        }
    }

    /// This chunk with some of its files rewritten (`files`: the chunk's served files now, as
    /// many as before, in the same order), when each rewritten file kept its families'
    /// shapes ([`ChunkPlan::with_file_replaced`]) and no file of the chunk has families of
    /// the exporter's own: its plan shares this one's groups, and it merges as this one.
    /// `None` otherwise, or when no file was rewritten (the caller builds the chunk, or keeps
    /// it).
    pub fn patched(
        &self,
        files: &[Arc<FileSnapshot>],
        wanted: &PrepareOptions,
    ) -> Option<DataChunk> {
        if files.len() != self.files.len() || !self.adopted.is_empty() {
            return None;
        }
        let mut plan: Option<ChunkPlan> = None;
        for (i, (new, old)) in files.iter().zip(&self.files).enumerate() {
            if Arc::ptr_eq(new, old) {
                continue;
            }
            if new.path != old.path {
                return None;
            }
            let prepared = prepared_for(new, wanted)?;
            if !prepared.reserved.is_empty() {
                return None;
            }
            let base = plan.as_ref().unwrap_or(&self.plan);
            plan = Some(base.with_file_replaced(i, prepared)?);
        }
        let plan = plan?;
        Some(DataChunk {
            files: files.to_vec(),
            segments: segments_of(&plan),
            plan,
            adopted: Arc::default(),
            escaped: Default::default(),
        })
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

    /// The chunk as a scraper asking for `scheme` gets it: itself when no name of its files
    /// changes, else the chunk of its files escaped ([`escaped::escape_file`]), made once and
    /// kept with the chunk (so an unchanged chunk is escaped once). Blocking.
    fn escaped(
        self: &Arc<Self>,
        scheme: EscapingScheme,
        options: &ExpositionOptions,
    ) -> Arc<DataChunk> {
        let Some(slot) = escaped::slot_index(scheme) else {
            return Arc::clone(self);
        };
        let variant = self.escaped[slot].get_or_init(|| {
            let mut changed = false;
            let files: Vec<Arc<FileSnapshot>> = self
                .files
                .iter()
                .filter_map(|f| match escaped::escape_file(f, scheme, options) {
                    Some((file, c)) => {
                        changed |= c;
                        Some(file)
                    }
                    None => {
                        // Left out: the variant differs.
                        changed = true;
                        None
                    }
                })
                .collect();
            changed.then(|| Arc::new(DataChunk::build(files, options)))
        });
        match variant {
            Some(v) => Arc::clone(v),
            None => Arc::clone(self),
        }
    }
}

/// The segments of `plan`'s groups' lines, by group and slot: one chunk's (a number of its own
/// for the gzip runs, [`next_owner`]).
fn segments_of(plan: &ChunkPlan) -> Vec<[Option<Arc<Segment>>; SLOTS]> {
    let owner = next_owner();
    (0..plan.groups.len())
        .map(|g| {
            std::array::from_fn(|slot| {
                let lines = plan.lines(g, slot);
                (lines.count() > 0).then(|| Arc::new(Segment::lines(lines, owner)))
            })
        })
        .collect()
}

/// The segments of `pieces` (from [`assembly`]) over `chunks`.
fn resolve(
    pieces: &[Piece],
    chunks: &[Arc<DataChunk>],
    headers: &HeaderCache,
) -> Vec<Arc<Segment>> {
    let mut items = Vec::new();
    gzip_body::Item::pieces(pieces, chunks, headers, &mut items);
    items.iter().filter_map(gzip_body::Item::resolve).collect()
}

/// The merged samples of the served files.
#[derive(Debug)]
pub struct DataPart {
    /// The classic rendering, in segments ([`DataPart::classic`]).
    classic: OnceLock<Vec<Arc<Segment>>>,
    /// The chunks' classic merge, when they merged by groups: what `classic` lists.
    assembled: Arc<Option<assembly::Assembly>>,
    openmetrics: tokio::sync::OnceCell<Arc<Vec<Arc<Segment>>>>,
    /// The chunks' OpenMetrics merge (`None` inside when they do not merge by groups), made
    /// on first use: what `openmetrics` lists, and what a gzip body is made from.
    openmetrics_pieces: OnceLock<Arc<Option<Vec<Piece>>>>,
    chunks: Vec<Arc<DataChunk>>,
    /// Whether the chunks' prepared text gave the body (else the full merge, which a
    /// duplicate series needs).
    concatenable: bool,
    options: ExpositionOptions,
    carry: Arc<Carry>,
    /// The files' series of the exporter's own families, served in its own blocks.
    pub adopted: Arc<Adopted>,
    /// The conflicts found merging them (the adopted ones' included).
    pub conflicts: Vec<ConflictRecord>,
    /// The variants with escaped names (`underscores`, `dots`, `values`), each made on first
    /// demand ([`DataPart::escaped`]); `None` when it is this part itself.
    escaped: [tokio::sync::OnceCell<Option<Arc<DataPart>>>; 3],
    /// Which variant it is (0: the published part, then one per escaping scheme): where
    /// `carry` keeps its merges.
    variant: usize,
}

/// `file`'s prepared form for `wanted`: the one made when it was read, or (when the options
/// differ, as in tools that read files before knowing them) a new one.
fn prepared_for(file: &FileSnapshot, wanted: &PrepareOptions) -> Option<Arc<Prepared>> {
    let content = file.content.as_ref().ok()?;
    if content.prepared.options == *wanted {
        return Some(Arc::clone(&content.prepared));
    }
    // It parsed when it was read; the same bytes parse the same way.
    let bytes = content.bytes();
    let exposition = parse(&bytes, content.format).ok()?;
    Some(Arc::new(Prepared::build(
        exposition.families,
        &bytes,
        &file.origin(),
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
        let config = options.own_config();
        let chunks: Vec<Arc<DataChunk>> = cut(files, |f| f.path.as_path(), bits)
            .into_iter()
            .map(|c| Arc::new(DataChunk::build_prepared(c, &wanted, config)))
            .collect();
        count_chunks(index, &chunks);
        let repeats = index.has_repeats();
        DataPart::assemble(chunks, options, repeats, Arc::new(Carry::default()))
    }

    /// Merges prepared chunks (in serving order); `repeats` says whether a series is in two
    /// places ([`SeriesIndex::has_repeats`]), which takes the full merge. `carry` is what the
    /// previous publication left (see [`Carry`]). Blocking.
    pub fn assemble(
        chunks: Vec<Arc<DataChunk>>,
        options: ExpositionOptions,
        repeats: bool,
        carry: Arc<Carry>,
    ) -> DataPart {
        DataPart::assemble_variant(chunks, options, repeats, carry, 0)
    }

    /// [`DataPart::assemble`] for variant `variant` (0: the published part, then one per
    /// escaping scheme), whose joined adopted series are carried apart.
    fn assemble_variant(
        chunks: Vec<Arc<DataChunk>>,
        options: ExpositionOptions,
        repeats: bool,
        carry: Arc<Carry>,
        variant: usize,
    ) -> DataPart {
        let assembled = if repeats {
            Arc::new(None)
        } else {
            merge_kept(
                carry.classic.get(variant),
                &carry.merges_kept,
                &chunks,
                || {
                    let plans: Vec<&ChunkPlan> = chunks.iter().map(|c| &c.plan).collect();
                    assembly::assemble(&plans)
                },
            )
        };
        // Not by groups, but the prepared text can still give the body: merged part by part
        // (a family whose names clash with another's, or other buckets).
        let by_parts = assembled.is_none() && !repeats && chunks.iter().all(|c| c.plan.classic_ok);
        let concatenable = assembled.is_some() || by_parts;
        let (classic, mut conflicts) = match &*assembled {
            // The segments are listed on first use: most publications under churn are
            // replaced before a scrape asks for them.
            Some(a) => (OnceLock::new(), a.conflicts.clone()),
            None if by_parts => {
                let prepared: Vec<Arc<Prepared>> = chunks
                    .iter()
                    .flat_map(|c| c.prepared().iter().cloned())
                    .collect();
                let paths: Vec<String> = chunks
                    .iter()
                    .flat_map(|c| c.files.iter())
                    .map(|f| snapshot::file_label(&f.path))
                    .collect();
                let capacity: usize = prepared.iter().map(|p| p.classic_len()).sum();
                let mut out = Vec::with_capacity(capacity + 1024);
                let path_of = |i: usize| paths.get(i).cloned().unwrap_or_default();
                let conflicts = prepared::render_classic(&prepared, &path_of, &mut out);
                (
                    OnceLock::from(vec![Arc::new(Segment::from_bytes(Bytes::from(out)))]),
                    conflicts,
                )
            }
            None => {
                let files: Vec<Arc<FileSnapshot>> = chunks
                    .iter()
                    .flat_map(|c| c.files.iter().cloned())
                    .collect();
                let capacity: usize = files
                    .iter()
                    .filter_map(|f| f.content.as_ref().ok())
                    .map(|c| c.len())
                    .sum();
                let mut text = String::with_capacity(capacity + capacity / 8);
                let conflicts = render_data(&files, &options, Format::Classic, &mut text);
                (
                    OnceLock::from(vec![Arc::new(Segment::new(text))]),
                    conflicts,
                )
            }
        };
        let adopted = join_adopted(&chunks, &options, &carry, variant);
        conflicts.extend(adopted.conflicts.iter().cloned());
        DataPart {
            classic,
            assembled,
            openmetrics: tokio::sync::OnceCell::new(),
            openmetrics_pieces: OnceLock::new(),
            chunks,
            concatenable,
            options,
            carry,
            adopted,
            conflicts,
            escaped: Default::default(),
            variant,
        }
    }

    /// The classic rendering, in segments: the merge's pieces made into the chunks' segments
    /// on first use (or the text a merge part by part or the full merge gave).
    pub fn classic(&self) -> &[Arc<Segment>] {
        self.classic.get_or_init(|| match &*self.assembled {
            Some(a) => resolve(&a.classic, &self.chunks, &self.carry.headers),
            None => Vec::new(),
        })
    }

    /// How many family headers the classic rendering holds at most (to bound the headers
    /// kept across publications), without listing its segments.
    pub fn classic_pieces(&self) -> usize {
        match (&*self.assembled, self.classic.get()) {
            (Some(a), _) => a.classic.len(),
            (None, Some(segments)) => segments.len(),
            (None, None) => 0,
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
        segments_text(self.classic())
    }

    /// Renders the OpenMetrics segments (without `# EOF`). Blocking.
    pub fn render_openmetrics_segments(&self) -> Vec<Arc<Segment>> {
        if let Some(pieces) = self.merged_openmetrics() {
            if let Some(pieces) = &**pieces {
                return resolve(pieces, &self.chunks, &self.carry.headers);
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

    /// The chunks' OpenMetrics merge by groups (kept from the last publication when its
    /// chunks merge as these do), made once; `None` when the chunks' prepared text does not
    /// give the body. Blocking.
    fn merged_openmetrics(&self) -> Option<&Arc<Option<Vec<Piece>>>> {
        self.concatenable.then(|| {
            self.openmetrics_pieces.get_or_init(|| {
                merge_kept(
                    self.carry.openmetrics.get(self.variant),
                    &self.carry.merges_kept,
                    &self.chunks,
                    || {
                        let plans: Vec<&ChunkPlan> = self.chunks.iter().map(|c| &c.plan).collect();
                        assembly::assemble_openmetrics(&plans)
                    },
                )
            })
        })
    }

    /// The positions of this part's body in `openmetrics` or the classic format, for its gzip
    /// stream: from the merge's pieces without listing the segments, else from the listed
    /// segments (the listing kept for plain requests). Blocking.
    fn gzip_items<'a>(&'a self, openmetrics: bool, out: &mut Vec<gzip_body::Item<'a>>) {
        let pieces = if openmetrics {
            self.merged_openmetrics().and_then(|p| p.as_ref().as_ref())
        } else {
            self.assembled.as_ref().as_ref().map(|a| &a.classic)
        };
        if let Some(pieces) = pieces {
            gzip_body::Item::pieces(pieces, &self.chunks, &self.carry.headers, out);
            return;
        }
        // The merge part by part, or the full merge: a segment or few.
        if !openmetrics {
            out.extend(self.classic().iter().cloned().map(gzip_body::Item::made));
            return;
        }
        let listed = match self.openmetrics.get() {
            Some(listed) => Arc::clone(listed),
            None => {
                let listed = Arc::new(self.render_openmetrics_segments());
                // Another request may have listed it meanwhile: either list is the same.
                let _ = self.openmetrics.set(Arc::clone(&listed));
                listed
            }
        };
        out.extend(listed.iter().cloned().map(gzip_body::Item::made));
    }

    /// Renders the OpenMetrics text (without `# EOF`). Blocking.
    pub fn render_openmetrics(&self) -> Bytes {
        Bytes::from(segments_text(&self.render_openmetrics_segments()))
    }

    /// This part as a scraper asking for `scheme` gets it: itself for `allow-utf-8` or when no
    /// name changes, else the same publication over the files with escaped names (each chunk
    /// escaped once and kept with it: `escaped::build`), made on a blocking thread on first
    /// demand and kept until the next change. Names that collide once escaped are conflicts
    /// of the variant, counted in `promdrop_escaping_conflicts_total`.
    pub async fn escaped(self: &Arc<Self>, scheme: EscapingScheme) -> Arc<DataPart> {
        let Some(slot) = escaped::slot_index(scheme) else {
            return Arc::clone(self);
        };
        let this = Arc::clone(self);
        let variant = self.escaped[slot]
            .get_or_init(|| async move {
                let built = tokio::task::spawn_blocking(move || {
                    let variant = escaped::build(&this, scheme).map(Arc::new);
                    if let Some(v) = &variant {
                        escaped::record_conflicts(&this, v, scheme);
                    }
                    variant
                })
                .await;
                // A variant that failed to build is served as an empty data part, never as
                // the unescaped one.
                built.unwrap_or_else(|_| {
                    Some(Arc::new(DataPart::build(
                        Vec::new(),
                        ExpositionOptions::default(),
                    )))
                })
            })
            .await;
        variant.clone().unwrap_or_else(|| Arc::clone(self))
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

/// The files' series of the exporter's own families for `chunks`: their parts joined
/// ([`Adopted::join`]), the last join again when the parts are the same, or one build over
/// every file when a series is in two chunks (only the files that have such families are
/// parsed).
fn join_adopted(
    chunks: &[Arc<DataChunk>],
    options: &ExpositionOptions,
    carry: &Carry,
    variant: usize,
) -> Arc<Adopted> {
    let parts: Vec<Arc<Adopted>> = chunks
        .iter()
        .filter(|c| !c.adopted.is_empty() || !c.adopted.conflicts.is_empty())
        .map(|c| Arc::clone(&c.adopted))
        .collect();
    if parts.is_empty() {
        return Arc::default();
    }
    let Some(slot) = carry.adopted.get(variant) else {
        return Arc::new(build_adopted(&parts, chunks, options));
    };
    let mut last = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((kept, joined)) = &*last
        && kept.len() == parts.len()
        && kept.iter().zip(&parts).all(|(a, b)| Arc::ptr_eq(a, b))
    {
        return Arc::clone(joined);
    }
    let joined = Arc::new(build_adopted(&parts, chunks, options));
    *last = Some((parts, Arc::clone(&joined)));
    joined
}

/// [`Adopted::join`] of `parts`, else a build over the files of `chunks`.
fn build_adopted(
    parts: &[Arc<Adopted>],
    chunks: &[Arc<DataChunk>],
    options: &ExpositionOptions,
) -> Adopted {
    let refs: Vec<&Adopted> = parts.iter().map(|p| &**p).collect();
    if let Some(joined) = Adopted::join(&refs) {
        return joined;
    }
    let files: Vec<Arc<FileSnapshot>> = chunks
        .iter()
        .flat_map(|c| c.files.iter().cloned())
        .collect();
    let prepared: Vec<Arc<Prepared>> = chunks
        .iter()
        .flat_map(|c| c.prepared().iter().cloned())
        .collect();
    Adopted::build(
        &files,
        &prepared,
        &options.prepare_options(),
        options.own_config(),
    )
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
    /// The changes seen and not yet published, which a request asks for
    /// ([`PendingChanges::catch_up`]).
    pub pending: Arc<PendingChanges>,
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
            scrape_metrics: vec![escaped::write_metrics],
            pending: Arc::default(),
        }
    }

    /// Whether the first full scan has been published.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// What a scrape asked for with its `Accept` and `Accept-Encoding` headers, as promhttp
/// negotiates it (prometheus/common `expfmt.NegotiateIncludingOpenMetrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Classic text or OpenMetrics.
    pub format: Format,
    /// The format's version named in the `Content-Type`: `0.0.4` or `1.0.0` for the classic
    /// text, `0.0.1` or `1.0.0` for OpenMetrics (the body is the same).
    pub version: &'static str,
    /// How names that are not legacy ones are written.
    pub escaping: EscapingScheme,
    /// Whether gzip is allowed.
    pub gzip: bool,
}

/// `base; escaping=<scheme>` for every scheme, in [`EscapingScheme::ALL`]'s order.
macro_rules! with_escaping {
    ($base:literal) => {
        [
            concat!($base, "; escaping=allow-utf-8"),
            concat!($base, "; escaping=underscores"),
            concat!($base, "; escaping=dots"),
            concat!($base, "; escaping=values"),
        ]
    };
}

const TEXT_0_0_4: [&str; 4] = with_escaping!("text/plain; version=0.0.4; charset=utf-8");
const TEXT_1_0_0: [&str; 4] = with_escaping!("text/plain; version=1.0.0; charset=utf-8");
const OPENMETRICS_0_0_1: [&str; 4] =
    with_escaping!("application/openmetrics-text; version=0.0.1; charset=utf-8");
const OPENMETRICS_1_0_0: [&str; 4] =
    with_escaping!("application/openmetrics-text; version=1.0.0; charset=utf-8");

impl Negotiated {
    /// The `Content-Type`, saying which escaping was applied as promhttp does
    /// (`text/plain; version=0.0.4; charset=utf-8; escaping=underscores`).
    pub fn content_type(&self) -> &'static str {
        let table = match (self.format, self.version) {
            (Format::OpenMetrics, "0.0.1") => &OPENMETRICS_0_0_1,
            (Format::OpenMetrics, _) => &OPENMETRICS_1_0_0,
            (_, "1.0.0") => &TEXT_1_0_0,
            _ => &TEXT_0_0_4,
        };
        let index = EscapingScheme::ALL
            .iter()
            .position(|s| *s == self.escaping)
            .unwrap_or(1);
        table[index]
    }
}

/// The format, version and escaping `accept` asks for.
///
/// The media ranges are taken by decreasing `q` (ranges with `q=0` are refused); the first
/// that names `text/plain` (version `0.0.4`, `1.0.0` or none), `application/openmetrics-text`
/// (version `1.0.0`, `0.0.1` or none, which means `0.0.1`), `text/*` or `*/*` is chosen, and
/// the classic text `0.0.4` when none does. The escaping is the last known `escaping`
/// parameter met on the way, up to the chosen range included, as in promhttp; without one a
/// scraper gets [`EscapingScheme::default`] (`underscores`), so a Prometheus 2 server, which
/// never sends it, gets legacy names only.
pub fn negotiate_accept(accept: &str) -> (Format, &'static str, EscapingScheme) {
    struct Range<'a> {
        media: String,
        q: f32,
        version: Option<&'a str>,
        escaping: Option<&'a str>,
    }
    let mut ranges: Vec<Range<'_>> = accept
        .split(',')
        .map(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut r = Range {
                media,
                q: 1.0,
                version: None,
                escaping: None,
            };
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => r.q = v.parse().unwrap_or(0.0),
                        "version" => r.version = Some(v),
                        "escaping" => r.escaping = Some(v),
                        _ => {}
                    }
                }
            }
            r
        })
        .filter(|r| r.q > 0.0 && !r.media.is_empty())
        .collect();
    // Stable: ranges of equal q keep their order.
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    let mut escaping = EscapingScheme::default();
    for range in &ranges {
        if let Some(scheme) = range.escaping.and_then(EscapingScheme::from_param) {
            escaping = scheme;
        }
        let chosen = match (range.media.as_str(), range.version) {
            ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => {
                Some((Format::Classic, "0.0.4"))
            }
            ("text/plain", Some("1.0.0")) => Some((Format::Classic, "1.0.0")),
            ("application/openmetrics-text", None | Some("0.0.1")) => {
                Some((Format::OpenMetrics, "0.0.1"))
            }
            ("application/openmetrics-text", Some("1.0.0")) => Some((Format::OpenMetrics, "1.0.0")),
            _ => None,
        };
        if let Some((format, version)) = chosen {
            return (format, version, escaping);
        }
    }
    (Format::Classic, "0.0.4", escaping)
}

/// Whether `accept` prefers OpenMetrics to the classic text format ([`negotiate_accept`]), as
/// Prometheus asks with
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
pub fn prefers_openmetrics(accept: &str) -> bool {
    negotiate_accept(accept).0 == Format::OpenMetrics
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

/// The format, escaping and compression a request asks for with its `Accept` and
/// `Accept-Encoding` headers, as [`Published::negotiated_body`] takes them.
pub fn negotiate(headers: &hyper::HeaderMap) -> Negotiated {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let (format, version, escaping) = negotiate_accept(header(hyper::header::ACCEPT));
    Negotiated {
        format,
        version,
        escaping,
        gzip: accepts_gzip(header(hyper::header::ACCEPT_ENCODING)),
    }
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
    /// Conflicts by kind present in the last publication.
    pub current_conflicts: BTreeMap<&'static str, u64>,
    /// Deletions under `--delete-after` that failed.
    pub file_delete_errors: u64,
    /// With tenancy: files over a per-namespace cap, by namespace.
    pub tenant_files_refused: BTreeMap<String, u64>,
    /// With tenancy: the label naming the namespace (`--textfile.tenancy-label`).
    pub tenancy_label: Option<String>,
    /// The watched directories as their `directory` label shows them, and whether each is
    /// missing or cannot be listed now (`promdrop_directory_error`); set by the engine.
    pub directories: Vec<(String, bool)>,
}

/// The conflict kinds, for `promdrop_conflicts_total`'s zero values.
pub const CONFLICT_KINDS: [&str; 5] = ["type", "help", "duplicate_series", "reserved", "buckets"];

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

/// What one file's per-file meta lines (one per family of [`per_file_metrics`], the same in
/// both formats) were made from, and their lengths. The lines themselves are only in the
/// chunk's joined segments ([`MetaChunk`]): a chunk built again for one changed file renders
/// that file's lines alone and copies the others' from the chunk before (a chunk's other files
/// would otherwise cost their path's escaping and eight numbers each, at every change), and
/// no second copy of every file's lines is kept (10,000 files: 7 MB).
#[derive(Debug)]
struct FileMetaKey {
    snapshot: Arc<FileSnapshot>,
    state: FileState,
    /// The reference time's bits (the age is counted from it).
    reference: u64,
    /// The length of its line of family `k` (0 when the file has no value for it, or the
    /// family's lines are not joined).
    lens: [u32; PER_FILE],
}

impl FileMetaKey {
    /// Renders `f`'s lines of the families `joined` says, each at the end of `texts[k]`.
    fn render(
        f: &FileView,
        joined: [bool; PER_FILE],
        texts: &mut [String; PER_FILE],
    ) -> FileMetaKey {
        let label = snapshot::file_label(&f.snapshot.path);
        let mut lens = [0; PER_FILE];
        for (k, metric) in per_file_metrics().into_iter().enumerate() {
            if !joined[k] {
                continue;
            }
            if let Some(v) = per_file_value(k, f) {
                let text = &mut texts[k];
                let before = text.len();
                write_sample(text, &sample_name(metric), &[("file", &label)], v);
                lens[k] = u32::try_from(text.len() - before).unwrap_or(u32::MAX);
            }
        }
        FileMetaKey {
            snapshot: Arc::clone(&f.snapshot),
            state: f.state,
            reference: f.timing.reference.to_bits(),
            lens,
        }
    }

    /// Whether these are `f`'s lines as it is now.
    fn made_from(&self, f: &FileView) -> bool {
        Arc::ptr_eq(&self.snapshot, &f.snapshot)
            && self.state == f.state
            && self.reference == f.timing.reference.to_bits()
    }
}

/// The headers of the per-file meta families, classic and OpenMetrics.
fn per_file_headers() -> &'static [(Arc<Segment>, Arc<Segment>); PER_FILE] {
    static HEADERS: OnceLock<[(Arc<Segment>, Arc<Segment>); PER_FILE]> = OnceLock::new();
    HEADERS.get_or_init(|| {
        per_file_metrics().map(|m| {
            let mut w = MetaWriter::default();
            w.own(m);
            (
                Arc::new(Segment::header(w.classic)),
                Arc::new(Segment::header(w.openmetrics)),
            )
        })
    })
}

/// The meta families about all files together, with the files' series of these families
/// (`adopted`) in the same blocks: the first after the per-file ones, the second (compat) at
/// the end.
fn render_meta_totals(
    states: [u64; 4],
    counters: &Counters,
    compat_node: bool,
    adopted: &Arc<Adopted>,
) -> [MetaWriter; 2] {
    let mut w = MetaWriter::with_adopted(Arc::clone(adopted));
    if !counters.directories.is_empty() {
        w.own(&names::PROMDROP_DIRECTORY_ERROR);
        for (directory, error) in &counters.directories {
            w.sample(&[("directory", directory)], if *error { 1.0 } else { 0.0 });
        }
    }
    w.own(&names::PROMDROP_FILES);
    for (state, n) in ["fresh", "stale", "expired", "error"].iter().zip(states) {
        w.sample(&[("state", state)], n as f64);
    }
    w.own(&names::PROMDROP_CONFLICTS_TOTAL);
    for kind in CONFLICT_KINDS {
        let n = counters.conflicts.get(kind).copied().unwrap_or(0);
        w.sample(&[("kind", kind)], n as f64);
    }
    w.own(&names::PROMDROP_CURRENT_CONFLICTS);
    for kind in CONFLICT_KINDS {
        let n = counters.current_conflicts.get(kind).copied().unwrap_or(0);
        w.sample(&[("kind", kind)], n as f64);
    }
    w.own(&names::PROMDROP_FILE_DELETE_ERRORS_TOTAL);
    w.sample(&[], counters.file_delete_errors as f64);
    if let Some(label) = &counters.tenancy_label {
        w.own(&names::PROMDROP_TENANT_FILES_REFUSED);
        for (tenant, n) in &counters.tenant_files_refused {
            w.sample(&[(label, tenant)], *n as f64);
        }
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
    let mut end = MetaWriter::with_adopted(Arc::clone(adopted));
    if compat_node {
        end.own(&names::NODE_TEXTFILE_SCRAPE_ERROR);
        // As node_exporter: 1 when a file or a directory cannot be read.
        let error = states[3] > 0 || counters.directories.iter().any(|(_, e)| *e);
        end.sample(&[], if error { 1.0 } else { 0.0 });
    }
    [w, end]
}

/// Renders the meta metrics about `files` (every tracked file, in order), with the files'
/// series of these families (`adopted`) in the same blocks.
pub fn render_meta(
    files: &[FileView],
    counters: &Counters,
    compat_node: bool,
    adopted: &Arc<Adopted>,
) -> MetaWriter {
    let part = MetaPart::build(files, counters, compat_node, adopted);
    let mut w = MetaWriter::default();
    w.classic = segments_text(part.classic());
    w.openmetrics = segments_text(part.openmetrics());
    w
}

/// The per-file meta lines of one chunk of files.
#[derive(Debug)]
pub struct MetaChunk {
    lines: [Arc<Segment>; PER_FILE],
    /// Whether the compat family's lines (the last) are joined.
    compat_node: bool,
    /// How many of its files are fresh, stale, expired, or not served for an error.
    states: [u64; 4],
    /// What each file's lines were made from, in order.
    files: Vec<Arc<FileMetaKey>>,
}

/// How many of `files` are fresh, stale, expired, or not served for an error
/// (`promdrop_files`).
fn count_states(files: &[FileView]) -> [u64; 4] {
    let mut states = [0u64; 4];
    for f in files {
        if f.snapshot.content.is_err() {
            states[3] += 1;
        } else {
            states[f.state as usize] += 1;
        }
    }
    states
}

impl MetaChunk {
    /// The lines of `files` (one chunk, every tracked file, in order).
    pub fn build(files: &[FileView], compat_node: bool) -> MetaChunk {
        MetaChunk::build_reusing(files, compat_node, None)
    }

    /// [`MetaChunk::build`], taking the lines of each file unchanged since `previous` (the
    /// chunk the files were in) from it.
    pub fn build_reusing(
        files: &[FileView],
        compat_node: bool,
        previous: Option<&MetaChunk>,
    ) -> MetaChunk {
        let joined: [bool; PER_FILE] = std::array::from_fn(|k| k < PER_FILE - 1 || compat_node);
        // The previous chunk's lines can be copied when it joined the same families.
        let previous = previous.filter(|p| p.compat_node == compat_node);
        let kept = previous.map_or(&[][..], |p| &p.files[..]);
        // Where each kept file's line of family k starts in the previous chunk's segment k.
        let mut starts = Vec::with_capacity(kept.len());
        let mut at = [0usize; PER_FILE];
        for m in kept {
            starts.push(at);
            for (a, len) in at.iter_mut().zip(m.lens) {
                *a += len as usize;
            }
        }
        let old_text: [Bytes; PER_FILE] = std::array::from_fn(|k| {
            previous
                .and_then(|p| p.lines[k].part(0))
                .unwrap_or_default()
        });
        // First which files' lines are kept (and where they are), the others' rendered apart;
        // then each segment joined in file order, its size known (no growth, no shrinking).
        let mut rendered: [String; PER_FILE] = Default::default();
        let mut sources: Vec<(Option<usize>, Arc<FileMetaKey>)> = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            // Files keep their place in a chunk unless one came or went before them.
            let same = kept
                .get(i)
                .filter(|m| m.made_from(f))
                .map(|_| i)
                .or_else(|| kept.iter().position(|m| m.made_from(f)));
            match same {
                Some(j) => sources.push((Some(j), Arc::clone(&kept[j]))),
                None => sources.push((
                    None,
                    Arc::new(FileMetaKey::render(f, joined, &mut rendered)),
                )),
            }
        }
        let texts: [Vec<u8>; PER_FILE] = std::array::from_fn(|k| {
            let mut text =
                Vec::with_capacity(sources.iter().map(|(_, m)| m.lens[k] as usize).sum());
            let mut next = 0;
            for (kept_at, m) in &sources {
                let len = m.lens[k] as usize;
                let line = match kept_at {
                    Some(j) => old_text[k].get(starts[*j][k]..starts[*j][k] + len),
                    None => {
                        next += len;
                        rendered[k].as_bytes().get(next - len..next)
                    }
                };
                // Always found: the previous segments were joined from these lengths.
                text.extend_from_slice(line.unwrap_or_default());
            }
            text
        });
        MetaChunk {
            states: count_states(files),
            lines: texts.map(|text| Arc::new(Segment::packed(&text))),
            compat_node,
            files: sources.into_iter().map(|(_, m)| m).collect(),
        }
    }
}

/// The exporter's own metrics, rendered in both formats, in segments.
#[derive(Debug)]
pub struct MetaPart {
    /// The per-file lines, by chunk.
    chunks: Vec<Arc<MetaChunk>>,
    /// The files' series of these families.
    adopted: Arc<Adopted>,
    compat_node: bool,
    /// The families about all files together (classic, OpenMetrics), and the compat end.
    totals: [Arc<Segment>; 2],
    end: [Arc<Segment>; 2],
    /// The segments in order (classic, OpenMetrics), listed on first use: most publications
    /// under churn are replaced before a scrape asks for them.
    listed: [OnceLock<Vec<Arc<Segment>>>; 2],
}

impl MetaPart {
    /// Prepares the meta part (one chunk), with the files' series of these families
    /// (`adopted`).
    pub fn build(
        files: &[FileView],
        counters: &Counters,
        compat_node: bool,
        adopted: &Arc<Adopted>,
    ) -> MetaPart {
        let chunk = Arc::new(MetaChunk::build(files, compat_node));
        MetaPart::from_chunks(vec![chunk], counters, compat_node, adopted)
    }

    /// Prepares the meta part from `chunks` (every tracked file's, in order): their per-file
    /// lines and their files' states, with the files' series of these families (`adopted`)
    /// right under each family's header, as [`MetaWriter::own`] writes them. Costs the
    /// chunks' states and the totals' few lines; the segments are listed on first use.
    pub fn from_chunks(
        chunks: Vec<Arc<MetaChunk>>,
        counters: &Counters,
        compat_node: bool,
        adopted: &Arc<Adopted>,
    ) -> MetaPart {
        let states = chunks.iter().fold([0u64; 4], |mut sum, c| {
            for (s, n) in sum.iter_mut().zip(c.states) {
                *s += n;
            }
            sum
        });
        let [totals, end] = render_meta_totals(states, counters, compat_node, adopted);
        let segment = |text: String| Arc::new(Segment::new(text));
        MetaPart {
            chunks,
            adopted: Arc::clone(adopted),
            compat_node,
            totals: [segment(totals.classic), segment(totals.openmetrics)],
            end: [segment(end.classic), segment(end.openmetrics)],
            listed: Default::default(),
        }
    }

    /// The classic segments, in order.
    pub fn classic(&self) -> &[Arc<Segment>] {
        self.listed[0].get_or_init(|| self.list(false))
    }

    /// The OpenMetrics segments, in order.
    pub fn openmetrics(&self) -> &[Arc<Segment>] {
        self.listed[1].get_or_init(|| self.list(true))
    }

    /// The positions of this part's body in `openmetrics` or the classic format: for its gzip
    /// stream (without reading the chunks), and listed as segments ([`MetaPart::list`]).
    fn gzip_items<'a>(&'a self, openmetrics: bool, out: &mut Vec<gzip_body::Item<'a>>) {
        let headers = per_file_headers();
        let metrics = per_file_metrics();
        let format = usize::from(openmetrics);
        out.reserve(self.chunks.len() * PER_FILE + 16);
        let family = |k: usize, out: &mut Vec<gzip_body::Item<'a>>| {
            let header = if openmetrics {
                &headers[k].1
            } else {
                &headers[k].0
            };
            out.push(gzip_body::Item::segment(header));
            if let Some(lines) = self.adopted.lines(metrics[k].name) {
                let text = if openmetrics {
                    &lines.openmetrics
                } else {
                    &lines.classic
                };
                out.push(gzip_body::Item::made(Arc::new(Segment::new(text.clone()))));
            }
            out.extend(self.chunks.iter().map(|c| gzip_body::Item::meta(c, k)));
        };
        for k in 0..PER_FILE - 1 {
            family(k, out);
        }
        out.push(gzip_body::Item::segment(&self.totals[format]));
        if self.compat_node {
            family(PER_FILE - 1, out);
            out.push(gzip_body::Item::segment(&self.end[format]));
        }
    }

    /// The segments of its positions ([`MetaPart::gzip_items`]), in order.
    fn list(&self, openmetrics: bool) -> Vec<Arc<Segment>> {
        let mut items = Vec::new();
        self.gzip_items(openmetrics, &mut items);
        items.iter().filter_map(gzip_body::Item::resolve).collect()
    }
}

/// Everything the HTTP layer serves, prepared; swapped whole when something changes.
#[derive(Debug)]
pub struct Published {
    /// The files' merged samples.
    pub data: Arc<DataPart>,
    /// The exporter's metrics about them.
    pub meta: Arc<MetaPart>,
    /// What the status page and `/api/v1/files` show, but the files ([`Published::status`]
    /// adds them on first request).
    status: Arc<StatusModel>,
    /// Every tracked file, for the status, by chunk (shared with the engine's chunks, so
    /// that a publication costs the chunks that changed).
    views: Vec<Arc<[FileView]>>,
    status_full: OnceLock<Arc<StatusModel>>,
    /// The gzip stream of data and meta, by format (classic, OpenMetrics) and data part (the
    /// published one, then the escaped variants `underscores`, `dots`, `values` that differ
    /// from it), joined on first request.
    gzipped: [tokio::sync::OnceCell<Arc<gzip_body::GzipBody>>; 8],
    /// The plain text of data and meta, by the same index as `gzipped`, joined into one
    /// segment on the second plain request (see [`Published::negotiated_body`]).
    joined_plain: [tokio::sync::OnceCell<Option<Arc<Segment>>>; 8],
    /// How many plain requests each index has had (counted up to 2).
    plain_requests: [std::sync::atomic::AtomicU8; 8],
    /// The index whose plain body is joined, plus one (0: none yet): one per publication, so
    /// that it costs one copy of the text at most.
    plain_joined: std::sync::atomic::AtomicUsize,
}

/// How many pieces a plain body has at least before it is worth joining into one buffer on
/// its second request ([`Published::negotiated_body`]): 64 `writev` calls of 64 pieces. On the
/// 2-core test VM, a 10,000-file body (20,000 pieces) took 38 ms in pieces and 21 ms joined;
/// a 1,000-file body (2,000 pieces) about 5 ms either way, where the copy (8 MB resident) is
/// not worth it.
pub const JOIN_PARTS: usize = 64 * 64;

/// A response body: its content type, whether it is gzip-encoded, and its segments.
#[derive(Debug)]
pub struct Body {
    /// The `Content-Type`, with the escaping applied ([`Negotiated::content_type`]).
    pub content_type: &'static str,
    /// Whether the segments hold a gzip stream.
    pub gzip: bool,
    /// The body, in order: the published segments themselves (their parts are sent as they
    /// are), then what this request rendered.
    pub segments: Vec<Arc<Segment>>,
}

impl Body {
    /// The total length.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.len()).sum()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.is_empty())
    }
}

impl Published {
    /// A publication of these parts; `status` without its files, which are `views` (every
    /// tracked file, in order, in chunks).
    pub fn new(
        data: Arc<DataPart>,
        meta: MetaPart,
        status: Arc<StatusModel>,
        views: Vec<Arc<[FileView]>>,
    ) -> Published {
        Published {
            data,
            meta: Arc::new(meta),
            status,
            views,
            status_full: OnceLock::new(),
            gzipped: Default::default(),
            joined_plain: Default::default(),
            plain_requests: Default::default(),
            plain_joined: Default::default(),
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
                .flat_map(|chunk| chunk.iter())
                .map(crate::status::FileStatus::of)
                .collect();
            Arc::new(model)
        }))
    }

    /// An empty exposition, served before the first scan finishes.
    pub fn empty(status: StatusModel) -> Published {
        Published::new(
            Arc::new(DataPart::build(Vec::new(), ExpositionOptions::default())),
            MetaPart::build(&[], &Counters::default(), false, &Arc::default()),
            Arc::new(status),
            Vec::new(),
        )
    }

    /// The `/metrics` body in `format` with the default escaping (`underscores`), as
    /// [`Published::negotiated_body`] gives it.
    pub async fn body(
        &self,
        format: Format,
        gzip: bool,
        scrape_metrics: &[fn(&mut MetaWriter)],
    ) -> Body {
        let negotiated = Negotiated {
            format,
            version: if format == Format::OpenMetrics {
                "1.0.0"
            } else {
                "0.0.4"
            },
            escaping: EscapingScheme::default(),
            gzip,
        };
        self.negotiated_body(&negotiated, scrape_metrics).await
    }

    /// The `/metrics` body as `negotiated`: the data part with its names escaped as asked
    /// ([`DataPart::escaped`]), gzip-compressed when allowed. Process metrics are added now;
    /// everything else was prepared before, and is compressed on the first gzip request (only
    /// the segments that changed since the last publication). The meta part's names are
    /// legacy ones, served as they are under every scheme.
    pub async fn negotiated_body(
        &self,
        negotiated: &Negotiated,
        scrape_metrics: &[fn(&mut MetaWriter)],
    ) -> Body {
        let openmetrics = negotiated.format == Format::OpenMetrics;
        let variant = self.data.escaped(negotiated.escaping).await;
        // The published part's slot when the variant is the published part itself.
        let slot = if Arc::ptr_eq(&variant, &self.data) {
            0
        } else {
            escaped::slot_index(negotiated.escaping).map_or(0, |i| i + 1)
        };
        let mut tail = crate::process::render(openmetrics, scrape_metrics, &self.data.adopted);
        if openmetrics {
            tail.push_str("# EOF\n");
        }
        let content_type = negotiated.content_type();
        let index = usize::from(openmetrics) * 4 + slot;
        // Every request after the first of its kind finds its body made: no list of the
        // segments (tens of thousands) is made for it.
        let gzip_body = |body: &gzip_body::GzipBody| Body {
            content_type,
            gzip: true,
            segments: body.finish(tail.as_bytes()),
        };
        if negotiated.gzip
            && let Some(joined) = self.gzipped[index].get()
        {
            return gzip_body(joined);
        }
        if !negotiated.gzip
            && let Some(Some(joined)) = self.joined_plain[index].get()
        {
            return Body {
                content_type,
                gzip: false,
                segments: vec![Arc::clone(joined), Arc::new(Segment::new(tail))],
            };
        }
        if negotiated.gzip {
            // Made from the parts' positions, block by block: the blocks whose positions the
            // last body had are taken from it (see `gzip_body`), so the first request after a
            // change lists and compresses the changed chunks' blocks, not every segment.
            let carry = Arc::clone(&self.data.carry);
            let meta = Arc::clone(&self.meta);
            let body = self.gzipped[index]
                .get_or_init(|| async move {
                    let body = tokio::task::spawn_blocking(move || {
                        gzip_stream(&variant, &meta, openmetrics, &carry.gzip_blocks[index])
                    })
                    .await;
                    Arc::new(
                        body.unwrap_or_else(|_| gzip_body::GzipBody::build(&[], &Mutex::default())),
                    )
                })
                .await;
            return gzip_body(body);
        }
        // The classic segments are read in place in the part, not copied into a list of
        // their own first.
        let openmetrics_data;
        let data: &[Arc<Segment>] = if openmetrics {
            openmetrics_data = variant.openmetrics().await;
            &openmetrics_data
        } else {
            variant.classic()
        };
        let meta = if openmetrics {
            self.meta.openmetrics()
        } else {
            self.meta.classic()
        };
        let segments: Vec<Arc<Segment>> = data.iter().chain(meta.iter()).cloned().collect();
        // A plain body is the segments' pieces, written as they are or decompressed into the
        // frame that sends them (routes::Chunks): no copy is kept for a one-off request (a
        // person with curl), whose cost would be a copy of the text. A body of many pieces
        // (more than JOIN_PARTS) asked for a second time in a publication (a scraper that
        // does not take gzip) is joined into one buffer, kept with the publication as the
        // gzip body is: the server writes at most 64 pieces a system call, and past some
        // thousands of pieces those calls cost more than a copy. One plain body per
        // publication is joined (the first asked for twice), so this costs one copy of the
        // text at most.
        let seen = self.plain_requests[index]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1).min(2))
            })
            .unwrap_or(2);
        let parts: usize = segments.iter().map(|s| s.part_count()).sum();
        let claimed = seen >= 1
            && parts > JOIN_PARTS
            && match self.plain_joined.compare_exchange(
                0,
                index + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => true,
                Err(holder) => holder == index + 1,
            };
        let mut segments = if claimed {
            let pieces = segments.clone();
            let joined = self.joined_plain[index]
                .get_or_init(|| async move {
                    tokio::task::spawn_blocking(move || {
                        Arc::new(Segment::from_bytes(Bytes::from(segments_bytes(&pieces))))
                    })
                    .await
                    // Should the copy fail, the pieces are served as for a first request.
                    .ok()
                })
                .await;
            match joined {
                Some(joined) => vec![Arc::clone(joined)],
                None => segments,
            }
        } else {
            segments
        };
        segments.push(Arc::new(Segment::new(tail)));
        Body {
            content_type,
            gzip: false,
            segments,
        }
    }
}

/// The gzip stream of `data` then `meta`, in OpenMetrics or the classic format, taking the
/// blocks of the last one made that `kept` holds where their positions are the same (see
/// [`gzip_body`]). Blocking.
pub fn gzip_stream(
    data: &DataPart,
    meta: &MetaPart,
    openmetrics: bool,
    kept: &gzip_body::KeptBlocks,
) -> gzip_body::GzipBody {
    let mut items = Vec::new();
    data.gzip_items(openmetrics, &mut items);
    meta.gzip_items(openmetrics, &mut items);
    gzip_body::GzipBody::build(&items, kept)
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
    for c in &data.conflicts {
        *counters.conflicts.entry(c.kind).or_default() += 1;
        *counters.current_conflicts.entry(c.kind).or_default() += 1;
    }
    for f in files {
        if f.snapshot.content.is_ok() {
            counters.reloads_success += 1;
        } else {
            counters.reloads_failure += 1;
        }
    }
    let meta = render_meta(files, counters, options.compat_node_exporter, &data.adopted);
    out.push_str(&meta.classic);
    out
}

mod escaped;
pub mod gzip_body;

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

    pub(super) fn gunzip(body: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap();
        out
    }
}

#[cfg(test)]
mod escaping_tests {
    use super::*;
    use promdrop_textfile::discovery::FileIdentity;
    use promdrop_textfile::snapshot::{ReadOptions, parse_bytes};

    #[test]
    fn accept_names_the_format_version_and_escaping() {
        use EscapingScheme::*;
        let cases = [
            ("", Format::Classic, "0.0.4", Underscores),
            (
                "text/plain;version=0.0.4",
                Format::Classic,
                "0.0.4",
                Underscores,
            ),
            (
                "text/plain;version=1.0.0;escaping=allow-utf-8",
                Format::Classic,
                "1.0.0",
                AllowUtf8,
            ),
            (
                "text/plain;version=1.0.0;escaping=dots",
                Format::Classic,
                "1.0.0",
                Dots,
            ),
            (
                "text/plain;version=1.0.0;escaping=nope",
                Format::Classic,
                "1.0.0",
                Underscores,
            ),
            (
                "application/openmetrics-text;version=1.0.0;escaping=values,text/plain;q=0.5",
                Format::OpenMetrics,
                "1.0.0",
                Values,
            ),
            (
                "application/openmetrics-text",
                Format::OpenMetrics,
                "0.0.1",
                Underscores,
            ),
            // Prometheus 3's default scrape protocols with UTF-8 names allowed.
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
                Format::OpenMetrics,
                "1.0.0",
                AllowUtf8,
            ),
            // An escaping on a refused range still counts, as promhttp has it.
            (
                "application/openmetrics-text;version=9.9.9;escaping=dots,text/plain;q=0.5",
                Format::Classic,
                "0.0.4",
                Dots,
            ),
        ];
        for (accept, format, version, escaping) in cases {
            assert_eq!(
                negotiate_accept(accept),
                (format, version, escaping),
                "{accept}"
            );
        }
        let n = Negotiated {
            format: Format::Classic,
            version: "1.0.0",
            escaping: AllowUtf8,
            gzip: false,
        };
        assert_eq!(
            n.content_type(),
            "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
        );
    }

    fn data_of(files: &[(&str, &str)]) -> Arc<DataPart> {
        let options = ReadOptions {
            max_bytes: 1 << 20,
            max_series: 1000,
            timestamps: TimestampPolicy::Reject,
        };
        let identity = FileIdentity {
            dev: 1,
            ino: 1,
            size: 0,
            mtime_ns: 0,
        };
        let snapshots = files
            .iter()
            .map(|(path, text)| {
                let s = parse_bytes(
                    (*path).into(),
                    identity,
                    Bytes::from(text.to_string()),
                    &options,
                );
                assert!(s.content.is_ok(), "{:?}", s.content);
                Arc::new(s)
            })
            .collect();
        Arc::new(DataPart::build(snapshots, ExpositionOptions::default()))
    }

    #[test]
    fn a_chunks_meta_lines_are_rendered_again_only_for_files_that_changed() {
        use promdrop_textfile::staleness::Timing;
        let options = ReadOptions {
            max_bytes: 1 << 20,
            max_series: 1000,
            timestamps: TimestampPolicy::Reject,
        };
        let snapshot = |path: &str, mtime_ns: i128, text: &str| {
            let identity = FileIdentity {
                dev: 1,
                ino: 1,
                size: text.len() as u64,
                mtime_ns,
            };
            Arc::new(parse_bytes(
                path.into(),
                identity,
                Bytes::from(text.to_string()),
                &options,
            ))
        };
        let timing = Timing {
            reference: 1_000.0,
            stale_after: None,
            expire_after: None,
            delete_after: None,
        };
        let view = |snapshot: Arc<FileSnapshot>, state: FileState| FileView {
            snapshot,
            timing,
            state,
        };
        let before = vec![
            view(
                snapshot("/d/a.prom", 1_000_000_000_000, "a 1\n"),
                FileState::Fresh,
            ),
            view(
                snapshot("/d/b\"q.prom", 2_000_000_000_000, "b 1\n"),
                FileState::Fresh,
            ),
            view(
                snapshot("/d/c.prom", 3_000_000_000_000, "c 1\n"),
                FileState::Fresh,
            ),
            view(
                snapshot("/d/e.prom", 6_000_000_000_000, "e 1\nf 2\n"),
                FileState::Fresh,
            ),
        ];
        let old = MetaChunk::build(&before, true);
        // b rewritten (another snapshot), c gone stale with its age counted from later, c0
        // new before c: a's lines are the same, and e's (one place further on, so copied from
        // elsewhere in the previous segments); the rest made again.
        let mut after = before.clone();
        after[1] = view(
            snapshot("/d/b\"q.prom", 5_000_000_000_000, "b 1\nb2 2\n"),
            FileState::Fresh,
        );
        after[2].state = FileState::Stale;
        after[2].timing.reference = 2_000.0;
        after.insert(
            2,
            view(
                snapshot("/d/c0.prom", 4_000_000_000_000, "x{"),
                FileState::Fresh,
            ),
        );
        for compat in [true, false] {
            let old = MetaChunk::build(&before, compat);
            let reused = MetaChunk::build_reusing(&after, compat, Some(&old));
            let fresh = MetaChunk::build(&after, compat);
            assert_eq!(segments_text(&reused.lines), segments_text(&fresh.lines));
            assert_eq!(reused.states, fresh.states);
            assert!(Arc::ptr_eq(&reused.files[0], &old.files[0]));
            assert!(Arc::ptr_eq(&reused.files[4], &old.files[3]));
            for i in 1..4 {
                assert!(
                    old.files.iter().all(|m| !Arc::ptr_eq(m, &reused.files[i])),
                    "{i}"
                );
            }
        }
        // What changed shows: b's new series count and mtime, c stale, c0's error.
        let text = segments_text(&MetaChunk::build_reusing(&after, true, Some(&old)).lines);
        for line in [
            "promdrop_file_series{file=\"/d/b\\\"q.prom\"} 2\n",
            "promdrop_file_mtime_seconds{file=\"/d/b\\\"q.prom\"} 5000\n",
            "promdrop_file_stale{file=\"/d/c.prom\"} 1\n",
            "promdrop_file_reference_time_seconds{file=\"/d/c.prom\"} 2000\n",
            "promdrop_file_error{file=\"/d/c0.prom\"} 1\n",
            "promdrop_file_stale{file=\"/d/a.prom\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn every_body_of_a_publication_is_the_same_text_however_it_is_sent() {
        // Each file its own families: a piece per file and family, more than JOIN_PARTS.
        let files: Vec<(String, String)> = (0..1100)
            .map(|i| {
                let text: String = ["rows_total", "queue_depth"]
                    .iter()
                    .map(|f| format!("# TYPE {f}_{i} gauge\n{f}_{i}{{job=\"j{i}\"}} {i}\n"))
                    .collect();
                (format!("/d/job-{i:04}.prom"), text)
            })
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let published = Published::new(
            data_of(&refs),
            MetaPart::build(&[], &Counters::default(), false, &Arc::default()),
            Arc::new(StatusModel::default()),
            Vec::new(),
        );
        for format in [Format::Classic, Format::OpenMetrics] {
            // The text before the tail (the process metrics, rendered for each request).
            let text = |body: &Body| segments_text(&body.segments[..body.segments.len() - 1]);
            // The first plain body is the published pieces; the second is joined into one
            // segment (then kept); both are the text the gzip body holds.
            let first = published.body(format, false, &[]).await;
            assert!(first.segments.len() > 2);
            let second = published.body(format, false, &[]).await;
            // One plain body per publication is joined: the classic one, asked for first.
            let joined = if format == Format::Classic {
                2
            } else {
                first.segments.len()
            };
            assert_eq!(
                second.segments.len(),
                joined,
                "one joined segment and the tail"
            );
            let third = published.body(format, false, &[]).await;
            assert!(Arc::ptr_eq(&second.segments[0], &third.segments[0]));
            assert_eq!(third.segments.len(), joined);
            assert_eq!(text(&first), text(&second));
            let gzip = published.body(format, true, &[]).await;
            let compressed: Vec<u8> = gzip
                .segments
                .iter()
                .flat_map(|s| s.parts().flat_map(|p| p.to_vec()))
                .collect();
            let decoded = String::from_utf8(tests::gunzip(&compressed)).unwrap();
            assert!(decoded.starts_with(&text(&first)), "{decoded}");
            assert!(decoded.len() > text(&first).len());
            assert!(text(&first).contains("rows_total_1099{job=\"j1099\"} 1099\n"));
        }
        // A body of few pieces is not joined.
        let small = Published::new(
            data_of(&refs[..40]),
            MetaPart::build(&[], &Counters::default(), false, &Arc::default()),
            Arc::new(StatusModel::default()),
            Vec::new(),
        );
        let first = small.body(Format::Classic, false, &[]).await;
        let second = small.body(Format::Classic, false, &[]).await;
        assert!(first.segments.len() > 2);
        assert_eq!(second.segments.len(), first.segments.len());
    }

    #[tokio::test]
    async fn a_scraper_gets_the_names_it_asked_for() {
        let data = data_of(&[
            (
                "/d/a.prom",
                "# TYPE \"http.requests\" gauge\n{\"http.requests\",\"http.method\"=\"GET\"} 3\n",
            ),
            ("/d/b.prom", "# TYPE plain_one gauge\nplain_one 1\n"),
        ]);
        let text = |d: &Arc<DataPart>| d.classic_text();
        assert!(
            text(&data).starts_with(
                "# TYPE \"http.requests\" gauge\n{\"http.requests\",\"http.method\"=\"GET\"} 3\n"
            ),
            "{}",
            text(&data)
        );
        let om = segments_text(&data.openmetrics().await);
        assert!(
            om.starts_with(
                "# TYPE \"http.requests\" gauge\n{\"http.requests\",\"http.method\"=\"GET\"} 3\n"
            ),
            "{om}"
        );
        let under = data.escaped(EscapingScheme::Underscores).await;
        assert_eq!(
            text(&under),
            "# TYPE http_requests gauge\nhttp_requests{http_method=\"GET\"} 3\n# TYPE plain_one gauge\nplain_one 1\n"
        );
        // Made once, kept.
        assert!(Arc::ptr_eq(
            &under,
            &data.escaped(EscapingScheme::Underscores).await
        ));
        let dots = data.escaped(EscapingScheme::Dots).await;
        assert!(text(&dots).contains("http_dot_requests{http_dot_method=\"GET\"} 3\n"));
        assert!(text(&dots).contains("plain__one 1\n"));
        let values = data.escaped(EscapingScheme::Values).await;
        assert!(text(&values).contains("U__http_2e_requests{U__http_2e_method=\"GET\"} 3\n"));
        assert!(Arc::ptr_eq(
            &data,
            &data.escaped(EscapingScheme::AllowUtf8).await
        ));
        let om = under.openmetrics().await;
        assert!(segments_text(&om).contains("http_requests{http_method=\"GET\"} 3\n"));
    }

    #[tokio::test]
    async fn a_files_escaped_form_is_kept_with_its_snapshot() {
        let first = data_of(&[
            ("/d/a.prom", "# TYPE \"kept.one\" gauge\n{\"kept.one\"} 1\n"),
            (
                "/d/b.prom",
                "# TYPE \"changing.one\" gauge\n{\"changing.one\"} 1\n",
            ),
        ]);
        let changed = data_of(&[(
            "/d/b.prom",
            "# TYPE \"changing.one\" gauge\n{\"changing.one\"} 2\n",
        )]);
        // The next publication: a.prom's snapshot unchanged, b.prom's new.
        let files = vec![
            Arc::clone(&first.files()[0]),
            Arc::clone(&changed.files()[0]),
        ];
        let second = Arc::new(DataPart::build(files, ExpositionOptions::default()));
        let a = first.escaped(EscapingScheme::Values).await;
        let b = second.escaped(EscapingScheme::Values).await;
        assert!(Arc::ptr_eq(&a.files()[0], &b.files()[0]));
        assert!(!Arc::ptr_eq(&a.files()[1], &b.files()[1]));
        assert!(
            b.classic_text().contains("U__changing_2e_one 2\n"),
            "{}",
            b.classic_text()
        );
    }

    /// Files, a chunk of each, and publications of chunks one after the other with one
    /// [`Carry`], as the engine keeps it.
    struct OneChunkPerFile {
        files: Vec<Arc<FileSnapshot>>,
        chunks: Vec<Arc<DataChunk>>,
        carry: Arc<Carry>,
    }

    impl OneChunkPerFile {
        fn new(contents: &[(&str, &str)]) -> OneChunkPerFile {
            let files = data_of(contents).files();
            let chunks = files
                .iter()
                .map(|f| {
                    Arc::new(DataChunk::build(
                        vec![Arc::clone(f)],
                        &ExpositionOptions::default(),
                    ))
                })
                .collect();
            OneChunkPerFile {
                files,
                chunks,
                carry: Arc::new(Carry::default()),
            }
        }

        /// The publication of the chunks at `which`.
        fn publish(&self, which: &[usize]) -> Arc<DataPart> {
            Arc::new(DataPart::assemble(
                which.iter().map(|&i| Arc::clone(&self.chunks[i])).collect(),
                ExpositionOptions::default(),
                false,
                Arc::clone(&self.carry),
            ))
        }
    }

    /// Publications one after the other over chunks of one file, with one [`Carry`] as the
    /// engine keeps it: each chunk is escaped once, and the variant's series index follows
    /// the escaped chunks (a collision once escaped comes and goes with its file).
    #[tokio::test]
    async fn an_escaped_variant_follows_the_chunks_from_one_publication_to_the_next() {
        let set = OneChunkPerFile::new(&[
            ("/d/a.prom", "# TYPE \"a.b\" gauge\n{\"a.b\"} 1\n"),
            ("/d/b.prom", "# TYPE a_b gauge\na_b 2\n"),
            ("/d/c.prom", "# TYPE \"c.d\" gauge\n{\"c.d\"} 3\n"),
        ]);
        let (files, chunks) = (&set.files, &set.chunks);
        let publish = |which: &[usize]| set.publish(which);
        let options = ExpositionOptions::default();
        let from_scratch = |which: &[usize]| {
            Arc::new(DataPart::build(
                which.iter().map(|&i| Arc::clone(&files[i])).collect(),
                options.clone(),
            ))
        };
        let scheme = EscapingScheme::Underscores;
        let mut kept: Option<Arc<DataChunk>> = None;
        for which in [&[0, 2][..], &[0, 1, 2], &[0, 2], &[1, 2], &[0, 1, 2]] {
            let variant = publish(which).escaped(scheme).await;
            let want = from_scratch(which).escaped(scheme).await;
            assert_eq!(variant.classic_text(), want.classic_text(), "{which:?}");
            assert_eq!(variant.conflicts, want.conflicts, "{which:?}");
            assert_eq!(
                variant.is_concatenated(),
                !which.contains(&1) || !which.contains(&0),
                "{which:?}"
            );
            // a.prom's chunk is escaped once and kept with the chunk.
            if which[0] == 0 {
                let escaped = Arc::clone(&variant.chunks()[0]);
                assert!(!Arc::ptr_eq(&escaped, &chunks[0]));
                if let Some(k) = &kept {
                    assert!(Arc::ptr_eq(k, &escaped));
                }
                kept = Some(escaped);
            }
        }
    }

    /// A publication whose chunks all escape as themselves is its own variant; the chunks seen
    /// to do so are remembered by index, and a chunk put in one's place is looked at.
    #[tokio::test]
    async fn a_chunk_that_needs_escaping_in_the_place_of_one_that_did_not_is_escaped() {
        let set = OneChunkPerFile::new(&[
            ("/d/x.prom", "# TYPE x gauge\nx 1\n"),
            ("/d/y.prom", "# TYPE y gauge\ny 2\n"),
            ("/d/z.prom", "# TYPE \"z.z\" gauge\n{\"z.z\"} 3\n"),
        ]);
        let publish = |which: &[usize]| set.publish(which);
        let scheme = EscapingScheme::Underscores;
        for (which, itself) in [
            ([0, 1], true),
            ([0, 2], false),
            ([0, 1], true),
            ([2, 1], false),
        ] {
            let data = publish(&which);
            let variant = data.escaped(scheme).await;
            assert_eq!(Arc::ptr_eq(&variant, &data), itself, "{which:?}");
            if !itself {
                assert!(variant.classic_text().contains("z_z 3\n"), "{which:?}");
            }
        }
    }

    #[tokio::test]
    async fn legacy_files_are_shared_by_every_variant_but_dots() {
        let data = data_of(&[("/d/b.prom", "# TYPE plain gauge\nplain{a=\"{\\\"x\"} 1\n")]);
        assert!(Arc::ptr_eq(
            &data,
            &data.escaped(EscapingScheme::Underscores).await
        ));
        assert!(Arc::ptr_eq(
            &data,
            &data.escaped(EscapingScheme::Values).await
        ));
    }

    #[tokio::test]
    async fn a_series_with_a_label_twice_once_escaped_is_left_out() {
        let data = data_of(&[(
            "/d/a.prom",
            "# TYPE x gauge\nx{\"a.b\"=\"1\",a_b=\"2\"} 1\nx{\"a.b\"=\"3\"} 2\n",
        )]);
        let under = data.escaped(EscapingScheme::Underscores).await;
        let served = under.classic_text();
        assert_eq!(served, "# TYPE x gauge\nx{a_b=\"3\"} 2\n");
        let values = data.escaped(EscapingScheme::Values).await;
        let served = values.classic_text();
        assert!(
            served.contains("x{U__a_2e_b=\"1\",a_b=\"2\"} 1\n"),
            "{served}"
        );
    }

    #[tokio::test]
    async fn names_that_collide_once_escaped_are_conflicts() {
        let data = data_of(&[
            ("/d/a.prom", "# TYPE \"a.b\" gauge\n{\"a.b\"} 1\n"),
            ("/d/b.prom", "# TYPE a_b gauge\na_b 2\n"),
        ]);
        assert!(data.conflicts.is_empty());
        let under = data.escaped(EscapingScheme::Underscores).await;
        assert_eq!(under.conflicts.len(), 1, "{:?}", under.conflicts);
        assert_eq!(under.conflicts[0].kind, "duplicate_series");
        let served = under.classic_text();
        assert_eq!(
            served.lines().filter(|l| l.starts_with("a_b ")).count(),
            1,
            "{served}"
        );
        let mut w = MetaWriter::default();
        escaped::write_metrics(&mut w);
        assert!(
            w.classic
                .contains("promdrop_escaping_conflicts_total{escaping=\"underscores\"} "),
            "{}",
            w.classic
        );
        assert!(
            !w.classic
                .contains("promdrop_escaping_conflicts_total{escaping=\"underscores\"} 0\n"),
            "{}",
            w.classic
        );
    }
}
