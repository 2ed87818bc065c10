//! The in-memory projections of the log: keys by hash (for verify), keys by id, and the
//! audit trail, all rebuilt by replaying records in order.
//!
//! Owns the only mutable view of state. It is changed only by [`Projection::apply`], with a
//! record that already passed [`Projection::check`]; it never does I/O.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use ipnet::IpNet;

use crate::Error;
use crate::access::{self, KeyInfo, KeyState, Rejection, VerifiedKey};
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

struct Slot {
    hash: KeyHash,
    info: Arc<KeyInfo>,
    whitelist: Box<[IpNet]>,
    /// Index in `rows` of the creation.
    created: u32,
    /// Index in `rows` of the deletion, if deleted.
    deleted: Option<u32>,
}

/// One audit row, compact: strings are interned, networks live in `nets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) at: i64,
    pub(crate) actor: u32,
    pub(crate) role: ActorRole,
    pub(crate) kind: EventKind,
    pub(crate) slot: u32,
    pub(crate) nets_start: u32,
    pub(crate) nets_len: u16,
}

/// A key's slot as plain data, for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotData {
    pub(crate) hash: [u8; 32],
    pub(crate) id: u64,
    pub(crate) name: String,
    /// Index into [`SnapshotData::role_sets`].
    pub(crate) roles: u32,
    pub(crate) tail: [u8; 4],
    pub(crate) whitelist: Vec<IpNet>,
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
    fn key_hash(&self, h: &KeyHash) -> u64 {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h.0[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Self::fold(w(0) ^ self.0[0], w(1) ^ self.0[1]) ^ Self::fold(w(2) ^ self.0[2], w(3) ^ self.0[3])
    }

    #[inline]
    fn key_id(&self, id: KeyId) -> u64 {
        Self::fold(id.0 ^ self.0[0], self.0[1])
    }
}

/// All state derived from the log.
pub(crate) struct Projection {
    slots: Vec<Slot>,
    /// Live keys only.
    by_hash: HashTable<u32>,
    /// Every key ever created.
    by_id: HashTable<u32>,
    rows: Vec<Row>,
    nets: Vec<IpNet>,
    actors: Vec<Arc<str>>,
    actor_index: HashMap<Arc<str>, u32>,
    role_sets: HashSet<Arc<[Box<str>]>>,
    seed: Seed,
    head: Head,
}

impl Projection {
    pub(crate) fn new() -> Self {
        Projection {
            slots: Vec::new(),
            by_hash: HashTable::new(),
            by_id: HashTable::new(),
            rows: Vec::new(),
            nets: Vec::new(),
            actors: Vec::new(),
            actor_index: HashMap::new(),
            role_sets: HashSet::new(),
            seed: Seed::random(),
            head: Head::EMPTY,
        }
    }

    pub(crate) fn head(&self) -> Head {
        self.head
    }

    /// The state as plain data, for a snapshot.
    pub(crate) fn to_snapshot(&self) -> SnapshotData {
        let mut set_index: HashMap<*const [Box<str>], u32> = HashMap::new();
        let mut role_sets: Vec<Vec<String>> = Vec::new();
        let slots = self
            .slots
            .iter()
            .map(|s| {
                let roles = *set_index.entry(Arc::as_ptr(&s.info.roles)).or_insert_with(|| {
                    role_sets.push(s.info.roles.iter().map(|r| r.to_string()).collect());
                    (role_sets.len() - 1) as u32
                });
                SlotData {
                    hash: s.hash.0,
                    id: s.info.id.0,
                    name: s.info.name.to_string(),
                    roles,
                    tail: s.info.tail,
                    whitelist: s.whitelist.to_vec(),
                    created: s.created,
                    deleted: s.deleted,
                }
            })
            .collect();
        SnapshotData {
            head: self.head,
            actors: self.actors.iter().map(|a| a.to_string()).collect(),
            role_sets,
            slots,
            rows: self.rows.clone(),
            nets: self.nets.clone(),
        }
    }

