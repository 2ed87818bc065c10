//! Many hosts, one ledger: each host's store is a replica of a shared log (a NATS
//! JetStream stream, `log/nats.rs`), and every host's projection follows it.
//!
//! Three parts, none of which names the engine:
//! - [`Fleet`]: what the hosts know of each other. Each announces its applied head; the
//!   live hosts are those heard from within a lease; a revocation waits here until every
//!   live host has applied it. It also keeps this host's contact with the stream, from
//!   which the staleness limits follow.
//! - [`Replica`] (`fleet/replica.rs`): the writer's side. It appends a batch's entries to
//!   the stream as one message after the last position it applied (losing a race means
//!   accepting the winner's messages through the ledger and preparing again), and applies
//!   what other hosts append: its seal checked for this stream and place
//!   (`fleet/message.rs`; a message that is not the fleet's is skipped and counted), its
//!   records checked by the ledger, then written to the local log. A sealed message that
//!   does not fit stops this host's writes; a stream that is not the fleet's any more
//!   (`fleet/stream.rs`) stops them until it is right again.
//! - The public options and reports: [`FleetOptions`], [`FleetStatus`], [`HostStatus`],
//!   [`Revoked`].
// Without the `nats` feature there is no shared log to join: the types stay (the store
// names them) but nothing builds a fleet.
#![cfg_attr(not(feature = "nats"), allow(dead_code, unreachable_pub))]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;
use crate::chain::Head;
use crate::codec::HostHead;

pub(crate) mod message;
mod replica;
mod stream;

pub(crate) use self::replica::{Appended, MAX_RACES, Replica};

/// How a host joins a fleet: where the shared log is, who this host is, and the limits
/// of its patience. See `docs/design.md` for why the defaults are what they are.
#[derive(Clone)]
pub struct FleetOptions {
    pub(crate) url: String,
    pub(crate) stream: String,
    pub(crate) replicas: usize,
    pub(crate) host: String,
    pub(crate) auth: Auth,
    pub(crate) tls: Tls,
    pub(crate) heartbeat: Duration,
    pub(crate) lease: Duration,
    pub(crate) confirm_timeout: Duration,
    pub(crate) stale_serve: Duration,
    pub(crate) stale_reject: Duration,
    pub(crate) request_timeout: Duration,
}

/// How this host proves itself to the NATS server.
#[derive(Clone, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
    CredsFile(PathBuf),
}

/// TLS settings passed through to the NATS client.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    pub(crate) required: bool,
    pub(crate) root_certificates: Option<PathBuf>,
    pub(crate) client_certificate: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for FleetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::UserPassword(..) => "user and password (redacted)",
            Auth::Token(_) => "token (redacted)",
            Auth::CredsFile(_) => "creds file",
        };
        f.debug_struct("FleetOptions")
            .field("url", &without_userinfo(&self.url))
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("host", &self.host)
            .field("auth", &auth)
            .field("tls_required", &self.tls.required)
            .field("heartbeat", &self.heartbeat)
            .field("lease", &self.lease)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("stale_serve", &self.stale_serve)
            .field("stale_reject", &self.stale_reject)
            .finish_non_exhaustive()
    }
}

/// The stream a fleet uses when none is named.
pub const DEFAULT_STREAM: &str = "keyledger";

impl FleetOptions {
    /// A fleet on the NATS server(s) at `url` (`nats://host:port`, comma-separated for a
    /// cluster), on stream [`DEFAULT_STREAM`], with this machine's host name and process
    /// id as the host id and the default limits.
    pub fn new(url: impl Into<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        FleetOptions {
            url: url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            replicas: 1,
            host: sanitize_host(&format!("{host}-{}", std::process::id())),
            auth: Auth::None,
            tls: Tls::default(),
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(3),
            confirm_timeout: Duration::from_secs(5),
            stale_serve: Duration::from_secs(10),
            stale_reject: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The stream's name (letters, digits, `-` and `_`).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// How many servers keep each message (1, 3 or 5 in a cluster). A publish is
    /// acknowledged once a majority of them has it; see `docs/design.md`.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// This host's id in the fleet (letters, digits, `-` and `_`; unique per host).
    pub fn host_id(mut self, id: impl Into<String>) -> Self {
        self.host = id.into();
        self
    }

    /// Connect with a user name and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Connect with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Connect with a NATS credentials file (a JWT and an nkey seed).
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::CredsFile(path.into());
        self
    }

    /// Require TLS (also implied by a `tls://` URL).
    pub fn require_tls(mut self, yes: bool) -> Self {
        self.tls.required = yes;
        self
    }

    /// Trust the certificate authorities in this PEM file for the server's certificate.
    pub fn tls_root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.root_certificates = Some(path.into());
        self
    }

