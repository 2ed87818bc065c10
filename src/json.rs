//! The JSON keyledger speaks (feature `json`): the objects the command-line tool prints with
//! `--json` and the admin API of `keyledger serve` answers with, that API's error body, the
//! audit filters both take, the `import-keys` line format, and the duration syntax of
//! expiries and grace periods.
//!
//! Turns the store's types into these shapes and text into the store's types; it decides
//! nothing. Only [`KeyJson`](keys::KeyJson) (for a creation) and [`RollJson`] carry a secret: neither
//! shows it in its `Debug`, both zero it on drop, and no error here ever quotes a secret
//! read from an import line.

use std::fmt;
use std::io::{BufRead, Read};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::model::rules::shown;
use credits::CreditsJson;
use limits::RateLimitJson;

pub(crate) mod credits;
pub(crate) mod keys;
pub(crate) mod limits;
pub(crate) mod owner;
pub(crate) mod page;
pub(crate) mod people;
pub(crate) mod usage;
use crate::model::error::Denial;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::key::NewKey;
use crate::model::record::EventKind;
use crate::model::refusal::RefusedAttempt;
use crate::model::token::ExistingKey;
use crate::model::token::format::redact_keys;
use crate::projection::AuditEntry;
use crate::store::RolledKey;

/// Most lines [`read_import_lines`] takes: one commit, held in memory until it is durable.
pub const MAX_IMPORT_LINES: usize = 1_000_000;
/// Most bytes of one import line: a key with the most roles and the longest whitelist the
/// library allows fits with room.
pub const MAX_IMPORT_LINE_BYTES: usize = 128 * 1024;
/// Most bytes [`read_import_lines`] reads.
pub const MAX_IMPORT_BYTES: u64 = 256 * 1024 * 1024;

/// A time as the JSON writes it: RFC 3339 in UTC, with the log's microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    // Only a log written by a clock past the year 9999 gets the fallback; show the
    // largest time rather than refuse to show the log.
    jiff::Timestamp::try_from(t)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

/// A time given as RFC 3339 (`2026-12-31T23:59:59Z`), for argument `field`.
pub(crate) fn parse_time(field: &'static str, s: &str) -> Result<SystemTime, Error> {
    s.parse::<jiff::Timestamp>()
        .map(SystemTime::from)
        .map_err(|_| Error::invalid(field, format!("{:?} is not an RFC 3339 time", shown(s))))
}

/// A rolled key's answer (`roll --json`, `POST /v1/keys/{id}/roll`): the new secret,
/// shown this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct RollJson {
    /// 16 hex digits.
    pub id: String,
    /// The new secret.
    pub key: String,
    /// RFC 3339: until when the previous secret verifies (the roll's own time for no grace).
    pub previous_valid_until: String,
    /// For a roll with no grace: the hosts of the fleet that may still accept the previous
    /// secret when the wait ended; absent when there are none (see
    /// [`KeyJson::unconfirmed`](keys::KeyJson::unconfirmed)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
}

impl From<&RolledKey> for RollJson {
    fn from(rolled: &RolledKey) -> Self {
        RollJson {
            id: rolled.id.to_string(),
            key: rolled.key.expose_secret().to_owned(),
            previous_valid_until: rfc3339(rolled.previous_valid_until),
            unconfirmed: rolled.unconfirmed.clone(),
        }
    }
}

impl fmt::Debug for RollJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollJson")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("previous_valid_until", &self.previous_valid_until)
            .finish()
    }
}

impl Drop for RollJson {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// One adopted key of an import (`import-keys --json`, `POST /v1/keys/import`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct ImportedJson {
    /// Its line in the import, from 1.
    pub line: usize,
    /// Its new id.
    pub id: String,
}

impl ImportedJson {
    /// The key adopted from `line` (from 1) as `id`.
    pub fn new(line: usize, id: KeyId) -> Self {
        ImportedJson {
            line,
            id: id.to_string(),
        }
    }
}

