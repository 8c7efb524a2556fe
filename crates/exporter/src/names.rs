//! The exporter's own metric families, in one table: what it serves about the files, the
//! process and its web configuration, with their HELP, type and label names, and the
//! configuration in which each is served. The code that writes them takes them from here
//! ([`crate::meta::MetaWriter::own`]).
//!
//! Files may declare these families too (a job wrapped by `promdrop run` serves its own
//! `process_*`): [`claim`] decides what happens to such a family when the exporter serves the
//! family in its configuration ([`OwnConfig`]). A family of another type is dropped (a
//! `reserved` conflict); a series with the label names of the exporter's own series of that
//! family would collide with them and is dropped (a `reserved` conflict); every other series is
//! served in the exporter's own family block, under its HELP and TYPE (see [`crate::adopt`]).
//! A family the exporter does not serve in its configuration (`node_textfile_*` without
//! `--compat.node-exporter`, `promdrop_web_config_*` without `--web.config.file`) is the
//! file's, as any other.
//!
//! `own-metrics.txt` at the crate's root is this table written out, one `name type` a line, for
//! tools that are not written in Rust; a test fails when the two differ (run
//! `PROMDROP_BLESS=1 cargo test -p promdrop-exporter --lib names` to write it again).

use promdrop_textformat::{MetricType, Sample};

/// One of the exporter's own metric families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnMetric {
    /// The family's name in the classic format (a counter's ends in `_total`).
    pub name: &'static str,
    /// Its HELP text.
    pub help: &'static str,
    /// Its type.
    pub metric_type: MetricType,
    /// The label names of its series, in the order it writes them.
    pub labels: &'static [&'static str],
    /// In which configuration the exporter serves it.
    pub served: Served,
}

/// When the exporter serves one of its own families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Always.
    Always,
    /// With `--compat.node-exporter`.
    CompatNodeExporter,
    /// With `--web.config.file`.
    WebConfig,
}

/// The parts of the exporter's configuration that decide which of its own families it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnConfig {
    /// `--compat.node-exporter`.
    pub compat_node_exporter: bool,
    /// `--web.config.file` is given.
    pub web_config: bool,
}

impl Served {
    /// Whether a family served so is served in `config`.
    pub const fn is_served(self, config: OwnConfig) -> bool {
        match self {
            Served::Always => true,
            Served::CompatNodeExporter => config.compat_node_exporter,
            Served::WebConfig => config.web_config,
        }
    }
}

