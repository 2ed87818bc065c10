//! Many hosts, one ledger: each host's store is a replica of a shared log (a NATS
//! JetStream stream, `log/nats.rs`), and every host's projection follows it.
//!
//! Four parts, none of which names the engine:
//! - [`Fleet`] (`fleet/hosts.rs`): what the hosts know of each other. Each announces its
//!   applied head, sealed (`fleet/head.rs`); a revocation waits there until every host
//!   that may still accept keys has applied it. It also keeps this host's contact with
//!   the stream and its fence (`fleet/fence.rs`): a host the others cannot hear rejects
//!   every key before they stop waiting for it.
//! - [`Replica`]: the writer's side. It appends a batch's entries to the stream as one
//!   message after the last position it applied (losing a race means accepting the
//!   winner's messages through the ledger and preparing again), and applies what other
//!   hosts append: decoded, checked by the ledger (sequence, chain key, rules), then
//!   written to the local log. Anything that does not fit stops this host's writes.
//! - The public options and reports: [`FleetOptions`], [`FleetStatus`], [`HostStatus`],
//!   [`Revoked`].
// Without the `nats` feature there is no shared log to join: the types stay (the store
// names them) but nothing builds a fleet.
#![cfg_attr(not(feature = "nats"), allow(dead_code, unreachable_pub))]

mod fence;
pub(crate) mod head;
mod hosts;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::Error;
use crate::chain::{Chain, Head};
use crate::check::ProblemKind;
use crate::codec;
use crate::ledger::Ledger;
use crate::log::{AppendError, Delivered, Entry, Log, LogError, MetaKey, SharedLog};

