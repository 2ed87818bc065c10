//! The in-memory projections of the log: keys by hash (for verify), keys by id, and the
//! audit trail, all rebuilt by replaying records in order.
//!
//! Owns the only mutable view of state. It is changed only by [`Projection::apply`], with a
//! record that already passed [`Projection::check`]; it never does I/O.
//!
//! This root holds the state's layout (the key records, rows and the [`Projection`] itself);
//! the children hold what is done with it: `apply` (records into state), `tables` (lookups
//! and indexes), `verify`, `views` (listings, audit rows, time travel), `page` (pages of the listings through a filter), `whitelists` (the
//! shared whitelist sets), `snapshot` (copies and the freeze) and `people`.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::Arc;
use std::time::SystemTime;

use hash_index::HashIndex;
use hashbrown::HashTable;
use ipnet::IpNet;

use crate::access::RoleSet;
use crate::chain::Head;
use crate::model::actor::Actor;
use crate::model::actor::ActorRole;
use crate::model::credits::Credits;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::key::KeySource;
use crate::model::limit::RateLimit;
use crate::model::owner::Meta;
use crate::model::problem::ProblemKind;
use crate::model::record::EventKind;
use crate::model::token::KeyHash;

pub(crate) mod apply;
pub(crate) mod credits;
mod hash_index;
pub(crate) mod interned;
pub(crate) mod limits;
pub(crate) mod owners;
pub(crate) mod page;
pub(crate) mod people;
pub(crate) mod share;
pub(crate) mod snapshot;
pub(crate) mod tables;
pub(crate) mod usage;
pub(crate) mod verify;
pub(crate) mod views;
pub(crate) mod whitelists;

use whitelists::WhitelistSets;

/// One audit row, compact: strings are interned, networks live in `nets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) at: i64,
    pub(crate) actor: u32,
    pub(crate) role: ActorRole,
    pub(crate) kind: EventKind,
    pub(crate) slot: u32,
    /// For `created` and `imported`, the index of the initial whitelist in the whitelist
    /// sets; for `whitelisted` and `unwhitelisted`, the index of the network in `nets`;
    /// for `rolled`, the index of the roll in `rolls`; for `updated`, the index of the
    /// change in `changes`; for `actor_revoked`, the revoked
    /// person's actor index (and `slot` is 1 when their keys went too, else 0);
    /// otherwise 0.
    pub(crate) nets: u32,
    /// The slot of the admin key the actor acted through, or [`NO_VIA`].
    pub(crate) via: u32,
    /// For `created`, `imported` and `limits_changed`, the index of the key's (new) rate
    /// limits in the interned lists (0: none); otherwise 0.
    pub(crate) limits: u32,
}

/// [`Row::via`] of a record written without an admin key.
pub(crate) const NO_VIA: u32 = u32::MAX;

/// A roll, as the audit trail and time travel need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roll {
    /// The key's tail before and after.
    pub(crate) before: [u8; 4],
    pub(crate) after: [u8; 4],
    /// Until when the previous secret verifies (microseconds since the epoch).
    pub(crate) until: i64,
}

/// A key's external id and metadata: one entry of the owners table, which keys (and
/// updates) name by index; entry 0 is neither.
pub(crate) use crate::model::owner::KeyOwner as Owner;

/// An update, as the audit trail and time travel need it: each field it changed, before
/// and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) name: Option<(String, String)>,
    /// Indices of role sets.
    pub(crate) roles: Option<(u32, u32)>,
    /// Indices in the owners table.
    pub(crate) owner: Option<(u32, u32)>,
}

/// A previous secret still in its grace period, as a snapshot stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GraceData {
    pub(crate) key: u32,
    pub(crate) hash: [u8; 16],
    pub(crate) until: i64,
}

