//! Replay: reading the log after the state's head, on a reader thread that splits and
//! hashes blocks ahead of the ledger, which accepts them in order.
//!
//! It goes through the ledger's own acceptance and never changes the log.

use super::{Ledger, accept_hashed};
use crate::chain::Chain;
use crate::codec;
use crate::log::LogRead;
use crate::model::error::Error;
use crate::model::problem::Progress;

impl Ledger {
    /// Replays the records of `log` after the head and up to record `until` onto the
    /// state. The stored head is not compared: see [`reaches_head`](super::reaches_head).
    pub(crate) fn replay(
        &self,
        log: &dyn LogRead,
        until: u64,
        total: u64,
        progress: &Progress,
    ) -> Result<(), Error> {
        let mut proj = self.write_state();
        let after = proj.head().seq;
        // The entry that holds the first record wanted may start before it (a snapshot
        // can end inside a block).
        let from = match after {
            0 => 0,
            _ => log.floor(after + 1)?.map_or(after + 1, |e| e.0),
        };
        let now = self.clock.now_micros();
        let mut reported = after;
        report(progress, after, total);
        // Two stages on two threads: reading the engine's pages, splitting blocks and
        // hashing records runs ahead of decoding, checking and applying them in order.
        std::thread::scope(|s| {
            let (tx, rx) = crossbeam_channel::bounded::<Vec<ReadEntry>>(4);
            let chain = &self.chain;
            s.spawn(move || read_ahead(log, chain, from, until, &tx));
            for batch in rx {
                for item in batch {
                    let entry = item?;
                    for (seq, range, hash) in entry.records {
                        if seq <= proj.head().seq {
                            continue;
                        }
                        accept_hashed(&mut proj, seq, &entry.bytes[range], hash, now)?;
                    }
                    let seq = proj.head().seq;
                    if seq >= reported + PROGRESS_EVERY {
                        reported = seq;
                        report(progress, seq, total);
                    }
                }
            }
            Ok::<(), Error>(())
        })?;
        report(progress, proj.head().seq, total);
        Ok(())
    }
}

/// An entry read from the log, split into records and hashed: for each record its
/// sequence number, where it is in `bytes`, and its chain hash.
struct HashedEntry {
    bytes: Vec<u8>,
    records: Vec<(u64, std::ops::Range<usize>, [u8; 32])>,
}

type ReadEntry = Result<HashedEntry, Error>;

const PROGRESS_EVERY: u64 = 16_384;
/// The reader hands over entries in batches of about this many bytes.
const READ_AHEAD_BYTES: usize = 256 << 10;
const READ_AHEAD_ENTRIES: usize = 1024;

pub(crate) fn report(progress: &Progress, done: u64, total: u64) {
    if let Some(f) = progress {
        f(done, total.max(done));
    }
}

/// Splits an entry into records and hashes each (records past `until` are left out).
fn hash_entry(chain: &Chain, key: u64, bytes: Vec<u8>, until: u64) -> ReadEntry {
    let base = bytes.as_ptr() as usize;
    let records = codec::entry_records(key, &bytes)?
        .into_iter()
        .take_while(|(seq, _)| *seq <= until)
        .map(|(seq, record)| {
            let start = record.as_ptr() as usize - base;
            (seq, start..start + record.len(), chain.hash(record))
        })
        .collect();
    Ok(HashedEntry { bytes, records })
}

/// Reads entries from `from` on (up to the one holding record `until`), splits and hashes
/// them, and hands them over in batches, until the log ends, a read fails, or the receiver
/// hangs up.
fn read_ahead(
    log: &dyn LogRead,
    chain: &Chain,
    from: u64,
    until: u64,
    tx: &crossbeam_channel::Sender<Vec<ReadEntry>>,
) {
    let mut batch = Vec::with_capacity(READ_AHEAD_ENTRIES);
    let mut bytes = 0;
    for item in log.scan(from) {
        if matches!(item, Ok((key, _)) if key > until) {
            break;
        }
        let item = item
            .map_err(Error::from)
            .and_then(|(key, value)| hash_entry(chain, key, value, until));
        let failed = item.is_err();
        bytes += item.as_ref().map_or(0, |e| e.bytes.len());
        batch.push(item);
        if failed || batch.len() == READ_AHEAD_ENTRIES || bytes >= READ_AHEAD_BYTES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_AHEAD_ENTRIES));
            bytes = 0;
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
