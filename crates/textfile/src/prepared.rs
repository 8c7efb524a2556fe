//! Files prepared for merging: parsed once when they change, kept compact, and merged by
//! concatenating prepared text.
//!
//! When a file is read, its families are parsed once and turned into a [`Prepared`] value:
//! per family its name, type, HELP and unit, and its sample lines already rendered, in the
//! classic format (one range per classic block: the main one and the `_created`, `_gsum`,
//! `_gcount` gauges a classic client splits off) and in OpenMetrics; plus a digest of its
//! series' 64-bit hashes. The text is stored once per file, packed ([`PackedText`]: its
//! lines compressed, a block a range, the HELP and TYPE lines between them shared with the
//! files that have the same); when the file's bytes end with that text (a file written by a
//! client library does), the file keeps only what comes before it
//! ([`crate::snapshot::Content`]). The series hashes are checked to be what the text gives
//! back when parsed, and then made again from it when the [`SeriesIndex`] needs them, not
//! kept.
//!
//! Publishing then does no parsing: [`render_classic`] groups the prepared families by name
//! (the first file fixes TYPE, the first HELP and unit win, a family of another TYPE is
//! dropped from the later file and reported), writes one HELP/TYPE block per family and copies
//! each file's lines under it. That is exactly what `promdrop_textformat::merge` followed by
//! `render_classic_into` gives when no series is in two places, which [`SeriesIndex`] tells
//! (kept up to date file by file). Merging a duplicate series serves the newer file's sample in
//! the older one's place: the rare case that falls back to the full merge (see
//! the exporter's `DataPart`). OpenMetrics has one more case that needs the full merge: a classic
//! `x_created` gauge that the renderer folds into the counter `x`, when the two do not come
//! from one file alone ([`render_openmetrics`] returns `false` then).

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use promdrop_textformat::{
    HashedMap, Label, MetricFamily, MetricType, NameTable, NameUse, OpenMetricsPlan,
    escape_label_value, family_bounds, family_names, om_family_name, om_folding, om_type,
    render_classic_into, render_openmetrics_into, series_hash,
};

use crate::conflict::ConflictRecord;
use crate::hash_shards::HashShards;
use crate::intern::Interned;
use crate::packed::PackedText;

/// The exposition options that change what a file's prepared text is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrepareOptions {
    /// `--timestamps=strip`.
    pub strip_timestamps: bool,
    /// `--source-label`.
    pub source_label: Option<Box<str>>,
    /// The names of the families the merge leaves out, for the serving program to judge (the
    /// families it serves itself, classic names; a counter `x` is reserved by `x_total`).
    /// Empty: none.
    pub reserved: &'static [&'static str],
    /// `--textfile.tenancy-label` when `--textfile.tenancy` is on: every sample gets this
    /// label, valued with the name of the file's directory (its namespace, [`Origin::tenant`]).
    pub tenancy_label: Option<Box<str>>,
    /// `--textfile.job-name-from-path`: every sample's `job_name` is the file's name
    /// ([`Origin::job_name`]).
    pub job_name_from_path: bool,
}

/// The label that `--textfile.job-name-from-path` sets.
pub const JOB_NAME_LABEL: &str = "job_name";

/// The label an indexed Job's writer adds (`completion_index`), which tells `<job>-<index>.prom`
/// from a job whose name ends in `-<digits>`.
pub const COMPLETION_INDEX_LABEL: &str = "completion_index";

/// Where a file comes from, as far as its labels are concerned: its name, the namespace its
/// directory names (with tenancy) and the families withheld from it because another namespace
/// declares them with another TYPE (see the exporter's engine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The file's name (`backup.prom`): the value of `--source-label`.
    pub file_name: String,
    /// The name of the directory the file is in: its namespace, with tenancy.
    pub tenant: String,
    /// Families left out of this file (cross-namespace TYPE conflicts).
    pub withheld: Vec<Box<str>>,
}

impl Origin {
    /// The origin of the file at `path`, nothing withheld.
    pub fn of(path: &std::path::Path) -> Origin {
        let name =
            |p: Option<&std::ffi::OsStr>| p.map(crate::discovery::label_value).unwrap_or_default();
        Origin {
            file_name: name(path.file_name()),
            tenant: name(path.parent().and_then(|p| p.file_name())),
            withheld: Vec::new(),
        }
    }

    /// The `job_name` of a sample of this file with `--textfile.job-name-from-path`: the file
    /// name without `.prom`, and without `-<index>` when the sample's `completion_index` is
    /// that index (the writer names an indexed Job's files `<job>-<index>.prom`).
    ///
    /// ```
    /// use promdrop_textfile::prepared::Origin;
    /// let origin = Origin::of("/var/lib/promdrop/team-a/backup-3.prom".as_ref());
    /// assert_eq!(origin.tenant, "team-a");
    /// assert_eq!(origin.job_name(Some("3")), "backup");
    /// assert_eq!(origin.job_name(None), "backup-3");
    /// assert_eq!(origin.job_name(Some("4")), "backup-3");
    /// ```
    pub fn job_name(&self, completion_index: Option<&str>) -> &str {
        let stem = self
            .file_name
            .strip_suffix(".prom")
            .unwrap_or(&self.file_name);
        if let Some(index) = completion_index.filter(|i| !i.is_empty())
            && let Some(job) = stem
                .strip_suffix(index)
                .and_then(|rest| rest.strip_suffix('-'))
            && !job.is_empty()
        {
            return job;
        }
        stem
    }
}

/// Sets label `name` of `labels` to `value`, keeping a different value the sample had as
/// `exported_<name>` (Prometheus's `honor_labels: false` convention; `exported_exported_<name>`
/// when that is taken too). An empty value counts as absent, as in Prometheus.
fn set_owned_label<'a>(labels: &mut Vec<Label<'a>>, name: &'a str, value: &'a str) {
    match labels.iter().position(|l| l.name == name) {
        Some(i) if labels[i].value.is_empty() || labels[i].value == value => {
            labels[i].value = Cow::Borrowed(value);
        }
        Some(i) => {
            let mut exported = format!("exported_{name}");
            while labels.iter().any(|l| l.name == exported.as_str()) {
                exported.insert_str(0, "exported_");
            }
            let own = std::mem::replace(&mut labels[i].value, Cow::Borrowed(value));
            labels.push(Label::new(Cow::Owned(exported), own));
        }
        None => labels.push(Label::new(Cow::Borrowed(name), value)),
    }
}

impl PrepareOptions {
    /// Whether `family` is one of [`PrepareOptions::reserved`], by its name or by the name
    /// OpenMetrics suffix rules give its samples: a counter `x` is served as `x_total`, an
    /// info `x` as `x_info`.
    pub fn is_reserved(&self, family: &MetricFamily<'_>) -> bool {
        let name: &str = &family.name;
        let suffixed = |suffix: &str| {
            self.reserved
                .iter()
                .any(|r| r.strip_suffix(suffix) == Some(name))
        };
        self.reserved.contains(&name)
            || (family.metric_type == MetricType::Counter && suffixed("_total"))
            || (family.metric_type == MetricType::Info && suffixed("_info"))
    }
}

/// What a family of a prepared file is, apart from its lines: its name, HELP, type, unit and
/// the names and bounds the merge compares. Files written by one client library have the same
/// shapes, so shapes are shared ([`FamilyShape::intern`]): a directory of 10,000 such files
/// keeps each once, not 10,000 times, and a chunk's merge compares them in memory that is
/// already in the cache (each file's own copy was a cache miss per string, the largest cost
/// of a change at 1,000 files).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FamilyShape {
    /// The family name.
    pub name: Box<str>,
    /// The HELP text, unescaped.
    pub help: Option<Box<str>>,
    /// The type.
    pub metric_type: MetricType,
    /// The OpenMetrics unit.
    pub unit: Option<Box<str>>,
    /// Classic: the name of the main block when it is not the family name (a counter's
    /// samples name it).
    pub(crate) main_name: Option<Box<str>>,
    /// OpenMetrics: the family's name when not the family name.
    pub(crate) om_name: Option<Box<str>>,
    /// OpenMetrics: this `x_created` gauge was folded into the counter `x` of the same file.
    pub(crate) om_folded: bool,
    /// OpenMetrics: a gauge was folded into this family.
    pub(crate) om_folds: bool,
    /// OpenMetrics: the family has `_created` samples of its own.
    pub(crate) om_has_created: bool,
    /// OpenMetrics: a counter written as `unknown` (a sample named as the family, without
    /// `_total`).
    pub(crate) om_unknown: bool,
    /// Every name the family holds in either format (`promdrop_textformat::family_names`),
    /// for the rule on families of different names that clash.
    pub(crate) names: HeldNames,
    /// A histogram's bucket bounds or a summary's quantiles
    /// (`promdrop_textformat::family_bounds`); empty for other types.
    pub(crate) bounds: Box<[Box<str>]>,
    /// The names of the family's samples, each run of one name once, in order: with the name
    /// and type, what `names` is made from, so that a family can be matched with a shape
    /// without making its names ([`FamilyShape::intern_view`]).
    sample_names: Box<[Box<str>]>,
}

