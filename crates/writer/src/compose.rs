//! Building a job file: header, the sources' metrics with grouping labels, outcome metrics.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use promdrop_textformat::{
    Format, HEADER_PREFIX, Label, MetricFamily, MetricType, Sample, Value, WriterHeader, merge,
    parse, render_classic_into,
};

use crate::Error;
use crate::servable::{Unservable, make_servable};
use crate::source::{Collected, Source, collect};

/// Families whose names start with this are written by the handoff itself; a source's
/// families of that prefix are left out so that the file never declares a family twice.
pub(crate) const RESERVED_PREFIX: &str = "promdrop_job_";

/// Name of the family carried forward from the previous file.
pub(crate) const LAST_SUCCESS: &str = "promdrop_job_last_success_timestamp_seconds";

/// Every value of the `reason` label of `promdrop_job_exit_reason`, in the order written.
pub(crate) const REASONS: [&str; 5] = ["success", "error", "panic", "signal", "unfinished"];

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Success,
    Error,
    Panic,
    /// The signal handler (feature `signals`) ends a run this way, and so does
    /// [`HandoffGuard::finish_process`](crate::HandoffGuard::finish_process) for a child
    /// killed by a signal.
    Signal(i32),
    /// The guard was dropped without an outcome (a job that returned `Err` through `?`, or
    /// ended `main` without calling `finish`): not a success.
    Unfinished,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Success => "success",
            Reason::Error => "error",
            Reason::Panic => "panic",
            Reason::Signal(_) => "signal",
            Reason::Unfinished => "unfinished",
        }
    }
}

/// The job's state at the time of one write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// `None` for a periodic snapshot of a running job.
    pub(crate) reason: Option<Reason>,
    pub(crate) start: f64,
    pub(crate) now: f64,
    pub(crate) last_success: Option<f64>,
    /// How the job's process ended, when a wrapper ran it as a child
    /// ([`HandoffGuard::finish_process`](crate::HandoffGuard::finish_process)).
    pub(crate) exit: Option<crate::ProcessExit>,
}

/// Adds `labels` to every sample. A sample's own label of the same name wins, unless its
/// value is empty: Prometheus treats an empty label as an absent one, so it is filled in.
fn add_labels<'a>(families: &mut [MetricFamily<'a>], labels: &'a [(String, String)]) {
    if labels.is_empty() {
        return;
    }
    for family in families {
        for sample in &mut family.samples {
            for (name, value) in labels {
                match sample.labels.iter_mut().find(|l| l.name == name.as_str()) {
                    Some(own) if own.value.is_empty() => own.value = Cow::Borrowed(value),
                    Some(_) => {}
                    None => sample
                        .labels
                        .push(Label::new(name.as_str(), value.as_str())),
                }
            }
        }
    }
}

#[cfg(feature = "prometheus")]
fn add_labels_prometheus(
    families: &mut Vec<prometheus::proto::MetricFamily>,
    labels: &[(String, String)],
) {
    families.retain(|f| !f.name().starts_with(RESERVED_PREFIX));
    if labels.is_empty() {
        return;
    }
    for family in families.iter_mut() {
        for metric in family.mut_metric().iter_mut() {
            let mut pairs = metric.take_label();
            for (name, value) in labels {
                match pairs.iter_mut().find(|p| p.name() == name) {
                    Some(own) if own.value().is_empty() => own.set_value(value.clone()),
                    Some(_) => {}
                    None => {
                        let mut pair = prometheus::proto::LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value.clone());
                        pairs.push(pair);
                    }
                }
            }
            metric.set_label(pairs);
        }
    }
}