    /// Rebuilds a projection from a snapshot's data, checking every index in it.
    pub(crate) fn from_snapshot(data: SnapshotData) -> Result<Self, Error> {
        let bad = |what: &str| Error::corrupt(data.head.seq, format!("snapshot: {what}"));
        let mut proj = Projection::new();
        for actor in &data.actors {
            proj.intern_actor(actor);
        }
        if proj.actors.len() != data.actors.len() {
            return Err(bad("duplicate actor"));
        }
        let sets: Vec<Arc<[Box<str>]>> = data.role_sets.iter().map(|r| proj.intern_roles(r)).collect();
        let (rows_len, slots_len, nets_len) = (data.rows.len(), data.slots.len(), data.nets.len());
        for row in &data.rows {
            let nets_end = row.nets_start as usize + usize::from(row.nets_len);
            if row.actor as usize >= proj.actors.len()
                || row.slot as usize >= slots_len
                || nets_end > nets_len
            {
                return Err(bad("audit row out of range"));
            }
        }
        if rows_len as u64 != data.head.seq {
            return Err(bad("row count does not match its sequence number"));
        }
        for (i, s) in data.slots.into_iter().enumerate() {
            let roles = sets
                .get(s.roles as usize)
                .ok_or_else(|| bad("role set out of range"))?;
            if s.created as usize >= rows_len || s.deleted.is_some_and(|d| d as usize >= rows_len) {
                return Err(bad("slot's rows out of range"));
            }
            let (hash, id, slot) = (KeyHash(s.hash), KeyId(s.id), i as u32);
            if proj.contains_id(id) || (s.deleted.is_none() && proj.contains_hash(&hash)) {
                return Err(bad("duplicate key"));
            }
            proj.slots.push(Slot {
                hash,
                info: Arc::new(KeyInfo {
                    id,
                    name: s.name.into(),
                    roles: Arc::clone(roles),
                    tail: s.tail,
                }),
                whitelist: s.whitelist.into(),
                created: s.created,
                deleted: s.deleted,
            });
            let (seed, slots) = (proj.seed, &proj.slots);
            if s.deleted.is_none() {
                proj.by_hash.insert_unique(seed.key_hash(&hash), slot, |&i| {
                    seed.key_hash(&slots[i as usize].hash)
                });
            }
            proj.by_id
                .insert_unique(seed.key_id(id), slot, |&i| seed.key_id(slots[i as usize].info.id));
        }
        proj.rows = data.rows;
        proj.nets = data.nets;
        proj.head = data.head;
        Ok(proj)
    }

    /// Looks a key's hash up and checks the client's address. Never allocates.
    #[inline]
    pub(crate) fn verify(
        &self,
        hash: &KeyHash,
        ip: IpAddr,
        require_whitelist: bool,
    ) -> Result<VerifiedKey, Rejection> {
        let slot = self.live_slot(hash).ok_or(Rejection::UnknownKey)?;
        access::check_ip(&slot.whitelist, ip, require_whitelist)?;
        Ok(VerifiedKey(Arc::clone(&slot.info)))
    }

    #[inline]
    fn live_slot(&self, hash: &KeyHash) -> Option<&Slot> {
        let slots = &self.slots;
        self.by_hash
            .find(self.seed.key_hash(hash), |&i| slots[i as usize].hash == *hash)
            .map(|&i| &slots[i as usize])
    }

    fn slot_index(&self, id: KeyId) -> Option<u32> {
        let slots = &self.slots;
        self.by_id
            .find(self.seed.key_id(id), |&i| slots[i as usize].info.id == id)
            .copied()
    }

    pub(crate) fn contains_id(&self, id: KeyId) -> bool {
        self.slot_index(id).is_some()
    }

    pub(crate) fn contains_hash(&self, hash: &KeyHash) -> bool {
        self.live_slot(hash).is_some()
    }

