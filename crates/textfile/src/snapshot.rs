//! Reading one file: open, check it is the file that was listed, read at most the size limit,
//! parse, and keep what serving it needs as a [`FileSnapshot`].
//!
//! A file is parsed once per change, here: the parse validates it (a failing file is known as
//! soon as it is read) and prepares it for merging ([`Prepared`]: per family its metadata,
//! its sample lines rendered in both formats, its series hashes). Publishing a new exposition
//! then concatenates prepared text instead of parsing every file again. The snapshot keeps the
//! file's bytes too (shared with the prepared text when they are the same), for the rare merge
//! that needs the parsed families (a duplicate series).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use promdrop_textformat::{Format, ParseLimits, WriterHeader, parse_with_limits};

use std::sync::Arc;

use crate::discovery::FileIdentity;
use crate::error::Error;
use crate::packed::PackedText;
use crate::prepared::{Origin, PrepareOptions, Prepared};

/// How much later than a file's modification time its header's `written_at` may be (clock
/// skew between the writer's host and the file system's) and still be trusted.
pub const WRITTEN_AT_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// What to do with samples that carry a client-side timestamp (`--timestamps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimestampPolicy {
    /// The file is not served and reported as failing (node_exporter's behaviour).
    Reject,
    /// The timestamps are removed; the samples are served with the scrape's time.
    Strip,
    /// The timestamps are served as written.
    Keep,
}

/// What the reader needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Largest file read (`--file.max-bytes`).
    pub max_bytes: u64,
    /// Most series in a file (`--file.max-series`).
    pub max_series: usize,
    /// What to do with client-side timestamps (`--timestamps`).
    pub timestamps: TimestampPolicy,
}

impl ReadOptions {
    /// The parse limits these options give.
    pub fn limits(&self) -> ParseLimits {
        ParseLimits {
            max_bytes: usize::try_from(self.max_bytes).unwrap_or(usize::MAX),
            max_series: self.max_series,
            ..ParseLimits::default()
        }
    }
}

impl ReadOptions {
    /// The preparation these options give alone: timestamps stripped with
    /// `--timestamps=strip`, no source label.
    pub fn prepare_options(&self) -> PrepareOptions {
        PrepareOptions {
            strip_timestamps: self.timestamps == TimestampPolicy::Strip,
            source_label: None,
            reserved: &[],
            tenancy_label: None,
            job_name_from_path: false,
        }
    }
}

/// A file's content that parsed.
#[derive(Debug, Clone)]
pub struct Content {
    /// The file's bytes, as kept: [`Content::bytes`].
    text: FileText,
    /// The file prepared for merging.
    pub prepared: Arc<Prepared>,
    /// The format it parsed as.
    pub format: Format,
    /// The number of samples (series lines).
    pub series: usize,
    /// The writer's `# promdrop:` header, if any.
    pub header: Option<WriterHeader>,
}

/// How a file's bytes are kept: they are read again only when the file is parsed again (the
/// full merge, escaping, the exporter's own families, other options), so they are kept
/// compressed, and not twice when the prepared text is most of them.
#[derive(Debug, Clone)]
enum FileText {
    /// What comes before the classic rendering, which ends the file and is kept in the
    /// prepared form (client-library and promdrop-writer output reads as it renders).
    Head(Bytes),
    /// The whole file, packed (it does not read as it renders: other spacing or order,
    /// timestamps stripped, labels set).
    Packed(PackedText),
}

impl Content {
    /// The content of a file whose bytes are `bytes`, prepared as `prepared` (made from
    /// these bytes: when its text ends them, only what comes before is kept).
    pub fn new(
        bytes: &[u8],
        prepared: Arc<Prepared>,
        format: Format,
        series: usize,
        header: Option<WriterHeader>,
    ) -> Content {
        let classic = prepared.classic_len();
        let text = if prepared.classic_ends_file && classic <= bytes.len() {
            FileText::Head(Bytes::copy_from_slice(&bytes[..bytes.len() - classic]))
        } else {
            FileText::Packed(PackedText::pack(bytes))
        };
        Content {
            text,
            prepared,
            format,
            series,
            header,
        }
    }

    /// The file's bytes (decompressed: a copy, made for a parse).
    pub fn bytes(&self) -> Bytes {
        match &self.text {
            FileText::Head(head) if head.is_empty() => self.prepared.classic_text(),
            FileText::Head(head) => {
                let mut bytes = Vec::with_capacity(self.len());
                bytes.extend_from_slice(head);
                bytes.extend_from_slice(&self.prepared.classic_text());
                Bytes::from(bytes)
            }
            FileText::Packed(packed) => packed.to_bytes().unwrap_or_default(),
        }
    }

