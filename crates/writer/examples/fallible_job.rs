//! A job that fails the way most Rust jobs fail: `main` returns `Err` through `?`.
//!
//! ```text
//! cargo run -p promdrop-writer --example fallible_job -- --dir DIR --input FILE
//! ```
//!
//! It installs the handoff, reads FILE (the job's input) with `?`, counts its lines and ends
//! with `guard.finish_with(...)`. A missing FILE returns `Err` from `main` before `finish`:
//! the guard is dropped without an outcome, and the file says `promdrop_job_success 0`,
//! `reason="unfinished"`, with the last success time of the last run that succeeded. A line
//! `fail` in FILE makes the work itself fail: `finish_with` records `reason="error"` and
//! returns the job's own error. Either way the exit status is the job's (1), never the
//! handoff's.

use std::error::Error;
use std::path::PathBuf;

use promdrop_writer::Handoff;
use promdrop_writer::prometheus::{IntCounter, Registry};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut input = None;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--input" => input = args.next().map(PathBuf::from),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let input = input.ok_or("--input FILE is required")?;

    let registry = Registry::new();
    let lines = IntCounter::new("fallible_job_lines_total", "Lines of input processed.")?;
    registry.register(Box::new(lines.clone()))?;
    let mut builder = Handoff::builder("fallible-job").registry(&registry);
    if let Some(dir) = dir {
        builder = builder.dir(dir);
    }
    let guard = builder.install()?;

    // A failure here returns from main through `?`: the guard's drop records
    // reason="unfinished", never a success.
    let text = std::fs::read_to_string(&input)?;

    // The safe one-call form: the outcome is the work's result, and main returns the work's
    // result; a failed metrics write is reported on stderr and changes nothing.
    guard.finish_with(process(&text, &lines))?;
    Ok(())
}

/// The job's work: count the lines, failing at a line `fail`.
fn process(text: &str, lines: &IntCounter) -> Result<(), Box<dyn Error>> {
    for line in text.lines() {
        if line == "fail" {
            return Err("the input asked to fail".into());
        }
        lines.inc();
    }
    Ok(())
}
