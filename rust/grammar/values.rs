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

/// Other tools' names for a distribution to sample from: written as a Hydra
/// function they would make a product (`loguniform1e-4,loguniform1e-1`).
const OTHER_TOOLS_FUNCTIONS: [&str; 9] = [
    "uniform",
    "loguniform",
    "quniform",
    "qloguniform",
    "randint",
    "logspace",
    "linspace",
    "grid_search",
    "categorical",
];

/// `log(...)`, as docs of other tools (and the published HydraFlow's own)
/// write a log-spaced sweep: as a product it is `log1,log2,log3`.
const LOG_FUNCTIONS: [&str; 2] = ["log", "log10"];

/// What `log(START:STOP:STEP)` most likely meant: values a factor apart,
/// which a geometric range gives (`0.0001:0.1:*10`).
fn log_hint(inside: &str) -> String {
    let parts: Vec<&str> = inside.split(':').map(str::trim).collect();
    let geometric = match parts[..] {
        [start, stop, factor] if !factor.starts_with(['*', '#']) => {
            format!("{start}:{stop}:*{factor}")
        }
        [start, stop] => format!("{start}:{stop}:*10"),
        _ => "1e-4:1e-1:*10".to_owned(),
    };
    format!(
        "for values a factor apart write a geometric range, START:STOP:*FACTOR \
         (here {geometric}); a sweeper searches a log scale with tag(log,interval(LOW,HIGH))"
    )
}

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
            if let Some(error) = mistaken_function(text) {
                return Err(error);
            }
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

/// `NAME(...)` spanning the whole text, NAME one of Hydra's functions
/// (blanks before the parenthesis allowed, as Hydra's parser allows them).
fn is_hydra_function(text: &str) -> bool {
    let Some(open) = text.find('(') else { return false };
    HYDRA_FUNCTIONS.contains(&text[..open].trim_end())
        && super::split::matching_paren(text, open).is_ok_and(|close| close == text.len() - 1)
}

/// `NAME(...)` spanning the whole text where NAME is no Hydra function but
/// reads as one: a near miss of one (`intreval`, `Choice`) or another tool's
/// distribution (`loguniform`). As a product it would sweep the text around
/// the values (`intreval1e-4`), never what was meant; Hydra itself refuses
/// such a name. `(NAME)(...)` is the product, for whoever wants it.
fn mistaken_function(text: &str) -> Option<SweepError> {
    let open = text.find('(')?;
    let name = &text[..open];
    let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_name || super::split::matching_paren(text, open).ok()? != text.len() - 1 {
        return None;
    }
    let hint = if let Some(meant) = HYDRA_FUNCTIONS.iter().find(|f| is_near_miss(name, f)) {
        format!("did you mean {meant}(...)?")
    } else if LOG_FUNCTIONS.contains(&name) {
        log_hint(&text[open + 1..text.len() - 1])
    } else if OTHER_TOOLS_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
        "Hydra's sweepers read interval(LOW,HIGH), tag(log,interval(LOW,HIGH)), \
         range(START,STOP,STEP) and choice(A,B,...)"
            .to_owned()
    } else {
        return None;
    };
    let reason = format!(
        "'{name}' is not one of Hydra's sweep functions: {hint} \
         (for the product of the text and the values, write ({name})(...))"
    );
    Some(SweepError::new("unknown function", 0, open, reason))
}

/// Another spelling of one of Hydra's longer functions (`choice`,
/// `interval`, `shuffle`, ...): the same name in other case, or one typing
/// slip away. Short ones are left alone: `INT(4,8)`, `Float(16,32)` and
/// `flat(...)` are real products' text far more often than slips.
fn is_near_miss(name: &str, function: &str) -> bool {
    if name == function || function.len() < 6 {
        return false;
    }
    let name = name.to_ascii_lowercase();
    edit_distance(&name, function) <= 1
}

/// Insertions, deletions, substitutions and swaps of neighbours that turn
/// `a` into `b` (optimal string alignment distance).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    rows[0] = (0..=b.len()).collect();
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best =
                (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
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
    fn refuses_a_mistaken_hydra_function_but_keeps_products() {
        for (text, hint) in [
            ("intreval(1e-4,1e-1)", "did you mean interval(...)?"),
            ("choise(cnn,mlp)", "did you mean choice(...)?"),
            ("Interval(0,1)", "did you mean interval(...)?"),
            ("CHOICE(a,b)", "did you mean choice(...)?"),
            ("shufle(1,2)", "did you mean shuffle(...)?"),
            ("loguniform(1e-4,1e-1)", "Hydra's sweepers read interval(LOW,HIGH)"),
            (
                "log(0.0001:0.1:10)",
                "write a geometric range, START:STOP:*FACTOR (here 0.0001:0.1:*10)",
            ),
            ("log(1:3)", "(here 1:3:*10)"),
            ("log10(1e-4,1e-1)", "(here 1e-4:1e-1:*10)"),
        ] {
            let err = ValueList::parse(text).unwrap_err();
            assert_eq!(err.what, "unknown function", "{text}");
            assert!(err.reason.contains(hint), "{text}: {}", err.reason);
            let name = &text[..text.find('(').unwrap()];
            assert!(err.reason.contains(&format!("write ({name})(...)")), "{text}");
        }
        // Products whose text is no near miss, or not a whole-element call.
        assert_eq!(values("resnet(18,34)"), ["resnet18", "resnet34"]);
        assert_eq!(values("port(80,81)"), ["port80", "port81"]);
        assert_eq!(values("vit(s,l)"), ["vits", "vitl"]);
        assert_eq!(values("choise(a,b)x"), ["choiseax", "choisebx"]);
        assert_eq!(values("(intreval)(1,2)"), ["intreval1", "intreval2"]);
        // Real names near short functions, or two slips from a long one.
        assert_eq!(values("INT(4,8)"), ["INT4", "INT8"]);
        assert_eq!(values("Float(16,32)"), ["Float16", "Float32"]);
        assert_eq!(values("orange(1,2)"), ["orange1", "orange2"]);
        assert_eq!(values("voice(1,2)"), ["voice1", "voice2"]);
        // Hydra reads `range (1,3)` as range(1,3): passed on as it is.
        assert_eq!(values("range (1,3)"), ["range (1,3)"]);
        assert_eq!(values("2e(-1,-2)"), ["2e-1", "2e-2"]);
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
