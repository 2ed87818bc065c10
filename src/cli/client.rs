//! The command line as a client of a running `keyledger serve` (`--server URL`, feature
//! `client`): the key commands as requests to its admin API over HTTP/1.1, and its answers
//! as the JSON types the local commands render.
//!
//! Decides nothing: the server's store applies every rule, and its errors become the exit
//! codes and `error:` lines the local commands give. The admin key goes out only in
//! `x-api-key`, marked sensitive, and is never shown: not in output, errors or `Debug`.
//! Plain `http://` only.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use keyledger::{
    AuditFilter, AuditJson, Credits, CreditsJson, EntryPageJson, Error, ErrorJson, ImportedJson, IpNet,
    KeyId, KeyJson, KeyPageJson, MAX_PAGE_LIMIT, RateLimit, RateLimitJson, RefusedJson, RevokedActorJson,
    RollJson,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::{Failure, exit};

/// How long connecting may take, name resolution included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take from connecting to the last byte of its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read: far more than any audit trail the server keeps in memory.
const MAX_ANSWER_BYTES: usize = 1 << 30;

static API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// What a query value (or a path segment) keeps unencoded: RFC 3986's unreserved
/// characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A running `keyledger serve`, and the admin key to present to it.
pub(super) struct Client {
    /// The URL as given, for messages.
    url: String,
    /// Where to connect: a name or an address (without an IPv6 address's brackets).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    /// The URL's path, without its trailing `/`: `/v1` follows it.
    prefix: String,
    api_key: HeaderValue,
    runtime: tokio::runtime::Runtime,
}

/// A key's fields as the admin API takes them: `POST /v1/keys`, and with the secret, an
/// import line.
#[derive(Serialize)]
pub(super) struct KeyBody {
    pub(super) name: String,
    pub(super) roles: Vec<String>,
    pub(super) ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) expires_in: Option<String>,
    /// For an admin key: the person it acts as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) actor: Option<String>,
    /// Its rate limits; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) rate_limits: Vec<RateLimitJson>,
    /// Its credits; left out when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) credits: Option<CreditsJson>,
    /// Its owner's id outside keyledger; left out when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) external_id: Option<String>,
    /// Its metadata; left out when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) meta: Option<serde_json::Value>,
}

/// What `POST` and `DELETE /v1/keys/{id}/whitelist` take.
#[derive(Serialize)]
struct WhitelistBody {
    ips: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_any_address: bool,
}

/// What `PUT /v1/keys/{id}/limits` takes: the key's limits from now on (none: unlimited).
#[derive(Serialize)]
struct LimitsBody {
    rate_limits: Vec<RateLimitJson>,
}

/// What `PUT /v1/keys/{id}/credits` takes: the key's credits from now on (`null`: none).
#[derive(Serialize)]
struct CreditsBody {
    credits: Option<CreditsJson>,
}

/// What `POST /v1/keys/{id}/credits/add` takes.
#[derive(Serialize)]
struct AddCreditsBody {
    amount: u64,
}

/// What `POST /v1/keys/{id}/roll` takes.
#[derive(Serialize)]
struct RollBody {
    grace: String,
}

/// A request's body: JSON, or the JSON Lines of an import, which hold secrets.
enum Body {
    Empty,
    Json(Vec<u8>),
    Lines(Zeroizing<Vec<u8>>),
}

