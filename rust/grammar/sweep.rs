//! docs/grammar.md, "Arguments" and "each, all and the pipe": arguments
//! (`KEY=VALUES`, `KEY/SCALE=VALUES`, `~KEY`, pipes) and the two ways to sweep
//! them: `expand` (each) and `collect` (all).
//!
//! Every function that lists values checks first, without listing, that the
//! whole call stays within [`MAX_LISTED`]: no input may exhaust memory.

use super::error::{Result, SweepError};
use super::scale::scale_exponent;
use super::split::{skip_quoted, split_arguments, split_top_level, top_level};
use super::values::ValueList;

/// The most values one call may list (summed over its arguments, a pipe's
/// sections included), and the most cells `expand` may build: beyond this,
/// memory runs out long before the sweep could run, so say so instead.
pub const MAX_LISTED: u128 = 10_000_000;

/// One parsed argument.
#[derive(Clone, Debug, PartialEq)]
pub enum Argument {
    /// `~KEY` and `~KEY=VALUE`: Hydra's delete override, untouched.
    Verbatim(String),
    /// `KEY=VALUES` (a scale from `KEY/SCALE` is already applied).
    Override { key: String, values: ValueList },
    /// `A|B|C`: one alternative per section, each section collected.
    Pipe(Vec<Argument>),
}

struct KeyScale<'a> {
    key: &'a str,
    scale: Option<i32>,
}

impl Argument {
    /// Parses one argument; errors carry the argument and the offending span.
    pub fn parse(text: &str) -> Result<Argument> {
        parse_argument(text).map_err(|e| e.in_argument(text))
    }

    /// How many alternatives `expand` makes of this argument.
    pub fn count(&self) -> u128 {
        match self {
            Argument::Verbatim(_) => 1,
            Argument::Override { values, .. } => values.len(),
            Argument::Pipe(sections) => sections.len() as u128,
        }
    }

    /// How many values listing this argument renders: a pipe renders every
    /// value of every section.
    pub fn listed(&self) -> u128 {
        match self {
            Argument::Verbatim(_) => 1,
            Argument::Override { values, .. } => values.len(),
            Argument::Pipe(sections) => {
                sections.iter().map(Argument::listed).fold(0, u128::saturating_add)
            }
        }
    }

    /// The alternatives `expand` makes of this argument, one `KEY=v` each.
    pub fn alternatives(&self, text: &str) -> Result<Vec<String>> {
        check_listable(self.listed(), text)?;
        Ok(match self {
            Argument::Verbatim(verbatim) => vec![verbatim.clone()],
            Argument::Override { key, values } => {
                let mut all = Vec::with_capacity(values.len() as usize);
                values.for_each(|value| all.push(format!("{key}={value}")));
                all
            }
            Argument::Pipe(sections) => sections.iter().map(Argument::joined).collect(),
        })
    }

    /// The one override `collect` makes of this argument: `KEY=v1,v2,...`.
    pub fn collected(&self, text: &str) -> Result<String> {
        if let Argument::Pipe(_) = self {
            let at =
                top_level(text, b'|').ok().and_then(|found| found.first().copied()).unwrap_or(0);
            let reason = "a pipe '|' is only allowed in 'each'";
            return Err(SweepError::new("invalid argument", at, 1, reason).in_argument(text));
        }
        check_listable(self.listed(), text)?;
        Ok(self.joined())
    }

    fn joined(&self) -> String {
        match self {
            Argument::Verbatim(verbatim) => verbatim.clone(),
            Argument::Override { key, values } => {
                let mut out = String::with_capacity(key.len() + 1);
                out.push_str(key);
                out.push('=');
                values.render_joined(&mut out);
                out
            }
            Argument::Pipe(sections) => {
                sections.iter().map(Argument::joined).collect::<Vec<_>>().join("|")
            }
        }
    }
}

fn check_listable(count: u128, text: &str) -> Result<()> {
    if count > MAX_LISTED {
        let reason = format!("{count} values are more than can be listed ({MAX_LISTED} at most)");
        return Err(SweepError::new("too many values", 0, text.len(), reason).in_argument(text));
    }
    Ok(())
}

