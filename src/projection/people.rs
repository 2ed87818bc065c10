//! Who each admin key acts as, a person's revocation, and every secret the log ever held.
//!
//! Part of the projection: changed only while a record is applied, rebuilt by replay and
//! carried in snapshots. It never decides a rule (the access rules and the ledger do); it
//! answers "whose is this admin key", "which keys does revoking this person stop" and
//! "was this secret ever held".

use std::collections::HashMap;

use hashbrown::HashTable;

use super::{HashPrefix, LIVE, Projection, Row, SlotData, too_long};
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::token::KeyHash;

/// Who the admin keys act as.
#[derive(Default)]
pub(super) struct People {
    /// Admin keys made for a person other than their creator: key index to actor index.
    /// Every other admin key acts as its creator.
    acts_for: HashMap<u32, u32>,
    /// Every key that holds `admin` or `super-admin`, by index, ascending (a key's roles
    /// never change).
    admin_keys: Vec<u32>,
}

/// [`Retired`] entries at or above this refer to `rolled_out`; below it, to a deleted key
/// (whose key record keeps its hash).
const ROLLED: u32 = 1 << 31;

/// Every secret the log held that no live key holds now: deleted keys' (by key index) and
/// rolled-out ones (by their 128-bit prefix). Only imports ask, so that no secret is ever
/// adopted twice.
#[derive(Default)]
pub(super) struct Retired {
    table: HashTable<u32>,
    rolled_out: Vec<HashPrefix>,
}

impl Projection {
    /// The actor index of the person admin key `index` acts as: the one named when it was
    /// made, or its creator.
    fn person_of(&self, index: u32) -> u32 {
        match self.people.acts_for.get(&index) {
            Some(&person) => person,
            None => self.rows[self.cold[index as usize].created as usize].actor,
        }
    }

    /// The person admin key `index` acts as; `None` for a key without an admin role.
    pub(super) fn acts_for_name(&self, index: u32) -> Option<String> {
        self.people
            .admin_keys
            .binary_search(&index)
            .ok()
            .map(|_| self.actors[self.person_of(index) as usize].to_string())
    }

    /// Notes a new key: an admin key, and the person it was made for if any.
    pub(super) fn note_person(
        &mut self,
        index: u32,
        admin: bool,
        acts_for: Option<&str>,
        seq: u64,
    ) -> Result<(), Error> {
        if admin {
            self.people.admin_keys.push(index);
        }
        if let Some(person) = acts_for {
            let person = self.intern_actor(person, seq)?;
            self.people.acts_for.insert(index, person);
        }
        Ok(())
    }

