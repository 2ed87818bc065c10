//! What the state shows: key listings now and at an earlier point of the log (time travel),
//! the audit trail's rows, and the last-used stamps.
//!
//! Read-only: it builds views from the tables and never changes them.

use std::collections::HashMap;

use ipnet::IpNet;

use super::credits::CreditsView;
use super::{AuditEntry, KeyChanges, KeyStatus, KeyView, LIVE, NEVER, Projection, Roll, Row};
use crate::clock::minute_start;
use crate::clock::system_time;
use crate::model::actor::Actor;
use crate::model::credits::MAX_CREDITS;
use crate::model::id::KeyId;
use crate::model::key::KeySource;
use crate::model::record::EventKind;
use crate::model::token;

impl Projection {
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
        let status = status_of(deleted.is_some(), cold.expires, state.disabled, now);
        let minute = key.used.last_used();
        let owner = self.owner_entry(state.owner);
        let roles = self.role_sets.get(state.roles as usize).map_or(&[][..], |s| s.0);
        KeyView {
            id: key.id,
            name: state.name,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            whitelist: state.whitelist,
            created_by: self.actor_of(created),
            created_at: system_time(created.at),
            deleted: deleted.map(|row| (self.actor_of(row), system_time(row.at))),
            hint: token::hint(state.tail),
            status,
            expires_at: (cold.expires != NEVER).then(|| system_time(cold.expires)),
            last_used_at: (last_used && minute != 0).then(|| system_time(minute_start(minute))),
            imported: cold.source != KeySource::Generated,
            acts_for: self.acts_for_name(index),
            rate_limits: self.limit_lists.get(state.limits).to_vec(),
            credits: state.credits,
            external_id: owner.external_id.as_deref().map(str::to_owned),
            meta: owner.meta.clone(),
        }
    }

    /// Key `index` as it stands now.
    pub(super) fn current_view(&self, index: u32, now: i64) -> KeyView {
        let (key, cold) = (&self.keys[index as usize], &self.cold[index as usize]);
        let state = ViewState {
            name: self.name_of(key).to_owned(),
            roles: key.roles,
            owner: cold.owner,
            whitelist: self.whitelist_of(key).to_vec(),
            tail: cold.tail,
            disabled: key.disabled,
            deleted: cold.deleted,
            limits: cold.limits,
            credits: self.credits_view(index),
        };
        self.view(index, state, now, true)
    }

    /// Whether key `index` is live at `now`: neither deleted nor expired.
    fn is_live(&self, index: usize, now: i64) -> bool {
        self.cold[index].deleted == LIVE && self.cold[index].expires > now
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
    /// are left out; credits show what the log set and added, not what was spent.
    pub(crate) fn keys_at(&self, seq: u64) -> Vec<KeyView> {
        let upto = usize::try_from(seq).unwrap_or(usize::MAX).min(self.rows.len());
        let now = upto.checked_sub(1).map_or(0, |i| self.rows[i].at);
        let mut states: HashMap<u32, ViewState> = HashMap::new();
        let mut order = Vec::new();
        let first_tails = self.first_tails();
        let first_fields = self.first_fields();
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
                let (key, cold) = (&self.keys[row.slot as usize], &self.cold[row.slot as usize]);
                let first = first_fields.get(&row.slot);
                states.insert(
                    row.slot,
                    ViewState {
                        name: first
                            .and_then(|f| f.name.clone())
                            .unwrap_or_else(|| self.name_of(key).to_owned()),
                        roles: first.and_then(|f| f.roles).unwrap_or(key.roles),
                        owner: first.and_then(|f| f.owner).unwrap_or(cold.owner),
                        whitelist: nets.to_vec(),
                        tail: first_tails
                            .get(&row.slot)
                            .copied()
                            .unwrap_or(self.cold[row.slot as usize].tail),
                        disabled: false,
                        deleted: LIVE,
                        limits: row.limits,
                        credits: None,
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
                EventKind::LimitsChanged => state.limits = row.limits,
                EventKind::CreditsSet => {
                    state.credits = self.credit_log.get(row.nets).map(|set| CreditsView {
                        remaining: set.remaining,
                        refill: set.refill,
                        next_refill_at: None,
                    });
                }
                EventKind::CreditsAdded => {
                    if let (Some(held), Some(added)) = (&mut state.credits, self.credit_log.get(row.nets)) {
                        held.remaining = held.remaining.saturating_add(added.remaining).min(MAX_CREDITS);
                    }
                }
                EventKind::Rolled => {
                    if let Some(roll) = self.row_roll(row) {
                        state.tail = roll.after;
                    }
                }
                EventKind::Updated => {
                    if let Some(change) = self.change(row.nets) {
                        if let Some((_, name)) = &change.name {
                            state.name.clone_from(name);
                        }
                        if let Some((_, roles)) = change.roles {
                            state.roles = roles;
                        }
                        if let Some((_, owner)) = change.owner {
                            state.owner = owner;
                        }
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

    /// What each updated key had when it was created: what the first update of each field
    /// replaced. (A field never updated still has the value it was created with.)
    fn first_fields(&self) -> HashMap<u32, FirstFields> {
        let mut first: HashMap<u32, FirstFields> = HashMap::new();
        for row in self.rows.iter().filter(|r| r.kind == EventKind::Updated) {
            let Some(change) = self.change(row.nets) else {
                continue;
            };
            let f = first.entry(row.slot).or_default();
            if f.name.is_none() {
                f.name = change.name.as_ref().map(|(before, _)| before.clone());
            }
            if f.roles.is_none() {
                f.roles = change.roles.map(|(before, _)| before);
            }
            if f.owner.is_none() {
                f.owner = change.owner.map(|(before, _)| before);
            }
        }
        first
    }

    /// What an `updated` row changed, with the new values.
    fn row_changes(&self, row: &Row) -> Option<KeyChanges> {
        let change = self.change(row.nets).filter(|_| row.kind == EventKind::Updated)?;
        let owner = change
            .owner
            .map(|(before, after)| (self.owner_entry(before), self.owner_entry(after)));
        Some(KeyChanges {
            name: change.name.as_ref().map(|(_, after)| after.clone()),
            roles: change.roles.map(|(_, after)| {
                let set = self.role_sets.get(after as usize).map_or(&[][..], |s| s.0);
                set.iter().map(|r| r.to_string()).collect()
            }),
            external_id: owner
                .filter(|(b, a)| b.external_id != a.external_id)
                .map(|(_, a)| a.external_id.as_deref().map(str::to_owned)),
            meta: owner
                .filter(|(b, a)| b.meta != a.meta)
                .map(|(_, a)| a.meta.clone()),
        })
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
                rate_limits: self.limit_lists.get(row.limits).to_vec(),
                credits: (row.kind == EventKind::CreditsSet)
                    .then(|| self.credit_log.get(row.nets))
                    .flatten(),
                credits_added: (row.kind == EventKind::CreditsAdded)
                    .then(|| self.credit_log.get(row.nets).map(|c| c.remaining))
                    .flatten(),
                changes: self.row_changes(row),
            }
        })
    }

    /// Restores last-used minutes saved by [`Projection::use_to_save`]; unknown ids are
    /// skipped, and a later stamp already here is kept.
    pub(crate) fn restore_last_used(&self, saved: &[(KeyId, u32)]) {
        for &(id, minute) in saved {
            if let Some(index) = self.key_index(id) {
                self.keys[index as usize].used.restore_last_used(minute);
            }
        }
    }
}

/// The values a key's fields had when it was created, for the fields an update changed.
#[derive(Default)]
struct FirstFields {
    name: Option<String>,
    roles: Option<u32>,
    owner: Option<u32>,
}

/// The status of a key deleted or not, expiring at `expires` (or [`NEVER`]), disabled
/// or not, at time `now`: deletion first, then expiry, then the disabled flag.
pub(super) fn status_of(deleted: bool, expires: i64, disabled: bool, now: i64) -> KeyStatus {
    if deleted {
        KeyStatus::Deleted
    } else if expires != NEVER && now >= expires {
        KeyStatus::Expired
    } else if disabled {
        KeyStatus::Disabled
    } else {
        KeyStatus::Active
    }
}

/// A key's changing parts, as listed at some point of the log.
struct ViewState {
    name: String,
    /// Index of its role set.
    roles: u32,
    /// Index in the owners table.
    owner: u32,
    whitelist: Vec<IpNet>,
    tail: [u8; 4],
    disabled: bool,
    /// Index in `rows` of the deletion, or [`LIVE`].
    deleted: u32,
    /// Index of its rate limits in the interned lists.
    limits: u32,
    /// Its credits: as they stand now, or as the log set them at some point (the count
    /// spent is not in the log).
    credits: Option<CreditsView>,
}
