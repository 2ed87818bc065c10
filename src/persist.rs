//! What the store keeps on disk besides the log, and the checks of it all: snapshots of
//! the projection, backups (export and import), the security trail of refused commands,
//! the last-used times, and `check`/`repair` of a store's files.
//!
//! Above the ledger (a snapshot is checked against a replay; a backup is a replayed log):
//! each file's format lives beside its owner, on `codec`'s primitives.

pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod credits;
pub(crate) mod last_used;
pub(crate) mod snapshot;
pub(crate) mod trail;
