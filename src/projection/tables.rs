//! The projection's tables and indexes: looking keys up by hash and id, and the helpers
//! that add to them (keys, names, actors, role sets, graces) while a record is applied or a
//! snapshot restored.
//!
//! Layout only: it decides no rule and answers no listing.

use std::hash::BuildHasher;
use std::sync::Arc;

use ipnet::IpNet;

use super::{
    Grace, HashPrefix, KeyCold, KeyRec, LIVE, LONG_NAME, NEVER, Name, Projection, REC_INLINE_NAME, too_long,
};
use crate::access::RoleSet;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::key::KeySource;

impl Projection {
    #[inline]
    pub(super) fn live_key_by_prefix(&self, prefix: HashPrefix) -> Option<&KeyRec> {
        let keys = &self.keys;
        self.by_hash
            .find(self.seed.key_hash(prefix), |i| keys[i as usize].hash == prefix)
            .map(|i| &keys[i as usize])
    }

    #[inline]
    pub(super) fn whitelist_of(&self, key: &KeyRec) -> &[IpNet] {
        self.whitelists.get(key.whitelist)
    }

    #[inline]
    pub(super) fn name_of<'a>(&'a self, key: &'a KeyRec) -> &'a str {
        let b = &key.name.bytes;
        if key.name.len != LONG_NAME {
            std::str::from_utf8(b.get(..usize::from(key.name.len)).unwrap_or_default()).unwrap_or_default()
        } else {
            let start = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let len = usize::from(u16::from_le_bytes([b[4], b[5]]));
            self.names.get(start..start + len).unwrap_or_default()
        }
    }

    #[inline]
    pub(super) fn roles_of(&self, key: &KeyRec) -> RoleSet {
        self.role_sets
            .get(key.roles as usize)
            .copied()
            .unwrap_or(RoleSet(&[]))
    }

    pub(super) fn key_index(&self, id: KeyId) -> Option<u32> {
        let keys = &self.keys;
        self.by_id
            .find(self.seed.key_id(id), |i| keys[i as usize].id == id)
    }

    pub(super) fn contains_prefix(&self, prefix: HashPrefix) -> bool {
        self.live_key_by_prefix(prefix).is_some()
            || self
                .graces
                .find(self.seed.key_hash(prefix), |g| g.hash == prefix)
                .is_some()
    }

    /// Deletes key `index` by row `row_index`: it stops verifying at once, its grace
    /// with it.
    pub(super) fn delete_index(&mut self, index: u32, row_index: u32) {
        self.unindex_hash(index);
        self.end_grace(index);
        self.drop_limiter(index);
        self.drop_credits(index);
        self.cold[index as usize].deleted = row_index;
    }

    /// Notes that a key came from `source`: tokens outside keyledger's format are looked
    /// up once any key was adopted. (Any adopted secret, whatever its format: a roll
    /// replaces its tail, and its previous secret may still be in a grace period.)
    pub(super) fn note_source(&mut self, source: KeySource) {
        match source {
            KeySource::Generated => {}
            KeySource::Imported => self.adopted_foreign = true,
            KeySource::ImportedSha256 => self.adopted_sha256 = true,
        }
    }

    /// The index of existing key `id`, its records preserved for a snapshot being copied.
    pub(super) fn index_for(&mut self, id: KeyId) -> Result<u32, Error> {
        let index = self.key_index(id).ok_or(Error::KeyNotFound(id))?;
        if self.freeze.as_ref().is_some_and(|f| index < f.keys) {
            let i = index as usize;
            let pre_image = (self.keys[i].clone(), self.cold[i], self.credits_data(index));
            if let Some(f) = &mut self.freeze {
                f.before.entry(index).or_insert(pre_image);
            }
        }
        Ok(index)
    }

    pub(super) fn index_hash(&mut self, index: u32) {
        let h = self.seed.key_hash(self.keys[index as usize].hash);
        self.by_hash.insert(h, index);
    }

    pub(super) fn unindex_hash(&mut self, index: u32) {
        let hash = self.keys[index as usize].hash;
        self.by_hash.remove(self.seed.key_hash(hash), index);
    }

    pub(super) fn begin_grace(&mut self, hash: HashPrefix, key: u32, until: i64) {
        let seed = self.seed;
        self.graces
            .insert_unique(seed.key_hash(hash), Grace { hash, key, until }, |g| {
                seed.key_hash(g.hash)
            });
        self.grace_of.insert(key, hash);
        self.graces_end_from = self.graces_end_from.min(until);
    }

    /// Ends key `index`'s grace period, if it has one.
    pub(super) fn end_grace(&mut self, index: u32) {
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
    pub(super) fn prune_graces(&mut self, at: i64) {
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
    pub(super) fn push_key(&mut self, key: KeyRec, cold: KeyCold, seq: u64) -> Result<u32, Error> {
        let index = u32::try_from(self.keys.len()).map_err(|_| too_long(seq))?;
        let id = key.id;
        self.keys.push(key);
        self.cold.push(cold);
        if cold.deleted == LIVE {
            self.index_hash(index);
        }
        self.by_id.insert(self.seed.key_id(id), index);
        Ok(index)
    }

    /// Makes room for `keys` more keys (`live` of them live) in the records and indexes.
    pub(super) fn reserve_keys(&mut self, keys: usize, live: usize) {
        self.keys.reserve(keys);
        self.cold.reserve(keys);
        self.by_id.reserve(keys);
        self.by_hash.reserve(live);
    }

    /// [`push_key`](Self::push_key), unless a key of the same id, or a live key of the
    /// same hash, is there already (`None`: nothing changed); each index is probed once.
    pub(super) fn push_key_unique(
        &mut self,
        key: KeyRec,
        cold: KeyCold,
        seq: u64,
    ) -> Result<Option<u32>, Error> {
        let index = u32::try_from(self.keys.len()).map_err(|_| too_long(seq))?;
        let (id, hash) = (key.id, key.hash);
        let (by_id, by_hash) = (self.seed.key_id(id), self.seed.key_hash(hash));
        let keys = &self.keys;
        if !self
            .by_id
            .insert_unique(by_id, index, |i| keys[i as usize].id == id)
        {
            return Ok(None);
        }
        if cold.deleted == LIVE
            && !self
                .by_hash
                .insert_unique(by_hash, index, |i| keys[i as usize].hash == hash)
        {
            self.by_id.remove(by_id, index);
            return Ok(None);
        }
        self.keys.push(key);
        self.cold.push(cold);
        Ok(Some(index))
    }

    pub(super) fn store_name(&mut self, name: &str, seq: u64) -> Result<Name, Error> {
        let mut bytes = [0u8; REC_INLINE_NAME];
        if name.len() <= REC_INLINE_NAME {
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            // At most REC_INLINE_NAME: fits.
            let len = name.len() as u8;
            return Ok(Name { len, bytes });
        }
        let len = u16::try_from(name.len()).map_err(|_| too_long(seq))?;
        let offset = u32::try_from(self.names.len()).map_err(|_| too_long(seq))?;
        bytes[..4].copy_from_slice(&offset.to_le_bytes());
        bytes[4..6].copy_from_slice(&len.to_le_bytes());
        self.names.push_str(name);
        Ok(Name {
            len: LONG_NAME,
            bytes,
        })
    }

    pub(super) fn intern_actor(&mut self, id: &str, seq: u64) -> Result<u32, Error> {
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
    pub(super) fn intern_roles(&mut self, roles: &[String], seq: u64) -> Result<u32, Error> {
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
}
