//! The exporter's own metric families, in one table: what it serves about the files, the
//! process and its web configuration, with their HELP and type. The code that writes them takes
//! them from here ([`crate::meta::MetaWriter::own`]), and files may not declare them (a file's
//! family of one of these names is dropped and reported as a `reserved` conflict:
//! [`RESERVED_FAMILIES`]).
//!
//! `own-metrics.txt` at the crate's root is this table written out, one `name type` a line, for
//! tools that are not written in Rust; a test fails when the two differ (run
//! `PROMDROP_BLESS=1 cargo test -p promdrop-exporter --lib names` to write it again).

use promdrop_textformat::MetricType;

/// One of the exporter's own metric families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnMetric {
    /// The family's name in the classic format (a counter's ends in `_total`).
    pub name: &'static str,
    /// Its HELP text.
    pub help: &'static str,
    /// Its type.
    pub metric_type: MetricType,
}

/// `promdrop_file_mtime_seconds`.
pub const PROMDROP_FILE_MTIME_SECONDS: OwnMetric = OwnMetric {
    name: "promdrop_file_mtime_seconds",
    help: "Modification time of the file, in seconds since the Unix epoch.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_file_stale`.
pub const PROMDROP_FILE_STALE: OwnMetric = OwnMetric {
    name: "promdrop_file_stale",
    help: "Whether the file is older than its stale-after (1) or not (0); its samples are still served.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_file_expired`.
pub const PROMDROP_FILE_EXPIRED: OwnMetric = OwnMetric {
    name: "promdrop_file_expired",
    help: "Whether the file is older than its expire-after (1): its samples are withheld.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_file_error`.
pub const PROMDROP_FILE_ERROR: OwnMetric = OwnMetric {
    name: "promdrop_file_error",
    help: "Whether the file currently fails to be read or parsed (1): its samples are not served.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_file_series`.
pub const PROMDROP_FILE_SERIES: OwnMetric = OwnMetric {
    name: "promdrop_file_series",
    help: "Series in the file as last read successfully (0 when it fails).",
    metric_type: MetricType::Gauge,
};
/// `promdrop_file_bytes`.
pub const PROMDROP_FILE_BYTES: OwnMetric = OwnMetric {
    name: "promdrop_file_bytes",
    help: "Size of the file in bytes.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_file_reference_time_seconds`.
pub const PROMDROP_FILE_REFERENCE_TIME_SECONDS: OwnMetric = OwnMetric {
    name: "promdrop_file_reference_time_seconds",
    help: "The time the file's age counts from, in seconds since the Unix epoch: the header's written_at when trusted (not later than the mtime plus 5 minutes), else the mtime.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_directory_error`.
pub const PROMDROP_DIRECTORY_ERROR: OwnMetric = OwnMetric {
    name: "promdrop_directory_error",
    help: "Whether the watched directory is missing or cannot be listed (1): none of its files are served.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_files`.
pub const PROMDROP_FILES: OwnMetric = OwnMetric {
    name: "promdrop_files",
    help: "Files by state: fresh, stale, expired (served or not), error (failing to parse).",
    metric_type: MetricType::Gauge,
};
/// `promdrop_conflicts_total`.
pub const PROMDROP_CONFLICTS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_conflicts_total",
    help: "Conflicts between files found while merging, each counted when it appears: type (family dropped from the later file), help (first HELP kept), duplicate_series (served from the newer file), reserved (a file uses an exporter metric name).",
    metric_type: MetricType::Counter,
};
/// `promdrop_current_conflicts`.
pub const PROMDROP_CURRENT_CONFLICTS: OwnMetric = OwnMetric {
    name: "promdrop_current_conflicts",
    help: "Conflicts between files present now, by kind (as promdrop_conflicts_total); 0 once the files agree.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_file_delete_errors_total`.
pub const PROMDROP_FILE_DELETE_ERRORS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_file_delete_errors_total",
    help: "Deletions under --delete-after that failed (the file stays and is tried again later).",
    metric_type: MetricType::Counter,
};
/// `promdrop_tenant_files_refused`.
pub const PROMDROP_TENANT_FILES_REFUSED: OwnMetric = OwnMetric {
    name: "promdrop_tenant_files_refused",
    help: "With --textfile.tenancy: files of the namespace not served because they would go over a --textfile.tenant.max-* cap.",
    metric_type: MetricType::Gauge,
};
/// `promdrop_reloads_total`.
pub const PROMDROP_RELOADS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_reloads_total",
    help: "Files read and parsed, by result (success or failure).",
    metric_type: MetricType::Counter,
};
/// `promdrop_build_info`.
pub const PROMDROP_BUILD_INFO: OwnMetric = OwnMetric {
    name: "promdrop_build_info",
    help: "A metric with a constant '1' value labeled by version and revision of promdrop-exporter.",
    metric_type: MetricType::Gauge,
};
/// `process_cpu_seconds_total`.
pub const PROCESS_CPU_SECONDS_TOTAL: OwnMetric = OwnMetric {
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    metric_type: MetricType::Counter,
};
/// `process_resident_memory_bytes`.
pub const PROCESS_RESIDENT_MEMORY_BYTES: OwnMetric = OwnMetric {
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    metric_type: MetricType::Gauge,
};
/// `process_virtual_memory_bytes`.
pub const PROCESS_VIRTUAL_MEMORY_BYTES: OwnMetric = OwnMetric {
    name: "process_virtual_memory_bytes",
    help: "Virtual memory size in bytes.",
    metric_type: MetricType::Gauge,
};
/// `process_start_time_seconds`.
pub const PROCESS_START_TIME_SECONDS: OwnMetric = OwnMetric {
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    metric_type: MetricType::Gauge,
};
/// `process_open_fds`.
pub const PROCESS_OPEN_FDS: OwnMetric = OwnMetric {
    name: "process_open_fds",
    help: "Number of open file descriptors.",
    metric_type: MetricType::Gauge,
};
/// `process_max_fds`.
pub const PROCESS_MAX_FDS: OwnMetric = OwnMetric {
    name: "process_max_fds",
    help: "Maximum number of open file descriptors.",
    metric_type: MetricType::Gauge,
};
/// `node_textfile_mtime_seconds`.
pub const NODE_TEXTFILE_MTIME_SECONDS: OwnMetric = OwnMetric {
    name: "node_textfile_mtime_seconds",
    help: "Unixtime mtime of textfiles successfully read.",
    metric_type: MetricType::Gauge,
};
/// `node_textfile_scrape_error`.
pub const NODE_TEXTFILE_SCRAPE_ERROR: OwnMetric = OwnMetric {
    name: "node_textfile_scrape_error",
    help: "1 if there was an error opening or reading a file, 0 otherwise",
    metric_type: MetricType::Gauge,
};
/// `promdrop_web_config_reloads_total`.
pub const PROMDROP_WEB_CONFIG_RELOADS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_web_config_reloads_total",
    help: "Reloads of --web.config.file (after a change or on SIGHUP) by result; a failed reload keeps the previous configuration.",
    metric_type: MetricType::Counter,
};
/// `promdrop_web_config_last_reload_successful`.
pub const PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL: OwnMetric = OwnMetric {
    name: "promdrop_web_config_last_reload_successful",
    help: "Whether the last load or reload of --web.config.file succeeded (1) or failed (0).",
    metric_type: MetricType::Gauge,
};
/// `promdrop_web_config_last_reload_success_timestamp_seconds`.
pub const PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: OwnMetric = OwnMetric {
    name: "promdrop_web_config_last_reload_success_timestamp_seconds",
    help: "When --web.config.file was last loaded successfully (at start or since), in seconds since the Unix epoch.",
    metric_type: MetricType::Gauge,
};

/// Every family of the exporter's own, in the order the documentation lists them.
pub const OWN_METRICS: [OwnMetric; 26] = [
    PROMDROP_FILE_MTIME_SECONDS,
    PROMDROP_FILE_REFERENCE_TIME_SECONDS,
    PROMDROP_FILE_STALE,
    PROMDROP_FILE_EXPIRED,
    PROMDROP_FILE_ERROR,
    PROMDROP_FILE_SERIES,
    PROMDROP_FILE_BYTES,
    PROMDROP_DIRECTORY_ERROR,
    PROMDROP_FILES,
    PROMDROP_CONFLICTS_TOTAL,
    PROMDROP_CURRENT_CONFLICTS,
    PROMDROP_FILE_DELETE_ERRORS_TOTAL,
    PROMDROP_TENANT_FILES_REFUSED,
    PROMDROP_RELOADS_TOTAL,
    PROMDROP_BUILD_INFO,
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_BYTES,
    PROCESS_START_TIME_SECONDS,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    NODE_TEXTFILE_MTIME_SECONDS,
    NODE_TEXTFILE_SCRAPE_ERROR,
    PROMDROP_WEB_CONFIG_RELOADS_TOTAL,
    PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL,
    PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
];

/// The names of [`OWN_METRICS`] (classic names), which files may not use.
pub const RESERVED_FAMILIES: [&str; OWN_METRICS.len()] = {
    let mut names = [""; OWN_METRICS.len()];
    let mut i = 0;
    while i < OWN_METRICS.len() {
        names[i] = OWN_METRICS[i].name;
        i += 1;
    }
    names
};

#[cfg(test)]
mod tests {
    use super::{OWN_METRICS, RESERVED_FAMILIES};

    /// The table as `own-metrics.txt` holds it.
    fn listing() -> String {
        let mut text = String::from(
            "# The exporter's own metric families: classic name and type, one a line; files may\n\
             # not use them. Written from crates/exporter/src/names.rs by its test: do not edit.\n",
        );
        for metric in OWN_METRICS {
            text.push_str(metric.name);
            text.push(' ');
            text.push_str(metric.metric_type.openmetrics_name());
            text.push('\n');
        }
        text
    }

    #[test]
    fn own_metrics_txt_is_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("own-metrics.txt");
        let want = listing();
        if std::env::var_os("PROMDROP_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            have,
            want,
            "{} differs from OWN_METRICS; run PROMDROP_BLESS=1 cargo test -p \
             promdrop-exporter --lib names and review the diff",
            path.display()
        );
    }

    #[test]
    fn names_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for name in RESERVED_FAMILIES {
            assert!(seen.insert(name), "{name} is listed twice");
            assert!(promdrop_textformat::is_valid_metric_name(name), "{name}");
        }
    }
}
