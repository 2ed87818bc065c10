//! Actors and their roles: who acts, as the host authenticated them, and the admin key
//! they acted through. The rules an actor id obeys are the field rules'; this module only
//! applies them.

use std::fmt;
use std::str::FromStr;

use super::id::KeyId;
use super::id::{ADMIN_ROLE, SUPER_ADMIN_ROLE};
use super::rules::{Origin, shown, validate_actor_id};
use crate::model::error::Error;

/// What an actor is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorRole {
    /// May act on every key and grant every role.
    SuperAdmin,
    /// May create keys and act on the keys it created.
    Admin,
    /// Any other user: may not manage keys.
    User,
}

impl ActorRole {
    /// The role's name: `super-admin`, `admin` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorRole::SuperAdmin => SUPER_ADMIN_ROLE,
            ActorRole::Admin => ADMIN_ROLE,
            ActorRole::User => "user",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            ActorRole::SuperAdmin => 0,
            ActorRole::Admin => 1,
            ActorRole::User => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(ActorRole::SuperAdmin),
            1 => Some(ActorRole::Admin),
            2 => Some(ActorRole::User),
            _ => None,
        }
    }
}

impl fmt::Display for ActorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActorRole {
    type Err = Error;

    /// Parses `super-admin`, `admin` or `user`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            SUPER_ADMIN_ROLE => Ok(ActorRole::SuperAdmin),
            ADMIN_ROLE => Ok(ActorRole::Admin),
            "user" => Ok(ActorRole::User),
            _ => Err(Error::invalid(
                "actor role",
                format!("{:?} is not super-admin, admin or user", shown(s)),
            )),
        }
    }
}

/// Who is acting, as authenticated by the host: an id and a role (and, for an actor
/// authenticated by an admin key, that key: see `KeyStore::acting_through`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    id: String,
    role: ActorRole,
    via: Option<KeyId>,
}

impl Actor {
    /// An actor with the given id and role. The id is checked when the actor acts: 1 to
    /// 128 characters, no control or invisible format characters, no surrounding spaces,
    /// nothing shaped like an API key.
    pub fn new(id: impl Into<String>, role: ActorRole) -> Self {
        Actor {
            id: id.into(),
            role,
            via: None,
        }
    }

    /// A super admin.
    pub fn super_admin(id: impl Into<String>) -> Self {
        Actor::new(id, ActorRole::SuperAdmin)
    }

    /// An admin.
    pub fn admin(id: impl Into<String>) -> Self {
        Actor::new(id, ActorRole::Admin)
    }

    /// A user who is neither admin nor super admin.
    pub fn user(id: impl Into<String>) -> Self {
        Actor::new(id, ActorRole::User)
    }

    /// The actor's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The actor's role.
    pub fn role(&self) -> ActorRole {
        self.role
    }

    /// The admin key this actor was authenticated by, if any: its records name it.
    pub fn via(&self) -> Option<KeyId> {
        self.via
    }

    /// This actor, acting through admin key `key`.
    pub(crate) fn through(mut self, key: KeyId) -> Self {
        self.via = Some(key);
        self
    }

    /// The id and role alone, as records and audit rows hold them.
    pub(crate) fn plain(&self) -> Actor {
        Actor::new(self.id.clone(), self.role)
    }

    /// Checks the id of an actor issuing a command, by every rule (`Origin::Command`).
    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_actor_id(&self.id, Origin::Command)
    }
}
