//! The log's records, versions 1 to 4, and their wire structs: a record is written in the
//! lowest version that holds it and every version keeps decoding. Decoding re-validates
//! every field; it must never accept a second encoding of the same record.

use bincode::Options;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::primitives::{NetV1, le4, le32, options};
use crate::model::actor::Actor;
use crate::model::actor::ActorRole;
use crate::model::credits::{Credits, Refill};
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::key::KeySource;
use crate::model::limit::RateLimit;
use crate::model::owner::Meta;
use crate::model::problem::ProblemKind;
use crate::model::record::Event;
use crate::model::record::Record;
use crate::model::token::KeyHash;

/// The newest record format this build writes. A record is written in the lowest version
/// that can hold it (version 1 for the events it has), so that every record has exactly
/// one encoding; older versions keep decoding.
pub(crate) const RECORD_VERSION: u16 = 4;
/// No record may be larger; decoding stops at this many bytes.
pub(crate) const MAX_RECORD_BYTES: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
pub(super) struct RecordV1 {
    pub(super) version: u16,
    pub(super) seq: u64,
    pub(super) at: i64,
    pub(super) actor_id: String,
    pub(super) actor_role: u8,
    pub(super) event: EventV1,
    #[serde(with = "le32")]
    pub(super) prev: [u8; 32],
}

/// A record of version 2 or later: the fields of version 1, then the admin key the actor
/// acted through, with the version's own event enum. Version 2 (`EventV2`) adds `via` and
/// the lifecycle events; version 3 (`EventV3`) holds only what version 2 cannot: an admin
/// key made for a person, and a person's revocation; version 4 (`EventV4`) only what
/// version 3 cannot: a key created with rate limits, a change of a key's limits or
/// credits, and an update of its name, roles, external id or metadata. The
/// same bytes as one struct per version would give (bincode writes the fields in order).
#[derive(Serialize, Deserialize)]
pub(super) struct RecordWire<E> {
    pub(super) version: u16,
    pub(super) seq: u64,
    pub(super) at: i64,
    pub(super) actor_id: String,
    pub(super) actor_role: u8,
    pub(super) via: Option<u64>,
    pub(super) event: E,
    #[serde(with = "le32")]
    pub(super) prev: [u8; 32],
}

#[derive(Serialize, Deserialize)]
pub(super) enum EventV3 {
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
pub(super) enum EventV4 {
    /// Version 2's `Created`, then the person an admin key acts as (if it names one) and
    /// the key's rate limits (at least one: a key without is written in version 3 or
    /// lower).
    CreatedLimited {
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
        acts_for: Option<String>,
        rate_limits: Vec<LimitV1>,
    },
    /// The key's rate limits are now these (none: unlimited).
    LimitsSet { id: u64, rate_limits: Vec<LimitV1> },
    /// The key's credits are now these (none: unlimited).
    CreditsSet { id: u64, credits: Option<CreditsV1> },
    /// More credits for the key.
    CreditsAdded { id: u64, amount: u64 },
    /// Some of the key's fields changed: each `Some` is the new value; for the external id
    /// and the metadata (canonical JSON text), `Some(None)` removes it.
    Updated {
        id: u64,
        name: Option<String>,
        roles: Option<Vec<String>>,
        external_id: Option<Option<String>>,
        meta: Option<Option<String>>,
    },
}

/// Credits on the wire: the count, then the refill's amount and period in seconds (an
/// amount of 0 for none).
#[derive(Serialize, Deserialize)]
pub(crate) struct CreditsV1 {
    pub(crate) remaining: u64,
    pub(crate) refill_amount: u64,
    pub(crate) refill_every_secs: u32,
}

impl From<&Credits> for CreditsV1 {
    fn from(c: &Credits) -> Self {
        CreditsV1 {
            remaining: c.remaining,
            refill_amount: c.refill.map_or(0, |r| r.amount),
            refill_every_secs: c.refill.map_or(0, |r| r.every_secs),
        }
    }
}

impl CreditsV1 {
    /// Unchecked but for the one encoding of no refill: the record's validation checks
    /// every value.
    pub(crate) fn decode(self) -> Result<Credits, &'static str> {
        let refill = match (self.refill_amount, self.refill_every_secs) {
            (0, 0) => None,
            (0, _) => return Err("credits without a refill amount name a refill period"),
            (amount, every_secs) => Some(Refill { amount, every_secs }),
        };
        Ok(Credits {
            remaining: self.remaining,
            refill,
        })
    }
}

/// A rate limit on the wire: the window in seconds, then the limit.
#[derive(Serialize, Deserialize)]
pub(crate) struct LimitV1 {
    pub(crate) window_secs: u32,
    pub(crate) limit: u32,
}

impl From<&RateLimit> for LimitV1 {
    fn from(l: &RateLimit) -> Self {
        LimitV1 {
            window_secs: l.window_secs,
            limit: l.limit,
        }
    }
}

