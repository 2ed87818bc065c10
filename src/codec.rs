//! The byte encoding of every stored value; the only module that uses bincode.
//!
//! Encoding is bincode 1.3 with fixed-width little-endian integers (byte-compatible with
//! `bincode::serialize`). Decoding is total: any byte string yields a value or an error,
//! with a size limit, trailing bytes rejected and every field re-validated. It must never
//! panic and never allocate more than [`MAX_RECORD_BYTES`].

use bincode::Options;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::chain::{Chain, Head, SealDomain, StoredHead};
use crate::check::ProblemKind;
use crate::event::{Actor, ActorRole, Event, EventKind, KeyId, KeySource, Record};
use crate::projection::{GraceData, Roll, Row, SlotData, SnapshotData};
use crate::token::KeyHash;

/// The newest record format this build writes. A record is written in the lowest version
/// that can hold it (version 1 for the events it has), so that every record has exactly
/// one encoding; older versions keep decoding.
pub(crate) const RECORD_VERSION: u16 = 3;
/// No record may be larger; decoding stops at this many bytes.
pub(crate) const MAX_RECORD_BYTES: u64 = 64 * 1024;

pub(crate) fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(limit)
        .reject_trailing_bytes()
}

// Fixed-size byte arrays go on the wire as little-endian words: the same bytes as
// `[u8; N]`, decoded in 4 steps instead of 32 (bincode reads arrays element by element).
macro_rules! le_words {
    ($name:ident, $n:literal, $word:ty, $count:literal) => {
        mod $name {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            const W: usize = std::mem::size_of::<$word>();

            pub(super) fn serialize<S: Serializer>(bytes: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                let mut words = [0 as $word; $count];
                for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(W)) {
                    let mut b = [0u8; W];
                    b.copy_from_slice(chunk);
                    *word = <$word>::from_le_bytes(b);
                }
                words.serialize(s)
            }

            pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let words = <[$word; $count]>::deserialize(d)?;
                let mut bytes = [0u8; $n];
                for (chunk, word) in bytes.chunks_exact_mut(W).zip(words) {
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
                Ok(bytes)
            }
        }
    };
}

le_words!(le32, 32, u64, 4);
le_words!(le16, 16, u128, 1);
le_words!(le4, 4, u32, 1);

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    version: u16,
    seq: u64,
    at: i64,
    actor_id: String,
    actor_role: u8,
    event: EventV1,
    #[serde(with = "le32")]
    prev: [u8; 32],
}

/// Version 2 adds the admin key the actor acted through, and the lifecycle events.
#[derive(Serialize, Deserialize)]
struct RecordV2 {
    version: u16,
    seq: u64,
    at: i64,
    actor_id: String,
    actor_role: u8,
    via: Option<u64>,
    event: EventV2,
    #[serde(with = "le32")]
    prev: [u8; 32],
}

/// Version 3 has the fields of version 2, with an event enum of its own that holds only
/// what version 2 cannot: an admin key made for a person, and a person's revocation.
#[derive(Serialize, Deserialize)]
struct RecordV3 {
    version: u16,
    seq: u64,
    at: i64,
    actor_id: String,
    actor_role: u8,
    via: Option<u64>,
    event: EventV3,
    #[serde(with = "le32")]
    prev: [u8; 32],
}

#[derive(Serialize, Deserialize)]
enum EventV3 {
    /// Version 2's `Created`, then the person the admin key acts as.
    CreatedFor {
        id: u64,
        #[serde(with = "le32")]
        hash: [u8; 32],
        #[serde(with = "le4")]
        tail: [u8; 4],
        name: String,
        roles: Vec<String>,
        whitelist: Vec<NetV1>,
        expires_at: Option<i64>,
        source: u8,
        acts_for: String,
    },
    ActorRevoked {
        actor: String,
        with_keys: bool,
    },
}

#[derive(Serialize, Deserialize)]
enum EventV1 {
    Created {
        id: u64,
        #[serde(with = "le32")]
        hash: [u8; 32],
        #[serde(with = "le4")]
        tail: [u8; 4],
        name: String,
        roles: Vec<String>,
        whitelist: Vec<NetV1>,
    },
    Whitelisted {
        id: u64,
        net: NetV1,
    },
    Unwhitelisted {
        id: u64,
        net: NetV1,
    },
    Deleted {
        id: u64,
    },
}

#[derive(Serialize, Deserialize)]
enum EventV2 {
    Created {
        id: u64,
        #[serde(with = "le32")]
        hash: [u8; 32],
        #[serde(with = "le4")]
        tail: [u8; 4],
        name: String,
        roles: Vec<String>,
        whitelist: Vec<NetV1>,
        expires_at: Option<i64>,
        /// 0 generated, 1 adopted secret, 2 adopted by SHA-256 hash.
        source: u8,
    },
    Whitelisted {
        id: u64,
        net: NetV1,
    },
    Unwhitelisted {
        id: u64,
        net: NetV1,
    },
    Deleted {
        id: u64,
    },
    Rolled {
        id: u64,
        #[serde(with = "le32")]
        hash: [u8; 32],
        #[serde(with = "le4")]
        tail: [u8; 4],
        previous_valid_until: i64,
    },
    Disabled {
        id: u64,
    },
    Enabled {
        id: u64,
    },
}

impl From<EventV1> for EventV2 {
    fn from(e: EventV1) -> Self {
        match e {
            EventV1::Created {
                id,
                hash,
                tail,
                name,
                roles,
                whitelist,
            } => EventV2::Created {
                id,
                hash,
                tail,
                name,
                roles,
                whitelist,
                expires_at: None,
                source: KeySource::Generated.code(),
            },
            EventV1::Whitelisted { id, net } => EventV2::Whitelisted { id, net },
            EventV1::Unwhitelisted { id, net } => EventV2::Unwhitelisted { id, net },
            EventV1::Deleted { id } => EventV2::Deleted { id },
        }
    }
}

