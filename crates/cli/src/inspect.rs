//! `promdrop inspect`: what an exporter would serve from some directories, by the exporter's
//! own rules (promdrop-textfile's discovery, reading and staleness code, and its flag parsing,
//! not a copy of them).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::discovery;
use promdrop_textfile::flags::{OptionalDuration, byte_size, optional_duration, series_limit};
use promdrop_textfile::snapshot::{self, FileSnapshot, ReadOptions};
use promdrop_textfile::staleness::{FileState, Policy, Timing};
use promdrop_textformat::format_duration;
use serde::Serialize;

/// Arguments of `promdrop inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Directories to inspect, as given to promdrop-exporter's --textfile.directory.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Mark a file stale when it is older than this (`off`: never); as the exporter's flag.
    #[arg(long, default_value = "1h", value_parser = optional_duration, value_name = "DURATION")]
    stale_after: OptionalDuration,
    /// Call a file expired (not served) when it is older than this (`off`: never).
    #[arg(long, default_value = "off", value_parser = optional_duration, value_name = "DURATION")]
    expire_after: OptionalDuration,
    /// Largest file read, as the exporter's --file.max-bytes (KiB, MiB, GiB suffixes).
    #[arg(long = "file.max-bytes", default_value = "16MiB", value_parser = byte_size, value_name = "SIZE")]
    max_bytes: u64,
    /// Most series in a file, as the exporter's --file.max-series.
    #[arg(long = "file.max-series", default_value = "100000", value_parser = series_limit, value_name = "N")]
    max_series: usize,
    /// What to do with client-side timestamps, as the exporter's --timestamps.
    #[arg(long, value_enum, default_value = "reject")]
    timestamps: TimestampPolicy,
    /// The tenancy layout, as the exporter's --textfile.tenancy: files in <DIR>/<namespace>/.
    #[arg(
        long = "textfile.tenancy",
        default_value_t = false,
        default_missing_value = "true",
        num_args = 0..=1,
        require_equals = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    tenancy: bool,
    /// Print JSON on standard output instead of a table.
    #[arg(long)]
    json: bool,
}

/// One file as the exporter would see it.
#[derive(Debug, Serialize)]
struct FileRow {
    file: String,
    /// fresh, stale, expired or invalid.
    state: &'static str,
    /// Seconds since the writer's `written_at`, else since the file's modification time.
    age_seconds: Option<f64>,
    series: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn row(snapshot: &FileSnapshot, policy: &Policy, now: SystemTime) -> FileRow {
    let timing = Timing::of(snapshot, policy);
    let (state, error) = match &snapshot.content {
        Ok(_) => (timing.state(now), None),
        Err(e) => (FileState::Fresh, Some(e.clone())),
    };
    FileRow {
        file: snapshot.path.display().to_string(),
        state: if error.is_some() {
            "invalid"
        } else {
            state.as_str()
        },
        age_seconds: Some(timing.age(now)),
        series: snapshot.series(),
        error,
    }
}

fn human_age(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s >= 0.0 => format_duration(Duration::from_secs(s.round() as u64)),
        Some(_) => "future".to_string(),
        None => "-".to_string(),
    }
}

/// Runs `promdrop inspect` and returns its exit status: 0 when every file would be served or
/// is only stale or expired, 1 when any is invalid, 2 when a directory cannot be listed.
pub fn run(args: &InspectArgs) -> ExitCode {
    let options = ReadOptions {
        max_bytes: args.max_bytes,
        max_series: args.max_series,
        timestamps: args.timestamps,
    };
    let policy = Policy {
        stale_after: args.stale_after.0,
        expire_after: args.expire_after.0,
        delete_after: None,
    };
    let now = SystemTime::now();
    let mut rows = Vec::new();
    let mut listing_failed = false;
    let mut stderr = std::io::stderr().lock();
    for dir in &args.dirs {
        let listed = if args.tenancy {
            discovery::list_tenants(dir)
        } else {
            discovery::list(dir)
        };
        let listing = match listed {
            Ok(listing) => listing,
            Err(e) => {
                let _ = writeln!(stderr, "promdrop inspect: {e}");
                listing_failed = true;
                continue;
            }
        };
        for refused in listing.refused {
            rows.push(FileRow {
                file: refused.path.display().to_string(),
                state: "invalid",
                age_seconds: None,
                series: 0,
                error: Some(refused.error.to_string()),
            });
        }
        for found in listing.found {
            let snapshot = match snapshot::read(&found.path, found.identity, &options) {
                Ok(snapshot) => snapshot,
                // Replaced or unreadable between listing and reading.
                Err(e) => FileSnapshot::failed(found.path.clone(), found.identity, &e),
            };
            rows.push(row(&snapshot, &policy, now));
        }
    }
    let any_invalid = rows.iter().any(|r| r.state == "invalid");
    let mut stdout = std::io::stdout().lock();
    if args.json {
        if let Err(e) = serde_json::to_writer_pretty(&mut stdout, &rows) {
            let _ = writeln!(
                stderr,
                "promdrop inspect: cannot write the JSON report: {e}"
            );
            return ExitCode::from(2);
        }
        let _ = writeln!(stdout);
    } else {
        let width = rows.iter().map(|r| r.file.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            stdout,
            "{:<width$}  {:>8}  {:<7}  {:>7}  ERROR",
            "FILE", "AGE", "STATE", "SERIES"
        );
        for r in &rows {
            let _ = writeln!(
                stdout,
                "{:<width$}  {:>8}  {:<7}  {:>7}  {}",
                r.file,
                human_age(r.age_seconds),
                r.state,
                r.series,
                r.error.as_deref().unwrap_or("")
            );
        }
    }
    if listing_failed {
        ExitCode::from(2)
    } else if any_invalid {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