/// Collects every source and renders their metrics as classic text with `labels` added,
/// appending to `out`. Sample timestamps and repeated series are left out
/// ([`servable::make_servable`](crate::servable::make_servable)) and returned, so that the
/// exporter serves the file in full.
pub(crate) fn body(
    sources: &[Box<dyn Source>],
    labels: &[(String, String)],
    path: &Path,
    out: &mut String,
) -> Result<Vec<Unservable>, Error> {
    let mut collected = Vec::with_capacity(sources.len());
    for source in sources {
        collected.push(collect(source.as_ref(), path)?);
    }
    // The fast path: one prometheus registry, labelled without parsing.
    #[cfg(feature = "prometheus")]
    if collected.len() == 1
        && matches!(collected.first(), Some(Collected::Prometheus(_)))
        && let Some(Collected::Prometheus(mut families)) = collected.pop()
    {
        add_labels_prometheus(&mut families, labels);
        let stripped = strip_prometheus_timestamps(&mut families);
        crate::source::encode_prometheus_into(&families, path, out)?;
        return Ok(stripped);
    }
    let mut texts = Vec::with_capacity(collected.len());
    for c in collected {
        texts.push(match c {
            Collected::Text(text) => text,
            #[cfg(feature = "prometheus")]
            Collected::Prometheus(families) => {
                let mut text = String::new();
                crate::source::encode_prometheus_into(&families, path, &mut text)?;
                text
            }
        });
    }
    let mut parsed = Vec::with_capacity(texts.len());
    let mut unservable = Vec::new();
    for text in &texts {
        let mut exposition =
            parse(text.as_bytes(), Format::Auto).map_err(|source| Error::InvalidText {
                path: path.to_path_buf(),
                source,
            })?;
        exposition
            .families
            .retain(|f| !f.name.starts_with(RESERVED_PREFIX));
        unservable.extend(make_servable(&mut exposition.families));
        add_labels(&mut exposition.families, labels);
        parsed.push(exposition.families);
    }
    match parsed.as_slice() {
        [] => {}
        [one] => render_classic_into(one, out),
        many => {
            let sources: Vec<_> = many
                .iter()
                .map(|f| promdrop_textformat::Source::new(f))
                .collect();
            render_classic_into(&merge(&sources).families, out);
        }
    }
    Ok(unservable)
}

/// Clears the timestamps a `prometheus` registry's collectors may set (a registry never
/// gathers a series twice), returning them as [`Unservable::Timestamp`].
#[cfg(feature = "prometheus")]
fn strip_prometheus_timestamps(
    families: &mut [prometheus::proto::MetricFamily],
) -> Vec<Unservable> {
    let mut stripped = Vec::new();
    let mut index = 0;
    for family in families.iter_mut() {
        let name = family.name().to_string();
        for metric in family.mut_metric().iter_mut() {
            if metric.timestamp_ms() != 0 {
                metric.set_timestamp_ms(0);
                stripped.push(Unservable::Timestamp {
                    series: name.clone(),
                    index,
                });
            }
            index += 1;
        }
    }
    stripped
}

/// The header line, with its newline.
pub(crate) fn header(
    now: f64,
    stale_after: Option<Duration>,
    expire_after: Option<Duration>,
) -> String {
    let header = WriterHeader {
        written_at: Some(now),
        stale_after,
        expire_after,
    };
    format!("{header}\n")
}

fn gauge<'a>(name: &'a str, help: &'a str) -> MetricFamily<'a> {
    MetricFamily::new(name, MetricType::Gauge).with_help(help)
}

fn sample<'a>(name: &'a str, value: f64, labels: &'a [(String, String)]) -> Sample<'a> {
    Sample {
        name: Cow::Borrowed(name),
        labels: labels
            .iter()
            .map(|(n, v)| Label::new(n.as_str(), v.as_str()))
            .collect(),
        // `Value::new` rather than `value.into()`: `From<f64>` is only for `Value<'static>`.
        value: Value::new(value),
        timestamp: None,
        exemplar: None,
    }
}

