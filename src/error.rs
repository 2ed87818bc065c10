//! The library's one error type.
//!
//! Owns the classification callers branch on: bad input, permission, missing key, storage,
//! corruption. Verification failures are not errors of the store; they are a
//! [`Rejection`](crate::Rejection).

use std::path::PathBuf;

/// Everything that can go wrong in a call to the store.
///
/// No variant ever carries a key's secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was malformed or out of bounds; nothing was changed.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which argument was wrong (`name`, `role`, `network`, `actor`, `key id`, ...).
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The actor may not perform this action on this key; nothing was changed.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// No key with this id was ever created.
    #[error("key {0} not found")]
    KeyNotFound(crate::KeyId),
    /// The key existed but has been deleted; deleted keys cannot be changed.
    #[error("key {0} has been deleted")]
    KeyDeleted(crate::KeyId),
    /// The whitelist change would change nothing (address already present, or absent).
    #[error("key {id}: {net} {reason}")]
    WhitelistUnchanged {
        /// The key.
        id: crate::KeyId,
        /// The network named in the request.
        net: ipnet::IpNet,
        /// `is already whitelisted` or `is not whitelisted`.
        reason: &'static str,
    },
    /// Another process (or another `KeyStore` in this one) has the store open.
    #[error("the store at {} is in use by another process", path.display())]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The operating system refused a file operation.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The storage engine (sled) failed; the operation's outcome is not acknowledged.
    #[error("storage error: {0}")]
    Storage(#[source] sled::Error),
    /// A stored record or the log's structure is damaged or was tampered with.
    #[error("corrupt log at record {seq}: {reason}")]
    Corrupt {
        /// Sequence number of the first bad record (0 when the store's metadata is bad).
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A record or store was written by a newer, unknown format version.
    #[error("unsupported format version {found} (this build reads up to {supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Entropy(String),
    /// The store's writer has stopped (the store is being dropped, or a previous write
    /// panicked); reopen the store.
    #[error("the store is closed")]
    Closed,
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(seq: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            seq,
            reason: reason.into(),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => Error::Io(io),
            sled::Error::Corruption { .. } => Error::corrupt(0, e.to_string()),
            other => Error::Storage(other),
        }
    }
}

impl Error {
    /// A copy for each caller of a failed batch (I/O errors are not `Clone`).
    pub(crate) fn replicate(&self) -> Error {
        match self {
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Storage(e) => Error::Storage(e.clone()),
            Error::InvalidInput { field, reason } => Error::invalid(field, reason.clone()),
            Error::PermissionDenied(r) => Error::PermissionDenied(r.clone()),
            Error::KeyNotFound(id) => Error::KeyNotFound(*id),
            Error::KeyDeleted(id) => Error::KeyDeleted(*id),
            Error::WhitelistUnchanged { id, net, reason } => Error::WhitelistUnchanged {
                id: *id,
                net: *net,
                reason,
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::Corrupt { seq, reason } => Error::corrupt(*seq, reason.clone()),
            Error::UnsupportedVersion { found, supported } => Error::UnsupportedVersion {
                found: *found,
                supported: *supported,
            },
            Error::Entropy(r) => Error::Entropy(r.clone()),
            Error::Closed => Error::Closed,
        }
    }
}
