//! What the hosts of a fleet know of each other: this host's head and fence, the other
//! hosts' sealed heads as the heads bucket delivers them, and the confirmation of a
//! revocation, which never counts a host out unless that host has surely fenced itself.
//!
//! It never talks to the server: the shared log hands it what the server said, and when
//! it sent the request, through [`crate::log::Heads`] (`fleet/announce.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

mod changes;
mod durable;
mod outage;
mod status;

use super::contact::LastHeard;
use super::fence::{self, Fence};
use super::head::{self, HostHead};
use super::{FleetOptions, IgnoredHead, UNSEEN_HOSTS};
use crate::chain::Chain;
use crate::chain::Head;
pub(crate) use crate::log::Outcome;

/// The share of a limit a margin must add for two clocks whose rates differ by up to 1000
/// ppm each way (NTP slews at most 500 ppm, crystals drift well under 100 ppm): 2500 ppm,
/// above the 2001 ppm the inequality needs; see `docs/design.md`, "Fencing".
const RATE_BOUND_DIVISOR: u32 = 400;

/// A host not heard from for this many leases (and past its fence) is dropped from the
/// status.
const FORGET_AFTER_LEASES: u32 = 20;

/// How many of this host's own announcements are remembered until their echo.
const OUTBOX: usize = 64;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How long after a silent host was last heard from a confirming host counts it as
/// fenced: its limit, then a margin for the two clocks' rates and two ticks of the fence's
/// clock (at least `margin`).
pub(crate) fn hold_for(limit: Duration, margin: Duration) -> Duration {
    limit + margin.max(limit / RATE_BOUND_DIVISOR + fence::CLOCK_TICK * 2)
}

/// When the server last answered: `before` earlier than `at` (a host started without the
/// server counts from its replica's record).
struct Contact {
    at: Instant,
    before: Duration,
}

struct Peer {
    head: HostHead,
    /// When this host last saw its head change (a new announcement), or its own view of
    /// the bucket start again, whichever is later.
    heard: Instant,
}

struct Own {
    head: HostHead,
    /// Changed since last announced.
    dirty: bool,
    /// The leaving head was handed out.
    left: bool,
}

/// One of this host's announcements, until its echo arrives through the watch.
struct Sent {
    counter: u64,
    at: Instant,
    acknowledged: bool,
}

/// The heads bucket as this host's watch has delivered it.
struct View {
    peers: HashMap<String, Peer>,
    /// The latest of this host's own announcements seen back through the watch, with
    /// everything stored before it: when it was sent, and the record it announced.
    echo: Option<(Instant, u64)>,
    outbox: VecDeque<Sent>,
    /// An announcement failed since the last acknowledged one.
    broken: bool,
    /// The last revision delivered live.
    revision: Option<u64>,
    ignored: u64,
    last_ignored: Option<IgnoredHead>,
}

/// See the module doc; shared by the writer, the store, and the threads that talk to the
/// server.
pub(crate) struct Fleet {
    pub(crate) options: FleetOptions,
    chain: Chain,
    stream_id: OnceLock<[u8; 16]>,
    run: u64,
    own: Mutex<Own>,
    announce: Condvar,
    view: Mutex<View>,
    view_changed: Condvar,
    /// The last time the server answered this host, whatever the request.
    contact: Mutex<Contact>,
    /// While this host, started without the shared log, has not joined: why
    /// (`fleet/hosts/outage.rs`).
    detached: Mutex<Option<outage::Detached>>,
    /// The fleet's last acknowledgement of this host's announcements, on clocks that outlive
    /// the process: what its replica keeps (`fleet/contact.rs`).
    last_heard: Mutex<Option<LastHeard>>,
    /// What the local log holds, and holds durably: what is announced
    /// (`fleet/hosts/durable.rs`).
    durability: durable::Durability,
    fence: Arc<Fence>,
    /// While the fence is shut after contact came back: the stream position to reach.
    catch_up_to: Mutex<Option<u64>>,
    halted: Mutex<Option<String>>,
    /// Other reasons this host reports itself unhealthy, by cause.
    faults: Mutex<BTreeMap<&'static str, String>>,
    closing: AtomicBool,
    /// How many times the heads bucket was found missing or made again.
    bucket_lost: AtomicU64,
    /// [`fence::suspended`] when last looked at.
    suspended: AtomicU64,
    /// The record the stream's bootstrap reaches (0: none): until this host has applied
    /// it, the stream does not yet hold the whole log it began with.
    bootstrap_until: AtomicU64,
    /// The stream's state as last judged, and the messages skipped as not the fleet's.
    pub(crate) stream: super::stream::StreamWatch,
    /// How usage is shared, as `fleet/usage.rs` last found it.
    usage: Mutex<Option<super::UsageStatus>>,
    /// The state last logged ([`Fleet::log_changes`]).
    logged: Mutex<changes::Logged>,
    /// Where this host's writes go, and what was forwarded.
    pub(crate) routes: super::route::Routes,
}

