//! Proving the log's history: replay at open, the full `check`, and `repair` of a torn tail.
//!
//! Recomputes the hash chain from the first record, checks sequence numbers and the
//! anchored head, and names each edited, inserted, removed or reordered record. Reads the
//! log; only `repair` writes, and only to remove a tail that was never acknowledged or
//! cannot be decoded.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::Error;
use crate::codec;
use crate::log::{Anchor, Batch, Bytes, Chain, Log};
use crate::projection::{Head, Projection};

/// A callback told `(records done, records in all)` while a long log is read.
pub(crate) type Progress = Option<Arc<dyn Fn(u64, u64) + Send + Sync>>;

const PROGRESS_EVERY: u64 = 16_384;
/// `check` lists at most this many problems; the rest are counted.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

fn report(progress: &Progress, done: u64, total: u64) {
    if let Some(f) = progress {
        f(done, total.max(done));
    }
}

/// Rebuilds the projections from every record in `log`, checking each one and the anchor.
pub(crate) fn replay(log: &dyn Log, chain: &Chain, progress: &Progress) -> Result<Projection, Error> {
    replay_onto(Projection::new(), log, chain, progress)
}

/// Replays the records after `proj`'s head onto it (all of them for an empty projection).
pub(crate) fn replay_onto(
    mut proj: Projection,
    log: &dyn Log,
    chain: &Chain,
    progress: &Progress,
) -> Result<Projection, Error> {
    let anchor = log.anchor()?;
    let total = anchor.map_or(0, |a| a.seq);
    let from = proj.head().seq + 1;
    // Two stages on two threads: reading the engine's pages (the slowest part) runs ahead
    // of decoding, hashing, checking and applying records in order.
    std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Decoded>>(8);
        s.spawn(move || read_ahead(log, from, &tx));
        for batch in rx {
            for item in batch {
                let (seq, bytes) = item?;
                let expected = proj.head().seq + 1;
                if seq != expected {
                    return Err(Error::corrupt(
                        expected,
                        format!("record {expected} is missing; found {seq}"),
                    ));
                }
                let record = codec::decode_record(&bytes, seq)?;
                if record.seq != seq {
                    return Err(Error::corrupt(
                        seq,
                        format!("record stored at {seq} says it is {}", record.seq),
                    ));
                }
                proj.check(&record)?;
                proj.apply(&record, chain.hash(&bytes))?;
                if seq.is_multiple_of(PROGRESS_EVERY) {
                    report(progress, seq, total);
                }
            }
        }
        Ok(())
    })?;
    report(progress, proj.head().seq, total);
    check_anchor(anchor, proj.head())?;
    Ok(proj)
}

/// A record read from the log: where it was and its bytes.
type Decoded = Result<(u64, Bytes), Error>;

const READ_AHEAD_BATCH: usize = 1024;

/// Reads records from `from` on, in batches, until the log ends, a read
/// fails, or the receiver hangs up.
fn read_ahead(log: &dyn Log, from: u64, tx: &crossbeam_channel::Sender<Vec<Decoded>>) {
    let mut batch = Vec::with_capacity(READ_AHEAD_BATCH);
    for item in log.scan(from) {
        let failed = item.is_err();
        batch.push(item);
        if failed || batch.len() == READ_AHEAD_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_AHEAD_BATCH));
            // A failed read ends the stream; the receiver reports it.
            if tx.send(full).is_err() || failed {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
}

fn check_anchor(anchor: Option<Anchor>, head: Head) -> Result<(), Error> {
    match anchor {
        None if head.seq == 0 => Ok(()),
        None => Err(Error::corrupt(0, "the log has records but no anchored head")),
        Some(a) if a.seq > head.seq => Err(Error::corrupt(
            head.seq + 1,
            format!(
                "records {}..={} are missing: the log ends before its anchored head",
                head.seq + 1,
                a.seq
            ),
        )),
        Some(a) if a.seq < head.seq => Err(Error::corrupt(
            a.seq + 1,
            format!(
                "records {}..={} follow the anchored head: never acknowledged, or inserted",
                a.seq + 1,
                head.seq
            ),
        )),
        Some(a) if a.hash != head.hash => Err(Error::corrupt(
            head.seq,
            "the last record does not match the anchored head: it was edited",
        )),
        Some(_) => Ok(()),
    }
}

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
    /// store's chain marker does not fit the key the check was given.
    Invalid,
}

impl ProblemKind {
    /// `edited`, `inserted`, `removed`, `reordered`, `undecodable` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Removed => "removed",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Undecodable => "undecodable",
            ProblemKind::Invalid => "invalid",
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

/// The result of [`Builder::check`](crate::Builder::check).
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
}

