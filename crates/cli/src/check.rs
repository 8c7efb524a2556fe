//! `promdrop check`: validate files with the parser the exporter uses, and say what an
//! exporter with default flags would not serve in full (sample timestamps, a series twice:
//! promdrop-writer's `servable` rule).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use promdrop_textfile::flags::{byte_size, series_limit};
use promdrop_textfile::snapshot::open_regular;
use promdrop_textformat::{Error as ParseError, Format, ParseLimits, parse_with_limits};
use promdrop_writer::servable;
use serde::Serialize;

/// Arguments of `promdrop check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The format to read: auto picks OpenMetrics when the last line is `# EOF`.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    /// Print a JSON report on standard output (per file: valid, families, series, errors).
    #[arg(long)]
    json: bool,
    /// Largest file read, as the exporter's --file.max-bytes (KiB, MiB, GiB suffixes).
    #[arg(long = "file.max-bytes", default_value = "16MiB", value_parser = byte_size, value_name = "SIZE")]
    max_bytes: u64,
    /// Most series in a file, as the exporter's --file.max-series.
    #[arg(long = "file.max-series", default_value = "100000", value_parser = series_limit, value_name = "N")]
    max_series: usize,
    /// Files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// The `--format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Classic,
    Openmetrics,
}

impl From<FormatArg> for Format {
    fn from(arg: FormatArg) -> Format {
        match arg {
            FormatArg::Auto => Format::Auto,
            FormatArg::Classic => Format::Classic,
            FormatArg::Openmetrics => Format::OpenMetrics,
        }
    }
}

/// One problem found in a file.
#[derive(Debug, Serialize)]
struct Problem {
    line: usize,
    column: usize,
    message: String,
}

/// The verdict on one file.
#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    valid: bool,
    /// The format the file was read as (`classic` or `openmetrics`); absent when unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    families: usize,
    series: usize,
    errors: Vec<Problem>,
    /// Why the file could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    io_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    valid: bool,
    files: Vec<FileReport>,
}

/// Reads at most `max_bytes` of `path` (or standard input), as the exporter does: a file that
/// is not a regular file (a FIFO, `/dev/zero` behind a symlink) is refused without waiting,
/// and a larger one is refused without reading it all.
fn read_input(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(max_bytes + 1)
            .read_to_end(&mut buffer)?;
    } else {
        let (file, _) = open_regular(path)?;
        file.take(max_bytes + 1).read_to_end(&mut buffer)?;
    }
    if buffer.len() as u64 > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than --file.max-bytes={max_bytes}; the exporter would not serve it"),
        ));
    }
    Ok(buffer)
}

fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        path.display().to_string()
    }
}

fn check_one(path: &Path, format: Format, limits: &ParseLimits) -> FileReport {
    let file = display_name(path);
    let bytes = match read_input(path, limits.max_bytes as u64) {
        Ok(bytes) => bytes,
        Err(e) => {
            return FileReport {
                file,
                valid: false,
                format: None,
                families: 0,
                series: 0,
                errors: Vec::new(),
                io_error: Some(e.to_string()),
            };
        }
    };
    let resolved = format.resolve(&bytes);
    match parse_with_limits(&bytes, resolved, limits) {
        Ok(exposition) => {
            // Valid text that a default exporter would still not serve in full (the rule
            // promdrop write and the writer apply too).
            let errors: Vec<Problem> = servable::find(&exposition.families)
                .iter()
                .map(|problem| {
                    let (line, column) = servable::locate(&bytes, problem).unwrap_or((1, 1));
                    Problem {
                        line,
                        column,
                        message: problem.to_string(),
                    }
                })
                .collect();
            FileReport {
                file,
                valid: errors.is_empty(),
                format: Some(resolved.to_string()),
                families: exposition.families.len(),
                series: exposition.sample_count(),
                errors,
                io_error: None,
            }
        }
        Err(e) => FileReport {
            file,
            valid: false,
            format: Some(resolved.to_string()),
            families: 0,
            series: 0,
            errors: vec![problem(&e)],
            io_error: None,
        },
    }
}

fn problem(e: &ParseError) -> Problem {
    Problem {
        line: e.line(),
        column: e.column(),
        message: e.message(),
    }
}

/// Runs `promdrop check` and returns its exit status.
pub fn run(args: &CheckArgs) -> ExitCode {
    let format = Format::from(args.format);
    let limits = ParseLimits {
        max_bytes: usize::try_from(args.max_bytes).unwrap_or(usize::MAX),
        max_series: args.max_series,
        ..ParseLimits::default()
    };
    let files: Vec<FileReport> = args
        .files
        .iter()
        .map(|p| check_one(p, format, &limits))
        .collect();
    let mut stderr = std::io::stderr().lock();
    for report in &files {
        if let Some(io_error) = &report.io_error {
            let _ = writeln!(
                stderr,
                "promdrop check: cannot read {}: {io_error}",
                report.file
            );
        }
        for e in &report.errors {
            let _ = writeln!(
                stderr,
                "{}:{}:{}: {}",
                report.file, e.line, e.column, e.message
            );
        }
    }
    let any_io_error = files.iter().any(|f| f.io_error.is_some());
    let all_valid = files.iter().all(|f| f.valid);
    if args.json {
        let report = Report {
            valid: all_valid,
            files,
        };
        let mut stdout = std::io::stdout().lock();
        match serde_json::to_writer_pretty(&mut stdout, &report) {
            Ok(()) => {
                let _ = writeln!(stdout);
            }
            Err(e) => {
                let _ = writeln!(stderr, "promdrop check: cannot write the JSON report: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if any_io_error {
        ExitCode::from(2)
    } else if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
