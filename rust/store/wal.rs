//! The write-ahead log beside a database in WAL mode: which pages its
//! committed frames hold, newer than the database file's own.
//!
//! A frame counts when its salts match the log header's and its running
//! checksum holds; the log ends at the first frame that fails, and only
//! frames up to the last commit among the valid ones are used. SQLite's
//! "WAL File Format" documentation describes the layout.

use std::collections::HashMap;

use super::pages::{corrupt, Pages, ReadError, Result};

const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const MAGIC: u32 = 0x377f_0682;

/// The committed pages of a log: page number to the offset of its newest
/// frame's content, and the database size in pages after the last commit.
#[derive(Debug, Default)]
pub struct WalIndex {
    pub frames: HashMap<u32, u64>,
    pub page_count: Option<u32>,
}

/// Reads the log's headers and checksums. A missing, empty or reset log
/// (nothing committed since the database file was last brought up to date)
/// gives an empty index.
pub fn index<P: Pages>(wal: &P, page_size: usize) -> Result<WalIndex> {
    let mut header = [0u8; HEADER];
    if wal.size()? < HEADER as u64 {
        return Ok(WalIndex::default());
    }
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
    if sum != (be(&header[24..28]), be(&header[28..32])) {
        return Ok(WalIndex::default());
    }
    let salts = &header[16..24];
    let mut index = WalIndex::default();
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let mut frame = vec![0u8; FRAME_HEADER + page_size];
    let mut offset = HEADER as u64;
    let size = wal.size()?;
    while offset + frame.len() as u64 <= size {
        wal.read_exact_at(&mut frame, offset)?;
        if &frame[8..16] != salts {
            break;
        }
        sum = checksum(&frame[..8], sum, big_endian);
        sum = checksum(&frame[FRAME_HEADER..], sum, big_endian);
        if sum != (be(&frame[16..20]), be(&frame[20..24])) {
            break;
        }
        pending.push((be(&frame[0..4]), offset + FRAME_HEADER as u64));
        let committed_size = be(&frame[4..8]);
        if committed_size != 0 {
            index.frames.extend(pending.drain(..));
            index.page_count = Some(committed_size);
        }
        offset += frame.len() as u64;
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
