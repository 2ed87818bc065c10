//! The last-used file's format: each key's last minute of use, under a blake3 checksum.
//! It is not in the chain and proves nothing; damage only makes it ignored.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::codec::primitives::magic_version;
use crate::codec::primitives::options;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::problem::ProblemKind;

const LAST_USED_MAGIC: [u8; 8] = *b"KLUSED\x00\x00";
const LAST_USED_VERSION: u16 = 1;
/// Largest last-used file read (about 80 million keys).
pub(crate) const MAX_LAST_USED_BYTES: u64 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct LastUsedV1 {
    magic: [u8; 8],
    version: u16,
    /// Key id and minute since the epoch.
    entries: Vec<(u64, u32)>,
}

/// Encodes the last-used minutes, with a blake3 checksum (damage is found; this file is
/// not in the chain and proves nothing).
pub(crate) fn encode_last_used(entries: &[(KeyId, u32)]) -> Result<Vec<u8>, Error> {
    let wire = LastUsedV1 {
        magic: LAST_USED_MAGIC,
        version: LAST_USED_VERSION,
        entries: entries.iter().map(|&(k, m)| (k.0, m)).collect(),
    };
    let mut out = options(MAX_LAST_USED_BYTES)
        .serialize(&wire)
        .map_err(|e| Error::invalid("last used", e.to_string()))?;
    let sum = *blake3::hash(&out).as_bytes();
    out.extend_from_slice(&sum);
    Ok(out)
}

pub(crate) fn decode_last_used(bytes: &[u8]) -> Result<Vec<(KeyId, u32)>, Error> {
    let bad =
        |reason: String| Error::corrupt(0, ProblemKind::Undecodable, format!("last-used file: {reason}"));
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or_else(|| bad("too short".into()))?;
    let (body, sum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum {
        return Err(bad("checksum does not match".into()));
    }
    if magic_version(body, &LAST_USED_MAGIC, LAST_USED_VERSION..=LAST_USED_VERSION)?.is_none() {
        return Err(bad("not a last-used file".into()));
    }
    let wire: LastUsedV1 = options(MAX_LAST_USED_BYTES.min(body.len() as u64))
        .deserialize(body)
        .map_err(|e| bad(e.to_string()))?;
    Ok(wire.entries.into_iter().map(|(k, m)| (KeyId(k), m)).collect())
}
