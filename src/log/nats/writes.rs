//! Forwarded writes over core NATS request and reply, on `<writes subject>.<host>`: what a
//! request says is sealed by the fleet, which also checks the answer.
//!
//! NATS permissions that let a host publish the stream but not the writes subject, or
//! not answer on a sender's inbox (`allow_responses`), would make every forwarded batch
//! wait out its timeout. The server says so when it refuses a publish (a host probes its
//! own subject when it starts taking requests, so this is known at once): from then on this
//! connection neither forwards (its batches are appended here) nor takes requests (the
//! others get no responder at once and append theirs), and the host logs why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::ConnectOptions;
use futures_util::StreamExt;

use super::NatsLog;
use super::engine;
use crate::log::connection::Connection;
use crate::log::{Answered, ForwardError, LogError, Writes};

/// Why the server refused a publish of forwarded writes, once it has; and who waits to
/// hear it.
#[derive(Default)]
pub(super) struct Denied {
    why: Mutex<Option<String>>,
    heard: tokio::sync::Notify,
}

impl Denied {
    fn why(&self) -> Option<String> {
        self.why
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Has the connection note the server's refusals of publishes on the writes subject or
/// an inbox (this host's answers).
pub(super) fn watch_denials(
    connect: ConnectOptions,
    denied: &Arc<Denied>,
    options: &Connection,
) -> ConnectOptions {
    let denied = Arc::clone(denied);
    let subject = options.writes_subject.clone();
    connect.event_callback(move |event| {
        let (denied, subject) = (Arc::clone(&denied), subject.clone());
        async move {
            let async_nats::Event::ServerError(async_nats::ServerError::Other(e)) = event else {
                return;
            };
            let ours = e.contains(&format!("\"{subject}.")) || e.contains("\"_INBOX.");
            if !(e.contains("Permissions Violation for Publish") && ours) {
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
                     {subject}.> and allow_responses (README, \"What a NATS client can do to the fleet\")"
                );
                *why = Some(e);
            }
            drop(why);
            denied.heard.notify_waiters();
        }
    })
}

pub(super) fn forward(log: &NatsLog, to: &str, request: Vec<u8>, timeout: Duration, done: Answered) {
    if log.denied.why().is_some() {
        return done(Err(ForwardError::NotDelivered));
    }
    let subject = format!("{}.{to}", log.connection.writes_subject);
    let asked = async_nats::Request::new()
        .payload(request.into())
        .timeout(Some(timeout));
    let client = log.client.clone();
    log.rt.spawn(async move {
        done(match client.send_request(subject, asked).await {
            Ok(answer) => Ok(answer.payload.to_vec()),
            Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                Err(ForwardError::NotDelivered)
            }
            Err(e) => Err(ForwardError::Unanswered(format!("NATS: {e}"))),
        });
    });
}

pub(super) fn serve(log: &mut NatsLog, writes: Arc<dyn Writes>) -> Result<(), LogError> {
    if let Some(old) = log.writes.take() {
        old.abort();
    }
    if log.denied.why().is_some() {
        return Ok(());
    }
    let subject = format!("{}.{}", log.connection.writes_subject, writes.host());
    let subscription = log
        .rt
        .block_on(log.client.subscribe(subject.clone()))
        .map_err(engine)?;
    let (client, handle, denied) = (
        log.client.clone(),
        log.rt.handle().clone(),
        Arc::clone(&log.denied),
    );
    log.writes = Some(log.rt.spawn(async move {
        let mut subscription = subscription;
        loop {
            let message = tokio::select! {
                message = subscription.next() => message,
                () = denied.heard.notified() => None,
            };
            // Refused once, the subscription is dropped: the others hear "no responders".
            let Some(message) = message.filter(|_| denied.why().is_none()) else {
                break;
            };
            if writes.is_closing() {
                break;
            }
            // A request without a reply subject cannot be answered: not a host's.
            let Some(reply) = message.reply else { continue };
            let (client, handle) = (client.clone(), handle.clone());
            if message.payload.is_empty() {
                // A probe (below): answered with nothing, by the connection alone.
                let _ = client.publish(reply, bytes::Bytes::new()).await;
                continue;
            }
            writes.request(
                &message.payload,
                Box::new(move |answer| {
                    handle.spawn(async move {
                        let _ = client.publish(reply, answer.into()).await;
                    });
                }),
            );
        }
    }));
    // An empty request to this host's own subject, answered on its inbox: if the server's
    // permissions forbid either, it says so now (the watch above hears it), before any
    // other host's write waits on this one.
    let client = log.client.clone();
    log.rt.block_on(async move {
        let _ = tokio::time::timeout(PROBE_PATIENCE, client.request(subject, bytes::Bytes::new())).await;
    });
    Ok(())
}

/// How long the probe of the permissions waits for its answer; none within it proves
/// nothing either way.
const PROBE_PATIENCE: Duration = Duration::from_secs(1);
