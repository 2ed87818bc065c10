//! The names the rest of the domain refers to: a key's public id and the two reserved
//! role names. Imports nothing, so the error enum can name them.

use std::fmt;

/// A key's public id: 16 lowercase hexadecimal digits. Safe to show and log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub(crate) u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The reserved role only a super admin may grant.
pub const SUPER_ADMIN_ROLE: &str = "super-admin";
/// The other reserved role name.
pub const ADMIN_ROLE: &str = "admin";
