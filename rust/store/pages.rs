//! A read-only reader of SQLite database files: the rows of one table, read
//! straight from its B-tree pages into columns.
//!
//! Python's `sqlite3` builds one object per cell through SQLite's API, which
//! makes reading the runs of a large MLflow store take seconds; this walks the
//! pages and decodes only the columns asked for. It takes no locks: the caller
//! holds a read transaction on the same file through SQLite itself, which
//! keeps the pages of its snapshot. In WAL mode, the snapshot's pages in the
//! `-wal` file are read from there, up to the snapshot's last frame (see
//! `wal.rs`, and `files.rs` for how the snapshot is known).
//!
//! The decoding here reads through [`Pages`] and is portable; the files
//! themselves are opened in `files.rs` (Unix only).

use std::fmt;
use std::io;
use std::sync::Arc;

use super::wal::{self, Published, WalIndex};

const MAGIC: &[u8; 16] = b"SQLite format 3\0";
const HEADER_SIZE: usize = 100;
const LEAF_TABLE: u8 = 0x0D;
const INTERIOR_TABLE: u8 = 0x05;

/// One cell as stored, borrowed from the page it is on. Text is SQLite's
/// bytes, UTF-8 unless damaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// Why a file could not be read. `Unsupported` files are readable by SQLite
/// itself (the caller falls back to SQL); `Corrupt` ones are not what their
/// header says.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Unsupported(&'static str),
    Corrupt {
        page: u32,
        reason: &'static str,
    },
    /// A writer restarted the log while it was read: read again.
    Moved,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(err) => write!(f, "cannot read the database file: {err}"),
            ReadError::Unsupported(what) => write!(f, "unsupported database file: {what}"),
            ReadError::Corrupt { page, reason } => write!(f, "damaged page {page}: {reason}"),
            ReadError::Moved => write!(f, "the write-ahead log changed while it was read"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        ReadError::Io(err)
    }
}

pub type Result<T> = std::result::Result<T, ReadError>;

pub(super) fn corrupt<T>(page: u32, reason: &'static str) -> Result<T> {
    Err(ReadError::Corrupt { page, reason })
}

/// Where pages come from: a file, or bytes in memory (tests).
pub trait Pages {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
}

impl<P: Pages + ?Sized> Pages for Arc<P> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}

impl Pages for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let source = start.checked_add(buf.len()).and_then(|end| self.get(start..end));
        let source = source.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(source);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// Which cells of each row to return: record columns by index, and
/// optionally only the rows whose text in `key_column` is one of `exact` or
/// starts with one of `prefixes`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub columns: Vec<usize>,
    pub key_column: Option<usize>,
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Selection {
    fn keeps(&self, key: &[u8]) -> bool {
        self.exact.iter().any(|e| e.as_bytes() == key)
            || self.prefixes.iter().any(|p| key.starts_with(p.as_bytes()))
    }
}

/// A database file, its header checked, and the pages of its write-ahead log.
pub struct Database<P: Pages> {
    pages: P,
    wal: Option<(P, WalIndex)>,
    page_size: usize,
    usable: usize,
    page_count: u32,
}

