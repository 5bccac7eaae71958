//! docs/grammar.md, "Products". `(cnn,vit)_(s,l)` is the cartesian
//! product of its parts, concatenated, the leftmost part varying slowest.
//! A text run that is exactly a scale token scales the group before it.

use super::error::{Result, SweepError};
use super::scale::scale_exponent;
use super::split::{matching_paren, skip_quoted};
use super::values::ValueList;

const WHAT: &str = "invalid product";

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Group(ValueList),
}

impl Part {
    fn len(&self) -> u128 {
        match self {
            Part::Text(_) => 1,
            Part::Group(values) => values.len(),
        }
    }
}

/// A parsed product; its values are rendered on demand.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    parts: Vec<Part>,
}

impl Product {
    pub fn parse(text: &str) -> Result<Product> {
        let mut parts = Vec::new();
        let mut run_start = 0;
        let mut i = 0;
        let bytes = text.as_bytes();
        while i < bytes.len() {
            match bytes[i] {
                b'\'' | b'"' => i = skip_quoted(text, i)? + 1,
                b'(' => {
                    push_text(&mut parts, &text[run_start..i], run_start)?;
                    let close = matching_paren(text, i)?;
                    parts.push(Part::Group(group(text, i, close)?));
                    i = close + 1;
                    run_start = i;
                }
                b')' => return Err(SweepError::new(WHAT, i, 1, "')' has no opening '('")),
                _ => i += 1,
            }
        }
        push_text(&mut parts, &text[run_start..], run_start)?;
        Ok(Product { parts })
    }

    pub fn len(&self) -> u128 {
        self.parts.iter().map(Part::len).fold(1u128, u128::saturating_mul)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_scaled(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Group(values) if values.is_scaled()))
    }

    /// Appends the value at `index`: mixed-radix digits, the last part fastest.
    pub fn render(&self, index: u128, out: &mut String) {
        let mut digits = Vec::with_capacity(self.parts.len());
        let mut rest = index;
        for part in self.parts.iter().rev() {
            let len = part.len();
            digits.push(rest % len);
            rest /= len;
        }
        for (part, digit) in self.parts.iter().zip(digits.into_iter().rev()) {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Group(values) => values.render(digit, out),
            }
        }
    }
}

/// The value list between `open` and `close`.
fn group(text: &str, open: usize, close: usize) -> Result<ValueList> {
    let inner = &text[open + 1..close];
    if inner.trim().is_empty() {
        return Err(SweepError::new(WHAT, open, close + 1 - open, "the group '()' is empty"));
    }
    ValueList::parse(inner).map_err(|e| e.shifted(open + 1))
}

/// Adds a text run: a scale token right after a group scales it.
fn push_text(parts: &mut Vec<Part>, run: &str, at: usize) -> Result<()> {
    if run.is_empty() {
        return Ok(());
    }
    if let (Some(exponent), Some(Part::Group(values))) = (scale_exponent(run), parts.last_mut()) {
        return values.scale(exponent).map_err(|e| SweepError::new(WHAT, at, run.len(), e.reason));
    }
    parts.push(Part::Text(run.to_owned()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<String> {
        let product = Product::parse(text).unwrap();
        (0..product.len())
            .map(|i| {
                let mut out = String::new();
                product.render(i, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn leftmost_part_varies_slowest() {
        assert_eq!(values("(cnn,vit)_(s,l)"), ["cnn_s", "cnn_l", "vit_s", "vit_l"]);
        assert_eq!(values("x(1:3)"), ["x1", "x2", "x3"]);
    }

    #[test]
    fn scale_tokens_after_a_group_scale_it() {
        assert_eq!(
            values("(1:3,5:9:2,20)k"),
            ["1000", "2000", "3000", "5000", "7000", "9000", "20000"]
        );
        assert_eq!(values("(1,5)e-(1:2)"), ["1e-1", "1e-2", "5e-1", "5e-2"]);
        assert_eq!(values("2e(-1,-2)"), ["2e-1", "2e-2"]);
        assert_eq!(values("( 1 , 2 )m"), ["0.001", "0.002"]);
        assert_eq!(values("((1,2)0)k"), ["10000", "20000"]);
    }

    #[test]
    fn rejects_bad_groups() {
        assert!(Product::parse("(1,2").is_err());
        assert!(Product::parse("a()").is_err());
        assert!(Product::parse("(x,y)k").unwrap_err().reason.contains("not a number"));
        assert!(Product::parse("(1:3:k)k").unwrap_err().reason.contains("twice"));
    }
}