impl Fleet {
    pub(crate) fn new(options: FleetOptions, chain: Chain) -> Arc<Self> {
        let fence = Arc::new(Fence::closing_after(options.fence_limit()));
        Arc::new(Fleet {
            own: Mutex::new(Own {
                head: HostHead {
                    run: 0,
                    counter: 0,
                    seq: 0,
                    hash: [0; 32],
                    position: 0,
                    at: 0,
                    stale_for: 0,
                    halted: false,
                    leaving: false,
                    fences: !options.serve_past_lease,
                    lease: micros(options.lease),
                    limit: micros(options.fence_limit()),
                },
                dirty: true,
                left: false,
            }),
            options,
            chain,
            stream_id: OnceLock::new(),
            run: rand::random(),
            announce: Condvar::new(),
            view: Mutex::new(View {
                peers: HashMap::new(),
                echo: None,
                outbox: VecDeque::new(),
                broken: false,
                revision: None,
                ignored: 0,
                last_ignored: None,
            }),
            view_changed: Condvar::new(),
            contact: Mutex::new(Contact {
                at: Instant::now(),
                before: Duration::ZERO,
            }),
            detached: Mutex::new(None),
            last_heard: Mutex::new(None),
            durability: durable::Durability::default(),
            fence,
            catch_up_to: Mutex::new(None),
            halted: Mutex::new(None),
            faults: Mutex::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
            bucket_lost: AtomicU64::new(0),
            suspended: AtomicU64::new(fence::suspended()),
            bootstrap_until: AtomicU64::new(0),
            stream: super::stream::StreamWatch::default(),
            usage: Mutex::new(None),
            logged: Mutex::new(changes::Logged::default()),
            routes: super::route::Routes::default(),
        })
    }

    /// The gate every verify on this host passes.
    pub(crate) fn fence(&self) -> Arc<Fence> {
        Arc::clone(&self.fence)
    }

    pub(crate) fn host(&self) -> &str {
        &self.options.host
    }

    /// The stream's identity: what every head this host seals or accepts is bound to.
    pub(crate) fn set_stream_id(&self, id: [u8; 16]) {
        let _ = self.stream_id.set(id);
    }

    pub(crate) fn stream_id(&self) -> Option<[u8; 16]> {
        self.stream_id.get().copied()
    }

    /// The writer applied up to `head`, from stream message `position`.
    pub(crate) fn applied(&self, head: Head, position: u64) {
        {
            let mut own = lock(&self.own);
            own.head.seq = head.seq;
            own.head.hash = head.hash;
            own.head.position = position;
            own.dirty = true;
        }
        self.announce.notify_all();
        self.reopen_if_caught_up();
    }