pub(crate) use fence::Fence;
#[cfg(any(feature = "nats", test))]
pub(crate) use hosts::Outcome;
pub(crate) use hosts::{Fleet, hold_for};

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
    pub(crate) margin: Duration,
    pub(crate) serve_past_lease: bool,
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
            .field("margin", &self.margin)
            .field("serve_past_lease", &self.serve_past_lease)
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
            lease: Duration::from_secs(12),
            margin: Duration::from_secs(1),
            serve_past_lease: false,
            confirm_timeout: Duration::from_secs(15),
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

    /// How long a host counts as live after its last announcement the server acknowledged
    /// (default 12 s: longer than a NATS leader election); unheard that long, a host fences itself: it rejects every key
    /// ([`Rejection::Stale`](crate::Rejection::Stale)) until it is heard again and has
    /// applied the stream's end. See `docs/design.md`, "Fencing".
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How much longer than a silent host's lease this host waits before it counts that
    /// host as fenced in a revocation's confirmation (default 1 s; at least the lease's
    /// 0.25 % and 20 ms, for clocks running at different rates).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Keep verifying past the lease, until `stale_reject`, when no announcement is
    /// acknowledged (default false): more available, but a revocation can then be
    /// confirmed only while this host is heard from. It says so in its sealed head, and
    /// while it is silent, revocation answers list it as unconfirmed until its
    /// `stale_reject` has surely passed.
    pub fn serve_past_lease(mut self, yes: bool) -> Self {
        self.serve_past_lease = yes;
        self
    }

    /// How long a revocation waits for every host that may accept keys to apply it
    /// (default 15 s: longer than the lease and the margin, so that a dead host is counted
    /// out before the wait ends; zero answers at once, naming the hosts it could not count,
    /// and [`UNSEEN_HOSTS`]).
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

    /// How long a host started with [`FleetOptions::serve_past_lease`] keeps verifying
    /// keys when no announcement is acknowledged (default 60 s); past it, every key is
    /// rejected ([`Rejection::Stale`](crate::Rejection::Stale)) until it is heard again
    /// and has caught up. A host that fences does so at its lease, which must not be
    /// longer.
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
        if self.lease > self.stale_reject {
            return Err(Error::invalid(
                "lease",
                "must not be longer than the limit for rejecting keys (stale_reject)",
            ));
        }
        if self.margin < hold_for(self.lease, Duration::ZERO) - self.lease {
            return Err(Error::invalid(
                "margin",
                "must be at least 0.25 % of the lease and 20 ms, for clocks running at different rates",
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

    /// How long after its last acknowledged announcement this host rejects every key.
    pub(crate) fn fence_limit(&self) -> Duration {
        if self.serve_past_lease {
            self.stale_reject
        } else {
            self.lease
        }
    }

    /// How long an entry of the heads bucket lives: as long as any host of these settings
    /// may wait for a silent one, so that a host starting meanwhile still sees it.
    pub(crate) fn heads_max_age(&self) -> Duration {
        hold_for(self.stale_reject.max(self.lease), self.margin)
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
/// which hosts may still accept the key when the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The sequence number of its last record.
    pub seq: u64,
    /// Hosts that may still accept the key (empty for a single host, or when every host
    /// confirmed): live hosts that had not applied it when the wait ended; silent hosts
    /// started with [`FleetOptions::serve_past_lease`], until their `stale_reject` has
    /// surely passed; and [`UNSEEN_HOSTS`] when this host could not see its own
    /// announcement of the record come back from the heads bucket (so it cannot vouch
    /// for hosts it may not know). A silent host that fences is not listed once its lease
    /// and the margin have passed: it rejects every key by then.
    pub unconfirmed: Vec<String>,
}

/// In [`Revoked::unconfirmed`]: this host's view of the heads bucket was not current, so
/// hosts it does not know of may not have the revocation. No host id can be `*`.
pub const UNSEEN_HOSTS: &str = "*";

/// A heads-bucket entry that counts for nothing (see [`FleetStatus::ignored_heads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IgnoredHead {
    /// The name it was stored under.
    pub host: String,
    /// Why it counts for nothing: not a head, an unsealed version 1 head, or a seal that
    /// does not verify for this name and stream.
    pub reason: String,
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
    /// Whether it was heard from within its lease.
    pub live: bool,
    /// How long it has been out of contact with the stream, as it last said.
    pub stale_for: Duration,
    /// Whether it stopped writing.
    pub halted: bool,
    /// Whether its record at its head differs from this host's record there: a fork.
    pub diverged: bool,
    /// Whether it fences itself at its lease (false: it serves past it).
    pub fences: bool,
}

/// The fleet as this host sees it: its own place in the stream and every host heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStatus {
    /// This host's id.
    pub host: String,
    /// The stream's name.
    pub stream: String,
    /// How long since this host last heard from the stream (zero while in contact).
    pub stale_for: Duration,
    /// Whether it reports itself unhealthy: see `causes`.
    pub unhealthy: bool,
    /// Whether it rejects every key: fenced (unheard past its limit, or in touch again and
    /// catching up), or leaving.
    pub rejecting: bool,
    /// Why this host stopped writing, if it did.
    pub halted: Option<String>,
    /// Every host heard from within a few leases, this one first.
    pub hosts: Vec<HostStatus>,
    /// Why it is unhealthy, one entry per cause: a short code (`halted`, `stale`,
    /// `fenced`, `bootstrapping`, `heads_bucket`, ...) and a sentence.
    pub causes: Vec<(&'static str, String)>,
    /// How many heads-bucket entries counted for nothing since this host started.
    pub ignored_heads: u64,
    /// The last of them.
    pub last_ignored: Option<IgnoredHead>,
    /// How many times this host found the heads bucket missing, or made again by another
    /// host (deleted under the fleet).
    pub heads_bucket_lost: u64,
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
    /// The hosts whose sealed heads verify, by id, except those that left; `lag` is
    /// counted from the most advanced one.
    pub hosts: Vec<HostStatus>,
    /// The entries that count for nothing (forged, unsealed, another stream's), by name.
    pub ignored: Vec<IgnoredHead>,
}

/// Reads the fleet's shared log and the hosts' announced heads, without joining the fleet
/// and without creating anything (`keyledger fleet`). The heads are sealed with the chain
/// key: only those that verify are hosts; the others are listed as ignored.
///
/// # Errors
/// [`Error::InvalidInput`] for bad options; [`Error::StreamUnavailable`] if the server
/// cannot be reached or has no such stream.
#[cfg(feature = "nats")]
pub fn survey(options: &FleetOptions, chain_key: &crate::ChainKey) -> Result<FleetSurvey, Error> {
    options.validated()?;
    let chain = Chain::new(Some(chain_key));
    let read = crate::log::nats_survey(options)?;
    let mut heads = Vec::new();
    let mut ignored = Vec::new();
    for (host, bytes, age) in read.entries {
        match head::decode(&bytes, &host, &read.stream_id, &chain) {
            Ok(h) if h.leaving => {}
            Ok(h) => heads.push((host, h, age)),
            Err(refused) => ignored.push(IgnoredHead {
                host,
                reason: refused.to_string(),
            }),
        }
    }
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
            live: age <= Duration::from_micros(head.lease),
            stale_for: Duration::from_micros(head.stale_for),
            halted: head.halted,
            diverged: false,
            fences: head.fences,
        })
        .collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    ignored.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(FleetSurvey {
        stream: options.stream.clone(),
        last_position: read.last_position,
        hosts,
        ignored,
    })
}