/// An audit entry (`audit --json`, `GET /v1/audit`). `ip` is the network of a whitelist
/// change, else `null`; `whitelist` the first whitelist of a created or imported key, else
/// `null`; `previous_valid_until` is set for `rolled` only; `via` is the admin key the
/// actor came through, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct AuditJson {
    /// Position in the log, from 1.
    pub seq: u64,
    /// RFC 3339.
    pub at: String,
    /// Who.
    pub actor: String,
    /// `super-admin`, `admin` or `user`.
    pub actor_role: String,
    /// `created`, `imported`, `whitelisted`, `unwhitelisted`, `rolled`, `disabled`,
    /// `enabled`, `deleted`, `actor_revoked`, `limits_changed`, `credits_set`,
    /// `credits_added` or `updated`.
    pub kind: String,
    /// The key; `null` for `actor_revoked`, which names a person.
    pub key_id: Option<String>,
    /// Its name; `null` for `actor_revoked`.
    pub key_name: Option<String>,
    /// For `actor_revoked` the person revoked; for the creation of an admin key the
    /// person it acts as; else `null`.
    #[serde(default)]
    pub person: Option<String>,
    /// For `actor_revoked`: whether the keys the person created were deleted too.
    #[serde(default)]
    pub with_keys: bool,
    /// The network added or removed, for `whitelisted` and `unwhitelisted`.
    pub ip: Option<String>,
    /// The key's whitelist as it was created or imported (CIDR strings; empty admits any
    /// address), for `created` and `imported`.
    pub whitelist: Option<Vec<String>>,
    /// For `rolled`: until when the previous secret verified.
    pub previous_valid_until: Option<String>,
    /// The admin key the actor came through.
    pub via: Option<String>,
    /// For `limits_changed`, the key's new rate limits (empty: removed); for `created`
    /// and `imported`, its first ones; else `null`.
    #[serde(default)]
    pub rate_limits: Option<Vec<RateLimitJson>>,
    /// For `credits_set`, the credits set (`null`: removed); else `null`.
    #[serde(default)]
    pub credits: Option<CreditsJson>,
    /// For `credits_added`, how many were added; else `null`.
    #[serde(default)]
    pub credits_added: Option<u64>,
    /// For `updated`, what changed; else `null`.
    #[serde(default)]
    pub changes: Option<owner::ChangesJson>,
}

impl From<&AuditEntry> for AuditJson {
    fn from(entry: &AuditEntry) -> Self {
        let ip = match entry.kind {
            EventKind::Whitelisted | EventKind::Unwhitelisted => entry.nets.first().map(ToString::to_string),
            _ => None,
        };
        let whitelist = match entry.kind {
            EventKind::Created | EventKind::Imported => {
                Some(entry.nets.iter().map(ToString::to_string).collect())
            }
            _ => None,
        };
        AuditJson {
            seq: entry.seq,
            at: rfc3339(entry.at),
            actor: entry.actor.id().to_owned(),
            actor_role: entry.actor.role().as_str().to_owned(),
            kind: entry.kind.as_str().to_owned(),
            key_id: entry.key_id.map(|id| id.to_string()),
            key_name: entry.key_name.clone(),
            person: entry.person.clone(),
            with_keys: entry.with_keys,
            ip,
            whitelist,
            previous_valid_until: entry.previous_valid_until.map(rfc3339),
            via: entry.via.map(|id| id.to_string()),
            rate_limits: matches!(
                entry.kind,
                EventKind::Created | EventKind::Imported | EventKind::LimitsChanged
            )
            .then(|| RateLimitJson::list(&entry.rate_limits)),
            credits: entry.credits.as_ref().map(CreditsJson::from),
            credits_added: entry.credits_added,
            changes: entry.changes.as_ref().map(owner::ChangesJson::from),
        }
    }
}

/// A refused command of the security trail (`audit --refused --json`,
/// `GET /v1/audit?refused=true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct RefusedJson {
    /// RFC 3339.
    pub at: String,
    /// Who tried.
    pub actor: String,
    /// As what.
    pub actor_role: String,
    /// `create`, `import`, `whitelist`, `unwhitelist`, `delete`, `roll`, `disable`,
    /// `enable` or `revoke_actor`.
    pub action: String,
    /// The key aimed at; `null` for a creation, an import or a person's revocation.
    pub key_id: Option<String>,
    /// For `not_owner`, the actor who created the key.
    pub owner: Option<String>,
    /// For `grants_for_another` and `revokes_person`, the person named.
    #[serde(default)]
    pub person: Option<String>,
    /// The admin key the actor came through.
    pub via: Option<String>,
    /// `not_an_admin`, `grants_super_admin`, `not_owner`, `outranks_actor`,
    /// `admin_key_revoked`, `grants_for_another` or `revokes_person`.
    pub reason: String,
    /// The reason in words.
    pub message: String,
}

