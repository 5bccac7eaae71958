//! The store reader: a SQLite store's tables read from its pages, and the
//! shapes of the JSON documents it holds.
//!
//! Decoding pages is portable; opening a store's files is Unix only (it
//! relies on POSIX `pread` and lock semantics). Elsewhere [`Snapshot`]
//! refuses as unsupported and the caller reads through SQL instead.

pub mod pages;
pub mod shape;
mod wal;

#[cfg(unix)]
mod files;

#[cfg(unix)]
pub use files::Snapshot;

#[cfg(not(unix))]
mod elsewhere;
#[cfg(not(unix))]
pub use elsewhere::Snapshot;
