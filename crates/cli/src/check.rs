//! `promdrop check`: validate files with the parser the exporter uses, and say what an
//! exporter with default flags would not serve in full (sample timestamps, a series twice:
//! promdrop-writer's `servable` rule).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use promdrop_textformat::{Error as ParseError, Format, parse};
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

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buffer)?;
        Ok(buffer)
    } else {
        std::fs::read(path)
    }
}

fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        path.display().to_string()
    }
}

fn check_one(path: &Path, format: Format) -> FileReport {
    let file = display_name(path);
    let bytes = match read_input(path) {
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
    match parse(&bytes, resolved) {
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
    let files: Vec<FileReport> = args.files.iter().map(|p| check_one(p, format)).collect();
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
