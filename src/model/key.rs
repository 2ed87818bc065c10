//! Key ids, the request to create a key (`NewKey`), where a key's secret came from and its
//! visible tail. Never holds a secret: a key is known by its id and, once made, its hash.

use std::str::FromStr;
use std::time::SystemTime;

use ipnet::IpNet;

use super::credits::Credits;
use super::id::KeyId;
use super::limit::{RateLimit, canonical_limits};
use super::owner::Meta;
use super::rules::{
    Origin, grants_admin, shown, validate_external_id, validate_name, validate_person, validate_roles,
    validate_whitelist,
};
use crate::clock::micros_of;
use crate::model::error::Error;

impl FromStr for KeyId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 16
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::invalid(
                "key id",
                format!("{:?} is not 16 lowercase hex digits", shown(s)),
            ));
        }
        u64::from_str_radix(s, 16)
            .map(KeyId)
            .map_err(|e| Error::invalid("key id", e.to_string()))
    }
}

/// What to create: a name, one or more roles, an optional IP whitelist and an optional
/// expiry time.
///
/// # Example
/// ```
/// use keyledger::NewKey;
/// use std::time::{Duration, SystemTime};
/// let new = NewKey::new("notifications bot")
///     .role("notifier")
///     .allow("10.0.0.0/8".parse().unwrap())
///     .allow("2001:db8::1".parse::<std::net::IpAddr>().unwrap().into())
///     .expires_at(SystemTime::now() + Duration::from_secs(90 * 24 * 3600));
/// # let _ = new;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub(crate) name: String,
    pub(crate) roles: Vec<String>,
    pub(crate) whitelist: Vec<IpNet>,
    /// Microseconds since the Unix epoch; checked against the clock when written.
    pub(crate) expires_at: Option<i64>,
    /// For an admin key: the person it acts as (see [`NewKey::acting_for`]).
    pub(crate) acts_for: Option<String>,
    /// Its rate limits (see [`NewKey::rate_limit`]).
    pub(crate) rate_limits: Vec<RateLimit>,
    /// Its credits (see [`NewKey::credits`]).
    pub(crate) credits: Option<Credits>,
    /// Its owner's id outside keyledger (see [`NewKey::external_id`]).
    pub(crate) external_id: Option<String>,
    /// Its metadata (see [`NewKey::meta`]).
    pub(crate) meta: Option<Meta>,
}

impl NewKey {
    /// A key with this name and, so far, no roles, an empty whitelist and no expiry.
    pub fn new(name: impl Into<String>) -> Self {
        NewKey {
            name: name.into(),
            roles: Vec::new(),
            whitelist: Vec::new(),
            expires_at: None,
            acts_for: None,
            rate_limits: Vec::new(),
            credits: None,
            external_id: None,
            meta: None,
        }
    }

    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Adds a whitelisted address or CIDR range.
    pub fn allow(mut self, net: IpNet) -> Self {
        self.whitelist.push(net);
        self
    }