impl Client {
    /// A client of the server at `url` (`http://HOST[:PORT][/PREFIX]`), presenting the admin
    /// key of `key_file`'s first line, or else of `KEYLEDGER_API_KEY`.
    pub(super) fn new(url: &str, key_file: Option<&Path>) -> Result<Client, Failure> {
        let usage = |why: &str| Failure::new(exit::USAGE, format!("--server {url}: {why}"));
        let uri: Uri = url
            .parse()
            .map_err(|_| usage("not a URL; give http://HOST:PORT"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(usage(
                    "https is not supported here; reach the server over loopback, or through a \
                     local TLS tunnel (stunnel, ssh -L) with --server http://127.0.0.1:PORT",
                ));
            }
            _ => return Err(usage("give an http:// URL")),
        }
        let authority = uri.authority().ok_or_else(|| usage("the URL names no host"))?;
        if authority.as_str().contains('@') {
            return Err(usage(
                "the URL must not hold credentials; the admin key comes from KEYLEDGER_API_KEY or --api-key-file",
            ));
        }
        if uri.query().is_some() {
            return Err(usage("the URL must not hold a query"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(exit::STORAGE, format!("cannot start the HTTP client: {e}")))?;
        Ok(Client {
            url: url.to_owned(),
            host,
            port: authority.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|_| usage("the URL's host cannot be sent"))?,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            api_key: admin_key(key_file)?,
            runtime,
        })
    }

    /// `POST /v1/keys`: the new key, with its secret.
    pub(super) fn create(&self, key: &KeyBody) -> Result<KeyJson, Failure> {
        self.call(Method::POST, "/keys", json(key)?)
    }

    /// `POST /v1/keys/import` with one line: `key` (without `expires_in`, which an import
    /// line does not take) and its secret.
    pub(super) fn import_key(&self, key: &KeyBody, secret: &str) -> Result<Vec<ImportedJson>, Failure> {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            key: &'a KeyBody,
            #[serde(rename = "key")]
            secret: &'a str,
        }
        // Room for the longest line, so that the secret is never left in a buffer outgrown.
        let mut line = Zeroizing::new(Vec::with_capacity(keyledger::MAX_IMPORT_LINE_BYTES));
        serde_json::to_writer(&mut *line, &Line { key, secret })
            .map_err(|e| Failure::new(exit::USAGE, format!("cannot encode the request: {e}")))?;
        self.import(line)
    }

    /// `POST` (add) or `DELETE` (remove) `/v1/keys/{id}/whitelist`: the key after the change.
    pub(super) fn whitelist(
        &self,
        id: KeyId,
        nets: &[IpNet],
        add: bool,
        allow_any_address: bool,
    ) -> Result<KeyJson, Failure> {
        let body = WhitelistBody {
            ips: nets.iter().map(ToString::to_string).collect(),
            allow_any_address,
        };
        let method = if add { Method::POST } else { Method::DELETE };
        self.call(method, &format!("/keys/{id}/whitelist"), json(&body)?)
    }

    /// `DELETE /v1/keys/{id}`: the key, now deleted.
    pub(super) fn delete(&self, id: KeyId) -> Result<KeyJson, Failure> {
        self.call(Method::DELETE, &format!("/keys/{id}"), Body::Empty)
    }

    /// `POST /v1/actors/{actor}/revoke`: the keys it deleted.
    pub(super) fn revoke_actor(&self, person: &str, with_keys: bool) -> Result<RevokedActorJson, Failure> {
        let person = utf8_percent_encode(person, QUERY);
        let path = format!("/actors/{person}/revoke?with_keys={with_keys}");
        self.call(Method::POST, &path, Body::Empty)
    }

    /// `PUT /v1/keys/{id}/limits`: the key with its rate limits now (`limits` replace its
    /// own; none removes them).
    pub(super) fn set_limits(&self, id: KeyId, limits: &[RateLimit]) -> Result<KeyJson, Failure> {
        let body = LimitsBody {
            rate_limits: RateLimitJson::list(limits),
        };
        self.call(Method::PUT, &format!("/keys/{id}/limits"), json(&body)?)
    }

    /// `PATCH /v1/keys/{id}` with only the fields to change: the key as it is now.
    pub(super) fn update(&self, id: KeyId, body: &serde_json::Value) -> Result<KeyJson, Failure> {
        self.call(Method::PATCH, &format!("/keys/{id}"), json(body)?)
    }

    /// `PUT /v1/keys/{id}/credits`: the key with these credits (none: removed).
    pub(super) fn set_credits(&self, id: KeyId, credits: Option<&Credits>) -> Result<KeyJson, Failure> {
        let body = CreditsBody {
            credits: credits.map(CreditsJson::from),
        };
        self.call(Method::PUT, &format!("/keys/{id}/credits"), json(&body)?)
    }

