//! The event records: who did what to which key, and the rules every field obeys.
//!
//! Owns the domain values (actors, key ids, names, roles, networks) and their validation.
//! Commands on their way in obey every rule (`Origin::Command`); records decoded from disk
//! are held only to the rules in force when they were written (`Origin::Stored`: format
//! characters and key-shaped text were allowed), so existing stores keep opening. It never
//! touches storage and never sees a secret: a created key is recorded by its hash.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::SystemTime;

use ipnet::{IpNet, Ipv4Net};

use crate::Error;
use crate::clock::micros_of;
use crate::token::{KeyHash, looks_like_key, redact_keys};

/// Longest key name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest role name, in bytes.
pub const MAX_ROLE_LEN: usize = 64;
/// Most roles on one key.
pub const MAX_ROLES: usize = 32;
/// Most whitelist entries on one key.
pub const MAX_WHITELIST: usize = 1024;
/// Longest actor id, in characters.
pub const MAX_ACTOR_ID_CHARS: usize = 128;
/// The reserved role only a super admin may grant.
pub const SUPER_ADMIN_ROLE: &str = "super-admin";
/// The other reserved role name.
pub const ADMIN_ROLE: &str = "admin";

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
/// authenticated by an admin key, that key: see [`KeyStore::acting_through`]).
///
/// [`KeyStore::acting_through`]: crate::KeyStore::acting_through
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

/// Checks a person named in a command (an admin key's, a revocation's) by the rules of an
/// actor id.
pub(crate) fn validate_person(person: &str) -> Result<(), Error> {
    validate_actor_id(person, Origin::Command)
}

/// Which rules a text field is held to: those in force when it was written.
///
/// Rules added to the format later (no format characters, nothing shaped like an API key)
/// apply to commands only; a record already in a log was valid when it was written and
/// must keep decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A command on its way in: every rule.
    Command,
    /// A record decoded from a log, a snapshot or a backup: the rules of its format version.
    Stored,
}

/// Checks an actor id: 1 to 128 characters, no control characters, no surrounding spaces;
/// for a command also no format characters and nothing shaped like an API key.
fn validate_actor_id(id: &str, origin: Origin) -> Result<(), Error> {
    let n = id.chars().count();
    if n == 0 || n > MAX_ACTOR_ID_CHARS {
        return Err(Error::invalid(
            "actor",
            format!("id must be 1 to {MAX_ACTOR_ID_CHARS} characters, got {n}"),
        ));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(Error::invalid(
            "actor",
            "id has control characters or surrounding white space",
        ));
    }
    if origin == Origin::Command {
        refuse_format_chars("actor", id)?;
        refuse_key_shaped("actor", id)?;
    }
    Ok(())
}

/// Refuses text holding a Unicode format character, which would let it display as
/// something it is not (`alice\u{200B}` and `\u{202E}ecila` both show as `alice`).
fn refuse_format_chars(field: &'static str, text: &str) -> Result<(), Error> {
    match text.chars().find(|&c| is_format_char(c)) {
        Some(c) => Err(Error::invalid(
            field,
            format!(
                "must not contain the invisible format character U+{:04X}",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses text shaped like an API key: a secret pasted as a name or an id would be
/// stored for ever and printed by every listing. The text is not quoted.
fn refuse_key_shaped(field: &'static str, text: &str) -> Result<(), Error> {
    if looks_like_key(text) {
        return Err(Error::invalid(
            field,
            "looks like an API key; a key's secret must never be stored or shown",
        ));
    }
    Ok(())
}

/// Whether `c` is a Unicode format character (general category Cf, Unicode 16.0):
/// invisible, yet able to hide, join or reorder the text around it.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// A key's public id: 16 lowercase hexadecimal digits. Safe to show and log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub(crate) u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

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

/// User input as it may be quoted in an error: anything shaped like an API key redacted
/// (a secret pasted into the wrong field must not end up in a log), then cut short.
pub(crate) fn shown(s: &str) -> String {
    redact_keys(s).chars().take(40).collect()
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
    /// [`Rejection::Expired`](crate::Rejection::Expired). It must be in the future when
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
        })
    }
}

/// Whether a key with these roles is an admin key: it holds `admin` or `super-admin`.
pub(crate) fn grants_admin(roles: &[String]) -> bool {
    roles.iter().any(|r| r == ADMIN_ROLE || r == SUPER_ADMIN_ROLE)
}

/// Checks a key's roles: 1 to [`MAX_ROLES`], each valid, none twice.
pub(crate) fn validate_roles(roles: &[String]) -> Result<(), Error> {
    if roles.is_empty() {
        return Err(Error::invalid("role", "a key needs at least one role"));
    }
    if roles.len() > MAX_ROLES {
        return Err(Error::invalid(
            "role",
            format!("at most {MAX_ROLES} roles, got {}", roles.len()),
        ));
    }
    for (i, role) in roles.iter().enumerate() {
        validate_role(role)?;
        if roles[..i].contains(role) {
            return Err(Error::invalid("role", format!("{role:?} is given twice")));
        }
    }
    Ok(())
}

/// Trims a key name and checks it: 1 to 100 characters, no control characters; for a
/// command also no format characters and nothing shaped like an API key.
fn validate_name(name: &str, origin: Origin) -> Result<&str, Error> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters after trimming, got {n}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "must not contain control characters"));
    }
    if origin == Origin::Command {
        refuse_format_chars("name", name)?;
        refuse_key_shaped("name", name)?;
    }
    Ok(name)
}

