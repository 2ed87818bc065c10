//! The access rules: who may do what to which key, and which client address a key admits.
//!
//! Pure functions over a key's current state, used by the ledger both for commands and for
//! stored records, so a log can only ever hold what the rules allow. Nothing here does
//! I/O. The rules and the IP check take no lock; interning a new role set (when a record
//! is applied, never on the verify path) takes a process-wide mutex.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ipnet::IpNet;

use crate::clock::whole_seconds_up;
use crate::model::actor::Actor;
use crate::model::actor::ActorRole;
use crate::model::error::Denial;
use crate::model::error::Error;
use crate::model::id::ADMIN_ROLE;
use crate::model::id::KeyId;
use crate::model::id::SUPER_ADMIN_ROLE;
use crate::model::limit::RateLimit;
use crate::model::record::Event;
use crate::model::rules::MAX_WHITELIST;
use crate::model::token::HeaderProblem;
use crate::model::token::format::Malformed;
use crate::model::token::format::redact_keys;
use reason::Reason;

pub(crate) mod reason;

/// A key's state as the rules need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyState<'a> {
    pub(crate) owner: &'a str,
    pub(crate) deleted: bool,
    pub(crate) disabled: bool,
    pub(crate) whitelist: &'a [IpNet],
    /// Its roles.
    pub(crate) roles: &'a [&'static str],
    /// Whether the key holds the `super-admin` role, or the `admin` one.
    pub(crate) grants_super_admin: bool,
    pub(crate) grants_admin: bool,
    /// Microseconds since the epoch, if it expires.
    pub(crate) expires_at: Option<i64>,
    /// Its rate limits, canonical.
    pub(crate) rate_limits: &'a [RateLimit],
    /// Its credits as the log sets them (the count set plus every top-up since), if it
    /// has credits: what spending them cannot change.
    pub(crate) credits: Option<u64>,
}

/// Rules a command obeys that records written before them need not (they keep replaying):
/// an admin may not change a key that holds the `super-admin` role (since 0.3; an admin
/// acting under a super admin's id, through an admin key, could otherwise roll the super
/// admin's own key and read its new secret).
pub(crate) fn authorize_command(
    actor: &Actor,
    event: &Event,
    key: Option<KeyState<'_>>,
) -> Result<(), Error> {
    if let (Some(key), Some(id)) = (key, event.key_id())
        && actor.role() == ActorRole::Admin
        && key.grants_super_admin
        && !matches!(event, Event::Created { .. })
    {
        return Err(Error::denied(actor.id(), Denial::OutranksActor { key: id }));
    }
    authorize(actor, event, key)
}

/// Whether a command that came through the admin key `via` may record `event` on `key`:
/// an admin key may not give itself a role it does not hold.
pub(crate) fn authorize_via(
    actor: &Actor,
    via: Option<KeyId>,
    event: &Event,
    key: Option<KeyState<'_>>,
) -> Result<(), Error> {
    if let (
        Event::Updated {
            id,
            roles: Some(roles),
            ..
        },
        Some(key),
    ) = (event, key)
        && via == Some(*id)
        && roles.iter().any(|r| !key.roles.contains(&r.as_str()))
    {
        return Err(Error::denied(actor.id(), Denial::RaisesOwnRoles { key: *id }));
    }
    Ok(())
}

/// Whether the admin key `via`, in state `key`, may still carry a command recorded at
/// time `at`: it exists, is neither deleted, disabled nor expired, and holds the `admin`
/// or `super-admin` role. Checked for every command and every stored record that names
/// one, so a key revoked while its request was in flight writes nothing.
pub(crate) fn admin_key_usable(via: KeyId, key: Option<KeyState<'_>>, at: i64) -> Result<(), String> {
    let key = key.ok_or_else(|| format!("admin key {via} does not exist"))?;
    if key.deleted || key.disabled || key.expires_at.is_some_and(|e| e <= at) {
        return Err(format!("admin key {via} is deleted, disabled or expired"));
    }
    if !(key.grants_admin || key.grants_super_admin) {
        return Err(format!(
            "key {via} holds neither the admin nor the super-admin role"
        ));
    }
    Ok(())
}