/// Reads the whole log and names every way it fails to prove its history.
pub(crate) fn check(
    log: &dyn Log,
    chain: &Chain,
    marker_problem: Option<&str>,
    progress: &Progress,
) -> Result<CheckReport, Error> {
    let mut found = Findings::default();
    if let Some(why) = marker_problem {
        found.add(0, ProblemKind::Invalid, why.to_owned());
    }
    let (anchor, anchor_readable) = match log.anchor() {
        Ok(anchor) => (anchor, true),
        Err(e @ (Error::Corrupt { .. } | Error::UnsupportedVersion { .. })) => {
            found.add(0, ProblemKind::Undecodable, e.to_string());
            (None, false)
        }
        Err(e) => return Err(e),
    };
    let total = anchor.map_or(0, |a| a.seq);
    let mut entries = Vec::new();
    for item in log.scan(0) {
        let (key, bytes) = match item {
            Ok(kv) => kv,
            Err(Error::Corrupt { reason, .. }) => {
                found.add(0, ProblemKind::Inserted, reason);
                continue;
            }
            Err(e) => return Err(e),
        };
        let decoded = match codec::decode_record(&bytes, key) {
            Ok(r) => Some((r.seq, r.prev)),
            Err(e) => {
                found.add(key, ProblemKind::Undecodable, e.to_string());
                None
            }
        };
        entries.push(Entry {
            key,
            hash: chain.hash(&bytes),
            decoded,
        });
        if (entries.len() as u64).is_multiple_of(PROGRESS_EVERY) {
            report(progress, entries.len() as u64, total);
        }
    }
    report(progress, entries.len() as u64, total);

    find_gaps(&entries, &mut found);
    find_misplaced(&entries, &mut found);
    // With a chain key that does not fit the store, every link would fail: say so once.
    if marker_problem.is_none() {
        find_broken_links(&entries, &mut found);
        if anchor_readable {
            find_anchor_mismatch(&entries, anchor, &mut found);
        }
    }
    if found.problems.is_empty() {
        // Structure and chain are intact: a forged history could still break the rules.
        match replay(log, chain, progress) {
            Ok(_) => {}
            Err(Error::Corrupt { seq, reason }) => found.add(seq, ProblemKind::Invalid, reason),
            Err(e) => return Err(e),
        }
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
        if e.key > expected {
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

fn find_anchor_mismatch(entries: &[Entry], anchor: Option<Anchor>, found: &mut Findings) {
    let last = entries.last();
    match (anchor, last) {
        (None, None) => {}
        (None, Some(_)) => found.add(0, ProblemKind::Removed, "the anchored head is missing".into()),
        (Some(a), None) => found.add(
            1,
            ProblemKind::Removed,
            format!("all {} records are missing", a.seq),
        ),
        // The anchored record is last, under another number: the log was renumbered,
        // which the sequence checks have already named.
        (Some(a), Some(l)) if a.seq != l.key && a.hash == l.hash => {}
        (Some(a), Some(l)) if a.seq > l.key => found.add(
            l.key + 1,
            ProblemKind::Removed,
            format!(
                "records {}..={} are missing: the log ends before its anchored head",
                l.key + 1,
                a.seq
            ),
        ),
        (Some(a), Some(l)) if a.seq < l.key => found.add(
            a.seq + 1,
            ProblemKind::Inserted,
            format!("records {}..={} follow the anchored head", a.seq + 1, l.key),
        ),
        (Some(a), Some(l)) if a.hash != l.hash && !found.flagged.contains(&l.key) => found.add(
            l.key,
            ProblemKind::Edited,
            format!(
                "record {} was changed: it does not match the anchored head",
                l.key
            ),
        ),
        _ => {}
    }
}

/// What [`Builder::repair`](crate::Builder::repair) removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Sequence numbers of the records removed (empty if there was nothing to repair).
    pub removed: Vec<u64>,
    /// The log's last record after the repair.
    pub last_seq: u64,
}

/// Removes a torn tail: a last record that does not decode, or records past the anchored
/// head (never acknowledged). Refuses any other damage, which is not a torn write.
pub(crate) fn repair(log: &mut dyn Log, chain: &Chain) -> Result<RepairReport, Error> {
    let mut proj = Projection::new();
    let mut tail: Vec<u64> = Vec::new();
    let mut last_bytes_undecodable = false;
    for item in log.scan(1) {
        let (seq, bytes) = item?;
        if !tail.is_empty() {
            tail.push(seq);
            last_bytes_undecodable = codec::decode_record(&bytes, seq).is_err();
            continue;
        }
        let good = seq == proj.head().seq + 1
            && codec::decode_record(&bytes, seq)
                .and_then(|r| {
                    proj.check(&r)?;
                    proj.apply(&r, chain.hash(&bytes))
                })
                .is_ok();
        if !good {
            tail.push(seq);
            last_bytes_undecodable = codec::decode_record(&bytes, seq).is_err();
        }
    }
    let head = proj.head();
    let anchor = log.anchor()?;
    if tail.is_empty() {
        check_anchor(anchor, head).map_err(|e| refuse(&e))?;
        return Ok(RepairReport {
            removed: Vec::new(),
            last_seq: head.seq,
        });
    }
    let unanchored = tail.iter().all(|&s| anchor.is_none_or(|a| s > a.seq));
    let torn_last = tail.len() == 1 && last_bytes_undecodable;
    if !(unanchored || torn_last) {
        let first = tail[0];
        return Err(refuse(&Error::corrupt(
            first,
            format!(
                "{} damaged records from {first} on are not a torn tail",
                tail.len()
            ),
        )));
    }
    let anchor = (head.seq > 0).then_some(Anchor {
        seq: head.seq,
        hash: head.hash,
    });
    log.append(&Batch {
        discard_from: Some(tail[0]),
        records: &[],
        anchor,
    })?;
    log.flush()?;
    Ok(RepairReport {
        removed: tail,
        last_seq: head.seq,
    })
}

fn refuse(e: &Error) -> Error {
    match e {
        Error::Corrupt { seq, reason } => Error::corrupt(
            *seq,
            format!("{reason}; repair removes only a torn tail, so restore this store from a backup"),
        ),
        other => other.replicate(),
    }
}
