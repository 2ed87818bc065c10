//! Joining the stream: its genesis (found, or published in a stream that has none), the
//! local log checked as a prefix of it (or published as its beginning, a bootstrap, or the
//! rest of an interrupted one), the catch-up with its end, then the watch on its state and
//! the announcements. Refuses a local log that is not a prefix of the stream.

use std::sync::Arc;

use super::super::Fleet;
use super::super::message::{self, Identity, Message, Unusable};
use super::super::stream;
use super::history::History;
use super::snapshot::SnapshotSource;
use super::{HINT_LOOKBACK, Replica};
use crate::chain::Chain;
use crate::ledger::Ledger;
use crate::log::AppendError;
use crate::log::Entry;
use crate::log::Log;
use crate::log::MetaKey;
use crate::log::SharedLog;
use crate::model::error::Error;

impl Replica {
    /// Joins the stream: finds its genesis (or publishes one in a stream that has none),
    /// checks that the local log (at `ledger`'s head) is a prefix of it, publishes the
    /// local log as the stream's beginning if the stream holds no batch yet, then catches
    /// up with the stream's end and starts watching the stream's state. Refuses, naming
    /// the first difference, a local log that is not a prefix of the stream, and a stream
    /// that is not the one its genesis names ([`Error::StreamChanged`]).
    ///
    /// A new host (an empty log) given a `snapshot` joins from it if the stream proves it
    /// (`replica/snapshot.rs`): [`Replica::history`] then says what is still to fetch.
    pub(crate) fn join(
        mut shared: Box<dyn SharedLog>,
        fleet: Arc<Fleet>,
        log: &mut dyn Log,
        ledger: &Ledger,
        snapshot: Option<&mut dyn SnapshotSource>,
    ) -> Result<Self, Error> {
        let head = ledger.head();
        let chain = ledger.chain();
        let identity = stream::genesis(&mut *shared, fleet.host(), &fleet.options.stream, chain)?;
        fleet.set_stream_id(identity.stream_id);
        let last = shared.last()?;
        fleet.contact();
        let stored = log
            .meta(MetaKey::Position)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        let mut position = identity.position;
        let first = first_batch(&mut *shared, chain, &identity, last)?;
        let mut history = None;
        let pending = log.meta(MetaKey::History)?;
        if head.seq == 0 && pending.is_some() {
            // A join from a snapshot that never wrote its first entry: begun again.
            log.history_writer()?.write(&[], None)?;
            log.set_meta(MetaKey::Position, &[])?;
        }
        // A log that starts at a snapshot's message is a prefix of the stream from there.
        let base = pending
            .filter(|_| head.seq > 0)
            .and_then(|bytes| History::decode(&bytes))
            .map(|h| h.through);
        if let Some(source) = snapshot
            && head.seq == 0
            && stored == 0
            && first.is_some()
            && let Some((at, fetch)) =
                super::snapshot::join(source, &mut *shared, log, ledger, &identity, last)?
        {
            position = at;
            history = Some(fetch);
        } else if first.is_none() && head.seq > 0 {
            position = bootstrap(
                &mut *shared,
                log,
                fleet.host(),
                chain,
                &identity,
                (last, 0),
                head.seq,
            )?;
        } else if head.seq > 0 || stored > 0 {
            position = match find_prefix(
                &mut *shared,
                log,
                chain,
                &identity,
                (head.seq, base),
                stored,
                last,
            )? {
                Prefix::At(position) => position,
                // This host's own bootstrap, cut short (a crash, an unanswered append):
                // published on from where the stream ends.
                Prefix::UnfinishedBootstrap { position, through } if through.1 == fleet.host() => bootstrap(
                    &mut *shared,
                    log,
                    fleet.host(),
                    chain,
                    &identity,
                    (position, through.0),
                    head.seq,
                )?,
                Prefix::UnfinishedBootstrap { position, through } => {
                    return Err(Error::StreamDiverged {
                        position: position + 1,
                        reason: format!(
                            "this host's log runs ahead of the stream, which host {} is still bootstrapping \
                             (its messages reach record {})",
                            through.1, through.0
                        ),
                    });
                }
            };
        }
        // A stream begun by a bootstrap says, in its first batch, the record the
        // bootstrap reaches: until a host has it, it takes no write.
        let end = shared.last()?;
        if let Some(first) = first_batch(&mut *shared, chain, &identity, end)? {
            fleet.bootstrapped_through(first.bootstrap);
        }
        let incoming = shared.follow(position + 1)?;
        let mut replica = Replica {
            shared,
            fleet,
            identity,
            position,
            incoming,
            own: None,
            unsynced: 0,
            stalled: false,
            announcing: false,
            recorded: None,
            history,
        };
        replica.set_position(log, position)?;
        // What the log held at open is on disk: announced as it is.
        let head = ledger.head();
        replica.fleet.set_sync(log.sync_handle()?, head, position);
        replica.fleet.applied(head, position);
        // A message that cannot be applied halts writes; the host still opens, verifying
        // from what it has, and says why in its status.
        // Twice: what was appended during a long catch-up is applied too before this host
        // starts announcing (and serving).
        for _ in 0..2 {
            let end = replica.shared.last()?;
            match replica.catch_up(log, ledger, end.max(last)) {
                Ok(()) => {}
                Err(Error::FleetHalted { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        replica.watch()?;
        let fleet = Arc::clone(&replica.fleet);
        replica.announcing = true;
        replica.shared.announce(fleet)?;
        Ok(replica)
    }
}

/// Publishes the local log (reaching record `through`) as the beginning of a stream that
/// holds no batch yet, after stream position `after` (its genesis, and anything that is
/// not the fleet's), in messages of at most the stream's size, each saying `through`; or,
/// after an interrupted bootstrap, the rest of it: the entries after record `published`.
/// Returns the last position.
fn bootstrap(
    shared: &mut dyn SharedLog,
    log: &mut dyn Log,
    origin: &str,
    chain: &Chain,
    identity: &Identity,
    (after, published): (u64, u64),
    through: u64,
) -> Result<u64, Error> {
    let limit = shared.max_message_bytes().saturating_sub(1024).max(64 << 10);
    let mut position = after;
    let mut pending: Vec<Entry> = Vec::new();
    let mut bytes = 0;
    let mut flush = |pending: &mut Vec<Entry>, position: &mut u64| -> Result<(), Error> {
        if pending.is_empty() {
            return Ok(());
        }
        let message =
            message::encode_entries(origin, identity.stream_id, *position + 1, through, pending, chain)?;
        *position = match shared.append(*position, &message) {
            Ok(at) => at,
            Err(AppendError::Conflict) => {
                return Err(Error::StreamDiverged {
                    position: *position + 1,
                    reason: "another host began the stream while this one published its log".into(),
                });
            }
            Err(AppendError::TooLarge { limit }) => {
                return Err(Error::invalid(
                    "stream",
                    format!("a log entry does not fit in a stream message of {limit} bytes"),
                ));
            }
            Err(AppendError::Uncertain(e)) => {
                return Err(Error::StreamUnavailable {
                    reason: e.to_string(),
                });
            }
        };
        pending.clear();
        Ok(())
    };
    // Streamed: a message's worth of entries in memory at a time, whatever the log's size.
    for entry in log.scan(published + 1) {
        let entry = entry?;
        if bytes + entry.1.len() + 16 > limit && !pending.is_empty() {
            flush(&mut pending, &mut position)?;
            bytes = 0;
        }
        bytes += entry.1.len() + 16;
        pending.push(entry);
    }
    flush(&mut pending, &mut position)?;
    Ok(position)
}

/// Checks that the local log, ending at record `head`, is a prefix of the stream, and
/// returns the position of the message that ends at its head. Reads from the stored
/// position (a hint, checked) when there is one, else from the stream's genesis. Messages
/// that are not the fleet's are passed over, as every host passes over them.
fn find_prefix(
    shared: &mut dyn SharedLog,
    log: &mut dyn Log,
    chain: &Chain,
    identity: &Identity,
    (head, base): (u64, Option<u64>),
    stored: u64,
    last: u64,
) -> Result<Prefix, Error> {
    let diverged = |position: u64, reason: String| Error::StreamDiverged { position, reason };
    let ours = Some(&identity.stream_id);
    // The stored position is where the previous run stopped; the batch there must end at
    // or before the head (a crash may have left the hint one message behind). The hint may
    // be a skipped message: the nearest batch before it, looking a bounded way back. A log
    // that joined from a snapshot and lacks the history under it (`base`: the position of
    // the message it starts with) is compared from there, never from the genesis.
    let mut from = base.unwrap_or(identity.position + 1);
    let lowest = stored.saturating_sub(HINT_LOOKBACK).max(from);
    for pos in (lowest..=stored.min(last)).rev() {
        match message::decode(&shared.get(pos)?, pos, ours, chain) {
            Ok(Message::Entries(m)) => {
                if m.last <= head {
                    from = pos;
                }
                break;
            }
            Err(Unusable::Foreign(_) | Unusable::Legacy) => {}
            Ok(Message::Genesis { .. }) | Err(Unusable::Broken(_)) => break,
        }
    }
    if head == 0 {
        return Ok(Prefix::At(identity.position));
    }
    let mut position = from - 1;
    let mut unfinished: Option<(u64, String)> = None;
    for pos in from..=last {
        let m = match message::decode(&shared.get(pos)?, pos, ours, chain) {
            Ok(Message::Entries(m)) => m,
            Err(Unusable::Foreign(_) | Unusable::Legacy) => {
                position = pos;
                continue;
            }
            Ok(Message::Genesis { .. }) => {
                return Err(diverged(pos, "a second genesis of this stream".into()));
            }
            Err(Unusable::Broken(e)) => {
                return Err(diverged(
                    pos,
                    format!("the stream's message does not decode: {e}"),
                ));
            }
        };
        if m.first > head + 1 {
            return Err(diverged(
                pos,
                format!("the stream skips from record {} to {}", head + 1, m.first),
            ));
        }
        if m.first == head + 1 {
            return Ok(Prefix::At(position));
        }
        for (key, bytes) in &m.entries {
            let mine = log.floor(*key)?.filter(|(k, _)| k == key);
            match mine {
                Some((_, local)) if &local == bytes => {}
                Some(_) => {
                    return Err(diverged(
                        pos,
                        format!("record {key} differs between the stream and this host's log"),
                    ));
                }
                None => {
                    return Err(diverged(
                        pos,
                        format!("this host's log has no entry at record {key}, which the stream has"),
                    ));
                }
            }
        }
        position = pos;
        unfinished = (m.bootstrap == head).then(|| (m.last, m.origin.clone()));
        if m.last == head {
            return Ok(Prefix::At(position));
        }
        if m.last > head {
            return Err(diverged(
                pos,
                format!(
                    "the stream's message holds records {}..={} across this host's head at {head}",
                    m.first, m.last
                ),
            ));
        }
    }
    if let Some(through) = unfinished {
        return Ok(Prefix::UnfinishedBootstrap { position, through });
    }
    Err(diverged(
        last + 1,
        format!(
            "this host's log runs ahead of the stream: it holds records the stream does not (its head is record {head})"
        ),
    ))
}

/// Where a local log stands in the stream.
enum Prefix {
    /// A prefix of it, ending with the message at this position.
    At(u64),
    /// Ahead of it, where the stream is a bootstrap of exactly this log cut short: its
    /// messages up to `position` reach record `through.0`, published by host `through.1`.
    UnfinishedBootstrap { position: u64, through: (u64, String) },
}

/// The stream's first batch after its genesis, up to position `last`; `None` while it
/// holds none (only its genesis, and messages that are not the fleet's).
fn first_batch(
    shared: &mut dyn SharedLog,
    chain: &Chain,
    identity: &Identity,
    last: u64,
) -> Result<Option<message::Batch>, Error> {
    Ok(
        super::snapshot::batch_from(shared, chain, identity, identity.position + 1, last)?
            .map(|(_, batch)| batch),
    )
}
