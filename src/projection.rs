//! The in-memory projections of the log: keys by hash (for verify), keys by id, and the
//! audit trail, all rebuilt by replaying records in order.
//!
//! Owns the only mutable view of state. It is changed only by [`Projection::apply`], with a
//! record that already passed [`Projection::check`]; it never does I/O.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use ipnet::IpNet;

use crate::Error;
use crate::access::{self, KeyName, KeyState, Rejection, RoleSet, VerifiedKey};
use crate::chain::Head;
use crate::check::ProblemKind;
use crate::event::{Actor, ActorRole, Event, EventKind, KeyId, Record};
use crate::token::{self, KeyHash};

/// One audit row, compact: strings are interned, networks live in `nets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) at: i64,
    pub(crate) actor: u32,
    pub(crate) role: ActorRole,
    pub(crate) kind: EventKind,
    pub(crate) slot: u32,
    /// For `created`, the index of the initial whitelist in the whitelist sets; for
    /// `whitelisted` and `unwhitelisted`, the index of the network in `nets`.
    pub(crate) nets: u32,
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
    /// `klk_…` and the key's last four characters, to recognise it.
    pub hint: String,
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
    /// The key it was done to.
    pub key_id: KeyId,
    /// That key's name.
    pub key_name: String,
    /// For `whitelisted` and `unwhitelisted`, the network; for `created`, the initial
    /// whitelist; otherwise empty.
    pub nets: Vec<IpNet>,
}

pub(crate) fn system_time(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
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
const REC_INLINE_NAME: usize = 18;

/// A key's name: inline when short (most are), else a range of the names arena. Keeps
/// a verify to the one cache line of the key's record.
#[derive(Clone, Copy)]
struct Name {
    len: u16,
    /// The name itself when `len <= REC_INLINE_NAME`; else its offset in the arena (first
    /// four bytes, little-endian).
    bytes: [u8; REC_INLINE_NAME],
}

/// Everything kept about one key: one 64-byte cache line, no allocation of its own.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct KeyRec {
    hash: HashPrefix,
    id: KeyId,
    /// Index into `role_sets`.
    roles: u32,
    /// Index into `whitelists`; 0 for the empty whitelist.
    whitelist: u32,
    /// Index in `rows` of the creation.
    created: u32,
    /// Index in `rows` of the deletion, or [`LIVE`].
    deleted: u32,
    tail: [u8; 4],
    name: Name,
}

const LIVE: u32 = u32::MAX;

/// All state derived from the log, laid out as flat arrays: memory per key stays small
/// and a verify touches the hash table and one key record.
pub(crate) struct Projection {
    keys: Vec<KeyRec>,
    /// Live keys only, by key hash.
    by_hash: HashTable<u32>,
    /// Every key ever created, by id.
    by_id: HashTable<u32>,
    /// Names longer than [`REC_INLINE_NAME`] bytes.
    names: String,
    /// Whitelists, shared by every key (and creation row) that has the same one.
    whitelists: WhitelistSets,
    role_sets: Vec<RoleSet>,
    role_index: HashTable<u32>,
    rows: Vec<Row>,
    nets: Vec<IpNet>,
    actors: Vec<Arc<str>>,
    actor_index: HashMap<Arc<str>, u32>,
    seed: Seed,
    hasher: RandomState,
    head: Head,
    /// Set while a snapshot is being copied out in parts; see [`Freeze`].
    freeze: Option<Freeze>,
}