impl From<&RefusedAttempt> for RefusedJson {
    fn from(attempt: &RefusedAttempt) -> Self {
        RefusedJson {
            at: rfc3339(attempt.at),
            actor: attempt.actor.id().to_owned(),
            actor_role: attempt.actor.role().as_str().to_owned(),
            action: attempt.action.as_str().to_owned(),
            key_id: attempt.key.map(|id| id.to_string()),
            owner: match &attempt.denial {
                Denial::NotOwner { owner, .. } => Some(owner.clone()),
                _ => None,
            },
            person: match &attempt.denial {
                Denial::GrantsForAnother { person } | Denial::RevokesPerson { person } => {
                    Some(person.clone())
                }
                _ => None,
            },
            via: attempt.via.map(|id| id.to_string()),
            reason: attempt.denial.code().to_owned(),
            message: attempt.denial.to_string(),
        }
    }
}

/// Who an admin key acts as (`GET /v1/whoami`): the person it was made for, else the actor
/// who created it, with the lesser of the creator's role and the key's
/// ([`KeyStore::acting_through`](crate::store::KeyStore::acting_through)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct WhoamiJson {
    /// The actor's id.
    pub actor: String,
    /// `super-admin` or `admin`.
    pub actor_role: String,
    /// The admin key it acts through: 16 hex digits; `null` for an admin a trusted proxy
    /// named (`serve --admin-user-header`).
    pub key_id: Option<String>,
}

impl WhoamiJson {
    /// `actor`, acting through the admin key `key` (none: named by a trusted proxy).
    pub fn new(actor: &crate::model::actor::Actor, key: Option<KeyId>) -> Self {
        WhoamiJson {
            actor: actor.id().to_owned(),
            actor_role: actor.role().as_str().to_owned(),
            key_id: key.map(|k| k.to_string()),
        }
    }
}

/// The admin API's error body: `error` names the [`Error`] variant ([`Error::code`]), or
/// one of the API's own kinds (`unauthorized`, `forbidden`, `not_found`, ...); the other
/// fields say more where they apply. Never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct ErrorJson {
    /// What kind of error, in snake case.
    pub error: String,
    /// For an authentication refusal (`unauthorized`, `forbidden`), the refusal's code;
    /// for `permission_denied`, the rule's ([`Denial::code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The error in words, as the command-line tool would say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `invalid_input`, which argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The key the error is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For `import_entry`, the refused key's position from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// For `import_entry`, why that key was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub source: Option<Box<ErrorJson>>,
}

impl ErrorJson {
    /// An error of the API's own `kind`, said in `message`.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        ErrorJson {
            error: kind.to_owned(),
            reason: None,
            message: Some(redact_keys(&message.into()).into_owned()),
            field: None,
            id: None,
            index: None,
            source: None,
        }
    }
}

impl From<&Error> for ErrorJson {
    fn from(e: &Error) -> Self {
        let mut json = ErrorJson::new(e.code(), e.to_string());
        match e {
            Error::InvalidInput { field, .. } => json.field = Some((*field).to_owned()),
            Error::PermissionDenied { denial, .. } => {
                json.reason = Some(denial.code().to_owned());
                if let Denial::NotOwner { key, .. }
                | Denial::OutranksActor { key }
                | Denial::AdminKeyRevoked { key }
                | Denial::RaisesOwnRoles { key } = denial
                {
                    json.id = Some(key.to_string());
                }
            }
            Error::KeyNotFound(id)
            | Error::KeyDeleted(id)
            | Error::WhitelistUnchanged { id, .. }
            | Error::StateUnchanged { id, .. }
            | Error::LastWhitelistEntry { id } => json.id = Some(id.to_string()),
            Error::ImportEntry { index, source } => {
                json.index = Some(*index);
                json.source = Some(Box::new(ErrorJson::from(&**source)));
            }
            _ => {}
        }
        json
    }
}

/// The filters of the audit trail, as `keyledger audit` and `GET /v1/audit` take them;
/// every one given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditFilter {
    /// Only entries about this key.
    pub key: Option<KeyId>,
    /// Only entries by this actor id.
    pub actor: Option<String>,
    /// Only entries of this kind (not for refused attempts, which have none).
    pub kind: Option<EventKind>,
    /// Only entries at or after this time.
    pub since: Option<SystemTime>,
    /// Only entries at or before this time.
    pub until: Option<SystemTime>,
}

