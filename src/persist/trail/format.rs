//! The security trail's record: one refused management command. It is not in the chain
//! and is never read back as an event.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::codec::primitives::options;
use crate::codec::primitives::version_of;
use crate::codec::record::MAX_RECORD_BYTES;
use crate::model::actor::Actor;
use crate::model::actor::ActorRole;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::problem::ProblemKind;

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
