//! Command-line flags (clap derive), each with an environment variable, and their checks.
//!
//! Flag names follow the Go exporters' conventions (`--web.listen-address`, `--log.level`), so
//! that operators find what they know from node_exporter.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
use promdrop_textfile::TimestampPolicy;
use promdrop_textfile::flags::{
    OptionalDuration, byte_size, duration, optional_duration, positive_duration, series_limit,
};
use promdrop_textformat::is_valid_label_name;

use crate::error::Error;

/// The longest `--watch.max-delay`.
pub const MAX_DELAY_LIMIT: Duration = Duration::from_secs(60);

/// The log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including each file read.
    Debug,
    /// Start, stop, files appearing, failing, expiring and being deleted.
    Info,
    /// Problems only.
    Warn,
    /// Fatal problems only.
    Error,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `ts=... level=info msg="..." key=value`, as Go exporters write.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Every flag of `promdrop-exporter`. Build one from arguments with [`Config::from_args`]
/// (or clap's `Config::parse_from`), then check it with [`Config::validate`].
#[derive(Debug, Clone, Parser)]
#[command(
    name = "promdrop-exporter",
    version,
    about = "Serves the Prometheus metrics that short-lived jobs leave as <job>.prom files",
    long_about = None
)]
pub struct Config {
    /// Directory to serve *.prom files from (repeatable; in the environment, comma-separated).
    #[arg(
        long = "textfile.directory",
        env = "PROMDROP_TEXTFILE_DIRECTORY",
        value_name = "DIR",
        default_value = "/var/lib/promdrop",
        value_delimiter = ','
    )]
    pub directories: Vec<PathBuf>,

    /// Full rescan of every directory this often, to catch what change events miss (network
    /// file systems, event queue overflows, a directory deleted and created again).
    #[arg(
        long = "rescan-interval",
        env = "PROMDROP_RESCAN_INTERVAL",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = positive_duration
    )]
    pub rescan_interval: Duration,

    /// Watch directories for change events (inotify). With false, changes are seen by the
    /// periodic rescan only (poll mode, for file systems without events).
    #[arg(
        long = "watch.events",
        env = "PROMDROP_WATCH_EVENTS",
        value_name = "BOOL",
        default_value_t = true,
        action = ArgAction::Set
    )]
    pub watch_events: bool,

    /// How long to gather a burst of change events before looking at what changed. A file
    /// renamed into place or removed is looked at without waiting: it is complete.
    #[arg(
        long = "watch.debounce",
        env = "PROMDROP_WATCH_DEBOUNCE",
        value_name = "DURATION",
        default_value = "10ms",
        value_parser = duration
    )]
    pub debounce: Duration,

    /// Longest a change waits to be read and published when nothing asks for it. Changes are
    /// gathered and published together (one wake-up for many); a scrape or a status request
    /// has every complete change made before it published at once. 0 looks at each change as
    /// it comes.
    #[arg(
        long = "watch.max-delay",
        env = "PROMDROP_WATCH_MAX_DELAY",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = duration
    )]
    pub max_delay: Duration,

    /// Largest file read; a larger file is reported and not served (KiB, MiB, GiB suffixes).
    #[arg(
        long = "file.max-bytes",
        env = "PROMDROP_FILE_MAX_BYTES",
        value_name = "SIZE",
        default_value = "16MiB",
        value_parser = byte_size
    )]
    pub max_bytes: u64,

    /// Most series (sample lines) in one file; a file with more is reported and not served.
    #[arg(
        long = "file.max-series",
        env = "PROMDROP_FILE_MAX_SERIES",
        value_name = "N",
        default_value = "100000",
        value_parser = series_limit
    )]
    pub max_series: usize,

    /// Most bytes all served files may hold together (KiB, MiB, GiB suffixes); files are
    /// admitted in serving order (directories in flag order, then names) and a file that does
    /// not fit is reported and not served. Sized for the DaemonSet's memory limit.
    #[arg(
        long = "max-total-bytes",
        env = "PROMDROP_MAX_TOTAL_BYTES",
        value_name = "SIZE",
        default_value = "80MiB",
        value_parser = byte_size
    )]
    pub max_total_bytes: u64,

    /// Most series all served files may hold together; as `--max-total-bytes`.
    #[arg(
        long = "max-total-series",
        env = "PROMDROP_MAX_TOTAL_SERIES",
        value_name = "N",
        default_value = "1000000",
        value_parser = series_limit
    )]
    pub max_total_series: usize,

    /// Samples with client-side timestamps: reject the file, strip them, or keep them.
    #[arg(
        long = "timestamps",
        env = "PROMDROP_TIMESTAMPS",
        value_enum,
        default_value = "reject"
    )]
    pub timestamps: TimestampPolicy,

    /// Add a label of this name to every sample, valued with the file's name (`backup.prom`).
    #[arg(
        long = "source-label",
        env = "PROMDROP_SOURCE_LABEL",
        value_name = "NAME"
    )]
    pub source_label: Option<String>,

    /// Tenancy: files live in <dir>/<namespace>/<job>.prom, one subdirectory per Kubernetes
    /// namespace, and every sample is served with the label --textfile.tenancy-label set to
    /// the subdirectory's name (a file's own value kept as exported_<label>). No namespace's
    /// file can replace, drop or change another's series or families.
    #[arg(
        long = "textfile.tenancy",
        env = "PROMDROP_TEXTFILE_TENANCY",
        value_name = "BOOL",
        default_value_t = false,
        default_missing_value = "true",
        num_args = 0..=1,
        require_equals = true,
        action = ArgAction::Set
    )]
    pub tenancy: bool,

    /// The label --textfile.tenancy sets to the namespace.
    #[arg(
        long = "textfile.tenancy-label",
        env = "PROMDROP_TEXTFILE_TENANCY_LABEL",
        value_name = "NAME",
        default_value = "namespace"
    )]
    pub tenancy_label: String,

    /// With --textfile.tenancy: most files served per namespace (the first ones by name);
    /// the others are reported and not served.
    #[arg(
        long = "textfile.tenant.max-files",
        env = "PROMDROP_TEXTFILE_TENANT_MAX_FILES",
        value_name = "N",
        default_value = "1000",
        value_parser = series_limit
    )]
    pub tenant_max_files: usize,

    /// With --textfile.tenancy: most series served per namespace; a file that would go over
    /// is reported and not served (files count in name order).
    #[arg(
        long = "textfile.tenant.max-series",
        env = "PROMDROP_TEXTFILE_TENANT_MAX_SERIES",
        value_name = "N",
        default_value = "100000",
        value_parser = series_limit
    )]
    pub tenant_max_series: usize,

    /// With --textfile.tenancy: most bytes of files served per namespace; a file that would
    /// go over is reported and not served (files count in name order).
    #[arg(
        long = "textfile.tenant.max-bytes",
        env = "PROMDROP_TEXTFILE_TENANT_MAX_BYTES",
        value_name = "SIZE",
        default_value = "32MiB",
        value_parser = byte_size
    )]
    pub tenant_max_bytes: u64,

    /// Serve every sample with job_name set from the file's name (<job>.prom, or
    /// <job>-<index>.prom with the sample's completion_index), a file's own different value
    /// kept as exported_job_name: no file can speak for another job.
    #[arg(
        long = "textfile.job-name-from-path",
        env = "PROMDROP_TEXTFILE_JOB_NAME_FROM_PATH",
        value_name = "BOOL",
        default_value_t = false,
        default_missing_value = "true",
        num_args = 0..=1,
        require_equals = true,
        action = ArgAction::Set
    )]
    pub job_name_from_path: bool,

    /// Mark a file stale when it is older than this (`off` never). The writer's header
    /// overrides it for its file.
    #[arg(
        long = "stale-after",
        env = "PROMDROP_STALE_AFTER",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = optional_duration
    )]
    pub stale_after: OptionalDuration,

    /// Withhold a file's samples when it is older than this (`off` never); its meta metrics
    /// remain. The writer's header overrides it for its file.
    #[arg(
        long = "expire-after",
        env = "PROMDROP_EXPIRE_AFTER",
        value_name = "DURATION",
        default_value = "off",
        value_parser = optional_duration
    )]
    pub expire_after: OptionalDuration,

    /// Delete a file when it is older than this (`off` never), under the writer's lock.
    #[arg(
        long = "delete-after",
        env = "PROMDROP_DELETE_AFTER",
        value_name = "DURATION",
        default_value = "off",
        value_parser = optional_duration
    )]
    pub delete_after: OptionalDuration,

    /// Also serve node_textfile_mtime_seconds and node_textfile_scrape_error, for the node
    /// mixin's alerts.
    #[arg(long = "compat.node-exporter", env = "PROMDROP_COMPAT_NODE_EXPORTER")]
    pub compat_node_exporter: bool,

    /// Address to listen on: host:port, or :port for every interface.
    #[arg(
        long = "web.listen-address",
        env = "PROMDROP_WEB_LISTEN_ADDRESS",
        value_name = "ADDRESS",
        default_value = ":9466"
    )]
    pub listen_address: String,

    /// Path under which to serve the metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "PROMDROP_WEB_TELEMETRY_PATH",
        value_name = "PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,

    /// Web configuration file (exporter-toolkit format) for TLS, mutual TLS and basic auth
    /// on every endpoint; reloaded when it or a file it names changes, and on SIGHUP. Without
    /// it: plain HTTP, no authentication.
    #[arg(
        long = "web.config.file",
        env = "PROMDROP_WEB_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub web_config_file: Option<PathBuf>,

    /// Most connections served at once; one more is answered 503 and closed.
    #[arg(
        long = "web.max-connections",
        env = "PROMDROP_WEB_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "512",
        value_parser = connection_limit
    )]
    pub max_connections: usize,

    /// Most requests for the metrics in flight (until the response is written), as
    /// node_exporter's flag; one more is answered 503. 0: no limit.
    #[arg(
        long = "web.max-requests",
        env = "PROMDROP_WEB_MAX_REQUESTS",
        value_name = "N",
        default_value = "40"
    )]
    pub max_requests: usize,

    /// How long writing one response may take; a client that does not read it in time loses
    /// its connection.
    #[arg(
        long = "web.write-timeout",
        env = "PROMDROP_WEB_WRITE_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = positive_duration
    )]
    pub write_timeout: Duration,

    /// /-/healthy fails (503) once the engine has made no progress for this long, so that a
    /// liveness probe restarts a process stuck on a file system.
    #[arg(
        long = "watchdog.timeout",
        env = "PROMDROP_WATCHDOG_TIMEOUT",
        value_name = "DURATION",
        default_value = "2m",
        value_parser = positive_duration
    )]
    pub watchdog_timeout: Duration,

    /// How often --web.config.file is checked for changes (for tests).
    #[arg(
        long = "web.config.reload-interval",
        env = "PROMDROP_WEB_CONFIG_RELOAD_INTERVAL",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = positive_duration,
        hide = true
    )]
    pub web_config_reload_interval: Duration,

    /// Only log messages of this level or above.
    #[arg(
        long = "log.level",
        env = "PROMDROP_LOG_LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub log_level: LogLevel,

    /// Log line format.
    #[arg(
        long = "log.format",
        env = "PROMDROP_LOG_FORMAT",
        value_enum,
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,
}

