//! A fast fuzz of the whole grammar, run by `cargo test`: a few hundred
//! thousand generated inputs over the grammar's characters, each parsed,
//! counted, split, collected and expanded. No input may panic, and none may
//! list more than the limits allow (a refusal must come before any listing).

use super::sweep::{self, MAX_LISTED};
use super::SweepError;
use crate::rng::Rng;

/// Inputs per run of the test; the Python fuzz adds its own on top.
const INPUTS: usize = 200_000;

/// Characters and fragments the grammar gives meaning to, so that generated
/// text reaches deep paths (ranges, scales, products, pipes, quotes).
const PIECES: &[&str] = &[
    "a", "b", "=", ":", ",", "|", "(", ")", "[", "]", "{", "}", "'", "\"", "~", "/", "*", "#", ".",
    "-", "+", "e", "0", "1", "2", "9", "k", "m", "M", "n", " ", "\t", "\\", "_", "é", "1e-330",
    "e330", "99999999", "1:", ":#4", ":*10", "choice(", "range(", "x=", "a/k=",
];

fn text(rng: &mut Rng) -> String {
    let pieces = rng.below(12);
    (0..pieces).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

fn check_error(err: &SweepError) {
    assert!(err.position() <= err.argument.chars().count(), "{err:?}");
    assert!(!err.reason.is_empty());
    let _ = err.to_string();
}

/// Exercises every entry point on one input; panics on a broken promise.
fn exercise(text: &str) {
    let arguments = match sweep::split(text) {
        Ok(arguments) => arguments,
        Err(err) => return check_error(&err),
    };
    let (count, listed) = match (sweep::count(&arguments), sweep::listed(&arguments)) {
        (Ok(count), Ok(listed)) => (count, listed),
        (Err(err), _) | (_, Err(err)) => return check_error(&err),
    };
    if listed > MAX_LISTED {
        assert!(sweep::collect(&arguments).is_err(), "{text}");
        assert!(sweep::expand(&arguments).is_err(), "{text}");
        return;
    }
    if listed > 10_000 || count > 10_000 {
        return; // Legal but slow to list in a debug build.
    }
    match sweep::expand(&arguments) {
        Ok(grid) => assert_eq!(grid.len() as u128, count, "{text}"),
        Err(err) => check_error(&err),
    }
    if let Err(err) = sweep::collect(&arguments) {
        check_error(&err);
    }
    for argument in &arguments {
        if let Some((_, values)) = argument.split_once('=') {
            if let Err(err) = sweep::expand_values(values, "k") {
                check_error(&err);
            }
        }
    }
}

#[test]
fn no_generated_input_panics_or_lists_too_much() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..INPUTS {
        let text = text(&mut rng);
        let outcome = std::panic::catch_unwind(|| exercise(&text));
        assert!(outcome.is_ok(), "the core panicked on {text:?}");
    }
}