/// How many messages one application of stream messages takes at most, and how many
/// bytes of entries: bounds the write a catch-up makes between syncs.
const APPLY_MESSAGES: usize = 4096;
const APPLY_BYTES: usize = 8 << 20;
/// The local log is synced when idle, at close, and once this many bytes are unsynced:
/// the stream is the record, and acknowledges a write before this host's disk does.
const SYNC_BYTES: usize = 8 << 20;
/// How many times a batch is prepared again after losing the race to append.
pub(crate) const MAX_RACES: usize = 64;

/// The writer's side of a shared log; see the module doc.
pub(crate) struct Replica {
    shared: Box<dyn SharedLog>,
    pub(crate) fleet: Arc<Fleet>,
    /// The position of the last message applied.
    position: u64,
    /// Messages as they are appended, from the stream.
    pub(crate) incoming: Receiver<Delivered>,
    /// While a lost race is caught up with: the hash of this host's own message, which may
    /// be in the stream already (an append whose answer was lost, sent again), and where
    /// it was found.
    own: Option<([u8; 32], Option<u64>)>,
    /// Bytes of entries written to the local log since its last sync.
    unsynced: usize,
    /// The delivery has delivered nothing for a whole request timeout: catch-ups read.
    stalled: bool,
}

/// How appending a batch ended.
pub(crate) enum Appended {
    /// At this position; the entries are to be written locally and accepted.
    At(u64),
    /// Another host appended first; its messages are applied: prepare again.
    Lost,
    /// The message was in the stream already (an append whose answer was lost, sent
    /// again), and is applied with the others: nothing left to write.
    Applied,
    /// The message is too large for the stream.
    TooLarge(usize),
}