    /// Present this client certificate and key (PEM files) to the server.
    pub fn tls_client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// How often this host announces its head when nothing changes (default 500 ms).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long a host counts as live after it was last heard from (default 3 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a revocation waits for every live host to apply it (default 5 s; zero
    /// answers at once, naming the live hosts that had not applied it yet).
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// How long a host that lost the stream keeps reporting itself healthy (default
    /// 10 s); past it, `/healthz` answers 503 so that a load balancer drains it.
    pub fn stale_serve(mut self, limit: Duration) -> Self {
        self.stale_serve = limit;
        self
    }

    /// How long a host that lost the stream keeps verifying keys (default 60 s); past
    /// it, every key is rejected ([`Rejection::Stale`](crate::Rejection::Stale)) until
    /// it has caught up again.
    pub fn stale_reject(mut self, limit: Duration) -> Self {
        self.stale_reject = limit;
        self
    }

    /// How long one request to the server may take (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Checks the options; the typed error names the first one that is wrong.
    pub(crate) fn validated(&self) -> Result<(), Error> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.stream) {
            return Err(Error::invalid(
                "stream",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        if !name_ok(&self.host) {
            return Err(Error::invalid(
                "host id",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        if !matches!(self.replicas, 1..=5) {
            return Err(Error::invalid("replicas", "must be 1 to 5"));
        }
        if self.url.trim().is_empty() {
            return Err(Error::invalid("nats url", "is empty"));
        }
        if self.heartbeat.is_zero() || self.lease <= self.heartbeat {
            return Err(Error::invalid(
                "lease",
                "must be longer than the heartbeat, which must not be zero",
            ));
        }
        if self.stale_reject < self.stale_serve {
            return Err(Error::invalid(
                "stale limits",
                "the limit for rejecting keys must not be below the one for health",
            ));
        }
        Ok(())
    }

    /// The subject the stream's messages are published on.
    pub(crate) fn subject(&self) -> String {
        format!("keyledger.{}.log", self.stream)
    }

    /// The key-value bucket the hosts announce their heads in.
    pub(crate) fn heads_bucket(&self) -> String {
        format!("{}-hosts", self.stream)
    }
}

/// The server URLs with any `user:password@` or `token@` part replaced, for messages.
pub(crate) fn without_userinfo(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..])
            }
            (None, Some(at)) => format!("<redacted>@{}", &url[at + 1..]),
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A host id made of the characters ids may hold.
fn sanitize_host(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// What a revocation (delete, disable, unwhitelist) returns: where it is in the log, and
/// which live hosts had not applied it when the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The sequence number of its last record.
    pub seq: u64,
    /// Hosts that were live but had not confirmed it within the wait (empty for a single
    /// host, or when every live host confirmed). A host whose lease ended during the wait
    /// is not listed: it is no longer live, and a host that lost the stream rejects every
    /// key past its staleness limit.
    pub unconfirmed: Vec<String>,
}

/// One host as this host knows it; see [`FleetStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStatus {
    /// Its id.
    pub host: String,
    /// Whether it is this host.
    pub this_host: bool,
    /// The sequence number of the last record it applied.
    pub seq: u64,
    /// The stream position of the last message it applied.
    pub position: u64,
    /// How many records it is behind this host.
    pub lag: u64,
    /// How long ago it was last heard from.
    pub heard: Duration,
    /// Whether it was heard from within the lease.
    pub live: bool,
    /// How long it has been out of contact with the stream, as it last said.
    pub stale_for: Duration,
    /// Whether it stopped writing.
    pub halted: bool,
    /// Whether its record at its head differs from this host's record there: a fork.
    pub diverged: bool,
}

/// The fleet as this host sees it: its own place in the stream and every host heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStatus {
    /// This host's id.
    pub host: String,
    /// The stream's name.
    pub stream: String,
    /// The stream's id (32 hex digits), from its genesis: the same on every host of the
    /// fleet.
    pub stream_id: String,
    /// How long since this host last heard from the stream (zero while in contact).
    pub stale_for: Duration,
    /// Whether it reports itself unhealthy for staleness (past the first limit).
    pub unhealthy: bool,
    /// Whether it rejects every key for staleness (past the second limit, until caught up).
    pub rejecting: bool,
    /// Why this host stopped writing, if it did.
    pub halted: Option<String>,
    /// Why the stream is not one to write to, if it is not: deleted, replaced (created
    /// again), rolled back behind this host, messages removed, or settings that let
    /// messages go. The host takes no write and is unhealthy until the stream is right.
    pub stream_fault: Option<String>,
    /// How many messages this host skipped since it started because they were not the
    /// fleet's (not sealed with its chain key, or sealed for another stream or place).
    pub foreign_messages: u64,
    /// Why it skipped the last of them.
    pub last_foreign: Option<String>,
    /// Every host heard from within a few leases, this one first.
    pub hosts: Vec<HostStatus>,
}

