//! Keys' external ids and metadata, and updates: the owners table (out of the key records,
//! so a verify never reads it), the changes the audit trail and time travel show, and
//! what a host asks of a key after a verify passed.
//!
//! It changes state only through [`Projection::update_key`], called by `apply`.

use std::sync::Arc;

use super::{Change, Owner, Projection, too_long};
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::owner::Meta;

/// A key's editable fields as they stand: what an update is resolved against.
pub(crate) struct Editable {
    pub(crate) name: String,
    pub(crate) roles: Vec<String>,
    pub(crate) external_id: Option<String>,
    pub(crate) meta: Option<Meta>,
}

impl Projection {
    /// Applies an update to key `index`; returns the index of its change.
    pub(super) fn update_key(
        &mut self,
        index: u32,
        name: Option<&str>,
        roles: Option<&[String]>,
        external_id: &Option<Option<String>>,
        meta: &Option<Option<Meta>>,
        seq: u64,
    ) -> Result<u32, Error> {
        let at = u32::try_from(self.changes.len()).map_err(|_| too_long(seq))?;
        let mut change = Change {
            name: None,
            roles: None,
            owner: None,
        };
        if let Some(name) = name {
            let before = self.name_of(&self.keys[index as usize]).to_owned();
            self.keys[index as usize].name = self.store_name(name, seq)?;
            change.name = Some((before, name.to_owned()));
        }
        if let Some(roles) = roles {
            let set = self.intern_roles(roles, seq)?;
            let before = std::mem::replace(&mut self.keys[index as usize].roles, set);
            change.roles = Some((before, set));
        }
        if external_id.is_some() || meta.is_some() {
            let before = self.cold[index as usize].owner;
            let old = &self.owners[before as usize];
            let owner = Owner {
                external_id: match external_id {
                    Some(id) => id.as_deref().map(Arc::from),
                    None => old.external_id.clone(),
                },
                meta: match meta {
                    Some(meta) => meta.clone(),
                    None => old.meta.clone(),
                },
            };
            let after = if owner == Owner::default() {
                0
            } else {
                let i = u32::try_from(self.owners.len()).map_err(|_| too_long(seq))?;
                self.owners.push(owner);
                i
            };
            self.cold[index as usize].owner = after;
            change.owner = Some((before, after));
        }
        self.changes.push(change);
        Ok(at)
    }

    /// Entry `i` of the owners table (entry 0, neither, when out of range).
    pub(super) fn owner_entry(&self, i: u32) -> &Owner {
        self.owners.get(i as usize).unwrap_or(&self.owners[0])
    }

    /// The external id and metadata of key `id`, if it exists: one lookup apart from the
    /// verify path, for a host that has just verified the key.
    pub(crate) fn owner_of(&self, id: KeyId) -> Option<Owner> {
        let index = self.key_index(id)?;
        Some(self.owner_entry(self.cold[index as usize].owner).clone())
    }

    /// Key `id`'s name, roles, external id and metadata, if it exists.
    pub(crate) fn editable(&self, id: KeyId) -> Option<Editable> {
        let index = self.key_index(id)? as usize;
        let key = &self.keys[index];
        let owner = self.owner_entry(self.cold[index].owner);
        Some(Editable {
            name: self.name_of(key).to_owned(),
            roles: self.roles_of(key).0.iter().map(|r| (*r).to_owned()).collect(),
            external_id: owner.external_id.as_deref().map(str::to_owned),
            meta: owner.meta.clone(),
        })
    }

    /// The change an audit row of `updated` names.
    pub(super) fn change(&self, i: u32) -> Option<&Change> {
        self.changes.get(i as usize)
    }

    /// The owners table's entries in `range`, for a snapshot.
    pub(super) fn owners_data(&self, range: std::ops::Range<usize>) -> Vec<Owner> {
        self.owners[range].to_vec()
    }

    /// The changes in `range`, for a snapshot.
    pub(super) fn changes_data(&self, range: std::ops::Range<usize>) -> Vec<Change> {
        self.changes[range].to_vec()
    }
}