    /// The file's size in bytes.
    pub fn len(&self) -> usize {
        match &self.text {
            FileText::Head(head) => head.len() + self.prepared.classic_len(),
            FileText::Packed(packed) => packed.len(),
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One file as last read.
#[derive(Debug, Clone)]
pub struct FileSnapshot {
    /// The path as listed (the configured directory joined with the name).
    pub path: PathBuf,
    /// The identity of what was read.
    pub identity: FileIdentity,
    /// The content, or why it cannot be served (the message shown on the status page).
    pub content: Result<Content, String>,
    /// The writer's header, also for a file that fails to parse (its times still count).
    pub header: Option<WriterHeader>,
}

impl FileSnapshot {
    /// A snapshot for a file that failed before or while being read.
    pub fn failed(path: PathBuf, identity: FileIdentity, error: &Error) -> FileSnapshot {
        FileSnapshot {
            path,
            identity,
            content: Err(error.to_string()),
            header: None,
        }
    }

    /// The number of series served from this file when it is served (0 when it fails).
    pub fn series(&self) -> usize {
        self.content.as_ref().map_or(0, |c| c.series)
    }

    /// The time its age is counted from, in seconds since the Unix epoch: the writer's
    /// `written_at` when the header has one and it is not later than the modification time
    /// plus [`WRITTEN_AT_SKEW`], else the modification time. A file cannot make itself younger
    /// than it is (fresh for ever, and the winner of every duplicate series) by claiming a
    /// time in the future: the file system's time bounds it.
    pub fn reference_time(&self) -> f64 {
        let mtime = self.identity.mtime_seconds();
        match self.header.and_then(|h| h.written_at) {
            Some(written) if written <= mtime + WRITTEN_AT_SKEW.as_secs_f64() => written,
            _ => mtime,
        }
    }

    /// The file's precedence when two files hold the same series: the newer file wins, by
    /// [`reference_time`](Self::reference_time) in nanoseconds (the merge's
    /// `Source::with_precedence`).
    pub fn merge_precedence(&self) -> i128 {
        (self.reference_time() * 1e9) as i128
    }

    /// Whether the header's `written_at` is later than the modification time plus
    /// [`WRITTEN_AT_SKEW`], and so not trusted (shown on the status page).
    pub fn written_at_distrusted(&self) -> bool {
        self.header
            .and_then(|h| h.written_at)
            .is_some_and(|w| w > self.identity.mtime_seconds() + WRITTEN_AT_SKEW.as_secs_f64())
    }

    /// The modification time.
    pub fn mtime(&self) -> SystemTime {
        self.identity.mtime()
    }

    /// Where the file comes from (name, namespace directory, withheld families), as its
    /// prepared form was made.
    pub fn origin(&self) -> Origin {
        let mut origin = Origin::of(&self.path);
        if let Ok(content) = &self.content {
            origin.withheld = content
                .prepared
                .withheld
                .iter()
                .map(|(name, _)| name.clone())
                .collect();
        }
        origin
    }

    /// The families the file declares, with their types, including withheld ones (reserved
    /// ones left out); none when it fails.
    pub fn declared(&self) -> Vec<(&str, promdrop_textformat::MetricType)> {
        let Ok(content) = &self.content else {
            return Vec::new();
        };
        let prepared = &content.prepared;
        prepared
            .families
            .iter()
            .map(|f| (&*f.name, f.metric_type))
            .chain(prepared.withheld.iter().map(|(n, t)| (&**n, *t)))
            .collect()
    }

    /// The families the file declares (as [`FileSnapshot::declared`]) with the names each
    /// holds in either format (`promdrop_textformat::family_names`); none when it fails.
    pub fn declared_names(&self) -> Vec<(&str, &crate::prepared::HeldNames)> {
        let Ok(content) = &self.content else {
            return Vec::new();
        };
        let prepared = &content.prepared;
        prepared
            .families
            .iter()
            .map(|f| (&*f.name, &f.names))
            .chain(
                prepared
                    .withheld
                    .iter()
                    .zip(&prepared.withheld_names)
                    .map(|((n, _), names)| (&**n, names)),
            )
            .collect()
    }

    /// This snapshot prepared again with `withheld` left out (a cross-namespace TYPE
    /// conflict appeared or went away). Parses the file's bytes again; `None` when the file
    /// failed.
    pub fn withholding(
        &self,
        withheld: Vec<Box<str>>,
        prepare: &PrepareOptions,
    ) -> Option<FileSnapshot> {
        let content = self.content.as_ref().ok()?;
        let bytes = content.bytes();
        let exposition = promdrop_textformat::parse(&bytes, content.format).ok()?;
        let origin = Origin {
            withheld,
            ..Origin::of(&self.path)
        };
        let prepared = Prepared::build(exposition.families, &bytes, &origin, prepare);
        Some(FileSnapshot {
            content: Ok(Content::new(
                &bytes,
                Arc::new(prepared),
                content.format,
                content.series,
                content.header,
            )),
            ..self.clone()
        })
    }
}

/// Opens `path` for reading without ever waiting (`O_NONBLOCK`: a FIFO or a device put in a
/// file's place must not block the open, and the reader with it) and checks, on the open file,
/// that it is a regular file; anything else is refused with an error that says so. A symlink
/// is followed (the caller decides which symlinks to open). Reading a regular file ignores
/// the flag. Every reader of files in a shared directory opens them through this function.
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket or device); refused",
        ));
    }
    Ok((file, metadata))
}

