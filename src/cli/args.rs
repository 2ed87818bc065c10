//! The arguments each command takes (the clap schema below `Command`, which names the
//! commands), the value parsers that check them, and how a group of them becomes the
//! library's value (an `Actor`, a `NewKey`, an `AuditFilter`) or the admin API's body.
//! It parses and converts; it never opens a store, reads standard input or talks to a
//! server.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Args};
use keyledger::{
    Actor, ActorRole, AuditFilter, Credits, Error, EventKind, IpNet, KEY_PREFIX, KeyId, NewKey, RateLimit,
    Refill, Witness,
};
#[cfg(feature = "client")]
use keyledger::{CreditsJson, RateLimitJson};

#[cfg(feature = "client")]
use super::client;
use super::exit::{self, Failure};

/// Who acts: required on the store, refused with `--server` (see [`parse`](super::parse)).
#[derive(Debug, Args)]
pub(super) struct ActorArgs {
    /// Who is acting, as your own authentication established
    #[arg(long, value_name = "ID", required = true)]
    actor: Option<String>,
    /// super-admin, admin or user (a user may not manage keys)
    #[arg(long, value_name = "ROLE", value_parser = ActorRole::from_str, required = true)]
    actor_role: Option<ActorRole>,
}

impl ActorArgs {
    /// The actor of a command on the store, where clap requires both arguments.
    pub(super) fn actor(&self) -> Result<Actor, Failure> {
        match (&self.actor, self.actor_role) {
            (Some(id), Some(role)) => Ok(Actor::new(id.clone(), role)),
            _ => Err(Failure::new(
                exit::USAGE,
                "--actor and --actor-role are required (see --help)",
            )),
        }
    }

    #[cfg(feature = "client")]
    pub(super) fn given(&self) -> bool {
        self.actor.is_some() || self.actor_role.is_some()
    }
}

/// What a new or adopted key is: its name, roles, whitelist, expiry and rate limits.
#[derive(Debug, Args)]
pub(super) struct KeySpec {
    /// The key's name
    #[arg(long)]
    name: String,
    /// A role the key grants (repeat for more)
    #[arg(long = "role", value_name = "R", required = true)]
    roles: Vec<String>,
    /// A whitelisted IPv4/IPv6 address or CIDR range (repeat for more); none admits any address
    #[arg(long = "ip", value_name = "NET", value_parser = net_arg)]
    ips: Vec<IpNet>,
    /// Expire this long from now: 90s, 15m, 12h, 30d, 2w, 1h30m or ISO 8601 (P30D);
    /// a day is 24 hours
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg, conflicts_with = "expires_at")]
    expires_in: Option<Duration>,
    /// Expire at this time (RFC 3339, e.g. 2026-12-31T23:59:59Z)
    #[arg(long, value_name = "TIME")]
    expires_at: Option<jiff::Timestamp>,
    /// At most LIMIT verifications per WINDOW (s, m, h or d; 1s to 30d), e.g. 100/1m;
    /// repeat for more, up to 4, each on another window; none leaves the key unlimited
    #[arg(long = "rate-limit", value_name = "LIMIT/WINDOW", value_parser = rate_limit_arg)]
    rate_limits: Vec<RateLimit>,
    /// Give the key N credits: each accepted verification spends one (or its cost), and
    /// a key with none left is refused (usage_exceeded); none leaves the key unmetered
    #[arg(long, value_name = "N", value_parser = credits_arg)]
    credits: Option<u64>,
    /// With --credits: back up to AMOUNT every PERIOD (1m to 366d), e.g. 10000/30d
    #[arg(long, value_name = "AMOUNT/PERIOD", value_parser = refill_arg, requires = "credits")]
    refill: Option<Refill>,
}

impl KeySpec {
    /// The credits asked for, if any.
    fn credits(&self) -> Option<Credits> {
        credits_of(self.credits, self.refill)
    }

