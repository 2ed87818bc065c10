//! Many hosts, one ledger: each host's store is a replica of a shared log (a NATS
//! JetStream stream, `log/nats.rs`), and every host's projection follows it.
//!
//! Five parts, none of which names the engine:
//! - [`Fleet`] (`fleet/hosts.rs`): what the hosts know of each other. Each announces its
//!   applied head, sealed (`fleet/head.rs`); a revocation waits there until every host
//!   that may still accept keys has applied it. It also keeps this host's contact with
//!   the stream and its fence (`fleet/fence.rs`): a host the others cannot hear rejects
//!   every key before they stop waiting for it.
//! - [`Replica`] (`fleet/replica.rs`): the writer's side. It appends a batch's entries to
//!   the stream as one message after the last position it applied (losing a race means
//!   accepting the winner's messages through the ledger and preparing again), and applies
//!   what other hosts append: its seal checked for this stream and place
//!   (`fleet/message.rs`; a message that is not the fleet's is skipped and counted), its
//!   records checked by the ledger, then written to the local log. A sealed message that
//!   does not fit stops this host's writes; a stream that is not the fleet's any more
//!   (`fleet/stream.rs`) stops them until it is right again.
//! - [`Rejoin`](offline::Rejoin) (`fleet/offline.rs`): a host started while the shared log
//!   is out of reach serves from its replica under its staleness limits, counted from the
//!   replica's record of when the fleet last heard it (`fleet/contact.rs`), takes no write,
//!   and joins once the shared log answers.
//! - The public options and reports: [`FleetOptions`], [`FleetStatus`], [`HostStatus`],
//!   [`Revoked`].
// Without the `nats` feature there is no shared log to join: the types stay (the store
// names them) but nothing builds a fleet.
#![cfg_attr(not(feature = "nats"), allow(dead_code, unreachable_pub))]

pub(crate) mod announce;
pub(crate) mod contact;
pub(crate) mod fence;
pub(crate) mod forward;
pub(crate) mod head;
pub(crate) mod hosts;
pub(crate) mod message;
pub(crate) mod offline;
pub(crate) mod replica;
pub(crate) mod report;
pub(crate) mod route;
pub(crate) mod stream;
pub(crate) mod usage;

use std::path::PathBuf;
use std::time::Duration;

use crate::log::connection::Auth;
use crate::log::connection::Connection;
use crate::log::connection::Tls;
use crate::log::connection::without_userinfo;
use crate::model::error::Error;

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
    pub(crate) usage_interval: Duration,
    pub(crate) forward_writes: bool,
}

impl std::fmt::Debug for FleetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = self.auth.describe();
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
            .field("usage_interval", &self.usage_interval)
            .field("forward_writes", &self.forward_writes)
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
            usage_interval: Duration::from_millis(200),
            forward_writes: true,
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
    /// ([`Rejection::Stale`](crate::access::Rejection::Stale)) until it is heard again and has
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
    /// 10 s); past it, `/healthz` answers 503 so that a load balancer drains it. A host
    /// started while the stream is out of reach reports itself stale until it has joined.
    pub fn stale_serve(mut self, limit: Duration) -> Self {
        self.stale_serve = limit;
        self
    }

    /// How long a host started with [`FleetOptions::serve_past_lease`] keeps verifying
    /// keys when no announcement is acknowledged (default 60 s); past it, every key is
    /// rejected ([`Rejection::Stale`](crate::access::Rejection::Stale)) until it is heard again
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

    /// How often each host reports what it admitted to the others, so that rate limits
    /// and credits hold for the fleet (default 200 ms; 10 ms to 10 s, and shorter than
    /// the lease). Shorter rounds admit less past a limit (see
    /// `docs/design.md`, "Rate limits and credits across the fleet"), at one small message
    /// per host per round.
    pub fn usage_interval(mut self, every: Duration) -> Self {
        self.usage_interval = every;
        self
    }

    /// Forward this host's writes to the fleet's writer, the live host with the smallest
    /// id (default true), rather than race the other hosts to append each batch: fairer
    /// and faster under load from several hosts. Off, this host appends its own batches
    /// (it still takes the writes others forward to it). See `docs/design.md`,
    /// "Forwarded writes".
    pub fn forward_writes(mut self, yes: bool) -> Self {
        self.forward_writes = yes;
        self
    }

    /// Checks the options; the typed error names the first one that is wrong.
    pub(crate) fn validated(&self) -> Result<(), Error> {
        let name_ok = valid_host_id;
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
        if self.usage_interval < Duration::from_millis(10)
            || self.usage_interval > Duration::from_secs(10)
            || self.usage_interval >= self.lease
        {
            return Err(Error::invalid(
                "usage interval",
                "must be 10 ms to 10 s, and shorter than the lease",
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

    /// The subject the hosts report what they admitted on: not the stream's.
    pub(crate) fn usage_subject(&self) -> String {
        format!("keyledger.{}.usage", self.stream)
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

    /// What the NATS engine needs to reach the stream and the heads bucket.
    pub(crate) fn connection(&self) -> Connection {
        Connection {
            urls: self.url.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            client_name: format!("keyledger {}", self.host),
            request_timeout: self.request_timeout,
            // Out of touch, a request waits no longer than a heartbeat (and at least a
            // second, so a busy machine is not taken for a lost server).
            patience: self.heartbeat.max(Duration::from_secs(1)),
            stream: self.stream.clone(),
            subject: self.subject(),
            usage_subject: self.usage_subject(),
            writes_subject: format!("keyledger.{}.write", self.stream),
            answers_subject: format!("keyledger.{}.answer", self.stream),
            replicas: self.replicas,
            heads_bucket: self.heads_bucket(),
            heads_max_age: self.heads_max_age(),
            snapshots_bucket: format!("{}-snapshots", self.stream),
            serves: Some(self.host.clone()),
        }
    }
}

/// Whether `s` may name a host or a stream: 1 to 64 letters, digits, `-` or `_` (a NATS
/// subject token).
pub(crate) fn valid_host_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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

/// Whether this host enforces rate limits and credits against the whole fleet's counts;
/// see [`FleetStatus::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UsageSharing {
    /// Every host's report of the last round is in: each key's share is granted again
    /// from the fleet's counts every round.
    Live,
    /// This host does not hear its own reports come back, or a host that was sharing fell
    /// silent, or sharing has not started: each host keeps to its share, a key's limit
    /// (and credits) over the hosts.
    #[default]
    LocalShare,
}

impl UsageSharing {
    /// `live` or `local_share`.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSharing::Live => "live",
            UsageSharing::LocalShare => "local_share",
        }
    }
}

/// How this host shares rate limits and credits with the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UsageStatus {
    /// Live, or each host keeping to its share.
    pub sharing: UsageSharing,
    /// How many hosts share each key's limits and credits, this one included.
    pub hosts: usize,
    /// Messages on the usage subject dropped since this host started: not sealed for
    /// this fleet, replayed, or of an earlier run.
    pub dropped_reports: u64,
    /// Why the last of them was dropped.
    pub last_dropped: Option<String>,
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
    /// The stream's id (32 hex digits), from its genesis: the same on every host of the
    /// fleet.
    pub stream_id: String,
    /// How long since this host last heard from the stream (zero while in contact).
    pub stale_for: Duration,
    /// Whether it reports itself unhealthy: see `causes`.
    pub unhealthy: bool,
    /// Whether it rejects every key: fenced (unheard past its limit, or in touch again and
    /// catching up), or leaving.
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
    /// How rate limits and credits are shared with the other hosts.
    pub usage: UsageStatus,
    /// Where this host's writes go: the fleet's writer, and what was forwarded.
    pub writes: WriteRoutes,
}