    /// The live keys revoking `person` deletes, in key order: every admin key acting as
    /// them, and with `with_keys` every key they created.
    fn revoked_indices(&self, person: &str, with_keys: bool) -> Vec<u32> {
        let Some(&p) = self.actor_index.get(person) else {
            return Vec::new();
        };
        let live = |i: u32| self.cold[i as usize].deleted == LIVE;
        let mut out: Vec<u32> = self
            .people
            .admin_keys
            .iter()
            .copied()
            .filter(|&i| live(i) && self.person_of(i) == p)
            .collect();
        if with_keys {
            // Walks every key: a revocation is rare, and a key's creator is not indexed.
            out.extend(
                (0..self.cold.len() as u32)
                    .filter(|&i| live(i) && self.rows[self.cold[i as usize].created as usize].actor == p),
            );
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// The ids of the live keys revoking `person` would delete.
    pub(crate) fn revoked_by(&self, person: &str, with_keys: bool) -> impl Iterator<Item = KeyId> + '_ {
        self.revoked_indices(person, with_keys)
            .into_iter()
            .map(|i| self.keys[i as usize].id)
    }

    /// The keys record `seq` deleted (a delete's one, a revocation's many), in key order.
    pub(crate) fn deleted_by(&self, seq: u64) -> Vec<KeyId> {
        let Some(row) = seq.checked_sub(1).and_then(|r| u32::try_from(r).ok()) else {
            return Vec::new();
        };
        self.cold
            .iter()
            .zip(&self.keys)
            .filter(|(c, _)| c.deleted == row)
            .map(|(_, k)| k.id)
            .collect()
    }

    /// Applies a person's revocation recorded as row `row_index`: each key it stops is
    /// deleted by that row.
    pub(super) fn revoke_person(
        &mut self,
        person: &str,
        with_keys: bool,
        row: &mut Row,
        row_index: u32,
        seq: u64,
    ) -> Result<(), Error> {
        for index in self.revoked_indices(person, with_keys) {
            let index = self.index_for(self.keys[index as usize].id)?;
            self.delete_index(index, row_index);
            // Its secret was held: never adopted again, as for a delete.
            self.retire_key(index, seq)?;
        }
        row.slot = u32::from(with_keys);
        row.nets = self.intern_actor(person, seq)?;
        Ok(())
    }

    /// Whether a live key, a secret in its grace period, a deleted key or a rolled-out
    /// secret has this hash: what an import may not adopt.
    pub(crate) fn ever_held(&self, hash: &KeyHash) -> bool {
        let prefix = HashPrefix::of(hash);
        self.contains_prefix(prefix) || self.retired_find(prefix)
    }

    /// Whether a secret with this hash was held and no longer is (a deleted key's, or
    /// rolled out).
    pub(crate) fn was_retired(&self, hash: &KeyHash) -> bool {
        self.retired_find(HashPrefix::of(hash))
    }

    fn retired_find(&self, prefix: HashPrefix) -> bool {
        let (keys, rolled) = (&self.keys, &self.retired.rolled_out);
        self.retired
            .table
            .find(self.seed.key_hash(prefix), |&v| {
                retired_prefix(keys, rolled, v) == Some(prefix)
            })
            .is_some()
    }

    /// Remembers the hash of key `index`, just deleted.
    pub(super) fn retire_key(&mut self, index: u32, seq: u64) -> Result<(), Error> {
        if index >= ROLLED {
            return Err(too_long(seq));
        }
        self.retire(index);
        Ok(())
    }

    /// Remembers a secret just rolled out.
    pub(super) fn retire_rolled(&mut self, prefix: HashPrefix, seq: u64) -> Result<(), Error> {
        let n = u32::try_from(self.retired.rolled_out.len())
            .ok()
            .filter(|&n| n < ROLLED)
            .ok_or_else(|| too_long(seq))?;
        self.retired.rolled_out.push(prefix);
        self.retire(ROLLED | n);
        Ok(())
    }

    fn retire(&mut self, value: u32) {
        let (seed, keys, rolled) = (self.seed, &self.keys, &self.retired.rolled_out);
        let Some(prefix) = retired_prefix(keys, rolled, value) else {
            return;
        };
        self.retired
            .table
            .insert_unique(seed.key_hash(prefix), value, |&v| {
                retired_prefix(keys, rolled, v).map_or(0, |p| seed.key_hash(p))
            });
    }

    /// The rolled-out secrets, for a snapshot (the deleted keys' are in their records).
    pub(super) fn rolled_out_data(&self, part: std::ops::Range<usize>) -> Vec<[u8; 16]> {
        self.retired.rolled_out[part]
            .iter()
            .map(|p| p.0.to_le_bytes())
            .collect()
    }

    pub(super) fn rolled_out_len(&self) -> usize {
        self.retired.rolled_out.len()
    }

    /// The person an admin key of a snapshot acts as, if named (an actor index).
    pub(super) fn named_person(&self, index: u32) -> Option<u32> {
        self.people.acts_for.get(&index).copied()
    }

    /// Restores who admin keys act as and the retired secrets from a snapshot's data,
    /// once its keys are in place.
    pub(super) fn restore_people(
        &mut self,
        slots: &[SlotData],
        rolled_out: &[[u8; 16]],
    ) -> Result<(), &'static str> {
        for (i, s) in slots.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| "too many keys")?;
            let roles = self.role_sets.get(s.roles as usize).map_or(&[][..], |r| r.0);
            if roles.contains(&crate::model::id::ADMIN_ROLE)
                || roles.contains(&crate::model::id::SUPER_ADMIN_ROLE)
            {
                self.people.admin_keys.push(i);
            } else if s.acts_for.is_some() {
                return Err("a key without an admin role acts for a person");
            }
            if let Some(person) = s.acts_for {
                if person as usize >= self.actors.len() {
                    return Err("a person out of range");
                }
                self.people.acts_for.insert(i, person);
            }
            if s.deleted.is_some() {
                self.retire_key(i, 0).map_err(|_| "too many keys")?;
            }
        }
        for hash in rolled_out {
            self.retire_rolled(HashPrefix(u128::from_le_bytes(*hash)), 0)
                .map_err(|_| "too many rolled-out secrets")?;
        }
        Ok(())
    }
}

