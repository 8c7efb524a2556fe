//! The names of the exporter's own metric families, in one table: what it serves about the
//! files, the process and its web configuration, which files may not declare (a file's family
//! of one of these names is dropped and reported as a `reserved` conflict).
//!
//! `own-metrics.txt` at the crate's root is this table written out, one name a line, for tools
//! that are not written in Rust; a test fails when the two differ (run
//! `PROMDROP_BLESS=1 cargo test -p promdrop-exporter --lib names` to write it again).

/// The names of the exporter's own metric families (classic names), which files may not use.
pub const RESERVED_FAMILIES: &[&str] = &[
    "promdrop_file_mtime_seconds",
    "promdrop_file_stale",
    "promdrop_file_expired",
    "promdrop_file_error",
    "promdrop_file_series",
    "promdrop_file_bytes",
    "promdrop_files",
    "promdrop_conflicts_total",
    "promdrop_reloads_total",
    "promdrop_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "node_textfile_mtime_seconds",
    "node_textfile_scrape_error",
    "promdrop_web_config_reloads_total",
    "promdrop_web_config_last_reload_successful",
    "promdrop_web_config_last_reload_success_timestamp_seconds",
];

#[cfg(test)]
mod tests {
    use super::RESERVED_FAMILIES;

    /// The table as `own-metrics.txt` holds it.
    fn listing() -> String {
        let mut text = String::from(
            "# The exporter's own metric families (classic names), one a line; files may not use\n\
             # them. Written from crates/exporter/src/names.rs by its test: do not edit.\n",
        );
        for name in RESERVED_FAMILIES {
            text.push_str(name);
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
            "{} differs from RESERVED_FAMILIES; run PROMDROP_BLESS=1 cargo test -p \
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