fn parse_argument(text: &str) -> Result<Argument> {
    if text.is_empty() {
        return Err(SweepError::new("invalid argument", 0, 0, "the argument is empty"));
    }
    match shell_quoted(text) {
        Some(inner) if inner.is_empty() => {
            Err(SweepError::new("invalid argument", 0, text.len(), "the argument is empty"))
        }
        Some(inner) => parse_unquoted(&inner).map_err(|e| inside_quotes(e, &inner, text)),
        None => parse_unquoted(text),
    }
}

/// An argument that is one quoted string (`'model.name=hello world'`), read
/// as a shell reads it, which is how the published HydraFlow (`shlex`) read
/// it: the text inside, with `\'` (or `\"`) and `\\` unescaped. Quotes
/// around a value (`a='x,y'`) are not this: they stay, for Hydra.
fn shell_quoted(text: &str) -> Option<String> {
    let quote = *text.as_bytes().first()?;
    if !matches!(quote, b'\'' | b'"') || skip_quoted(text, 0).ok()? != text.len() - 1 {
        return None;
    }
    let mut inner = String::with_capacity(text.len());
    let mut chars = text[1..text.len() - 1].chars();
    while let Some(c) = chars.next() {
        match chars.clone().next() {
            Some(next) if c == '\\' && (next == '\\' || next == char::from(quote)) => {
                inner.push(next);
                chars.next();
            }
            _ => inner.push(c),
        }
    }
    Some(inner)
}

/// An error in the text inside the quotes, placed in the quoted argument;
/// without KEY=VALUES inside, the example keeps the quotes around one.
fn inside_quotes(error: SweepError, inner: &str, text: &str) -> SweepError {
    if error.what == "invalid argument" && first_equals(inner).ok().flatten().is_none() {
        let quote = &text[..1];
        let reason = format!(
            "expected KEY=VALUES (or ~KEY) inside the quotes, e.g. {quote}KEY={inner}{quote}"
        );
        return SweepError::new("invalid argument", 0, text.len(), reason);
    }
    error.shifted(1)
}

fn parse_unquoted(text: &str) -> Result<Argument> {
    if text.starts_with('~') {
        return Ok(Argument::Verbatim(text.to_owned()));
    }
    let sections = split_top_level(text, b'|')?;
    if sections.len() == 1 {
        let equals = first_equals(text)?.ok_or_else(|| missing_equals(text))?;
        return keyed(text, equals);
    }
    parse_pipe(&sections)
}

fn parse_pipe(sections: &[(usize, &str)]) -> Result<Argument> {
    let mut parsed = Vec::with_capacity(sections.len());
    let mut previous: Option<(String, Option<i32>)> = None;
    for &(at, section) in sections {
        let section_error =
            |reason: &str| SweepError::new("invalid pipe", at, section.len().max(1), reason);
        if section.is_empty() {
            return Err(section_error("a pipe section is empty"));
        }
        if section.starts_with('~') {
            parsed.push(Argument::Verbatim(section.to_owned()));
            continue;
        }
        let argument = match first_equals(section).map_err(|e| e.shifted(at))? {
            Some(equals) => {
                let KeyScale { key, scale } = key_and_scale(&section[..equals]);
                previous = Some((key.to_owned(), scale));
                keyed(section, equals).map_err(|e| e.shifted(at))?
            }
            None => {
                let (key, scale) = previous.clone().ok_or_else(|| {
                    section_error("the first pipe section needs a KEY=, e.g. a=1|2")
                })?;
                let values = scaled_values(section, scale).map_err(|e| e.shifted(at))?;
                Argument::Override { key, values }
            }
        };
        parsed.push(argument);
    }
    Ok(Argument::Pipe(parsed))
}

fn first_equals(text: &str) -> Result<Option<usize>> {
    Ok(top_level(text, b'=')?.first().copied())
}

fn missing_equals(text: &str) -> SweepError {
    let reason = match text.split_once(':') {
        // `seed:1`, or `seed:` of `seed: 1` (see `colon_slip`), as YAML writes it.
        Some((key, value)) if is_key(key) && !value.starts_with('/') => {
            let value = if value.trim().is_empty() { "VALUE" } else { value.trim() };
            format!("did you mean {key}={value}? (an override is KEY=VALUES)")
        }
        _ if is_key(text) => format!("expected KEY=VALUES (or ~KEY), e.g. {text}=1"),
        _ => "expected KEY=VALUES (or ~KEY)".to_owned(),
    };
    SweepError::new("invalid argument", 0, text.len(), reason)
}