/// Decides whether `actor` may record `event`, given the state of the key it names
/// (`None` when no key has that id).
pub(crate) fn authorize(actor: &Actor, event: &Event, key: Option<KeyState<'_>>) -> Result<(), Error> {
    if actor.role() == ActorRole::User {
        return Err(Error::denied(actor.id(), Denial::NotAnAdmin));
    }
    let id = match event {
        Event::ActorRevoked { actor: person, .. } => {
            return match actor.role() {
                ActorRole::SuperAdmin => Ok(()),
                _ => Err(Error::denied(
                    actor.id(),
                    Denial::RevokesPerson {
                        person: redact_keys(person).into_owned(),
                    },
                )),
            };
        }
        other => other
            .key_id()
            .ok_or_else(|| Error::invalid("key id", "no key named"))?,
    };
    if let Event::Created { roles, acts_for, .. } = event {
        if actor.role() != ActorRole::SuperAdmin && roles.iter().any(|r| r == SUPER_ADMIN_ROLE) {
            return Err(Error::denied(actor.id(), Denial::GrantsSuperAdmin));
        }
        // An admin's own admin keys carry no person (they act as her); naming one is
        // making a key for someone else, which only a super admin may do.
        if let Some(person) = acts_for
            && actor.role() != ActorRole::SuperAdmin
        {
            return Err(Error::denied(
                actor.id(),
                Denial::GrantsForAnother {
                    person: redact_keys(person).into_owned(),
                },
            ));
        }
        return match key {
            None => Ok(()),
            Some(_) => Err(Error::invalid("key id", format!("{id} is already in use"))),
        };
    }
    let key = key.ok_or(Error::KeyNotFound(id))?;
    if actor.role() == ActorRole::Admin && key.owner != actor.id() {
        let owner = redact_keys(key.owner).into_owned();
        return Err(Error::denied(actor.id(), Denial::NotOwner { key: id, owner }));
    }
    if key.deleted {
        return Err(Error::KeyDeleted(id));
    }
    match event {
        Event::Disabled { .. } if key.disabled => {
            return Err(Error::StateUnchanged {
                id,
                state: "disabled",
            });
        }
        Event::Enabled { .. } if !key.disabled => {
            return Err(Error::StateUnchanged { id, state: "enabled" });
        }
        Event::Whitelisted { net, .. } => {
            if key.whitelist.contains(net) {
                return Err(Error::WhitelistUnchanged {
                    id,
                    net: *net,
                    reason: "is already whitelisted",
                });
            }
            if key.whitelist.len() >= MAX_WHITELIST {
                return Err(Error::invalid(
                    "network",
                    format!("key {id} already has the maximum of {MAX_WHITELIST} whitelist entries"),
                ));
            }
        }
        Event::LimitsSet { rate_limits, .. } if rate_limits.as_slice() == key.rate_limits => {
            return Err(Error::StateUnchanged {
                id,
                state: if rate_limits.is_empty() {
                    "without rate limits"
                } else {
                    "limited so"
                },
            });
        }
        Event::CreditsSet { credits: None, .. } if key.credits.is_none() => {
            return Err(Error::StateUnchanged {
                id,
                state: "without credits",
            });
        }
        Event::CreditsAdded { amount, .. } => {
            let held = key.credits.ok_or_else(|| {
                Error::invalid(
                    "credits",
                    format!("key {id} has no credits to add to; set them first"),
                )
            })?;
            if held.saturating_add(*amount) > crate::model::credits::MAX_CREDITS {
                return Err(Error::invalid(
                    "credits",
                    format!(
                        "adding {amount} would give key {id} more than the most a key may hold, {}",
                        crate::model::credits::MAX_CREDITS
                    ),
                ));
            }
        }
        Event::Updated {
            roles: Some(roles), ..
        } => {
            let holds = |role: &str| roles.iter().any(|r| r == role);
            if actor.role() != ActorRole::SuperAdmin && holds(SUPER_ADMIN_ROLE) {
                return Err(Error::denied(actor.id(), Denial::GrantsSuperAdmin));
            }
            // Who an admin key acts as, and which people it counts for, is settled when
            // it is made: an update neither makes nor unmakes one.
            if holds(SUPER_ADMIN_ROLE) != key.grants_super_admin || holds(ADMIN_ROLE) != key.grants_admin {
                return Err(Error::invalid(
                    "role",
                    format!(
                        "an update cannot add or remove the {ADMIN_ROLE} or {SUPER_ADMIN_ROLE} role; make a new key"
                    ),
                ));
            }
        }
        Event::Unwhitelisted { net, .. } if !key.whitelist.contains(net) => {
            return Err(Error::WhitelistUnchanged {
                id,
                net: *net,
                reason: "is not whitelisted",
            });
        }
        _ => {}
    }
    Ok(())
}