/// `promdrop_file_mtime_seconds`.
pub const PROMDROP_FILE_MTIME_SECONDS: OwnMetric = OwnMetric {
    name: "promdrop_file_mtime_seconds",
    help: "Modification time of the file, in seconds since the Unix epoch.",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::Always,
};
/// `promdrop_file_stale`.
pub const PROMDROP_FILE_STALE: OwnMetric = OwnMetric {
    name: "promdrop_file_stale",
    help: "Whether the file is older than its stale-after (1) or not (0); its samples are still served.",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::Always,
};
/// `promdrop_file_expired`.
pub const PROMDROP_FILE_EXPIRED: OwnMetric = OwnMetric {
    name: "promdrop_file_expired",
    help: "Whether the file is older than its expire-after (1): its samples are withheld.",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::Always,
};
/// `promdrop_file_error`.
pub const PROMDROP_FILE_ERROR: OwnMetric = OwnMetric {
    name: "promdrop_file_error",
    help: "Whether the file currently fails to be read or parsed (1): its samples are not served.",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::Always,
};
/// `promdrop_file_series`.
pub const PROMDROP_FILE_SERIES: OwnMetric = OwnMetric {
    name: "promdrop_file_series",
    help: "Series in the file as last read successfully (0 when it fails).",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::Always,
};
/// `promdrop_file_bytes`.
pub const PROMDROP_FILE_BYTES: OwnMetric = OwnMetric {
    name: "promdrop_file_bytes",
    help: "Size of the file in bytes.",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::Always,
};
/// `promdrop_file_reference_time_seconds`.
pub const PROMDROP_FILE_REFERENCE_TIME_SECONDS: OwnMetric = OwnMetric {
    name: "promdrop_file_reference_time_seconds",
    help: "The time the file's age counts from, in seconds since the Unix epoch: the header's written_at when trusted (not later than the mtime plus 5 minutes), else the mtime.",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::Always,
};
/// `promdrop_directory_error`.
pub const PROMDROP_DIRECTORY_ERROR: OwnMetric = OwnMetric {
    name: "promdrop_directory_error",
    help: "Whether the watched directory is missing or cannot be listed (1): none of its files are served.",
    metric_type: MetricType::Gauge,
    labels: &["directory"],
    served: Served::Always,
};
/// `promdrop_files`.
pub const PROMDROP_FILES: OwnMetric = OwnMetric {
    name: "promdrop_files",
    help: "Files by state: fresh, stale, expired (served or not), error (failing to parse).",
    metric_type: MetricType::Gauge,
    labels: &["state"],
    served: Served::Always,
};
/// `promdrop_conflicts_total`.
pub const PROMDROP_CONFLICTS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_conflicts_total",
    help: "Conflicts between files found while merging, each counted when it appears: type (family dropped from the later file, also when its names clash with another family's once rendered), help (first HELP kept), duplicate_series (served from the newer file), reserved (a file uses an exporter metric name), buckets (histogram or summary dropped from the later file: other buckets or quantiles).",
    metric_type: MetricType::Counter,
    labels: &["kind"],
    served: Served::Always,
};
/// `promdrop_current_conflicts`.
pub const PROMDROP_CURRENT_CONFLICTS: OwnMetric = OwnMetric {
    name: "promdrop_current_conflicts",
    help: "Conflicts between files present now, by kind (as promdrop_conflicts_total); 0 once the files agree.",
    metric_type: MetricType::Gauge,
    labels: &["kind"],
    served: Served::Always,
};
/// `promdrop_file_delete_errors_total`.
pub const PROMDROP_FILE_DELETE_ERRORS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_file_delete_errors_total",
    help: "Deletions under --delete-after that failed (the file stays and is tried again later).",
    metric_type: MetricType::Counter,
    labels: &[],
    served: Served::Always,
};
/// `promdrop_tenant_files_refused`.
pub const PROMDROP_TENANT_FILES_REFUSED: OwnMetric = OwnMetric {
    name: "promdrop_tenant_files_refused",
    help: "With --textfile.tenancy: files of the namespace not served because they would go over a --textfile.tenant.max-* cap.",
    metric_type: MetricType::Gauge,
    // Written with --textfile.tenancy only, under the tenancy label (namespace by
    // default); reserved in every configuration, which costs a file nothing real.
    labels: &["namespace"],
    served: Served::Always,
};
/// `promdrop_escaping_conflicts_total`.
pub const PROMDROP_ESCAPING_CONFLICTS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_escaping_conflicts_total",
    help: "Conflicts that appear only once names are escaped for a scraper that cannot take UTF-8 names (a.b and a_b under underscores), by escaping scheme, counted each time the escaped exposition is built (once per change and scheme asked for); resolved as other conflicts are.",
    metric_type: MetricType::Counter,
    labels: &["escaping"],
    served: Served::Always,
};
/// `promdrop_reloads_total`.
pub const PROMDROP_RELOADS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_reloads_total",
    help: "Files read and parsed, by result (success or failure).",
    metric_type: MetricType::Counter,
    labels: &["result"],
    served: Served::Always,
};
/// `promdrop_build_info`.
pub const PROMDROP_BUILD_INFO: OwnMetric = OwnMetric {
    name: "promdrop_build_info",
    help: "A metric with a constant '1' value labeled by version and revision of promdrop-exporter.",
    metric_type: MetricType::Gauge,
    labels: &["version", "revision", "rustversion"],
    served: Served::Always,
};
/// `process_cpu_seconds_total`.
pub const PROCESS_CPU_SECONDS_TOTAL: OwnMetric = OwnMetric {
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    metric_type: MetricType::Counter,
    labels: &[],
    served: Served::Always,
};
/// `process_resident_memory_bytes`.
pub const PROCESS_RESIDENT_MEMORY_BYTES: OwnMetric = OwnMetric {
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::Always,
};
/// `process_virtual_memory_bytes`.
pub const PROCESS_VIRTUAL_MEMORY_BYTES: OwnMetric = OwnMetric {
    name: "process_virtual_memory_bytes",
    help: "Virtual memory size in bytes.",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::Always,
};
/// `process_start_time_seconds`.
pub const PROCESS_START_TIME_SECONDS: OwnMetric = OwnMetric {
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::Always,
};
/// `process_open_fds`.
pub const PROCESS_OPEN_FDS: OwnMetric = OwnMetric {
    name: "process_open_fds",
    help: "Number of open file descriptors.",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::Always,
};
/// `process_max_fds`.
pub const PROCESS_MAX_FDS: OwnMetric = OwnMetric {
    name: "process_max_fds",
    help: "Maximum number of open file descriptors.",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::Always,
};
/// `node_textfile_mtime_seconds`.
pub const NODE_TEXTFILE_MTIME_SECONDS: OwnMetric = OwnMetric {
    name: "node_textfile_mtime_seconds",
    help: "Unixtime mtime of textfiles successfully read.",
    metric_type: MetricType::Gauge,
    labels: &["file"],
    served: Served::CompatNodeExporter,
};
/// `node_textfile_scrape_error`.
pub const NODE_TEXTFILE_SCRAPE_ERROR: OwnMetric = OwnMetric {
    name: "node_textfile_scrape_error",
    help: "1 if there was an error opening or reading a file, 0 otherwise",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::CompatNodeExporter,
};
/// `promdrop_web_config_reloads_total`.
pub const PROMDROP_WEB_CONFIG_RELOADS_TOTAL: OwnMetric = OwnMetric {
    name: "promdrop_web_config_reloads_total",
    help: "Reloads of --web.config.file (after a change or on SIGHUP) by result; a failed reload keeps the previous configuration.",
    metric_type: MetricType::Counter,
    labels: &["result"],
    served: Served::WebConfig,
};
/// `promdrop_web_config_last_reload_successful`.
pub const PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL: OwnMetric = OwnMetric {
    name: "promdrop_web_config_last_reload_successful",
    help: "Whether the last load or reload of --web.config.file succeeded (1) or failed (0).",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::WebConfig,
};
/// `promdrop_web_config_last_reload_success_timestamp_seconds`.
pub const PROMDROP_WEB_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: OwnMetric = OwnMetric {
    name: "promdrop_web_config_last_reload_success_timestamp_seconds",
    help: "When --web.config.file was last loaded successfully (at start or since), in seconds since the Unix epoch.",
    metric_type: MetricType::Gauge,
    labels: &[],
    served: Served::WebConfig,
};

