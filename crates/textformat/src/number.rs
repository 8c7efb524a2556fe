//! Number syntax: Go's `strconv.ParseFloat` as Prometheus's text parser applies it, the
//! OpenMetrics number grammar, and Go's shortest `%g` rendering.

/// Parses a sample value. One grammar serves both formats, because they agree:
/// - classic: Go's `strconv.ParseFloat` as Prometheus's text parser applies it, that is without
///   hexadecimal mantissas (`p`) or digit separators (`_`), which that parser refuses;
/// - OpenMetrics: `number`, a real number, `[sign] inf|infinity` or `nan`, the words
///   case-insensitive as ABNF strings are.
///
/// So: decimal numbers (`1`, `-1.5`, `.5`, `5.`, `1.5E+09`), `Inf`/`Infinity` with an optional
/// sign, and `NaN` without one. A finite number too large for `f64` is an error, as in Go
/// (`ErrRange`).
pub(crate) fn parse_number(token: &str) -> Option<f64> {
    if let Some(special) = parse_special(token) {
        return Some(special);
    }
    parse_decimal(token)
}

/// Parses an OpenMetrics `realnumber` (timestamps): decimal digits only, no infinities or NaN.
pub(crate) fn parse_om_realnumber(token: &str) -> Option<f64> {
    parse_decimal(token)
}

/// Exact powers of ten up to 10^22, the largest that an `f64` holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The common case, fast: `[-]digits[.digits]` with at most 15 digits in all. The digits form
/// an integer below 2^53 and the divisor is an exact power of ten, so the one IEEE division
/// is correctly rounded: the result is the same as the general parser's (Clinger's fast path).
/// Returns `None` for anything else, which the general path then handles.
#[inline]
fn parse_short_decimal(token: &str) -> Option<f64> {
    let bytes = token.as_bytes();
    let (negative, digits) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut seen_digits = 0;
    let mut fraction_digits = None;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                seen_digits += 1;
            }
            b'.' if fraction_digits.is_none() => fraction_digits = Some(digits.len() - i - 1),
            _ => return None,
        }
    }
    if seen_digits == 0 || seen_digits > 15 {
        return None;
    }
    let value = mantissa as f64 / EXACT_POWERS_OF_TEN[fraction_digits.unwrap_or(0)];
    Some(if negative { -value } else { value })
}

/// Parses a classic integer millisecond timestamp as Go's `strconv.ParseInt(s, 10, 64)` does.
pub(crate) fn parse_go_int(token: &str) -> Option<i64> {
    let digits = token.strip_prefix(['+', '-']).unwrap_or(token);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<i64>().ok()
}

/// `Inf`, `+inf`, `-Infinity`, `NaN` and friends. Go and the OpenMetrics ABNF both allow a sign
/// before the infinities but not before NaN.
fn parse_special(token: &str) -> Option<f64> {
    let (negative, word) = match token.as_bytes().first()? {
        b'+' => (false, &token[1..]),
        b'-' => (true, &token[1..]),
        _ => (false, token),
    };
    if word.eq_ignore_ascii_case("inf") || word.eq_ignore_ascii_case("infinity") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if word.len() == token.len() && word.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    None
}