impl<P: Pages> Database<P> {
    /// The database in `pages` at the snapshot `published` in its wal-index,
    /// with the frames of its `-wal` file up to that snapshot; both are None
    /// for a database in rollback-journal mode.
    pub fn new(pages: P, wal: Option<P>, published: Option<Published>) -> Result<Self> {
        let mut header = [0u8; HEADER_SIZE];
        pages.read_exact_at(&mut header, 0)?;
        if &header[..16] != MAGIC {
            return corrupt(1, "not a SQLite database");
        }
        let page_size = match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65_536,
            size => usize::from(size),
        };
        if !page_size.is_power_of_two() || !(512..=65_536).contains(&page_size) {
            return corrupt(1, "invalid page size");
        }
        let in_wal_mode = match (header[18], header[19]) {
            (1, 1) => false,
            (2, 2) => true,
            _ => return Err(ReadError::Unsupported("an unknown file format version")),
        };
        if !matches!(be_u32(&header[56..60]), 0 | 1) {
            return Err(ReadError::Unsupported("text is stored as UTF-16"));
        }
        let usable = page_size - usize::from(header[20]);
        if usable < 480 {
            return corrupt(1, "invalid reserved space");
        }
        let mut page_count = u32::try_from(pages.size()? / page_size as u64).unwrap_or(u32::MAX);
        let wal = match (in_wal_mode, published) {
            (false, _) => None, // a leftover log of a database in rollback-journal mode
            (true, None) => return Err(ReadError::Unsupported("a WAL database without its index")),
            (true, Some(published)) => {
                if published.page_count != 0 {
                    page_count = published.page_count;
                }
                match wal {
                    Some(file) if published.needs_log() => {
                        let index = wal::index(&file, page_size, &published)?;
                        Some((file, index))
                    }
                    None if published.needs_log() => return Err(ReadError::Moved),
                    _ => None,
                }
            }
        };
        Ok(Database { pages, wal, page_size, usable, page_count })
    }

    /// Calls `visit` with the selected cells of each row the selection keeps,
    /// in rowid order, without copying them; the first error stops the walk.
    pub fn visit<E: From<ReadError>>(
        &self,
        root: u32,
        selection: &Selection,
        visit: impl FnMut(&[Cell<'_>]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        match self.walk(root, selection, visit) {
            Ok(()) => Ok(()),
            Err(Stop::Visitor(err)) => Err(err),
            Err(Stop::Read(err)) => Err(self.explained(err).into()),
        }
    }

    /// Fails with [`ReadError::Moved`] when a writer restarted the log since
    /// it was indexed: the pages read from it may be another commit's.
    pub fn check_log(&self) -> Result<()> {
        match &self.wal {
            Some((file, index)) if !index.unchanged(file)? => Err(ReadError::Moved),
            _ => Ok(()),
        }
    }

    /// A page that looks damaged, read from a log that changed since, is no
    /// damage: the log moved under the read.
    fn explained(&self, err: ReadError) -> ReadError {
        match err {
            ReadError::Corrupt { .. } | ReadError::Io(_) if self.check_log().is_err() => {
                ReadError::Moved
            }
            err => err,
        }
    }

    fn walk<E>(
        &self,
        root: u32,
        selection: &Selection,
        mut visit: impl FnMut(&[Cell<'_>]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), Stop<E>> {
        let mut buffer = vec![0u8; self.page_size];
        let mut fields = Vec::new();
        let mut pending = vec![root];
        let mut visited = 0u32;
        while let Some(number) = pending.pop() {
            visited += 1;
            if visited > self.page_count {
                return Err(
                    ReadError::Corrupt { page: number, reason: "the B-tree has a cycle" }.into()
                );
            }
            self.read_page(number, &mut buffer)?;
            let page = Page::parse(&buffer[..self.usable], number)?;
            if page.kind == INTERIOR_TABLE {
                pending.push(page.right_child);
                for index in (0..page.cells).rev() {
                    let cell = page.cell(index)?;
                    pending.push(be_u32(cell.get(..4).ok_or(page.error("cell out of bounds"))?));
                }
                continue;
            }
            for index in 0..page.cells {
                let payload = self.payload(&page, index)?;
                let corrupt = |reason| ReadError::Corrupt { page: number, reason };
                let mut row = Vec::with_capacity(selection.columns.len());
                if select_row(&payload, selection, &mut fields, &mut row).map_err(corrupt)? {
                    visit(&row).map_err(Stop::Visitor)?;
                }
            }
        }
        Ok(())
    }

    fn read_page(&self, number: u32, buffer: &mut [u8]) -> Result<()> {
        if number == 0 || number > self.page_count {
            return corrupt(number, "page number out of range");
        }
        if let Some((file, index)) = &self.wal {
            if let Some(&offset) = index.frames.get(&number) {
                file.read_exact_at(buffer, offset)?;
                let mut header = [0u8; wal::FRAME_HEADER];
                file.read_exact_at(&mut header, offset - wal::FRAME_HEADER as u64)?;
                return if index.holds(&header, number) { Ok(()) } else { Err(ReadError::Moved) };
            }
        }
        let offset = u64::from(number - 1) * self.page_size as u64;
        Ok(self.pages.read_exact_at(buffer, offset)?)
    }

    /// A leaf cell's whole payload, following its overflow pages.
    fn payload<'a>(&self, page: &Page<'a>, index: u16) -> Result<std::borrow::Cow<'a, [u8]>> {
        let cell = page.cell(index)?;
        let (size, used) = varint(cell).ok_or(page.error("bad payload size"))?;
        let (_, rowid_len) = varint(&cell[used..]).ok_or(page.error("bad rowid"))?;
        let body = &cell[used + rowid_len..];
        let size = usize::try_from(size).map_err(|_| page.error("payload too large"))?;
        if size > self.page_count as usize * self.usable {
            return Err(page.error("payload larger than the file"));
        }
        let local = self.local_size(size);
        if local == size {
            let inline = body.get(..size).ok_or(page.error("payload out of bounds"))?;
            return Ok(std::borrow::Cow::Borrowed(inline));
        }
        let head = body.get(..local + 4).ok_or(page.error("payload out of bounds"))?;
        let mut payload = Vec::with_capacity(size);
        payload.extend_from_slice(&head[..local]);
        let mut next = be_u32(&head[local..]);
        let mut buffer = vec![0u8; self.page_size];
        let mut hops = 0u32;
        while payload.len() < size {
            hops += 1;
            if next == 0 || hops > self.page_count {
                return corrupt(page.number, "overflow chain ends early");
            }
            self.read_page(next, &mut buffer)?;
            let take = (size - payload.len()).min(self.usable - 4);
            payload.extend_from_slice(&buffer[4..4 + take]);
            next = be_u32(&buffer[..4]);
        }
        Ok(std::borrow::Cow::Owned(payload))
    }

    /// The bytes of a payload of `size` kept on a table leaf page (SQLite's
    /// file format, section "B-tree Pages").
    fn local_size(&self, size: usize) -> usize {
        let most = self.usable - 35;
        if size <= most {
            return size;
        }
        let least = (self.usable - 12) * 32 / 255 - 23;
        let local = least + (size - least) % (self.usable - 4);
        if local <= most {
            local
        } else {
            least
        }
    }
}

