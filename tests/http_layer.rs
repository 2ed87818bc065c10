//! `ApiKeyLayer` in an axum app, over real loopback HTTP/1.1: a server on a free port and
//! hyper's client, with the client's source address chosen inside 127.0.0.0/8, on `::1`, or
//! as an IPv4-mapped IPv6 peer.

#![allow(clippy::unwrap_used)]

#[path = "support/rate_headers.rs"]
mod rate_headers;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use keyledger::{Actor, ApiKeyLayer, KeyId, KeyStore, NewKey, RateLimit, TrustedProxies, VerifiedKey};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;

/// An axum server on a loopback port: `/notifications` needs a key, `/admin` a key with the
/// role `admin`, `/open` nothing, and `/peer` answers the connection's peer address.
struct Gateway {
    rt: Runtime,
    addr: SocketAddr,
    store: Arc<KeyStore>,
}

/// One answer, read whole.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        assert_eq!(self.headers[CONTENT_TYPE], "application/json", "{self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Asserts a refusal: its status, and exactly `{"error", "reason"}`.
    fn assert_refused(&self, status: StatusCode, reason: &str) {
        let error = if status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "forbidden"
        };
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.json(), json!({"error": error, "reason": reason}), "{self:?}");
        let challenge = self.headers.get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap());
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(challenge, Some(r#"ApiKey header="x-api-key""#));
        } else {
            assert_eq!(challenge, None);
        }
    }
}

impl Gateway {
    /// Serves on `bind` (port 0), trusting these proxy networks.
    fn start(bind: &str, proxies: &[&str]) -> Gateway {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(KeyStore::builder().open_temporary().unwrap());
        let auth = ApiKeyLayer::new(Arc::clone(&store))
            .trusted_proxies(TrustedProxies::parse(proxies).unwrap())
            .peer_addr_from(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.ip()));
        let app = Router::new()
            .route("/notifications", get(whoami).route_layer(auth.clone()))
            .route("/admin", get(whoami).route_layer(auth.require_role("admin")))
            .route("/open", get(|| async { "open" }))
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
            );
        let listener = rt.block_on(TcpListener::bind(bind)).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .unwrap();
        });
        Gateway { rt, addr, store }
    }

    /// Creates a key with these roles and whitelist; returns its id and secret.
    fn key(&self, roles: &[&str], allow: &[&str]) -> (KeyId, String) {
        self.limited_key(roles, allow, &[])
    }

    /// As [`key`](Self::key), with these rate limits (`2/1h`).
    fn limited_key(&self, roles: &[&str], allow: &[&str], limits: &[&str]) -> (KeyId, String) {
        let mut new = NewKey::new("notifications bot");
        for limit in limits {
            new = new.rate_limit(limit.parse::<RateLimit>().unwrap());
        }
        for role in roles {
            new = new.role(*role);
        }
        for net in allow {
            new = new.allow(keyledger::parse_net(net).unwrap());
        }
        let created = self.store.create_key(&Actor::admin("alice"), new).unwrap();
        (created.id, created.key.expose_secret().to_owned())
    }

    /// GET `path` from the default loopback source address of the server's family.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let source = if self.addr.is_ipv4() { "127.0.0.1" } else { "::1" };
        self.get_from(source, path, headers)
    }

    /// GET `path` over a new connection from `source`.
    fn get_from(&self, source: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request(source.parse().unwrap(), self.addr, path, headers)
    }

    /// GET `path` over a new connection from `source` to `to`.
    fn request(&self, source: IpAddr, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::get(path).header("host", "gateway.test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::<&'static [u8]>::new()).unwrap();
        self.rt.block_on(async move {
            let socket = if source.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .unwrap();
            socket.bind(SocketAddr::new(source, 0)).unwrap();
            let stream = socket.connect(to).await.unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(connection);
            let response = sender.send_request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8(body.to_vec()).unwrap(),
            }
        })
    }
}

/// What the handler learns: the key the layer verified.
async fn whoami(Extension(key): Extension<VerifiedKey>) -> String {
    let roles: Vec<&str> = key.roles().collect();
    format!("{} {} {}", key.id(), key.name(), roles.join(","))
}

