//! NATS JetStream as the shared log (feature `nats`): with `nats/writes.rs` (forwarded
//! writes), the only file that names `async-nats`.
//!
//! One stream holds the log, one message per writer batch on subject
//! `keyledger.<stream>.log`, created with no deletes, no purges and no limits. An append
//! carries `Nats-Expected-Last-Sequence` (the position the writer applied up to), so of two
//! hosts appending at once only one wins, and a `Nats-Msg-Id` (the message's blake3
//! hash), so that a retried append is idempotent within the stream's duplicate window. The
//! hosts announce their sealed heads in a key-value bucket `<stream>-hosts` whose entries
//! live as long as any host may wait for a silent one; a bucket deleted under the fleet is
//! made again.
//!
//! The client runs on a runtime of its own (one worker thread), so the library's API stays
//! synchronous: the writer blocks on an append, and threads of this module deliver the
//! stream's messages and the hosts' heads.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{ConnectOptions, HeaderMap};
use crossbeam_channel::Receiver;
use futures_util::StreamExt;

mod shelf;
mod writes;

pub(crate) use shelf::NatsShelf;

use super::connection::{Auth, Connection, without_userinfo};
use super::{
    AppendError, Delivered, Heads, Judge, LogError, Outcome, Reports, SharedLog, StreamState, Writes,
};
use crate::clock::monotonic_micros;

/// How long appends are remembered for deduplication.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Messages the follower buffers before it waits for the writer.
const FOLLOW_BUFFER: usize = 64;
/// Messages, and bytes, the follower pulls from the server at a time.
const FOLLOW_BATCH: i64 = 16;
const FOLLOW_BYTES: i64 = 8 << 20;

fn engine(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("NATS: {e}"))
}

/// The stream, through one connection.
pub(crate) struct NatsLog {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
    /// The task delivering the stream's messages to the writer.
    follower: Option<tokio::task::JoinHandle<()>>,
    kv: kv::Store,
    /// The threads announcing and hearing heads; they end when the fleet closes.
    heads: Vec<std::thread::JoinHandle<()>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// The task that reads the stream's state every period (`SharedLog::watch`).
    inspector: Option<tokio::task::JoinHandle<()>>,
    /// The task hearing the hosts' usage reports (`SharedLog::share_usage`).
    usage: Option<tokio::task::JoinHandle<()>>,
    /// The task taking the writes other hosts forward here (`SharedLog::serve_writes`).
    writes: Option<tokio::task::JoinHandle<()>>,
    /// Set when the server refused a publish of forwarded writes (`nats/writes.rs`).
    denied: Arc<writes::Denied>,
    /// The probe of the writes subjects of the host this connection serves, begun at
    /// connect ([`Connection::serves`]).
    probe: Option<(
        String,
        tokio::task::JoinHandle<Result<writes::Subscriptions, LogError>>,
    )>,
    /// How long an announcement waits for the server; how long a host waits to be seen.
    patience: Duration,
    request_timeout: Duration,
    /// Where the heads bucket is, to make it again.
    connection: Connection,
}

