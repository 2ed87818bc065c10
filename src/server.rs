//! `keyledger serve` (feature `serve`): forward-auth for reverse proxies (`/auth`), a health
//! check (`/healthz`), probes (`/livez`, `/readyz`) and the admin API (`/v1`), over
//! HTTP/1.1, with a decision line (`tracing`) per admin request and refused `/auth`.
//!
//! Its metrics (`GET /metrics`, [`Metrics`]) are served on a listener of their own, never
//! by these routes.
//!
//! Decides nothing about keys: `/auth` asks the same check as [`ApiKeyLayer`], the admin
//! API calls the store as the actor [`KeyStore::acting_through`] names, and each library
//! error maps to one status here. `/auth` never answers 200 unless the check passed, and
//! answers nginx (`?deny=403`) nothing but 200, 401 or 403.

pub(crate) mod admin;
pub(crate) mod admit;
pub(crate) mod auth;
pub(crate) mod body;
mod contract;
pub(crate) mod identity;
pub(crate) mod listen;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod probe;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{Extensions, StatusCode};
use tokio::sync::Semaphore;

use crate::http::client_ip::TrustedProxies;
use crate::http::layer::ApiKeyLayer;
use crate::http::layer::PeerAddr;
use crate::json::ErrorJson;
use crate::store::Integrity;
use crate::store::KeyStore;
pub use identity::ProxyAdmins;
use log::AuthLog;
use metrics::{AdminRequests, Metrics};

/// The most bytes of a JSON request body (an import's JSON Lines aside): a key with the
/// most roles and the longest whitelist fits with room.
pub const MAX_BODY_BYTES: usize = 128 * 1024;
/// The most bytes of an import's JSON Lines body (`POST /v1/keys/import`): about 100,000
/// keys; split larger imports, or use `keyledger import-keys` on the store itself.
pub const MAX_IMPORT_BODY_BYTES: usize = 16 * 1024 * 1024;

/// keyledger's HTTP server: forward-auth, health and the admin API over one store.
///
/// | route | answers |
/// | --- | --- |
/// | `/auth`, `/auth/...` (any method), `?role=R` repeatable, `?deny=403` | 200 with `X-Keyledger-Key-Id`, `X-Keyledger-Key-Name` (percent-encoded), `X-Keyledger-Roles` and, for a key with rate limits, `RateLimit-Policy` and `RateLimit`; else 401, 403 or 429 (with `Retry-After`) as [`ApiKeyLayer`] answers, with `X-Keyledger-Reason`. With `deny=403` (nginx), the 429 is a 403 with the same headers; nothing but 200, 401 or 403, ever. |
/// | `GET /healthz` | 200 `{"status":"ok","last_seq":N}`; 503 when the store cannot serve |
/// | `GET /livez`, `GET /readyz` | 200 while the process answers; 200 only while this host should get traffic, else 503 naming why |
/// | `GET /`, `/ui/*.js`, `/ui/app.css` | the admins' page, a client of `/v1` (see the README) |
/// | `/v1/...` | the admin API, authenticated by an admin key in `x-api-key` (see the README) |
///
/// Either [`run`](Self::run) it on a listener of its own (with timeouts, connection limits
/// and graceful shutdown), or mount [`router`](Self::router) in a host's axum app, served
/// with `into_make_service_with_connect_info::<SocketAddr>()`. Neither has `/metrics`:
/// [`metrics`](Self::metrics) serves it apart.
///
/// # Example
/// ```no_run
/// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use keyledger::{KeyStore, Server, TrustedProxies};
///
/// let store = Arc::new(KeyStore::builder().create_if_missing(false).open("keys.db")?);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// Server::new(store)
///     .trusted_proxies(TrustedProxies::parse(["127.0.0.1"])?)
///     .run(listener, async { let _ = tokio::signal::ctrl_c().await; })
///     .await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    layer: ApiKeyLayer,
    options: Options,
    auth_log: AuthLog,
    /// Admins a trusted proxy may name instead of an admin key.
    proxy_admins: Option<Arc<ProxyAdmins>>,
    admin_requests: AdminRequests,
}

/// The limits a [`Server`] runs with.
#[derive(Debug, Clone, Copy)]
struct Options {
    read_timeout: Duration,
    max_connections: usize,
    max_connections_per_client: usize,
    /// `None`: a quarter of `max_connections` when there are trusted proxies, else none.
    proxy_connections: Option<usize>,
    max_admin_requests: usize,
    shutdown_timeout: Duration,
}

