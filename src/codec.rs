//! The byte encoding of every stored value, and the one set of bincode options every
//! encoder uses ([`options`]).
//!
//! Encoding is bincode 1.3 with fixed-width little-endian integers (byte-compatible with
//! `bincode::serialize`). Decoding is total: any byte string yields a value or an error,
//! with a size limit, trailing bytes rejected and every field re-validated. It must never
//! panic and never allocate more than [`MAX_RECORD_BYTES`].
//!
//! `primitives` holds the options and the shared wire pieces; each other child owns one
//! format: the log's records, blocks and head, then the formats of one owner each
//! (snapshot, security trail record, last-used file, backup header).

mod backup_header;
mod block;
mod head;
mod last_used;
mod primitives;
mod record;
mod refused;
mod snapshot;

/// The store layout this build writes: 2, records in blocks under a sealed head. Stores
/// of format 1 (one record per entry, an unsealed anchor) are read as they are and become
/// format 2 at their first write.
pub(crate) const STORE_FORMAT: u32 = 2;

pub(crate) use backup_header::{
    EXPORT_HEADER_LEN, EXPORT_TRAILER_LEN, ExportHeader, decode_export_header, encode_export_header,
};
pub(crate) use block::{BlockWriter, entry_record_count, entry_records, is_block};
pub(crate) use head::{decode_head, encode_head, sealed_head_seq};
pub(crate) use last_used::{MAX_LAST_USED_BYTES, decode_last_used, encode_last_used};
pub(crate) use primitives::{magic_version, options};
pub(crate) use record::{MAX_RECORD_BYTES, decode_record, encode_record};
pub(crate) use refused::{RefusedRecord, decode_refused, encode_refused};
pub(crate) use snapshot::{MAX_SNAPSHOT_BYTES, decode_snapshot, encode_snapshot};

#[cfg(test)]
pub(crate) mod tests;
