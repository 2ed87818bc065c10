//! [`ApiKeyLayer`]: in front of any tower `Service` over `http` requests, it lets a request
//! through only with an `x-api-key` the store verifies from the client's address, and with
//! every role the route requires; it answers everything else itself.
//!
//! Maps every refusal to its status and JSON body in one place ([`Refusal`]), and adds a
//! limited key's rate-limit headers (formatted by [`rate_headers`](super::rate_headers)).
//! It never quotes the presented key, and it never waits: the decision is made before
//! `call` returns.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::client_ip::{ForwardedForProblem, TrustedProxies};
use super::rate_headers;
use crate::access::RateStatus;
use crate::access::Rejection;
use crate::access::VerifiedKey;
use crate::access::reason::Reason;
use crate::model::token::api_key_from_headers;
use crate::store::KeyStore;

/// The challenge every 401 carries. `ApiKey` is not a registered HTTP authentication
/// scheme; like Kong's `Key` challenge it names where the credential goes.
const CHALLENGE: &str = "ApiKey header=\"x-api-key\"";

/// The header that names a request's hops, read only behind trusted proxies.
static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The connection's peer address, as a request extension: where [`ApiKeyLayer`] looks for
/// it unless told otherwise with [`ApiKeyLayer::peer_addr_from`].
///
/// A server that accepts connections itself (hyper, hyper-util) inserts it per connection.
/// With axum, read axum's `ConnectInfo` instead:
/// ```
/// # use std::{net::SocketAddr, sync::Arc};
/// use axum::extract::ConnectInfo;
/// # let store = Arc::new(keyledger::KeyStore::builder().open_temporary()?);
/// let auth = keyledger::ApiKeyLayer::new(store)
///     .peer_addr_from(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.ip()));
/// # Ok::<(), keyledger::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// A tower [`Layer`] that verifies each request's `x-api-key` with a [`KeyStore`].
///
/// A request passes to the inner service with its [`VerifiedKey`] and the key's
/// [`KeyOwner`](crate::model::owner::KeyOwner) (its external id and metadata, empty for a
/// key with neither) in the request extensions when the key verifies from the client's address and holds every role
/// required with [`require_role`](Self::require_role). Any other request is answered by
/// the layer, with a [`Refusal`]'s status and a JSON body such as
/// `{"error":"unauthorized","reason":"unknown_key"}`:
///
/// | status | reasons |
/// | --- | --- |
/// | 401, with `WWW-Authenticate: ApiKey header="x-api-key"` | `header_*` (missing, repeated, not ASCII, padded), `malformed_*`, `unknown_key` (never issued or deleted), `expired`, `disabled` |
/// | 403 | `ip_not_whitelisted`, `no_whitelist`, `role_missing`, `client_address_unknown` |
/// | 429, with `Retry-After` and the rate-limit headers | `rate_limited`: the key is past one of its rate limits |
/// | 503 | `stale`: this host of a fleet lost the shared log past its limit |
///
/// For a key with rate limits, the inner service's response gets the IETF httpapi draft's
/// rate-limit headers for the limit closest to running out, named as keyledger writes the
/// limit, so that clients can pace themselves: `RateLimit-Policy: "100/1m";q=100;w=60`
/// and `RateLimit: "100/1m";r=REMAINING;t=SECONDS` (until the whole burst is back, rounded
/// up). A 429 carries them with `r=0`, and `Retry-After` in whole seconds (rounded up, at
/// least 1). A key without limits gets none of them.
///
/// The client's address is the connection's peer address ([`PeerAddr`], or what
/// [`peer_addr_from`](Self::peer_addr_from) reads), or, behind [`TrustedProxies`], the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy. A request whose address
/// cannot be established gets 403 `client_address_unknown`.
///
/// Every decision (the service's, and [`check`](Self::check)'s) is counted by its reason,
/// with the time it took, in the store's statistics ([`KeyStore::statistics`]), unless
/// the store was opened with `Builder::statistics(false)`.
///
/// Layers are cheap to clone; give each route its own to require other roles (axum's
/// `route_layer`).
///
/// # Example
/// Each route its own roles, with axum (served with
/// `app.into_make_service_with_connect_info::<SocketAddr>()`, so that `ConnectInfo` is
/// there):
/// ```
/// use std::{net::SocketAddr, sync::Arc};
/// use axum::{Extension, Router, extract::ConnectInfo, routing::{get, post}};
/// use keyledger::{ApiKeyLayer, KeyStore, TrustedProxies, VerifiedKey};
///
/// let store = Arc::new(KeyStore::builder().open_temporary()?);
/// let auth = ApiKeyLayer::new(store)
///     .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"])?)
///     .peer_addr_from(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.ip()));
/// let notify = |Extension(key): Extension<VerifiedKey>| async move { format!("hello {}", key.name()) };
/// let app: Router = Router::new()
///     .route("/notifications", get(notify).route_layer(auth.clone().require_role("notifier")))
///     .route("/admin/purge", post(|| async { "purged" }).route_layer(auth.require_role("admin")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ApiKeyLayer {
    config: Arc<Config>,
}