/// Checks a role name: 1 to 64 of `[a-z0-9_-]`.
pub(crate) fn validate_role(role: &str) -> Result<(), Error> {
    if role.is_empty() || role.len() > MAX_ROLE_LEN {
        return Err(Error::invalid(
            "role",
            format!("{:?} must be 1 to {MAX_ROLE_LEN} characters", shown(role)),
        ));
    }
    if !role
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "role",
            format!("{:?} may only use a-z, 0-9, - and _", shown(role)),
        ));
    }
    Ok(())
}

/// Checks a whitelist and returns it in canonical form: at most [`MAX_WHITELIST`] entries,
/// no host bits set, no duplicates. A stored whitelist must come back unchanged.
pub(crate) fn validate_whitelist(nets: &[IpNet]) -> Result<Vec<IpNet>, Error> {
    if nets.len() > MAX_WHITELIST {
        return Err(Error::invalid(
            "network",
            format!(
                "at most {MAX_WHITELIST} whitelist entries per key, got {}",
                nets.len()
            ),
        ));
    }
    let out = nets
        .iter()
        .map(|&net| canonical_net(net))
        .collect::<Result<Vec<_>, _>>()?;
    distinct(&out)?;
    Ok(out)
}

/// Checks that no network appears twice (a sort, not a quadratic scan: whitelists can
/// hold [`MAX_WHITELIST`] entries).
fn distinct(nets: &[IpNet]) -> Result<(), Error> {
    let mut sorted = nets.to_vec();
    sorted.sort_unstable();
    match sorted.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(Error::invalid("network", format!("{} is given twice", w[0]))),
        None => Ok(()),
    }
}

/// The canonical form of a whitelist entry: IPv4-mapped IPv6 becomes IPv4, and host bits
/// must be zero (`10.1.2.3/8` is refused rather than silently widened or narrowed).
pub(crate) fn canonical_net(net: IpNet) -> Result<IpNet, Error> {
    let net = match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .map_err(|e| Error::invalid("network", e.to_string()))?,
            None => net,
        },
        other => other,
    };
    if net.trunc() != net {
        return Err(Error::invalid(
            "network",
            format!("{net} has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    Ok(net)
}

/// Parses a whitelist entry: an IPv4 or IPv6 address, or a CIDR range.
///
/// # Errors
/// [`Error::InvalidInput`] naming what is wrong.
///
/// # Example
/// ```
/// let net = keyledger::parse_net("10.0.0.0/8").unwrap();
/// assert_eq!(keyledger::parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
/// assert!(keyledger::parse_net("10.0.0.1/8").is_err());
/// # let _ = net;
/// ```
pub fn parse_net(s: &str) -> Result<IpNet, Error> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            Error::invalid(
                "network",
                format!("{:?} is not an IP address or CIDR range", shown(s)),
            )
        })?,
    };
    canonical_net(net)
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
            | Event::Enabled { id } => Some(*id),
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
}

impl EventKind {
    /// Every kind, in the order of their codes.
    pub(crate) const ALL: [EventKind; 9] = [
        EventKind::Created,
        EventKind::Whitelisted,
        EventKind::Unwhitelisted,
        EventKind::Deleted,
        EventKind::Imported,
        EventKind::Rolled,
        EventKind::Disabled,
        EventKind::Enabled,
        EventKind::ActorRevoked,
    ];