/// Every family of the exporter's own, in the order the documentation lists them.
pub const OWN_METRICS: [OwnMetric; 27] = [
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
    PROMDROP_ESCAPING_CONFLICTS_TOTAL,
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

/// The names of [`OWN_METRICS`] (classic names), whatever the configuration.
pub const RESERVED_FAMILIES: [&str; OWN_METRICS.len()] =
    served_names::<{ OWN_METRICS.len() }>(None);

/// How many of [`OWN_METRICS`] are served in `config` (all with `None`).
const fn served_count(config: Option<OwnConfig>) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < OWN_METRICS.len() {
        if let Some(c) = config
            && !OWN_METRICS[i].served.is_served(c)
        {
            i += 1;
            continue;
        }
        n += 1;
        i += 1;
    }
    n
}

/// The names of [`OWN_METRICS`] served in `config` (all with `None`), in table order; `N` is
/// [`served_count`] of `config`.
const fn served_names<const N: usize>(config: Option<OwnConfig>) -> [&'static str; N] {
    let mut names = [""; N];
    let mut n = 0;
    let mut i = 0;
    while i < OWN_METRICS.len() {
        let served = match config {
            Some(c) => OWN_METRICS[i].served.is_served(c),
            None => true,
        };
        if served {
            names[n] = OWN_METRICS[i].name;
            n += 1;
        }
        i += 1;
    }
    names
}

const CONFIGS: [OwnConfig; 4] = [
    OwnConfig {
        compat_node_exporter: false,
        web_config: false,
    },
    OwnConfig {
        compat_node_exporter: true,
        web_config: false,
    },
    OwnConfig {
        compat_node_exporter: false,
        web_config: true,
    },
    OwnConfig {
        compat_node_exporter: true,
        web_config: true,
    },
];
const SERVED_PLAIN: [&str; served_count(Some(CONFIGS[0]))] = served_names(Some(CONFIGS[0]));
const SERVED_COMPAT: [&str; served_count(Some(CONFIGS[1]))] = served_names(Some(CONFIGS[1]));
const SERVED_WEB: [&str; served_count(Some(CONFIGS[2]))] = served_names(Some(CONFIGS[2]));
const SERVED_BOTH: [&str; served_count(Some(CONFIGS[3]))] = served_names(Some(CONFIGS[3]));

