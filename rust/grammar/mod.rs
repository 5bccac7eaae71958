//! The sweep grammar: `each`/`all` strings into Hydra overrides, with exact
//! decimal ranges, SI scales and cartesian products; and monotonic ULIDs
//! that name sweeps. Plain, portable Rust (see docs/grammar.md).

pub mod error;
pub mod number;
pub mod product;
pub mod range;
pub mod scale;
pub mod split;
pub mod sweep;
pub mod ulid;
pub mod values;

#[cfg(test)]
mod fuzz;

pub use error::SweepError;
pub use sweep::{
    alternatives, collect, count, expand, expand_values, parse_arguments, split, Argument,
};
