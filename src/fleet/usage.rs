//! Rate limits and credits held fleet-wide: every round (`FleetOptions::usage_interval`,
//! on the wall clock, the same rounds on every host) each host reports what it admitted
//! per key since its last report, sealed (`fleet/report.rs`), on a subject of its own,
//! and charges the others' reports to its own cells. Once every host's report of a round
//! is in, each host's share of each key is granted again (`projection/share.rs`); while
//! a round does not complete (this host cut off, a host silent), each host keeps to its
//! share: the limit and the credits over the hosts.
//!
//! It never talks to the server: the shared log hands it the subject's messages through
//! [`crate::log::Reports`]. See `docs/design.md`, "Rate limits and credits across the
//! fleet", for the bound this keeps.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::hosts::{Fleet, hold_for};
use super::report::{self, MAX_ENTRIES, Report};
use super::{UsageSharing, UsageStatus};
use crate::ledger::Ledger;
use crate::log::Reports;
use crate::projection::share::ShareGate;

/// Rounds without a report after which a host (this one, through its own echo) no longer
/// counts as sharing.
const SILENT_ROUNDS: u32 = 3;
/// How far a report's round may be from this host's before it is taken for a replay.
const ROUND_SLACK: u64 = 8;

struct Peer {
    run: u64,
    counter: u64,
    sent_at: i64,
    /// The last round whose last part was applied.
    tick: u64,
    heard: Instant,
}

struct State {
    peers: HashMap<String, Peer>,
    counter: u64,
    /// The last round this host reported.
    published: u64,
    /// When this host's own report last came back through the subject, and its counter.
    echo: Option<Instant>,
    echoed: u64,
    /// The last round every sharing host's report was applied for.
    epoch: u64,
    status: UsageStatus,
}

