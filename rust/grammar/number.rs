//! Exact decimal numbers: `mantissa * 10^exponent` in 128-bit integers.
//!
//! Ranges and scales never touch binary floats, so `0.1:0.3:0.1` ends at
//! exactly `0.3`. A value that needs more than 38 significant digits is
//! reported as an error rather than rounded silently.

use std::cmp::Ordering;

/// An exact decimal: `mantissa * 10^exponent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i128,
    pub exponent: i32,
}

/// A number as the user wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Number {
    pub value: Decimal,
    /// Written as plain digits (no `.`, no exponent): renders as an integer.
    pub integer: bool,
}

/// Why a text is not a usable number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberFault {
    NotANumber,
    Overflow,
}

/// The decimal exponent range kept clear of i32 overflow in later arithmetic.
const MAX_EXPONENT: i32 = 10_000;

impl Decimal {
    pub const ZERO: Decimal = Decimal { mantissa: 0, exponent: 0 };

    pub fn new(mantissa: i128, exponent: i32) -> Self {
        Self { mantissa, exponent }
    }

    /// Strips trailing zeros from the mantissa (zero becomes `0e0`).
    pub fn normalized(self) -> Self {
        if self.mantissa == 0 {
            return Self::ZERO;
        }
        let (mut mantissa, mut exponent) = (self.mantissa, self.exponent);
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        Self { mantissa, exponent }
    }

    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    pub fn signum(self) -> i128 {
        self.mantissa.signum()
    }

    /// The mantissa expressed at a lower (or equal) exponent.
    pub fn mantissa_at(self, exponent: i32) -> Result<i128, NumberFault> {
        if self.mantissa == 0 {
            return Ok(0);
        }
        let shift = u32::try_from(self.exponent - exponent).map_err(|_| NumberFault::Overflow)?;
        pow10(shift).and_then(|p| self.mantissa.checked_mul(p)).ok_or(NumberFault::Overflow)
    }

    /// Multiplies by `10^exponent`: how scales apply, exactly.
    pub fn scaled(self, exponent: i32) -> Result<Self, NumberFault> {
        let exponent = self.exponent + exponent;
        if exponent.abs() > MAX_EXPONENT {
            return Err(NumberFault::Overflow);
        }
        Ok(Self { mantissa: self.mantissa, exponent })
    }

    pub fn checked_mul(self, other: Self) -> Result<Self, NumberFault> {
        let mantissa = self.mantissa.checked_mul(other.mantissa).ok_or(NumberFault::Overflow)?;
        Self { mantissa, exponent: self.exponent }.scaled(other.exponent).map(Self::normalized)
    }

    /// The common exponent of several decimals: the smallest.
    pub fn common_exponent(values: &[Decimal]) -> i32 {
        values.iter().map(|d| d.normalized().exponent).min().unwrap_or(0)
    }

    /// The decimal exponent of the first significant digit.
    fn leading_exponent(self) -> i64 {
        let digits = self.mantissa.unsigned_abs().checked_ilog10().unwrap_or(0);
        i64::from(self.exponent) + i64::from(digits)
    }

    /// Whether the value is a whole number.
    pub fn is_integer(self) -> bool {
        self.normalized().exponent >= 0
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.normalized(), other.normalized());
        if a.signum() != b.signum() || a.mantissa == 0 {
            return a.signum().cmp(&b.signum());
        }
        let magnitude = a.leading_exponent().cmp(&b.leading_exponent()).then_with(|| {
            // Same leading exponent: compare the digit strings, padded to one length.
            let (x, y) =
                (a.mantissa.unsigned_abs().to_string(), b.mantissa.unsigned_abs().to_string());
            let width = x.len().max(y.len());
            format!("{x:0<width$}").cmp(&format!("{y:0<width$}"))
        });
        if a.mantissa > 0 {
            magnitude
        } else {
            magnitude.reverse()
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `10^n`, if it fits.
pub fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// Parses NUMBER: `[+-]? (DIGITS [. DIGITS?] | . DIGITS) ([eE] [+-]? DIGITS)?`.
pub fn parse_number(text: &str) -> Result<Number, NumberFault> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = matches!(bytes.first(), Some(b'-'));
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut mantissa: i128 = 0;
    let mut exponent: i32 = 0;
    let mut digits = 0;
    let mut overflow = false;
    let mut push = |digit: u8, exponent: &mut i32, fractional: bool| {
        match mantissa.checked_mul(10).and_then(|m| m.checked_add(i128::from(digit - b'0'))) {
            Some(m) => {
                mantissa = m;
                if fractional {
                    *exponent -= 1;
                }
            }
            // Beyond 38 digits: fine while the dropped digits are zeros.
            None if digit == b'0' => {
                if !fractional {
                    *exponent += 1;
                }
            }
            None => overflow = true,
        }
    };
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        push(bytes[i], &mut exponent, false);
        digits += 1;
        i += 1;
    }
    let mut integer = true;
    if i < bytes.len() && bytes[i] == b'.' {
        integer = false;
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            push(bytes[i], &mut exponent, true);
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return Err(NumberFault::NotANumber);
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        integer = false;
        let written = parse_exponent(&text[i + 1..]).ok_or(NumberFault::NotANumber)?;
        exponent = exponent.checked_add(written).ok_or(NumberFault::Overflow)?;
        i = bytes.len();
    }
    if i != bytes.len() {
        return Err(NumberFault::NotANumber);
    }
    if overflow || exponent.abs() > MAX_EXPONENT {
        return Err(NumberFault::Overflow);
    }
    let mantissa = if negative { -mantissa } else { mantissa };
    Ok(Number { value: Decimal::new(mantissa, exponent).normalized(), integer })
}