    /// The state the access rules need for key `id`.
    pub(crate) fn key_state(&self, id: KeyId) -> Option<KeyState<'_>> {
        let slot = &self.slots[self.slot_index(id)? as usize];
        Some(KeyState {
            owner: &self.actors[self.rows[slot.created as usize].actor as usize],
            deleted: slot.deleted.is_some(),
            whitelist: &slot.whitelist,
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
        let row_index =
            u32::try_from(self.rows.len()).map_err(|_| Error::corrupt(record.seq, "log too long"))?;
        let actor = self.intern_actor(record.actor.id());
        let nets_start =
            u32::try_from(self.nets.len()).map_err(|_| Error::corrupt(record.seq, "log too long"))?;
        let mut row = Row {
            at: record.at,
            actor,
            role: record.actor.role(),
            kind: record.event.kind(),
            slot: 0,
            nets_start,
            nets_len: 0,
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
                let slot = u32::try_from(self.slots.len())
                    .map_err(|_| Error::corrupt(record.seq, "too many keys"))?;
                let roles = self.intern_roles(roles);
                self.slots.push(Slot {
                    hash: *hash,
                    info: Arc::new(KeyInfo {
                        id: *id,
                        name: name.as_str().into(),
                        roles,
                        tail: *tail,
                    }),
                    whitelist: whitelist.as_slice().into(),
                    created: row_index,
                    deleted: None,
                });
                let (seed, slots) = (self.seed, &self.slots);
                self.by_hash.insert_unique(seed.key_hash(hash), slot, |&i| {
                    seed.key_hash(&slots[i as usize].hash)
                });
                self.by_id.insert_unique(seed.key_id(*id), slot, |&i| {
                    seed.key_id(slots[i as usize].info.id)
                });
                self.nets.extend_from_slice(whitelist);
                row.slot = slot;
                row.nets_len = u16::try_from(whitelist.len())
                    .map_err(|_| Error::corrupt(record.seq, "whitelist too long"))?;
            }
            Event::Whitelisted { id, net } | Event::Unwhitelisted { id, net } => {
                let slot = self.slot_index(*id).ok_or(Error::KeyNotFound(*id))?;
                let s = &mut self.slots[slot as usize];
                let mut list = s.whitelist.to_vec();
                if matches!(record.event, Event::Whitelisted { .. }) {
                    list.push(*net);
                } else {
                    list.retain(|n| n != net);
                }
                s.whitelist = list.into_boxed_slice();
                self.nets.push(*net);
                row.slot = slot;
                row.nets_len = 1;
            }
            Event::Deleted { id } => {
                let slot = self.slot_index(*id).ok_or(Error::KeyNotFound(*id))?;
                let (seed, slots) = (self.seed, &mut self.slots);
                let hash = slots[slot as usize].hash;
                if let Ok(entry) = self.by_hash.find_entry(seed.key_hash(&hash), |&i| i == slot) {
                    entry.remove();
                }
                slots[slot as usize].deleted = Some(row_index);
                row.slot = slot;
            }
        }
        self.rows.push(row);
        self.head = Head {
            seq: record.seq,
            hash: chain_hash,
            at: record.at,
        };
        Ok(())
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

    fn intern_roles(&mut self, roles: &[String]) -> Arc<[Box<str>]> {
        let roles: Vec<Box<str>> = roles.iter().map(|r| r.as_str().into()).collect();
        if let Some(set) = self.role_sets.get(roles.as_slice()) {
            return Arc::clone(set);
        }
        let set: Arc<[Box<str>]> = roles.into();
        self.role_sets.insert(Arc::clone(&set));
        set
    }

    fn actor_of(&self, row: &Row) -> Actor {
        Actor::new(&*self.actors[row.actor as usize], row.role)
    }

    fn row_nets(&self, row: &Row) -> &[IpNet] {
        let start = row.nets_start as usize;
        &self.nets[start..start + usize::from(row.nets_len)]
    }

    fn view(&self, slot: &Slot, whitelist: Vec<IpNet>, deleted: Option<u32>) -> KeyView {
        let created = &self.rows[slot.created as usize];
        KeyView {
            id: slot.info.id,
            name: slot.info.name.to_string(),
            roles: slot.info.roles.iter().map(|r| r.to_string()).collect(),
            whitelist,
            created_by: self.actor_of(created),
            created_at: system_time(created.at),
            deleted: deleted.map(|d| {
                let row = &self.rows[d as usize];
                (self.actor_of(row), system_time(row.at))
            }),
            hint: token::hint(slot.info.tail),
        }
    }

    /// The keys, oldest first; deleted ones only if asked.
    pub(crate) fn keys(&self, include_deleted: bool) -> Vec<KeyView> {
        self.slots
            .iter()
            .filter(|s| include_deleted || s.deleted.is_none())
            .map(|s| self.view(s, s.whitelist.to_vec(), s.deleted))
            .collect()
    }

    pub(crate) fn key(&self, id: KeyId) -> Option<KeyView> {
        let s = &self.slots[self.slot_index(id)? as usize];
        Some(self.view(s, s.whitelist.to_vec(), s.deleted))
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
            .map(|slot| {
                let wl = whitelists.remove(&slot).unwrap_or_default();
                self.view(&self.slots[slot as usize], wl, deleted.get(&slot).copied())
            })
            .collect()
    }

    /// The audit trail, oldest first, from record `from` on.
    pub(crate) fn audit(&self, from: u64) -> impl Iterator<Item = AuditEntry> + '_ {
        let skip = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        self.rows.iter().enumerate().skip(skip).map(|(i, row)| {
            let info = &self.slots[row.slot as usize].info;
            AuditEntry {
                seq: i as u64 + 1,
                at: system_time(row.at),
                actor: self.actor_of(row),
                kind: row.kind,
                key_id: info.id,
                key_name: info.name.to_string(),
                nets: self.row_nets(row).to_vec(),
            }
        })
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_hash.len()
    }
}