/// A snapshot being copied out while the writer goes on: the state's extent when it
/// began, and the pre-images of key records changed since (the other arrays only grow).
/// The copy takes the read lock a part at a time, so no write waits for a whole copy.
struct Freeze {
    head: Head,
    keys: u32,
    rows: usize,
    nets: usize,
    actors: usize,
    role_sets: usize,
    sets: u32,
    before: HashMap<u32, KeyRec>,
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
            by_hash: HashTable::new(),
            by_id: HashTable::new(),
            names: String::new(),
            whitelists: WhitelistSets::new(),
            role_sets: Vec::new(),
            role_index: HashTable::new(),
            rows: Vec::new(),
            nets: Vec::new(),
            actors: Vec::new(),
            actor_index: HashMap::new(),
            seed: Seed::random(),
            hasher: RandomState::new(),
            head: Head::EMPTY,
            freeze: None,
        }
    }

    pub(crate) fn head(&self) -> Head {
        self.head
    }

    /// Looks a key's hash up and checks the client's address: a hash-table probe, one key
    /// record, and a copy of the name.
    #[inline]
    pub(crate) fn verify(
        &self,
        hash: &KeyHash,
        ip: IpAddr,
        require_whitelist: bool,
    ) -> Result<VerifiedKey, Rejection> {
        let key = self.live_key(hash).ok_or(Rejection::UnknownKey)?;
        access::ip_allowed(self.whitelist_of(key), ip, require_whitelist)?;
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

    #[inline]
    fn live_key(&self, hash: &KeyHash) -> Option<&KeyRec> {
        self.live_key_by_prefix(HashPrefix::of(hash))
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

    pub(crate) fn contains_hash(&self, hash: &KeyHash) -> bool {
        self.live_key(hash).is_some()
    }

    /// The state the access rules need for key `id`.
    pub(crate) fn key_state(&self, id: KeyId) -> Option<KeyState<'_>> {
        let key = &self.keys[self.key_index(id)? as usize];
        Some(KeyState {
            owner: &self.actors[self.rows[key.created as usize].actor as usize],
            deleted: key.deleted != LIVE,
            whitelist: self.whitelist_of(key),
        })
    }

    /// Applies a record the ledger admitted; `chain_hash` is its own hash.
    pub(crate) fn apply(&mut self, record: &Record, chain_hash: [u8; 32]) -> Result<(), Error> {
        let seq = record.seq;
        let row_index = u32::try_from(self.rows.len()).map_err(|_| too_long(seq))?;
        let mut row = Row {
            at: record.at,
            actor: self.intern_actor(record.actor.id(), seq)?,
            role: record.actor.role(),
            kind: record.event.kind(),
            slot: 0,
            nets: 0,
        };
        match &record.event {
            Event::Created {
                id,
                hash,
                tail,
                name,
                roles,
                whitelist,
            } => {
                // One reference for the key, one for its creation row.
                let set = self.whitelists.acquire(whitelist, seq)?;
                self.whitelists.acquire(whitelist, seq)?;
                let key = KeyRec {
                    hash: HashPrefix::of(hash),
                    id: *id,
                    roles: self.intern_roles(roles, seq)?,
                    whitelist: set,
                    created: row_index,
                    deleted: LIVE,
                    tail: *tail,
                    name: self.store_name(name, seq)?,
                };
                row.slot = self.push_key(key, seq)?;
                row.nets = set;
            }
            Event::Whitelisted { id, net } | Event::Unwhitelisted { id, net } => {
                let index = self.key_index(*id).ok_or(Error::KeyNotFound(*id))?;
                self.preserve_key(index);
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
                let index = self.key_index(*id).ok_or(Error::KeyNotFound(*id))?;
                self.preserve_key(index);
                let hash = self.keys[index as usize].hash;
                if let Ok(entry) = self.by_hash.find_entry(self.seed.key_hash(hash), |&i| i == index) {
                    entry.remove();
                }
                self.keys[index as usize].deleted = row_index;
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

    /// Keeps key record `index` as it was when the snapshot being copied began.
    fn preserve_key(&mut self, index: u32) {
        if let Some(f) = &mut self.freeze
            && index < f.keys
        {
            f.before.entry(index).or_insert(self.keys[index as usize]);
        }
    }

    /// Adds a key record and indexes it (by hash only while live).
    fn push_key(&mut self, key: KeyRec, seq: u64) -> Result<u32, Error> {
        let index = u32::try_from(self.keys.len()).map_err(|_| too_long(seq))?;
        self.keys.push(key);
        let (seed, keys) = (self.seed, &self.keys);
        if key.deleted == LIVE {
            self.by_hash.insert_unique(seed.key_hash(key.hash), index, |&i| {
                seed.key_hash(keys[i as usize].hash)
            });
        }
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
            EventKind::Created => self.whitelists.get(row.nets),
            EventKind::Whitelisted | EventKind::Unwhitelisted => {
                let i = row.nets as usize;
                self.nets.get(i..i + 1).unwrap_or_default()
            }
            EventKind::Deleted => &[],
        }
    }

    fn view(&self, key: &KeyRec, whitelist: Vec<IpNet>, deleted: u32) -> KeyView {
        let created = &self.rows[key.created as usize];
        KeyView {
            id: key.id,
            name: self.name_of(key).to_owned(),
            roles: self.roles_of(key).0.iter().map(|r| r.to_string()).collect(),
            whitelist,
            created_by: self.actor_of(created),
            created_at: system_time(created.at),
            deleted: self
                .rows
                .get(deleted as usize)
                .map(|row| (self.actor_of(row), system_time(row.at))),
            hint: token::hint(key.tail),
        }
    }

    /// The keys, oldest first; deleted ones only if asked.
    pub(crate) fn keys(&self, include_deleted: bool) -> Vec<KeyView> {
        self.keys
            .iter()
            .filter(|k| include_deleted || k.deleted == LIVE)
            .map(|k| self.view(k, self.whitelist_of(k).to_vec(), k.deleted))
            .collect()
    }

    pub(crate) fn key(&self, id: KeyId) -> Option<KeyView> {
        let k = &self.keys[self.key_index(id)? as usize];
        Some(self.view(k, self.whitelist_of(k).to_vec(), k.deleted))
    }

    /// Every key as it stood right after record `seq` (deleted ones included, marked).
    pub(crate) fn keys_at(&self, seq: u64) -> Vec<KeyView> {
        let upto = usize::try_from(seq).unwrap_or(usize::MAX).min(self.rows.len());
        let mut whitelists: HashMap<u32, Vec<IpNet>> = HashMap::new();
        let mut deleted: HashMap<u32, u32> = HashMap::new();
        let mut order = Vec::new();
        for (i, row) in self.rows[..upto].iter().enumerate() {
            let nets = self.row_nets(row);
            match row.kind {
                EventKind::Created => {
                    order.push(row.slot);
                    whitelists.insert(row.slot, nets.to_vec());
                }
                EventKind::Whitelisted => whitelists.entry(row.slot).or_default().extend_from_slice(nets),
                EventKind::Unwhitelisted => whitelists
                    .entry(row.slot)
                    .or_default()
                    .retain(|n| !nets.contains(n)),
                EventKind::Deleted => {
                    deleted.insert(row.slot, i as u32);
                }
            }
        }
        order
            .into_iter()
            .map(|k| {
                let wl = whitelists.remove(&k).unwrap_or_default();
                self.view(
                    &self.keys[k as usize],
                    wl,
                    deleted.get(&k).copied().unwrap_or(LIVE),
                )
            })
            .collect()
    }

    /// The audit trail, oldest first, from record `from` on.
    pub(crate) fn audit(&self, from: u64) -> impl Iterator<Item = AuditEntry> + '_ {
        let skip = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        self.rows.iter().enumerate().skip(skip).map(|(i, row)| {
            let key = &self.keys[row.slot as usize];
            AuditEntry {
                seq: i as u64 + 1,
                at: system_time(row.at),
                actor: self.actor_of(row),
                kind: row.kind,
                key_id: key.id,
                key_name: self.name_of(key).to_owned(),
                nets: self.row_nets(row).to_vec(),
            }
        })
    }

    /// Unindexes every key for verification, so that none verifies: a state that proved
    /// damaged fails closed. Listings and the audit trail stay readable.
    pub(crate) fn stop_verifying(&mut self) {
        self.by_hash.clear();
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_hash.len()
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
            slots: self.keys.iter().map(|k| self.slot_data(k)).collect(),
            rows: self.rows.clone(),
            nets: self.nets.clone(),
            whitelist_sets: self.whitelists.sets.iter().map(|s| s.to_vec()).collect(),
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
            actors: self.actors.len(),
            role_sets: self.role_sets.len(),
            sets,
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
                let k = f.before.get(&(i as u32)).unwrap_or(&self.keys[i]);
                self.slot_data(k)
            }));
        } else if out.rows.len() < f.rows {
            let part = take(out.rows.len(), f.rows);
            out.rows.extend_from_slice(&self.rows[part]);
        } else if out.nets.len() < f.nets {
            let part = take(out.nets.len(), f.nets);
            out.nets.extend_from_slice(&self.nets[part]);
        } else {
            return true;
        }
        false
    }

    fn slot_data(&self, k: &KeyRec) -> SlotData {
        SlotData {
            hash: k.hash.0.to_le_bytes(),
            id: k.id.0,
            name: self.name_of(k).to_owned(),
            roles: k.roles,
            tail: k.tail,
            whitelist: k.whitelist,
            created: k.created,
            deleted: (k.deleted != LIVE).then_some(k.deleted),
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
                EventKind::Created => count(row.nets),
                EventKind::Whitelisted | EventKind::Unwhitelisted => (row.nets as usize) < nets_len,
                EventKind::Deleted => true,
            };
            if !nets_ok || row.actor as usize >= proj.actors.len() || row.slot as usize >= keys_len {
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
                roles: s.roles,
                whitelist: s.whitelist,
                created: s.created,
                deleted: s.deleted.unwrap_or(LIVE),
                tail: s.tail,
                name: proj.store_name(&s.name, seq)?,
            };
            proj.push_key(key, seq)?;
        }
        proj.rows = data.rows;
        proj.nets = data.nets;
        proj.head = data.head;
        Ok(proj)
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