impl FamilyShape {
    pub(crate) fn om_name(&self) -> &str {
        self.om_name.as_deref().unwrap_or(&self.name)
    }

    pub(crate) fn main_name(&self) -> &str {
        self.main_name.as_deref().unwrap_or(&self.name)
    }

    /// The shape equal to `shape` that is already in use, or `shape` itself, shared from now
    /// on. The table forgets the shapes no file uses any more as it grows: it holds at most
    /// about twice the shapes in use, plus a thousand.
    pub fn intern(shape: FamilyShape) -> Arc<FamilyShape> {
        let key = ShapeView::of_shape(&shape).key();
        let mut shapes = Shapes::lock();
        if let Some(kept) = shapes.find(key, |kept| **kept == shape) {
            return kept;
        }
        shapes.insert(key, shape)
    }

    /// The shape `view` describes: the one in use, found without making anything, or else a
    /// new one, made from `family` (its names and bounds) and shared from now on. A family
    /// with bucket bounds or quantiles is matched on them too ([`FamilyShape::intern`]).
    fn intern_view(view: &ShapeView<'_>, family: &MetricFamily<'_>) -> Arc<FamilyShape> {
        let bounds: Box<[Box<str>]> = family_bounds(family)
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        if !bounds.is_empty() {
            return FamilyShape::intern(view.to_shape(family, bounds));
        }
        let key = view.key();
        let mut shapes = Shapes::lock();
        if let Some(kept) = shapes.find(key, |kept| kept.bounds.is_empty() && view.is(kept)) {
            return kept;
        }
        shapes.insert(key, view.to_shape(family, bounds))
    }
}

/// What a shape is made from, borrowed from a parsed family (its names and bounds aside):
/// enough to find the shape in use with one small allocation (the list of sample names), where
/// making the shape takes a dozen (its names are strings made with `format!`).
#[derive(Clone, PartialEq, Eq, Hash)]
struct ShapeView<'a> {
    name: &'a str,
    help: Option<&'a str>,
    metric_type: MetricType,
    unit: Option<&'a str>,
    main_name: Option<&'a str>,
    om_name: Option<&'a str>,
    om_folded: bool,
    om_folds: bool,
    om_has_created: bool,
    om_unknown: bool,
    sample_names: Vec<&'a str>,
}

impl<'a> ShapeView<'a> {
    fn of_shape(shape: &'a FamilyShape) -> ShapeView<'a> {
        ShapeView {
            name: &shape.name,
            help: shape.help.as_deref(),
            metric_type: shape.metric_type,
            unit: shape.unit.as_deref(),
            main_name: shape.main_name.as_deref(),
            om_name: shape.om_name.as_deref(),
            om_folded: shape.om_folded,
            om_folds: shape.om_folds,
            om_has_created: shape.om_has_created,
            om_unknown: shape.om_unknown,
            sample_names: shape.sample_names.iter().map(|n| &**n).collect(),
        }
    }

    /// A hash of everything but the names and bounds (the table's key).
    fn key(&self) -> u64 {
        use std::hash::BuildHasher;
        // One seed for the process (the table lives as long as it), chosen at random: a file
        // cannot know in advance which shapes share a key (std's `DefaultHasher::new()`, used
        // before, has fixed keys). Shapes that do share one are told apart by `is`.
        static STATE: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
        STATE.get_or_init(Default::default).hash_one(self)
    }

    /// Whether `shape` is what this view describes. Its names are then this family's too:
    /// `family_names` makes them from the name, the type and the sample names alone.
    fn is(&self, shape: &FamilyShape) -> bool {
        ShapeView::of_shape(shape) == *self
    }

    /// The shape, made: `family`'s names, and `bounds`.
    fn to_shape(&self, family: &MetricFamily<'_>, bounds: Box<[Box<str>]>) -> FamilyShape {
        let owned = |s: Option<&str>| s.map(Box::from);
        FamilyShape {
            name: Box::from(self.name),
            help: owned(self.help),
            metric_type: self.metric_type,
            unit: owned(self.unit),
            main_name: owned(self.main_name),
            om_name: owned(self.om_name),
            om_folded: self.om_folded,
            om_folds: self.om_folds,
            om_has_created: self.om_has_created,
            om_unknown: self.om_unknown,
            names: held_names(family),
            bounds,
            sample_names: self.sample_names.iter().map(|n| Box::from(*n)).collect(),
        }
    }
}

/// The names of `family`'s samples, each run of one name once, in order.
fn sample_names<'a>(family: &'a MetricFamily<'_>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for sample in &family.samples {
        if out.last() != Some(&&*sample.name) {
            out.push(&sample.name);
        }
    }
    out
}

/// The shapes in use ([`FamilyShape::intern`]), by [`ShapeView::key`].
struct Shapes;

impl Shapes {
    fn lock() -> std::sync::MutexGuard<'static, Interned<FamilyShape>> {
        static SHAPES: std::sync::Mutex<Interned<FamilyShape>> =
            std::sync::Mutex::new(Interned::new());
        Interned::lock(&SHAPES)
    }
}

/// One family of a prepared file: its shape (shared), and where its lines are in the file's
/// prepared text. Its shape's fields read as its own (`family.name`).
#[derive(Debug)]
pub struct PreparedFamily {
    shape: Arc<FamilyShape>,
    /// Classic sample lines: the main block, then the split-off gauges in the order of
    /// [`split_suffixes`]. Ranges into [`Prepared::classic`]; empty when absent.
    pub(crate) classic: [Range<u32>; 3],
    /// OpenMetrics sample lines (with any folded `_created` samples interleaved), a range
    /// into [`Prepared::classic`] when `om_in_classic` (they are the classic main block's
    /// lines, byte for byte), else into [`Prepared::openmetrics`].
    pub(crate) om: Range<u32>,
    /// Whether `om` is a range of the classic text.
    pub(crate) om_in_classic: bool,
}

impl std::ops::Deref for PreparedFamily {
    type Target = FamilyShape;

    fn deref(&self) -> &FamilyShape {
        &self.shape
    }
}

impl PreparedFamily {
    /// Its shape, shared with the families of other files that have the same.
    pub fn shape(&self) -> &Arc<FamilyShape> {
        &self.shape
    }
}

/// A family while its file is prepared: its shape not yet shared.
struct FamilyDraft<'a> {
    /// What its shape is made from (its main block's name apart, kept in `main_name`).
    view: ShapeView<'a>,
    main_name: Option<Box<str>>,
    classic: [Range<u32>; 3],
    om: Range<u32>,
    om_in_classic: bool,
}

impl<'a> FamilyDraft<'a> {
    /// A draft with this one's shape and classic lines, and no OpenMetrics lines yet (for a
    /// debug check).
    fn lines_only(&self) -> FamilyDraft<'a> {
        FamilyDraft {
            view: self.view.clone(),
            main_name: self.main_name.clone(),
            classic: self.classic.clone(),
            om: 0..0,
            om_in_classic: false,
        }
    }

    /// The family, its shape looked up (or made from `family`, what it was drafted from).
    fn finish(self, family: &MetricFamily<'_>) -> PreparedFamily {
        let view = ShapeView {
            main_name: self.main_name.as_deref(),
            ..self.view
        };
        PreparedFamily {
            shape: FamilyShape::intern_view(&view, family),
            classic: self.classic,
            om: self.om,
            om_in_classic: self.om_in_classic,
        }
    }
}

