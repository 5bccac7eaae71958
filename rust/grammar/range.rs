//! docs/grammar.md, "Ranges": ranges `[START]:STOP[:STEP][:SCALE]`, the
//! geometric `*FACTOR` and count `#N` steps, and `NUMBER:SCALE`.
//!
//! A range is kept as a formula, not a list, so that counting a grid of
//! 10^15 combinations costs nothing and rendering a million values is one
//! pass of integer arithmetic.

use super::error::{Result, SweepError};
use super::number::{parse_number, render, render_decimal, Decimal, Number, NumberFault};
use super::scale::scale_exponent;

const WHAT: &str = "invalid range";

/// A parsed range: its values and how they render.
#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    progression: Progression,
    /// Every written number is an integer and no scale is below one.
    pub integer: bool,
    /// A scale was applied already (a second one is an error).
    pub scaled: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Progression {
    /// `(start + i * step) * 10^exponent` for `i < len`.
    Linear { start: i128, step: i128, len: u128, exponent: i32 },
    /// `(start + span * k / intervals) * 10^exponent` for `k <= intervals`.
    Count { start: i128, span: i128, intervals: i128, exponent: i32 },
    /// Geometric ranges: few values, each exact.
    Listed(Vec<Decimal>),
}

/// One `:`-separated part of the range text, with its offset.
#[derive(Clone, Copy)]
struct Part<'a> {
    at: usize,
    text: &'a str,
}

impl<'a> Part<'a> {
    fn error(self, reason: impl Into<String>) -> SweepError {
        SweepError::new(WHAT, self.at, self.text.len().max(1), reason)
    }

    fn number(self, name: &str) -> Result<Number> {
        if self.text.is_empty() {
            return Err(self.error(format!("the {name} is missing")));
        }
        parse_number(self.text).map_err(|fault| match fault {
            NumberFault::NotANumber => self.error(format!("'{}' is not a number", self.text)),
            NumberFault::Overflow => self.error(format!("'{}' has too many digits", self.text)),
        })
    }
}

fn overflow(at: usize, len: usize) -> SweepError {
    SweepError::new(WHAT, at, len, "its values need more than 38 significant digits")
}

impl Range {
    /// Parses range text (the caller checked it contains `:`).
    pub fn parse(text: &str) -> Result<Range> {
        let mut parts = Vec::new();
        let mut at = 0;
        for piece in text.split(':') {
            parts.push(Part { at, text: piece });
            at += piece.len() + 1;
        }
        let mut scale = None;
        if parts.len() >= 2 {
            let last = parts[parts.len() - 1];
            if let Some(exponent) = scale_exponent(last.text) {
                scale = Some(exponent);
                parts.pop();
            } else if parts.len() == 4 {
                return Err(last.error(format!(
                    "a fourth part must be a scale (f p n u m k M G T or eN), not '{}'",
                    last.text
                )));
            }
        }
        if parts.len() > 3 {
            return Err(parts[3].error("a range has at most START:STOP:STEP:SCALE"));
        }
        let mut range = match parts.as_slice() {
            [single] => single_number(*single)?,
            [start, stop] => linear(*start, *stop, None)?,
            [start, stop, step] => match step.text.as_bytes().first() {
                Some(b'*') => geometric(*start, *stop, *step)?,
                Some(b'#') => count(*start, *stop, *step)?,
                _ => linear(*start, *stop, Some(*step))?,
            },
            _ => unreachable!("split yields at least one part"),
        };
        if let Some(exponent) = scale {
            range.scale(exponent).map_err(|_| overflow(0, text.len()))?;
        }
        Ok(range)
    }

    /// A range of one number (a scaled literal).
    pub fn single(number: Number) -> Range {
        Range {
            progression: Progression::Listed(vec![number.value]),
            integer: number.integer,
            scaled: false,
        }
    }

    /// Multiplies every value by `10^exponent`.
    pub fn scale(&mut self, by: i32) -> std::result::Result<(), NumberFault> {
        match &mut self.progression {
            Progression::Linear { exponent, .. } | Progression::Count { exponent, .. } => {
                *exponent = Decimal::new(1, *exponent).scaled(by)?.exponent;
            }
            Progression::Listed(values) => {
                for value in values.iter_mut() {
                    *value = value.scaled(by)?;
                }
            }
        }
        self.integer &= by >= 0;
        self.scaled = true;
        Ok(())
    }