/// Whether a key with this whitelist admits a client at `ip`.
///
/// An IPv4-mapped IPv6 client address is matched as the IPv4 address it carries.
#[inline]
pub(crate) fn ip_allowed(whitelist: &[IpNet], ip: IpAddr, require_whitelist: bool) -> Result<(), Rejection> {
    if whitelist.is_empty() {
        return if require_whitelist {
            Err(Rejection::NoWhitelist)
        } else {
            Ok(())
        };
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if whitelist.iter().any(|net| net.contains(&ip)) {
        Ok(())
    } else {
        Err(Rejection::IpNotWhitelisted)
    }
}

/// Why a presented key was refused. Not an error of the store: the normal "no" answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The key is not well formed; decided before any lookup.
    Malformed(Malformed),
    /// The `x-api-key` header could not yield a key.
    Header(HeaderProblem),
    /// No live key has this secret: never issued, or deleted.
    UnknownKey,
    /// The key has a whitelist and the client's address is not on it.
    IpNotWhitelisted,
    /// The key has no whitelist and the store requires one.
    NoWhitelist,
    /// The key's expiry time has passed.
    Expired,
    /// The key is disabled (until it is enabled again).
    Disabled,
    /// This host lost the shared log for longer than its limit and rejects every key
    /// until it has caught up (fleet mode): it cannot know what was revoked meanwhile.
    Stale,
    /// The key is past one of its rate limits (`limit`); a request may pass again after
    /// `retry_after`.
    RateLimited {
        /// The limit it is past.
        limit: RateLimit,
        /// How long until a request may pass again.
        retry_after: Duration,
    },
    /// The key lacks a role the caller requires (`KeyStore::verify_for_roles`, the tower
    /// layer's and `/auth`'s required roles); decided before the key's rate limits and
    /// credits are touched, so it spends neither.
    RoleMissing,
    /// The key has used all its credits; they refill after `retry_after` if the key has a
    /// refill, else only when an admin adds more.
    UsageExceeded {
        /// How long until the next refill, if the key has one.
        retry_after: Option<Duration>,
    },
}

/// Where a rate-limited key stands after an accepted request: the limit closest to
/// running out, how many more requests it admits now, and how long until it is whole
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// The limit closest to running out.
    pub limit: RateLimit,
    /// How many more requests it admits right now.
    pub remaining: u32,
    /// How long until its whole burst is available again.
    pub reset: Duration,
}

