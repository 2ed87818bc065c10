//! Proving the log's history: the full `check`, and `repair` of what follows the head.
//!
//! Recomputes the hash chain from the first record, checks sequence numbers and the sealed
//! head, names each edited, inserted, removed or reordered record, then replays the log
//! through the ledger (the access rules) and compares it with the snapshot and a witness.
//! `check` never writes; `repair` removes only records the head does not cover.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::chain::Chain;
use crate::chain::StoredHead;
use crate::chain::Witness;
use crate::codec;
use crate::ledger;
use crate::ledger::Ledger;
use crate::ledger::meta::LogInfo;
use crate::log::Batch;
use crate::log::Log;
use crate::log::LogError;
use crate::log::LogRead;
use crate::model::error::Error;
use crate::model::problem::Problem;
use crate::model::problem::ProblemKind;
use crate::model::problem::Progress;
use crate::persist::snapshot;

/// `check` lists at most this many problems; the rest are counted.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// The result of `Builder::check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Records read.
    pub records: u64,
    /// Whether the chain was checked with a secret chain key.
    pub keyed: bool,
    /// Problems, by sequence number; at most [`MAX_LISTED_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub unlisted: u64,
}

impl CheckReport {
    /// Whether the log proved its whole history.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty() && self.unlisted == 0
    }
}

/// One record as `check` sees it: where it is stored and what it says of itself.
struct Entry {
    key: u64,
    hash: [u8; 32],
    /// Embedded sequence number and previous-record hash, if it decoded.
    decoded: Option<(u64, [u8; 32])>,
}

#[derive(Default)]
struct Findings {
    problems: Vec<Problem>,
    flagged: HashSet<u64>,
}

impl Findings {
    fn add(&mut self, seq: u64, kind: ProblemKind, detail: String) {
        self.flagged.insert(seq);
        self.problems.push(Problem { seq, kind, detail });
    }

    fn add_error(&mut self, e: &Error) {
        match e {
            Error::Corrupt { seq, kind, reason } => self.add(*seq, *kind, reason.clone()),
            Error::WitnessMismatch { expected_seq, .. } => {
                self.add(*expected_seq, ProblemKind::Witness, e.to_string());
            }
            other => self.add(0, ProblemKind::Undecodable, other.to_string()),
        }
    }
}

/// What `check` compares the log with, beside its own head.
pub(crate) struct CheckInputs<'a> {
    /// The store's snapshot file, if snapshots are in use.
    pub(crate) snapshot: Option<&'a Path>,
    /// The head the log must reach.
    pub(crate) witness: Option<Witness>,
}