/// What every service a layer makes shares.
#[derive(Clone)]
struct Config {
    store: Arc<KeyStore>,
    proxies: TrustedProxies,
    roles: Vec<Box<str>>,
    peer_addr: fn(&Extensions) -> Option<IpAddr>,
    opaque: bool,
}

fn peer_addr_extension(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<PeerAddr>().map(|peer| peer.0.ip())
}

impl ApiKeyLayer {
    /// Verifies with `store`, trusting no proxy and requiring no role, and reads the peer
    /// address from the [`PeerAddr`] extension.
    pub fn new(store: Arc<KeyStore>) -> Self {
        ApiKeyLayer {
            config: Arc::new(Config {
                store,
                proxies: TrustedProxies::none(),
                roles: Vec::new(),
                peer_addr: peer_addr_extension,
                opaque: false,
            }),
        }
    }

    /// Reads the client's address from `X-Forwarded-For` when the connection comes from
    /// one of these proxies (see [`TrustedProxies::client_ip`]).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        Arc::make_mut(&mut self.config).proxies = proxies;
        self
    }

    /// Also requires this role; a key must hold every role required, else 403
    /// `role_missing`.
    pub fn require_role(mut self, role: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config)
            .roles
            .push(role.into().into_boxed_str());
        self
    }

    /// Reads the connection's peer address with `peer_addr` instead of from the
    /// [`PeerAddr`] extension, e.g. from axum's `ConnectInfo<SocketAddr>`. `None` refuses
    /// the request with 403 `client_address_unknown`.
    pub fn peer_addr_from(mut self, peer_addr: fn(&Extensions) -> Option<IpAddr>) -> Self {
        Arc::make_mut(&mut self.config).peer_addr = peer_addr;
        self
    }

    /// Answers every refusal 401 `{"error":"unauthorized","reason":"unauthorized"}` (with
    /// the `WWW-Authenticate` challenge) instead of its own status and reason, so that a
    /// client learns nothing from a refusal: not that a stolen key is live but used from
    /// the wrong address (`ip_not_whitelisted`), expired or disabled. The [`Refusal`]
    /// itself stays in the response's extensions, for the host's own logs.
    ///
    /// A key past its rate limit is still answered 429 with `Retry-After`: that answer
    /// only reaches a request that passed every other check (the limit is checked last),
    /// so it tells nothing a 200 after the wait would not, and a 401 would make a client
    /// that is merely too fast give up on a good key.
    pub fn opaque_refusals(mut self, opaque: bool) -> Self {
        Arc::make_mut(&mut self.config).opaque = opaque;
        self
    }

    /// The answer this layer gives for `refusal`: [`Refusal::response`], or the opaque
    /// one with [`opaque_refusals`](Self::opaque_refusals) (but for `rate_limited`, see
    /// there). For hosts that call [`check`](Self::check) and answer themselves.
    pub fn refusal_response<B: From<String>>(&self, refusal: Refusal) -> Response<B> {
        self.config.answer(refusal)
    }

    /// The layer's decision for a request with these headers and extensions, without
    /// passing it on: for a host that wants the check without the layer.
    ///
    /// # Errors
    /// The [`Refusal`] the layer would answer with.
    pub fn check(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<VerifiedKey, Refusal> {
        self.config.counted(headers, extensions, 1)
    }

    /// As [`check`](Self::check), for a request that costs `cost` of the key's credits (a
    /// weighted operation; see `KeyStore::verify_with_cost`).
    ///
    /// # Errors
    /// The [`Refusal`] the layer would answer with.
    pub fn check_with_cost(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
        cost: u64,
    ) -> Result<VerifiedKey, Refusal> {
        self.config.counted(headers, extensions, cost)
    }

    /// As [`check`](Self::check), also requiring `roles`, and not counted in the store's
    /// statistics: for routes whose requirements come with each request (`keyledger
    /// serve`'s `/auth?role=R`, which counts its own decisions, the admin API's check of
    /// an admin key with none, which are not decisions of `/auth`).
    #[cfg(feature = "serve")]
    pub(crate) fn check_with_roles(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
        roles: &[String],
        cost: u64,
    ) -> Result<VerifiedKey, Refusal> {
        self.config.check(headers, extensions, roles, cost)
    }

    /// The store the layer verifies with.
    #[cfg(feature = "serve")]
    pub(crate) fn store(&self) -> &Arc<KeyStore> {
        &self.config.store
    }

    /// The proxies whose `X-Forwarded-For` the layer reads.
    #[cfg(feature = "serve")]
    pub(crate) fn proxies(&self) -> &TrustedProxies {
        &self.config.proxies
    }

    /// Whether refusals are answered opaquely.
    #[cfg(feature = "serve")]
    pub(crate) fn is_opaque(&self) -> bool {
        self.config.opaque
    }
}

