//! `promdrop write`: validate exposition text from standard input and write it to the job file
//! with promdrop-writer's atomic protocol and grouping labels.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Args;
use promdrop_textformat::{Format, ParseLimits, parse_with_limits};
use promdrop_writer::Outcome;

use crate::target::{TargetArgs, check_dir, describe_write_error};

/// The default `--max-bytes`: 16 MiB.
const DEFAULT_MAX_BYTES: usize = 16 << 20;

/// The prefix of the families the writer reserves for its outcome metrics.
const RESERVED_PREFIX: &str = "promdrop_job_";

/// Arguments of `promdrop write`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Refuse standard input larger than this many bytes (nothing is written then).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    max_bytes: usize,
}

/// Why `promdrop write` failed: `Invalid` is exit 1, `Usage` exit 2.
enum Failure {
    /// The input was refused; the job file is untouched.
    Invalid(String),
    /// A usage, configuration or I/O problem.
    Usage(String),
}

/// Runs `promdrop write` and returns its exit status.
pub fn run(args: &WriteArgs) -> ExitCode {
    match write(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(line)) => {
            let _ = writeln!(std::io::stderr(), "{line}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(line)) => {
            let _ = writeln!(std::io::stderr(), "promdrop write: {line}");
            ExitCode::from(2)
        }
    }
}

fn write(args: &WriteArgs) -> Result<(), Failure> {
    let builder = args.target.builder().outcome_metrics(false);
    // Reading past the limit by one byte tells "exactly the limit" from "more".
    let mut input = Vec::new();
    let limit = u64::try_from(args.max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    std::io::stdin()
        .lock()
        .take(limit)
        .read_to_end(&mut input)
        .map_err(|e| Failure::Usage(format!("cannot read standard input: {e}")))?;
    if input.len() > args.max_bytes {
        return Err(Failure::Invalid(format!(
            "stdin: the input is larger than --max-bytes ({} bytes); nothing was written",
            args.max_bytes
        )));
    }

    let limits = ParseLimits {
        max_bytes: args.max_bytes,
        ..ParseLimits::default()
    };
    let exposition = parse_with_limits(&input, Format::Auto, &limits).map_err(|e| {
        Failure::Invalid(format!(
            "stdin:{}:{}: {}",
            e.line(),
            e.column(),
            e.message()
        ))
    })?;
    // What a default exporter would not serve in full is refused, as invalid input is.
    if let Some(problem) = promdrop_writer::servable::find(&exposition.families).first() {
        let (line, column) = promdrop_writer::servable::locate(&input, problem).unwrap_or((1, 1));
        return Err(Failure::Invalid(format!(
            "stdin:{line}:{column}: {problem}; nothing was written"
        )));
    }
    let reserved: Vec<String> = exposition
        .families
        .iter()
        .filter(|f| f.name.starts_with(RESERVED_PREFIX))
        .map(|f| f.name.to_string())
        .collect();
    drop(exposition);
    let text = String::from_utf8(input).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        let line_start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = 1 + String::from_utf8_lossy(&bytes[line_start..at])
            .chars()
            .count();
        Failure::Invalid(format!("stdin:{line}:{column}: invalid UTF-8"))
    })?;
    for name in &reserved {
        let _ = writeln!(
            std::io::stderr(),
            "promdrop write: warning: left out the family {name}: names starting with {RESERVED_PREFIX} are reserved for promdrop's job outcome metrics"
        );
    }

    // Installing writes nothing (and dropping the guard would write), so it comes once the
    // input is known to be good.
    let guard = builder
        .text_source(move || Ok(text.clone()))
        .install()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let path = guard.path().to_path_buf();
    guard.finish(Outcome::Success).map_err(|e| {
        // A missing directory is the usual mistake: say so rather than name the lock file.
        Failure::Usage(
            check_dir(&path)
                .err()
                .unwrap_or_else(|| describe_write_error(&path, &e)),
        )
    })
}