/// Reads the whole log and names every way it fails to prove its history. Writes nothing.
pub(crate) fn check(
    log: &dyn LogRead,
    chain: &Chain,
    info: LogInfo,
    inputs: &CheckInputs<'_>,
    progress: &Progress,
) -> Result<CheckReport, Error> {
    let mut found = Findings::default();
    // A snapshot that is not a regular file is named, and the check goes on without it.
    let (snap, unsafe_snapshot) = match inputs.snapshot.map(|p| snapshot::read_seal(p, chain)).transpose() {
        Ok(snap) => (snap.flatten(), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let stored = match ledger::stored_head(log, chain, info) {
        Ok(stored) => Some(stored),
        Err(e @ (Error::Corrupt { .. } | Error::UnsupportedVersion { .. })) => {
            found.add(0, ProblemKind::Head, e.to_string());
            None
        }
        Err(e) => return Err(e),
    };
    let total = stored.flatten().map_or(0, StoredHead::seq);
    let mut entries = Vec::new();
    for item in log.scan(0) {
        let (key, bytes) = match item {
            Ok(kv) => kv,
            Err(LogError::Corrupt(reason)) => {
                found.add(0, ProblemKind::Inserted, reason);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let records = match codec::entry_records(key, &bytes) {
            Ok(records) => records,
            Err(e) => {
                found.add(key, ProblemKind::Undecodable, e.to_string());
                continue;
            }
        };
        for (seq, record) in records {
            let decoded = match codec::decode_record(record, seq) {
                Ok(r) => Some((r.seq, r.prev)),
                Err(e) => {
                    found.add(seq, ProblemKind::Undecodable, e.to_string());
                    None
                }
            };
            entries.push(Entry {
                key: seq,
                hash: chain.hash(record),
                decoded,
            });
            if (entries.len() as u64).is_multiple_of(PROGRESS_EVERY) {
                ledger::report(progress, entries.len() as u64, total);
            }
        }
    }
    ledger::report(progress, entries.len() as u64, total);

    find_gaps(&entries, &mut found);
    find_misplaced(&entries, &mut found);
    find_broken_links(&entries, &mut found);
    if let Some(stored) = stored {
        find_head_mismatch(&entries, stored, &mut found);
    }
    if found.problems.is_empty() {
        // Structure and chain are intact: a forged history could still break the rules,
        // and a snapshot could still disagree with the log.
        if let Err(e) = replay_and_compare(log, chain, snap, inputs, total, progress) {
            found.add_error(&e);
        }
    }
    if let Some(detail) = unsafe_snapshot {
        found.add(0, ProblemKind::Snapshot, detail);
    }

    let mut problems = found.problems;
    problems.sort_by_key(|p| p.seq);
    let unlisted = problems.len().saturating_sub(MAX_LISTED_PROBLEMS) as u64;
    problems.truncate(MAX_LISTED_PROBLEMS);
    Ok(CheckReport {
        records: entries.len() as u64,
        keyed: chain.is_keyed(),
        problems,
        unlisted,
    })
}

const PROGRESS_EVERY: u64 = 16_384;

/// Replays the whole log through the ledger, comparing the state with the snapshot `snap`
/// (at its sequence number) and the end with the witness.
fn replay_and_compare(
    log: &dyn LogRead,
    chain: &Chain,
    snap: Option<snapshot::Seal>,
    inputs: &CheckInputs<'_>,
    total: u64,
    progress: &Progress,
) -> Result<(), Error> {
    let ledger = Ledger::new(chain.clone());
    if let Some(snap) = snap {
        ledger.replay(log, snap.seq, total, progress)?;
        if ledger.head().seq == snap.seq && !snapshot::matches(&ledger.read(), &snap, chain)? {
            return Err(Error::corrupt(
                snap.seq,
                ProblemKind::Snapshot,
                format!(
                    "the snapshot at record {} does not match the log: it was edited and re-sealed",
                    snap.seq
                ),
            ));
        }
    }
    ledger.replay(log, u64::MAX, total, progress)?;
    if let Some(w) = inputs.witness {
        ledger::reaches_witness(log, chain, ledger.head(), w)?;
    }
    Ok(())
}

fn find_gaps(entries: &[Entry], found: &mut Findings) {
    let mut expected = 1;
    for e in entries {
        if e.key == 0 {
            found.add(
                0,
                ProblemKind::Inserted,
                "a record is stored at sequence number 0".into(),
            );
            continue;
        }
        if e.key > expected && !found.flagged.contains(&expected) {
            let detail = if e.key - expected == 1 {
                format!("record {expected} is missing")
            } else {
                format!("records {expected}..={} are missing", e.key - 1)
            };
            found.add(expected, ProblemKind::Removed, detail);
        }
        expected = e.key + 1;
    }
}

fn find_misplaced(entries: &[Entry], found: &mut Findings) {
    let claims: HashMap<u64, u64> = entries
        .iter()
        .filter_map(|e| Some((e.key, e.decoded?.0)))
        .collect();
    let mut previous_offset = 0i128;
    for e in entries {
        let Some((seq, _)) = e.decoded else { continue };
        let offset = i128::from(seq) - i128::from(e.key);
        if offset == 0 {
            previous_offset = 0;
            continue;
        }
        if claims.get(&seq) == Some(&e.key) {
            if e.key < seq {
                found.add(
                    e.key,
                    ProblemKind::Reordered,
                    format!("records {} and {seq} are swapped", e.key),
                );
            }
            found.flagged.insert(e.key);
        } else if offset != previous_offset {
            if offset > 0 {
                found.add(
                    e.key,
                    ProblemKind::Removed,
                    format!("record stored at {} says it is {seq}: a record before it was removed and the rest renumbered", e.key),
                );
            } else {
                found.add(
                    e.key - 1,
                    ProblemKind::Inserted,
                    format!(
                        "record stored at {} says it is {seq}: a record was inserted before it",
                        e.key
                    ),
                );
                found.flagged.insert(e.key);
            }
        } else {
            found.flagged.insert(e.key);
        }
        previous_offset = offset;
    }
}

fn find_broken_links(entries: &[Entry], found: &mut Findings) {
    let mut prev: Option<&Entry> = None;
    for e in entries {
        if let Some((_, link)) = e.decoded {
            match prev {
                None if e.key == 1 && link != [0; 32] && !found.flagged.contains(&1) => {
                    found.add(1, ProblemKind::Edited, "record 1 does not start the chain".into());
                }
                Some(p)
                    if p.key + 1 == e.key
                        && link != p.hash
                        && !found.flagged.contains(&p.key)
                        && !found.flagged.contains(&e.key) =>
                {
                    found.add(
                        p.key,
                        ProblemKind::Edited,
                        format!(
                            "record {} was changed: record {}'s link to it does not match",
                            p.key, e.key
                        ),
                    );
                }
                _ => {}
            }
        }
        prev = Some(e);
    }
}

fn find_head_mismatch(entries: &[Entry], stored: Option<StoredHead>, found: &mut Findings) {
    let last = entries.last();
    match (stored, last) {
        (None, None) => {}
        (None, Some(_)) => found.add(0, ProblemKind::Head, "the head is missing".into()),
        (Some(s), None) if s.seq() == 0 => {}
        (Some(s), None) => found.add(
            1,
            ProblemKind::Removed,
            format!("all {} records are missing", s.seq()),
        ),
        // The head's record is last, under another number: the log was renumbered,
        // which the sequence checks have already named.
        (Some(s), Some(l)) if s.seq() != l.key && s.hash() == l.hash => {}
        (Some(s), Some(l)) if s.seq() > l.key => found.add(
            l.key + 1,
            ProblemKind::Removed,
            format!(
                "records {}..={} are missing: the log ends before its head",
                l.key + 1,
                s.seq()
            ),
        ),
        (Some(s), Some(l)) if s.seq() < l.key => found.add(
            s.seq() + 1,
            ProblemKind::Inserted,
            format!("records {}..={} follow the head", s.seq() + 1, l.key),
        ),
        (Some(s), Some(l)) if s.hash() != l.hash && !found.flagged.contains(&l.key) => found.add(
            l.key,
            ProblemKind::Edited,
            format!("record {} was changed: it does not match the head", l.key),
        ),
        _ => {}
    }
}

/// What `Builder::repair` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Sequence numbers of the records removed (empty if there was nothing to repair).
    pub removed: Vec<u64>,
    /// The log's last record after the repair.
    pub last_seq: u64,
}

/// Removes what follows the stored head: records that were never acknowledged (a write
/// cut short), damaged or not. Refuses, changing nothing, when there is no sealed head,
/// when anything the head covers does not replay to it, and when a record past the head
/// is of a newer format (a newer build wrote it: its head could not be read here).
pub(crate) fn repair(log: &mut dyn Log, chain: &Chain, info: LogInfo) -> Result<RepairReport, Error> {
    let stored = ledger::stored_head(log, chain, info).map_err(|e| refuse(&e))?;
    let Some(stored) = stored else {
        if log.scan(0).next().is_none() {
            return Ok(RepairReport {
                removed: Vec::new(),
                last_seq: 0,
            });
        }
        return Err(refuse(&Error::corrupt(
            0,
            ProblemKind::Head,
            "the log has records but no head",
        )));
    };
    let covered = stored.seq();
    let ledger = Ledger::new(chain.clone());
    ledger
        .replay(log, covered, covered, &None)
        .and_then(|()| ledger::reaches_head(Some(stored), ledger.head()))
        .map_err(|e| refuse(&e))?;
    let mut removed = Vec::new();
    for item in log.scan(covered + 1) {
        let (key, bytes) = item?;
        match codec::entry_records(key, &bytes) {
            Ok(records) => {
                for (seq, record) in records {
                    if let Err(e @ Error::UnsupportedVersion { .. }) = codec::decode_record(record, seq) {
                        return Err(refuse(&e));
                    }
                    removed.push(seq);
                }
            }
            Err(e @ Error::UnsupportedVersion { .. }) => return Err(refuse(&e)),
            Err(_) => removed.push(key),
        }
    }
    if let Some((key, bytes)) = log.floor(covered)?
        && codec::entry_records(key, &bytes).is_ok_and(|r| r.last().is_some_and(|(seq, _)| *seq > covered))
    {
        return Err(refuse(&Error::corrupt(
            covered,
            ProblemKind::Inserted,
            "an entry the head covers holds records past it",
        )));
    }
    if !removed.is_empty() {
        let head = log.head()?.unwrap_or_default();
        log.write(&Batch {
            discard_from: Some(covered + 1),
            entries: &[],
            head: &head,
        })?;
        log.sync()?;
    }
    Ok(RepairReport {
        removed,
        last_seq: covered,
    })
}

fn refuse(e: &Error) -> Error {
    match e {
        Error::Corrupt { seq, kind, reason } => Error::corrupt(
            *seq,
            *kind,
            format!(
                "{reason}; repair removes only what follows the head, so restore this store from a backup"
            ),
        ),
        other => other.replicate(),
    }
}
