//! The in-memory projections of the log: keys by hash (for verify), keys by id, and the
//! audit trail, all rebuilt by replaying records in order.
//!
//! Owns the only mutable view of state. It is changed only by [`Projection::apply`], with a
//! record that already passed [`Projection::check`]; it never does I/O.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use ipnet::IpNet;

use crate::Error;
use crate::access::{self, KeyName, KeyState, Rejection, RoleSet, VerifiedKey};
use crate::event::{Actor, ActorRole, Event, EventKind, KeyId, Record};
use crate::token::{self, KeyHash};

/// The position of the log's last record: what the next record must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) seq: u64,
    /// Chain hash of record `seq` (zeros before the first record).
    pub(crate) hash: [u8; 32],
    /// Time of record `seq`, in microseconds.
    pub(crate) at: i64,
}

impl Head {
    pub(crate) const EMPTY: Head = Head {
        seq: 0,
        hash: [0; 32],
        at: 0,
    };
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Names longer than [`INLINE_NAME`] bytes.
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
}

/// Whitelists stored once however many keys share them, with reference counts so that a
/// whitelist nobody uses any more is freed. Set 0 is the empty whitelist.
struct WhitelistSets {
    sets: Vec<Box<[IpNet]>>,
    refs: Vec<u32>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: RandomState,
}

impl WhitelistSets {
    fn new() -> Self {
        WhitelistSets {
            sets: vec![Box::default()],
            refs: vec![0],
            free: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
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
        let i = match self.free.pop() {
            Some(i) => {
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
            self.sets[set as usize] = Box::default();
            self.free.push(set);
        }
    }
}

fn too_long(seq: u64) -> Error {
    Error::corrupt(seq, "more records or keys than this build can index")
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
        access::check_ip(self.whitelist_of(key), ip, require_whitelist)?;
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

    /// Checks that `record` may follow the log's head: its sequence number, chain link,
    /// time, fields, and the access rules. A record that passes can be applied.
    pub(crate) fn check(&self, record: &Record) -> Result<(), Error> {
        let seq = record.seq;
        if seq != self.head.seq + 1 {
            return Err(Error::corrupt(
                seq,
                format!("expected sequence number {}", self.head.seq + 1),
            ));
        }
        if record.prev != self.head.hash {
            return Err(match seq {
                1 => Error::corrupt(1, "record 1 does not start the hash chain"),
                _ => Error::corrupt(
                    seq - 1,
                    format!(
                        "record {} was changed: record {seq}'s link to it does not match",
                        seq - 1
                    ),
                ),
            });
        }
        if record.at < self.head.at {
            return Err(Error::corrupt(seq, "timestamp goes backwards"));
        }
        record.validate()?;
        if let Event::Created { hash, .. } = &record.event
            && self.contains_hash(hash)
        {
            return Err(Error::corrupt(seq, "a live key already has this hash"));
        }
        access::check_event(
            &record.actor,
            &record.event,
            self.key_state(record.event.key_id()),
        )
    }

    /// Applies a record that passed [`Projection::check`]; `chain_hash` is its own hash.
    pub(crate) fn apply(&mut self, record: &Record, chain_hash: [u8; 32]) -> Result<(), Error> {
        let seq = record.seq;
        let row_index = u32::try_from(self.rows.len()).map_err(|_| too_long(seq))?;
        let mut row = Row {
            at: record.at,
            actor: self.intern_actor(record.actor.id()),
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

    fn intern_actor(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.actor_index.get(id) {
            return i;
        }
        let i = u32::try_from(self.actors.len()).unwrap_or(u32::MAX);
        let id: Arc<str> = id.into();
        self.actors.push(Arc::clone(&id));
        self.actor_index.insert(id, i);
        i
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
            slots: self
                .keys
                .iter()
                .map(|k| SlotData {
                    hash: k.hash.0.to_le_bytes(),
                    id: k.id.0,
                    name: self.name_of(k).to_owned(),
                    roles: k.roles,
                    tail: k.tail,
                    whitelist: k.whitelist,
                    created: k.created,
                    deleted: (k.deleted != LIVE).then_some(k.deleted),
                })
                .collect(),
            rows: self.rows.clone(),
            nets: self.nets.clone(),
            whitelist_sets: self.whitelists.sets.iter().map(|s| s.to_vec()).collect(),
        }
    }

    /// Rebuilds a projection from a snapshot's data, checking every index in it.
    pub(crate) fn from_snapshot(data: SnapshotData) -> Result<Self, Error> {
        let seq = data.head.seq;
        let bad = |what: &str| Error::corrupt(seq, format!("snapshot: {what}"));
        let mut proj = Projection::new();
        for actor in &data.actors {
            proj.intern_actor(actor);
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
        let set = |i: u32| {
            data.whitelist_sets
                .get(i as usize)
                .ok_or_else(|| bad("whitelist set out of range"))
        };
        let mut rows = data.rows;
        for row in &mut rows {
            let nets_ok = match row.kind {
                EventKind::Created => {
                    row.nets = proj.whitelists.acquire(set(row.nets)?, seq)?;
                    true
                }
                EventKind::Whitelisted | EventKind::Unwhitelisted => (row.nets as usize) < nets_len,
                EventKind::Deleted => true,
            };
            if !nets_ok || row.actor as usize >= proj.actors.len() || row.slot as usize >= keys_len {
                return Err(bad("audit row out of range"));
            }
        }
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
                whitelist: proj.whitelists.acquire(set(s.whitelist)?, seq)?,
                created: s.created,
                deleted: s.deleted.unwrap_or(LIVE),
                tail: s.tail,
                name: proj.store_name(&s.name, seq)?,
            };
            proj.push_key(key, seq)?;
        }
        proj.rows = rows;
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
