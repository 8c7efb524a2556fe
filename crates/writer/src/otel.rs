//! An OpenTelemetry metrics exporter that writes the job file (feature `opentelemetry`).
//!
//! The OpenTelemetry SDK exports every 60 s by default, so a short job that does not flush
//! loses its metrics. [`FileExporter`] is a [`PushMetricExporter`]: tied to a
//! [`Handoff`](crate::Handoff), every export the SDK makes (`SdkMeterProvider::force_flush`,
//! `shutdown`, and the periodic reader's) writes the job file, and the guard's final write
//! includes the last export.
//!
//! The safe pattern: give the handoff both the exporter and the meter provider. Then every
//! write (each snapshot, and the final one however the job ends: `finish`, `?`, a panic,
//! SIGTERM or SIGINT, [`exit`](crate::HandoffGuard::exit)) first calls the provider's
//! `force_flush`, so the file holds the values of that moment.
//!
//! ```
//! use promdrop_writer::opentelemetry::metrics::MeterProvider as _;
//! use promdrop_writer::opentelemetry_sdk::metrics::SdkMeterProvider;
//! use promdrop_writer::{otel::FileExporter, Handoff};
//!
//! let dir = tempfile::tempdir()?;
//! let exporter = FileExporter::new();
//! let provider = SdkMeterProvider::builder().with_periodic_exporter(exporter.clone()).build();
//! let guard = Handoff::builder("reindex")
//!     .dir(dir.path())
//!     .opentelemetry(&exporter)
//!     .meter_provider(provider.clone())
//!     .install()?;
//!
//! let docs = provider.meter("reindex").u64_counter("documents").build();
//! docs.add(1200, &[promdrop_writer::opentelemetry::KeyValue::new("index", "products")]);
//!
//! let result: Result<(), std::io::Error> = Ok(()); // the job's work
//! guard.finish_with(result)?; // flushes the provider, then the final write
//! let text = std::fs::read_to_string(dir.path().join("reindex.prom"))?;
//! assert!(text.contains("documents_total{index=\"products\",job_name=\"reindex\"} 1200\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Without [`meter_provider`](crate::HandoffBuilder::meter_provider), a write holds the
//! SDK's last export: shut the provider down before `finish` (its shutdown exports), and
//! know that a signal or a panic writes only what the periodic reader last exported.
//!
//! Conversion to the classic format: with the default [`Names::Translate`], names and
//! attribute keys have characters outside `[a-zA-Z0-9_:]` replaced by `_`
//! (`http.server.request.duration` becomes `http_server_request_duration_seconds`); with
//! [`Names::Keep`] (`FileExporter::builder().names(Names::Keep).build()`) they are kept as
//! OpenTelemetry writes them, dots included, and written quoted as Prometheus 3 reads them
//! (`{"http.server.request.duration_seconds","http.request.method"="GET"}`); promdrop-exporter
//! serves them as written to a scraper that asks for `escaping=allow-utf-8` and escaped to
//! others. Either way, an attribute key starting with `__` gets the prefix `key`; a monotonic
//! sum becomes a counter named `<name>_total`, a
//! non-monotonic sum and a gauge become gauges, a histogram becomes a classic histogram; the
//! units `s`, `ms`, `us`, `ns` and `By` are appended as `_seconds`, `_milliseconds`,
//! `_microseconds`, `_nanoseconds` and `_bytes`. Exponential histograms have no classic form
//! and are left out. Resource attributes are not written (the grouping labels say which job
//! it is).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use promdrop_textformat::{
    Label, MetricFamily, MetricType, Sample, format_go_float, render_classic,
};

use crate::handoff::Inner;
use crate::source::{Collected, Source, SourceError};

/// How [`FileExporter`] writes OpenTelemetry's metric names and attribute keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Names {
    /// Characters outside `[a-zA-Z0-9_:]` (`:` not in attribute keys) become `_`, so that every
    /// Prometheus reads them: `http.server.request.duration` becomes
    /// `http_server_request_duration_seconds`.
    #[default]
    Translate,
    /// OpenTelemetry's names as they are (UTF-8, dots included), with the same unit and
    /// `_total` suffixes: `http.server.request.duration_seconds`, written quoted. For
    /// Prometheus 3 servers, which ask for UTF-8 names; promdrop-exporter escapes them for a
    /// scraper that does not.
    Keep,
}

#[derive(Default)]
struct Shared {
    /// How names are written.
    names: Names,
    /// The last export, as classic text.
    text: Mutex<Option<String>>,
    handoff: Mutex<Option<Weak<Inner>>>,
    shut_down: AtomicBool,
}