/// Renders the outcome metrics, appending to `out`.
pub(crate) fn outcome(outcome: &Outcome, labels: &[(String, String)], out: &mut String) {
    let mut families = Vec::with_capacity(6);
    let running = outcome.reason.is_none();
    families.push(
        gauge(
            "promdrop_job_start_timestamp_seconds",
            "When this run of the job started, in seconds since the Unix epoch.",
        )
        .with_sample(sample(
            "promdrop_job_start_timestamp_seconds",
            outcome.start,
            labels,
        )),
    );
    if !running {
        families.push(
            gauge(
                "promdrop_job_end_timestamp_seconds",
                "When this run of the job ended, in seconds since the Unix epoch.",
            )
            .with_sample(sample(
                "promdrop_job_end_timestamp_seconds",
                outcome.now,
                labels,
            )),
        );
    }
    let success = outcome.reason == Some(Reason::Success);
    families.push(
        gauge(
            "promdrop_job_success",
            "1 if this run of the job succeeded, 0 if it failed or has not finished yet.",
        )
        .with_sample(sample(
            "promdrop_job_success",
            if success { 1.0 } else { 0.0 },
            labels,
        )),
    );
    families.push(
        gauge(
            "promdrop_job_running",
            "1 in a snapshot written while the job runs, 0 in the job's final write.",
        )
        .with_sample(sample(
            "promdrop_job_running",
            if running { 1.0 } else { 0.0 },
            labels,
        )),
    );
    if let Some(reason) = outcome.reason {
        let mut family = gauge(
            "promdrop_job_exit_reason",
            "Why this run of the job ended: 1 for the reason that applies, 0 for the others.",
        );
        for candidate in REASONS {
            let value = if candidate == reason.label() {
                1.0
            } else {
                0.0
            };
            let mut s = sample("promdrop_job_exit_reason", value, labels);
            s.labels.insert(0, Label::new("reason", candidate));
            family.samples.push(s);
        }
        families.push(family);
    }
    if let Some(exit) = outcome.exit {
        families.push(
            gauge(
                "promdrop_job_exit_code",
                "The exit status of the job's process as a shell reports it: its exit code, or 128 + the signal that killed it.",
            )
            .with_sample(sample(
                "promdrop_job_exit_code",
                f64::from(exit.shell_status()),
                labels,
            )),
        );
        families.push(
            gauge(
                "promdrop_job_exit_signal",
                "The signal that killed the job's process, 0 when it exited by itself.",
            )
            .with_sample(sample(
                "promdrop_job_exit_signal",
                f64::from(exit.signal().unwrap_or(0)),
                labels,
            )),
        );
    }
    let last_success = if success {
        Some(outcome.now)
    } else {
        outcome.last_success
    };
    if let Some(at) = last_success {
        families.push(
            gauge(
                LAST_SUCCESS,
                "When a run of this job last succeeded, in seconds since the Unix epoch (carried forward from the previous file by runs that did not succeed).",
            )
            .with_sample(sample(LAST_SUCCESS, at, labels)),
        );
    }
    render_classic_into(&families, out);
}

