//! The parsing of the flags that `promdrop-exporter` and `promdrop inspect` share, defined once
//! so that the two binaries accept the same values (clap `value_parser` functions).
//!
//! ```
//! use std::time::Duration;
//! use promdrop_textfile::flags::{byte_size, optional_duration, series_limit};
//!
//! assert_eq!(byte_size("16MiB"), Ok(16 << 20));
//! assert_eq!(byte_size("1048576"), Ok(1 << 20));
//! assert!(byte_size("0").is_err()); // a limit of nothing would refuse every file
//! assert_eq!(optional_duration("off").unwrap().0, None);
//! assert_eq!(optional_duration("0").unwrap().0, None);
//! assert_eq!(optional_duration("10m").unwrap().0, Some(Duration::from_secs(600)));
//! assert!(series_limit("0").is_err());
//! ```

use std::time::Duration;

use promdrop_textformat::parse_duration;

/// A duration flag that can be turned off with `off` (or `0`): `--stale-after`,
/// `--expire-after`, `--delete-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptionalDuration(pub Option<Duration>);

/// A duration such as `30s`, `5m`, `1h30m` or `250ms`.
pub fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 5m, 1h30m or 250ms"))
}

/// A duration, or `off` (also `0` or empty) for none.
pub fn optional_duration(text: &str) -> Result<OptionalDuration, String> {
    match text {
        "off" | "0" | "" => Ok(OptionalDuration(None)),
        _ => duration(text).map(|d| OptionalDuration((!d.is_zero()).then_some(d))),
    }
}

/// A duration of more than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(d)
}

/// A byte size (`--file.max-bytes`): a number with an optional `KiB`, `MiB`, `GiB` (or `KB`,
/// `MB`, `GB`) suffix; more than zero.
pub fn byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 16MiB or 1048576"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "k" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("{text:?}: unknown unit (use KiB, MiB or GiB)")),
    };
    number
        .checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// The most series in one file (`--file.max-series`): at least 1.
pub fn series_limit(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a number of series such as 100000")),
    }
}
