//! The byte encoding of every stored value, and the one set of bincode options every
//! encoder uses ([`options`]).
//!
//! Encoding is bincode 1.3 with fixed-width little-endian integers (byte-compatible with
//! `bincode::serialize`). Decoding is total: any byte string yields a value or an error,
//! with a size limit, trailing bytes rejected and every field re-validated. It must never
//! panic and never allocate more than [`MAX_RECORD_BYTES`].
//!
//! `primitives` holds the options and the shared wire pieces; each other child owns one
//! of the log's own formats: records, blocks and the head. A format that belongs to one
//! owner (snapshot, security trail, last-used file, backup header, stream message, host
//! head) lives beside its owner, on these primitives.

pub(crate) mod block;
pub(crate) mod head;
pub(crate) mod primitives;
pub(crate) mod record;

/// The store layout this build writes: 2, records in blocks under a sealed head. Stores
/// of format 1 (one record per entry, an unsealed anchor) are read as they are and become
/// format 2 at their first write.
pub(crate) const STORE_FORMAT: u32 = 2;

pub(crate) use block::{entry_records, is_block};
pub(crate) use head::{decode_head, encode_head, sealed_head_seq};
pub(crate) use primitives::options;
pub(crate) use record::{MAX_RECORD_BYTES, decode_record, encode_record};

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod update_tests;
