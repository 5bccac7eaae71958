//! Grammar errors: what went wrong, and where in the argument.

use std::fmt;

/// A grammar error. Positions are byte offsets into `argument` while parsing;
/// [`SweepError::position`] converts to the character offset users see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepError {
    /// The whole argument the error occurred in (filled in by the caller that knows it).
    pub argument: String,
    /// Byte offset of the offending text in `argument`.
    pub start: usize,
    /// Byte length of the offending text (at least one caret is drawn).
    pub len: usize,
    /// A short heading: "invalid range", "invalid value list", ...
    pub what: &'static str,
    /// Why, in a sentence fragment: "'3tep' is not a number".
    pub reason: String,
}

pub type Result<T> = std::result::Result<T, SweepError>;

impl SweepError {
    pub fn new(what: &'static str, start: usize, len: usize, reason: impl Into<String>) -> Self {
        Self { argument: String::new(), start, len, what, reason: reason.into() }
    }

    /// Shifts the span by `offset`: used when a sub-parser worked on a slice.
    pub fn shifted(mut self, offset: usize) -> Self {
        self.start += offset;
        self
    }

    /// Attaches the whole argument, keeping the first one attached.
    pub fn in_argument(mut self, argument: &str) -> Self {
        if self.argument.is_empty() {
            self.argument = argument.to_owned();
        }
        self
    }

    /// Character offset of the offending text in the argument.
    pub fn position(&self) -> usize {
        char_offset(&self.argument, self.start)
    }

    fn caret_count(&self) -> usize {
        let end = (self.start + self.len).min(self.argument.len());
        (char_offset(&self.argument, end) - self.position()).max(1)
    }
}

fn char_offset(text: &str, byte: usize) -> usize {
    let byte = byte.min(text.len());
    text.char_indices().take_while(|(i, _)| *i < byte).count()
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} in '{}': {}", self.what, self.argument, self.reason)?;
        writeln!(f, "  {}", self.argument)?;
        write!(f, "  {}{}", " ".repeat(self.position()), "^".repeat(self.caret_count()))
    }
}

impl std::error::Error for SweepError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_points_at_the_offending_text() {
        let err = SweepError::new("invalid range", 8, 4, "'3tep' is not a number")
            .in_argument("count=1:3tep");
        assert_eq!(
            err.to_string(),
            "invalid range in 'count=1:3tep': '3tep' is not a number\n  count=1:3tep\n          ^^^^"
        );
        assert_eq!(err.position(), 8);
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let err = SweepError::new("invalid range", 7, 1, "x").in_argument("é=1:2:x");
        assert_eq!(err.position(), 6);
    }
}
