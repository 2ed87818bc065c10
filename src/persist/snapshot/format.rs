//! The projection snapshot's format (version 4), sealed with the chain. Any damage, foreign
//! seal or other version is an error, never a partial snapshot.

use bincode::Options;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::chain::Chain;
use crate::chain::Head;
use crate::codec::primitives::NetV1;
use crate::codec::primitives::le4;
use crate::codec::primitives::le16;
use crate::codec::primitives::le32;
use crate::codec::primitives::magic_version;
use crate::codec::primitives::options;
use crate::codec::primitives::options_unbounded;
use crate::codec::record::CreditsV1;
use crate::codec::record::LimitV1;
use crate::model::actor::ActorRole;
use crate::model::credits::Credits;
use crate::model::error::Error;
use crate::model::key::KeySource;
use crate::model::limit::RateLimit;
use crate::model::owner::Meta;
use crate::model::problem::ProblemKind;
use crate::model::record::EventKind;
use crate::projection::Change;
use crate::projection::GraceData;
use crate::projection::Owner;
use crate::projection::Roll;
use crate::projection::Row;
use crate::projection::SlotData;
use crate::projection::SnapshotData;
use crate::projection::credits::CreditsData;

const SNAPSHOT_MAGIC: [u8; 8] = *b"KLSNAP\x00\x00";
/// Largest snapshot written or read (about 40 million keys).
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;
/// The snapshot format this build writes and reads. A snapshot of another version is
/// ignored (the log is replayed in full, and a new snapshot written).
const SNAPSHOT_VERSION: u16 = 4;

/// Version 3 added the person each admin key acts as and the rolled-out secrets; version
/// 4 adds rate limits (each key's, each audit row's, and the interned lists they name)
/// and credits (what the log set of each live key's, and the values audit rows name),
/// and keys' external ids and metadata (the owners table each key names) with updates.
#[derive(Serialize, Deserialize)]
struct SnapshotV4 {
    magic: [u8; 8],
    version: u16,
    seq: u64,
    #[serde(with = "le32")]
    hash: [u8; 32],
    at: i64,
    actors: Vec<String>,
    role_sets: Vec<Vec<String>>,
    slots: Vec<SlotV4>,
    rows: Vec<RowV3>,
    nets: Vec<NetV1>,
    whitelist_sets: Vec<Vec<NetV1>>,
    rolls: Vec<RollV1>,
    graces: Vec<GraceV1>,
    rolled_out: Vec<PrefixV1>,
    /// List 0 is the empty one.
    limit_lists: Vec<Vec<LimitV1>>,
    /// Entry 0 is none.
    credit_log: Vec<Option<CreditsV1>>,
    /// Every external id and metadata a key had; entry 0 is neither.
    owners: Vec<OwnerV1>,
    /// Every update, in the order of the log.
    changes: Vec<ChangeV1>,
}

/// A key's external id and metadata (canonical JSON text).
#[derive(Serialize, Deserialize)]
struct OwnerV1 {
    external_id: Option<String>,
    meta: Option<String>,
}

/// An update: each field it changed, before and after (names; role set indices; owners
/// entries).
#[derive(Serialize, Deserialize)]
struct ChangeV1 {
    name: Option<(String, String)>,
    roles: Option<(u32, u32)>,
    owner: Option<(u32, u32)>,
}