impl Config {
    /// [`Config::check`] with no more roles, counted (and timed) in the store's
    /// statistics.
    #[inline]
    fn counted(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
        cost: u64,
    ) -> Result<VerifiedKey, Refusal> {
        let stats = self.store.stats();
        let Some(started) = stats.clock() else {
            return self.check(headers, extensions, &[], cost);
        };
        let decided = self.check(headers, extensions, &[], cost);
        stats.decided(started, decided.as_ref().err().map(Refusal::reason));
        decided
    }

    fn answer<B: From<String>>(&self, refusal: Refusal) -> Response<B> {
        if self.opaque && !refusal.is_rate_limited() {
            refusal.opaque_response()
        } else {
            refusal.response()
        }
    }

    fn check(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
        more: &[String],
        cost: u64,
    ) -> Result<VerifiedKey, Refusal> {
        let key = api_key_from_headers(
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        )
        .map_err(|h| Refusal::Key(Rejection::Header(h)))?;
        let peer = (self.peer_addr)(extensions).ok_or(Refusal::NoPeerAddress)?;
        // Without proxies to trust, the header is not even looked up.
        let client = if self.proxies.is_empty() {
            peer
        } else {
            let forwarded = headers.get_all(&FORWARDED_FOR).iter().map(HeaderValue::as_bytes);
            self.proxies
                .client_ip(peer, forwarded)
                .map_err(Refusal::ForwardedFor)?
        };
        let required = self
            .roles
            .iter()
            .map(|r| &**r)
            .chain(more.iter().map(String::as_str));
        // The roles are checked before the key's rate limits and credits are spent.
        self.store
            .verify_requiring(key, client, cost, required)
            .map_err(|rejection| match rejection {
                Rejection::RoleMissing => Refusal::RoleMissing,
                other => Refusal::Key(other),
            })
    }
}

impl fmt::Debug for ApiKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("store", &self.config.store)
            .field("trusted_proxies", &self.config.proxies)
            .field("required_roles", &self.config.roles)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service an [`ApiKeyLayer`] wraps around `S`.
///
/// `poll_ready` is the inner service's. `call` decides before it returns, so a request
/// that passes goes to the inner service that reported ready, in the same `call`, and no
/// clone of it is needed (the clone-and-swap pattern is for services that call their
/// inner service later, from the future). A refused request leaves the inner service
/// ready and unused, as tower-http's header validation does; its readiness carries over to
/// the next call.
///
/// The response body type only has to be built from a `String` (axum's `Body`,
/// `http_body_util::Full<Bytes>`, `String`), so the inner service's responses pass through
/// untouched but for a limited key's rate-limit headers, which are added to them.
#[derive(Clone)]
pub struct ApiKeyService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for ApiKeyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKeyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.config.counted(request.headers(), request.extensions(), 1) {
            Ok(key) => {
                let rate = key.rate_status();
                // One lookup apart from the verify, which never reads them.
                let owner = self.config.store.key_owner(key.id()).unwrap_or_default();
                request.extensions_mut().insert(owner);
                request.extensions_mut().insert(key);
                ResponseFuture {
                    state: State::Inner {
                        future: self.inner.call(request),
                        rate,
                    },
                }
            }
            Err(refusal) => ResponseFuture {
                state: State::Refused {
                    response: Some(self.config.answer(refusal)),
                },
            },
        }
    }
}

pin_project! {
    /// The response of an [`ApiKeyService`]: the inner service's (with a limited key's
    /// rate-limit headers), or the layer's refusal.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] future: F, rate: Option<RateStatus> },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    /// # Panics
    /// If polled again after a refusal was answered (a future is not polled after it is
    /// ready).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, rate } => match future.poll(cx) {
                Poll::Ready(Ok(mut response)) => {
                    if let Some(status) = rate {
                        rate_headers::append_status(response.headers_mut(), status);
                    }
                    Poll::Ready(Ok(response))
                }
                other => other,
            },
            StateProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Why [`ApiKeyLayer`] answered a request itself. The response it sends carries this in