    pub fn len(&self) -> u128 {
        match &self.progression {
            Progression::Linear { len, .. } => *len,
            Progression::Count { intervals, .. } => *intervals as u128 + 1,
            Progression::Listed(values) => values.len() as u128,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exact value at `index` (< len).
    pub fn value(&self, index: u128) -> Decimal {
        match &self.progression {
            Progression::Linear { start, step, exponent, .. } => {
                Decimal::new(start + step * index as i128, *exponent)
            }
            Progression::Count { start, span, intervals, exponent } => {
                let numerator = start * intervals + span * index as i128;
                divide(numerator, *intervals, *exponent)
            }
            Progression::Listed(values) => values[index as usize],
        }
    }

    /// Appends the value at `index`, rendered.
    pub fn render(&self, index: u128, out: &mut String) {
        match &self.progression {
            Progression::Linear { start, step, exponent, .. } => {
                render(start + step * index as i128, *exponent, self.integer, out)
            }
            _ => render_decimal(self.value(index), self.integer, out),
        }
    }

    /// Appends every value, rendered, each followed by `separator` but the last.
    pub fn render_joined(&self, separator: &str, out: &mut String) {
        for index in 0..self.len() {
            if index > 0 {
                out.push_str(separator);
            }
            self.render(index, out);
        }
    }
}

fn single_number(number: Part) -> Result<Range> {
    Ok(Range::single(number.number("number")?))
}

/// START defaults to 0 and reads as an integer.
fn start_or_zero(start: Part) -> Result<Number> {
    if start.text.is_empty() {
        Ok(Number { value: Decimal::ZERO, integer: true })
    } else {
        start.number("start")
    }
}

fn linear(start_part: Part, stop_part: Part, step_part: Option<Part>) -> Result<Range> {
    let start = start_or_zero(start_part)?;
    let stop = stop_part.number("stop")?;
    let step = match step_part {
        Some(part) => part.number("step")?,
        None => Number { value: Decimal::new(1, 0), integer: true },
    };
    let whole_len = stop_part.at + stop_part.text.len();
    if step.value.is_zero() {
        return Err(step_part.expect("default step is 1").error("the step must not be zero"));
    }
    let step_text = step_part.map_or("1", |part| part.text);
    check_direction(&start_part, &stop_part, step_text, start.value, stop.value, step.value)?;
    let exponent = Decimal::common_exponent(&[start.value, stop.value, step.value]);
    let aligned = |n: Number| n.value.mantissa_at(exponent).map_err(|_| overflow(0, whole_len));
    let (first, last, step_m) = (aligned(start)?, aligned(stop)?, aligned(step)?);
    let len = last.checked_sub(first).ok_or_else(|| overflow(0, whole_len))? / step_m;
    Ok(Range {
        progression: Progression::Linear {
            start: first,
            step: step_m,
            len: len as u128 + 1,
            exponent,
        },
        integer: start.integer && stop.integer && step.integer,
        scaled: false,
    })
}

fn check_direction(
    start: &Part,
    stop: &Part,
    step_text: &str,
    from: Decimal,
    to: Decimal,
    step: Decimal,
) -> Result<()> {
    let (a, b) = (text_or_zero(start), stop.text);
    let span = SweepError::new(WHAT, 0, stop.at + stop.text.len(), "");
    // The fix keeps the step's size: `0.1:0.01:0.01` → `0.1:0.01:-0.01`.
    let flipped = flip_sign(step_text);
    if from > to && step.signum() > 0 {
        let reason =
            format!("{a} is greater than {b}; use a negative step, e.g. {a}:{b}:{flipped}");
        return Err(SweepError { reason, ..span });
    }
    if from < to && step.signum() < 0 {
        let reason =
            format!("{a} is less than {b}, so the step must be positive, e.g. {a}:{b}:{flipped}");
        return Err(SweepError { reason, ..span });
    }
    Ok(())
}

fn flip_sign(number: &str) -> String {
    match number.strip_prefix('-') {
        Some(positive) => positive.to_string(),
        None => format!("-{}", number.strip_prefix('+').unwrap_or(number)),
    }
}

fn text_or_zero<'a>(part: &Part<'a>) -> &'a str {
    if part.text.is_empty() {
        "0"
    } else {
        part.text
    }
}

