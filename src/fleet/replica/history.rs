//! The history under a snapshot a host joined from: the stream's messages before the one
//! its local log starts with, fetched after the host opened, written under its first entry,
//! then proven (the records replayed must give the state the snapshot holds: the store's
//! verifier). What is still to fetch is kept in the local log's metadata
//! ([`MetaKey::History`](crate::log::MetaKey::History)), so a restart resumes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::super::message::{self, Message, Unusable};
use super::super::offline::Connect;
use crate::chain::Chain;
use crate::log::{Entry, HistoryWrite, SharedLog};
use crate::model::error::Error;
use crate::model::problem::ProblemKind;

const MAGIC: [u8; 8] = *b"KLHISTO\0";
const VERSION: u16 = 1;
/// Magic, version u16, stream id, next position u64, through position u64, records
/// fetched u64, first record u64.
const LEN: usize = 8 + 2 + 16 + 8 + 8 + 8 + 8;
/// Entries are written (and the state saved) once this many bytes were fetched.
const WRITE_BYTES: usize = 8 << 20;
/// How long the fetch waits before it connects again after the stream did not answer.
const RETRY: Duration = Duration::from_secs(2);

/// What is still to fetch; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct History {
    /// The stream the history is read from (its genesis names it).
    pub(crate) stream_id: [u8; 16],
    /// The next stream position to read.
    pub(crate) next: u64,
    /// The position of the message the local log starts with: the fetch ends before it.
    pub(crate) through: u64,
    /// How many records were fetched (records 1 to this are in the local log).
    pub(crate) fetched: u64,
    /// The record the local log's first entry starts at: the fetch must reach the one
    /// before it.
    pub(crate) first: u64,
}

impl History {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.stream_id);
        for n in [self.next, self.through, self.fetched, self.first] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// `None` for bytes that are not a version this build writes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (magic, rest) = bytes.split_first_chunk::<8>()?;
        let (version, rest) = rest.split_first_chunk::<2>()?;
        if bytes.len() != LEN || *magic != MAGIC || u16::from_le_bytes(*version) != VERSION {
            return None;
        }
        let (stream_id, rest) = rest.split_first_chunk::<16>()?;
        let (next, rest) = rest.split_first_chunk::<8>()?;
        let (through, rest) = rest.split_first_chunk::<8>()?;
        let (fetched, rest) = rest.split_first_chunk::<8>()?;
        let (first, _) = rest.split_first_chunk::<8>()?;
        Some(History {
            stream_id: *stream_id,
            next: u64::from_le_bytes(*next),
            through: u64::from_le_bytes(*through),
            fetched: u64::from_le_bytes(*fetched),
            first: u64::from_le_bytes(*first),
        })
    }

    /// Whether every message before the local log's first was read.
    pub(crate) fn is_fetched(&self) -> bool {
        self.next >= self.through
    }
}

/// Fetches the history `state` names into the local log through `log`, connecting with
/// `connect` (again, after [`RETRY`], while the stream does not answer). Returns when it is
/// all written, or `Ok(false)` once `cancel` is set.
///
/// # Errors
/// [`Error::Corrupt`] if the stream's messages do not make the records before the local
/// log's first, in order: the history cannot be proven. Storage errors.
pub(crate) fn fetch(
    connect: &mut Connect,
    log: &mut dyn HistoryWrite,
    chain: &Chain,
    mut state: History,
    cancel: &AtomicBool,
) -> Result<bool, Error> {
    while !state.is_fetched() {
        if cancel.load(Ordering::Acquire) {
            return Ok(false);
        }
        let mut shared = match connect() {
            Ok(shared) => shared,
            Err(Error::StreamUnavailable { reason }) => {
                tracing::warn!(target: "keyledger::fleet", "fetching the history under the snapshot: {reason}; trying again");
                wait(cancel);
                continue;
            }
            Err(e) => return Err(e),
        };
        match fetch_from(&mut *shared, log, chain, &mut state, cancel) {
            Ok(()) => {}
            Err(Error::StreamUnavailable { reason }) => {
                tracing::warn!(target: "keyledger::fleet", "fetching the history under the snapshot: {reason}; trying again");
                wait(cancel);
            }
            Err(e) => return Err(e),
        }
    }
    if state.fetched + 1 != state.first {
        return Err(Error::corrupt(
            state.fetched + 1,
            ProblemKind::Removed,
            format!(
                "the stream's messages before the one this host joined at end at record {}, but its log starts at record {}",
                state.fetched, state.first
            ),
        ));
    }
    Ok(true)
}

