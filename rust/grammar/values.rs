//! docs/grammar.md, "Values": value lists, split at top-level commas, and the
//! kinds of element in them (quoted, bracketed, Hydra function, product,
//! range, literal). Ranges and products stay lazy: a value list knows its
//! length without rendering anything.

use super::error::{Result, SweepError};
use super::number::{parse_number, NumberFault};
use super::product::Product;
use super::range::Range;
use super::split::split_top_level;

/// Hydra's sweep and cast functions, passed verbatim: Hydra expands them.
const HYDRA_FUNCTIONS: [&str; 13] = [
    "range",
    "choice",
    "interval",
    "glob",
    "sort",
    "shuffle",
    "tag",
    "int",
    "float",
    "str",
    "bool",
    "json_str",
    "extend_list",
];

/// One element of a value list.
#[derive(Clone, Debug, PartialEq)]
pub enum Element {
    /// Literal, quoted, bracketed or Hydra-function text: verbatim.
    Text(String),
    /// Numbers made by a range or a scale.
    Range(Range),
    /// A cartesian product of groups and text runs.
    Product(Product),
}

impl Element {
    fn parse(text: &str) -> Result<Element> {
        if is_quoted(text) || text.starts_with(['[', '{']) || is_hydra_function(text) {
            return Ok(Element::Text(text.to_owned()));
        }
        if text.contains('(') {
            return Product::parse(text).map(Element::Product);
        }
        if let Some((before, _)) = text.split_once(':') {
            if before.is_empty() || parse_number(before).is_ok() {
                return Range::parse(text).map(Element::Range);
            }
        }
        Ok(Element::Text(text.to_owned()))
    }

    pub fn len(&self) -> u128 {
        match self {
            Element::Text(_) => 1,
            Element::Range(range) => range.len(),
            Element::Product(product) => product.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn render(&self, index: u128, out: &mut String) {
        match self {
            Element::Text(text) => out.push_str(text),
            Element::Range(range) => range.render(index, out),
            Element::Product(product) => product.render(index, out),
        }
    }

    fn is_scaled(&self) -> bool {
        match self {
            Element::Text(_) => false,
            Element::Range(range) => range.scaled,
            Element::Product(product) => product.is_scaled(),
        }
    }
}

fn is_quoted(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 2 && matches!(bytes[0], b'\'' | b'"') && bytes[bytes.len() - 1] == bytes[0]
}

/// `NAME(...)` spanning the whole text, NAME one of Hydra's functions.
fn is_hydra_function(text: &str) -> bool {
    let Some(open) = text.find('(') else { return false };
    HYDRA_FUNCTIONS.contains(&&text[..open])
        && super::split::matching_paren(text, open).is_ok_and(|close| close == text.len() - 1)
}

/// A comma-separated list of elements, each with its span in the list text.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueList {
    elements: Vec<(usize, usize, Element)>,
}

impl ValueList {
    /// Parses VALUES. `a=` (nothing) is the single empty value.
    pub fn parse(text: &str) -> Result<ValueList> {
        if text.trim().is_empty() {
            return Ok(ValueList { elements: vec![(0, text.len(), Element::Text(String::new()))] });
        }
        let pieces = split_top_level(text, b',')?;
        let several = pieces.len() > 1;
        let mut elements = Vec::with_capacity(pieces.len());
        for (at, piece) in pieces {
            let trimmed = piece.trim();
            let at = at + (piece.len() - piece.trim_start().len());
            if trimmed.is_empty() && several {
                return Err(empty_element(at));
            }
            let element = Element::parse(trimmed).map_err(|e| e.shifted(at))?;
            elements.push((at, trimmed.len(), element));
        }
        Ok(ValueList { elements })
    }

    /// Multiplies every value by `10^exponent`; every value must be a number.
    pub fn scale(&mut self, exponent: i32) -> Result<()> {
        let mut scaled = Vec::with_capacity(self.elements.len());
        for (at, len, element) in self.elements.drain(..) {
            let fail = |reason: String| SweepError::new("invalid scale", at, len, reason);
            if element.is_scaled() {
                return Err(fail("the value is scaled twice".into()));
            }
            let mut ranges = match element {
                Element::Range(range) => vec![range],
                other => numbers_of(&other).map_err(fail)?,
            };
            for range in &mut ranges {
                range
                    .scale(exponent)
                    .map_err(|_| fail("the scaled value has too many digits".into()))?;
            }
            scaled.extend(ranges.into_iter().map(|r| (at, len, Element::Range(r))));
        }
        self.elements = scaled;
        Ok(())
    }

