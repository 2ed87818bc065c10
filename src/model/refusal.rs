//! A refused command: what it attempted, by whom, and which rule refused it. The security
//! trail (`persist/trail.rs`) keeps them.

use std::fmt;
use std::time::SystemTime;

use super::actor::Actor;
use super::error::Denial;
use super::id::KeyId;

/// What a refused command attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Create a key.
    Create,
    /// Adopt existing keys.
    Import,
    /// Add to a whitelist.
    Whitelist,
    /// Remove from a whitelist.
    Unwhitelist,
    /// Delete a key.
    Delete,
    /// Roll a key's secret.
    Roll,
    /// Disable a key.
    Disable,
    /// Enable a key.
    Enable,
    /// Revoke a person (every admin key acting as them).
    RevokeActor,
    /// Set a key's rate limits.
    Limit,
    /// Set a key's credits, or add to them.
    Credits,
    /// Change a key's name, roles, external id or metadata.
    Update,
}

impl Action {
    pub(crate) const ALL: [Action; 12] = [
        Action::Create,
        Action::Import,
        Action::Whitelist,
        Action::Unwhitelist,
        Action::Delete,
        Action::Roll,
        Action::Disable,
        Action::Enable,
        Action::RevokeActor,
        Action::Limit,
        Action::Credits,
        Action::Update,
    ];

    /// `create`, `import`, `whitelist`, `unwhitelist`, `delete`, `roll`, `disable`,
    /// `enable`, `revoke_actor`, `limit` or `credits`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Import => "import",
            Action::Whitelist => "whitelist",
            Action::Unwhitelist => "unwhitelist",
            Action::Delete => "delete",
            Action::Roll => "roll",
            Action::Disable => "disable",
            Action::Enable => "enable",
            Action::RevokeActor => "revoke_actor",
            Action::Limit => "limit",
            Action::Credits => "credits",
            Action::Update => "update",
        }
    }

    /// Its number in the trail's records.
    pub(crate) fn code(self) -> u8 {
        Action::ALL
            .iter()
            .position(|&a| a == self)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(u8::MAX)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A management command the access rules refused: who tried what on which key, when,
/// and why it was refused. See `KeyStore::refused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedAttempt {
    /// When it was refused.
    pub at: SystemTime,
    /// Who tried (the id redacted if key-shaped).
    pub actor: Actor,
    /// The admin key the actor came through, if any.
    pub via: Option<KeyId>,
    /// What they tried.
    pub action: Action,
    /// The key it was aimed at (none for a creation or an import).
    pub key: Option<KeyId>,
    /// Which rule refused it.
    pub denial: Denial,
}
