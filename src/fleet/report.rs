//! A host's usage report as it publishes it on the fleet's usage subject: its format
//! (version 1, bincode with the crate's options, sealed with the chain key over the stream
//! it is about) and the reasons a message is not one. See `docs/design.md`, "Usage
//! report, version 1".
//!
//! This module only encodes, seals and checks bytes; it never talks to the server, and
//! decoding is total: any bytes give a report or a [`Refused`], never a panic, and never
//! more than [`MAX_REPORT_BYTES`] read.

use serde::{Deserialize, Serialize};

use crate::chain::Chain;
use crate::chain::SealDomain;
use crate::codec::primitives;
use crate::model::id::KeyId;
use crate::projection::share::Usage;

const MAGIC: [u8; 8] = *b"KLUSAGE\x00";
const VERSION: u16 = 1;
/// The most keys one report names; a host with more keys with traffic in one round sends
/// several reports for it.
pub(crate) const MAX_ENTRIES: usize = 8192;
/// The largest report, seal included: the header, [`MAX_ENTRIES`] entries of 24 bytes.
pub(crate) const MAX_REPORT_BYTES: usize = 256 * 1024;
const SEAL_LEN: usize = 32;
const MAX_HOST_LEN: usize = 64;

/// One report: a part of what host `host` admitted in round `tick`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) host: String,
    /// Random per process start.
    pub(crate) run: u64,
    /// This run's reports, from 1: a replayed one is recognized.
    pub(crate) counter: u64,
    /// The round it reports: the interval's number since the Unix epoch, by the host's
    /// clock.
    pub(crate) tick: u64,
    /// When it was sent, microseconds since the Unix epoch, by the host's clock.
    pub(crate) sent_at: i64,
    /// Whether it is the round's last part.
    pub(crate) last: bool,
    /// The keys with traffic: requests admitted under their limits, credits spent.
    pub(crate) usage: Vec<Usage>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    magic: [u8; 8],
    version: u16,
    stream_id: [u8; 16],
    host: String,
    run: u64,
    counter: u64,
    tick: u64,
    sent_at: i64,
    last: bool,
    entries: Vec<(u64, u64, u64)>,
}

/// Why a message on the usage subject is not a report of this fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Too large, not this format, or trailing bytes.
    Undecodable,
    /// A version this build does not know.
    Newer(u16),
    /// The seal does not verify with this chain key for this stream.
    Seal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Undecodable => f.write_str("not a usage report"),
            Refused::Newer(v) => write!(f, "a usage report of version {v}, newer than this build's"),
            Refused::Seal => f.write_str("its seal does not verify for this chain key and stream"),
        }
    }
}

/// The sealed bytes of `report` for the stream `stream_id`; at most [`MAX_ENTRIES`]
/// entries are written (the caller splits).
pub(crate) fn encode(report: &Report, stream_id: &[u8; 16], chain: &Chain) -> Vec<u8> {
    let wire = Wire {
        magic: MAGIC,
        version: VERSION,
        stream_id: *stream_id,
        host: report.host.clone(),
        run: report.run,
        counter: report.counter,
        tick: report.tick,
        sent_at: report.sent_at,
        last: report.last,
        entries: report
            .usage
            .iter()
            .take(MAX_ENTRIES)
            .map(|u| (u.key.0, u.requests, u.cost))
            .collect(),
    };
    let mut out =
        bincode::Options::serialize(primitives::options(MAX_REPORT_BYTES as u64), &wire).unwrap_or_default();
    let seal = chain.seal(SealDomain::UsageReport, &out);
    out.extend_from_slice(&seal);
    out
}