impl Options {
    /// The connection limits with these proxies: the proxies' share never takes every slot.
    fn limits(&self, proxies: &TrustedProxies) -> admit::Limits {
        let reserve = match self.proxy_connections {
            _ if proxies.is_empty() => 0,
            Some(n) => n,
            None => self.max_connections / 4,
        };
        admit::Limits {
            total: self.max_connections,
            per_client: self.max_connections_per_client,
            proxy_reserve: reserve.min(self.max_connections - 1),
        }
    }
}

/// What every handler shares.
struct Shared {
    layer: ApiKeyLayer,
    /// Admin requests being served: each holds a permit from before its body is read
    /// until its store call returns.
    admin: Arc<Semaphore>,
    /// Imports being read and parsed: one at a time, so that their large bodies are too.
    imports: Arc<Semaphore>,
    options: Options,
    /// Which `/auth` decisions are logged.
    auth_log: AuthLog,
    /// Accepted `/auth` requests seen, for [`AuthLog::Sampled`].
    auth_seen: AtomicU64,
    /// Admins a trusted proxy may name.
    proxy_admins: Option<Arc<ProxyAdmins>>,
    admin_requests: AdminRequests,
}

impl Shared {
    fn store(&self) -> &Arc<KeyStore> {
        self.layer.store()
    }
}