impl Rejection {
    /// A stable, machine-readable name for the reason.
    pub fn code(&self) -> &'static str {
        self.reason().code()
    }

    /// The reason, as the decision counts and [`code`](Self::code) name it.
    pub(crate) fn reason(&self) -> Reason {
        match self {
            Rejection::Malformed(Malformed::Length) => Reason::MalformedLength,
            Rejection::Malformed(Malformed::Character) => Reason::MalformedCharacter,
            Rejection::Malformed(Malformed::Prefix) => Reason::MalformedPrefix,
            Rejection::Malformed(Malformed::Checksum) => Reason::MalformedChecksum,
            Rejection::Header(HeaderProblem::Missing) => Reason::HeaderMissing,
            Rejection::Header(HeaderProblem::Repeated) => Reason::HeaderRepeated,
            Rejection::Header(HeaderProblem::NotAscii) => Reason::HeaderNotAscii,
            Rejection::Header(HeaderProblem::Padded) => Reason::HeaderPadded,
            Rejection::UnknownKey => Reason::UnknownKey,
            Rejection::IpNotWhitelisted => Reason::IpNotWhitelisted,
            Rejection::NoWhitelist => Reason::NoWhitelist,
            Rejection::Expired => Reason::Expired,
            Rejection::Disabled => Reason::Disabled,
            Rejection::Stale => Reason::Stale,
            Rejection::RateLimited { .. } => Reason::RateLimited,
            Rejection::UsageExceeded { .. } => Reason::UsageExceeded,
            Rejection::RoleMissing => Reason::RoleMissing,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(m) => m.fmt(f),
            Rejection::Header(h) => h.fmt(f),
            Rejection::UnknownKey => f.write_str("unknown or deleted key"),
            Rejection::IpNotWhitelisted => f.write_str("client address is not whitelisted for this key"),
            Rejection::NoWhitelist => f.write_str("key has no whitelist and this store requires one"),
            Rejection::Expired => f.write_str("key has expired"),
            Rejection::Disabled => f.write_str("key is disabled"),
            Rejection::Stale => f.write_str("this host lost the shared log and cannot vouch for any key"),
            Rejection::RateLimited { limit, retry_after } => write!(
                f,
                "key is past its rate limit of {limit}; retry in {}s",
                retry_after_secs(*retry_after)
            ),
            Rejection::UsageExceeded {
                retry_after: Some(wait),
            } => write!(
                f,
                "key has used all its credits; they refill in {}s",
                retry_after_secs(*wait)
            ),
            Rejection::UsageExceeded { retry_after: None } => f.write_str("key has used all its credits"),
            Rejection::RoleMissing => f.write_str("the key lacks a role this route requires"),
        }
    }
}

impl Rejection {
    /// For a key past its rate limit, or out of credits that refill, what `Retry-After`
    /// says: the whole seconds until a request may pass again, rounded up and at least 1.
    /// `None` for any other rejection.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Rejection::RateLimited { retry_after, .. }
            | Rejection::UsageExceeded {
                retry_after: Some(retry_after),
            } => Some(retry_after_secs(*retry_after)),
            _ => None,
        }
    }
}

/// A wait of `wait` in whole seconds, rounded up and at least 1 (a client told 0 would
/// retry at once and be refused again).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    whole_seconds_up(wait).max(1)
}

impl std::error::Error for Rejection {}

impl From<Malformed> for Rejection {
    fn from(m: Malformed) -> Self {
        Rejection::Malformed(m)
    }
}

impl From<HeaderProblem> for Rejection {
    fn from(h: HeaderProblem) -> Self {
        Rejection::Header(h)
    }
}

/// What a host learns about an accepted key. Owns its data; holds no secret and no lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey {
    pub(crate) id: KeyId,
    pub(crate) name: KeyName,
    pub(crate) roles: RoleSet,
    pub(crate) rate: Option<RateStatus>,
    pub(crate) credits: Option<u64>,
}

/// A key's name as handed out by `verify`: inline when short, so that most verifications
/// allocate nothing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum KeyName {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Long(Box<str>),
}

/// Longest name kept inline, in bytes.
pub(crate) const INLINE_NAME: usize = 22;

impl KeyName {
    #[inline]
    pub(crate) fn new(name: &str) -> Self {
        KeyName::short(name.as_bytes()).unwrap_or_else(|| KeyName::Long(name.into()))
    }

    /// A short name copied from bytes that are already a name (a key record's inline
    /// name), without checking them again: `as_str` checks on use.
    #[inline]
    pub(crate) fn short(name: &[u8]) -> Option<Self> {
        let len = u8::try_from(name.len())
            .ok()
            .filter(|_| name.len() <= INLINE_NAME)?;
        let mut bytes = [0u8; INLINE_NAME];
        bytes[..name.len()].copy_from_slice(name);
        Some(KeyName::Inline { len, bytes })
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            KeyName::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            KeyName::Long(name) => name,
        }
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl VerifiedKey {
    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The key's roles, in the order they were given.
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> {
        self.roles.0.iter().copied()
    }

    /// Whether the key has this role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.0.contains(&role)
    }

    /// For a key with rate limits: where it stands after this request (the limit closest
    /// to running out). `None` for a key without limits.
    pub fn rate_status(&self) -> Option<RateStatus> {
        self.rate
    }

