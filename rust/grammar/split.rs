//! docs/grammar.md, "Arguments": splitting text at top level — outside quotes
//! (`'...'`, `"..."`, where a backslash escapes) and brackets `() [] {}`.

use super::error::{Result, SweepError};

const WHAT: &str = "unbalanced text";

/// Brackets nest at most this deep: products parse nested parentheses
/// recursively, and no input may exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// Calls `visit(offset, byte)` for every byte at top level, after checking that
/// quotes and brackets balance. Quote and bracket characters are not visited.
pub fn scan(text: &str, mut visit: impl FnMut(usize, u8)) -> Result<()> {
    let bytes = text.as_bytes();
    let mut open: Vec<(usize, u8)> = Vec::new(); // (offset, expected closer)
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'\'' | b'"' => i = skip_quoted(text, i)?,
            b'(' | b'[' | b'{' if open.len() == MAX_NESTING => {
                let reason = format!("brackets nest more than {MAX_NESTING} deep");
                return Err(SweepError::new(WHAT, i, 1, reason));
            }
            b'(' | b'[' | b'{' => open.push((i, closer(byte))),
            b')' | b']' | b'}' => match open.pop() {
                Some((_, expected)) if expected == byte => {}
                Some((at, expected)) => {
                    let reason =
                        format!("'{}' closes '{}'", byte as char, opener(expected) as char);
                    return Err(SweepError::new(WHAT, at, i + 1 - at, reason));
                }
                None => {
                    let reason =
                        format!("'{}' has no opening '{}'", byte as char, opener(byte) as char);
                    return Err(SweepError::new(WHAT, i, 1, reason));
                }
            },
            _ if open.is_empty() => visit(i, byte),
            _ => {}
        }
        i += 1;
    }
    match open.first() {
        Some(&(at, expected)) => {
            let reason = format!(
                "'{}' is never closed with '{}'",
                opener(expected) as char,
                expected as char
            );
            Err(SweepError::new(WHAT, at, 1, reason))
        }
        None => Ok(()),
    }
}

/// Returns the offset of the closing quote matching the one at `start`.
pub fn skip_quoted(text: &str, start: usize) -> Result<usize> {
    let bytes = text.as_bytes();
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b if b == quote => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    let reason = format!("the quote {} is never closed", quote as char);
    Err(SweepError::new(WHAT, start, text.len() - start, reason))
}

fn closer(opener: u8) -> u8 {
    match opener {
        b'(' => b')',
        b'[' => b']',
        _ => b'}',
    }
}

fn opener(closer: u8) -> u8 {
    match closer {
        b')' => b'(',
        b']' => b'[',
        _ => b'{',
    }
}

/// The offset of the `)` matching the `(` at `open`, skipping quoted text.
pub fn matching_paren(text: &str, open: usize) -> Result<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(text, i)?,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(SweepError::new(WHAT, open, 1, "'(' is never closed with ')'"))
}

/// Offsets of `target` at top level.
pub fn top_level(text: &str, target: u8) -> Result<Vec<usize>> {
    let mut found = Vec::new();
    scan(text, |i, byte| {
        if byte == target {
            found.push(i);
        }
    })?;
    Ok(found)
}

/// Splits at every top-level `separator`, yielding `(offset, piece)`.
pub fn split_top_level(text: &str, separator: u8) -> Result<Vec<(usize, &str)>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for at in top_level(text, separator)? {
        pieces.push((start, &text[start..at]));
        start = at + 1;
    }
    pieces.push((start, &text[start..]));
    Ok(pieces)
}

/// Splits a sweep string into arguments at top-level white space, keeping
/// quotes in the text. Yields `(offset, argument)`.
pub fn split_arguments(text: &str) -> Result<Vec<(usize, &str)>> {
    let mut arguments = Vec::new();
    let mut start: Option<usize> = None;
    let mut breaks = Vec::new();
    let scanned = scan(text, |i, byte| {
        if byte.is_ascii_whitespace() {
            breaks.push(i);
        }
    });
    if let Err(err) = scanned {
        return Err(attach_to_argument(text, err));
    }
    let mut breaks = breaks.into_iter().peekable();
    for (i, _) in text.char_indices() {
        let is_break = breaks.peek() == Some(&i);
        if is_break {
            breaks.next();
            if let Some(s) = start.take() {
                arguments.push((s, &text[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        arguments.push((s, &text[s..]));
    }
    Ok(arguments)
}

/// Narrows an error found while splitting to the argument it starts in.
fn attach_to_argument(text: &str, err: SweepError) -> SweepError {
    let begin = text[..err.start].rfind(|c: char| c.is_ascii_whitespace()).map_or(0, |i| i + 1);
    let begin = begin.min(err.start);
    let argument = text[begin..].trim_end();
    SweepError { start: err.start - begin, ..err }.in_argument(argument)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<&str> {
        split_arguments(text).unwrap().into_iter().map(|(_, a)| a).collect()
    }

    #[test]
    fn splits_at_white_space_outside_quotes_and_brackets() {
        assert_eq!(args("a=1  b=2\n\tc=3 "), ["a=1", "b=2", "c=3"]);
        assert_eq!(args("name='hello world' n=1"), ["name='hello world'", "n=1"]);
        assert_eq!(args("a=[1, 2] b={x: 1} c=(1, 2)"), ["a=[1, 2]", "b={x: 1}", "c=(1, 2)"]);
        assert_eq!(
            args(r#"a="it's here" b='say \'hi\''"#),
            [r#"a="it's here""#, r"b='say \'hi\''"]
        );
        assert!(args("  ").is_empty());
    }

    #[test]
    fn reports_offsets() {
        let pieces = split_arguments(" a=1 bb=2").unwrap();
        assert_eq!(pieces, [(1, "a=1"), (5, "bb=2")]);
    }

    #[test]
    fn rejects_unbalanced_text() {
        let err = split_arguments("x=1 a='1 b=2").unwrap_err();
        assert_eq!((err.argument.as_str(), err.start), ("a='1 b=2", 2));
        assert!(split_arguments("x=(1,2").is_err());
        assert!(split_arguments("x=1,2)").is_err());
        assert!(split_arguments("x=[1,2)").is_err());
    }

    #[test]
    fn refuses_deep_nesting_before_recursing() {
        let deep = format!("x={}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let err = split_arguments(&deep).unwrap_err();
        assert_eq!(
            (err.start, err.reason.as_str()),
            (2 + MAX_NESTING, "brackets nest more than 64 deep")
        );
        let fine = format!("x={}1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(split_arguments(&fine).is_ok());
    }

    #[test]
    fn finds_top_level_separators() {
        assert_eq!(top_level("a=(1,2),[3,4],'5,6',7", b',').unwrap(), [7, 13, 19]);
        let parts = split_top_level("a=1|b=2", b'|').unwrap();
        assert_eq!(parts, [(0, "a=1"), (4, "b=2")]);
    }
}