/// The last-success timestamp in a previous job file, if it has a readable one.
///
/// The writer puts that family last, so only the text from its `# HELP` (or `# TYPE`) line on
/// is parsed when it is there: a large file is not parsed whole at every write. Files written
/// otherwise are parsed whole.
pub(crate) fn last_success_in(previous: &[u8]) -> Option<f64> {
    let start = [
        format!("\n# HELP {LAST_SUCCESS} "),
        format!("\n# TYPE {LAST_SUCCESS} "),
    ]
    .iter()
    .find_map(|marker| memchr::memmem::rfind(previous, marker.as_bytes()))
    .map(|at| at + 1);
    let start = match start {
        Some(start) => start,
        // The writer always puts the family last when it has one: a promdrop file without
        // it has none, and need not be parsed.
        None if previous.starts_with(HEADER_PREFIX.as_bytes()) => return None,
        None => 0,
    };
    let exposition = parse(&previous[start..], Format::Classic).ok()?;
    exposition
        .families
        .iter()
        .filter(|f| f.name == LAST_SUCCESS)
        .flat_map(|f| f.samples.iter())
        .map(|s| s.value.number)
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

/// Checks a grouping label name: any UTF-8 name but the empty one (a name that is not a legacy
/// `[a-zA-Z_][a-zA-Z0-9_]*` one is written quoted, as Prometheus 3 reads it, and escaped by
/// the exporter for a scraper that cannot take it), not reserved (`__*`), and not one that
/// would change what a sample means (`le`, `quantile`) or clash with `reason`.
pub(crate) fn check_label_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("a label name cannot be empty");
    }
    if name.starts_with("__") {
        return Err("names starting with __ are reserved by Prometheus");
    }
    if matches!(name, "le" | "quantile") {
        return Err("le and quantile are bucket and quantile labels of histograms and summaries");
    }
    if name == "reason" {
        return Err("reason is the label of promdrop_job_exit_reason");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<(String, String)> {
        vec![("job_name".to_string(), "copy".to_string())]
    }

    #[test]
    fn final_outcome_of_a_failed_run_carries_the_last_success() {
        let mut out = String::new();
        let o = Outcome {
            reason: Some(Reason::Error),
            start: 100.0,
            now: 160.5,
            last_success: Some(50.0),
            exit: None,
        };
        outcome(&o, &labels(), &mut out);
        let exposition = parse(out.as_bytes(), Format::Classic).unwrap();
        let value = |name: &str, reason: Option<&str>| {
            exposition
                .families
                .iter()
                .flat_map(|f| f.samples.iter())
                .find(|s| s.name == name && reason.is_none_or(|r| s.label("reason") == Some(r)))
                .map(|s| (s.value.number, s.label("job_name").map(str::to_string)))
        };
        assert_eq!(
            value("promdrop_job_start_timestamp_seconds", None),
            Some((100.0, Some("copy".into())))
        );
        assert_eq!(
            value("promdrop_job_end_timestamp_seconds", None).unwrap().0,
            160.5
        );
        assert_eq!(value("promdrop_job_success", None).unwrap().0, 0.0);
        assert_eq!(value("promdrop_job_running", None).unwrap().0, 0.0);
        assert_eq!(
            value("promdrop_job_exit_reason", Some("error")).unwrap().0,
            1.0
        );
        assert_eq!(
            value("promdrop_job_exit_reason", Some("success"))
                .unwrap()
                .0,
            0.0
        );
        assert_eq!(value(LAST_SUCCESS, None).unwrap().0, 50.0);
        assert_eq!(last_success_in(out.as_bytes()), Some(50.0));
        // Found in a file whose family is not last, or has no HELP, too.
        let other = format!("# TYPE {LAST_SUCCESS} gauge\n{LAST_SUCCESS} 7\n# TYPE x gauge\nx 1\n");
        assert_eq!(last_success_in(other.as_bytes()), Some(7.0));
        let with_header = format!("# promdrop: written_at=1\n{other}");
        assert_eq!(last_success_in(with_header.as_bytes()), Some(7.0));
        assert_eq!(last_success_in(b"x{ 1\n"), None);
    }

    #[test]
    fn a_process_exit_adds_exit_code_and_signal() {
        for (exit, code, signal) in [
            (crate::ProcessExit::Code(3), "3", "0"),
            (crate::ProcessExit::Signal(15), "143", "15"),
        ] {
            let mut out = String::new();
            let o = Outcome {
                reason: Some(Reason::Error),
                start: 100.0,
                now: 101.0,
                last_success: None,
                exit: Some(exit),
            };
            outcome(&o, &[], &mut out);
            assert!(
                out.contains(&format!("promdrop_job_exit_code {code}\n")),
                "{out}"
            );
            assert!(
                out.contains(&format!("promdrop_job_exit_signal {signal}\n")),
                "{out}"
            );
        }
        let mut out = String::new();
        let o = Outcome {
            reason: Some(Reason::Success),
            start: 100.0,
            now: 101.0,
            last_success: None,
            exit: None,
        };
        outcome(&o, &[], &mut out);
        assert!(!out.contains("promdrop_job_exit_code"), "{out}");
    }

    #[test]
    fn running_snapshot_has_no_end_and_no_reason() {
        let mut out = String::new();
        let o = Outcome {
            reason: None,
            start: 100.0,
            now: 130.0,
            last_success: None,
            exit: None,
        };
        outcome(&o, &[], &mut out);
        assert!(out.contains("promdrop_job_running 1\n"), "{out}");
        assert!(out.contains("promdrop_job_success 0\n"), "{out}");
        assert!(!out.contains("promdrop_job_end_timestamp_seconds"));
        assert!(!out.contains("promdrop_job_exit_reason"));
        assert!(!out.contains(LAST_SUCCESS));
    }

    #[test]
    fn grouping_labels_never_duplicate_a_samples_own_label() {
        let text = "# TYPE x counter\nx{job_name=\"own\"} 1\nx{a=\"b\"} 2\nx{job_name=\"\"} 3\n# TYPE promdrop_job_success gauge\npromdrop_job_success 1\n";
        let source: Box<dyn Source> =
            Box::new(crate::TextSource::new(move || Ok(text.to_string())));
        let mut out = String::new();
        assert!(
            body(&[source], &labels(), Path::new("x.prom"), &mut out)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            out,
            "# TYPE x counter\nx{job_name=\"own\"} 1\nx{a=\"b\",job_name=\"copy\"} 2\nx{job_name=\"copy\"} 3\n"
        );
    }

    #[test]
    fn label_names_are_checked() {
        assert!(check_label_name("job_name").is_ok());
        for bad in ["", "__x", "le", "quantile", "reason"] {
            assert!(check_label_name(bad).is_err(), "{bad}");
        }
        // UTF-8 names, kept as written (quoted in the file).
        for good in ["1x", "a-b", "http.method", "région", "a b"] {
            assert!(check_label_name(good).is_ok(), "{good}");
        }
    }
}
