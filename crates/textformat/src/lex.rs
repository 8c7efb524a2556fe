//! Lexical pieces shared by both parsers: lines, names, quoted strings, error positions.

use std::borrow::Cow;

use crate::Error;

/// One line of input, without its `\n`, with what is needed to report errors in it.
#[derive(Clone, Copy)]
pub(crate) struct Line<'a> {
    /// The bytes of the line.
    pub text: &'a [u8],
    /// 1-based line number.
    pub number: usize,
    /// The whole line as text, once [`Line::validated`] has checked it is UTF-8: slicing it
    /// then costs nothing, where validating each piece separately would.
    pub utf8: Option<&'a str>,
}

impl<'a> Line<'a> {
    /// A line as given by the input.
    pub fn new(text: &'a [u8], number: usize) -> Self {
        Line {
            text,
            number,
            utf8: None,
        }
    }

    /// This line, with its text checked once as UTF-8, or an error at the first invalid byte.
    pub fn validated(self) -> Result<Self, Error> {
        if self.utf8.is_some() {
            return Ok(self);
        }
        let utf8 = self.str(0, self.text.len())?;
        Ok(Line {
            utf8: Some(utf8),
            ..self
        })
    }

    /// The 1-based column, in characters, of byte offset `pos`.
    pub fn column(&self, pos: usize) -> usize {
        let end = pos.min(self.text.len());
        // Count every byte that does not continue a UTF-8 sequence.
        self.text[..end]
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count()
            + 1
    }

    /// An [`Error::Unexpected`] at `pos`, describing what stands there.
    pub fn unexpected(&self, pos: usize, expected: &'static str) -> Error {
        Error::Unexpected {
            line: self.number,
            column: self.column(pos),
            expected,
            found: describe_at(self.text, pos),
        }
    }

    /// An [`Error::Unexpected`] at `pos` for a whole token.
    pub fn unexpected_token(&self, pos: usize, end: usize, expected: &'static str) -> Error {
        let found = if pos >= end {
            describe_at(self.text, pos)
        } else {
            format!("{:?}", String::from_utf8_lossy(&self.text[pos..end]))
        };
        Error::Unexpected {
            line: self.number,
            column: self.column(pos),
            expected,
            found,
        }
    }

    /// An [`Error::Invalid`] at `pos`.
    pub fn invalid(&self, pos: usize, message: impl Into<String>) -> Error {
        Error::Invalid {
            line: self.number,
            column: self.column(pos),
            message: message.into(),
        }
    }

    /// An [`Error::LimitExceeded`] at `pos`.
    pub fn limit(&self, pos: usize, what: &'static str, limit: usize) -> Error {
        Error::LimitExceeded {
            line: self.number,
            column: self.column(pos),
            what,
            limit,
        }
    }

    /// The bytes `start..end` as a `&str`, or an error at `start` if they are not UTF-8.
    #[inline]
    pub fn str(&self, start: usize, end: usize) -> Result<&'a str, Error> {
        if let Some(piece) = self.utf8.and_then(|text| text.get(start..end)) {
            return Ok(piece);
        }
        std::str::from_utf8(&self.text[start..end]).map_err(|e| {
            self.invalid(
                start + e.valid_up_to(),
                "invalid UTF-8: text must be UTF-8 encoded",
            )
        })
    }
}

/// Names what stands at `pos`: a quoted character, or "end of line".
fn describe_at(text: &[u8], pos: usize) -> String {
    if pos >= text.len() {
        return "end of line".to_string();
    }
    let rest = &text[pos..];
    let char_len = match rest[0] {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    }
    .min(rest.len());
    let shown = String::from_utf8_lossy(&rest[..char_len]);
    match shown.as_ref() {
        " " => "' ' (a space)".to_string(),
        "\t" => "'\\t' (a tab)".to_string(),
        "\r" => "'\\r' (a carriage return; lines must end with \\n alone)".to_string(),
        "\0" => "'\\0' (a NUL byte)".to_string(),
        other => format!("'{}'", other.escape_debug()),
    }
}

