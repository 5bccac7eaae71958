//! The write-ahead log beside a database in WAL mode, read at the snapshot
//! SQLite publishes in its wal-index (the `-shm` file), so that the pages read
//! here are those of the caller's read transaction, never a newer commit.
//!
//! SQLite's "WAL File Format" documentation describes the log; the wal-index
//! header is described in the comments of SQLite's `wal.c` (two copies of a
//! 48-byte header, then the checkpoint information: `nBackfill`, the read
//! marks). A reader that begins takes the published `mxFrame` as its
//! snapshot. Frames up to it are checked here as SQLite wrote them (salts,
//! running checksum, a commit frame last); a frame that fails means a writer
//! restarted the log under this reader: [`ReadError::Moved`], read again.

use std::collections::HashMap;

use super::pages::{corrupt, Pages, ReadError, Result};

const HEADER: usize = 32;
pub const FRAME_HEADER: usize = 24;
const MAGIC: u32 = 0x377f_0682;
/// One copy of the wal-index header, and both copies plus `nBackfill`.
const INDEX_HEADER: usize = 48;
const INDEX_READ: usize = 2 * INDEX_HEADER + 4;
/// Reads of a wal-index header caught mid-update before giving up.
const HEADER_TRIES: usize = 100;

/// The snapshot the wal-index publishes: the last commit's frame and the
/// database size then, and how much of the log is already in the file.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    header: [u8; INDEX_HEADER],
    pub max_frame: u32,
    pub page_count: u32,
    salts: [u8; 8],
    frame_checksum: (u32, u32),
    pub backfilled: u32,
}

impl Published {
    /// The same commit: every transaction changes the header (its change
    /// counter, frame, checksums; a restart its salts).
    pub fn same_commit(&self, other: &Published) -> bool {
        self.header == other.header
    }

    /// Whether the database file alone lacks this snapshot's pages. When the
    /// log is wholly copied back (`nBackfill` = `mxFrame`), a reader takes
    /// SQLite's read mark 0, which keeps the file as it is but not the log:
    /// a writer may restart the log, so it must not be read then.
    pub fn needs_log(&self) -> bool {
        self.max_frame > self.backfilled
    }

    /// A wal-index header as SQLite writes it (host byte order), for tests.
    #[cfg(test)]
    pub fn new(max_frame: u32, page_count: u32, salts: [u8; 8], sum: (u32, u32)) -> Self {
        let mut header = [0u8; INDEX_HEADER];
        header[12] = 1;
        for (at, word) in [(16, max_frame), (20, page_count), (24, sum.0), (28, sum.1)] {
            header[at..at + 4].copy_from_slice(&word.to_ne_bytes());
        }
        header[32..40].copy_from_slice(&salts);
        parse_header(&header, 0)
    }
}