fn wait(cancel: &AtomicBool) {
    let until = std::time::Instant::now() + RETRY;
    while std::time::Instant::now() < until && !cancel.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads and writes on one connection until done, cancelled, or the stream fails.
fn fetch_from(
    shared: &mut dyn SharedLog,
    log: &mut dyn HistoryWrite,
    chain: &Chain,
    state: &mut History,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let mut pending: Vec<Entry> = Vec::new();
    let mut bytes = 0;
    while !state.is_fetched() && !cancel.load(Ordering::Acquire) {
        let pos = state.next;
        match message::decode(&shared.get(pos)?, pos, Some(&state.stream_id), chain) {
            Ok(Message::Entries(m)) => {
                if m.first != state.fetched + 1 || m.last >= state.first {
                    return Err(Error::corrupt(
                        state.fetched + 1,
                        ProblemKind::Inserted,
                        format!(
                            "stream message {pos} holds records {}..={}, but the history fetched ends at record {} \
                             and the log starts at record {}",
                            m.first, m.last, state.fetched, state.first
                        ),
                    ));
                }
                bytes += m.entries.iter().map(|e| e.1.len()).sum::<usize>();
                state.fetched = m.last;
                pending.extend(m.entries);
            }
            // Skipped, as every host skips them.
            Err(Unusable::Foreign(_) | Unusable::Legacy) => {}
            Ok(Message::Genesis { .. }) => {
                return Err(Error::corrupt(
                    state.fetched + 1,
                    ProblemKind::Inserted,
                    format!("stream message {pos} is a second genesis of this stream"),
                ));
            }
            Err(Unusable::Broken(e)) => return Err(e),
        }
        state.next = pos + 1;
        if bytes >= WRITE_BYTES || state.is_fetched() {
            log.write(&pending, Some(&state.encode()))?;
            pending.clear();
            bytes = 0;
        }
    }
    if !pending.is_empty() {
        log.write(&pending, Some(&state.encode()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::block::BlockWriter;
    use crate::log::memory::{MemLog, MemShared};
    use crate::log::{LogRead, MetaKey};

    const ID: [u8; 16] = [5; 16];

    fn chain() -> Chain {
        Chain::new(Some(&crate::chain::ChainKey::from_bytes([9; 32])))
    }

    fn block_at(first: u64, records: usize) -> Entry {
        let mut block = BlockWriter::new(first);
        for i in 0..records {
            block.push(format!("record {}", first + i as u64).as_bytes());
        }
        block.finish()
    }

    /// A stream whose messages 1..=4 hold records 1..=3, something not the fleet's
    /// (another stream's), records 4..=5, and 6..=8 (where the local log starts).
    fn stream(chain: &Chain) -> MemShared {
        let shared = MemShared::default();
        let batch = |pos, first, n, id| encode_entries_at(chain, pos, first, n, id);
        shared.inject(batch(1, 1, 3, ID));
        shared.inject(batch(2, 1, 2, [6; 16]));
        shared.inject(batch(3, 4, 2, ID));
        shared.inject(batch(4, 6, 3, ID));
        shared
    }

    fn encode_entries_at(chain: &Chain, pos: u64, first: u64, n: usize, id: [u8; 16]) -> Vec<u8> {
        message::encode_entries("a", id, pos, 0, &[block_at(first, n)], chain).unwrap()
    }

    fn connect(shared: &MemShared) -> Connect {
        let shared = shared.clone();
        Box::new(move || Ok(Box::new(shared.clone()) as Box<dyn SharedLog>))
    }

    fn start() -> History {
        History {
            stream_id: ID,
            next: 1,
            through: 4,
            fetched: 0,
            first: 6,
        }
    }

    fn keys(log: &MemLog) -> Vec<u64> {
        log.scan(0).map(|e| e.unwrap().0).collect()
    }

    /// The messages before the log's first are written under it, the other stream's
    /// skipped; the state saved says all is fetched. Resumed from a saved state, only
    /// the rest is read.
    #[test]
    fn the_history_is_fetched_in_order_and_resumed_where_it_stopped() {
        let chain = chain();
        let shared = stream(&chain);
        let log = MemLog::default();
        let done = fetch(
            &mut connect(&shared),
            &mut log.clone(),
            &chain,
            start(),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(done);
        assert_eq!(keys(&log), vec![1, 4]);
        let saved = History::decode(&log.meta(MetaKey::History).unwrap().unwrap()).unwrap();
        assert_eq!((saved.next, saved.fetched), (4, 5));

        let resumed = MemLog::default();
        let midway = History {
            next: 2,
            fetched: 3,
            ..start()
        };
        assert!(
            fetch(
                &mut connect(&shared),
                &mut resumed.clone(),
                &chain,
                midway,
                &AtomicBool::new(false)
            )
            .unwrap()
        );
        assert_eq!(keys(&resumed), vec![4], "only what was not fetched yet");
    }

    /// Records that do not follow what was fetched, or that reach into the log's own, make
    /// the history unprovable: an error, not a log with a hole.
    #[test]
    fn a_stream_whose_records_do_not_line_up_is_refused() {
        let chain = chain();
        let shared = stream(&chain);
        let skipped = History {
            fetched: 1,
            ..start()
        };
        let e = fetch(
            &mut connect(&shared),
            &mut MemLog::default(),
            &chain,
            skipped,
            &AtomicBool::new(false),
        );
        assert!(matches!(e, Err(Error::Corrupt { .. })), "{e:?}");
        let short = History { first: 5, ..start() };
        let e = fetch(
            &mut connect(&shared),
            &mut MemLog::default(),
            &chain,
            short,
            &AtomicBool::new(false),
        );
        assert!(matches!(e, Err(Error::Corrupt { .. })), "{e:?}");
        // The messages before the log's end at record 5, the log starts at 9: a hole.
        let hole = History { first: 9, ..start() };
        let e = fetch(
            &mut connect(&shared),
            &mut MemLog::default(),
            &chain,
            hole,
            &AtomicBool::new(false),
        );
        assert!(matches!(e, Err(Error::Corrupt { .. })), "{e:?}");
        let log = MemLog::default();
        let e = fetch(
            &mut connect(&shared),
            &mut log.clone(),
            &chain,
            start(),
            &AtomicBool::new(true),
        );
        assert!(matches!(e, Ok(false)), "cancelled");
        assert!(keys(&log).is_empty());
    }

    #[test]
    fn the_state_round_trips_and_anything_else_is_not_read() {
        let state = History {
            stream_id: [7; 16],
            next: 3,
            through: 170,
            fetched: 12_000,
            first: 994_001,
        };
        let bytes = state.encode();
        assert_eq!(History::decode(&bytes), Some(state));
        assert_eq!(History::decode(&bytes[..LEN - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(History::decode(&longer), None);
        let mut other = bytes.clone();
        other[8] = 2;
        assert_eq!(History::decode(&other), None, "another version");
        other = bytes;
        other[0] ^= 1;
        assert_eq!(History::decode(&other), None, "another magic");
    }
}
