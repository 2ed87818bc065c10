//! Decision lines (`tracing`, target `keyledger::decision`, level info; warn for a 5xx):
//! one per admin request (also counted for `/metrics`) and per refused `/auth`, and per
//! accepted `/auth` when asked for ([`AuthLog`]). They name ids, codes, route templates, addresses and times, never a key,
//! a secret, a header's value, a path or a query as the client sent it.
//!
//! An accepted `/auth` costs nothing here unless its lines were asked for: no event, no
//! allocation.

use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Extensions, HeaderMap, HeaderValue, StatusCode};

use super::Shared;
use crate::access::Rejection;
use crate::http::layer::Refusal;
use crate::model::actor::Actor;
use crate::model::id::KeyId;
use crate::model::token::api_key_from_headers;
use crate::model::token::format::redact_keys;

/// The target of every decision line: `--log-filter keyledger::decision=off` drops them.
const TARGET: &str = "keyledger::decision";

/// Which `/auth` decisions a [`Server`](super::Server) logs (through `tracing`; nothing
/// shows unless the host installs a subscriber). Refused ones are always logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthLog {
    /// Refused requests only (the default): accepted ones cost nothing.
    #[default]
    Refused,
    /// Every request, accepted ones too.
    All,
    /// Refused requests, and one accepted request in every N.
    Sampled(NonZeroU64),
}

/// The error kind of an admin answer (`ErrorJson`'s `error`), for its decision line.
#[derive(Clone, Copy)]
pub(super) struct ErrorKind(pub(super) &'static str);

/// What the admin extractors learned of a request's admin key, for its decision line.
enum Noted {
    /// The key acts as this actor.
    Acting {
        actor: Option<String>,
        via: Option<KeyId>,
    },
    /// The layer refused the key (the id when the key is one the store knows).
    Refused { refusal: Refusal, via: Option<KeyId> },
}

/// Where [`admin`] collects what the extractors learned.
#[derive(Default)]
pub(super) struct Seen(OnceLock<Noted>);

/// Notes the actor an admin request acts as (`None`: the key verified but acts as no
/// one who may use the admin API), for its decision line.
pub(super) fn note_actor(extensions: &Extensions, actor: Option<&Actor>, via: Option<KeyId>) {
    if let Some(seen) = extensions.get::<Arc<Seen>>() {
        // Actor ids are refused when key-shaped; redacted all the same.
        let actor = actor.map(|a| redact_keys(a.id()).into_owned());
        let _ = seen.0.set(Noted::Acting { actor, via });
    }
}

/// Notes why the layer refused an admin request's key.
pub(super) fn note_refused(extensions: &Extensions, shared: &Shared, headers: &HeaderMap, refusal: Refusal) {
    if let Some(seen) = extensions.get::<Arc<Seen>>() {
        let via = known_key(shared, headers, refusal);
        let _ = seen.0.set(Noted::Refused { refusal, via });
    }
}

/// The id of the key a refusal was about, when the reason says the store knows the key.
fn known_key(shared: &Shared, headers: &HeaderMap, refusal: Refusal) -> Option<KeyId> {
    let named = match refusal {
        Refusal::Key(rejection) => !matches!(
            rejection,
            Rejection::Malformed(_) | Rejection::Header(_) | Rejection::UnknownKey | Rejection::Stale
        ),
        Refusal::RoleMissing | Refusal::CostInvalid => true,
        Refusal::NoPeerAddress | Refusal::ForwardedFor(_) => false,
    };
    if !named {
        return None;
    }
    let token = api_key_from_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))).ok()?;
    shared.store().key_id_of(token)
}

/// Middleware of the admin API: runs the request and logs its decision line.
pub(super) async fn admin(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The route's template (`/v1/keys/{id}`), never the path as sent.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let seen = Arc::new(Seen::default());
    request.extensions_mut().insert(Arc::clone(&seen));
    let response = next.run(request).await;
    let status = response.status();
    let latency_us = micros(started);
    let (actor, via, mut error, reason) = match seen.0.get() {
        Some(Noted::Acting { actor, via }) => (actor.as_deref(), *via, None, None),
        Some(Noted::Refused { refusal, via }) => (None, *via, Some(refusal.error()), Some(refusal.code())),
        None => (None, None, None, None),
    };
    if let Some(kind) = response.extensions().get::<ErrorKind>() {
        error = Some(kind.0);
    }
    let outcome = if status.is_success() { "ok" } else { "error" };
    let route = route.as_deref().unwrap_or("unmatched");
    shared.admin_requests.count(&method, route, status);
    let method = method.as_str();
    let via = via.map(tracing::field::display);
    let status = status.as_u16();
    if status >= 500 {
        tracing::warn!(target: TARGET, kind = "admin", method, route, status, outcome, error, reason, actor, via, latency_us, "admin request");
    } else {
        tracing::info!(target: TARGET, kind = "admin", method, route, status, outcome, error, reason, actor, via, latency_us, "admin request");
    }
    response
}

/// Logs an `/auth` decision: a refused one always, an accepted one as [`AuthLog`] says.
/// `refusal` is `None` for a pass, and for a check that panicked (answered `unavailable`).
pub(super) fn auth(
    shared: &Shared,
    request: &Request,
    response: &Response,
    refusal: Option<Refusal>,
    started: Instant,
) {
    if response.status() == StatusCode::OK {
        match shared.auth_log {
            AuthLog::Refused => return,
            AuthLog::All => {}
            AuthLog::Sampled(n) => {
                if !shared
                    .auth_seen
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(n.get())
                {
                    return;
                }
            }
        }
        let key_id = response
            .headers()
            .get(super::auth::KEY_ID_HEADER)
            .and_then(|v: &HeaderValue| v.to_str().ok());
        let client = client_of(shared, request).map(tracing::field::display);
        tracing::info!(
            target: TARGET,
            kind = "auth",
            outcome = "accepted",
            status = 200,
            key_id,
            client,
            latency_us = micros(started),
            "auth"
        );
        return;
    }
    let reason = refusal.map_or("unavailable", |r| r.code());
    let key_id = refusal
        .and_then(|r| known_key(shared, request.headers(), r))
        .map(tracing::field::display);
    let client = client_of(shared, request).map(tracing::field::display);
    let peer = super::peer_addr(request.extensions()).map(tracing::field::display);
    tracing::info!(
        target: TARGET,
        kind = "auth",
        outcome = "refused",
        status = response.status().as_u16(),
        reason,
        key_id,
        client,
        peer,
        latency_us = micros(started),
        "auth"
    );
}

/// The client's address as the layer decides it: the peer, or behind a trusted proxy the
/// rightmost untrusted `X-Forwarded-For` entry; `None` when it cannot be decided.
fn client_of(shared: &Shared, request: &Request) -> Option<IpAddr> {
    let peer = super::peer_addr(request.extensions())?;
    let proxies = shared.layer.proxies();
    if proxies.is_empty() {
        return Some(peer);
    }
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(HeaderValue::as_bytes);
    proxies.client_ip(peer, forwarded).ok()
}

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}
