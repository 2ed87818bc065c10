//! Revoking a person: the store's command for it and what it answers.
//!
//! A command like any other (the ledger decides who may and what it stops); this only
//! submits it and gathers the answer, as `delete_key` does.

use super::KeyStore;
use crate::ledger::Op;
use crate::model::actor::Actor;
use crate::model::error::Error;
use crate::model::id::KeyId;

/// What [`KeyStore::revoke_actor`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevokedActor {
    /// The revocation's sequence number: one record.
    pub seq: u64,
    /// The keys it deleted, in the order they were created: every admin key acting as
    /// the person, and with `with_keys` every key they created.
    pub keys: Vec<KeyId>,
    /// In a fleet: the live hosts that had not applied it when the wait ended (as for
    /// [`KeyStore::delete_key`]).
    pub unconfirmed: Vec<String>,
}

impl KeyStore {
    /// Revokes a person: every admin key acting as `person` (made for them with
    /// [`NewKey::acting_for`](crate::model::key::NewKey::acting_for), or made without a person by
    /// them) is deleted, and with `with_keys` every key they created too, in one record.
    /// When this returns none of those keys verifies on any thread (in a fleet, on any
    /// live host unless the answer lists it), and a request already in flight through one
    /// of them writes nothing. Keys the person made for services keep working unless
    /// `with_keys`. Admin keys made for them later are new grants and work.
    ///
    /// Only a super admin may revoke a person.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] ([`Denial::RevokesPerson`](crate::model::error::Denial::RevokesPerson))
    /// for anyone else; [`Error::InvalidInput`] for a malformed person;
    /// [`Error::NothingToRevoke`] if no live key would be deleted; storage errors.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, KeyStore, NewKey};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let root = Actor::super_admin("root");
    /// let carol = store
    ///     .create_key(&root, NewKey::new("carol").role("admin").acting_for("carol"))
    ///     .unwrap();
    /// let revoked = store.revoke_actor(&root, "carol", false).unwrap();
    /// assert_eq!(revoked.keys, vec![carol.id]);
    /// assert!(store.verify(carol.key.expose_secret(), "10.0.0.1".parse().unwrap()).is_err());
    /// ```
    pub fn revoke_actor(&self, actor: &Actor, person: &str, with_keys: bool) -> Result<RevokedActor, Error> {
        crate::model::rules::validate_person(person)?;
        let op = Op::RevokeActor {
            actor: person.to_owned(),
            with_keys,
        };
        let (_, seq) = self.submit(actor, op)?;
        let keys = self.ledger.read().deleted_by(seq);
        Ok(RevokedActor {
            seq,
            keys,
            unconfirmed: self.revoked(seq).unconfirmed,
        })
    }
}
