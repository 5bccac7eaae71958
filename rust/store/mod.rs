//! The store reader: a SQLite store's tables read from its pages, and the
//! shapes of the JSON documents it holds.
//!
//! Decoding pages is portable; opening a store's files is Unix only (it
//! relies on POSIX `pread` and lock semantics). Elsewhere [`open_database`]
//! refuses as unsupported and the caller reads through SQL instead.

pub mod pages;
pub mod shape;
mod wal;

#[cfg(unix)]
mod files;

#[cfg(unix)]
pub use files::open_database;

/// Without Unix files, pages are not read: SQL reads the store.
#[cfg(not(unix))]
pub fn open_database(
    _path: &std::path::Path,
) -> pages::Result<pages::Database<std::sync::Arc<[u8]>>> {
    Err(pages::ReadError::Unsupported("reading pages needs a Unix system"))
}