/// The connection's peer, as [`Server::run`] inserts it, or as axum's `ConnectInfo` when
/// a host serves the router.
fn peer_addr(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<PeerAddr>()
        .map(|p| p.0.ip())
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

impl Server {
    /// Serves `store`, trusting no proxy, with the default limits: a 10 s read timeout,
    /// 1024 connections (64 per client; a quarter kept for trusted proxies, if any), 32
    /// admin requests at a time, and 10 s to finish in-flight requests at shutdown.
    pub fn new(store: Arc<KeyStore>) -> Self {
        Server {
            layer: ApiKeyLayer::new(store).peer_addr_from(peer_addr),
            options: Options {
                read_timeout: Duration::from_secs(10),
                max_connections: 1024,
                max_connections_per_client: 64,
                proxy_connections: None,
                max_admin_requests: 32,
                shutdown_timeout: Duration::from_secs(10),
            },
            auth_log: AuthLog::Refused,
            proxy_admins: None,
            admin_requests: AdminRequests::default(),
        }
    }

    /// Lets a proxy at one of the admins' proxy addresses ([`ProxyAdmins::proxy`]) name the
    /// admin of an admin request in a header instead of an admin key: the platform's own
    /// sign-in in front of the admins' page. See [`ProxyAdmins`] for what is checked.
    pub fn proxy_admins(mut self, admins: ProxyAdmins) -> Self {
        self.proxy_admins = Some(Arc::new(admins));
        self
    }

    /// Reads the client's address from `X-Forwarded-For` when the connection comes from
    /// one of these proxies (rightmost untrusted; see [`TrustedProxies::client_ip`]).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.layer = self.layer.trusted_proxies(proxies);
        self
    }

    /// How long a client may take to send a request's headers (from the moment the
    /// connection is ready for one, so it also closes idle keep-alive connections), to
    /// send its body, and to take each part of the answer; also how long an admin request
    /// waits for its turn before 503 `overloaded`. At least 1 ms.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.options.read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Most connections open at once (at least 1); past it, new connections wait in the
    /// operating system's backlog.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.options.max_connections = connections.max(1);
        self
    }

    /// Most connections one client may hold at once (at least 1; default 64), so that
    /// one client cannot take every slot with idle or trickling connections. A client is
    /// its IPv4 address, or its IPv6 address's /64. Trusted proxies are not capped. A
    /// connection past it is answered 503 and closed at once.
    pub fn max_connections_per_client(mut self, connections: usize) -> Self {
        self.options.max_connections_per_client = connections.max(1);
        self
    }

    /// Connection slots kept for the trusted proxies: clients that are not proxies share
    /// the rest, and a connection from one past it is answered 503 and closed at once.
    /// Default: a quarter of [`max_connections`](Self::max_connections) when proxies are
    /// trusted, none otherwise; always at least one slot stays for other clients.
    pub fn proxy_connections(mut self, connections: usize) -> Self {
        self.options.proxy_connections = Some(connections);
        self
    }

    /// Answers every refusal of a key (`/auth` and the layer alike) 401
    /// `{"error":"unauthorized","reason":"unauthorized"}`, so that a refusal tells a
    /// client nothing, not even that a stolen key is live but used from the wrong
    /// address. A key past its rate limit still gets its 429 (a 403 with `/auth?deny=403`)
    /// and `Retry-After`. See [`ApiKeyLayer::opaque_refusals`].
    pub fn opaque_refusals(mut self, opaque: bool) -> Self {
        self.layer = self.layer.opaque_refusals(opaque);
        self
    }

    /// Which `/auth` decisions get a log line (through `tracing`, target
    /// `keyledger::decision`): refused ones always; accepted ones with [`AuthLog::All`],
    /// or one in N with [`AuthLog::Sampled`]. Every admin request gets one either way.
    pub fn log_auth(mut self, lines: AuthLog) -> Self {
        self.auth_log = lines;
        self
    }

    /// Most admin requests served at once (at least 1); others wait up to the read
    /// timeout for their turn.
    pub fn max_admin_requests(mut self, requests: usize) -> Self {
        self.options.max_admin_requests = requests.max(1);
        self
    }

    /// How long shutdown waits for in-flight requests before [`run`](Self::run) returns.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.options.shutdown_timeout = timeout;
        self
    }

    /// The routes, to mount in a host's axum app. The client address is the connection's
    /// peer ([`PeerAddr`] or axum's `ConnectInfo<SocketAddr>`), or behind the trusted
    /// proxies the rightmost untrusted `X-Forwarded-For` entry. The host then owns the
    /// limits that [`run`](Self::run) would set: timeouts, connections, graceful shutdown.
    pub fn router(&self) -> Router {
        let shared = Arc::new(Shared {
            layer: self.layer.clone(),
            admin: Arc::new(Semaphore::new(self.options.max_admin_requests)),
            imports: Arc::new(Semaphore::new(1)),
            options: self.options,
            auth_log: self.auth_log,
            auth_seen: AtomicU64::new(0),
            proxy_admins: self.proxy_admins.clone(),
            admin_requests: self.admin_requests.clone(),
        });
        let (admin, paths) = admin::routes();
        let contract = contract::document(paths);
        Router::new()
            .route("/auth", any(auth::check))
            .route("/auth/", any(auth::check))
            .route("/auth/{*path}", any(auth::check))
            .route("/healthz", get(health))
            .route("/livez", get(probe::live))
            .route("/readyz", get(probe::ready))
            .nest(
                admin::NESTED_AT,
                admin
                    .fallback(not_found)
                    .layer(axum::middleware::map_response(no_store))
                    .layer(axum::middleware::from_fn_with_state(
                        Arc::clone(&shared),
                        log::admin,
                    )),
            )
            .merge(crate::ui::routes())
            .route(
                "/v1/",
                any(not_found).layer(axum::middleware::map_response(no_store)),
            )
            .route("/v1/openapi.json", get(move || contract_answer(contract)))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(shared)
    }

    /// The metrics of this server's store and admin API (`GET /metrics` in the Prometheus
    /// text format), to serve on a listener of their own: [`router`](Self::router) and
    /// [`run`](Self::run) never serve them. Counts of `/auth` decisions are kept unless
    /// the store was opened with [`Builder::statistics`](crate::store::builder::Builder::statistics)`(false)`.
    pub fn metrics(&self) -> Metrics {
        Metrics::new(
            Arc::clone(self.layer.store()),
            self.admin_requests.clone(),
            self.options,
        )
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, lets the
    /// requests in flight finish (for at most the shutdown timeout) and returns. Each
    /// request sees its connection's peer as [`PeerAddr`].
    ///
    /// Every write the admin API acknowledged was durable before it was answered; the
    /// store itself closes when its last `Arc` is dropped (a store call still running
    /// after the timeout holds one until it returns). Errors accepting a connection never
    /// stop the server: it pauses a moment and accepts again.
    pub async fn run(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) {
        let router = self.router();
        let proxies = self.layer.proxies().clone();
        listen::serve(router, listener, self.options, proxies, shutdown).await;
    }
}

/// `GET /healthz`: 200 while the store can serve; 503 once its history proved damaged
/// (it verifies no key), its writer stopped (it takes no write), or, on a host of a fleet,
/// once it stopped writing or lost the shared log past its limit (a load balancer then
/// drains it).
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store();
    let fleet = store.fleet_status();
    let (status, answer) = Health::of(
        store.last_seq(),
        store.is_closed(),
        &store.integrity(),
        fleet.as_ref(),
    );
    body::json(status, &answer)
}