impl Config {
    /// Parses `args` (the first is the program name) as the binary does, without reading the
    /// environment's defaults differently, and validates the result.
    ///
    /// ```
    /// use std::time::Duration;
    /// use promdrop_exporter::Config;
    ///
    /// let config = Config::from_args([
    ///     "promdrop-exporter",
    ///     "--textfile.directory=/var/lib/promdrop",
    ///     "--stale-after=10m",
    ///     "--expire-after=1d",
    /// ])?;
    /// assert_eq!(config.stale_after.0, Some(Duration::from_secs(600)));
    /// assert_eq!(config.expire_after.0, Some(Duration::from_secs(86_400)));
    /// assert_eq!(config.delete_after.0, None); // off by default
    /// assert_eq!(config.max_bytes, 16 << 20);
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn from_args<I, T>(args: I) -> Result<Config, Box<dyn std::error::Error + Send + Sync>>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = Config::try_parse_from(args)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what clap cannot: label names, the telemetry path, the listen address and the
    /// order of the staleness durations.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(name) = &self.source_label
            && (!is_valid_label_name(name) || name.starts_with("__"))
        {
            return Err(Error::Flag {
                flag: "--source-label",
                value: name.clone(),
                reason: "not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
            });
        }
        let label = self.tenancy_label.as_str();
        let reason = if !is_valid_label_name(label) || label.starts_with("__") {
            Some("not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")
        } else if matches!(label, "le" | "quantile") {
            Some("le and quantile belong to histograms and summaries")
        } else if self.job_name_from_path && label == "job_name" {
            Some("job_name is set by --textfile.job-name-from-path")
        } else if self.source_label.as_deref() == Some(label) {
            Some("--source-label sets this label")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::Flag {
                flag: "--textfile.tenancy-label",
                value: label.to_string(),
                reason,
            });
        }
        if self.job_name_from_path && self.source_label.as_deref() == Some("job_name") {
            return Err(Error::Flag {
                flag: "--source-label",
                value: "job_name".to_string(),
                reason: "job_name is set by --textfile.job-name-from-path",
            });
        }
        if !self.telemetry_path.starts_with('/') || self.telemetry_path == "/" {
            return Err(Error::Flag {
                flag: "--web.telemetry-path",
                value: self.telemetry_path.clone(),
                reason: "must start with / and not be / itself (the status page)",
            });
        }
        if matches!(
            self.telemetry_path.as_str(),
            "/-/healthy" | "/-/ready" | "/api/v1/files"
        ) {
            return Err(Error::Flag {
                flag: "--web.telemetry-path",
                value: self.telemetry_path.clone(),
                reason: "is taken by another endpoint",
            });
        }
        // The events of a delay wait in memory; a minute at a hundred changes a second is
        // a few thousand.
        if self.max_delay > MAX_DELAY_LIMIT {
            return Err(Error::Flag {
                flag: "--watch.max-delay",
                value: format!("{:?}", self.max_delay),
                reason: "at most 1m",
            });
        }
        if self.directories.is_empty() {
            return Err(Error::Flag {
                flag: "--textfile.directory",
                value: String::new(),
                reason: "at least one directory is needed",
            });
        }
        if self.max_series == 0 {
            return Err(Error::Flag {
                flag: "--file.max-series",
                value: "0".to_string(),
                reason: "must be at least 1",
            });
        }
        parse_listen_address(&self.listen_address)?;
        Ok(())
    }
}

