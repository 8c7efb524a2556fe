//! The promdrop header: a comment line the writer puts at the top of a classic file to tell the
//! exporter when the file was written and how long it stays fresh.
//!
//! ```text
//! # promdrop: written_at=1764259200.125 stale_after=1h expire_after=1d
//! ```
//!
//! It is an ordinary comment in the classic format, so node_exporter and every other reader
//! ignore it. Fields are `key=value` pairs separated by spaces; unknown keys are ignored so
//! that newer writers work with older exporters.

use std::fmt;
use std::time::Duration;

/// The comment prefix that marks a promdrop header line.
pub const HEADER_PREFIX: &str = "# promdrop:";

/// What a promdrop header says. Every field is optional.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WriterHeader {
    /// When the writer wrote the file, in seconds since the Unix epoch.
    pub written_at: Option<f64>,
    /// How long after `written_at` the file is to be marked stale.
    pub stale_after: Option<Duration>,
    /// How long after `written_at` the file's samples are to be withheld.
    pub expire_after: Option<Duration>,
}

impl WriterHeader {
    /// Finds and reads the header in `input`: the first line starting with
    /// [`HEADER_PREFIX`] among the leading comment lines. Returns `None` when there is none.
    /// Fields whose values do not parse are left `None`.
    pub fn find(input: &[u8]) -> Option<WriterHeader> {
        for line in input.split(|b| *b == b'\n') {
            if !line.starts_with(b"#") {
                return None; // headers live before the first sample
            }
            if let Some(rest) = line.strip_prefix(HEADER_PREFIX.as_bytes()) {
                return Some(WriterHeader::parse_fields(&String::from_utf8_lossy(rest)));
            }
        }
        None
    }

    fn parse_fields(fields: &str) -> WriterHeader {
        let mut header = WriterHeader::default();
        for field in fields.split_ascii_whitespace() {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "written_at" => {
                    header.written_at = value.parse::<f64>().ok().filter(|v| v.is_finite())
                }
                "stale_after" => header.stale_after = parse_duration(value),
                "expire_after" => header.expire_after = parse_duration(value),
                _ => {}
            }
        }
        header
    }
}

impl fmt::Display for WriterHeader {
    /// The header line, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HEADER_PREFIX)?;
        if let Some(at) = self.written_at {
            write!(f, " written_at={at:.3}")?;
        }
        if let Some(d) = self.stale_after {
            write!(f, " stale_after={}", format_duration(d))?;
        }
        if let Some(d) = self.expire_after {
            write!(f, " expire_after={}", format_duration(d))?;
        }
        Ok(())
    }
}

/// Parses a Prometheus duration: one or more `<number><unit>` with units `ms`, `s`, `m`, `h`,
/// `d`, `w`, `y` (365 days), largest first, as in `1h30m` or `90s`. `0` alone is zero.
///
/// ```
/// use std::time::Duration;
/// use promdrop_textformat::parse_duration;
/// assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_duration("1.5h"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut last_unit = usize::MAX;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        let index = UNITS.iter().position(|(u, _)| *u == unit)?;
        // Units must come largest first, each once, as Prometheus requires.
        if last_unit != usize::MAX && index <= last_unit {
            return None;
        }
        last_unit = index;
        total_ms = total_ms.checked_add(number.checked_mul(UNITS[index].1)?)?;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_millis(total_ms))
}

/// Formats a duration as Prometheus does (`1h30m`, `250ms`, `0s`), down to milliseconds.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("y", 365 * 86_400_000u128),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&(ms / size).to_string());
            out.push_str(unit);
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for text in ["1h30m", "250ms", "1d", "2w3d", "90s", "1y", "1m1s1ms"] {
            let d = parse_duration(text).expect(text);
            assert_eq!(parse_duration(&format_duration(d)), Some(d), "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        for bad in [
            "",
            "h",
            "1",
            "1x",
            "30m1h",
            "1h1h",
            "-1s",
            "1.5h",
            "99999999999999999999y",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn header_is_found_among_leading_comments() {
        let text = b"# a comment\n# promdrop: written_at=1700000000.5 stale_after=1h expire_after=1d future=x\nup 1\n";
        let header = WriterHeader::find(text).expect("header");
        assert_eq!(header.written_at, Some(1_700_000_000.5));
        assert_eq!(header.stale_after, Some(Duration::from_secs(3600)));
        assert_eq!(header.expire_after, Some(Duration::from_secs(86400)));
        // After the first sample it is just a comment.
        assert_eq!(
            WriterHeader::find(b"up 1\n# promdrop: stale_after=1h\n"),
            None
        );
        // Written and read back.
        let line = header.to_string();
        assert_eq!(
            line,
            "# promdrop: written_at=1700000000.500 stale_after=1h expire_after=1d"
        );
        assert_eq!(WriterHeader::find(line.as_bytes()), Some(header));
    }
}
