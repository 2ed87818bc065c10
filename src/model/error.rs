//! The library's one error type.
//!
//! Owns the classification callers branch on: bad input, permission (and which rule
//! refused), a chain key that does not fit, missing key, storage, corruption. Verification
//! failures are not errors of the store; they are a `Rejection` of the access rules, above.

use std::fmt;
use std::path::PathBuf;

use crate::model::token::format::redact_keys;

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
    #[error("permission denied for {actor:?}: {denial}")]
    PermissionDenied {
        /// The actor's id, with anything shaped like an API key redacted.
        actor: String,
        /// Which rule refused the action.
        denial: Denial,
    },
    /// The chain key given (or not given) does not fit the store's log; nothing was opened.
    #[error("chain key mismatch: {0}")]
    ChainKeyMismatch(ChainKeyProblem),
    /// No key with this id was ever created.
    #[error("key {0} not found")]
    KeyNotFound(crate::model::id::KeyId),
    /// The key existed but has been deleted; deleted keys cannot be changed.
    #[error("key {0} has been deleted")]
    KeyDeleted(crate::model::id::KeyId),
    /// The whitelist change would change nothing (address already present, or absent).
    #[error("key {id}: {net} {reason}")]
    WhitelistUnchanged {
        /// The key.
        id: crate::model::id::KeyId,
        /// The network named in the request.
        net: ipnet::IpNet,
        /// `is already whitelisted` or `is not whitelisted`.
        reason: &'static str,
    },
    /// The key is already in the state asked for (disabling a disabled key, enabling an
    /// enabled one, setting the rate limits it has); nothing was written.
    #[error("key {id} is already {state}")]
    StateUnchanged {
        /// The key.
        id: crate::model::id::KeyId,
        /// `disabled`, `enabled`, `limited so`, `without rate limits` or `as asked` (an
        /// update that changes nothing).
        state: &'static str,
    },
    /// A key being adopted has a secret (or SHA-256) that this store's log holds or ever
    /// held: a live key's, a deleted key's, a rolled-out one, or one earlier in the same
    /// import. Which of these it is is not said (a thief must not learn whether a secret
    /// is live). Nothing was written.
    #[error(
        "this secret is known to the store (held now or before, or earlier in the import); a secret is never adopted twice"
    )]
    SecretKnown,
    /// No live admin key acts as this person (and, when the keys they created were to go
    /// too, they have none live): revoking them would change nothing; nothing was written.
    #[error("nothing to revoke: no live admin key acts as {actor:?} (nor, when asked, any key they made)")]
    NothingToRevoke {
        /// The person, with anything shaped like an API key redacted.
        actor: String,
    },
    /// One key of an import was refused (so the whole import was): which one, from 1, and
    /// why. Nothing was written.
    #[error("key {index}: {source}")]
    ImportEntry {
        /// The key's position in the import, from 1.
        index: usize,
        /// Why it was refused.
        source: Box<Error>,
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
    /// The storage engine failed; the operation's outcome is not acknowledged.
    #[error("storage error: {reason}")]
    Storage {
        /// What the engine said.
        reason: String,
    },
    /// A stored record or the log's structure is damaged or was tampered with.
    #[error("corrupt log at record {seq} ({kind}): {reason}")]
    Corrupt {
        /// Sequence number of the first bad record (0 when the store's metadata is bad).
        seq: u64,
        /// What kind of damage.
        kind: crate::model::problem::ProblemKind,
        /// What is wrong, in words.
        reason: String,
    },
    /// The directory exists but holds no store (reads never create one).
    #[error("{} is not a keyledger store", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// The store is behind, or forked from, the head it was told to reach: it was rolled
    /// back or replaced.
    #[error("the store does not reach the expected head {expected_seq}: {reason}")]
    WitnessMismatch {
        /// The sequence number it was told to reach.
        expected_seq: u64,
        /// What was found instead.
        reason: String,
    },
    /// Removing these networks would leave the key's whitelist empty, which admits every
    /// address; ask for that explicitly.
    #[error("key {id}: removing its last whitelist entry would admit every address; ask for that explicitly")]
    LastWhitelistEntry {
        /// The key.
        id: crate::model::id::KeyId,
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
    /// The shared log (fleet mode) could not be reached, or did not answer in time. A
    /// write that gets this error is wholly in the log or wholly absent: it may still be
    /// applied on every host.
    #[error("the shared log is unavailable: {reason}")]
    StreamUnavailable {
        /// What the client said.
        reason: String,
    },
    /// This host's log is not a prefix of the shared log (fleet mode): it is ahead of it,
    /// behind a gap, or forked from it. The host did not start.
    #[error("this host's log disagrees with the shared log at stream message {position}: {reason}")]
    StreamDiverged {
        /// The stream position of the first message that disagrees.
        position: u64,
        /// How they differ.
        reason: String,
    },
    /// This host stopped writing (fleet mode): the shared log holds a message it could not
    /// apply (records without the chain key, or that break the rules or the sequence).
    /// It keeps verifying keys from what it has; see `keyledger fleet`.
    #[error("this host stopped writing: {reason}")]
    FleetHalted {
        /// Why.
        reason: String,
    },
    /// The shared log's stream is not the one the fleet wrote, or may lose what is written
    /// to it (fleet mode): deleted, deleted and created again (whatever was put back in
    /// it), rolled back behind what this host applied, messages removed, or settings that
    /// let messages go or other subjects in. The host takes no write and reports itself
    /// unhealthy until the stream is right again; it keeps verifying keys from what it has
    /// under the staleness limits, counted from when it noticed. A host does not start on
    /// a stream whose genesis names another creation time than the stream's.
    #[error("the shared log's stream cannot be trusted: {reason}")]
    StreamChanged {
        /// What changed.
        reason: String,
    },
    /// This host of a fleet started while the shared log was out of reach, serves keys from
    /// its replica, and has not joined the fleet yet: it takes no write (nothing was
    /// written). It joins by itself once the shared log answers; write through another
    /// host meanwhile.
    #[error("this host has not joined its fleet yet, so it takes no write: {reason}")]
    FleetNotJoined {
        /// Why: what the last attempt to reach the shared log said.
        reason: String,
    },
    /// This host joined its fleet from a snapshot and still fetches the records before
    /// it from the stream: the whole history is not here yet (an export needs it).
    #[error(
        "this host joined its fleet from a snapshot and still fetches records 1 to {} from the stream: \
         export once it holds them (its integrity then reads verified), or from another host",
        first - 1
    )]
    HistoryIncomplete {
        /// The first record the host holds.
        first: u64,
    },
    /// The store's writer has stopped (the store is being dropped, or a previous write
    /// panicked); reopen the store.
    #[error("the store is closed")]
    Closed,
    /// A file keyledger was to read or lock is not what it must be: in a store's
    /// directory a link, a FIFO, a device or a directory where a regular file belongs
    /// (someone planted it: keyledger neither follows nor waits on it); a secret file that
    /// other users may read. Nothing was read from it or written through it.
    #[error("{} {problem}", path.display())]
    UnsafeFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: FileProblem,
    },
}