/// `--web.max-connections`: at least 1.
fn connection_limit(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{text:?} is not a number of connections such as 512"
        )),
    }
}

/// The addresses `--web.listen-address` names: `host:port`, or `:port` for every interface
/// (IPv6 and IPv4 when the system allows, else IPv4).
pub fn parse_listen_address(address: &str) -> Result<Vec<String>, Error> {
    let bad = || Error::ListenAddress {
        address: address.to_string(),
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        Ok(vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")])
    } else {
        Ok(vec![address.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":9466").unwrap(),
            ["[::]:9466", "0.0.0.0:9466"]
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:0").unwrap(),
            ["127.0.0.1:0"]
        );
        assert!(parse_listen_address("9466").is_err());
        assert!(parse_listen_address(":http").is_err());
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["promdrop-exporter"];
        all.extend_from_slice(args);
        Config::from_args(all).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.directories, vec![PathBuf::from("/var/lib/promdrop")]);
        assert_eq!(c.rescan_interval, Duration::from_secs(30));
        assert_eq!(c.max_bytes, 16 << 20);
        assert_eq!(c.max_series, 100_000);
        assert_eq!(c.timestamps, TimestampPolicy::Reject);
        assert_eq!(c.stale_after.0, Some(Duration::from_secs(3600)));
        assert_eq!(c.expire_after.0, None);
        assert_eq!(c.delete_after.0, None);
        assert_eq!(c.listen_address, ":9466");
        assert_eq!(c.telemetry_path, "/metrics");
        assert!(c.watch_events);
        assert!(!c.compat_node_exporter);
        assert_eq!(c.web_config_file, None);
        assert_eq!(c.web_config_reload_interval, Duration::from_secs(5));
        assert_eq!(c.max_connections, 512);
        assert_eq!(c.max_requests, 40);
        assert_eq!(c.write_timeout, Duration::from_secs(30));
        assert_eq!(c.watchdog_timeout, Duration::from_secs(120));
        assert!(!c.tenancy);
        assert_eq!(c.tenancy_label, "namespace");
        assert!(!c.job_name_from_path);
        assert_eq!(c.tenant_max_files, 1000);
        assert_eq!(c.tenant_max_series, 100_000);
        assert_eq!(c.tenant_max_bytes, 32 << 20);
        assert_eq!(c.debounce, Duration::from_millis(10));
        assert_eq!(c.max_delay, Duration::from_secs(5));
    }

    #[test]
    fn tenancy_flags() {
        let c = parse(&["--textfile.tenancy", "--textfile.job-name-from-path"]).unwrap();
        assert!(c.tenancy && c.job_name_from_path);
        let c = parse(&[
            "--textfile.tenancy=false",
            "--textfile.tenancy-label=team",
            "--textfile.tenant.max-files=5",
            "--textfile.tenant.max-series=10",
            "--textfile.tenant.max-bytes=1MiB",
        ])
        .unwrap();
        assert!(!c.tenancy);
        assert_eq!(c.tenancy_label, "team");
        assert_eq!(
            (c.tenant_max_files, c.tenant_max_series, c.tenant_max_bytes),
            (5, 10, 1 << 20)
        );
        for bad in [
            &["--textfile.tenancy-label=le"][..],
            &["--textfile.tenancy-label=__ns"],
            &["--textfile.tenancy-label=a-b"],
            &["--textfile.tenancy-label=src", "--source-label=src"],
            &[
                "--textfile.job-name-from-path",
                "--textfile.tenancy-label=job_name",
            ],
            &["--textfile.job-name-from-path", "--source-label=job_name"],
            &["--textfile.tenant.max-files=0"],
            &["--textfile.tenant.max-bytes=0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let c = parse(&[
            "--textfile.directory=/a",
            "--textfile.directory",
            "/b",
            "--file.max-bytes=1KiB",
            "--timestamps=strip",
            "--watch.events=false",
            "--stale-after=off",
            "--source-label=source_file",
            "--web.config.file=/etc/promdrop/web.yml",
            "--web.config.reload-interval=250ms",
        ])
        .unwrap();
        assert_eq!(
            c.web_config_file,
            Some(PathBuf::from("/etc/promdrop/web.yml"))
        );
        assert_eq!(c.web_config_reload_interval, Duration::from_millis(250));
        assert_eq!(
            c.directories,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(c.max_bytes, 1024);
        assert_eq!(c.timestamps, TimestampPolicy::Strip);
        assert!(!c.watch_events);
        assert_eq!(c.stale_after.0, None);
        assert_eq!(
            parse(&["--watch.max-delay=1m"]).unwrap().max_delay,
            MAX_DELAY_LIMIT
        );
        for bad in [
            &["--source-label=1x"][..],
            &["--source-label=__x"],
            &["--web.telemetry-path=metrics"],
            &["--web.listen-address=9466"],
            &["--rescan-interval=0"],
            &["--stale-after=1.5h"],
            &["--file.max-bytes=12XB"],
            &["--timestamps=maybe"],
            &["--web.config.reload-interval=0"],
            &["--web.max-connections=0"],
            &["--web.write-timeout=0"],
            &["--watch.max-delay=61s"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