impl EventV2 {
    /// The same event in version 1, if version 1 can hold it.
    fn to_v1(&self) -> Option<EventV1> {
        Some(match self {
            EventV2::Created {
                id,
                hash,
                tail,
                name,
                roles,
                whitelist,
                expires_at: None,
                source: 0,
            } => EventV1::Created {
                id: *id,
                hash: *hash,
                tail: *tail,
                name: name.clone(),
                roles: roles.clone(),
                whitelist: whitelist.clone(),
            },
            EventV2::Whitelisted { id, net } => EventV1::Whitelisted { id: *id, net: *net },
            EventV2::Unwhitelisted { id, net } => EventV1::Unwhitelisted { id: *id, net: *net },
            EventV2::Deleted { id } => EventV1::Deleted { id: *id },
            _ => return None,
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Copy)]
enum NetV1 {
    V4(#[serde(with = "le4")] [u8; 4], u8),
    V6(#[serde(with = "le16")] [u8; 16], u8),
}

impl From<&IpNet> for NetV1 {
    fn from(net: &IpNet) -> Self {
        match net {
            IpNet::V4(n) => NetV1::V4(n.addr().octets(), n.prefix_len()),
            IpNet::V6(n) => NetV1::V6(n.addr().octets(), n.prefix_len()),
        }
    }
}

impl TryFrom<NetV1> for IpNet {
    type Error = String;

    fn try_from(net: NetV1) -> Result<Self, String> {
        match net {
            NetV1::V4(a, p) => Ipv4Net::new(a.into(), p).map(IpNet::V4),
            NetV1::V6(a, p) => Ipv6Net::new(a.into(), p).map(IpNet::V6),
        }
        .map_err(|e| e.to_string())
    }
}

/// An event on the wire: in version 2's enum, or only version 3's.
enum WireEvent {
    V2(EventV2),
    V3(EventV3),
}

fn event_to_wire(event: &Event) -> WireEvent {
    let nets = |list: &[IpNet]| list.iter().map(NetV1::from).collect();
    WireEvent::V2(match event {
        Event::Created {
            id,
            hash,
            tail,
            name,
            roles,
            whitelist,
            expires_at,
            source,
            acts_for: Some(person),
        } => {
            return WireEvent::V3(EventV3::CreatedFor {
                id: id.0,
                hash: hash.0,
                tail: *tail,
                name: name.clone(),
                roles: roles.clone(),
                whitelist: nets(whitelist),
                expires_at: *expires_at,
                source: source.code(),
                acts_for: person.clone(),
            });
        }
        Event::ActorRevoked { actor, with_keys } => {
            return WireEvent::V3(EventV3::ActorRevoked {
                actor: actor.clone(),
                with_keys: *with_keys,
            });
        }
        Event::Created {
            id,
            hash,
            tail,
            name,
            roles,
            whitelist,
            expires_at,
            source,
            acts_for: None,
        } => EventV2::Created {
            id: id.0,
            hash: hash.0,
            tail: *tail,
            name: name.clone(),
            roles: roles.clone(),
            whitelist: nets(whitelist),
            expires_at: *expires_at,
            source: source.code(),
        },
        Event::Whitelisted { id, net } => EventV2::Whitelisted {
            id: id.0,
            net: net.into(),
        },
        Event::Unwhitelisted { id, net } => EventV2::Unwhitelisted {
            id: id.0,
            net: net.into(),
        },
        Event::Deleted { id } => EventV2::Deleted { id: id.0 },
        Event::Rolled {
            id,
            hash,
            tail,
            previous_valid_until,
        } => EventV2::Rolled {
            id: id.0,
            hash: hash.0,
            tail: *tail,
            previous_valid_until: *previous_valid_until,
        },
        Event::Disabled { id } => EventV2::Disabled { id: id.0 },
        Event::Enabled { id } => EventV2::Enabled { id: id.0 },
    })
}

fn event_from_wire(event: EventV2, seq: u64) -> Result<Event, Error> {
    let bad = |reason: String| Error::corrupt(seq, ProblemKind::Undecodable, reason);
    let net = |n: NetV1| IpNet::try_from(n).map_err(|e| bad(format!("bad network: {e}")));
    Ok(match event {
        EventV2::Created {
            id,
            hash,
            tail,
            name,
            roles,
            whitelist,
            expires_at,
            source,
        } => Event::Created {
            id: KeyId(id),
            hash: KeyHash(hash),
            tail,
            name,
            roles,
            whitelist: whitelist.into_iter().map(net).collect::<Result<_, _>>()?,
            expires_at,
            source: KeySource::from_code(source)
                .ok_or_else(|| bad(format!("unknown key source {source}")))?,
            acts_for: None,
        },
        EventV2::Whitelisted { id, net: n } => Event::Whitelisted {
            id: KeyId(id),
            net: net(n)?,
        },
        EventV2::Unwhitelisted { id, net: n } => Event::Unwhitelisted {
            id: KeyId(id),
            net: net(n)?,
        },
        EventV2::Deleted { id } => Event::Deleted { id: KeyId(id) },
        EventV2::Rolled {
            id,
            hash,
            tail,
            previous_valid_until,
        } => Event::Rolled {
            id: KeyId(id),
            hash: KeyHash(hash),
            tail,
            previous_valid_until,
        },
        EventV2::Disabled { id } => Event::Disabled { id: KeyId(id) },
        EventV2::Enabled { id } => Event::Enabled { id: KeyId(id) },
    })
}

fn event_from_wire_v3(event: EventV3, seq: u64) -> Result<Event, Error> {
    Ok(match event {
        EventV3::CreatedFor {
            id,
            hash,
            tail,
            name,
            roles,
            whitelist,
            expires_at,
            source,
            acts_for,
        } => {
            let created = EventV2::Created {
                id,
                hash,
                tail,
                name,
                roles,
                whitelist,
                expires_at,
                source,
            };
            let mut event = event_from_wire(created, seq)?;
            if let Event::Created { acts_for: person, .. } = &mut event {
                *person = Some(acts_for);
            }
            event
        }
        EventV3::ActorRevoked { actor, with_keys } => Event::ActorRevoked { actor, with_keys },
    })
}

/// Encodes a record in the lowest version that holds it.
pub(crate) fn encode_record(r: &Record) -> Result<Vec<u8>, Error> {
    let encoded = match event_to_wire(&r.event) {
        WireEvent::V3(event) => options(MAX_RECORD_BYTES).serialize(&RecordV3 {
            version: 3,
            seq: r.seq,
            at: r.at,
            actor_id: r.actor.id().to_owned(),
            actor_role: r.actor.role().code(),
            via: r.via.map(|k| k.0),
            event,
            prev: r.prev,
        }),
        WireEvent::V2(event) => match (r.via, event.to_v1()) {
            (None, Some(event)) => options(MAX_RECORD_BYTES).serialize(&RecordV1 {
                version: 1,
                seq: r.seq,
                at: r.at,
                actor_id: r.actor.id().to_owned(),
                actor_role: r.actor.role().code(),
                event,
                prev: r.prev,
            }),
            (via, _) => options(MAX_RECORD_BYTES).serialize(&RecordV2 {
                version: 2,
                seq: r.seq,
                at: r.at,
                actor_id: r.actor.id().to_owned(),
                actor_role: r.actor.role().code(),
                via: via.map(|k| k.0),
                event,
                prev: r.prev,
            }),
        },
    };
    encoded.map_err(|e| Error::invalid("record", format!("cannot be encoded: {e}")))
}

/// Decodes and validates a record. `seq` is where it was found, for error messages.
pub(crate) fn decode_record(bytes: &[u8], seq: u64) -> Result<Record, Error> {
    let bad = |reason: String| Error::corrupt(seq, ProblemKind::Undecodable, reason);
    let version = match bytes {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => {
            return Err(bad(format!(
                "record is {} bytes, too short for a version",
                bytes.len()
            )));
        }
    };
    let undecodable = |e: bincode::Error| bad(format!("undecodable record: {e}"));
    let (wire, event) = match version {
        1 => {
            let v1: RecordV1 = options(MAX_RECORD_BYTES)
                .deserialize(bytes)
                .map_err(undecodable)?;
            let header = Header {
                seq: v1.seq,
                at: v1.at,
                actor_id: v1.actor_id,
                actor_role: v1.actor_role,
                via: None,
                prev: v1.prev,
            };
            (header, event_from_wire(v1.event.into(), seq)?)
        }
        2 => {
            let v2: RecordV2 = options(MAX_RECORD_BYTES)
                .deserialize(bytes)
                .map_err(undecodable)?;
            if v2.via.is_none() && v2.event.to_v1().is_some() {
                // Every record has one encoding: this one is written in version 1.
                return Err(bad("a version 2 record that version 1 holds".into()));
            }
            let header = Header {
                seq: v2.seq,
                at: v2.at,
                actor_id: v2.actor_id,
                actor_role: v2.actor_role,
                via: v2.via,
                prev: v2.prev,
            };
            (header, event_from_wire(v2.event, seq)?)
        }
        3 => {
            let v3: RecordV3 = options(MAX_RECORD_BYTES)
                .deserialize(bytes)
                .map_err(undecodable)?;
            let header = Header {
                seq: v3.seq,
                at: v3.at,
                actor_id: v3.actor_id,
                actor_role: v3.actor_role,
                via: v3.via,
                prev: v3.prev,
            };
            (header, event_from_wire_v3(v3.event, seq)?)
        }
        _ => {
            return Err(Error::UnsupportedVersion {
                found: u32::from(version),
                supported: u32::from(RECORD_VERSION),
            });
        }
    };
    let role = ActorRole::from_code(wire.actor_role)
        .ok_or_else(|| bad(format!("unknown actor role code {}", wire.actor_role)))?;
    let record = Record {
        seq: wire.seq,
        at: wire.at,
        actor: Actor::new(wire.actor_id, role),
        via: wire.via.map(KeyId),
        event,
        prev: wire.prev,
    };
    record
        .validate()
        .map_err(|e| Error::corrupt(seq, ProblemKind::Invalid, format!("invalid record: {e}")))?;
    Ok(record)
}

/// The fields every record version has, whatever its events.
struct Header {
    seq: u64,
    at: i64,
    actor_id: String,
    actor_role: u8,
    via: Option<u64>,
    prev: [u8; 32],
}

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
            if seal != chain.seal(SealDomain::Head, body) {
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

/// The little-endian `u16` every versioned value starts with.
fn version_of(bytes: &[u8]) -> Option<u16> {
    bytes.first_chunk::<2>().map(|v| u16::from_le_bytes(*v))
}

/// The first two bytes of a block; a format 1 entry starts with its record's version, 1.
const BLOCK_VERSION: u16 = 2;
/// Most records in one block.
pub(crate) const MAX_BLOCK_RECORDS: usize = 4096;
/// Largest block decoding accepts.
pub(crate) const MAX_BLOCK_BYTES: usize = 16 << 20;
/// The writer starts another block (in the same atomic batch) before a block grows past
/// this, unless it holds a single record. sled splits a leaf once it holds more than 16
/// entries and writes a page of more than about 128 KiB to a separate blob file (a new
/// file, synced, for every rewrite of that leaf): 17 blocks of 4 KiB keep every leaf
/// inline, which also keeps sled's memory per record low.
pub(crate) const BLOCK_TARGET_BYTES: usize = 4 << 10;
const BLOCK_HEADER_LEN: usize = 2 + 8 + 4;
const BLOCK_CHECKSUM_LEN: usize = 32;

/// Builds a block: a header (version u16, first sequence number u64, record count u32),
/// each record as a `u32` length and its bytes, then blake3 of everything before.
pub(crate) struct BlockWriter {
    first: u64,
    bytes: Vec<u8>,
    count: u32,
}

impl BlockWriter {
    pub(crate) fn new(first: u64) -> Self {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(&BLOCK_VERSION.to_le_bytes());
        bytes.extend_from_slice(&first.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        BlockWriter {
            first,
            bytes,
            count: 0,
        }
    }

    /// Whether a record of `record_len` bytes still fits the writer's target size.
    pub(crate) fn fits(&self, record_len: usize) -> bool {
        (self.count as usize) < MAX_BLOCK_RECORDS
            && self.bytes.len() + 4 + record_len + BLOCK_CHECKSUM_LEN <= BLOCK_TARGET_BYTES
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an encoded record (at most [`MAX_RECORD_BYTES`], checked by its encoder).
    pub(crate) fn push(&mut self, record: &[u8]) {
        self.bytes
            .extend_from_slice(&u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    /// The finished block as a log entry: its key and bytes.
    pub(crate) fn finish(mut self) -> (u64, Vec<u8>) {
        self.bytes[10..14].copy_from_slice(&self.count.to_le_bytes());
        let checksum = blake3::hash(&self.bytes);
        self.bytes.extend_from_slice(checksum.as_bytes());
        (self.first, self.bytes)
    }
}

/// Whether a log entry is a block (format 2) rather than a format 1 record.
pub(crate) fn is_block(entry: &[u8]) -> bool {
    version_of(entry) == Some(BLOCK_VERSION)
}

/// The records of one log entry, as `(sequence number, encoded record)`, in order: the
/// entry itself for a format 1 record, each record of a block. The records are not
/// decoded; a damaged block is an error.
pub(crate) fn entry_records(key: u64, bytes: &[u8]) -> Result<Vec<(u64, &[u8])>, Error> {
    let count = entry_record_count(key, bytes)? as usize;
    if !is_block(bytes) {
        // A format 1 record, or too short for a version: the record decoder says which.
        return Ok(vec![(key, bytes)]);
    }
    let bad = |reason: String| Error::corrupt(key, ProblemKind::Undecodable, reason);
    let (body, checksum) = bytes.split_at(bytes.len() - BLOCK_CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(bad("the block's checksum does not match: it is damaged".into()));
    }
    let mut rest = &body[BLOCK_HEADER_LEN..];
    let mut out = Vec::with_capacity(count);
    for seq in key..key + count as u64 {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad(format!("the block ends inside record {seq}")))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len as u64 > MAX_RECORD_BYTES || len > tail.len() {
            return Err(bad(format!("record {seq} in the block has a bad length")));
        }
        let (record, after) = tail.split_at(len);
        out.push((seq, record));
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the block's last record", rest.len())));
    }
    Ok(out)
}

/// How many records a log entry holds, from a block's header (its checksum and records
/// unchecked; [`entry_records`] checks them): 1 for a format 1 record.
pub(crate) fn entry_record_count(key: u64, bytes: &[u8]) -> Result<u64, Error> {
    let bad = |reason: String| Error::corrupt(key, ProblemKind::Undecodable, reason);
    match version_of(bytes) {
        Some(BLOCK_VERSION) => {}
        Some(found) if found > BLOCK_VERSION => {
            return Err(Error::UnsupportedVersion {
                found: u32::from(found),
                supported: u32::from(BLOCK_VERSION),
            });
        }
        _ => return Ok(1),
    }
    if bytes.len() < BLOCK_HEADER_LEN + BLOCK_CHECKSUM_LEN || bytes.len() > MAX_BLOCK_BYTES {
        return Err(bad(format!("a block of {} bytes is malformed", bytes.len())));
    }
    let first = u64::from_le_bytes(bytes[2..10].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(bytes[10..14].try_into().unwrap_or_default()) as usize;
    if first != key {
        return Err(bad(format!(
            "the block stored at {key} says it starts at {first}"
        )));
    }
    if count == 0 || count > MAX_BLOCK_RECORDS {
        return Err(bad(format!("a block of {count} records")));
    }
    Ok(count as u64)
}

/// The version after `magic` at the start of `bytes`: `None` if `magic` is not there; a
/// version outside `versions` is [`Error::UnsupportedVersion`].
pub(crate) fn magic_version(
    bytes: &[u8],
    magic: &[u8; 8],
    versions: std::ops::RangeInclusive<u16>,
) -> Result<Option<u16>, Error> {
    let Some((head, _)) = bytes.split_first_chunk::<10>() else {
        return Ok(None);
    };
    if head[..8] != magic[..] {
        return Ok(None);
    }
    match u16::from_le_bytes([head[8], head[9]]) {
        v if versions.contains(&v) => Ok(Some(v)),
        found => Err(Error::UnsupportedVersion {
            found: u32::from(found),
            supported: u32::from(*versions.end()),
        }),
    }
}

/// The first bytes of every export file.
const EXPORT_MAGIC: [u8; 8] = *b"KLEDGER\x00";
/// The export file format this build writes. Version 1 (an unsealed blake3 trailer) is
/// still read.
const EXPORT_VERSION: u16 = 2;
/// Length of an export file's header.
pub(crate) const EXPORT_HEADER_LEN: usize = 8 + 2 + 4 + 1 + 32 + 8;
/// Length of an export file's trailer.
pub(crate) const EXPORT_TRAILER_LEN: usize = 32;

/// What an export file says about itself.
pub(crate) struct ExportHeader {
    /// 1: the trailer is blake3 of the file before it; 2: it is the chain's backup seal.
    pub(crate) version: u16,
    pub(crate) keyed: bool,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) records: u64,
}

#[derive(Serialize, Deserialize)]
struct ExportHeaderV1 {
    magic: [u8; 8],
    version: u16,
    /// Ignored since version 2: records in a backup are records, whatever the store's
    /// layout.
    store_format: u32,
    keyed: u8,
    fingerprint: [u8; 32],
    records: u64,
}

/// Encodes an export file's header, in the current version.
pub(crate) fn encode_export_header(h: &ExportHeader) -> Result<Vec<u8>, Error> {
    let wire = ExportHeaderV1 {
        magic: EXPORT_MAGIC,
        version: EXPORT_VERSION,
        store_format: STORE_FORMAT,
        keyed: u8::from(h.keyed),
        fingerprint: h.fingerprint,
        records: h.records,
    };
    options(EXPORT_HEADER_LEN as u64)
        .serialize(&wire)
        .map_err(|e| Error::invalid("backup", e.to_string()))
}

/// Decodes an export file's header.
pub(crate) fn decode_export_header(bytes: &[u8; EXPORT_HEADER_LEN]) -> Result<ExportHeader, Error> {
    let bad = |reason: String| Error::invalid("backup", reason);
    let Some(version) = magic_version(bytes, &EXPORT_MAGIC, 1..=EXPORT_VERSION)? else {
        return Err(bad("not a keyledger backup".into()));
    };
    let wire: ExportHeaderV1 = options(EXPORT_HEADER_LEN as u64)
        .deserialize(bytes)
        .map_err(|e| bad(format!("bad header: {e}")))?;
    if version == 1 && wire.store_format != 1 {
        return Err(Error::UnsupportedVersion {
            found: wire.store_format,
            supported: 1,
        });
    }
    let keyed = match wire.keyed {
        0 => false,
        1 => true,
        other => return Err(bad(format!("bad keyed flag {other}"))),
    };
    Ok(ExportHeader {
        version,
        keyed,
        fingerprint: wire.fingerprint,
        records: wire.records,
    })
}

/// The store layout this build writes: 2, records in blocks under a sealed head. Stores
/// of format 1 (one record per entry, an unsealed anchor) are read as they are and become
/// format 2 at their first write.
pub(crate) const STORE_FORMAT: u32 = 2;

const SNAPSHOT_MAGIC: [u8; 8] = *b"KLSNAP\x00\x00";
/// Largest snapshot written or read (about 40 million keys).
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;
/// The snapshot format this build writes and reads. A snapshot of another version is
/// ignored (the log is replayed in full, and a new snapshot written).
const SNAPSHOT_VERSION: u16 = 3;

/// Version 3 adds the person each admin key acts as and the rolled-out secrets.
#[derive(Serialize, Deserialize)]
struct SnapshotV3 {
    magic: [u8; 8],
    version: u16,
    seq: u64,
    #[serde(with = "le32")]
    hash: [u8; 32],
    at: i64,
    actors: Vec<String>,
    role_sets: Vec<Vec<String>>,
    slots: Vec<SlotV3>,
    rows: Vec<RowV2>,
    nets: Vec<NetV1>,
    whitelist_sets: Vec<Vec<NetV1>>,
    rolls: Vec<RollV1>,
    graces: Vec<GraceV1>,
    rolled_out: Vec<PrefixV1>,
}

#[derive(Serialize, Deserialize)]
struct PrefixV1(#[serde(with = "le16")] [u8; 16]);

#[derive(Serialize, Deserialize)]
struct SlotV3 {
    #[serde(with = "le16")]
    hash: [u8; 16],
    id: u64,
    name: String,
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
}

#[derive(Serialize, Deserialize)]
struct RowV2 {
    at: i64,
    actor: u32,
    role: u8,
    kind: u8,
    slot: u32,
    nets: u32,
    via: u32,
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

/// Encodes a projection snapshot, sealed with `chain` (a keyed chain makes it unforgeable
/// without the key; the public one detects damage).
pub(crate) fn encode_snapshot(data: SnapshotData, chain: &Chain) -> Result<Vec<u8>, Error> {
    let wire = SnapshotV3 {
        magic: SNAPSHOT_MAGIC,
        version: SNAPSHOT_VERSION,
        seq: data.head.seq,
        hash: data.head.hash,
        at: data.head.at,
        actors: data.actors,
        role_sets: data.role_sets,
        slots: data
            .slots
            .into_iter()
            .map(|s| SlotV3 {
                hash: s.hash,
                id: s.id,
                name: s.name,
                roles: s.roles,
                tail: s.tail,
                whitelist: s.whitelist,
                created: s.created,
                deleted: s.deleted.unwrap_or(u32::MAX),
                expires_at: s.expires_at,
                disabled: s.disabled,
                source: s.source.code(),
                acts_for: s.acts_for.unwrap_or(u32::MAX),
            })
            .collect(),
        rows: data
            .rows
            .iter()
            .map(|r| RowV2 {
                at: r.at,
                actor: r.actor,
                role: r.role.code(),
                kind: kind_code(r.kind),
                slot: r.slot,
                nets: r.nets,
                via: r.via,
            })
            .collect(),
        nets: data.nets.iter().map(NetV1::from).collect(),
        whitelist_sets: data
            .whitelist_sets
            .iter()
            .map(|set| set.iter().map(NetV1::from).collect())
            .collect(),
        rolls: data
            .rolls
            .iter()
            .map(|r| RollV1 {
                before: r.before,
                after: r.after,
                until: r.until,
            })
            .collect(),
        graces: data
            .graces
            .iter()
            .map(|g| GraceV1 {
                key: g.key,
                hash: g.hash,
                until: g.until,
            })
            .collect(),
        rolled_out: data.rolled_out.into_iter().map(PrefixV1).collect(),
    };
    let mut out = options(MAX_SNAPSHOT_BYTES)
        .serialize(&wire)
        .map_err(|e| Error::invalid("snapshot", e.to_string()))?;
    let seal = chain.hash(&out);
    out.extend_from_slice(&seal);
    Ok(out)
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
    let wire: SnapshotV3 = options(body.len() as u64)
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
    })
}

/// A refused management command, as the security trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusedRecord {
    pub(crate) at: i64,
    pub(crate) actor: Actor,
    pub(crate) via: Option<KeyId>,
    pub(crate) action: u8,
    pub(crate) key: Option<KeyId>,
    pub(crate) denial: u8,
    /// For a refusal because another actor owns the key: that actor.
    pub(crate) owner: Option<String>,
}

const REFUSED_VERSION: u16 = 1;

#[derive(Serialize, Deserialize)]
struct RefusedV1 {
    version: u16,
    at: i64,
    actor_id: String,
    actor_role: u8,
    via: Option<u64>,
    action: u8,
    key: Option<u64>,
    denial: u8,
    owner: Option<String>,
}

pub(crate) fn encode_refused(r: &RefusedRecord) -> Result<Vec<u8>, Error> {
    options(MAX_RECORD_BYTES)
        .serialize(&RefusedV1 {
            version: REFUSED_VERSION,
            at: r.at,
            actor_id: r.actor.id().to_owned(),
            actor_role: r.actor.role().code(),
            via: r.via.map(|k| k.0),
            action: r.action,
            key: r.key.map(|k| k.0),
            denial: r.denial,
            owner: r.owner.clone(),
        })
        .map_err(|e| Error::invalid("refused attempt", format!("cannot be encoded: {e}")))
}

pub(crate) fn decode_refused(bytes: &[u8]) -> Result<RefusedRecord, Error> {
    let bad =
        |reason: String| Error::corrupt(0, ProblemKind::Undecodable, format!("security trail: {reason}"));
    match version_of(bytes) {
        Some(REFUSED_VERSION) => {}
        Some(found) => {
            return Err(Error::UnsupportedVersion {
                found: u32::from(found),
                supported: u32::from(REFUSED_VERSION),
            });
        }
        None => return Err(bad("too short".into())),
    }
    let wire: RefusedV1 = options(MAX_RECORD_BYTES)
        .deserialize(bytes)
        .map_err(|e| bad(e.to_string()))?;
    Ok(RefusedRecord {
        at: wire.at,
        actor: Actor::new(
            wire.actor_id,
            ActorRole::from_code(wire.actor_role).ok_or_else(|| bad("bad role".into()))?,
        ),
        via: wire.via.map(KeyId),
        action: wire.action,
        key: wire.key.map(KeyId),
        denial: wire.denial,
        owner: wire.owner,
    })
}

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32)
                .prop_map(|(a, p)| IpNet::V4(Ipv4Net::new(a.into(), p).unwrap().trunc())),
            (any::<[u8; 16]>(), 0u8..=95)
                .prop_map(|(a, p)| IpNet::V6(Ipv6Net::new(a.into(), p).unwrap().trunc())),
        ]
    }

    fn tail_of(t: &str) -> [u8; 4] {
        let mut out = [0u8; 4];
        out.copy_from_slice(t.as_bytes());
        out
    }

    /// Any record of any version: times leave room for expiries and grace periods.
    pub(crate) fn arb_record() -> impl Strategy<Value = Record> {
        let actor =
            ("[a-z]{1,12}", 0u8..3).prop_map(|(id, r)| Actor::new(id, ActorRole::from_code(r).unwrap()));
        let created = (
            any::<u64>(),
            any::<[u8; 32]>(),
            "[a-zA-Z0-9]{4}",
            "[a-z][a-z ]{0,20}[a-z]",
            proptest::collection::btree_set("[a-z0-9_-]{1,10}", 1..4),
            proptest::collection::vec(arb_net(), 0..4),
            proptest::option::of(1i64..1 << 50),
            0u8..4,
            proptest::option::of("person-[a-z]{1,6}"),
        )
            .prop_map(
                |(id, hash, tail, name, roles, mut whitelist, expires, source, person)| {
                    whitelist.dedup();
                    let mut roles: Vec<String> = roles.into_iter().collect();
                    // A person (never an actor id: those have no '-') only for an admin key.
                    if person.is_some() && !crate::event::grants_admin(&roles) {
                        roles.push(crate::ADMIN_ROLE.to_owned());
                    }
                    let (source, tail) = match source {
                        0 => (KeySource::Generated, tail_of(&tail)),
                        1 => (KeySource::Imported, tail_of(&tail)),
                        2 => (KeySource::Imported, crate::event::NO_TAIL),
                        _ => (KeySource::ImportedSha256, crate::event::NO_TAIL),
                    };
                    (
                        Event::Created {
                            id: KeyId(id),
                            hash: KeyHash(hash),
                            tail,
                            name,
                            roles,
                            whitelist,
                            expires_at: None,
                            source,
                            acts_for: person,
                        },
                        expires,
                    )
                },
            );
        let event = prop_oneof![
            created,
            (any::<u64>(), arb_net()).prop_map(|(id, net)| (Event::Whitelisted { id: KeyId(id), net }, None)),
            (any::<u64>(), arb_net())
                .prop_map(|(id, net)| (Event::Unwhitelisted { id: KeyId(id), net }, None)),
            any::<u64>().prop_map(|id| (Event::Deleted { id: KeyId(id) }, None)),
            (any::<u64>(), any::<[u8; 32]>(), "[a-zA-Z0-9]{4}", 0i64..1 << 50).prop_map(
                |(id, hash, tail, grace)| (
                    Event::Rolled {
                        id: KeyId(id),
                        hash: KeyHash(hash),
                        tail: tail_of(&tail),
                        previous_valid_until: grace,
                    },
                    None
                )
            ),
            any::<u64>().prop_map(|id| (Event::Disabled { id: KeyId(id) }, None)),
            any::<u64>().prop_map(|id| (Event::Enabled { id: KeyId(id) }, None)),
            ("[a-z]{1,12}", any::<bool>())
                .prop_map(|(actor, with_keys)| (Event::ActorRevoked { actor, with_keys }, None)),
        ];
        (
            1u64..,
            0i64..1 << 60,
            actor,
            proptest::option::of(any::<u64>()),
            event,
            any::<[u8; 32]>(),
        )
            .prop_map(|(seq, at, actor, via, (mut event, expires), prev)| {
                // Offsets become times after the record's own.
                match &mut event {
                    Event::Created { expires_at, .. } => *expires_at = expires.map(|e| at + e),
                    Event::Rolled {
                        previous_valid_until, ..
                    } => *previous_valid_until += at,
                    _ => {}
                }
                Record {
                    seq,
                    at,
                    actor,
                    via: via.map(KeyId),
                    event,
                    prev,
                }
            })
    }

    proptest! {
        #[test]
        fn records_round_trip(r in arb_record()) {
            prop_assume!(r.validate().is_ok());
            let bytes = encode_record(&r).unwrap();
            prop_assert_eq!(decode_record(&bytes, r.seq).unwrap(), r);
        }

        #[test]
        fn encoding_matches_plain_bincode_serialize(r in arb_record()) {
            prop_assume!(r.validate().is_ok());
            let ours = encode_record(&r).unwrap();
            let plain = if ours.starts_with(&[1, 0]) {
                let wire: RecordV1 = options(MAX_RECORD_BYTES).deserialize(&ours).unwrap();
                bincode::serialize(&wire).unwrap()
            } else if ours.starts_with(&[2, 0]) {
                let wire: RecordV2 = options(MAX_RECORD_BYTES).deserialize(&ours).unwrap();
                bincode::serialize(&wire).unwrap()
            } else {
                let wire: RecordV3 = options(MAX_RECORD_BYTES).deserialize(&ours).unwrap();
                bincode::serialize(&wire).unwrap()
            };
            prop_assert_eq!(plain, ours);
        }

        #[test]
        fn arbitrary_bytes_decode_to_a_value_or_an_error(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
            version in 1u8..=2,
        ) {
            if bytes.len() >= 2 { bytes[0] = version; bytes[1] = 0; }
            if let Ok(r) = decode_record(&bytes, 1) {
                prop_assert_eq!(encode_record(&r).unwrap(), bytes);
            }
        }

        #[test]
        fn truncated_or_extended_records_are_refused(r in arb_record(), cut in 1usize..40) {
            prop_assume!(r.validate().is_ok());
            let bytes = encode_record(&r).unwrap();
            let short = &bytes[..bytes.len().saturating_sub(cut)];
            prop_assert!(decode_record(short, 1).is_err());
            let mut long = bytes.clone();
            long.push(0);
            prop_assert!(decode_record(&long, 1).is_err());
        }
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        // version, seq, at, then a string length of 2^60.
        let mut bytes = vec![1, 0];
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&0i64.to_le_bytes());
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(
            decode_record(&bytes, 7),
            Err(Error::Corrupt { seq: 7, .. })
        ));
    }

    /// Records written by format version 1 keep decoding to the same values.
    #[test]
    fn version_1_fixtures_decode() {
        let id = KeyId(0x0123_4567_89ab_cdef);
        let created = decode_record(include_bytes!("../tests/fixtures/record-v1-created.bin"), 1).unwrap();
        assert_eq!(created.seq, 1);
        assert_eq!(created.at, 1_790_000_000_000_000);
        assert_eq!(created.actor, Actor::admin("alice"));
        assert_eq!(created.prev, [0; 32]);
        assert!(matches!(
            created.event,
            Event::Created { id: i, hash: KeyHash(h), tail, ref name, ref roles, ref whitelist, expires_at: None, source: KeySource::Generated, acts_for: None }
                if i == id && h == [7; 32] && &tail == b"AbC9" && name == "notifications bot"
                    && roles == &["notifier", "reader"]
                    && whitelist == &["10.0.0.0/8".parse::<IpNet>().unwrap(), "2001:db8::/32".parse().unwrap()]
        ));
        let whitelisted =
            decode_record(include_bytes!("../tests/fixtures/record-v1-whitelisted.bin"), 2).unwrap();
        assert!(
            matches!(whitelisted.event, Event::Whitelisted { id: i, net } if i == id && net.to_string() == "192.0.2.7/32")
        );
        assert_eq!(whitelisted.prev, [1; 32]);
        let unwhitelisted =
            decode_record(include_bytes!("../tests/fixtures/record-v1-unwhitelisted.bin"), 3).unwrap();
        assert!(
            matches!(unwhitelisted.event, Event::Unwhitelisted { id: i, net } if i == id && net.to_string() == "10.0.0.0/8")
        );
        let deleted = decode_record(include_bytes!("../tests/fixtures/record-v1-deleted.bin"), 4).unwrap();
        assert!(matches!(deleted.event, Event::Deleted { id: i } if i == id));
        assert_eq!(deleted.actor, Actor::super_admin("root"));
        assert_eq!(deleted.seq, 4);
    }

    /// Format 2 values keep decoding to the same values: a block of two records and a
    /// head sealed with the key `[0x42; 32]`.
    #[test]
    fn version_2_fixtures_decode() {
        let block = include_bytes!("../tests/fixtures/block-v2.bin");
        let records = entry_records(5, block).unwrap();
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), [5, 6]);
        let created = decode_record(records[0].1, 5).unwrap();
        assert_eq!(created.seq, 5);
        assert_eq!(created.actor, Actor::admin("alice"));
        assert!(matches!(created.event, Event::Created { ref name, .. } if name == "block fixture"));
        let deleted = decode_record(records[1].1, 6).unwrap();
        assert!(matches!(deleted.event, Event::Deleted { id } if id == KeyId(0x0123_4567_89ab_cdef)));
        assert_eq!(deleted.prev, Chain::new(None).hash(records[0].1));
        assert!(matches!(
            entry_records(6, block),
            Err(Error::Corrupt { seq: 6, .. })
        ));

