//! The core of hydraflow, in two rooms: `grammar`, the sweep grammar that
//! turns `each`/`all` strings into Hydra overrides (and ULIDs), portable;
//! and `store`, a reader of SQLite store files, so the runs of a large MLflow
//! store load in bulk, and the shapes of their JSON configs.
//!
//! Everything here is plain Rust; `python.rs` is the one thin PyO3 binding,
//! compiled only with the `python` feature (maturin enables it).

pub mod grammar;
pub mod store;

#[cfg(feature = "python")]
mod python;

#[cfg(test)]
mod rng;

pub use grammar::SweepError;
pub use grammar::{
    alternatives, collect, count, expand, expand_values, parse_arguments, split, Argument,
};