/// A decimal number: `[sign] digits [. digits] [e [sign] digits]` with at least one mantissa
/// digit. The grammar is checked here (Rust's parser also takes `inf` and `nan`, which must not
/// get through this path); the value comes from Rust's correctly rounded parser.
fn parse_decimal(token: &str) -> Option<f64> {
    if let Some(value) = parse_short_decimal(token) {
        return Some(value);
    }
    let bytes = token.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut mantissa_digits = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
        mantissa_digits += 1;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
            mantissa_digits += 1;
        }
    }
    if mantissa_digits == 0 {
        return None;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exponent_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == exponent_start {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    let value: f64 = token.parse().ok()?;
    // A finite literal that overflows is out of range, as Go's ParseFloat reports.
    if value.is_infinite() {
        return None;
    }
    Some(value)
}

/// Appends `value` as Go's `strconv.FormatFloat(value, 'g', -1, 64)` writes it, with the
/// infinities and NaN spelled as Prometheus writes them: `+Inf`, `-Inf`, `NaN`.
///
/// Examples: `1`, `0.25`, `100000`, `1e+06`, `1.5e+09`, `1e-05`, `-0`.
pub fn format_go_float(value: f64, out: &mut String) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Go's shortest mode does;
    // only the layout differs.
    let mut scientific = String::with_capacity(32);
    // Writing to a String cannot fail.
    let _ = write!(scientific, "{value:e}");
    let (mantissa, exponent) = match scientific.split_once('e') {
        Some(parts) => parts,
        None => {
            out.push_str(&scientific);
            return;
        }
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        let _ = write!(out, "{magnitude}");
    } else if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let integer_digits = exponent as usize + 1;
        if digits.len() <= integer_digits {
            out.push_str(&digits);
            for _ in digits.len()..integer_digits {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..integer_digits]);
            out.push('.');
            out.push_str(&digits[integer_digits..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(value: f64) -> String {
        let mut s = String::new();
        format_go_float(value, &mut s);
        s
    }

    #[test]
    fn formats_like_go_shortest_g() {
        // Expected strings are what Go's strconv.FormatFloat(v, 'g', -1, 64) prints.
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (0.25, "0.25"),
            (100000.0, "100000"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1.5e9, "1.5e+09"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.1, "0.1"),
            (12.5, "12.5"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(go(*value), *expected, "formatting {value:?}");
        }
    }

    #[test]
    fn go_float_grammar() {
        for ok in [
            "1", "-1", "+1", ".5", "5.", "1.5E+09", "1e-3", "Inf", "+Inf", "-inf", "infinity",
            "NaN", "nan", "0001",
        ] {
            assert!(parse_number(ok).is_some(), "{ok} should parse");
        }
        for bad in [
            "", ".", "e1", "1e", "1_000", "0x1p-3", "0x10", "+NaN", "-nan", "1.2.3", " 1", "1 ",
            "1e400", "infinit", "--1",
        ] {
            assert!(parse_number(bad).is_none(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn openmetrics_realnumber_refuses_words() {
        assert_eq!(parse_om_realnumber("1.5e3"), Some(1500.0));
        assert_eq!(parse_om_realnumber("000"), Some(0.0));
        assert!(parse_om_realnumber("Inf").is_none());
        assert!(parse_om_realnumber("NaN").is_none());
        assert!(parse_om_realnumber("0x1p-3").is_none());
        assert!(parse_om_realnumber("1_2").is_none());
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_parser() {
        for token in [
            "0",
            "-0",
            "1",
            "-1",
            "0.5",
            "123456.7",
            "999999999999999",
            "0.00000000000001",
            "1.",
            ".5",
            "-.5",
            "12.340",
            "10000000000000.0",
            "4.35",
            "0.1",
            "0.3",
        ] {
            let fast = parse_short_decimal(token).expect(token);
            let general: f64 = token.parse().expect(token);
            assert_eq!(fast.to_bits(), general.to_bits(), "{token}");
        }
        for token in [
            "",
            "-",
            ".",
            "1e5",
            "+1",
            "1.2.3",
            "1234567890123456",
            "0.000000000000001",
            "12a",
        ] {
            assert!(parse_short_decimal(token).is_none(), "{token:?}");
        }
    }

    #[test]
    fn go_int_grammar() {
        assert_eq!(parse_go_int("+12"), Some(12));
        assert_eq!(parse_go_int("-12"), Some(-12));
        assert_eq!(parse_go_int("1.0"), None);
        assert_eq!(parse_go_int(""), None);
        assert_eq!(parse_go_int("-"), None);
        assert_eq!(parse_go_int("99999999999999999999"), None);
    }
}