impl AuditFilter {
    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == AuditFilter::default()
    }

    /// Whether an audit entry passes.
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.key.is_none_or(|id| e.key_id == Some(id))
            && self.actor.as_deref().is_none_or(|a| e.actor.id() == a)
            && self.kind.is_none_or(|k| e.kind == k)
            && self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at <= t)
    }

    /// Whether a refused attempt passes (`kind` does not apply).
    pub fn matches_refused(&self, a: &RefusedAttempt) -> bool {
        self.key.is_none_or(|id| a.key == Some(id))
            && self.actor.as_deref().is_none_or(|id| a.actor.id() == id)
            && self.since.is_none_or(|t| a.at >= t)
            && self.until.is_none_or(|t| a.at <= t)
    }
}

/// A length of time as people type it: `90s`, `15m`, `12h`, `30d`, `2w`, `1h30m`, or ISO
/// 8601 (`PT36H`, `P30D`). A day is 24 hours and a week 7 days: an expiry or a grace is an
/// amount of time, not a date on a calendar, so months and years, whose length varies,
/// are refused.
fn parse_duration(s: &str) -> Result<jiff::SignedDuration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|_| "not a duration: give a number and a unit, as in 90s, 15m, 12h, 30d or 2w".to_owned())?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err("months and years have no fixed length: give days (30d) or weeks (4w)".into());
    }
    span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("not a duration: {e}"))
}

/// How long a new key lives (`--expires-in`, `"expires_in"`): more than nothing, in the
/// duration syntax (`90s`, `15m`, `12h`, `30d`, `2w`, `1h30m`, `P30D`; a day is 24 hours;
/// months and years are refused).
///
/// # Errors
/// [`Error::InvalidInput`] (`expires_in`) for anything else.
pub fn parse_lifetime(s: &str) -> Result<Duration, Error> {
    let invalid = |reason: String| Error::invalid("expires_in", reason);
    let d = parse_duration(s).map_err(invalid)?;
    if !d.is_positive() {
        return Err(invalid("a key must live for more than 0s".into()));
    }
    Duration::try_from(d).map_err(|e| invalid(format!("not a duration: {e}")))
}

/// How long a rolled key's previous secret keeps verifying (`--grace`, `"grace"`):
/// nothing at all (`0s`), or more, in the syntax of [`parse_lifetime`].
///
/// # Errors
/// [`Error::InvalidInput`] (`grace`) for anything else.
pub fn parse_grace(s: &str) -> Result<Duration, Error> {
    let d = parse_duration(s).map_err(|reason| Error::invalid("grace", reason))?;
    Duration::try_from(d).map_err(|_| Error::invalid("grace", "a grace period cannot be negative"))
}

/// One import line. `key` and `sha256` are taken as any JSON value and checked here, so
/// that a parse error never quotes what they held.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    key: Option<serde_json::Value>,
    #[serde(default)]
    sha256: Option<serde_json::Value>,
    #[serde(default)]
    rate_limits: Vec<RateLimitJson>,
    #[serde(default)]
    credits: Option<CreditsJson>,
}

/// A string field that may hold a secret, moved out of the JSON value to be zeroed on drop.
fn secret_field(value: serde_json::Value, field: &'static str) -> Result<Zeroizing<String>, Error> {
    match value {
        serde_json::Value::String(s) => Ok(Zeroizing::new(s)),
        _ => Err(Error::invalid(field, format!("\"{field}\" must be a string"))),
    }
}