    /// The other hosts heard from within their lease that have not left.
    pub(crate) fn live_peers(&self) -> Vec<String> {
        let now = Instant::now();
        lock(&self.view)
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.heard) <= Duration::from_micros(p.head.lease))
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// The host this host forwards its writes to: the live host with the smallest id,
    /// if that is another one (heard within its lease, not halted, not stale, not
    /// leaving). Only a host with a smaller id is ever chosen, so forwarding never goes
    /// round in a circle, even while hosts disagree on who is live.
    pub(crate) fn write_leader(&self) -> Option<(String, u64)> {
        if !self.options.forward_writes {
            return None;
        }
        let now = Instant::now();
        let own = self.options.host.as_str();
        lock(&self.view)
            .peers
            .iter()
            .filter(|(h, p)| {
                h.as_str() < own
                    && now.duration_since(p.heard) <= Duration::from_micros(p.head.lease)
                    && !p.head.halted
                    && !p.head.leaving
                    && p.head.stale_for == 0
            })
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|(h, p)| (h.clone(), p.head.run))
    }

    /// This process's run: random per start, announced in its head.
    pub(crate) fn run(&self) -> u64 {
        self.run
    }

    pub(crate) fn set_usage(&self, status: super::UsageStatus) {
        *lock(&self.usage) = Some(status);
    }

    pub(crate) fn position(&self) -> u64 {
        lock(&self.own).head.position
    }

    /// The stream began with a bootstrap reaching record `through` (0: not one).
    pub(crate) fn bootstrapped_through(&self, through: u64) {
        self.bootstrap_until.fetch_max(through, Ordering::AcqRel);
    }

    /// While the stream's bootstrap is not wholly applied here: the records it reaches
    /// and those applied. A host takes no write meanwhile (it would be appended in the
    /// middle of the log being published) and reports itself unhealthy.
    pub(crate) fn bootstrapping(&self) -> Option<(u64, u64)> {
        let until = self.bootstrap_until.load(Ordering::Acquire);
        let seq = lock(&self.own).head.seq;
        (seq < until).then_some((seq, until))
    }

    /// Stops this host's writes for good (until restarted), saying why. Only causes that
    /// do not go away halt: a sealed message that breaks the rules, or this host's own log
    /// failing to take what its state accepted (memory and disk then differ until a
    /// restart reads the log again).
    pub(crate) fn halt(&self, reason: String) {
        lock(&self.halted).get_or_insert(reason);
        lock(&self.own).dirty = true;
        self.announce.notify_all();
        // A halted host applies nothing more: a shut fence waits for no catch-up.
        self.reopen_if_caught_up();
        self.log_changes();
    }

    pub(crate) fn halted(&self) -> Option<String> {
        lock(&self.halted).clone()
    }

    /// Reports this host unhealthy for `cause` (a short code) with `reason`, until
    /// [`Fleet::clear_fault`].
    pub(crate) fn set_fault(&self, cause: &'static str, reason: String) {
        lock(&self.faults).insert(cause, reason);
    }

    pub(crate) fn clear_fault(&self, cause: &'static str) {
        lock(&self.faults).remove(cause);
    }

    /// The head to announce next: at once when it changed, else after a heartbeat; once
    /// the fleet is closing, a last one saying this host left, then `None`. It carries what
    /// the local log holds durably ([`Fleet::written`]).
    pub(crate) fn next_head(&self) -> Option<HostHead> {
        let own = lock(&self.own);
        let (mut own, _) = self
            .announce
            .wait_timeout_while(own, self.options.heartbeat, |o| {
                !o.dirty && !self.closing.load(Ordering::Acquire)
            })
            .unwrap_or_else(PoisonError::into_inner);
        if self.closing.load(Ordering::Acquire) {
            if own.left {
                return None;
            }
            own.left = true;
            own.head.leaving = true;
        }
        own.dirty = false;
        own.head.counter += 1;
        own.head.run = self.run;
        let mut head = own.head;
        drop(own);
        // What the local log holds durably, synced now if need be: never more.
        (head.seq, head.hash, head.position) = self.durable_head();
        head.at = crate::ledger::now_micros();
        head.stale_for = micros(self.stale_for());
        head.halted = self.halted().is_some();
        Some(head)
    }

    /// `head` sealed for this host's name and stream; `None` before the stream is known.
    pub(crate) fn seal(&self, head: &HostHead) -> Option<Vec<u8>> {
        let id = self.stream_id()?;
        Some(head::encode(head, self.host(), &id, &self.chain))
    }

    /// Announcement `counter` is being sent now.
    pub(crate) fn sending(&self, counter: u64) {
        let mut view = lock(&self.view);
        view.outbox.push_back(Sent {
            counter,
            at: Instant::now(),
            acknowledged: false,
        });
        while view.outbox.len() > OUTBOX {
            view.outbox.pop_front();
        }
    }

    /// What became of announcement `counter`, sent at `sent` (the fence's clock). Returns
    /// whether the fence is shut and waits for a catch-up target ([`Fleet::catch_up_to`]
    /// with the stream's end, read now: after the answer).
    pub(crate) fn announced(&self, counter: u64, outcome: Outcome, sent: u64) -> bool {
        // A stream that has not been the fleet's for `stale_reject` (deleted, replaced,
        // rolled back, loosened) brings no revocation, and takes none: the server's answers
        // no longer keep the fence open, so it shuts a lease later and keys are rejected
        // until the stream is right again (see docs/design.md, "The stream under the
        // fleet"). The bucket's bookkeeping goes on as for any answer.
        let keeps_fence_open = self
            .stream
            .fault_since()
            .is_none_or(|t| t.elapsed() <= self.options.stale_reject);
        match outcome {
            Outcome::Acknowledged => {
                self.contact();
                // Lapsed: whatever end was read before is not enough any more.
                if self.fence.lapsed() {
                    *lock(&self.catch_up_to) = None;
                }
                let mut view = lock(&self.view);
                if let Some(s) = view.outbox.iter_mut().find(|s| s.counter == counter) {
                    s.acknowledged = true;
                }
                // Announcements failed since the last acknowledged one: the watch may have
                // missed what was stored meanwhile (a bucket deleted and made again, say).
                if std::mem::take(&mut view.broken) {
                    discontinuity(&mut view);
                }
                drop(view);
                if keeps_fence_open {
                    self.heard(sent);
                }
            }
            Outcome::BucketMissing => {
                // No bucket, so no host can watch this one fall silent: nobody can count it
                // out, and it may go on serving (see docs/design.md, "Fencing").
                self.contact();
                lock(&self.view).broken = true;
                if keeps_fence_open {
                    self.heard(sent);
                }
            }
            Outcome::Failed => lock(&self.view).broken = true,
        }
        self.view_changed.notify_all();
        self.fence.is_shut() && lock(&self.catch_up_to).is_none()
    }

    /// Once shut after a lapse: the fence opens when this host has applied the stream up
    /// to `end`, read after contact came back (at once for a halted host, which applies
    /// nothing more).
    pub(crate) fn catch_up_to(&self, end: u64) {
        lock(&self.catch_up_to).get_or_insert(end);
        self.reopen_if_caught_up();
    }

    fn reopen_if_caught_up(&self) {
        let mut target = lock(&self.catch_up_to);
        let reached = target.is_some_and(|t| self.position() >= t || self.halted().is_some());
        if reached && !self.fence.lapsed() && !self.is_closing() {
            *target = None;
            self.fence.reopen();
            drop(target);
            self.log_changes();
        }
    }

    /// Shuts the fence if the machine was suspended since the last look (its monotonic
    /// clock stood still meanwhile, so the lease did not run out as it should have): keys
    /// are rejected until this host is heard again and has caught up. Called every
    /// heartbeat, so a resumed host fences within one.
    pub(crate) fn check_suspend(&self) {
        self.note_suspended(fence::suspended());
        self.log_changes();
    }

    fn note_suspended(&self, now: u64) {
        let before = self.suspended.swap(now, Ordering::AcqRel);
        // The two clocks are read one after the other: a millisecond apart is not a suspend.
        if now > before + 1000 {
            let mut target = lock(&self.catch_up_to);
            *target = None;
            self.fence.shut();
        }
    }

    /// The heads bucket was found missing, or made again since this host's previous
    /// announcement.
    pub(crate) fn note_bucket_lost(&self) {
        self.bucket_lost.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits, at most `timeout`, until this host verifies keys: its first announcement
    /// acknowledged and the stream's end then applied.
    pub(crate) fn wait_open(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.fence.rejects() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The server answered this host.
    pub(crate) fn contact(&self) {
        *lock(&self.contact) = Contact {
            at: Instant::now(),
            before: Duration::ZERO,
        };
    }

    /// How long since the server last answered (zero within a heartbeat or two: a
    /// connected host hears from it that often).
    pub(crate) fn stale_for(&self) -> Duration {
        // A stream that is not the fleet's any more (deleted, replaced, rolled back) brings
        // no revocation: this host is out of touch from the moment it was noticed.
        let faulted = self.stream.fault_since().map_or(Duration::ZERO, |t| t.elapsed());
        let since = {
            let contact = lock(&self.contact);
            contact.at.elapsed().saturating_add(contact.before)
        }
        .max(faulted);
        if since <= self.options.heartbeat * 2 {
            Duration::ZERO
        } else {
            since
        }
    }

    /// The watch on the heads bucket (re)started: anything stored while it was not
    /// watching may be missed, so every host counts as heard from now.
    pub(crate) fn watch_started(&self) {
        let mut view = lock(&self.view);
        discontinuity(&mut view);
        view.revision = None;
    }

    /// An entry of the heads bucket was delivered: `key` holds `value`, at `revision`
    /// (`live`: after the history the watch began with). A head that does not verify
    /// counts for nothing and is counted.
    pub(crate) fn delivered(&self, key: &str, value: Option<&[u8]>, revision: u64, live: bool) {
        let mut view = lock(&self.view);
        if live {
            // A gap: entries were removed before the watch delivered them.
            if view.revision.is_some_and(|r| revision != r + 1) {
                discontinuity(&mut view);
            }
            view.revision = Some(revision);
        }
        let Some(stream_id) = self.stream_id() else {
            return;
        };
        let decoded = match value {
            Some(value) => head::decode(value, key, &stream_id, &self.chain).map_err(|r| r.to_string()),
            // Hosts leave with a sealed head; a deletion proves nothing about anyone.
            None => Err("a deletion or purge: hosts leave with a sealed head, never by deleting".to_owned()),
        };
        let head = match decoded {
            Ok(head) => head,
            Err(reason) => {
                view.ignored += 1;
                view.last_ignored = Some(IgnoredHead {
                    host: key.to_owned(),
                    reason,
                });
                return;
            }
        };
        if key == self.options.host {
            if head.run == self.run {
                echo(&mut view, head.counter, head.seq);
            }
        } else {
            self.hear(&mut view, key, head);
        }
        drop(view);
        self.view_changed.notify_all();
    }

    fn hear(&self, view: &mut View, host: &str, head: HostHead) {
        let now = Instant::now();
        let margin = self.options.margin;
        let forget = self.options.lease * FORGET_AFTER_LEASES;
        // Hosts silent for long (gone without a word, and surely fenced) leave the status.
        view.peers.retain(|_, p| {
            let held = hold_for(Duration::from_micros(p.head.limit), margin).max(forget);
            now.duration_since(p.heard) <= held
        });
        match view.peers.get_mut(host) {
            // A replayed older announcement of this run says nothing new.
            Some(p) if p.head.run == head.run && head.counter <= p.head.counter => {}
            // Another run's head is taken only if that host's own (sealed) clock says it
            // came later: a genuine head of an earlier run, put back by whoever can write
            // the bucket, must neither bring back an earlier run's shorter limit nor end
            // the wait with that run's leaving head. It still counts as hearing the host
            // (its clock may have been stepped back across a restart, and a live host must
            // never be counted out): at worst, replays make revocations wait for a dead
            // host and name it unconfirmed, which is the truth as far as anyone can tell.
            Some(p) if p.head.run != head.run && head.at <= p.head.at => {
                if !head.leaving {
                    p.heard = now;
                }
                view.ignored += 1;
                view.last_ignored = Some(IgnoredHead {
                    host: host.to_owned(),
                    reason: "a head of an earlier run of this host (put back in the bucket)".to_owned(),
                });
            }
            Some(p) if head.leaving => {
                // Only the run this host knows leaves; another run's leaving head is old.
                if p.head.run == head.run {
                    view.peers.remove(host);
                }
            }
            Some(p) => {
                p.head = head;
                p.heard = now;
            }
            // A leaving head of a run this host never saw: nothing to forget.
            None if head.leaving => {}
            None => {
                view.peers.insert(host.to_owned(), Peer { head, heard: now });
            }
        }
    }

    /// Waits until every host that may still accept keys has applied record `seq`, or
    /// the confirmation timeout; returns the hosts that could not be counted: live ones
    /// that had not applied it, silent ones that serve past their lease, and
    /// [`UNSEEN_HOSTS`] if this host's own announcement of the record never came back
    /// through the watch (it cannot vouch for hosts it may not know).
    ///
    /// A silent host that fences is counted out only once its limit and the margin passed
    /// between when its last head was seen and when this host's own head, seen back after
    /// it, was sent: both through the same ordered watch.
    pub(crate) fn confirm(&self, seq: u64) -> Vec<String> {
        let deadline = Instant::now() + self.options.confirm_timeout;
        let margin = self.options.margin;
        let mut view = lock(&self.view);
        loop {
            let now = Instant::now();
            let echo = view.echo.filter(|&(_, s)| s >= seq).map(|(sent, _)| sent);
            let mut waiting = Vec::new();
            let mut unconfirmed = Vec::new();
            for (host, p) in &view.peers {
                if p.head.seq >= seq {
                    continue;
                }
                let silent_for = echo.map_or(Duration::ZERO, |sent| sent.saturating_duration_since(p.heard));
                if silent_for > hold_for(Duration::from_micros(p.head.limit), margin) {
                    continue;
                }
                let live = now.duration_since(p.heard) <= Duration::from_micros(p.head.lease);
                if !p.head.fences && !live {
                    unconfirmed.push(host.clone());
                } else {
                    waiting.push(host.clone());
                }
            }
            if (waiting.is_empty() && echo.is_some()) || now >= deadline {
                unconfirmed.append(&mut waiting);
                if echo.is_none() {
                    unconfirmed.push(UNSEEN_HOSTS.to_owned());
                }
                unconfirmed.sort();
                return unconfirmed;
            }
            // Woken by every delivered head; a silent host's case is looked at again
            // often enough for its lease to end on time.
            let wait = deadline
                .saturating_duration_since(now)
                .min(self.options.heartbeat / 2)
                .max(Duration::from_millis(1));
            view = self
                .view_changed
                .wait_timeout(view, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// This host leaves: it rejects every key from now on, and its announcements end with
    /// one saying so.
    pub(crate) fn close(&self) {
        // Under the catch-up's lock: a catch-up that ends meanwhile must not open the fence
        // again.
        let target = lock(&self.catch_up_to);
        self.closing.store(true, Ordering::Release);
        self.fence.shut();
        drop(target);
        self.announce.notify_all();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// The watch may have missed entries: every known host counts as heard from now, and no
/// earlier echo vouches for anything.
fn discontinuity(view: &mut View) {
    let now = Instant::now();
    for p in view.peers.values_mut() {
        p.heard = p.heard.max(now);
    }
    view.echo = None;
}

/// This host's own announcement `counter` came back through the watch. Every
/// acknowledged announcement before it must have come back first; if one did not, the
/// watch skipped entries.
fn echo(view: &mut View, counter: u64, seq: u64) {
    let mut skipped = false;
    while let Some(front) = view.outbox.front() {
        if front.counter > counter {
            break;
        }
        let Some(s) = view.outbox.pop_front() else { break };
        if s.counter < counter {
            skipped |= s.acknowledged;
        } else {
            if skipped {
                discontinuity(view);
            }
            view.echo = Some((s.at, seq));
            return;
        }
    }
    if skipped {
        discontinuity(view);
    }
}

#[cfg(test)]
pub(crate) mod tests;
