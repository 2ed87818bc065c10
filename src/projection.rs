//! The in-memory projections of the log: keys by hash (for verify), keys by id, and the
//! audit trail, all rebuilt by replaying records in order.
//!
//! Owns the only mutable view of state. It is changed only by [`Projection::apply`], with a
//! record that already passed [`Projection::check`]; it never does I/O.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use hashbrown::HashTable;
use ipnet::IpNet;

use crate::Error;
use crate::access::{self, KeyName, KeyState, Rejection, RoleSet, VerifiedKey};
use crate::chain::Head;
use crate::check::ProblemKind;
use crate::clock::{Clock, minute_start, system_time};
use crate::event::{Actor, ActorRole, Event, EventKind, KeyId, KeySource, Record};
use crate::token::{self, KeyHash};

mod people;

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
    /// for `rolled`, the index of the roll in `rolls`; for `actor_revoked`, the revoked
    /// person's actor index (and `slot` is 1 when their keys went too, else 0);
    /// otherwise 0.
    pub(crate) nets: u32,
    /// The slot of the admin key the actor acted through, or [`NO_VIA`].
    pub(crate) via: u32,
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
    /// them (not part of the log: see [`KeyStore::verify`](crate::KeyStore::verify)).
    pub last_used_at: Option<SystemTime>,
    /// Whether it was adopted from another system rather than generated.
    pub imported: bool,
    /// For an admin key (one holding `admin` or `super-admin`): the person it acts as,
    /// named when it was made or else its creator. `None` for any other key.
    pub acts_for: Option<String>,
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
const REC_INLINE_NAME: usize = 20;

/// A key's name: inline when short (most are), else a range of the names arena. Keeps
/// a verify to the one cache line of the key's record.
#[derive(Clone, Copy)]
struct Name {
    len: u16,
    /// The name itself when `len <= REC_INLINE_NAME`; else its offset in the arena (first
    /// four bytes, little-endian).
    bytes: [u8; REC_INLINE_NAME],
}

/// What verify needs of one key: one 64-byte cache line, no allocation of its own.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct KeyRec {
    hash: HashPrefix,
    id: KeyId,
    /// Microseconds since the epoch; [`NEVER`] for a key that does not expire.
    expires: i64,
    /// Index into `role_sets`.
    roles: u32,
    /// Index into `whitelists`; 0 for the empty whitelist.
    whitelist: u32,
    name: Name,
    disabled: bool,
}

const NEVER: i64 = i64::MAX;

/// What only listings, the audit trail and the rules need of a key.
#[derive(Clone, Copy)]
struct KeyCold {
    /// Index in `rows` of the creation.
    created: u32,
    /// Index in `rows` of the deletion, or [`LIVE`].
    deleted: u32,
    tail: [u8; 4],
    source: KeySource,
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
    /// Each key's last successful verify, in minutes since the epoch (0 for never): kept
    /// apart from the key records, so that stamping it (at most once a minute per key)
    /// does not dirty the cache line every verify reads. Not derived from the log.
    last_used: Vec<AtomicU32>,
    /// Live keys only, by key hash.
    by_hash: HashTable<u32>,
    /// Every key ever created, by id.
    by_id: HashTable<u32>,
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
    sets: u32,
    graces: Vec<GraceData>,
    before: HashMap<u32, (KeyRec, KeyCold)>,
}

/// Whitelists stored once however many keys share them, with reference counts so that a
/// whitelist nobody uses any more is freed. Set 0 is the empty whitelist. A freed slot is
/// reused lowest first, so the layout is a function of the records alone: a snapshot of
/// a store opened from a snapshot is byte-identical to one of a full replay.
struct WhitelistSets {
    sets: Vec<Box<[IpNet]>>,
    refs: Vec<u32>,
    free: BTreeSet<u32>,
    index: HashTable<u32>,
    hasher: RandomState,
    /// While a snapshot is being copied: the sets' count when it began, and the contents
    /// of those that changed since (see [`Freeze`]).
    frozen: Option<FrozenSets>,
}

/// The whitelist sets' count when a snapshot began, and the contents of those changed since.
type FrozenSets = (u32, HashMap<u32, Box<[IpNet]>>);

impl WhitelistSets {
    fn new() -> Self {
        WhitelistSets {
            sets: vec![Box::default()],
            refs: vec![0],
            free: BTreeSet::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
            frozen: None,
        }
    }

    /// Keeps the contents of set `i` as they were when the snapshot began, before they
    /// change.
    fn preserve(&mut self, i: u32) {
        if let Some((len, before)) = &mut self.frozen
            && i < *len
        {
            before.entry(i).or_insert_with(|| self.sets[i as usize].clone());
        }
    }

    /// Set `i` as it was when the snapshot began.
    fn frozen(&self, i: u32) -> &[IpNet] {
        match &self.frozen {
            Some((_, before)) => before.get(&i).map_or_else(|| self.get(i), |s| &**s),
            None => self.get(i),
        }
    }

    #[inline]
    fn get(&self, set: u32) -> &[IpNet] {
        self.sets.get(set as usize).map_or(&[], |s| s)
    }

