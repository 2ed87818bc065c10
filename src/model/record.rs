//! Events and records: what happened to which key, the audit entry's kind, and one log
//! entry with its position, time, author and chain link, checked by the rules in force
//! when it was written. It never encodes or stores a record (the codec does).

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;

use super::actor::Actor;
use super::credits::{Credits, check_amount};
use super::id::KeyId;
use super::key::{KeySource, NO_TAIL};
use super::limit::{RateLimit, validate_stored_limits};
use super::owner::Meta;
use super::rules::{
    Origin, canonical_net, grants_admin, shown, validate_actor_id, validate_external_id, validate_name,
    validate_roles, validate_whitelist,
};
use crate::model::error::Error;
use crate::model::token::KeyHash;

/// What happened, as a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Created {
        id: KeyId,
        hash: KeyHash,
        tail: [u8; 4],
        name: String,
        roles: Vec<String>,
        whitelist: Vec<IpNet>,
        /// Microseconds since the Unix epoch.
        expires_at: Option<i64>,
        source: KeySource,
        /// For an admin key made for another person than its creator: that person.
        acts_for: Option<String>,
        /// Its rate limits, canonical (shortest window first).
        rate_limits: Vec<RateLimit>,
    },
    /// The key's rate limits are now these (none: unlimited), canonical.
    LimitsSet {
        id: KeyId,
        rate_limits: Vec<RateLimit>,
    },
    /// The key's credits are now these (none: unlimited): its count starts again from
    /// `credits.remaining`, and refills count from this record's time.
    CreditsSet {
        id: KeyId,
        credits: Option<Credits>,
    },
    /// `amount` more credits for a key that has credits.
    CreditsAdded {
        id: KeyId,
        amount: u64,
    },
    Whitelisted {
        id: KeyId,
        net: IpNet,
    },
    Unwhitelisted {
        id: KeyId,
        net: IpNet,
    },
    Deleted {
        id: KeyId,
    },
    /// The key got a new secret; the previous one verifies until `previous_valid_until`
    /// (the record's own time for no grace).
    Rolled {
        id: KeyId,
        hash: KeyHash,
        tail: [u8; 4],
        previous_valid_until: i64,
    },
    Disabled {
        id: KeyId,
    },
    Enabled {
        id: KeyId,
    },
    /// Some of the key's fields changed: only those named here (at least one), each to its
    /// new value (`Some(None)`: the external id or metadata removed).
    Updated {
        id: KeyId,
        name: Option<String>,
        roles: Option<Vec<String>>,
        external_id: Option<Option<String>>,
        meta: Option<Option<Meta>>,
    },
    /// Every admin key acting as `actor` is revoked (and, `with_keys`, every key `actor`
    /// created), in one record.
    ActorRevoked {
        actor: String,
        with_keys: bool,
    },
}

impl Event {
    /// The one key the event is about (`None` for a revoked person, which is about many).
    pub(crate) fn key_id(&self) -> Option<KeyId> {
        match self {
            Event::Created { id, .. }
            | Event::Whitelisted { id, .. }
            | Event::Unwhitelisted { id, .. }
            | Event::Deleted { id }
            | Event::Rolled { id, .. }
            | Event::Disabled { id }
            | Event::Enabled { id }
            | Event::LimitsSet { id, .. }
            | Event::CreditsSet { id, .. }
            | Event::CreditsAdded { id, .. }
            | Event::Updated { id, .. } => Some(*id),
            Event::ActorRevoked { .. } => None,
        }
    }

    pub(crate) fn kind(&self) -> EventKind {
        match self {
            Event::Created {
                source: KeySource::Generated,
                ..
            } => EventKind::Created,
            Event::Created { .. } => EventKind::Imported,
            Event::Whitelisted { .. } => EventKind::Whitelisted,
            Event::Unwhitelisted { .. } => EventKind::Unwhitelisted,
            Event::Deleted { .. } => EventKind::Deleted,
            Event::Rolled { .. } => EventKind::Rolled,
            Event::Disabled { .. } => EventKind::Disabled,
            Event::Enabled { .. } => EventKind::Enabled,
            Event::ActorRevoked { .. } => EventKind::ActorRevoked,
            Event::LimitsSet { .. } => EventKind::LimitsChanged,
            Event::CreditsSet { .. } => EventKind::CreditsSet,
            Event::CreditsAdded { .. } => EventKind::CreditsAdded,
            Event::Updated { .. } => EventKind::Updated,
        }
    }
}

/// The kind of an audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A key was created.
    Created,
    /// An address or range was added to a key's whitelist.
    Whitelisted,
    /// An address or range was removed from a key's whitelist.
    Unwhitelisted,
    /// A key was deleted.
    Deleted,
    /// An existing key was adopted (its secret, or its SHA-256 hash, imported).
    Imported,
    /// A key got a new secret; the previous one may verify for a grace period.
    Rolled,
    /// A key was disabled.
    Disabled,
    /// A disabled key was enabled again.
    Enabled,
    /// A person was revoked: every admin key acting as them (and, if asked, every key
    /// they created) was deleted, in one record.
    ActorRevoked,
    /// A key's rate limits were set (or removed).
    LimitsChanged,
    /// A key's credits were set (or removed): its count starts again.
    CreditsSet,
    /// Credits were added to a key's count.
    CreditsAdded,
    /// Some of a key's name, roles, external id and metadata changed (or, right after its
    /// creation, its external id and metadata were set).
    Updated,
}