/// A host's place in its fleet, in `/healthz` and `/v1/fleet`.
#[derive(serde::Serialize)]
pub(crate) struct FleetHealth {
    host: String,
    /// Milliseconds since the shared log last answered (0 while in contact).
    stale_ms: u128,
    /// Whether every key is rejected (fenced, catching up, or leaving).
    rejecting: bool,
    /// Why this host stopped writing, if it did.
    halted: Option<String>,
    /// Why the stream cannot be trusted, if it cannot (reason `stream`).
    stream_fault: Option<String>,
    /// Messages skipped since this host started because they were not the fleet's.
    foreign_messages: u64,
    /// Why it reports itself unhealthy: `[{"cause", "reason"}]`, one per cause.
    causes: Vec<CauseJson>,
    /// `live` while rate limits and credits are enforced against the fleet's counts,
    /// `local_share` while each host keeps to its share (not a cause of ill health).
    usage_sharing: &'static str,
    /// How many hosts share each key's limits and credits.
    usage_hosts: usize,
    /// Messages on the usage subject dropped (forged, replayed) since this host started.
    dropped_reports: u64,
}

/// One reason a host of a fleet is unhealthy.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CauseJson {
    cause: &'static str,
    reason: String,
}

/// The causes of a fleet status, as JSON.
pub(crate) fn causes(f: &crate::fleet::FleetStatus) -> Vec<CauseJson> {
    f.causes
        .iter()
        .map(|(cause, reason)| CauseJson {
            cause,
            reason: reason.clone(),
        })
        .collect()
}

impl From<&crate::fleet::FleetStatus> for FleetHealth {
    fn from(f: &crate::fleet::FleetStatus) -> Self {
        FleetHealth {
            host: f.host.clone(),
            stale_ms: f.stale_for.as_millis(),
            rejecting: f.rejecting,
            halted: f.halted.clone(),
            stream_fault: f.stream_fault.clone(),
            foreign_messages: f.foreign_messages,
            causes: causes(f),
            usage_sharing: f.usage.sharing.as_str(),
            usage_hosts: f.usage.hosts,
            dropped_reports: f.usage.dropped_reports,
        }
    }
}

/// `/healthz`'s answer: `{"status":"ok","last_seq":N}`, or with `"status":"unavailable"`
/// and a `reason`.
#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    last_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<FleetHealth>,
}

impl Health {
    /// A store still verifying the history under its snapshot serves: it is healthy.
    fn of(
        last_seq: u64,
        closed: bool,
        integrity: &Integrity,
        fleet: Option<&crate::fleet::FleetStatus>,
    ) -> (StatusCode, Health) {
        let reason = if closed {
            Some("closed")
        } else if matches!(integrity, Integrity::Damaged(_)) {
            Some("damaged")
        } else if let Some(f) = fleet.filter(|f| f.unhealthy) {
            // The first cause: `halted`, `stale`, `fenced`, `bootstrapping`, then others.
            f.causes.first().map(|(cause, _)| *cause)
        } else {
            None
        };
        let status = match reason {
            None => StatusCode::OK,
            Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let answer = Health {
            status: if reason.is_none() { "ok" } else { "unavailable" },
            reason,
            last_seq,
            fleet: fleet.map(FleetHealth::from),
        };
        (status, answer)
    }
}

/// `GET /v1/openapi.json`: the admin API's OpenAPI 3.1 document, to anyone (it holds no
/// key and names nothing but the routes).
async fn contract_answer(document: String) -> Response {
    body::with_type(StatusCode::OK, document.into(), "application/json")
}

/// Every admin API answer: some carry a key's secret (create, roll), all of them say
/// what keys exist; no cache, browser or proxy, may keep one.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

async fn not_found() -> Response {
    Reject::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

async fn method_not_allowed() -> Response {
    Reject::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
    .into_response()
}

/// The name-value pairs of a query string, percent-decoded with `+` as a space. Invalid
/// UTF-8 becomes U+FFFD, which no role, key id or filter holds.
fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty())
        .map(move |pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
}

/// A request refused, with its answer (boxed: a `Result` carries it by value).
struct Reject(Box<Response>);

impl Reject {
    /// An error of the API's own `kind` (not a library error).
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        let mut answer = body::json(status, &ErrorJson::new(kind, message));
        answer.extensions_mut().insert(log::ErrorKind(kind));
        Reject(Box::new(answer))
    }