    /// `POST /v1/keys/{id}/credits/add`: the key with `amount` more credits.
    pub(super) fn add_credits(&self, id: KeyId, amount: u64) -> Result<KeyJson, Failure> {
        self.call(
            Method::POST,
            &format!("/keys/{id}/credits/add"),
            json(&AddCreditsBody { amount })?,
        )
    }

    /// `POST /v1/keys/{id}/roll`: the new secret.
    pub(super) fn roll(&self, id: KeyId, grace: Duration) -> Result<RollJson, Failure> {
        let grace = duration(grace);
        self.call(
            Method::POST,
            &format!("/keys/{id}/roll"),
            json(&RollBody { grace })?,
        )
    }

    /// `POST /v1/keys/{id}/disable` (`enable: false`) or `.../enable`: the key after it.
    pub(super) fn switch(&self, id: KeyId, enable: bool) -> Result<KeyJson, Failure> {
        let to = if enable { "enable" } else { "disable" };
        self.call(Method::POST, &format!("/keys/{id}/{to}"), Body::Empty)
    }

    /// `POST /v1/keys/import` with JSON Lines, one key a line: each adopted key's line and id.
    pub(super) fn import(&self, lines: Zeroizing<Vec<u8>>) -> Result<Vec<ImportedJson>, Failure> {
        self.call(Method::POST, "/keys/import", Body::Lines(lines))
    }