/// A file's families, ready to merge: see the [module docs](self).
#[derive(Debug)]
pub struct Prepared {
    /// The options it was prepared with.
    pub options: PrepareOptions,
    /// The families, in file order, reserved and withheld ones left out.
    pub families: Vec<PreparedFamily>,
    /// The names of the reserved families the file had (left out of the merge).
    pub reserved: Vec<Box<str>>,
    /// The families withheld ([`Origin::withheld`]) with their types (left out).
    pub withheld: Vec<(Box<str>, MetricType)>,
    /// The names each withheld family holds in either format (as [`Prepared::withheld`] lists
    /// them), for the engine's rule on names that clash between namespaces.
    pub withheld_names: Vec<HeldNames>,
    /// Bucket bounds and quantiles are compared only between files of one scope: with
    /// tenancy, the namespace (its label is on every series, so two namespaces' series never
    /// mix); else empty.
    pub scope: Box<str>,
    /// The classic rendering, families' headers and lines: the lines packed, a block a
    /// range, the headers shared with the files that have the same ([`PackedText`]).
    pub(crate) classic: PackedText,
    /// The OpenMetrics lines that differ from the classic ones, packed as `classic` is.
    pub(crate) openmetrics: PackedText,
    /// Whether the file's bytes end with the classic rendering (client-library and
    /// promdrop-writer output does): then the file is kept as what comes before it and
    /// this text ([`crate::snapshot::Content`]).
    pub(crate) classic_ends_file: bool,
    /// Whether the classic text could be split by family (else output with this file takes
    /// the full merge).
    pub(crate) ok: bool,
    /// Whether the OpenMetrics text could be split by family (else OpenMetrics output with
    /// this file takes the full merge).
    pub(crate) om_ok: bool,
    /// The series hashes, kept only when the classic text does not give them back
    /// ([`Prepared::hashes`]: 8 bytes a series, 8 MB at a million).
    hashes: Option<Box<[u64]>>,
    /// What tells one set of series hashes from another ([`SeriesDigest`]).
    digest: SeriesDigest,
    /// Whether every name of the file is a legacy one
    /// ([`promdrop_textformat::legacy_names_only`]).
    legacy_names: bool,
}

/// The series hashes of a file as a set with repeats, in 24 bytes: their number and two sums
/// of two differently seeded hashes of them (so the order of the series does not count).
/// Equal sets give equal digests; two different sets rarely the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeriesDigest {
    count: u64,
    sums: [u64; 2],
}

impl SeriesDigest {
    fn of(hashes: &[u64]) -> SeriesDigest {
        use std::hash::BuildHasher;
        // Seeded at random once per process (digests are compared within one), so a file
        // cannot be written to have another's digest.
        static MIXES: std::sync::OnceLock<[foldhash::quality::RandomState; 2]> =
            std::sync::OnceLock::new();
        let mixes = MIXES.get_or_init(Default::default);
        let mut sums = [0u64; 2];
        for &h in hashes {
            for (sum, mix) in sums.iter_mut().zip(mixes) {
                *sum = sum.wrapping_add(mix.hash_one(h));
            }
        }
        SeriesDigest {
            count: hashes.len() as u64,
            sums,
        }
    }
}

/// Whether `text` holds only comments that parse to nothing (not `# HELP`, `# TYPE`, `# UNIT`
/// or `# EOF`) and blank lines.
fn only_plain_comments(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n').all(|line| {
        let line = line.trim_ascii();
        line.is_empty()
            || line.strip_prefix(b"#").is_some_and(|rest| {
                let word = rest.trim_ascii_start();
                let word = word
                    .split(|b| b.is_ascii_whitespace())
                    .next()
                    .unwrap_or(word);
                !matches!(word, b"HELP" | b"TYPE" | b"UNIT" | b"EOF")
            })
    })
}

/// `hashes`, unless parsing `text` gives them back (as a set with repeats).
fn unless_given_back(hashes: Vec<u64>, text: &[u8]) -> Option<Box<[u64]>> {
    match hashes_of_classic(text) {
        Some(mut again) if again.len() == hashes.len() => {
            let mut sorted = hashes.clone();
            sorted.sort_unstable();
            again.sort_unstable();
            (again != sorted).then(|| hashes.into_boxed_slice())
        }
        _ => Some(hashes.into_boxed_slice()),
    }
}

/// The series hashes of classic `text`, as [`Prepared::build`] rendered it: `None` when it
/// does not parse. The text was a file's, within its limits, rendered again: no limit here.
fn hashes_of_classic(text: &[u8]) -> Option<Vec<u64>> {
    let limits = promdrop_textformat::ParseLimits {
        max_bytes: usize::MAX,
        max_line_length: usize::MAX,
        max_labels_per_sample: usize::MAX,
        max_label_value_length: usize::MAX,
        max_series: usize::MAX,
    };
    let exposition =
        promdrop_textformat::parse_with_limits(text, promdrop_textformat::Format::Classic, &limits)
            .ok()?;
    Some(
        exposition
            .families
            .iter()
            .flat_map(|f| f.samples.iter().map(series_hash))
            .collect(),
    )
}

/// The suffixes of the samples a classic client writes as gauges of their own.
pub(crate) fn split_suffixes(metric_type: MetricType) -> &'static [&'static str] {
    match metric_type {
        MetricType::Counter | MetricType::Histogram | MetricType::Summary => &["_created"],
        MetricType::GaugeHistogram => &["_gcount", "_gsum"],
        _ => &[],
    }
}

/// Applies the options to parsed families as the merge does: reserved families out (their
/// names returned), withheld ones out, timestamps stripped, the source label set to the file's
/// name, the tenancy label and `job_name` set from the file's path (a different value the file
/// had kept as `exported_<label>`).
pub fn apply_options<'a>(
    families: &mut Vec<MetricFamily<'a>>,
    options: &'a PrepareOptions,
    origin: &'a Origin,
) -> Vec<Box<str>> {
    let mut reserved = Vec::new();
    families.retain(|family| {
        if options.is_reserved(family) {
            reserved.push(Box::from(family.name.as_ref()));
            return false;
        }
        !origin.withheld.iter().any(|w| **w == *family.name)
    });
    let strip = options.strip_timestamps;
    let relabel = options.source_label.is_some()
        || options.tenancy_label.is_some()
        || options.job_name_from_path;
    if strip || relabel {
        for sample in families.iter_mut().flat_map(|f| f.samples.iter_mut()) {
            if strip {
                sample.timestamp = None;
            }
            if let Some(label) = &options.source_label {
                match sample.labels.iter_mut().find(|l| l.name == label.as_ref()) {
                    Some(existing) => existing.value = Cow::Borrowed(&origin.file_name),
                    None => sample.labels.push(Label::new(
                        Cow::Borrowed(label.as_ref()),
                        &*origin.file_name,
                    )),
                }
            }
            if let Some(label) = &options.tenancy_label {
                set_owned_label(&mut sample.labels, label, &origin.tenant);
            }
            if options.job_name_from_path {
                let index = sample
                    .labels
                    .iter()
                    .find(|l| l.name == COMPLETION_INDEX_LABEL)
                    .map(|l| l.value.as_ref());
                let job = origin.job_name(index);
                set_owned_label(&mut sample.labels, JOB_NAME_LABEL, job);
            }
        }
    }
    reserved
}

/// A block of rendered text: the name on its `# TYPE` line and the range of its sample
/// lines.
struct Block {
    name: Range<usize>,
    samples: Range<usize>,
}

/// The length of the name at the start of `rest` (the rest of a `# TYPE` line): up to the first
/// space, or a quoted name with its quotes (`"a b"`, escapes skipped).
fn name_token_len(rest: &str) -> usize {
    let bytes = rest.as_bytes();
    if bytes.first() != Some(&b'"') {
        return rest.find(' ').unwrap_or(0);
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    0
}

/// The name a `# TYPE` line's name token stands for: the token, or a quoted one unquoted and
/// unescaped (as the renderer quotes UTF-8 names).
fn token_name(token: &str) -> Cow<'_, str> {
    match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if inner.contains('\\') => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(other) => out.push(other),
                        None => {}
                    },
                    (c, false) => out.push(c),
                }
            }
            Cow::Owned(out)
        }
        Some(inner) => Cow::Borrowed(inner),
        None => Cow::Borrowed(token),
    }
}

/// Splits rendered text into blocks: header lines (`# HELP`, `# TYPE`, `# UNIT`), then
/// sample lines. A new block starts at `# HELP`, or at `# TYPE` when the block has one.
fn blocks(text: &str, base: usize) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut has_type = false;
    let mut in_samples = false;
    let mut pos = 0;
    let bytes = text.as_bytes();
    while pos < bytes.len() {
        let end = text[pos..].find('\n').map_or(bytes.len(), |i| pos + i + 1);
        let line = &text[pos..end];
        if line.starts_with('#') {
            let is_type = line.starts_with("# TYPE ");
            if line.starts_with("# HELP ") || (is_type && has_type) || in_samples {
                out.push(Block {
                    name: 0..0,
                    samples: base + end..base + end,
                });
                has_type = false;
                in_samples = false;
            }
            if out.is_empty() {
                out.push(Block {
                    name: 0..0,
                    samples: base + end..base + end,
                });
            }
            if let Some(block) = out.last_mut() {
                if is_type {
                    has_type = true;
                    let name_start = pos + "# TYPE ".len();
                    let name_len = name_token_len(&text[name_start..end]);
                    block.name = base + name_start..base + name_start + name_len;
                }
                block.samples = base + end..base + end;
            }
        } else if let Some(block) = out.last_mut() {
            in_samples = true;
            block.samples.end = base + end;
        }
        pos = end;
    }
    out
}