/// A key's slot as plain data, for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotData {
    pub(crate) hash: [u8; 16],
    pub(crate) id: u64,
    pub(crate) name: String,
    /// Index into [`SnapshotData::role_sets`].
    pub(crate) roles: u32,
    pub(crate) tail: [u8; 4],
    /// Index into [`SnapshotData::whitelist_sets`].
    pub(crate) whitelist: u32,
    pub(crate) created: u32,
    pub(crate) deleted: Option<u32>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) disabled: bool,
    pub(crate) source: KeySource,
    /// For an admin key made for another person than its creator: that person's index
    /// in [`SnapshotData::actors`].
    pub(crate) acts_for: Option<u32>,
    /// Index into [`SnapshotData::limit_lists`] (0: no limits).
    pub(crate) limits: u32,
    /// What the log set of its credits, for a live key that has credits.
    pub(crate) credits: Option<credits::CreditsData>,
    /// Index into [`SnapshotData::owners`] (0: no external id nor metadata).
    pub(crate) owner: u32,
}

/// The whole projection as plain data: what a snapshot stores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SnapshotData {
    pub(crate) head: Head,
    pub(crate) actors: Vec<String>,
    pub(crate) role_sets: Vec<Vec<String>>,
    pub(crate) slots: Vec<SlotData>,
    pub(crate) rows: Vec<Row>,
    pub(crate) nets: Vec<IpNet>,
    /// Every whitelist set slot; set 0 is the empty one, freed slots are empty too.
    pub(crate) whitelist_sets: Vec<Vec<IpNet>>,
    pub(crate) rolls: Vec<Roll>,
    /// In key order.
    pub(crate) graces: Vec<GraceData>,
    /// Every secret rolled out, by its 128-bit prefix, in the order of the rolls.
    pub(crate) rolled_out: Vec<[u8; 16]>,
    /// Every list of rate limits named, each once; list 0 is the empty one.
    pub(crate) limit_lists: Vec<Vec<RateLimit>>,
    /// Every credits value an audit row of credits names, each once; entry 0 is none.
    pub(crate) credit_log: Vec<Option<Credits>>,
    /// Every external id and metadata a key had; entry 0 is neither.
    pub(crate) owners: Vec<Owner>,
    /// Every update, in the order of the log.
    pub(crate) changes: Vec<Change>,
}

/// A key as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// Public id.
    pub id: KeyId,
    /// Name.
    pub name: String,
    /// Roles, in the order they were given.
    pub roles: Vec<String>,
    /// Whitelisted addresses and ranges; empty admits any address unless the store
    /// requires a whitelist.
    pub whitelist: Vec<IpNet>,
    /// Who created it.
    pub created_by: Actor,
    /// When it was created.
    pub created_at: SystemTime,
    /// Who deleted it and when, if it is deleted.
    pub deleted: Option<(Actor, SystemTime)>,
    /// `klk_…` and the key's last four characters, to recognise it (`…` alone for an
    /// adopted secret outside keyledger's format, which shows nothing of itself).
    pub hint: String,
    /// Where it stands: active, disabled, expired or deleted.
    pub status: KeyStatus,
    /// When it expires, if it does.
    pub expires_at: Option<SystemTime>,
    /// The minute of its last successful verify, if any since the store began keeping
    /// them (not part of the log: see `KeyStore::verify`).
    pub last_used_at: Option<SystemTime>,
    /// Whether it was adopted from another system rather than generated.
    pub imported: bool,
    /// For an admin key (one holding `admin` or `super-admin`): the person it acts as,
    /// named when it was made or else its creator. `None` for any other key.
    pub acts_for: Option<String>,
    /// Its rate limits, shortest window first (none: unlimited).
    pub rate_limits: Vec<RateLimit>,
    /// Its credits, if it has any: what is left now (on this host), and how they refill.
    pub credits: Option<credits::CreditsView>,
    /// Its owner's id outside keyledger, if it was given one.
    pub external_id: Option<String>,
    /// Its metadata, if it was given any.
    pub meta: Option<Meta>,
}