    pub fn len(&self) -> u128 {
        self.elements.iter().map(|(_, _, e)| e.len()).fold(0u128, u128::saturating_add)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_scaled(&self) -> bool {
        self.elements.iter().any(|(_, _, e)| e.is_scaled())
    }

    /// Appends the value at `index` (< len).
    pub fn render(&self, mut index: u128, out: &mut String) {
        for (_, _, element) in &self.elements {
            let len = element.len();
            if index < len {
                return element.render(index, out);
            }
            index -= len;
        }
    }

    /// Calls `visit` with every value, rendered, in order.
    pub fn for_each(&self, mut visit: impl FnMut(&str)) {
        let mut buffer = String::new();
        for (_, _, element) in &self.elements {
            for index in 0..element.len() {
                buffer.clear();
                element.render(index, &mut buffer);
                visit(&buffer);
            }
        }
    }

    /// Appends all values joined by commas.
    pub fn render_joined(&self, out: &mut String) {
        for (i, (_, _, element)) in self.elements.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match element {
                Element::Range(range) => range.render_joined(",", out),
                _ => {
                    for index in 0..element.len() {
                        if index > 0 {
                            out.push(',');
                        }
                        element.render(index, out);
                    }
                }
            }
        }
    }

    pub fn rendered(&self) -> Vec<String> {
        let mut all = Vec::new();
        self.for_each(|v| all.push(v.to_owned()));
        all
    }
}

/// The values of a text or product element as numbers, for scaling.
fn numbers_of(element: &Element) -> std::result::Result<Vec<Range>, String> {
    let mut ranges = Vec::new();
    let mut text = String::new();
    for index in 0..element.len() {
        text.clear();
        element.render(index, &mut text);
        match parse_number(&text) {
            Ok(number) => ranges.push(Range::single(number)),
            Err(NumberFault::Overflow) => return Err(format!("'{text}' has too many digits")),
            Err(NumberFault::NotANumber) => {
                return Err(format!("'{text}' is not a number, so it cannot be scaled"))
            }
        }
    }
    Ok(ranges)
}

fn empty_element(at: usize) -> SweepError {
    let reason = "empty value between commas (a space after a comma, as in 'a=1, 2', \
                  splits the text into two arguments)";
    SweepError::new("invalid value list", at, 1, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<String> {
        ValueList::parse(text).unwrap().rendered()
    }

    #[test]
    fn classifies_elements() {
        assert_eq!(values("'1,2'"), ["'1,2'"]);
        assert_eq!(values("[1,2],[3,4]"), ["[1,2]", "[3,4]"]);
        assert_eq!(values("{x:1,y:2}"), ["{x:1,y:2}"]);
        assert_eq!(values("choice(1,2)"), ["choice(1,2)"]);
        assert_eq!(values("s3://b/x,s3://b/y"), ["s3://b/x", "s3://b/y"]);
        assert_eq!(values("a:b,1e-3,null,0.10"), ["a:b", "1e-3", "null", "0.10"]);
        assert_eq!(values("b=c"), ["b=c"]);
        assert_eq!(values(""), [""]);
    }

    #[test]
    fn rejects_empty_elements() {
        for text in ["1,,2", "1,", ",1"] {
            let err = ValueList::parse(text).unwrap_err();
            assert!(err.reason.contains("'a=1, 2'"), "{text}");
        }
    }

    #[test]
    fn scales_numbers_and_only_numbers() {
        let mut list = ValueList::parse("1,2,5").unwrap();
        list.scale(-3).unwrap();
        assert_eq!(list.rendered(), ["0.001", "0.002", "0.005"]);
        let mut words = ValueList::parse("1,x").unwrap();
        let err = words.scale(3).unwrap_err();
        assert_eq!(
            (err.start, err.reason.as_str()),
            (2, "'x' is not a number, so it cannot be scaled")
        );
        let mut twice = ValueList::parse("1:3:k").unwrap();
        assert!(twice.scale(3).unwrap_err().reason.contains("twice"));
    }

    #[test]
    fn knows_its_length_lazily() {
        let list = ValueList::parse("1:1000000000,x,(a,b)_(1:10)").unwrap();
        assert_eq!(list.len(), 1_000_000_000 + 1 + 20);
        let mut out = String::new();
        list.render(1_000_000_000 + 2, &mut out);
        assert_eq!(out, "a_2");
    }
}
