//! A host started while its shared log was out of reach: it verifies keys from its
//! replica under the staleness limits, counted from the replica's record of the last time
//! the fleet heard it (`fleet/contact.rs`), takes no write, and joins as soon as the shared
//! log answers. [`Rejoin`] tries to reach it every heartbeat on a thread of its own and
//! hands each connection to the writer, which joins on its own thread (it alone writes the
//! local log). A host whose replica holds no such record does not start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError};

use super::contact::LastHeard;
use super::replica::Replica;
use super::{Fleet, UsageStatus};
use crate::ledger::Ledger;
use crate::log::Log;
use crate::log::MetaKey;
use crate::log::SharedLog;
use crate::model::error::Error;
use crate::projection::share::ShareGate;

/// Connects to the shared log, as often as asked.
pub(crate) type Connect = Box<dyn FnMut() -> Result<Box<dyn SharedLog>, Error> + Send>;

/// See the module doc: the writer's side of a host that has not joined yet.
pub(crate) struct Rejoin {
    fleet: Arc<Fleet>,
    /// Each connection made, for the writer to join with.
    pub(crate) connected: Receiver<Box<dyn SharedLog>>,
    stop: Arc<AtomicBool>,
}

impl Rejoin {
    /// Starts the host on `log` (replayed into `ledger`) without the shared log (`why`: what
    /// connecting said), from the replica's record of when the fleet last heard it, and
    /// starts trying to reach the shared log with `connect`. Refuses a replica without a
    /// record it can count from ([`Error::StreamUnavailable`], as a host with no replica
    /// at all).
    pub(crate) fn start(
        fleet: Arc<Fleet>,
        connect: Connect,
        why: String,
        log: &dyn Log,
        ledger: &Ledger,
    ) -> Result<Self, Error> {
        let last = log.meta(MetaKey::Contact)?.as_deref().and_then(LastHeard::decode);
        let position = log
            .meta(MetaKey::Position)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        fleet.applied(ledger.head(), position);
        match last.map(|l| (l, l.elapsed())) {
            Some((last, Some(elapsed))) => {
                fleet.start_detached(why, &last, elapsed);
                // Each host keeps to its share of rate limits and credits, as one cut off
                // while running does: the fleet's rounds do not complete meanwhile.
                let hosts = usize::from(last.hosts);
                let gate = ShareGate::new(hosts, fleet.options.usage_interval);
                ledger.write_state().share_with(Arc::new(gate));
                fleet.set_usage(UsageStatus {
                    hosts,
                    ..UsageStatus::default()
                });
            }
            Some((_, None)) => {
                return Err(Error::StreamUnavailable {
                    reason: format!(
                        "{why}; this host cannot start without it: the system clock is behind its replica's \
                         record of when the fleet last heard it, so it cannot tell how stale it is"
                    ),
                });
            }
            None => {
                return Err(Error::StreamUnavailable {
                    reason: format!(
                        "{why}; this host cannot start without it: its directory holds no replica the fleet \
                         heard (an empty directory, a store that never joined, or one last run by a build \
                         before 0.6)"
                    ),
                });
            }
        }
        let (tx, connected) = crossbeam_channel::bounded(0);
        let stop = Arc::new(AtomicBool::new(false));
        let (ending, trier) = (Arc::clone(&stop), Arc::clone(&fleet));
        let every = fleet.options.heartbeat.max(Duration::from_millis(100));
        // Not waited for: an attempt may take a request timeout. It ends within one once
        // told to stop, dropping what it connected meanwhile.
        std::thread::Builder::new()
            .name("keyledger-rejoin".into())
            .spawn(move || try_to_reach(&trier, connect, &tx, &ending, every))?;
        Ok(Rejoin {
            fleet,
            connected,
            stop,
        })
    }

    /// Joins the fleet with `shared`, as [`Replica::join`]: `Some` once joined. A shared log
    /// that stops answering meanwhile leaves the host as it was, to try again; any other
    /// failure (a local log that is not a prefix of the stream, a stream that is not the
    /// fleet's) halts it, and it stops trying.
    pub(crate) fn join(
        &mut self,
        shared: Box<dyn SharedLog>,
        log: &mut dyn Log,
        ledger: &Arc<Ledger>,
    ) -> Option<Replica> {
        let joined =
            Replica::join(shared, Arc::clone(&self.fleet), log, ledger, None).and_then(|mut replica| {
                replica.share_usage(Arc::clone(ledger))?;
                Ok(replica)
            });
        match joined {
            Ok(replica) => {
                self.fleet.attached();
                Some(replica)
            }
            Err(Error::StreamUnavailable { reason }) => {
                self.fleet.still_detached(reason);
                None
            }
            Err(e) => {
                self.stop.store(true, Ordering::Release);
                self.fleet.halt(format!(
                    "it started without the shared log and could not join the fleet when it answered: {e}"
                ));
                None
            }
        }
    }

    /// Why a write is refused meanwhile.
    pub(crate) fn refusal(&self) -> Error {
        match self.fleet.halted() {
            Some(reason) => Error::FleetHalted { reason },
            None => Error::FleetNotJoined {
                reason: self
                    .fleet
                    .detached()
                    .unwrap_or_else(|| "the shared log is out of reach".to_owned()),
            },
        }
    }
}

impl Drop for Rejoin {
    /// Stops trying.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Connects every `every` until told to stop or the fleet closes, handing each connection
/// over (and waiting for the writer to take it); looks for a suspend and logs the fleet's
/// changes meanwhile, as the announcements of a joined host do.
fn try_to_reach(
    fleet: &Fleet,
    mut connect: Connect,
    tx: &crossbeam_channel::Sender<Box<dyn SharedLog>>,
    stop: &AtomicBool,
    every: Duration,
) {
    let done = || stop.load(Ordering::Acquire) || fleet.is_closing();
    while !done() {
        fleet.check_suspend();
        match connect() {
            Ok(mut shared) => loop {
                match tx.send_timeout(shared, every) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(back)) if !done() => shared = back,
                    Err(_) => return,
                }
            },
            Err(e) => fleet.still_detached(e.to_string()),
        }
        let until = std::time::Instant::now() + every;
        while !done() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