fn ne(bytes: &[u8]) -> u32 {
    u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn parse_header(header: &[u8; INDEX_HEADER], backfilled: u32) -> Published {
    Published {
        header: *header,
        max_frame: ne(&header[16..20]),
        page_count: ne(&header[20..24]),
        frame_checksum: (ne(&header[24..28]), ne(&header[28..32])),
        salts: header[32..40].try_into().unwrap_or_default(),
        backfilled,
    }
}

/// The snapshot published in a wal-index, None when it holds none yet
/// (an empty `-shm` file: no reader has opened the log).
pub fn published<P: Pages + ?Sized>(shm: &P) -> Result<Option<Published>> {
    if shm.size()? < INDEX_READ as u64 {
        return Ok(None);
    }
    let mut bytes = [0u8; INDEX_READ];
    for _ in 0..HEADER_TRIES {
        shm.read_exact_at(&mut bytes, 0)?;
        let (first, rest) = bytes.split_at(INDEX_HEADER);
        let first: &[u8; INDEX_HEADER] = first.try_into().unwrap_or(&[0; INDEX_HEADER]);
        let sum = checksum(&first[..40], (0, 0), cfg!(target_endian = "big"));
        let whole = first[12] == 1 && sum == (ne(&first[40..44]), ne(&first[44..48]));
        if whole && first[..] == rest[..INDEX_HEADER] {
            return Ok(Some(parse_header(first, ne(&rest[INDEX_HEADER..]))));
        }
        std::thread::yield_now(); // a writer is between the two copies
    }
    Err(ReadError::Moved)
}

/// The frames of a snapshot's log: page number to the offset of its newest
/// frame's content, with the log's header and salts to check reads against.
#[derive(Debug)]
pub struct WalIndex {
    pub frames: HashMap<u32, u64>,
    header: [u8; HEADER],
    salts: [u8; 8],
}

impl WalIndex {
    /// Whether the frame header read after a page's content still belongs
    /// to this log and this page. A writer writes a frame's header before
    /// its content, so new content read first means a new header now.
    pub fn holds(&self, frame_header: &[u8; FRAME_HEADER], number: u32) -> bool {
        frame_header[8..16] == self.salts && be(&frame_header[0..4]) == number
    }

    /// Whether the log still starts with the header indexed: a restart
    /// rewrites it before it overwrites any frame.
    pub fn unchanged<P: Pages + ?Sized>(&self, wal: &P) -> Result<bool> {
        let mut header = [0u8; HEADER];
        wal.read_exact_at(&mut header, 0)?;
        Ok(header == self.header)
    }
}

/// Indexes frames 1 to `mxFrame` of the published snapshot, checking each as
/// SQLite wrote it; a frame that fails means the log changed underneath.
pub fn index<P: Pages + ?Sized>(
    wal: &P,
    page_size: usize,
    snapshot: &Published,
) -> Result<WalIndex> {
    let frame_size = (FRAME_HEADER + page_size) as u64;
    let needed = HEADER as u64 + u64::from(snapshot.max_frame) * frame_size;
    if wal.size()? < needed {
        return Err(ReadError::Moved);
    }
    let mut header = [0u8; HEADER];
    wal.read_exact_at(&mut header, 0)?;
    let magic = be(&header[0..4]);
    if magic & !1 != MAGIC {
        return corrupt(0, "the -wal file is not a write-ahead log");
    }
    if be(&header[8..12]) as usize != page_size {
        return Err(ReadError::Unsupported("the -wal file has another page size"));
    }
    let big_endian = magic & 1 == 1;
    let mut sum = checksum(&header[..24], (0, 0), big_endian);
    if sum != (be(&header[24..28]), be(&header[28..32])) || header[16..24] != snapshot.salts {
        return Err(ReadError::Moved);
    }
    let mut index = WalIndex { frames: HashMap::new(), header, salts: snapshot.salts };
    let mut frame = vec![0u8; FRAME_HEADER + page_size];
    let mut commit_size = 0;
    for number in 0..u64::from(snapshot.max_frame) {
        let offset = HEADER as u64 + number * frame_size;
        wal.read_exact_at(&mut frame, offset)?;
        sum = checksum(&frame[..8], sum, big_endian);
        sum = checksum(&frame[FRAME_HEADER..], sum, big_endian);
        if frame[8..16] != snapshot.salts || sum != (be(&frame[16..20]), be(&frame[20..24])) {
            return Err(ReadError::Moved);
        }
        index.frames.insert(be(&frame[0..4]), offset + FRAME_HEADER as u64);
        commit_size = be(&frame[4..8]);
    }
    if commit_size != snapshot.page_count || sum != snapshot.frame_checksum {
        return Err(ReadError::Moved);
    }
    Ok(index)
}

/// SQLite's running checksum over 32-bit words, in the log's byte order.
pub(super) fn checksum(bytes: &[u8], (mut s0, mut s1): (u32, u32), big_endian: bool) -> (u32, u32) {
    let word = |chunk: &[u8]| {
        let array = [chunk[0], chunk[1], chunk[2], chunk[3]];
        if big_endian {
            u32::from_be_bytes(array)
        } else {
            u32::from_le_bytes(array)
        }
    };
    for pair in bytes.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

fn be(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