/// What an update changed: each field it names, with its new value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyChanges {
    /// The new name.
    pub name: Option<String>,
    /// The new roles.
    pub roles: Option<Vec<String>>,
    /// The new external id (`Some(None)`: removed).
    pub external_id: Option<Option<String>>,
    /// The new metadata (`Some(None)`: removed).
    pub meta: Option<Option<Meta>>,
}

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyStatus {
    /// It verifies.
    Active,
    /// It is disabled until enabled again.
    Disabled,
    /// Its expiry time has passed.
    Expired,
    /// It was deleted.
    Deleted,
}

impl KeyStatus {
    /// Every status.
    pub const ALL: [KeyStatus; 4] = [
        KeyStatus::Active,
        KeyStatus::Disabled,
        KeyStatus::Expired,
        KeyStatus::Deleted,
    ];

    /// `active`, `disabled`, `expired` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Expired => "expired",
            KeyStatus::Deleted => "deleted",
        }
    }
}

impl std::str::FromStr for KeyStatus {
    type Err = Error;

    /// `active`, `disabled`, `expired` or `deleted`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (`status`) for anything else.
    fn from_str(s: &str) -> Result<Self, Error> {
        KeyStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| Error::invalid("status", "give active, disabled, expired or deleted"))
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the audit trail: who did what to which key, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When it was recorded.
    pub at: SystemTime,
    /// Who did it.
    pub actor: Actor,
    /// What was done.
    pub kind: EventKind,
    /// The key it was done to; `None` for `actor_revoked`, which names a person.
    pub key_id: Option<KeyId>,
    /// That key's name.
    pub key_name: Option<String>,
    /// For `actor_revoked`, the person revoked; for the creation of an admin key, the
    /// person it acts as.
    pub person: Option<String>,
    /// For `actor_revoked`: whether the keys the person created were deleted too.
    pub with_keys: bool,
    /// For `whitelisted` and `unwhitelisted`, the network; for `created` and `imported`,
    /// the initial whitelist; otherwise empty.
    pub nets: Vec<IpNet>,
    /// For `rolled`, until when the previous secret verifies (the roll's own time when
    /// there was no grace period).
    pub previous_valid_until: Option<SystemTime>,
    /// The admin key the actor acted through (the HTTP admin API), if any.
    pub via: Option<KeyId>,
    /// For `limits_changed`, the key's new rate limits (none: removed); for `created` and
    /// `imported`, the key's first ones; otherwise empty.
    pub rate_limits: Vec<RateLimit>,
    /// For `credits_set`, the credits set (none: removed); otherwise none.
    pub credits: Option<Credits>,
    /// For `credits_added`, how many were added; otherwise none.
    pub credits_added: Option<u64>,
    /// For `updated`, what changed; otherwise none.
    pub changes: Option<KeyChanges>,
}

/// A hash of 32 bytes that an attacker who does not know `seed` cannot make collide,
/// short of equal inputs: folded multiplies, as in foldhash.
#[derive(Clone, Copy)]
struct Seed([u64; 4]);

impl Seed {
    fn random() -> Self {
        let s = std::collections::hash_map::RandomState::new();
        let mut out = [0u64; 4];
        for (i, o) in out.iter_mut().enumerate() {
            use std::hash::BuildHasher;
            *o = s.hash_one(i) | 1;
        }
        Seed(out)
    }

    #[inline]
    fn fold(a: u64, b: u64) -> u64 {
        let p = u128::from(a).wrapping_mul(u128::from(b));
        (p as u64) ^ ((p >> 64) as u64)
    }

    #[inline]
    fn key_hash(&self, h: HashPrefix) -> u64 {
        Self::fold((h.0 as u64) ^ self.0[0], ((h.0 >> 64) as u64) ^ self.0[1])
    }

    #[inline]
    fn key_id(&self, id: KeyId) -> u64 {
        Self::fold(id.0 ^ self.0[0], self.0[1])
    }
}

/// The first 128 bits of a key's hash: what the projection compares. Finding another key
/// with the same prefix as a live one is a 2^128 search; the log keeps all 256 bits.
#[derive(Clone, Copy, PartialEq, Eq)]
struct HashPrefix(u128);