    /// The set equal to `nets`, with one more reference.
    fn acquire(&mut self, nets: &[IpNet], seq: u64) -> Result<u32, Error> {
        if nets.is_empty() {
            return Ok(0);
        }
        let hash = self.hasher.hash_one(nets);
        let sets = &self.sets;
        if let Some(&i) = self.index.find(hash, |&i| *sets[i as usize] == *nets) {
            self.refs[i as usize] += 1;
            return Ok(i);
        }
        let i = match self.free.pop_first() {
            Some(i) => {
                self.preserve(i);
                self.sets[i as usize] = nets.into();
                self.refs[i as usize] = 1;
                i
            }
            None => {
                let i = u32::try_from(self.sets.len()).map_err(|_| too_long(seq))?;
                self.sets.push(nets.into());
                self.refs.push(1);
                i
            }
        };
        let (hasher, sets) = (&self.hasher, &self.sets);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&*sets[j as usize]));
        Ok(i)
    }

    /// Drops one reference to `set`, freeing it when it was the last.
    fn release(&mut self, set: u32) {
        let Some(refs) = self.refs.get_mut(set as usize).filter(|_| set != 0) else {
            return;
        };
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            let hash = self.hasher.hash_one(&*self.sets[set as usize]);
            if let Ok(entry) = self.index.find_entry(hash, |&i| i == set) {
                entry.remove();
            }
            self.preserve(set);
            self.sets[set as usize] = Box::default();
            self.free.insert(set);
        }
    }

    /// Restores the sets exactly as a snapshot lists them (freed slots are empty), with
    /// `refs` counted from their users. Refuses duplicates and unused non-empty sets,
    /// which no log can produce.
    fn restore(sets: Vec<Vec<IpNet>>, refs: Vec<u32>) -> Result<Self, &'static str> {
        let mut out = WhitelistSets::new();
        if sets.first().is_none_or(|s| !s.is_empty()) || refs.len() != sets.len() {
            return Err("whitelist set 0 is not the empty set");
        }
        out.sets = sets.into_iter().map(Vec::into_boxed_slice).collect();
        out.refs = refs;
        for (i, set) in out.sets.iter().enumerate().skip(1) {
            let i = u32::try_from(i).map_err(|_| "too many whitelist sets")?;
            match (set.is_empty(), out.refs[i as usize]) {
                (true, 0) => {
                    out.free.insert(i);
                }
                (true, _) | (false, 0) => return Err("a whitelist set is empty but used, or unused"),
                (false, _) => {
                    let hash = out.hasher.hash_one(&**set);
                    let all = &out.sets;
                    if out.index.find(hash, |&j| *all[j as usize] == **set).is_some() {
                        return Err("a whitelist set is listed twice");
                    }
                    let hasher = &out.hasher;
                    out.index
                        .insert_unique(hash, i, |&j| hasher.hash_one(&*all[j as usize]));
                }
            }
        }
        Ok(out)
    }
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
            last_used: Vec::new(),
            by_hash: HashTable::new(),
            by_id: HashTable::new(),
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
            seed: Seed::random(),
            hasher: RandomState::new(),
            head: Head::EMPTY,
            freeze: None,
        }
    }

    pub(crate) fn head(&self) -> Head {
        self.head
    }

    /// Looks a key's hash up and checks it: a hash-table probe, one key record, a copy of
    /// the name, and at most once a minute a stamp of its last use. Reads the (coarse)
    /// clock only for a key that expires or a secret in its grace period.
    #[inline]
    pub(crate) fn verify(
        &self,
        hash: &KeyHash,
        ip: IpAddr,
        require_whitelist: bool,
        clock: &Clock,
    ) -> Result<VerifiedKey, Rejection> {
        let prefix = HashPrefix::of(hash);
        let keys = &self.keys;
        let index = match self
            .by_hash
            .find(self.seed.key_hash(prefix), |&i| keys[i as usize].hash == prefix)
        {
            Some(&i) => i,
            None => self.in_grace(prefix, clock).ok_or(Rejection::UnknownKey)?,
        };
        let key = &keys[index as usize];
        if key.expires != NEVER && clock.now_micros_coarse() >= key.expires {
            return Err(Rejection::Expired);
        }
        if key.disabled {
            return Err(Rejection::Disabled);
        }
        access::ip_allowed(self.whitelists.get(key.whitelist), ip, require_whitelist)?;
        if let Some(stamp) = self.last_used.get(index as usize) {
            let minute = clock.minute();
            if stamp.load(Ordering::Relaxed) < minute {
                stamp.store(minute, Ordering::Relaxed);
            }
        }
        Ok(VerifiedKey {
            id: key.id,
            name: key
                .name
                .bytes
                .get(..usize::from(key.name.len))
                .and_then(KeyName::short)
                .unwrap_or_else(|| KeyName::new(self.name_of(key))),
            roles: self.roles_of(key),
        })
    }

    /// The key whose previous secret has this hash, while its grace period lasts.
    #[cold]
    fn in_grace(&self, prefix: HashPrefix, clock: &Clock) -> Option<u32> {
        if self.graces.is_empty() {
            return None;
        }
        let grace = self
            .graces
            .find(self.seed.key_hash(prefix), |g| g.hash == prefix)?;
        (clock.now_micros_coarse() < grace.until).then_some(grace.key)
    }

    /// The hashes a token outside keyledger's format could be kept under, if any key
    /// was adopted that way: its own hash, then that of its SHA-256 digest.
    pub(crate) fn foreign_candidates(&self, token: &str) -> impl Iterator<Item = KeyHash> {
        let fits = (self.adopted_foreign || self.adopted_sha256) && token::fits_adopted_rule(token);
        let own = (fits && self.adopted_foreign).then(|| KeyHash::of(token));
        let sha = (fits && self.adopted_sha256).then(|| KeyHash::of_sha256_token(token));
        own.into_iter().chain(sha)
    }

    #[inline]
    fn live_key_by_prefix(&self, prefix: HashPrefix) -> Option<&KeyRec> {
        let keys = &self.keys;
        self.by_hash
            .find(self.seed.key_hash(prefix), |&i| keys[i as usize].hash == prefix)
            .map(|&i| &keys[i as usize])
    }

    #[inline]
    fn whitelist_of(&self, key: &KeyRec) -> &[IpNet] {
        self.whitelists.get(key.whitelist)
    }

    #[inline]
    fn name_of<'a>(&'a self, key: &'a KeyRec) -> &'a str {
        let len = usize::from(key.name.len);
        if len <= REC_INLINE_NAME {
            std::str::from_utf8(&key.name.bytes[..len]).unwrap_or_default()
        } else {
            let mut offset = [0u8; 4];
            offset.copy_from_slice(&key.name.bytes[..4]);
            let start = u32::from_le_bytes(offset) as usize;
            self.names.get(start..start + len).unwrap_or_default()
        }
    }

    #[inline]
    fn roles_of(&self, key: &KeyRec) -> RoleSet {
        self.role_sets
            .get(key.roles as usize)
            .copied()
            .unwrap_or(RoleSet(&[]))
    }

    fn key_index(&self, id: KeyId) -> Option<u32> {
        let keys = &self.keys;
        self.by_id
            .find(self.seed.key_id(id), |&i| keys[i as usize].id == id)
            .copied()
    }

    pub(crate) fn contains_id(&self, id: KeyId) -> bool {
        self.key_index(id).is_some()
    }

    /// Whether a live key, or a previous secret in its grace period, has this hash.
    pub(crate) fn contains_hash(&self, hash: &KeyHash) -> bool {
        self.contains_prefix(HashPrefix::of(hash))
    }

    fn contains_prefix(&self, prefix: HashPrefix) -> bool {
        self.live_key_by_prefix(prefix).is_some()
            || self
                .graces
                .find(self.seed.key_hash(prefix), |g| g.hash == prefix)
                .is_some()
    }

    /// The state the access rules need for key `id`.
    pub(crate) fn key_state(&self, id: KeyId) -> Option<KeyState<'_>> {
        let index = self.key_index(id)? as usize;
        let (key, cold) = (&self.keys[index], &self.cold[index]);
        let roles = self.roles_of(key).0;
        Some(KeyState {
            owner: &self.actors[self.rows[cold.created as usize].actor as usize],
            deleted: cold.deleted != LIVE,
            disabled: key.disabled,
            whitelist: self.whitelist_of(key),
            grants_super_admin: roles.contains(&crate::SUPER_ADMIN_ROLE),
            grants_admin: roles.contains(&crate::ADMIN_ROLE),
            expires_at: (key.expires != NEVER).then_some(key.expires),
        })
    }

    /// Applies a record the ledger admitted; `chain_hash` is its own hash.
    pub(crate) fn apply(&mut self, record: &Record, chain_hash: [u8; 32]) -> Result<(), Error> {
        let seq = record.seq;
        self.prune_graces(record.at);
        let row_index = u32::try_from(self.rows.len()).map_err(|_| too_long(seq))?;
        let via = match record.via {
            Some(id) => self.key_index(id).ok_or(Error::KeyNotFound(id))?,
            None => NO_VIA,
        };
        let mut row = Row {
            at: record.at,
            actor: self.intern_actor(record.actor.id(), seq)?,
            role: record.actor.role(),
            kind: record.event.kind(),
            slot: 0,
            nets: 0,
            via,
        };
        match &record.event {
            Event::Created {
                id,
                hash,
                tail,
                name,
                roles,
                whitelist,
                expires_at,
                source,
                acts_for,
            } => {
                // One reference for the key, one for its creation row.
                let set = self.whitelists.acquire(whitelist, seq)?;
                self.whitelists.acquire(whitelist, seq)?;
                let key = KeyRec {
                    hash: HashPrefix::of(hash),
                    id: *id,
                    expires: expires_at.unwrap_or(NEVER),
                    roles: self.intern_roles(roles, seq)?,
                    whitelist: set,
                    name: self.store_name(name, seq)?,
                    disabled: false,
                };
                let cold = KeyCold {
                    created: row_index,
                    deleted: LIVE,
                    tail: *tail,
                    source: *source,
                };
                self.note_source(*source);
                row.slot = self.push_key(key, cold, seq)?;
                row.nets = set;
                let admin = crate::event::grants_admin(roles);
                self.note_person(row.slot, admin, acts_for.as_deref(), seq)?;
            }
            Event::Whitelisted { id, net } | Event::Unwhitelisted { id, net } => {
                let index = self.index_for(*id)?;
                let old = self.keys[index as usize].whitelist;
                let mut list = self.whitelists.get(old).to_vec();
                if matches!(record.event, Event::Whitelisted { .. }) {
                    list.push(*net);
                } else {
                    list.retain(|n| n != net);
                }
                self.keys[index as usize].whitelist = self.whitelists.acquire(&list, seq)?;
                self.whitelists.release(old);
                row.nets = u32::try_from(self.nets.len()).map_err(|_| too_long(seq))?;
                self.nets.push(*net);
                row.slot = index;
            }
            Event::Deleted { id } => {
                let index = self.index_for(*id)?;
                self.delete_index(index, row_index);
                self.retire_key(index, seq)?;
                row.slot = index;
            }
            Event::ActorRevoked { actor, with_keys } => {
                self.revoke_person(actor, *with_keys, &mut row, row_index, seq)?;
            }
            Event::Rolled {
                id,
                hash,
                tail,
                previous_valid_until,
            } => {
                let index = self.index_for(*id)?;
                let old = self.keys[index as usize].hash;
                self.unindex_hash(index);
                self.end_grace(index);
                if *previous_valid_until > record.at {
                    self.begin_grace(old, index, *previous_valid_until);
                }
                self.keys[index as usize].hash = HashPrefix::of(hash);
                self.index_hash(index);
                self.retire_rolled(old, seq)?;
                let before = std::mem::replace(&mut self.cold[index as usize].tail, *tail);
                row.nets = u32::try_from(self.rolls.len()).map_err(|_| too_long(seq))?;
                self.rolls.push(Roll {
                    before,
                    after: *tail,
                    until: *previous_valid_until,
                });
                row.slot = index;
            }
            Event::Disabled { id } | Event::Enabled { id } => {
                let index = self.index_for(*id)?;
                self.keys[index as usize].disabled = matches!(record.event, Event::Disabled { .. });
                row.slot = index;
            }
        }
        self.rows.push(row);
        self.head = Head {
            seq,
            hash: chain_hash,
            at: record.at,
        };
        Ok(())
    }

    /// Deletes key `index` by row `row_index`: it stops verifying at once, its grace
    /// with it.
    fn delete_index(&mut self, index: u32, row_index: u32) {
        self.unindex_hash(index);
        self.end_grace(index);
        self.cold[index as usize].deleted = row_index;
    }

    /// Notes that a key came from `source`: tokens outside keyledger's format are looked
    /// up once any key was adopted. (Any adopted secret, whatever its format: a roll
    /// replaces its tail, and its previous secret may still be in a grace period.)
    fn note_source(&mut self, source: KeySource) {
        match source {
            KeySource::Generated => {}
            KeySource::Imported => self.adopted_foreign = true,
            KeySource::ImportedSha256 => self.adopted_sha256 = true,
        }
    }

    /// The index of existing key `id`, its records preserved for a snapshot being copied.
    fn index_for(&mut self, id: KeyId) -> Result<u32, Error> {
        let index = self.key_index(id).ok_or(Error::KeyNotFound(id))?;
        if let Some(f) = &mut self.freeze
            && index < f.keys
        {
            let i = index as usize;
            f.before.entry(index).or_insert((self.keys[i], self.cold[i]));
        }
        Ok(index)
    }

    fn index_hash(&mut self, index: u32) {
        let (seed, keys) = (self.seed, &self.keys);
        self.by_hash
            .insert_unique(seed.key_hash(keys[index as usize].hash), index, |&i| {
                seed.key_hash(keys[i as usize].hash)
            });
    }

    fn unindex_hash(&mut self, index: u32) {
        let hash = self.keys[index as usize].hash;
        if let Ok(entry) = self.by_hash.find_entry(self.seed.key_hash(hash), |&i| i == index) {
            entry.remove();
        }
    }

    fn begin_grace(&mut self, hash: HashPrefix, key: u32, until: i64) {
        let seed = self.seed;
        self.graces
            .insert_unique(seed.key_hash(hash), Grace { hash, key, until }, |g| {
                seed.key_hash(g.hash)
            });
        self.grace_of.insert(key, hash);
        self.graces_end_from = self.graces_end_from.min(until);
    }

    /// Ends key `index`'s grace period, if it has one.
    fn end_grace(&mut self, index: u32) {
        if let Some(hash) = self.grace_of.remove(&index)
            && let Ok(entry) = self
                .graces
                .find_entry(self.seed.key_hash(hash), |g| g.key == index)
        {
            entry.remove();
        }
    }

    /// Drops the graces that end at or before `at`, the time of the record being
    /// applied: a function of the records alone, so every replay holds the same graces.
    fn prune_graces(&mut self, at: i64) {
        if at < self.graces_end_from {
            return;
        }
        let grace_of = &mut self.grace_of;
        let mut end_from = NEVER;
        self.graces.retain(|g| {
            let keep = g.until > at;
            if keep {
                end_from = end_from.min(g.until);
            } else {
                grace_of.remove(&g.key);
            }
            keep
        });
        self.graces_end_from = end_from;
    }

    /// Adds a key record and indexes it (by hash only while live).
    fn push_key(&mut self, key: KeyRec, cold: KeyCold, seq: u64) -> Result<u32, Error> {
        let index = u32::try_from(self.keys.len()).map_err(|_| too_long(seq))?;
        self.keys.push(key);
        self.cold.push(cold);
        self.last_used.push(AtomicU32::new(0));
        if cold.deleted == LIVE {
            self.index_hash(index);
        }
        let (seed, keys) = (self.seed, &self.keys);
        self.by_id
            .insert_unique(seed.key_id(key.id), index, |&i| seed.key_id(keys[i as usize].id));
        Ok(index)
    }

    fn store_name(&mut self, name: &str, seq: u64) -> Result<Name, Error> {
        let len = u16::try_from(name.len()).map_err(|_| too_long(seq))?;
        let mut bytes = [0u8; REC_INLINE_NAME];
        if name.len() <= REC_INLINE_NAME {
            bytes[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            let offset = u32::try_from(self.names.len()).map_err(|_| too_long(seq))?;
            bytes[..4].copy_from_slice(&offset.to_le_bytes());
            self.names.push_str(name);
        }
        Ok(Name { len, bytes })
    }

    fn intern_actor(&mut self, id: &str, seq: u64) -> Result<u32, Error> {
        if let Some(&i) = self.actor_index.get(id) {
            return Ok(i);
        }
        let i = u32::try_from(self.actors.len()).map_err(|_| too_long(seq))?;
        let id: Arc<str> = id.into();
        self.actors.push(Arc::clone(&id));
        self.actor_index.insert(id, i);
        Ok(i)
    }

    /// The index of this role set, interning it on first sight. No allocation when seen
    /// before: `[String]` and `[&str]` hash alike.
    fn intern_roles(&mut self, roles: &[String], seq: u64) -> Result<u32, Error> {
        let hash = self.hasher.hash_one(roles);
        let sets = &self.role_sets;
        let same = |&i: &u32| {
            sets[i as usize]
                .0
                .iter()
                .copied()
                .eq(roles.iter().map(String::as_str))
        };
        if let Some(&i) = self.role_index.find(hash, same) {
            return Ok(i);
        }
        let i = u32::try_from(self.role_sets.len()).map_err(|_| too_long(seq))?;
        self.role_sets.push(RoleSet::intern(roles));
        let (hasher, sets) = (&self.hasher, &self.role_sets);
        self.role_index
            .insert_unique(hash, i, |&j| hasher.hash_one(sets[j as usize].0));
        Ok(i)
    }

    fn actor_of(&self, row: &Row) -> Actor {
        Actor::new(&*self.actors[row.actor as usize], row.role)
    }

    fn row_nets(&self, row: &Row) -> &[IpNet] {
        match row.kind {
            EventKind::Created | EventKind::Imported => self.whitelists.get(row.nets),
            EventKind::Whitelisted | EventKind::Unwhitelisted => {
                let i = row.nets as usize;
                self.nets.get(i..i + 1).unwrap_or_default()
            }
            _ => &[],
        }
    }

    fn row_roll(&self, row: &Row) -> Option<&Roll> {
        (row.kind == EventKind::Rolled)
            .then(|| self.rolls.get(row.nets as usize))
            .flatten()
    }

    /// Key `index` as listed, as it stood with this whitelist, tail, disabled flag and
    /// deletion row, at time `now`.
    fn view(&self, index: u32, state: ViewState, now: i64, last_used: bool) -> KeyView {
        let (key, cold) = (&self.keys[index as usize], &self.cold[index as usize]);
        let created = &self.rows[cold.created as usize];
        let deleted = self.rows.get(state.deleted as usize);
        let expired = key.expires != NEVER && now >= key.expires;
        let status = match () {
            () if deleted.is_some() => KeyStatus::Deleted,
            () if expired => KeyStatus::Expired,
            () if state.disabled => KeyStatus::Disabled,
            () => KeyStatus::Active,
        };
        let minute = self
            .last_used
            .get(index as usize)
            .map_or(0, |m| m.load(Ordering::Relaxed));
        KeyView {
            id: key.id,
            name: self.name_of(key).to_owned(),
            roles: self.roles_of(key).0.iter().map(|r| r.to_string()).collect(),
            whitelist: state.whitelist,
            created_by: self.actor_of(created),
            created_at: system_time(created.at),
            deleted: deleted.map(|row| (self.actor_of(row), system_time(row.at))),
            hint: token::hint(state.tail),
            status,
            expires_at: (key.expires != NEVER).then(|| system_time(key.expires)),
            last_used_at: (last_used && minute != 0).then(|| system_time(minute_start(minute))),
            imported: cold.source != KeySource::Generated,
            acts_for: self.acts_for_name(index),
        }
    }

    /// Key `index` as it stands now.
    fn current_view(&self, index: u32, now: i64) -> KeyView {
        let (key, cold) = (&self.keys[index as usize], &self.cold[index as usize]);
        let state = ViewState {
            whitelist: self.whitelist_of(key).to_vec(),
            tail: cold.tail,
            disabled: key.disabled,
            deleted: cold.deleted,
        };
        self.view(index, state, now, true)
    }

    /// Whether key `index` is live at `now`: neither deleted nor expired.
    fn is_live(&self, index: usize, now: i64) -> bool {
        self.cold[index].deleted == LIVE && self.keys[index].expires > now
    }

    /// The keys, oldest first: all of them, or only the live ones (neither deleted nor
    /// expired at `now`).
    pub(crate) fn keys(&self, all: bool, now: i64) -> Vec<KeyView> {
        (0..self.keys.len())
            .filter(|&i| all || self.is_live(i, now))
            .map(|i| self.current_view(i as u32, now))
            .collect()
    }

    pub(crate) fn key(&self, id: KeyId, now: i64) -> Option<KeyView> {
        Some(self.current_view(self.key_index(id)?, now))
    }

    /// Every key as it stood right after record `seq` (deleted ones included, marked),
    /// its status as of that record's time. Last-used times are not part of the log and
    /// are left out.
    pub(crate) fn keys_at(&self, seq: u64) -> Vec<KeyView> {
        let upto = usize::try_from(seq).unwrap_or(usize::MAX).min(self.rows.len());
        let now = upto.checked_sub(1).map_or(0, |i| self.rows[i].at);
        let mut states: HashMap<u32, ViewState> = HashMap::new();
        let mut order = Vec::new();
        let first_tails = self.first_tails();
        for (i, row) in self.rows[..upto].iter().enumerate() {
            if row.kind == EventKind::ActorRevoked {
                for (slot, state) in states.iter_mut() {
                    if self.cold[*slot as usize].deleted == i as u32 {
                        state.deleted = i as u32;
                    }
                }
                continue;
            }
            let nets = self.row_nets(row);
            if row.kind.creates() {
                order.push(row.slot);
                states.insert(
                    row.slot,
                    ViewState {
                        whitelist: nets.to_vec(),
                        tail: first_tails
                            .get(&row.slot)
                            .copied()
                            .unwrap_or(self.cold[row.slot as usize].tail),
                        disabled: false,
                        deleted: LIVE,
                    },
                );
                continue;
            }
            let Some(state) = states.get_mut(&row.slot) else {
                continue;
            };
            match row.kind {
                EventKind::Whitelisted => state.whitelist.extend_from_slice(nets),
                EventKind::Unwhitelisted => state.whitelist.retain(|n| !nets.contains(n)),
                EventKind::Deleted => state.deleted = i as u32,
                EventKind::Disabled => state.disabled = true,
                EventKind::Enabled => state.disabled = false,
                EventKind::Rolled => {
                    if let Some(roll) = self.row_roll(row) {
                        state.tail = roll.after;
                    }
                }
                _ => {}
            }
        }
        order
            .into_iter()
            .filter_map(|k| Some(self.view(k, states.remove(&k)?, now, false)))
            .collect()
    }

    /// The tail each rolled key had when it was created: what its first roll replaced.
    /// (A key never rolled still has the tail it was created with.)
    fn first_tails(&self) -> HashMap<u32, [u8; 4]> {
        let mut first = HashMap::new();
        for row in &self.rows {
            if let Some(roll) = self.row_roll(row) {
                first.entry(row.slot).or_insert(roll.before);
            }
        }
        first
    }

    /// The audit trail, oldest first, from record `from` on.
    pub(crate) fn audit(&self, from: u64) -> impl Iterator<Item = AuditEntry> + '_ {
        let skip = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        self.rows.iter().enumerate().skip(skip).map(|(i, row)| {
            let revoked = row.kind == EventKind::ActorRevoked;
            let key = (!revoked).then(|| &self.keys[row.slot as usize]);
            let person = match row.kind {
                EventKind::ActorRevoked => Some(self.actors[row.nets as usize].to_string()),
                kind if kind.creates() => self.acts_for_name(row.slot),
                _ => None,
            };
            AuditEntry {
                seq: i as u64 + 1,
                at: system_time(row.at),
                actor: self.actor_of(row),
                kind: row.kind,
                key_id: key.map(|k| k.id),
                key_name: key.map(|k| self.name_of(k).to_owned()),
                person,
                with_keys: revoked && row.slot == 1,
                nets: self.row_nets(row).to_vec(),
                previous_valid_until: self.row_roll(row).map(|r| system_time(r.until)),
                via: self.keys.get(row.via as usize).map(|k| k.id),
            }
        })
    }

    /// Each key's last-used minute (0 for never), by id: what is persisted outside the log.
    pub(crate) fn last_used(&self) -> Vec<(KeyId, u32)> {
        self.keys
            .iter()
            .zip(&self.last_used)
            .map(|(k, m)| (k.id, m.load(Ordering::Relaxed)))
            .filter(|&(_, m)| m != 0)
            .collect()
    }

    /// Restores last-used minutes saved by [`Projection::last_used`]; unknown ids are
    /// skipped, and a later stamp already here is kept.
    pub(crate) fn restore_last_used(&self, saved: &[(KeyId, u32)]) {
        for &(id, minute) in saved {
            if let Some(stamp) = self.key_index(id).and_then(|i| self.last_used.get(i as usize)) {
                stamp.fetch_max(minute, Ordering::Relaxed);
            }
        }
    }

    /// Unindexes every key for verification, so that none verifies: a state that proved
    /// damaged fails closed. Listings and the audit trail stay readable.
    pub(crate) fn stop_verifying(&mut self) {
        self.by_hash.clear();
        self.graces.clear();
        self.grace_of.clear();
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_hash.len()
    }

    /// The graces as a snapshot lists them: in key order.
    fn grace_data(&self) -> Vec<GraceData> {
        let mut out: Vec<GraceData> = self
            .graces
            .iter()
            .map(|g| GraceData {
                key: g.key,
                hash: g.hash.0.to_le_bytes(),
                until: g.until,
            })
            .collect();
        out.sort_unstable_by_key(|g| g.key);
        out
    }

    /// The state as plain data, for a snapshot.
    pub(crate) fn to_snapshot(&self) -> SnapshotData {
        SnapshotData {
            head: self.head,
            actors: self.actors.iter().map(|a| a.to_string()).collect(),
            role_sets: self
                .role_sets
                .iter()
                .map(|s| s.0.iter().map(|r| r.to_string()).collect())
                .collect(),
            slots: (0..self.keys.len())
                .map(|i| self.slot_data(i as u32, &self.keys[i], &self.cold[i]))
                .collect(),
            rows: self.rows.clone(),
            nets: self.nets.clone(),
            whitelist_sets: self.whitelists.sets.iter().map(|s| s.to_vec()).collect(),
            rolls: self.rolls.clone(),
            graces: self.grace_data(),
            rolled_out: self.rolled_out_data(0..self.rolled_out_len()),
        }
    }

    /// Begins a snapshot of the state as it is now, to be copied out in parts by
    /// [`Projection::copy_frozen`] while records go on being applied. Returns its
    /// sequence number.
    pub(crate) fn begin_freeze(&mut self) -> u64 {
        let sets = u32::try_from(self.whitelists.sets.len()).unwrap_or(u32::MAX);
        self.whitelists.frozen = Some((sets, HashMap::new()));
        self.freeze = Some(Freeze {
            head: self.head,
            keys: u32::try_from(self.keys.len()).unwrap_or(u32::MAX),
            rows: self.rows.len(),
            nets: self.nets.len(),
            rolls: self.rolls.len(),
            rolled_out: self.rolled_out_len(),
            actors: self.actors.len(),
            role_sets: self.role_sets.len(),
            sets,
            graces: self.grace_data(),
            before: HashMap::new(),
        });
        self.head.seq
    }

    /// Ends the snapshot begun by [`Projection::begin_freeze`], dropping its pre-images.
    pub(crate) fn end_freeze(&mut self) {
        self.freeze = None;
        self.whitelists.frozen = None;
    }

    /// Copies the next part of the frozen state into `out` (at most `budget` items of
    /// one kind); returns whether the copy is complete. `out` starts empty.
    pub(crate) fn copy_frozen(&self, out: &mut SnapshotData, budget: usize) -> bool {
        let Some(f) = &self.freeze else {
            return true;
        };
        out.head = f.head;
        let take = |have: usize, total: usize| have..total.min(have + budget);
        if out.actors.len() < f.actors {
            let part = take(out.actors.len(), f.actors);
            out.actors.extend(self.actors[part].iter().map(|a| a.to_string()));
        } else if out.role_sets.len() < f.role_sets {
            let part = take(out.role_sets.len(), f.role_sets);
            out.role_sets.extend(
                self.role_sets[part]
                    .iter()
                    .map(|s| s.0.iter().map(|r| r.to_string()).collect()),
            );
        } else if out.whitelist_sets.len() < f.sets as usize {
            let part = take(out.whitelist_sets.len(), f.sets as usize);
            out.whitelist_sets
                .extend(part.map(|i| self.whitelists.frozen(i as u32).to_vec()));
        } else if out.slots.len() < f.keys as usize {
            let part = take(out.slots.len(), f.keys as usize);
            out.slots.extend(part.map(|i| {
                let (k, c) = f
                    .before
                    .get(&(i as u32))
                    .map_or((&self.keys[i], &self.cold[i]), |(k, c)| (k, c));
                self.slot_data(i as u32, k, c)
            }));
        } else if out.rows.len() < f.rows {
            let part = take(out.rows.len(), f.rows);
            out.rows.extend_from_slice(&self.rows[part]);
        } else if out.nets.len() < f.nets {
            let part = take(out.nets.len(), f.nets);
            out.nets.extend_from_slice(&self.nets[part]);
        } else if out.rolls.len() < f.rolls {
            let part = take(out.rolls.len(), f.rolls);
            out.rolls.extend_from_slice(&self.rolls[part]);
        } else if out.graces.len() < f.graces.len() {
            out.graces.clone_from(&f.graces);
        } else if out.rolled_out.len() < f.rolled_out {
            let part = take(out.rolled_out.len(), f.rolled_out);
            out.rolled_out.extend(self.rolled_out_data(part));
        } else {
            return true;
        }
        false
    }

    fn slot_data(&self, index: u32, k: &KeyRec, c: &KeyCold) -> SlotData {
        SlotData {
            hash: k.hash.0.to_le_bytes(),
            id: k.id.0,
            name: self.name_of(k).to_owned(),
            roles: k.roles,
            tail: c.tail,
            whitelist: k.whitelist,
            created: c.created,
            deleted: (c.deleted != LIVE).then_some(c.deleted),
            expires_at: (k.expires != NEVER).then_some(k.expires),
            disabled: k.disabled,
            source: c.source,
            acts_for: self.named_person(index),
        }
    }

    /// Rebuilds a projection from a snapshot's data, exactly as it was saved (the same
    /// indices everywhere), checking every index in it.
    pub(crate) fn from_snapshot(data: SnapshotData) -> Result<Self, Error> {
        let seq = data.head.seq;
        let bad = |what: &str| Error::corrupt(seq, ProblemKind::Snapshot, format!("snapshot: {what}"));
        let mut proj = Projection::new();
        for actor in &data.actors {
            proj.intern_actor(actor, seq)?;
        }
        if proj.actors.len() != data.actors.len() {
            return Err(bad("duplicate actor"));
        }
        for set in &data.role_sets {
            if proj.intern_roles(set, seq)? as usize != proj.role_sets.len() - 1 {
                return Err(bad("duplicate role set"));
            }
        }
        let (rows_len, keys_len, nets_len) = (data.rows.len(), data.slots.len(), data.nets.len());
        if rows_len as u64 != seq {
            return Err(bad("row count does not match its sequence number"));
        }
        let sets_len = data.whitelist_sets.len();
        let mut refs = vec![0u32; sets_len];
        let mut count = |set: u32| match refs.get_mut(set as usize) {
            Some(r) => {
                *r = r.saturating_add(1);
                true
            }
            None => false,
        };
        for row in &data.rows {
            let nets_ok = match row.kind {
                EventKind::Created | EventKind::Imported => count(row.nets),
                EventKind::Whitelisted | EventKind::Unwhitelisted => (row.nets as usize) < nets_len,
                EventKind::Rolled => (row.nets as usize) < data.rolls.len(),
                EventKind::ActorRevoked => (row.nets as usize) < proj.actors.len() && row.slot <= 1,
                _ => true,
            };
            if !nets_ok
                || row.actor as usize >= proj.actors.len()
                || (row.kind != EventKind::ActorRevoked && row.slot as usize >= keys_len)
                || (row.via != NO_VIA && row.via as usize >= keys_len)
            {
                return Err(bad("audit row out of range"));
            }
        }
        for s in &data.slots {
            if !count(s.whitelist) {
                return Err(bad("whitelist set out of range"));
            }
        }
        refs[0] = 0;
        proj.whitelists = WhitelistSets::restore(data.whitelist_sets, refs).map_err(bad)?;
        for s in &data.slots {
            if s.roles as usize >= proj.role_sets.len()
                || s.created as usize >= rows_len
                || s.deleted.is_some_and(|d| d as usize >= rows_len)
            {
                return Err(bad("key record out of range"));
            }
            let (hash, id) = (HashPrefix(u128::from_le_bytes(s.hash)), KeyId(s.id));
            if proj.contains_id(id) || (s.deleted.is_none() && proj.live_key_by_prefix(hash).is_some()) {
                return Err(bad("duplicate key"));
            }
            let key = KeyRec {
                hash,
                id,
                expires: s.expires_at.unwrap_or(NEVER),
                roles: s.roles,
                whitelist: s.whitelist,
                name: proj.store_name(&s.name, seq)?,
                disabled: s.disabled,
            };
            let cold = KeyCold {
                created: s.created,
                deleted: s.deleted.unwrap_or(LIVE),
                tail: s.tail,
                source: s.source,
            };
            proj.note_source(s.source);
            proj.push_key(key, cold, seq)?;
        }
        proj.restore_people(&data.slots, &data.rolled_out).map_err(bad)?;
        let mut previous = None;
        for g in &data.graces {
            let hash = HashPrefix(u128::from_le_bytes(g.hash));
            if previous.is_some_and(|p| p >= g.key)
                || g.key as usize >= keys_len
                || proj.cold[g.key as usize].deleted != LIVE
                || g.until <= data.head.at
                || proj.contains_prefix(hash)
            {
                return Err(bad("grace out of range, out of order or ended"));
            }
            previous = Some(g.key);
            proj.begin_grace(hash, g.key, g.until);
        }
        proj.rows = data.rows;
        proj.nets = data.nets;
        proj.rolls = data.rolls;
        proj.head = data.head;
        Ok(proj)
    }
}

/// A key's changing parts, as listed at some point of the log.
struct ViewState {
    whitelist: Vec<IpNet>,
    tail: [u8; 4],
    disabled: bool,
    /// Index in `rows` of the deletion, or [`LIVE`].
    deleted: u32,
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
        use crate::event::{Actor, NewKey};
        use crate::ledger::{Command, Ledger, Op};
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
                .allow(crate::parse_net(&format!("10.{}.0.0/16", i % 3)).unwrap());
            keys.push(run(Op::Create {
                new: new.validated().unwrap(),
                hash: crate::token::KeyHash(hash),
                tail: *b"abcd",
            }));
        }
        // Ten keys get a whitelist of their own, so that changing it again frees a set
        // that existed when the freeze began.
        for (i, id) in keys.iter().take(10).enumerate() {
            let net = crate::parse_net(&format!("172.16.{i}.0/24")).unwrap();
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
            let net = crate::parse_net(&format!("192.0.{steps}.0/24")).unwrap();
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