/// What the log set of a live key's credits.
#[derive(Serialize, Deserialize)]
struct SlotCreditsV1 {
    set: CreditsV1,
    topped: u64,
    anchor: i64,
    set_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct PrefixV1(#[serde(with = "le16")] [u8; 16]);

/// A key; its name is borrowed while it is written.
#[derive(Serialize, Deserialize)]
struct SlotV4<N = String> {
    #[serde(with = "le16")]
    hash: [u8; 16],
    id: u64,
    name: N,
    roles: u32,
    #[serde(with = "le4")]
    tail: [u8; 4],
    whitelist: u32,
    created: u32,
    /// `u32::MAX` for a live key.
    deleted: u32,
    expires_at: Option<i64>,
    disabled: bool,
    source: u8,
    /// The actor index of the person an admin key was made for; `u32::MAX` for none.
    acts_for: u32,
    /// Its rate limits' list.
    limits: u32,
    credits: Option<SlotCreditsV1>,
    /// Its owners entry (0: no external id nor metadata).
    owner: u32,
}

#[derive(Serialize, Deserialize)]
struct RowV3 {
    at: i64,
    actor: u32,
    role: u8,
    kind: u8,
    slot: u32,
    nets: u32,
    via: u32,
    limits: u32,
}

#[derive(Serialize, Deserialize)]
struct RollV1 {
    #[serde(with = "le4")]
    before: [u8; 4],
    #[serde(with = "le4")]
    after: [u8; 4],
    until: i64,
}

#[derive(Serialize, Deserialize)]
struct GraceV1 {
    key: u32,
    #[serde(with = "le16")]
    hash: [u8; 16],
    until: i64,
}

fn kind_code(k: EventKind) -> u8 {
    EventKind::ALL
        .iter()
        .position(|&x| x == k)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn kind_from_code(c: u8) -> Option<EventKind> {
    EventKind::ALL.get(usize::from(c)).copied()
}

/// A sequence serialized from a slice, each element mapped on the way: the same bytes as
/// a `Vec` of the mapped elements, without making it.
struct Seq<'a, T, F>(&'a [T], F);

impl<'a, T, W: Serialize, F: Fn(&'a T) -> W> Serialize for Seq<'a, T, F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

/// A 32-byte hash as [`SnapshotV4`] writes it.
#[derive(Serialize)]
struct Hash32(#[serde(with = "le32")] [u8; 32]);

/// [`SnapshotV4`]'s bytes, written from the projection's flat copy as they go: field for
/// field the same encoding, without a second copy of the state in memory.
struct Encoding<'a>(&'a SnapshotData);

impl Serialize for Encoding<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let d = self.0;
        let mut st = s.serialize_struct("SnapshotV4", 19)?;
        st.serialize_field("magic", &SNAPSHOT_MAGIC)?;
        st.serialize_field("version", &SNAPSHOT_VERSION)?;
        st.serialize_field("seq", &d.head.seq)?;
        st.serialize_field("hash", &Hash32(d.head.hash))?;
        st.serialize_field("at", &d.head.at)?;
        st.serialize_field("actors", &d.actors)?;
        st.serialize_field("role_sets", &d.role_sets)?;
        st.serialize_field("slots", &Seq(&d.slots, slot_v4))?;
        st.serialize_field(
            "rows",
            &Seq(&d.rows, |r: &Row| RowV3 {
                at: r.at,
                actor: r.actor,
                role: r.role.code(),
                kind: kind_code(r.kind),
                slot: r.slot,
                nets: r.nets,
                via: r.via,
                limits: r.limits,
            }),
        )?;
        st.serialize_field("nets", &Seq(&d.nets, NetV1::from))?;
        st.serialize_field("whitelist_sets", &Seq(&d.whitelist_sets, net_set))?;
        st.serialize_field(
            "rolls",
            &Seq(&d.rolls, |r: &Roll| RollV1 {
                before: r.before,
                after: r.after,
                until: r.until,
            }),
        )?;
        st.serialize_field(
            "graces",
            &Seq(&d.graces, |g: &GraceData| GraceV1 {
                key: g.key,
                hash: g.hash,
                until: g.until,
            }),
        )?;
        st.serialize_field("rolled_out", &Seq(&d.rolled_out, |p: &[u8; 16]| PrefixV1(*p)))?;
        st.serialize_field("limit_lists", &Seq(&d.limit_lists, limit_list))?;
        st.serialize_field(
            "credit_log",
            &Seq(&d.credit_log, |c: &Option<Credits>| {
                c.as_ref().map(CreditsV1::from)
            }),
        )?;
        st.serialize_field(
            "owners",
            &Seq(&d.owners, |o: &Owner| OwnerV1 {
                external_id: o.external_id.as_deref().map(str::to_owned),
                meta: o.meta.as_ref().map(|m| m.as_str().to_owned()),
            }),
        )?;
        st.serialize_field(
            "changes",
            &Seq(&d.changes, |c: &Change| ChangeV1 {
                name: c.name.clone(),
                roles: c.roles,
                owner: c.owner,
            }),
        )?;
        st.end()
    }
}

