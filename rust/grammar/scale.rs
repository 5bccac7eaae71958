//! docs/grammar.md, "Scales": SI prefixes and `eN` exponents, each a power of ten.

use super::number::parse_exponent;

/// The power of ten a scale token stands for, or None if `token` is not one.
///
/// `f p n u m k M G T` and `eN`, `EN`, `e-N`, `e+N`.
pub fn scale_exponent(token: &str) -> Option<i32> {
    let exponent = match token {
        "f" => -15,
        "p" => -12,
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        _ => return token.strip_prefix(['e', 'E']).and_then(parse_exponent),
    };
    Some(exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_si_prefixes_and_exponents() {
        assert_eq!(scale_exponent("k"), Some(3));
        assert_eq!(scale_exponent("n"), Some(-9));
        assert_eq!(scale_exponent("e2"), Some(2));
        assert_eq!(scale_exponent("E-3"), Some(-3));
        assert_eq!(scale_exponent("e+4"), Some(4));
        for token in ["", "K", "e", "e-", "kk", "2", "mm", "e2x", "launcher"] {
            assert_eq!(scale_exponent(token), None, "{token}");
        }
    }
}
