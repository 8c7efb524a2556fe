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
    Conflict, EscapingScheme, Format, MetricFamily, Source, merge, parse, render_classic_into,
    render_openmetrics_into,
};

use crate::adopt::Adopted;
use crate::gzip::{self, Deflated};
use crate::meta::MetaWriter;
use crate::names;
use crate::status::StatusModel;
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::conflict::ConflictRecord;
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
    file: &'a FileSnapshot,
    options: &'a PrepareOptions,
    name: &'a Origin,
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
    names: &'a [Origin],
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
    // The label values of --source-label and tenancy, borrowed by the samples below.
    let names: Vec<Origin> = files.iter().map(|f| f.origin()).collect();
    // Parse on every core: parsing is most of the cost, and files are independent.
    let prepare = options.prepare_options();
    let prepared = parse_all(files, &prepare, &names);
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
            Source::new(families).with_precedence(files[*index].merge_precedence())
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

/// One prepared part of a body: its text, and its gzip segment once compressed.
#[derive(Debug)]
pub struct Segment {
    /// The text.
    pub plain: Bytes,
    deflated: OnceLock<Deflated>,
}

impl Segment {
    /// A segment of `text`, not yet compressed.
    pub fn new(text: String) -> Segment {
        Segment {
            plain: Bytes::from(text),
            deflated: OnceLock::new(),
        }
    }

    /// A segment of text already in bytes (UTF-8), not yet compressed.
    pub fn from_bytes(text: Bytes) -> Segment {
        Segment {
            plain: text,
            deflated: OnceLock::new(),
        }
    }

    /// Compresses the segment (once; later calls return at once). Blocking.
    pub fn compress(&self) -> &Deflated {
        self.deflated
            .get_or_init(|| gzip::deflate(&self.plain, false))
    }

    /// The compressed segment, if ready.
    pub fn deflated(&self) -> Option<&Deflated> {
        self.deflated.get()
    }
}

/// The merged samples of the served files.
#[derive(Debug)]
pub struct DataPart {
    /// The classic rendering.
    pub classic: Arc<Segment>,
    openmetrics: tokio::sync::OnceCell<Arc<Segment>>,
    files: Vec<Arc<FileSnapshot>>,
    /// The files' prepared forms (for `options`), in the same order.
    prepared: Vec<Arc<Prepared>>,
    /// Whether merging the prepared text gives the full merge's output (no series in two
    /// places).
    concatenable: bool,
    options: ExpositionOptions,
    /// The files' series of the exporter's own families, served in its own blocks.
    pub adopted: Arc<Adopted>,
    /// The conflicts found merging them (the adopted ones' included).
    pub conflicts: Vec<ConflictRecord>,
    /// The variants with escaped names (`underscores`, `dots`, `values`), each made on first
    /// demand ([`DataPart::escaped`]); `None` when it is this part itself.
    escaped: [tokio::sync::OnceCell<Option<Arc<DataPart>>>; 3],
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
        &file.origin(),
        wanted,
    )))
}

impl DataPart {
    /// Merges and renders `files` (classic now, OpenMetrics on demand). Blocking.
    pub fn build(files: Vec<Arc<FileSnapshot>>, options: ExpositionOptions) -> DataPart {
        DataPart::build_indexed(files, options, &mut SeriesIndex::default())
    }

