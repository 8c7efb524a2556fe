//! The flags `promdrop write` and `promdrop run` share: which job file, with which grouping
//! labels and header, and the handoff that writes it (promdrop-writer's).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use promdrop_textformat::parse_duration;
use promdrop_writer::{Error as WriteError, Handoff, HandoffBuilder};

/// Where the job file goes and what is added to it.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The directory to write to: the shared volume's mount point. It is not created.
    /// Default: $PROMDROP_DIR when set and not empty, else /var/lib/promdrop.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The job's name (its Kubernetes Job or CronJob name): the file is <DIR>/<NAME>.prom, or
    /// <DIR>/<NAME>-<INDEX>.prom when JOB_COMPLETION_INDEX is set (then every sample also
    /// gets completion_index="<INDEX>"), and every sample gets job_name="<NAME>".
    #[arg(long, value_name = "NAME")]
    pub job: String,
    /// A grouping label added to every sample, as NAME=VALUE (repeatable). It replaces a
    /// default grouping label of the same name (job_name, completion_index, namespace from
    /// POD_NAMESPACE); a sample's own
    /// label of that name is kept, unless it is empty.
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Tell the exporter to call the file stale this long after it was written (a Prometheus
    /// duration: 90s, 15m, 1h30m, 2d). Default: the exporter's.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub stale_after: Option<Duration>,
    /// Tell the exporter to stop serving the file's samples this long after it was written.
    /// Default: the exporter's.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub expire_after: Option<Duration>,
}

impl TargetArgs {
    /// A handoff builder for this job: directory, grouping labels and header durations set;
    /// no snapshots (periodic or at install), no panic hook and no signal handling (the
    /// commands do their own).
    pub fn builder(&self) -> HandoffBuilder {
        let mut builder = Handoff::builder(self.job.clone())
            .flush_every(Duration::ZERO)
            .snapshot_at_start(false)
            .panic_hook(false)
            .signals(false);
        if let Some(dir) = &self.dir {
            builder = builder.dir(dir);
        }
        for (name, value) in &self.labels {
            builder = builder.grouping_label(name, value);
        }
        if let Some(after) = self.stale_after {
            builder = builder.stale_after(after);
        }
        if let Some(after) = self.expire_after {
            builder = builder.expire_after(after);
        }
        builder
    }
}

/// Parses `--label NAME=VALUE`. The name is checked when the handoff is installed.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, found {text:?}")),
    }
}

pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| {
        format!("{text:?} is not a Prometheus duration such as 30s, 15m, 1h30m or 2d")
    })
}

/// One readable line for a failed write: the file, then the operating system's reason (the
/// innermost error), as in `cannot write /x/job.prom: Read-only file system (os error 30)`.
pub fn describe_write_error(path: &std::path::Path, error: &WriteError) -> String {
    match error {
        WriteError::LockTimeout { .. } => format!("cannot write {}: {error}", path.display()),
        _ => {
            let mut cause: &dyn std::error::Error = error;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("cannot write {}: {cause}", path.display())
        }
    }
}

/// Why the directory cannot take the job file, if it visibly cannot: it is missing (as
/// promdrop-writer's `Error::MissingDir` says it: "directory X does not exist (is the volume
/// mounted?)") or is not a directory. Other problems (permissions, a read-only file system) show when writing.
pub fn check_dir(path: &std::path::Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "cannot write {}: directory {} does not exist (is the volume mounted?)",
            path.display(),
            dir.display()
        )),
        Ok(_) => Err(format!(
            "cannot write {}: {} is not a directory",
            path.display(),
            dir.display()
        )),
        Err(e) => Err(format!(
            "cannot write {}: directory {}: {e} (set --dir or PROMDROP_DIR to the shared volume's mount point)",
            path.display(),
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_name_equals_value() {
        assert_eq!(
            parse_label("team=db=x"),
            Ok(("team".to_string(), "db=x".to_string()))
        );
        assert_eq!(
            parse_label("empty="),
            Ok(("empty".to_string(), String::new()))
        );
        assert!(parse_label("=x").is_err());
        assert!(parse_label("novalue").is_err());
    }

    #[test]
    fn durations_are_prometheus_durations() {
        assert_eq!(parse_duration_arg("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration_arg("soon").is_err());
    }
}
