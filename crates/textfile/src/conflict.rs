//! A conflict between files found while merging their families: which family or series, which
//! file's version is served and which file lost. A leaf: produced by the merge (prepared.rs and
//! the exporter's publication), counted by the engine, shown on the status page.

/// A conflict between files found while merging, with file paths instead of indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ConflictRecord {
    /// `type` (another TYPE for the family, or a family of another name that clashes with it
    /// once rendered: [`ConflictRecord::kept_family`]), `buckets` (a histogram or summary with
    /// other bucket bounds or quantiles), `help`, `duplicate_series` or `reserved` (a file
    /// declares one of the exporter's own families with another TYPE, or a series that has
    /// the name and label names of the exporter's own series).
    pub kind: &'static str,
    /// The family (`type`, `buckets`: the one left out).
    pub family: String,
    /// `type` between families of different names: the family of `kept_file` whose names the
    /// left-out family's clash with (the OpenMetrics counter `bar` for a classic `bar_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_family: Option<String>,
    /// With `kept_family`: a name both families would write (`bar_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The series (duplicates; `reserved`: the first series dropped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// The file whose version is served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_file: Option<String>,
    /// The file whose family or sample was left out (for `help`, the file whose text was not
    /// used; its samples are served).
    pub other_file: String,
}

impl std::fmt::Display for ConflictRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            "type" if self.kept_family.is_some() => write!(
                f,
                "family {} in {} and family {} in {} would both be written as {}: dropped \
                 from {}",
                self.family,
                self.other_file,
                self.kept_family.as_deref().unwrap_or("?"),
                self.kept_file.as_deref().unwrap_or("?"),
                self.name.as_deref().unwrap_or("?"),
                self.other_file
            ),
            "buckets" => write!(
                f,
                "histogram or summary {} in {} has other buckets (le) or quantiles than in {}: \
                 dropped from {}",
                self.family,
                self.other_file,
                self.kept_file.as_deref().unwrap_or("?"),
                self.other_file
            ),
            "type" => write!(
                f,
                "family {} in {} has another TYPE than in {}: dropped from {}",
                self.family,
                self.other_file,
                self.kept_file.as_deref().unwrap_or("?"),
                self.other_file
            ),
            "help" => write!(
                f,
                "family {} in {} has another HELP than in {}: the first is served",
                self.family,
                self.other_file,
                self.kept_file.as_deref().unwrap_or("?")
            ),
            "duplicate_series" => write!(
                f,
                "series {} is in {} and {}: served from {}",
                self.series.as_deref().unwrap_or(&self.family),
                self.kept_file.as_deref().unwrap_or("?"),
                self.other_file,
                self.kept_file.as_deref().unwrap_or("?")
            ),
            _ => match &self.series {
                Some(series) => write!(
                    f,
                    "series {series} in {} has the name and label names of the exporter's own \
                     series of {}: dropped",
                    self.other_file, self.family
                ),
                None => write!(
                    f,
                    "family {} in {} has the name of one of the exporter's own families but \
                     another TYPE: dropped",
                    self.family, self.other_file
                ),
            },
        }
    }
}