/// Parses one import line into the key to adopt.
fn import_line(text: &str) -> Result<ExistingKey, Error> {
    let line: ImportLine = serde_json::from_str(text).map_err(|e| {
        // Every line is parsed alone: serde's own "at line 1 column C" would mislead.
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let reason = match message.strip_suffix(&position) {
            Some(bare) => format!("{bare} (column {})", e.column()),
            None => message,
        };
        Error::invalid("line", reason)
    })?;
    let mut new = NewKey::new(line.name);
    for role in line.roles {
        new = new.role(role);
    }
    for net in &line.ips {
        new = new.allow(crate::model::rules::parse_net(net)?);
    }
    if let Some(at) = line.expires_at {
        new = new.expires_at(parse_time("expires_at", &at)?);
    }
    for limit in RateLimitJson::to_limits(&line.rate_limits)? {
        new = new.rate_limit(limit);
    }
    if let Some(credits) = &line.credits {
        new = new.credits(credits.to_credits()?);
    }
    match (line.key, line.sha256) {
        (Some(key), None) => ExistingKey::with_secret(new, &secret_field(key, "key")?),
        (None, Some(hex)) => ExistingKey::with_sha256(new, &secret_field(hex, "sha256")?),
        (Some(_), Some(_)) => Err(Error::invalid("key", "give \"key\" or \"sha256\", not both")),
        (None, None) => Err(Error::invalid(
            "key",
            "missing the secret: give \"key\" (the secret) or \"sha256\" (its SHA-256)",
        )),
    }
}

/// Reads the keys to adopt from JSON Lines, one key a line, as `keyledger import-keys`
/// reads its file and `POST /v1/keys/import` its body:
///
/// ```text
/// {"name": "legacy bot", "roles": ["bot"], "ips": ["10.0.0.0/8"], "expires_at": "2027-01-01T00:00:00Z", "key": "SECRET"}
/// {"name": "old sync", "roles": ["sync"], "sha256": "<64 lowercase hex digits of SHA-256(SECRET)>", "rate_limits": [{"limit": 100, "window": "1m"}], "credits": {"remaining": 5000, "refill": {"amount": 5000, "every": "30d"}}}
/// ```
///
/// `ips`, `expires_at`, `rate_limits` ([`RateLimitJson`]s, by the rules of
/// [`RateLimit`](crate::model::limit::RateLimit)) and `credits` ([`CreditsJson`]) are
/// optional; exactly one of `key` and
/// `sha256` is required; any other field, and a blank line, is refused. How many limits a
/// key may hold, and on which windows, the store decides when it adopts the keys. At most [`MAX_IMPORT_LINES`] lines of
/// [`MAX_IMPORT_LINE_BYTES`], and [`MAX_IMPORT_BYTES`] in all.
///
/// # Errors
/// [`Error::ImportEntry`] naming the first bad line (from 1) and why; [`Error::InvalidInput`]
/// (`import`) for no keys at all or an input past the limits; [`Error::Io`] if reading
/// fails. No error quotes a secret.
pub fn read_import_lines(input: impl BufRead) -> Result<Vec<ExistingKey>, Error> {
    let mut reader = input.take(MAX_IMPORT_BYTES + 1);
    let bad_line = |n: usize, reason: &str| Error::ImportEntry {
        index: n,
        source: Box::new(Error::invalid("line", reason)),
    };
    let mut keys = Vec::new();
    let mut buf = Zeroizing::new(Vec::new());
    for n in 1.. {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_IMPORT_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        if reader.limit() == 0 {
            return Err(Error::invalid(
                "import",
                format!(
                    "it is larger than {} MiB; split it",
                    MAX_IMPORT_BYTES / 1024 / 1024
                ),
            ));
        }
        if n > MAX_IMPORT_LINES {
            return Err(Error::invalid(
                "import",
                format!("it has more than {MAX_IMPORT_LINES} lines; split it"),
            ));
        }
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if body.len() > MAX_IMPORT_LINE_BYTES {
            return Err(bad_line(n, &format!("longer than {MAX_IMPORT_LINE_BYTES} bytes")));
        }
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let text = std::str::from_utf8(body).map_err(|_| bad_line(n, "not UTF-8"))?;
        if text.trim().is_empty() {
            return Err(bad_line(n, "blank; every line must hold one key"));
        }
        keys.push(import_line(text).map_err(|e| Error::ImportEntry {
            index: n,
            source: Box::new(e),
        })?);
    }
    if keys.is_empty() {
        return Err(Error::invalid("import", "it holds no keys"));
    }
    Ok(keys)
}