/// Why a walk stopped: a read failed, or the visitor did.
enum Stop<E> {
    Read(ReadError),
    Visitor(E),
}

impl<E> From<ReadError> for Stop<E> {
    fn from(err: ReadError) -> Self {
        Stop::Read(err)
    }
}

/// A B-tree page of a table: its kind, cell count and cells.
struct Page<'a> {
    bytes: &'a [u8],
    number: u32,
    kind: u8,
    cells: u16,
    pointers: usize,
    right_child: u32,
}

impl<'a> Page<'a> {
    fn parse(bytes: &'a [u8], number: u32) -> Result<Self> {
        let start = if number == 1 { HEADER_SIZE } else { 0 };
        let kind = bytes[start];
        let header = match kind {
            LEAF_TABLE => 8,
            INTERIOR_TABLE => 12,
            _ => return corrupt(number, "not a table B-tree page"),
        };
        let cells = u16::from_be_bytes([bytes[start + 3], bytes[start + 4]]);
        let right_child = if kind == INTERIOR_TABLE { be_u32(&bytes[start + 8..]) } else { 0 };
        let pointers = start + header;
        if pointers + 2 * usize::from(cells) > bytes.len() {
            return corrupt(number, "too many cells");
        }
        Ok(Page { bytes, number, kind, cells, pointers, right_child })
    }

