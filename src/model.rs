//! The words of the domain: the key token and its format, key ids, actors and roles,
//! networks, the events and records with the rules every field obeys, refused commands,
//! and the one error enum that speaks of them all.
//!
//! The bottom layer: it imports nothing from the crate but the clock's time conversions.
//! Commands on their way in obey every rule (`Origin::Command`); records decoded from disk
//! are held only to the rules in force when they were written (`Origin::Stored`: format
//! characters and key-shaped text were allowed), so existing stores keep opening. It never
//! touches storage and never sees a secret: a created key is recorded by its hash.

pub(crate) mod actor;
pub(crate) mod credits;
pub(crate) mod error;
pub(crate) mod id;
pub(crate) mod key;
pub(crate) mod limit;
pub(crate) mod owner;
pub(crate) mod problem;
pub(crate) mod record;
pub(crate) mod refusal;
pub(crate) mod rules;
pub(crate) mod token;
pub(crate) mod usage;

#[cfg(test)]
pub(crate) mod tests;