/// `seed: 1`, a YAML mapping's way, splits into `seed:` and `1`: the slip is
/// named with the value that follows it.
fn colon_slip(text: &str, next: Option<&str>) -> Option<SweepError> {
    let key = text.strip_suffix(':').filter(|key| is_key(key))?;
    let value = next.filter(|value| !value.contains('=') && !value.starts_with('~'))?;
    let reason = format!("did you mean {key}={value}? (an override is KEY=VALUES, no space)");
    Some(SweepError::new("invalid argument", 0, text.len(), reason).in_argument(text))
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || "._+@-/$".contains(c)
}

fn is_key(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_key_char)
}

/// `KEY[/SCALE]=VALUES` with the first top-level `=` at `equals`.
fn keyed(text: &str, equals: usize) -> Result<Argument> {
    let KeyScale { key, scale } = key_and_scale(&text[..equals]);
    check_key(key, &text[..equals])?;
    let values = scaled_values(&text[equals + 1..], scale).map_err(|e| e.shifted(equals + 1))?;
    Ok(Argument::Override { key: key.to_owned(), values })
}

fn key_and_scale(key: &str) -> KeyScale<'_> {
    if let Some(slash) = key.rfind('/') {
        if let Some(scale) = scale_exponent(&key[slash + 1..]) {
            return KeyScale { key: &key[..slash], scale: Some(scale) };
        }
    }
    KeyScale { key, scale: None }
}

fn check_key(key: &str, written: &str) -> Result<()> {
    if key.is_empty() {
        return Err(SweepError::new(
            "invalid key",
            0,
            written.len().max(1),
            "the key is missing before '='",
        ));
    }
    if let Some((at, c)) = key.char_indices().find(|&(_, c)| !is_key_char(c)) {
        let reason = format!("'{c}' cannot be part of a key");
        return Err(SweepError::new("invalid key", at, c.len_utf8(), reason));
    }
    Ok(())
}

fn scaled_values(text: &str, scale: Option<i32>) -> Result<ValueList> {
    let mut values = ValueList::parse(text)?;
    if let Some(exponent) = scale {
        values.scale(exponent)?;
    }
    Ok(values)
}

/// Splits a sweep string into its arguments (docs/grammar.md, "Arguments").
pub fn split(text: &str) -> Result<Vec<&str>> {
    Ok(split_arguments(text)?.into_iter().map(|(_, argument)| argument).collect())
}

pub fn parse_arguments(arguments: &[&str]) -> Result<Vec<Argument>> {
    let next = |index: usize| arguments.get(index + 1).copied();
    (arguments.iter().enumerate())
        .map(|(index, text)| {
            Argument::parse(text).map_err(|e| colon_slip(text, next(index)).unwrap_or(e))
        })
        .collect()
}

/// How many values listing all `arguments` renders (what [`MAX_LISTED`] bounds).
pub fn listed(arguments: &[&str]) -> Result<u128> {
    let parsed = parse_arguments(arguments)?;
    Ok(parsed.iter().map(Argument::listed).fold(0, u128::saturating_add))
}

/// Parses, then refuses a call that would list more than [`MAX_LISTED`] values
/// in all, naming the argument where the total goes past it.
fn parse_listable(arguments: &[&str]) -> Result<Vec<Argument>> {
    let parsed = parse_arguments(arguments)?;
    let mut total: u128 = 0;
    for (argument, text) in parsed.iter().zip(arguments) {
        total = total.saturating_add(argument.listed());
        check_listable(total, text)?;
    }
    Ok(parsed)
}

/// Each argument's alternatives; the grid is their cartesian product.
pub fn alternatives(arguments: &[&str]) -> Result<Vec<Vec<String>>> {
    let parsed = parse_listable(arguments)?;
    parsed.iter().zip(arguments).map(|(argument, text)| argument.alternatives(text)).collect()
}

