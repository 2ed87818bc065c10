//! What a check of the log finds, and how a long read reports its progress: the words
//! every layer that reads the log names (the codec, the ledger, the projection, `check`,
//! the error enum), so they live below all of them.
//!
//! Imports nothing of the crate.

use std::fmt;
use std::sync::Arc;

/// A callback told `(records done, records in all)` while a long log is read.
pub(crate) type Progress = Option<Arc<dyn Fn(u64, u64) + Send + Sync>>;

/// What kind of damage `check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A record's bytes were changed: the next record's link (or the anchor) no longer
    /// matches it.
    Edited,
    /// A record is there that the chain does not account for.
    Inserted,
    /// A record is missing.
    Removed,
    /// Records are out of order.
    Reordered,
    /// A record's bytes do not decode (damage, or a torn write).
    Undecodable,
    /// The chain is intact but a record breaks the access rules (a forged history), or the
    /// store's metadata is malformed.
    Invalid,
    /// The stored head is missing, unsealed, or its seal does not verify (forged, or
    /// written with another chain key).
    Head,
    /// A snapshot disagrees with the log it claims to summarize.
    Snapshot,
    /// The log does not reach the head it was told to reach (`--expect-head`): it was
    /// rolled back or replaced.
    Witness,
}

impl ProblemKind {
    /// `edited`, `inserted`, `removed`, `reordered`, `undecodable`, `invalid`, `head`,
    /// `snapshot` or `witness`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Removed => "removed",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Undecodable => "undecodable",
            ProblemKind::Invalid => "invalid",
            ProblemKind::Head => "head",
            ProblemKind::Snapshot => "snapshot",
            ProblemKind::Witness => "witness",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of `check`, at a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The record it concerns (0 for the store's metadata).
    pub seq: u64,
    /// What is wrong.
    pub kind: ProblemKind,
    /// In words.
    pub detail: String,
}