fn slot_v4(s: &SlotData) -> SlotV4<&str> {
    SlotV4 {
        hash: s.hash,
        id: s.id,
        name: s.name.as_str(),
        roles: s.roles,
        tail: s.tail,
        whitelist: s.whitelist,
        created: s.created,
        deleted: s.deleted.unwrap_or(u32::MAX),
        expires_at: s.expires_at,
        disabled: s.disabled,
        source: s.source.code(),
        acts_for: s.acts_for.unwrap_or(u32::MAX),
        limits: s.limits,
        credits: s.credits.as_ref().map(|c| SlotCreditsV1 {
            set: CreditsV1::from(&c.set),
            topped: c.topped,
            anchor: c.anchor,
            set_seq: c.set_seq,
        }),
        owner: s.owner,
    }
}

type NetSet<'a> = Seq<'a, IpNet, fn(&IpNet) -> NetV1>;

// Maps an element of `Vec<Vec<_>>` as it is, for [`Seq`].
#[allow(clippy::ptr_arg)]
fn net_set(set: &Vec<IpNet>) -> NetSet<'_> {
    Seq(set, |n| NetV1::from(n))
}

type LimitList<'a> = Seq<'a, RateLimit, fn(&RateLimit) -> LimitV1>;

#[allow(clippy::ptr_arg)]
fn limit_list(list: &Vec<RateLimit>) -> LimitList<'_> {
    Seq(list, |l| LimitV1::from(l))
}

/// Counts and seals what passes through to the file.
struct Sealing<W> {
    out: W,
    hasher: blake3::Hasher,
    written: usize,
}

impl<W: std::io::Write> std::io::Write for Sealing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.written + buf.len()) as u64 > MAX_SNAPSHOT_BYTES {
            return Err(std::io::Error::other(format!(
                "a snapshot larger than {MAX_SNAPSHOT_BYTES} bytes"
            )));
        }
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes a projection snapshot to `out` as it encodes it, then its seal (`chain`'s keyed
/// hash of every byte before: a keyed chain makes it unforgeable without the key; the
/// public one detects damage). Returns the bytes written.
pub(crate) fn write_snapshot(
    data: &SnapshotData,
    chain: &Chain,
    out: &mut dyn std::io::Write,
) -> Result<usize, Error> {
    // bincode writes a field at a time: gathered first, so that the seal hashes (and the
    // file takes) large pieces.
    let mut gathered = std::io::BufWriter::with_capacity(
        256 << 10,
        Sealing {
            out,
            hasher: chain.hasher(),
            written: 0,
        },
    );
    options_unbounded()
        .serialize_into(&mut gathered, &Encoding(data))
        .map_err(|e| match *e {
            bincode::ErrorKind::Io(io) => Error::Io(io),
            other => Error::invalid("snapshot", other.to_string()),
        })?;
    let sealing = gathered.into_inner().map_err(|e| Error::Io(e.into_error()))?;
    let seal = *sealing.hasher.finalize().as_bytes();
    let out = sealing.out;
    out.write_all(&seal)?;
    out.flush()?;
    Ok(sealing.written + seal.len())
}

/// Encodes a projection snapshot in memory, as [`write_snapshot`] writes it.
pub(crate) fn encode_snapshot(data: &SnapshotData, chain: &Chain) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    write_snapshot(data, chain, &mut bytes)?;
    Ok(bytes)
}