impl From<LimitV1> for RateLimit {
    /// Unchecked: the record's validation checks every limit.
    fn from(l: LimitV1) -> Self {
        RateLimit {
            window_secs: l.window_secs,
            limit: l.limit,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) enum EventV1 {
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
pub(super) enum EventV2 {
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

/// An event on the wire: in version 2's enum, or only version 3's.
pub(super) enum WireEvent {
    V2(EventV2),
    V3(EventV3),
    V4(EventV4),
}

pub(super) fn event_to_wire(event: &Event) -> WireEvent {
    let nets = |list: &[IpNet]| list.iter().map(NetV1::from).collect();
    let limits = |list: &[RateLimit]| list.iter().map(LimitV1::from).collect();
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
            acts_for,
            rate_limits,
        } if !rate_limits.is_empty() => {
            return WireEvent::V4(EventV4::CreatedLimited {
                id: id.0,
                hash: hash.0,
                tail: *tail,
                name: name.clone(),
                roles: roles.clone(),
                whitelist: nets(whitelist),
                expires_at: *expires_at,
                source: source.code(),
                acts_for: acts_for.clone(),
                rate_limits: limits(rate_limits),
            });
        }
        Event::LimitsSet { id, rate_limits } => {
            return WireEvent::V4(EventV4::LimitsSet {
                id: id.0,
                rate_limits: limits(rate_limits),
            });
        }
        Event::CreditsSet { id, credits } => {
            return WireEvent::V4(EventV4::CreditsSet {
                id: id.0,
                credits: credits.as_ref().map(CreditsV1::from),
            });
        }
        Event::CreditsAdded { id, amount } => {
            return WireEvent::V4(EventV4::CreditsAdded {
                id: id.0,
                amount: *amount,
            });
        }
        Event::Updated {
            id,
            name,
            roles,
            external_id,
            meta,
        } => {
            return WireEvent::V4(EventV4::Updated {
                id: id.0,
                name: name.clone(),
                roles: roles.clone(),
                external_id: external_id.clone(),
                meta: meta.as_ref().map(|m| m.as_ref().map(|m| m.as_str().to_owned())),
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
            acts_for: Some(person),
            ..
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
            ..
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
            rate_limits: Vec::new(),
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

fn event_from_wire_v4(event: EventV4, seq: u64) -> Result<Event, Error> {
    let limits = |list: Vec<LimitV1>| list.into_iter().map(RateLimit::from).collect::<Vec<_>>();
    Ok(match event {
        EventV4::CreatedLimited {
            id,
            hash,
            tail,
            name,
            roles,
            whitelist,
            expires_at,
            source,
            acts_for,
            rate_limits,
        } => {
            if rate_limits.is_empty() {
                // Every record has one encoding: this one is written in version 3 or lower.
                return Err(Error::corrupt(
                    seq,
                    ProblemKind::Undecodable,
                    "a version 4 creation without rate limits, which an earlier version holds",
                ));
            }
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
            if let Event::Created {
                acts_for: person,
                rate_limits: held,
                ..
            } = &mut event
            {
                *person = acts_for;
                *held = limits(rate_limits);
            }
            event
        }
        EventV4::LimitsSet { id, rate_limits } => Event::LimitsSet {
            id: KeyId(id),
            rate_limits: limits(rate_limits),
        },
        EventV4::CreditsSet { id, credits } => Event::CreditsSet {
            id: KeyId(id),
            credits: credits
                .map(CreditsV1::decode)
                .transpose()
                .map_err(|why| Error::corrupt(seq, ProblemKind::Undecodable, why))?,
        },
        EventV4::CreditsAdded { id, amount } => Event::CreditsAdded {
            id: KeyId(id),
            amount,
        },
        EventV4::Updated {
            id,
            name,
            roles,
            external_id,
            meta,
        } => Event::Updated {
            id: KeyId(id),
            name,
            roles,
            external_id,
            meta: meta
                .map(|m| m.as_deref().map(Meta::stored).transpose())
                .transpose()
                .map_err(|e| Error::corrupt(seq, ProblemKind::Invalid, format!("invalid record: {e}")))?,
        },
    })
}

/// Encodes a record in the lowest version that holds it.
pub(crate) fn encode_record(r: &Record) -> Result<Vec<u8>, Error> {
    let encoded = match event_to_wire(&r.event) {
        WireEvent::V4(event) => options(MAX_RECORD_BYTES).serialize(&wire(r, 4, event)),
        WireEvent::V3(event) => options(MAX_RECORD_BYTES).serialize(&wire(r, 3, event)),
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
            _ => options(MAX_RECORD_BYTES).serialize(&wire(r, 2, event)),
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
            let (header, v2): (_, EventV2) = read_wire(bytes).map_err(undecodable)?;
            if header.via.is_none() && v2.to_v1().is_some() {
                // Every record has one encoding: this one is written in version 1.
                return Err(bad("a version 2 record that version 1 holds".into()));
            }
            (header, event_from_wire(v2, seq)?)
        }
        3 => {
            let (header, v3) = read_wire(bytes).map_err(undecodable)?;
            (header, event_from_wire_v3(v3, seq)?)
        }
        4 => {
            let (header, v4) = read_wire(bytes).map_err(undecodable)?;
            (header, event_from_wire_v4(v4, seq)?)
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

/// Record `r` as version `version` (2 or later) writes it, with that version's `event`.
fn wire<E>(r: &Record, version: u16, event: E) -> RecordWire<E> {
    RecordWire {
        version,
        seq: r.seq,
        at: r.at,
        actor_id: r.actor.id().to_owned(),
        actor_role: r.actor.role().code(),
        via: r.via.map(|k| k.0),
        event,
        prev: r.prev,
    }
}

/// A record of version 2 or later, as its header and its version's event.
fn read_wire<E: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(Header, E), bincode::Error> {
    let wire: RecordWire<E> = options(MAX_RECORD_BYTES).deserialize(bytes)?;
    let header = Header {
        seq: wire.seq,
        at: wire.at,
        actor_id: wire.actor_id,
        actor_role: wire.actor_role,
        via: wire.via,
        prev: wire.prev,
    };
    Ok((header, wire.event))
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
