//! The log's head: format 2's sealed head and format 1's unsealed anchor. A head whose seal
//! does not verify is never returned as a head.

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::primitives::{le32, options, version_of};
use crate::chain::Chain;
use crate::chain::Head;
use crate::chain::SealDomain;
use crate::chain::StoredHead;
use crate::model::error::Error;
use crate::model::problem::ProblemKind;

/// The version of format 1's unsealed anchor.
const ANCHOR_VERSION: u16 = 1;
/// The version of the sealed head.
const HEAD_VERSION: u16 = 2;

#[derive(Serialize, Deserialize)]
struct AnchorV1 {
    version: u16,
    seq: u64,
    #[serde(with = "le32")]
    hash: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct HeadV2 {
    version: u16,
    seq: u64,
    #[serde(with = "le32")]
    hash: [u8; 32],
    at: i64,
}

const HEAD_BODY_LEN: usize = 2 + 8 + 32 + 8;

/// Encodes the head, sealed with `chain` (82 bytes).
pub(crate) fn encode_head(head: Head, chain: &Chain) -> Result<Vec<u8>, Error> {
    let wire = HeadV2 {
        version: HEAD_VERSION,
        seq: head.seq,
        hash: head.hash,
        at: head.at,
    };
    let mut out = options(HEAD_BODY_LEN as u64)
        .serialize(&wire)
        .map_err(|e| Error::invalid("head", e.to_string()))?;
    let seal = chain.seal(SealDomain::Head, &out);
    out.extend_from_slice(&seal);
    Ok(out)
}

/// Decodes a stored head: a sealed one (whose seal must verify with `chain`), or format
/// 1's anchor when `legacy_allowed` (a store never written by format 2).
pub(crate) fn decode_head(bytes: &[u8], chain: &Chain, legacy_allowed: bool) -> Result<StoredHead, Error> {
    let bad = |reason: String| Error::corrupt(0, ProblemKind::Head, reason);
    match version_of(bytes) {
        Some(ANCHOR_VERSION) if legacy_allowed => {
            let wire: AnchorV1 = options(64)
                .deserialize(bytes)
                .map_err(|e| bad(format!("undecodable anchor: {e}")))?;
            Ok(StoredHead::Legacy {
                seq: wire.seq,
                hash: wire.hash,
            })
        }
        Some(ANCHOR_VERSION) => Err(bad(
            "the head is an unsealed format 1 anchor in a format 2 store: it was replaced".into(),
        )),
        Some(HEAD_VERSION) => {
            let (body, seal) = bytes
                .split_at_checked(HEAD_BODY_LEN)
                .ok_or_else(|| bad(format!("a head of {} bytes is too short", bytes.len())))?;
            if !chain.seal_matches(SealDomain::Head, body, seal) {
                return Err(bad(if chain.is_keyed() {
                    "the head's seal does not match: it was forged, damaged or written with another chain key"
                        .into()
                } else {
                    "the head's seal does not match: it is damaged".into()
                }));
            }
            let wire: HeadV2 = options(HEAD_BODY_LEN as u64)
                .deserialize(body)
                .map_err(|e| bad(format!("undecodable head: {e}")))?;
            Ok(StoredHead::Sealed(Head {
                seq: wire.seq,
                hash: wire.hash,
                at: wire.at,
            }))
        }
        Some(found) => Err(Error::UnsupportedVersion {
            found: u32::from(found),
            supported: u32::from(HEAD_VERSION),
        }),
        None => Err(bad("the head is empty".into())),
    }
}

/// The sequence number of a sealed head, without checking its seal.
pub(crate) fn sealed_head_seq(bytes: &[u8]) -> Option<u64> {
    if version_of(bytes) != Some(HEAD_VERSION) || bytes.len() != HEAD_BODY_LEN + 32 {
        return None;
    }
    bytes.get(2..10)?.try_into().ok().map(u64::from_le_bytes)
}