/// The report in `bytes`, if it is one of this fleet's: sealed with this chain key for
/// the stream `stream_id`, of a known version, well formed.
pub(crate) fn decode(bytes: &[u8], stream_id: &[u8; 16], chain: &Chain) -> Result<Report, Refused> {
    if bytes.len() > MAX_REPORT_BYTES || bytes.len() < SEAL_LEN + 10 {
        return Err(Refused::Undecodable);
    }
    let (body, seal) = bytes.split_at(bytes.len() - SEAL_LEN);
    if !chain.seal_matches(SealDomain::UsageReport, body, seal) {
        return Err(Refused::Seal);
    }
    match primitives::magic_version(body, &MAGIC, VERSION..=VERSION) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(Refused::Undecodable),
        Err(_) => return Err(Refused::Newer(primitives::version_of(&body[8..]).unwrap_or(0))),
    }
    let wire: Wire = bincode::Options::deserialize(primitives::options(MAX_REPORT_BYTES as u64), body)
        .map_err(|_| Refused::Undecodable)?;
    if wire.stream_id != *stream_id {
        return Err(Refused::Seal);
    }
    if wire.host.is_empty()
        || wire.host.len() > MAX_HOST_LEN
        || wire.entries.len() > MAX_ENTRIES
        || wire.counter == 0
    {
        return Err(Refused::Undecodable);
    }
    Ok(Report {
        host: wire.host,
        run: wire.run,
        counter: wire.counter,
        tick: wire.tick,
        sent_at: wire.sent_at,
        last: wire.last,
        usage: wire
            .entries
            .into_iter()
            .map(|(key, requests, cost)| Usage {
                key: KeyId(key),
                requests,
                cost,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainKey;

    const STREAM: [u8; 16] = [5; 16];

    fn chain() -> Chain {
        Chain::new(Some(&ChainKey::from_bytes([9; 32])))
    }

    fn report() -> Report {
        Report {
            host: "a".into(),
            run: 7,
            counter: 1,
            tick: 9_000_000_000,
            sent_at: 1_800_000_000_000_000,
            last: true,
            usage: vec![Usage {
                key: KeyId(42),
                requests: 3,
                cost: 5,
            }],
        }
    }

    #[test]
    fn a_sealed_report_round_trips_for_its_stream_only() {
        let bytes = encode(&report(), &STREAM, &chain());
        assert_eq!(decode(&bytes, &STREAM, &chain()), Ok(report()));
        assert_eq!(decode(&bytes, &[6; 16], &chain()), Err(Refused::Seal));
        let other = Chain::new(Some(&ChainKey::from_bytes([8; 32])));
        assert_eq!(decode(&bytes, &STREAM, &other), Err(Refused::Seal));
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped, &STREAM, &chain()), Err(Refused::Seal));
    }

    #[test]
    fn sealed_bodies_that_are_not_reports_are_refused_without_panicking() {
        let c = chain();
        let good = encode(&report(), &STREAM, &c);
        let body = &good[..good.len() - SEAL_LEN];
        let mut trailing = body.to_vec();
        trailing.push(0);
        let mut newer = body.to_vec();
        newer[8] = 2;
        for (bytes, want) in [
            (trailing, Refused::Undecodable),
            (newer, Refused::Newer(2)),
            (body[..body.len() - 3].to_vec(), Refused::Undecodable),
            (vec![0; 100], Refused::Undecodable),
        ] {
            let mut sealed = bytes.clone();
            sealed.extend_from_slice(&c.seal(SealDomain::UsageReport, &bytes));
            assert_eq!(decode(&sealed, &STREAM, &c), Err(want));
        }
        assert_eq!(decode(&[], &STREAM, &c), Err(Refused::Undecodable));
        assert_eq!(
            decode(&vec![0; MAX_REPORT_BYTES + 1], &STREAM, &c),
            Err(Refused::Undecodable)
        );
    }

    #[test]
    fn a_full_report_fits_the_size_limit() {
        let mut r = report();
        r.host = "h".repeat(MAX_HOST_LEN);
        r.usage = vec![r.usage[0]; MAX_ENTRIES + 5];
        let bytes = encode(&r, &STREAM, &chain());
        assert!(bytes.len() <= MAX_REPORT_BYTES);
        assert_eq!(
            decode(&bytes, &STREAM, &chain()).unwrap().usage.len(),
            MAX_ENTRIES
        );
    }
}