impl Replica {
    /// Joins the stream: checks that the local log (at `ledger`'s head) is a prefix of it,
    /// publishes the local log as the stream's beginning if the stream is empty, then
    /// catches up with the stream's end. Refuses, naming the first difference, a local log
    /// that is not a prefix of the stream.
    pub(crate) fn join(
        mut shared: Box<dyn SharedLog>,
        fleet: Arc<Fleet>,
        log: &mut dyn Log,
        ledger: &Ledger,
    ) -> Result<Self, Error> {
        let head = ledger.head();
        let last = shared.last()?;
        fleet.contact();
        let stored = log
            .meta(MetaKey::Position)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        let chain = ledger.chain();
        let mut position = 0;
        if last == 0 && head.seq > 0 {
            position = bootstrap(&mut *shared, log, fleet.host(), chain, (0, 0), head.seq)?;
        } else if head.seq > 0 || stored > 0 {
            position = match find_prefix(&mut *shared, log, chain, head.seq, stored, last)? {
                Prefix::At(position) => position,
                // This host's own bootstrap, cut short (a crash, an unanswered append):
                // published on from where the stream ends.
                Prefix::UnfinishedBootstrap { position, through } if through.1 == fleet.host() => bootstrap(
                    &mut *shared,
                    log,
                    fleet.host(),
                    chain,
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
        // A stream begun by a bootstrap says, in its first message, the record the
        // bootstrap reaches: until a host has it, it takes no write.
        if last > 0 || position > 0 {
            let first = codec::decode_message(&shared.get(1)?, 1, chain)?;
            fleet.bootstrapped_through(first.bootstrap);
        }
        let incoming = shared.follow(position + 1)?;
        let mut replica = Replica {
            shared,
            fleet,
            position,
            incoming,
            own: None,
            unsynced: 0,
            stalled: false,
        };
        replica.set_position(log, position)?;
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
        let fleet = Arc::clone(&replica.fleet);
        replica.shared.announce(fleet)?;
        Ok(replica)
    }

    fn set_position(&mut self, log: &mut dyn Log, position: u64) -> Result<(), Error> {
        self.position = position;
        log.set_meta(MetaKey::Position, &position.to_le_bytes())?;
        Ok(())
    }

    /// Applies the stream's messages up to position `to`, from what has been delivered and
    /// by reading the rest.
    pub(crate) fn catch_up(&mut self, log: &mut dyn Log, ledger: &Ledger, to: u64) -> Result<(), Error> {
        if self.position >= to {
            return Ok(());
        }
        // Two stages: this thread collects, decodes and accepts the messages; another writes
        // the accepted entries to the local log, one batch behind.
        let (tx, rx) = crossbeam_channel::bounded::<(Vec<Entry>, Vec<u8>, u64)>(2);
        let (caught_up, written) = std::thread::scope(|s| {
            let writer = s.spawn(move || -> Result<&mut dyn Log, LogError> {
                for (entries, head, position) in rx {
                    write_replica(log, &entries, &head, position)?;
                }
                Ok(log)
            });
            let caught_up = (|| {
                while self.position < to {
                    let batch = self.collect(to)?;
                    let mut checked = self.check(ledger, batch);
                    if !checked.entries.is_empty() {
                        let head = ledger.encode_head(checked.head)?;
                        let entries = std::mem::take(&mut checked.entries);
                        let bytes = entries.iter().map(|e| e.1.len()).sum::<usize>();
                        if tx.send((entries, head, checked.applied_to)).is_err() {
                            break;
                        }
                        self.unsynced += bytes;
                        self.position = checked.applied_to;
                        self.fleet.applied(checked.head, checked.applied_to);
                    }
                    if let Some(e) = checked.refused {
                        return Err(e);
                    }
                }
                Ok(())
            })();
            drop(tx);
            (caught_up, writer.join())
        });
        let log = match written {
            Ok(Ok(log)) => log,
            Ok(Err(e)) => return Err(self.halting(Error::from(e))),
            Err(_) => return Err(self.halting(Error::Closed)),
        };
        self.sync_if_due(log)?;
        caught_up.map_err(|e| match e {
            Error::StreamUnavailable { .. } | Error::Storage { .. } => e,
            refused => {
                let pos = self.position + 1;
                self.halting(Error::FleetHalted {
                    reason: format!("stream message {pos} was refused: {refused}"),
                })
            }
        })
    }

    /// The next messages to apply, up to position `to`: delivered ones (the fast path); a
    /// message is read only where the delivery has a gap, or has delivered nothing for a
    /// whole request timeout.
    fn collect(&mut self, to: u64) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let wait = self.fleet.options.request_timeout;
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        loop {
            let want = self.position + batch.len() as u64 + 1;
            if want > to || batch.len() >= APPLY_MESSAGES || bytes >= APPLY_BYTES {
                break;
            }
            let patience = if batch.is_empty() { wait } else { Duration::ZERO };
            match self.incoming.recv_timeout(patience) {
                Ok(Ok((pos, _))) if pos < want => self.stalled = false,
                Ok(Ok((pos, msg))) => {
                    self.stalled = false;
                    // A gap is read, a bounded part of it at a time (the rest is read
                    // by the next round).
                    let pos_or_bound = pos.min(want + APPLY_MESSAGES as u64);
                    if pos_or_bound < pos {
                        for gap in want..pos_or_bound {
                            batch.push((gap, self.shared.get(gap)?));
                        }
                        break;
                    }
                    for gap in want..pos {
                        let missing = self.shared.get(gap)?;
                        bytes += missing.len();
                        batch.push((gap, missing));
                    }
                    bytes += msg.len();
                    batch.push((pos, msg));
                }
                Ok(Err(_)) | Err(_) if batch.is_empty() || (self.stalled && to != u64::MAX) => {
                    // Nothing delivered for a whole timeout: read, and keep reading (up to
                    // the end asked for) until deliveries resume.
                    self.stalled = true;
                    let msg = self.shared.get(want)?;
                    bytes += msg.len();
                    batch.push((want, msg));
                }
                // Nothing more delivered yet: apply what there is.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        self.fleet.contact();
        Ok(batch)
    }

    /// Applies what has been delivered without waiting; reads a gap in the delivery.
    pub(crate) fn apply_delivered(
        &mut self,
        log: &mut dyn Log,
        ledger: &Ledger,
        first: Delivered,
    ) -> Result<(), Error> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let (pos, msg) = item?;
            self.fleet.contact();
            let want = self.position + batch.len() as u64 + 1;
            if pos >= want {
                // A gap is read, a bounded part of it at a time (the idle poll reads on).
                let bound = want + APPLY_MESSAGES as u64;
                for gap in want..pos.min(bound) {
                    let msg = self.shared.get(gap)?;
                    bytes += msg.len();
                    batch.push((gap, msg));
                }
                if pos >= bound {
                    break;
                }
                bytes += msg.len();
                batch.push((pos, msg));
            }
            if batch.len() < APPLY_MESSAGES && bytes < APPLY_BYTES {
                next = self.incoming.try_recv().ok();
            }
        }
        self.apply(log, ledger, batch)
    }

    /// Reads the stream's end and catches up with it (the follower may have stalled).
    /// After a lost race: applies at least the next message (the winner's, delivered
    /// within a moment, or read), and whatever else has been delivered by then.
    fn apply_next(&mut self, log: &mut dyn Log, ledger: &Ledger) -> Result<(), Error> {
        let at_least = self.position + 1;
        while self.position < at_least {
            let batch = self.collect(u64::MAX)?;
            self.apply(log, ledger, batch)?;
        }
        Ok(())
    }

    pub(crate) fn poll(&mut self, log: &mut dyn Log, ledger: &Ledger) -> Result<(), Error> {
        let last = self.shared.last()?;
        self.fleet.contact();
        self.catch_up(log, ledger, last)
    }

    /// Decodes, checks and accepts consecutive messages, then writes their entries to the
    /// local log. A message that does not follow the head, or whose records the ledger
    /// refuses, halts this host's writes.
    fn apply(&mut self, log: &mut dyn Log, ledger: &Ledger, batch: Vec<(u64, Vec<u8>)>) -> Result<(), Error> {
        let checked = self.check(ledger, batch);
        if !checked.entries.is_empty() {
            let head = ledger.encode_head(checked.head)?;
            write_replica(log, &checked.entries, &head, checked.applied_to)
                .map_err(|e| self.halting(Error::from(e)))?;
        }
        self.settle_checked(log, checked)
    }

    /// Decodes consecutive messages and has the ledger accept their records, stopping at
    /// the first that does not fit. Changes the state, not the local log.
    fn check(&mut self, ledger: &Ledger, batch: Vec<(u64, Vec<u8>)>) -> Checked {
        let mut checked = Checked {
            entries: Vec::new(),
            head: ledger.head(),
            applied_to: self.position,
            refused: None,
        };
        for (pos, bytes) in batch {
            if let Some((own, found)) = self.own.as_mut()
                && found.is_none()
                && blake3::hash(&bytes).as_bytes() == own
            {
                *found = Some(pos);
            }
            let accepted = codec::decode_message(&bytes, pos, ledger.chain()).and_then(|m| {
                let head = ledger.head();
                if m.first != head.seq + 1 {
                    return Err(Error::corrupt(
                        head.seq + 1,
                        ProblemKind::Inserted,
                        format!(
                            "stream message {pos} holds records {}..={} but this host's log ends at record {}: \
                             the stream and this host's log disagree",
                            m.first, m.last, head.seq
                        ),
                    ));
                }
                self.fleet.bootstrapped_through(m.bootstrap);
                ledger.accept(&m.entries).map(|()| m.entries)
            });
            match accepted {
                Ok(mut e) => {
                    checked.entries.append(&mut e);
                    checked.applied_to = pos;
                    checked.head = ledger.head();
                }
                Err(e) => {
                    checked.refused = Some(e);
                    break;
                }
            }
        }
        checked
    }

    /// After the checked entries were written: the position, the sync, the announcement;
    /// and the halt, if a message was refused.
    fn settle_checked(&mut self, log: &mut dyn Log, checked: Checked) -> Result<(), Error> {
        if !checked.entries.is_empty() {
            self.position = checked.applied_to;
            self.unsynced += checked.entries.iter().map(|e| e.1.len()).sum::<usize>();
            self.sync_if_due(log)?;
            self.fleet.applied(checked.head, checked.applied_to);
        }
        match checked.refused {
            None => Ok(()),
            Some(e) => {
                let pos = checked.applied_to + 1;
                Err(self.halting(Error::FleetHalted {
                    reason: format!("stream message {pos} was refused: {e}"),
                }))
            }
        }
    }

    /// Halts this host's writes for `e`; returns it.
    fn halting(&self, e: Error) -> Error {
        let reason = match &e {
            Error::FleetHalted { reason } => reason.clone(),
            other => format!("this host's log could not take the stream's records: {other}"),
        };
        self.fleet.halt(reason.clone());
        Error::FleetHalted { reason }
    }

    /// Appends a batch's entries as one message after the last position applied. On a lost
    /// race, applies the winner's messages.
    pub(crate) fn append(
        &mut self,
        log: &mut dyn Log,
        ledger: &Ledger,
        entries: &[Entry],
    ) -> Result<Appended, Error> {
        let message = codec::encode_message(self.fleet.host(), 0, entries, ledger.chain())?;
        // An append the stream did not answer is sent once more, the same bytes: if the
        // first one landed, the stream's deduplication answers with its position.
        let mut appended = self.shared.append(self.position, &message);
        if matches!(appended, Err(AppendError::Uncertain(_))) {
            appended = self.shared.append(self.position, &message);
        }
        match appended {
            Ok(at) => {
                self.fleet.contact();
                Ok(Appended::At(at))
            }
            Err(AppendError::Conflict) => {
                // The stream checks the position before it deduplicates: a resent message
                // that landed the first time is a conflict, and is found among the
                // messages the catch-up applies.
                self.fleet.contact();
                self.own = Some((*blake3::hash(&message).as_bytes(), None));
                let caught_up = self.apply_next(log, ledger);
                let found = self.own.take().and_then(|(_, found)| found);
                // Found and applied, even if a later message halted this host: the write
                // is in the shared log and in this host's state.
                if found.is_some_and(|at| at <= self.position) {
                    return Ok(Appended::Applied);
                }
                caught_up?;
                Ok(Appended::Lost)
            }
            Err(AppendError::TooLarge { limit }) => Ok(Appended::TooLarge(limit)),
            Err(AppendError::Uncertain(e)) => Err(Error::StreamUnavailable {
                reason: format!("{e}; the write is wholly in the stream or wholly absent"),
            }),
        }
    }

    /// This host's own message, appended at `position`, was written to the local log
    /// (`bytes` of entries): records the position, and syncs if enough is unsynced.
    pub(crate) fn written(&mut self, log: &mut dyn Log, position: u64, bytes: usize) -> Result<(), Error> {
        self.set_position(log, position)?;
        self.unsynced += bytes;
        self.sync_if_due(log)
    }

    fn sync_if_due(&mut self, log: &mut dyn Log) -> Result<(), Error> {
        if self.unsynced >= SYNC_BYTES {
            self.settle(log)?;
        }
        Ok(())
    }

    /// Syncs the local log if anything was written since the last sync. The stream holds
    /// everything already: a crash before this only costs the restart a longer catch-up.
    pub(crate) fn settle(&mut self, log: &mut dyn Log) -> Result<(), Error> {
        if self.unsynced > 0 {
            log.sync().map_err(|e| self.halting(Error::from(e)))?;
            self.unsynced = 0;
        }
        Ok(())
    }
}

/// Messages the ledger accepted: their entries, the head and position they reach, and why
/// the next one was refused, if one was.
struct Checked {
    entries: Vec<Entry>,
    head: Head,
    applied_to: u64,
    refused: Option<Error>,
}

/// Writes accepted entries to the local log, with their sealed head and stream position.
fn write_replica(log: &mut dyn Log, entries: &[Entry], head: &[u8], position: u64) -> Result<(), LogError> {
    log.write(&crate::log::Batch {
        discard_from: None,
        entries,
        head,
    })?;
    log.set_meta(MetaKey::Position, &position.to_le_bytes())
}

impl Drop for Replica {
    /// The writer is gone: this host leaves the fleet (its announcements stop, which the
    /// shared log's threads wait for before they end).
    fn drop(&mut self) {
        self.fleet.close();
    }
}

/// Publishes the local log (reaching record `through`) as an empty stream's beginning, in
/// messages of at most the stream's size, each saying `through`; or, after an interrupted
/// bootstrap, the rest of it: the entries after record `published`, after stream position
/// `after`. Returns the last position.
fn bootstrap(
    shared: &mut dyn SharedLog,
    log: &mut dyn Log,
    origin: &str,
    chain: &Chain,
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
        let message = codec::encode_message(origin, through, pending, chain)?;
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
/// position (a hint, checked) when there is one, else from the stream's start.
fn find_prefix(
    shared: &mut dyn SharedLog,
    log: &mut dyn Log,
    chain: &Chain,
    head: u64,
    stored: u64,
    last: u64,
) -> Result<Prefix, Error> {
    let diverged = |position: u64, reason: String| Error::StreamDiverged { position, reason };
    // The stored position is where the previous run stopped; the message there must end
    // at or before the head (a crash may have left the hint one message behind).
    let mut from = 1;
    if stored > 0 && stored <= last {
        let m = codec::decode_message(&shared.get(stored)?, stored, chain)
            .map_err(|e| diverged(stored, e.to_string()))?;
        if m.last <= head {
            from = stored;
        }
    }
    if head == 0 {
        return Ok(Prefix::At(0));
    }
    let mut position = from - 1;
    let mut unfinished: Option<(u64, String)> = None;
    for pos in from..=last {
        let m = codec::decode_message(&shared.get(pos)?, pos, chain)
            .map_err(|e| diverged(pos, format!("the stream's message does not decode: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_with_bad_names_or_limits_are_refused() {
        let ok = FleetOptions::new("nats://127.0.0.1:4222");
        assert!(ok.validated().is_ok());
        assert!(ok.clone().serve_past_lease(true).validated().is_ok());
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
            // Fencing at the lease supersedes the rejecting limit: it cannot come later.
            ok.clone().lease(Duration::from_secs(90)),
            // The margin must cover the clocks' rates over the lease.
            ok.clone().margin(Duration::from_millis(5)),
            ok.clone()
                .lease(Duration::from_secs(30))
                .margin(Duration::from_millis(60)),
        ] {
            assert!(
                matches!(bad.validated(), Err(Error::InvalidInput { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_bucket_keeps_an_entry_as_long_as_any_host_may_wait_for_a_silent_one() {
        let o = FleetOptions::new("nats://127.0.0.1:4222");
        assert!(o.heads_max_age() >= hold_for(o.stale_reject, o.margin));
        assert!(o.heads_max_age() > hold_for(o.fence_limit(), o.margin));
        assert_eq!(o.clone().serve_past_lease(true).fence_limit(), o.stale_reject);
    }
}