/// Character classes of name bytes, looked up in one table rather than tested by ranges: names
/// are most of a sample line, so this is the parser's hottest loop.
const METRIC_START: u8 = 1;
const METRIC_CHAR: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CHAR: u8 = 8;

static NAME_CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        let mut class = 0;
        if alpha || c == b':' {
            class |= METRIC_START | METRIC_CHAR;
        }
        if digit {
            class |= METRIC_CHAR | LABEL_CHAR;
        }
        if alpha {
            class |= LABEL_START | LABEL_CHAR;
        }
        table[b] = class;
        b += 1;
    }
    table
};

/// `[a-zA-Z0-9_:]`
#[inline]
pub(crate) fn is_metric_name_char(b: u8) -> bool {
    NAME_CLASSES[b as usize] & METRIC_CHAR != 0
}

/// Whether the label name at `pos` is `name`, a label name read before: whether
/// [`scan_label_name`] would find exactly `name` there. Cheaper than scanning when a line
/// repeats the previous one's names; false for an empty `name`.
#[inline(always)]
pub(crate) fn label_name_at(text: &[u8], pos: usize, name: &str) -> bool {
    let end = pos + name.len();
    !name.is_empty()
        && text
            .get(pos..end)
            .is_some_and(|here| same_bytes(here, name.as_bytes()))
        && text
            .get(end)
            .is_none_or(|b| NAME_CLASSES[*b as usize] & LABEL_CHAR == 0)
}

#[inline]
fn scan_class(text: &[u8], pos: usize, start: u8, rest: u8) -> usize {
    match text.get(pos) {
        Some(&b) if NAME_CLASSES[b as usize] & start != 0 => {}
        _ => return pos,
    }
    let tail = &text[pos + 1..];
    let len = tail
        .iter()
        .position(|&b| NAME_CLASSES[b as usize] & rest == 0)
        .unwrap_or(tail.len());
    pos + 1 + len
}

/// The end of the metric name starting at `pos` (`pos` itself when there is none).
#[inline]
pub(crate) fn scan_metric_name(text: &[u8], pos: usize) -> usize {
    scan_class(text, pos, METRIC_START, METRIC_CHAR)
}

/// The end of the label name starting at `pos` (`pos` itself when there is none).
#[inline]
pub(crate) fn scan_label_name(text: &[u8], pos: usize) -> usize {
    scan_class(text, pos, LABEL_START, LABEL_CHAR)
}

/// Whether `name` is a legacy metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`: one the text formats
/// write unquoted and every Prometheus version reads. Any other non-empty UTF-8 name is valid
/// too when quoted (see [`write_metric_name`](crate::write_metric_name)).
#[inline]
pub fn is_valid_metric_name(name: &str) -> bool {
    name.as_bytes().first().is_some_and(|b| !b.is_ascii_digit())
        && all_name_chars(name.as_bytes(), true)
}