impl EventKind {
    /// Every kind, in the order of their codes.
    pub(crate) const ALL: [EventKind; 13] = [
        EventKind::Created,
        EventKind::Whitelisted,
        EventKind::Unwhitelisted,
        EventKind::Deleted,
        EventKind::Imported,
        EventKind::Rolled,
        EventKind::Disabled,
        EventKind::Enabled,
        EventKind::ActorRevoked,
        EventKind::LimitsChanged,
        EventKind::CreditsSet,
        EventKind::CreditsAdded,
        EventKind::Updated,
    ];

    /// `created`, `whitelisted`, `unwhitelisted`, `deleted`, `imported`, `rolled`,
    /// `disabled`, `enabled`, `actor_revoked`, `limits_changed`, `credits_set`,
    /// `credits_added` or `updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Whitelisted => "whitelisted",
            EventKind::Unwhitelisted => "unwhitelisted",
            EventKind::Deleted => "deleted",
            EventKind::Imported => "imported",
            EventKind::Rolled => "rolled",
            EventKind::Disabled => "disabled",
            EventKind::Enabled => "enabled",
            EventKind::ActorRevoked => "actor_revoked",
            EventKind::LimitsChanged => "limits_changed",
            EventKind::CreditsSet => "credits_set",
            EventKind::CreditsAdded => "credits_added",
            EventKind::Updated => "updated",
        }
    }

    /// Whether an event of this kind creates a key.
    pub(crate) fn creates(self) -> bool {
        matches!(self, EventKind::Created | EventKind::Imported)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::invalid("kind", format!("{:?} is not one of {}", shown(s), all.join(", ")))
            })
    }
}

/// One entry of the log: an event with its position, time, author and chain link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Contiguous from 1.
    pub(crate) seq: u64,
    /// Microseconds since the Unix epoch, never decreasing along the log.
    pub(crate) at: i64,
    pub(crate) actor: Actor,
    /// The admin key the actor acted through (the HTTP admin API), if any.
    pub(crate) via: Option<KeyId>,
    pub(crate) event: Event,
    /// The chain hash of the previous record (all zeros for the first).
    pub(crate) prev: [u8; 32],
}

impl Record {
    /// Checks every field against the rules in force when it was written
    /// (`Origin::Stored`), so a decoded record is as trustworthy as one the writer built
    /// and a record written before a rule was added still decodes.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_actor_id(self.actor.id(), Origin::Stored)?;
        match &self.event {
            Event::Created {
                name,
                roles,
                whitelist,
                tail,
                expires_at,
                source,
                acts_for,
                rate_limits,
                ..
            } => {
                validate_stored_limits(rate_limits)?;
                if let Some(person) = acts_for {
                    validate_actor_id(person, Origin::Stored)?;
                    if !grants_admin(roles) || person == self.actor.id() {
                        return Err(Error::invalid(
                            "actor",
                            "names a person for a key without an admin role, or its own creator",
                        ));
                    }
                }
                if validate_name(name, Origin::Stored)? != name {
                    return Err(Error::invalid("name", "stored name is not trimmed"));
                }
                validate_roles(roles)?;
                if validate_whitelist(whitelist)? != *whitelist {
                    return Err(Error::invalid("network", "stored whitelist is not canonical"));
                }
                let tail_ok = match source {
                    KeySource::Generated => is_base62_tail(tail),
                    KeySource::Imported => is_base62_tail(tail) || *tail == NO_TAIL,
                    KeySource::ImportedSha256 => *tail == NO_TAIL,
                };
                if !tail_ok {
                    return Err(Error::invalid(
                        "hint",
                        "not base62, or kept for a secret that has none",
                    ));
                }
                if expires_at.is_some_and(|e| e <= self.at) {
                    return Err(Error::invalid("expires_at", "not after the key's creation"));
                }
            }
            Event::Whitelisted { net, .. } | Event::Unwhitelisted { net, .. } => {
                if canonical_net(*net)? != *net {
                    return Err(Error::invalid("network", format!("{net} is not canonical")));
                }
            }
            Event::Rolled {
                tail,
                previous_valid_until,
                ..
            } => {
                if !is_base62_tail(tail) {
                    return Err(Error::invalid("hint", "not base62"));
                }
                if *previous_valid_until < self.at {
                    return Err(Error::invalid(
                        "grace",
                        "the previous secret's grace ends before the roll",
                    ));
                }
            }
            Event::ActorRevoked { actor, .. } => validate_actor_id(actor, Origin::Stored)?,
            Event::LimitsSet { rate_limits, .. } => validate_stored_limits(rate_limits)?,
            Event::CreditsSet { credits, .. } => {
                if let Some(credits) = credits {
                    credits.check()?;
                }
            }
            Event::CreditsAdded { amount, .. } => {
                if *amount == 0 {
                    return Err(Error::invalid("credits", "adding 0 credits changes nothing"));
                }
                check_amount("credits", *amount)?;
            }
            Event::Updated {
                name,
                roles,
                external_id,
                meta,
                ..
            } => {
                if name.is_none() && roles.is_none() && external_id.is_none() && meta.is_none() {
                    return Err(Error::invalid("update", "names no field to change"));
                }
                if let Some(name) = name
                    && validate_name(name, Origin::Stored)? != name
                {
                    return Err(Error::invalid("name", "stored name is not trimmed"));
                }
                if let Some(roles) = roles {
                    validate_roles(roles)?;
                }
                if let Some(Some(id)) = external_id {
                    validate_external_id(id, Origin::Stored)?;
                }
            }
            Event::Deleted { .. } | Event::Disabled { .. } | Event::Enabled { .. } => {}
        }
        Ok(())
    }
}

/// Whether a tail is four base62 characters (a generated key's last four).
fn is_base62_tail(tail: &[u8; 4]) -> bool {
    tail.iter().all(u8::is_ascii_alphanumeric)
}