/// Reads `path`, expected to be the file `listed` describes, and parses it. Blocking: call it
/// on a blocking thread. Never reads more than `options.max_bytes + 1` bytes.
///
/// Returns `Err(Error::Replaced)` when the name now leads to another inode than the listed
/// one (it was renamed over, or a symlink was switched): the caller lists the directory again.
pub fn read(
    path: &Path,
    listed: FileIdentity,
    options: &ReadOptions,
) -> Result<FileSnapshot, Error> {
    read_prepared(path, listed, options, &options.prepare_options())
}

/// [`read`], preparing the file with `prepare` (the exposition's options: source label,
/// timestamps).
pub fn read_prepared(
    path: &Path,
    listed: FileIdentity,
    options: &ReadOptions,
    prepare: &PrepareOptions,
) -> Result<FileSnapshot, Error> {
    let read_error = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let (file, metadata) = open_regular(path).map_err(read_error)?;
    let identity = FileIdentity::of(&metadata);
    if !identity.same_inode(&listed) {
        return Err(Error::Replaced {
            path: path.to_path_buf(),
        });
    }
    if identity.size > options.max_bytes {
        let error = Error::TooLarge {
            path: path.to_path_buf(),
            size: identity.size,
            limit: options.max_bytes,
        };
        return Ok(FileSnapshot::failed(path.to_path_buf(), identity, &error));
    }
    let mut buf = Vec::with_capacity(usize::try_from(identity.size).unwrap_or(0) + 1);
    file.take(options.max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(read_error)?;
    if buf.len() as u64 > options.max_bytes {
        // It grew between the stat and the read.
        let error = Error::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
            limit: options.max_bytes,
        };
        return Ok(FileSnapshot::failed(path.to_path_buf(), identity, &error));
    }
    Ok(parse_bytes_prepared(
        path.to_path_buf(),
        identity,
        Bytes::from(buf),
        options,
        prepare,
    ))
}

/// Parses `bytes` read from `path` into a snapshot (the part of [`read`] that does no I/O).
pub fn parse_bytes(
    path: PathBuf,
    identity: FileIdentity,
    bytes: Bytes,
    options: &ReadOptions,
) -> FileSnapshot {
    parse_bytes_prepared(path, identity, bytes, options, &options.prepare_options())
}

/// [`parse_bytes`], preparing the file with `prepare`.
pub fn parse_bytes_prepared(
    path: PathBuf,
    identity: FileIdentity,
    bytes: Bytes,
    options: &ReadOptions,
    prepare: &PrepareOptions,
) -> FileSnapshot {
    let header = WriterHeader::find(&bytes);
    let checked = match parse_with_limits(&bytes, Format::Auto, &options.limits()) {
        Err(source) => Err(Error::Parse {
            path: path.clone(),
            source,
        }),
        Ok(exposition) => {
            let with_timestamp = exposition
                .families
                .iter()
                .flat_map(|f| f.samples.iter())
                .find(|s| s.timestamp.is_some());
            match (options.timestamps, with_timestamp) {
                (TimestampPolicy::Reject, Some(sample)) => Err(Error::Timestamp {
                    path: path.clone(),
                    series: promdrop_textformat::describe_series(sample),
                }),
                _ => {
                    let format = exposition.format;
                    let series = exposition.sample_count();
                    let origin = Origin::of(&path);
                    let prepared = Prepared::build(exposition.families, &bytes, &origin, prepare);
                    Ok((format, series, prepared))
                }
            }
        }
    };
    let content = match checked {
        Ok((format, series, prepared)) => Ok(Content::new(
            &bytes,
            Arc::new(prepared),
            format,
            series,
            header,
        )),
        Err(error) => Err(error.to_string()),
    };
    FileSnapshot {
        path,
        identity,
        content,
        header,
    }
}