impl HashPrefix {
    #[inline]
    fn of(hash: &KeyHash) -> Self {
        let mut b = [0u8; 16];
        b.copy_from_slice(&hash.0[..16]);
        HashPrefix(u128::from_le_bytes(b))
    }
}

/// Names up to this many bytes live inside the key record.
const REC_INLINE_NAME: usize = 14;
/// [`Name::len`] of a name kept in the arena: its offset and length are in `bytes`.
const LONG_NAME: u8 = u8::MAX;
// An inline name never reaches the mark, so slicing the inline bytes by it finds nothing.
const _: () = assert!(LONG_NAME as usize > REC_INLINE_NAME);

/// A key's name: inline when short (most are), else a range of the names arena. Keeps
/// a verify to the one cache line of the key's record.
#[derive(Clone, Copy)]
struct Name {
    /// The length of an inline name, or [`LONG_NAME`].
    len: u8,
    /// The name itself when inline; else its offset in the arena (four bytes) and length
    /// (two bytes), little-endian.
    bytes: [u8; REC_INLINE_NAME],
}

/// What a hit reads and writes of one key: one 64-byte cache line, no allocation of its
/// own. The key's use word is here, so that counting a hit writes the line it read.
#[derive(Clone)]
#[repr(align(64))]
struct KeyRec {
    hash: HashPrefix,
    id: KeyId,
    used: usage::KeyUse,
    /// The whole second (since the epoch) in which the key expires, clamped to
    /// `0..NEVER_S`; [`NEVER_S`] for a key that does not expire. The exact microsecond is
    /// in [`KeyCold::expires`], read only from that second on.
    expires_s: u32,
    /// Index into `role_sets`.
    roles: u32,
    /// Index into `whitelists`; 0 for the empty whitelist.
    whitelist: u32,
    /// What meters the key: 0 for nothing; with [`credits::CREDITED`] set, its credit
    /// cell (which names its limiter, if any); else its limiter.
    meter: u32,
    name: Name,
    disabled: bool,
}

const NEVER: i64 = i64::MAX;
const NEVER_S: u32 = u32::MAX;

/// The whole second of `expires` (microseconds since the epoch, or [`NEVER`]) as a key
/// record keeps it.
fn expires_second(expires: i64) -> u32 {
    if expires == NEVER {
        return NEVER_S;
    }
    u32::try_from(expires.div_euclid(1_000_000).max(0)).map_or(NEVER_S - 1, |s| s.min(NEVER_S - 1))
}

/// What only listings, the audit trail and the rules need of a key.
#[derive(Clone, Copy)]
struct KeyCold {
    /// Microseconds since the epoch; [`NEVER`] for a key that does not expire.
    expires: i64,
    /// Index in `rows` of the creation.
    created: u32,
    /// Index in `rows` of the deletion, or [`LIVE`].
    deleted: u32,
    tail: [u8; 4],
    source: KeySource,
    /// Its rate limits: an index into the interned lists (0: none).
    limits: u32,
    /// Its external id and metadata: an index into the owners table (0: neither). Never
    /// read by a verify.
    owner: u32,
}

const LIVE: u32 = u32::MAX;

/// A previous secret in its grace period: it verifies as `key` until `until`.
#[derive(Clone, Copy)]
struct Grace {
    hash: HashPrefix,
    key: u32,
    until: i64,
}

