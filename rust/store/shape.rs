//! The shape of a JSON document: its keys and the type of each value, with
//! the values themselves left out. Documents of one shape decode to one
//! polars type, so inferring the type from one document of each shape gives
//! what inferring it from every document would.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Nesting deeper than this is not given a shape (such documents are
/// grouped together and left to the caller's full inference).
const MAX_DEPTH: usize = 64;

/// The shape of `text`: objects keep their keys and order, arrays the
/// distinct shapes of their elements, and scalars become one letter
/// (`s`tring, `i`nteger, `u` an integer beyond 64 signed bits, `f`loat,
/// `b`oolean, `n`ull). None when `text` is not JSON or nests too deep.
pub fn shape(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    shape_into(text, &mut out).then_some(out)
}

/// [`shape`] written into `out` (cleared first); false when there is none.
fn shape_into(text: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut reader = Reader { text, at: 0 };
    let parsed = reader.value(out, 0).is_some();
    reader.skip_space();
    parsed && reader.at == text.len()
}

/// The index of the first document of each distinct shape, in order; all
/// documents without a shape count as one more shape.
pub fn representatives<'a>(texts: impl IntoIterator<Item = Option<&'a [u8]>>) -> Vec<usize> {
    let mut seen: HashSet<Vec<u8>, BuildHasherDefault<Fnv>> = HashSet::default();
    let mut unshaped_seen = false;
    let mut firsts = Vec::new();
    let mut shape = Vec::with_capacity(256);
    for (index, text) in texts.into_iter().enumerate() {
        let Some(text) = text else { continue };
        let new = if shape_into(text, &mut shape) {
            !seen.contains(shape.as_slice()) && seen.insert(shape.clone())
        } else {
            !std::mem::replace(&mut unshaped_seen, true)
        };
        if new {
            firsts.push(index);
        }
    }
    firsts
}

/// FNV-1a: shapes are short and not chosen by an adversary, and SipHash
/// (std's default) would cost more than finding the shape.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(out, depth),
            b'[' => self.array(out, depth),
            b'"' => {
                self.string()?;
                out.push(b's');
                Some(())
            }
            b't' => self.word(b"true", b'b', out),
            b'f' => self.word(b"false", b'b', out),
            b'n' => self.word(b"null", b'n', out),
            _ => self.number(out),
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.eat(b'{')?;
        out.push(b'{');
        if self.eat(b'}').is_some() {
            out.push(b'}');
            return Some(());
        }
        loop {
            self.skip_space();
            let start = self.at;
            self.string()?;
            out.extend_from_slice(&self.text[start..self.at]);
            self.eat(b':')?;
            out.push(b':');
            self.value(out, depth + 1)?;
            match self.peek()? {
                b',' => out.push(b','),
                b'}' => break,
                _ => return None,
            }
            self.at += 1;
        }
        self.at += 1;
        out.push(b'}');
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.eat(b'[')?;
        out.push(b'[');
        // Each element's shape is written after the last; a repeat is cut off.
        let mut distinct: Vec<(usize, usize)> = Vec::new();
        if self.eat(b']').is_none() {
            loop {
                let start = out.len();
                self.value(out, depth + 1)?;
                let end = out.len();
                if distinct.iter().any(|&(s, e)| out[s..e] == out[start..end]) {
                    out.truncate(start);
                } else {
                    distinct.push((start, end));
                    out.push(b'|');
                }
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => break,
                    _ => return None,
                }
            }
            self.at += 1;
        }
        if out.last() == Some(&b'|') {
            out.pop();
        }
        out.push(b']');
        Some(())
    }

    fn string(&mut self) -> Option<()> {
        if self.text.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        loop {
            let rest = self.text.get(self.at..)?;
            self.at += rest.iter().position(|&b| b == b'"' || b == b'\\')?;
            if self.text[self.at] == b'"' {
                self.at += 1;
                return Some(());
            }
            self.at += 2;
        }
    }

    fn word(&mut self, word: &[u8], letter: u8, out: &mut Vec<u8>) -> Option<()> {
        if !self.text[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        out.push(letter);
        Some(())
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.at += 1;
        }
        let number = &self.text[start..self.at];
        if !number.iter().any(u8::is_ascii_digit) {
            return None;
        }
        let float = number.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
        out.push(if float {
            b'f'
        } else if fits_in_i64(number) {
            b'i'
        } else {
            b'u' // decodes to another type than `i`: a shape of its own
        });
        Some(())
    }
}

fn fits_in_i64(digits: &[u8]) -> bool {
    std::str::from_utf8(digits).is_ok_and(|text| text.parse::<i64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_beyond_64_signed_bits_has_a_shape_of_its_own() {
        assert_eq!(shape_of(r#"{"seed": 9223372036854775807}"#).as_deref(), Some(r#"{"seed":i}"#));
        assert_eq!(shape_of(r#"{"seed": -9223372036854775808}"#).as_deref(), Some(r#"{"seed":i}"#));
        assert_eq!(shape_of(r#"{"seed": 18446744073709551615}"#).as_deref(), Some(r#"{"seed":u}"#));
        assert_eq!(shape_of(r#"{"seed": -9223372036854775809}"#).as_deref(), Some(r#"{"seed":u}"#));
    }

    fn shape_of(text: &str) -> Option<String> {
        shape(text.as_bytes()).map(|s| String::from_utf8(s).unwrap())
    }

    #[test]
    fn values_become_their_types() {
        let text = r#"{"lr": 0.001, "seed": 3, "name": "a\"b", "on": true, "x": null, "e": 1e-3}"#;
        assert_eq!(
            shape_of(text).as_deref(),
            Some(r#"{"lr":f,"seed":i,"name":s,"on":b,"x":n,"e":f}"#)
        );
    }

    #[test]
    fn arrays_keep_their_distinct_element_shapes() {
        assert_eq!(shape_of("[64, 64, 32]").as_deref(), Some("[i]"));
        assert_eq!(shape_of("[1, 1.5, 2]").as_deref(), Some("[i|f]"));
        assert_eq!(shape_of("[]").as_deref(), Some("[]"));
        assert_eq!(
            shape_of(r#"{"m": {"d": [[1], []]}}"#).as_deref(),
            Some(r#"{"m":{"d":[[i]|[]]}}"#)
        );
    }

    #[test]
    fn documents_differing_in_values_only_share_a_shape() {
        let firsts = representatives(
            [
                r#"{"a":1,"b":"x"}"#,
                r#"{"a":2,"b":"y"}"#,
                r#"{"a":2.5,"b":"y"}"#,
                "{",
                r#"{"a":3,"b":"z"}"#,
                "]",
            ]
            .iter()
            .map(|t| Some(t.as_bytes()))
            .chain([None]),
        );
        assert_eq!(firsts, [0, 2, 3]);
    }

    #[test]
    fn malformed_or_deep_text_has_no_shape() {
        for text in ["", "{", r#"{"a" 1}"#, "[1,]", "tru", "\"open", "{} x", "-", r#"{"a":1,}"#] {
            assert_eq!(shape_of(text), None, "{text:?}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(shape_of(&deep), None);
        assert!(shape_of(&("[".repeat(60) + &"]".repeat(60))).is_some());
    }
}
