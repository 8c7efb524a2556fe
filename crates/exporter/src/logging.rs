//! Logging with `tracing`: logfmt (as Go exporters write it) or JSON, to standard error.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogFormat, LogLevel};

fn level(level: LogLevel) -> Level {
    match level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    }
}

/// How often the same line about the same file may be logged (see [`Throttle`]).
pub const THROTTLE_PERIOD: Duration = Duration::from_secs(10);

/// Most (line, file) pairs remembered by a [`Throttle`]; past it, the oldest are forgotten.
const THROTTLE_KEYS: usize = 10_000;

/// Rate-limits repeated log lines: a line of one kind about one file is logged at most once
/// per [`THROTTLE_PERIOD`]; the next one logged says how many were left out meanwhile. A job
/// that flips a symlink or rewrites a broken file in a loop thus costs a line per file every
/// few seconds, not thousands a second.
#[derive(Debug, Default)]
pub struct Throttle {
    seen: HashMap<(&'static str, String), (Instant, u64)>,
}

impl Throttle {
    /// Whether to log the line `kind` about `key` now: `Some(n)` with the number of such lines
    /// left out since the last one logged, or `None` to leave this one out.
    pub fn allow(&mut self, kind: &'static str, key: &str) -> Option<u64> {
        let now = Instant::now();
        if let Some((last, suppressed)) = self.seen.get_mut(&(kind, key.to_string())) {
            if now.duration_since(*last) < THROTTLE_PERIOD {
                *suppressed += 1;
                return None;
            }
            let n = *suppressed;
            *last = now;
            *suppressed = 0;
            return Some(n);
        }
        if self.seen.len() >= THROTTLE_KEYS {
            self.seen
                .retain(|_, (last, _)| now.duration_since(*last) < THROTTLE_PERIOD);
            if self.seen.len() >= THROTTLE_KEYS {
                self.seen.clear();
            }
        }
        self.seen.insert((kind, key.to_string()), (now, 0));
        Some(0)
    }
}

/// Installs the global subscriber. Later calls do nothing.
pub fn init(log_level: LogLevel, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level(log_level))
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
}

/// Formats an instant as RFC 3339 UTC with milliseconds (`2025-11-27T17:20:00.125Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// One logfmt value: bare when it can be, else quoted with `"` and `\` escaped.
fn push_value(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && c != '\u{7f}');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.rest.push(' ');
            self.rest.push_str(field.name());
            self.rest.push('=');
            push_value(&mut self.rest, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// The logfmt event formatter: `ts=... level=info msg="..." key=value ...`.
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(128);
        line.push_str("ts=");
        line.push_str(&rfc3339(SystemTime::now()));
        line.push_str(" level=");
        line.push_str(&event.metadata().level().as_str().to_ascii_lowercase());
        if let Some(message) = &fields.message {
            line.push_str(" msg=");
            push_value(&mut line, message);
        }
        line.push_str(&fields.rest);
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_per_file_through_per_period() {
        let mut t = Throttle::default();
        assert_eq!(t.allow("refused", "/d/a.prom"), Some(0));
        for _ in 0..1000 {
            assert_eq!(t.allow("refused", "/d/a.prom"), None);
        }
        assert_eq!(t.allow("refused", "/d/b.prom"), Some(0));
        assert_eq!(t.allow("not served", "/d/a.prom"), Some(0));
    }
    use std::time::Duration;

    #[test]
    fn logfmt_values_and_times() {
        let mut s = String::new();
        push_value(&mut s, "plain");
        s.push(' ');
        push_value(&mut s, "two words \"q\"");
        s.push(' ');
        push_value(&mut s, "");
        assert_eq!(s, "plain \"two words \\\"q\\\"\" \"\"");
        let t = UNIX_EPOCH + Duration::from_millis(1_764_259_200_125);
        assert_eq!(rfc3339(t), "2025-11-27T16:00:00.125Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