    /// [`DataPart::build`] with an index of series kept from the previous build, which then
    /// costs only the files that changed.
    pub fn build_indexed(
        files: Vec<Arc<FileSnapshot>>,
        options: ExpositionOptions,
        index: &mut SeriesIndex,
    ) -> DataPart {
        let wanted = options.prepare_options();
        let (files, prepared): (Vec<Arc<FileSnapshot>>, Vec<Arc<Prepared>>) = files
            .into_iter()
            .filter_map(|f| {
                let p = prepared_for(&f, &wanted)?;
                Some((f, p))
            })
            .unzip();
        let members: Vec<(&std::path::Path, &Arc<Prepared>)> = files
            .iter()
            .zip(&prepared)
            .map(|(f, p)| (f.path.as_path(), p))
            .collect();
        index.update(&members);
        drop(members);
        let concatenable = !index.has_repeats() && prepared.iter().all(|p| p.is_mergeable());
        let (text, conflicts) = if concatenable {
            let capacity: usize = files
                .iter()
                .filter_map(|f| f.content.as_ref().ok())
                .map(|c| c.bytes.len() + 64)
                .sum();
            let mut text = Vec::with_capacity(capacity);
            let path_of = |i: usize| snapshot::file_label(&files[i].path);
            let conflicts = prepared::render_classic(&prepared, &path_of, &mut text);
            (Bytes::from(text), conflicts)
        } else {
            let capacity: usize = files
                .iter()
                .filter_map(|f| f.content.as_ref().ok())
                .map(|c| c.bytes.len())
                .sum();
            let mut text = String::with_capacity(capacity + capacity / 8);
            let conflicts = render_data(&files, &options, Format::Classic, &mut text);
            (Bytes::from(text), conflicts)
        };
        let adopted = Adopted::build(&files, &prepared, &wanted, options.own_config());
        let mut conflicts = conflicts;
        conflicts.extend(adopted.conflicts.iter().cloned());
        DataPart {
            classic: Arc::new(Segment::from_bytes(text)),
            openmetrics: tokio::sync::OnceCell::new(),
            files,
            prepared,
            concatenable,
            options,
            adopted: Arc::new(adopted),
            conflicts,
            escaped: Default::default(),
        }
    }

    /// The files it was built from.
    pub fn files(&self) -> &[Arc<FileSnapshot>] {
        &self.files
    }

    /// Whether it was built from the files' prepared text (else by the full merge, which a
    /// duplicate series needs).
    pub fn is_concatenated(&self) -> bool {
        self.concatenable
    }

    /// Renders the OpenMetrics text (without `# EOF`). Blocking.
    pub fn render_openmetrics(&self) -> Bytes {
        if self.concatenable {
            let mut out = Vec::with_capacity(self.classic.plain.len() + 1024);
            if prepared::render_openmetrics(&self.prepared, &mut out) {
                return Bytes::from(out);
            }
        }
        let mut text = String::with_capacity(self.classic.plain.len() + 1024);
        render_data(&self.files, &self.options, Format::OpenMetrics, &mut text);
        Bytes::from(text)
    }