/// The `# HELP`, `# TYPE` and `# UNIT` lines of an OpenMetrics family called `name` (an empty
/// unit is not written), as the merges write them above the files' lines.
pub(crate) fn write_openmetrics_header(
    name: &str,
    help: Option<&str>,
    metric_type: MetricType,
    unit: Option<&str>,
    out: &mut String,
) {
    if let Some(help) = help {
        out.push_str("# HELP ");
        promdrop_textformat::write_metric_name(name, out);
        out.push(' ');
        escape_label_value(help, out);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    promdrop_textformat::write_metric_name(name, out);
    out.push(' ');
    out.push_str(metric_type.openmetrics_name());
    out.push('\n');
    if let Some(unit) = unit.filter(|u| !u.is_empty()) {
        out.push_str("# UNIT ");
        promdrop_textformat::write_metric_name(name, out);
        out.push(' ');
        out.push_str(unit);
        out.push('\n');
    }
}

fn to_u32(range: Range<usize>) -> Option<Range<u32>> {
    Some(u32::try_from(range.start).ok()?..u32::try_from(range.end).ok()?)
}

/// `ranges` in ascending order, as offsets (a family's lines: [`PackedText::pack_ranges`]).
fn sorted(ranges: impl Iterator<Item = Range<u32>>) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = ranges.map(|r| r.start as usize..r.end as usize).collect();
    ranges.sort_unstable_by_key(|r| r.start);
    ranges
}

/// The largest capacity a thread keeps in its render buffers between files.
const KEPT_RENDER_CAPACITY: usize = 1 << 20;

thread_local! {
    /// Each reading thread's buffers for a file's classic and OpenMetrics renderings, which
    /// are compared with the file's bytes and its classic lines and then mostly dropped
    /// (client output reads as it renders): reused, they cost no allocation of the file's
    /// size per read. With glibc, such an allocation took a scan of the free lists: two
    /// thirds of the allocator's time in a read, 4% of a change's CPU at 1,000 files.
    static RENDER_BUFFERS: std::cell::RefCell<(String, String)> =
        const { std::cell::RefCell::new((String::new(), String::new())) };
}

/// Runs `f` with this thread's render buffers, empty, and empties them after.
fn with_render_buffers<T>(f: impl FnOnce(&mut String, &mut String) -> T) -> T {
    RENDER_BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
        Ok(mut buffers) => {
            let (classic, openmetrics) = &mut *buffers;
            classic.clear();
            openmetrics.clear();
            let out = f(classic, openmetrics);
            for buffer in [classic, openmetrics] {
                buffer.clear();
                if buffer.capacity() > KEPT_RENDER_CAPACITY {
                    buffer.shrink_to(KEPT_RENDER_CAPACITY);
                }
            }
            out
        }
        // Only if `f` itself prepared a file: buffers of its own.
        Err(_) => f(&mut String::new(), &mut String::new()),
    })
}

/// Whether the OpenMetrics renderer writes `family`'s samples exactly as the classic one
/// writes its main block, so that rendering it again can be skipped: a counter, gauge,
/// histogram, summary or untyped family with no timestamp or exemplar and no sample that the
/// classic format splits off (`_created`). Folding (`om_folding`) is checked apart.
fn om_lines_are_classic(family: &MetricFamily<'_>) -> bool {
    let suffixes = split_suffixes(family.metric_type);
    matches!(
        family.metric_type,
        MetricType::Counter
            | MetricType::Gauge
            | MetricType::Histogram
            | MetricType::Summary
            | MetricType::Unknown
    ) && family.samples.iter().all(|s| {
        s.timestamp.is_none()
            && s.exemplar.is_none()
            && !s
                .name
                .strip_prefix(family.name.as_ref())
                .is_some_and(|rest| suffixes.contains(&rest))
    })
}