/// Whether `name` is a legacy label name, `[a-zA-Z_][a-zA-Z0-9_]*`: one the text formats
/// write unquoted. Any other non-empty UTF-8 name is valid too when quoted.
#[inline]
pub fn is_valid_label_name(name: &str) -> bool {
    name.as_bytes().first().is_some_and(|b| !b.is_ascii_digit())
        && all_name_chars(name.as_bytes(), false)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` set where that byte is at least `c`. Exact for ASCII
/// bytes (no carry crosses a byte); callers rule out the others first.
#[inline(always)]
fn at_least(word: u64, c: u8) -> u64 {
    word.wrapping_add(ONES * (0x80 - c as u64)) & HIGHS
}

/// Whether the eight bytes of `word` are all `[a-zA-Z0-9_]`, or `[a-zA-Z0-9_:]` for a metric
/// name. The renderers ask this of every name they write, so it checks eight bytes at a time
/// without branches or table lookups.
#[inline(always)]
fn word_of_name_chars(word: u64, metric: bool) -> bool {
    if word & HIGHS != 0 {
        return false;
    }
    let folded = word | (ONES * 0x20); // 'A'..='Z' onto 'a'..='z'
    let letters = at_least(folded, b'a') & !at_least(folded, b'z' + 1);
    let last_digit = if metric { b':' } else { b'9' };
    let digits = at_least(word, b'0') & !at_least(word, last_digit + 1);
    let t = word ^ (ONES * u64::from(b'_'));
    let underscores = !((t & !HIGHS).wrapping_add(!HIGHS) | t) & HIGHS;
    (letters | digits | underscores) == HIGHS
}

/// `a == b`, eight bytes at a time (the last word overlapping the one before it), which for
/// names of a few dozen bytes is cheaper than a call to `memcmp`.
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len < 8 {
        return short_word(a, 0) == short_word(b, 0);
    }
    let word = |bytes: &[u8], at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let mut i = 0;
    while i + 8 < len {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, len - 8) == word(b, len - 8)
}

/// Whether `bytes` holds a byte that a label value escapes: `\\`, a newline, or (when `quote`)
/// `"`. Eight bytes at a time: the renderers ask this of every label value they write.
#[inline(always)]
pub(crate) fn has_escapable(bytes: &[u8], quote: bool) -> bool {
    // The high bit of a byte of `v ^ c` whose byte was `c` (exact as to whether there is one).
    let has = |v: u64, c: u8| {
        let v = v ^ (ONES * u64::from(c));
        v.wrapping_sub(ONES) & !v & HIGHS
    };
    let escapable = |word: u64| {
        let found = has(word, b'\\') | has(word, b'\n');
        (if quote {
            found | has(word, b'"')
        } else {
            found
        }) != 0
    };
    let len = bytes.len();
    if len < 8 {
        // Padded with a byte that is never escaped.
        return escapable(short_word(bytes, b'a'));
    }
    let word_at = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(word)
    };
    let mut i = 0;
    while i + 8 < len {
        if escapable(word_at(i)) {
            return true;
        }
        i += 8;
    }
    escapable(word_at(len - 8))
}

/// A name of fewer than eight bytes as one word: its first and last halves, overlapping,
/// with the bytes it does not fill set to `filler`.
#[inline(always)]
fn short_word(bytes: &[u8], filler: u8) -> u64 {
    let len = bytes.len();
    if len >= 4 {
        let mut first = [0u8; 4];
        let mut last = [0u8; 4];
        first.copy_from_slice(&bytes[..4]);
        last.copy_from_slice(&bytes[len - 4..]);
        u64::from(u32::from_le_bytes(first)) | u64::from(u32::from_le_bytes(last)) << 32
    } else if len >= 2 {
        let first = u64::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        let last = u64::from(u16::from_le_bytes([bytes[len - 2], bytes[len - 1]]));
        first | last << 16 | (ONES * u64::from(filler)) << 32
    } else if len == 1 {
        u64::from(bytes[0]) | (ONES * u64::from(filler)) << 8
    } else {
        ONES * u64::from(filler)
    }
}

/// Whether every byte of `bytes` is a name character (see [`word_of_name_chars`]).
#[inline]
pub(crate) fn all_name_chars(bytes: &[u8], metric: bool) -> bool {
    let word_at = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(word)
    };
    let len = bytes.len();
    if len < 8 {
        // A short name as one word, padded with a name character.
        let word = short_word(bytes, b'a');
        return word_of_name_chars(word, metric);
    }
    let mut i = 0;
    while i + 8 < bytes.len() {
        if !word_of_name_chars(word_at(i), metric) {
            return false;
        }
        i += 8;
    }
    // The last eight bytes, overlapping the previous word where the length is not a multiple.
    word_of_name_chars(word_at(bytes.len() - 8), metric)
}

/// How backslash escapes in a quoted label value are read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escapes {
    /// `\\`, `\"` and `\n`; any other escape is an error (Prometheus's text parser).
    Strict,
    /// `\\`, `\"` and `\n` are decoded; any other backslash is kept as written (OpenMetrics, as
    /// its reference parser and conformance suite have it).
    Lenient,
}

