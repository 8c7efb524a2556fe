//! Where metrics come from: registries and closures.

use std::fmt;
use std::path::Path;

use promdrop_textformat::{Format, parse, render_classic};

use crate::Error;

/// The error a [`Source`] returns.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`Source`] produces.
#[non_exhaustive]
pub enum Collected {
    /// Exposition text, in the classic text format or in OpenMetrics (told apart by the final
    /// `# EOF` line). It is parsed with promdrop-textformat before it is written, so invalid
    /// text is refused rather than handed to the exporter.
    Text(String),
    /// Families gathered from a [`prometheus::Registry`], encoded with the crate's own text
    /// encoder (grouping labels are added to the families first, without parsing).
    #[cfg(feature = "prometheus")]
    Prometheus(Vec<prometheus::proto::MetricFamily>),
}

impl fmt::Debug for Collected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Collected::Text(text) => f.debug_tuple("Text").field(&text.len()).finish(),
            #[cfg(feature = "prometheus")]
            Collected::Prometheus(families) => {
                f.debug_tuple("Prometheus").field(&families.len()).finish()
            }
        }
    }
}

/// Something that can produce the current metrics of a job.
///
/// Implemented for `prometheus::Registry` (feature `prometheus`) and
/// `PrometheusClientSource` (feature `prometheus-client`); [`TextSource`] wraps any closure
/// that returns exposition text. Sources are called from the thread that writes, which may be
/// the flusher, the signal handler or a panicking thread, so they must be `Send + Sync`.
pub trait Source: Send + Sync {
    /// Returns the current metrics.
    fn collect(&self) -> Result<Collected, SourceError>;
}

impl<S: Source + ?Sized> Source for std::sync::Arc<S> {
    fn collect(&self) -> Result<Collected, SourceError> {
        (**self).collect()
    }
}

impl<S: Source + ?Sized> Source for &S {
    fn collect(&self) -> Result<Collected, SourceError> {
        (**self).collect()
    }
}

#[cfg(feature = "prometheus")]
impl Source for prometheus::Registry {
    fn collect(&self) -> Result<Collected, SourceError> {
        Ok(Collected::Prometheus(self.gather()))
    }
}

/// A closure that returns exposition text (classic or OpenMetrics) as a [`Source`]: for
/// metrics libraries without a registry of their own, or text from anywhere.
///
/// ```
/// use promdrop_writer::{Source, TextSource};
/// let source = TextSource::new(|| Ok("# TYPE rows_copied counter\nrows_copied 42\n".to_string()));
/// assert!(source.collect().is_ok());
/// ```
pub struct TextSource<F>(F);

impl<F> TextSource<F>
where
    F: Fn() -> Result<String, SourceError> + Send + Sync,
{
    /// Wraps `produce`, which is called at every write.
    pub fn new(produce: F) -> Self {
        TextSource(produce)
    }
}

impl<F> fmt::Debug for TextSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TextSource(..)")
    }
}

impl<F> Source for TextSource<F>
where
    F: Fn() -> Result<String, SourceError> + Send + Sync,
{
    fn collect(&self) -> Result<Collected, SourceError> {
        (self.0)().map(Collected::Text)
    }
}

/// A [`prometheus_client`] registry as a [`Source`]. The crate only encodes OpenMetrics, so
/// its text is converted to the classic format with promdrop-textformat (a counter `x`
/// becomes `x_total`, as in every classic client).
///
/// ```
/// use std::sync::Arc;
/// use prometheus_client::{metrics::counter::Counter, registry::Registry};
/// use promdrop_writer::{PrometheusClientSource, Source};
///
/// let mut registry = Registry::default();
/// let rows: Counter = Counter::default();
/// registry.register("rows_copied", "Rows copied", rows.clone());
/// rows.inc();
/// let source = PrometheusClientSource::new(Arc::new(registry));
/// let dir = tempfile::tempdir()?;
/// promdrop_writer::write_registry(&source, dir.path().join("copy.prom"))?;
/// assert!(std::fs::read_to_string(dir.path().join("copy.prom"))?.contains("rows_copied_total 1\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "prometheus-client")]
#[derive(Debug, Clone)]
pub struct PrometheusClientSource(std::sync::Arc<prometheus_client::registry::Registry>);

#[cfg(feature = "prometheus-client")]
impl PrometheusClientSource {
    /// Wraps a shared registry. Register every metric first: `prometheus_client` registers
    /// through `&mut Registry`, and the metrics themselves stay updatable through their clones.
    pub fn new(registry: std::sync::Arc<prometheus_client::registry::Registry>) -> Self {
        PrometheusClientSource(registry)
    }
}

#[cfg(feature = "prometheus-client")]
impl Source for PrometheusClientSource {
    fn collect(&self) -> Result<Collected, SourceError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.0)?;
        Ok(Collected::Text(text))
    }
}

/// Collects `source` and returns its metrics as classic text, unchanged when it already is.
pub(crate) fn collect_classic(
    source: &(impl Source + ?Sized),
    path: &Path,
) -> Result<String, Error> {
    match collect(source, path)? {
        Collected::Text(text) => {
            let exposition =
                parse(text.as_bytes(), Format::Auto).map_err(|source| Error::InvalidText {
                    path: path.to_path_buf(),
                    source,
                })?;
            if exposition.format == Format::Classic {
                Ok(text)
            } else {
                Ok(render_classic(&exposition.families))
            }
        }
        #[cfg(feature = "prometheus")]
        Collected::Prometheus(families) => {
            let mut text = String::new();
            encode_prometheus_into(&families, path, &mut text)?;
            Ok(text)
        }
    }
}

/// Calls the source, turning its error into an [`Error::Source`] that names `path`.
pub(crate) fn collect(source: &(impl Source + ?Sized), path: &Path) -> Result<Collected, Error> {
    source.collect().map_err(|e| Error::Source {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Encodes gathered families with the prometheus crate's text encoder, appending to `out`.
#[cfg(feature = "prometheus")]
pub(crate) fn encode_prometheus_into(
    families: &[prometheus::proto::MetricFamily],
    path: &Path,
    out: &mut String,
) -> Result<(), Error> {
    prometheus::TextEncoder::new()
        .encode_utf8(families, out)
        .map_err(|e| Error::Source {
            path: path.to_path_buf(),
            message: format!("encoding the prometheus registry: {e}"),
        })
}
