//! The credits file's format: each credited key's count as it stood when saved (what was
//! spent is not in the log), under a blake3 checksum. It is not in the chain and proves
//! nothing; damage only costs what was spent since the setting (the count starts again
//! from what the log set).

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::codec::primitives::checksummed_body;
use crate::codec::primitives::magic_version;
use crate::codec::primitives::options;
use crate::codec::primitives::with_checksum;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::problem::ProblemKind;
use crate::projection::credits::SavedCredits;

const CREDITS_MAGIC: [u8; 8] = *b"KLCRED\x00\x00";
const CREDITS_VERSION: u16 = 1;
/// Largest credits file read (about 25 million credited keys).
pub(crate) const MAX_CREDITS_BYTES: u64 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct CreditsFileV1 {
    magic: [u8; 8],
    version: u16,
    entries: Vec<SavedV1>,
}

/// One key: its id, the sequence number of the record that set its credits, what was
/// added since as of the save, its count and its next refill (microseconds since the
/// epoch, `i64::MAX` for none).
#[derive(Serialize, Deserialize)]
struct SavedV1 {
    id: u64,
    set_seq: u64,
    topped: u64,
    remaining: u64,
    next_refill: i64,
}

/// Encodes the counts, with a blake3 checksum.
pub(crate) fn encode_credits(entries: &[SavedCredits]) -> Result<Vec<u8>, Error> {
    let wire = CreditsFileV1 {
        magic: CREDITS_MAGIC,
        version: CREDITS_VERSION,
        entries: entries
            .iter()
            .map(|e| SavedV1 {
                id: e.id.0,
                set_seq: e.set_seq,
                topped: e.topped,
                remaining: e.remaining,
                next_refill: e.next_refill,
            })
            .collect(),
    };
    let out = options(MAX_CREDITS_BYTES)
        .serialize(&wire)
        .map_err(|e| Error::invalid("credits file", e.to_string()))?;
    Ok(with_checksum(out))
}

/// Decodes a credits file; any damage is an error (the caller then keeps what the log
/// set).
pub(crate) fn decode_credits(bytes: &[u8]) -> Result<Vec<SavedCredits>, Error> {
    let bad = |reason: String| Error::corrupt(0, ProblemKind::Undecodable, format!("credits file: {reason}"));
    let body = checksummed_body(bytes).map_err(|why| bad(why.into()))?;
    if magic_version(body, &CREDITS_MAGIC, CREDITS_VERSION..=CREDITS_VERSION)?.is_none() {
        return Err(bad("not a credits file".into()));
    }
    let wire: CreditsFileV1 = options(MAX_CREDITS_BYTES.min(body.len() as u64))
        .deserialize(body)
        .map_err(|e| bad(e.to_string()))?;
    Ok(wire
        .entries
        .into_iter()
        .map(|e| SavedCredits {
            id: KeyId(e.id),
            set_seq: e.set_seq,
            topped: e.topped,
            remaining: e.remaining,
            next_refill: e.next_refill,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SavedCredits> {
        vec![SavedCredits {
            id: KeyId(7),
            set_seq: 3,
            topped: 10,
            remaining: 42,
            next_refill: i64::MAX,
        }]
    }

    #[test]
    fn saved_counts_read_back_as_written() {
        let bytes = encode_credits(&sample()).unwrap();
        assert_eq!(decode_credits(&bytes).unwrap(), sample());
    }

    #[test]
    fn any_flipped_byte_or_cut_makes_the_file_ignored_never_a_panic() {
        let bytes = encode_credits(&sample()).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(decode_credits(&damaged).is_err(), "byte {i}");
            assert!(decode_credits(&bytes[..i]).is_err(), "cut at {i}");
        }
    }
}