    /// `GET /v1/keys[?all=true]`, a page after another, following the cursors: at most
    /// `limit` keys, or every one.
    pub(super) fn list(
        &self,
        all: bool,
        external_id: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<KeyJson>, Failure> {
        let mut path = String::from(if all { "/keys?all=true" } else { "/keys" });
        if let Some(id) = external_id {
            let joint = if all { '&' } else { '?' };
            path.push_str(&format!("{joint}external_id={}", utf8_percent_encode(id, QUERY)));
        }
        self.pages(&path, limit, |page: KeyPageJson| (page.keys, page.next))
    }

    /// Every item of a paged listing at `path`, or the first `limit`:
    /// pages of up to [`MAX_PAGE_LIMIT`], each asked with the cursor the one before gave.
    fn pages<P: DeserializeOwned, T>(
        &self,
        path: &str,
        limit: Option<usize>,
        split: impl Fn(P) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, Failure> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let wanted = limit.map_or(MAX_PAGE_LIMIT, |n| {
                n.saturating_sub(items.len()).min(MAX_PAGE_LIMIT)
            });
            if wanted == 0 {
                return Ok(items);
            }
            let joint = if path.contains('?') { '&' } else { '?' };
            let mut page_path = format!("{path}{joint}limit={wanted}");
            if let Some(c) = &cursor {
                page_path.push_str(&format!("&cursor={}", utf8_percent_encode(c, QUERY)));
            }
            let (mut page, next) = split(self.call(Method::GET, &page_path, Body::Empty)?);
            items.append(&mut page);
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// `GET /v1/keys/{id}`.
    pub(super) fn show(&self, id: KeyId) -> Result<KeyJson, Failure> {
        self.call(Method::GET, &format!("/keys/{id}"), Body::Empty)
    }

    /// `GET /v1/keys/{id}/usage` with the range and granularity given (the server's
    /// defaults for the others).
    pub(super) fn usage(
        &self,
        id: KeyId,
        since: Option<std::time::SystemTime>,
        until: Option<std::time::SystemTime>,
        granularity: keyledger::Granularity,
    ) -> Result<keyledger::UsageJson, Failure> {
        let mut query = format!("granularity={granularity}");
        for (name, t) in [("since", since), ("until", until)] {
            if let Some(t) = t {
                let t = keyledger::rfc3339(t);
                query.push_str(&format!("&{name}={}", utf8_percent_encode(&t, QUERY)));
            }
        }
        self.call(Method::GET, &format!("/keys/{id}/usage?{query}"), Body::Empty)
    }

    /// `GET /v1/audit` with `filter`, a page after another: at most `limit` entries.
    pub(super) fn audit(
        &self,
        filter: &AuditFilter,
        limit: Option<usize>,
    ) -> Result<Vec<AuditJson>, Failure> {
        let path = audit_path(filter, &[]);
        self.pages(&path, limit, |page: EntryPageJson<AuditJson>| {
            (page.entries, page.next)
        })
    }

    /// `GET /v1/audit?refused=true` with `filter` (no `kind`): at most `limit` attempts.
    pub(super) fn refused(
        &self,
        filter: &AuditFilter,
        limit: Option<usize>,
    ) -> Result<Vec<RefusedJson>, Failure> {
        let path = audit_path(filter, &[("refused", "true".to_owned())]);
        self.pages(&path, limit, |page: EntryPageJson<RefusedJson>| {
            (page.entries, page.next)
        })
    }

    /// `GET /v1/audit?at=SEQ[&key=ID]`: the keys as they stood right after record `seq`,
    /// at most `limit` of them.
    pub(super) fn keys_at(
        &self,
        seq: u64,
        only: Option<KeyId>,
        limit: Option<usize>,
    ) -> Result<Vec<KeyJson>, Failure> {
        let mut filter = AuditFilter::default();
        filter.key = only;
        let path = audit_path(&filter, &[("at", seq.to_string())]);
        self.pages(&path, limit, |page: KeyPageJson| (page.keys, page.next))
    }

    /// A JSON answer of `T`.
    fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Body) -> Result<T, Failure> {
        let answer = self.exchange(method, path, body)?;
        serde_json::from_slice(&answer).map_err(|e| self.unreadable(&e))
    }

    fn unreadable(&self, e: &serde_json::Error) -> Failure {
        Failure::new(
            exit::STORAGE,
            format!(
                "cannot read the answer of the server at {}: {e} (is it keyledger serve, of this version?)",
                self.url
            ),
        )
    }

    /// Sends one request on a connection of its own; the answer's body on a 2xx, else the
    /// server's error as the local command would fail.
    fn exchange(&self, method: Method, path: &str, body: Body) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let writes = method != Method::GET;
        let (content_type, body) = match body {
            Body::Empty => (None, Bytes::new()),
            Body::Json(json) => (Some("application/json"), Bytes::from(json)),
            // Zeroed when hyper lets go of it.
            Body::Lines(lines) => (Some("application/x-ndjson"), Bytes::from_owner(lines)),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}/v1{path}", self.prefix))
            .header(HOST, self.authority.clone())
            .header(API_KEY.clone(), self.api_key.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| Failure::new(exit::USAGE, format!("--server {}: {e}", self.url)))?;
        let sent = self
            .runtime
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, self.send(request)).await });
        let maybe_done = if writes {
            "; the change may have been made: look with `keyledger show` or `keyledger list`"
        } else {
            ""
        };
        let (status, answer) = match sent {
            Ok(Ok(answer)) => answer,
            Ok(Err(Fault::Unreachable(why))) => {
                return Err(Failure::new(
                    exit::STORAGE,
                    format!("cannot reach the server at {}: {why}", self.url),
                ));
            }
            Ok(Err(Fault::Lost(why))) => {
                return Err(Failure::new(
                    exit::STORAGE,
                    format!(
                        "lost the connection to the server at {}: {why}{maybe_done}",
                        self.url
                    ),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    exit::STORAGE,
                    format!(
                        "the server at {} did not answer within {} s{maybe_done}",
                        self.url,
                        REQUEST_TIMEOUT.as_secs()
                    ),
                ));
            }
        };
        if status.is_success() {
            return Ok(answer);
        }
        Err(self.refusal(status, &answer))
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Zeroizing<Vec<u8>>), Fault> {
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Fault::Unreachable(e.to_string())),
            Err(_) => {
                return Err(Fault::Unreachable(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        let lost = |e: hyper::Error| Fault::Lost(e.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(lost)?;
        // Drives the connection; it ends with the runtime if the answer never comes.
        tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(lost)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| Fault::Lost(e.to_string()))?
            .to_bytes();
        Ok((status, Zeroizing::new(Vec::from(body))))
    }

    /// A refusal by the server, as the local command would fail: the library's errors keep
    /// their messages and exit codes; the admin key's own refusal says so.
    fn refusal(&self, status: StatusCode, answer: &[u8]) -> Failure {
        let Ok(mut error) = serde_json::from_slice::<ErrorJson>(answer) else {
            return Failure::new(
                exit::STORAGE,
                format!(
                    "the server at {} answered {status} without keyledger's error body (is it keyledger serve?)",
                    self.url
                ),
            );
        };
        match error.error.as_str() {
            "unauthorized" | "forbidden" => {
                let reason = error.reason.as_deref().unwrap_or("no reason given");
                error.message = Some(format!(
                    "the server at {} refused the admin key: {} ({reason})",
                    self.url, error.error
                ));
            }
            "too_many_requests" => {
                error.message = Some(format!(
                    "the server at {} refused the admin key: it is past its own rate limit; try again later",
                    self.url
                ));
            }
            "not_found" | "method_not_allowed" => {
                error.message = Some(format!(
                    "the server at {} has no admin API route for this command (is it keyledger serve, of this version?)",
                    self.url
                ));
            }
            _ => {}
        }
        Failure::from(error)
    }
}

/// Why a request got no answer.
enum Fault {
    /// No connection was made: nothing was sent.
    Unreachable(String),
    /// The connection failed after the request may have been sent.
    Lost(String),
}

/// A length of time in the server's duration syntax: ISO 8601 (`PT1H30M`), to the
/// nanosecond.
pub(super) fn duration(d: Duration) -> String {
    // Only a duration past 292 billion years fails; the command line's parsers stop far
    // below.
    jiff::SignedDuration::try_from(d).map_or_else(|_| format!("PT{}S", d.as_secs()), |d| d.to_string())
}

fn json(body: &impl Serialize) -> Result<Body, Failure> {
    serde_json::to_vec(body)
        .map(Body::Json)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot encode the request: {e}")))
}

/// `/audit` with the filters given, and `extra` parameters.
fn audit_path(filter: &AuditFilter, extra: &[(&str, String)]) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(key) = filter.key {
        params.push(("key", key.to_string()));
    }
    if let Some(actor) = &filter.actor {
        params.push(("actor", actor.clone()));
    }
    if let Some(kind) = filter.kind {
        params.push(("kind", kind.as_str().to_owned()));
    }
    if let Some(since) = filter.since {
        params.push(("since", keyledger::rfc3339(since)));
    }
    if let Some(until) = filter.until {
        params.push(("until", keyledger::rfc3339(until)));
    }
    params.extend(extra.iter().cloned());
    let query: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY)))
        .collect();
    if query.is_empty() {
        "/audit".to_owned()
    } else {
        format!("/audit?{}", query.join("&"))
    }
}