/// All state derived from the log, laid out as flat arrays: memory per key stays small
/// and a verify touches the hash table and one key record.
pub(crate) struct Projection {
    keys: Vec<KeyRec>,
    cold: Vec<KeyCold>,
    /// Each key's last successful verify (to the minute) and requests per hour: kept apart
    /// from the key records, so that counting does not dirty the cache line every verify
    /// reads. Not derived from the log.
    usage: usage::Usage,
    /// Live keys only, by key hash.
    by_hash: HashIndex,
    /// Every key ever created, by id.
    by_id: HashIndex,
    /// Previous secrets in their grace period, by hash; pruned once the log's time
    /// passes their end ([`Projection::prune_graces`]).
    graces: HashTable<Grace>,
    /// The grace of each key that has one, by key index.
    grace_of: HashMap<u32, HashPrefix>,
    /// No grace ends before this ([`NEVER`] for none): pruning runs only once a record's
    /// time reaches it, so a write does not walk every grace.
    graces_end_from: i64,
    /// Names longer than [`REC_INLINE_NAME`] bytes.
    names: String,
    /// Whitelists, shared by every key (and creation row) that has the same one.
    whitelists: WhitelistSets,
    role_sets: Vec<RoleSet>,
    role_index: HashTable<u32>,
    rows: Vec<Row>,
    nets: Vec<IpNet>,
    rolls: Vec<Roll>,
    actors: Vec<Arc<str>>,
    actor_index: HashMap<Arc<str>, u32>,
    /// Whether any key was adopted with a secret outside keyledger's format, or by its
    /// SHA-256 hash: only then do tokens outside the format get looked up at all.
    adopted_foreign: bool,
    adopted_sha256: bool,
    /// Who the admin keys act as.
    people: people::People,
    /// The secrets no live key holds any more: never adopted again.
    retired: people::Retired,
    /// The limited keys' limiters, and every list of limits named.
    limiters: limits::Limiters,
    limit_lists: limits::LimitLists,
    /// The credited keys' cells.
    credits: credits::CreditCells,
    /// The credits every audit row of credits names.
    credit_log: credits::CreditLog,
    /// Every external id and metadata a key had (entry 0: neither), by [`KeyCold::owner`]
    /// and the updates' indices.
    owners: Vec<Owner>,
    /// Every update, by the index its audit row holds.
    changes: Vec<Change>,
    /// On a host of a fleet: each limited and credited key's share, and what it admitted
    /// since its last report (empty for a single host).
    shares: share::Shares,
    seed: Seed,
    hasher: RandomState,
    head: Head,
    /// Set while a snapshot is being copied out in parts; see [`Freeze`].
    freeze: Option<Freeze>,
}

/// A snapshot being copied out while the writer goes on: the state's extent when it
/// began, the graces then, and the pre-images of key records changed since (the other
/// arrays only grow). The copy takes the read lock a part at a time, so no write waits
/// for a whole copy.
struct Freeze {
    head: Head,
    keys: u32,
    rows: usize,
    nets: usize,
    rolls: usize,
    rolled_out: usize,
    actors: usize,
    role_sets: usize,
    limit_lists: usize,
    credit_log: usize,
    owners: usize,
    changes: usize,
    sets: u32,
    graces: Vec<GraceData>,
    before: HashMap<u32, (KeyRec, KeyCold, Option<credits::CreditsData>)>,
}

fn too_long(seq: u64) -> Error {
    Error::corrupt(
        seq,
        ProblemKind::Invalid,
        "more records or keys than this build can index",
    )
}

impl Projection {
    pub(crate) fn new() -> Self {
        Projection {
            keys: Vec::new(),
            cold: Vec::new(),
            usage: usage::Usage::new(),
            by_hash: HashIndex::new(),
            by_id: HashIndex::new(),
            graces: HashTable::new(),
            grace_of: HashMap::new(),
            graces_end_from: NEVER,
            names: String::new(),
            whitelists: WhitelistSets::new(),
            role_sets: Vec::new(),
            role_index: HashTable::new(),
            rows: Vec::new(),
            nets: Vec::new(),
            rolls: Vec::new(),
            actors: Vec::new(),
            actor_index: HashMap::new(),
            adopted_foreign: false,
            adopted_sha256: false,
            people: people::People::default(),
            retired: people::Retired::default(),
            limiters: limits::Limiters::new(),
            limit_lists: limits::LimitLists::new(),
            credits: credits::CreditCells::new(),
            credit_log: credits::CreditLog::new(),
            owners: vec![Owner::default()],
            changes: Vec::new(),
            shares: share::Shares::default(),
            seed: Seed::random(),
            hasher: RandomState::new(),
            head: Head::EMPTY,
            freeze: None,
        }
    }

