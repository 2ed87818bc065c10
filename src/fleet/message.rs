//! The messages of a fleet's shared log: their byte format (version 2, and version 1 read
//! to name a 0.4.0 stream), their seal, and what binds each to its stream and place.
//!
//! It owns the envelope only: the entries inside are the log's own, checked by the ledger.
//! It must never decide what a host does with a message; [`decode`] only says whether the
//! message is the fleet's ([`Unusable::Foreign`] when it is not: anyone may publish one).

use bincode::Options as _;
use serde::{Deserialize, Serialize};

use crate::chain::Chain;
use crate::chain::SealDomain;
use crate::codec;
use crate::codec::block::entry_record_count;
use crate::codec::primitives::magic_version;
use crate::log::Entry;
use crate::model::error::Error;
use crate::model::problem::ProblemKind;

/// The first bytes of every message on a shared log's stream.
const MAGIC: [u8; 8] = *b"KLMSG\x00\x00\x00";
/// The version this build writes.
const VERSION: u16 = 2;
/// No stream message may be larger; decoding stops at this many bytes.
const MAX_MESSAGE_BYTES: u64 = 64 << 20;
/// The longest origin (host id) a message may name.
const MAX_ORIGIN_BYTES: usize = 64;
/// The length of a stream message's seal, after its body.
pub(crate) const SEAL_LEN: usize = 32;

const KIND_GENESIS: u8 = 0;
const KIND_ENTRIES: u8 = 1;

/// A stream's identity, from its genesis: a random id, and the creation time the server
/// reported for the stream when the genesis was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Random, chosen by the host that published the genesis.
    pub(crate) stream_id: [u8; 16],
    /// The stream's creation time, nanoseconds since the Unix epoch, as the server says.
    pub(crate) created: i64,
    /// The genesis's position (1 unless something that is not the fleet's came first).
    pub(crate) position: u64,
}

/// A stream message, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// The first of the fleet's messages in a stream: the stream's identity.
    Genesis {
        /// The host that published it.
        origin: String,
        stream_id: [u8; 16],
        created: i64,
    },
    /// A writer batch: log entries that hold records `first..=last`.
    Entries(Batch),
}

/// Log entries (blocks or format 1 records) that hold records `first..=last` with no gap,
/// in order. The records themselves are not decoded nor checked; the ledger does that.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The host that appended it (it proves nothing beyond the seal: any key holder can
    /// write any name).
    pub(crate) origin: String,
    /// For a message of a bootstrap (a single host's log published as the stream's
    /// beginning): the last record of that log, which the bootstrap reaches once whole;
    /// 0 otherwise.
    pub(crate) bootstrap: u64,
    pub(crate) entries: Vec<Entry>,
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// Why a message is not one to apply.
#[derive(Debug)]
pub(crate) enum Unusable {
    /// Not the fleet's: not sealed with its chain key, or sealed for another stream or
    /// another position (a replay), or a version 1 message (bound to nothing). Anyone who
    /// may publish on the subject can make one; every host skips it.
    Foreign(String),
    /// A version 1 message (keyledger 0.4.0) sealed with the fleet's key: bound to no
    /// stream and no position, so it is not applied either; a stream that begins with one
    /// is a 0.4.0 fleet's, which a host refuses to join (see `docs/design.md`).
    Legacy,
    /// Sealed with the fleet's key for this place, and still wrong (a bad shape, a newer
    /// version): only a key holder can make one.
    Broken(Error),
}

#[derive(Serialize)]
struct WireRefV2<'a> {
    magic: [u8; 8],
    version: u16,
    stream_id: [u8; 16],
    position: u64,
    kind: u8,
    origin: &'a str,
    created: i64,
    bootstrap: u64,
    entries: &'a [Entry],
}

#[derive(Deserialize)]
struct WireV2 {
    magic: [u8; 8],
    version: u16,
    stream_id: [u8; 16],
    position: u64,
    kind: u8,
    origin: String,
    created: i64,
    bootstrap: u64,
    entries: Vec<Entry>,
}