/// The hash prefix a [`Retired`] entry stands for.
fn retired_prefix(keys: &[super::KeyRec], rolled: &[HashPrefix], value: u32) -> Option<HashPrefix> {
    match value.checked_sub(ROLLED) {
        Some(i) => rolled.get(i as usize).copied(),
        None => keys.get(value as usize).map(|k| k.hash),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use crate::chain::Chain;
    use crate::ledger::Command;
    use crate::ledger::Ledger;
    use crate::ledger::Op;
    use crate::model::actor::Actor;
    use crate::model::id::KeyId;
    use crate::model::key::NewKey;
    use crate::model::token::KeyHash;

    /// The memory a retired secret costs, as design.md's table states it: a deleted key's
    /// is a table entry (its key record keeps the hash), a rolled-out one's also its
    /// 16-byte prefix. Counted from the structures' own allocations.
    #[test]
    fn a_retired_secret_costs_a_table_entry_and_a_rolled_out_one_its_prefix_too() {
        const N: u32 = 50_000;
        let ledger = Ledger::new(Chain::new(None));
        let mut ids = rand::rngs::StdRng::seed_from_u64(1);
        let root = Actor::super_admin("root");
        let hash = |i: u32, round: u8| {
            let mut h = [round; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            KeyHash(h)
        };
        let mut run = |ops: Vec<Op>| {
            let commands: Vec<Command> = ops
                .into_iter()
                .map(|op| Command {
                    actor: root.clone(),
                    via: None,
                    op,
                })
                .collect();
            let refs: Vec<&Command> = commands.iter().collect();
            let prepared = ledger.prepare(&refs, &mut ids);
            ledger.accept(&prepared.entries).unwrap();
            prepared
                .outcomes
                .into_iter()
                .map(|o| o.unwrap().0)
                .collect::<Vec<KeyId>>()
        };
        let new = NewKey::new("k").role("bot").validated().unwrap();
        let keys = run((0..2 * N)
            .map(|i| Op::Create {
                new: new.clone(),
                hash: hash(i, 1),
                tail: *b"abcd",
            })
            .collect());
        let (deleted, rolled) = keys.split_at(N as usize);
        let size = |p: &super::Projection| {
            (
                p.retired.table.allocation_size(),
                p.retired.rolled_out.capacity() * 16,
            )
        };
        let before = size(&ledger.read());
        run(deleted.iter().map(|&id| Op::Delete { id }).collect());
        let after_delete = size(&ledger.read());
        run(rolled
            .iter()
            .enumerate()
            .map(|(i, &id)| Op::Roll {
                id,
                hash: hash(i as u32, 2),
                tail: *b"efgh",
                grace: 0,
            })
            .collect());
        let after_roll = size(&ledger.read());
        let per = |bytes: usize| bytes as f64 / f64::from(N);
        let deleted_cost = per(after_delete.0 - before.0);
        let rolled_cost = per(after_roll.0 - after_delete.0 + after_roll.1 - after_delete.1);
        eprintln!("retired: {deleted_cost:.1} B per deleted key, {rolled_cost:.1} B per rolled-out secret");
        assert!(deleted_cost <= 12.0, "{deleted_cost}");
        assert!(rolled_cost <= 16.0 * 2.0 + 12.0, "{rolled_cost}");
        let state = ledger.read();
        assert!(
            (0..N).all(|i| state.ever_held(&hash(i, 1))),
            "every secret held is remembered"
        );
    }
}