/// The fleet as its shared log shows it, read without joining: the stream's length and
/// every host whose announcement has not expired; see [`survey`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetSurvey {
    /// The stream's name.
    pub stream: String,
    /// The position of its last message.
    pub last_position: u64,
    /// Why the stream cannot be trusted as the server shows it, if it cannot: messages
    /// removed, or settings that let messages go or take other subjects (each host also
    /// checks its genesis: see [`FleetStatus::stream_fault`]).
    pub stream_problem: Option<String>,
    /// The hosts, by id; `lag` is counted from the most advanced one.
    pub hosts: Vec<HostStatus>,
}

/// Reads the fleet's shared log and the hosts' announced heads, without joining the fleet
/// and without creating anything (`keyledger fleet`).
///
/// # Errors
/// [`Error::InvalidInput`] for bad options; [`Error::StreamUnavailable`] if the server
/// cannot be reached or has no such stream.
#[cfg(feature = "nats")]
pub fn survey(options: &FleetOptions) -> Result<FleetSurvey, Error> {
    options.validated()?;
    let (state, heads) = crate::log::nats_survey(options)?;
    let missing = state.last.saturating_sub(state.messages);
    let stream_problem = if missing > 0 {
        Some(format!("{missing} messages were removed from the stream"))
    } else {
        state.unsafe_settings.map(|why| format!("the stream {why}"))
    };
    let top = heads.iter().map(|(_, h, _)| h.seq).max().unwrap_or(0);
    let mut hosts: Vec<HostStatus> = heads
        .into_iter()
        .map(|(host, head, age)| HostStatus {
            host,
            this_host: false,
            seq: head.seq,
            position: head.position,
            lag: top - head.seq,
            heard: age,
            live: age <= options.lease,
            stale_for: Duration::from_micros(head.stale_for),
            halted: head.halted,
            diverged: false,
        })
        .collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(FleetSurvey {
        stream: options.stream.clone(),
        last_position: state.last,
        stream_problem,
        hosts,
    })
}

struct Peer {
    head: HostHead,
    heard: Instant,
}

struct Own {
    head: HostHead,
    /// Changed since last announced.
    dirty: bool,
}

/// What the hosts of a fleet know of each other; shared by the writer, the store, and
/// the threads that talk to the server.
pub(crate) struct Fleet {
    pub(crate) options: FleetOptions,
    own: Mutex<Own>,
    announce: Condvar,
    peers: Mutex<HashMap<String, Peer>>,
    peers_changed: Condvar,
    /// The last time the server answered this host.
    contact: Mutex<Instant>,
    /// Set past the second staleness limit; every verify reads it.
    rejecting: Arc<AtomicBool>,
    /// Once rejecting: the stream position to reach before verifying again.
    catch_up_to: Mutex<Option<u64>>,
    halted: Mutex<Option<String>>,
    closing: AtomicBool,
    /// The record the stream's bootstrap reaches (0: none): until this host has applied
    /// it, the stream does not yet hold the whole log it began with.
    bootstrap_until: std::sync::atomic::AtomicU64,
    /// The stream's id, from its genesis; set when this host joins, before it announces.
    stream_id: std::sync::OnceLock<[u8; 16]>,
    /// The stream's state as last judged, and the messages skipped as not the fleet's.
    pub(crate) stream: stream::StreamWatch,
}