/// `[+-]? DIGITS` as an exponent; None when malformed or absurdly large.
pub fn parse_exponent(text: &str) -> Option<i32> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
        return None;
    }
    let value: i32 = digits.parse().ok()?;
    Some(if text.starts_with('-') { -value } else { value })
}

/// Appends `mantissa * 10^exponent` as a number Hydra reads with the right type.
pub fn render(mantissa: i128, exponent: i32, integer: bool, out: &mut String) {
    if integer && exponent >= 0 {
        render_integer(mantissa, exponent, out);
    } else {
        render_float(Decimal::new(mantissa, exponent).normalized(), out);
    }
}

pub fn render_decimal(value: Decimal, integer: bool, out: &mut String) {
    render(value.mantissa, value.exponent, integer, out);
}

fn push_digits(value: u128, out: &mut String) {
    let mut buffer = itoa::Buffer::new();
    match u64::try_from(value) {
        Ok(small) => out.push_str(buffer.format(small)),
        Err(_) => out.push_str(buffer.format(value)),
    }
}

fn render_integer(mantissa: i128, exponent: i32, out: &mut String) {
    if mantissa < 0 {
        out.push('-');
    }
    push_digits(mantissa.unsigned_abs(), out);
    if mantissa != 0 {
        out.extend(std::iter::repeat_n('0', exponent as usize));
    }
}

/// The shortest decimal with at least one fractional digit, or exponent form
/// (`1e-9`, `1.5e-12`, `2.5e16`) when |v| < 1e-4 or |v| >= 1e16.
fn render_float(value: Decimal, out: &mut String) {
    if value.mantissa == 0 {
        out.push_str("0.0");
        return;
    }
    if value.mantissa < 0 {
        out.push('-');
    }
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value.mantissa.unsigned_abs());
    let count = digits.len() as i32;
    let leading = value.exponent + count - 1; // decimal exponent of the first digit
    if !(-4..16).contains(&leading) {
        out.push_str(&digits[..1]);
        if count > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push_str(itoa::Buffer::new().format(leading));
    } else if value.exponent >= 0 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', value.exponent as usize));
        out.push_str(".0");
    } else if leading < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-leading - 1) as usize));
        out.push_str(digits);
    } else {
        let point = (leading + 1) as usize;
        out.push_str(&digits[..point]);
        out.push('.');
        out.push_str(&digits[point..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_text(value: Decimal, integer: bool) -> String {
        let mut out = String::new();
        render_decimal(value, integer, &mut out);
        out
    }

    fn number(text: &str) -> Number {
        parse_number(text).unwrap()
    }

    fn float(text: &str) -> String {
        to_text(number(text).value, false)
    }

    #[test]
    fn parses_the_number_grammar() {
        assert_eq!(number("12").value, Decimal::new(12, 0));
        assert!(number("12").integer);
        assert!(number("-3").integer);
        assert!(!number("1.").integer);
        assert!(!number("1e3").integer);
        assert_eq!(number(".5").value, Decimal::new(5, -1));
        assert_eq!(number("1.2e3").value, Decimal::new(12, 2));
        assert_eq!(number("+0.000").value, Decimal::ZERO);
        assert_eq!(number("1000").value, Decimal::new(1, 3));
        for bad in ["", ".", "-", "e3", "1e", "1e+", "3tep", "1.2.3", "0x10", " 1", "1_000"] {
            assert_eq!(parse_number(bad), Err(NumberFault::NotANumber), "{bad}");
        }
    }

    #[test]
    fn long_numbers_stay_exact_or_fail() {
        let many_zeros = format!("1{}", "0".repeat(50));
        assert_eq!(number(&many_zeros).value, Decimal::new(1, 50));
        let many_digits = "1".repeat(50);
        assert_eq!(parse_number(&many_digits), Err(NumberFault::Overflow));
        assert_eq!(parse_number("1e999999"), Err(NumberFault::Overflow));
    }

    #[test]
    fn renders_floats_shortest_with_a_fraction() {
        assert_eq!(float("0.5"), "0.5");
        assert_eq!(float("1"), "1.0");
        assert_eq!(float("0"), "0.0");
        assert_eq!(float("-0"), "0.0");
        assert_eq!(float("0.0012"), "0.0012");
        assert_eq!(float("1200"), "1200.0");
        assert_eq!(float("0.0001"), "0.0001");
        assert_eq!(float("-2.50"), "-2.5");
    }

    #[test]
    fn renders_extremes_in_exponent_form() {
        assert_eq!(float("1e-9"), "1e-9");
        assert_eq!(float("0.000015"), "1.5e-5");
        assert_eq!(float("1.5e-12"), "1.5e-12");
        assert_eq!(float("2.5e16"), "2.5e16");
        assert_eq!(float("9999999999999999"), "9999999999999999.0");
        assert_eq!(float("-1e20"), "-1e20");
    }

    #[test]
    fn renders_integers_with_their_zeros() {
        assert_eq!(to_text(Decimal::new(4, 6), true), "4000000");
        assert_eq!(to_text(Decimal::new(-2, 3), true), "-2000");
        assert_eq!(to_text(Decimal::ZERO, true), "0");
        assert_eq!(to_text(Decimal::new(i128::MAX, 0), true), i128::MAX.to_string());
    }

    #[test]
    fn compares_across_exponents() {
        assert!(Decimal::new(1, 0) < Decimal::new(11, -1));
        assert!(Decimal::new(-1, 0) < Decimal::new(1, -5));
        assert!(Decimal::new(1, 100) > Decimal::new(i128::MAX, 0));
        assert!(Decimal::new(-1, 100) < Decimal::new(i128::MIN + 1, 0));
        assert_eq!(Decimal::new(10, 0).cmp(&Decimal::new(1, 1)), Ordering::Equal);
    }
}
