//! The core of hydraflow: the sweep grammar that turns `each`/`all` strings
//! into Hydra overrides, exact decimal ranges, SI scales, cartesian products
//! and monotonic ULIDs; and a reader of SQLite files, so the runs of a large
//! MLflow store load in bulk.
//!
//! Everything here is plain Rust; `python.rs` is the one thin PyO3 binding,
//! compiled only with the `python` feature (maturin enables it).

pub mod error;
pub mod number;
pub mod product;
pub mod range;
pub mod scale;
pub mod shape;
pub mod split;
pub mod sqlite;
pub mod sweep;
pub mod ulid;
pub mod values;

#[cfg(feature = "python")]
mod python;

#[cfg(test)]
mod fuzz;

pub use error::SweepError;
pub use sweep::{
    alternatives, collect, count, expand, expand_values, parse_arguments, split, Argument,
};
