//! Without Unix files no pages are read: a [`Snapshot`] refuses as
//! unsupported, and the caller reads the store through SQL.

use std::path::Path;

use super::pages::{Cell, ReadError, Result, Selection};

const ONLY_ON_UNIX: ReadError = ReadError::Unsupported("reading pages needs a Unix system");

pub struct Snapshot;

impl Snapshot {
    pub fn open(_path: &Path) -> Result<Self> {
        Err(ONLY_ON_UNIX)
    }

    pub fn pin(&mut self) -> Result<()> {
        Err(ONLY_ON_UNIX)
    }

    pub fn visit<E: From<ReadError>>(
        &self,
        _root: u32,
        _selection: &Selection,
        _visit: impl FnMut(&[Cell<'_>]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        Err(ONLY_ON_UNIX.into())
    }

    pub fn check(&self) -> Result<()> {
        Err(ONLY_ON_UNIX)
    }
}