fn required_start(start: Part, form: &str) -> Result<Number> {
    if start.text.is_empty() {
        return Err(SweepError::new(WHAT, 0, 1, format!("a {form} range needs a start")));
    }
    start.number("start")
}

fn geometric(start_part: Part, stop_part: Part, step_part: Part) -> Result<Range> {
    let start = required_start(start_part, "geometric")?;
    let stop = stop_part.number("stop")?;
    let factor_part = Part { at: step_part.at + 1, text: &step_part.text[1..] };
    let factor = factor_part.number("factor")?;
    let one = Decimal::new(1, 0);
    if factor.value.signum() <= 0 || factor.value == one {
        return Err(step_part.error("the factor must be positive and not 1"));
    }
    if start.value.is_zero() || start.value.signum() != stop.value.signum() {
        let reason = "the start must be non-zero and of the same sign as the stop";
        return Err(start_part.error(reason));
    }
    let to = stop.value;
    let growing = magnitude(to) >= magnitude(start.value);
    if start.value != to && growing != (factor.value > one) {
        let hint = if growing { "greater than 1" } else { "between 0 and 1" };
        let (a, b) = (start_part.text, stop_part.text);
        return Err(step_part.error(format!("to go from {a} to {b} the factor must be {hint}")));
    }
    let mut values = Vec::new();
    let mut value = start.value;
    let past = |v: Decimal| {
        if growing {
            magnitude(v) > magnitude(to)
        } else {
            magnitude(v) < magnitude(to)
        }
    };
    let whole_len = step_part.at + step_part.text.len();
    while !past(value) {
        values.push(value);
        if value == to {
            break;
        }
        value = value.checked_mul(factor.value).map_err(|_| overflow(0, whole_len))?;
    }
    Ok(Range {
        progression: Progression::Listed(values),
        integer: start.integer && stop.integer && factor.integer,
        scaled: false,
    })
}

fn magnitude(value: Decimal) -> Decimal {
    Decimal::new(value.mantissa.abs(), value.exponent)
}

fn count(start_part: Part, stop_part: Part, step_part: Part) -> Result<Range> {
    let start = required_start(start_part, "count")?;
    let stop = stop_part.number("stop")?;
    let n_part = Part { at: step_part.at + 1, text: &step_part.text[1..] };
    let n = n_part.number("count")?;
    let whole_len = step_part.at + step_part.text.len();
    let n_value = n.value.mantissa_at(0).ok().filter(|_| n.integer && n.value.is_integer());
    let intervals = match n_value {
        Some(n) if n >= 2 => n - 1,
        _ => return Err(step_part.error("a count needs a whole number of at least 2, e.g. #5")),
    };
    let exponent = Decimal::common_exponent(&[start.value, stop.value]);
    let first = start.value.mantissa_at(exponent).map_err(|_| overflow(0, whole_len))?;
    let last = stop.value.mantissa_at(exponent).map_err(|_| overflow(0, whole_len))?;
    let span = last.checked_sub(first).ok_or_else(|| overflow(0, whole_len))?;
    // Every numerator lies between the two ends; checking those checks all.
    let fits =
        first.checked_mul(intervals).and_then(|f| f.checked_add(span.checked_mul(intervals)?));
    if fits.is_none() {
        return Err(overflow(0, whole_len));
    }
    if !always_exact(first, last, span, intervals)
        && !within_float_range(first, last, span, intervals, exponent)
    {
        let reason = "its values cannot be written exactly and lie beyond a float64's range \
                      (they would underflow or overflow)";
        return Err(SweepError::new(WHAT, 0, whole_len, reason));
    }
    Ok(Range {
        progression: Progression::Count { start: first, span, intervals, exponent },
        integer: start.integer && stop.integer && span % intervals == 0,
        scaled: false,
    })
}