/// The file name of `path`, the value of `--source-label` (invalid UTF-8 escaped, see
/// [`label_value`](crate::discovery::label_value)).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(crate::discovery::label_value)
        .unwrap_or_default()
}

/// The path of a file as its `file` label shows it (invalid UTF-8 escaped, see
/// [`label_value`](crate::discovery::label_value)).
pub fn file_label(path: &Path) -> String {
    crate::discovery::label_value(path.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ReadOptions {
        ReadOptions {
            max_bytes: 64,
            max_series: 3,
            timestamps: TimestampPolicy::Reject,
        }
    }

    #[test]
    fn a_file_reads_back_as_it_was_whether_it_reads_as_it_renders_or_not() {
        let read = ReadOptions {
            max_bytes: 1 << 20,
            max_series: 100,
            timestamps: TimestampPolicy::Reject,
        };
        let identity = FileIdentity {
            dev: 1,
            ino: 7,
            size: 0,
            mtime_ns: 0,
        };
        // A writer's header, then text as it renders: kept as the header and the prepared
        // text. Other spacing, a comment, an empty line: kept whole, packed.
        let renders = "# promdrop: written_at=100\n# HELP a_total A.\n# TYPE a_total counter\n\
                       a_total{x=\"1\"} 3\n# TYPE b gauge\nb 2\n";
        let other = "# TYPE b gauge\nb{ x = \"1\" }   2\n\n# a comment\nc 1\n";
        for (input, head) in [(renders, true), (other, false)] {
            let path = PathBuf::from("/d/a.prom");
            let snapshot = parse_bytes(path, identity, Bytes::from(input), &read);
            let content = snapshot.content.as_ref().unwrap();
            assert_eq!(std::str::from_utf8(&content.bytes()).unwrap(), input);
            assert_eq!(content.len(), input.len());
            assert_eq!(matches!(content.text, FileText::Head(_)), head, "{input}");
        }
    }

    fn identity_of(path: &Path) -> FileIdentity {
        FileIdentity::of(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn reads_parses_and_refuses_what_breaks_the_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.prom");
        let cases: &[(&[u8], Result<usize, &str>)] = &[
            (
                b"# promdrop: written_at=100 stale_after=1m\nup 1\nup{a=\"b\"} 2\n",
                Ok(2),
            ),
            (b"", Ok(0)),
            (b"up 1", Err("a.prom:1:5")),
            (b"a 1\nb 1\nc 1\nd 1\n", Err("number of series")),
            (&[b'#'; 65], Err("larger than --file.max-bytes=64")),
            (b"up 1 1700000000000\n", Err("client-side timestamp")),
            (b"\x00\x01\x02\xff\xfe\n", Err("invalid UTF-8")),
        ];
        for (input, expected) in cases {
            std::fs::write(&path, input).unwrap();
            let snapshot = read(&path, identity_of(&path), &options()).unwrap();
            match (expected, &snapshot.content) {
                (Ok(series), Ok(content)) => {
                    assert_eq!(content.series, *series);
                    assert_eq!(&content.bytes()[..], *input);
                }
                (Err(needle), Err(message)) => {
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}")
                }
                (e, got) => panic!("{:?}: expected {e:?}, got {got:?}", input),
            }
        }
        std::fs::write(&path, "# promdrop: written_at=100 stale_after=1m\nup 1\n").unwrap();
        let snapshot = read(&path, identity_of(&path), &options()).unwrap();
        assert_eq!(snapshot.reference_time(), 100.0);
        assert!(!snapshot.written_at_distrusted());
        // A written_at in the future is not trusted: the modification time counts.
        std::fs::write(&path, "# promdrop: written_at=99999999999\nup 1\n").unwrap();
        let snapshot = read(&path, identity_of(&path), &options()).unwrap();
        assert_eq!(snapshot.reference_time(), snapshot.identity.mtime_seconds());
        assert!(snapshot.written_at_distrusted());

        // Timestamps are kept or stripped on request.
        std::fs::write(&path, "up 1 1700000000000\n").unwrap();
        for timestamps in [TimestampPolicy::Strip, TimestampPolicy::Keep] {
            let options = ReadOptions {
                timestamps,
                ..options()
            };
            let snapshot = read(&path, identity_of(&path), &options).unwrap();
            assert_eq!(snapshot.series(), 1);
        }

        // A rename between listing and reading is noticed.
        let listed = identity_of(&path);
        std::fs::write(tmp.path().join("new"), "up 2\n").unwrap();
        std::fs::rename(tmp.path().join("new"), &path).unwrap();
        assert!(matches!(
            read(&path, listed, &options()),
            Err(Error::Replaced { .. })
        ));
    }
}