#[test]
fn a_valid_key_reaches_the_handler_with_its_verified_key() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let (id, secret) = gw.key(&["notifier", "billing"], &["127.0.0.1"]);
    let answer = gw.get("/notifications", &[("x-api-key", &secret)]);
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, format!("{id} notifications bot notifier,billing"));
    let upper_case_name = gw.get("/notifications", &[("X-API-Key", &secret)]);
    assert_eq!(upper_case_name.status, StatusCode::OK);
}

#[test]
fn a_request_without_a_key_gets_401_with_a_challenge() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    gw.get("/notifications", &[])
        .assert_refused(StatusCode::UNAUTHORIZED, "header_missing");
    gw.get("/admin", &[])
        .assert_refused(StatusCode::UNAUTHORIZED, "header_missing");
    assert_eq!(
        gw.get("/open", &[]).status,
        StatusCode::OK,
        "unprotected routes stay open"
    );
}

#[test]
fn malformed_keys_and_headers_get_401_with_their_reason() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let (_, secret) = gw.key(&["notifier"], &["127.0.0.1"]);
    let mut typo = secret.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for (headers, reason) in [
        (vec![("x-api-key", "klk_short")], "malformed_length"),
        (vec![("x-api-key", typo.as_str())], "malformed_checksum"),
        (
            vec![("x-api-key", secret.as_str()), ("x-api-key", secret.as_str())],
            "header_repeated",
        ),
    ] {
        gw.get("/notifications", &headers)
            .assert_refused(StatusCode::UNAUTHORIZED, reason);
    }
}

#[test]
fn an_unknown_key_gets_401() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let other = Gateway::start("127.0.0.1:0", &[]);
    let (_, issued_elsewhere) = other.key(&["notifier"], &["127.0.0.1"]);
    gw.get("/notifications", &[("x-api-key", &issued_elsewhere)])
        .assert_refused(StatusCode::UNAUTHORIZED, "unknown_key");
}

#[test]
fn a_deleted_key_gets_401_on_the_first_request_after_the_delete_returns() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let (id, secret) = gw.key(&["notifier"], &["127.0.0.1"]);
    assert_eq!(
        gw.get("/notifications", &[("x-api-key", &secret)]).status,
        StatusCode::OK
    );
    gw.store.delete_key(&Actor::admin("alice"), id).unwrap();
    gw.get("/notifications", &[("x-api-key", &secret)])
        .assert_refused(StatusCode::UNAUTHORIZED, "unknown_key");
}

#[test]
fn a_key_used_from_an_address_off_its_whitelist_gets_403() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let (_, secret) = gw.key(&["notifier"], &["127.0.0.2"]);
    let from_allowed = gw.get_from("127.0.0.2", "/notifications", &[("x-api-key", &secret)]);
    assert_eq!(from_allowed.status, StatusCode::OK, "{from_allowed:?}");
    gw.get_from("127.0.0.3", "/notifications", &[("x-api-key", &secret)])
        .assert_refused(StatusCode::FORBIDDEN, "ip_not_whitelisted");
}

#[test]
fn each_route_requires_its_own_roles() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let (_, notifier) = gw.key(&["notifier"], &["127.0.0.1"]);
    let (_, admin) = gw.key(&["notifier", "admin"], &["127.0.0.1"]);
    assert_eq!(
        gw.get("/notifications", &[("x-api-key", &notifier)]).status,
        StatusCode::OK
    );
    gw.get("/admin", &[("x-api-key", &notifier)])
        .assert_refused(StatusCode::FORBIDDEN, "role_missing");
    let admin_on_admin = gw.get("/admin", &[("x-api-key", &admin)]);
    assert_eq!(admin_on_admin.status, StatusCode::OK, "{admin_on_admin:?}");
    assert!(admin_on_admin.body.ends_with(" notifier,admin"));
}