/// A host of a fleet: a line of `keyledger fleet --json`, and an item of `/v1/fleet`'s
/// `hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct HostJson {
    /// Its id.
    pub host: String,
    /// Whether it is the host that answers (always false from `keyledger fleet`).
    pub this_host: bool,
    /// The sequence number of the last record it applied.
    pub seq: u64,
    /// The stream position of the last message it applied.
    pub position: u64,
    /// Records behind the answering host (or the most advanced host).
    pub lag: u64,
    /// Milliseconds since it was last heard from.
    pub heard_ms: u128,
    /// Heard from within its lease.
    pub live: bool,
    /// Milliseconds it has been out of touch with the shared log, as it last said.
    pub stale_ms: u128,
    /// It stopped writing.
    pub halted: bool,
    /// Its record at its head differs from the answering host's record there.
    pub diverged: bool,
    /// It fences itself at its lease (false: started with `--serve-past-lease`).
    pub fences: bool,
}

/// A heads-bucket entry that counts for nothing: a line of `keyledger fleet --json`
/// (`{"ignored_head": NAME, "reason": ...}`), and `/v1/fleet`'s `last_ignored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct IgnoredJson {
    /// The name it was stored under.
    pub ignored_head: String,
    /// Why it counts for nothing.
    pub reason: String,
}

impl From<&crate::fleet::IgnoredHead> for IgnoredJson {
    fn from(i: &crate::fleet::IgnoredHead) -> Self {
        IgnoredJson {
            ignored_head: i.host.clone(),
            reason: i.reason.clone(),
        }
    }
}

impl From<&crate::fleet::HostStatus> for HostJson {
    fn from(h: &crate::fleet::HostStatus) -> Self {
        HostJson {
            host: h.host.clone(),
            this_host: h.this_host,
            seq: h.seq,
            position: h.position,
            lag: h.lag,
            heard_ms: h.heard.as_millis(),
            live: h.live,
            stale_ms: h.stale_for.as_millis(),
            halted: h.halted,
            diverged: h.diverged,
            fences: h.fences,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_name_the_first_bad_line_without_quoting_its_secret() {
        let secret = "leak_me_not_00000000009";
        let good = r#"{"name": "a", "roles": ["bot"], "key": "good_secret_00000000001"}"#;
        let bad = format!(r#"{{"name": "b", "roles": ["bot"], "key": "{secret}", "sha256": "00"}}"#);
        let err = read_import_lines(format!("{good}\n{bad}\n").as_bytes()).unwrap_err();
        assert!(
            matches!(&err, Error::ImportEntry { index: 2, source }
                if matches!(**source, Error::InvalidInput { field: "key", .. })),
            "{err:?}"
        );
        assert!(!err.to_string().contains(secret), "{err}");
        let err = read_import_lines(format!("{good}\n\n").as_bytes()).unwrap_err();
        assert!(matches!(err, Error::ImportEntry { index: 2, .. }), "{err:?}");
        let none = read_import_lines(&b""[..]).unwrap_err();
        assert!(
            matches!(none, Error::InvalidInput { field: "import", .. }),
            "{none:?}"
        );
        assert_eq!(
            read_import_lines(format!("{good}\r\n").as_bytes()).unwrap().len(),
            1
        );
    }

    #[test]
    fn durations_take_days_and_weeks_but_not_months() {
        assert_eq!(parse_grace("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_grace("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_lifetime("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_lifetime("P30D").unwrap(), Duration::from_secs(30 * 86_400));
        for (bad, says) in [("0s", "more than 0s"), ("-5m", "more than 0s"), ("1mo", "months")] {
            let e = parse_lifetime(bad).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidInput { field: "expires_in", reason } if reason.contains(says)),
                "{bad}: {e:?}"
            );
        }
        assert!(
            matches!(parse_grace("-1h"), Err(Error::InvalidInput { field: "grace", ref reason }) if reason.contains("negative"))
        );
        assert!(
            matches!(parse_grace("soon"), Err(Error::InvalidInput { field: "grace", ref reason }) if reason.contains("not a duration"))
        );
    }

    #[test]
    fn error_bodies_name_the_variant_and_what_it_is_about() {
        let id: KeyId = "00000000000000aa".parse().unwrap();
        let nested = Error::ImportEntry {
            index: 3,
            source: Box::new(Error::SecretKnown),
        };
        let json = serde_json::to_value(ErrorJson::from(&nested)).unwrap();
        assert_eq!(json["error"], "import_entry");
        assert_eq!(json["index"], 3);
        assert_eq!(json["source"]["error"], "secret_known");
        let json = serde_json::to_value(ErrorJson::from(&Error::KeyDeleted(id))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "key_deleted", "id": "00000000000000aa", "message": "key 00000000000000aa has been deleted"})
        );
    }
}
