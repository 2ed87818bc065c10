//! The log's blocks: encoded records framed under one header and a blake3 checksum, one
//! log entry each (format 1's entries are single records). It never decodes the records
//! it frames.

use super::primitives::version_of;
use super::record::MAX_RECORD_BYTES;
use crate::model::error::Error;
use crate::model::problem::ProblemKind;

/// The first two bytes of a block; a format 1 entry starts with its record's version, 1.
const BLOCK_VERSION: u16 = 2;
/// Most records in one block.
pub(crate) const MAX_BLOCK_RECORDS: usize = 4096;
/// Largest block decoding accepts.
pub(crate) const MAX_BLOCK_BYTES: usize = 16 << 20;
/// The writer starts another block (in the same atomic batch) before a block grows past
/// this, unless it holds a single record. sled splits a leaf once it holds more than 16
/// entries and writes a page of more than about 128 KiB to a separate blob file (a new
/// file, synced, for every rewrite of that leaf): 17 blocks of 4 KiB keep every leaf
/// inline, which also keeps sled's memory per record low.
pub(crate) const BLOCK_TARGET_BYTES: usize = 4 << 10;
const BLOCK_HEADER_LEN: usize = 2 + 8 + 4;
const BLOCK_CHECKSUM_LEN: usize = 32;

/// Builds a block: a header (version u16, first sequence number u64, record count u32),
/// each record as a `u32` length and its bytes, then blake3 of everything before.
pub(crate) struct BlockWriter {
    first: u64,
    bytes: Vec<u8>,
    count: u32,
}

impl BlockWriter {
    pub(crate) fn new(first: u64) -> Self {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(&BLOCK_VERSION.to_le_bytes());
        bytes.extend_from_slice(&first.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        BlockWriter {
            first,
            bytes,
            count: 0,
        }
    }

    /// Whether a record of `record_len` bytes still fits the writer's target size.
    pub(crate) fn fits(&self, record_len: usize) -> bool {
        (self.count as usize) < MAX_BLOCK_RECORDS
            && self.bytes.len() + 4 + record_len + BLOCK_CHECKSUM_LEN <= BLOCK_TARGET_BYTES
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an encoded record (at most [`MAX_RECORD_BYTES`], checked by its encoder).
    pub(crate) fn push(&mut self, record: &[u8]) {
        self.bytes
            .extend_from_slice(&u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    /// The finished block as a log entry: its key and bytes.
    pub(crate) fn finish(mut self) -> (u64, Vec<u8>) {
        self.bytes[10..14].copy_from_slice(&self.count.to_le_bytes());
        let checksum = blake3::hash(&self.bytes);
        self.bytes.extend_from_slice(checksum.as_bytes());
        (self.first, self.bytes)
    }
}

/// Whether a log entry is a block (format 2) rather than a format 1 record.
pub(crate) fn is_block(entry: &[u8]) -> bool {
    version_of(entry) == Some(BLOCK_VERSION)
}

/// The records of one log entry, as `(sequence number, encoded record)`, in order: the
/// entry itself for a format 1 record, each record of a block. The records are not
/// decoded; a damaged block is an error.
pub(crate) fn entry_records(key: u64, bytes: &[u8]) -> Result<Vec<(u64, &[u8])>, Error> {
    let count = entry_record_count(key, bytes)? as usize;
    if !is_block(bytes) {
        // A format 1 record, or too short for a version: the record decoder says which.
        return Ok(vec![(key, bytes)]);
    }
    let bad = |reason: String| Error::corrupt(key, ProblemKind::Undecodable, reason);
    let (body, checksum) = bytes.split_at(bytes.len() - BLOCK_CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(bad("the block's checksum does not match: it is damaged".into()));
    }
    let mut rest = &body[BLOCK_HEADER_LEN..];
    let mut out = Vec::with_capacity(count);
    for seq in key..key + count as u64 {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad(format!("the block ends inside record {seq}")))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len as u64 > MAX_RECORD_BYTES || len > tail.len() {
            return Err(bad(format!("record {seq} in the block has a bad length")));
        }
        let (record, after) = tail.split_at(len);
        out.push((seq, record));
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the block's last record", rest.len())));
    }
    Ok(out)
}

/// How many records a log entry holds, from a block's header (its checksum and records
/// unchecked; [`entry_records`] checks them): 1 for a format 1 record.
pub(crate) fn entry_record_count(key: u64, bytes: &[u8]) -> Result<u64, Error> {
    let bad = |reason: String| Error::corrupt(key, ProblemKind::Undecodable, reason);
    match version_of(bytes) {
        Some(BLOCK_VERSION) => {}
        Some(found) if found > BLOCK_VERSION => {
            return Err(Error::UnsupportedVersion {
                found: u32::from(found),
                supported: u32::from(BLOCK_VERSION),
            });
        }
        _ => return Ok(1),
    }
    if bytes.len() < BLOCK_HEADER_LEN + BLOCK_CHECKSUM_LEN || bytes.len() > MAX_BLOCK_BYTES {
        return Err(bad(format!("a block of {} bytes is malformed", bytes.len())));
    }
    let first = u64::from_le_bytes(bytes[2..10].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(bytes[10..14].try_into().unwrap_or_default()) as usize;
    if first != key {
        return Err(bad(format!(
            "the block stored at {key} says it starts at {first}"
        )));
    }
    if count == 0 || count > MAX_BLOCK_RECORDS {
        return Err(bad(format!("a block of {count} records")));
    }
    Ok(count as u64)
}