/// The admin key: the first line of `file`, or else `KEYLEDGER_API_KEY`; never an argument.
fn admin_key(file: Option<&Path>) -> Result<HeaderValue, Failure> {
    let key = match file {
        Some(path) => key_from_file(path)?,
        None => Zeroizing::new(
            std::env::var("KEYLEDGER_API_KEY")
                .map(|k| k.trim().to_owned())
                .unwrap_or_default(),
        ),
    };
    if key.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            match file {
                Some(path) => format!("{} holds no admin key on its first line", path.display()),
                None => "--server needs an admin key: set KEYLEDGER_API_KEY, or pass --api-key-file FILE \
                         (the key on its first line)"
                    .to_owned(),
            },
        ));
    }
    let mut value = HeaderValue::from_str(&key).map_err(|_| {
        Failure::new(
            exit::USAGE,
            "the admin key holds characters an HTTP header cannot carry",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The first line of `path`, which no user but its owner may read.
fn key_from_file(path: &Path) -> Result<Zeroizing<String>, Failure> {
    keyledger::read_secret_file(path).map_err(|e| match e {
        Error::Io(e) => Failure::new(exit::USAGE, format!("cannot read {}: {e}", path.display())),
        other => Failure::new(exit::USAGE, other.to_string()),
    })
}
