//! `promdrop`: the command-line side of promdrop, for shell and non-Rust jobs.
//!
//! `promdrop check` validates exposition files the way promdrop-exporter will read them;
//! `promdrop write` writes exposition text from standard input to a job file atomically.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// clippy 1.95 flags check.rs's `&PathBuf` parameters (ptr_arg); check.rs is left as it is.
#[allow(clippy::ptr_arg)]
mod check;
mod target;
mod write;

/// Hand a short-lived job's Prometheus metrics to Prometheus through a shared volume.
#[derive(Debug, Parser)]
#[command(name = "promdrop", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate exposition files (classic text format 0.0.4 or OpenMetrics 1.0).
    ///
    /// Exit status: 0 when every input is valid, 1 when any is invalid (one line per problem
    /// on stderr, as FILE:LINE:COL: message), 2 for usage or I/O errors.
    Check(check::CheckArgs),
    /// Write exposition text from standard input to <DIR>/<JOB>.prom, atomically.
    ///
    /// The safe replacement for `echo ... > x.prom.$$ && mv x.prom.$$ x.prom`: the input
    /// (classic text format or OpenMetrics) is validated, every sample gets the grouping
    /// labels (job_name, completion_index from JOB_COMPLETION_INDEX, --label), and the file is
    /// written as promdrop-writer writes it: an exclusive lock on .<file>.lock, a hidden
    /// temporary file in the same directory, fsync, rename over the target, fsync of the
    /// directory, with a `# promdrop:` header line. The file is always classic text format.
    ///
    /// Exit status: 0 when written; 1 when the input is refused (invalid, as
    /// stdin:LINE:COL: message on stderr, or larger than --max-bytes), and then the previous
    /// file is untouched; 2 for usage or I/O errors (a missing or read-only directory).
    Write(write::WriteArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Write(args) => write::run(&args),
    }
}