    /// A failure inside the server (a panic in a store call): never a client's fault.
    fn internal() -> Self {
        Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed inside the server; its standard error says why",
        )
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<crate::model::error::Error> for Reject {
    fn from(e: crate::model::error::Error) -> Self {
        let mut answer = body::json(status_of(&e), &ErrorJson::from(&e));
        answer.extensions_mut().insert(log::ErrorKind(e.code()));
        Reject(Box::new(answer))
    }
}

/// The one mapping of library errors to statuses: 400 bad input, 403 permission, 404 a
/// key unknown or deleted, 409 a change that conflicts with the state, 503 the store.
fn status_of(e: &crate::model::error::Error) -> StatusCode {
    use crate::model::error::Error;
    match e {
        Error::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        Error::PermissionDenied { .. } => StatusCode::FORBIDDEN,
        Error::KeyNotFound(_) | Error::KeyDeleted(_) => StatusCode::NOT_FOUND,
        Error::WhitelistUnchanged { .. }
        | Error::StateUnchanged { .. }
        | Error::LastWhitelistEntry { .. }
        | Error::NothingToRevoke { .. }
        | Error::SecretKnown => StatusCode::CONFLICT,
        Error::ImportEntry { source, .. } => status_of(source),
        Error::ChainKeyMismatch(_)
        | Error::Locked { .. }
        | Error::Io(_)
        | Error::Storage { .. }
        | Error::Corrupt { .. }
        | Error::NotAStore { .. }
        | Error::WitnessMismatch { .. }
        | Error::UnsupportedVersion { .. }
        | Error::Entropy(_)
        | Error::StreamUnavailable { .. }
        | Error::StreamDiverged { .. }
        | Error::FleetHalted { .. }
        | Error::UnsafeFile { .. }
        | Error::StreamChanged { .. }
        | Error::FleetNotJoined { .. }
        | Error::HistoryIncomplete { .. }
        | Error::Closed => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::problem::Problem;
    use crate::model::problem::ProblemKind;

    #[test]
    fn health_is_503_once_the_store_is_damaged_or_its_writer_stopped() {
        let answer = |closed, integrity: Integrity| {
            let (status, health) = Health::of(7, closed, &integrity, None);
            (status.as_u16(), serde_json::to_string(&health).unwrap())
        };
        let ok = (200, r#"{"status":"ok","last_seq":7}"#.to_owned());
        assert_eq!(answer(false, Integrity::Verified), ok);
        assert_eq!(answer(false, Integrity::Verifying), ok);
        let damaged = Integrity::Damaged(Problem {
            seq: 3,
            kind: ProblemKind::Snapshot,
            detail: "the snapshot disagrees".into(),
        });
        assert_eq!(
            answer(false, damaged),
            (
                503,
                r#"{"status":"unavailable","reason":"damaged","last_seq":7}"#.to_owned()
            )
        );
        assert_eq!(
            answer(true, Integrity::Verified),
            (
                503,
                r#"{"status":"unavailable","reason":"closed","last_seq":7}"#.to_owned()
            )
        );
    }

    #[test]
    fn each_error_has_its_status_and_an_import_error_its_entrys() {
        use crate::model::error::Error;
        let id: crate::model::id::KeyId = "00000000000000aa".parse().unwrap();
        for (e, status) in [
            (Error::invalid("name", "empty"), 400),
            (
                Error::denied("alice", crate::model::error::Denial::NotAnAdmin),
                403,
            ),
            (Error::KeyNotFound(id), 404),
            (Error::KeyDeleted(id), 404),
            (
                Error::StateUnchanged {
                    id,
                    state: "disabled",
                },
                409,
            ),
            (Error::LastWhitelistEntry { id }, 409),
            (Error::SecretKnown, 409),
            (
                Error::NothingToRevoke {
                    actor: "carol".into(),
                },
                409,
            ),
            (
                Error::Storage {
                    reason: "disk".into(),
                },
                503,
            ),
            (Error::Closed, 503),
            (
                Error::ImportEntry {
                    index: 2,
                    source: Box::new(Error::denied(
                        "alice",
                        crate::model::error::Denial::GrantsSuperAdmin,
                    )),
                },
                403,
            ),
        ] {
            assert_eq!(status_of(&e).as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn query_pairs_are_percent_decoded_with_plus_as_space() {
        let pairs: Vec<(String, String)> = query_pairs(Some("a=1&&b=x%2By+z&flag&c=%FF")).collect();
        assert_eq!(
            pairs,
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x+y z".to_owned()),
                ("flag".to_owned(), String::new()),
                ("c".to_owned(), "\u{FFFD}".to_owned()),
            ]
        );
    }
}