/// What is wrong with a file: the reason in [`Error::UnsafeFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileProblem {
    /// A symbolic link, in a store's directory, where keyledger follows none.
    Symlink,
    /// Another kind of file than the one that belongs there.
    WrongKind {
        /// What belongs there: `a regular file` or `a directory`.
        expected: &'static str,
        /// What is there: `a FIFO`, `a character device`, `a socket`, `a directory`, ...
        found: &'static str,
    },
    /// A secret file (a chain key, an admin key) that users other than its owner may
    /// read.
    ReadableByOthers {
        /// Its permission bits.
        mode: u32,
    },
    /// A secret file owned by a user other than this one and root, who could change it.
    OwnedByOther {
        /// Its owner's user id.
        uid: u32,
    },
    /// A store directory that every user may write.
    WritableByOthers {
        /// Its permission bits.
        mode: u32,
    },
    /// A store file larger than any file of its format can be.
    TooLarge {
        /// Its size, in bytes.
        size: u64,
        /// The most its format allows.
        limit: u64,
    },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Symlink => f.write_str(
                "is a symbolic link, and keyledger follows none in a store's directory: remove it",
            ),
            FileProblem::WrongKind { expected, found } => {
                write!(f, "is {found} where keyledger expects {expected}: remove it")
            }
            FileProblem::ReadableByOthers { mode } => write!(
                f,
                "holds a secret but other users may read it (mode {mode:04o}): `chmod 600` it, then retry"
            ),
            FileProblem::OwnedByOther { uid } => write!(
                f,
                "holds a secret but belongs to another user (uid {uid}), who could change it: `chown` it to this user"
            ),
            FileProblem::WritableByOthers { mode } => write!(
                f,
                "is a store directory every user may write (mode {mode:04o}): `chmod o-w` it, then retry"
            ),
            FileProblem::TooLarge { size, limit } => write!(
                f,
                "holds {size} bytes, more than any file of its kind ({limit}): remove it"
            ),
        }
    }
}