    /// This part as a scraper asking for `scheme` gets it: itself for `allow-utf-8` or when no
    /// name changes, else the same publication run over the files with escaped names
    /// (`escaped::build`), made on a blocking thread on first demand and kept until the
    /// next change. Names that collide once escaped are conflicts of the variant, counted in
    /// `promdrop_escaping_conflicts_total`.
    pub async fn escaped(self: &Arc<Self>, scheme: EscapingScheme) -> Arc<DataPart> {
        let slot = match scheme {
            EscapingScheme::AllowUtf8 => return Arc::clone(self),
            EscapingScheme::Underscores => 0,
            EscapingScheme::Dots => 1,
            EscapingScheme::Values => 2,
        };
        let this = Arc::clone(self);
        let variant = self.escaped[slot]
            .get_or_init(|| async move {
                let built = tokio::task::spawn_blocking(move || {
                    let variant = escaped::build(&this, scheme).map(Arc::new);
                    if let Some(v) = &variant {
                        escaped::record_conflicts(&this, v, scheme);
                        v.classic.compress();
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

    /// The OpenMetrics rendering, made on first use on a blocking thread and kept; its gzip
    /// segment is prepared right after.
    pub async fn openmetrics(self: &Arc<Self>) -> Arc<Segment> {
        let this = Arc::clone(self);
        self.openmetrics
            .get_or_init(|| async move {
                let rendered = tokio::task::spawn_blocking(move || {
                    Arc::new(Segment::from_bytes(this.render_openmetrics()))
                })
                .await
                .unwrap_or_else(|_| Arc::new(Segment::new(String::new())));
                let background = Arc::clone(&rendered);
                tokio::task::spawn_blocking(move || {
                    background.compress();
                    crate::process::release_free_memory();
                });
                rendered
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
            scrape_metrics: vec![escaped::write_metrics],
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

/// Renders the meta metrics about `files` (every tracked file, in order), with the files'
/// series of these families (`adopted`) in the same blocks.
pub fn render_meta(
    files: &[FileView],
    counters: &Counters,
    compat_node: bool,
    adopted: &Arc<Adopted>,
) -> MetaWriter {
    let mut w = MetaWriter::with_adopted(Arc::clone(adopted));
    let paths: Vec<String> = files
        .iter()
        .map(|f| snapshot::file_label(&f.snapshot.path))
        .collect();
    let per_file = |w: &mut MetaWriter, value: &dyn Fn(&FileView) -> Option<f64>| {
        for (file, path) in files.iter().zip(&paths) {
            if let Some(v) = value(file) {
                w.sample(&[("file", path)], v);
            }
        }
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    w.own(&names::PROMDROP_FILE_MTIME_SECONDS);
    per_file(&mut w, &|f| Some(f.snapshot.identity.mtime_seconds()));
    w.own(&names::PROMDROP_FILE_REFERENCE_TIME_SECONDS);
    per_file(&mut w, &|f| Some(f.timing.reference));
    w.own(&names::PROMDROP_FILE_STALE);
    per_file(&mut w, &|f| Some(flag(f.state != FileState::Fresh)));
    w.own(&names::PROMDROP_FILE_EXPIRED);
    per_file(&mut w, &|f| Some(flag(f.state == FileState::Expired)));
    w.own(&names::PROMDROP_FILE_ERROR);
    per_file(&mut w, &|f| Some(flag(f.snapshot.content.is_err())));
    w.own(&names::PROMDROP_FILE_SERIES);
    per_file(&mut w, &|f| Some(f.snapshot.series() as f64));
    w.own(&names::PROMDROP_FILE_BYTES);
    per_file(&mut w, &|f| Some(f.snapshot.identity.size as f64));

    if !counters.directories.is_empty() {
        w.own(&names::PROMDROP_DIRECTORY_ERROR);
        for (directory, error) in &counters.directories {
            w.sample(&[("directory", directory)], flag(*error));
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
    if compat_node {
        w.own(&names::NODE_TEXTFILE_MTIME_SECONDS);
        per_file(&mut w, &|f| {
            f.snapshot
                .content
                .is_ok()
                .then(|| (f.snapshot.identity.mtime_ns / 1_000_000_000) as f64)
        });
        w.own(&names::NODE_TEXTFILE_SCRAPE_ERROR);
        // As node_exporter: 1 when a file or a directory cannot be read.
        let error = files.iter().any(|f| f.snapshot.content.is_err())
            || counters.directories.iter().any(|(_, e)| *e);
        w.sample(&[], flag(error));
    }
    w
}

/// The exporter's own metrics, rendered in both formats.
#[derive(Debug)]
pub struct MetaPart {
    /// Classic.
    pub classic: Arc<Segment>,
    /// OpenMetrics.
    pub openmetrics: Arc<Segment>,
}

impl MetaPart {
    /// Prepares the meta part.
    pub fn build(
        files: &[FileView],
        counters: &Counters,
        compat_node: bool,
        adopted: &Arc<Adopted>,
    ) -> MetaPart {
        let w = render_meta(files, counters, compat_node, adopted);
        MetaPart {
            classic: Arc::new(Segment::new(w.classic)),
            openmetrics: Arc::new(Segment::new(w.openmetrics)),
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
    /// What the status page and `/api/v1/files` show.
    pub status: Arc<StatusModel>,
}

/// A response body: its content type, whether it is gzip-encoded, and its chunks.
#[derive(Debug)]
pub struct Body {
    /// The `Content-Type`, with the escaping applied ([`Negotiated::content_type`]).
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
    /// An empty exposition, served before the first scan finishes.
    pub fn empty(status: StatusModel) -> Published {
        Published {
            data: Arc::new(DataPart::build(Vec::new(), ExpositionOptions::default())),
            meta: MetaPart::build(&[], &Counters::default(), false, &Arc::default()),
            status: Arc::new(status),
        }
    }

    /// Compresses every part not compressed yet (blocking; run it after publishing).
    pub fn compress(&self) {
        self.data.classic.compress();
        self.meta.classic.compress();
        self.meta.openmetrics.compress();
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
    /// ([`DataPart::escaped`]), gzip-compressed when allowed and the compressed parts are
    /// ready. Process metrics are added now; everything else was prepared before. The meta
    /// part's names are legacy ones, served as they are under every scheme.
    pub async fn negotiated_body(
        &self,
        negotiated: &Negotiated,
        scrape_metrics: &[fn(&mut MetaWriter)],
    ) -> Body {
        let gzip = negotiated.gzip;
        let openmetrics = negotiated.format == Format::OpenMetrics;
        let data = self.data.escaped(negotiated.escaping).await;
        let (data, meta) = if openmetrics {
            (data.openmetrics().await, &self.meta.openmetrics)
        } else {
            (Arc::clone(&data.classic), &self.meta.classic)
        };
        let mut tail = crate::process::render(openmetrics, scrape_metrics, &self.data.adopted);
        if openmetrics {
            tail.push_str("# EOF\n");
        }
        let content_type = negotiated.content_type();
        if gzip && let (Some(d), Some(m)) = (data.deflated(), meta.deflated()) {
            return Body {
                content_type,
                gzip: true,
                chunks: gzip::join(&[d, m], tail.as_bytes()),
            };
        }
        Body {
            content_type,
            gzip: false,
            chunks: vec![data.plain.clone(), meta.plain.clone(), Bytes::from(tail)],
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
    let mut out = String::from_utf8_lossy(&data.classic.plain).into_owned();
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

pub use escaped::may_have_quoted_names;

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

    #[tokio::test]
    async fn a_scraper_gets_the_names_it_asked_for() {
        let data = data_of(&[
            (
                "/d/a.prom",
                "# TYPE \"http.requests\" gauge\n{\"http.requests\",\"http.method\"=\"GET\"} 3\n",
            ),
            ("/d/b.prom", "# TYPE plain_one gauge\nplain_one 1\n"),
        ]);
        let text = |d: &Arc<DataPart>| String::from_utf8(d.classic.plain.to_vec()).unwrap();
        assert!(
            text(&data).starts_with(
                "# TYPE \"http.requests\" gauge\n{\"http.requests\",\"http.method\"=\"GET\"} 3\n"
            ),
            "{}",
            text(&data)
        );
        let om = String::from_utf8(data.openmetrics().await.plain.to_vec()).unwrap();
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
        assert!(
            String::from_utf8_lossy(&om.plain).contains("http_requests{http_method=\"GET\"} 3\n")
        );
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
            String::from_utf8_lossy(&b.classic.plain).contains("U__changing_2e_one 2\n"),
            "{}",
            String::from_utf8_lossy(&b.classic.plain)
        );
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
        let served = String::from_utf8(under.classic.plain.to_vec()).unwrap();
        assert_eq!(served, "# TYPE x gauge\nx{a_b=\"3\"} 2\n");
        let values = data.escaped(EscapingScheme::Values).await;
        let served = String::from_utf8(values.classic.plain.to_vec()).unwrap();
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
        let served = String::from_utf8(under.classic.plain.to_vec()).unwrap();
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