/// A host not heard from for this many leases is dropped from the status.
const FORGET_AFTER_LEASES: u32 = 20;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    pub(crate) fn new(options: FleetOptions, rejecting: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(Fleet {
            options,
            own: Mutex::new(Own {
                head: HostHead {
                    seq: 0,
                    hash: [0; 32],
                    position: 0,
                    at: 0,
                    stale_for: 0,
                    halted: false,
                },
                dirty: true,
            }),
            announce: Condvar::new(),
            peers: Mutex::new(HashMap::new()),
            peers_changed: Condvar::new(),
            contact: Mutex::new(Instant::now()),
            rejecting,
            catch_up_to: Mutex::new(None),
            halted: Mutex::new(None),
            closing: AtomicBool::new(false),
            bootstrap_until: std::sync::atomic::AtomicU64::new(0),
            stream_id: std::sync::OnceLock::new(),
            stream: stream::StreamWatch::default(),
        })
    }

    /// The stream's id, from its genesis (set once, when this host joins).
    pub(crate) fn set_stream_id(&self, id: [u8; 16]) {
        let _ = self.stream_id.set(id);
    }

    /// The stream's id, once this host has joined.
    pub(crate) fn stream_id(&self) -> Option<[u8; 16]> {
        self.stream_id.get().copied()
    }

    pub(crate) fn host(&self) -> &str {
        &self.options.host
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
        let mut target = lock(&self.catch_up_to);
        if target.is_some_and(|t| position >= t) {
            *target = None;
            self.rejecting.store(false, Ordering::Release);
        }
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

    /// Stops this host's writes for good (until restarted), saying why.
    pub(crate) fn halt(&self, reason: String) {
        lock(&self.halted).get_or_insert(reason);
        lock(&self.own).dirty = true;
        self.announce.notify_all();
    }

    pub(crate) fn halted(&self) -> Option<String> {
        lock(&self.halted).clone()
    }

    /// The head to announce next: at once when it changed, else after a heartbeat.
    /// `None` once the fleet is closing.
    pub(crate) fn next_announcement(&self) -> Option<HostHead> {
        let own = lock(&self.own);
        let (mut own, _) = self
            .announce
            .wait_timeout_while(own, self.options.heartbeat, |o| {
                !o.dirty && !self.closing.load(Ordering::Acquire)
            })
            .unwrap_or_else(PoisonError::into_inner);
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        own.dirty = false;
        let mut head = own.head;
        drop(own);
        head.at = crate::ledger::now_micros();
        head.stale_for = u64::try_from(self.stale_for().as_micros()).unwrap_or(u64::MAX);
        head.halted = self.halted().is_some();
        Some(head)
    }

    /// The server answered this host.
    pub(crate) fn contact(&self) {
        *lock(&self.contact) = Instant::now();
    }

    /// How long since the server last answered (zero within a heartbeat or two: a
    /// connected host hears from it that often).
    pub(crate) fn stale_for(&self) -> Duration {
        // A stream that is not the fleet's any more (deleted, replaced, rolled back) brings
        // no revocation: this host is out of touch from the moment it was noticed.
        let faulted = self.stream.fault_since().map_or(Duration::ZERO, |t| t.elapsed());
        let since = lock(&self.contact).elapsed().max(faulted);
        if since <= self.options.heartbeat * 2 {
            Duration::ZERO
        } else {
            since
        }
    }

    /// Applies the staleness limits: past the second, every key is rejected until the
    /// host has caught up with the stream's end as the server reports it (`last`, read
    /// once contact is back).
    pub(crate) fn check_staleness(&self, last: impl FnOnce() -> Option<u64>) {
        let stale = self.stale_for();
        if stale > self.options.stale_reject {
            self.rejecting.store(true, Ordering::Release);
            *lock(&self.catch_up_to) = None;
        } else if stale.is_zero() && self.rejecting.load(Ordering::Acquire) {
            // The stream's end is read without holding the lock the writer takes.
            if lock(&self.catch_up_to).is_none() {
                let end = last();
                let mut target = lock(&self.catch_up_to);
                if target.is_none() {
                    *target = end;
                }
            }
            let mut target = lock(&self.catch_up_to);
            if target.is_some_and(|t| self.position() >= t) {
                *target = None;
                self.rejecting.store(false, Ordering::Release);
            }
        }
    }

    /// Another host announced its head `age` ago.
    pub(crate) fn heard(&self, host: &str, head: HostHead, age: Duration) {
        if host == self.options.host {
            return;
        }
        let now = Instant::now();
        let heard = now.checked_sub(age).unwrap_or(now);
        let forgotten = self.options.lease * FORGET_AFTER_LEASES;
        let mut peers = lock(&self.peers);
        // Hosts silent for many leases (gone without a word) are dropped from the status.
        peers.retain(|_, p| now.duration_since(p.heard) <= forgotten);
        peers.insert(host.to_owned(), Peer { head, heard });
        drop(peers);
        self.peers_changed.notify_all();
    }

    /// Another host's announcement was removed (it expired or the host left).
    pub(crate) fn forget(&self, host: &str) {
        lock(&self.peers).remove(host);
        self.peers_changed.notify_all();
    }

    /// Waits until every live host has applied record `seq`, or the confirmation timeout;
    /// returns the live hosts that had not. Hosts whose lease ends during the wait drop out.
    pub(crate) fn confirm(&self, seq: u64) -> Vec<String> {
        let deadline = Instant::now() + self.options.confirm_timeout;
        let lease = self.options.lease;
        let mut peers = lock(&self.peers);
        loop {
            let now = Instant::now();
            let waiting: Vec<String> = peers
                .iter()
                .filter(|(_, p)| now.duration_since(p.heard) <= lease && p.head.seq < seq)
                .map(|(h, _)| h.clone())
                .collect();
            if waiting.is_empty() || now >= deadline {
                let mut waiting = waiting;
                waiting.sort();
                return waiting;
            }
            // Wake when a head arrives, or when the oldest lease may have ended.
            let until_lapse = peers
                .values()
                .filter(|p| p.head.seq < seq && now.duration_since(p.heard) <= lease)
                .map(|p| (p.heard + lease).saturating_duration_since(now))
                .min()
                .unwrap_or(lease);
            let wait = until_lapse
                .max(Duration::from_millis(1))
                .min(deadline.saturating_duration_since(now));
            peers = self
                .peers_changed
                .wait_timeout(peers, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The fleet as this host sees it; `hash_at` gives this host's chain hash of a record.
    pub(crate) fn status(&self, hash_at: impl Fn(u64) -> Option<[u8; 32]>) -> FleetStatus {
        let own = lock(&self.own).head;
        let stale = self.stale_for();
        let mut hosts = vec![HostStatus {
            host: self.options.host.clone(),
            this_host: true,
            seq: own.seq,
            position: own.position,
            lag: 0,
            heard: Duration::ZERO,
            live: true,
            stale_for: stale,
            halted: self.halted().is_some(),
            diverged: false,
        }];
        let now = Instant::now();
        // Copied out first: `hash_at` reads the log, which the peers' lock must not wait for.
        let peers: Vec<(String, HostHead, Instant)> = lock(&self.peers)
            .iter()
            .map(|(h, p)| (h.clone(), p.head, p.heard))
            .collect();
        let mut others: Vec<HostStatus> = peers
            .into_iter()
            .map(|(host, head, heard)| (host, Peer { head, heard }))
            .map(|(host, p)| HostStatus {
                host,
                this_host: false,
                seq: p.head.seq,
                position: p.head.position,
                lag: own.seq.saturating_sub(p.head.seq),
                heard: now.duration_since(p.heard),
                live: now.duration_since(p.heard) <= self.options.lease,
                stale_for: Duration::from_micros(p.head.stale_for),
                halted: p.head.halted,
                diverged: p.head.seq > 0
                    && p.head.seq <= own.seq
                    && hash_at(p.head.seq).is_some_and(|h| h != p.head.hash),
            })
            .collect();
        others.sort_by(|a, b| a.host.cmp(&b.host));
        hosts.extend(others);
        let stream_fault = self.stream.fault();
        let (foreign_messages, last_foreign) = self.stream.foreign_seen();
        FleetStatus {
            host: self.options.host.clone(),
            stream: self.options.stream.clone(),
            stream_id: self.stream_id().map(|id| message::hex(&id)).unwrap_or_default(),
            stale_for: stale,
            unhealthy: stale > self.options.stale_serve
                || self.halted().is_some()
                || self.bootstrapping().is_some()
                || stream_fault.is_some(),
            rejecting: self.rejecting.load(Ordering::Acquire),
            halted: self.halted(),
            stream_fault,
            foreign_messages,
            last_foreign,
            hosts,
        }
    }

    /// Ends the announcing thread's wait.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.announce.notify_all();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(name: &str) -> Arc<Fleet> {
        let options = FleetOptions::new("memory")
            .host_id(name)
            .heartbeat(Duration::from_millis(20))
            .lease(Duration::from_millis(200))
            .confirm_timeout(Duration::from_secs(5))
            .stale_serve(Duration::from_millis(100))
            .stale_reject(Duration::from_millis(300));
        Fleet::new(options, Arc::new(AtomicBool::new(false)))
    }

    fn head(seq: u64) -> HostHead {
        HostHead {
            seq,
            hash: [seq as u8; 32],
            position: seq,
            at: 0,
            stale_for: 0,
            halted: false,
        }
    }

    /// A revocation waits for every live host; one that confirms ends its wait, and one
    /// whose lease ends drops out of it (it is not live any more) well before the timeout.
    #[test]
    fn confirm_waits_for_live_hosts_and_a_silent_one_drops_out_when_its_lease_ends() {
        let f = fleet("a");
        assert!(f.confirm(5).is_empty(), "alone: nothing to wait for");
        f.heard("b", head(4), Duration::ZERO);
        f.heard("c", head(4), Duration::ZERO);
        let started = Instant::now();
        let waiting = std::thread::scope(|s| {
            let w = s.spawn(|| f.confirm(5));
            std::thread::sleep(Duration::from_millis(30));
            f.heard("b", head(5), Duration::ZERO);
            w.join().unwrap()
        });
        assert!(waiting.is_empty(), "{waiting:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // A host that is heard from but does not apply is listed after the timeout.
        let g = Fleet::new(
            FleetOptions::new("memory")
                .host_id("a")
                .heartbeat(Duration::from_millis(20))
                .lease(Duration::from_secs(60))
                .confirm_timeout(Duration::from_millis(100)),
            Arc::new(AtomicBool::new(false)),
        );
        g.heard("slow", head(1), Duration::ZERO);
        assert_eq!(g.confirm(2), ["slow"]);
    }

    /// Out of touch: healthy, then unhealthy past the first limit, then rejecting past the
    /// second; contact alone does not end the rejecting, catching up with the stream does.
    #[test]
    fn staleness_goes_unhealthy_then_rejecting_and_ends_once_caught_up() {
        let f = fleet("a");
        let status = || f.status(|_| None);
        assert!(!status().unhealthy);
        *lock(&f.contact) = Instant::now() - Duration::from_millis(150);
        f.check_staleness(|| Some(0));
        assert!(status().unhealthy && !status().rejecting);
        *lock(&f.contact) = Instant::now() - Duration::from_millis(400);
        f.check_staleness(|| Some(0));
        assert!(status().rejecting);
        f.contact();
        f.check_staleness(|| Some(3));
        assert!(
            status().rejecting,
            "contact is back, but the stream is at 3 and this host at 0"
        );
        assert!(!status().unhealthy);
        f.applied(
            Head {
                seq: 3,
                hash: [0; 32],
                at: 0,
            },
            3,
        );
        assert!(!status().rejecting);
    }

    #[test]
    fn options_with_bad_names_or_limits_are_refused() {
        let ok = FleetOptions::new("nats://127.0.0.1:4222");
        assert!(ok.validated().is_ok());
        for bad in [
            ok.clone().stream("a.b"),
            ok.clone().host_id(""),
            ok.clone().replicas(0),
            ok.clone()
                .lease(Duration::from_millis(100))
                .heartbeat(Duration::from_millis(200)),
            ok.clone()
                .stale_serve(Duration::from_secs(10))
                .stale_reject(Duration::from_secs(1)),
        ] {
            assert!(
                matches!(bad.validated(), Err(Error::InvalidInput { .. })),
                "{bad:?}"
            );
        }
    }
}