/// What a quoted string is, for the words of its errors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quoted {
    /// A label value.
    LabelValue,
    /// A metric or label name written in quotes (a UTF-8 name, Prometheus 3's syntax).
    Name,
}

impl Quoted {
    fn closing(self) -> &'static str {
        match self {
            Quoted::LabelValue => "'\"' closing the label value",
            Quoted::Name => "'\"' closing the quoted name",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Quoted::LabelValue => "label value",
            Quoted::Name => "quoted name",
        }
    }
}

/// Reads a quoted label value whose opening `"` is at `open`. Returns the unescaped value
/// (borrowed when it has no escapes) and the offset just past the closing quote.
#[inline]
pub(crate) fn scan_quoted<'a>(
    line: &Line<'a>,
    open: usize,
    escapes: Escapes,
) -> Result<(Cow<'a, str>, usize), Error> {
    scan_string(line, open, escapes, Quoted::LabelValue)
}

/// Reads a quoted metric or label name (`"http.server.duration"`) whose opening `"` is at
/// `open`, with the escapes of a label value. An empty name is an error.
pub(crate) fn scan_quoted_name<'a>(
    line: &Line<'a>,
    open: usize,
    escapes: Escapes,
) -> Result<(Cow<'a, str>, usize), Error> {
    let (name, after) = scan_string(line, open, escapes, Quoted::Name)?;
    if name.is_empty() {
        return Err(line.invalid(
            open,
            "empty quoted name: a metric or label name cannot be empty",
        ));
    }
    Ok((name, after))
}

#[inline]
fn scan_string<'a>(
    line: &Line<'a>,
    open: usize,
    escapes: Escapes,
    what: Quoted,
) -> Result<(Cow<'a, str>, usize), Error> {
    let text = line.text;
    let start = open + 1;
    let first = match memchr::memchr2(b'"', b'\\', &text[start.min(text.len())..]) {
        Some(i) => start + i,
        None => return Err(line.unexpected(text.len(), what.closing())),
    };
    if text[first] == b'"' {
        return Ok((Cow::Borrowed(line.str(start, first)?), first + 1));
    }
    // Slow path: there are escapes to decode.
    let mut value: Vec<u8> = Vec::with_capacity(first - start + 16);
    value.extend_from_slice(&text[start..first]);
    let mut i = first;
    loop {
        match text.get(i) {
            None => return Err(line.unexpected(i, what.closing())),
            Some(b'"') => break,
            Some(b'\\') => {
                match text.get(i + 1) {
                    Some(b'\\') => value.push(b'\\'),
                    Some(b'"') => value.push(b'"'),
                    Some(b'n') => value.push(b'\n'),
                    None => return Err(line.unexpected(i + 1, "an escaped character after '\\'")),
                    Some(other) => match escapes {
                        Escapes::Lenient => {
                            value.push(b'\\');
                            value.push(*other);
                        }
                        Escapes::Strict => {
                            return Err(line.invalid(
                                i,
                                format!(
                                    "invalid escape sequence {:?} in {}: only \\\\, \\\" and \\n are allowed",
                                    String::from_utf8_lossy(&text[i..(i + 2).min(text.len())]),
                                    what.noun()
                                ),
                            ));
                        }
                    },
                }
                i += 2;
            }
            Some(b) => {
                value.push(*b);
                i += 1;
            }
        }
    }
    let value = String::from_utf8(value).map_err(|e| {
        line.invalid(
            start + e.utf8_error().valid_up_to(),
            format!("invalid UTF-8 in {}", what.noun()),
        )
    })?;
    Ok((Cow::Owned(value), i + 1))
}