#[test]
fn a_spoofed_leftmost_forwarded_address_changes_nothing_behind_trusted_proxies() {
    // The test client plays the last proxy (127.0.0.1); 10.0.0.7 is a proxy before it.
    let gw = Gateway::start("127.0.0.1:0", &["127.0.0.0/8", "10.0.0.0/8"]);
    let (_, secret) = gw.key(&["notifier"], &["198.51.100.7"]);
    let key = ("x-api-key", secret.as_str());
    let honest = gw.get(
        "/notifications",
        &[key, ("x-forwarded-for", "198.51.100.7, 10.0.0.7")],
    );
    assert_eq!(honest.status, StatusCode::OK, "{honest:?}");
    let spoofed = gw.get(
        "/notifications",
        &[key, ("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.7")],
    );
    assert_eq!(spoofed.status, StatusCode::OK, "{spoofed:?}");
    // A client elsewhere claiming the whitelisted address gets nowhere.
    for forwarded in [
        vec![("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.7")],
        vec![
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    ] {
        let mut headers = vec![key];
        headers.extend(forwarded);
        gw.get("/notifications", &headers)
            .assert_refused(StatusCode::FORBIDDEN, "ip_not_whitelisted");
    }
    gw.get(
        "/notifications",
        &[key, ("x-forwarded-for", "198.51.100.7, unknown")],
    )
    .assert_refused(StatusCode::FORBIDDEN, "client_address_unknown");
}

#[test]
fn forwarded_addresses_are_ignored_unless_the_peer_is_a_trusted_proxy() {
    let untrusting = Gateway::start("127.0.0.1:0", &[]);
    let (_, secret) = untrusting.key(&["notifier"], &["198.51.100.7"]);
    untrusting
        .get(
            "/notifications",
            &[("x-api-key", &secret), ("x-forwarded-for", "198.51.100.7")],
        )
        .assert_refused(StatusCode::FORBIDDEN, "ip_not_whitelisted");

    let trusts_another = Gateway::start("127.0.0.1:0", &["127.0.0.9"]);
    let (_, secret) = trusts_another.key(&["notifier"], &["198.51.100.7"]);
    trusts_another
        .get(
            "/notifications",
            &[("x-api-key", &secret), ("x-forwarded-for", "198.51.100.7")],
        )
        .assert_refused(StatusCode::FORBIDDEN, "ip_not_whitelisted");
    let via_proxy = trusts_another.get_from(
        "127.0.0.9",
        "/notifications",
        &[("x-api-key", &secret), ("x-forwarded-for", "198.51.100.7")],
    );
    assert_eq!(via_proxy.status, StatusCode::OK, "{via_proxy:?}");
}

#[test]
fn ipv6_clients_are_matched_against_ipv6_whitelists() {
    let gw = Gateway::start("[::1]:0", &[]);
    let (_, v6) = gw.key(&["notifier"], &["::1"]);
    let (_, v4_only) = gw.key(&["notifier"], &["127.0.0.1"]);
    assert_eq!(
        gw.get("/notifications", &[("x-api-key", &v6)]).status,
        StatusCode::OK
    );
    gw.get("/notifications", &[("x-api-key", &v4_only)])
        .assert_refused(StatusCode::FORBIDDEN, "ip_not_whitelisted");

    let behind_v6_proxy = Gateway::start("[::1]:0", &["::1"]);
    let (_, secret) = behind_v6_proxy.key(&["notifier"], &["2001:db8::/32"]);
    let forwarded = behind_v6_proxy.get(
        "/notifications",
        &[
            ("x-api-key", &secret),
            ("x-forwarded-for", "203.0.113.9, [2001:db8::7]:4431"),
        ],
    );
    assert_eq!(forwarded.status, StatusCode::OK, "{forwarded:?}");
}

#[test]
fn mapped_ipv4_peers_match_ipv4_whitelists_and_trusted_proxies() {
    // An IPv6 socket bound to a mapped address sees IPv4 clients as ::ffff:a.b.c.d.
    let gw = Gateway::start("[::ffff:127.0.0.1]:0", &["127.0.0.2"]);
    let v4_addr = SocketAddr::new("127.0.0.1".parse().unwrap(), gw.addr.port());
    let peer = gw.request("127.0.0.1".parse().unwrap(), v4_addr, "/peer", &[]);
    assert_eq!(peer.body, "::ffff:127.0.0.1");
    let (_, secret) = gw.key(&["notifier"], &["127.0.0.1"]);
    let key = ("x-api-key", secret.as_str());
    let direct = gw.request("127.0.0.1".parse().unwrap(), v4_addr, "/notifications", &[key]);
    assert_eq!(direct.status, StatusCode::OK, "{direct:?}");
    gw.request("127.0.0.3".parse().unwrap(), v4_addr, "/notifications", &[key])
        .assert_refused(StatusCode::FORBIDDEN, "ip_not_whitelisted");

    let (_, behind) = gw.key(&["notifier"], &["198.51.100.0/24"]);
    let forwarded = [
        ("x-api-key", behind.as_str()),
        ("x-forwarded-for", "::ffff:198.51.100.7"),
    ];
    let via_mapped_proxy = gw.request(
        "127.0.0.2".parse().unwrap(),
        v4_addr,
        "/notifications",
        &forwarded,
    );
    assert_eq!(via_mapped_proxy.status, StatusCode::OK, "{via_mapped_proxy:?}");
}

#[test]
fn no_answer_ever_contains_the_key() {
    let gw = Gateway::start("127.0.0.1:0", &["127.0.0.0/8"]);
    let (_, secret) = gw.key(&["notifier"], &["198.51.100.7"]);
    let secret_part = &secret[4..];
    let key = ("x-api-key", secret.as_str());
    let answers = [
        gw.get("/notifications", &[key]),
        gw.get("/admin", &[key, ("x-forwarded-for", "198.51.100.7")]),
        gw.get("/notifications", &[key, ("x-forwarded-for", "not an address")]),
        gw.get("/notifications", &[key, key]),
        gw.get("/notifications", &[("x-api-key", &secret[..39])]),
        gw.get(
            "/notifications",
            &[("x-api-key", &secret.replacen("klk_", "klx_", 1))],
        ),
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, [403, 403, 403, 401, 401, 401], "{answers:?}");
    for answer in &answers {
        assert!(!answer.body.contains(secret_part), "{answer:?}");
        for value in answer.headers.values() {
            assert!(!value.to_str().unwrap().contains(secret_part), "{answer:?}");
        }
    }
}

#[test]
fn a_limited_key_passes_with_rate_limit_headers_then_gets_429_with_retry_after() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let (id, secret) = gw.limited_key(&["notifier"], &["127.0.0.1"], &["2/1h", "100/1d"]);
    let key = ("x-api-key", secret.as_str());
    let policy = r#""2/1h";q=2;w=3600"#;

    // The handler's answer gets the headers of the limit closest to running out.
    let first = gw.get("/notifications", &[key]);
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert!(first.body.starts_with(&id.to_string()), "{first:?}");
    let (remaining, reset) = rate_headers::rate_limit(&first.headers, "2/1h", policy);
    assert_eq!(remaining, 1);
    assert!((1790..=1800).contains(&reset), "{first:?}");
    assert!(!first.headers.contains_key("retry-after"));
    let second = gw.get("/notifications", &[key]);
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    let (remaining, reset) = rate_headers::rate_limit(&second.headers, "2/1h", policy);
    assert_eq!(remaining, 0);
    assert!((3590..=3600).contains(&reset), "{second:?}");

    // Past it: 429, never the handler, told when to retry.
    let refused = gw.get("/notifications", &[key]);
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(
        refused.json(),
        json!({"error": "too_many_requests", "reason": "rate_limited"})
    );
    assert!(!refused.headers.contains_key(WWW_AUTHENTICATE));
    let retry_after = rate_headers::retry_after(&refused.headers);
    assert!((1790..=1800).contains(&retry_after), "{refused:?}");
    assert_eq!(
        rate_headers::rate_limit(&refused.headers, "2/1h", policy),
        (0, retry_after)
    );

    // Refusals for other reasons come first and say nothing of the limit.
    let elsewhere = gw.get_from("127.0.0.2", "/notifications", &[key]);
    elsewhere.assert_refused(StatusCode::FORBIDDEN, "ip_not_whitelisted");
    assert!(rate_headers::no_rate_headers(&elsewhere.headers), "{elsewhere:?}");
}

#[test]
fn a_key_without_rate_limits_never_gets_rate_limit_headers() {
    let gw = Gateway::start("127.0.0.1:0", &[]);
    let (_, secret) = gw.key(&["notifier"], &["127.0.0.1"]);
    for _ in 0..20 {
        let passed = gw.get("/notifications", &[("x-api-key", &secret)]);
        assert_eq!(passed.status, StatusCode::OK, "{passed:?}");
        assert!(rate_headers::no_rate_headers(&passed.headers), "{passed:?}");
    }
    let refused = gw.get("/admin", &[("x-api-key", &secret)]);
    refused.assert_refused(StatusCode::FORBIDDEN, "role_missing");
    assert!(rate_headers::no_rate_headers(&refused.headers), "{refused:?}");
}