/// Which access rule refused an action: the reason in [`Error::PermissionDenied`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The actor is a plain user: only admins and super admins may manage keys.
    NotAnAdmin,
    /// An admin asked for a key with the `super-admin` role, which only a super admin may
    /// grant.
    GrantsSuperAdmin,
    /// An admin acted on a key another actor created; admins may act only on their own.
    NotOwner {
        /// The key acted on.
        key: crate::model::id::KeyId,
        /// The id of the actor who created it, with anything shaped like an API key
        /// redacted.
        owner: String,
    },
    /// An admin acted on a key that holds the `super-admin` role, which only a super
    /// admin may change.
    OutranksActor {
        /// The key acted on.
        key: crate::model::id::KeyId,
    },
    /// The admin key the request came through was deleted, disabled or expired (or lost
    /// its admin role) before the command was written.
    AdminKeyRevoked {
        /// The admin key.
        key: crate::model::id::KeyId,
    },
    /// An admin asked for an admin key acting as another person: an admin may make admin
    /// keys only for herself; only a super admin may make them for someone else.
    GrantsForAnother {
        /// The person named, with anything shaped like an API key redacted.
        person: String,
    },
    /// An actor who is not a super admin asked to revoke a person.
    RevokesPerson {
        /// The person named, with anything shaped like an API key redacted.
        person: String,
    },
    /// An admin key asked to give itself a role it does not hold.
    RaisesOwnRoles {
        /// The admin key.
        key: crate::model::id::KeyId,
    },
}

impl Denial {
    /// A stable, machine-readable name for the rule: `not_an_admin`,
    /// `grants_super_admin`, `not_owner`, `outranks_actor`, `admin_key_revoked`,
    /// `grants_for_another`, `revokes_person` or `raises_own_roles`.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NotAnAdmin => "not_an_admin",
            Denial::GrantsSuperAdmin => "grants_super_admin",
            Denial::NotOwner { .. } => "not_owner",
            Denial::OutranksActor { .. } => "outranks_actor",
            Denial::AdminKeyRevoked { .. } => "admin_key_revoked",
            Denial::GrantsForAnother { .. } => "grants_for_another",
            Denial::RevokesPerson { .. } => "revokes_person",
            Denial::RaisesOwnRoles { .. } => "raises_own_roles",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NotAnAdmin => f.write_str("not an admin; only admins and super admins may manage keys"),
            Denial::GrantsSuperAdmin => write!(
                f,
                "only a super admin may grant the {} role",
                crate::model::id::SUPER_ADMIN_ROLE
            ),
            Denial::NotOwner { key, owner } => write!(
                f,
                "an admin may act only on the keys they created, and key {key} was created by {owner:?}"
            ),
            Denial::OutranksActor { key } => write!(
                f,
                "key {key} holds the {} role: only a super admin may change it",
                crate::model::id::SUPER_ADMIN_ROLE
            ),
            Denial::AdminKeyRevoked { key } => write!(
                f,
                "admin key {key} was deleted, disabled or expired before the command was written"
            ),
            Denial::GrantsForAnother { person } => write!(
                f,
                "an admin may make admin keys only for herself, not for {person:?}"
            ),
            Denial::RevokesPerson { person } => {
                write!(f, "only a super admin may revoke a person ({person:?})")
            }
            Denial::RaisesOwnRoles { key } => {
                write!(f, "admin key {key} may not give itself a role it does not hold")
            }
        }
    }
}

/// How a chain key fails to fit a store: the reason in [`Error::ChainKeyMismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainKeyProblem {
    /// The store's log is chained with a secret key and none was given.
    Missing,
    /// A chain key was given, but not the one the store was created with.
    Wrong,
    /// A chain key was given, but the store's log is not keyed.
    NotKeyed,
}

impl fmt::Display for ChainKeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainKeyProblem::Missing => "this store's log is chained with a secret key, and none was given",
            ChainKeyProblem::Wrong => "the chain key given is not the one this store was created with",
            ChainKeyProblem::NotKeyed => "a chain key was given, but this store's log is not keyed",
        })
    }
}

