//! The stream under a fleet, as the server shows it: its genesis (found, or published in a
//! stream that has none), and whether it is still the stream the fleet wrote, with
//! settings that keep every message.
//!
//! It judges and records; it never stops a write itself ([`super::replica`] does, reading
//! [`StreamWatch::fault`]) and never touches the local log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::message::{self, Identity, Message, Unusable};
use crate::chain::Chain;
use crate::log::AppendError;
use crate::log::SharedLog;
use crate::log::StreamState;
use crate::model::error::Error;

/// How many times a host tries to publish a genesis that another host beats it to.
const GENESIS_RACES: usize = 16;

/// Why the stream is not one to write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamFault {
    /// The server has no such stream any more.
    Deleted,
    /// A stream of that name, created at another time than the genesis names: deleted and
    /// created again (whatever was put back in it).
    Replaced { created: i64, expected: i64 },
    /// The stream ends before the last message this host applied.
    RolledBack { last: u64, applied: u64 },
    /// Messages were removed (purged or deleted).
    Removed { missing: u64 },
    /// Settings that let messages go or other subjects in.
    Settings(String),
}

impl std::fmt::Display for StreamFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFault::Deleted => f.write_str("the stream was deleted"),
            StreamFault::Replaced { created, expected } => write!(
                f,
                "the stream was replaced: it was created at {created} ns, its genesis names a stream created at \
                 {expected} ns (deleted and created again)"
            ),
            StreamFault::RolledBack { last, applied } => write!(
                f,
                "the stream was rolled back: it ends at message {last}, before message {applied}, which this host \
                 applied"
            ),
            StreamFault::Removed { missing } => {
                write!(f, "{missing} messages were removed from the stream")
            }
            StreamFault::Settings(why) => write!(f, "the stream's settings changed: it {why}"),
        }
    }
}

/// Judges the stream's state (`None`: it does not exist) against its genesis and the last
/// position this host had applied before the state was read.
pub(crate) fn judge(state: Option<&StreamState>, identity: &Identity, applied: u64) -> Option<StreamFault> {
    let Some(state) = state else {
        return Some(StreamFault::Deleted);
    };
    if state.created != identity.created {
        return Some(StreamFault::Replaced {
            created: state.created,
            expected: identity.created,
        });
    }
    if state.last < applied {
        return Some(StreamFault::RolledBack {
            last: state.last,
            applied,
        });
    }
    let missing = state.last.saturating_sub(state.messages);
    if missing > 0 {
        return Some(StreamFault::Removed { missing });
    }
    state.unsafe_settings.clone().map(StreamFault::Settings)
}

