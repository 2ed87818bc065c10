//! The JSON of a person's revocation: what `revoke-actor --json` prints and
//! `POST /v1/actors/{actor}/revoke` answers. Shapes only; it decides nothing.

use serde::{Deserialize, Serialize};

/// A person's revocation (`revoke-actor --json`, `POST /v1/actors/{actor}/revoke`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct RevokedActorJson {
    /// The person revoked.
    pub actor: String,
    /// Whether the keys they created were deleted too.
    pub with_keys: bool,
    /// The revocation's sequence number.
    pub seq: u64,
    /// The ids of the keys it deleted.
    pub revoked: Vec<String>,
    /// On a host of a fleet: the live hosts that had not applied it when the wait ended
    /// (see [`KeyJson::unconfirmed`](crate::json::keys::KeyJson::unconfirmed)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
}

impl RevokedActorJson {
    /// The answer to revoking `actor`.
    pub fn new(actor: &str, with_keys: bool, revoked: &crate::store::people::RevokedActor) -> Self {
        RevokedActorJson {
            actor: actor.to_owned(),
            with_keys,
            seq: revoked.seq,
            revoked: revoked.keys.iter().map(ToString::to_string).collect(),
            unconfirmed: revoked.unconfirmed.clone(),
        }
    }
}