/// See the module doc; shared by the threads that publish and hear reports.
pub(crate) struct Sharing {
    fleet: Arc<Fleet>,
    ledger: Arc<Ledger>,
    gate: Arc<ShareGate>,
    run: u64,
    state: Mutex<State>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Sharing {
    /// Starts sharing: the projection's limited and credited keys get their shares, among
    /// the hosts the heads bucket shows live.
    pub(crate) fn start(fleet: Arc<Fleet>, ledger: Arc<Ledger>) -> Arc<Self> {
        let hosts = 1 + fleet.live_peers().len();
        let gate = Arc::new(ShareGate::new(hosts, fleet.options.usage_interval));
        ledger.write_state().share_with(Arc::clone(&gate));
        let sharing = Arc::new(Sharing {
            fleet,
            ledger,
            gate,
            run: rand::random(),
            state: Mutex::new(State {
                peers: HashMap::new(),
                counter: 0,
                published: 0,
                echo: None,
                echoed: 0,
                epoch: 0,
                status: UsageStatus {
                    sharing: UsageSharing::LocalShare,
                    hosts,
                    dropped_reports: 0,
                    last_dropped: None,
                },
            }),
        });
        sharing.fleet.set_usage(sharing.lock().status.clone());
        sharing
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn interval(&self) -> u64 {
        micros(self.fleet.options.usage_interval)
    }

    fn round_now(&self) -> u64 {
        u64::try_from(crate::ledger::now_micros()).unwrap_or(0) / self.interval()
    }

    /// Which hosts share now, whether the fleet's rounds complete, and the gate the verify
    /// path reads.
    fn evaluate(&self, state: &mut State) {
        let now = Instant::now();
        let options = &self.fleet.options;
        let silence = options.usage_interval * SILENT_ROUNDS;
        // A host silent this long has surely fenced (or left): it admits nothing more.
        let forget = hold_for(options.fence_limit(), options.margin);
        state.peers.retain(|_, p| now.duration_since(p.heard) <= forget);
        let mut known: BTreeSet<String> = state.peers.keys().cloned().collect();
        known.extend(self.fleet.live_peers());
        let hosts = 1 + known.len();
        let heard = |h: &String| {
            state
                .peers
                .get(h)
                .is_some_and(|p| now.duration_since(p.heard) <= silence)
        };
        let live = state.echo.is_some_and(|e| now.duration_since(e) <= silence) && known.iter().all(heard);
        let barrier = known
            .iter()
            .map(|h| state.peers.get(h).map_or(0, |p| p.tick))
            .fold(state.published, u64::min);
        // Open from the moment every host's report of this host's last round is applied
        // until this host's next round begins.
        let open = live && barrier == state.published && barrier > 0;
        if open {
            state.epoch = barrier;
        }
        self.gate.set(state.epoch, open, hosts);
        state.status.sharing = if live {
            UsageSharing::Live
        } else {
            UsageSharing::LocalShare
        };
        state.status.hosts = hosts;
        self.fleet.set_usage(state.status.clone());
    }

    fn dropped(&self, state: &mut State, reason: String) {
        state.status.dropped_reports += 1;
        state.status.last_dropped = Some(reason);
        self.fleet.set_usage(state.status.clone());
    }

    /// Sleeps until the next round starts on the wall clock.
    fn wait_for_round(&self) -> u64 {
        let iv = self.interval();
        let now = u64::try_from(crate::ledger::now_micros()).unwrap_or(0);
        let next = now / iv + 1;
        std::thread::sleep(Duration::from_micros(next * iv - now));
        next
    }
}

impl Reports for Sharing {
    fn next_reports(&self) -> Option<Vec<Vec<u8>>> {
        let tick = self.wait_for_round();
        if self.fleet.is_closing() {
            return None;
        }
        let Some(stream_id) = self.fleet.stream_id() else {
            return Some(Vec::new());
        };
        let mut state = self.lock();
        state.published = tick;
        // Closed before the counts are taken: no share is granted from cells that miss
        // this round's counts of the other hosts.
        self.evaluate(&mut state);
        let usage = self.ledger.read().take_usage();
        let sent_at = crate::ledger::now_micros();
        let parts: Vec<_> = if usage.is_empty() {
            vec![Vec::new()]
        } else {
            usage.chunks(MAX_ENTRIES).map(<[_]>::to_vec).collect()
        };
        let count = parts.len();
        let mut messages = Vec::with_capacity(count);
        for (i, usage) in parts.into_iter().enumerate() {
            state.counter += 1;
            let report = Report {
                host: self.fleet.host().to_owned(),
                run: self.run,
                counter: state.counter,
                tick,
                sent_at,
                last: i + 1 == count,
                usage,
            };
            messages.push(report::encode(&report, &stream_id, self.ledger.chain()));
        }
        Some(messages)
    }

    fn received(&self, bytes: &[u8]) {
        let Some(stream_id) = self.fleet.stream_id() else {
            return;
        };
        let mut state = self.lock();
        let report = match report::decode(bytes, &stream_id, self.ledger.chain()) {
            Ok(report) => report,
            Err(refused) => return self.dropped(&mut state, refused.to_string()),
        };
        if report.tick.abs_diff(self.round_now()) > ROUND_SLACK {
            return self.dropped(
                &mut state,
                format!("a report of {} for a round long past or to come", report.host),
            );
        }
        if report.host == self.fleet.host() {
            if report.run != self.run {
                return self.dropped(&mut state, "a report of this host's id from another run".into());
            }
            if report.counter <= state.echoed {
                return self.dropped(&mut state, "a report of this host replayed".into());
            }
            state.echoed = report.counter;
            state.echo = Some(Instant::now());
            return self.evaluate(&mut state);
        }
        match state.peers.get(&report.host) {
            Some(p) if p.run == report.run && report.counter <= p.counter => {
                return self.dropped(&mut state, format!("a report of {} replayed", report.host));
            }
            Some(p) if p.run != report.run && report.sent_at <= p.sent_at => {
                return self.dropped(
                    &mut state,
                    format!("a report of an earlier run of {}", report.host),
                );
            }
            _ => {}
        }
        if !report.usage.is_empty() {
            let now = self.ledger.clock().steady_micros();
            self.ledger.read().charge_usage(&report.usage, now);
        }
        let peer = state.peers.entry(report.host.clone()).or_insert(Peer {
            run: report.run,
            counter: 0,
            sent_at: report.sent_at,
            tick: 0,
            heard: Instant::now(),
        });
        if peer.run != report.run {
            peer.tick = 0;
        }
        peer.run = report.run;
        peer.counter = report.counter;
        peer.sent_at = report.sent_at;
        peer.heard = Instant::now();
        if report.last {
            peer.tick = peer.tick.max(report.tick);
        }
        self.evaluate(&mut state);
    }
}
