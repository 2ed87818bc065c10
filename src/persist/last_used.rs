//! The last-used file's format: each key's last minute of use and, since version 2, its
//! requests per hour (accepted, and refused by reason) for the last 30 days, under a
//! blake3 checksum. It is not in the chain and proves nothing; damage only makes it
//! ignored.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::codec::primitives::checksummed_body;
use crate::codec::primitives::magic_version;
use crate::codec::primitives::options;
use crate::codec::primitives::with_checksum;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::problem::ProblemKind;
use crate::projection::usage::SavedCount;

const LAST_USED_MAGIC: [u8; 8] = *b"KLUSED\x00\x00";
/// Version 1: last-used minutes only; version 2 adds the counts.
const LAST_USED_VERSION: u16 = 2;
/// Largest last-used file read.
pub(crate) const MAX_LAST_USED_BYTES: u64 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct LastUsedV1 {
    magic: [u8; 8],
    version: u16,
    /// Key id and minute since the epoch.
    entries: Vec<(u64, u32)>,
}

#[derive(Serialize, Deserialize)]
struct LastUsedV2 {
    magic: [u8; 8],
    version: u16,
    /// Key id and minute since the epoch.
    entries: Vec<(u64, u32)>,
    /// Key id and its counts: hour since the epoch, outcome (0 accepted, 1 to 6 the
    /// reasons refused), requests.
    usage: Vec<(u64, Vec<SavedCount>)>,
}

/// What the file holds: last-used minutes, and counts by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) last_used: Vec<(KeyId, u32)>,
    pub(crate) usage: Vec<(KeyId, Vec<SavedCount>)>,
}

/// Encodes the last-used minutes and counts (version 2), with a blake3 checksum (damage is
/// found; this file is not in the chain and proves nothing).
pub(crate) fn encode_last_used(saved: &Saved) -> Result<Vec<u8>, Error> {
    let wire = LastUsedV2 {
        magic: LAST_USED_MAGIC,
        version: LAST_USED_VERSION,
        entries: saved.last_used.iter().map(|&(k, m)| (k.0, m)).collect(),
        usage: saved.usage.iter().map(|(k, c)| (k.0, c.clone())).collect(),
    };
    let out = options(MAX_LAST_USED_BYTES)
        .serialize(&wire)
        .map_err(|e| Error::invalid("last used", e.to_string()))?;
    Ok(with_checksum(out))
}

/// Decodes a last-used file of version 1 (minutes only) or 2.
pub(crate) fn decode_last_used(bytes: &[u8]) -> Result<Saved, Error> {
    let bad =
        |reason: String| Error::corrupt(0, ProblemKind::Undecodable, format!("last-used file: {reason}"));
    let body = checksummed_body(bytes).map_err(|why| bad(why.into()))?;
    let Some(version) = magic_version(body, &LAST_USED_MAGIC, 1..=LAST_USED_VERSION)? else {
        return Err(bad("not a last-used file".into()));
    };
    let options = options(MAX_LAST_USED_BYTES.min(body.len() as u64));
    let ids = |entries: Vec<(u64, u32)>| entries.into_iter().map(|(k, m)| (KeyId(k), m)).collect();
    if version == 1 {
        let wire: LastUsedV1 = options.deserialize(body).map_err(|e| bad(e.to_string()))?;
        return Ok(Saved {
            last_used: ids(wire.entries),
            usage: Vec::new(),
        });
    }
    let wire: LastUsedV2 = options.deserialize(body).map_err(|e| bad(e.to_string()))?;
    Ok(Saved {
        last_used: ids(wire.entries),
        usage: wire.usage.into_iter().map(|(k, c)| (KeyId(k), c)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_2_round_trips_and_version_1_still_reads() {
        let saved = Saved {
            last_used: vec![(KeyId(7), 100)],
            usage: vec![(KeyId(7), vec![(1, 0, 5), (1, 5, 2)])],
        };
        assert_eq!(
            decode_last_used(&encode_last_used(&saved).unwrap()).unwrap(),
            saved
        );
        let v1 = LastUsedV1 {
            magic: LAST_USED_MAGIC,
            version: 1,
            entries: vec![(7, 100)],
        };
        let bytes = with_checksum(options(MAX_LAST_USED_BYTES).serialize(&v1).unwrap());
        let read = decode_last_used(&bytes).unwrap();
        assert_eq!(read.last_used, [(KeyId(7), 100)]);
        assert!(read.usage.is_empty());
    }

    #[test]
    fn any_damage_is_an_error_never_a_panic() {
        let saved = Saved {
            last_used: vec![(KeyId(7), 100)],
            usage: vec![(KeyId(7), vec![(1, 0, 5)])],
        };
        let good = encode_last_used(&saved).unwrap();
        for cut in 0..good.len() {
            assert!(decode_last_used(&good[..cut]).is_err());
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode_last_used(&bad).is_err());
        }
        // A checksum over a body that claims a huge list allocates nothing of that size.
        let mut body = options(MAX_LAST_USED_BYTES)
            .serialize(&LastUsedV1 {
                magic: LAST_USED_MAGIC,
                version: 2,
                entries: Vec::new(),
            })
            .unwrap();
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_last_used(&with_checksum(body)).is_err());
    }
}