    fn cell(&self, index: u16) -> Result<&'a [u8]> {
        let at = self.pointers + 2 * usize::from(index);
        let offset = usize::from(u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]]));
        if offset < self.pointers || offset >= self.bytes.len() {
            return corrupt(self.number, "cell out of bounds");
        }
        Ok(&self.bytes[offset..])
    }

    fn error(&self, reason: &'static str) -> ReadError {
        ReadError::Corrupt { page: self.number, reason }
    }
}

/// Fills `row` with the selected cells of one record; false when the key
/// filter drops the row. Columns the record lacks (added to the table after
/// it was written) are null.
fn select_row<'a>(
    record: &'a [u8],
    selection: &Selection,
    fields: &mut Vec<(u64, usize)>,
    row: &mut Vec<Cell<'a>>,
) -> std::result::Result<bool, &'static str> {
    parse_fields(record, fields)?;
    if let Some(key) = selection.key_column {
        match fields.get(key) {
            Some(&(serial, start)) if serial >= 13 && serial % 2 == 1 => {
                if !selection.keeps(content(record, serial, start)?) {
                    return Ok(false);
                }
            }
            _ => return Ok(false),
        }
    }
    row.clear();
    for &index in &selection.columns {
        row.push(match fields.get(index) {
            Some(&(serial, start)) => cell(record, serial, start)?,
            None => Cell::Null,
        });
    }
    Ok(true)
}

/// Each field's serial type and the offset of its content.
fn parse_fields(
    record: &[u8],
    fields: &mut Vec<(u64, usize)>,
) -> std::result::Result<(), &'static str> {
    let (header_size, mut at) = varint(record).ok_or("bad record header")?;
    let header_end = usize::try_from(header_size).map_err(|_| "bad record header")?;
    if header_end > record.len() || header_end < at {
        return Err("bad record header");
    }
    fields.clear();
    let mut content = header_end;
    while at < header_end {
        let (serial, used) = varint(&record[at..header_end]).ok_or("bad serial type")?;
        at += used;
        fields.push((serial, content));
        content = content.checked_add(content_size(serial)?).ok_or("bad serial type")?;
    }
    if content > record.len() {
        return Err("record longer than its payload");
    }
    Ok(())
}

fn content_size(serial: u64) -> std::result::Result<usize, &'static str> {
    Ok(match serial {
        0 | 8 | 9 => 0,
        1..=4 => serial as usize,
        5 => 6,
        6 | 7 => 8,
        10 | 11 => return Err("reserved serial type"),
        _ => usize::try_from((serial - 12) / 2).map_err(|_| "bad serial type")?,
    })
}

fn content(record: &[u8], serial: u64, start: usize) -> std::result::Result<&[u8], &'static str> {
    let end = start + content_size(serial)?;
    record.get(start..end).ok_or("record longer than its payload")
}

fn cell(record: &[u8], serial: u64, start: usize) -> std::result::Result<Cell<'_>, &'static str> {
    let bytes = content(record, serial, start)?;
    Ok(match serial {
        0 => Cell::Null,
        1..=6 => Cell::Integer(signed(bytes)),
        7 => Cell::Real(f64::from_bits(u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])))),
        8 => Cell::Integer(0),
        9 => Cell::Integer(1),
        _ if serial % 2 == 0 => Cell::Blob(bytes),
        _ => Cell::Text(bytes),
    })
}

/// A big-endian two's-complement integer of 1 to 8 bytes.
fn signed(bytes: &[u8]) -> i64 {
    let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xFF } else { 0 };
    let mut full = [fill; 8];
    full[8 - bytes.len()..].copy_from_slice(bytes);
    i64::from_be_bytes(full)
}

/// SQLite's variable-length integer: its value and length, None if cut short.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().take(9).enumerate() {
        if index == 8 {
            return Some(((value << 8) | u64::from(byte), 9));
        }
        value = (value << 7) | u64::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