/// Renders `families` in OpenMetrics into `openmetrics` and finds each draft's lines there
/// (its block, matched by name; none for a folded family). Lines equal to the draft's classic
/// main lines are taken from the classic text (`om_in_classic`); the others are returned, one
/// after the other, with whether every family was found (else OpenMetrics output with this
/// file takes the full merge).
fn openmetrics_lines(
    families: &[MetricFamily<'_>],
    prepared: &mut [FamilyDraft],
    classic: &str,
    openmetrics: &mut String,
    folded: &[bool],
    ok: bool,
) -> (bool, String) {
    // The whole file at once (the renderer folds `_created` gauges into their counter), then
    // its blocks matched to the families not folded.
    openmetrics.reserve(classic.len() + 64);
    render_openmetrics_into(families, openmetrics);
    if openmetrics.ends_with("# EOF\n") {
        openmetrics.truncate(openmetrics.len() - "# EOF\n".len());
    }
    let om_blocks = blocks(openmetrics, 0);
    let mut next = om_blocks.iter();
    let mut om_ok = ok;
    for (i, p) in prepared.iter_mut().enumerate() {
        if folded.get(i).copied().unwrap_or(false) {
            continue;
        }
        let om_name = p.view.om_name.unwrap_or(p.view.name);
        match next.next() {
            Some(block) if token_name(&openmetrics[block.name.clone()]) == *om_name => {
                match to_u32(block.samples.clone()) {
                    Some(r) => p.om = r,
                    None => om_ok = false,
                }
            }
            _ => om_ok = false,
        }
    }
    if next.next().is_some() {
        om_ok = false;
    }

    // A family's OpenMetrics lines are usually its classic lines byte for byte (only the
    // headers differ, and the headers are written apart): those are taken from the classic
    // text, and only the lines that differ (folded `_created` samples, other number forms)
    // are kept, so a file costs one copy of its text, not two.
    let mut om_own = String::new();
    for p in prepared.iter_mut().filter(|p| !p.om.is_empty()) {
        let Some(lines) = openmetrics.get(p.om.start as usize..p.om.end as usize) else {
            om_ok = false;
            continue;
        };
        let main = &p.classic[0];
        if classic.get(main.start as usize..main.end as usize) == Some(lines) {
            p.om = main.clone();
            p.om_in_classic = true;
        } else {
            let start = om_own.len();
            om_own.push_str(lines);
            match to_u32(start..om_own.len()) {
                Some(r) => p.om = r,
                None => om_ok = false,
            }
        }
    }
    (om_ok, om_own)
}

impl Prepared {
    /// Prepares parsed `families` of a file from `origin` (its bytes `raw`, to share when
    /// they are the rendered text) with `options`.
    pub fn build<'a>(
        families: Vec<MetricFamily<'a>>,
        raw: &Bytes,
        origin: &'a Origin,
        options: &'a PrepareOptions,
    ) -> Prepared {
        with_render_buffers(|classic, openmetrics| {
            Prepared::build_in(families, raw, origin, options, classic, openmetrics)
        })
    }

    fn build_in<'a>(
        mut families: Vec<MetricFamily<'a>>,
        raw: &Bytes,
        origin: &'a Origin,
        options: &'a PrepareOptions,
        classic: &mut String,
        openmetrics: &mut String,
    ) -> Prepared {
        // Of the file as written, before the options add or rename labels.
        let legacy_names = promdrop_textformat::legacy_names_only(&families);
        let as_written: Vec<u64> = families
            .iter()
            .flat_map(|f| f.samples.iter().map(series_hash))
            .collect();
        // `le` and `quantile` as node_exporter serves them (see `canonicalize_bounds`).
        promdrop_textformat::canonicalize_bounds(&mut families);
        let (withheld, withheld_names) = families
            .iter()
            .filter(|f| origin.withheld.iter().any(|w| **w == *f.name))
            .map(|f| ((Box::from(f.name.as_ref()), f.metric_type), held_names(f)))
            .unzip();
        let reserved = apply_options(&mut families, options, origin);

        let mut hashes = Vec::with_capacity(families.iter().map(|f| f.samples.len()).sum());
        classic.reserve(raw.len() + 64);
        let mut prepared: Vec<FamilyDraft> = Vec::with_capacity(families.len());
        let mut ok = true;
        for family in &families {
            hashes.extend(family.samples.iter().map(series_hash));
            let start = classic.len();
            render_classic_into(std::slice::from_ref(family), classic);
            let suffixes = split_suffixes(family.metric_type);
            let mut ranges: [Range<u32>; 3] = [0..0, 0..0, 0..0];
            let mut main_name = None;
            for block in blocks(&classic[start..], start) {
                let name = token_name(&classic[block.name.clone()]);
                let name = name.as_ref();
                let slot = suffixes
                    .iter()
                    .position(|s| name.strip_prefix(family.name.as_ref()) == Some(*s))
                    .map_or(0, |i| i + 1);
                if slot == 0 && name != family.name {
                    main_name = Some(Box::from(name));
                }
                match to_u32(block.samples) {
                    Some(r) => ranges[slot] = r,
                    None => ok = false,
                }
            }
            prepared.push(FamilyDraft {
                view: ShapeView {
                    name: &family.name,
                    help: family.help.as_deref(),
                    metric_type: family.metric_type,
                    unit: family.unit.as_deref(),
                    main_name: None,
                    om_name: None,
                    om_folded: false,
                    om_folds: false,
                    om_has_created: false,
                    om_unknown: om_type(family) != family.metric_type,
                    sample_names: sample_names(family),
                },
                main_name,
                classic: ranges,
                om: 0..0,
                om_in_classic: false,
            });
        }

        let OpenMetricsPlan {
            created_of, folded, ..
        } = om_folding(&families);
        for (i, (family, p)) in families.iter().zip(prepared.iter_mut()).enumerate() {
            let om_name = om_family_name(family);
            if om_name != family.name {
                p.view.om_name = Some(om_name);
            }
            p.view.om_has_created = family
                .samples
                .iter()
                .any(|s| s.name.strip_prefix(om_name) == Some("_created"));
            p.view.om_folds = created_of[i].is_some();
            p.view.om_folded = folded[i];
        }
        let reads_as_classic = families
            .iter()
            .enumerate()
            .all(|(i, f)| created_of[i].is_none() && !folded[i] && om_lines_are_classic(f));
        let (om_ok, om_own) = if ok && reads_as_classic {
            // Nothing to render: every family's OpenMetrics lines are its classic main lines.
            // (Debug builds, the tests', render them anyway and compare.)
            if cfg!(debug_assertions) {
                let mut rendered: Vec<FamilyDraft> =
                    prepared.iter().map(FamilyDraft::lines_only).collect();
                let (rendered_ok, own) =
                    openmetrics_lines(&families, &mut rendered, classic, openmetrics, &folded, ok);
                debug_assert!(rendered_ok && own.is_empty());
                for (p, r) in prepared.iter().zip(&rendered) {
                    let in_classic = !p.classic[0].is_empty();
                    debug_assert_eq!(r.om_in_classic, in_classic);
                    debug_assert!(!in_classic || r.om == p.classic[0]);
                }
            }
            for p in prepared.iter_mut().filter(|p| !p.classic[0].is_empty()) {
                p.om = p.classic[0].clone();
                p.om_in_classic = true;
            }
            (ok, String::new())
        } else {
            openmetrics_lines(&families, &mut prepared, classic, openmetrics, &folded, ok)
        };
        let digest = SeriesDigest::of(&hashes);
        let classic_ends_file = !classic.is_empty() && raw.ends_with(classic.as_bytes());
        // The hashes are kept only when parsing the classic text does not give them back;
        // else they are made again when the series index needs them (a file that came,
        // whose series changed, or went). A file that ends with that text after comments
        // alone (client-library and writer output) is what the text parses to: it gives
        // them back when the options changed no series. Any other file is checked by a
        // parse of the text just rendered (a third of a change's work when done for all).
        let given_back = classic_ends_file
            && as_written == hashes
            && only_plain_comments(&raw[..raw.len() - classic.len()]);
        if cfg!(debug_assertions) && given_back {
            debug_assert_eq!(unless_given_back(hashes.clone(), classic.as_bytes()), None);
        }
        let hashes = if given_back {
            None
        } else {
            unless_given_back(hashes, classic.as_bytes())
        };
        let classic_ranges = prepared.iter().flat_map(|p| p.classic.iter().cloned());
        let classic = PackedText::pack_ranges(classic.as_bytes(), &sorted(classic_ranges));
        let om_ranges = prepared
            .iter()
            .filter(|p| !p.om_in_classic)
            .map(|p| p.om.clone());
        let openmetrics = PackedText::pack_ranges(om_own.as_bytes(), &sorted(om_ranges));
        // Not `collect()`: it would reuse the drafts' buffer, three times the size of the
        // families (11 MB held for nothing at 10,000 files of ten families).
        let mut finished = Vec::with_capacity(prepared.len());
        finished.extend(
            prepared
                .into_iter()
                .zip(&families)
                .map(|(draft, family)| draft.finish(family)),
        );
        Prepared {
            options: options.clone(),
            families: finished,
            reserved,
            withheld,
            withheld_names,
            scope: match options.tenancy_label {
                Some(_) => Box::from(origin.tenant.as_str()),
                None => Box::default(),
            },
            classic,
            openmetrics,
            classic_ends_file,
            ok,
            om_ok,
            hashes,
            digest,
            legacy_names,
        }
    }

    /// The length of the classic prepared text, in bytes.
    pub fn classic_len(&self) -> usize {
        self.classic.len()
    }

    /// Whether the prepared text can be merged (else the full merge is needed; only for
    /// files larger than 4 GiB).
    pub fn is_mergeable(&self) -> bool {
        self.ok
    }

    /// The series hashes of the families that are merged (reserved ones are left out), in
    /// no set order: kept, or made again from the classic text (which was checked to give
    /// them back when it was made).
    pub fn hashes(&self) -> Cow<'_, [u64]> {
        match &self.hashes {
            Some(hashes) => Cow::Borrowed(hashes),
            None => Cow::Owned(hashes_of_classic(&self.classic_text()).unwrap_or_default()),
        }
    }

    /// Whether every metric and label name of the file, as it was written, is a legacy one:
    /// then no escaping scheme but `dots` changes a name in it.
    pub fn legacy_names_only(&self) -> bool {
        self.legacy_names
    }

    /// What tells this file's set of series from another's without the hashes.
    pub fn series_digest(&self) -> SeriesDigest {
        self.digest
    }

    /// The prepared classic text, or the OpenMetrics lines kept apart (those that differ from
    /// the classic ones).
    pub(crate) fn text(&self, openmetrics: bool) -> &PackedText {
        if openmetrics {
            &self.openmetrics
        } else {
            &self.classic
        }
    }

    /// The lines of `range` in the classic or OpenMetrics text, decompressed (empty when
    /// out of range).
    pub(crate) fn lines(&self, openmetrics: bool, range: &Range<u32>) -> Bytes {
        self.text(openmetrics)
            .slice(range.start as usize..range.end as usize)
            .unwrap_or_default()
    }

    fn classic_lines(&self, range: &Range<u32>) -> Bytes {
        self.lines(false, range)
    }

    fn om_lines(&self, family: &PreparedFamily) -> Bytes {
        self.lines(!family.om_in_classic, &family.om)
    }

    /// The classic rendering, whole (a file that ends with it is kept as what comes before
    /// it and this).
    pub(crate) fn classic_text(&self) -> Bytes {
        self.classic.to_bytes().unwrap_or_default()
    }

    /// Bytes held for this file's prepared form: its hashes, families, names and packed text.
    pub fn heap_bytes(&self) -> usize {
        let names: usize = self
            .families
            .iter()
            .map(|f| {
                let held = f.names.iter().map(|(n, _)| n.len() + 24).sum::<usize>();
                held + f.bounds.iter().map(|b| b.len() + 16).sum::<usize>()
            })
            .sum();
        self.hashes.as_ref().map_or(0, |h| h.len() * 8)
            + self.families.len() * std::mem::size_of::<PreparedFamily>()
            + names
            + self.classic.heap_bytes()
            + self.openmetrics.heap_bytes()
    }
}

/// How many times each series hash occurs over the served files, kept up to date file by file,
/// so that a publication knows in O(changed files) whether any series is in two places.
#[derive(Debug, Default)]
pub struct SeriesIndex {
    /// The hashes counted, each once: 8 bytes a series rather than 16 for a hash and a
    /// count, in sorted shards rather than a hash table (at a million series, the index
    /// was the exporter's largest table: 18.9 MB).
    seen: HashShards,
    /// The hashes that occur more than once, with their counts (2 or more).
    repeats: HashedMap<u32>,
    /// The files counted, by path, with the prepared version counted.
    members: HashMap<std::path::PathBuf, Arc<Prepared>>,
    /// Count everything again at the next update.
    rebuild: bool,
}

