//! Forwarded writes over core NATS. A request is published on `<writes>.<writer>` as a
//! NATS request, so that the server says at once when nobody takes requests there; the
//! writer publishes its sealed answer on `<answers>.<sender>`, a subject of the fleet's.
//! Hosts never publish into another client's inbox: the NATS permissions need neither
//! `allow_responses` (which would let a holder of the hosts' NATS credentials answer
//! its own messages onto any subject, the stream's API included) nor publish rights on
//! inboxes (which would let it forge the server's acknowledgements). The fleet seals
//! and checks every request and answer; this file never reads their bytes.
//!
//! NATS permissions from before writes were forwarded would drop every request. The
//! server says so when it refuses a publish or a subscription; a host probes both when it
//! starts, and from then on this connection neither forwards (its batches are appended
//! here) nor takes requests, and the host logs why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::ConnectOptions;
use futures_util::StreamExt;

use super::NatsLog;
use super::engine;
use crate::log::connection::Connection;
use crate::log::{LogError, Writes};

/// Why the server refused a publish or subscription of forwarded writes, once it has.
#[derive(Default)]
pub(super) struct Denied {
    why: Mutex<Option<String>>,
}

impl Denied {
    fn is_set(&self) -> bool {
        self.why
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

/// How long a request waits for the server to say nobody takes it; past it, the request
/// was delivered (the fleet waits for the answer itself).
const DELIVERY_PATIENCE: Duration = Duration::from_secs(1);
/// How long, after the probe was flushed, the server's refusal may take to be heard.
const PROBE_PATIENCE: Duration = Duration::from_millis(300);

/// Has the connection note the server's refusals of this fleet's writes and answers
/// subjects (only this host publishes requests and answers, and subscribes, there).
pub(super) fn watch_denials(
    connect: ConnectOptions,
    denied: &Arc<Denied>,
    options: &Connection,
) -> ConnectOptions {
    let denied = Arc::clone(denied);
    let ours = [
        format!("\"{}.", options.writes_subject),
        format!("\"{}.", options.answers_subject),
    ];
    connect.event_callback(move |event| {
        let (denied, ours) = (Arc::clone(&denied), ours.clone());
        async move {
            let async_nats::Event::ServerError(async_nats::ServerError::Other(e)) = event else {
                return;
            };
            if !(e.contains("Permissions Violation") && ours.iter().any(|s| e.contains(s.as_str()))) {
                return;
            }
            let mut why = denied
                .why
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if why.is_none() {
                tracing::warn!(
                    target: "keyledger::fleet",
                    "the NATS server refuses this host's forwarded writes ({e}): it appends its own \
                     writes and takes none from other hosts; allow publishing and subscribing on \
                     {}.> and {}.> (README, \"What a NATS client can do to the fleet\")",
                    ours[0].trim_start_matches('"').trim_end_matches('.'),
                    ours[1].trim_start_matches('"').trim_end_matches('.'),
                );
                *why = Some(e);
            }
        }
    })
}

pub(super) fn forward(log: &NatsLog, to: &str, request: Vec<u8>, undelivered: Box<dyn FnOnce() + Send>) {
    if log.denied.is_set() {
        return undelivered();
    }
    let subject = format!("{}.{to}", log.connection.writes_subject);
    let asked = async_nats::Request::new()
        .payload(request.into())
        .timeout(Some(DELIVERY_PATIENCE));
    let client = log.client.clone();
    log.rt.spawn(async move {
        // Nobody replies on the inbox: the answer comes on the answers subject. Only the
        // server's word that nobody took the request means anything here.
        if let Err(e) = client.send_request(subject, asked).await
            && e.kind() == async_nats::client::RequestErrorKind::NoResponders
        {
            undelivered();
        }
    });
}

/// The subscriptions a host takes forwarded writes and answers on.
pub(super) type Subscriptions = (async_nats::Subscriber, async_nats::Subscriber);

/// Subscribes to host `host`'s writes and answers subjects and probes them: a publish on
/// each, nothing in it (both are ignored by [`serve`]), then a flush. If the permissions
/// refuse either, or the subscriptions, the server says so before it answers the flush,
/// and the connection's event callback hears it within [`PROBE_PATIENCE`]. Started when
/// the connection is made, so that the wait overlaps the host's join.
pub(super) async fn probe(
    client: async_nats::Client,
    connection: Connection,
    host: String,
) -> Result<Subscriptions, LogError> {
    let requests = format!("{}.{host}", connection.writes_subject);
    let answers = format!("{}.{host}", connection.answers_subject);
    let taken = client.subscribe(requests.clone()).await.map_err(engine)?;
    let heard = client.subscribe(answers.clone()).await.map_err(engine)?;
    for subject in [requests, answers] {
        client
            .publish(subject, bytes::Bytes::new())
            .await
            .map_err(engine)?;
    }
    client.flush().await.map_err(engine)?;
    tokio::time::sleep(PROBE_PATIENCE).await;
    Ok((taken, heard))
}

pub(super) fn serve(log: &mut NatsLog, writes: Arc<dyn Writes>) -> Result<(), LogError> {
    if let Some(old) = log.writes.take() {
        old.abort();
    }
    let client = log.client.clone();
    let probed = match log.probe.take() {
        Some((host, probe)) if host == writes.host() => probe,
        _ => log.rt.spawn(probe(
            client.clone(),
            log.connection.clone(),
            writes.host().to_owned(),
        )),
    };
    let (mut taken, mut heard) = log
        .rt
        .block_on(probed)
        .map_err(|e| engine(format!("the probe of the writes subjects failed: {e}")))??;
    if log.denied.is_set() {
        return Ok(());
    }
    let (prefix, handle, denied) = (
        log.connection.answers_subject.clone(),
        log.rt.handle().clone(),
        Arc::clone(&log.denied),
    );
    log.writes = Some(log.rt.spawn(async move {
        loop {
            tokio::select! {
                message = taken.next() => {
                    let Some(message) = message else { break };
                    if writes.is_closing() || denied.is_set() {
                        break;
                    }
                    if message.payload.is_empty() {
                        continue;
                    }
                    let (client, handle, prefix) = (client.clone(), handle.clone(), prefix.clone());
                    writes.request(
                        &message.payload,
                        Box::new(move |to, answer| {
                            let subject = format!("{prefix}.{to}");
                            handle.spawn(async move {
                                let _ = client.publish(subject, answer.into()).await;
                            });
                        }),
                    );
                }
                message = heard.next() => {
                    let Some(message) = message else { break };
                    if !message.payload.is_empty() {
                        writes.answered(message.payload.to_vec());
                    }
                }
            }
        }
    }));
    Ok(())
}