    /// For a key with credits: how many remain after this request spent its cost. `None`
    /// for a key without credits.
    pub fn credits_remaining(&self) -> Option<u64> {
        self.credits
    }
}

/// A key's roles, interned for the life of the process, so that handing them to every
/// verified request costs neither an allocation nor a shared reference count. Distinct role
/// sets are few (they are bounded by the keys of the stores a process opens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RoleSet(pub(crate) &'static [&'static str]);

impl RoleSet {
    /// The interned set equal to `roles`.
    pub(crate) fn intern(roles: &[String]) -> RoleSet {
        static SETS: Mutex<Option<HashSet<&'static [&'static str]>>> = Mutex::new(None);
        static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
        let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
        let names = names.get_or_insert_with(HashSet::new);
        let set: Vec<&'static str> = roles
            .iter()
            .map(|r| match names.get(r.as_str()) {
                Some(&name) => name,
                None => {
                    let name: &'static str = Box::leak(r.clone().into_boxed_str());
                    names.insert(name);
                    name
                }
            })
            .collect();
        let mut sets = SETS.lock().unwrap_or_else(PoisonError::into_inner);
        let sets = sets.get_or_insert_with(HashSet::new);
        match sets.get(set.as_slice()) {
            Some(&found) => RoleSet(found),
            None => {
                let leaked: &'static [&'static str] = Box::leak(set.into_boxed_slice());
                sets.insert(leaked);
                RoleSet(leaked)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rules::parse_net;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| parse_net(s).unwrap()).collect()
    }

    #[test]
    fn whitelist_matches_hosts_and_ranges_of_both_families() {
        let wl = nets(&["10.1.2.3", "192.168.0.0/16", "2001:db8::/32", "::1"]);
        for ok in [
            "10.1.2.3",
            "192.168.44.1",
            "2001:db8:ffff::9",
            "::1",
            "::ffff:10.1.2.3",
            "::ffff:192.168.1.1",
        ] {
            assert_eq!(ip_allowed(&wl, ok.parse().unwrap(), false), Ok(()), "{ok}");
        }
        for no in [
            "10.1.2.4",
            "192.169.0.1",
            "2001:db9::1",
            "::2",
            "::ffff:10.1.2.4",
            "::a01:203",
        ] {
            assert_eq!(
                ip_allowed(&wl, no.parse().unwrap(), false),
                Err(Rejection::IpNotWhitelisted),
                "{no}"
            );
        }
    }

    #[test]
    fn denials_are_typed_and_never_quote_a_key_shaped_id() {
        // Only stored records can still carry such ids: replay checks them with these rules.
        let key = crate::model::token::ApiKey::generate().unwrap();
        let secret = key.expose_secret();
        let id = KeyId(9);
        let state = KeyState {
            owner: secret,
            deleted: false,
            disabled: false,
            whitelist: &[],
            roles: &[],
            grants_super_admin: false,
            grants_admin: false,
            expires_at: None,
            rate_limits: &[],
            credits: None,
        };
        let as_user = authorize(&Actor::user(secret), &Event::Deleted { id }, Some(state));
        let as_admin = authorize(&Actor::admin("bob"), &Event::Deleted { id }, Some(state));
        assert!(matches!(
            &as_user,
            Err(Error::PermissionDenied { actor, denial: Denial::NotAnAdmin }) if *actor == key.hint()
        ));
        assert!(matches!(
            &as_admin,
            Err(Error::PermissionDenied { actor, denial: Denial::NotOwner { key: k, owner } })
                if actor == "bob" && *k == id && *owner == key.hint()
        ));
        for e in [as_user.unwrap_err(), as_admin.unwrap_err()] {
            assert!(!e.to_string().contains(&secret[4..36]), "{e}");
            assert!(!format!("{e:?}").contains(&secret[4..36]), "{e:?}");
        }
    }

    #[test]
    fn empty_whitelist_admits_all_unless_required() {
        let ip = "203.0.113.9".parse().unwrap();
        assert_eq!(ip_allowed(&[], ip, false), Ok(()));
        assert_eq!(ip_allowed(&[], ip, true), Err(Rejection::NoWhitelist));
    }
}