impl SeriesIndex {
    /// Whether it counts no series (no file, or only empty ones).
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether some series hash occurs more than once (a duplicate series, or rarely a
    /// collision): the full merge decides then.
    pub fn has_repeats(&self) -> bool {
        !self.repeats.is_empty()
    }

    /// Counts the series of one more file (see also [`SeriesIndex::update`]).
    pub fn add(&mut self, prepared: &Prepared) {
        for &h in prepared.hashes().iter() {
            if !self.seen.insert(h) {
                *self.repeats.entry(h).or_insert(1) += 1;
            }
        }
    }

    /// Stops counting the series of a file [`SeriesIndex::add`] counted.
    pub fn remove(&mut self, prepared: &Prepared) {
        for &h in prepared.hashes().iter() {
            match self.repeats.entry(h) {
                Entry::Occupied(mut e) => {
                    *e.get_mut() -= 1;
                    if *e.get() < 2 {
                        e.remove();
                    }
                }
                Entry::Vacant(_) => {
                    self.seen.remove(h);
                }
            }
        }
    }

    /// Makes the index count exactly `files` (path and prepared version). Costs the series of
    /// the files that changed, plus a pointer comparison per file.
    pub fn update(&mut self, files: &[(&std::path::Path, &Arc<Prepared>)]) {
        let mut next: HashMap<std::path::PathBuf, Arc<Prepared>> =
            HashMap::with_capacity(files.len());
        let mut unique = true;
        for (path, prepared) in files {
            unique &= next
                .insert(path.to_path_buf(), Arc::clone(prepared))
                .is_none();
        }
        if !unique || self.rebuild {
            // A path listed twice (not in the exporter: tools): count everything again.
            self.seen.clear();
            self.repeats.clear();
            for (_, prepared) in files {
                self.add(prepared);
            }
            self.members = next;
            self.rebuild = !unique;
            return;
        }
        for (path, prepared) in &next {
            match self.members.remove(path) {
                Some(old) if Arc::ptr_eq(&old, prepared) => {}
                Some(old) => {
                    self.remove(&old);
                    self.add(prepared);
                }
                None => self.add(prepared),
            }
        }
        let gone: Vec<Arc<Prepared>> = self.members.drain().map(|(_, p)| p).collect();
        for old in gone {
            self.remove(&old);
        }
        self.members = next;
    }
}

/// The names a family holds in either format, each with how it holds it
/// (`promdrop_textformat::family_names`).
pub type HeldNames = Box<[(Box<str>, NameUse)]>;

/// The names `family` holds in either format ([`family_names`]).
fn held_names(family: &MetricFamily<'_>) -> HeldNames {
    family_names(family)
        .into_iter()
        .map(|(name, how)| (name.into_boxed_str(), how))
        .collect()
}

/// The bucket bounds or quantiles fixed for a merged family in one scope
/// ([`Prepared::scope`]), and the file that fixed them.
type FixedBounds<'p> = (&'p str, &'p [Box<str>], usize);

/// One merged family: the contributions (file, family) that are served, in order.
struct MergedFamily<'p> {
    first: &'p PreparedFamily,
    first_file: usize,
    help: Option<&'p str>,
    unit: Option<&'p str>,
    parts: Vec<(usize, &'p PreparedFamily)>,
}

/// Groups the families of `files` by name as `merge` does, with its rules in its order (type,
/// buckets, names that clash, help); conflicts are appended to `conflicts` with file paths
/// from `path_of`. Costs a few hash lookups per family and name it holds: no series is
/// looked at (their names and bounds were gathered when the file was prepared).
fn group<'p>(
    files: &'p [Arc<Prepared>],
    path_of: &dyn Fn(usize) -> String,
    conflicts: &mut Vec<ConflictRecord>,
) -> Vec<MergedFamily<'p>> {
    let mut merged: Vec<MergedFamily<'p>> = Vec::new();
    let mut by_name: HashMap<&'p str, usize> = HashMap::new();
    let families: usize = files.iter().map(|f| f.families.len()).sum();
    let mut names = NameTable::with_capacity(families * 4);
    // Per merged family: the bounds fixed for it and the file that fixed them.
    let mut bounds: Vec<Vec<FixedBounds<'p>>> = Vec::new();
    for (file, prepared) in files.iter().enumerate() {
        for family in &prepared.families {
            let into = by_name.get(&*family.name).copied();
            if let Some(index) = into {
                let m = &merged[index];
                if m.first.metric_type != family.metric_type {
                    conflicts.push(ConflictRecord {
                        kind: "type",
                        family: family.name.to_string(),
                        series: None,
                        kept_file: Some(path_of(m.first_file)),
                        kept_family: None,
                        name: None,
                        other_file: path_of(file),
                    });
                    continue;
                }
                if let Some(&(_, kept, kept_file)) = bounds[index]
                    .iter()
                    .find(|(scope, ..)| *scope == &*prepared.scope)
                    && !family.bounds.is_empty()
                    && *kept != *family.bounds
                {
                    conflicts.push(ConflictRecord {
                        kind: "buckets",
                        family: family.name.to_string(),
                        series: None,
                        kept_file: Some(path_of(kept_file)),
                        kept_family: None,
                        name: None,
                        other_file: path_of(file),
                    });
                    continue;
                }
            }
            let held = family.names.iter().map(|(n, how)| (&**n, *how));
            if let Some((name, holder)) = names.clash(held, into, file) {
                conflicts.push(ConflictRecord {
                    kind: "type",
                    family: family.name.to_string(),
                    series: None,
                    kept_file: Some(path_of(holder.source)),
                    kept_family: Some(merged[holder.family].first.name.to_string()),
                    name: Some(name.to_string()),
                    other_file: path_of(file),
                });
                continue;
            }
            let index = into.unwrap_or(merged.len());
            names.hold(
                family
                    .names
                    .iter()
                    .map(|(n, how)| (Cow::Borrowed(&**n), *how)),
                index,
                file,
            );
            if into.is_none() {
                bounds.push(Vec::new());
            }
            if !family.bounds.is_empty()
                && !bounds[index]
                    .iter()
                    .any(|(scope, ..)| *scope == &*prepared.scope)
            {
                bounds[index].push((&prepared.scope, &family.bounds, file));
            }
            match by_name.entry(&family.name) {
                Entry::Vacant(slot) => {
                    slot.insert(merged.len());
                    merged.push(MergedFamily {
                        first: family,
                        first_file: file,
                        help: family.help.as_deref(),
                        unit: family.unit.as_deref(),
                        parts: vec![(file, family)],
                    });
                }
                Entry::Occupied(slot) => {
                    let m = &mut merged[*slot.get()];
                    match (m.help, family.help.as_deref()) {
                        (None, Some(help)) => m.help = Some(help),
                        (Some(kept), Some(other)) if kept != other => {
                            conflicts.push(ConflictRecord {
                                kind: "help",
                                family: family.name.to_string(),
                                series: None,
                                kept_file: Some(path_of(m.first_file)),
                                kept_family: None,
                                name: None,
                                other_file: path_of(file),
                            });
                        }
                        _ => {}
                    }
                    if m.unit.is_none() {
                        m.unit = family.unit.as_deref();
                    }
                    m.parts.push((file, family));
                }
            }
        }
    }
    merged
}

/// A classic family header in `out`, replacing what it held.
fn classic_header(name: &str, help: Option<&str>, type_name: &str, out: &mut String) {
    out.clear();
    promdrop_textformat::write_classic_header(name, help, type_name, out);
}

/// Merges prepared files (no series in two places: check [`SeriesIndex::has_repeats`] first)
/// and renders them in the classic format, appending to `out` (UTF-8: every piece is); returns
/// the conflicts.
pub fn render_classic(
    files: &[Arc<Prepared>],
    path_of: &dyn Fn(usize) -> String,
    out: &mut Vec<u8>,
) -> Vec<ConflictRecord> {
    // Type and help conflicts, in the order the full merge reports them (no duplicate series:
    // see [`SeriesIndex`]). The reserved families left out are the serving program's to judge.
    let mut conflicts = Vec::new();
    let merged = group(files, path_of, &mut conflicts);
    let mut header = String::new();
    for m in &merged {
        let family = m.first;
        let suffixes = split_suffixes(family.metric_type);
        let main = m
            .parts
            .iter()
            .find(|(_, p)| !p.classic[0].is_empty())
            .map(|(_, p)| p.main_name());
        if main.is_some() || suffixes.is_empty() {
            let name = main.unwrap_or(&family.name);
            classic_header(name, m.help, family.metric_type.classic_name(), &mut header);
            out.extend_from_slice(header.as_bytes());
            for (file, part) in &m.parts {
                out.extend_from_slice(&files[*file].classic_lines(&part.classic[0]));
            }
        }
        for (i, suffix) in suffixes.iter().enumerate() {
            if m.parts.iter().all(|(_, p)| p.classic[i + 1].is_empty()) {
                continue;
            }
            let name = format!("{}{suffix}", family.name);
            classic_header(&name, m.help, "gauge", &mut header);
            out.extend_from_slice(header.as_bytes());
            for (file, part) in &m.parts {
                out.extend_from_slice(&files[*file].classic_lines(&part.classic[i + 1]));
            }
        }
    }
    conflicts
}