impl NatsLog {
    /// Connects, and finds or creates the stream and the heads bucket. A stream that
    /// exists with settings that would let messages be removed is refused.
    pub(crate) fn connect(options: &Connection) -> Result<Self, LogError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyledger-nats")
            .enable_all()
            .build()?;
        let denied = Arc::new(writes::Denied::default());
        let (client, js, stream, kv, probe) = rt.block_on(async {
            let (client, js) = connect(options, Some(&denied)).await?;
            let probe = options.serves.clone().map(|host| {
                let task = tokio::spawn(writes::probe(client.clone(), options.clone(), host.clone()));
                (host, task)
            });
            let stream = find_stream(&js, options).await?;
            let kv = find_bucket(&js, options).await?;
            Ok::<_, LogError>((client, js, stream, kv, probe))
        })?;
        Ok(NatsLog {
            rt,
            client,
            js,
            stream,
            subject: options.subject.clone(),
            patience: options.patience,
            request_timeout: options.request_timeout,
            connection: options.clone(),
            follower: None,
            kv,
            heads: Vec::new(),
            watcher: None,
            inspector: None,
            usage: None,
            writes: None,
            denied,
            probe,
        })
    }

    /// Starts announcing this host's head (at once when it changes, else every heartbeat)
    /// and hearing the other hosts'. Every answer from the server counts as contact; only
    /// an acknowledged announcement (or the server's word that the bucket is gone) keeps
    /// this host's fence open.
    fn start_heads(&mut self, fleet: Arc<dyn Heads>) -> Result<(), LogError> {
        let fleet_wait = Arc::clone(&fleet);
        let handle = self.rt.handle().clone();
        let announcer = Arc::clone(&fleet);
        let (stream, js, mut kv) = (self.stream.clone(), self.js.clone(), self.kv.clone());
        // Tells the watch to start again, on the bucket as it is now.
        let rewatch = Arc::new(tokio::sync::Notify::new());
        let restart = Arc::clone(&rewatch);
        let patience = self.patience;
        let connection = self.connection.clone();
        self.heads.push(
            std::thread::Builder::new()
                .name("keyledger-announce".into())
                .spawn(move || {
                    let host = announcer.host().to_owned();
                    let mut last_revision = 0;
                    // The last announcement says this host left: the others stop waiting for
                    // it at once. It stays in the bucket until it expires.
                    while let Some(announcement) = announcer.next_announcement() {
                        let mut sent = monotonic_micros();
                        let outcome =
                            match within(&handle, patience, kv.put(&host, announcement.bytes.into())) {
                                Some(Ok(revision)) => {
                                    announcer.clear_fault(BUCKET_FAULT);
                                    // Stored before this host's previous announcement: the bucket
                                    // was made again, and the watch follows the old one.
                                    if revision <= last_revision {
                                        announcer.note_bucket_lost();
                                        rewatch.notify_one();
                                    }
                                    last_revision = revision;
                                    Outcome::Acknowledged
                                }
                                _ => {
                                    sent = monotonic_micros();
                                    match within(&handle, patience, js.get_stream(kv.stream_name.clone())) {
                                        Some(Err(e)) if stream_missing(&e) => {
                                            kv = refind_bucket(
                                                &handle,
                                                &js,
                                                &*announcer,
                                                &connection,
                                                kv,
                                                patience,
                                            );
                                            Outcome::BucketMissing
                                        }
                                        Some(Ok(_)) => {
                                            announcer.contact();
                                            Outcome::Failed
                                        }
                                        _ => Outcome::Failed,
                                    }
                                }
                            };
                        if outcome == Outcome::Failed {
                            // The stream's state, which the server answers from memory: contact
                            // for the health limit, even while announcements wait for a disk.
                            let mut s = stream.clone();
                            if matches!(within(&handle, patience, s.info()), Some(Ok(_))) {
                                announcer.contact();
                            }
                        }
                        if announcer.announced(announcement.counter, outcome, sent) {
                            // The stream's end, read after the answer: what the fence waits for.
                            let mut s = stream.clone();
                            if let Some(Ok(info)) = within(&handle, patience, s.info()) {
                                announcer.catch_up_to(info.state.last_sequence);
                            }
                        }
                    }
                })?,
        );
        let kv = self.kv.clone();
        self.watcher = Some(self.rt.spawn(async move {
            // Watch again whenever a watch ends (the server went away and came back, the
            // bucket was made again).
            while !fleet.is_closing() {
                if let Ok(mut watch) = kv.watch_with_history(">").await {
                    fleet.watch_started();
                    loop {
                        let entry = tokio::select! {
                            entry = watch.next() => entry,
                            () = restart.notified() => break,
                        };
                        let Some(Ok(entry)) = entry else { break };
                        let value = match entry.operation {
                            kv::Operation::Put => Some(&entry.value[..]),
                            kv::Operation::Delete | kv::Operation::Purge => None,
                        };
                        fleet.delivered(&entry.key, value, entry.revision, entry.seen_current);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        // A host verifies once the others can see it: its first announcement acknowledged.
        fleet_wait.wait_open(self.request_timeout);
        Ok(())
    }
}

/// What `request` answered within `patience`, if it did.
fn within<F: std::future::Future>(
    handle: &tokio::runtime::Handle,
    patience: Duration,
    request: F,
) -> Option<F::Output> {
    handle.block_on(async { tokio::time::timeout(patience, request).await.ok() })
}

/// The cause a missing or unusable heads bucket is reported under.
const BUCKET_FAULT: &str = "heads_bucket";

/// Whether the JetStream API answered that the stream does not exist.
fn stream_missing(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The heads bucket is gone: reported, and made again (or found, if another host made it
/// first). Safe: the heads in it are sealed, so whoever makes a bucket cannot fill it with
/// anything that counts, and a watch that starts on a new bucket counts every host as
/// heard from then (see `docs/design.md`, "Fencing").
fn refind_bucket(
    handle: &tokio::runtime::Handle,
    js: &jetstream::Context,
    fleet: &dyn Heads,
    connection: &Connection,
    kv: kv::Store,
    patience: Duration,
) -> kv::Store {
    let bucket = &connection.heads_bucket;
    fleet.note_bucket_lost();
    let found = handle.block_on(async { tokio::time::timeout(patience, find_bucket(js, connection)).await });
    match found {
        Ok(Ok(store)) => {
            fleet.set_fault(
                BUCKET_FAULT,
                format!("the heads bucket {bucket} was deleted; it was made again, and announcements resume"),
            );
            store
        }
        Ok(Err(e)) => {
            fleet.set_fault(
                BUCKET_FAULT,
                format!(
                    "the heads bucket {bucket} does not exist and cannot be made again ({e}): no revocation \
                     can be confirmed; keys are still verified"
                ),
            );
            kv
        }
        Err(_) => {
            fleet.set_fault(
                BUCKET_FAULT,
                format!("the heads bucket {bucket} does not exist; making it again timed out"),
            );
            kv
        }
    }
}

/// Connects to the server with the options' credentials and TLS settings.
async fn connect(
    options: &Connection,
    denied: Option<&Arc<writes::Denied>>,
) -> Result<(async_nats::Client, jetstream::Context), LogError> {
    let unavailable = LogError::Unavailable;
    let mut connect = ConnectOptions::new()
        .name(options.client_name.clone())
        .connection_timeout(options.request_timeout)
        .request_timeout(Some(options.request_timeout))
        .max_reconnects(None)
        .require_tls(options.tls.required);
    connect = match &options.auth {
        Auth::None => connect,
        Auth::UserPassword(u, p) => connect.user_and_password(u.clone(), p.clone()),
        Auth::Token(t) => connect.token(t.clone()),
        Auth::CredsFile(path) => connect
            .credentials_file(path)
            .await
            .map_err(|e| LogError::Refused {
                what: "creds file",
                reason: e.to_string(),
            })?,
    };
    if let Some(denied) = denied {
        connect = writes::watch_denials(connect, denied, options);
    }
    if let Some(roots) = &options.tls.root_certificates {
        connect = connect.add_root_certificates(roots.clone());
    }
    if let Some((cert, key)) = &options.tls.client_certificate {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    // A cluster's servers, comma-separated: the client tries each, and moves to another
    // when one dies.
    let urls: Vec<&str> = options
        .urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let client = connect.connect(urls.as_slice()).await.map_err(|e| {
        let url = without_userinfo(&options.urls);
        unavailable(format!("cannot connect to {url}: {e}"))
    })?;
    // An older server answers JetStream's requests in shapes this client cannot read,
    // which would surface as a puzzle about enums: say what is wrong instead.
    if let Some(reason) = too_old(&client.server_info().version) {
        return Err(LogError::Refused {
            what: "NATS server",
            reason,
        });
    }
    let js = jetstream::ContextBuilder::new()
        .timeout(options.request_timeout)
        .build(client.clone());
    Ok((client, js))
}

/// The oldest nats-server a fleet host works with: JetStream's API as `async-nats` reads it.
pub(crate) const MIN_SERVER: (u64, u64, u64) = (2, 10, 0);

/// Why a server reporting `version` is too old, if it is; a version that does not parse
/// (a development build) is let through.
fn too_old(version: &str) -> Option<String> {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u64>().ok());
    let (Some(Some(major)), Some(Some(minor)), Some(Some(patch))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (a, b, c) = MIN_SERVER;
    ((major, minor, patch) < MIN_SERVER).then(|| {
        format!("its version is {version}, older than {a}.{b}.{c}, the oldest keyledger works with; upgrade the server")
    })
}

/// What `keyledger fleet` reads: the stream's state, its first messages (position,
/// bytes), among which its genesis is, and every entry of the heads bucket (name, bytes,
/// how long ago the server stored it).
pub(crate) struct Survey {
    pub(crate) state: StreamState,
    pub(crate) first_messages: Vec<(u64, Vec<u8>)>,
    pub(crate) entries: Vec<(String, Vec<u8>, Duration)>,
}

/// How many of the stream's first messages `keyledger fleet` reads looking for the
/// genesis (junk published before it is passed over).
const SURVEY_MESSAGES: u64 = 64;

/// Reads the stream's state, its first messages (where its genesis is) and the heads
/// bucket without joining (nothing is created).
pub(crate) fn survey(options: &Connection) -> Result<Survey, LogError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (_client, js) = connect(options, None).await?;
        let state = inspect(&js, &options.stream, &options.subject)
            .await?
            .ok_or_else(|| LogError::Unavailable(format!("no stream {}", options.stream)))?;
        let stream = js.get_stream(&options.stream).await.map_err(engine)?;
        let subject = &options.subject;
        let mut first_messages = Vec::new();
        let first = state.first.max(1);
        for pos in first..=state.last.min(first + SURVEY_MESSAGES - 1) {
            if let Ok(message) = stream.direct_get(pos).await
                && message.subject.as_str() == subject.as_str()
            {
                first_messages.push((pos, message.payload.to_vec()));
            }
        }
        let mut entries = Vec::new();
        if let Ok(kv) = js.get_key_value(&options.heads_bucket).await
            && let Ok(mut keys) = kv.keys().await
        {
            while let Some(Ok(key)) = keys.next().await {
                if let Ok(Some(entry)) = kv.entry(key.clone()).await
                    && entry.operation == kv::Operation::Put
                {
                    let age = age_of(entry.created.unix_timestamp_nanos());
                    entries.push((key, entry.value.to_vec(), age));
                }
            }
        }
        Ok(Survey {
            state,
            first_messages,
            entries,
        })
    })
}

/// How long ago the server stored an entry (nanoseconds since the Unix epoch), by this
/// machine's clock.
fn age_of(created_nanos: i128) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    u64::try_from(now - created_nanos).map_or(Duration::ZERO, Duration::from_nanos)
}

/// The settings of the fleet's stream: every message kept, none removable.
fn stream_config(options: &Connection) -> stream::Config {
    stream::Config {
        name: options.stream.clone(),
        subjects: vec![options.subject.clone()],
        retention: stream::RetentionPolicy::Limits,
        max_messages: -1,
        max_bytes: -1,
        max_age: Duration::ZERO,
        max_messages_per_subject: -1,
        storage: stream::StorageType::File,
        num_replicas: options.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_direct: true,
        ..Default::default()
    }
}

/// Finds the stream, or creates it; refuses one whose settings let messages go.
async fn find_stream(js: &jetstream::Context, options: &Connection) -> Result<stream::Stream, LogError> {
    let config = stream_config(options);
    let mut stream = js.get_or_create_stream(config).await.map_err(|e| {
        LogError::Unavailable(format!("cannot find or create stream {}: {e}", options.stream))
    })?;
    let info = stream
        .info()
        .await
        .map_err(|e| LogError::Unavailable(format!("cannot read stream {}: {e}", options.stream)))?;
    match settings_problem(&info.config, &options.subject) {
        Some(why) => Err(LogError::Refused {
            what: "stream",
            reason: format!(
                "stream {} {why}: a keyledger log must keep every message",
                options.stream
            ),
        }),
        None => Ok(stream),
    }
}

/// Why a stream's settings would let its messages go, or take other subjects than the
/// log's; `None` while they keep every message.
fn settings_problem(c: &stream::Config, subject: &str) -> Option<&'static str> {
    if !c.deny_delete || !c.deny_purge {
        Some("allows deleting or purging messages")
    } else if c.max_messages != -1
        || c.max_bytes != -1
        || !c.max_age.is_zero()
        || c.max_messages_per_subject != -1
    {
        Some("has limits that would discard messages")
    } else if c.allow_rollup {
        Some("allows roll-ups, which remove messages")
    } else if c.subjects != [subject] {
        Some("takes other subjects than the log's")
    } else if c.mirror.is_some() || c.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        Some("takes messages from other streams (a mirror or sources)")
    } else if c.sealed {
        Some("is sealed: it takes no more messages")
    } else if c.no_ack {
        Some("does not acknowledge appends, so no write can be confirmed")
    } else {
        None
    }
}

/// The stream's state from its info; `Ok(None)` if the server says there is no such
/// stream.
async fn inspect(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
) -> Result<Option<StreamState>, LogError> {
    match js.get_stream(name).await {
        Ok(stream) => {
            let info = stream.cached_info();
            let created = info.created.unix_timestamp_nanos();
            Ok(Some(StreamState {
                first: info.state.first_sequence,
                last: info.state.last_sequence,
                messages: info.state.messages,
                created: i64::try_from(created).unwrap_or(i64::MAX),
                unsafe_settings: settings_problem(&info.config, subject).map(str::to_owned),
            }))
        }
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(engine(e)),
        },
    }
}

/// Finds the heads bucket, or creates it with entries that live
/// [`Connection::heads_max_age`]; a bucket that keeps them for less is given that age.
async fn find_bucket(js: &jetstream::Context, options: &Connection) -> Result<kv::Store, LogError> {
    let bucket = options.heads_bucket.clone();
    let max_age = options.heads_max_age;
    let cannot = |e: String| LogError::Unavailable(format!("cannot find or create bucket {bucket}: {e}"));
    if let Ok(store) = js.get_key_value(&bucket).await {
        let mut config = js
            .get_stream(&store.stream_name)
            .await
            .map_err(|e| cannot(e.to_string()))?
            .cached_info()
            .config
            .clone();
        if !config.max_age.is_zero() && config.max_age < max_age {
            config.max_age = max_age;
            js.update_stream(config).await.map_err(|e| {
                cannot(format!(
                    "it keeps entries for less than the {max_age:?} a host may wait for a silent one, \
                     and cannot be changed: {e}"
                ))
            })?;
        }
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: bucket.clone(),
        history: 1,
        max_age,
        num_replicas: options.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| cannot(e.to_string()))
}

impl SharedLog for NatsLog {
    fn append(&mut self, after: u64, message: &[u8]) -> Result<u64, AppendError> {
        let id = blake3::hash(message).to_hex();
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("Nats-Expected-Last-Sequence", after.to_string().as_str());
        let publish = self.js.publish_with_headers(
            self.subject.clone(),
            headers,
            bytes::Bytes::copy_from_slice(message),
        );
        self.rt.block_on(async {
            let ack = publish.await.map_err(|e| match e.kind() {
                jetstream::context::PublishErrorKind::MaxPayloadExceeded => AppendError::TooLarge {
                    limit: self.client.server_info().max_payload,
                },
                _ => AppendError::Uncertain(engine(e)),
            })?;
            match ack.await {
                Ok(ack) => Ok(ack.sequence),
                Err(e) => Err(match e.kind() {
                    jetstream::context::PublishErrorKind::WrongLastSequence => AppendError::Conflict,
                    jetstream::context::PublishErrorKind::MaxPayloadExceeded => AppendError::TooLarge {
                        limit: self.client.server_info().max_payload,
                    },
                    _ => AppendError::Uncertain(engine(e)),
                }),
            }
        })
    }

    fn last(&mut self) -> Result<u64, LogError> {
        let stream = &mut self.stream;
        self.rt
            .block_on(stream.info())
            .map(|i| i.state.last_sequence)
            .map_err(engine)
    }

    fn get(&mut self, position: u64) -> Result<Vec<u8>, LogError> {
        let message = self
            .rt
            .block_on(self.stream.direct_get(position))
            .map_err(|e| engine(format!("reading stream message {position}: {e}")))?;
        if message.subject.as_str() != self.subject {
            return Err(LogError::Corrupt(format!(
                "stream message {position} is on subject {}, not the log's",
                message.subject
            )));
        }
        Ok(message.payload.to_vec())
    }

    fn follow(&mut self, from: u64) -> Result<Receiver<Delivered>, LogError> {
        if let Some(old) = self.follower.take() {
            old.abort();
        }
        let (tx, rx) = crossbeam_channel::bounded(FOLLOW_BUFFER);
        let stream = self.stream.clone();
        let subject = self.subject.clone();
        let largest = i64::try_from(self.client.server_info().max_payload).unwrap_or(i64::MAX);
        let max_bytes = FOLLOW_BYTES.max(largest.saturating_mul(2));
        self.follower = Some(self.rt.spawn(async move {
            let mut from = from.max(1);
            loop {
                let config = consumer::pull::OrderedConfig {
                    filter_subject: subject.clone(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
                    // Messages are up to `max_payload` (1 MiB by default): the client's
                    // default pull of 500 would ask for hundreds of MiB at once during a
                    // catch-up, and the server cuts a consumer that far behind ("slow
                    // consumer", 64 MiB pending). At most 16 at a time, and 8 MiB (or two
                    // of the largest messages, which a pull must be able to hold).
                    max_batch: FOLLOW_BATCH,
                    max_bytes,
                    ..Default::default()
                };
                if let Ok(c) = stream.create_consumer(config).await
                    && let Ok(mut messages) = c.messages().await
                {
                    while let Some(item) = messages.next().await {
                        let Ok(message) = item else { break };
                        let Ok(info) = message.info() else { continue };
                        let position = info.stream_sequence;
                        from = position + 1;
                        let mut item = Ok((position, message.payload.to_vec()));
                        // The writer drains the channel; wait for room without blocking
                        // the runtime.
                        loop {
                            match tx.try_send(item) {
                                Ok(()) => break,
                                Err(crossbeam_channel::TrySendError::Full(back)) => {
                                    item = back;
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        Ok(rx)
    }

    fn max_message_bytes(&self) -> usize {
        self.client.server_info().max_payload
    }

    fn inspect(&mut self) -> Result<Option<StreamState>, LogError> {
        let name = self.stream.cached_info().config.name.clone();
        self.rt.block_on(inspect(&self.js, &name, &self.subject))
    }

    fn watch(&mut self, every: Duration, mut judge: Judge) -> Result<(), LogError> {
        if let Some(old) = self.inspector.take() {
            old.abort();
        }
        let js = self.js.clone();
        let name = self.stream.cached_info().config.name.clone();
        let subject = self.subject.clone();
        self.inspector = Some(self.rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Ok(state) =
                    tokio::time::timeout(every.max(Duration::from_secs(1)), inspect(&js, &name, &subject))
                        .await
                else {
                    continue;
                };
                if let Ok(state) = state
                    && !judge(state)
                {
                    return;
                }
            }
        }));
        Ok(())
    }

    fn announce(&mut self, fleet: Arc<dyn Heads>) -> Result<(), LogError> {
        self.start_heads(fleet)
    }

    fn forward(&mut self, to: &str, request: Vec<u8>, undelivered: Box<dyn FnOnce() + Send>) {
        writes::forward(self, to, request, undelivered);
    }

    fn serve_writes(&mut self, writes: Arc<dyn Writes>) -> Result<(), LogError> {
        writes::serve(self, writes)
    }

    /// Core NATS, at most once: a report lost is a count never charged elsewhere, which
    /// the fleet tells from a round that never completes (see `fleet/usage.rs`).
    fn share_usage(&mut self, reports: Arc<dyn Reports>) -> Result<(), LogError> {
        let subject = self.connection.usage_subject.clone();
        let subscription = self
            .rt
            .block_on(self.client.subscribe(subject.clone()))
            .map_err(engine)?;
        let hearer = Arc::clone(&reports);
        self.usage = Some(self.rt.spawn(async move {
            let mut subscription = subscription;
            while let Some(message) = subscription.next().await {
                hearer.received(&message.payload);
            }
        }));
        let (client, handle, patience) = (self.client.clone(), self.rt.handle().clone(), self.patience);
        self.heads.push(
            std::thread::Builder::new()
                .name("keyledger-usage".into())
                .spawn(move || {
                    while let Some(messages) = reports.next_reports() {
                        for bytes in messages {
                            let _ = within(&handle, patience, client.publish(subject.clone(), bytes.into()));
                        }
                    }
                })?,
        );
        Ok(())
    }
}

impl Drop for NatsLog {
    fn drop(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(i) = self.inspector.take() {
            i.abort();
        }
        if let Some(u) = self.usage.take() {
            u.abort();
        }
        if let Some(w) = self.writes.take() {
            w.abort();
        }
        for h in self.heads.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_before_2_10_is_too_old_and_one_that_names_no_version_is_let_through() {
        for old in ["2.9.10", "2.9.25", "1.4.1", "2.2.0-beta.3"] {
            let why = too_old(old).unwrap_or_else(|| panic!("{old}"));
            assert!(why.contains(old) && why.contains("2.10.0"), "{why}");
        }
        for fine in [
            "2.10.0",
            "2.10.26",
            "2.15.1",
            "3.0.0",
            "2.11.0-RC.1",
            "",
            "dev",
            "2.x",
        ] {
            assert_eq!(too_old(fine), None, "{fine}");
        }
    }

    /// The stream as hosts make it passes; each setting that lets messages go, takes others
    /// in, or stops appends from being confirmed is named.
    #[test]
    fn stream_settings_that_lose_or_take_in_messages_are_named() {
        let options = crate::fleet::FleetOptions::new("nats://127.0.0.1:4222").connection();
        let ours = stream_config(&options);
        assert_eq!(settings_problem(&ours, &options.subject), None);
        let source = stream::Source {
            name: "elsewhere".into(),
            ..Default::default()
        };
        for (changed, named) in [
            (
                stream::Config {
                    deny_purge: false,
                    ..ours.clone()
                },
                "purging",
            ),
            (
                stream::Config {
                    max_age: Duration::from_secs(60),
                    ..ours.clone()
                },
                "limits",
            ),
            (
                stream::Config {
                    allow_rollup: true,
                    ..ours.clone()
                },
                "roll-ups",
            ),
            (
                stream::Config {
                    subjects: vec!["x.>".into()],
                    ..ours.clone()
                },
                "other subjects",
            ),
            (
                stream::Config {
                    mirror: Some(source.clone()),
                    ..ours.clone()
                },
                "other streams",
            ),
            (
                stream::Config {
                    sources: Some(vec![source]),
                    ..ours.clone()
                },
                "other streams",
            ),
            (
                stream::Config {
                    sealed: true,
                    ..ours.clone()
                },
                "sealed",
            ),
            (
                stream::Config {
                    no_ack: true,
                    ..ours.clone()
                },
                "acknowledge",
            ),
        ] {
            let problem = settings_problem(&changed, &options.subject).unwrap_or_default();
            assert!(problem.contains(named), "{problem:?} should name {named}");
        }
    }
}
