//! The writer of the exporter's own metrics (about the files, the process, the web
//! configuration): one family at a time, in the classic format and OpenMetrics at once. It
//! knows only the text formats and the table of the exporter's own names.

use std::sync::Arc;

use crate::adopt::Adopted;
use crate::names::OwnMetric;
use promdrop_textformat::{MetricType, escape_help, escape_label_value, format_go_float};

/// Writes metric families in both formats at once, for the exporter's own metrics.
#[derive(Debug, Default)]
pub struct MetaWriter {
    /// The classic text.
    pub classic: String,
    /// The OpenMetrics text (without `# EOF`).
    pub openmetrics: String,
    counter: bool,
    name: String,
    /// The files' series of own families, written under the exporter's own HELP and TYPE.
    adopted: Option<Arc<Adopted>>,
}

impl MetaWriter {
    /// A writer that adds the files' series of each own family ([`Adopted`]) to the family's
    /// block.
    pub fn with_adopted(adopted: Arc<Adopted>) -> MetaWriter {
        MetaWriter {
            adopted: (!adopted.is_empty()).then_some(adopted),
            ..MetaWriter::default()
        }
    }

    /// Starts one of the exporter's own families, with its name, HELP and type from the table,
    /// followed by the files' series of the family, if any (the exporter's own come after).
    pub fn own(&mut self, metric: &OwnMetric) {
        let name = match metric.metric_type {
            MetricType::Counter => metric.name.strip_suffix("_total").unwrap_or(metric.name),
            _ => metric.name,
        };
        self.family(name, metric.help, metric.metric_type);
        if let Some(lines) = self.adopted.as_ref().and_then(|a| a.lines(metric.name)) {
            self.classic.push_str(&lines.classic);
            self.openmetrics.push_str(&lines.openmetrics);
        }
    }

    /// Whether files gave series to the own family `metric` (which must then be started even
    /// when the exporter has no sample of its own for it).
    pub fn has_adopted(&self, metric: &OwnMetric) -> bool {
        self.adopted
            .as_ref()
            .is_some_and(|a| a.lines(metric.name).is_some())
    }

    /// Starts a family. A counter's `name` is given without `_total`.
    pub fn family(&mut self, name: &str, help: &str, metric_type: MetricType) {
        self.counter = metric_type == MetricType::Counter;
        self.name.clear();
        self.name.push_str(name);
        if self.counter {
            self.name.push_str("_total");
        }
        let classic_name = self.name.as_str();
        self.classic.push_str("# HELP ");
        self.classic.push_str(classic_name);
        self.classic.push(' ');
        escape_help(help, &mut self.classic);
        self.classic.push_str("\n# TYPE ");
        self.classic.push_str(classic_name);
        self.classic.push(' ');
        self.classic.push_str(metric_type.classic_name());
        self.classic.push('\n');
        self.openmetrics.push_str("# HELP ");
        self.openmetrics.push_str(name);
        self.openmetrics.push(' ');
        escape_label_value(help, &mut self.openmetrics);
        self.openmetrics.push_str("\n# TYPE ");
        self.openmetrics.push_str(name);
        self.openmetrics.push(' ');
        self.openmetrics.push_str(metric_type.openmetrics_name());
        self.openmetrics.push('\n');
    }

    /// Adds a sample to the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let start = self.classic.len();
        write_sample(&mut self.classic, &self.name, labels, value);
        // The line reads the same in both formats.
        self.openmetrics.push_str(&self.classic[start..]);
    }
}

/// The name the samples of `metric` are written with: a counter's ends in `_total` (as
/// [`MetaWriter::own`] starts the family).
pub fn sample_name(metric: &OwnMetric) -> std::borrow::Cow<'static, str> {
    match metric.metric_type {
        MetricType::Counter if !metric.name.ends_with("_total") => {
            format!("{}_total", metric.name).into()
        }
        _ => metric.name.into(),
    }
}

/// Appends to `out` the sample line `name{labels} value`, as both formats write it.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push_str("=\"");
            escape_label_value(value, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    format_go_float(value, out);
    out.push('\n');
}