    /// Makes the key expire at `at`: from then on, verify answers
    /// `Rejection::Expired`. It must be in the future when
    /// the key is written. No event is written when a key expires.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(micros_of(at));
        self
    }

    /// Makes an admin key (one with the `admin` or `super-admin` role) act as the person
    /// `actor`: the admin API then acts as that person, with the lesser of the key's role
    /// and its creator's, and every key made through it is that person's. Without it, an
    /// admin key acts as its creator. Only a super admin may name someone else; an admin
    /// may name only herself. A key without an admin role may not name a person.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, KeyStore, NewKey};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let root = Actor::super_admin("root");
    /// let carol = store
    ///     .create_key(&root, NewKey::new("carol's admin key").role("admin").acting_for("carol"))
    ///     .unwrap();
    /// assert_eq!(store.key(carol.id).unwrap().acts_for.as_deref(), Some("carol"));
    /// ```
    pub fn acting_for(mut self, actor: impl Into<String>) -> Self {
        self.acts_for = Some(actor.into());
        self
    }

    /// Adds a rate limit: at most `limit.limit()` accepted verifications per window (up to
    /// four limits, each on its own window). Verify then answers
    /// `Rejection::RateLimited` past it.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, KeyStore, NewKey, Rejection};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let new = NewKey::new("bot").role("bot").rate_limit("2/1m".parse().unwrap());
    /// let created = store.create_key(&Actor::admin("alice"), new).unwrap();
    /// let (secret, ip) = (created.key.expose_secret(), "192.0.2.1".parse().unwrap());
    /// assert!(store.verify(secret, ip).is_ok());
    /// assert!(store.verify(secret, ip).is_ok());
    /// assert!(matches!(store.verify(secret, ip), Err(Rejection::RateLimited { .. })));
    /// ```
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits.push(limit);
        self
    }

    /// Gives the key credits: each accepted verification spends its cost (1 unless the
    /// host names another, see `KeyStore::verify_with_cost`), and a key with none left is
    /// refused as `Rejection::UsageExceeded` until a refill or a top-up. Recorded as a
    /// `credits_set` entry right after the creation, in the same commit.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, Credits, KeyStore, NewKey, Rejection};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let new = NewKey::new("bot").role("bot").credits(Credits::new(2).unwrap());
    /// let created = store.create_key(&Actor::admin("alice"), new).unwrap();
    /// let (secret, ip) = (created.key.expose_secret(), "192.0.2.1".parse().unwrap());
    /// assert_eq!(store.verify(secret, ip).unwrap().credits_remaining(), Some(1));
    /// assert_eq!(store.verify(secret, ip).unwrap().credits_remaining(), Some(0));
    /// assert!(matches!(store.verify(secret, ip), Err(Rejection::UsageExceeded { .. })));
    /// ```
    pub fn credits(mut self, credits: Credits) -> Self {
        self.credits = Some(credits);
        self
    }

    /// Names the key's owner (a user or tenant id of the host's own, up to 255
    /// characters): listings can be filtered by it, and `/auth` and the tower layer hand it
    /// on. Recorded, with the metadata, as an `updated` entry right after the creation, in
    /// the same commit.
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    /// Gives the key metadata: a JSON object of the host's own (see [`Meta`]). Recorded as
    /// [`NewKey::external_id`] is.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, KeyStore, Meta, NewKey};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let new = NewKey::new("bot").role("bot").external_id("tenant-7").meta(Meta::parse(r#"{"plan":"free"}"#).unwrap());
    /// let created = store.create_key(&Actor::admin("alice"), new).unwrap();
    /// assert_eq!(store.key(created.id).unwrap().meta.unwrap().as_str(), r#"{"plan":"free"}"#);
    /// ```
    pub fn meta(mut self, meta: Meta) -> Self {
        self.meta = Some(meta);
        self
    }

    /// Checks every field by every rule (`Origin::Command`) and returns the normalized
    /// request (trimmed name, canonical nets).
    pub(crate) fn validated(&self) -> Result<NewKey, Error> {
        let name = validate_name(&self.name, Origin::Command)?.to_owned();
        validate_roles(&self.roles)?;
        let whitelist = validate_whitelist(&self.whitelist)?;
        if let Some(person) = &self.acts_for {
            validate_person(person)?;
            if !grants_admin(&self.roles) {
                return Err(Error::invalid(
                    "actor",
                    "only a key with the admin or super-admin role acts for a person",
                ));
            }
        }
        Ok(NewKey {
            name,
            roles: self.roles.clone(),
            whitelist,
            expires_at: self.expires_at,
            acts_for: self.acts_for.clone(),
            rate_limits: canonical_limits(&self.rate_limits)?,
            credits: self.credits.map(|c| c.check().map(|()| c)).transpose()?,
            external_id: self
                .external_id
                .as_ref()
                .map(|id| validate_external_id(id, Origin::Command).map(|()| id.clone()))
                .transpose()?,
            meta: self.meta.clone(),
        })
    }
}

/// Where a key's secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeySource {
    /// Generated by keyledger.
    Generated,
    /// An existing secret adopted as it is; its hash is keyledger's.
    Imported,
    /// An existing key adopted by its SHA-256 hash; verified by SHA-256 of the token.
    ImportedSha256,
}

impl KeySource {
    pub(crate) fn code(self) -> u8 {
        match self {
            KeySource::Generated => 0,
            KeySource::Imported => 1,
            KeySource::ImportedSha256 => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        [
            KeySource::Generated,
            KeySource::Imported,
            KeySource::ImportedSha256,
        ]
        .get(usize::from(code))
        .copied()
    }
}

/// A key's visible tail: its last four characters, or none (all zero) for an adopted
/// secret that is not in keyledger's format, whose characters are all secret.
pub(crate) const NO_TAIL: [u8; 4] = [0; 4];