fn seal(chain: &Chain, wire: &WireRefV2<'_>) -> Result<Vec<u8>, Error> {
    if wire.origin.len() > MAX_ORIGIN_BYTES {
        return Err(Error::invalid("host id", "longer than 64 bytes"));
    }
    let mut out = codec::options(MAX_MESSAGE_BYTES)
        .serialize(wire)
        .map_err(|e| Error::invalid("stream message", e.to_string()))?;
    let seal = chain.seal(SealDomain::Message, &out);
    out.extend_from_slice(&seal);
    Ok(out)
}

/// The genesis of a stream: published at `position` (the stream's first, normally 1) by
/// host `origin`, naming a fresh random stream id and the stream's creation time as the
/// server reports it.
pub(crate) fn encode_genesis(origin: &str, identity: &Identity, chain: &Chain) -> Result<Vec<u8>, Error> {
    seal(
        chain,
        &WireRefV2 {
            magic: MAGIC,
            version: VERSION,
            stream_id: identity.stream_id,
            position: identity.position,
            kind: KIND_GENESIS,
            origin,
            created: identity.created,
            bootstrap: 0,
            entries: &[],
        },
    )
}

/// One message of a shared log: the entries one writer batch of host `origin` appends, in
/// order, for `position` of the stream `stream_id`, sealed with the chain key. The origin
/// makes two hosts' messages differ even when their records are the same bytes (the same
/// command, by the same actor, in the same microsecond); the seal makes a message
/// published without the key, or replayed into another stream or place, foreign.
pub(crate) fn encode_entries(
    origin: &str,
    stream_id: [u8; 16],
    position: u64,
    bootstrap: u64,
    entries: &[Entry],
    chain: &Chain,
) -> Result<Vec<u8>, Error> {
    seal(
        chain,
        &WireRefV2 {
            magic: MAGIC,
            version: VERSION,
            stream_id,
            position,
            kind: KIND_ENTRIES,
            origin,
            created: 0,
            bootstrap,
            entries,
        },
    )
}

/// A fresh random stream id.
pub(crate) fn new_stream_id() -> Result<[u8; 16], Error> {
    use rand::TryRngCore;
    let mut id = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut id)
        .map_err(|e| Error::Entropy(e.to_string()))?;
    Ok(id)
}

/// The stream id as 32 hex digits, for messages.
pub(crate) fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes the message found at `position`: its seal first (with `chain`), then that it
/// was sealed for this place (`position`, and the stream `stream`, once known), then its
/// shape. Any byte string gives a message or a reason, never a panic.
pub(crate) fn decode(
    bytes: &[u8],
    position: u64,
    stream: Option<&[u8; 16]>,
    chain: &Chain,
) -> Result<Message, Unusable> {
    let foreign =
        |why: String| Unusable::Foreign(format!("stream message {position} is not the fleet's: {why}"));
    let sealed = bytes
        .len()
        .checked_sub(SEAL_LEN)
        .map(|n| bytes.split_at(n))
        .filter(|(body, seal)| chain.seal_matches(SealDomain::Message, body, seal));
    let Some((body, _)) = sealed else {
        return Err(foreign("it is not sealed with the fleet's chain key".into()));
    };
    match magic_version(body, &MAGIC, 1..=VERSION) {
        Ok(Some(VERSION)) => {}
        Ok(Some(_)) => return Err(Unusable::Legacy),
        Ok(None) => {
            return Err(Unusable::Broken(broken(
                position,
                "not a keyledger message".into(),
            )));
        }
        Err(e) => return Err(Unusable::Broken(e)),
    }
    let wire: WireV2 = codec::options(MAX_MESSAGE_BYTES.min(body.len() as u64))
        .deserialize(body)
        .map_err(|e| Unusable::Broken(broken(position, e.to_string())))?;
    if let Some(ours) = stream
        && wire.stream_id != *ours
    {
        return Err(foreign(format!(
            "it was sealed for stream {} (message {}), not this one",
            hex(&wire.stream_id),
            wire.position
        )));
    }
    if wire.position != position {
        return Err(foreign(format!(
            "it was sealed for position {}, and replayed here",
            wire.position
        )));
    }
    shape(wire, position).map_err(Unusable::Broken)
}