/// What this host knows of the stream's state: a fault, since when, and the messages it
/// skipped because they were not the fleet's.
#[derive(Default)]
pub(crate) struct StreamWatch {
    fault: Mutex<Option<(StreamFault, Instant)>>,
    foreign: AtomicU64,
    last_foreign: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StreamWatch {
    /// Records the stream's fault now (`None`: the stream is right again). A fault that
    /// persists keeps the time it began, also when it changes (deleted, then replaced):
    /// whoever can edit the stream must not be able to put off the staleness limit, which
    /// counts from that time, by changing the fault's kind. A rollback stays until this
    /// host restarts: the stream lost messages this host applied, and a stream grown past
    /// them again (with anything) is still not the one they were in.
    pub(crate) fn set_fault(&self, fault: Option<StreamFault>) {
        let mut current = lock(&self.fault);
        match (current.as_ref(), fault) {
            (Some((StreamFault::RolledBack { .. }, _)), _) => {}
            (Some((_, since)), Some(new)) => *current = Some((new, *since)),
            (None, Some(new)) => *current = Some((new, Instant::now())),
            (_, None) => *current = None,
        }
    }

    /// Why the stream is not one to write to, if it is not.
    pub(crate) fn fault(&self) -> Option<String> {
        lock(&self.fault).as_ref().map(|(f, _)| f.to_string())
    }

    /// When the current fault began.
    pub(crate) fn fault_since(&self) -> Option<Instant> {
        lock(&self.fault).as_ref().map(|(_, since)| *since)
    }

    /// A message that is not the fleet's was skipped.
    pub(crate) fn foreign(&self, why: String) {
        self.foreign.fetch_add(1, Ordering::AcqRel);
        *lock(&self.last_foreign) = Some(why);
    }

    /// How many messages that are not the fleet's this host skipped since it started, and
    /// why it skipped the last one.
    pub(crate) fn foreign_seen(&self) -> (u64, Option<String>) {
        (
            self.foreign.load(Ordering::Acquire),
            lock(&self.last_foreign).clone(),
        )
    }
}

/// What message `pos` says of the stream's genesis: it is the genesis (`Some`), it is not
/// the fleet's (`None`: look further), or the stream cannot be the fleet's.
fn genesis_at(
    bytes: &[u8],
    pos: u64,
    state: &StreamState,
    name: &str,
    chain: &Chain,
) -> Result<Option<Identity>, Error> {
    match message::decode(bytes, pos, None, chain) {
        Ok(Message::Genesis {
            stream_id, created, ..
        }) if created == state.created => Ok(Some(Identity {
            stream_id,
            created,
            position: pos,
        })),
        Ok(Message::Genesis { created, .. }) => Err(Error::StreamChanged {
            reason: StreamFault::Replaced {
                created: state.created,
                expected: created,
            }
            .to_string(),
        }),
        Ok(Message::Entries(_)) => Err(Error::StreamChanged {
            reason: format!(
                "stream {name} holds the fleet's records at message {pos} with no genesis before it: it was \
                 replaced, and messages of another stream put in it"
            ),
        }),
        Err(Unusable::Legacy) => Err(Error::invalid(
            "stream",
            format!(
                "stream {name} holds a keyledger 0.4.0 log (stream message version 1, bound to no stream): move \
                 the fleet to a new stream (docs/design.md, \"Format versions\")"
            ),
        )),
        Err(Unusable::Foreign(_)) => Ok(None),
        Err(Unusable::Broken(e)) => Err(e),
    }
}

/// The genesis among a stream's first `messages` (position, bytes), for `keyledger
/// fleet`, which reads without joining and publishes nothing; `Err` says why there is
/// none to trust.
#[cfg(feature = "nats")]
pub(crate) fn find_genesis(
    messages: &[(u64, Vec<u8>)],
    state: &StreamState,
    name: &str,
    chain: &Chain,
) -> Result<Identity, String> {
    for (pos, bytes) in messages {
        match genesis_at(bytes, *pos, state, name, chain) {
            Ok(Some(identity)) => return Ok(identity),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "no genesis of this fleet among the stream's first {} messages",
        messages.len()
    ))
}

/// Finds the stream's genesis: the first of the fleet's messages, sealed for its position
/// (messages before it that are not the fleet's are passed over). A stream with none gets
/// one, naming a fresh random id and the stream's creation time; of hosts publishing one
/// at once, the first wins and the others take it.
///
/// # Errors
/// [`Error::StreamChanged`] when the genesis names another creation time than the stream's
/// (the stream was deleted and created again, its messages put back) or a batch of the
/// fleet comes before any genesis; [`Error::InvalidInput`] (field `stream`) for a stream
/// of keyledger 0.4.0 (message version 1); [`Error::StreamUnavailable`] if the server
/// does not answer or has no such stream.
pub(crate) fn genesis(
    shared: &mut dyn SharedLog,
    host: &str,
    name: &str,
    chain: &Chain,
) -> Result<Identity, Error> {
    for _ in 0..GENESIS_RACES {
        let state = shared.inspect()?.ok_or_else(|| Error::StreamUnavailable {
            reason: format!("the server has no stream {name}"),
        })?;
        for pos in state.first.max(1)..=state.last {
            if let Some(identity) = genesis_at(&shared.get(pos)?, pos, &state, name, chain)? {
                return Ok(identity);
            }
        }
        let identity = Identity {
            stream_id: message::new_stream_id()?,
            created: state.created,
            position: state.last + 1,
        };
        let genesis = message::encode_genesis(host, &identity, chain)?;
        let mut appended = shared.append(state.last, &genesis);
        if matches!(appended, Err(AppendError::Uncertain(_))) {
            appended = shared.append(state.last, &genesis);
        }
        match appended {
            Ok(_) => return Ok(identity),
            // Another host (or anyone) appended first: look again.
            Err(AppendError::Conflict) => {}
            Err(AppendError::TooLarge { limit }) => {
                return Err(Error::invalid(
                    "stream",
                    format!("a genesis does not fit in a stream message of {limit} bytes"),
                ));
            }
            Err(AppendError::Uncertain(e)) => {
                return Err(Error::StreamUnavailable {
                    reason: e.to_string(),
                });
            }
        }
    }
    Err(Error::StreamUnavailable {
        reason: format!("stream {name} kept moving while this host looked for its genesis"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last: u64, messages: u64, created: i64) -> StreamState {
        StreamState {
            first: 1,
            last,
            messages,
            created,
            unsafe_settings: None,
        }
    }

    #[test]
    fn a_stream_deleted_replaced_rolled_back_emptied_or_loosened_is_a_fault() {
        let identity = Identity {
            stream_id: [1; 16],
            created: 100,
            position: 1,
        };
        assert_eq!(judge(Some(&state(9, 9, 100)), &identity, 9), None);
        assert_eq!(judge(Some(&state(12, 12, 100)), &identity, 9), None);
        assert_eq!(judge(None, &identity, 9), Some(StreamFault::Deleted));
        assert!(matches!(
            judge(Some(&state(9, 9, 101)), &identity, 9),
            Some(StreamFault::Replaced { .. })
        ));
        assert_eq!(
            judge(Some(&state(5, 5, 100)), &identity, 9),
            Some(StreamFault::RolledBack { last: 5, applied: 9 })
        );
        assert_eq!(
            judge(Some(&state(9, 0, 100)), &identity, 9),
            Some(StreamFault::Removed { missing: 9 })
        );
        let mut loose = state(9, 9, 100);
        loose.unsafe_settings = Some("has limits".into());
        assert!(matches!(
            judge(Some(&loose), &identity, 9),
            Some(StreamFault::Settings(_))
        ));
    }

    /// Junk before any genesis is passed over and a genesis published after it, which the
    /// next host takes; a stream that begins with a version 1 message (0.4.0) is refused.
    #[test]
    fn a_genesis_follows_junk_is_shared_and_a_version_1_stream_is_refused() {
        let chain = Chain::new(Some(&crate::chain::ChainKey::from_bytes([9; 32])));
        let shared = crate::log::memory::MemShared::default();
        shared.inject(b"x".to_vec());
        let first = genesis(&mut shared.clone(), "a", "s", &chain).unwrap();
        assert_eq!(first.position, 2);
        assert_eq!(genesis(&mut shared.clone(), "b", "s", &chain).unwrap(), first);

        let old = crate::log::memory::MemShared::default();
        let v1 = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/message-v1.bin"
        ))
        .unwrap();
        old.inject(v1);
        assert!(matches!(
            genesis(&mut old.clone(), "a", "s", &chain),
            Err(Error::InvalidInput { field: "stream", .. })
        ));
    }

    #[test]
    fn a_fault_keeps_its_start_while_it_lasts_whatever_its_kind_and_clears_unless_a_rollback() {
        let watch = StreamWatch::default();
        watch.set_fault(Some(StreamFault::Deleted));
        let since = watch.fault_since().unwrap();
        watch.set_fault(Some(StreamFault::Deleted));
        assert_eq!(watch.fault_since(), Some(since));
        std::thread::sleep(std::time::Duration::from_millis(2));
        watch.set_fault(Some(StreamFault::Removed { missing: 1 }));
        assert_eq!(
            watch.fault_since(),
            Some(since),
            "another kind of fault keeps the start"
        );
        assert!(watch.fault().unwrap().contains("removed"));
        watch.set_fault(None);
        assert_eq!(watch.fault(), None);
        watch.set_fault(Some(StreamFault::RolledBack { last: 1, applied: 2 }));
        watch.set_fault(None);
        assert!(watch.fault().is_some(), "a rollback stays");
        watch.foreign("x".into());
        assert_eq!(watch.foreign_seen(), (1, Some("x".into())));
    }
}