/// Unescapes HELP text: `\\` and `\n` always; other escapes are an error when `strict`
/// (Prometheus's text parser). Otherwise (OpenMetrics) `\"` is a quote too, as the OpenMetrics
/// ABNF's `escaped-string` has it, and other escapes are kept as written.
pub(crate) fn unescape_help<'a>(
    line: &Line<'a>,
    start: usize,
    strict: bool,
) -> Result<Cow<'a, str>, Error> {
    let text = &line.text[start..];
    let Some(first) = memchr::memchr(b'\\', text) else {
        return Ok(Cow::Borrowed(line.str(start, line.text.len())?));
    };
    let mut help: Vec<u8> = Vec::with_capacity(text.len());
    help.extend_from_slice(&text[..first]);
    let mut i = first;
    while i < text.len() {
        if text[i] != b'\\' {
            help.push(text[i]);
            i += 1;
            continue;
        }
        match text.get(i + 1) {
            Some(b'\\') => help.push(b'\\'),
            Some(b'n') => help.push(b'\n'),
            Some(b'"') if !strict => help.push(b'"'),
            other if strict => {
                let shown = match other {
                    Some(c) => format!("'\\{}'", (*c as char).escape_debug()),
                    None => "'\\' at the end of the line".to_string(),
                };
                return Err(line.invalid(
                    start + i,
                    format!(
                        "invalid escape sequence {shown} in HELP: only \\\\ and \\n are allowed"
                    ),
                ));
            }
            Some(c) => {
                help.push(b'\\');
                help.push(*c);
            }
            None => help.push(b'\\'),
        }
        i += 2;
    }
    String::from_utf8(help)
        .map(Cow::Owned)
        .map_err(|e| line.invalid(start, format!("invalid UTF-8 in HELP text: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_equality() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for len in 0..=20 {
            names.push(vec![b'a'; len]);
            for at in 0..len {
                let mut name = vec![b'a'; len];
                name[at] = b'b';
                names.push(name);
            }
        }
        for a in &names {
            for b in &names {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// The word-at-a-time search for bytes to escape finds every `\\`, newline and `"`, and
    /// nothing else, at every position of texts up to two words and a bit long.
    #[test]
    fn has_escapable_agrees_with_a_byte_search() {
        for len in 0..=19 {
            for position in 0..len.max(1) {
                for byte in 0..=255u8 {
                    let mut text = vec![b'x'; len];
                    if len > 0 {
                        text[position] = byte;
                    }
                    for quote in [false, true] {
                        let expected = text
                            .iter()
                            .any(|&b| b == b'\\' || b == b'\n' || (quote && b == b'"'));
                        assert_eq!(has_escapable(&text, quote), expected, "{text:?} {quote}");
                    }
                }
            }
        }
    }

    /// The word-at-a-time checks agree with the scanners the parsers use, for every byte at
    /// every position of names up to two words and a bit long.
    #[test]
    fn name_checks_agree_with_the_scanners() {
        let by_scan_metric = |s: &[u8]| !s.is_empty() && scan_metric_name(s, 0) == s.len();
        let by_scan_label = |s: &[u8]| !s.is_empty() && scan_label_name(s, 0) == s.len();
        for len in 1..=19 {
            for position in 0..len {
                for byte in 0..=255u8 {
                    for filler in [b'a', b'Z', b'_', b'9', b':'] {
                        let mut name = vec![filler; len];
                        name[position] = byte;
                        let Ok(text) = std::str::from_utf8(&name) else {
                            continue;
                        };
                        assert_eq!(
                            is_valid_metric_name(text),
                            by_scan_metric(&name),
                            "metric {text:?}"
                        );
                        assert_eq!(
                            is_valid_label_name(text),
                            by_scan_label(&name),
                            "label {text:?}"
                        );
                    }
                }
            }
        }
        for text in [
            "",
            "é",
            "aé",
            "a.b",
            "http_requests_total",
            "0a",
            "_0",
            "ab\u{7f}",
        ] {
            assert_eq!(
                is_valid_metric_name(text),
                by_scan_metric(text.as_bytes()),
                "{text:?}"
            );
            assert_eq!(
                is_valid_label_name(text),
                by_scan_label(text.as_bytes()),
                "{text:?}"
            );
        }
    }
}
