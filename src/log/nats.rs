//! NATS JetStream as the shared log (feature `nats`): the only file that names
//! `async-nats`.
//!
//! One stream holds the log, one message per writer batch on subject
//! `keyledger.<stream>.log`, created with no deletes, no purges and no limits. An append
//! carries `Nats-Expected-Last-Sequence` (the position the writer applied up to), so of two
//! hosts appending at once only one wins, and a `Nats-Msg-Id` (the message's blake3
//! hash), so that a retried append is idempotent within the stream's duplicate window. The
//! hosts announce their heads in a key-value bucket `<stream>-hosts` whose entries live for
//! one lease.
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

use super::{AppendError, Delivered, Judge, LogError, SharedLog, StreamState};
use crate::Error;
use crate::codec::{self, HostHead};
use crate::fleet::{Auth, Fleet, FleetOptions};

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
}

impl NatsLog {
    /// Connects, and finds or creates the stream and the heads bucket. A stream that
    /// exists with settings that would let messages be removed is refused.
    pub(crate) fn connect(options: &FleetOptions) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyledger-nats")
            .enable_all()
            .build()?;
        let (client, js, stream, kv) = rt.block_on(async {
            let (client, js) = connect(options).await?;
            let stream = find_stream(&js, options).await?;
            let kv = find_bucket(&js, options).await?;
            Ok::<_, Error>((client, js, stream, kv))
        })?;
        Ok(NatsLog {
            rt,
            client,
            js,
            stream,
            subject: options.subject(),
            follower: None,
            kv,
            heads: Vec::new(),
            watcher: None,
            inspector: None,
        })
    }

    /// Starts announcing this host's head (at once when it changes, else every heartbeat)
    /// and hearing the other hosts'. Every answer from the server counts as contact.
    fn start_heads(&mut self, fleet: Arc<Fleet>) -> Result<(), LogError> {
        let kv = self.kv.clone();
        let handle = self.rt.handle().clone();
        let announcer = Arc::clone(&fleet);
        let stream = self.stream.clone();
        // Out of touch, a request waits no longer than a heartbeat (and at least a
        // second, so a busy machine is not taken for a lost server): the staleness limits
        // are checked at least that often, whatever the server does.
        let patience = fleet.options.heartbeat.max(Duration::from_secs(1));
        self.heads.push(
            std::thread::Builder::new()
                .name("keyledger-announce".into())
                .spawn(move || {
                    let host = announcer.host().to_owned();
                    while let Some(head) = announcer.next_announcement() {
                        let Ok(bytes) = codec::encode_host_head(&head) else {
                            continue;
                        };
                        let put = async { tokio::time::timeout(patience, kv.put(&host, bytes.into())).await };
                        // Contact is the server answering: an acknowledged announcement, or
                        // else (a put waits for the server's disk, which may be slow) the
                        // stream's state, which it answers from memory.
                        let answered = matches!(handle.block_on(put), Ok(Ok(_))) || {
                            let mut s = stream.clone();
                            matches!(
                                handle.block_on(async { tokio::time::timeout(patience, s.info()).await }),
                                Ok(Ok(_))
                            )
                        };
                        if answered {
                            announcer.contact();
                        }
                        announcer.check_staleness(|| {
                            let mut s = stream.clone();
                            let info =
                                handle.block_on(async { tokio::time::timeout(patience, s.info()).await });
                            info.ok()?.ok().map(|i| i.state.last_sequence)
                        });
                    }
                    // Leaving: the others stop waiting for this host at once.
                    let _ = handle.block_on(async { tokio::time::timeout(patience, kv.delete(&host)).await });
                })?,
        );
        let kv = self.kv.clone();
        let lease = fleet.options.lease;
        self.watcher = Some(self.rt.spawn(async move {
            // Re-watch whenever a watch ends (the server went away and came back).
            while !fleet.is_closing() {
                if let Ok(mut watch) = kv.watch_with_history(">").await {
                    while let Some(entry) = watch.next().await {
                        let Ok(entry) = entry else { break };
                        match entry.operation {
                            kv::Operation::Put => {
                                if let Ok(head) = codec::decode_host_head(&entry.value) {
                                    // A live update was heard now; only the history (what
                                    // the bucket held when the watch began) is aged, by the
                                    // server's clock against this one's.
                                    let age = if entry.seen_current {
                                        Duration::ZERO
                                    } else {
                                        age_of(entry.created.unix_timestamp_nanos()).min(lease * 2)
                                    };
                                    fleet.heard(&entry.key, head, age);
                                }
                            }
                            kv::Operation::Delete | kv::Operation::Purge => fleet.forget(&entry.key),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        Ok(())
    }
}

/// Connects to the server with the options' credentials and TLS settings.
async fn connect(options: &FleetOptions) -> Result<(async_nats::Client, jetstream::Context), Error> {
    let unavailable = |e: String| Error::StreamUnavailable { reason: e };
    let mut connect = ConnectOptions::new()
        .name(format!("keyledger {}", options.host))
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
            .map_err(|e| Error::invalid("creds file", e.to_string()))?,
    };
    if let Some(roots) = &options.tls.root_certificates {
        connect = connect.add_root_certificates(roots.clone());
    }
    if let Some((cert, key)) = &options.tls.client_certificate {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    let client = connect.connect(options.url.as_str()).await.map_err(|e| {
        let url = crate::fleet::without_userinfo(&options.url);
        unavailable(format!("cannot connect to {url}: {e}"))
    })?;
    let js = jetstream::ContextBuilder::new()
        .timeout(options.request_timeout)
        .build(client.clone());
    Ok((client, js))
}

/// A host's announced head, and how long ago it was announced.
pub(crate) type Announced = (String, HostHead, Duration);

/// The stream's state, and every host's announced head with its age, read without
/// joining (nothing is created).
pub(crate) fn survey(options: &FleetOptions) -> Result<(StreamState, Vec<Announced>), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (_client, js) = connect(options).await?;
        let state = inspect(&js, &options.stream, &options.subject())
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::StreamUnavailable {
                reason: format!("no stream {}", options.stream),
            })?;
        let mut hosts = Vec::new();
        if let Ok(kv) = js.get_key_value(options.heads_bucket()).await
            && let Ok(mut keys) = kv.keys().await
        {
            while let Some(Ok(key)) = keys.next().await {
                if let Ok(Some(entry)) = kv.entry(key.clone()).await
                    && entry.operation == kv::Operation::Put
                    && let Ok(head) = codec::decode_host_head(&entry.value)
                {
                    hosts.push((key, head, age_of(entry.created.unix_timestamp_nanos())));
                }
            }
        }
        Ok((state, hosts))
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

/// Finds the stream, or creates it; refuses one whose settings let messages go.
async fn find_stream(js: &jetstream::Context, options: &FleetOptions) -> Result<stream::Stream, Error> {
    let config = stream::Config {
        name: options.stream.clone(),
        subjects: vec![options.subject()],
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
    };
    let mut stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| Error::StreamUnavailable {
            reason: format!("cannot find or create stream {}: {e}", options.stream),
        })?;
    let info = stream.info().await.map_err(|e| Error::StreamUnavailable {
        reason: format!("cannot read stream {}: {e}", options.stream),
    })?;
    match settings_problem(&info.config, &options.subject()) {
        Some(why) => Err(Error::invalid(
            "stream",
            format!(
                "stream {} {why}: a keyledger log must keep every message",
                options.stream
            ),
        )),
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

/// Finds the heads bucket, or creates it with entries that live one lease.
async fn find_bucket(js: &jetstream::Context, options: &FleetOptions) -> Result<kv::Store, Error> {
    let bucket = options.heads_bucket();
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: bucket.clone(),
        history: 1,
        max_age: options.lease,
        num_replicas: options.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::StreamUnavailable {
        reason: format!("cannot find or create bucket {bucket}: {e}"),
    })
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

    fn announce(&mut self, fleet: Arc<Fleet>) -> Result<(), LogError> {
        self.start_heads(fleet)
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
        for h in self.heads.drain(..) {
            let _ = h.join();
        }
    }
}
