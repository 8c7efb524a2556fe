//! `promdrop`: the command-line side of promdrop, for shell and non-Rust jobs.
//!
//! `promdrop check` validates exposition files the way promdrop-exporter will read them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&args),
    }
}
