//! Joining from a snapshot: a new host (an empty directory) takes the state from the
//! newest snapshot the hosts published, once the stream proves it, and replays only the
//! stream's tail; the history under the snapshot is fetched afterwards
//! (`replica/history.rs`) and proven by the store's verifier.
//!
//! The snapshot is the store's business (its format, its seal): the fleet sees it through
//! [`SnapshotSource`], and proves it by the stream alone. The message that holds the
//! snapshot's record is found by bisecting the stream; it is sealed with the chain key
//! and bound to its stream and position, and the record's chain hash in it must be the
//! snapshot's head. A snapshot the stream does not prove is refused (logged) and the host
//! replays the stream as a host without snapshots does.

use super::super::message::{self, Batch, Identity, Message, Unusable};
use super::history::History;
use crate::chain::{Chain, Head};
use crate::codec;
use crate::ledger::Ledger;
use crate::log::{Batch as LogBatch, Log, MetaKey, SharedLog};
use crate::model::error::Error;

/// A snapshot a new host may join from, as the store reads it.
pub(crate) trait SnapshotSource {
    /// Fetches the newest snapshot whose seal verifies and returns the head it stands at;
    /// `None` (and why, logged) if there is none.
    fn fetch(&mut self) -> Option<Head>;

    /// Puts the fetched snapshot's state into `ledger` and keeps it where the store keeps
    /// its snapshot. Called only once the stream proved its head.
    fn install(&mut self, ledger: &Ledger) -> Result<(), Error>;
}

/// Joins from `source`'s snapshot if the stream (whose genesis is `identity`, whose last
/// message is at `last`) proves it: the state goes into `ledger`, the message holding the
/// snapshot's record (and the records after it there) into the empty local `log`, with the
/// history still to fetch. Returns the position of that message and the history, or
/// `None` if there is no snapshot the stream proves.
///
/// # Errors
/// The stream's or the local log's; a refused snapshot is not an error.
pub(super) fn join(
    source: &mut dyn SnapshotSource,
    shared: &mut dyn SharedLog,
    log: &mut dyn Log,
    ledger: &Ledger,
    identity: &Identity,
    last: u64,
) -> Result<Option<(u64, History)>, Error> {
    let Some(head) = source.fetch() else {
        return Ok(None);
    };
    let refuse = |why: String| {
        tracing::warn!(
            target: "keyledger::fleet",
            seq = head.seq,
            "the published snapshot was refused ({why}): this host replays the stream"
        );
        Ok(None)
    };
    let chain = ledger.chain();
    let Some((position, batch)) = holding(shared, chain, identity, last, head.seq)? else {
        return refuse(format!("no message of the stream holds its record {}", head.seq));
    };
    if record_hash(chain, &batch, head.seq)? != Some(head.hash) {
        return refuse(format!(
            "record {} in stream message {position} has another chain hash",
            head.seq
        ));
    }
    if let Err(e) = source.install(ledger) {
        return refuse(format!("its state does not load: {e}"));
    }
    // The records after the snapshot's in the same message.
    ledger.accept(&batch.entries)?;
    let history = History {
        stream_id: identity.stream_id,
        next: identity.position + 1,
        through: position,
        fetched: 0,
        first: batch.first,
    };
    // The history first: a log that holds the entries holds what is missing under them.
    log.set_meta(MetaKey::History, &history.encode())?;
    log.set_meta(MetaKey::Position, &position.to_le_bytes())?;
    let encoded = ledger.encode_head(ledger.head())?;
    log.write(&LogBatch {
        discard_from: None,
        entries: &batch.entries,
        head: &encoded,
    })?;
    log.sync()?;
    tracing::info!(
        target: "keyledger::fleet",
        seq = head.seq,
        position,
        "joined from the published snapshot; the history under it is fetched in the background"
    );
    Ok(Some((position, history)))
}

/// The chain hash of record `seq` in `batch`.
fn record_hash(chain: &Chain, batch: &Batch, seq: u64) -> Result<Option<[u8; 32]>, Error> {
    for (key, bytes) in &batch.entries {
        for (s, record) in codec::entry_records(*key, bytes)? {
            if s == seq {
                return Ok(Some(chain.hash(record)));
            }
        }
    }
    Ok(None)
}

/// The stream's batch that holds record `seq`, and its position: bisected between the
/// genesis and `last` (messages that are not the fleet's are passed over).
fn holding(
    shared: &mut dyn SharedLog,
    chain: &Chain,
    identity: &Identity,
    last: u64,
    seq: u64,
) -> Result<Option<(u64, Batch)>, Error> {
    let (mut lo, mut hi) = (identity.position + 1, last);
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let Some((pos, batch)) = batch_from(shared, chain, identity, mid, hi)? else {
            // Nothing but others' messages from `mid` to `hi`.
            hi = mid - 1;
            continue;
        };
        if batch.last < seq {
            lo = pos + 1;
        } else if batch.first > seq {
            hi = mid - 1;
        } else {
            return Ok(Some((pos, batch)));
        }
    }
    Ok(None)
}

/// The first of the fleet's batches from position `from` to `to`, and its position.
pub(super) fn batch_from(
    shared: &mut dyn SharedLog,
    chain: &Chain,
    identity: &Identity,
    from: u64,
    to: u64,
) -> Result<Option<(u64, Batch)>, Error> {
    for pos in from..=to {
        match message::decode(&shared.get(pos)?, pos, Some(&identity.stream_id), chain) {
            Ok(Message::Entries(batch)) => return Ok(Some((pos, batch))),
            Err(Unusable::Foreign(_) | Unusable::Legacy) => {}
            Ok(Message::Genesis { .. }) => {
                return Err(Error::StreamDiverged {
                    position: pos,
                    reason: "a second genesis of this stream".into(),
                });
            }
            Err(Unusable::Broken(e)) => {
                return Err(Error::StreamDiverged {
                    position: pos,
                    reason: format!("the stream's message does not decode: {e}"),
                });
            }
        }
    }
    Ok(None)
}