    /// When the key expires: `--expires-in` counts from now.
    pub(super) fn expiry(&self) -> Result<Option<jiff::Timestamp>, Failure> {
        match (self.expires_in, self.expires_at) {
            (Some(lifetime), _) => jiff::Timestamp::now()
                .checked_add(lifetime)
                .map(Some)
                .map_err(|_| {
                    Failure::new(
                        exit::USAGE,
                        "--expires-in reaches past the year 9999; give a shorter duration",
                    )
                }),
            (None, at) => Ok(at),
        }
    }

    /// The key for the store, expiring at `expiry` (from [`expiry`](Self::expiry)).
    pub(super) fn new_key(&self, expiry: Option<jiff::Timestamp>) -> NewKey {
        let mut new = NewKey::new(self.name.clone());
        for role in &self.roles {
            new = new.role(role.clone());
        }
        for net in &self.ips {
            new = new.allow(*net);
        }
        for limit in &self.rate_limits {
            new = new.rate_limit(*limit);
        }
        if let Some(credits) = self.credits() {
            new = new.credits(credits);
        }
        match expiry {
            Some(at) => new.expires_at(SystemTime::from(at)),
            None => new,
        }
    }

    /// The key for the admin API: `expires_in` as given, which the server counts from its
    /// write as the store here counts it from its own; or `expires_at`.
    #[cfg(feature = "client")]
    pub(super) fn body(&self, expiry: Option<jiff::Timestamp>, relative: bool) -> client::KeyBody {
        let (expires_at, expires_in) = match (relative, self.expires_in) {
            (true, Some(lifetime)) => (None, Some(client::duration(lifetime))),
            _ => (expiry.map(|t| t.to_string()), None),
        };
        client::KeyBody {
            name: self.name.clone(),
            roles: self.roles.clone(),
            ips: self.ips.iter().map(ToString::to_string).collect(),
            expires_at,
            expires_in,
            actor: None,
            rate_limits: RateLimitJson::list(&self.rate_limits),
            credits: self.credits().as_ref().map(CreditsJson::from),
            external_id: None,
            meta: None,
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct CreateArgs {
    #[command(flatten)]
    pub(super) who: ActorArgs,
    #[command(flatten)]
    pub(super) key: KeySpec,
    /// For an admin key: the person it acts as over the admin API (by default its
    /// creator); only a super admin may name someone else
    #[arg(long = "for", value_name = "PERSON")]
    pub(super) acts_for: Option<String>,
    /// The key owner's id outside keyledger (a user or tenant id; `list --external-id`)
    #[arg(long, value_name = "ID")]
    pub(super) external_id: Option<String>,
    /// The key's metadata: a JSON object of at most 4 KiB, e.g. '{"plan": "pro"}'
    #[arg(long, value_name = "JSON")]
    pub(super) meta: Option<String>,
    /// One JSON object, with the secret in `key`
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ImportKeyArgs {
    #[command(flatten)]
    pub(super) who: ActorArgs,
    #[command(flatten)]
    pub(super) key: KeySpec,
    /// One JSON object: the adopted key, without its secret
    #[arg(long)]
    pub(super) json: bool,
    /// Catches a secret given on the command line, to refuse it without echoing it.
    #[arg(hide = true)]
    pub(super) key_on_command_line: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct ImportKeysArgs {
    #[command(flatten)]
    pub(super) who: ActorArgs,
    /// The JSON Lines file to read
    #[arg(value_name = "FILE")]
    pub(super) file: PathBuf,
    /// One JSON object per adopted key, a line each: {"line", "id"}
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub(super) struct WhitelistArgs {
    #[command(flatten)]
    pub(super) who: ActorArgs,
    /// The key's id (16 hex digits)
    #[arg(value_name = "KEY_ID", value_parser = key_id_arg)]
    pub(super) key_id: KeyId,
    /// IPv4/IPv6 addresses or CIDR ranges
    #[arg(value_name = "NET", required = true, value_parser = net_arg)]
    pub(super) nets: Vec<IpNet>,
}

#[derive(Debug, Args)]
pub(super) struct UnwhitelistArgs {
    #[command(flatten)]
    pub(super) change: WhitelistArgs,
    /// Allow removing the last entry, after which the key verifies from any address
    #[arg(long)]
    pub(super) allow_any_address: bool,
}

/// An actor and the key they act on.
#[derive(Debug, Args)]
pub(super) struct KeyArgs {
    #[command(flatten)]
    pub(super) who: ActorArgs,
    /// The key's id (16 hex digits)
    #[arg(value_name = "KEY_ID", value_parser = key_id_arg)]
    pub(super) key_id: KeyId,
}

/// `limit`: a key's new rate limits, or none; exactly one of the two forms.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("limits").required(true).args(["rate_limits", "no_rate_limit"])))]
pub(super) struct LimitArgs {
    #[command(flatten)]
    pub(super) key: KeyArgs,
    /// At most LIMIT verifications per WINDOW (s, m, h or d; 1s to 30d), e.g. 100/1m;
    /// repeat for more, up to 4, each on another window; they replace the key's limits
    #[arg(long = "rate-limit", value_name = "LIMIT/WINDOW", value_parser = rate_limit_arg)]
    pub(super) rate_limits: Vec<RateLimit>,
    /// Remove the key's rate limits: it verifies without limit
    #[arg(long)]
    pub(super) no_rate_limit: bool,
    /// One JSON object: the key, with its rate limits now
    #[arg(long)]
    pub(super) json: bool,
}

/// `credits`: set a key's credits, add to them, or remove them; exactly one of the three.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).args(["set", "add", "remove"])))]
pub(super) struct CreditsArgs {
    #[command(flatten)]
    pub(super) key: KeyArgs,
    /// Set the key's credits to N: its count starts again from N
    #[arg(long, value_name = "N", value_parser = credits_arg)]
    pub(super) set: Option<u64>,
    /// With --set: back up to AMOUNT every PERIOD (1m to 366d), e.g. 10000/30d
    #[arg(long, value_name = "AMOUNT/PERIOD", value_parser = refill_arg, requires = "set")]
    pub(super) refill: Option<Refill>,
    /// Add N credits to what the key has left (its refill is unchanged)
    #[arg(long, value_name = "N", value_parser = credits_arg)]
    pub(super) add: Option<u64>,
    /// Remove the key's credits: it verifies without counting
    #[arg(long)]
    pub(super) remove: bool,
    /// One JSON object: the key, with its credits now
    #[arg(long)]
    pub(super) json: bool,
}

impl CreditsArgs {
    /// The credits `--set` asks for.
    pub(super) fn set_to(&self) -> Option<Credits> {
        credits_of(self.set, self.refill)
    }
}

#[derive(Debug, Args)]
pub(super) struct RollArgs {
    #[command(flatten)]
    pub(super) key: KeyArgs,
    /// How long the previous secret keeps verifying: 0s (the default) stops it at once;
    /// 90s, 15m, 12h, 7d..., at most 365d; a day is 24 hours
    #[arg(long, value_name = "DURATION", value_parser = grace_arg, default_value = "0s")]
    pub(super) grace: Duration,
    /// One JSON object: id, key (the new secret) and previous_valid_until
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// The client's address
    #[arg(long, value_name = "IP")]
    pub(super) ip: IpAddr,
    /// One JSON object: valid, reason, id, name, roles (with --times, one per answer)
    #[arg(long)]
    pub(super) json: bool,
    /// Present the key N times in a row, as N requests would, and answer each; exits by
    /// the last answer. Rate limits count within one run: every `keyledger verify` starts
    /// with the keys' limits unspent
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(super) times: u16,
    /// What each verification costs of a key's credits (0 only looks); a key without
    /// credits ignores it
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = cost_arg)]
    pub(super) cost: u64,
    /// Catches a key given on the command line, to refuse it without echoing it.
    #[arg(hide = true)]
    pub(super) key_on_command_line: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct AuditArgs {
    /// Only entries about this key
    #[arg(long = "key", value_name = "KEY_ID", value_parser = key_id_arg)]
    pub(super) key: Option<KeyId>,
    /// Only entries by this actor
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// Only entries of this kind: created, imported, whitelisted, unwhitelisted, rolled,
    /// disabled, enabled, deleted, actor_revoked, limits_changed, credits_set or
    /// credits_added
    #[arg(long, value_name = "KIND", value_parser = EventKind::from_str)]
    kind: Option<EventKind>,
    /// Only entries at or after this time (RFC 3339, e.g. 2026-01-31T09:00:00Z)
    #[arg(long, value_name = "TIME")]
    since: Option<jiff::Timestamp>,
    /// Only entries at or before this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    until: Option<jiff::Timestamp>,
    /// Show every key (or only --key) as it stood right after record SEQ
    #[arg(long, value_name = "SEQ", conflicts_with_all = ["actor", "kind", "since", "until"])]
    pub(super) at: Option<u64>,
    /// The security trail instead: management commands that were refused (with --key,
    /// --actor, --since and --until)
    #[arg(long, conflicts_with_all = ["kind", "at"])]
    pub(super) refused: bool,
    /// At most N entries (keys with --at), the oldest first (default: every one)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// One JSON object per entry (per key with --at), a line each
    #[arg(long)]
    pub(super) json: bool,
}

impl AuditArgs {
    /// `--limit`, as a count of items (past what memory holds: every one).
    pub(super) fn limit(&self) -> Option<usize> {
        self.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// The filters given (`--kind` is refused with `--refused` by clap).
    pub(super) fn filter(&self) -> AuditFilter {
        let mut filter = AuditFilter::default();
        filter.key = self.key;
        filter.actor.clone_from(&self.actor);
        filter.kind = self.kind;
        filter.since = self.since.map(SystemTime::from);
        filter.until = self.until.map(SystemTime::from);
        filter
    }
}

pub(super) fn witness_arg(s: &str) -> Result<Witness, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub(super) fn key_id_arg(s: &str) -> Result<KeyId, String> {
    if s.starts_with(KEY_PREFIX) {
        return Err(
            "that is a key's secret, not its id; an id is 16 hex digits (see `keyledger list`)".into(),
        );
    }
    s.parse().map_err(|e: Error| e.to_string())
}

pub(super) fn net_arg(s: &str) -> Result<IpNet, String> {
    keyledger::parse_net(s).map_err(|e| e.to_string())
}

/// What was wrong with an argument, without the library's "invalid FIELD:" (clap names
/// the argument).
fn reason(e: Error) -> String {
    match e {
        Error::InvalidInput { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// A rate limit, by the library's rules (`100/1m`).
pub(super) fn rate_limit_arg(s: &str) -> Result<RateLimit, String> {
    s.parse().map_err(reason)
}

/// `count` credits (already checked by [`credits_arg`]), refilled by `refill` if given.
fn credits_of(count: Option<u64>, refill: Option<Refill>) -> Option<Credits> {
    let credits = Credits::new(count?).ok()?;
    Some(match refill {
        Some(refill) => credits.refill(refill),
        None => credits,
    })
}

/// A count of credits: a whole number up to 2^53.
pub(super) fn credits_arg(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of credits"))?;
    Credits::new(n).map(|c| c.remaining()).map_err(reason)
}

/// A cost: a whole number up to 2^53 (0 only looks).
pub(super) fn cost_arg(s: &str) -> Result<u64, String> {
    credits_arg(s)
}

pub(super) fn refill_arg(s: &str) -> Result<Refill, String> {
    s.parse().map_err(reason)
}

/// How long a new key lives: more than nothing.
pub(super) fn lifetime_arg(s: &str) -> Result<Duration, String> {
    keyledger::parse_lifetime(s).map_err(reason)
}

/// How long a rolled key's previous secret keeps verifying: nothing at all, or more.
pub(super) fn grace_arg(s: &str) -> Result<Duration, String> {
    keyledger::parse_grace(s).map_err(reason)
}
