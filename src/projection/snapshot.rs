//! The projection's side of snapshots: its flat copy ([`SnapshotData`]), the freeze that
//! lets a copy be taken in parts while the writer goes on (copy-on-write of key records),
//! and rebuilding the state from a copy.
//!
//! It never encodes bytes (the snapshot format belongs to its owner) and never does I/O.

use std::collections::HashMap;

use super::credits::CreditsData;
use super::{
    Freeze, GraceData, HashPrefix, KeyCold, KeyRec, LIVE, NEVER, NO_VIA, Projection, SlotData, SnapshotData,
    WhitelistSets, expires_second,
};
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::problem::ProblemKind;
use crate::model::record::EventKind;

impl Projection {
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
                .map(|i| {
                    let credits = self.credits_data(i as u32);
                    self.slot_data(i as u32, &self.keys[i], &self.cold[i], credits)
                })
                .collect(),
            rows: self.rows.clone(),
            nets: self.nets.clone(),
            whitelist_sets: self.whitelists.sets.iter().map(|s| s.to_vec()).collect(),
            rolls: self.rolls.clone(),
            graces: self.grace_data(),
            rolled_out: self.rolled_out_data(0..self.rolled_out_len()),
            limit_lists: self.limit_lists.data(0..self.limit_lists.len()),
            credit_log: self.credit_log.data(0..self.credit_log.len()),
            owners: self.owners_data(0..self.owners.len()),
            changes: self.changes_data(0..self.changes.len()),
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
            limit_lists: self.limit_lists.len(),
            credit_log: self.credit_log.len(),
            owners: self.owners.len(),
            changes: self.changes.len(),
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
        } else if out.limit_lists.len() < f.limit_lists {
            let part = take(out.limit_lists.len(), f.limit_lists);
            out.limit_lists.extend(self.limit_lists.data(part));
        } else if out.credit_log.len() < f.credit_log {
            let part = take(out.credit_log.len(), f.credit_log);
            out.credit_log.extend(self.credit_log.data(part));
        } else if out.owners.len() < f.owners {
            let part = take(out.owners.len(), f.owners);
            out.owners.extend(self.owners_data(part));
        } else if out.changes.len() < f.changes {
            let part = take(out.changes.len(), f.changes);
            out.changes.extend(self.changes_data(part));
        } else if out.whitelist_sets.len() < f.sets as usize {
            let part = take(out.whitelist_sets.len(), f.sets as usize);
            out.whitelist_sets
                .extend(part.map(|i| self.whitelists.frozen(i as u32).to_vec()));
        } else if out.slots.len() < f.keys as usize {
            let part = take(out.slots.len(), f.keys as usize);
            out.slots.extend(part.map(|i| match f.before.get(&(i as u32)) {
                Some((k, c, credits)) => self.slot_data(i as u32, k, c, *credits),
                None => {
                    let credits = self.credits_data(i as u32);
                    self.slot_data(i as u32, &self.keys[i], &self.cold[i], credits)
                }
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

    fn slot_data(&self, index: u32, k: &KeyRec, c: &KeyCold, credits: Option<CreditsData>) -> SlotData {
        SlotData {
            hash: k.hash.0.to_le_bytes(),
            id: k.id.0,
            name: self.name_of(k).to_owned(),
            roles: k.roles,
            tail: c.tail,
            whitelist: k.whitelist,
            created: c.created,
            deleted: (c.deleted != LIVE).then_some(c.deleted),
            expires_at: (c.expires != NEVER).then_some(c.expires),
            disabled: k.disabled,
            source: c.source,
            acts_for: self.named_person(index),
            limits: c.limits,
            credits,
            owner: c.owner,
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
        if data.limit_lists.first().is_some_and(|l| !l.is_empty()) {
            return Err(bad("limit list 0 is not the empty one"));
        }
        for list in data.limit_lists.iter().skip(1) {
            crate::model::limit::validate_stored_limits(list).map_err(|e| bad(&e.to_string()))?;
            let before = proj.limit_lists.len();
            if list.is_empty() || proj.limit_lists.intern(list, seq)? as usize != before {
                return Err(bad("duplicate or empty limit list"));
            }
        }
        let lists_len = proj.limit_lists.len();
        let owners_len = data.owners.len();
        if data.owners.first() != Some(&super::Owner::default())
            || data.owners.iter().skip(1).any(|o| *o == super::Owner::default())
        {
            return Err(bad("owners entry 0 is not the empty one, or another is"));
        }
        for owner in &data.owners {
            if let Some(id) = &owner.external_id {
                crate::model::rules::validate_external_id(id, crate::model::rules::Origin::Stored)
                    .map_err(|e| bad(&e.to_string()))?;
            }
        }
        let roles_len = proj.role_sets.len();
        let change_ok = |c: &super::Change| {
            c.roles
                .is_none_or(|(b, a)| (b as usize) < roles_len && (a as usize) < roles_len)
                && c.owner
                    .is_none_or(|(b, a)| (b as usize) < owners_len && (a as usize) < owners_len)
        };
        if !data.changes.iter().all(change_ok) {
            return Err(bad("update out of range"));
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
                EventKind::Updated => (row.nets as usize) < data.changes.len(),
                EventKind::CreditsSet => (row.nets as usize) < data.credit_log.len(),
                EventKind::CreditsAdded => data
                    .credit_log
                    .get(row.nets as usize)
                    .is_some_and(Option::is_some),
                EventKind::ActorRevoked => (row.nets as usize) < proj.actors.len() && row.slot <= 1,
                _ => true,
            };
            let limits_ok = match row.kind {
                EventKind::Created | EventKind::Imported | EventKind::LimitsChanged => {
                    (row.limits as usize) < lists_len
                }
                _ => row.limits == 0,
            };
            if !nets_ok
                || !limits_ok
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
        proj.reserve_keys(
            keys_len,
            data.slots.iter().filter(|s| s.deleted.is_none()).count(),
        );
        for s in &data.slots {
            if s.roles as usize >= proj.role_sets.len()
                || s.limits as usize >= lists_len
                || s.owner as usize >= owners_len
                || s.created as usize >= rows_len
                || s.deleted.is_some_and(|d| d as usize >= rows_len)
            {
                return Err(bad("key record out of range"));
            }
            let (hash, id) = (HashPrefix(u128::from_le_bytes(s.hash)), KeyId(s.id));
            let key = KeyRec {
                hash,
                id,
                used: Default::default(),
                expires_s: expires_second(s.expires_at.unwrap_or(NEVER)),
                roles: s.roles,
                whitelist: s.whitelist,
                name: proj.store_name(&s.name, seq)?,
                disabled: s.disabled,
                meter: 0,
            };
            let cold = KeyCold {
                expires: s.expires_at.unwrap_or(NEVER),
                created: s.created,
                deleted: s.deleted.unwrap_or(LIVE),
                tail: s.tail,
                source: s.source,
                limits: 0,
                owner: s.owner,
            };
            proj.note_source(s.source);
            let index = proj
                .push_key_unique(key, cold, seq)?
                .ok_or_else(|| bad("duplicate key"))?;
            proj.set_limits(index, s.limits, seq)?;
            if let Some(credits) = &s.credits {
                if s.deleted.is_some() || credits.set_seq > seq || credits.anchor > data.head.at {
                    return Err(bad("credits of a deleted key, or set after the snapshot"));
                }
                credits.set.check().map_err(|e| bad(&e.to_string()))?;
                crate::model::credits::check_amount("credits", credits.topped)
                    .map_err(|e| bad(&e.to_string()))?;
                proj.restore_credits(index, credits)?;
            }
        }
        if data.credit_log.first().is_some_and(Option::is_some) {
            return Err(bad("credits entry 0 is not the empty one"));
        }
        for value in data.credit_log.iter().skip(1) {
            let before = proj.credit_log.len();
            let valid = value.is_some_and(|c| c.check().is_ok());
            if !valid || proj.credit_log.push(value.as_ref(), seq)? as usize != before {
                return Err(bad("duplicate, empty or invalid credits entry"));
            }
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
        proj.owners = data.owners;
        proj.changes = data.changes;
        proj.head = data.head;
        Ok(proj)
    }
}