/// Where a host's writes go (see `docs/design.md`, "Forwarded writes"): every host sends
/// its batches to one writer, the live host with the smallest id, which appends them with
/// its own; a host that cannot reach it appends them itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteRoutes {
    /// The host that writes this host's batches now (this host's own id when it writes
    /// them itself).
    pub writer: String,
    /// Commands this host forwarded to the writer and had answered.
    pub forwarded: u64,
    /// Commands other hosts forwarded to this host and it took.
    pub served: u64,
    /// Times the writer could not be reached and this host appended its batches itself
    /// (for a couple of seconds each time).
    pub fallbacks: u64,
    /// Requests on this host's writes subject refused: not sealed with the fleet's chain
    /// key for this stream and host, too old or new by this host's clock, replayed, or
    /// holding a command that breaks the rules. They get no answer.
    pub refused_requests: u64,
    /// Why the last of them was refused.
    pub last_refused: Option<String>,
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
    /// The stream's id (32 hex digits), from its genesis; empty if it has none yet.
    pub stream_id: String,
    /// Why the stream cannot be trusted as the server shows it, if it cannot: messages
    /// removed, settings that let messages go or take other subjects, or no genesis of
    /// this fleet's (each host also checks its genesis: see
    /// [`FleetStatus::stream_fault`]).
    pub stream_problem: Option<String>,
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
pub fn survey(options: &FleetOptions, chain_key: &crate::chain::ChainKey) -> Result<FleetSurvey, Error> {
    options.validated()?;
    let chain = crate::chain::Chain::new(Some(chain_key));
    let read = crate::log::nats::survey(&options.connection())?;
    let state = read.state;
    let identity = stream::find_genesis(&read.first_messages, &state, &options.stream, &chain);
    let missing = state.last.saturating_sub(state.messages);
    let stream_problem = if missing > 0 {
        Some(format!("{missing} messages were removed from the stream"))
    } else if let Some(why) = state.unsafe_settings {
        Some(format!("the stream {why}"))
    } else {
        identity.as_ref().err().cloned()
    };
    let stream_id = identity.as_ref().ok().map(|i| i.stream_id);
    let mut heads = Vec::new();
    let mut ignored = Vec::new();
    for (host, bytes, age) in read.entries {
        let Some(stream_id) = stream_id else {
            ignored.push(IgnoredHead {
                host,
                reason: "the stream has no genesis of this fleet to check it against".into(),
            });
            continue;
        };
        match head::decode(&bytes, &host, &stream_id, &chain) {
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
        last_position: state.last,
        stream_id: stream_id.map(|id| message::hex(&id)).unwrap_or_default(),
        stream_problem,
        hosts,
        ignored,
    })
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
            // Usage reports every so often: never zero, never as long as the lease.
            ok.clone().usage_interval(Duration::ZERO),
            ok.clone().usage_interval(Duration::from_secs(11)),
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