/// Refuses to build a grid of more than [`MAX_LISTED`] cells (`iter_expand`
/// walks any grid lazily instead).
pub fn check_grid(arguments: &[&str]) -> Result<()> {
    let combinations = count(arguments)?;
    if combinations.saturating_mul(arguments.len() as u128) > MAX_LISTED {
        let reason = format!(
            "{combinations} combinations of {} arguments are more than can be listed at once \
             ({MAX_LISTED} values at most); iterate over them instead",
            arguments.len()
        );
        let text = arguments.join(" ");
        return Err(SweepError::new("too many values", 0, text.len(), reason).in_argument(&text));
    }
    Ok(())
}

/// `each`: the cartesian product of the arguments' alternatives, first slowest.
pub fn expand(arguments: &[&str]) -> Result<Vec<Vec<String>>> {
    check_grid(arguments)?;
    let mut grid = vec![Vec::new()];
    for options in alternatives(arguments)? {
        grid = grid
            .into_iter()
            .flat_map(|row| {
                options.iter().map(move |option| {
                    let mut next = row.clone();
                    next.push(option.clone());
                    next
                })
            })
            .collect();
    }
    Ok(grid)
}

/// `all`: one `KEY=v1,v2,...` per argument.
pub fn collect(arguments: &[&str]) -> Result<Vec<String>> {
    let parsed = parse_listable(arguments)?;
    parsed.iter().zip(arguments).map(|(argument, text)| argument.collected(text)).collect()
}

/// `len(expand(arguments))`, without listing anything.
pub fn count(arguments: &[&str]) -> Result<u128> {
    let parsed = parse_arguments(arguments)?;
    let mut total: u128 = 1;
    for (argument, text) in parsed.iter().zip(arguments) {
        total = total.checked_mul(argument.count()).ok_or_else(|| {
            let reason = "the grid has more than 2^128 combinations";
            SweepError::new("too many values", 0, text.len(), reason).in_argument(text)
        })?;
    }
    Ok(total)
}