/// The names of the families the exporter serves in `config` (classic names): the families a
/// file's merge leaves to the exporter's own blocks ([`crate::adopt`]).
pub const fn served_families(config: OwnConfig) -> &'static [&'static str] {
    match (config.compat_node_exporter, config.web_config) {
        (false, false) => &SERVED_PLAIN,
        (true, false) => &SERVED_COMPAT,
        (false, true) => &SERVED_WEB,
        (true, true) => &SERVED_BOTH,
    }
}

/// What becomes of a file's family, by its name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not a family the exporter serves in this configuration: the file's, merged as any other.
    Foreign,
    /// One of the exporter's own families, of its type: the series that [`fits`] are served in
    /// the exporter's block, the others dropped (a `reserved` conflict).
    Own(&'static OwnMetric),
    /// One of the exporter's own families, of another type: dropped whole (a `reserved`
    /// conflict).
    OtherType(&'static OwnMetric),
}

/// Decides what becomes of a file's family named `name` (as parsed: an OpenMetrics counter's
/// name has no `_total`, an info's no `_info`) of type `metric_type` when the exporter runs with
/// `config`. The names are matched after the OpenMetrics suffix rules, as
/// `PrepareOptions::is_reserved` leaves them out of the merge: an info `x` is served as the
/// gauge `x_info`, so an info `promdrop_build` is the exporter's `promdrop_build_info` of
/// another type.
pub fn claim(name: &str, metric_type: MetricType, config: OwnConfig) -> Claim {
    let suffixed = |m: &OwnMetric, suffix: &str| m.name.strip_suffix(suffix) == Some(name);
    let own = OWN_METRICS.iter().find(|m| {
        m.served.is_served(config)
            && (m.name == name
                || (metric_type == MetricType::Counter && suffixed(m, "_total"))
                || (metric_type == MetricType::Info && suffixed(m, "_info")))
    });
    match own {
        None => Claim::Foreign,
        Some(own) if own.metric_type == metric_type => Claim::Own(own),
        Some(own) => Claim::OtherType(own),
    }
}

/// Whether a file's sample of the exporter's own family `own` can be served in the exporter's
/// block: it has the family's sample name (not a counter's `_created`), and not the label names
/// of the exporter's own series (it would collide with them, or pass for one of them).
pub fn fits(own: &OwnMetric, sample: &Sample<'_>) -> bool {
    if sample.name != own.name {
        return false;
    }
    let same_labels = sample.labels.len() == own.labels.len()
        && own
            .labels
            .iter()
            .all(|l| sample.labels.iter().any(|s| s.name == *l));
    !same_labels
}

#[cfg(test)]
mod tests {
    use super::{OWN_METRICS, RESERVED_FAMILIES};

    /// The table as `own-metrics.txt` holds it.
    fn listing() -> String {
        let mut text = String::from(
            "# The exporter's own metric families: classic name and type, one a line; a file's\n\
             # series of them are served in the exporter's block, unless they would collide\n\
             # (see names.rs). Written from crates/exporter/src/names.rs by its test: do not edit.\n",
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

    #[test]
    fn claims_follow_the_openmetrics_suffix_rules() {
        use super::{Claim, OwnConfig, claim};
        use promdrop_textformat::MetricType::{Counter, Gauge, Info};
        let config = OwnConfig::default();
        let name = |c: Claim| match c {
            Claim::Own(m) => ("own", m.name),
            Claim::OtherType(m) => ("other type", m.name),
            Claim::Foreign => ("foreign", ""),
        };
        let cases = [
            (
                "process_cpu_seconds",
                Counter,
                ("own", "process_cpu_seconds_total"),
            ),
            (
                "process_cpu_seconds_total",
                Counter,
                ("own", "process_cpu_seconds_total"),
            ),
            ("promdrop_build_info", Gauge, ("own", "promdrop_build_info")),
            // An info `x` is served as the gauge `x_info`.
            (
                "promdrop_build",
                Info,
                ("other type", "promdrop_build_info"),
            ),
            ("promdrop_build", Gauge, ("foreign", "")),
            ("process_cpu_seconds", Gauge, ("foreign", "")),
        ];
        for (family, metric_type, want) in cases {
            assert_eq!(name(claim(family, metric_type, config)), want, "{family}");
        }
    }
}