    /// `created`, `whitelisted`, `unwhitelisted`, `deleted`, `imported`, `rolled`,
    /// `disabled`, `enabled` or `actor_revoked`.
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
                ..
            } => {
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
            Event::Deleted { .. } | Event::Disabled { .. } | Event::Enabled { .. } => {}
        }
        Ok(())
    }
}

/// Whether a tail is four base62 characters (a generated key's last four).
fn is_base62_tail(tail: &[u8; 4]) -> bool {
    tail.iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        for origin in [Origin::Command, Origin::Stored] {
            assert_eq!(validate_name("  bot  ", origin).unwrap(), "bot");
            assert!(validate_name("   ", origin).is_err());
            assert!(validate_name(&"x".repeat(101), origin).is_err());
            assert!(validate_name(&"é".repeat(100), origin).is_ok());
            assert!(validate_name("a\u{7}b", origin).is_err());
        }
    }

    /// Every format character (general category Cf) of Unicode 16.0, as ranges.
    const CF: [(u32, u32); 21] = [
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];

    #[test]
    fn every_format_character_is_recognised_and_its_neighbours_are_not() {
        for (lo, hi) in CF {
            for c in (lo..=hi).filter_map(char::from_u32) {
                assert!(is_format_char(c), "U+{:04X}", u32::from(c));
            }
            for outside in [lo - 1, hi + 1].into_iter().filter_map(char::from_u32) {
                assert!(!is_format_char(outside), "U+{:04X}", u32::from(outside));
            }
        }
        for c in "aZ09 _-.'é日本ßΩا\u{0300}\u{FE0F}🔑👍\u{2028}\u{FFFC}".chars() {
            assert!(!is_format_char(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn format_characters_are_refused_in_commands_and_kept_in_stored_records() {
        for lying in [
            "alice\u{200B}",
            "\u{202E}ecila",
            "\u{FEFF}bom",
            "a\u{2066}b\u{2069}",
            "soft\u{00AD}hyphen",
            "tag\u{E0041}",
        ] {
            assert!(
                matches!(
                    validate_name(lying, Origin::Command),
                    Err(Error::InvalidInput { field: "name", .. })
                ),
                "{lying:?}"
            );
            assert!(
                matches!(
                    validate_actor_id(lying, Origin::Command),
                    Err(Error::InvalidInput { field: "actor", .. })
                ),
                "{lying:?}"
            );
            assert!(matches!(
                Actor::admin(lying).validate(),
                Err(Error::InvalidInput { .. })
            ));
            assert_eq!(validate_name(lying, Origin::Stored).unwrap(), lying);
            assert!(validate_actor_id(lying, Origin::Stored).is_ok());
        }
        for fine in [
            "café",
            "日本のボット",
            "🔑 rotation bot",
            "naïve façade",
            "ok-name_2",
        ] {
            assert_eq!(validate_name(fine, Origin::Command).unwrap(), fine);
            assert!(validate_actor_id(fine, Origin::Command).is_ok(), "{fine}");
        }
    }

    #[test]
    fn key_shaped_names_and_actor_ids_are_refused_in_commands_without_quoting_them() {
        let key = crate::token::ApiKey::generate().unwrap();
        let secret = key.expose_secret();
        let body = &secret[4..20];
        for shaped in [
            secret.to_owned(),
            format!("backup of {secret}"),
            format!("{secret} (old)"),
            "klk_".to_owned(),
            format!("bot klk_{body}"),
        ] {
            let name = validate_name(&shaped, Origin::Command).unwrap_err();
            let actor = validate_actor_id(&shaped, Origin::Command).unwrap_err();
            for e in [name, actor] {
                assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
                assert!(!e.to_string().contains(body), "{e}");
                assert!(!format!("{e:?}").contains(body), "{e:?}");
            }
            assert!(validate_name(&shaped, Origin::Stored).is_ok());
            assert!(validate_actor_id(&shaped, Origin::Stored).is_ok());
        }
        assert!(validate_name("KLK-notes for klk", Origin::Command).is_ok());
    }

    fn created(actor: &str, name: &str, whitelist: Vec<IpNet>) -> Record {
        Record {
            seq: 1,
            at: 1_700_000_000_000_000,
            actor: Actor::admin(actor),
            via: None,
            event: Event::Created {
                id: KeyId(0x0123_4567_89ab_cdef),
                hash: KeyHash([7; 32]),
                tail: *b"Ab3z",
                name: name.to_owned(),
                roles: vec!["bot".to_owned()],
                whitelist,
                expires_at: None,
                source: KeySource::Generated,
                acts_for: None,
            },
            prev: [0; 32],
        }
    }

    #[test]
    fn a_stored_record_with_a_format_character_or_a_key_shaped_text_still_decodes_and_replays() {
        let key = crate::token::ApiKey::generate().unwrap();
        for (actor, name) in [
            ("\u{202E}ecila", "alice\u{200B}"),
            ("root", "\u{FEFF}bot"),
            (key.expose_secret(), "a key pasted as a name: klk_x"),
        ] {
            let record = created(actor, name, Vec::new());
            let bytes = crate::codec::encode_record(&record).unwrap();
            let decoded = crate::codec::decode_record(&bytes, 1).unwrap();
            assert_eq!(decoded, record);
            // Replay accepts it, and its author may still act on the key it created.
            let chain = crate::chain::Chain::new(None);
            let ledger = crate::ledger::Ledger::new(chain.clone());
            let now = crate::ledger::now_micros();
            let mut state = ledger.write_state();
            ledger.accept_record(&mut state, 1, &bytes, now).unwrap();
            let delete = Record {
                seq: 2,
                prev: chain.hash(&bytes),
                event: Event::Deleted {
                    id: decoded.event.key_id().unwrap(),
                },
                ..decoded
            };
            let delete = crate::codec::encode_record(&delete).unwrap();
            ledger.accept_record(&mut state, 2, &delete, now).unwrap();
            assert_eq!(state.keys(true, now)[0].name, name);
        }
    }

    #[test]
    fn stored_whitelists_obey_the_same_rules_as_requested_ones() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let ok = vec![net("10.0.0.0/8"), net("2001:db8::/32")];
        assert!(created("root", "bot", ok.clone()).validate().is_ok());
        assert_eq!(validate_whitelist(&ok).unwrap(), ok);
        for bad in [
            vec![net("10.0.0.0/8"), net("10.0.0.0/8")],
            vec![net("10.1.0.0/8")],
            vec![net("::ffff:10.0.0.0/104")],
            vec![net("10.0.0.1/32"); MAX_WHITELIST + 1],
        ] {
            assert!(
                matches!(
                    created("root", "bot", bad.clone()).validate(),
                    Err(Error::InvalidInput { field: "network", .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn role_names_use_a_small_alphabet() {
        assert!(validate_role("bot_2-x").is_ok());
        for bad in ["", "Bot", "a b", "é", &"r".repeat(65)] {
            assert!(
                matches!(validate_role(bad), Err(Error::InvalidInput { field: "role", .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn nets_are_canonical() {
        assert_eq!(
            parse_net("::ffff:10.1.2.3").unwrap(),
            parse_net("10.1.2.3").unwrap()
        );
        assert_eq!(
            parse_net("::ffff:10.1.0.0/112").unwrap(),
            parse_net("10.1.0.0/16").unwrap()
        );
        assert!(parse_net("2001:db8::/32").is_ok());
        for bad in [
            "10.0.0.1/8",
            "300.1.1.1",
            "10.0.0.0/33",
            "",
            "fe80::/129",
            "1.2.3.4/-1",
        ] {
            assert!(
                matches!(parse_net(bad), Err(Error::InvalidInput { field: "network", .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_never_quote_a_key() {
        let key = crate::token::ApiKey::generate().unwrap();
        let secret = key.expose_secret();
        let errors = [
            secret.parse::<KeyId>().unwrap_err(),
            parse_net(secret).unwrap_err(),
            validate_role(secret).unwrap_err(),
            secret.parse::<ActorRole>().unwrap_err(),
        ];
        for e in errors {
            assert!(!e.to_string().contains(&secret[4..20]), "{e}");
        }
    }

    #[test]
    fn key_ids_round_trip_and_reject_garbage() {
        let id = KeyId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
        for bad in ["", "00ABCDEF01234567", "00abcdef0123456", "+0abcdef01234567"] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
    }
}