/// The values of a value list, optionally multiplied by a scale token.
pub fn expand_values(values: &str, scale: &str) -> Result<Vec<String>> {
    let exponent = match scale {
        "" => None,
        token => Some(scale_exponent(token).ok_or_else(|| {
            let reason = format!("'{token}' is not a scale (f p n u m k M G T or eN)");
            SweepError::new("invalid scale", 0, values.len(), reason).in_argument(values)
        })?),
    };
    let list = scaled_values(values, exponent).map_err(|e| e.in_argument(values))?;
    check_listable(list.len(), values)?;
    Ok(list.rendered())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn each(text: &str) -> Vec<Vec<String>> {
        expand(&split(text).unwrap()).unwrap()
    }

    fn all(text: &str) -> Vec<String> {
        collect(&split(text).unwrap()).unwrap()
    }

    #[test]
    fn expands_first_argument_slowest() {
        assert_eq!(
            each("a=1:3 b=x,y"),
            [
                ["a=1", "b=x"],
                ["a=1", "b=y"],
                ["a=2", "b=x"],
                ["a=2", "b=y"],
                ["a=3", "b=x"],
                ["a=3", "b=y"]
            ]
        );
        assert_eq!(each(""), [Vec::<String>::new()]);
        assert_eq!(each("~seed"), [["~seed"]]);
    }

    #[test]
    fn collects_one_override_per_argument() {
        assert_eq!(all("height=100:300:100"), ["height=100,200,300"]);
        assert_eq!(all("lr/m=1,2,5"), ["lr=0.001,0.002,0.005"]);
        assert_eq!(all("hydra/launcher=joblib"), ["hydra/launcher=joblib"]);
        assert_eq!(all("a=b=c"), ["a=b=c"]);
        assert!(all("").is_empty());
    }

    #[test]
    fn pipes_collect_each_section() {
        assert_eq!(
            each("model=small,large|lr=0.1,0.2 d=1,2"),
            [
                ["model=small,large", "d=1"],
                ["model=small,large", "d=2"],
                ["lr=0.1,0.2", "d=1"],
                ["lr=0.1,0.2", "d=2"]
            ]
        );
        assert_eq!(each("a/k=1,2|3,4"), [["a=1000,2000"], ["a=3000,4000"]]);
        assert_eq!(each("a=1|b=2|3"), [["a=1"], ["b=2"], ["b=3"]]);
    }

    #[test]
    fn errors_carry_the_argument() {
        let err = collect(&split("ok=1 count=1:3tep").unwrap()).unwrap_err();
        assert_eq!(err.argument, "count=1:3tep");
        assert_eq!((err.start, err.len), (8, 4));
        let err = collect(&["a=1|2"]).unwrap_err();
        assert_eq!(err.start, 3);
        for bad in ["a=1|", "|a=1", "justtext", "=1", "a b=1"] {
            assert!(expand(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quoted_argument_is_read_as_a_shell_reads_it() {
        assert_eq!(
            each("'model.name=hello world' width=1,2"),
            [["model.name=hello world", "width=1"], ["model.name=hello world", "width=2"]]
        );
        assert_eq!(
            all(r#""model.name=big model" 'size=1,2'"#),
            ["model.name=big model", "size=1,2"]
        );
        assert_eq!(each(r#""+note=say \"hi\"" '~seed'"#), [[r#"+note=say "hi""#, "~seed"]]);
        assert_eq!(each(r#""a='x y'""#), [["a='x y'"]]);
        // Quotes around a value stay: Hydra reads them.
        assert_eq!(each("a='x,y'"), [["a='x,y'"]]);
        let err = expand(&["'hello world'"]).unwrap_err();
        assert!(err.reason.ends_with("inside the quotes, e.g. 'KEY=hello world'"), "{err}");
        assert_eq!((err.start, err.len), (0, 13));
        let err = expand(&["'a=1:3tep'"]).unwrap_err();
        assert_eq!((err.argument.as_str(), err.start, err.len), ("'a=1:3tep'", 5, 4));
        assert_eq!(expand(&["''"]).unwrap_err().reason, "the argument is empty");
    }

    #[test]
    fn a_colon_for_an_equals_sign_is_named() {
        let err = collect(&split("seed: 1").unwrap()).unwrap_err();
        assert_eq!(
            (err.argument.as_str(), err.reason.as_str()),
            ("seed:", "did you mean seed=1? (an override is KEY=VALUES, no space)")
        );
        let err = collect(&["seed:1"]).unwrap_err();
        assert_eq!(err.reason, "did you mean seed=1? (an override is KEY=VALUES)");
        assert_eq!(
            collect(&["seed:"]).unwrap_err().reason,
            "did you mean seed=VALUE? (an override is KEY=VALUES)"
        );
        assert_eq!(
            collect(&["justtext"]).unwrap_err().reason,
            "expected KEY=VALUES (or ~KEY), e.g. justtext=1"
        );
        assert_eq!(collect(&["a b"]).unwrap_err().reason, "expected KEY=VALUES (or ~KEY)");
    }

    #[test]
    fn counts_huge_grids() {
        assert_eq!(
            count(&["a=1:100000", "b=1:100000", "c=1:100000"]).unwrap(),
            1_000_000_000_000_000
        );
        assert_eq!(count(&[]).unwrap(), 1);
    }

    fn too_many(result: Result<impl std::fmt::Debug>) -> bool {
        result.unwrap_err().reason.contains("more than can be listed")
    }

    #[test]
    fn refuses_to_list_absurd_ranges() {
        assert!(too_many(collect(&["a=1:1000000000000"])));
    }

    #[test]
    fn every_limit_holds_for_pipes_and_whole_calls() {
        // A pipe lists every value of every section, though it makes two alternatives.
        assert_eq!(count(&["a=1:999999999|b=1"]).unwrap(), 2);
        assert_eq!(listed(&["a=1:999999999|b=1"]).unwrap(), 999_999_999 + 1);
        assert!(too_many(expand(&["a=1:999999999|b=1"])));
        assert!(too_many(alternatives(&["a=1:999999999|b=1"])));
        // Many arguments each under the limit, together over it.
        assert!(too_many(collect(&["a=1:6000000", "b=1:6000000"])));
        assert!(too_many(alternatives(&["a=1:6000000", "b=1:6000000"])));
        // A grid too large to build is refused before anything is built.
        assert!(too_many(expand(&["a=1:10000", "b=1:10000"])));
        assert!(too_many(expand_values("1:999999999", "")));
    }

    #[test]
    fn expands_value_strings() {
        assert_eq!(expand_values("1:3", "k").unwrap(), ["1000", "2000", "3000"]);
        assert!(expand_values("1", "q").is_err());
    }
}