/// Decodes a snapshot; any damage, a foreign seal or another version is an error (the
/// caller then replays the whole log).
pub(crate) fn decode_snapshot(bytes: &[u8], chain: &Chain) -> Result<SnapshotData, Error> {
    let bad = |reason: String| Error::corrupt(0, ProblemKind::Snapshot, format!("snapshot: {reason}"));
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or_else(|| bad("too short".into()))?;
    let (body, seal) = bytes.split_at(body_len);
    if chain.hash(body) != seal {
        return Err(bad(
            "seal does not match (damaged, or written with another chain key)".into(),
        ));
    }
    if magic_version(body, &SNAPSHOT_MAGIC, SNAPSHOT_VERSION..=SNAPSHOT_VERSION)?.is_none() {
        return Err(bad("not a snapshot".into()));
    }
    let wire: SnapshotV4 = options(body.len() as u64)
        .deserialize(body)
        .map_err(|e| bad(e.to_string()))?;
    let net = |n: NetV1| IpNet::try_from(n).map_err(&bad);
    let slots = wire
        .slots
        .into_iter()
        .map(|s| {
            Ok(SlotData {
                hash: s.hash,
                id: s.id,
                name: s.name,
                roles: s.roles,
                tail: s.tail,
                whitelist: s.whitelist,
                created: s.created,
                deleted: (s.deleted != u32::MAX).then_some(s.deleted),
                expires_at: s.expires_at,
                disabled: s.disabled,
                source: KeySource::from_code(s.source).ok_or_else(|| bad("bad key source".into()))?,
                acts_for: (s.acts_for != u32::MAX).then_some(s.acts_for),
                limits: s.limits,
                credits: s
                    .credits
                    .map(|c| {
                        Ok::<_, Error>(CreditsData {
                            set: c.set.decode().map_err(|why| bad(why.into()))?,
                            topped: c.topped,
                            anchor: c.anchor,
                            set_seq: c.set_seq,
                        })
                    })
                    .transpose()?,
                owner: s.owner,
            })
        })
        .collect::<Result<_, Error>>()?;
    let rows = wire
        .rows
        .into_iter()
        .map(|r| {
            Ok(Row {
                at: r.at,
                actor: r.actor,
                role: ActorRole::from_code(r.role).ok_or_else(|| bad("bad role".into()))?,
                kind: kind_from_code(r.kind).ok_or_else(|| bad("bad kind".into()))?,
                slot: r.slot,
                nets: r.nets,
                via: r.via,
                limits: r.limits,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(SnapshotData {
        head: Head {
            seq: wire.seq,
            hash: wire.hash,
            at: wire.at,
        },
        actors: wire.actors,
        role_sets: wire.role_sets,
        slots,
        rows,
        nets: wire.nets.into_iter().map(net).collect::<Result<_, _>>()?,
        whitelist_sets: wire
            .whitelist_sets
            .into_iter()
            .map(|set| set.into_iter().map(net).collect::<Result<_, _>>())
            .collect::<Result<_, _>>()?,
        rolls: wire
            .rolls
            .into_iter()
            .map(|r| Roll {
                before: r.before,
                after: r.after,
                until: r.until,
            })
            .collect(),
        graces: wire
            .graces
            .into_iter()
            .map(|g| GraceData {
                key: g.key,
                hash: g.hash,
                until: g.until,
            })
            .collect(),
        rolled_out: wire.rolled_out.into_iter().map(|p| p.0).collect(),
        // Checked by the projection when it is rebuilt.
        limit_lists: wire
            .limit_lists
            .into_iter()
            .map(|list| list.into_iter().map(RateLimit::from).collect())
            .collect(),
        credit_log: wire
            .credit_log
            .into_iter()
            .map(|c| {
                c.map(CreditsV1::decode)
                    .transpose()
                    .map_err(|why| bad(why.into()))
            })
            .collect::<Result<_, _>>()?,
        owners: wire
            .owners
            .into_iter()
            .map(|o| {
                Ok::<_, Error>(Owner {
                    external_id: o.external_id.map(Into::into),
                    meta: o
                        .meta
                        .as_deref()
                        .map(Meta::stored)
                        .transpose()
                        .map_err(|e| bad(e.to_string()))?,
                })
            })
            .collect::<Result<_, _>>()?,
        changes: wire
            .changes
            .into_iter()
            .map(|c| Change {
                name: c.name,
                roles: c.roles,
                owner: c.owner,
            })
            .collect(),
    })
}
