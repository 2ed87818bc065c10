//! Turning one admitted record into state: [`Projection::apply`], the only entry point that
//! changes the projection while the log grows.
//!
//! It trusts the ledger's checks (the record already passed them) and never does I/O; the
//! tables and indexes it writes through live in `tables`.

use super::{
    HashPrefix, KeyCold, KeyRec, LIVE, NEVER, NO_VIA, Projection, Roll, Row, expires_second, too_long,
};
use crate::chain::Head;
use crate::model::credits::Credits;
use crate::model::error::Error;
use crate::model::record::Event;
use crate::model::record::Record;

impl Projection {
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
            limits: 0,
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
                rate_limits,
            } => {
                // One reference for the key, one for its creation row.
                let set = self.whitelists.acquire(whitelist, seq)?;
                self.whitelists.acquire(whitelist, seq)?;
                let key = KeyRec {
                    hash: HashPrefix::of(hash),
                    id: *id,
                    used: Default::default(),
                    expires_s: expires_second(expires_at.unwrap_or(NEVER)),
                    roles: self.intern_roles(roles, seq)?,
                    whitelist: set,
                    name: self.store_name(name, seq)?,
                    disabled: false,
                    meter: 0,
                };
                let cold = KeyCold {
                    expires: expires_at.unwrap_or(NEVER),
                    created: row_index,
                    deleted: LIVE,
                    tail: *tail,
                    source: *source,
                    limits: 0,
                    owner: 0,
                };
                self.note_source(*source);
                row.slot = self.push_key(key, cold, seq)?;
                row.nets = set;
                row.limits = self.limit_lists.intern(rate_limits, seq)?;
                if row.limits != 0 {
                    self.set_limits(row.slot, row.limits, seq)?;
                }
                let admin = crate::model::rules::grants_admin(roles);
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
            Event::LimitsSet { id, rate_limits } => {
                let index = self.index_for(*id)?;
                row.limits = self.limit_lists.intern(rate_limits, seq)?;
                self.set_limits(index, row.limits, seq)?;
                row.slot = index;
            }
            Event::CreditsSet { id, credits } => {
                let index = self.index_for(*id)?;
                self.set_credits(index, credits.as_ref(), record.at, seq)?;
                row.nets = self.credit_log.push(credits.as_ref(), seq)?;
                row.slot = index;
            }
            Event::CreditsAdded { id, amount } => {
                let index = self.index_for(*id)?;
                self.add_credits(index, *amount);
                row.nets = self.credit_log.push(Some(&Credits::added(*amount)), seq)?;
                row.slot = index;
            }
            Event::Updated {
                id,
                name,
                roles,
                external_id,
                meta,
            } => {
                let index = self.index_for(*id)?;
                row.nets =
                    self.update_key(index, name.as_deref(), roles.as_deref(), external_id, meta, seq)?;
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
}