    pub(crate) fn head(&self) -> Head {
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_record_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<KeyRec>(), 64);
        assert_eq!(std::mem::align_of::<KeyRec>(), 64);
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// A snapshot copied out in parts while records go on being applied is exactly the
    /// state at its start.
    #[test]
    fn a_frozen_copy_is_the_state_when_the_freeze_began() {
        use crate::chain::Chain;
        use crate::ledger::Command;
        use crate::ledger::Ledger;
        use crate::ledger::Op;
        use crate::model::actor::Actor;
        use crate::model::key::NewKey;
        use rand::SeedableRng;

        let ledger = Ledger::new(Chain::new(None));
        let mut ids = rand::rngs::StdRng::seed_from_u64(7);
        let admin = Actor::admin("alice");
        let mut keys = Vec::new();
        let mut run = |op: Op| {
            let prepared = ledger.prepare(
                &[&Command {
                    actor: admin.clone(),
                    via: None,
                    op,
                }],
                &mut ids,
            );
            ledger.accept(&prepared.entries).unwrap();
            prepared.outcomes[0].as_ref().unwrap().0
        };
        for i in 0..40u8 {
            let mut hash = [0u8; 32];
            hash[0] = i;
            let new = NewKey::new(format!("key {i}"))
                .role("bot")
                .allow(crate::model::rules::parse_net(&format!("10.{}.0.0/16", i % 3)).unwrap());
            keys.push(run(Op::Create {
                new: new.validated().unwrap(),
                hash: crate::model::token::KeyHash(hash),
                tail: *b"abcd",
            }));
        }
        // Ten keys get a whitelist of their own, so that changing it again frees a set
        // that existed when the freeze began.
        for (i, id) in keys.iter().take(10).enumerate() {
            let net = crate::model::rules::parse_net(&format!("172.16.{i}.0/24")).unwrap();
            run(Op::Whitelist {
                id: *id,
                nets: vec![net],
            });
        }
        let expected = ledger.read().to_snapshot();
        let seq = ledger.write_state().begin_freeze();
        assert_eq!(seq, 50);
        let mut copy = SnapshotData::default();
        let mut steps = 0;
        while !ledger.read().copy_frozen(&mut copy, 7) {
            // Between parts, the writer changes keys already copied and not yet copied,
            // frees whitelist sets and reuses their slots, and adds keys.
            let id = keys[(steps * 7) % 10];
            let net = crate::model::rules::parse_net(&format!("192.0.{steps}.0/24")).unwrap();
            run(Op::Whitelist { id, nets: vec![net] });
            if steps % 3 == 0 && steps / 3 + 10 < keys.len() {
                run(Op::Delete {
                    id: keys[steps / 3 + 10],
                });
            }
            steps += 1;
        }
        ledger.write_state().end_freeze();
        assert!(steps > 5);
        assert_eq!(copy, expected);
        assert!(ledger.head().seq > 50);
    }

    #[test]
    fn equal_whitelists_are_stored_once_and_freed_with_their_last_user() {
        let mut sets = WhitelistSets::new();
        let a = nets(&["10.0.0.0/8"]);
        let b = nets(&["10.0.0.0/8", "192.0.2.1/32"]);
        assert_eq!(sets.acquire(&[], 1).unwrap(), 0);
        let first = sets.acquire(&a, 1).unwrap();
        assert_eq!(sets.acquire(&a, 1).unwrap(), first);
        let other = sets.acquire(&b, 1).unwrap();
        assert_ne!(other, first);
        assert_eq!(sets.get(other), b.as_slice());
        sets.release(first);
        assert_eq!(sets.get(first), a.as_slice(), "one user left");
        sets.release(first);
        assert!(sets.get(first).is_empty(), "freed");
        let reused = sets.acquire(&nets(&["2001:db8::/32"]), 1).unwrap();
        assert_eq!(reused, first, "a freed slot is reused");
        assert_eq!(
            sets.acquire(&b, 1).unwrap(),
            other,
            "the index still finds live sets"
        );
        sets.release(0);
        assert!(sets.get(0).is_empty());
    }
}
