//! The crate's one error type.

/// Why an input could not be parsed.
///
/// Every variant carries the 1-based line and column (counted in characters) where the problem
/// was found, and its `Display` form is `LINE:COL: message`, ready to be prefixed with a file
/// name (`promdrop check` prints `FILE:LINE:COL: message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input did not match the grammar: something else was expected where `found` stands.
    #[error("{line}:{column}: expected {expected}, found {found}")]
    Unexpected {
        /// 1-based line number.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What the grammar allows at this point, in words (`"'=' after a label name"`).
        expected: &'static str,
        /// What was there instead, quoted (`"'x'"`, `"end of line"`, `"\"1.2.3\""`).
        found: String,
    },
    /// The input is well formed but breaks a rule of the format (a second `# TYPE` line, a
    /// negative counter, a histogram without a `+Inf` bucket, …).
    #[error("{line}:{column}: {message}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// A sentence saying what is wrong.
        message: String,
    },
    /// A [`ParseLimits`](crate::ParseLimits) bound was exceeded; parsing stopped there.
    #[error("{line}:{column}: {what} exceeds the limit of {limit}")]
    LimitExceeded {
        /// 1-based line number.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Which limit (`"input size in bytes"`, `"number of series"`, …).
        what: &'static str,
        /// The limit that was exceeded.
        limit: usize,
    },
}

impl Error {
    /// The 1-based line the error was found on.
    pub fn line(&self) -> usize {
        match self {
            Error::Unexpected { line, .. }
            | Error::Invalid { line, .. }
            | Error::LimitExceeded { line, .. } => *line,
        }
    }

    /// The 1-based column (in characters) the error was found at.
    pub fn column(&self) -> usize {
        match self {
            Error::Unexpected { column, .. }
            | Error::Invalid { column, .. }
            | Error::LimitExceeded { column, .. } => *column,
        }
    }

    /// The message without the `LINE:COL: ` prefix.
    pub fn message(&self) -> String {
        let full = self.to_string();
        // The Display form always starts with "LINE:COL: ".
        match full.splitn(3, ':').nth(2) {
            Some(rest) => rest.trim_start().to_string(),
            None => full,
        }
    }
}
