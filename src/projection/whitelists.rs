//! The whitelist sets: each distinct whitelist stored once, reference-counted, freed with
//! its last user, with the pre-images a snapshot in progress needs.
//!
//! Knows nothing of keys or records; the projection acquires and releases sets.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use ipnet::IpNet;

use super::too_long;
use crate::model::error::Error;

/// Whitelists stored once however many keys share them, with reference counts so that a
/// whitelist nobody uses any more is freed. Set 0 is the empty whitelist. A freed slot is
/// reused lowest first, so the layout is a function of the records alone: a snapshot of
/// a store opened from a snapshot is byte-identical to one of a full replay.
pub(super) struct WhitelistSets {
    pub(super) sets: Vec<Box<[IpNet]>>,
    refs: Vec<u32>,
    free: BTreeSet<u32>,
    index: HashTable<u32>,
    hasher: RandomState,
    /// While a snapshot is being copied: the sets' count when it began, and the contents
    /// of those that changed since (see [`Freeze`](super::Freeze)).
    pub(super) frozen: Option<FrozenSets>,
}

/// The whitelist sets' count when a snapshot began, and the contents of those changed since.
pub(super) type FrozenSets = (u32, HashMap<u32, Box<[IpNet]>>);

impl WhitelistSets {
    pub(super) fn new() -> Self {
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
    pub(super) fn frozen(&self, i: u32) -> &[IpNet] {
        match &self.frozen {
            Some((_, before)) => before.get(&i).map_or_else(|| self.get(i), |s| &**s),
            None => self.get(i),
        }
    }

    #[inline]
    pub(super) fn get(&self, set: u32) -> &[IpNet] {
        self.sets.get(set as usize).map_or(&[], |s| s)
    }

    /// The set equal to `nets`, with one more reference.
    pub(super) fn acquire(&mut self, nets: &[IpNet], seq: u64) -> Result<u32, Error> {
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
    pub(super) fn release(&mut self, set: u32) {
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
    pub(super) fn restore(sets: Vec<Vec<IpNet>>, refs: Vec<u32>) -> Result<Self, &'static str> {
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