impl Error {
    /// A stable, machine-readable name for the variant, in snake case: `invalid_input`,
    /// `permission_denied`, `key_not_found`, `secret_known`, `nothing_to_revoke`, `import_entry`,
    /// `storage`, `unsafe_file`, `closed`, ... The admin API answers it as `error`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => "invalid_input",
            Error::PermissionDenied { .. } => "permission_denied",
            Error::ChainKeyMismatch(_) => "chain_key_mismatch",
            Error::KeyNotFound(_) => "key_not_found",
            Error::KeyDeleted(_) => "key_deleted",
            Error::WhitelistUnchanged { .. } => "whitelist_unchanged",
            Error::StateUnchanged { .. } => "state_unchanged",
            Error::SecretKnown => "secret_known",
            Error::NothingToRevoke { .. } => "nothing_to_revoke",
            Error::ImportEntry { .. } => "import_entry",
            Error::Locked { .. } => "locked",
            Error::Io(_) => "io",
            Error::Storage { .. } => "storage",
            Error::Corrupt { .. } => "corrupt",
            Error::NotAStore { .. } => "not_a_store",
            Error::WitnessMismatch { .. } => "witness_mismatch",
            Error::LastWhitelistEntry { .. } => "last_whitelist_entry",
            Error::StreamUnavailable { .. } => "stream_unavailable",
            Error::StreamDiverged { .. } => "stream_diverged",
            Error::FleetHalted { .. } => "fleet_halted",
            Error::StreamChanged { .. } => "stream_changed",
            Error::FleetNotJoined { .. } => "fleet_not_joined",
            Error::HistoryIncomplete { .. } => "history_incomplete",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::Entropy(_) => "entropy",
            Error::Closed => "closed",
            Error::UnsafeFile { .. } => "unsafe_file",
        }
    }

    /// A refusal by `denial` of an action by `actor`, whose id is redacted if key-shaped.
    pub(crate) fn denied(actor: &str, denial: Denial) -> Self {
        Error::PermissionDenied {
            actor: redact_keys(actor).into_owned(),
            denial,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(
        seq: u64,
        kind: crate::model::problem::ProblemKind,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            seq,
            kind,
            reason: reason.into(),
        }
    }
}

impl Error {
    /// A copy for each caller of a failed batch (I/O errors are not `Clone`).
    pub(crate) fn replicate(&self) -> Error {
        match self {
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Storage { reason } => Error::Storage {
                reason: reason.clone(),
            },
            Error::InvalidInput { field, reason } => Error::invalid(field, reason.clone()),
            Error::PermissionDenied { actor, denial } => Error::PermissionDenied {
                actor: actor.clone(),
                denial: denial.clone(),
            },
            Error::ChainKeyMismatch(problem) => Error::ChainKeyMismatch(*problem),
            Error::KeyNotFound(id) => Error::KeyNotFound(*id),
            Error::KeyDeleted(id) => Error::KeyDeleted(*id),
            Error::WhitelistUnchanged { id, net, reason } => Error::WhitelistUnchanged {
                id: *id,
                net: *net,
                reason,
            },
            Error::StateUnchanged { id, state } => Error::StateUnchanged { id: *id, state },
            Error::SecretKnown => Error::SecretKnown,
            Error::NothingToRevoke { actor } => Error::NothingToRevoke { actor: actor.clone() },
            Error::ImportEntry { index, source } => Error::ImportEntry {
                index: *index,
                source: Box::new(source.replicate()),
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::Corrupt { seq, kind, reason } => Error::corrupt(*seq, *kind, reason.clone()),
            Error::NotAStore { path } => Error::NotAStore { path: path.clone() },
            Error::WitnessMismatch { expected_seq, reason } => Error::WitnessMismatch {
                expected_seq: *expected_seq,
                reason: reason.clone(),
            },
            Error::LastWhitelistEntry { id } => Error::LastWhitelistEntry { id: *id },
            Error::UnsupportedVersion { found, supported } => Error::UnsupportedVersion {
                found: *found,
                supported: *supported,
            },
            Error::Entropy(r) => Error::Entropy(r.clone()),
            Error::StreamUnavailable { reason } => Error::StreamUnavailable {
                reason: reason.clone(),
            },
            Error::StreamDiverged { position, reason } => Error::StreamDiverged {
                position: *position,
                reason: reason.clone(),
            },
            Error::FleetHalted { reason } => Error::FleetHalted {
                reason: reason.clone(),
            },
            Error::StreamChanged { reason } => Error::StreamChanged {
                reason: reason.clone(),
            },
            Error::HistoryIncomplete { first } => Error::HistoryIncomplete { first: *first },
            Error::FleetNotJoined { reason } => Error::FleetNotJoined {
                reason: reason.clone(),
            },
            Error::Closed => Error::Closed,
            Error::UnsafeFile { path, problem } => Error::UnsafeFile {
                path: path.clone(),
                problem: *problem,
            },
        }
    }
}
