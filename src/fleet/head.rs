//! A host's head as it announces it in the heads bucket: its format (version 2, sealed
//! with the chain key over the host id it is stored under and the stream it is about) and
//! the reasons an entry counts for nothing.
//!
//! This module only encodes, seals and checks bytes; it never talks to the server.

use crate::chain::Chain;
use crate::chain::SealDomain;

/// A host's applied head and its lease terms, as it announces them to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostHead {
    /// Random per process start: heads of an earlier run never pass for this run's.
    pub(crate) run: u64,
    /// Counts this run's announcements: a replayed older one is recognized.
    pub(crate) counter: u64,
    /// The sequence number of its last applied record.
    pub(crate) seq: u64,
    /// That record's chain hash (zeros before the first).
    pub(crate) hash: [u8; 32],
    /// The stream position of the last message it applied.
    pub(crate) position: u64,
    /// When it announced this, by its clock (microseconds since the Unix epoch).
    pub(crate) at: i64,
    /// Microseconds since it last heard from the stream (0 while connected).
    pub(crate) stale_for: u64,
    /// Whether it stopped writing (a rogue or diverging message).
    pub(crate) halted: bool,
    /// Whether it left the fleet: it verifies no key any more.
    pub(crate) leaving: bool,
    /// Whether it fences itself (rejects every key) once unheard for its lease; false for
    /// a host started with `serve_past_lease`, which rejects only past `limit`.
    pub(crate) fences: bool,
    /// Its lease, in microseconds: silent longer, it is no longer live.
    pub(crate) lease: u64,
    /// Microseconds after its last acknowledged announcement at which it rejects every
    /// key: its lease if it fences, its `stale_reject` if it does not.
    pub(crate) limit: u64,
}

const MAGIC: [u8; 8] = *b"KLHOST\x00\x00";
/// The version this build writes; version 1 (unsealed) is recognized and counts for
/// nothing.
const VERSION: u16 = 2;
/// Magic, version, run, counter, seq, hash, position, at, stale_for, three flags, lease,
/// limit.
const BODY_LEN: usize = 8 + 2 + 8 + 8 + 8 + 32 + 8 + 8 + 8 + 1 + 1 + 1 + 8 + 8;
/// The body and its seal.
pub(crate) const HEAD_LEN: usize = BODY_LEN + 32;

/// Why a heads-bucket entry counts for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a keyledger host head (wrong magic or length, a flag that is not 0 or 1).
    Undecodable,
    /// A version 1 head: unsealed, so anyone could have written it.
    Version1,
    /// A version this build does not know.
    Newer(u16),
    /// The seal does not verify for this chain key, this entry's name and this stream:
    /// forged, copied from another host's name, or from another stream.
    Seal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Undecodable => f.write_str("not a keyledger host head"),
            Refused::Version1 => f.write_str("an unsealed version 1 host head"),
            Refused::Newer(v) => write!(f, "a host head of version {v}, newer than this build knows"),
            Refused::Seal => f.write_str(
                "its seal does not verify for this chain key, this host id and this stream \
                 (forged, copied from another host's name, or from another stream)",
            ),
        }
    }
}

/// What the seal covers besides the body: the name the head is stored under and the
/// stream it is about, so that a genuine head moved to another name or stream fails.
fn sealed_input(host: &str, stream_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(8 + host.len() + 16 + body.len());
    input.extend_from_slice(&(host.len() as u64).to_le_bytes());
    input.extend_from_slice(host.as_bytes());
    input.extend_from_slice(stream_id);
    input.extend_from_slice(body);
    input
}

/// The sealed bytes of `head`, stored under `host` for the stream `stream_id`.
pub(crate) fn encode(head: &HostHead, host: &str, stream_id: &[u8; 16], chain: &Chain) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for n in [head.run, head.counter, head.seq] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&head.hash);
    out.extend_from_slice(&head.position.to_le_bytes());
    out.extend_from_slice(&head.at.to_le_bytes());
    out.extend_from_slice(&head.stale_for.to_le_bytes());
    out.extend([
        u8::from(head.halted),
        u8::from(head.leaving),
        u8::from(head.fences),
    ]);
    out.extend_from_slice(&head.lease.to_le_bytes());
    out.extend_from_slice(&head.limit.to_le_bytes());
    let seal = chain.seal(SealDomain::HostHead, &sealed_input(host, stream_id, &out));
    out.extend_from_slice(&seal);
    out
}