/// Whether `first + span * k / intervals` is a decimal `divide` writes exactly
/// for every `k`: the reduced denominator has no prime factors but 2 and 5,
/// and the digits it adds fit beside the widest end (with a margin).
fn always_exact(first: i128, last: i128, span: i128, intervals: i128) -> bool {
    let mut denominator = intervals / gcd(span.unsigned_abs(), intervals.unsigned_abs()) as i128;
    let mut extra_digits = 0u32;
    for prime in [2, 5] {
        let mut power = 0;
        while denominator % prime == 0 {
            denominator /= prime;
            power += 1;
        }
        extra_digits = extra_digits.max(power);
    }
    denominator == 1 && digits(first.unsigned_abs().max(last.unsigned_abs())) + extra_digits <= 36
}

/// Whether every value, rounded through a float64, stays a normal float: the
/// smallest non-zero one is at least `10^exponent / intervals`, the largest at
/// most the widest end.
fn within_float_range(first: i128, last: i128, span: i128, intervals: i128, exponent: i32) -> bool {
    let denominator = intervals / gcd(span.unsigned_abs(), intervals.unsigned_abs()) as i128;
    let smallest = i64::from(exponent) - i64::from(digits(denominator.unsigned_abs()));
    let largest =
        i64::from(exponent) + i64::from(digits(first.unsigned_abs().max(last.unsigned_abs())));
    smallest >= -300 && largest <= 300
}