/// its extensions, for logging further out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The store refused the key (or the header gave none).
    Key(Rejection),
    /// The key verified but lacks a role the route requires.
    RoleMissing,
    /// The request carries no peer address (no [`PeerAddr`], or the reader given to
    /// [`ApiKeyLayer::peer_addr_from`] found none).
    NoPeerAddress,
    /// The peer is a trusted proxy and `X-Forwarded-For` names no usable client address.
    ForwardedFor(ForwardedForProblem),
    /// `/auth` was asked for a cost that is not a whole number from 1 to
    /// [`MAX_CREDITS`](crate::model::credits::MAX_CREDITS).
    CostInvalid,
}

impl Refusal {
    /// 401 when the key itself is missing or no good; 403 when the key is good but not
    /// from this address, not for this route, or the address is unknown; 429 when the key
    /// is past one of its rate limits or out of credits; 503 when this host lost the shared log past its
    /// limit and can vouch for no key.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Key(rejection) => match rejection {
                Rejection::Malformed(_)
                | Rejection::Header(_)
                | Rejection::UnknownKey
                | Rejection::Expired
                | Rejection::Disabled => StatusCode::UNAUTHORIZED,
                Rejection::Stale => StatusCode::SERVICE_UNAVAILABLE,
                Rejection::RateLimited { .. } | Rejection::UsageExceeded { .. } => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                Rejection::RoleMissing => StatusCode::FORBIDDEN,
                Rejection::IpNotWhitelisted | Rejection::NoWhitelist => StatusCode::FORBIDDEN,
            },
            Refusal::RoleMissing
            | Refusal::NoPeerAddress
            | Refusal::ForwardedFor(_)
            | Refusal::CostInvalid => StatusCode::FORBIDDEN,
        }
    }

    /// The body's `reason`: [`Rejection::code`] for a key, else `role_missing` or
    /// `client_address_unknown` (the client is not told which part of its address failed).
    pub fn code(&self) -> &'static str {
        self.reason().code()
    }

    /// The reason, as the decision counts and [`code`](Self::code) name it.
    pub(crate) fn reason(&self) -> Reason {
        match self {
            Refusal::Key(rejection) => rejection.reason(),
            Refusal::RoleMissing => Reason::RoleMissing,
            Refusal::NoPeerAddress | Refusal::ForwardedFor(_) => Reason::ClientAddressUnknown,
            Refusal::CostInvalid => Reason::CostInvalid,
        }
    }

    /// The body's `error`: `unauthorized` for a 401, `forbidden` for a 403,
    /// `too_many_requests` for a 429, `unavailable` for a 503.
    pub fn error(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "forbidden",
        }
    }

    /// Whether the key is refused only for now: past one of its rate limits, or out of
    /// credits.
    pub(crate) fn is_rate_limited(&self) -> bool {
        matches!(
            self,
            Refusal::Key(Rejection::RateLimited { .. } | Rejection::UsageExceeded { .. })
        )
    }

    /// The layer's answer: [`status`](Self::status), `content-type: application/json`, a
    /// `WWW-Authenticate` challenge on a 401, `Retry-After` and the rate-limit headers on
    /// a 429 (see [`ApiKeyLayer`]), and the body `{"error": error(), "reason": code()}`;
    /// the refusal itself in the extensions.
    pub fn response<B: From<String>>(&self) -> Response<B> {
        // Both words are fixed identifiers of `[a-z_]`: nothing to escape.
        let body = format!(r#"{{"error":"{}","reason":"{}"}}"#, self.error(), self.code());
        let mut response = Response::new(B::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        }
        match *self {
            Refusal::Key(Rejection::RateLimited { limit, retry_after }) => {
                rate_headers::insert_refused(headers, limit, retry_after);
            }
            Refusal::Key(Rejection::UsageExceeded { retry_after }) => {
                rate_headers::insert_usage_exceeded(headers, retry_after);
            }
            _ => {}
        }
        response.extensions_mut().insert(*self);
        response
    }

    /// The answer that tells the client nothing: 401 with the challenge and
    /// `{"error":"unauthorized","reason":"unauthorized"}` whatever the refusal; the refusal
    /// itself in the extensions (see [`ApiKeyLayer::opaque_refusals`]).
    pub fn opaque_response<B: From<String>>(&self) -> Response<B> {
        let mut response = Response::new(B::from(OPAQUE.to_owned()));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        response.extensions_mut().insert(*self);
        response
    }
}

/// The body of every opaque refusal.
const OPAQUE: &str = r#"{"error":"unauthorized","reason":"unauthorized"}"#;

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Key(rejection) => rejection.fmt(f),
            Refusal::RoleMissing => f.write_str("the key lacks a role this route requires"),
            Refusal::NoPeerAddress => f.write_str("the request carries no peer address"),
            Refusal::ForwardedFor(problem) => problem.fmt(f),
            Refusal::CostInvalid => f.write_str("the cost asked is not a whole number from 1 to 2^53"),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal::Key(rejection)
    }
}

#[cfg(test)]
pub(crate) mod tests;