/// A [`PushMetricExporter`] that hands the SDK's metrics to a [`Handoff`](crate::Handoff);
/// see the [module docs](self).
///
/// Give it (a clone: it is a shared handle) to the meter provider and to the handoff with
/// [`HandoffBuilder::opentelemetry`](crate::HandoffBuilder::opentelemetry), and the provider
/// to the handoff with [`HandoffBuilder::meter_provider`](crate::HandoffBuilder::meter_provider).
/// Until it is tied to a handoff, exports are kept (see [`last_text`](Self::last_text)) but
/// nothing is written. An export after the final write is kept but not written.
#[derive(Clone, Default)]
pub struct FileExporter {
    shared: Arc<Shared>,
}

impl fmt::Debug for FileExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileExporter")
            .field("shut_down", &self.shared.shut_down.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// Builds a [`FileExporter`] with options: [`FileExporter::builder`].
#[derive(Debug, Clone, Default)]
pub struct FileExporterBuilder {
    names: Names,
}

impl FileExporterBuilder {
    /// How metric names and attribute keys are written ([`Names::Translate`] by default).
    pub fn names(mut self, names: Names) -> Self {
        self.names = names;
        self
    }

    /// The exporter, not yet tied to a handoff.
    pub fn build(self) -> FileExporter {
        FileExporter {
            shared: Arc::new(Shared {
                names: self.names,
                ..Shared::default()
            }),
        }
    }
}

impl FileExporter {
    /// A new exporter, not yet tied to a handoff, translating names to legacy ones
    /// ([`Names::Translate`]).
    pub fn new() -> Self {
        FileExporter::default()
    }

    /// A builder for an exporter with options: keeping OpenTelemetry's names
    /// ([`Names::Keep`]).
    ///
    /// ```
    /// use promdrop_writer::otel::{FileExporter, Names};
    ///
    /// let exporter = FileExporter::builder().names(Names::Keep).build();
    /// # let _ = exporter;
    /// ```
    pub fn builder() -> FileExporterBuilder {
        FileExporterBuilder::default()
    }

    /// The classic text of the last export, if there was one.
    pub fn last_text(&self) -> Option<String> {
        self.shared
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn source(&self) -> ExporterSource {
        ExporterSource(Arc::clone(&self.shared))
    }

    pub(crate) fn attach(&self, inner: Weak<Inner>) {
        *self
            .shared
            .handoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(inner);
    }

    fn export_now(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        if self.shared.shut_down.load(Ordering::SeqCst) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let text = to_classic(metrics, self.shared.names);
        *self
            .shared
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(text);
        let handoff = self
            .shared
            .handoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Weak::upgrade);
        match handoff {
            // The handoff asked for this export and writes next.
            Some(inner) if inner.is_flushing() => Ok(()),
            Some(inner) => inner
                .snapshot()
                .map(|_| ())
                .map_err(|e| OTelSdkError::InternalFailure(e.to_string())),
            None => Ok(()),
        }
    }
}

impl PushMetricExporter for FileExporter {
    fn export(
        &self,
        metrics: &ResourceMetrics,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(self.export_now(metrics))
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Every export is written at once: there is nothing buffered.
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.shared.shut_down.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// The last export as a [`Source`].
pub(crate) struct ExporterSource(Arc<Shared>);

impl Source for ExporterSource {
    fn collect(&self) -> Result<Collected, SourceError> {
        let text = self
            .0
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(Collected::Text(text.unwrap_or_default()))
    }
}

fn sanitize(name: &str, names: Names) -> String {
    if names == Names::Keep {
        return if name.is_empty() {
            "_".to_string()
        } else {
            name.to_string()
        };
    }
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn sanitize_label(key: &str, names: Names) -> String {
    let mut out = match names {
        Names::Translate => sanitize(key, names).replace(':', "_"),
        Names::Keep => sanitize(key, names),
    };
    if out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

fn metric_name(metric: &Metric, names: Names) -> String {
    let mut name = sanitize(metric.name(), names);
    let suffix = match metric.unit() {
        "s" => "_seconds",
        "ms" => "_milliseconds",
        "us" => "_microseconds",
        "ns" => "_nanoseconds",
        "By" => "_bytes",
        _ => "",
    };
    if !suffix.is_empty() && !name.ends_with(suffix) {
        name.push_str(suffix);
    }
    name
}

fn labels<'a>(
    attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>,
    names: Names,
) -> Vec<Label<'static>> {
    attributes
        .map(|kv| {
            Label::new(
                sanitize_label(kv.key.as_str(), names),
                kv.value.as_str().into_owned(),
            )
        })
        .collect()
}

fn family_slot<'f>(
    families: &'f mut Vec<MetricFamily<'static>>,
    name: &str,
    help: &str,
    metric_type: MetricType,
) -> Option<&'f mut MetricFamily<'static>> {
    match families.iter().position(|f| f.name == name) {
        Some(i) => {
            let family = &mut families[i];
            (family.metric_type == metric_type).then_some(family)
        }
        None => {
            let mut family = MetricFamily::new(name.to_string(), metric_type);
            if !help.is_empty() {
                family.help = Some(help.to_string().into());
            }
            families.push(family);
            families.last_mut()
        }
    }
}

fn add<T: Copy>(
    families: &mut Vec<MetricFamily<'static>>,
    metric: &Metric,
    data: &MetricData<T>,
    to_f64: impl Fn(T) -> f64,
    names: Names,
) {
    let base = metric_name(metric, names);
    let help = metric.description();
    match data {
        MetricData::Gauge(gauge) => {
            if let Some(family) = family_slot(families, &base, help, MetricType::Gauge) {
                for point in gauge.data_points() {
                    let mut sample = Sample::new(base.clone(), to_f64(point.value()));
                    sample.labels = labels(point.attributes(), names);
                    family.samples.push(sample);
                }
            }
        }
        MetricData::Sum(sum) => {
            let (name, metric_type) = if sum.is_monotonic() {
                let name = if base.ends_with("_total") {
                    base
                } else {
                    format!("{base}_total")
                };
                (name, MetricType::Counter)
            } else {
                (base, MetricType::Gauge)
            };
            if let Some(family) = family_slot(families, &name, help, metric_type) {
                for point in sum.data_points() {
                    let mut sample = Sample::new(name.clone(), to_f64(point.value()));
                    sample.labels = labels(point.attributes(), names);
                    family.samples.push(sample);
                }
            }
        }
        MetricData::Histogram(histogram) => {
            if let Some(family) = family_slot(families, &base, help, MetricType::Histogram) {
                for point in histogram.data_points() {
                    let attrs = labels(point.attributes(), names);
                    let bucket_name = format!("{base}_bucket");
                    let mut cumulative = 0u64;
                    let mut counts = point.bucket_counts();
                    for bound in point.bounds() {
                        cumulative = cumulative.saturating_add(counts.next().unwrap_or(0));
                        let mut le = String::new();
                        format_go_float(bound, &mut le);
                        let mut sample = Sample::new(bucket_name.clone(), cumulative as f64);
                        sample.labels = attrs.clone();
                        sample.labels.push(Label::new("le", le));
                        family.samples.push(sample);
                    }
                    let mut inf = Sample::new(bucket_name, point.count() as f64);
                    inf.labels = attrs.clone();
                    inf.labels.push(Label::new("le", "+Inf"));
                    family.samples.push(inf);
                    let mut sum = Sample::new(format!("{base}_sum"), to_f64(point.sum()));
                    sum.labels = attrs.clone();
                    family.samples.push(sum);
                    let mut count = Sample::new(format!("{base}_count"), point.count() as f64);
                    count.labels = attrs;
                    family.samples.push(count);
                }
            }
        }
        // No classic form: left out (see the module docs).
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// Converts an export to classic text.
fn to_classic(metrics: &ResourceMetrics, names: Names) -> String {
    let mut families = Vec::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            match metric.data() {
                AggregatedMetrics::F64(data) => add(&mut families, metric, data, |v| v, names),
                AggregatedMetrics::U64(data) => {
                    add(&mut families, metric, data, |v| v as f64, names)
                }
                AggregatedMetrics::I64(data) => {
                    add(&mut families, metric, data, |v| v as f64, names)
                }
            }
        }
    }
    render_classic(&families)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        let t = Names::Translate;
        assert_eq!(sanitize("http.server.duration", t), "http_server_duration");
        assert_eq!(sanitize("9lives", t), "_9lives");
        assert_eq!(sanitize_label("__x", t), "key__x");
        assert_eq!(sanitize_label("a:b.c", t), "a_b_c");
        let k = Names::Keep;
        assert_eq!(sanitize("http.server.duration", k), "http.server.duration");
        assert_eq!(sanitize("9lives", k), "9lives");
        assert_eq!(sanitize_label("__x", k), "key__x");
        assert_eq!(sanitize_label("a:b.c", k), "a:b.c");
    }
}