/// Merges prepared files (no series in two places) and renders them as OpenMetrics (without
/// `# EOF`), appending to `out`. Returns `false`, with `out` unchanged, when the prepared text
/// cannot give the full merge's output: a file whose OpenMetrics text could not be split, a
/// family whose files give it different OpenMetrics names, or a `_created` gauge folded into
/// its counter other than within one file.
pub fn render_openmetrics(files: &[Arc<Prepared>], out: &mut Vec<u8>) -> bool {
    if files.iter().any(|f| !f.om_ok || !f.ok) {
        return false;
    }
    let mut ignored = Vec::new();
    let merged = group(files, &|_| String::new(), &mut ignored);
    // Every part of a family must have the family's OpenMetrics name.
    for m in &merged {
        let om_name = m.first.om_name();
        if m.parts.iter().any(|(_, p)| p.om_name() != om_name) {
            return false;
        }
    }
    // The OpenMetrics type of each merged family.
    let om_types: Vec<MetricType> = merged
        .iter()
        .map(|m| {
            if m.first.metric_type == MetricType::Counter
                && m.parts.iter().any(|(_, p)| p.om_unknown)
            {
                MetricType::Unknown
            } else {
                m.first.metric_type
            }
        })
        .collect();
    // Folding, as the renderer would decide it on the merged families.
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for (i, m) in merged.iter().enumerate() {
        if matches!(
            om_types[i],
            MetricType::Counter | MetricType::Histogram | MetricType::Summary
        ) && owners.insert(m.first.om_name(), i).is_some()
        {
            return false;
        }
    }
    let mut skip = vec![false; merged.len()];
    let mut folding = vec![false; merged.len()];
    for (i, m) in merged.iter().enumerate() {
        let candidate = matches!(m.first.metric_type, MetricType::Gauge | MetricType::Unknown)
            .then(|| m.first.name.strip_suffix("_created"))
            .flatten()
            .and_then(|base| owners.get(base).copied());
        let folds =
            candidate.filter(|&owner| !merged[owner].parts.iter().any(|(_, p)| p.om_has_created));
        match folds {
            Some(owner) => {
                // The same fold must have been made within one file.
                let o = &merged[owner];
                let same_file = matches!(
                    (&m.parts[..], &o.parts[..]),
                    ([(f1, c)], [(f2, p)]) if f1 == f2 && c.om_folded && p.om_folds
                );
                if !same_file {
                    return false;
                }
                skip[i] = true;
                folding[owner] = true;
            }
            None => {
                if m.parts.iter().any(|(_, p)| p.om_folded) {
                    return false;
                }
            }
        }
    }
    // A family that folded a gauge in its file must fold it here too.
    for (i, m) in merged.iter().enumerate() {
        if !folding[i] && m.parts.iter().any(|(_, p)| p.om_folds) {
            return false;
        }
    }
    let mut header = String::new();
    for (i, m) in merged.iter().enumerate() {
        if skip[i] {
            continue;
        }
        header.clear();
        write_openmetrics_header(m.first.om_name(), m.help, om_types[i], m.unit, &mut header);
        out.extend_from_slice(header.as_bytes());
        for (file, part) in &m.parts {
            out.extend_from_slice(&files[*file].om_lines(part));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use promdrop_textformat::Format;

    fn options() -> PrepareOptions {
        PrepareOptions {
            tenancy_label: Some("namespace".into()),
            job_name_from_path: true,
            ..PrepareOptions::default()
        }
    }

    /// The file `path` holding `input` (its bytes), prepared with `options`.
    fn prepare(path: &str, input: &str, options: &PrepareOptions) -> (Bytes, Prepared) {
        let raw = Bytes::from(input.to_string());
        let families = promdrop_textformat::parse(&raw, promdrop_textformat::Format::Classic)
            .unwrap()
            .families;
        let origin = Origin::of(path.as_ref());
        let prepared = Prepared::build(families, &raw, &origin, options);
        (raw, prepared)
    }

    /// The file `path` holding `input`, prepared with `options` and rendered.
    fn served(path: &str, input: &str, options: &PrepareOptions) -> String {
        let prepared = Arc::new(prepare(path, input, options).1);
        let mut out = Vec::new();
        render_classic(&[prepared], &|_| path.to_string(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn files_of_the_same_families_share_their_shapes_and_only_those() {
        let prepare = |path: &str, input: &str| prepare(path, input, &PrepareOptions::default()).1;
        let family = |help: &str, job: &str, value: u32| {
            format!(
                "# HELP shape_test_rows_total {help}\n# TYPE shape_test_rows_total counter\n\
                 shape_test_rows_total{{job=\"{job}\"}} {value}\n\
                 # TYPE shape_test_depth gauge\nshape_test_depth {value}\n"
            )
        };
        let a = prepare("/d/a.prom", &family("Rows.", "a", 1));
        let b = prepare("/d/b.prom", &family("Rows.", "b", 2));
        let c = prepare("/d/c.prom", &family("Rows read.", "c", 3));
        assert_eq!(a.families.len(), 2);
        // Other series and values, the same shapes: shared.
        for (x, y) in a.families.iter().zip(&b.families) {
            assert!(Arc::ptr_eq(x.shape(), y.shape()), "{}", x.name);
        }
        // Another HELP is another shape; the gauge's is still shared.
        assert!(!Arc::ptr_eq(a.families[0].shape(), c.families[0].shape()));
        assert_eq!(c.families[0].help.as_deref(), Some("Rows read."));
        assert!(Arc::ptr_eq(a.families[1].shape(), c.families[1].shape()));
        // Each family's lines are still its own file's.
        let lines = |p: &Prepared| {
            String::from_utf8(p.classic_lines(&p.families[0].classic[0]).to_vec()).unwrap()
        };
        assert_eq!(lines(&a), "shape_test_rows_total{job=\"a\"} 1\n");
        assert_eq!(lines(&b), "shape_test_rows_total{job=\"b\"} 2\n");

        // A shape found in use (no names made) holds the names the family's own would: an
        // OpenMetrics counter with `_created` samples holds `x_created` as taken, one without
        // as a slot, and they are two shapes.
        fn openmetrics(text: &str) -> (Vec<MetricFamily<'_>>, Prepared) {
            let parse = || {
                promdrop_textformat::parse(
                    text.as_bytes(),
                    promdrop_textformat::Format::OpenMetrics,
                )
                .unwrap()
                .families
            };
            let raw = Bytes::from(text.to_string());
            let origin = Origin::of("/d/om.prom".as_ref());
            let prepared = Prepared::build(parse(), &raw, &origin, &PrepareOptions::default());
            (parse(), prepared)
        }
        let created = "# TYPE shape_test_jobs counter\nshape_test_jobs_total 1\n\
                       shape_test_jobs_created 17\n# EOF\n";
        let plain = "# TYPE shape_test_jobs counter\nshape_test_jobs_total 1\n# EOF\n";
        let (parsed, d) = openmetrics(created);
        let (_, e) = openmetrics(created);
        let (parsed_plain, f) = openmetrics(plain);
        assert!(Arc::ptr_eq(d.families[0].shape(), e.families[0].shape()));
        assert_eq!(e.families[0].names, held_names(&parsed[0]));
        assert_eq!(f.families[0].names, held_names(&parsed_plain[0]));
        assert_ne!(e.families[0].names, f.families[0].names);
        assert!(!Arc::ptr_eq(e.families[0].shape(), f.families[0].shape()));
        // Histograms share a shape only with the same bucket bounds.
        let histogram = |bound: &str| {
            format!(
                "# TYPE shape_test_seconds histogram\nshape_test_seconds_bucket{{le=\"{bound}\"}} 1\n\
                 shape_test_seconds_bucket{{le=\"+Inf\"}} 1\nshape_test_seconds_sum 1\n\
                 shape_test_seconds_count 1\n"
            )
        };
        let g = prepare("/d/g.prom", &histogram("0.5"));
        let h = prepare("/d/h.prom", &histogram("0.5"));
        let i = prepare("/d/i.prom", &histogram("1"));
        assert!(Arc::ptr_eq(g.families[0].shape(), h.families[0].shape()));
        assert!(!Arc::ptr_eq(g.families[0].shape(), i.families[0].shape()));
        assert_eq!(&*i.families[0].bounds, &[Box::from("+Inf"), Box::from("1")]);
    }

    #[test]
    fn a_prepared_file_holds_no_spare_capacity_for_its_families() {
        // Ten families, as a job's file has: the drafts they were made from are three times
        // their size, and are not kept.
        let input: String = (0..10)
            .map(|i| format!("# HELP spare_{i}_total Rows.\n# TYPE spare_{i}_total counter\nspare_{i}_total 1\n"))
            .collect();
        let (_, prepared) = prepare("/d/job.prom", &input, &PrepareOptions::default());
        assert_eq!(prepared.families.len(), 10);
        assert_eq!(prepared.families.capacity(), prepared.families.len());
    }

    #[test]
    fn series_hashes_are_made_again_from_the_text_when_it_gives_them_back() {
        let opts = PrepareOptions::default();
        let input = "# HELP rows_total Rows.\n# TYPE rows_total counter\nrows_total{shard=\"0\"} 3\n\
                     rows_total{shard=\"1\"} 4\nrows_created{shard=\"0\"} 1.7e+09\n\
                     # TYPE depth gauge\ndepth{path=\"a\\\\b\\n\"} 2\n";
        let mut expected: Vec<u64> = promdrop_textformat::parse(input.as_bytes(), Format::Classic)
            .unwrap()
            .families
            .iter()
            .flat_map(|f| f.samples.iter().map(series_hash))
            .collect();
        expected.sort_unstable();
        let (_, prepared) = prepare("/d/job.prom", input, &opts);
        assert!(prepared.hashes.is_none(), "the hashes were kept");
        let mut again = prepared.hashes().into_owned();
        again.sort_unstable();
        assert_eq!(again, expected);
        // The digest: the same series in another order or with other values give the same
        // one; another series does not.
        let reordered = "# TYPE depth gauge\ndepth{path=\"a\\\\b\\n\"} 9\n\
                         # HELP rows_total Rows.\n# TYPE rows_total counter\n\
                         rows_total{shard=\"1\"} 4\nrows_total{shard=\"0\"} 5\n\
                         rows_created{shard=\"0\"} 1.7e+09\n";
        assert_eq!(
            prepare("/d/job.prom", reordered, &opts).1.series_digest(),
            prepared.series_digest()
        );
        let other = input.replace("shard=\"1\"", "shard=\"2\"");
        assert_ne!(
            prepare("/d/job.prom", &other, &opts).1.series_digest(),
            prepared.series_digest()
        );
        // Hashes the text does not give back are kept: other series, one more, a text that
        // does not parse.
        let text = input.as_bytes();
        assert_eq!(unless_given_back(expected.clone(), text), None);
        let mut more = expected.clone();
        more.push(1);
        assert!(unless_given_back(more, text).is_some());
        let mut changed = expected.clone();
        changed[0] ^= 1;
        assert!(unless_given_back(changed, text).is_some());
        assert!(unless_given_back(expected, b"x{").is_some());
    }

    #[test]
    fn openmetrics_lines_equal_to_the_classic_ones_are_not_kept_twice() {
        let prepare = |input: &str| prepare("/d/job.prom", input, &PrepareOptions::default());
        let openmetrics = |prepared: Prepared| {
            let mut out = Vec::new();
            assert!(render_openmetrics(&[Arc::new(prepared)], &mut out));
            String::from_utf8(out).unwrap()
        };
        // A client library's file: the counter's and the gauge's lines read the same in both
        // formats, so the one packed text holds both, and the file's bytes end with it.
        let client = "# HELP rows_total Rows.\n# TYPE rows_total counter\nrows_total{shard=\"0\"} 3\n\
                      # TYPE depth gauge\ndepth 2\n";
        let (raw, prepared) = prepare(client);
        assert!(prepared.openmetrics.is_empty());
        assert!(prepared.families.iter().all(|f| f.om_in_classic));
        assert!(prepared.classic_ends_file);
        assert_eq!(&prepared.classic_text()[..], &raw[..]);
        assert_eq!(
            openmetrics(prepared),
            "# HELP rows Rows.\n# TYPE rows counter\nrows_total{shard=\"0\"} 3\n\
             # TYPE depth gauge\ndepth 2\n"
        );
        // A `_created` gauge folded into its counter: the counter's OpenMetrics lines differ
        // and are kept; the gauge's are still shared.
        let folded = "# TYPE rows_total counter\nrows_total 3\n# TYPE rows_created gauge\n\
                      rows_created 1.7e+09\n# TYPE depth gauge\ndepth 2\n";
        let (_, prepared) = prepare(folded);
        let rows = &prepared.families[0];
        assert!(!rows.om_in_classic);
        assert_eq!(
            &prepared.om_lines(rows)[..],
            b"rows_total 3\nrows_created 1.7e+09\n"
        );
        assert!(prepared.families[2].om_in_classic);
        assert_eq!(
            openmetrics(prepared),
            "# TYPE rows counter\nrows_total 3\nrows_created 1.7e+09\n# TYPE depth gauge\ndepth 2\n"
        );
    }

    #[test]
    fn tenancy_and_job_name_come_from_the_path() {
        let cases = [
            // Set where absent.
            (
                "/d/team-a/backup.prom",
                "x 1\n",
                "x{namespace=\"team-a\",job_name=\"backup\"} 1\n",
            ),
            // The writer's own equal value: unchanged.
            (
                "/d/team-a/backup.prom",
                "x{job_name=\"backup\",namespace=\"team-a\"} 1\n",
                "x{job_name=\"backup\",namespace=\"team-a\"} 1\n",
            ),
            // A different value is kept as exported_<label>.
            (
                "/d/team-a/backup.prom",
                "x{job_name=\"theirs\",namespace=\"team-b\"} 1\n",
                "x{job_name=\"backup\",namespace=\"team-a\",exported_namespace=\"team-b\",exported_job_name=\"theirs\"} 1\n",
            ),
            // exported_<label> taken too: one more prefix, nothing overwritten.
            (
                "/d/team-a/backup.prom",
                "x{namespace=\"b\",exported_namespace=\"c\"} 1\n",
                "x{namespace=\"team-a\",exported_namespace=\"c\",exported_exported_namespace=\"b\",job_name=\"backup\"} 1\n",
            ),
            // Empty counts as absent.
            (
                "/d/team-a/backup.prom",
                "x{namespace=\"\"} 1\n",
                "x{namespace=\"team-a\",job_name=\"backup\"} 1\n",
            ),
            // An indexed Job's file: <job>-<index>.prom with its completion_index.
            (
                "/d/team-a/shard-3.prom",
                "x{completion_index=\"3\"} 1\ny 2\n",
                "x{completion_index=\"3\",namespace=\"team-a\",job_name=\"shard\"} 1\n",
            ),
        ];
        for (path, input, want) in cases {
            let got = served(path, input, &options());
            assert!(got.contains(want), "{path} {input:?}:\n{got}");
        }
        let got = served("/d/team-a/shard-3.prom", "y 2\n", &options());
        assert!(
            got.contains("y{namespace=\"team-a\",job_name=\"shard-3\"} 2\n"),
            "{got}"
        );
        // Off: nothing added.
        let got = served("/d/team-a/backup.prom", "x 1\n", &PrepareOptions::default());
        assert!(got.contains("\nx 1\n"), "{got}");
    }

    #[test]
    fn a_file_knows_whether_a_scraper_without_utf8_names_can_take_it_as_it_is() {
        let opts = PrepareOptions::default();
        for (text, legacy) in [
            ("# TYPE a counter\na_total{job=\"x\"} 1\n", true),
            ("a{\"b.c\"=\"x\"} 1\n", false),
            ("{\"a.b\"} 1\n", false),
            // A quoted name that is a legacy one is one.
            ("{\"a_b\",\"c\"=\"x\"} 1\n", true),
        ] {
            assert_eq!(
                prepare("/d/job.prom", text, &opts).1.legacy_names_only(),
                legacy,
                "{text}"
            );
        }
    }

    #[test]
    fn only_comments_that_parse_to_nothing_are_plain() {
        assert!(only_plain_comments(b""));
        assert!(only_plain_comments(b"# promdrop: job=x\n\n#note\n"));
        for text in [
            "# HELP a b\n",
            "#TYPE a counter\n",
            "# UNIT a seconds\n",
            "# EOF\n",
            "a 1\n",
            "# promdrop: x\na 1\n",
        ] {
            assert!(!only_plain_comments(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn withheld_families_are_left_out_and_remembered() {
        let raw = Bytes::from("# TYPE a gauge\na 1\n# TYPE b counter\nb 2\n");
        let families = promdrop_textformat::parse(&raw, promdrop_textformat::Format::Classic)
            .unwrap()
            .families;
        let origin = Origin {
            withheld: vec!["b".into()],
            ..Origin::of("/d/ns/x.prom".as_ref())
        };
        let options = options();
        let prepared = Prepared::build(families, &raw, &origin, &options);
        assert_eq!(prepared.families.len(), 1);
        assert_eq!(&*prepared.families[0].name, "a");
        assert_eq!(prepared.withheld, vec![("b".into(), MetricType::Counter)]);
        assert_eq!(prepared.hashes().len(), 1);
    }
}