/// Reads little-endian fields off the front of a slice of known length.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some((head, rest)) = self.0.split_first_chunk::<N>() {
            out = *head;
            self.0 = rest;
        }
        out
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    fn flag(&mut self) -> Option<bool> {
        match self.take::<1>()[0] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

/// The head in `bytes`, stored under `host`, if it is a version 2 head sealed with this
/// chain for that name and the stream `stream_id`. Total: any bytes give a head or a
/// reason.
pub(crate) fn decode(
    bytes: &[u8],
    host: &str,
    stream_id: &[u8; 16],
    chain: &Chain,
) -> Result<HostHead, Refused> {
    let Some((magic, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(Refused::Undecodable);
    };
    let Some((version, _)) = rest.split_first_chunk::<2>() else {
        return Err(Refused::Undecodable);
    };
    if *magic != MAGIC {
        return Err(Refused::Undecodable);
    }
    match u16::from_le_bytes(*version) {
        1 => return Err(Refused::Version1),
        VERSION => {}
        newer => return Err(Refused::Newer(newer)),
    }
    if bytes.len() != HEAD_LEN {
        return Err(Refused::Undecodable);
    }
    let (body, seal) = bytes.split_at(BODY_LEN);
    if !chain.seal_matches(SealDomain::HostHead, &sealed_input(host, stream_id, body), seal) {
        return Err(Refused::Seal);
    }
    let mut f = Fields(&body[10..]);
    let run = f.u64();
    let counter = f.u64();
    let seq = f.u64();
    let hash = f.take::<32>();
    let position = f.u64();
    let at = i64::from_le_bytes(f.take());
    let stale_for = f.u64();
    let (Some(halted), Some(leaving), Some(fences)) = (f.flag(), f.flag(), f.flag()) else {
        return Err(Refused::Undecodable);
    };
    Ok(HostHead {
        run,
        counter,
        seq,
        hash,
        position,
        at,
        stale_for,
        halted,
        leaving,
        fences,
        lease: f.u64(),
        limit: f.u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainKey;

    fn chain() -> Chain {
        Chain::new(Some(&ChainKey::from_bytes([7; 32])))
    }

    fn head() -> HostHead {
        HostHead {
            run: 0x0102_0304_0506_0708,
            counter: 9,
            seq: 42,
            hash: [7; 32],
            position: 9,
            at: 1_700_000_000_000_000,
            stale_for: 3,
            halted: true,
            leaving: false,
            fences: true,
            lease: 3_000_000,
            limit: 3_000_000,
        }
    }

    const STREAM: [u8; 16] = [5; 16];

    #[test]
    fn a_sealed_head_round_trips_under_its_own_name_and_stream_only() {
        let c = chain();
        let bytes = encode(&head(), "a", &STREAM, &c);
        assert_eq!(bytes.len(), HEAD_LEN);
        assert_eq!(decode(&bytes, "a", &STREAM, &c), Ok(head()));
        assert_eq!(
            decode(&bytes, "b", &STREAM, &c),
            Err(Refused::Seal),
            "another name"
        );
        assert_eq!(
            decode(&bytes, "a", &[6; 16], &c),
            Err(Refused::Seal),
            "another stream"
        );
        let other = Chain::new(Some(&ChainKey::from_bytes([8; 32])));
        assert_eq!(
            decode(&bytes, "a", &STREAM, &other),
            Err(Refused::Seal),
            "another key"
        );
    }

    #[test]
    fn a_forged_or_damaged_head_counts_for_nothing() {
        let c = chain();
        let bytes = encode(&head(), "a", &STREAM, &c);
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert!(decode(&flipped, "a", &STREAM, &c).is_err(), "byte {i}");
        }
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], "a", &STREAM, &c),
            Err(Refused::Undecodable)
        );
        assert_eq!(decode(b"x", "a", &STREAM, &c), Err(Refused::Undecodable));
        let mut v3 = bytes.clone();
        v3[8] = 3;
        assert_eq!(decode(&v3, "a", &STREAM, &c), Err(Refused::Newer(3)));
        // A flag that is not 0 or 1, sealed by a key holder, still does not decode.
        let mut odd = bytes[..BODY_LEN].to_vec();
        odd[BODY_LEN - 17] = 2;
        let seal = c.seal(SealDomain::HostHead, &sealed_input("a", &STREAM, &odd));
        odd.extend_from_slice(&seal);
        assert_eq!(decode(&odd, "a", &STREAM, &c), Err(Refused::Undecodable));
    }

    /// The version 1 fixture (what 0.4.0 hosts announce) is recognized and refused; the
    /// version 2 fixture keeps decoding.
    #[test]
    fn fixtures_of_both_versions_decode_as_documented() {
        let v1 = include_bytes!("../../tests/fixtures/host-head-v1.bin");
        assert_eq!(decode(v1, "a", &STREAM, &chain()), Err(Refused::Version1));
        let v2 = include_bytes!("../../tests/fixtures/host-head-v2.bin");
        assert!(matches!(decode(v2, "a", &STREAM, &chain()), Ok(h) if h == head()));
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode(&bytes, "a", &STREAM, &chain());
        }
    }
}
