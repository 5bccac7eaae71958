//! A store's files on a Unix system: the pages of the database file and its
//! `-wal` log, read with `pread`.
//!
//! Files are opened once and never closed ([`open_kept`]): closing any
//! descriptor of a file drops every POSIX lock the process holds on it,
//! SQLite's own included, which could let another process write under a
//! connection that believes it holds a lock.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::pages::{Database, Pages, Result};

impl Pages for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

static KEPT: Mutex<Vec<Arc<File>>> = Mutex::new(Vec::new());

/// The file at `path`, opened read-only once per file for the life of the
/// process and never closed (see the module documentation).
pub fn open_kept(path: &Path) -> io::Result<Arc<File>> {
    let wanted = std::fs::metadata(path)?;
    let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for file in kept.iter() {
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) == (wanted.dev(), wanted.ino()) {
            return Ok(Arc::clone(file));
        }
    }
    let file = Arc::new(File::open(path)?);
    kept.push(Arc::clone(&file));
    Ok(file)
}

/// The database file (kept open, see [`open_kept`]) and its `-wal` file when
/// there is one (SQLite puts no lock on it: closing it is safe).
pub fn open_database(path: &Path) -> Result<Database<Arc<File>>> {
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = match File::open(&wal_path) {
        Ok(file) => Some(Arc::new(file)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err.into()),
    };
    Database::new(open_kept(path)?, wal)
}