fn digits(value: u128) -> u32 {
    value.checked_ilog10().map_or(1, |log| log + 1)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// `numerator / denominator * 10^exponent` as an exact decimal when one with at
/// most 38 digits exists; otherwise rounded to 17 significant digits and taken
/// as the shortest text that reads back as the same float64.
fn divide(numerator: i128, denominator: i128, exponent: i32) -> Decimal {
    let negative = (numerator < 0) != (denominator < 0);
    let (n, d) = (numerator.unsigned_abs(), denominator.unsigned_abs());
    let mut mantissa = n / d;
    let mut remainder = n % d;
    let mut exponent = exponent;
    while remainder != 0 {
        let (Some(shifted), Some(next)) = (remainder.checked_mul(10), mantissa.checked_mul(10))
        else {
            break;
        };
        if next > i128::MAX as u128 / 10 {
            break;
        }
        mantissa = next + shifted / d;
        remainder = shifted % d;
        exponent -= 1;
    }
    let sign = if negative { -1 } else { 1 };
    if remainder == 0 {
        return Decimal::new(sign * mantissa as i128, exponent).normalized();
    }
    shortest_float(sign * mantissa as i128, exponent)
}

fn shortest_float(mantissa: i128, exponent: i32) -> Decimal {
    let seventeen =
        format!("{:.16e}", format!("{mantissa}e{exponent}").parse::<f64>().unwrap_or(0.0));
    let as_float: f64 = seventeen.parse().unwrap_or(0.0);
    parse_number(&format!("{as_float:e}")).map(|n| n.value).unwrap_or(Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<String> {
        let range = Range::parse(text).unwrap();
        (0..range.len())
            .map(|i| {
                let mut out = String::new();
                range.render(i, &mut out);
                out
            })
            .collect()
    }

    fn reason(text: &str) -> String {
        Range::parse(text).unwrap_err().reason
    }

    #[test]
    fn linear_ranges_include_a_stop_they_land_on() {
        assert_eq!(values("1:3"), ["1", "2", "3"]);
        assert_eq!(values(":5"), ["0", "1", "2", "3", "4", "5"]);
        assert_eq!(values("1:10:4"), ["1", "5", "9"]);
        assert_eq!(values("5:1:-1"), ["5", "4", "3", "2", "1"]);
        assert_eq!(values("3:3"), ["3"]);
    }

    #[test]
    fn decimal_ranges_are_exact() {
        assert_eq!(values("0.1:0.3:0.1"), ["0.1", "0.2", "0.3"]);
        let tenths = values("0:1:0.1");
        assert_eq!(tenths.len(), 11);
        assert_eq!(
            (tenths[0].as_str(), tenths[3].as_str(), tenths[10].as_str()),
            ("0.0", "0.3", "1.0")
        );
        assert_eq!(values("1.2e3:1.4e3:0.1e3"), ["1200.0", "1300.0", "1400.0"]);
    }

    #[test]
    fn scales_multiply_exactly() {
        assert_eq!(values("1:3:k"), ["1000", "2000", "3000"]);
        assert_eq!(values("-2:2:k"), ["-2000", "-1000", "0", "1000", "2000"]);
        assert_eq!(values("1:3:n"), ["1e-9", "2e-9", "3e-9"]);
        assert_eq!(values("0.1:0.4:0.1:m"), ["0.0001", "0.0002", "0.0003", "0.0004"]);
        assert_eq!(values("1:2:e2"), ["100", "200"]);
        assert_eq!(values("4:M"), ["4000000"]);
    }

    #[test]
    fn geometric_ranges_multiply_until_past_the_stop() {
        assert_eq!(values("1:1000:*10"), ["1", "10", "100", "1000"]);
        assert_eq!(values("1e-5:1e-2:*10"), ["1e-5", "0.0001", "0.001", "0.01"]);
        assert_eq!(values("64:8:*0.5"), ["64.0", "32.0", "16.0", "8.0"]);
        assert_eq!(values("16:128:*2"), ["16", "32", "64", "128"]);
        assert_eq!(values("1:100:*3"), ["1", "3", "9", "27", "81"]);
        assert_eq!(values("-1:-100:*10"), ["-1", "-10", "-100"]);
    }

    #[test]
    fn count_ranges_space_values_evenly() {
        assert_eq!(values("0:1:#5"), ["0.0", "0.25", "0.5", "0.75", "1.0"]);
        assert_eq!(values("0:10:#3"), ["0", "5", "10"]);
        assert_eq!(values("0:1:#4"), ["0.0", "0.3333333333333333", "0.6666666666666666", "1.0"]);
        assert_eq!(values("1:0:#3"), ["1.0", "0.5", "0.0"]);
        // Exact values far beyond a float64's range stay exact.
        assert_eq!(values("1e-330:2e-330:#2"), ["1e-330", "2e-330"]);
        assert_eq!(values("0:1e-330:#5"), ["0.0", "2.5e-331", "5e-331", "7.5e-331", "1e-330"]);
    }

    #[test]
    fn bad_ranges_say_why() {
        assert_eq!(reason("5:1"), "5 is greater than 1; use a negative step, e.g. 5:1:-1");
        assert_eq!(reason("1:2:0"), "the step must not be zero");
        assert_eq!(reason("1:3tep"), "'3tep' is not a number");
        assert!(reason("3:5:-1").contains("positive"));
        // The suggested step keeps the size of the one written.
        assert!(reason("0.1:0.01:0.01").ends_with("e.g. 0.1:0.01:-0.01"));
        assert!(reason("3:9:-2").ends_with("must be positive, e.g. 3:9:2"));
        assert!(reason("5:1:+2").ends_with("e.g. 5:1:-2"));
        assert!(reason("1:2:3:4").contains("scale"));
        assert_eq!(reason(":"), "the stop is missing");
        assert_eq!(reason("1:"), "the stop is missing");
        assert_eq!(reason("1::2"), "the stop is missing");
        assert!(reason("1:10:*1").contains("factor"));
        assert!(reason("0:10:*2").contains("non-zero"));
        assert!(reason(":10:*2").contains("needs a start"));
        assert!(reason("0:1:#1").contains("at least 2"));
        assert!(reason("0:1:#0.5").contains("whole number"));
        assert!(reason("1:1000:*0.5").contains("greater than 1"));
        assert!(reason("1e-300:1:1").contains("38"));
        assert!(reason("1e-330:2e-330:#4").contains("underflow"));
        assert!(reason("1e330:2e330:#4").contains("overflow"));
        assert!(reason("-1e-330:1e-330:#4").contains("underflow"));
    }

    #[test]
    fn error_spans_point_at_the_bad_part() {
        let err = Range::parse("1:3tep").unwrap_err();
        assert_eq!((err.start, err.len), (2, 4));
    }

    #[test]
    fn counts_without_materialising() {
        assert_eq!(Range::parse("1:1000000000000").unwrap().len(), 1_000_000_000_000);
        assert_eq!(Range::parse("0:1:#1000000000001").unwrap().len(), 1_000_000_000_001);
    }
}