fn broken(position: u64, reason: String) -> Error {
    Error::corrupt(
        0,
        ProblemKind::Undecodable,
        format!("stream message {position}: {reason}"),
    )
}

/// Checks a version 2 body's shape: a genesis holds nothing else; a batch holds at least
/// one entry, none numbered 0, each block's header sound, together one run of records.
fn shape(wire: WireV2, position: u64) -> Result<Message, Error> {
    let bad = |seq: u64, reason: String| {
        Error::corrupt(
            seq,
            ProblemKind::Undecodable,
            format!("stream message {position}: {reason}"),
        )
    };
    if wire.magic != MAGIC || wire.version != VERSION {
        return Err(bad(0, "not a keyledger message".into()));
    }
    if wire.origin.len() > MAX_ORIGIN_BYTES {
        return Err(bad(0, "its origin is longer than 64 bytes".into()));
    }
    match wire.kind {
        KIND_GENESIS if wire.entries.is_empty() && wire.bootstrap == 0 => {
            return Ok(Message::Genesis {
                origin: wire.origin,
                stream_id: wire.stream_id,
                created: wire.created,
            });
        }
        KIND_GENESIS => return Err(bad(0, "a genesis that holds entries".into())),
        KIND_ENTRIES if wire.created == 0 => {}
        KIND_ENTRIES => return Err(bad(0, "a batch that names a creation time".into())),
        other => return Err(bad(0, format!("unknown kind {other}"))),
    }
    let first = wire
        .entries
        .first()
        .map(|e| e.0)
        .ok_or_else(|| bad(0, "it holds no entries".into()))?;
    if first == 0 {
        return Err(bad(0, "its first record is numbered 0".into()));
    }
    let mut next = first;
    for (key, entry) in &wire.entries {
        if *key != next {
            return Err(bad(
                next,
                format!("record {next} is followed by an entry at {key}"),
            ));
        }
        // The count from the header: the ledger checks each entry whole (its checksum
        // included) when it accepts it, so it is not hashed twice.
        let records = entry_record_count(*key, entry).map_err(|e| bad(*key, e.to_string()))?;
        next = key
            .checked_add(records)
            .ok_or_else(|| bad(*key, "its sequence numbers overflow".into()))?;
    }
    Ok(Message::Entries(Batch {
        origin: wire.origin,
        bootstrap: wire.bootstrap,
        entries: wire.entries,
        first,
        last: next - 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::block::BlockWriter;

    fn block_at(first: u64, records: usize) -> Entry {
        let mut block = BlockWriter::new(first);
        for i in 0..records {
            block.push(format!("record {i}").as_bytes());
        }
        block.finish()
    }

    fn chain() -> Chain {
        Chain::new(Some(&crate::chain::ChainKey::from_bytes([9; 32])))
    }

    const ID: [u8; 16] = [5; 16];

    /// A batch keeps its entries byte for byte; every byte is sealed; no other key (nor
    /// none) makes one that passes; its shape is checked.
    #[test]
    fn a_batch_round_trips_and_a_misshapen_one_is_refused() {
        let chain = chain();
        let entries = vec![block_at(7, 3), block_at(10, 2)];
        let bytes = encode_entries("host-a", ID, 4, 0, &entries, &chain).unwrap();
        let Ok(Message::Entries(decoded)) = decode(&bytes, 4, Some(&ID), &chain) else {
            panic!("does not decode");
        };
        assert_eq!((decoded.first, decoded.last), (7, 11));
        assert_eq!(decoded.entries, entries);
        assert_eq!(decoded.origin, "host-a");
        assert!(encode_entries(&"h".repeat(65), ID, 4, 0, &entries, &chain).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(decode(&bad, 4, Some(&ID), &chain), Err(Unusable::Foreign(_))),
                "byte {i}"
            );
        }
        let public = encode_entries("host-a", ID, 4, 0, &entries, &Chain::new(None)).unwrap();
        assert!(matches!(
            decode(&public, 4, Some(&ID), &chain),
            Err(Unusable::Foreign(_))
        ));
        assert!(matches!(
            decode(b"x", 4, Some(&ID), &chain),
            Err(Unusable::Foreign(_))
        ));

        // Sealed by a key holder and still wrong: broken, not foreign.
        let broken = |entries: &[Entry]| {
            let bytes = encode_entries("host-a", ID, 4, 0, entries, &chain).unwrap();
            matches!(decode(&bytes, 4, Some(&ID), &chain), Err(Unusable::Broken(_)))
        };
        assert!(broken(&[block_at(7, 3), block_at(11, 2)]), "a gap");
        assert!(broken(&[]), "no entries");
        assert!(broken(&[block_at(0, 1)]), "record 0");
        let mut newer = encode_entries("host-a", ID, 4, 0, &entries, &chain).unwrap();
        newer[8] = 3;
        let body = newer.len() - SEAL_LEN;
        let resealed = chain.seal(SealDomain::Message, &newer[..body]);
        newer[body..].copy_from_slice(&resealed);
        assert!(matches!(
            decode(&newer, 4, Some(&ID), &chain),
            Err(Unusable::Broken(Error::UnsupportedVersion { found: 3, .. }))
        ));
    }

    /// A genuine message is the fleet's only in its own stream and at its own position:
    /// replayed anywhere else, it is foreign.
    #[test]
    fn a_message_replayed_into_another_stream_or_position_is_foreign() {
        let chain = chain();
        let bytes = encode_entries("host-a", ID, 4, 0, &[block_at(7, 3)], &chain).unwrap();
        assert!(decode(&bytes, 4, Some(&ID), &chain).is_ok());
        assert!(decode(&bytes, 4, None, &chain).is_ok(), "stream not yet known");
        for (position, stream) in [(5, ID), (3, ID), (4, [6; 16])] {
            let Err(Unusable::Foreign(why)) = decode(&bytes, position, Some(&stream), &chain) else {
                panic!("{position} {stream:?}");
            };
            assert!(why.contains("sealed for"), "{why}");
        }
    }

    #[test]
    fn a_genesis_round_trips_and_binds_its_position() {
        let chain = chain();
        let identity = Identity {
            stream_id: ID,
            created: 1_700_000_000_123_456_789,
            position: 1,
        };
        let bytes = encode_genesis("host-a", &identity, &chain).unwrap();
        assert_eq!(
            decode(&bytes, 1, None, &chain).unwrap(),
            Message::Genesis {
                origin: "host-a".into(),
                stream_id: ID,
                created: identity.created
            }
        );
        assert!(matches!(
            decode(&bytes, 2, None, &chain),
            Err(Unusable::Foreign(_))
        ));
    }

    /// The fixtures: a version 2 genesis and batch decode as written; a version 1 message
    /// (0.4.0) is recognised as one.
    #[test]
    fn fixtures_of_each_version_decode() {
        let chain = chain();
        let fixture = |name: &str| {
            std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let genesis = fixture("message-v2-genesis.bin");
        assert!(matches!(
            decode(&genesis, 1, None, &chain),
            Ok(Message::Genesis {
                stream_id: ID,
                created: 1_700_000_000_123_456_789,
                ..
            })
        ));
        let batch = fixture("message-v2-batch.bin");
        let Ok(Message::Entries(batch)) = decode(&batch, 2, Some(&ID), &chain) else {
            panic!("the version 2 batch fixture does not decode");
        };
        assert_eq!((batch.first, batch.last, batch.origin.as_str()), (1, 2, "host-a"));
        let v1 = fixture("message-v1.bin");
        assert!(matches!(decode(&v1, 1, None, &chain), Err(Unusable::Legacy)));
    }
}
