//! `promdrop`: the command-line side of promdrop, for shell and non-Rust jobs.
//!
//! `promdrop check` validates exposition files the way promdrop-exporter will read them;
//! `promdrop write` writes exposition text from standard input to a job file atomically;
//! `promdrop run` runs a job, scrapes its metrics endpoint, and writes its metrics and outcome;
//! `promdrop inspect` shows what promdrop-exporter would serve from some directories.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod inspect;
mod run;
mod scrape_tls;
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
    /// Valid means what promdrop-exporter with default flags serves in full: a file that
    /// parses but has sample timestamps (which the default --timestamps=reject refuses, the
    /// whole file) or a series twice (served once) is reported as FILE:LINE:COL too.
    ///
    /// Exit status: 0 when every input is valid, 1 when any is invalid (one line per problem
    /// on stderr, as FILE:LINE:COL: message), 2 for usage or I/O errors.
    Check(check::CheckArgs),
    /// Write exposition text from standard input to <DIR>/<JOB>.prom, atomically.
    ///
    /// The safe replacement for `echo ... > x.prom.$$ && mv x.prom.$$ x.prom`: the input
    /// (classic text format or OpenMetrics) is validated, every sample gets the grouping
    /// labels (job_name, completion_index from JOB_COMPLETION_INDEX, namespace from
    /// POD_NAMESPACE, --label), and the file is
    /// written as promdrop-writer writes it: an exclusive lock on .<file>.lock, a hidden
    /// temporary file in the same directory, fsync, rename over the target, fsync of the
    /// directory, with a `# promdrop:` header line. The file is always classic text format.
    ///
    /// What is written with exit 0 is served in full by promdrop-exporter with default
    /// flags: input with sample timestamps (as /federate writes them), which the exporter
    /// would refuse whole, or with a series twice, of which it would serve one, is refused.
    ///
    /// Exit status: 0 when written; 1 when the input is refused (invalid, with sample
    /// timestamps or a series twice, as stdin:LINE:COL: message on stderr, or larger than
    /// --max-bytes), and then the previous file is untouched; 2 for usage or I/O errors (a
    /// missing directory, "does not exist (is the volume mounted?)", or a read-only one).
    Write(write::WriteArgs),
    /// Run a job as a child process and hand its metrics and outcome to <DIR>/<JOB>.prom.
    ///
    /// For jobs that serve their own metrics endpoint and exit before Prometheus scrapes them
    /// (the descheduler run as a CronJob, on https://127.0.0.1:10258/metrics with a
    /// self-signed certificate). promdrop run starts CMD, forwards SIGTERM, SIGINT, SIGHUP,
    /// SIGQUIT, SIGUSR1 and SIGUSR2 to it, scrapes --scrape every --scrape-interval while it
    /// runs (a failed scrape keeps the previous good one), writes a snapshot
    /// (promdrop_job_running 1) every --flush-every, and when the child ends writes the last
    /// good scrape plus the outcome metrics: start and end time, promdrop_job_success,
    /// promdrop_job_exit_reason (success, error or signal), promdrop_job_exit_code (as a shell
    /// reports it: 128 + N for signal N), promdrop_job_exit_signal (0 unless killed), and
    /// promdrop_job_last_success_timestamp_seconds, carried forward by a failed run. Without
    /// --scrape, or when no scrape ever succeeded (a warning says so), the file holds the
    /// outcome metrics only.
    ///
    /// What can be missed: the file holds the last scrape before the child exited, so
    /// increments in the last --scrape-interval of the child's life are lost (the endpoint is
    /// gone once the child is). To lose less, shorten --scrape-interval, or let the job wait
    /// briefly (one or two intervals) after its last update before it exits. The
    /// descheduler's metrics change only during its descheduling loop, so the scrapes after
    /// the loop, while it shuts down, hold the final values.
    ///
    /// Each scrape is asked for gzip (Accept-Encoding: gzip, as Prometheus asks) and decoded,
    /// and for UTF-8 names as written (escaping=allow-utf-8, as Prometheus 3 asks), which the
    /// job file keeps.
    /// Sample timestamps in a scrape (a /federate endpoint) are stripped and a repeated series
    /// is kept once (its first sample, as Prometheus keeps it), with one warning: the file is
    /// always served in full by promdrop-exporter with default flags, outcome included.
    ///
    /// Exit status: the child's, exit code passed through, 128 + N when signal N killed it
    /// (143 for SIGTERM), 127 when CMD is not found, 126 when it cannot be run; 2 for usage
    /// errors, before anything is run. A failed write of the job file is reported on stderr
    /// and does not change the exit status.
    Run(run::RunArgs),
    /// Show what promdrop-exporter would serve from the given directories.
    ///
    /// A table of the files an exporter would serve: file, age (since the writer's
    /// `written_at` header, else the modification time), state (fresh, stale, expired or
    /// invalid), series, and the error of an invalid file. The rules are the exporter's own:
    /// only `*.prom` files directly in each directory, hidden files ignored, symlinks
    /// followed only inside the directory, the same size and series limits, and the writer's
    /// header overriding --stale-after and --expire-after for its file.
    ///
    /// Exit status: 0 when no file is invalid, 1 when any is, 2 when a directory cannot be
    /// listed.
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Write(args) => write::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Inspect(args) => inspect::run(&args),
    }
}
