//! The event records: who did what to which key, and the rules every field obeys.
//!
//! Owns the domain values (actors, key ids, names, roles, networks) and their validation.
//! Commands on their way in obey every rule (`Origin::Command`); records decoded from disk
//! are held only to the rules in force when they were written (`Origin::Stored`: format
//! characters and key-shaped text were allowed), so existing stores keep opening. It never
//! touches storage and never sees a secret: a created key is recorded by its hash.

mod actor;
mod key;
mod record;
mod rules;

pub use actor::{Actor, ActorRole};
pub use key::{KeyId, NewKey};
pub(crate) use key::{KeySource, NO_TAIL};
pub use record::EventKind;
pub(crate) use record::{Event, Record};
pub use rules::{
    ADMIN_ROLE, MAX_ACTOR_ID_CHARS, MAX_NAME_CHARS, MAX_ROLE_LEN, MAX_ROLES, MAX_WHITELIST, SUPER_ADMIN_ROLE,
    parse_net,
};
pub(crate) use rules::{grants_admin, validate_person, validate_whitelist};
// Used only by the modules of these features (`http/client_ip.rs`, `json.rs`).
#[cfg(feature = "tower")]
pub(crate) use rules::canonical_net;
#[cfg(feature = "json")]
pub(crate) use rules::shown;

#[cfg(test)]
mod tests;
