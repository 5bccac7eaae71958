//! A store's files on a Unix system, read with `pread`, and the snapshot of
//! a caller's read transaction (see docs/store-reader.md).
//!
//! The caller reads the store through SQLite in the same process and holds
//! a read transaction while the pages are read; [`Snapshot`] makes sure the
//! pages are those of that transaction: it reads the snapshot SQLite
//! publishes in the wal-index before the transaction begins and again after,
//! and a reader that began between two equal headers took that snapshot.
//!
//! Descriptors: closing any descriptor of a file drops every POSIX lock the
//! process holds on it, SQLite's own included (a connection's lock on the
//! database, its read mark in the `-shm` file), which could let a writer
//! restart the log or take the file from under a reader. So the database
//! and `-shm` files stay open ([`open_kept`]) until no other descriptor of
//! this process refers to them: then the process holds no lock on them to
//! lose. The `-wal` file carries no lock: it is opened per read and closed.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::pages::{Cell, Database, Pages, ReadError, Result, Selection};
use super::wal::{self, Published};

impl Pages for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// A store read at the snapshot of the caller's read transaction: open it
/// before the transaction begins, [`pin`](Snapshot::pin) it after.
pub struct Snapshot {
    path: PathBuf,
    before: Option<Published>,
    database: Option<Database<Arc<File>>>,
}

impl Snapshot {
    /// Notes the snapshot published now, before the caller's transaction.
    pub fn open(path: &Path) -> Result<Self> {
        let before = published(path)?;
        Ok(Snapshot { path: path.to_owned(), before, database: None })
    }

    /// Takes the snapshot of the transaction the caller has begun (and read
    /// from) since [`open`](Snapshot::open): [`ReadError::Moved`] when a
    /// writer committed in between, so the transaction's is not known.
    pub fn pin(&mut self) -> Result<()> {
        let after = published(&self.path)?;
        match (&self.before, &after) {
            (Some(before), Some(after)) if before.same_commit(after) => {}
            (None, None) => {}
            _ => return Err(ReadError::Moved),
        }
        let wal = match after {
            Some(snapshot) if snapshot.needs_log() => {
                open_if_present(&sibling(&self.path, "-wal"))?
            }
            _ => None,
        };
        let database = Database::new(open_kept(&self.path)?, wal.map(Arc::new), after)?;
        self.database = Some(database);
        Ok(())
    }

    /// The selected cells of each kept row of the table rooted at `root`.
    pub fn visit<E: From<ReadError>>(
        &self,
        root: u32,
        selection: &Selection,
        visit: impl FnMut(&[Cell<'_>]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.pinned()?.visit(root, selection, visit)
    }

    /// Fails with [`ReadError::Moved`] when the log changed since the pin:
    /// call after the last read.
    pub fn check(&self) -> Result<()> {
        self.pinned()?.check_log()
    }

    fn pinned(&self) -> Result<&Database<Arc<File>>> {
        self.database.as_ref().ok_or(ReadError::Unsupported("a snapshot read before its pin"))
    }
}

/// The snapshot the store's wal-index publishes; None without one (a
/// database in rollback-journal mode, or a log no reader has opened yet).
fn published(path: &Path) -> Result<Option<Published>> {
    match open_kept(&sibling(path, "-shm")) {
        Ok(shm) => wal::published(&shm),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn open_if_present(path: &Path) -> Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// A file kept open, and which file it is.
struct Kept {
    id: (u64, u64),
    file: Arc<File>,
}

static KEPT: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

/// The file at `path`, opened read-only once and kept open while this
/// process may hold a lock on it (see the module documentation).
pub fn open_kept(path: &Path) -> io::Result<Arc<File>> {
    let wanted = std::fs::metadata(path)?;
    let id = (wanted.dev(), wanted.ino());
    let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    close_unshared(&mut kept);
    if let Some(found) = kept.iter().find(|k| k.id == id) {
        return Ok(Arc::clone(&found.file));
    }
    let file = Arc::new(File::open(path)?);
    kept.push(Kept { id, file: Arc::clone(&file) });
    Ok(file)
}

/// Closes the kept files that no read is using and that no other
/// descriptor of this process refers to.
fn close_unshared(kept: &mut Vec<Kept>) {
    let idle = |k: &Kept| Arc::strong_count(&k.file) == 1;
    if !kept.iter().any(idle) {
        return;
    }
    let ours: HashSet<RawFd> = kept.iter().map(|k| k.file.as_raw_fd()).collect();
    if let Some(shared) = files_open_elsewhere(&ours) {
        kept.retain(|k| !idle(k) || shared.contains(&k.id));
    }
}

/// The files this process's descriptors other than `ours` refer to; None
/// when the system does not list them (then nothing is closed).
fn files_open_elsewhere(ours: &HashSet<RawFd>) -> Option<HashSet<(u64, u64)>> {
    let listing = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"));
    let mut files = HashSet::new();
    for entry in listing.ok()? {
        let entry = entry.ok()?;
        let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
        if ours.contains(&fd) {
            continue;
        }
        // The listing's own descriptor is gone by now: skip what stat refuses.
        if let Ok(meta) = std::fs::metadata(entry.path()) {
            files.insert((meta.dev(), meta.ino()));
        }
    }
    Some(files)
}