        let head = include_bytes!("../tests/fixtures/head-v2.bin");
        let keyed = Chain::new(Some(&crate::chain::ChainKey::from_bytes([0x42; 32])));
        let expected = Head {
            seq: 6,
            hash: Chain::new(None).hash(records[1].1),
            at: 1_790_000_000_000_001,
        };
        assert_eq!(
            decode_head(head, &keyed, false).unwrap(),
            StoredHead::Sealed(expected)
        );
        assert!(matches!(
            decode_head(head, &Chain::new(None), false),
            Err(Error::Corrupt {
                kind: ProblemKind::Head,
                ..
            })
        ));
    }

    fn v2_fixture_records() -> [Record; 2] {
        [
            Record {
                seq: 7,
                at: 1_790_000_000_000_000,
                actor: Actor::super_admin("root"),
                via: Some(KeyId(0x00aa_bbcc_ddee_ff00)),
                event: Event::Rolled {
                    id: KeyId(0x0123_4567_89ab_cdef),
                    hash: KeyHash([9; 32]),
                    tail: *b"Zz09",
                    previous_valid_until: 1_790_003_600_000_000,
                },
                prev: [3; 32],
            },
            Record {
                seq: 8,
                at: 1_790_000_000_000_001,
                actor: Actor::admin("alice"),
                via: None,
                event: Event::Created {
                    id: KeyId(0x0fed_cba9_8765_4321),
                    hash: KeyHash([5; 32]),
                    tail: crate::event::NO_TAIL,
                    name: "adopted bot".into(),
                    roles: vec!["bot".into()],
                    whitelist: vec!["10.0.0.0/8".parse().unwrap()],
                    expires_at: Some(1_800_000_000_000_000),
                    source: KeySource::ImportedSha256,
                    acts_for: None,
                },
                prev: [4; 32],
            },
        ]
    }

    /// Records written by format version 2 keep decoding to the same values, and encode
    /// back to the same bytes.
    #[test]
    fn version_2_record_fixtures_decode() {
        let fixtures: [&[u8]; 2] = [
            include_bytes!("../tests/fixtures/record-v2-rolled.bin"),
            include_bytes!("../tests/fixtures/record-v2-imported.bin"),
        ];
        for (bytes, expected) in fixtures.into_iter().zip(v2_fixture_records()) {
            assert_eq!(&bytes[..2], &[2, 0]);
            let record = decode_record(bytes, expected.seq).unwrap();
            assert_eq!(record, expected);
            assert_eq!(encode_record(&record).unwrap(), bytes);
        }
    }

    fn v3_fixture_records() -> [Record; 2] {
        [
            Record {
                seq: 9,
                at: 1_790_000_000_000_002,
                actor: Actor::super_admin("root"),
                via: Some(KeyId(0x1111_2222_3333_4444)),
                event: Event::Created {
                    id: KeyId(0x0aaa_bbbb_cccc_dddd),
                    hash: KeyHash([6; 32]),
                    tail: *b"Cr01",
                    name: "carol's admin key".into(),
                    roles: vec!["admin".into()],
                    whitelist: vec!["127.0.0.1/32".parse().unwrap()],
                    expires_at: None,
                    source: KeySource::Generated,
                    acts_for: Some("carol".into()),
                },
                prev: [5; 32],
            },
            Record {
                seq: 10,
                at: 1_790_000_000_000_003,
                actor: Actor::super_admin("root"),
                via: None,
                event: Event::ActorRevoked {
                    actor: "carol".into(),
                    with_keys: true,
                },
                prev: [6; 32],
            },
        ]
    }

    /// Records written by format version 3 (an admin key made for a person, a person's
    /// revocation) keep decoding to the same values, and encode back to the same bytes.
    #[test]
    fn version_3_record_fixtures_decode() {
        let fixtures: [&[u8]; 2] = [
            include_bytes!("../tests/fixtures/record-v3-created-for.bin"),
            include_bytes!("../tests/fixtures/record-v3-actor-revoked.bin"),
        ];
        for (bytes, expected) in fixtures.into_iter().zip(v3_fixture_records()) {
            assert_eq!(&bytes[..2], &[3, 0]);
            let record = decode_record(bytes, expected.seq).unwrap();
            assert_eq!(record, expected);
            assert_eq!(encode_record(&record).unwrap(), bytes);
        }
    }

    /// A version 3 admin key naming its own creator is not canonical (version 2 holds
    /// it, with no person): refused, as is a person on a key without an admin role.
    #[test]
    fn a_version_3_creation_naming_its_creator_or_a_plain_key_is_refused() {
        let [created, _] = v3_fixture_records();
        for change in [0, 1] {
            let mut record = created.clone();
            if let Event::Created { roles, acts_for, .. } = &mut record.event {
                match change {
                    0 => *acts_for = Some("root".into()),
                    _ => *roles = vec!["bot".into()],
                }
            }
            let bytes = encode_record(&record).unwrap();
            assert!(
                matches!(
                    decode_record(&bytes, 9),
                    Err(Error::Corrupt {
                        kind: ProblemKind::Invalid,
                        ..
                    })
                ),
                "{change}"
            );
        }
    }

    #[test]
    fn a_version_2_record_that_version_1_holds_is_refused() {
        let v1 = decode_record(include_bytes!("../tests/fixtures/record-v1-deleted.bin"), 4).unwrap();
        let wire = RecordV2 {
            version: 2,
            seq: v1.seq,
            at: v1.at,
            actor_id: v1.actor.id().to_owned(),
            actor_role: v1.actor.role().code(),
            via: None,
            event: match event_to_wire(&v1.event) {
                WireEvent::V2(event) => event,
                WireEvent::V3(_) => unreachable!("a version 1 record's event"),
            },
            prev: v1.prev,
        };
        let bytes = options(MAX_RECORD_BYTES).serialize(&wire).unwrap();
        assert!(matches!(
            decode_record(&bytes, 4),
            Err(Error::Corrupt {
                kind: ProblemKind::Undecodable,
                ..
            })
        ));
    }

    #[test]
    fn a_damaged_block_is_refused_and_a_rebuilt_one_is_identical() {
        let block = include_bytes!("../tests/fixtures/block-v2.bin");
        for i in 0..block.len() {
            let mut bad = block.to_vec();
            bad[i] ^= 0x10;
            assert!(entry_records(5, &bad).is_err(), "byte {i}");
        }
        let mut again = BlockWriter::new(5);
        for (_, r) in entry_records(5, block).unwrap() {
            again.push(r);
        }
        assert_eq!(again.finish(), (5, block.to_vec()));
        let mut newer = block.to_vec();
        newer[0] = 3;
        assert!(matches!(
            entry_records(5, &newer),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
    }

    #[test]
    fn unknown_versions_are_named() {
        assert!(matches!(
            decode_record(&[9, 0, 0, 0], 1),
            Err(Error::UnsupportedVersion {
                found: 9,
                supported: 3
            })
        ));
    }
}
